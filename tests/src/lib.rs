//! End-to-end tests for Strata live in `tests/`: learning on real data, every backend,
//! resume, divergence and PyTorch parity. This library holds their shared helpers.

use burn::tensor::Device;
use strata::tensor::require::unmet;
use strata::tensor::{Backend, backends};

/// The devices of every backend usable here. A backend that is not (wgpu without a Vulkan
/// driver) is reported through [`strata::tensor::require::unmet`]: a counted skip, or a
/// failure where it is required (in CI).
///
/// # Panics
/// When a required backend is not usable.
pub fn usable_backends() -> Vec<(Backend, Device)> {
    backends()
        .into_iter()
        .filter_map(|s| match s.usable {
            Ok(()) => Some((s.backend, s.backend.device())),
            Err(why) => {
                unmet(s.backend.name(), &format!("backend not usable here: {why}"));
                None
            }
        })
        .collect()
}

/// The PyTorch fixture `tests/fixtures/NAME.json`, parsed.
///
/// # Panics
/// A missing or malformed fixture (regenerate it with `cargo xtask fixtures`).
pub fn fixture_json(name: &str) -> serde_json::Value {
    let path = format!("{}/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A fixture's nested array as a tensor of rank `D` on `device`.
///
/// # Panics
/// As [`json_tensor`], or an array of another rank.
pub fn json_to_tensor<const D: usize>(
    v: &serde_json::Value,
    device: &Device,
) -> burn::tensor::Tensor<D> {
    let (values, shape) = json_tensor(v);
    burn::tensor::Tensor::from_data(burn::tensor::TensorData::new(values, shape), device)
}

/// A tensor's values, row-major.
pub fn flat<const D: usize>(t: burn::tensor::Tensor<D>) -> Vec<f32> {
    let n = t.shape().num_elements();
    strata::tensor::convert::to_vec(t.reshape([n]))
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

/// Asserts that `got` and `want` agree element-wise within `tol`, naming `what`, the worst
/// index and its two values: the comparison of every PyTorch parity test
/// ([`strata::tensor::compare::check_close`]).
///
/// # Panics
/// When the lengths differ, when either side holds a NaN or an infinity, or when an element is
/// further than `tol` from PyTorch's.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    if let Err(e) = strata::tensor::compare::check_close(what, got, want, tol) {
        panic!("{e}");
    }
}

/// [`assert_close`] against a fixture's JSON tensor.
///
/// # Panics
/// As [`assert_close`] and [`json_tensor`].
pub fn close_to_json(what: &str, got: Vec<f32>, want: &serde_json::Value, tol: f32) {
    assert_close(what, &got, &json_tensor(want).0, tol);
}

/// The ResNet `case` of `tests/fixtures/resnet.json` (`gen_resnet.py`; `f` its entry), with
/// the weights PyTorch saved in `tests/fixtures/resnet/CASE.pt` loaded by name.
///
/// # Panics
/// A missing or malformed fixture, or weights that do not all load ([`assert_complete`]).
pub fn pytorch_resnet(case: &str, f: &serde_json::Value, device: &Device) -> strata::arch::ResNet {
    use burn::store::{ModuleSnapshot, PytorchStore};
    use strata::arch::{ResNetConfig, Stem};
    let usize_list = |v: &serde_json::Value| -> Vec<usize> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect()
    };
    let config = ResNetConfig::new(
        f["in_channels"].as_u64().unwrap() as usize,
        f["classes"].as_u64().unwrap() as usize,
        usize_list(&f["blocks"]),
        usize_list(&f["widths"]),
    )
    .with_bottleneck(f["bottleneck"].as_bool().unwrap())
    .with_stem(if f["cifar"].as_bool().unwrap() {
        Stem::Cifar
    } else {
        Stem::ImageNet
    });
    let mut model = config.init(device).unwrap();
    let path = format!("{}/fixtures/resnet/{case}.pt", env!("CARGO_MANIFEST_DIR"));
    let mut store = PytorchStore::from_file(path).allow_partial(false);
    assert_complete(case, &model.load_from(&mut store).unwrap());
    model
}

/// Asserts that every parameter of a model loaded, and nothing of the file was left over but
/// PyTorch's `num_batches_tracked`.
///
/// # Panics
/// Otherwise, naming `case` and what went wrong.
pub fn assert_complete(case: &str, result: &burn::store::ApplyResult) {
    assert!(
        result.errors.is_empty() && result.missing.is_empty(),
        "{case}: {result:?}"
    );
    assert!(
        result
            .unused
            .iter()
            .all(|k| k.ends_with("num_batches_tracked")),
        "{case}: unused {:?}",
        result.unused
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "value 1 is not finite")]
    fn nan_fails_a_parity_check() {
        assert_close("nan", &[0.0, f32::NAN], &[0.0, 1.0], 1.0);
    }

    #[test]
    #[should_panic(expected = "value 0 is not finite")]
    fn all_nan_outputs_are_not_equal() {
        close_to_json(
            "all-nan",
            vec![f32::NAN; 2],
            &serde_json::json!([1.0, 2.0]),
            1e-4,
        );
    }

    #[test]
    #[should_panic(expected = "lengths differ: 2 values against 3")]
    fn a_wrong_length_fails_a_parity_check() {
        close_to_json(
            "short",
            vec![1.0, 2.0],
            &serde_json::json!([1.0, 2.0, 3.0]),
            1e-4,
        );
    }

    #[test]
    #[should_panic(expected = "at index 2")]
    fn a_difference_over_the_tolerance_fails() {
        assert_close("far", &[1.0, 2.0, 3.0], &[1.0, 2.0, 3.5], 0.1);
    }

    #[test]
    fn equal_finite_values_pass() {
        assert_close("same", &[1.0, -2.0], &[1.0, -2.0], 0.0);
    }
}
