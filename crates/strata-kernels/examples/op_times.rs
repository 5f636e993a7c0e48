//! Milliseconds per forward + backward pass of the ops a convolutional training step is made
//! of, and of linear layers (training and inference), on flex, for Strata's kernels and burn's
//! ops side by side: where a step's time goes.
//!
//! `cargo run --release --example op_times -p strata-kernels` (add `--workspace` features as
//! the workspace builds them: run it from the workspace with `--example op_times`).

use std::time::Instant;

use burn::backend::ops::{ConvOptions, MaxPoolOptions};
use burn::tensor::{Device, Distribution, Tensor};

fn time(label: &str, reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    for _ in 0..reps {
        f();
    }
    let ms = start.elapsed().as_secs_f64() * 1e3 / reps as f64;
    println!("{label:<58} {ms:8.2} ms");
    ms
}

type Conv = fn(Tensor<4>, Tensor<4>, Option<Tensor<1>>, ConvOptions<2>) -> Tensor<4>;

fn conv_step(conv: Conv, x: &Tensor<4>, w: &Tensor<4>, options: &ConvOptions<2>) {
    let x = x.clone().require_grad();
    let w = w.clone().require_grad();
    let y = conv(x, w, None, options.clone());
    let _ = y.sum().backward();
}

fn main() {
    let device = Device::flex().autodiff();
    let reps = 10;
    // (label, input [N, C, H, W], output channels, kernel, stride, padding)
    let layers = [
        (
            "cnn conv1 64x1x28x28 -> 32, 3x3",
            [64, 1, 28, 28],
            32,
            3,
            1,
            1,
        ),
        (
            "cnn conv2 64x32x14x14 -> 64, 3x3",
            [64, 32, 14, 14],
            64,
            3,
            1,
            1,
        ),
        (
            "resnet20 stage1 32x16x32x32 -> 16, 3x3",
            [32, 16, 32, 32],
            16,
            3,
            1,
            1,
        ),
        (
            "resnet20 stage3 32x64x8x8 -> 64, 3x3",
            [32, 64, 8, 8],
            64,
            3,
            1,
            1,
        ),
    ];
    for (label, dims, out, k, stride, pad) in layers {
        let x = Tensor::<4>::random(dims, Distribution::Default, &device);
        let w = Tensor::<4>::random([out, dims[1], k, k], Distribution::Default, &device);
        let options = ConvOptions::new([stride; 2], [pad; 2], [1, 1], 1);
        let ours = time(&format!("conv fwd+bwd, strata: {label}"), reps, || {
            conv_step(strata_kernels::conv2d, &x, &w, &options)
        });
        let burns = time(&format!("conv fwd+bwd, burn:   {label}"), reps, || {
            conv_step(burn::tensor::module::conv2d, &x, &w, &options)
        });
        println!("{:<58} {:8.2}x", "  burn / strata", burns / ours);
    }
    for dims in [[64, 32, 28, 28], [32, 16, 32, 32]] {
        let x = Tensor::<4>::random(dims, Distribution::Default, &device);
        let gamma = Tensor::<1>::ones([dims[1]], &device);
        let beta = Tensor::<1>::zeros([dims[1]], &device);
        let ours = time(
            &format!("batch_norm_train fwd+bwd, strata {dims:?}"),
            reps,
            || {
                let x = x.clone().require_grad();
                let g = gamma.clone().require_grad();
                let b = beta.clone().require_grad();
                let (y, _, _) = strata_kernels::batch_norm_train(x, g, b, 1e-5);
                let _ = y.sum().backward();
            },
        );
        let burns = time(
            &format!("batch_norm_train fwd+bwd, burn   {dims:?}"),
            reps,
            || {
                let x = x.clone().require_grad();
                let g = gamma.clone().require_grad();
                let b = beta.clone().require_grad();
                let out = burn::tensor::module::batch_norm_train(x, g, b, 1e-5);
                let _ = out.output.sum().backward();
            },
        );
        println!("{:<58} {:8.2}x", "  burn / strata", burns / ours);
        time(&format!("relu fwd+bwd (burn) {dims:?}"), reps, || {
            let x = x.clone().require_grad();
            let _ = burn::tensor::activation::relu(x).sum().backward();
        });
        let ours = time(
            &format!("max_pool2d 2x2 fwd+bwd, strata {dims:?}"),
            reps,
            || {
                let x = x.clone().require_grad();
                let y = strata_kernels::max_pool2d(x, MaxPoolOptions::new([2, 2]));
                let _ = y.sum().backward();
            },
        );
        let burns = time(
            &format!("max_pool2d 2x2 fwd+bwd, burn   {dims:?}"),
            reps,
            || {
                let x = x.clone().require_grad();
                let y = burn::tensor::module::max_pool2d(x, MaxPoolOptions::new([2, 2]));
                let _ = y.sum().backward();
            },
        );
        println!("{:<58} {:8.2}x", "  burn / strata", burns / ours);
        let plain = x.clone().inner();
        time(
            &format!("max_pool2d 2x2 forward only (burn) {dims:?}"),
            reps,
            || {
                let _ =
                    burn::tensor::module::max_pool2d(plain.clone(), MaxPoolOptions::new([2, 2]));
            },
        );
        time(&format!("sum fwd+bwd (the harness) {dims:?}"), reps, || {
            let x = x.clone().require_grad();
            let _ = x.sum().backward();
        });
    }

    // Linear layers: the character LM's output layer, an MLP's first layer (input not
    // tracked), and the MLP at inference. Alternating rounds, medians: these differ by less
    // than a busy machine's drift over one long run.
    let layers = [
        (
            "char-LM head 32x50x256 -> 84",
            [32, 50, 256],
            84,
            true,
            true,
        ),
        (
            "mlp first layer 1x64x784 -> 256",
            [1, 64, 784],
            256,
            false,
            true,
        ),
        (
            "mlp first layer, inference, 1x64x784 -> 256",
            [1, 64, 784],
            256,
            false,
            false,
        ),
        (
            "mlp output, inference, 1x64x128 -> 10",
            [1, 64, 128],
            10,
            false,
            false,
        ),
    ];
    for (label, dims, d_out, track_x, train) in layers {
        let x = Tensor::<3>::random(dims, Distribution::Default, &device);
        let w = Tensor::<2>::random([dims[2], d_out], Distribution::Default, &device);
        let b = Tensor::<1>::random([d_out], Distribution::Default, &device);
        type Linear = fn(Tensor<3>, Tensor<2>, Option<Tensor<1>>) -> Tensor<3>;
        let run = |linear: Linear| {
            if train {
                let x = if track_x {
                    x.clone().require_grad()
                } else {
                    x.clone()
                };
                let y = linear(x, w.clone().require_grad(), Some(b.clone().require_grad()));
                let _ = y.sum().backward();
            } else {
                // Without autodiff, as `evaluate` and `predict` run.
                let y = linear(
                    x.clone().inner(),
                    w.clone().inner(),
                    Some(b.clone().inner()),
                );
                let _ = y.into_data();
            }
        };
        let reps = if train { 50 } else { 500 };
        let (mut ours, mut burns) = (Vec::new(), Vec::new());
        for _ in 0..7 {
            ours.push(time(&format!("linear, strata: {label}"), reps, || {
                run(strata_kernels::linear)
            }));
            burns.push(time(&format!("linear, burn:   {label}"), reps, || {
                run(burn::tensor::module::linear)
            }));
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (ours, burns) = (median(&mut ours), median(&mut burns));
        println!(
            "{:<58} {ours:8.3} / {burns:8.3} ms: {:5.2}x",
            format!("  medians {label}, strata / burn"),
            burns / ours
        );
    }
}
