//! Milliseconds per inference pass of linear layers and of a whole MLP (784 -> 256 -> 128 ->
//! 10, ReLU) on flex, in f32 (Strata's linear kernel) and in int8 ([`QuantizedLinear`], per
//! output scales), at batch 1 and 64: seven alternating rounds, medians.
//! `benches/pytorch/int8_linear.py` times the same shapes in PyTorch, f32 and dynamic int8.
//!
//! `cargo run --release --example int8_times -p strata-kernels`
//!
//! [`QuantizedLinear`]: strata_kernels::QuantizedLinear

use std::time::Instant;

use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Distribution, Tensor};
use strata_kernels::{QuantizedLinear, linear_layer};

/// Mean ms per call over `reps` calls after one untimed call.
fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    for _ in 0..reps {
        f();
    }
    start.elapsed().as_secs_f64() * 1e3 / reps as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Prints one row: medians of alternating rounds of the two passes.
fn row(label: &str, batch: usize, mut float: impl FnMut(), mut int8: impl FnMut()) {
    let reps = if batch == 1 { 2000 } else { 200 };
    let (mut f, mut q) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        f.push(time(reps, &mut float));
        q.push(time(reps, &mut int8));
    }
    let (f, q) = (median(f), median(q));
    println!(
        "{{\"op\": \"{label}\", \"batch\": {batch}, \"f32_ms\": {f:.4}, \"int8_ms\": {q:.4}, \"f32_over_int8\": {:.2}}}",
        f / q
    );
}

fn main() {
    let device = Device::flex();
    let layer = |i, o| -> Linear { LinearConfig::new(i, o).init(&device) };
    for batch in [1, 64] {
        for (d_in, d_out) in [(784, 256), (256, 128), (128, 10), (3136, 128)] {
            let l = layer(d_in, d_out);
            let q = QuantizedLinear::from_linear(&l, true);
            let x = Tensor::<2>::random([batch, d_in], Distribution::Default, &device);
            row(
                &format!("linear {d_in} -> {d_out}"),
                batch,
                || {
                    let _ = linear_layer(&l, x.clone()).into_data();
                },
                || {
                    let _ = q.forward(x.clone()).into_data();
                },
            );
        }
        let mlp = [layer(784, 256), layer(256, 128), layer(128, 10)];
        let int8: Vec<QuantizedLinear> = mlp
            .iter()
            .map(|l| QuantizedLinear::from_linear(l, true))
            .collect();
        let x = Tensor::<2>::random([batch, 784], Distribution::Default, &device);
        row(
            "mlp 784 -> 256 -> 128 -> 10",
            batch,
            || {
                let h = relu(linear_layer(&mlp[0], x.clone()));
                let h = relu(linear_layer(&mlp[1], h));
                let _ = linear_layer(&mlp[2], h).into_data();
            },
            || {
                let h = relu(int8[0].forward(x.clone()));
                let h = relu(int8[1].forward(h));
                let _ = int8[2].forward(h).into_data();
            },
        );
    }
}
