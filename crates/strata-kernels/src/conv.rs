//! 2-D convolution on contiguous f32 NCHW slices: the whole batch unfolded at once (im2col)
//! and one matrix product per group for the output, the weight gradient and the input
//! gradient (then folded back, col2im). Stride, asymmetric padding, dilation and groups as
//! burn's `ConvOptions<2>`.
//!
//! The unfolded matrix has one row per (input channel, kernel row, kernel column) and one
//! column per (image, output row, output column): `[C * kh * kw, N * Ho * Wo]`. Group `g` owns
//! rows `g * (C / groups) * kh * kw ..` of it and output channels `g * (O / groups) ..`.
//!
//! At stride 1, dilation 1 and one group (most of a ResNet's or VGG's layers) the three
//! products run without unfolding, as shifted products over the input laid out channels-last
//! on its padded grid (the private `forward_shifted`, `backward_input_shifted` and
//! `backward_weight_shifted`).

use rayon::prelude::*;

use crate::gemm::{View, matmul, on_worker, region, transpose, with_scratch};

/// The sizes of one 2-D convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Images in the batch.
    pub batch: usize,
    /// Input channels.
    pub channels_in: usize,
    /// Input height and width.
    pub input: [usize; 2],
    /// Output channels.
    pub channels_out: usize,
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Stride (non-zero).
    pub stride: [usize; 2],
    /// Padding `(begin, end)` per spatial dimension.
    pub padding: [(usize, usize); 2],
    /// Dilation (non-zero).
    pub dilation: [usize; 2],
    /// Groups (non-zero, dividing both channel counts).
    pub groups: usize,
}

impl ConvGeometry {
    /// The output's height and width (0 when the kernel does not fit).
    pub fn output(&self) -> [usize; 2] {
        [0, 1].map(|d| {
            let padded = self.input[d] + self.padding[d].0 + self.padding[d].1;
            let span = self.dilation[d] * (self.kernel[d] - 1) + 1;
            if padded < span {
                0
            } else {
                (padded - span) / self.stride[d] + 1
            }
        })
    }

    /// The input pixel `[row, column]` that kernel tap `[ki, kj]` reads for output position
    /// `[oh, ow]`, or `None` in the padding (the definition the tests compare against).
    #[cfg(test)]
    pub(crate) fn tap(&self, [oh, ow]: [usize; 2], [ki, kj]: [usize; 2]) -> Option<[usize; 2]> {
        let at = |d: usize, o: usize, k: usize| {
            (o * self.stride[d] + k * self.dilation[d])
                .checked_sub(self.padding[d].0)
                .filter(|&i| i < self.input[d])
        };
        Some([at(0, oh, ki)?, at(1, ow, kj)?])
    }

    /// Rows of the unfolded input: `C * kh * kw`.
    pub fn unfolded_rows(&self) -> usize {
        self.channels_in * self.kernel[0] * self.kernel[1]
    }

    /// Columns of the unfolded input: `N * Ho * Wo`.
    pub fn unfolded_cols(&self) -> usize {
        let [ho, wo] = self.output();
        self.batch * ho * wo
    }

    fn plane(&self) -> usize {
        self.input[0] * self.input[1]
    }

    /// Number of elements of the input `[N, C, H, W]`.
    pub fn input_len(&self) -> usize {
        self.batch * self.channels_in * self.plane()
    }

    /// Number of elements of the weight `[O, C / groups, kh, kw]`.
    pub fn weight_len(&self) -> usize {
        self.channels_out * self.unfolded_rows() / self.groups
    }

    /// Number of elements of the output `[N, O, Ho, Wo]`.
    pub fn output_len(&self) -> usize {
        self.channels_out * self.unfolded_cols()
    }

    fn check(&self) {
        assert!(
            self.stride.iter().chain(&self.dilation).all(|&s| s > 0),
            "conv2d: stride and dilation must be non-zero"
        );
        assert!(
            self.groups > 0
                && self.channels_in.is_multiple_of(self.groups)
                && self.channels_out.is_multiple_of(self.groups),
            "conv2d: {} groups do not divide {} input and {} output channels",
            self.groups,
            self.channels_in,
            self.channels_out
        );
        assert!(self.kernel.iter().all(|&k| k > 0), "conv2d: empty kernel");
    }
}

/// The sizes im2col and col2im walk by, unpacked once.
struct Walk {
    h: usize,
    w: usize,
    wo: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    dh: usize,
    dw: usize,
    /// Padding at the top and at the left.
    pt: isize,
    pl: isize,
    /// Output positions per image, and columns of the unfolded input.
    p: usize,
    np: usize,
}

impl ConvGeometry {
    /// The sizes unpacked, after checking the geometry.
    fn walk(&self) -> Walk {
        self.check();
        let [ho, wo] = self.output();
        Walk {
            h: self.input[0],
            w: self.input[1],
            wo,
            kh: self.kernel[0],
            kw: self.kernel[1],
            sh: self.stride[0],
            sw: self.stride[1],
            dh: self.dilation[0],
            dw: self.dilation[1],
            pt: self.padding[0].0 as isize,
            pl: self.padding[1].0 as isize,
            p: ho * wo,
            np: self.unfolded_cols(),
        }
    }
}

/// The valid output columns `[lo, hi)` of one kernel column: those whose input column
/// `ow * stride + offset` lies in `0..width` (empty, `hi <= lo`, when the kernel column lies
/// wholly in the padding).
pub(crate) fn valid_range(
    offset: isize,
    width: usize,
    out_width: usize,
    stride: usize,
) -> (usize, usize) {
    // The first `ow` with `ow * s + offset >= 0`, and the first with `ow * s + offset >= width`.
    let first_at = |bound: isize| ((bound - offset).max(0) as usize).div_ceil(stride) as isize;
    let lo = first_at(0).min(out_width as isize) as usize;
    let hi = first_at(width as isize).clamp(lo as isize, out_width as isize) as usize;
    (lo, hi)
}

/// Unfolds `x` (`[N, C, H, W]`) into `cols` (`[C * kh * kw, N * Ho * Wo]`), zeros where the
/// kernel reaches into the padding.
pub fn im2col(x: &[f32], g: &ConvGeometry, cols: &mut [f32]) {
    let k = g.walk();
    assert_eq!(x.len(), g.input_len(), "im2col: input length");
    assert_eq!(cols.len(), g.unfolded_rows() * k.np, "im2col: cols length");
    if k.np == 0 {
        return;
    }
    for_each_chunk(cols, k.np, |row, out| {
        let c = row / (k.kh * k.kw);
        let ki = (row / k.kw) % k.kh;
        let kj = row % k.kw;
        let offset = (kj * k.dw) as isize - k.pl;
        let (lo, hi) = valid_range(offset, k.w, k.wo, k.sw);
        // The valid output rows of this kernel row.
        let (top, bottom) = valid_range((ki * k.dh) as isize - k.pt, k.h, k.p / k.wo, k.sh);
        // At stride 1 with rows as wide as the output's, the block's valid part is one run of
        // the plane: output pixel `q` reads input pixel `q + shift`. One copy, then the columns
        // that fall in the padding zeroed, instead of three small copies per row (the 4 x 4
        // and 2 x 2 planes of ResNet-18 spent most of their unfolding in those calls).
        let one_run = k.sw == 1 && k.sh == 1 && k.w == k.wo && hi > lo && bottom > top;
        for n in 0..g.batch {
            let plane = &x[(n * g.channels_in + c) * k.h * k.w..][..k.h * k.w];
            let dst = &mut out[n * k.p..(n + 1) * k.p];
            if one_run {
                let wo = k.wo;
                let shift = ((ki * k.dh) as isize - k.pt) * wo as isize + offset;
                let (first, last) = (top * wo + lo, (bottom - 1) * wo + hi);
                let from = (first as isize + shift) as usize;
                dst[..first].fill(0.0);
                dst[first..last].copy_from_slice(&plane[from..from + (last - first)]);
                dst[last..].fill(0.0);
                for oh in top..bottom {
                    for z in (0..lo).chain(hi..wo) {
                        dst[oh * wo + z] = 0.0;
                    }
                }
                continue;
            }
            for (oh, drow) in dst.chunks_exact_mut(k.wo).enumerate() {
                if !(top..bottom).contains(&oh) {
                    drow.fill(0.0);
                    continue;
                }
                let ih = ((oh * k.sh + ki * k.dh) as isize - k.pt) as usize;
                let src = &plane[ih * k.w..][..k.w];
                drow[..lo].fill(0.0);
                if hi > lo {
                    // Input columns `start, start + sw, ...`, all inside the row.
                    let start = (lo as isize * k.sw as isize + offset) as usize;
                    if k.sw == 1 {
                        drow[lo..hi].copy_from_slice(&src[start..start + (hi - lo)]);
                    } else {
                        let taps = src[start..].iter().step_by(k.sw);
                        for (d, &v) in drow[lo..hi].iter_mut().zip(taps) {
                            *d = v;
                        }
                    }
                }
                drow[hi..].fill(0.0);
            }
        }
    });
}

/// Folds `cols` (`[C * kh * kw, N * Ho * Wo]`) back into `dx` (`[N, C, H, W]`), adding the
/// overlapping contributions; `dx` is overwritten.
pub fn col2im(cols: &[f32], g: &ConvGeometry, dx: &mut [f32]) {
    let k = g.walk();
    assert_eq!(dx.len(), g.input_len(), "col2im: input length");
    assert_eq!(cols.len(), g.unfolded_rows() * k.np, "col2im: cols length");
    if dx.is_empty() {
        return;
    }
    for_each_chunk(dx, k.h * k.w, |index, plane| {
        plane.fill(0.0);
        if k.p == 0 {
            return;
        }
        let n = index / g.channels_in;
        let c = index % g.channels_in;
        for ki in 0..k.kh {
            for kj in 0..k.kw {
                let row = (c * k.kh + ki) * k.kw + kj;
                let src = &cols[row * k.np + n * k.p..][..k.p];
                let offset = (kj * k.dw) as isize - k.pl;
                let (lo, hi) = valid_range(offset, k.w, k.wo, k.sw);
                if hi <= lo {
                    continue;
                }
                // Input columns `start, start + sw, ...`, all inside the row.
                let start = (lo as isize * k.sw as isize + offset) as usize;
                for (oh, srow) in src.chunks_exact(k.wo).enumerate() {
                    let ih = (oh * k.sh + ki * k.dh) as isize - k.pt;
                    if ih < 0 || ih >= k.h as isize {
                        continue;
                    }
                    let prow = &mut plane[ih as usize * k.w..][..k.w];
                    let taps = prow[start..].iter_mut().step_by(k.sw);
                    for (d, s) in taps.zip(&srow[lo..hi]) {
                        *d += s;
                    }
                }
            }
        }
    });
}

/// Output columns a block of images gives each matrix product: enough for the GEMM to run at
/// speed, few enough that the block's unfolded input (`C * kh * kw` rows of them) stays in
/// cache. Unfolding the whole batch at once streams a matrix of tens of megabytes through
/// memory three times a layer (ResNet-20's first stage: 144 rows x 32,768 columns).
pub const BLOCK_COLUMNS: usize = 1024;

/// `f(index, chunk)` over the `size`-long chunks of `data`, in parallel or one after another.
fn chunks<F>(data: &mut [f32], size: usize, parallel: bool, f: F)
where
    F: Fn(usize, &mut [f32]) + Send + Sync,
{
    if parallel {
        region(|| {
            data.par_chunks_mut(size)
                .enumerate()
                .for_each(|(i, c)| f(i, c));
        });
    } else {
        data.chunks_mut(size).enumerate().for_each(|(i, c)| f(i, c));
    }
}

/// [`chunks`] in parallel unless already on a rayon worker.
fn for_each_chunk<F>(data: &mut [f32], size: usize, f: F)
where
    F: Fn(usize, &mut [f32]) + Send + Sync,
{
    chunks(data, size, !on_worker(), f);
}

/// The batch cut into blocks of whole images.
#[derive(Clone, Copy, Debug)]
struct Blocks {
    /// Images in the batch.
    batch: usize,
    /// Images per block (the last block may have fewer).
    images: usize,
    /// Number of blocks.
    count: usize,
    /// Whether the blocks run in parallel, one thread each and serial products inside, or one
    /// after another with parallel products.
    parallel: bool,
}

impl Blocks {
    /// Blocks of about `columns` output columns each.
    fn new(g: &ConvGeometry, columns: usize) -> Self {
        let [ho, wo] = g.output();
        let images = (columns / (ho * wo).max(1)).clamp(1, g.batch.max(1));
        let count = g.batch.div_ceil(images);
        let parallel = count > 1 && count >= rayon::current_num_threads() && !on_worker();
        Self {
            batch: g.batch,
            images,
            count,
            parallel,
        }
    }

    /// The images of block `b`, from its first.
    fn range(&self, b: usize) -> (usize, usize) {
        let first = b * self.images;
        (first, self.images.min(self.batch - first))
    }

    /// The geometry of block `b`.
    fn geometry(&self, g: &ConvGeometry, b: usize) -> ConvGeometry {
        ConvGeometry {
            batch: self.range(b).1,
            ..*g
        }
    }

    /// Block `b`'s images in `data`, a tensor of the whole batch.
    fn part<'a>(&self, data: &'a [f32], b: usize) -> &'a [f32] {
        let per_image = data.len() / self.batch;
        let (first, images) = self.range(b);
        &data[first * per_image..][..images * per_image]
    }

    /// `f(block, chunk)` for every block, `chunk` being the block's images in `data` (a tensor
    /// of the whole batch); in parallel when the blocks are.
    fn run(&self, data: &mut [f32], f: impl Fn(usize, &mut [f32]) + Send + Sync) {
        let size = self.images * (data.len() / self.batch);
        chunks(data, size, self.parallel, f);
    }
}

/// `[N, O, P]` -> `[O, N * P]` (the output gradient as one matrix per group).
fn channels_first(dy: &[f32], batch: usize, channels: usize, p: usize, out: &mut [f32]) {
    let np = batch * p;
    for_each_chunk(out, np, |o, row| {
        for n in 0..batch {
            row[n * p..(n + 1) * p].copy_from_slice(&dy[(n * channels + o) * p..][..p]);
        }
    });
}

/// `f(dy)` with the output gradient of a block as the matrix `[O, N * P]`: the block's own
/// slice when it holds one image, else a reordered copy.
fn with_channels_first<R>(dy: &[f32], g: &ConvGeometry, f: impl FnOnce(&[f32]) -> R) -> R {
    let [ho, wo] = g.output();
    if g.batch == 1 {
        f(dy)
    } else {
        with_scratch(dy.len(), |dyr| {
            channels_first(dy, g.batch, g.channels_out, ho * wo, dyr);
            f(dyr)
        })
    }
}

/// The convolution's output `[N, O, Ho, Wo]` (no bias) of `x` `[N, C, H, W]` and `weight`
/// `[O, C / groups, kh, kw]`.
pub fn forward(x: &[f32], weight: &[f32], g: &ConvGeometry) -> Vec<f32> {
    if let Some((c, live)) = cropped(g) {
        assert_eq!(weight.len(), g.weight_len(), "conv2d: weight length");
        return forward(x, &crop(weight, g, live), &c);
    }
    if shifts(g) {
        forward_shifted(x, weight, g, BLOCK_COLUMNS)
    } else {
        forward_in_blocks(x, weight, g, BLOCK_COLUMNS)
    }
}

fn forward_in_blocks(x: &[f32], weight: &[f32], g: &ConvGeometry, columns: usize) -> Vec<f32> {
    g.check();
    assert_eq!(x.len(), g.input_len(), "conv2d: input length");
    assert_eq!(weight.len(), g.weight_len(), "conv2d: weight length");
    let mut out = vec![0.0f32; g.output_len()];
    if out.is_empty() {
        return out;
    }
    let blocks = Blocks::new(g, columns);
    blocks.run(&mut out, |b, ob| {
        forward_block(blocks.part(x, b), weight, &blocks.geometry(g, b), ob);
    });
    out
}

/// One block's output, written into `out`.
fn forward_block(x: &[f32], weight: &[f32], g: &ConvGeometry, out: &mut [f32]) {
    let rows = g.unfolded_rows();
    let np = g.unfolded_cols();
    let p = np / g.batch;
    let o = g.channels_out;
    let (rg, og) = (rows / g.groups, o / g.groups);
    with_scratch(rows * np, |cols| {
        im2col(x, g, cols);
        let product = |dst: &mut [f32]| {
            for group in 0..g.groups {
                matmul(
                    dst,
                    View::row_major(group * og * np, og, np),
                    weight,
                    View::row_major(group * og * rg, og, rg),
                    cols,
                    View::row_major(group * rg * np, rg, np),
                    false,
                );
            }
        };
        if g.batch == 1 {
            // `[O, P]` is the image's output itself.
            product(out);
            return;
        }
        with_scratch(o * np, |tmp| {
            product(tmp);
            // [O, N * P] -> [N, O, P]
            for_each_chunk(out, o * p, |n, image| {
                for (c, dst) in image.chunks_exact_mut(p).enumerate() {
                    dst.copy_from_slice(&tmp[c * np + n * p..][..p]);
                }
            });
        });
    });
}

/// The gradient of the loss with respect to `x`, given the output's gradient `dy`.
pub fn backward_input(weight: &[f32], dy: &[f32], g: &ConvGeometry) -> Vec<f32> {
    if let Some((c, live)) = cropped(g) {
        assert_eq!(weight.len(), g.weight_len(), "conv2d: weight length");
        return backward_input(&crop(weight, g, live), dy, &c);
    }
    if shifts(g) {
        backward_input_shifted(weight, dy, g, BLOCK_COLUMNS)
    } else {
        backward_input_in_blocks(weight, dy, g, BLOCK_COLUMNS)
    }
}

fn backward_input_in_blocks(
    weight: &[f32],
    dy: &[f32],
    g: &ConvGeometry,
    columns: usize,
) -> Vec<f32> {
    g.check();
    assert_eq!(weight.len(), g.weight_len(), "conv2d: weight length");
    assert_eq!(dy.len(), g.output_len(), "conv2d: output gradient length");
    let mut dx = vec![0.0f32; g.input_len()];
    if dx.is_empty() || g.unfolded_cols() == 0 {
        return dx;
    }
    let blocks = Blocks::new(g, columns);
    blocks.run(&mut dx, |b, dxb| {
        let gb = blocks.geometry(g, b);
        let dyb = blocks.part(dy, b);
        let rows = gb.unfolded_rows();
        let np = gb.unfolded_cols();
        let (rg, og) = (rows / gb.groups, gb.channels_out / gb.groups);
        with_channels_first(dyb, &gb, |dyr| {
            with_scratch(rows * np, |dcols| {
                for group in 0..gb.groups {
                    matmul(
                        dcols,
                        View::row_major(group * rg * np, rg, np),
                        weight,
                        View::row_major(group * og * rg, og, rg).t(),
                        dyr,
                        View::row_major(group * og * np, og, np),
                        false,
                    );
                }
                col2im(dcols, &gb, dxb);
            });
        });
    });
    dx
}

/// The gradient of the loss with respect to the weight, given the input `x` and the output's
/// gradient `dy`.
pub fn backward_weight(x: &[f32], dy: &[f32], g: &ConvGeometry) -> Vec<f32> {
    if let Some((c, live)) = cropped(g) {
        return uncrop(&backward_weight(x, dy, &c), g, live);
    }
    if shifts(g) {
        backward_weight_shifted(x, dy, g, BLOCK_COLUMNS)
    } else {
        backward_weight_in_blocks(x, dy, g, BLOCK_COLUMNS)
    }
}

/// The kernel taps `lo..hi`, per spatial dimension, that read the input for at least one
/// output; the others read only padding.
fn live_taps(g: &ConvGeometry) -> [(usize, usize); 2] {
    let out = g.output();
    [0, 1].map(|d| {
        // Tap `t` reads input `o * stride + t * dilation - padding` for output `o`.
        let live = |t: usize| {
            let offset = (t * g.dilation[d]) as isize - g.padding[d].0 as isize;
            let (lo, hi) = valid_range(offset, g.input[d], out[d], g.stride[d]);
            hi > lo
        };
        let lo = (0..g.kernel[d]).find(|&t| live(t)).unwrap_or(0);
        let hi = (0..g.kernel[d])
            .rev()
            .find(|&t| live(t))
            .map_or(0, |t| t + 1);
        (lo, hi)
    })
}

/// The same convolution with its kernel cropped to the live taps (see [`live_taps`]) and its
/// padding trimmed to match, and those taps; `None` when every tap is live (or none is, or the
/// trim would need negative padding). Taps that read only padding add nothing, yet unfolding
/// and the shifted products compute them: a 3x3 kernel on ResNet-18's 1x1 planes with padding
/// 1 has one live tap in nine. The output's size does not change.
fn cropped(g: &ConvGeometry) -> Option<(ConvGeometry, [(usize, usize); 2])> {
    g.check();
    if g.output().contains(&0) {
        return None;
    }
    let live = live_taps(g);
    if live == [(0, g.kernel[0]), (0, g.kernel[1])] || live.iter().any(|(lo, hi)| hi <= lo) {
        return None;
    }
    let mut c = *g;
    for (d, &(lo, hi)) in live.iter().enumerate() {
        let front = lo * g.dilation[d];
        let back = (g.kernel[d] - hi) * g.dilation[d];
        let (begin, end) = g.padding[d];
        if front > begin || back > end {
            return None;
        }
        c.kernel[d] = hi - lo;
        c.padding[d] = (begin - front, end - back);
    }
    debug_assert_eq!(c.output(), g.output());
    Some((c, live))
}

/// `weight` `[O, C / groups, kh, kw]` cut to the taps `live` (see [`cropped`]).
fn crop(weight: &[f32], g: &ConvGeometry, live: [(usize, usize); 2]) -> Vec<f32> {
    let [(i0, i1), (j0, j1)] = live;
    let [kh, kw] = g.kernel;
    let kept = (i1 - i0) * (j1 - j0);
    let mut out = vec![0.0f32; weight.len() / (kh * kw) * kept];
    // Every cache line of the weights is read for a tap or two: in parallel, blocks of
    // kernels per task.
    const KERNELS_PER_JOB: usize = 1 << 12;
    out.par_chunks_mut(kept * KERNELS_PER_JOB)
        .zip(weight.par_chunks(kh * kw * KERNELS_PER_JOB))
        .for_each(|(out, weight)| {
            for (dst, kernel) in out.chunks_exact_mut(kept).zip(weight.chunks_exact(kh * kw)) {
                // Element by element: the runs are a tap or two long, too short for a copy.
                let taps = (i0..i1).flat_map(|ki| (j0..j1).map(move |kj| ki * kw + kj));
                for (d, tap) in dst.iter_mut().zip(taps) {
                    *d = kernel[tap];
                }
            }
        });
    out
}

/// The inverse of [`crop`] for a weight gradient: zero at the taps that read only padding.
fn uncrop(dw: &[f32], g: &ConvGeometry, live: [(usize, usize); 2]) -> Vec<f32> {
    let [(i0, i1), (j0, j1)] = live;
    let [kh, kw] = g.kernel;
    let (ch, cw) = (i1 - i0, j1 - j0);
    let mut out = vec![0.0f32; g.weight_len()];
    for (kernel, part) in out.chunks_exact_mut(kh * kw).zip(dw.chunks_exact(ch * cw)) {
        for (ki, row) in (i0..i1).zip(part.chunks_exact(cw)) {
            kernel[ki * kw + j0..ki * kw + j1].copy_from_slice(row);
        }
    }
    out
}

/// Whether the convolution runs as shifted products (see [`backward_weight_shifted`]): stride
/// 1, dilation 1 and one group, and a padded grid at most twice the output and the input (the
/// shifted products compute the padding's pixels too; ResNet-18's 4x4 to 1x1 planes with
/// padding 1 would waste 2.25 to 9 times the work, where unfolding wastes none).
fn shifts(g: &ConvGeometry) -> bool {
    let [hp, wp] = padded(g);
    let [ho, wo] = g.output();
    let grid = hp * wp;
    shiftable(g) && grid <= 2 * ho * wo && grid <= 2 * g.input[0] * g.input[1]
}

/// Whether the geometry has the form the shifted products need (the speed test of [`shifts`]
/// aside).
fn shiftable(g: &ConvGeometry) -> bool {
    g.stride == [1, 1] && g.dilation == [1, 1] && g.groups == 1
}

/// The checks every shifted product starts with: a valid geometry of the form they need.
///
/// # Panics
/// When the geometry is invalid or not stride 1, dilation 1, one group.
fn check_shiftable(g: &ConvGeometry, what: &str) {
    g.check();
    assert!(
        shiftable(g),
        "conv2d: shifted {what} needs stride 1, dilation 1, one group"
    );
}

/// Where a tensor `[N, channels, rows, cols]` sits on the padded grid: pixel `(n, r, c)` is
/// grid pixel `(n * Hp + r + top) * Wp + c + left`.
#[derive(Clone, Copy)]
struct OnGrid {
    channels: usize,
    rows: usize,
    cols: usize,
    top: usize,
    left: usize,
    hp: usize,
    wp: usize,
}

impl OnGrid {
    /// A block's input: at stride 1 the input pixel under kernel tap `(ki, kj)` of grid pixel
    /// `p` is then grid pixel `p + ki * Wp + kj`, a fixed shift per tap.
    fn input(g: &ConvGeometry) -> Self {
        let [hp, wp] = padded(g);
        Self {
            channels: g.channels_in,
            rows: g.input[0],
            cols: g.input[1],
            top: g.padding[0].0,
            left: g.padding[1].0,
            hp,
            wp,
        }
    }

    /// A block's output (or its gradient), in the grid's top-left corner of each image.
    fn output(g: &ConvGeometry) -> Self {
        let [ho, wo] = g.output();
        Self {
            channels: g.channels_out,
            rows: ho,
            cols: wo,
            top: 0,
            left: 0,
            ..Self::input(g)
        }
    }

    /// Each image's row `r` on the grid, channels-last: its offset in floats.
    fn row(&self, n: usize, r: usize) -> usize {
        ((n * self.hp + r + self.top) * self.wp + self.left) * self.channels
    }

    /// `src` (`[N, C, rows, cols]`) channels-last on the grid, `[N, Hp, Wp, C]`, zero off it
    /// (and in whatever of `out` lies past the grid).
    fn scatter(&self, src: &[f32], out: &mut [f32]) {
        let (c, rows, cols) = (self.channels, self.rows, self.cols);
        // The end of what is written so far: the gaps between image rows are zeroed as they
        // come.
        let mut done = 0;
        for (n, image) in src.chunks_exact(c * rows * cols).enumerate() {
            for r in 0..rows {
                let at = self.row(n, r);
                out[done..at].fill(0.0);
                // Row `r` of every channel, `[C, cols]`, to `[cols, C]`.
                transpose(&image[r * cols..], rows * cols, c, cols, &mut out[at..], c);
                done = at + cols * c;
            }
        }
        out[done..].fill(0.0);
    }

    /// The inverse of [`OnGrid::scatter`]: `out` (`[N, C, rows, cols]`) from the grid.
    fn gather(&self, grid: &[f32], out: &mut [f32]) {
        let (c, rows, cols) = (self.channels, self.rows, self.cols);
        for (n, image) in out.chunks_exact_mut(c * rows * cols).enumerate() {
            for r in 0..rows {
                let src = &grid[self.row(n, r)..];
                transpose(src, c, cols, c, &mut image[r * cols..], rows * cols);
            }
        }
    }
}

/// The padded input's height and width.
fn padded(g: &ConvGeometry) -> [usize; 2] {
    [0, 1].map(|d| g.input[d] + g.padding[d].0 + g.padding[d].1)
}

/// `weight` `[O, C, kh, kw]` reordered to `[kh, O, kw, C]`, or to `[kh, C, kw, O]` with the
/// kernel columns reversed when `transposed`: the per-kernel-row left operands of the shifted
/// forward pass and input gradient.
fn weight_by_kernel_row(weight: &[f32], g: &ConvGeometry, transposed: bool) -> Vec<f32> {
    let (c, o) = (g.channels_in, g.channels_out);
    let [kh, kw] = g.kernel;
    let mut out = vec![0.0f32; weight.len()];
    if kh * kw == 1 {
        // `[O, C]` as it is, or transposed.
        if transposed {
            transpose(weight, c, o, c, &mut out, o);
        } else {
            out.copy_from_slice(weight);
        }
        return out;
    }
    for oc in 0..o {
        for ci in 0..c {
            for ki in 0..kh {
                for kj in 0..kw {
                    let v = weight[((oc * c + ci) * kh + ki) * kw + kj];
                    let at = if transposed {
                        ((ki * c + ci) * kw + (kw - 1 - kj)) * o + oc
                    } else {
                        ((ki * o + oc) * kw + kj) * c + ci
                    };
                    out[at] = v;
                }
            }
        }
    }
    out
}

/// The kernel rows' products of the shifted forward pass and input gradient: `from` channels
/// in (channels-last on the grid), `to` channels out.
struct Taps {
    kh: usize,
    kw: usize,
    from: usize,
    to: usize,
}

impl Taps {
    /// `dst` (`pixels` grid pixels, channels-last) = the sum over kernel rows `ki` of `wt`'s
    /// block `ki` (`[to, kw * from]`) times the `kw * from` values of `grid` from pixel
    /// `first(ki)` on, for each pixel.
    fn products(
        &self,
        dst: &mut [f32],
        pixels: usize,
        wt: &[f32],
        grid: &[f32],
        first: impl Fn(usize) -> usize,
    ) {
        let (kw, from, to) = (self.kw, self.from, self.to);
        for ki in 0..self.kh {
            matmul(
                dst,
                View::row_major(0, pixels, to).t(),
                wt,
                View::row_major(ki * to * kw * from, to, kw * from),
                grid,
                View {
                    offset: first(ki) * from,
                    rows: kw * from,
                    cols: pixels,
                    row_stride: 1,
                    col_stride: from,
                },
                ki > 0,
            );
        }
    }
}

/// The forward pass at stride 1, dilation 1 and one group, without unfolding: with the input
/// channels-last on its padded grid (`xp`), output pixel `p` of the grid
/// (`(n * Hp + oh) * Wp + ow`) is the sum over kernel rows `ki` of `W[:, :, ki, :]` times the
/// `kw * C` values of `xp` from pixel `p + ki * Wp` on: one matrix product per kernel row whose
/// right operand is a strided view of `xp`, so no unfolded matrix (nine times the input for
/// 3x3) is written or read. The grid's padding pixels are computed and dropped.
fn forward_shifted(x: &[f32], weight: &[f32], g: &ConvGeometry, columns: usize) -> Vec<f32> {
    check_shiftable(g, "forward");
    assert_eq!(x.len(), g.input_len(), "conv2d: input length");
    assert_eq!(weight.len(), g.weight_len(), "conv2d: weight length");
    let mut out = vec![0.0f32; g.output_len()];
    if out.is_empty() {
        return out;
    }
    let (c, o) = (g.channels_in, g.channels_out);
    let [kh, kw] = g.kernel;
    let [ho, _] = g.output();
    let [hp, wp] = padded(g);
    let wt = weight_by_kernel_row(weight, g, false);
    let blocks = Blocks::new(g, columns);
    blocks.run(&mut out, |b, ob| {
        let gb = blocks.geometry(g, b);
        let pixels = gb.batch * hp * wp;
        // Up to the last image's last output row.
        let k = pixels - (hp - ho) * wp;
        with_scratch((pixels + kw - 1) * c, |xp| {
            OnGrid::input(&gb).scatter(blocks.part(x, b), xp);
            with_scratch(o * k, |dst| {
                let taps = Taps {
                    kh,
                    kw,
                    from: c,
                    to: o,
                };
                taps.products(dst, k, &wt, xp, |ki| ki * wp);
                OnGrid::output(&gb).gather(dst, ob);
            });
        });
    });
    out
}

/// The input gradient at stride 1, dilation 1 and one group, without unfolding: the adjoint
/// of [`forward_shifted`]. With the output gradient channels-last on the padded grid (zero off
/// the output) after a margin of `(kh - 1) * Wp + kw - 1` zero pixels, input pixel `q` of the
/// grid gets, per kernel row `ki`, `W[:, :, ki, :]` (kernel columns reversed) times the `kw * O`
/// gradient values from pixel `q - ki * Wp - (kw - 1)` on. The padding pixels are computed and
/// dropped.
fn backward_input_shifted(
    weight: &[f32],
    dy: &[f32],
    g: &ConvGeometry,
    columns: usize,
) -> Vec<f32> {
    check_shiftable(g, "input gradient");
    assert_eq!(weight.len(), g.weight_len(), "conv2d: weight length");
    assert_eq!(dy.len(), g.output_len(), "conv2d: output gradient length");
    let mut dx = vec![0.0f32; g.input_len()];
    if dx.is_empty() || g.unfolded_cols() == 0 {
        return dx;
    }
    let (c, o) = (g.channels_in, g.channels_out);
    let [kh, kw] = g.kernel;
    let [hp, wp] = padded(g);
    let margin = (kh - 1) * wp + kw - 1;
    let wt = weight_by_kernel_row(weight, g, true);
    let blocks = Blocks::new(g, columns);
    blocks.run(&mut dx, |b, dxb| {
        let gb = blocks.geometry(g, b);
        let pixels = gb.batch * hp * wp;
        with_scratch((margin + pixels) * o, |dyq| {
            dyq[..margin * o].fill(0.0);
            OnGrid::output(&gb).scatter(blocks.part(dy, b), &mut dyq[margin * o..]);
            with_scratch(c * pixels, |dst| {
                let taps = Taps {
                    kh,
                    kw,
                    from: o,
                    to: c,
                };
                taps.products(dst, pixels, &wt, dyq, |ki| margin - ki * wp - (kw - 1));
                OnGrid::input(&gb).gather(dst, dxb);
            });
        });
    });
    dx
}

/// The weight gradient at stride 1, dilation 1 and one group, without unfolding: with the
/// input channels-last on its padded grid (`xp`) and the output gradient on the same grid
/// (`dyp`, zero off the output), the gradient of kernel row `ki` is one matrix product over all
/// pixels, `dW[:, ki, :, :] = dyp^T x xp shifted by ki * Wp`, whose right operand is a strided
/// view of `xp` (its row `q` holds the `kw * C` values from pixel `q + ki * Wp` on). Both
/// operands run pixel-major, the layout the GEMM packs fastest; the unfolded matrix's rows are
/// pixel-minor and ran at a tenth of the speed (10 against 97 GFLOP/s for ResNet-20's first
/// stage). The price is the padding's pixels (13% more for 32x32 images with padding 1).
fn backward_weight_shifted(x: &[f32], dy: &[f32], g: &ConvGeometry, columns: usize) -> Vec<f32> {
    check_shiftable(g, "weight gradient");
    assert_eq!(x.len(), g.input_len(), "conv2d: input length");
    assert_eq!(dy.len(), g.output_len(), "conv2d: output gradient length");
    let len = g.weight_len();
    if len == 0 || g.unfolded_cols() == 0 {
        return vec![0.0; len];
    }
    let (c, o) = (g.channels_in, g.channels_out);
    let [kh, kw] = g.kernel;
    let [ho, _] = g.output();
    let [hp, wp] = padded(g);
    let blocks = Blocks::new(g, columns);
    // Adds block `b`'s contribution to `dw`, laid out `[O, kh, kw, C]`.
    let add = |b: usize, dw: &mut [f32]| {
        let gb = blocks.geometry(g, b);
        let (xb, dyb) = (blocks.part(x, b), blocks.part(dy, b));
        let pixels = gb.batch * hp * wp;
        // The last image's rows below its output add nothing; the product stops before them.
        let k = pixels - (hp - ho) * wp;
        with_scratch((pixels + kw - 1) * c, |xp| {
            OnGrid::input(&gb).scatter(xb, xp);
            with_scratch(pixels * o, |dyp| {
                OnGrid::output(&gb).scatter(dyb, dyp);
                for ki in 0..kh {
                    matmul(
                        dw,
                        View {
                            offset: ki * kw * c,
                            rows: o,
                            cols: kw * c,
                            row_stride: kh * kw * c,
                            col_stride: 1,
                        },
                        dyp,
                        View::row_major(0, k, o).t(),
                        xp,
                        View {
                            offset: ki * wp * c,
                            rows: k,
                            cols: kw * c,
                            row_stride: c,
                            col_stride: 1,
                        },
                        true,
                    );
                }
            });
        });
    };
    let taps_last = sum_over_blocks(&blocks, len, add);
    // [O, kh, kw, C] -> [O, C, kh, kw]
    let mut dw = vec![0.0f32; len];
    for (dst, src) in dw
        .chunks_exact_mut(c * kh * kw)
        .zip(taps_last.chunks_exact(kh * kw * c))
    {
        for (tap, taps) in src.chunks_exact(c).enumerate() {
            for (ci, &v) in taps.iter().enumerate() {
                dst[ci * kh * kw + tap] = v;
            }
        }
    }
    dw
}

fn backward_weight_in_blocks(x: &[f32], dy: &[f32], g: &ConvGeometry, columns: usize) -> Vec<f32> {
    g.check();
    assert_eq!(x.len(), g.input_len(), "conv2d: input length");
    assert_eq!(dy.len(), g.output_len(), "conv2d: output gradient length");
    let len = g.weight_len();
    if len == 0 || g.unfolded_cols() == 0 {
        return vec![0.0; len];
    }
    let blocks = Blocks::new(g, columns);
    // Adds block `b`'s contribution to `dw`.
    let add = |b: usize, dw: &mut [f32]| {
        let gb = blocks.geometry(g, b);
        let (xb, dyb) = (blocks.part(x, b), blocks.part(dy, b));
        let rows = gb.unfolded_rows();
        let np = gb.unfolded_cols();
        let (rg, og) = (rows / gb.groups, gb.channels_out / gb.groups);
        with_scratch(rows * np, |cols| {
            im2col(xb, &gb, cols);
            with_channels_first(dyb, &gb, |dyr| {
                for group in 0..gb.groups {
                    matmul(
                        dw,
                        View::row_major(group * og * rg, og, rg),
                        dyr,
                        View::row_major(group * og * np, og, np),
                        cols,
                        View::row_major(group * rg * np, rg, np).t(),
                        b > 0 || blocks.parallel,
                    );
                }
            });
        });
    };
    sum_over_blocks(&blocks, len, add)
}

/// The sum over the blocks of `add(block, sum)`, which adds a block's part to a `len`-long
/// zeroed sum: one partial sum per rayon task, added up at the end, when the blocks run in
/// parallel.
fn sum_over_blocks(
    blocks: &Blocks,
    len: usize,
    add: impl Fn(usize, &mut [f32]) + Send + Sync,
) -> Vec<f32> {
    if blocks.parallel {
        region(|| {
            (0..blocks.count)
                .into_par_iter()
                .fold(
                    || vec![0.0f32; len],
                    |mut dw, b| {
                        add(b, &mut dw);
                        dw
                    },
                )
                .reduce_with(|mut a, b| {
                    a.iter_mut().zip(&b).for_each(|(p, q)| *p += q);
                    a
                })
                .unwrap_or_else(|| vec![0.0; len])
        })
    } else {
        let mut dw = vec![0.0f32; len];
        (0..blocks.count).for_each(|b| add(b, &mut dw));
        dw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The convolution by its definition, one multiply-add at a time.
    fn direct(x: &[f32], w: &[f32], g: &ConvGeometry) -> Vec<f32> {
        let [h, wd] = g.input;
        let [ho, wo] = g.output();
        let [kh, kw] = g.kernel;
        let (cg, og) = (g.channels_in / g.groups, g.channels_out / g.groups);
        let mut y = vec![0.0; g.output_len()];
        for n in 0..g.batch {
            for o in 0..g.channels_out {
                let group = o / og;
                for oh in 0..ho {
                    for ow in 0..wo {
                        let mut sum = 0.0;
                        for ci in 0..cg {
                            let c = group * cg + ci;
                            for ki in 0..kh {
                                for kj in 0..kw {
                                    let Some([ih, iw]) = g.tap([oh, ow], [ki, kj]) else {
                                        continue;
                                    };
                                    sum += x[((n * g.channels_in + c) * h + ih) * wd + iw]
                                        * w[((o * cg + ci) * kh + ki) * kw + kj];
                                }
                            }
                        }
                        y[((n * g.channels_out + o) * ho + oh) * wo + ow] = sum;
                    }
                }
            }
        }
        y
    }

    fn values(len: usize, seed: f32) -> Vec<f32> {
        (0..len)
            .map(|i| ((i as f32 + seed) * 0.618).sin())
            .collect()
    }

    fn geometry() -> ConvGeometry {
        ConvGeometry {
            batch: 2,
            channels_in: 4,
            input: [7, 6],
            channels_out: 6,
            kernel: [3, 2],
            stride: [2, 1],
            padding: [(1, 2), (0, 1)],
            dilation: [1, 2],
            groups: 2,
        }
    }

    #[test]
    fn forward_matches_the_definition() {
        let g = geometry();
        let x = values(g.input_len(), 0.0);
        let w = values(g.weight_len(), 3.0);
        let want = direct(&x, &w, &g);
        let got = forward(&x, &w, &g);
        assert_eq!(got.len(), want.len());
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    /// Both gradients against the adjoint identity: <dy, conv(x, w)> is linear in x and w, so
    /// <dx, x> = <dy, y> = <dw, w>.
    #[test]
    fn gradients_are_the_adjoints() {
        let g = geometry();
        let x = values(g.input_len(), 1.0);
        let w = values(g.weight_len(), 2.0);
        let dy = values(g.output_len(), 5.0);
        let y = direct(&x, &w, &g);
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(p, q)| p * q).sum::<f32>();
        let reference = dot(&dy, &y);
        let dx = backward_input(&w, &dy, &g);
        let dw = backward_weight(&x, &dy, &g);
        assert!((dot(&dx, &x) - reference).abs() < 1e-3 * reference.abs().max(1.0));
        assert!((dot(&dw, &w) - reference).abs() < 1e-3 * reference.abs().max(1.0));
    }

    /// The valid output columns of a kernel column against trying each one.
    #[test]
    fn valid_ranges_are_the_columns_inside_the_row() {
        for width in 1..7usize {
            for out_width in 0..9usize {
                for stride in 1..4usize {
                    for offset in -9isize..9 {
                        let inside = |ow: usize| {
                            let i = (ow * stride) as isize + offset;
                            i >= 0 && i < width as isize
                        };
                        let (lo, hi) = valid_range(offset, width, out_width, stride);
                        let want: Vec<usize> = (0..out_width).filter(|&ow| inside(ow)).collect();
                        let got: Vec<usize> = (lo..hi).collect();
                        assert_eq!(got, want, "{width} {out_width} {stride} {offset}");
                    }
                }
            }
        }
    }

    /// Taps that read only padding are cropped away (ResNet-18's 1x1 planes, a stride-2
    /// kernel on a 2x2 plane, a one-row input, groups, dilation): the three products against
    /// the uncropped unfolding, element by element, and the cropped taps' weight gradient zero.
    #[test]
    fn cropped_kernels_match_the_whole_ones() {
        let base = ConvGeometry {
            batch: 3,
            channels_in: 4,
            input: [1, 1],
            channels_out: 6,
            kernel: [3, 3],
            stride: [1, 1],
            padding: [(1, 1), (1, 1)],
            dilation: [1, 1],
            groups: 1,
        };
        let cases = [
            (base, [(1, 2), (1, 2)]),
            (
                ConvGeometry {
                    input: [2, 2],
                    stride: [2, 2],
                    ..base
                },
                [(1, 3), (1, 3)],
            ),
            (
                ConvGeometry {
                    input: [1, 5],
                    ..base
                },
                [(1, 2), (0, 3)],
            ),
            (ConvGeometry { groups: 2, ..base }, [(1, 2), (1, 2)]),
            (
                ConvGeometry {
                    input: [1, 2],
                    padding: [(2, 2), (2, 2)],
                    dilation: [2, 2],
                    ..base
                },
                [(1, 2), (1, 2)],
            ),
        ];
        for (g, want_live) in cases {
            let (c, live) = cropped(&g).expect("some taps read only padding");
            assert_eq!(live, want_live, "{g:?}");
            assert_eq!(c.output(), g.output());
            let x = values(g.input_len(), 0.5);
            let w = values(g.weight_len(), 1.5);
            let dy = values(g.output_len(), 2.5);
            let close = |what: &str, got: &[f32], want: &[f32]| {
                assert_eq!(got.len(), want.len(), "{what}");
                for (a, b) in got.iter().zip(want) {
                    assert!((a - b).abs() < 1e-5, "{what} {g:?}: {a} vs {b}");
                }
            };
            let columns = BLOCK_COLUMNS;
            close(
                "forward",
                &forward(&x, &w, &g),
                &forward_in_blocks(&x, &w, &g, columns),
            );
            close(
                "forward (definition)",
                &forward(&x, &w, &g),
                &direct(&x, &w, &g),
            );
            let dx = backward_input(&w, &dy, &g);
            close(
                "input gradient",
                &dx,
                &backward_input_in_blocks(&w, &dy, &g, columns),
            );
            let dw = backward_weight(&x, &dy, &g);
            close(
                "weight gradient",
                &dw,
                &backward_weight_in_blocks(&x, &dy, &g, columns),
            );
            let [kh, kw] = g.kernel;
            let [(i0, i1), (j0, j1)] = live;
            for (t, v) in dw.iter().enumerate() {
                let (ki, kj) = ((t / kw) % kh, t % kw);
                if !(i0..i1).contains(&ki) || !(j0..j1).contains(&kj) {
                    assert_eq!(*v, 0.0, "a cropped tap's gradient");
                }
            }
        }
        // Every tap live: nothing to crop; and a crop that would need negative padding (the
        // last tap's dilated reach, 2, past a padding of 1) is left alone.
        assert!(cropped(&geometry()).is_none());
        let uneven = ConvGeometry {
            input: [1, 2],
            padding: [(2, 2), (2, 1)],
            dilation: [2, 2],
            ..base
        };
        assert!(cropped(&uneven).is_none());
        let full = ConvGeometry {
            input: [4, 4],
            ..base
        };
        assert!(cropped(&full).is_none());
    }

    /// The shifted forward pass and gradients against the definition, the unfolded gradients
    /// and the adjoint identity, at stride 1 over kernel shapes (1x1, 3x3, 5x2, a kernel as
    /// large as the padded input), asymmetric and no padding, and blocks of one image, of two
    /// and the whole batch.
    #[test]
    fn the_shifted_products_match_the_unfolded_ones() {
        let cases = [
            ([3, 3], [(1, 1), (1, 1)], [7, 6]),
            ([1, 1], [(0, 0), (0, 0)], [5, 4]),
            ([5, 2], [(2, 1), (0, 3)], [6, 7]),
            ([3, 3], [(0, 0), (0, 0)], [5, 5]),
            ([4, 3], [(1, 0), (2, 0)], [3, 1]),
        ];
        for (kernel, padding, input) in cases {
            let g = ConvGeometry {
                batch: 5,
                channels_in: 3,
                input,
                channels_out: 4,
                kernel,
                stride: [1, 1],
                padding,
                dilation: [1, 1],
                groups: 1,
            };
            assert!(shiftable(&g));
            let p = g.unfolded_cols() / g.batch;
            let x = values(g.input_len(), 8.0);
            let w = values(g.weight_len(), 9.0);
            let dy = values(g.output_len(), 10.0);
            let y = direct(&x, &w, &g);
            let want = [
                y.clone(),
                backward_input_in_blocks(&w, &dy, &g, usize::MAX),
                backward_weight_in_blocks(&x, &dy, &g, usize::MAX),
            ];
            for columns in [1, 2 * p, usize::MAX] {
                let got = [
                    forward_shifted(&x, &w, &g, columns),
                    backward_input_shifted(&w, &dy, &g, columns),
                    backward_weight_shifted(&x, &dy, &g, columns),
                ];
                for (what, (got, want)) in ["y", "dx", "dw"].iter().zip(got.iter().zip(&want)) {
                    assert_eq!(got.len(), want.len());
                    for (i, (a, b)) in got.iter().zip(want).enumerate() {
                        assert!(
                            (a - b).abs() < 1e-4,
                            "{kernel:?} {padding:?} {input:?}, {columns} columns, {what}[{i}]: \
                             {a} vs {b}"
                        );
                    }
                }
            }
            let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(p, q)| p * q).sum::<f32>();
            let reference = dot(&dy, &y);
            let dx = backward_input(&w, &dy, &g);
            let dw = backward_weight(&x, &dy, &g);
            assert!((dot(&dx, &x) - reference).abs() < 1e-3 * reference.abs().max(1.0));
            assert!((dot(&dw, &w) - reference).abs() < 1e-3 * reference.abs().max(1.0));
        }
    }

    /// Blocks of one image, of two (the last one short), and the whole batch give the same
    /// output and gradients; with five images on two threads the first two run in parallel.
    #[test]
    fn every_block_size_agrees() {
        let g = ConvGeometry {
            batch: 5,
            ..geometry()
        };
        let p = g.unfolded_cols() / g.batch;
        let x = values(g.input_len(), 4.0);
        let w = values(g.weight_len(), 6.0);
        let dy = values(g.output_len(), 7.0);
        let want = direct(&x, &w, &g);
        let whole = usize::MAX;
        let dx_whole = backward_input_in_blocks(&w, &dy, &g, whole);
        let dw_whole = backward_weight_in_blocks(&x, &dy, &g, whole);
        for columns in [1, 2 * p, whole] {
            let close = |got: &[f32], want: &[f32], what: &str| {
                assert_eq!(got.len(), want.len(), "{what}, {columns} columns");
                for (a, b) in got.iter().zip(want) {
                    assert!(
                        (a - b).abs() < 1e-4,
                        "{what}, {columns} columns: {a} vs {b}"
                    );
                }
            };
            close(&forward_in_blocks(&x, &w, &g, columns), &want, "output");
            close(
                &backward_input_in_blocks(&w, &dy, &g, columns),
                &dx_whole,
                "dx",
            );
            close(
                &backward_weight_in_blocks(&x, &dy, &g, columns),
                &dw_whole,
                "dw",
            );
        }
        // The whole-batch gradients are the adjoints (as in the test above).
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(p, q)| p * q).sum::<f32>();
        let reference = dot(&dy, &want);
        assert!((dot(&dx_whole, &x) - reference).abs() < 1e-3 * reference.abs().max(1.0));
        assert!((dot(&dw_whole, &w) - reference).abs() < 1e-3 * reference.abs().max(1.0));
    }
}
