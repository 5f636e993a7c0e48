//! Int8 linear layers: weights stored as int8 with a scale per matrix or per output, inputs
//! quantised row by row as they arrive (dynamic quantisation, as PyTorch's
//! `quantize_dynamic`), products accumulated in i32 and scaled back to f32.
//!
//! A row `x` becomes `q_x = round(x / s_x)` with `s_x = max |x| / 127`, so each row's result
//! depends on that row alone (not on the batch it came in). An output is then
//! `s_x · s_w[j] · Σ q_x[k] q_w[k, j] + b[j]`. On x86 with AVX-512 VNNI the sums run through
//! `vpdpbusd` (unsigned by signed bytes into i32): the row is stored as `q_x + 128`, and
//! `128 · Σ_k q_w[k, j]`, kept per output, is taken off after. The weights are packed as
//! oneDNN and fbgemm pack them for that instruction: four consecutive inputs of sixteen
//! outputs per 64-byte register, so four input bytes broadcast against it give sixteen outputs'
//! partial sums with no reduction across lanes. Elsewhere a portable loop computes the same
//! integers, so both paths give the same bits.
//!
//! [`conv2d`] runs a convolution through the same products: each image is quantised once with
//! its own scale, laid out channels-last on its padded grid, and its patches (kernel row,
//! kernel column, channel) are the rows multiplied by the kernel. A layer's inputs can also
//! take one scale fixed beforehand ([`InputScale::Static`], calibrated on training batches).

use rayon::prelude::*;

use crate::conv::ConvGeometry;
use crate::math::simd;

/// The largest input width: `d_in · 255 · 128` must fit an i32.
pub const MAX_INPUTS: usize = 65_536;

/// Multiply-adds per call above which the rows are split across rayon's threads. On the
/// 2-core test machine a 64 x 3136 -> 128 layer (25.7M) took 0.45-0.50 ms on two threads and
/// 0.37-0.40 ms on one (each thread streams all the weights), so only far larger calls split.
const PARALLEL_WORK: usize = 1 << 28;

/// How a layer's inputs are scaled to int8.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum InputScale {
    /// `max |x| / 127` of each row (a linear layer) or each image (a convolution), taken as
    /// it arrives: a row's result depends on that row alone.
    #[default]
    Dynamic,
    /// One scale fixed beforehand (static quantisation, calibrated on training batches):
    /// values beyond 127 steps clamp to ±127.
    Static(f32),
}

impl InputScale {
    /// A static scale for inputs peaking at `peak` (`peak / 127`), or dynamic when `peak` is
    /// not a positive finite number (nothing was seen to calibrate on).
    pub fn calibrated(peak: f32) -> Self {
        if peak.is_finite() && peak > 0.0 {
            Self::Static(peak / 127.0)
        } else {
            Self::Dynamic
        }
    }
}

/// An int8 weight matrix `[d_in, d_out]` (burn's linear layout) with a scale per output
/// (repeated when the matrix has one), packed for [`linear`]: groups of four inputs, each
/// group holding four bytes per output, outputs padded with zeros to a multiple of 16 and
/// inputs to a multiple of 4.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedMatrix {
    d_in: usize,
    d_out: usize,
    /// Inputs padded to a multiple of 4.
    k_pad: usize,
    /// Outputs padded to a multiple of 16.
    n_pad: usize,
    /// `[k_pad / 4][n_pad][4]`.
    values: Vec<i8>,
    /// Per output.
    scales: Vec<f32>,
    /// `Σ_k q[k, j]` per output.
    sums: Vec<i32>,
}

impl QuantizedMatrix {
    /// From int8 values row-major `[d_in, d_out]` (`w[k, j] ≈ values[k · d_out + j] ·
    /// scale`), with one scale for the whole matrix or one per output.
    ///
    /// # Panics
    /// A zero width, `d_in` above [`MAX_INPUTS`], or lengths that disagree.
    pub fn new(values: &[i8], d_in: usize, d_out: usize, scales: &[f32]) -> Self {
        assert!(d_in > 0 && d_out > 0, "int8 linear: zero width");
        assert!(
            d_in <= MAX_INPUTS,
            "int8 linear: {d_in} inputs, at most {MAX_INPUTS}"
        );
        assert_eq!(values.len(), d_in * d_out, "int8 linear: values length");
        assert!(
            scales.len() == 1 || scales.len() == d_out,
            "int8 linear: {} scales for {d_out} outputs",
            scales.len()
        );
        let (k_pad, n_pad) = (d_in.next_multiple_of(4), d_out.next_multiple_of(16));
        let mut packed = vec![0i8; k_pad * n_pad];
        let mut sums = vec![0i32; d_out];
        for (k, row) in values.chunks_exact(d_out).enumerate() {
            for (j, &q) in row.iter().enumerate() {
                packed[((k / 4) * n_pad + j) * 4 + k % 4] = q;
                sums[j] += i32::from(q);
            }
        }
        let scales = if scales.len() == 1 {
            vec![scales[0]; d_out]
        } else {
            scales.to_vec()
        };
        Self {
            d_in,
            d_out,
            k_pad,
            n_pad,
            values: packed,
            scales,
            sums,
        }
    }

    /// The int8 value of input `k`, output `j`.
    fn q(&self, k: usize, j: usize) -> i8 {
        self.values[((k / 4) * self.n_pad + j) * 4 + k % 4]
    }

    /// Symmetric quantisation of a float matrix `[d_in, d_out]`: `scale = max |w| / 127`
    /// over the whole matrix or (`per_output`) over each output's column, `q = round(w /
    /// scale)`.
    ///
    /// # Panics
    /// As [`new`](Self::new).
    pub fn quantize(weight: &[f32], d_in: usize, d_out: usize, per_output: bool) -> Self {
        assert_eq!(weight.len(), d_in * d_out, "int8 linear: weight length");
        let (values, scales) = if per_output {
            quantize_symmetric(weight, d_out, |i| i % d_out)
        } else {
            quantize_symmetric(weight, 1, |_| 0)
        };
        Self::new(&values, d_in, d_out, &scales)
    }

    /// A convolution kernel `[O, C, kh, kw]` (one group, PyTorch's and burn's layout) as the
    /// matrix [`conv2d`] multiplies by: inputs in the order (kernel row, kernel column,
    /// channel), one output per kernel. The scales are those of [`quantize`](Self::quantize)
    /// on the kernel (per tensor, or per output channel), so the int8 values are the ones a
    /// quantised run file holds.
    ///
    /// # Panics
    /// A weight of another length, or as [`new`](Self::new).
    pub fn quantize_conv(weight: &[f32], shape: [usize; 4], per_output: bool) -> Self {
        let [o, c, kh, kw] = shape;
        assert_eq!(weight.len(), o * c * kh * kw, "int8 conv: weight length");
        let mut m = vec![0f32; weight.len()];
        for (i, &v) in weight.iter().enumerate() {
            let (j, ci, r, col) = (i / (c * kh * kw), i / (kh * kw) % c, i / kw % kh, i % kw);
            m[((r * kw + col) * c + ci) * o + j] = v;
        }
        Self::quantize(&m, c * kh * kw, o, per_output)
    }

    /// Multiplies each output's scale by its factor (folds a batch norm's `γ / σ` into the
    /// layer: the int8 values do not change).
    ///
    /// # Panics
    /// When there is not one factor per output.
    pub fn scale_outputs(&mut self, factors: &[f32]) {
        assert_eq!(factors.len(), self.d_out, "int8: one factor per output");
        for (s, f) in self.scales.iter_mut().zip(factors) {
            *s *= f;
        }
    }

    /// The float matrix the values stand for, row-major `[d_in, d_out]`.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut w = vec![0f32; self.d_in * self.d_out];
        for k in 0..self.d_in {
            for j in 0..self.d_out {
                w[k * self.d_out + j] = f32::from(self.q(k, j)) * self.scales[j];
            }
        }
        w
    }

    /// Inputs.
    pub fn d_in(&self) -> usize {
        self.d_in
    }

    /// Outputs.
    pub fn d_out(&self) -> usize {
        self.d_out
    }

    /// The scale of each output.
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }
}

/// Symmetric int8 quantisation, the rule of every int8 weight in Strata: value `i` belongs to
/// scale `channel(i)` of `n_scales`, each scale is `max |w| / 127` over its values, and `q =
/// round(w / scale)` in `[-127, 127]` (0 where the scale is 0). Returns the values and the
/// scales.
///
/// # Panics
/// When `channel` gives an index of `n_scales` or more.
pub fn quantize_symmetric(
    values: &[f32],
    n_scales: usize,
    channel: impl Fn(usize) -> usize,
) -> (Vec<i8>, Vec<f32>) {
    let mut scales = vec![0f32; n_scales];
    for (i, v) in values.iter().enumerate() {
        let s = &mut scales[channel(i)];
        *s = s.max(v.abs() / 127.0);
    }
    let q = values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let s = scales[channel(i)];
            if s > 0.0 {
                (v / s).round().clamp(-127.0, 127.0) as i8
            } else {
                0
            }
        })
        .collect();
    (q, scales)
}

/// `x W + bias` for `x` of rows of `weight.d_in()` features, with `W` in int8 and each row of
/// `x` quantised to int8 on the way in (with its own scale, or `scale`'s fixed one). A row
/// that holds a NaN or an infinity gives NaN outputs.
///
/// # Panics
/// When `x`'s length is not a multiple of `d_in` or the bias is not `d_out` long.
pub fn linear(
    x: &[f32],
    weight: &QuantizedMatrix,
    bias: Option<&[f32]>,
    scale: InputScale,
) -> Vec<f32> {
    let (d_in, d_out) = (weight.d_in, weight.d_out);
    assert_eq!(x.len() % d_in, 0, "int8 linear: x length");
    if let Some(b) = bias {
        assert_eq!(b.len(), d_out, "int8 linear: bias length");
    }
    let rows = x.len() / d_in;
    let (qx, sx) = quantize_rows(x, d_in, weight.k_pad, scale);
    let n_pad = weight.n_pad;
    let mut dots = vec![0i32; rows * n_pad];
    // Rows in blocks of 4 across rayon's threads when there is enough work.
    let per_task = if rows * weight.k_pad * n_pad >= PARALLEL_WORK && rows >= 8 {
        (rows / rayon::current_num_threads().max(1)).next_multiple_of(4)
    } else {
        rows
    };
    let chunks = dots
        .par_chunks_mut(per_task * n_pad)
        .zip(qx.par_chunks(per_task * weight.k_pad));
    chunks.for_each(|(d, q)| dot_rows(q, weight, d));
    let zero = vec![0f32; d_out];
    let bias = bias.unwrap_or(&zero);
    let mut y = vec![0f32; rows * d_out];
    for ((out, d), &s) in y
        .chunks_exact_mut(d_out)
        .zip(dots.chunks_exact(n_pad))
        .zip(&sx)
    {
        for ((((o, &dot), &sum), &scale), &b) in out
            .iter_mut()
            .zip(d)
            .zip(&weight.sums)
            .zip(&weight.scales)
            .zip(bias)
        {
            *o = (dot - 128 * sum) as f32 * (s * scale) + b;
        }
    }
    y
}

/// The convolution of `x` (`[N, C, H, W]`) by `weight` (from
/// [`QuantizedMatrix::quantize_conv`]), plus `bias`, then a ReLU when `relu`: `[N, O, Ho, Wo]`.
/// Each image is quantised with its own scale (or `scale`'s fixed one), so its result does not
/// depend on the batch; an image that holds a NaN or an infinity gives NaN outputs. Images run
/// in parallel on rayon's threads.
///
/// # Panics
/// More than one group, or lengths that disagree with `g`.
pub fn conv2d(
    x: &[f32],
    weight: &QuantizedMatrix,
    bias: Option<&[f32]>,
    g: &ConvGeometry,
    scale: InputScale,
    relu: bool,
) -> Vec<f32> {
    assert_eq!(g.groups, 1, "int8 conv: one group only");
    assert!(
        g.stride.iter().chain(&g.dilation).all(|&s| s > 0),
        "int8 conv: stride and dilation must be non-zero"
    );
    assert_eq!(x.len(), g.input_len(), "int8 conv: input length");
    assert!(
        weight.d_in == g.unfolded_rows() && weight.d_out == g.channels_out,
        "int8 conv: a {} x {} matrix for {} inputs and {} outputs",
        weight.d_in,
        weight.d_out,
        g.unfolded_rows(),
        g.channels_out
    );
    if let Some(b) = bias {
        assert_eq!(b.len(), weight.d_out, "int8 conv: bias length");
    }
    let image_in = g.channels_in * g.input[0] * g.input[1];
    let image_out = g.output_len() / g.batch.max(1);
    let mut y = vec![0f32; g.output_len()];
    if image_out == 0 || image_in == 0 {
        return y;
    }
    let one = |(out, img): (&mut [f32], &[f32])| conv_image(img, weight, bias, g, scale, relu, out);
    if g.batch > 1 {
        y.par_chunks_mut(image_out)
            .zip(x.par_chunks(image_in))
            .for_each(one);
    } else {
        y.chunks_mut(image_out)
            .zip(x.chunks(image_in))
            .for_each(one);
    }
    y
}

/// One image of [`conv2d`] into `y` (`[O, Ho, Wo]`).
fn conv_image(
    x: &[f32],
    w: &QuantizedMatrix,
    bias: Option<&[f32]>,
    g: &ConvGeometry,
    scale: InputScale,
    relu: bool,
    y: &mut [f32],
) {
    let c = g.channels_in;
    let ([h, wd], [kh, kw], [sh, sw], [dh, dw]) = (g.input, g.kernel, g.stride, g.dilation);
    let [(pt, pb), (pl, pr)] = g.padding;
    let [ho, wo] = g.output();
    let (hp, wp) = (h + pt + pb, wd + pl + pr);
    // The image channels-last (one transposition in f32), then quantised line by line into
    // its padded grid (offset by 128; the padding stays 128, zero).
    let peak = peak(x);
    if peak.is_nan() {
        y.fill(f32::NAN);
        return;
    }
    let (s, inv) = scales(peak, scale);
    let mut grid = vec![128u8; hp * wp * c];
    if peak > 0.0 && s > 0.0 {
        let mut last = vec![0f32; x.len()];
        crate::gemm::transpose(x, h * wd, c, h * wd, &mut last, c);
        for (r, line) in last.chunks_exact(wd * c).enumerate() {
            let start = ((r + pt) * wp + pl) * c;
            quantize_into(line, &mut grid[start..start + wd * c], inv);
        }
    }
    // One row per output position: the kernel's taps, each `c` channels long.
    let p = ho * wo;
    let mut patches = vec![128u8; p * w.k_pad];
    for (pos, row) in patches.chunks_exact_mut(w.k_pad).enumerate() {
        let (oh, ow) = (pos / wo, pos % wo);
        for ki in 0..kh {
            let at = (oh * sh + ki * dh) * wp + ow * sw;
            // Without dilation a kernel row's taps lie side by side in the grid.
            let (taps, run) = if dw == 1 { (1, kw * c) } else { (kw, c) };
            for kj in 0..taps {
                let src = (at + kj * dw) * c;
                let dst = (ki * kw + kj) * c;
                let (to, from) = (&mut row[dst..dst + run], &grid[src..src + run]);
                if run <= 16 {
                    // Short runs (few channels): a call to memcpy costs more than the bytes.
                    for (t, f) in to.iter_mut().zip(from) {
                        *t = *f;
                    }
                } else {
                    to.copy_from_slice(from);
                }
            }
        }
    }
    let mut dots = vec![0i32; p * w.n_pad];
    dot_rows(&patches, w, &mut dots);
    // Back to f32 position by position (vectorised across the channels), then channel-major
    // by one transposition.
    let d_out = w.d_out;
    let offsets: Vec<i32> = w.sums.iter().map(|&sum| 128 * sum).collect();
    let factors: Vec<f32> = w.scales.iter().map(|&k| s * k).collect();
    let shifts: Vec<f32> = bias.map_or_else(|| vec![0.0; d_out], <[f32]>::to_vec);
    let mut by_position = vec![0f32; p * d_out];
    for (d, out) in dots
        .chunks_exact(w.n_pad)
        .zip(by_position.chunks_exact_mut(d_out))
    {
        for ((((v, &d), &off), &k), &b) in out
            .iter_mut()
            .zip(&d[..d_out])
            .zip(&offsets)
            .zip(&factors)
            .zip(&shifts)
        {
            let z = (d - off) as f32 * k + b;
            *v = if relu { z.max(0.0) } else { z };
        }
    }
    crate::gemm::transpose(&by_position, d_out, p, d_out, y, p);
}

/// Each row of `x` as `round(x / s) + 128` in `[1, 255]`, padded with 128 (zero) to `stride`,
/// and its scale `s`: `max |x| / 127` of the row, or the static one (NaN for a row with a NaN
/// or an infinity).
fn quantize_rows(x: &[f32], d_in: usize, stride: usize, scale: InputScale) -> (Vec<u8>, Vec<f32>) {
    let rows = x.len() / d_in;
    let mut q = vec![128u8; rows * stride];
    let mut scales = Vec::with_capacity(rows);
    for (row, out) in x.chunks_exact(d_in).zip(q.chunks_exact_mut(stride)) {
        scales.push(quantize_row(row, &mut out[..d_in], scale));
    }
    (q, scales)
}

/// One row (or image) into `out`, which holds 128 (zero) on the way in; returns the scale
/// (NaN, and `out` untouched, when the row holds a NaN or an infinity).
fn quantize_row(row: &[f32], out: &mut [u8], scale: InputScale) -> f32 {
    let peak = peak(row);
    if peak.is_nan() {
        return f32::NAN;
    }
    let (s, inv) = scales(peak, scale);
    if peak > 0.0 && s > 0.0 {
        quantize_into(row, out, inv);
    }
    s
}

/// The input scale and its inverse for values up to `peak` (finite) quantised as `scale` says.
fn scales(peak: f32, scale: InputScale) -> (f32, f32) {
    match scale {
        InputScale::Dynamic => (peak / 127.0, 127.0 / peak),
        InputScale::Static(s) => (s, 1.0 / s),
    }
}

simd! {
/// The largest magnitude in `row`, NaN when it holds a NaN or an infinity.
pub fn peak(row: &[f32]) -> f32 {
    // For finite magnitudes the bit patterns order as the values; an infinity's or a NaN's
    // are at or above `0x7f80_0000`. One integer max, which vectorises.
    let top = row
        .iter()
        .fold(0u32, |m, v| m.max(v.to_bits() & 0x7fff_ffff));
    if top >= 0x7f80_0000 {
        f32::NAN
    } else {
        f32::from_bits(top)
    }
}
}

simd! {
/// `out[i] = round(row[i] · inv) + 128`, the rounded value clamped to ±127 (finite `row`).
fn quantize_into(row: &[f32], out: &mut [u8], inv: f32) {
    for (o, v) in out.iter_mut().zip(row) {
        // Within [-127, 127] before rounding, so `nearest` stays exact and in range.
        *o = (nearest((v * inv).clamp(-127.0, 127.0)) + 128) as u8;
    }
}
}

/// `v` rounded to the nearest integer, halves away from zero (as `f32::round`, which without
/// SSE4.1 in the target is a library call per value; this vectorises).
/// Exact for `|v| < 2^23`: the fraction `v - trunc(v)` has no rounding error.
#[inline]
fn nearest(v: f32) -> i32 {
    // Truncation without the saturating cast's checks (which stop it vectorising); callers
    // pass magnitudes far inside i32's range.
    debug_assert!(v.abs() < 8_388_608.0);
    let t = if v.abs() < 8_388_608.0 {
        // SAFETY: finite and within i32's range (checked just above).
        unsafe { v.to_int_unchecked::<i32>() }
    } else {
        0
    };
    let f = v - t as f32;
    t + i32::from(f >= 0.5) - i32::from(f <= -0.5)
}

/// The integer sums `Σ_k qx[r, k] · q_w[k, j]` (with `qx` offset by 128) of the rows of `qx`
/// (`k_pad` bytes each) for every padded output, into `dots` (`n_pad` per row).
fn dot_rows(qx: &[u8], w: &QuantizedMatrix, dots: &mut [i32]) {
    let rows = qx.len() / w.k_pad;
    // Sixty-four outputs at a time, every row against them while they are in cache.
    for n0 in (0..w.n_pad).step_by(64) {
        let c = ((w.n_pad - n0) / 16).min(4);
        let mut r = 0;
        while r < rows {
            let nr = if rows - r >= 4 { 4 } else { 1 };
            let x = &qx[r * w.k_pad..(r + nr) * w.k_pad];
            let out = &mut dots[r * w.n_pad..(r + nr) * w.n_pad];
            match (nr, c) {
                (4, 4) => tile::<4, 4>(x, w, n0, out),
                (4, 3) => tile::<4, 3>(x, w, n0, out),
                (4, 2) => tile::<4, 2>(x, w, n0, out),
                (4, _) => tile::<4, 1>(x, w, n0, out),
                (_, 4) => tile::<1, 4>(x, w, n0, out),
                (_, 3) => tile::<1, 3>(x, w, n0, out),
                (_, 2) => tile::<1, 2>(x, w, n0, out),
                _ => tile::<1, 1>(x, w, n0, out),
            }
            r += nr;
        }
    }
}

/// `R` rows of `x` (`[R][k_pad]` bytes) against the `16 C` outputs from `n0`, written into
/// `out` (`[R][n_pad]`).
fn tile<const R: usize, const C: usize>(x: &[u8], w: &QuantizedMatrix, n0: usize, out: &mut [i32]) {
    assert!(x.len() == R * w.k_pad && out.len() == R * w.n_pad && n0 + 16 * C <= w.n_pad);
    #[cfg(target_arch = "x86_64")]
    if has_vnni() {
        // SAFETY: the CPU has the features `tile_vnni` is compiled for; the lengths are
        // checked above.
        unsafe { tile_vnni::<R, C>(x, w, n0, out) };
        return;
    }
    tile_portable::<R, C>(x, w, n0, out);
}

fn tile_portable<const R: usize, const C: usize>(
    x: &[u8],
    w: &QuantizedMatrix,
    n0: usize,
    out: &mut [i32],
) {
    for r in 0..R {
        let xr = &x[r * w.k_pad..(r + 1) * w.k_pad];
        for j in n0..n0 + 16 * C {
            out[r * w.n_pad + j] = xr
                .chunks_exact(4)
                .enumerate()
                .map(|(g, xs)| {
                    let ws = &w.values[(g * w.n_pad + j) * 4..(g * w.n_pad + j) * 4 + 4];
                    xs.iter()
                        .zip(ws)
                        .map(|(&a, &b)| i32::from(a) * i32::from(b))
                        .sum::<i32>()
                })
                .sum();
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn has_vnni() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        std::env::var_os("STRATA_INT8_PORTABLE").is_none()
            && crate::math::has_avx512()
            && is_x86_feature_detected!("avx512vnni")
    })
}

/// # Safety
/// The CPU must have AVX-512 F, BW and VNNI; `x` must hold `R` rows of `k_pad` bytes, `out`
/// `R` rows of `n_pad`, and `n0 + 16 C <= n_pad`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[allow(clippy::needless_range_loop)]
unsafe fn tile_vnni<const R: usize, const C: usize>(
    x: &[u8],
    w: &QuantizedMatrix,
    n0: usize,
    out: &mut [i32],
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_si512(); C]; R];
    let (xp, wp) = (x.as_ptr(), w.values.as_ptr());
    for g in 0..w.k_pad / 4 {
        // SAFETY (loads): group `g` of outputs `n0..n0 + 16 C` is inside `values`
        // (`[k_pad / 4][n_pad][4]`), and bytes `4 g..4 g + 4` of each row inside `x`.
        let ws: [__m512i; C] = std::array::from_fn(|c| unsafe {
            _mm512_loadu_si512(wp.add((g * w.n_pad + n0 + 16 * c) * 4).cast())
        });
        for r in 0..R {
            let four = unsafe { xp.add(r * w.k_pad + 4 * g).cast::<i32>().read_unaligned() };
            let xs = _mm512_set1_epi32(four);
            for c in 0..C {
                acc[r][c] = _mm512_dpbusd_epi32(acc[r][c], xs, ws[c]);
            }
        }
    }
    for r in 0..R {
        for c in 0..C {
            // SAFETY: 16 i32 at `r n_pad + n0 + 16 c`, inside `out`.
            unsafe {
                _mm512_storeu_si512(
                    out.as_mut_ptr().add(r * w.n_pad + n0 + 16 * c).cast(),
                    acc[r][c],
                )
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: f32) -> Vec<f32> {
        (0..n)
            .map(|i| ((i as f32 + seed) * 0.731).sin() * 2.0)
            .collect()
    }

    /// The f64 sum the kernel stands for: both operands quantised, their products summed.
    fn reference(x: &[f32], w: &QuantizedMatrix, bias: &[f32]) -> Vec<f64> {
        let (d_in, d_out) = (w.d_in(), w.d_out());
        // In f64 from the integers: the f32 dequantised weights would carry rounding errors
        // of their own, which large cancelling terms make visible.
        let wq = |k: usize, j: usize| w.q(k, j) as f64 * w.scales[j] as f64;
        let mut y = Vec::new();
        for row in x.chunks_exact(d_in) {
            // The rule of `quantize_rows`: `q = round(x · 127 / peak)`, standing for `q · s`.
            let peak = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            let (s, inv) = (peak / 127.0, 127.0 / peak);
            let q: Vec<f64> = row
                .iter()
                .map(|v| {
                    if peak > 0.0 {
                        (v * inv).round() as f64 * s as f64
                    } else {
                        0.0
                    }
                })
                .collect();
            for (j, b) in bias.iter().enumerate().take(d_out) {
                let dot: f64 = q.iter().enumerate().map(|(k, qk)| qk * wq(k, j)).sum();
                y.push(dot + *b as f64);
            }
        }
        y
    }

    #[test]
    fn matches_the_quantised_arithmetic_on_every_path_and_shape() {
        for (rows, d_in, d_out) in [
            (1, 3, 1),
            (5, 70, 9),
            (4, 64, 4),
            (9, 200, 37),
            (64, 784, 256),
        ] {
            for per_output in [false, true] {
                let wf = values(d_in * d_out, 1.0);
                let w = QuantizedMatrix::quantize(&wf, d_in, d_out, per_output);
                let x = values(rows * d_in, 7.0);
                let bias = values(d_out, 3.0);
                let y = linear(&x, &w, Some(&bias), InputScale::Dynamic);
                let r = reference(&x, &w, &bias);
                assert_eq!(y.len(), r.len());
                for (a, b) in y.iter().zip(&r) {
                    assert!(
                        (*a as f64 - b).abs() <= 1e-4 * (1.0 + b.abs()),
                        "{rows}x{d_in}->{d_out}: {a} vs {b}"
                    );
                }
                // The portable loop gives the same integers.
                let (qx, _) = quantize_rows(&x, d_in, w.k_pad, InputScale::Dynamic);
                let mut fast = vec![0i32; rows * w.n_pad];
                dot_rows(&qx, &w, &mut fast);
                let mut slow = vec![0i32; rows * w.n_pad];
                for r in 0..rows {
                    for n0 in (0..w.n_pad).step_by(16) {
                        tile_portable::<1, 1>(
                            &qx[r * w.k_pad..(r + 1) * w.k_pad],
                            &w,
                            n0,
                            &mut slow[r * w.n_pad..(r + 1) * w.n_pad],
                        );
                    }
                }
                assert_eq!(fast, slow);
            }
        }
    }

    #[test]
    fn close_to_the_float_layer_and_independent_of_the_batch() {
        let (d_in, d_out) = (300, 20);
        let wf = values(d_in * d_out, 2.0);
        let w = QuantizedMatrix::quantize(&wf, d_in, d_out, true);
        let x = values(6 * d_in, 5.0);
        let y = linear(&x, &w, None, InputScale::Dynamic);
        let exact = crate::linear::forward(&x, &wf, &vec![0.0; d_out]);
        // Each input and weight is within half its step of its int8 value, so an output is
        // within `Σ_k |x_k| δw_j + |w_kj| δx + δx δw_j` of the float layer's.
        let dw: Vec<f64> = w.scales().iter().map(|&s| s as f64 / 2.0).collect();
        for (r, row) in x.chunks_exact(d_in).enumerate() {
            let dx = row.iter().fold(0f32, |m, v| m.max(v.abs())) as f64 / 127.0 / 2.0;
            for j in 0..d_out {
                let bound: f64 = (0..d_in)
                    .map(|k| {
                        (row[k] as f64).abs() * dw[j]
                            + (wf[k * d_out + j] as f64).abs() * dx
                            + dx * dw[j]
                    })
                    .sum();
                let (a, b) = (y[r * d_out + j], exact[r * d_out + j]);
                assert!(
                    ((a - b) as f64).abs() <= bound + 1e-5,
                    "{a} vs {b}, bound {bound}"
                );
                // And it is not the float layer itself.
                assert!(bound > 0.0);
            }
        }
        assert_ne!(y, exact);
        let alone = linear(&x[2 * d_in..3 * d_in], &w, None, InputScale::Dynamic);
        assert_eq!(alone, y[2 * d_out..3 * d_out]);
    }

    /// A call large enough to split its rows across threads gives each row what the row gives
    /// alone.
    #[test]
    fn a_split_call_gives_each_rows_own_result() {
        let (rows, d_in, d_out): (usize, usize, usize) = (256, 1024, 1024);
        assert!(rows * d_in.next_multiple_of(4) * d_out >= PARALLEL_WORK);
        let w = QuantizedMatrix::quantize(&values(d_in * d_out, 3.0), d_in, d_out, true);
        let x = values(rows * d_in, 9.0);
        let y = linear(&x, &w, None, InputScale::Dynamic);
        assert_eq!(y.len(), rows * d_out);
        for r in [0, 5, 127, 128, 130, 255] {
            let alone = linear(&x[r * d_in..(r + 1) * d_in], &w, None, InputScale::Dynamic);
            assert_eq!(alone, y[r * d_out..(r + 1) * d_out], "row {r}");
        }
    }

    #[test]
    fn a_row_with_nan_gives_nan_and_a_zero_row_the_bias() {
        let w = QuantizedMatrix::quantize(&values(8, 0.0), 4, 2, false);
        let y = linear(
            &[1.0, f32::NAN, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            &w,
            Some(&[0.5, -0.5]),
            InputScale::Dynamic,
        );
        assert!(y[0].is_nan() && y[1].is_nan());
        assert_eq!(&y[2..], &[0.5, -0.5]);
        let y = linear(
            &[f32::INFINITY, 0.0, 0.0, 0.0],
            &w,
            None,
            InputScale::Dynamic,
        );
        assert!(y.iter().all(|v| v.is_nan()));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Any shape, scale and weight granularity: the kernel equals the quantised
        /// arithmetic, and each row's result is the same alone as in its batch.
        #[test]
        fn any_shape_matches_and_rows_are_independent(
            rows in 1usize..12,
            d_in in 1usize..300,
            d_out in 1usize..70,
            scale in 0.01f32..100.0,
            per_output: bool,
            seed in 0f32..100.0,
        ) {
            let wf: Vec<f32> = values(d_in * d_out, seed).iter().map(|v| v * scale).collect();
            let w = QuantizedMatrix::quantize(&wf, d_in, d_out, per_output);
            let x = values(rows * d_in, seed + 0.5);
            let bias = values(d_out, seed + 0.25);
            let y = linear(&x, &w, Some(&bias), InputScale::Dynamic);
            let r = reference(&x, &w, &bias);
            proptest::prop_assert_eq!(y.len(), r.len());
            for (a, b) in y.iter().zip(&r) {
                proptest::prop_assert!((*a as f64 - b).abs() <= 1e-4 * (1.0 + b.abs()), "{} vs {}", a, b);
            }
            let last = &x[(rows - 1) * d_in..];
            proptest::prop_assert_eq!(&linear(last, &w, Some(&bias), InputScale::Dynamic)[..], &y[(rows - 1) * d_out..]);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn geometry(
        batch: usize,
        c: usize,
        hw: [usize; 2],
        o: usize,
        k: [usize; 2],
        stride: [usize; 2],
        padding: [(usize, usize); 2],
        dilation: [usize; 2],
    ) -> ConvGeometry {
        ConvGeometry {
            batch,
            channels_in: c,
            input: hw,
            channels_out: o,
            kernel: k,
            stride,
            padding,
            dilation,
            groups: 1,
        }
    }

    /// The f64 convolution the kernel stands for: each image quantised with its scale (or the
    /// static one), the kernel's int8 values, a ReLU when asked.
    #[allow(clippy::needless_range_loop)]
    fn conv_reference(
        x: &[f32],
        w: &QuantizedMatrix,
        bias: &[f32],
        g: &ConvGeometry,
        scale: InputScale,
        relu: bool,
    ) -> Vec<f64> {
        let c = g.channels_in;
        let ([h, wd], [kh, kw], [ho, wo]) = (g.input, g.kernel, g.output());
        let mut y = Vec::new();
        for img in x.chunks_exact(c * h * wd) {
            let peak = img.iter().fold(0f32, |m, v| m.max(v.abs()));
            let (s, inv) = match scale {
                InputScale::Dynamic => (peak / 127.0, 127.0 / peak),
                InputScale::Static(s) => (s, 1.0 / s),
            };
            let q = |v: f32| {
                if peak > 0.0 {
                    (v * inv).clamp(-127.0, 127.0).round() as f64 * s as f64
                } else {
                    0.0
                }
            };
            for o in 0..g.channels_out {
                for oh in 0..ho {
                    for ow in 0..wo {
                        let mut z = bias[o] as f64;
                        for ci in 0..c {
                            for ki in 0..kh {
                                for kj in 0..kw {
                                    let Some([r, col]) = g.tap([oh, ow], [ki, kj]) else {
                                        continue;
                                    };
                                    let v = img[(ci * h + r) * wd + col];
                                    let k = (ki * kw + kj) * c + ci;
                                    z += q(v) * w.q(k, o) as f64 * w.scales[o] as f64;
                                }
                            }
                        }
                        y.push(if relu { z.max(0.0) } else { z });
                    }
                }
            }
        }
        y
    }

    fn assert_conv_matches(g: &ConvGeometry, per_output: bool, scale: InputScale, relu: bool) {
        let shape = [g.channels_out, g.channels_in, g.kernel[0], g.kernel[1]];
        let wf = values(shape.iter().product(), 1.5);
        let w = QuantizedMatrix::quantize_conv(&wf, shape, per_output);
        let x = values(g.input_len(), 4.0);
        let bias = values(g.channels_out, 6.0);
        let y = conv2d(&x, &w, Some(&bias), g, scale, relu);
        let r = conv_reference(&x, &w, &bias, g, scale, relu);
        assert_eq!(y.len(), r.len(), "{g:?}");
        assert_eq!(y.len(), g.output_len());
        for (a, b) in y.iter().zip(&r) {
            assert!(
                (*a as f64 - b).abs() <= 1e-4 * (1.0 + b.abs()),
                "{g:?}: {a} vs {b}"
            );
        }
    }

    #[test]
    fn conv_matches_the_quantised_arithmetic() {
        for (g, per_output, scale, relu) in [
            // The CNN's stages: one grey channel, then 32 channels to 64.
            (
                geometry(2, 1, [8, 8], 32, [3, 3], [1, 1], [(1, 1), (1, 1)], [1, 1]),
                true,
                InputScale::Dynamic,
                true,
            ),
            (
                geometry(3, 32, [7, 7], 64, [3, 3], [1, 1], [(1, 1), (1, 1)], [1, 1]),
                false,
                InputScale::Dynamic,
                false,
            ),
            // Stride, asymmetric padding, dilation, a rectangular kernel, odd widths.
            (
                geometry(2, 3, [9, 11], 5, [2, 3], [2, 1], [(0, 1), (2, 0)], [1, 2]),
                true,
                InputScale::Dynamic,
                false,
            ),
            (
                geometry(1, 5, [6, 6], 17, [1, 1], [1, 1], [(0, 0), (0, 0)], [1, 1]),
                true,
                InputScale::Static(0.01),
                true,
            ),
            // A static scale below the image's peak clamps.
            (
                geometry(2, 2, [5, 5], 3, [3, 3], [1, 1], [(1, 1), (1, 1)], [1, 1]),
                false,
                InputScale::Static(0.004),
                false,
            ),
        ] {
            assert_conv_matches(&g, per_output, scale, relu);
        }
    }

    #[test]
    fn conv_close_to_the_float_convolution_and_independent_of_the_batch() {
        let g = geometry(4, 6, [10, 10], 8, [3, 3], [1, 1], [(1, 1), (1, 1)], [1, 1]);
        let shape = [8, 6, 3, 3];
        let wf = values(shape.iter().product(), 0.5);
        let w = QuantizedMatrix::quantize_conv(&wf, shape, true);
        let x = values(g.input_len(), 2.0);
        let y = conv2d(&x, &w, None, &g, InputScale::Dynamic, false);
        let exact = crate::conv::forward(&x, &wf, &g);
        assert_eq!(y.len(), exact.len());
        // 54 products of inputs up to 2 by weights up to 2, each off by at most half a step
        // of both: about 54 (2 · 2/127/2 · 2) < 1.8; the typical gap is far smaller.
        let gap = y
            .iter()
            .zip(&exact)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(gap > 0.0 && gap < 0.5, "gap {gap}");
        let (image_in, image_out) = (6 * 100, 8 * 100);
        let one = ConvGeometry { batch: 1, ..g };
        let alone = conv2d(
            &x[2 * image_in..3 * image_in],
            &w,
            None,
            &one,
            InputScale::Dynamic,
            false,
        );
        assert_eq!(alone, y[2 * image_out..3 * image_out]);
        // The quantised kernel's values are the per-channel rule's on `[O, C, kh, kw]`.
        let (q, scales) = quantize_symmetric(&wf, 8, |i| i / 54);
        assert_eq!(w.scales(), &scales[..]);
        for (i, &v) in q.iter().enumerate() {
            let (o, ci, r, col) = (i / 54, i / 9 % 6, i / 3 % 3, i % 3);
            assert_eq!(w.q((r * 3 + col) * 6 + ci, o), v);
        }
    }

    #[test]
    fn conv_image_with_nan_gives_nan_and_scale_outputs_scales() {
        let g = geometry(2, 1, [4, 4], 2, [3, 3], [1, 1], [(1, 1), (1, 1)], [1, 1]);
        let mut w = QuantizedMatrix::quantize_conv(&values(18, 0.0), [2, 1, 3, 3], true);
        let mut x = values(32, 1.0);
        x[20] = f32::NAN;
        let y = conv2d(&x, &w, None, &g, InputScale::Dynamic, true);
        assert!(y[..32].iter().all(|v| v.is_finite()));
        assert!(y[32..].iter().all(|v| v.is_nan()));
        let before = conv2d(
            &x[..16],
            &w,
            None,
            &ConvGeometry { batch: 1, ..g },
            InputScale::Dynamic,
            false,
        );
        w.scale_outputs(&[2.0, -1.0]);
        let after = conv2d(
            &x[..16],
            &w,
            None,
            &ConvGeometry { batch: 1, ..g },
            InputScale::Dynamic,
            false,
        );
        for (i, (a, b)) in before.iter().zip(&after).enumerate() {
            let f = if i < 16 { 2.0 } else { -1.0 };
            assert_eq!(a * f, *b);
        }
    }

    #[test]
    fn a_static_scale_clamps_and_calibrated_falls_back_to_dynamic() {
        let w = QuantizedMatrix::quantize(&[1.0, 1.0], 2, 1, false);
        // Step 0.01: 3.0 is 300 steps, clamped to 127.
        let y = linear(&[3.0, -0.5], &w, None, InputScale::Static(0.01));
        assert!((y[0] - (1.27 - 0.5)).abs() < 1e-5, "{}", y[0]);
        assert_eq!(
            InputScale::calibrated(12.7),
            InputScale::Static(12.7 / 127.0)
        );
        assert_eq!(InputScale::calibrated(0.0), InputScale::Dynamic);
        assert_eq!(InputScale::calibrated(f32::NAN), InputScale::Dynamic);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// Any geometry with one group: the int8 convolution equals the quantised arithmetic.
        #[test]
        fn any_conv_geometry_matches(
            batch in 1usize..3,
            c in 1usize..6,
            h in 1usize..9,
            wd in 1usize..9,
            o in 1usize..20,
            kh in 1usize..4,
            kw in 1usize..4,
            sh in 1usize..3,
            sw in 1usize..3,
            pad in proptest::array::uniform4(0usize..3),
            dh in 1usize..3,
            dw in 1usize..3,
            per_output: bool,
            fixed in proptest::option::of(0.001f32..0.05),
            relu: bool,
        ) {
            let g = geometry(batch, c, [h, wd], o, [kh, kw], [sh, sw], [(pad[0], pad[1]), (pad[2], pad[3])], [dh, dw]);
            let scale = fixed.map_or(InputScale::Dynamic, InputScale::Static);
            assert_conv_matches(&g, per_output, scale, relu);
        }
    }

    #[test]
    fn rounding_is_f32_round() {
        for v in [
            0.5f32,
            -0.5,
            1.5,
            -2.5,
            0.49999997,
            -0.49999997,
            126.5,
            3.2,
            -3.7,
            0.0,
            127.0,
        ] {
            assert_eq!(nearest(v), v.round() as i32, "{v}");
        }
        for i in 0..100_000 {
            let v = (i as f32 * 0.0137).sin() * 127.0;
            assert_eq!(nearest(v), v.round() as i32, "{v}");
        }
    }

    #[test]
    fn packing_keeps_the_values() {
        let wf = values(130 * 3, 4.0);
        let w = QuantizedMatrix::quantize(&wf, 130, 3, true);
        let back = QuantizedMatrix::quantize(&w.dequantize(), 130, 3, true);
        assert_eq!(w.values, back.values);
        for (a, b) in wf.iter().zip(w.dequantize()) {
            assert!((a - b).abs() <= 2.0 / 127.0 / 2.0 + 1e-6);
        }
    }
}
