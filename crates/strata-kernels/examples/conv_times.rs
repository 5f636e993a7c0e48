//! Times `strata_kernels::conv`'s forward pass and both gradients, one shape at a time, for
//! ResNet-20's 3x3 convolutions at batch 32 (CIFAR-sized input), with the raw slices (no
//! autodiff, no tensor layer): the numbers that `benches/pytorch/conv_times.py` prints for
//! PyTorch's `conv2d` and `convolution_backward`.
//!
//! `cargo run --release --example conv_times`

use std::time::Instant;
use strata_kernels::conv::{self, ConvGeometry};

fn geometry(batch: usize, c: usize, hw: usize, o: usize, stride: usize) -> ConvGeometry {
    ConvGeometry {
        batch,
        channels_in: c,
        input: [hw, hw],
        channels_out: o,
        kernel: [3, 3],
        stride: [stride, stride],
        padding: [(1, 1), (1, 1)],
        dilation: [1, 1],
        groups: 1,
    }
}

/// Mean ms per call of `f` over `reps` calls after two untimed ones.
fn time(reps: usize, mut f: impl FnMut() -> Vec<f32>) -> f64 {
    for _ in 0..2 {
        std::hint::black_box(f());
    }
    let start = Instant::now();
    for _ in 0..reps {
        std::hint::black_box(f());
    }
    start.elapsed().as_secs_f64() * 1e3 / reps as f64
}

fn values(len: usize, seed: f32) -> Vec<f32> {
    (0..len)
        .map(|i| ((i as f32 * 0.618 + seed).fract() - 0.5) * 0.2)
        .collect()
}

fn main() {
    strata_kernels::keep_freed_memory();
    let reps = 20;
    // (label, count in ResNet-20, geometry)
    let shapes = [
        ("stem 3->16 @32", 1, geometry(32, 3, 32, 16, 1)),
        ("16->16 @32", 6, geometry(32, 16, 32, 16, 1)),
        ("16->32 @32 s2", 1, geometry(32, 16, 32, 32, 2)),
        ("32->32 @16", 5, geometry(32, 32, 16, 32, 1)),
        ("32->64 @16 s2", 1, geometry(32, 32, 16, 64, 2)),
        ("64->64 @8", 5, geometry(32, 64, 8, 64, 1)),
    ];
    let mut total = 0.0;
    for (label, count, g) in shapes {
        let x = values(g.input_len(), 0.1);
        let w = values(g.weight_len(), 0.2);
        let dy = values(g.output_len(), 0.3);
        let f = time(reps, || conv::forward(&x, &w, &g));
        let di = time(reps, || conv::backward_input(&w, &dy, &g));
        let dw = time(reps, || conv::backward_weight(&x, &dy, &g));
        let sum = (f + di + dw) * count as f64;
        total += sum;
        println!(
            "{{\"shape\":\"{label}\",\"count\":{count},\"forward\":{f:.3},\"input_grad\":{di:.3},\"weight_grad\":{dw:.3}}}"
        );
    }
    println!("{{\"shape\":\"all, times count\",\"ms\":{total:.2}}}");
}
