//! A bounds-checked front to the `gemm` crate's f32 matrix product (the one burn-flex uses),
//! and a per-thread pool of scratch buffers so that a layer's large temporary matrices are not
//! allocated, page-faulted and zeroed again at every call.

use std::cell::RefCell;

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

/// True on a rayon worker thread: the caller already runs in parallel, so the kernels' loops
/// and matrix products run serially there.
pub(crate) fn on_worker() -> bool {
    rayon::current_thread_index().is_some()
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
