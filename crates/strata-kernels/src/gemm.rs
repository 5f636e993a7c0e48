//! A bounds-checked front to the `gemm` crate's f32 matrix product (the one burn-flex uses),
//! a blocked transpose for the kernels' layout changes, and a per-thread pool of scratch
//! buffers so that a layer's large temporary matrices are not allocated, page-faulted and
//! zeroed again at every call.

use std::cell::{Cell, RefCell};

/// A strided matrix inside a slice: element `(i, j)` is at `offset + i * row_stride + j *
/// col_stride`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct View {
    /// Index of element `(0, 0)`.
    pub offset: usize,
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// Distance between rows.
    pub row_stride: usize,
    /// Distance between columns.
    pub col_stride: usize,
}

impl View {
    /// A row-major `rows x cols` matrix starting at `offset`.
    pub fn row_major(offset: usize, rows: usize, cols: usize) -> Self {
        Self {
            offset,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transposed view of the same elements.
    pub fn t(self) -> Self {
        Self {
            offset: self.offset,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    /// One past the largest index the view touches (0 when it is empty).
    fn end(&self) -> usize {
        if self.rows == 0 || self.cols == 0 {
            0
        } else {
            self.offset + (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride + 1
        }
    }
}

/// True when the caller already runs in parallel: on a rayon worker thread, except on the
/// thread that [`drive`]s a computation outside the kernels' parallel regions. The kernels'
/// loops and matrix products run serially there.
pub(crate) fn on_worker() -> bool {
    rayon::current_thread_index().is_some() && !DRIVER.with(Cell::get)
}

thread_local! {
    /// Set on the rayon thread that runs a [`drive`]n computation while it is outside the
    /// kernels' parallel regions.
    static DRIVER: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` on one of rayon's threads, as the thread that drives the kernels, and returns its
/// value. Called from outside rayon's threads, each parallel region of a kernel otherwise makes
/// the calling thread sleep on a condition variable until rayon's threads finish, and wakes it
/// after: a training step of the character LSTM makes about 150 such round trips. The driving
/// thread instead takes part in each region and waits for the others by stealing work, as
/// OpenMP's master thread does. The CLI runs every command this way; a library user may wrap
/// a training loop in it. Results are the same bits either way. Called on a rayon thread, it
/// runs `f` there.
///
/// ```
/// let sum = strata_kernels::drive(|| (0..1000).map(|i| i as f64).sum::<f64>());
/// assert_eq!(sum, 499_500.0);
/// ```
pub fn drive<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return f();
    }
    rayon::scope(|_| with_driver(true, f))
}

/// Runs one of the kernels' parallel regions, `f`: on the driving thread, the parts it runs
/// itself count as nested (their products and loops serial), as on the other threads.
pub(crate) fn region<R>(f: impl FnOnce() -> R) -> R {
    with_driver(false, f)
}

/// `f` with this thread's driver mark set to `driving`, then the mark as it was.
fn with_driver<R>(driving: bool, f: impl FnOnce() -> R) -> R {
    let before = DRIVER.with(|d| d.replace(driving));
    let value = f();
    DRIVER.with(|d| d.set(before));
    value
}

/// Products smaller than this many multiply-adds run on the calling thread.
const PARALLEL_WORK: usize = 64 * 64 * 64;

/// `dst = lhs x rhs`, or `dst += lhs x rhs` when `accumulate`. Large products run on rayon's
/// threads, except when called from one of them.
///
/// # Panics
/// When the shapes disagree or a view reaches past its slice.
pub fn matmul(
    dst: &mut [f32],
    d: View,
    lhs: &[f32],
    l: View,
    rhs: &[f32],
    r: View,
    accumulate: bool,
) {
    assert_eq!(l.rows, d.rows, "matmul: lhs rows");
    assert_eq!(r.cols, d.cols, "matmul: rhs columns");
    assert_eq!(l.cols, r.rows, "matmul: inner dimension");
    assert!(d.end() <= dst.len(), "matmul: dst out of bounds");
    assert!(l.end() <= lhs.len(), "matmul: lhs out of bounds");
    assert!(r.end() <= rhs.len(), "matmul: rhs out of bounds");
    if d.rows == 0 || d.cols == 0 {
        return;
    }
    if l.cols == 0 {
        if !accumulate {
            for i in 0..d.rows {
                for j in 0..d.cols {
                    dst[d.offset + i * d.row_stride + j * d.col_stride] = 0.0;
                }
            }
        }
        return;
    }
    let work = d.rows.saturating_mul(d.cols).saturating_mul(l.cols);
    // On a rayon worker the caller already runs in parallel: no nested parallelism.
    let parallelism = if work >= PARALLEL_WORK && rayon::current_num_threads() > 1 && !on_worker() {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: every element each view reaches is inside its slice (checked above), `dst` is
    // borrowed mutably so it aliases neither operand, and gemm reads `dst` only when told to.
    unsafe {
        gemm::gemm(
            d.rows,
            d.cols,
            l.cols,
            dst.as_mut_ptr().add(d.offset),
            d.col_stride as isize,
            d.row_stride as isize,
            accumulate,
            lhs.as_ptr().add(l.offset),
            l.col_stride as isize,
            l.row_stride as isize,
            rhs.as_ptr().add(r.offset),
            r.col_stride as isize,
            r.row_stride as isize,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// The side of [`transpose`]'s square tiles.
const TILE: usize = 8;

/// `dst[j * dst_stride + i] = src[i * src_stride + j]` for `i < rows`, `j < cols`: a
/// `rows x cols` matrix with row stride `src_stride` written transposed, with row stride
/// `dst_stride`; nothing else in `dst` changes.
///
/// It runs in 8 x 8 tiles, so that each tile's 8 source rows and 8 destination rows stay in
/// cache while it is copied, whatever the strides; with AVX (checked at run time) a tile is
/// eight vector loads, 24 shuffles and eight vector stores. The channels-last layouts of the
/// shifted convolution are made and undone this way: element by element, over a destination
/// stride of 16 to 64 floats, the layout copies were 14% of a ResNet-20 training step.
///
/// # Panics
/// When a strided row reaches past its slice.
pub fn transpose(
    src: &[f32],
    src_stride: usize,
    rows: usize,
    cols: usize,
    dst: &mut [f32],
    dst_stride: usize,
) {
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(
        src_stride >= cols && src.len() >= (rows - 1) * src_stride + cols,
        "transpose: source out of bounds"
    );
    assert!(
        dst_stride >= rows && dst.len() >= (cols - 1) * dst_stride + rows,
        "transpose: destination out of bounds"
    );
    #[cfg(target_arch = "x86_64")]
    let full: fn(&[f32], usize, &mut [f32], usize) = if crate::math::has_avx2() {
        // SAFETY: the CPU has AVX (checked at run time).
        |s, ss, d, ds| unsafe { tile_avx(s, ss, d, ds) }
    } else {
        tile
    };
    #[cfg(not(target_arch = "x86_64"))]
    let full = tile;
    in_tiles(src, src_stride, rows, cols, dst, dst_stride, full);
}

/// [`transpose`]'s loop: `full` copies each whole tile (its arguments are the slices from the
/// tile's first element on, and the strides); the ragged edges go element by element.
#[inline(always)]
fn in_tiles(
    src: &[f32],
    src_stride: usize,
    rows: usize,
    cols: usize,
    dst: &mut [f32],
    dst_stride: usize,
    full: impl Fn(&[f32], usize, &mut [f32], usize),
) {
    for i0 in (0..rows).step_by(TILE) {
        let h = TILE.min(rows - i0);
        for j0 in (0..cols).step_by(TILE) {
            let w = TILE.min(cols - j0);
            if h == TILE && w == TILE {
                full(
                    &src[i0 * src_stride + j0..],
                    src_stride,
                    &mut dst[j0 * dst_stride + i0..],
                    dst_stride,
                );
            } else {
                for i in i0..i0 + h {
                    for j in j0..j0 + w {
                        dst[j * dst_stride + i] = src[i * src_stride + j];
                    }
                }
            }
        }
    }
}

/// One 8 x 8 tile of [`transpose`], portably.
fn tile(src: &[f32], src_stride: usize, dst: &mut [f32], dst_stride: usize) {
    let mut t = [[0.0f32; TILE]; TILE];
    for (i, row) in t.iter_mut().enumerate() {
        row.copy_from_slice(&src[i * src_stride..][..TILE]);
    }
    for j in 0..TILE {
        for (i, v) in dst[j * dst_stride..][..TILE].iter_mut().enumerate() {
            *v = t[i][j];
        }
    }
}

/// One 8 x 8 tile of [`transpose`] in AVX registers: rows interleaved in pairs, then in
/// fours, then the 128-bit halves exchanged.
///
/// # Panics
/// When the tile reaches past either slice.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
fn tile_avx(src: &[f32], src_stride: usize, dst: &mut [f32], dst_stride: usize) {
    use std::arch::x86_64::*;
    assert!(
        src.len() >= (TILE - 1) * src_stride + TILE,
        "transpose: tile source"
    );
    assert!(
        dst.len() >= (TILE - 1) * dst_stride + TILE,
        "transpose: tile destination"
    );
    // SAFETY: the eight rows read and the eight written lie inside the slices (asserted).
    unsafe {
        let row = |i: usize| _mm256_loadu_ps(src.as_ptr().add(i * src_stride));
        let (r0, r1, r2, r3) = (row(0), row(1), row(2), row(3));
        let (r4, r5, r6, r7) = (row(4), row(5), row(6), row(7));
        // Pairs: [a0j, a1j, a0j+1, a1j+1] per 128-bit half.
        let (t0, t1) = (_mm256_unpacklo_ps(r0, r1), _mm256_unpackhi_ps(r0, r1));
        let (t2, t3) = (_mm256_unpacklo_ps(r2, r3), _mm256_unpackhi_ps(r2, r3));
        let (t4, t5) = (_mm256_unpacklo_ps(r4, r5), _mm256_unpackhi_ps(r4, r5));
        let (t6, t7) = (_mm256_unpacklo_ps(r6, r7), _mm256_unpackhi_ps(r6, r7));
        // Fours: column j of rows 0..4 (or 4..8) in the low half, column j + 4 in the high.
        let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        let out = dst.as_mut_ptr();
        let columns = [
            _mm256_permute2f128_ps::<0x20>(s0, s4),
            _mm256_permute2f128_ps::<0x20>(s1, s5),
            _mm256_permute2f128_ps::<0x20>(s2, s6),
            _mm256_permute2f128_ps::<0x20>(s3, s7),
            _mm256_permute2f128_ps::<0x31>(s0, s4),
            _mm256_permute2f128_ps::<0x31>(s1, s5),
            _mm256_permute2f128_ps::<0x31>(s2, s6),
            _mm256_permute2f128_ps::<0x31>(s3, s7),
        ];
        for (j, c) in columns.into_iter().enumerate() {
            _mm256_storeu_ps(out.add(j * dst_stride), c);
        }
    }
}

thread_local! {
    static POOL: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// Buffers above this many floats (1 GiB) are freed after use instead of kept.
const KEEP_AT_MOST: usize = 1 << 28;

/// Runs `f` on a scratch buffer of `len` floats whose contents are unspecified (`f` must write
/// before it reads). The buffer comes from this thread's pool and goes back to it afterwards.
pub fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buffer = POOL
        .with(|pool| {
            let mut pool = pool.borrow_mut();
            // The smallest kept buffer that is large enough, else the largest (to grow).
            let best = (0..pool.len())
                .filter(|&i| pool[i].len() >= len)
                .min_by_key(|&i| pool[i].len())
                .or_else(|| (0..pool.len()).max_by_key(|&i| pool[i].len()));
            best.map(|i| pool.swap_remove(i))
        })
        .unwrap_or_default();
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
    let result = f(&mut buffer[..len]);
    if buffer.len() <= KEEP_AT_MOST {
        POOL.with(|pool| {
            let mut pool = pool.borrow_mut();
            pool.push(buffer);
            // Two live buffers per call at most; keep a few more for the next layers.
            if pool.len() > 4 {
                let smallest = (0..pool.len()).min_by_key(|&i| pool[i].len());
                if let Some(i) = smallest {
                    pool.swap_remove(i);
                }
            }
        });
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test thread is no rayon thread: kernels run in parallel there. Driven, the driving
    /// thread runs them in parallel too, while the parts of a region (on any thread) and a
    /// plain rayon thread run serially.
    #[test]
    fn drive_marks_only_the_driving_thread_outside_regions() {
        assert!(!on_worker());
        let seen = drive(|| {
            let top = on_worker();
            let (inside, (a, b)) = region(|| (on_worker(), rayon::join(on_worker, on_worker)));
            (top, inside, a, b, on_worker())
        });
        assert_eq!(seen, (false, true, true, true, false));
        let (a, b) = rayon::join(on_worker, on_worker);
        assert!(a && b, "rayon threads outside drive run serially");
        // Nested: drive on a rayon thread runs in place and marks nothing.
        assert!(rayon::scope(|_| drive(on_worker)));
    }

    fn naive(a: &[f32], m: usize, k: usize, b: &[f32], n: usize) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn strided_products_match_the_naive_one() {
        let (m, k, n) = (7, 5, 9);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
        let want = naive(&a, m, k, &b, n);
        let mut c = vec![f32::NAN; m * n];
        matmul(
            &mut c,
            View::row_major(0, m, n),
            &a,
            View::row_major(0, m, k),
            &b,
            View::row_major(0, k, n),
            false,
        );
        for (x, y) in c.iter().zip(&want) {
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
        }
        // The same product through transposed storage: bt is b stored column-major.
        let mut bt = vec![0.0; k * n];
        for p in 0..k {
            for j in 0..n {
                bt[j * k + p] = b[p * n + j];
            }
        }
        let mut c2 = vec![1.0; m * n];
        matmul(
            &mut c2,
            View::row_major(0, m, n),
            &a,
            View::row_major(0, m, k),
            &bt,
            View::row_major(0, n, k).t(),
            true,
        );
        for (x, y) in c2.iter().zip(&want) {
            assert!((x - 1.0 - y).abs() < 1e-5, "{x} vs {y} + 1");
        }
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn a_view_past_its_slice_panics() {
        let mut c = vec![0.0; 4];
        matmul(
            &mut c,
            View::row_major(0, 2, 2),
            &[1.0; 3],
            View::row_major(0, 2, 2),
            &[1.0; 4],
            View::row_major(0, 2, 2),
            false,
        );
    }

    #[test]
    fn transposes_match_the_definition_and_leave_the_rest_alone() {
        for (rows, cols, extra_src, extra_dst) in [
            (1, 1, 0, 0),
            (8, 8, 0, 0),
            (3, 29, 2, 5),
            (17, 9, 0, 1),
            (64, 33, 7, 3),
            (1, 40, 0, 0),
        ] {
            let (ss, ds) = (cols + extra_src, rows + extra_dst);
            let src: Vec<f32> = (0..rows * ss).map(|i| i as f32).collect();
            let mut dst = vec![-1.0f32; cols * ds];
            transpose(&src, ss, rows, cols, &mut dst, ds);
            // The portable tiles too (`transpose` takes AVX's where the CPU has it).
            let mut portable = vec![-1.0f32; cols * ds];
            in_tiles(&src, ss, rows, cols, &mut portable, ds, tile);
            for j in 0..cols {
                for i in 0..ds {
                    let want = if i < rows { src[i * ss + j] } else { -1.0 };
                    assert_eq!(dst[j * ds + i], want, "{rows}x{cols}: ({i}, {j})");
                    assert_eq!(portable[j * ds + i], want, "{rows}x{cols}: ({i}, {j})");
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "transpose: destination out of bounds")]
    fn a_transpose_past_its_destination_panics() {
        transpose(&[0.0; 6], 3, 2, 3, &mut [0.0; 5], 2);
    }

    #[test]
    fn scratch_buffers_are_reused() {
        let first = with_scratch(1000, |b| b.as_ptr() as usize);
        let second = with_scratch(800, |b| b.as_ptr() as usize);
        assert_eq!(first, second);
        // Nested calls get distinct buffers.
        with_scratch(10, |outer| {
            with_scratch(10, |inner| assert_ne!(outer.as_ptr(), inner.as_ptr()));
        });
    }
}
