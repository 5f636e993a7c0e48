//! The row kernels of a transformer layer, forward and backward: dropout with a counter-based
//! mask, layer norm over the last dimension, the exact (erf) GELU, the attention weights
//! (scale, mask, softmax and dropout in one pass over the scores) and softmax cross-entropy.
//!
//! burn composes each of these from 5-15 tensor ops under autodiff; its dropout draws one
//! ChaCha random number per element on one thread, which was a quarter of the transformer LM's
//! step in the profile (docs/performance.md). Here each is one or two passes over its rows,
//! blocks of rows in parallel.
//!
//! **Dropout masks** are a hash of `(seed, element index)` ([`DropoutMask`]): the backward pass
//! recomputes the mask instead of keeping it, and a block of elements needs no random-number
//! state. The seed is drawn from the device's random stream once per call, so a seeded run
//! repeats itself; the masks differ from burn's own dropout (another generator), with the same
//! distribution.

use rayon::prelude::*;

use crate::gemm::{View, matmul};
use crate::math::{self, LANES, simd, sum1, sum3};

/// Rows per parallel job of the row kernels.
const ROWS_PER_JOB: usize = 32;

/// Elements per parallel job of the elementwise kernels.
const ELEMENTS_PER_JOB: usize = 1 << 14;

/// A dropout mask: element `i` is kept when a hash of `(seed, i)`, uniform on 32 bits, is at
/// least `prob * 2^32`, and a kept element is scaled by `1 / (1 - prob)` (inverted dropout, as
/// burn's and PyTorch's).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DropoutMask {
    seed: u64,
    threshold: u32,
    scale: f32,
}

impl DropoutMask {
    /// The mask that drops each element with probability `prob` (in `[0, 1)`), from `seed`.
    pub fn new(prob: f64, seed: u64) -> Self {
        let threshold = (prob * 4_294_967_296.0).round().clamp(0.0, u32::MAX as f64) as u32;
        Self {
            seed,
            threshold,
            scale: (1.0 / (1.0 - prob)) as f32,
        }
    }

    /// Whether element `index` is kept.
    #[inline(always)]
    pub fn keeps(&self, index: u64) -> bool {
        hash(self.seed, index) >= self.threshold
    }

    /// Element `index`'s factor: `1 / (1 - prob)` where kept, 0 where dropped.
    #[inline(always)]
    pub fn factor(&self, index: u64) -> f32 {
        (self.keeps(index) as u32 as f32) * self.scale
    }
}

/// A bijective 32-bit mixer (Wellons' "lowbias32").
#[inline(always)]
fn mix(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

/// A 32-bit hash of `(seed, index)`: two rounds of [`mix`], each keyed by half of the seed.
#[inline(always)]
fn hash(seed: u64, index: u64) -> u32 {
    let low = mix((index as u32) ^ (seed as u32));
    mix(low.wrapping_add((index >> 32) as u32) ^ (seed >> 32) as u32)
}

/// The largest element (a NaN is skipped here; it still makes the softmax's sum NaN).
#[inline(always)]
fn max_of(a: &[f32]) -> f32 {
    let full = a.len() / LANES * LANES;
    let mut acc = [f32::NEG_INFINITY; LANES];
    for c in a[..full].chunks_exact(LANES) {
        for l in 0..LANES {
            acc[l] = if c[l] > acc[l] { c[l] } else { acc[l] };
        }
    }
    let mut m = f32::NEG_INFINITY;
    for &v in a[full..].iter().chain(acc.iter()) {
        m = if v > m { v } else { m };
    }
    m
}

simd! {
    fn dropout_block(src: &[f32], dst: &mut [f32], mask: &DropoutMask, first: u64) {
        for (i, (d, &s)) in dst.iter_mut().zip(src).enumerate() {
            // `s * 0` keeps a NaN a NaN, as burn's `x * mask` does.
            *d = s * mask.factor(first + i as u64);
        }
    }
}

/// `x` times the mask's factors (dropout forward; and its backward, applied to the output's
/// gradient, since the op is linear with the same mask).
pub fn dropout(x: &[f32], mask: &DropoutMask) -> Vec<f32> {
    let mut out = vec![0.0f32; x.len()];
    out.par_chunks_mut(ELEMENTS_PER_JOB)
        .zip(x.par_chunks(ELEMENTS_PER_JOB))
        .enumerate()
        .for_each(|(job, (dst, src))| {
            dropout_block(src, dst, mask, (job * ELEMENTS_PER_JOB) as u64)
        });
    out
}

/// What the layer-norm forward pass keeps for its backward pass: per row, the mean and
/// `1 / sqrt(variance + epsilon)`.
#[derive(Debug, Clone, PartialEq)]
pub struct RowStats {
    /// Mean of each row.
    pub mean: Vec<f32>,
    /// Reciprocal standard deviation of each row (epsilon included).
    pub rstd: Vec<f32>,
}

simd! {
    fn layer_norm_row(x: &[f32], gamma: &[f32], beta: &[f32], epsilon: f32, y: &mut [f32]) -> (f32, f32) {
        let n = x.len() as f32;
        let mean = sum1(x, |v| v) / n;
        let var = sum1(x, |v| (v - mean) * (v - mean)) / n;
        let rstd = 1.0 / (var + epsilon).sqrt();
        for (((o, &v), &g), &b) in y.iter_mut().zip(x).zip(gamma).zip(beta) {
            *o = (v - mean) * rstd * g + b;
        }
        (mean, rstd)
    }
}

/// Layer norm over rows of `gamma.len()` elements: `(x - mean) / sqrt(var + epsilon) * gamma
/// + beta`, with the biased variance. Returns the output and the rows' statistics.
///
/// # Panics
/// When `x`'s length is not a multiple of the row length, or `beta`'s length differs from
/// `gamma`'s.
pub fn layer_norm_forward(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    epsilon: f64,
) -> (Vec<f32>, RowStats) {
    let d = gamma.len();
    assert!(
        d > 0 && x.len().is_multiple_of(d) && beta.len() == d,
        "layer norm shapes"
    );
    let rows = x.len() / d;
    let mut y = vec![0.0f32; x.len()];
    let mut mean = vec![0.0f32; rows];
    let mut rstd = vec![0.0f32; rows];
    let block = ROWS_PER_JOB * d;
    y.par_chunks_mut(block)
        .zip(x.par_chunks(block))
        .zip(mean.par_chunks_mut(ROWS_PER_JOB))
        .zip(rstd.par_chunks_mut(ROWS_PER_JOB))
        .for_each(|(((y, x), mean), rstd)| {
            for (r, (yr, xr)) in y.chunks_mut(d).zip(x.chunks(d)).enumerate() {
                let (m, s) = layer_norm_row(xr, gamma, beta, epsilon as f32, yr);
                mean[r] = m;
                rstd[r] = s;
            }
        });
    (y, RowStats { mean, rstd })
}

/// The gradients of layer norm for `x`, `gamma` and `beta`, given the output's gradient `dy`
/// and the forward pass's statistics.
///
/// # Panics
/// When the lengths disagree.
pub fn layer_norm_backward(
    x: &[f32],
    gamma: &[f32],
    stats: &RowStats,
    dy: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let d = gamma.len();
    assert!(
        d > 0
            && x.len().is_multiple_of(d)
            && dy.len() == x.len()
            && stats.mean.len() == x.len() / d,
        "layer norm backward shapes"
    );
    let mut dx = vec![0.0f32; x.len()];
    let block = ROWS_PER_JOB * d;
    // Per job its own partial sums for gamma and beta, added in job order (deterministic).
    let partials: Vec<(Vec<f32>, Vec<f32>)> = dx
        .par_chunks_mut(block)
        .zip(x.par_chunks(block))
        .zip(dy.par_chunks(block))
        .zip(stats.mean.par_chunks(ROWS_PER_JOB))
        .zip(stats.rstd.par_chunks(ROWS_PER_JOB))
        .map(|((((dx, x), dy), mean), rstd)| {
            let mut dgamma = vec![0.0f32; d];
            let mut dbeta = vec![0.0f32; d];
            for r in 0..mean.len() {
                let span = r * d..(r + 1) * d;
                layer_norm_backward_row(
                    &x[span.clone()],
                    &dy[span.clone()],
                    gamma,
                    mean[r],
                    rstd[r],
                    &mut dx[span],
                    &mut dgamma,
                    &mut dbeta,
                );
            }
            (dgamma, dbeta)
        })
        .collect();
    let mut dgamma = vec![0.0f32; d];
    let mut dbeta = vec![0.0f32; d];
    for (pg, pb) in partials {
        for j in 0..d {
            dgamma[j] += pg[j];
            dbeta[j] += pb[j];
        }
    }
    (dx, dgamma, dbeta)
}

simd! {
    #[allow(clippy::too_many_arguments)]
    fn layer_norm_backward_row(
        x: &[f32],
        dy: &[f32],
        gamma: &[f32],
        mean: f32,
        rstd: f32,
        dx: &mut [f32],
        dgamma: &mut [f32],
        dbeta: &mut [f32],
    ) {
        let n = x.len() as f32;
        let sum_g = sum3(dy, gamma, gamma, |d, g, _| d * g);
        let sum_gx = sum3(x, dy, gamma, |v, d, g| d * g * (v - mean) * rstd);
        for (((&v, &d), dg), db) in x.iter().zip(dy).zip(dgamma.iter_mut()).zip(dbeta.iter_mut()) {
            *dg += d * (v - mean) * rstd;
            *db += d;
        }
        let (a, b) = (sum_g / n, sum_gx / n);
        for (((o, &v), &d), &g) in dx.iter_mut().zip(x).zip(dy).zip(gamma) {
            let xhat = (v - mean) * rstd;
            *o = rstd * (d * g - a - xhat * b);
        }
    }
}

/// The standard normal distribution function `Phi(x)`, as `erfc(-x / sqrt 2) / 2` with
/// Numerical Recipes' Chebyshev fit of `erfc` (fractional error below 1.2e-7 everywhere).
#[inline(always)]
fn normal_cdf(x: f32) -> f32 {
    let z = -x * std::f32::consts::FRAC_1_SQRT_2;
    let a = z.abs();
    let t = 1.0 / (1.0 + 0.5 * a);
    let mut p = 0.170_872_77_f32;
    p = p * t - 0.822_152_23;
    p = p * t + 1.488_515_9;
    p = p * t - 1.135_204;
    p = p * t + 0.278_868_07;
    p = p * t - 0.186_288_06;
    p = p * t + 0.096_784_18;
    p = p * t + 0.374_091_96;
    p = p * t + 1.000_023_7;
    p = p * t - 1.265_512_2;
    let tail = t * math::exp(-a * a + p);
    let erfc = if z < 0.0 { 2.0 - tail } else { tail };
    0.5 * erfc
}

/// The standard normal density.
#[inline(always)]
fn normal_pdf(x: f32) -> f32 {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    INV_SQRT_2PI * math::exp(-0.5 * x * x)
}

simd! {
    fn gelu_block(x: &[f32], y: &mut [f32]) {
        for (o, &v) in y.iter_mut().zip(x) {
            *o = v * normal_cdf(v);
        }
    }
}

simd! {
    fn gelu_backward_block(x: &[f32], dy: &[f32], dx: &mut [f32]) {
        for ((o, &v), &d) in dx.iter_mut().zip(x).zip(dy) {
            *o = d * (normal_cdf(v) + v * normal_pdf(v));
        }
    }
}

/// The exact GELU, `x Phi(x)`, elementwise.
pub fn gelu(x: &[f32]) -> Vec<f32> {
    let mut y = vec![0.0f32; x.len()];
    y.par_chunks_mut(ELEMENTS_PER_JOB)
        .zip(x.par_chunks(ELEMENTS_PER_JOB))
        .for_each(|(y, x)| gelu_block(x, y));
    y
}

/// The gradient of [`gelu`] for `x`, given the output's gradient `dy`.
///
/// # Panics
/// When the lengths differ.
pub fn gelu_backward(x: &[f32], dy: &[f32]) -> Vec<f32> {
    assert_eq!(x.len(), dy.len(), "gelu backward lengths");
    let mut dx = vec![0.0f32; x.len()];
    dx.par_chunks_mut(ELEMENTS_PER_JOB)
        .zip(x.par_chunks(ELEMENTS_PER_JOB))
        .zip(dy.par_chunks(ELEMENTS_PER_JOB))
        .for_each(|((dx, x), dy)| gelu_backward_block(x, dy, dx));
    dx
}

simd! {
    fn bias_gelu_rows(x: &[f32], bias: &[f32], y: &mut [f32]) {
        for (yr, xr) in y.chunks_mut(bias.len()).zip(x.chunks(bias.len())) {
            for ((o, &v), &b) in yr.iter_mut().zip(xr).zip(bias) {
                let u = v + b;
                *o = u * normal_cdf(u);
            }
        }
    }
}

simd! {
    /// The rows' input gradients into `dx`, and their sum added to `dbias`.
    fn bias_gelu_backward_rows(x: &[f32], bias: &[f32], dy: &[f32], dx: &mut [f32], dbias: &mut [f32]) {
        let c = bias.len();
        for ((o, xr), dr) in dx.chunks_mut(c).zip(x.chunks(c)).zip(dy.chunks(c)) {
            for ((((o, &v), &d), &b), s) in o.iter_mut().zip(xr).zip(dr).zip(bias).zip(dbias.iter_mut()) {
                let u = v + b;
                *o = d * (normal_cdf(u) + u * normal_pdf(u));
                *s += *o;
            }
        }
    }
}

/// Rows per parallel job of a row kernel over rows of `cols` elements.
fn rows_per_job(cols: usize) -> usize {
    (ELEMENTS_PER_JOB / cols.max(1)).max(1)
}

/// `gelu(x + bias)` with `bias` added to every row of `x` (rows of `bias.len()`): the bias of
/// the linear layer before a GELU, fused with it.
///
/// # Panics
/// When `bias` is empty or the length of `x` is not a multiple of it.
pub fn bias_gelu(x: &[f32], bias: &[f32]) -> Vec<f32> {
    let c = bias.len();
    assert!(c > 0 && x.len().is_multiple_of(c), "bias gelu shapes");
    let block = rows_per_job(c) * c;
    let mut y = vec![0.0f32; x.len()];
    y.par_chunks_mut(block)
        .zip(x.par_chunks(block))
        .for_each(|(y, x)| bias_gelu_rows(x, bias, y));
    y
}

/// The gradients of [`bias_gelu`] for `x` and `bias`, given the output's gradient `dy` (the
/// bias's: the input gradient's column sums, in f32 within a job and f64 across jobs).
///
/// # Panics
/// When the lengths do not fit.
pub fn bias_gelu_backward(x: &[f32], bias: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let c = bias.len();
    assert!(
        c > 0 && x.len().is_multiple_of(c) && dy.len() == x.len(),
        "bias gelu backward shapes"
    );
    let block = rows_per_job(c) * c;
    let mut dx = vec![0.0f32; x.len()];
    let partial: Vec<Vec<f32>> = dx
        .par_chunks_mut(block)
        .zip(x.par_chunks(block))
        .zip(dy.par_chunks(block))
        .map(|((dx, x), dy)| {
            let mut sums = vec![0.0f32; c];
            bias_gelu_backward_rows(x, bias, dy, dx, &mut sums);
            sums
        })
        .collect();
    let dbias = (0..c)
        .map(|j| partial.iter().map(|p| p[j] as f64).sum::<f64>() as f32)
        .collect();
    (dx, dbias)
}

/// The layout of attention scores `[batch, heads, queries, keys]` and of their optional mask
/// `[batch, queries, keys]` (shared by the heads; nonzero where a key is hidden from a query).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionGeometry {
    /// Sequences.
    pub batch: usize,
    /// Heads.
    pub heads: usize,
    /// Query positions.
    pub queries: usize,
    /// Key positions.
    pub keys: usize,
    /// The scores' factor before the softmax (`1 / sqrt(d_k)`).
    pub scale: f32,
    /// The score a masked position gets (burn's `min_float`: a large negative number, so a
    /// wholly masked row spreads evenly, as burn's does).
    pub fill: f32,
}

impl AttentionGeometry {
    /// The mask row of score row `row`.
    fn mask_row(&self, row: usize) -> usize {
        let query = row % self.queries;
        let batch = row / (self.queries * self.heads);
        batch * self.queries + query
    }

    fn rows(&self) -> usize {
        self.batch * self.heads * self.queries
    }
}

/// A row of scores scaled, with its hidden positions set to `fill` (the softmax's input).
#[inline(always)]
fn scale_and_mask(p: &mut [f32], hidden: Option<&[f32]>, scale: f32, fill: f32) {
    match hidden {
        Some(h) => {
            for (o, &m) in p.iter_mut().zip(h) {
                *o = if m != 0.0 { fill } else { *o * scale };
            }
        }
        None => {
            for o in p.iter_mut() {
                *o *= scale;
            }
        }
    }
}

simd! {
    /// One row of scores into probabilities, in place; returns the row's maximum and the
    /// inverse of its sum of exponentials, from which [`recompute_row`] gives the same row.
    fn softmax_row(p: &mut [f32], hidden: Option<&[f32]>, scale: f32, fill: f32) -> (f32, f32) {
        scale_and_mask(p, hidden, scale, fill);
        let max = max_of(p);
        for o in p.iter_mut() {
            *o = math::exp(*o - max);
        }
        let inv = 1.0 / sum1(p, |v| v);
        for o in p.iter_mut() {
            *o = normal_or_zero(*o * inv);
        }
        (max, inv)
    }
}

/// `p`, or 0 where it is below the normal range: a probability under 1.2e-38 would be a
/// subnormal operand of the products that read it (see [`math`]).
#[inline(always)]
fn normal_or_zero(p: f32) -> f32 {
    if p < f32::MIN_POSITIVE { 0.0 } else { p }
}

simd! {
    /// The probabilities [`softmax_row`] made from the same scores, given its maximum and
    /// inverse sum: the same operations on the same values, so the same bits.
    fn recompute_row(p: &mut [f32], hidden: Option<&[f32]>, scale: f32, fill: f32, max: f32, inv: f32) {
        scale_and_mask(p, hidden, scale, fill);
        for o in p.iter_mut() {
            *o = normal_or_zero(math::exp(*o - max) * inv);
        }
    }
}

/// The attention weights from the scores: `softmax(scale * scores)` over the keys, masked
/// positions set to `fill` before it, then dropout by `mask` when given. Returns the weights
/// after dropout and the probabilities before it (the backward pass reads them; without
/// dropout the two are equal and the second is empty).
///
/// # Panics
/// When the lengths do not fit the geometry.
pub fn attention_weights(
    scores: &[f32],
    hidden: Option<&[f32]>,
    g: &AttentionGeometry,
    dropout: Option<&DropoutMask>,
) -> (Vec<f32>, Vec<f32>) {
    let k = g.keys;
    assert!(
        k > 0 && scores.len() == g.rows() * k,
        "attention score shapes"
    );
    assert!(
        hidden.is_none_or(|h| h.len() == g.batch * g.queries * k),
        "attention mask shape"
    );
    let mut p = scores.to_vec();
    let block = ROWS_PER_JOB * k;
    p.par_chunks_mut(block).enumerate().for_each(|(job, p)| {
        for (r, pr) in p.chunks_mut(k).enumerate() {
            let row = job * ROWS_PER_JOB + r;
            let h = hidden.map(|h| &h[g.mask_row(row) * k..][..k]);
            softmax_row(pr, h, g.scale, g.fill);
        }
    });
    match dropout {
        Some(mask) => (self::dropout(&p, mask), p),
        None => (p, Vec::new()),
    }
}

simd! {
    fn softmax_backward_row(
        p: &[f32],
        dw: &[f32],
        hidden: Option<&[f32]>,
        scale: f32,
        dropout: Option<&DropoutMask>,
        first: u64,
        ds: &mut [f32],
    ) {
        // The probabilities' gradient: the weights' through the dropout mask.
        match dropout {
            Some(mask) => {
                for (i, (o, &d)) in ds.iter_mut().zip(dw).enumerate() {
                    *o = d * mask.factor(first + i as u64);
                }
            }
            None => ds.copy_from_slice(dw),
        }
        let dot = sum3(ds, p, p, |d, q, _| d * q);
        for (o, &q) in ds.iter_mut().zip(p) {
            *o = q * (*o - dot) * scale;
        }
        if let Some(h) = hidden {
            for (o, &m) in ds.iter_mut().zip(h) {
                if m != 0.0 {
                    *o = 0.0;
                }
            }
        }
    }
}

/// The scores' gradient of [`attention_weights`], given the probabilities `p` (before dropout)
/// and the weights' gradient `dw`.
///
/// # Panics
/// When the lengths do not fit the geometry.
pub fn attention_weights_backward(
    p: &[f32],
    dw: &[f32],
    hidden: Option<&[f32]>,
    g: &AttentionGeometry,
    dropout: Option<&DropoutMask>,
) -> Vec<f32> {
    let k = g.keys;
    assert!(
        k > 0 && p.len() == g.rows() * k && dw.len() == p.len(),
        "attention backward shapes"
    );
    let mut ds = vec![0.0f32; p.len()];
    let block = ROWS_PER_JOB * k;
    ds.par_chunks_mut(block)
        .zip(p.par_chunks(block))
        .zip(dw.par_chunks(block))
        .enumerate()
        .for_each(|(job, ((ds, p), dw))| {
            for r in 0..p.len() / k {
                let row = job * ROWS_PER_JOB + r;
                let span = r * k..(r + 1) * k;
                let h = hidden.map(|h| &h[g.mask_row(row) * k..][..k]);
                softmax_backward_row(
                    &p[span.clone()],
                    &dw[span.clone()],
                    h,
                    g.scale,
                    dropout,
                    (row * k) as u64,
                    &mut ds[span],
                );
            }
        });
    ds
}

/// The sizes of a fused attention: queries `[batch, queries, heads * d_head]`, keys and values
/// `[batch, keys, heads * d_head]` (the projections' outputs, heads side by side in each row, as
/// burn's and PyTorch's `MultiHeadAttention` lay them out), mask `[batch, queries, keys]`.
/// Self-attention has as many keys as queries; a cached decoding step has one query and every
/// position so far as keys.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SelfAttention {
    /// Sequences.
    pub batch: usize,
    /// Query positions.
    pub queries: usize,
    /// Key (and value) positions.
    pub keys: usize,
    /// Heads.
    pub heads: usize,
    /// Width of a head.
    pub d_head: usize,
    /// The scores' factor before the softmax (`1 / sqrt(d_head)`).
    pub scale: f32,
    /// The score a masked position gets.
    pub fill: f32,
}

impl SelfAttention {
    fn d_model(&self) -> usize {
        self.heads * self.d_head
    }

    /// Head `h`'s `[time, d_head]` block of sequence `b` in a `[batch, time, d_model]` buffer.
    fn head_of(&self, time: usize, b: usize, h: usize) -> View {
        let d = self.d_model();
        View {
            offset: b * time * d + h * self.d_head,
            rows: time,
            cols: self.d_head,
            row_stride: d,
            col_stride: 1,
        }
    }

    /// Head `h`'s keys (or values) of sequence `b`.
    fn keys_of(&self, b: usize, h: usize) -> View {
        self.head_of(self.keys, b, h)
    }

    /// Rows `first..first + rows` of head `h`'s queries (or context) of sequence `b` (`b = 0`
    /// for a buffer that holds one sequence).
    fn query_rows(&self, b: usize, h: usize, first: usize, rows: usize) -> View {
        let head = self.head_of(self.queries, b, h);
        View {
            offset: head.offset + first * head.row_stride,
            rows,
            ..head
        }
    }

    /// The index of score `(first, 0)` of head `h` of sequence `b` in the `[batch, heads,
    /// queries, keys]` scores: the dropout mask's index of that element.
    fn score_index(&self, b: usize, h: usize, first: usize) -> u64 {
        (((b * self.heads + h) * self.queries + first) * self.keys) as u64
    }

    /// Whether slices of these lengths fit: queries, keys, values, and the mask if any.
    fn fits(&self, q: usize, k: usize, v: usize, hidden: Option<usize>) -> bool {
        let d = self.d_model();
        self.queries > 0
            && self.keys > 0
            && d > 0
            && q == self.batch * self.queries * d
            && k == self.batch * self.keys * d
            && v == k
            && hidden.is_none_or(|m| m == self.batch * self.queries * self.keys)
    }
}

/// Query rows per block of the fused attention: a block's scores, `QUERY_BLOCK x keys`, are
/// all it holds of a head's `queries x keys` matrix, forward and backward.
pub const QUERY_BLOCK: usize = 64;

/// A block of `rows` score rows of `keys` keys, row-major in its own buffer.
fn block(rows: usize, keys: usize) -> View {
    View::row_major(0, rows, keys)
}

impl SelfAttention {
    /// The scores `q k^T` of queries `first..` of head `h` of sequence `b` (as many as `p` has
    /// rows of keys) into `p`, then `row(i, scores)` on each row, `i` its query: the softmax
    /// forward, its recomputation backward.
    #[allow(clippy::too_many_arguments)]
    fn block_scores(
        &self,
        q: &[f32],
        k: &[f32],
        b: usize,
        h: usize,
        first: usize,
        p: &mut [f32],
        mut row: impl FnMut(usize, &mut [f32]),
    ) {
        let rows = p.len() / self.keys;
        let queries = self.query_rows(b, h, first, rows);
        let keys = self.keys_of(b, h).t();
        matmul(p, block(rows, self.keys), q, queries, k, keys, false);
        for (r, scores) in p.chunks_mut(self.keys).enumerate() {
            row(first + r, scores);
        }
    }
}

/// A block's weights after dropout: `p` times the mask from element `first` on, written into
/// `w`; `p` itself without dropout.
fn dropped<'a>(
    p: &'a [f32],
    w: &'a mut [f32],
    dropout: Option<&DropoutMask>,
    first: u64,
) -> &'a [f32] {
    match dropout {
        Some(mask) => {
            let w = &mut w[..p.len()];
            dropout_block(p, w, mask, first);
            w
        }
        None => p,
    }
}

/// Attention from the projections, flash-style: per sequence, head and block of
/// [`QUERY_BLOCK`] queries, the block's scores `scale * q k^T` (masked), their softmax over all
/// the keys, dropout, then the block's context rows `weights x v`, written back with the heads
/// side by side: `[batch, queries, d_model]`. Heads are read and written in place through
/// strided products (no transposed copies); no `queries x keys` matrix is kept. With `keep`,
/// also each score row's maximum and inverse sum of exponentials, `[batch, heads, queries,
/// 2]`: all the backward pass needs to recompute the probabilities.
///
/// Unlike FlashAttention, a block's softmax runs over all its keys at once (no running
/// rescale across key blocks): a block of 64 queries by 2,048 keys is 512 KiB.
///
/// # Panics
/// When the lengths do not fit the sizes.
pub fn self_attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    hidden: Option<&[f32]>,
    g: &SelfAttention,
    dropout: Option<&DropoutMask>,
    keep: bool,
) -> (Vec<f32>, Option<Vec<f32>>) {
    let (tq, tk, heads) = (g.queries, g.keys, g.heads);
    assert!(
        g.fits(q.len(), k.len(), v.len(), hidden.map(<[f32]>::len)),
        "attention shapes"
    );
    let stats_per_sequence = heads * tq * 2;
    let per_sequence = tq * g.d_model();
    let mut ctx = vec![0.0f32; g.batch * per_sequence];
    let mut stats = vec![
        0.0f32;
        if keep {
            g.batch * stats_per_sequence
        } else {
            0
        }
    ];
    let run = |b: usize, ctx: &mut [f32], stats: &mut [f32]| {
        let mask = hidden.map(|m| &m[b * tq * tk..][..tq * tk]);
        let rows = QUERY_BLOCK.min(tq);
        let mut p = vec![0.0f32; rows * tk];
        let mut w = vec![0.0f32; if dropout.is_some() { rows * tk } else { 0 }];
        for h in 0..heads {
            for first in (0..tq).step_by(QUERY_BLOCK) {
                let rows = QUERY_BLOCK.min(tq - first);
                let p = &mut p[..rows * tk];
                g.block_scores(q, k, b, h, first, p, |i, row| {
                    let m = mask.map(|m| &m[i * tk..][..tk]);
                    let (max, inv) = softmax_row(row, m, g.scale, g.fill);
                    if keep {
                        stats[(h * tq + i) * 2] = max;
                        stats[(h * tq + i) * 2 + 1] = inv;
                    }
                });
                let weights = dropped(p, &mut w, dropout, g.score_index(b, h, first));
                let out = g.query_rows(0, h, first, rows);
                matmul(
                    ctx,
                    out,
                    weights,
                    block(rows, tk),
                    v,
                    g.keys_of(b, h),
                    false,
                );
            }
        }
    };
    crate::gemm::region(|| {
        if keep {
            ctx.par_chunks_mut(per_sequence)
                .zip(stats.par_chunks_mut(stats_per_sequence))
                .enumerate()
                .for_each(|(b, (ctx, stats))| run(b, ctx, stats));
        } else {
            ctx.par_chunks_mut(per_sequence)
                .enumerate()
                .for_each(|(b, ctx)| run(b, ctx, &mut []));
        }
    });
    (ctx, keep.then_some(stats))
}

/// The gradients of [`self_attention`] for `q`, `k` and `v`, given the context's gradient
/// `dctx` and the rows' statistics the forward pass kept. Per sequence, head and block of
/// queries it recomputes the block's probabilities (the same bits as forward) and dropout mask,
/// then runs five products: the weights' gradient `dctx v^T`, `dv += weights^T dctx`, the
/// softmax's backward pass row by row, `dq = dscores k` and `dk += dscores^T q`.
///
/// # Panics
/// When the lengths do not fit the sizes.
#[allow(clippy::too_many_arguments)]
pub fn self_attention_backward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    hidden: Option<&[f32]>,
    g: &SelfAttention,
    dropout: Option<&DropoutMask>,
    stats: &[f32],
    dctx: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (tq, tk, heads) = (g.queries, g.keys, g.heads);
    assert!(
        g.fits(q.len(), k.len(), v.len(), hidden.map(<[f32]>::len)) && dctx.len() == q.len(),
        "attention backward shapes"
    );
    let stats_per_sequence = heads * tq * 2;
    assert_eq!(
        stats.len(),
        g.batch * stats_per_sequence,
        "saved row statistics"
    );
    let (queries_per_sequence, keys_per_sequence) = (tq * g.d_model(), tk * g.d_model());
    let mut dq = vec![0.0f32; q.len()];
    let (mut dk, mut dv) = (vec![0.0f32; k.len()], vec![0.0f32; k.len()]);
    crate::gemm::region(|| {
        dq.par_chunks_mut(queries_per_sequence)
            .zip(dk.par_chunks_mut(keys_per_sequence))
            .zip(dv.par_chunks_mut(keys_per_sequence))
            .zip(stats.par_chunks(stats_per_sequence))
            .enumerate()
            .for_each(|(b, (((dq, dk), dv), stats))| {
                let mask = hidden.map(|m| &m[b * tq * tk..][..tq * tk]);
                let rows = QUERY_BLOCK.min(tq);
                let mut p = vec![0.0f32; rows * tk];
                let mut w = vec![0.0f32; if dropout.is_some() { rows * tk } else { 0 }];
                let mut dw = vec![0.0f32; rows * tk];
                let mut ds = vec![0.0f32; rows * tk];
                for h in 0..heads {
                    let keys_here = g.keys_of(0, h);
                    for first in (0..tq).step_by(QUERY_BLOCK) {
                        let rows = QUERY_BLOCK.min(tq - first);
                        let span = rows * tk;
                        let (p, dw, ds) = (&mut p[..span], &mut dw[..span], &mut ds[..span]);
                        let queries = g.query_rows(b, h, first, rows);
                        let queries_here = g.query_rows(0, h, first, rows);
                        let scores = block(rows, tk);
                        g.block_scores(q, k, b, h, first, p, |i, row| {
                            let (max, inv) = (stats[(h * tq + i) * 2], stats[(h * tq + i) * 2 + 1]);
                            let m = mask.map(|m| &m[i * tk..][..tk]);
                            recompute_row(row, m, g.scale, g.fill, max, inv);
                        });
                        let first_index = g.score_index(b, h, first);
                        let weights = dropped(p, &mut w, dropout, first_index);
                        // dW = dctx v^T; dv += W^T dctx.
                        matmul(dw, scores, dctx, queries, v, g.keys_of(b, h).t(), false);
                        matmul(dv, keys_here, weights, scores.t(), dctx, queries, true);
                        for r in 0..rows {
                            let i = first + r;
                            let row = r * tk..(r + 1) * tk;
                            softmax_backward_row(
                                &p[row.clone()],
                                &dw[row.clone()],
                                mask.map(|m| &m[i * tk..][..tk]),
                                g.scale,
                                dropout,
                                first_index + (r * tk) as u64,
                                &mut ds[row],
                            );
                        }
                        // dq = dS k; dk += dS^T q (the scale is in dS).
                        matmul(dq, queries_here, ds, scores, k, g.keys_of(b, h), false);
                        matmul(dk, keys_here, ds, scores.t(), q, queries, true);
                    }
                }
            });
    });
    (dq, dk, dv)
}

/// Softmax cross-entropy of `logits` (rows of `classes`) against `targets` (one class index per
/// row, as f32): each row's loss `logsumexp(row) - row[target]`, and each row's logsumexp (the
/// backward pass reads it). `None` when a target is not a class index.
pub fn cross_entropy(
    logits: &[f32],
    targets: &[f32],
    classes: usize,
) -> Option<(Vec<f32>, Vec<f32>)> {
    let rows = targets.len();
    assert_eq!(logits.len(), rows * classes, "cross-entropy shapes");
    let index =
        |t: f32| (t >= 0.0 && t.fract() == 0.0 && (t as usize) < classes).then_some(t as usize);
    if targets.iter().any(|&t| index(t).is_none()) {
        return None;
    }
    let (loss, lse): (Vec<f32>, Vec<f32>) = logits
        .par_chunks(classes)
        .zip(targets.par_iter())
        .map(|(row, &t)| {
            let lse = logsumexp(row);
            (lse - row[t as usize], lse)
        })
        .unzip();
    Some((loss, lse))
}

simd! {
    /// `ln Σ e^v` over `row`, from its largest element (vectorised: libm's `expf` is a scalar
    /// call per element).
    fn logsumexp(row: &[f32]) -> f32 {
        let max = max_of(row);
        max + sum1(row, |v| math::exp(v - max)).ln()
    }
}

simd! {
    /// One row of [`cross_entropy_backward`] before the target's `- factor`:
    /// `e^(v - lse) · factor`.
    fn softmax_scaled(row: &[f32], lse: f32, factor: f32, out: &mut [f32]) {
        for (o, &v) in out.iter_mut().zip(row) {
            *o = math::exp(v - lse) * factor;
        }
    }
}

/// The logits' gradient of the mean of [`cross_entropy`]'s row losses, times `grad` (the
/// mean's gradient): `(softmax(row) - onehot(target)) * grad / rows`.
pub fn cross_entropy_backward(logits: &[f32], targets: &[f32], lse: &[f32], grad: f32) -> Vec<f32> {
    let rows = targets.len();
    let classes = logits.len() / rows.max(1);
    let factor = grad / rows as f32;
    let mut dx = vec![0.0f32; logits.len()];
    dx.par_chunks_mut(classes)
        .zip(logits.par_chunks(classes))
        .zip(targets.par_iter().zip(lse.par_iter()))
        .for_each(|((d, row), (&t, &l))| {
            softmax_scaled(row, l, factor, d);
            d[t as usize] -= factor;
        });
    dx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mask_keeps_about_one_minus_p_and_repeats_for_its_seed() {
        for &p in &[0.0, 0.1, 0.5, 0.9] {
            let mask = DropoutMask::new(p, 7);
            let n = 200_000u64;
            let kept = (0..n).filter(|&i| mask.keeps(i)).count() as f64 / n as f64;
            // Four standard deviations of a binomial proportion.
            let sd = (p * (1.0 - p) / n as f64).sqrt();
            assert!(
                (kept - (1.0 - p)).abs() <= 4.0 * sd + 1e-9,
                "p {p}: kept {kept}"
            );
        }
        let a = DropoutMask::new(0.5, 1);
        let b = DropoutMask::new(0.5, 2);
        let same = (0..10_000u64).filter(|&i| a.keeps(i) == b.keeps(i)).count();
        assert!(
            (4_600..5_400).contains(&same),
            "seeds 1 and 2 agree on {same} of 10,000"
        );
        // Neighbours are independent: pairs (kept, kept) about a quarter.
        let both = (0..10_000u64)
            .filter(|&i| a.keeps(2 * i) && a.keeps(2 * i + 1))
            .count();
        assert!((2_300..2_700).contains(&both), "{both}");
    }

    #[test]
    fn dropout_scales_what_it_keeps_and_zeroes_the_rest() {
        let x: Vec<f32> = (0..50_000).map(|i| i as f32 * 0.01 - 3.0).collect();
        let mask = DropoutMask::new(0.25, 99);
        let y = dropout(&x, &mask);
        for (i, (&a, &b)) in x.iter().zip(&y).enumerate() {
            let want = if mask.keeps(i as u64) { a / 0.75 } else { 0.0 };
            assert!(
                (b - want).abs() <= 1e-6 * want.abs().max(1.0),
                "{i}: {b} vs {want}"
            );
        }
        let nan = dropout(&[f32::NAN; 8], &mask);
        assert!(nan.iter().all(|v| v.is_nan()));
    }

    fn lcg(seed: u64, n: usize) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
            })
            .collect()
    }

    #[test]
    fn layer_norm_matches_its_definition_in_f64() {
        let (rows, d) = (37, 24);
        let x = lcg(1, rows * d);
        let gamma = lcg(2, d);
        let beta = lcg(3, d);
        let (y, stats) = layer_norm_forward(&x, &gamma, &beta, 1e-5);
        for r in 0..rows {
            let row: Vec<f64> = x[r * d..][..d].iter().map(|&v| v as f64).collect();
            let mean = row.iter().sum::<f64>() / d as f64;
            let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d as f64;
            let rstd = 1.0 / (var + 1e-5).sqrt();
            assert!((stats.mean[r] as f64 - mean).abs() < 1e-5);
            assert!((stats.rstd[r] as f64 - rstd).abs() < 1e-5 * rstd);
            for j in 0..d {
                let want = (row[j] - mean) * rstd * gamma[j] as f64 + beta[j] as f64;
                assert!((y[r * d + j] as f64 - want).abs() < 1e-5, "{r},{j}");
            }
        }
    }

    /// Central differences of `f` at `x` along each coordinate, in f64 of an f32 function.
    fn numeric_gradient(x: &[f32], f: impl Fn(&[f32]) -> f64) -> Vec<f64> {
        let h = 1e-2f32;
        (0..x.len())
            .map(|i| {
                let mut a = x.to_vec();
                let mut b = x.to_vec();
                a[i] += h;
                b[i] -= h;
                (f(&a) - f(&b)) / (2.0 * h as f64)
            })
            .collect()
    }

    fn dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
    }

    fn close(got: &[f32], want: &[f64], tol: f64) {
        assert_eq!(got.len(), want.len());
        let scale = want.iter().fold(1.0f64, |a, b| a.max(b.abs()));
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g as f64 - w).abs() <= tol * scale,
                "{i}: {g} vs {w} (scale {scale})"
            );
        }
    }

    #[test]
    fn layer_norm_gradients_match_finite_differences() {
        let (rows, d) = (3, 5);
        let x = lcg(4, rows * d);
        let gamma = lcg(5, d);
        let beta = lcg(6, d);
        let dy = lcg(7, rows * d);
        let (_, stats) = layer_norm_forward(&x, &gamma, &beta, 1e-5);
        let (dx, dgamma, dbeta) = layer_norm_backward(&x, &gamma, &stats, &dy);
        let loss = |x: &[f32], g: &[f32], b: &[f32]| dot(&layer_norm_forward(x, g, b, 1e-5).0, &dy);
        close(&dx, &numeric_gradient(&x, |v| loss(v, &gamma, &beta)), 2e-3);
        close(
            &dgamma,
            &numeric_gradient(&gamma, |v| loss(&x, v, &beta)),
            2e-3,
        );
        close(
            &dbeta,
            &numeric_gradient(&beta, |v| loss(&x, &gamma, v)),
            2e-3,
        );
    }

    #[test]
    fn gelu_matches_the_erf_definition_and_its_derivative() {
        let xs: Vec<f32> = (-1200..=1200).map(|i| i as f32 * 0.01).collect();
        let y = gelu(&xs);
        let ones = vec![1.0f32; xs.len()];
        let dx = gelu_backward(&xs, &ones);
        for (i, &x) in xs.iter().enumerate() {
            let x64 = x as f64;
            // erf from its Taylor series would be slow at 12; use the complementary form of
            // the f64 standard library's pieces: Phi via the libm-quality erfc below.
            let cdf = 0.5 * erfc64(-x64 / std::f64::consts::SQRT_2);
            let want = x64 * cdf;
            assert!(
                (y[i] as f64 - want).abs() < 2e-6 * want.abs().max(1.0),
                "gelu({x})"
            );
            let pdf = (-0.5 * x64 * x64).exp() / (2.0 * std::f64::consts::PI).sqrt();
            let dwant = cdf + x64 * pdf;
            assert!(
                (dx[i] as f64 - dwant).abs() < 2e-6,
                "gelu'({x}) = {} vs {dwant}",
                dx[i]
            );
        }
        assert!(gelu(&[f32::NAN])[0].is_nan());
    }

    /// erfc in f64 by the continued fraction (|z| >= 2) or the Taylor series of erf (|z| < 2).
    fn erfc64(z: f64) -> f64 {
        if z.abs() < 2.0 {
            let mut term = z;
            let mut sum = z;
            for n in 1..60 {
                term *= -z * z / n as f64;
                sum += term / (2 * n + 1) as f64;
            }
            1.0 - 2.0 / std::f64::consts::PI.sqrt() * sum
        } else if z > 0.0 {
            // Lentz's continued fraction for erfc.
            let mut f = 0.0;
            for k in (1..80).rev() {
                f = (k as f64 / 2.0) / (z + f);
            }
            (-z * z).exp() / std::f64::consts::PI.sqrt() / (z + f)
        } else {
            2.0 - erfc64(-z)
        }
    }

    fn geometry(batch: usize, heads: usize, queries: usize, keys: usize) -> AttentionGeometry {
        AttentionGeometry {
            batch,
            heads,
            queries,
            keys,
            scale: 0.5,
            fill: -1.0e4,
        }
    }

    #[test]
    fn attention_weights_are_a_masked_softmax() {
        let g = geometry(2, 3, 4, 5);
        let scores = lcg(8, 2 * 3 * 4 * 5);
        // Causal mask: key j hidden from query i when j > i.
        let hidden: Vec<f32> = (0..2 * 4 * 5)
            .map(|i| ((i % 5) > ((i / 5) % 4)) as u32 as f32)
            .collect();
        let (w, _) = attention_weights(&scores, Some(&hidden), &g, None);
        for row in 0..g.rows() {
            let q = row % 4;
            let s = &scores[row * 5..][..5];
            let visible: Vec<usize> = (0..5).filter(|&j| j <= q).collect();
            let max = visible
                .iter()
                .map(|&j| s[j] as f64 * 0.5)
                .fold(f64::MIN, f64::max);
            let z: f64 = visible
                .iter()
                .map(|&j| (s[j] as f64 * 0.5 - max).exp())
                .sum();
            for j in 0..5 {
                let want = if j <= q {
                    (s[j] as f64 * 0.5 - max).exp() / z
                } else {
                    0.0
                };
                assert!((w[row * 5 + j] as f64 - want).abs() < 1e-6, "{row},{j}");
            }
        }
    }

    #[test]
    fn attention_gradients_match_finite_differences_with_dropout_and_masks() {
        let g = geometry(2, 2, 3, 4);
        let n = 2 * 2 * 3 * 4;
        let scores = lcg(9, n);
        let hidden: Vec<f32> = (0..2 * 3 * 4).map(|i| (i % 7 == 3) as u32 as f32).collect();
        let dw = lcg(10, n);
        for mask in [None, Some(DropoutMask::new(0.3, 5))] {
            let (w, p) = attention_weights(&scores, Some(&hidden), &g, mask.as_ref());
            let p = if mask.is_some() { p } else { w };
            let ds = attention_weights_backward(&p, &dw, Some(&hidden), &g, mask.as_ref());
            let loss = |s: &[f32]| {
                dot(
                    &attention_weights(s, Some(&hidden), &g, mask.as_ref()).0,
                    &dw,
                )
            };
            close(&ds, &numeric_gradient(&scores, loss), 2e-3);
        }
    }

    #[test]
    fn cross_entropy_matches_pytorch_and_its_gradient() {
        // torch.nn.functional.cross_entropy on the rows below (as in strata-loss's test).
        let logits = [2.0, 0.5, -1.0, 0.1, 0.2, 3.0, 1.0, 1.0, 1.0];
        let targets = [0.0, 2.0, 1.0];
        let (loss, lse) = cross_entropy(&logits, &targets, 3).expect("valid targets");
        let mean = loss.iter().sum::<f32>() / 3.0;
        assert!((mean - 0.483_175).abs() < 1e-6, "{mean}");
        let dx = cross_entropy_backward(&logits, &targets, &lse, 1.0);
        let f = |l: &[f32]| {
            let (loss, _) = cross_entropy(l, &targets, 3).expect("valid");
            loss.iter().map(|&v| v as f64).sum::<f64>() / 3.0
        };
        close(&dx, &numeric_gradient(&logits, f), 1e-3);
        assert!(cross_entropy(&logits, &[0.0, 3.0, 1.0], 3).is_none());
        assert!(cross_entropy(&logits, &[0.0, -1.0, 1.0], 3).is_none());
        assert!(cross_entropy(&logits, &[0.5, 1.0, 1.0], 3).is_none());
    }
}
