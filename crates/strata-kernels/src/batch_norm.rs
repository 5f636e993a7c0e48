//! Batch normalisation in training, forward and backward, on contiguous f32 slices shaped
//! `[N, C, ...]`: one pass for the statistics and one for the output (burn's composed op makes
//! about ten, with a transposed copy of the input for each statistic), optionally followed by a
//! ReLU in the same pass (its mask recomputed in the backward pass); in inference, one pass
//! (burn's makes four).
//!
//! Per channel, over its `M = N * (spatial size)` values: `mean`, the biased `var`,
//! `y = gamma * (x - mean) / sqrt(var + eps) + beta`; backward, with `xhat` the normalised input,
//! `dbeta = sum(dy)`, `dgamma = sum(dy * xhat)` and
//! `dx = gamma / sqrt(var + eps) * (dy - dbeta / M - xhat * dgamma / M)`. Every sum runs in
//! f32 within a plane (in 16 lanes, which vectorise) and in f64 across planes. The passes over
//! the values run one image per rayon task (several where images are small), compiled for
//! AVX2 where the CPU has it.

use rayon::prelude::*;

use crate::math::{simd, sum1, sum3};

/// Values per rayon task in the passes over whole batches, at least.
const ELEMENTS_PER_JOB: usize = 1 << 14;

/// The layout of a batch-norm input: `batch` blocks of `channels` planes of `plane` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Planes {
    /// Size of the first dimension.
    pub batch: usize,
    /// Size of the second (channel) dimension.
    pub channels: usize,
    /// Product of the remaining dimensions (1 for `[N, C]`).
    pub plane: usize,
}

impl Planes {
    /// Values per channel.
    pub fn per_channel(&self) -> usize {
        self.batch * self.plane
    }

    fn len(&self) -> usize {
        self.batch * self.channels * self.plane
    }

    /// Every contiguous run of channel `c`'s values, one per image.
    fn runs<'a>(&self, values: &'a [f32], c: usize) -> impl Iterator<Item = &'a [f32]> + 'a {
        let (channels, plane) = (self.channels, self.plane);
        (0..self.batch).map(move |n| &values[(n * channels + c) * plane..][..plane])
    }
}

/// The output (through a ReLU when `relu`), the batch mean and the biased batch variance (both
/// `[C]`).
pub fn forward(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    p: Planes,
    epsilon: f64,
    relu: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), p.len(), "batch norm: input length");
    assert_eq!(gamma.len(), p.channels, "batch norm: gamma length");
    assert_eq!(beta.len(), p.channels, "batch norm: beta length");
    let m = p.per_channel() as f64;
    let stats: Vec<(f32, f32)> = (0..p.channels)
        .into_par_iter()
        .map(|c| {
            let sum: f64 = p.runs(x, c).map(|run| sum_of(run) as f64).sum();
            let mean = (sum / m) as f32;
            let squares: f64 = p
                .runs(x, c)
                .map(|run| squares_about(run, mean) as f64)
                .sum();
            (mean, (squares / m) as f32)
        })
        .collect();
    let (mean, var): (Vec<f32>, Vec<f32>) = stats.into_iter().unzip();
    // The input stays for the backward pass: the output is a copy, normalised in place.
    let mut out = x.to_vec();
    normalize(&mut out, gamma, beta, &mean, &var, p, epsilon, relu);
    (out, mean, var)
}

simd! {
    /// `sum(v)` over a run.
    fn sum_of(run: &[f32]) -> f32 {
        sum1(run, |v| v)
    }
}

simd! {
    /// `sum((v - mean)^2)` over a run.
    fn squares_about(run: &[f32], mean: f32) -> f32 {
        sum1(run, |v| (v - mean) * (v - mean))
    }
}

/// Batch normalisation with given statistics (inference, on the running mean and variance),
/// in place: `x = gamma * (x - mean) / sqrt(var + eps) + beta`, in one pass (the op hands in
/// its input's buffer where it holds the only reference, so inference allocates nothing).
pub fn inference(
    x: &mut [f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    p: Planes,
    epsilon: f64,
) {
    assert_eq!(x.len(), p.len(), "batch norm: input length");
    for s in [gamma, beta, mean, var] {
        assert_eq!(s.len(), p.channels, "batch norm: per-channel length");
    }
    normalize(x, gamma, beta, mean, var, p, epsilon, false)
}

/// `gamma / sqrt(var + eps)` per channel.
fn scales(gamma: &[f32], var: &[f32], epsilon: f64) -> Vec<f32> {
    gamma
        .iter()
        .zip(var)
        .map(|(&g, &v)| (g as f64 / (v as f64 + epsilon).sqrt()) as f32)
        .collect()
}

/// One normalised value: centred first, since `v * a + (beta - mean * a)` would cancel when
/// the channel's values are close together and `a` is large. The forward pass and the ReLU's
/// mask in the backward pass both compute it here, so they round alike.
#[inline(always)]
fn normalized(v: f32, mean: f32, scale: f32, beta: f32) -> f32 {
    (v - mean) * scale + beta
}

/// `x = (x - mean) * gamma / sqrt(var + eps) + beta` per channel, then `max(0, .)` when
/// `relu`, in place.
#[allow(clippy::too_many_arguments)]
fn normalize(
    x: &mut [f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    p: Planes,
    epsilon: f64,
    relu: bool,
) {
    let scale = scales(gamma, var, epsilon);
    per_image(x, p, |_, xs| {
        normalize_image(xs, p.plane, mean, &scale, beta, relu)
    });
}

/// Runs `f(n, part)` on image `n`'s part of `dst` (`C * plane` values), in parallel, an image
/// or a few per task; `f` reads the same image of other slices through [`image_of`].
fn per_image(dst: &mut [f32], p: Planes, f: impl Fn(usize, &mut [f32]) + Send + Sync) {
    let image = p.channels * p.plane;
    if image == 0 {
        return;
    }
    dst.par_chunks_mut(image)
        .enumerate()
        .with_min_len(ELEMENTS_PER_JOB.div_ceil(image))
        .for_each(|(n, part)| f(n, part));
}

/// Image `n`'s part (`C * plane` values) of a `[N, C, ...]` slice.
fn image_of(values: &[f32], p: Planes, n: usize) -> &[f32] {
    let image = p.channels * p.plane;
    &values[n * image..][..image]
}

simd! {
    /// One image of [`normalize`], in place (then the ReLU).
    fn normalize_image(
        xs: &mut [f32],
        plane: usize,
        mean: &[f32],
        scale: &[f32],
        beta: &[f32],
        relu: bool,
    ) {
        // A NaN stays NaN without the ReLU (`max` would drop it).
        let f = |v: f32, m: f32, a: f32, b: f32| {
            let y = normalized(v, m, a, b);
            if relu { y.max(0.0) } else { y }
        };
        if plane == 1 {
            for (((v, &m), &a), &b) in xs.iter_mut().zip(mean).zip(scale).zip(beta) {
                *v = f(*v, m, a, b);
            }
            return;
        }
        for (c, xs) in xs.chunks_exact_mut(plane).enumerate() {
            let (m, a, b) = (mean[c], scale[c], beta[c]);
            for v in xs.iter_mut() {
                *v = f(*v, m, a, b);
            }
        }
    }
}

/// The gradients for the input, gamma and beta, given the forward pass's input, statistics
/// and the output's gradient. `relu` is `Some(beta)` when the forward pass went through a
/// ReLU: the gradient is then zero where the normalised value was not positive.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    x: &[f32],
    gamma: &[f32],
    mean: &[f32],
    var: &[f32],
    dy: &[f32],
    p: Planes,
    epsilon: f64,
    relu: Option<&[f32]>,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), p.len(), "batch norm: input length");
    assert_eq!(dy.len(), p.len(), "batch norm: gradient length");
    for s in [gamma, mean, var].into_iter().chain(relu) {
        assert_eq!(s.len(), p.channels, "batch norm: per-channel length");
    }
    let m = p.per_channel() as f64;
    let rstd: Vec<f64> = var
        .iter()
        .map(|&v| 1.0 / (v as f64 + epsilon).sqrt())
        .collect();
    // The ReLU's mask is recomputed from the input, per channel `(mean, scale, beta)`.
    let mask: Option<Vec<(f32, f32, f32)>> = relu.map(|beta| {
        let scale = scales(gamma, var, epsilon);
        (0..p.channels)
            .map(|c| (mean[c], scale[c], beta[c]))
            .collect()
    });
    let mask = mask.as_deref();
    let sums: Vec<(f32, f32)> = (0..p.channels)
        .into_par_iter()
        .map(|c| {
            let at = mask.map(|mask| mask[c]);
            let (mut sum_dy, mut sum_dy_xc) = (0.0f64, 0.0f64);
            for (xs, gs) in p.runs(x, c).zip(p.runs(dy, c)) {
                let (a, b) = gradient_sums(xs, gs, mean[c], at);
                sum_dy += a as f64;
                sum_dy_xc += b as f64;
            }
            // dgamma = sum(dy * xhat) = rstd * sum(dy * (x - mean))
            (sum_dy as f32, (sum_dy_xc * rstd[c]) as f32)
        })
        .collect();
    let (dbeta, dgamma): (Vec<f32>, Vec<f32>) = sums.into_iter().unzip();
    // dx = k * (dy - dbeta / M - (x - mean) * rstd * dgamma / M), k = gamma * rstd
    let coefficients: Vec<[f32; 4]> = (0..p.channels)
        .map(|c| {
            let k = gamma[c] as f64 * rstd[c];
            [
                k as f32,
                (dbeta[c] as f64 / m) as f32,
                (rstd[c] * dgamma[c] as f64 / m) as f32,
                mean[c],
            ]
        })
        .collect();
    let mut dx = vec![0.0f32; x.len()];
    per_image(&mut dx, p, |n, d| {
        let (xs, gs) = (image_of(x, p, n), image_of(dy, p, n));
        input_gradient_image(xs, gs, d, p.plane, &coefficients, mask)
    });
    (dx, dgamma, dbeta)
}

/// The output gradient `g` at input `v` through the ReLU when there is one (`mask` holds its
/// channel's `(mean, scale, beta)`): zero where the normalised value was not positive.
#[inline(always)]
fn through_relu(v: f32, g: f32, mask: Option<(f32, f32, f32)>) -> f32 {
    match mask {
        Some((m, a, b)) => {
            if normalized(v, m, a, b) > 0.0 {
                g
            } else {
                0.0
            }
        }
        None => g,
    }
}

simd! {
    /// `(sum(g), sum(g * (x - mean)))` over one run of a channel, `g` the output gradient
    /// through the ReLU's mask.
    fn gradient_sums(
        xs: &[f32],
        gs: &[f32],
        mean: f32,
        mask: Option<(f32, f32, f32)>,
    ) -> (f32, f32) {
        let a = sum3(xs, gs, gs, |v, g, _| through_relu(v, g, mask));
        let b = sum3(xs, gs, gs, |v, g, _| through_relu(v, g, mask) * (v - mean));
        (a, b)
    }
}

simd! {
    /// One image of the input gradient: `k * (g - mean_dy - (x - mean) * slope)` per channel,
    /// with `[k, mean_dy, slope, mean]` its coefficients.
    fn input_gradient_image(
        xs: &[f32],
        gs: &[f32],
        d: &mut [f32],
        plane: usize,
        coefficients: &[[f32; 4]],
        mask: Option<&[(f32, f32, f32)]>,
    ) {
        let runs = d
            .chunks_exact_mut(plane)
            .zip(xs.chunks_exact(plane).zip(gs.chunks_exact(plane)));
        for (c, (d, (xs, gs))) in runs.enumerate() {
            let [k, mean_dy, slope, mu] = coefficients[c];
            let at = mask.map(|mask| mask[c]);
            for ((d, &v), &g) in d.iter_mut().zip(xs).zip(gs) {
                *d = k * (through_relu(v, g, at) - mean_dy - (v - mu) * slope);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_output_is_normalised_per_channel() {
        let p = Planes {
            batch: 3,
            channels: 2,
            plane: 4,
        };
        let x: Vec<f32> = (0..24)
            .map(|i| (i as f32 * 0.7).sin() * 3.0 + 1.0)
            .collect();
        let (y, mean, var) = forward(&x, &[1.0, 1.0], &[0.0, 0.0], p, 0.0, false);
        assert_eq!((mean.len(), var.len()), (2, 2));
        for c in 0..2 {
            let values: Vec<f32> = p.runs(&y, c).flatten().copied().collect();
            let m = values.iter().sum::<f32>() / 12.0;
            let v = values.iter().map(|a| (a - m).powi(2)).sum::<f32>() / 12.0;
            assert!(m.abs() < 1e-5 && (v - 1.0).abs() < 1e-4, "{m} {v}");
        }
    }
}
