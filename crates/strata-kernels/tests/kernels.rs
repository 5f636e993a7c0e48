//! Strata's kernels against burn's own ops on flex: the convolution (forward, and all three
//! gradients through autodiff) over random shapes, strides, paddings, dilations, groups, batch
//! sizes and non-contiguous inputs; batch norm in training (output, statistics, gradients) and
//! in inference; max pooling.

use burn::backend::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor};
use proptest::prelude::*;
use strata_tensor::compare::check_close;
use strata_tensor::convert::to_vec;

#[derive(Clone, Debug)]
struct Case {
    batch: usize,
    groups: usize,
    c_per_group: usize,
    o_per_group: usize,
    input: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [(usize, usize); 2],
    dilation: [usize; 2],
    bias: bool,
    transposed_input: bool,
}

impl Case {
    fn options(&self) -> ConvOptions<2> {
        ConvOptions::new_with_padding(self.stride, self.padding, self.dilation, self.groups)
    }

    fn fits(&self) -> bool {
        (0..2).all(|d| {
            self.input[d] + self.padding[d].0 + self.padding[d].1
                > self.dilation[d] * (self.kernel[d] - 1)
        })
    }
}

fn cases() -> impl Strategy<Value = Case> {
    (
        (1usize..4, 1usize..4, 1usize..4, 1usize..5),
        (
            [3usize..10, 3usize..10],
            [1usize..4, 1usize..4],
            [1usize..3, 1usize..3],
        ),
        (
            [(0usize..3, 0usize..3), (0usize..3, 0usize..3)],
            [1usize..3, 1usize..3],
        ),
        (any::<bool>(), any::<bool>()),
    )
        .prop_map(
            |(
                (batch, groups, c_per_group, o_per_group),
                (input, kernel, stride),
                (padding, dilation),
                (bias, transposed_input),
            )| Case {
                batch,
                groups,
                c_per_group,
                o_per_group,
                input,
                kernel,
                stride,
                padding,
                dilation,
                bias,
                transposed_input,
            },
        )
        .prop_filter("the kernel fits", Case::fits)
}

struct Inputs {
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    upstream: Tensor<4>,
}

fn inputs(case: &Case, device: &Device) -> Inputs {
    let c = case.groups * case.c_per_group;
    let o = case.groups * case.o_per_group;
    let [h, w] = case.input;
    let u = Distribution::Uniform(-1.0, 1.0);
    let x = if case.transposed_input {
        // Stored as [N, H, C, W]: the kernel sees a strided view.
        Tensor::<4>::random([case.batch, h, c, w], u, device).swap_dims(1, 2)
    } else {
        Tensor::<4>::random([case.batch, c, h, w], u, device)
    };
    let weight = Tensor::<4>::random(
        [o, case.c_per_group, case.kernel[0], case.kernel[1]],
        u,
        device,
    );
    let bias = case.bias.then(|| Tensor::<1>::random([o], u, device));
    let out = burn::tensor::module::conv2d(x.clone(), weight.clone(), bias.clone(), case.options());
    let upstream = Tensor::<4>::random(out.dims(), u, device);
    Inputs {
        x,
        weight,
        bias,
        upstream,
    }
}

/// Tolerances are relative to the result's largest magnitude when that is above 1: a sum of
/// hundreds of products near 10 differs in its last bits (an f32 ulp there is 1e-6) with the
/// order of summation alone.
fn scale(values: &[f32]) -> f32 {
    values.iter().fold(1.0f32, |m, v| m.max(v.abs()))
}

type Conv = fn(Tensor<4>, Tensor<4>, Option<Tensor<1>>, ConvOptions<2>) -> Tensor<4>;

/// The output and the gradients of `sum(conv(x) * upstream)` for x, weight and bias.
fn run(conv: Conv, inputs: &Inputs, options: ConvOptions<2>) -> Vec<Vec<f32>> {
    let x = inputs.x.clone().require_grad();
    let weight = inputs.weight.clone().require_grad();
    let bias = inputs.bias.clone().map(Tensor::require_grad);
    let out = conv(x.clone(), weight.clone(), bias.clone(), options);
    let loss = (out.clone() * inputs.upstream.clone()).sum();
    let grads = loss.backward();
    let mut all = vec![
        to_vec(out),
        to_vec(x.grad(&grads).expect("a gradient for x")),
        to_vec(weight.grad(&grads).expect("a gradient for the weight")),
    ];
    if let Some(bias) = bias {
        all.push(to_vec(bias.grad(&grads).expect("a gradient for the bias")));
    }
    all
}

fn compare(case: &Case, device: &Device) -> Result<(), String> {
    let inputs = inputs(case, device);
    let ours = run(strata_kernels::conv2d, &inputs, case.options());
    let burns = run(burn::tensor::module::conv2d, &inputs, case.options());
    let names = ["output", "d x", "d weight", "d bias"];
    if ours.len() != burns.len() {
        return Err(format!("{} results against {}", ours.len(), burns.len()));
    }
    for (i, (got, want)) in ours.iter().zip(&burns).enumerate() {
        let tol = if i == 0 { 1e-5 } else { 1e-4 };
        check_close(names[i], got, want, tol * scale(want))?;
    }
    Ok(())
}

/// Stride 1, dilation 1 and one group, the shapes that run as shifted products (when the
/// padding is small beside the plane) and that the general cases above reach one time in a
/// hundred.
fn shifted_cases() -> impl Strategy<Value = Case> {
    (
        (1usize..5, 1usize..6, 1usize..6),
        ([4usize..14, 4usize..14], [1usize..5, 1usize..5]),
        [(0usize..3, 0usize..3), (0usize..3, 0usize..3)],
        (any::<bool>(), any::<bool>()),
    )
        .prop_map(
            |((batch, c, o), (input, kernel), padding, (bias, transposed_input))| Case {
                batch,
                groups: 1,
                c_per_group: c,
                o_per_group: o,
                input,
                kernel,
                stride: [1, 1],
                padding,
                dilation: [1, 1],
                bias,
                transposed_input,
            },
        )
        .prop_filter("the kernel fits", Case::fits)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn flex_kernels_match_burns_convolution(case in cases()) {
        let result = compare(&case, &Device::flex().autodiff());
        prop_assert!(result.is_ok(), "{case:?}: {}", result.unwrap_err());
    }

    #[test]
    fn shifted_products_match_burns_convolution(case in shifted_cases()) {
        let result = compare(&case, &Device::flex().autodiff());
        prop_assert!(result.is_ok(), "{case:?}: {}", result.unwrap_err());
    }
}

#[test]
fn resnet_sized_layers_match_burns_convolution() {
    // ResNet-20's second stage: 32 images of 16 channels at 32x32 -> 32 channels, stride 2.
    let case = Case {
        batch: 32,
        groups: 1,
        c_per_group: 16,
        o_per_group: 32,
        input: [32, 32],
        kernel: [3, 3],
        stride: [2, 2],
        padding: [(1, 1), (1, 1)],
        dilation: [1, 1],
        bias: false,
        transposed_input: false,
    };
    compare(&case, &Device::flex().autodiff()).unwrap();
    // Its stride-1 layers (shifted products over the channels-last grid): the first stage's
    // 16 -> 16 at 32x32 and the third's 64 -> 64 at 8x8.
    for (batch, channels, side) in [(6, 16, 32), (32, 64, 8)] {
        let case = Case {
            batch,
            c_per_group: channels,
            o_per_group: channels,
            input: [side, side],
            stride: [1, 1],
            ..case.clone()
        };
        compare(&case, &Device::flex().autodiff()).unwrap();
    }
}

#[test]
fn without_autodiff_the_forward_pass_matches() {
    let device = Device::flex();
    let x = Tensor::<4>::random([3, 4, 9, 7], Distribution::Default, &device);
    let weight = Tensor::<4>::random([6, 2, 3, 3], Distribution::Default, &device);
    let bias = Tensor::<1>::random([6], Distribution::Default, &device);
    let options = ConvOptions::new([2, 1], [1, 0], [1, 2], 2);
    let ours = strata_kernels::conv2d(
        x.clone(),
        weight.clone(),
        Some(bias.clone()),
        options.clone(),
    );
    let burns = burn::tensor::module::conv2d(x, weight, Some(bias), options);
    assert_eq!(ours.dims(), burns.dims());
    let want = to_vec(burns);
    check_close("output", &to_vec(ours), &want, 1e-5 * scale(&want)).unwrap();
}

#[test]
fn other_backends_get_burns_ops() {
    #[allow(deprecated)]
    let device = Device::ndarray().autodiff();
    let case = Case {
        batch: 2,
        groups: 1,
        c_per_group: 3,
        o_per_group: 4,
        input: [6, 5],
        kernel: [3, 3],
        stride: [1, 1],
        padding: [(1, 1), (1, 1)],
        dilation: [1, 1],
        bias: true,
        transposed_input: false,
    };
    compare(&case, &device).unwrap();
}

#[test]
fn a_layer_uses_its_padding_rule() {
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    let device = Device::flex();
    let x = Tensor::<4>::random([2, 3, 9, 8], Distribution::Default, &device);
    for padding in [
        PaddingConfig2d::Valid,
        PaddingConfig2d::Same,
        PaddingConfig2d::Explicit(2, 1, 0, 1),
    ] {
        let layer = Conv2dConfig::new([3, 5], [3, 2])
            .with_stride([2, 1])
            .with_padding(padding.clone())
            .init(&device);
        let ours = strata_kernels::conv2d_layer(&layer, x.clone());
        let burns = layer.forward(x.clone());
        assert_eq!(ours.dims(), burns.dims(), "{padding:?}");
        let want = to_vec(burns);
        check_close("output", &to_vec(ours), &want, 1e-5 * scale(&want)).unwrap();
    }
}

/// The batch-norm kernels, through autodiff, against burn's `batch_norm_train` (output, batch
/// statistics and the three gradients), for 2-D to 4-D inputs whose channels are spread out
/// (burn's f32 statistics are exact enough there to be a reference).
fn batch_norm_matches(dims: Vec<usize>, device: &Device) -> Result<(), String> {
    fn run<const D: usize>(
        dims: [usize; D],
        ours: bool,
        seed_tensors: &[Tensor<1>; 3],
    ) -> Vec<Vec<f32>> {
        let n: usize = dims.iter().product();
        let x = seed_tensors[0]
            .clone()
            .slice(0..n)
            .reshape(dims)
            .require_grad();
        let c = dims[1];
        let gamma = seed_tensors[1].clone().slice(0..c).require_grad();
        let beta = seed_tensors[2].clone().slice(0..c).require_grad();
        let (y, mean, var) = if ours {
            strata_kernels::batch_norm_train(x.clone(), gamma.clone(), beta.clone(), 1e-5)
        } else {
            let o = burn::tensor::module::batch_norm_train(
                x.clone(),
                gamma.clone(),
                beta.clone(),
                1e-5,
            );
            (o.output, o.mean, o.variance)
        };
        // A fixed, non-uniform upstream gradient: the values' own sine.
        let weights = y.clone().detach().sin();
        let grads = (y.clone() * weights).sum().backward();
        vec![
            to_vec(y.reshape([n])),
            to_vec(mean),
            to_vec(var),
            to_vec(x.grad(&grads).expect("d x").reshape([n])),
            to_vec(gamma.grad(&grads).expect("d gamma")),
            to_vec(beta.grad(&grads).expect("d beta")),
        ]
    }
    let total: usize = dims.iter().product();
    let u = Distribution::Uniform(-2.0, 3.0);
    let seeds = [
        Tensor::<1>::random([total], u, device),
        Tensor::<1>::random([dims[1]], Distribution::Uniform(0.5, 1.5), device),
        Tensor::<1>::random([dims[1]], u, device),
    ];
    let pair = |ours| match dims.len() {
        2 => run([dims[0], dims[1]], ours, &seeds),
        3 => run([dims[0], dims[1], dims[2]], ours, &seeds),
        _ => run([dims[0], dims[1], dims[2], dims[3]], ours, &seeds),
    };
    let (ours, burns) = (pair(true), pair(false));
    let names = ["output", "mean", "variance", "d x", "d gamma", "d beta"];
    for (i, (got, want)) in ours.iter().zip(&burns).enumerate() {
        let tol = if i < 3 { 1e-5 } else { 1e-4 };
        check_close(names[i], got, want, tol * scale(want))?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Against the definition computed in f64 (burn's own op, in f32, is itself off when a
    /// channel's values are nearly equal: two close values give a tiny variance).
    #[test]
    fn batch_norm_kernels_match_the_definition(
        batch in 2usize..6,
        channels in 1usize..5,
        plane in 1usize..7,
        seed in 0u64..1000,
        relu in any::<bool>(),
    ) {
        let result = batch_norm_against_f64(batch, channels, plane, seed, relu);
        // A pre-activation on the ReLU's kink has no one gradient: f32 and f64 may take
        // either side (three evenly spaced values put the middle one on its mean).
        prop_assume!(result != Ok(false), "a pre-activation on the ReLU's kink");
        prop_assert!(
            result.is_ok(),
            "{batch} {channels} {plane} relu {relu}: {}",
            result.unwrap_err()
        );
    }
}

/// The batch-norm slice kernels against batch norm computed from its definition in f64:
/// output, statistics and the three gradients of `sum(y * r)`; with `relu`, of
/// `sum(max(0, y) * r)`. `Ok(true)` when they agree; `Ok(false)`, nothing compared, when a
/// pre-activation lies within rounding of the ReLU's kink.
fn batch_norm_against_f64(
    batch: usize,
    channels: usize,
    plane: usize,
    seed: u64,
    relu: bool,
) -> Result<bool, String> {
    use strata_kernels::batch_norm::{Planes, backward, forward};
    let value = |i: usize, salt: u64| {
        (((i as u64 * 7919 + seed * 104729 + salt) % 1000) as f64 / 200.0 - 2.0) as f32
    };
    let p = Planes {
        batch,
        channels,
        plane,
    };
    let n = batch * channels * plane;
    let x: Vec<f32> = (0..n).map(|i| value(i, 1)).collect();
    let r: Vec<f32> = (0..n).map(|i| value(i, 2) / 3.0).collect();
    let gamma: Vec<f32> = (0..channels).map(|c| 1.0 + value(c, 3) / 4.0).collect();
    let beta: Vec<f32> = (0..channels).map(|c| value(c, 4)).collect();
    let eps = 1e-5f64;
    let at = |b: usize, c: usize, k: usize| (b * channels + c) * plane + k;
    let m = (batch * plane) as f64;
    let (mut y, mut dx) = (vec![0.0f32; n], vec![0.0f32; n]);
    let (mut mean, mut var, mut dgamma, mut dbeta) = (vec![], vec![], vec![], vec![]);
    for c in 0..channels {
        let idx: Vec<usize> = (0..batch)
            .flat_map(|b| (0..plane).map(move |k| at(b, c, k)))
            .collect();
        let mu = idx.iter().map(|&i| x[i] as f64).sum::<f64>() / m;
        let v = idx.iter().map(|&i| (x[i] as f64 - mu).powi(2)).sum::<f64>() / m;
        let rstd = 1.0 / (v + eps).sqrt();
        let xhat = |i: usize| (x[i] as f64 - mu) * rstd;
        let pre = |i: usize| gamma[c] as f64 * xhat(i) + beta[c] as f64;
        // The gradient reaching the batch norm: through the ReLU's mask when there is one.
        let g = |i: usize| {
            if relu && pre(i) <= 0.0 {
                0.0
            } else {
                r[i] as f64
            }
        };
        if relu && idx.iter().any(|&i| pre(i).abs() < 1e-5) {
            return Ok(false);
        }
        let db: f64 = idx.iter().map(|&i| g(i)).sum();
        let dg: f64 = idx.iter().map(|&i| g(i) * xhat(i)).sum();
        for &i in &idx {
            y[i] = (if relu { pre(i).max(0.0) } else { pre(i) }) as f32;
            dx[i] = (gamma[c] as f64 * rstd * (g(i) - db / m - xhat(i) * dg / m)) as f32;
        }
        mean.push(mu as f32);
        var.push(v as f32);
        dgamma.push(dg as f32);
        dbeta.push(db as f32);
    }
    let (got_y, got_mean, got_var) = forward(&x, &gamma, &beta, p, eps, relu);
    let (got_dx, got_dgamma, got_dbeta) = backward(
        &x,
        &gamma,
        &got_mean,
        &got_var,
        &r,
        p,
        eps,
        relu.then_some(&beta[..]),
    );
    let pairs = [
        ("output", got_y, y, 1e-5),
        ("mean", got_mean, mean, 1e-5),
        ("variance", got_var, var, 1e-5),
        ("d x", got_dx, dx, 1e-4),
        ("d gamma", got_dgamma, dgamma, 1e-4),
        ("d beta", got_dbeta, dbeta, 1e-4),
    ];
    for (name, got, want, tol) in pairs {
        check_close(name, &got, &want, tol * scale(&want))?;
    }
    Ok(true)
}

#[test]
fn a_small_batch_norm_matches_burns() {
    batch_norm_matches(vec![5, 3, 4, 2], &Device::flex().autodiff()).unwrap();
    batch_norm_matches(vec![7, 4], &Device::flex().autodiff()).unwrap();
}

#[test]
fn a_cnn_sized_batch_norm_matches_burns() {
    batch_norm_matches(vec![64, 32, 28, 28], &Device::flex().autodiff()).unwrap();
}

/// Batch norm with its ReLU fused against burn's batch norm then burn's ReLU: output, batch
/// statistics and the three gradients, on flex (our kernels) and ndarray (the trait's default
/// bodies), a channel's values spread over both sides of zero.
#[test]
#[allow(deprecated)] // ndarray: still one of Strata's backends
fn fused_relu_matches_relu_after_batch_norm() {
    use burn::tensor::activation::relu;
    for device in [Device::flex().autodiff(), Device::ndarray().autodiff()] {
        let dims = [8, 5, 6, 7];
        let x0 = Tensor::<4>::random(dims, Distribution::Normal(0.3, 1.5), &device);
        let g0 = Tensor::<1>::random([5], Distribution::Uniform(0.5, 1.5), &device);
        let b0 = Tensor::<1>::random([5], Distribution::Uniform(-1.0, 1.0), &device);
        let r = x0.clone().detach().cos();
        let run = |fused: bool| {
            let (x, g, b) = (
                x0.clone().require_grad(),
                g0.clone().require_grad(),
                b0.clone().require_grad(),
            );
            let (y, mean, var) = if fused {
                strata_kernels::batch_norm_relu_train(x.clone(), g.clone(), b.clone(), 1e-5)
            } else {
                let o =
                    burn::tensor::module::batch_norm_train(x.clone(), g.clone(), b.clone(), 1e-5);
                (relu(o.output), o.mean, o.variance)
            };
            let grads = (y.clone() * r.clone()).sum().backward();
            [
                to_vec(y),
                to_vec(mean),
                to_vec(var),
                to_vec(x.grad(&grads).unwrap()),
                to_vec(g.grad(&grads).unwrap()),
                to_vec(b.grad(&grads).unwrap()),
            ]
        };
        let (ours, burns) = (run(true), run(false));
        assert!(ours[0].contains(&0.0) && ours[0].iter().any(|&v| v > 0.0));
        let names = ["output", "mean", "variance", "d x", "d gamma", "d beta"];
        for (i, (got, want)) in ours.iter().zip(&burns).enumerate() {
            let tol = if i < 3 { 1e-5 } else { 1e-4 };
            check_close(names[i], got, want, tol * scale(want))
                .unwrap_or_else(|e| panic!("{device:?}: {e}"));
        }
    }
}

/// Batch norm on given statistics (inference) against burn's `batch_norm`: on flex (our
/// kernel), and under autodiff (burn's op) with the input's gradient.
#[test]
fn inference_batch_norm_matches_burns() {
    for dims in [[64usize, 32, 14, 14], [3, 5, 1, 7]] {
        let device = Device::flex();
        let c = dims[1];
        let x = Tensor::<4>::random(dims, Distribution::Normal(0.5, 2.0), &device);
        let per_channel =
            |lo: f64, hi: f64| Tensor::<1>::random([c], Distribution::Uniform(lo, hi), &device);
        let (gamma, beta, mean) = (
            per_channel(0.5, 2.0),
            per_channel(-1.0, 1.0),
            per_channel(-1.0, 1.0),
        );
        let var = per_channel(0.01, 3.0);
        // The op normalises its input's buffer in place when it holds the only reference: a
        // shared input (`x` is still held here) and a strided view are left alone.
        let before = to_vec(x.clone());
        let ours = strata_kernels::batch_norm(
            x.clone(),
            gamma.clone(),
            beta.clone(),
            mean.clone(),
            var.clone(),
            1e-5,
        );
        let burns = burn::tensor::module::batch_norm(
            x.clone(),
            gamma.clone(),
            beta.clone(),
            mean.clone(),
            var.clone(),
            1e-5,
        );
        let want = to_vec(burns);
        check_close("output", &to_vec(ours), &want, 1e-5 * scale(&want)).unwrap();
        let view = x.clone().swap_dims(2, 3);
        let stats = [&gamma, &beta, &mean, &var].map(|t| t.clone());
        let [g, b, m, v] = stats.clone();
        let ours_t = strata_kernels::batch_norm(view.clone(), g, b, m, v, 1e-5);
        let [g, b, m, v] = stats;
        let want_t = to_vec(burn::tensor::module::batch_norm(view, g, b, m, v, 1e-5));
        check_close("strided", &to_vec(ours_t), &want_t, 1e-5 * scale(&want_t)).unwrap();
        assert_eq!(to_vec(x.clone()), before, "the shared input was changed");
        // Under autodiff the input's gradient is gamma / sqrt(var + eps) per channel.
        let ad = device.clone().autodiff();
        let xa = Tensor::<4>::from_data(x.into_data(), &ad).require_grad();
        let on = |t: &Tensor<1>| Tensor::<1>::from_data(t.to_data(), &ad);
        let y = strata_kernels::batch_norm(
            xa.clone(),
            on(&gamma),
            on(&beta),
            on(&mean),
            on(&var),
            1e-5,
        );
        let grads = y.sum().backward();
        let dx = to_vec(xa.grad(&grads).expect("a gradient for x"));
        let (g, v) = (to_vec(gamma), to_vec(var));
        let plane = dims[2] * dims[3];
        let want: Vec<f32> = (0..dx.len())
            .map(|i| g[(i / plane) % c] / (v[(i / plane) % c] + 1e-5).sqrt())
            .collect();
        check_close("d x", &dx, &want, 1e-4 * scale(&want)).unwrap();
    }
}

/// burn's `BatchNorm` layer through our kernels against its own `forward`: training output,
/// gradients, the running statistics after two steps, then the evaluation output.
#[test]
fn a_batch_norm_layer_steps_as_burns() {
    use burn::module::Module;
    use burn::nn::BatchNormConfig;
    let device = Device::flex().autodiff();
    let ours = BatchNormConfig::new(6).with_momentum(0.3).init(&device);
    let burns = ours.clone();
    for step in 0..2 {
        let x = Tensor::<4>::random(
            [4, 6, 5, 3],
            Distribution::Normal(step as f64, 2.0),
            &device,
        )
        .require_grad();
        // The second step through the fused ReLU.
        let (y_ours, y_burns) = if step == 0 {
            (
                strata_kernels::batch_norm_layer(&ours, x.clone()),
                burns.forward(x.clone()),
            )
        } else {
            (
                strata_kernels::batch_norm_relu_layer(&ours, x.clone()),
                burn::tensor::activation::relu(burns.forward(x.clone())),
            )
        };
        let want = to_vec(y_burns.clone());
        check_close(
            "output",
            &to_vec(y_ours.clone()),
            &want,
            1e-5 * scale(&want),
        )
        .unwrap();
        let r = Tensor::<4>::random([4, 6, 5, 3], Distribution::Default, &device);
        let g_ours = (y_ours * r.clone()).sum().backward();
        let g_burns = (y_burns * r).sum().backward();
        let dx = to_vec(x.grad(&g_burns).unwrap());
        check_close(
            "d x",
            &to_vec(x.grad(&g_ours).unwrap()),
            &dx,
            1e-4 * scale(&dx),
        )
        .unwrap();
        let dg = to_vec(burns.gamma.grad(&g_burns).unwrap());
        check_close(
            "d gamma",
            &to_vec(ours.gamma.grad(&g_ours).unwrap()),
            &dg,
            1e-4 * scale(&dg),
        )
        .unwrap();
    }
    for (name, a, b) in [
        (
            "running mean",
            ours.running_mean.value(),
            burns.running_mean.value(),
        ),
        (
            "running var",
            ours.running_var.value(),
            burns.running_var.value(),
        ),
    ] {
        let want = to_vec(b);
        check_close(name, &to_vec(a), &want, 1e-5 * scale(&want)).unwrap();
    }
    let eval = Device::flex();
    let (ours, burns) = (ours.valid(), burns.valid());
    let x = Tensor::<4>::random([2, 6, 4, 4], Distribution::Normal(1.0, 3.0), &eval);
    let want = to_vec(burns.forward(x.clone()));
    check_close(
        "evaluation output",
        &to_vec(strata_kernels::batch_norm_layer(&ours, x)),
        &want,
        1e-5 * scale(&want),
    )
    .unwrap();
}

/// Max pooling against burn's `max_pool2d`: output and input gradient, over random windows,
/// strides, paddings (at most half the window, as PyTorch requires) and dilations.
fn max_pool_matches(
    dims: [usize; 4],
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    device: &Device,
) -> Result<(), String> {
    use burn::backend::ops::MaxPoolOptions;
    let options = MaxPoolOptions::new(kernel)
        .with_stride(stride)
        .with_padding(padding)
        .with_dilation(dilation);
    let x = Tensor::<4>::random(dims, Distribution::Uniform(-1.0, 1.0), device);
    let run = |ours: bool| {
        let x = x.clone().require_grad();
        let y = if ours {
            strata_kernels::max_pool2d(x.clone(), options.clone())
        } else {
            burn::tensor::module::max_pool2d(x.clone(), options.clone())
        };
        let weights = y.clone().detach().cos();
        let grads = (y.clone() * weights).sum().backward();
        (to_vec(y), to_vec(x.grad(&grads).expect("d x")))
    };
    let ((y, dx), (y_want, dx_want)) = (run(true), run(false));
    check_close("output", &y, &y_want, 1e-6)?;
    check_close("d x", &dx, &dx_want, 1e-6)?;
    Ok(())
}

/// Max pooling in inference (flex without autodiff: the values-only kernel) against burn's.
fn max_pool_inference_matches(
    dims: [usize; 4],
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
) -> Result<(), String> {
    use burn::backend::ops::MaxPoolOptions;
    let device = Device::flex();
    let options = MaxPoolOptions::new(kernel)
        .with_stride(stride)
        .with_padding(padding)
        .with_dilation(dilation);
    let x = Tensor::<4>::random(dims, Distribution::Uniform(-1.0, 1.0), &device);
    let y = to_vec(strata_kernels::max_pool2d(x.clone(), options.clone()));
    let want = to_vec(burn::tensor::module::max_pool2d(x, options));
    check_close("inference output", &y, &want, 0.0).map(|_| ())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn flex_max_pool_matches_burns(
        dims in [1usize..4, 1usize..4, 4usize..10, 4usize..10],
        kernel in [1usize..4, 1usize..4],
        stride in [1usize..4, 1usize..4],
        dilation in [1usize..3, 1usize..3],
        pad in [0usize..2, 0usize..2],
    ) {
        let padding = [0, 1].map(|d| pad[d].min(kernel[d] / 2));
        let result = max_pool_matches(dims, kernel, stride, padding, dilation, &Device::flex().autodiff())
            .and_then(|()| max_pool_inference_matches(dims, kernel, stride, padding, dilation));
        prop_assert!(result.is_ok(), "{dims:?} {kernel:?} {stride:?} {padding:?} {dilation:?}: {}", result.unwrap_err());
    }
}

#[test]
fn a_cnn_sized_max_pool_matches_burns() {
    max_pool_matches(
        [64, 32, 28, 28],
        [2, 2],
        [2, 2],
        [0, 0],
        [1, 1],
        &Device::flex().autodiff(),
    )
    .unwrap();
    max_pool_matches(
        [32, 64, 16, 16],
        [3, 3],
        [2, 2],
        [1, 1],
        [1, 1],
        &Device::flex().autodiff(),
    )
    .unwrap();
}
