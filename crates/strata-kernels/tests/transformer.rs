//! The transformer kernels against burn's own ops on flex, through autodiff: linear layers, GELU, the
//! attention weights and cross-entropy (outputs within 1e-5, every gradient within 1e-4 of its
//! scale) over random shapes, masks and seeds; layer norm, ours and burn's, against exact f64
//! values within a bound that follows each row's conditioning; a whole `TransformerEncoder`,
//! pre- and post-norm, against burn's forward and backward; and dropout's mask by its
//! properties (burn draws its masks from another generator, so no element-wise comparison is
//! possible).

use burn::nn::DropoutConfig;
use burn::nn::activation::ActivationConfig;
use burn::nn::attention::generate_autoregressive_mask;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::transformer::{
    TransformerDecoderConfig, TransformerDecoderInput, TransformerEncoderConfig,
    TransformerEncoderInput,
};
use burn::tensor::{Bool, Device, Distribution, Int, Tensor, TensorData};
use proptest::prelude::*;
use std::sync::{Mutex, MutexGuard};
use strata_tensor::compare::check_close;
use strata_tensor::convert::to_vec;

/// flex's autodiff device, held alone: its random stream is shared by every test thread, so a
/// test that seeds it (and every draw that would move a seeded stream) takes this lock first.
struct Flex {
    device: Device,
    _stream: MutexGuard<'static, ()>,
}

impl std::ops::Deref for Flex {
    type Target = Device;
    fn deref(&self) -> &Device {
        &self.device
    }
}

fn device() -> Flex {
    static STREAM: Mutex<()> = Mutex::new(());
    Flex {
        device: Device::flex().autodiff(),
        // A failed test poisons the lock; the stream itself is still fine.
        _stream: STREAM.lock().unwrap_or_else(|e| e.into_inner()),
    }
}

/// The largest magnitude of `values`, at least 1 (tolerances are relative above 1).
fn scale(values: &[f32]) -> f32 {
    values.iter().fold(1.0f32, |m, v| m.max(v.abs()))
}

/// Compares result lists: the first (the output) within 1e-5, the rest (gradients) within
/// 1e-4, each relative to its scale.
fn compare(names: &[&str], ours: &[Vec<f32>], burns: &[Vec<f32>]) -> Result<(), String> {
    if ours.len() != burns.len() || ours.len() != names.len() {
        return Err(format!("{} results against {}", ours.len(), burns.len()));
    }
    for (i, (got, want)) in ours.iter().zip(burns).enumerate() {
        let tol = if i == 0 { 1e-5 } else { 1e-4 };
        check_close(names[i], got, want, tol * scale(want))?;
    }
    Ok(())
}

fn random<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.5), device)
}

type Norm = fn(Tensor<3>, Tensor<1>, Option<Tensor<1>>, f64) -> Tensor<3>;

fn run_layer_norm(
    norm: Norm,
    x: &Tensor<3>,
    gamma: &Tensor<1>,
    beta: Option<&Tensor<1>>,
    up: &Tensor<3>,
) -> Vec<Vec<f32>> {
    let x = x.clone().require_grad();
    let gamma = gamma.clone().require_grad();
    let beta = beta.map(|b| b.clone().require_grad());
    let y = norm(x.clone(), gamma.clone(), beta.clone(), 1e-5);
    let grads = (y.clone() * up.clone()).sum().backward();
    let mut all = vec![
        to_vec(y),
        to_vec(x.grad(&grads).expect("d x")),
        to_vec(gamma.grad(&grads).expect("d gamma")),
    ];
    if let Some(b) = beta {
        all.push(to_vec(b.grad(&grads).expect("d beta")));
    }
    all
}

/// Layer norm (epsilon 1e-5) and its gradients for the output gradient `up`, in f64: each
/// result's exact value and the error that f32 arithmetic may make in it.
///
/// The bound follows the row's conditioning: f32 loses `u (|x| + |mean|)` in `x - mean`, which
/// the normalisation divides by the row's deviation, so a row of nearly equal values (two
/// elements a hair apart) has a far larger error in both burn's and our f32 results than a
/// well-spread one. `kappa = 1 + (max |x| + |mean|) rstd` is that factor; every bound is
/// `1e-5 kappa` (about 80 units of f32 rounding) times the size of the terms the result is
/// made of, so a wrong formula (errors the size of the terms) still fails by far.
struct LayerNormReference {
    values: Vec<Vec<f64>>,
    bounds: Vec<Vec<f64>>,
}

fn layer_norm_reference(x: &[f32], g: &[f32], b: Option<&[f32]>, up: &[f32]) -> LayerNormReference {
    const REL: f64 = 1e-5;
    let d = g.len();
    let rows = x.len() / d;
    let f = |v: &[f32]| v.iter().map(|&v| f64::from(v)).collect::<Vec<_>>();
    let (x, g, up) = (f(x), f(g), f(up));
    let b = b.map(f);
    let mut values = vec![
        vec![0.0; rows * d],
        vec![0.0; rows * d],
        vec![0.0; d],
        vec![0.0; d],
    ];
    let mut bounds = values.clone();
    for r in 0..rows {
        let span = r * d..(r + 1) * d;
        let (xr, ur) = (&x[span.clone()], &up[span]);
        let mean = xr.iter().sum::<f64>() / d as f64;
        let var = xr.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d as f64;
        let rstd = 1.0 / (var + 1e-5).sqrt();
        let kappa = 1.0 + (xr.iter().fold(0.0f64, |m, v| m.max(v.abs())) + mean.abs()) * rstd;
        let xh: Vec<f64> = xr.iter().map(|v| (v - mean) * rstd).collect();
        let gu: Vec<f64> = (0..d).map(|j| g[j] * ur[j]).collect();
        let m1 = gu.iter().sum::<f64>() / d as f64;
        let m2 = (0..d).map(|j| gu[j] * xh[j]).sum::<f64>() / d as f64;
        // The sizes of the sums behind the two means.
        let a1 = gu.iter().map(|v| v.abs()).sum::<f64>() / d as f64;
        let a2 = (0..d).map(|j| (gu[j] * xh[j]).abs()).sum::<f64>() / d as f64;
        for j in 0..d {
            let beta = b.as_ref().map_or(0.0, |b| b[j]);
            values[0][r * d + j] = g[j] * xh[j] + beta;
            bounds[0][r * d + j] = REL * (kappa * g[j].abs() + beta.abs());
            values[1][r * d + j] = rstd * (gu[j] - m1 - xh[j] * m2);
            bounds[1][r * d + j] = REL * kappa * rstd * (gu[j].abs() + a1 + xh[j].abs() * a2);
            values[2][j] += ur[j] * xh[j];
            bounds[2][j] += REL * kappa * ur[j].abs() * (1.0 + xh[j].abs());
            values[3][j] += ur[j];
            bounds[3][j] += REL * ur[j].abs();
        }
    }
    if b.is_none() {
        values.pop();
        bounds.pop();
    }
    LayerNormReference { values, bounds }
}

/// Each of `got` within its own bound of the exact `want` (lengths must agree; NaN fails).
fn check_within(what: &str, got: &[f32], want: &[f64], bound: &[f64]) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!(
            "{what}: {} values against {}",
            got.len(),
            want.len()
        ));
    }
    for (i, ((&g, &w), &e)) in got.iter().zip(want).zip(bound).enumerate() {
        let err = (f64::from(g) - w).abs();
        if err.is_nan() || err > e {
            return Err(format!(
                "{what}: |{g} - {w}| = {err:e} > {e:e} at index {i}"
            ));
        }
    }
    Ok(())
}

/// Our layer norm and burn's, forward and backward, each against the exact values within the
/// f32 error bound of `layer_norm_reference`.
fn layer_norm_case(b: usize, t: usize, d: usize, bias: bool, seed: u64) -> Result<(), String> {
    let dev = device();
    dev.seed(seed);
    let x = random([b, t, d], &dev).add_scalar(3.0);
    let gamma = random([d], &dev);
    let beta = random([d], &dev);
    let up = random([b, t, d], &dev);
    let beta = bias.then_some(&beta);
    let exact = layer_norm_reference(
        &to_vec(x.clone()),
        &to_vec(gamma.clone()),
        beta.map(|b| to_vec(b.clone())).as_deref(),
        &to_vec(up.clone()),
    );
    let names = ["output", "d x", "d gamma", "d beta"];
    for (who, norm) in [
        ("ours", strata_kernels::layer_norm as Norm),
        ("burn's", burn::tensor::module::layer_norm),
    ] {
        let got = run_layer_norm(norm, &x, &gamma, beta, &up);
        if got.len() != exact.values.len() {
            return Err(format!("{who}: {} results", got.len()));
        }
        for (k, got) in got.iter().enumerate() {
            check_within(
                &format!("{who} {}", names[k]),
                got,
                &exact.values[k],
                &exact.bounds[k],
            )?;
        }
    }
    Ok(())
}

fn gelu_case(n: usize, spread: f32, seed: u64) -> Result<(), String> {
    let dev = device();
    dev.seed(seed);
    let x = random([n, 3, 2], &dev).mul_scalar(spread);
    let up = random([n, 3, 2], &dev);
    let run = |f: fn(Tensor<3>) -> Tensor<3>| {
        let x = x.clone().require_grad();
        let y = f(x.clone());
        let grads = (y.clone() * up.clone()).sum().backward();
        vec![to_vec(y), to_vec(x.grad(&grads).expect("d x"))]
    };
    let ours = run(strata_kernels::gelu);
    let burns = run(burn::tensor::activation::gelu);
    compare(&["output", "d x"], &ours, &burns)
}

/// The fused bias and GELU against burn's `gelu(x + bias)`: output and the gradients of `x`
/// and `bias`, on `[rows, 3, cols]` (rows past one parallel job of the kernel).
fn bias_gelu_case(rows: usize, cols: usize, spread: f32, seed: u64) -> Result<(), String> {
    let dev = device();
    dev.seed(seed);
    let x = random([rows, 3, cols], &dev).mul_scalar(spread);
    let bias = random([cols], &dev);
    let up = random([rows, 3, cols], &dev);
    let run = |ours: bool| {
        let (x, bias) = (x.clone().require_grad(), bias.clone().require_grad());
        let y = if ours {
            strata_kernels::bias_gelu(x.clone(), bias.clone())
        } else {
            burn::tensor::activation::gelu(x.clone() + bias.clone().unsqueeze())
        };
        let grads = (y.clone() * up.clone()).sum().backward();
        vec![
            to_vec(y),
            to_vec(x.grad(&grads).expect("d x")),
            to_vec(bias.grad(&grads).expect("d bias")),
        ]
    };
    compare(&["output", "d x", "d bias"], &run(true), &run(false))
}

/// A linear layer against burn's `linear`: output and the gradients of whichever of `x`,
/// the weight and the bias are tracked, on `[rows, 2, d_in]`, with the weight stored
/// transposed (a strided view, as burn's column layout gives) when `transposed`.
fn linear_case(
    rows: usize,
    d_in: usize,
    d_out: usize,
    tracked: [bool; 3],
    transposed: bool,
    seed: u64,
) -> Result<(), String> {
    let dev = device();
    dev.seed(seed);
    let x = random([rows, 2, d_in], &dev);
    let weight = if transposed {
        random([d_out, d_in], &dev).transpose()
    } else {
        random([d_in, d_out], &dev)
    };
    let bias = random([d_out], &dev);
    let up = random([rows, 2, d_out], &dev);
    let run = |ours: bool| {
        let track = |t: &Tensor<3>, on: bool| {
            if on {
                t.clone().require_grad()
            } else {
                t.clone()
            }
        };
        let x = track(&x, tracked[0]);
        let weight = if tracked[1] {
            weight.clone().require_grad()
        } else {
            weight.clone()
        };
        let bias = if tracked[2] {
            bias.clone().require_grad()
        } else {
            bias.clone()
        };
        let y = if ours {
            strata_kernels::linear(x.clone(), weight.clone(), Some(bias.clone()))
        } else {
            burn::tensor::module::linear(x.clone(), weight.clone(), Some(bias.clone()))
        };
        let grads = (y.clone() * up.clone()).sum().backward();
        let mut out = vec![to_vec(y)];
        if tracked[0] {
            out.push(to_vec(x.grad(&grads).expect("d x")));
        }
        if tracked[1] {
            out.push(to_vec(weight.grad(&grads).expect("d weight")));
        }
        if tracked[2] {
            out.push(to_vec(bias.grad(&grads).expect("d bias")));
        }
        out
    };
    let names: Vec<&str> = ["output", "d x", "d weight", "d bias"]
        .into_iter()
        .zip([true, tracked[0], tracked[1], tracked[2]])
        .filter_map(|(n, on)| on.then_some(n))
        .collect();
    compare(&names, &run(true), &run(false))
}

/// Which keys a query may not see: none, padding, causal, or both.
#[derive(Clone, Copy, Debug)]
enum Masks {
    None,
    Pad,
    Causal,
    Both,
}

fn masks(
    kind: Masks,
    b: usize,
    t: usize,
    device: &Device,
) -> (Option<Tensor<2, Bool>>, Option<Tensor<3, Bool>>) {
    let (pad, attn) = masks_for(kind, b, t, t, device);
    let causal = generate_autoregressive_mask(b, t, device);
    assert!(
        attn.as_ref()
            .is_none_or(|a| a.clone().equal(causal).all().into_scalar::<bool>())
    );
    (pad, attn)
}

/// Masks for `tq` queries over `tk` keys: sequence `i` has its last `i % tk` keys padded (never
/// all of them); causally, the queries are the last `tq` positions, so key `j` is hidden from
/// query `i` when `j > i + tk - tq`.
fn masks_for(
    kind: Masks,
    b: usize,
    tq: usize,
    tk: usize,
    device: &Device,
) -> (Option<Tensor<2, Bool>>, Option<Tensor<3, Bool>>) {
    let pad: Vec<bool> = (0..b * tk)
        .map(|k| {
            let (i, j) = (k / tk, k % tk);
            j >= tk - (i % tk)
        })
        .collect();
    let pad = Tensor::<2, Bool>::from_data(TensorData::new(pad, [b, tk]), device);
    let causal: Vec<bool> = (0..b * tq * tk)
        .map(|n| {
            let (i, j) = ((n / tk) % tq, n % tk);
            j + tq > i + tk
        })
        .collect();
    let causal = Tensor::<3, Bool>::from_data(TensorData::new(causal, [b, tq, tk]), device);
    match kind {
        Masks::None => (None, None),
        Masks::Pad => (Some(pad), None),
        Masks::Causal => (None, Some(causal)),
        Masks::Both => (Some(pad), Some(causal)),
    }
}

/// burn's `MultiHeadAttention` composition of the weights (scale, mask fill, softmax).
fn burns_weights(
    scores: Tensor<4>,
    hidden: Option<Tensor<3, Bool>>,
    scale: f32,
    fill: f32,
) -> Tensor<4> {
    let mut s = scores.div_scalar(1.0 / scale);
    if let Some(h) = hidden {
        let [b, q, k] = h.dims();
        s = s.mask_fill(h.reshape([b, 1, q, k]), fill);
    }
    burn::tensor::activation::softmax(s, 3)
}

fn combined(
    pad: Option<Tensor<2, Bool>>,
    attn: Option<Tensor<3, Bool>>,
    t: usize,
) -> Option<Tensor<3, Bool>> {
    let pad = pad.map(|p| {
        let [b, k] = p.dims();
        p.reshape([b, 1, k]).repeat_dim(1, t)
    });
    match (pad, attn) {
        (Some(p), Some(a)) => Some(p.bool_or(a)),
        (p, a) => p.or(a),
    }
}

fn attention_case(b: usize, h: usize, t: usize, kind: Masks, seed: u64) -> Result<(), String> {
    let dev = device();
    dev.seed(seed);
    let scores = random([b, h, t, t], &dev).mul_scalar(3.0);
    let up = random([b, h, t, t], &dev);
    let (pad, attn) = masks(kind, b, t, &dev);
    let hidden = combined(pad, attn, t);
    let scale = 0.3;
    let run = |ours: bool| {
        let s = scores.clone().require_grad();
        let w = if ours {
            strata_kernels::attention_weights(s.clone(), hidden.clone(), scale, -1.0e4, 0.0)
        } else {
            burns_weights(s.clone(), hidden.clone(), scale, -1.0e4)
        };
        let grads = (w.clone() * up.clone()).sum().backward();
        vec![to_vec(w), to_vec(s.grad(&grads).expect("d scores"))]
    };
    compare(&["weights", "d scores"], &run(true), &run(false))
}

fn cross_entropy_case(n: usize, c: usize, seed: u64) -> Result<(), String> {
    let dev = device();
    dev.seed(seed);
    let logits = random([n, c], &dev).mul_scalar(4.0);
    let targets: Vec<i64> = (0..n).map(|i| ((i * 7 + 3) % c) as i64).collect();
    let targets = Tensor::<1, Int>::from_data(TensorData::new(targets, [n]), &*dev);
    let run = |ours: bool| {
        let x = logits.clone().require_grad();
        let loss = if ours {
            strata_kernels::cross_entropy(x.clone(), targets.clone())
        } else {
            CrossEntropyLossConfig::new()
                .init(&dev)
                .forward(x.clone(), targets.clone())
        };
        let grads = loss.clone().mul_scalar(2.5).backward();
        vec![to_vec(loss), to_vec(x.grad(&grads).expect("d logits"))]
    };
    compare(&["loss", "d logits"], &run(true), &run(false))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn layer_norm_matches_burns_and_the_exact_values(
        b in 1usize..4,
        t in 1usize..9,
        d in 1usize..70,
        bias in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let r = layer_norm_case(b, t, d, bias, seed);
        prop_assert!(r.is_ok(), "{b}x{t}x{d} bias {bias} seed {seed}: {}", r.unwrap_err());
    }

    #[test]
    fn linear_matches_burns(
        rows in 1usize..90,
        d_in in 1usize..70,
        d_out in 1usize..300,
        tracked in prop::sample::select(vec![
            [true, true, true], [false, true, true], [true, false, false], [true, false, true],
        ]),
        transposed in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let r = linear_case(rows, d_in, d_out, tracked, transposed, seed);
        prop_assert!(
            r.is_ok(),
            "{rows}x2x{d_in} -> {d_out} tracked {tracked:?} t {transposed} seed {seed}: {}",
            r.unwrap_err()
        );
    }

    #[test]
    fn bias_gelu_matches_burns(
        rows in 1usize..400,
        cols in 1usize..80,
        spread in 0.1f32..6.0,
        seed in any::<u64>(),
    ) {
        let r = bias_gelu_case(rows, cols, spread, seed);
        prop_assert!(r.is_ok(), "{rows}x{cols} spread {spread} seed {seed}: {}", r.unwrap_err());
    }

    #[test]
    fn gelu_matches_burns(n in 1usize..3000, spread in 0.1f32..6.0, seed in any::<u64>()) {
        let r = gelu_case(n, spread, seed);
        prop_assert!(r.is_ok(), "{n} spread {spread} seed {seed}: {}", r.unwrap_err());
    }

    #[test]
    fn attention_weights_match_burns(
        b in 1usize..4,
        h in 1usize..4,
        t in 1usize..40,
        kind in 0usize..4,
        seed in any::<u64>(),
    ) {
        let kind = [Masks::None, Masks::Pad, Masks::Causal, Masks::Both][kind];
        let r = attention_case(b, h, t, kind, seed);
        prop_assert!(r.is_ok(), "{b}x{h}x{t} {kind:?} seed {seed}: {}", r.unwrap_err());
    }

    #[test]
    fn cross_entropy_matches_burns(n in 1usize..300, c in 1usize..100, seed in any::<u64>()) {
        let r = cross_entropy_case(n, c, seed);
        prop_assert!(r.is_ok(), "{n}x{c} seed {seed}: {}", r.unwrap_err());
    }
}

/// Multi-head attention composed of burn's ops, with the weights from `weights`.
fn composed_attention(
    q: Tensor<3>,
    k: Tensor<3>,
    v: Tensor<3>,
    heads: usize,
    weights: impl Fn(Tensor<4>) -> Tensor<4>,
) -> Tensor<3> {
    let [b, t, d] = q.dims();
    let split = |x: Tensor<3>| {
        let time = x.dims()[1];
        x.reshape([b, time, heads, d / heads]).swap_dims(1, 2)
    };
    let w = weights(split(q).matmul(split(k).transpose()));
    w.matmul(split(v)).swap_dims(1, 2).reshape([b, t, d])
}

/// The fused attention against `reference` on the same inputs: output and the gradients of
/// q, k and v, for `[batch, queries, keys, heads, head size]`. The inputs come from `seed`;
/// the device is seeded the same before each run, so dropout draws the same seed.
fn fused_attention_case(
    [b, tq, tk, heads, d_head]: [usize; 5],
    kind: Masks,
    prob: f64,
    seed: u64,
    reference: &dyn Fn(Tensor<3>, Tensor<3>, Tensor<3>, Option<Tensor<3, Bool>>) -> Tensor<3>,
) -> Result<(), String> {
    let dev = device();
    dev.seed(seed);
    let d = heads * d_head;
    let [q, up] = [0, 1].map(|_| random([b, tq, d], &dev));
    let [k, v] = [0, 1].map(|_| random([b, tk, d], &dev));
    let (pad, attn) = masks_for(kind, b, tq, tk, &dev);
    let hidden = combined(pad, attn, tq);
    let scale = 1.0 / (d_head as f32).sqrt();
    let run = |ours: bool| {
        let [q, k, v] = [&q, &k, &v].map(|x| x.clone().require_grad());
        dev.seed(17);
        let y = if ours {
            strata_kernels::attention(
                q.clone(),
                k.clone(),
                v.clone(),
                hidden.clone(),
                heads,
                scale,
                -1.0e4,
                prob,
            )
        } else {
            reference(q.clone(), k.clone(), v.clone(), hidden.clone())
        };
        let grads = (y.clone() * up.clone()).sum().backward();
        vec![
            to_vec(y),
            to_vec(q.grad(&grads).expect("d q")),
            to_vec(k.grad(&grads).expect("d k")),
            to_vec(v.grad(&grads).expect("d v")),
        ]
    };
    compare(&["context", "d q", "d k", "d v"], &run(true), &run(false))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn fused_attention_matches_burns_composition(
        b in 1usize..4,
        // Past two blocks of queries (`QUERY_BLOCK`, 64).
        tq in 1usize..136,
        // As many keys as queries (self-attention) half the time.
        tk in prop_oneof![Just(0usize), 1usize..136],
        heads in 1usize..4,
        d_head in 1usize..9,
        kind in 0usize..4,
        seed in any::<u64>(),
    ) {
        let tk = if tk == 0 { tq } else { tk };
        let kind = [Masks::None, Masks::Pad, Masks::Causal, Masks::Both][kind];
        let scale = 1.0 / (d_head as f32).sqrt();
        let reference = |q, k, v, hidden: Option<Tensor<3, Bool>>| {
            composed_attention(q, k, v, heads, |s| burns_weights(s, hidden.clone(), scale, -1.0e4))
        };
        let r = fused_attention_case([b, tq, tk, heads, d_head], kind, 0.0, seed, &reference);
        prop_assert!(
            r.is_ok(),
            "{b}x{tq}x{tk} {heads} heads of {d_head} {kind:?} seed {seed}: {}",
            r.unwrap_err()
        );
    }
}

#[test]
fn fused_attention_with_dropout_matches_the_weights_kernel_with_the_same_seed() {
    let (heads, d_head, prob) = (3, 5, 0.3);
    let scale = 1.0 / (d_head as f32).sqrt();
    for kind in [Masks::Causal, Masks::Both, Masks::None] {
        let reference = |q, k, v, hidden: Option<Tensor<3, Bool>>| {
            composed_attention(q, k, v, heads, |s| {
                strata_kernels::attention_weights(s, hidden.clone(), scale, -1.0e4, prob)
            })
        };
        for tk in [75, 30] {
            let r = fused_attention_case([2, 75, tk, heads, d_head], kind, prob, 7, &reference);
            assert!(r.is_ok(), "{kind:?} {tk} keys: {}", r.unwrap_err());
        }
    }
}

/// The feed-forward activation of a test layer: the exact GELU or ReLU.
fn activation(gelu: bool) -> ActivationConfig {
    if gelu {
        ActivationConfig::Gelu
    } else {
        ActivationConfig::Relu
    }
}

/// Output, input gradient and a sample of parameter gradients of an encoder on `x`.
fn encoder_case(norm_first: bool, gelu: bool, kind: Masks, layers: usize) -> Result<(), String> {
    let dev = device();
    dev.seed(3);
    let (b, t, d, heads, ff) = (3, 7, 16, 4, 24);
    let encoder = TransformerEncoderConfig::new(d, ff, heads, layers)
        .with_dropout(0.0)
        .with_norm_first(norm_first)
        .with_activation(activation(gelu))
        .init(&dev);
    let x = random([b, t, d], &dev);
    let up = random([b, t, d], &dev);
    let (pad, attn) = masks(kind, b, t, &dev);
    let run = |ours: bool| {
        let x = x.clone().require_grad();
        let y = if ours {
            strata_kernels::transformer_encoder(
                &encoder,
                x.clone(),
                pad.clone(),
                attn.clone(),
                1e-5,
            )
        } else {
            let mut input = TransformerEncoderInput::new(x.clone());
            if let Some(m) = pad.clone() {
                input = input.mask_pad(m);
            }
            if let Some(m) = attn.clone() {
                input = input.mask_attn(m);
            }
            encoder.forward(input)
        };
        let grads = (y.clone() * up.clone()).sum().backward();
        let first = &encoder.layers[0];
        let last = &encoder.layers[layers - 1];
        vec![
            to_vec(y),
            to_vec(x.grad(&grads).expect("d x")),
            to_vec(first.mha.query.weight.grad(&grads).expect("d query weight")),
            to_vec(first.norm_1.gamma.grad(&grads).expect("d norm gamma")),
            to_vec(
                last.pwff
                    .linear_inner
                    .bias
                    .as_ref()
                    .expect("bias")
                    .grad(&grads)
                    .expect("d ff bias"),
            ),
            to_vec(
                last.norm_2
                    .beta
                    .as_ref()
                    .expect("beta")
                    .grad(&grads)
                    .expect("d norm beta"),
            ),
        ]
    };
    compare(
        &[
            "output",
            "d x",
            "d query weight",
            "d norm_1 gamma",
            "d ff bias",
            "d norm_2 beta",
        ],
        &run(true),
        &run(false),
    )
}

#[test]
fn a_whole_encoder_matches_burns_forward_and_backward() {
    for norm_first in [true, false] {
        for (gelu, kind, layers) in [
            (true, Masks::Causal, 2),
            (true, Masks::Both, 1),
            (false, Masks::Pad, 2),
            (true, Masks::None, 1),
        ] {
            let r = encoder_case(norm_first, gelu, kind, layers);
            assert!(
                r.is_ok(),
                "norm_first {norm_first}, gelu {gelu}, {kind:?}, {layers} layers: {}",
                r.unwrap_err()
            );
        }
    }
}

/// A whole decoder (causal target self-attention with the target's padding, cross-attention
/// over a memory of another length with its padding) against burn's forward and backward:
/// output, the target's and the memory's gradients, and a sample of parameter gradients.
fn decoder_case(norm_first: bool, gelu: bool, layers: usize) -> Result<(), String> {
    let dev = device();
    dev.seed(5);
    let (b, tt, tm, d, heads, ff) = (3, 6, 9, 16, 4, 24);
    let decoder = TransformerDecoderConfig::new(d, ff, heads, layers)
        .with_dropout(0.0)
        .with_norm_first(norm_first)
        .with_activation(activation(gelu))
        .init(&dev);
    let target = random([b, tt, d], &dev);
    let memory = random([b, tm, d], &dev);
    let up = random([b, tt, d], &dev);
    let (target_pad, causal) = masks(Masks::Both, b, tt, &dev);
    let (memory_pad, _) = masks_for(Masks::Pad, b, tt, tm, &dev);
    let run = |ours: bool| {
        let target = target.clone().require_grad();
        let memory = memory.clone().require_grad();
        let y = if ours {
            let masks = strata_kernels::DecoderMasks {
                target_pad: target_pad.clone(),
                target_attn: causal.clone(),
                memory_pad: memory_pad.clone(),
                memory_attn: None,
            };
            strata_kernels::transformer_decoder(
                &decoder,
                target.clone(),
                memory.clone(),
                masks,
                1e-5,
            )
        } else {
            let input = TransformerDecoderInput::new(target.clone(), memory.clone())
                .target_mask_pad(target_pad.clone().expect("pad"))
                .target_mask_attn(causal.clone().expect("causal"))
                .memory_mask_pad(memory_pad.clone().expect("pad"));
            decoder.forward(input)
        };
        let grads = (y.clone() * up.clone()).sum().backward();
        let first = &decoder.layers[0];
        let last = &decoder.layers[layers - 1];
        vec![
            to_vec(y),
            to_vec(target.grad(&grads).expect("d target")),
            to_vec(memory.grad(&grads).expect("d memory")),
            to_vec(
                first
                    .cross_attn
                    .key
                    .weight
                    .grad(&grads)
                    .expect("d cross key weight"),
            ),
            to_vec(
                first
                    .self_attn
                    .value
                    .weight
                    .grad(&grads)
                    .expect("d self value weight"),
            ),
            to_vec(last.norm_3.gamma.grad(&grads).expect("d norm_3 gamma")),
        ]
    };
    compare(
        &[
            "output",
            "d target",
            "d memory",
            "d cross key weight",
            "d self value weight",
            "d norm_3 gamma",
        ],
        &run(true),
        &run(false),
    )
}

#[test]
fn a_whole_decoder_matches_burns_forward_and_backward() {
    for norm_first in [true, false] {
        for (gelu, layers) in [(true, 2), (false, 1)] {
            let r = decoder_case(norm_first, gelu, layers);
            assert!(
                r.is_ok(),
                "norm_first {norm_first}, gelu {gelu}, {layers} layers: {}",
                r.unwrap_err()
            );
        }
    }
}

/// The cached steps over a sequence (a prompt, single positions, a block) against the whole
/// encoder with the causal mask, on `dev`: every position within 1e-5 of its scale.
fn cached_steps_case(dev: &Device, norm_first: bool, gelu: bool) -> Result<(), String> {
    let (b, t, d, heads, ff, layers) = (2, 11, 16, 4, 24, 2);
    let encoder = TransformerEncoderConfig::new(d, ff, heads, layers)
        .with_dropout(0.0)
        .with_norm_first(norm_first)
        .with_activation(activation(gelu))
        .init(dev);
    let x = random([b, t, d], dev);
    let causal = generate_autoregressive_mask(b, t, dev);
    let whole = strata_kernels::transformer_encoder(&encoder, x.clone(), None, Some(causal), 1e-5);
    let mut cache = strata_kernels::KeyValueCache::new();
    let mut parts = Vec::new();
    for (start, len) in [(0, 4), (4, 1), (5, 1), (6, 3), (9, 2)] {
        if cache.len() != start {
            return Err(format!("{} positions cached before {start}", cache.len()));
        }
        let step = x.clone().narrow(1, start, len);
        parts.push(strata_kernels::transformer_encoder_step(
            &encoder, step, &mut cache, 1e-5,
        ));
    }
    if cache.len() != t {
        return Err(format!("{} positions cached after {t}", cache.len()));
    }
    let stepped = to_vec(Tensor::cat(parts, 1));
    let want = to_vec(whole);
    check_close("cached steps", &stepped, &want, 1e-5 * scale(&want)).map(|_| ())
}

#[test]
fn cached_steps_match_the_whole_encoder_on_flex_and_ndarray() {
    #[allow(deprecated)]
    let devices = [Device::flex(), Device::ndarray()];
    for dev in &devices {
        for norm_first in [false, true] {
            for gelu in [false, true] {
                let r = cached_steps_case(dev, norm_first, gelu);
                assert!(
                    r.is_ok(),
                    "{dev:?} norm first {norm_first} gelu {gelu}: {}",
                    r.unwrap_err()
                );
            }
        }
    }
    let mut cache = strata_kernels::KeyValueCache::new();
    assert!(cache.is_empty());
    let encoder = TransformerEncoderConfig::new(8, 8, 2, 1).init(&devices[0]);
    strata_kernels::transformer_encoder_step(
        &encoder,
        random([1, 3, 8], &devices[0]),
        &mut cache,
        1e-5,
    );
    assert_eq!(cache.len(), 3);
    cache.clear();
    assert!(cache.is_empty());
}

#[test]
fn dropout_keeps_one_minus_p_scales_and_passes_gradients_through_the_same_mask() {
    let dev = device();
    dev.seed(11);
    let x = Tensor::<2>::random([200, 500], Distribution::Uniform(1.0, 2.0), &*dev).require_grad();
    let p = 0.3;
    let y = strata_kernels::dropout(x.clone(), p);
    let grads = y.clone().sum().backward();
    let (xs, ys) = (to_vec(x.clone()), to_vec(y));
    let dx = to_vec(x.grad(&grads).expect("d x"));
    let kept = ys.iter().filter(|&&v| v != 0.0).count() as f64 / ys.len() as f64;
    let sd = (p * (1.0 - p) / ys.len() as f64).sqrt();
    assert!((kept - (1.0 - p)).abs() < 4.0 * sd, "kept {kept}");
    for i in 0..xs.len() {
        let factor = if ys[i] != 0.0 {
            1.0 / (1.0 - p) as f32
        } else {
            0.0
        };
        assert!((ys[i] - xs[i] * factor).abs() < 1e-6, "output {i}");
        assert!(
            (dx[i] - factor).abs() < 1e-6,
            "gradient {i}: {} vs {factor}",
            dx[i]
        );
    }
}

#[test]
fn dropout_repeats_for_a_seed_and_differs_between_calls() {
    let dev = device();
    let x = Tensor::<1>::ones([4096], &*dev);
    dev.seed(5);
    let a = to_vec(strata_kernels::dropout(x.clone(), 0.5));
    let b = to_vec(strata_kernels::dropout(x.clone(), 0.5));
    dev.seed(5);
    let again = to_vec(strata_kernels::dropout(x, 0.5));
    assert_eq!(a, again, "the same seed gives the same mask");
    let same = a.iter().zip(&b).filter(|(u, v)| u == v).count();
    assert!(
        (1_800..2_300).contains(&same),
        "two calls agree on {same} of 4096"
    );
}

#[test]
fn the_dropout_layer_is_off_in_evaluation_and_without_autodiff() {
    let layer = DropoutConfig::new(0.5).init();
    let plain = Device::flex();
    let x = Tensor::<2>::ones([8, 8], &plain);
    assert_eq!(
        to_vec(strata_kernels::dropout_layer(&layer, x.clone())),
        to_vec(x)
    );
    let ad = device();
    let x = Tensor::<2>::ones([64, 64], &*ad);
    let on = to_vec(strata_kernels::dropout_layer(&layer, x.clone()));
    assert!(on.contains(&0.0) && on.contains(&2.0));
    let mut eval = layer;
    eval.training = burn::module::Param::from_bool(false);
    assert!(
        to_vec(strata_kernels::dropout_layer(&eval, x))
            .iter()
            .all(|&v| v == 1.0)
    );
}

#[test]
fn attention_dropout_zeroes_or_scales_the_softmax() {
    let dev = device();
    dev.seed(2);
    let scores = random([2, 3, 17, 17], &dev);
    let (_, causal) = masks(Masks::Causal, 2, 17, &dev);
    let plain = to_vec(strata_kernels::attention_weights(
        scores.clone(),
        causal.clone(),
        0.5,
        -1e4,
        0.0,
    ));
    let dropped = to_vec(strata_kernels::attention_weights(
        scores, causal, 0.5, -1e4, 0.25,
    ));
    // Masked positions have probability 0 with or without dropout; of the others a quarter
    // is dropped and the rest scaled by 1 / 0.75.
    let (mut zeros, mut open) = (0, 0);
    for (&w, &p) in dropped.iter().zip(&plain) {
        if p == 0.0 {
            assert_eq!(w, 0.0, "a masked position's weight");
            continue;
        }
        open += 1;
        if w == 0.0 {
            zeros += 1;
        } else {
            assert!((w - p / 0.75).abs() < 1e-6, "{w} vs {p} / 0.75");
        }
    }
    // 2 x 3 heads of 17 x 17, causal: 6 x 153 open positions.
    assert_eq!(open, 6 * 153);
    let frac = zeros as f64 / open as f64;
    assert!((0.2..0.3).contains(&frac), "dropped {frac}");
}

#[test]
fn other_backends_get_burns_ops() {
    #[allow(deprecated)]
    let dev = Device::ndarray();
    let x = random([2, 3, 8], &dev);
    let gamma = random([8], &dev);
    let ours = to_vec(strata_kernels::layer_norm(
        x.clone(),
        gamma.clone(),
        None,
        1e-5,
    ));
    let burns = to_vec(burn::tensor::module::layer_norm(x, gamma, None, 1e-5));
    assert_eq!(ours, burns);
}
