//! End-to-end tests for Strata live in `tests/`: learning on real data, every backend,
//! resume, divergence and PyTorch parity. This library holds their shared helpers.

use burn::tensor::Device;
use strata::tensor::{Backend, backends};

/// The devices of every backend usable here. Prints a clear skip line for each one that is
/// not (e.g. wgpu without a Vulkan driver), so a skipped backend is never silent.
pub fn usable_backends() -> Vec<(Backend, Device)> {
    backends()
        .into_iter()
        .filter_map(|s| match s.usable {
            Ok(()) => Some((s.backend, s.backend.device())),
            Err(why) => {
                eprintln!("SKIPPED backend {}: not usable here: {why}", s.backend);
                None
            }
        })
        .collect()
}

/// A nested JSON array of numbers (or booleans, as 0/1) as a flat vector and its shape: the
/// layout of the PyTorch fixtures' tensors (`tensor.tolist()`).
///
/// # Panics
/// On anything but nested arrays of numbers or booleans.
pub fn json_tensor(v: &serde_json::Value) -> (Vec<f32>, Vec<usize>) {
    fn walk(v: &serde_json::Value, out: &mut Vec<f32>, shape: &mut Vec<usize>, depth: usize) {
        match v {
            serde_json::Value::Array(items) => {
                if shape.len() == depth {
                    shape.push(items.len());
                }
                for item in items {
                    walk(item, out, shape, depth + 1);
                }
            }
            serde_json::Value::Number(n) => out.push(n.as_f64().unwrap_or(f64::NAN) as f32),
            serde_json::Value::Bool(b) => out.push(if *b { 1.0 } else { 0.0 }),
            other => panic!("not a number: {other}"),
        }
    }
    let (mut out, mut shape) = (Vec::new(), Vec::new());
    walk(v, &mut out, &mut shape, 0);
    (out, shape)
}

/// Asserts that `got` and `want` agree element-wise within `tol`, naming `what` and the worst
/// difference: the comparison of every PyTorch parity test.
///
/// # Panics
/// When the sizes differ or an element is further than `tol` from PyTorch's.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: sizes differ");
    let worst = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst <= tol,
        "{what}: max |strata - PyTorch| = {worst:e} > {tol:e}"
    );
}

/// [`assert_close`] against a fixture's JSON tensor.
///
/// # Panics
/// As [`assert_close`] and [`json_tensor`].
pub fn close_to_json(what: &str, got: Vec<f32>, want: &serde_json::Value, tol: f32) {
    assert_close(what, &got, &json_tensor(want).0, tol);
}
