//! Batch normalisation in training, forward and backward, on contiguous f32 slices shaped
//! `[N, C, ...]`: one pass for the statistics and one for the output (burn's composed op makes
//! about ten, with a transposed copy of the input for each statistic), optionally followed by a
//! ReLU in the same pass (its mask recomputed in the backward pass); in inference, one pass
//! (burn's makes four).
//!
//! Per channel, over its `M = N * (spatial size)` values: `mean`, the biased `var`,
//! `y = gamma * (x - mean) / sqrt(var + eps) + beta`; backward, with `xhat` the normalised input,
//! `dbeta = sum(dy)`, `dgamma = sum(dy * xhat)` and
//! `dx = gamma / sqrt(var + eps) * (dy - dbeta / M - xhat * dgamma / M)`. The statistics are
//! summed in f64; the backward sums in f32 within a plane and in f64 across planes.

use rayon::prelude::*;

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
            let sum: f64 = p
                .runs(x, c)
                .map(|run| run.iter().map(|&v| v as f64).sum::<f64>())
                .sum();
            let mean = sum / m;
            let squares: f64 = p
                .runs(x, c)
                .map(|run| run.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>())
                .sum();
            (mean as f32, (squares / m) as f32)
        })
        .collect();
    let (mean, var): (Vec<f32>, Vec<f32>) = stats.into_iter().unzip();
    let out = normalize(x, gamma, beta, &mean, &var, p, epsilon, relu);
    (out, mean, var)
}

/// Batch normalisation with given statistics (inference, on the running mean and variance):
/// `gamma * (x - mean) / sqrt(var + eps) + beta`, in one pass.
pub fn inference(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    p: Planes,
    epsilon: f64,
) -> Vec<f32> {
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

/// `(x - mean) * gamma / sqrt(var + eps) + beta` per channel, then `max(0, .)` when `relu`.
#[allow(clippy::too_many_arguments)]
fn normalize(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    p: Planes,
    epsilon: f64,
    relu: bool,
) -> Vec<f32> {
    let scale = scales(gamma, var, epsilon);
    let mut out = vec![0.0f32; x.len()];
    if !out.is_empty() {
        out.par_chunks_mut(p.plane)
            .zip(x.par_chunks(p.plane))
            .enumerate()
            .for_each(|(i, (o, xs))| {
                let c = i % p.channels;
                let (m, a, b) = (mean[c], scale[c], beta[c]);
                if relu {
                    for (o, &v) in o.iter_mut().zip(xs) {
                        *o = normalized(v, m, a, b).max(0.0);
                    }
                } else {
                    for (o, &v) in o.iter_mut().zip(xs) {
                        *o = normalized(v, m, a, b);
                    }
                }
            });
    }
    out
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
    match relu {
        Some(beta) => {
            let scale = scales(gamma, var, epsilon);
            let mut masked = vec![0.0f32; dy.len()];
            if !masked.is_empty() {
                masked
                    .par_chunks_mut(p.plane)
                    .zip(x.par_chunks(p.plane).zip(dy.par_chunks(p.plane)))
                    .enumerate()
                    .for_each(|(i, (d, (xs, gs)))| {
                        let c = i % p.channels;
                        let (m, a, b) = (mean[c], scale[c], beta[c]);
                        for ((d, &v), &g) in d.iter_mut().zip(xs).zip(gs) {
                            *d = if normalized(v, m, a, b) > 0.0 { g } else { 0.0 };
                        }
                    });
            }
            backward_linear(x, gamma, mean, var, &masked, p, epsilon)
        }
        None => backward_linear(x, gamma, mean, var, dy, p, epsilon),
    }
}

/// [`backward`] without the ReLU.
fn backward_linear(
    x: &[f32],
    gamma: &[f32],
    mean: &[f32],
    var: &[f32],
    dy: &[f32],
    p: Planes,
    epsilon: f64,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let m = p.per_channel() as f64;
    let rstd: Vec<f64> = var
        .iter()
        .map(|&v| 1.0 / (v as f64 + epsilon).sqrt())
        .collect();
    let sums: Vec<(f32, f32)> = (0..p.channels)
        .into_par_iter()
        .map(|c| {
            let mu = mean[c];
            let (mut sum_dy, mut sum_dy_xc) = (0.0f64, 0.0f64);
            for (xs, gs) in p.runs(x, c).zip(p.runs(dy, c)) {
                let (mut a, mut b) = (0.0f32, 0.0f32);
                for (&v, &g) in xs.iter().zip(gs) {
                    a += g;
                    b += g * (v - mu);
                }
                sum_dy += a as f64;
                sum_dy_xc += b as f64;
            }
            // dgamma = sum(dy * xhat) = rstd * sum(dy * (x - mean))
            (sum_dy as f32, (sum_dy_xc * rstd[c]) as f32)
        })
        .collect();
    let (dbeta, dgamma): (Vec<f32>, Vec<f32>) = sums.into_iter().unzip();
    // dx = k * (dy - dbeta / M - (x - mean) * rstd * dgamma / M), k = gamma * rstd
    let coefficients: Vec<(f32, f32, f32, f32)> = (0..p.channels)
        .map(|c| {
            let k = gamma[c] as f64 * rstd[c];
            (
                k as f32,
                (dbeta[c] as f64 / m) as f32,
                (rstd[c] * dgamma[c] as f64 / m) as f32,
                mean[c],
            )
        })
        .collect();
    let mut dx = vec![0.0f32; x.len()];
    if !dx.is_empty() {
        dx.par_chunks_mut(p.plane)
            .zip(x.par_chunks(p.plane).zip(dy.par_chunks(p.plane)))
            .enumerate()
            .for_each(|(i, (d, (xs, gs)))| {
                let (k, mean_dy, slope, mu) = coefficients[i % p.channels];
                for ((d, &v), &g) in d.iter_mut().zip(xs).zip(gs) {
                    *d = k * (g - mean_dy - (v - mu) * slope);
                }
            });
    }
    (dx, dgamma, dbeta)
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
