//! 2-D max pooling on contiguous f32 NCHW slices, forward with the position of each window's
//! maximum and backward by adding each output gradient at that position. Padding counts as
//! minus infinity; the first maximum of a window wins (PyTorch's rule), and a NaN wins over
//! any number.

use rayon::prelude::*;

use crate::conv::valid_range;
use crate::math::simd;

/// The sizes of one max pooling (floor mode, symmetric padding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeometry {
    /// Images times channels.
    pub planes: usize,
    /// Input height and width.
    pub input: [usize; 2],
    /// Window height and width.
    pub kernel: [usize; 2],
    /// Stride.
    pub stride: [usize; 2],
    /// Padding on each side.
    pub padding: [usize; 2],
    /// Dilation.
    pub dilation: [usize; 2],
}

impl PoolGeometry {
    /// Output height and width (0 when the window does not fit).
    pub fn output(&self) -> [usize; 2] {
        [0, 1].map(|d| {
            let padded = self.input[d] + 2 * self.padding[d];
            let span = self.dilation[d] * (self.kernel[d] - 1) + 1;
            if padded < span || self.stride[d] == 0 {
                0
            } else {
                (padded - span) / self.stride[d] + 1
            }
        })
    }
}

/// The pooled values and, for each, the index of its maximum within its input plane (as f32:
/// exact below 2^24; `-1` for a window entirely in the padding).
pub fn forward(x: &[f32], g: &PoolGeometry) -> (Vec<f32>, Vec<f32>) {
    let [h, w] = g.input;
    let [ho, wo] = g.output();
    assert_eq!(x.len(), g.planes * h * w, "max pool: input length");
    let mut out = vec![0.0f32; g.planes * ho * wo];
    let mut idx = vec![0.0f32; out.len()];
    if out.is_empty() {
        return (out, idx);
    }
    let [kh, kw] = g.kernel;
    let [sh, sw] = g.stride;
    let [dh, dw] = g.dilation;
    let inside = g.padding == [0, 0];
    out.par_chunks_mut(ho * wo)
        .zip(idx.par_chunks_mut(ho * wo))
        .enumerate()
        .for_each(|(plane, (out, idx))| {
            let xs = &x[plane * h * w..][..h * w];
            if inside {
                // Every window lies inside the plane: no bounds to test per tap. The usual
                // windows get constant sizes, so their loops unroll.
                let windows = Windows {
                    w,
                    wo,
                    sh,
                    sw,
                    dh,
                    dw,
                };
                pool_plane(&windows, xs, out, idx, kh, kw);
                return;
            }
            pool_padded_plane(xs, out, idx, g);
        });
    (out, idx)
}

/// The pooled values only, for inference (no backward pass, so no indices): equal to
/// [`forward`]'s values, NaNs included. A padded plane is first copied into a scratch plane
/// with a border of minus infinity, so every window is read without bounds tests; the maximum
/// is taken along each window's rows first (`kw` taps, one output row's worth at a time) and
/// then down the `kh` rows, in vector loops.
pub fn values(x: &[f32], g: &PoolGeometry) -> Vec<f32> {
    let [h, w] = g.input;
    let [ho, wo] = g.output();
    assert_eq!(x.len(), g.planes * h * w, "max pool: input length");
    let mut out = vec![0.0f32; g.planes * ho * wo];
    if out.is_empty() {
        return out;
    }
    let [ph, pw] = g.padding;
    let (hp, wp) = (h + 2 * ph, w + 2 * pw);
    let inside = g.padding == [0, 0];
    out.par_chunks_mut(ho * wo)
        .zip(x.par_chunks(h * w))
        .for_each_init(
            || {
                let scratch = if inside { 0 } else { hp * wp };
                (vec![f32::NEG_INFINITY; scratch], vec![0.0f32; hp * wo])
            },
            |(padded, across), (out, xs)| {
                let plane: &[f32] = if inside {
                    xs
                } else {
                    for (dst, src) in padded[ph * wp..].chunks_mut(wp).zip(xs.chunks(w)) {
                        dst[pw..pw + w].copy_from_slice(src);
                    }
                    padded
                };
                values_plane(plane, wp, wo, g, across, out);
            },
        );
    out
}

simd! {
    /// One plane's maxima (`out`, rows of `wo`) from its (padded) values in rows of `wp`: first
    /// across each window's columns for every input row (`across`, rows of `wo`), then down
    /// each window's rows.
    fn values_plane(
        plane: &[f32],
        wp: usize,
        wo: usize,
        g: &PoolGeometry,
        across: &mut [f32],
        out: &mut [f32],
    ) {
        let ([kh, kw], [sh, sw], [dh, dw]) = (g.kernel, g.stride, g.dilation);
        if (kw, sw, dw) == (2, 2, 1) {
            // The common window 2 wide, stride 2: pairs side by side, which vectorise.
            for (row, acc) in plane.chunks_exact(wp).zip(across.chunks_exact_mut(wo)) {
                for (a, pair) in acc.iter_mut().zip(row.chunks_exact(2)) {
                    let (first, v) = (pair[0], pair[1]);
                    *a = if better(v, first) { v } else { first };
                }
            }
        } else {
            for (row, acc) in plane.chunks_exact(wp).zip(across.chunks_exact_mut(wo)) {
                for (ow, a) in acc.iter_mut().enumerate() {
                    let start = ow * sw;
                    let mut best = row[start];
                    for kj in 1..kw {
                        let v = row[start + kj * dw];
                        best = if better(v, best) { v } else { best };
                    }
                    *a = best;
                }
            }
        }
        for (oh, orow) in out.chunks_exact_mut(wo).enumerate() {
            let first = oh * sh;
            orow.copy_from_slice(&across[first * wo..][..wo]);
            for ki in 1..kh {
                let r = &across[(first + ki * dh) * wo..][..wo];
                for (o, &v) in orow.iter_mut().zip(r) {
                    *o = if better(v, *o) { v } else { *o };
                }
            }
        }
    }
}

/// Whether `v` replaces `best` as a window's maximum: larger, or a NaN over a number (the first
/// of equal values stays).
#[inline(always)]
fn better(v: f32, best: f32) -> bool {
    // `|` and `&`, not `||` and `&&`: no branch to mispredict.
    (v > best) | (v.is_nan() & !best.is_nan())
}

/// The walk of windows that lie wholly inside an input plane of width `w`.
struct Windows {
    w: usize,
    wo: usize,
    sh: usize,
    sw: usize,
    dh: usize,
    dw: usize,
}

impl Windows {
    /// One plane's maxima and their indices, windows of `kh x kw`.
    #[inline(always)]
    fn pool(&self, xs: &[f32], out: &mut [f32], idx: &mut [f32], kh: usize, kw: usize) {
        for (oh, (orow, irow)) in out
            .chunks_exact_mut(self.wo)
            .zip(idx.chunks_exact_mut(self.wo))
            .enumerate()
        {
            let top = oh * self.sh * self.w;
            for (ow, (o, i)) in orow.iter_mut().zip(irow.iter_mut()).enumerate() {
                let start = top + ow * self.sw;
                let (mut best, mut at) = (xs[start], start);
                for ki in 0..kh {
                    let row = start + ki * self.dh * self.w;
                    for kj in 0..kw {
                        let k = row + kj * self.dw;
                        let v = xs[k];
                        // Selects, not branches: which value wins is data.
                        let take = better(v, best);
                        best = if take { v } else { best };
                        at = if take { k } else { at };
                    }
                }
                *o = best;
                *i = at as f32;
            }
        }
    }
}

simd! {
    /// [`Windows::pool`] over one plane, with the usual window sizes as constants (so that
    /// their loops unroll).
    fn pool_plane(
        windows: &Windows,
        xs: &[f32],
        out: &mut [f32],
        idx: &mut [f32],
        kh: usize,
        kw: usize,
    ) {
        match (kh, kw) {
            (2, 2) => windows.pool(xs, out, idx, 2, 2),
            (3, 3) => windows.pool(xs, out, idx, 3, 3),
            _ => windows.pool(xs, out, idx, kh, kw),
        }
    }
}

simd! {
    /// One plane's maxima and their indices when windows reach into the padding. Each tap's
    /// valid output columns are computed once, and the taps are the outer loops: every output
    /// column keeps its own running maximum, with no bounds test per tap (one output at a
    /// time, this was 10% of ResNet-18's inference profile, for its stem's 3 x 3 pool with
    /// padding 1; now 7%). The taps reach each output in the same order as before (rows, then
    /// columns), so the first maximum still wins.
    fn pool_padded_plane(xs: &[f32], out: &mut [f32], idx: &mut [f32], g: &PoolGeometry) {
        let [h, w] = g.input;
        let [_, wo] = g.output();
        let [kh, kw] = g.kernel;
        let [sh, sw] = g.stride;
        let [dh, dw] = g.dilation;
        let [ph, pw] = g.padding.map(|p| p as isize);
        let rows = out.chunks_exact_mut(wo).zip(idx.chunks_exact_mut(wo));
        for (oh, (orow, irow)) in rows.enumerate() {
            orow.fill(f32::NEG_INFINITY);
            irow.fill(-1.0);
            for ki in 0..kh {
                let ih = (oh * sh + ki * dh) as isize - ph;
                if ih < 0 || ih >= h as isize {
                    continue;
                }
                let first = ih as usize * w;
                let row = &xs[first..][..w];
                for kj in 0..kw {
                    let offset = (kj * dw) as isize - pw;
                    let (lo, hi) = valid_range(offset, w, wo, sw);
                    for ow in lo..hi {
                        let iw = ((ow * sw) as isize + offset) as usize;
                        let (v, best, at) = (row[iw], orow[ow], irow[ow]);
                        // Selects: which value wins is data. The first tap inside the plane
                        // always takes the place of the padding's minus infinity.
                        let take = (at < 0.0) | better(v, best);
                        orow[ow] = if take { v } else { best };
                        irow[ow] = if take { (first + iw) as f32 } else { at };
                    }
                }
            }
        }
    }
}

/// The input's gradient: each output gradient added at its window's maximum.
pub fn backward(dy: &[f32], idx: &[f32], g: &PoolGeometry) -> Vec<f32> {
    let [h, w] = g.input;
    let [ho, wo] = g.output();
    assert_eq!(dy.len(), g.planes * ho * wo, "max pool: gradient length");
    assert_eq!(idx.len(), dy.len(), "max pool: index length");
    let mut dx = vec![0.0f32; g.planes * h * w];
    if dx.is_empty() || dy.is_empty() {
        return dx;
    }
    dx.par_chunks_mut(h * w)
        .zip(dy.par_chunks(ho * wo).zip(idx.par_chunks(ho * wo)))
        .for_each(|(dx, (dy, idx))| {
            for (&g, &i) in dy.iter().zip(idx) {
                if i >= 0.0 {
                    dx[i as usize] += g;
                }
            }
        });
    dx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_by_two_windows_take_their_first_maximum() {
        let g = PoolGeometry {
            planes: 1,
            input: [2, 4],
            kernel: [2, 2],
            stride: [2, 2],
            padding: [0, 0],
            dilation: [1, 1],
        };
        let x = [1.0, 3.0, 5.0, 5.0, 2.0, 0.0, 5.0, 4.0];
        let (y, idx) = forward(&x, &g);
        assert_eq!(y, vec![3.0, 5.0]);
        assert_eq!(idx, vec![1.0, 2.0]);
        let dx = backward(&[10.0, 20.0], &idx, &g);
        assert_eq!(dx, vec![0.0, 10.0, 20.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    }

    /// The maxima by their definition (padding as minus infinity, first maximum, NaN wins).
    fn naive(x: &[f32], g: &PoolGeometry) -> Vec<f32> {
        let [h, w] = g.input;
        let [ho, wo] = g.output();
        let mut y = vec![];
        for p in 0..g.planes {
            for oh in 0..ho {
                for ow in 0..wo {
                    let mut best: Option<f32> = None;
                    for ki in 0..g.kernel[0] {
                        for kj in 0..g.kernel[1] {
                            let ih = (oh * g.stride[0] + ki * g.dilation[0]) as isize
                                - g.padding[0] as isize;
                            let iw = (ow * g.stride[1] + kj * g.dilation[1]) as isize
                                - g.padding[1] as isize;
                            if ih < 0 || iw < 0 || ih >= h as isize || iw >= w as isize {
                                continue;
                            }
                            let v = x[p * h * w + ih as usize * w + iw as usize];
                            best = match best {
                                None => Some(v),
                                Some(b) if b.is_nan() => Some(b),
                                Some(b) if v.is_nan() || v > b => Some(v),
                                b => b,
                            };
                        }
                    }
                    y.push(best.unwrap_or(f32::NEG_INFINITY));
                }
            }
        }
        y
    }

    /// Windows inside the plane (the unrolled 2x2 and 3x3 walks and the general one) and
    /// padded windows agree with the definition, NaNs included.
    #[test]
    fn every_window_shape_matches_the_definition() {
        let x: Vec<f32> = (0..2 * 7 * 8)
            .map(|i| {
                if i % 23 == 5 {
                    f32::NAN
                } else {
                    ((i * 37) % 11) as f32 - 5.0
                }
            })
            .collect();
        for kernel in [[2, 2], [3, 3], [2, 3]] {
            for padding in [[0, 0], [1, 1]] {
                for (stride, dilation) in [([2, 2], [1, 1]), ([1, 2], [2, 1])] {
                    let g = PoolGeometry {
                        planes: 2,
                        input: [7, 8],
                        kernel,
                        stride,
                        padding,
                        dilation,
                    };
                    let (y, _) = forward(&x, &g);
                    let want = naive(&x, &g);
                    assert_eq!(y.len(), want.len());
                    for (a, b) in y.iter().zip(&want) {
                        assert!(a == b || (a.is_nan() && b.is_nan()), "{g:?}: {a} vs {b}");
                    }
                    let v = values(&x, &g);
                    assert_eq!(v.len(), want.len());
                    for (a, b) in v.iter().zip(&want) {
                        assert!(
                            a == b || (a.is_nan() && b.is_nan()),
                            "values {g:?}: {a} vs {b}"
                        );
                    }
                }
            }
        }
    }
}
