//! A linear layer, `y = x W + b` with `W` `[d_in, d_out]` as burn stores it: one matrix product
//! into rows that start as the bias, and backward two products and the bias's column sums.
//!
//! Through burn's ops the same layer is a product, a broadcast addition and their autodiff
//! records, and flex's product allocates its output by copying and clearing a buffer: a
//! character LM's output layer (1,600 rows of 256 into 84) took 11% of its training step's
//! samples, where its arithmetic is 7% of the step's.

use crate::gemm::{View, matmul};
use crate::math::simd;
use crate::memory::zeroed;

/// `x W + bias` for `x` of rows of `weight.len() / d_out` features, `weight` row-major
/// `[d_in, d_out]` and `bias` `[d_out]`.
///
/// # Panics
/// When the lengths disagree.
pub fn forward(x: &[f32], weight: &[f32], bias: &[f32]) -> Vec<f32> {
    let d_out = bias.len();
    let d_in = checked_inputs(weight, d_out);
    assert_eq!(x.len() % d_in, 0, "linear: x length");
    let rows = x.len() / d_in;
    let mut y = bias.repeat(rows);
    matmul(
        &mut y,
        View::row_major(0, rows, d_out),
        x,
        View::row_major(0, rows, d_in),
        weight,
        View::row_major(0, d_in, d_out),
        true,
    );
    y
}

/// The gradient of [`forward`] for `x`: `dy W^T`, rows of `d_in`.
///
/// # Panics
/// When the lengths disagree.
pub fn input_grad(weight: &[f32], dy: &[f32], d_out: usize) -> Vec<f32> {
    let d_in = checked_inputs(weight, d_out);
    assert_eq!(dy.len() % d_out, 0, "linear: gradient length");
    let rows = dy.len() / d_out;
    let mut dx = zeroed(rows * d_in);
    matmul(
        &mut dx,
        View::row_major(0, rows, d_in),
        dy,
        View::row_major(0, rows, d_out),
        weight,
        View::row_major(0, d_in, d_out).t(),
        false,
    );
    dx
}

/// The gradients of [`forward`] for the weight (`x^T dy`, `[d_in, d_out]`) and the bias (the
/// columns of `dy` summed), from rows of `d_in` inputs and of `d_out` output gradients.
///
/// # Panics
/// When the lengths disagree.
pub fn param_grads(x: &[f32], dy: &[f32], d_in: usize, d_out: usize) -> (Vec<f32>, Vec<f32>) {
    assert!(d_in > 0 && d_out > 0, "linear: empty layer");
    assert_eq!(x.len() % d_in, 0, "linear: x length");
    let rows = x.len() / d_in;
    assert_eq!(dy.len(), rows * d_out, "linear: gradient length");
    let mut dw = vec![0.0f32; d_in * d_out];
    matmul(
        &mut dw,
        View::row_major(0, d_in, d_out),
        x,
        View::row_major(0, rows, d_in).t(),
        dy,
        View::row_major(0, rows, d_out),
        false,
    );
    let mut db = vec![0.0f32; d_out];
    column_sums(dy, &mut db);
    (dw, db)
}

/// `d_in` for a weight of `d_out` columns (neither may be 0).
fn checked_inputs(weight: &[f32], d_out: usize) -> usize {
    assert!(d_out > 0 && !weight.is_empty(), "linear: empty layer");
    assert_eq!(weight.len() % d_out, 0, "linear: weight length");
    weight.len() / d_out
}

/// Columns per task of [`column_sums`].
const SUM_COLUMNS: usize = 256;

/// Sums the columns of a row-major matrix with `sums.len()` columns into `sums`, blocks of
/// columns on rayon's threads; each column's sum runs down its rows in order, so the result
/// does not depend on the number of threads.
pub(crate) fn column_sums(matrix: &[f32], sums: &mut [f32]) {
    use rayon::prelude::*;
    let cols = sums.len();
    if cols == 0 {
        return;
    }
    let block = |(k, part): (usize, &mut [f32])| {
        let at = k * SUM_COLUMNS;
        sum_columns(matrix, cols, at, part);
    };
    if cols > SUM_COLUMNS && !crate::gemm::on_worker() {
        sums.par_chunks_mut(SUM_COLUMNS).enumerate().for_each(block);
    } else {
        sums.chunks_mut(SUM_COLUMNS).enumerate().for_each(block);
    }
}

simd! {
    /// Sums columns `at..at + sums.len()` of a row-major matrix of `cols` columns into `sums`.
    fn sum_columns(matrix: &[f32], cols: usize, at: usize, sums: &mut [f32]) {
        sums.fill(0.0);
        let len = sums.len();
        for row in matrix.chunks_exact(cols) {
            for (s, v) in sums.iter_mut().zip(&row[at..at + len]) {
                *s += v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    fn close(got: &[f32], want: &[f64], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (*g as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()),
                "{what}[{i}]: {g} vs {w}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Forward and every gradient against the definitions in f64, for shapes around
        /// gemm's tiles and the column sums' blocks (above 256 columns they run in parallel).
        #[test]
        fn forward_and_gradients_match_the_definitions(
            rows in 1usize..70,
            d_in in 1usize..40,
            d_out in prop::sample::select(vec![1usize, 5, 16, 17, 84, 300]),
            seed in 0u64..1000,
        ) {
            let x = values(rows * d_in, seed);
            let w = values(d_in * d_out, seed + 1);
            let b = values(d_out, seed + 2);
            let dy = values(rows * d_out, seed + 3);
            let at = |m: &[f32], cols: usize, i: usize, j: usize| m[i * cols + j] as f64;
            let mut y = vec![0.0; rows * d_out];
            let mut dx = vec![0.0; rows * d_in];
            let mut dw = vec![0.0; d_in * d_out];
            let mut db = vec![0.0; d_out];
            for i in 0..rows {
                for j in 0..d_out {
                    y[i * d_out + j] = b[j] as f64
                        + (0..d_in).map(|k| at(&x, d_in, i, k) * at(&w, d_out, k, j)).sum::<f64>();
                    db[j] += at(&dy, d_out, i, j);
                }
                for k in 0..d_in {
                    dx[i * d_in + k] = (0..d_out).map(|j| at(&dy, d_out, i, j) * at(&w, d_out, k, j)).sum();
                }
            }
            for k in 0..d_in {
                for j in 0..d_out {
                    dw[k * d_out + j] = (0..rows).map(|i| at(&x, d_in, i, k) * at(&dy, d_out, i, j)).sum();
                }
            }
            close(&forward(&x, &w, &b), &y, "y");
            close(&input_grad(&w, &dy, d_out), &dx, "dx");
            let (gw, gb) = param_grads(&x, &dy, d_in, d_out);
            close(&gw, &dw, "dw");
            close(&gb, &db, "db");
        }
    }

    #[test]
    fn column_sums_have_the_same_bits_on_any_number_of_threads() {
        let m = values(33 * 700, 5);
        let mut serial = vec![0.0; 700];
        rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| column_sums(&m, &mut serial));
        // Outside a pool's workers the blocks run on the global pool's threads.
        let mut outside = vec![0.0; 700];
        column_sums(&m, &mut outside);
        assert_eq!(serial, outside);
        assert!(serial.iter().all(|s| s.is_finite()) && serial.iter().any(|s| *s != 0.0));
    }

    #[test]
    #[should_panic(expected = "weight length")]
    fn a_weight_of_the_wrong_length_panics() {
        forward(&[1.0; 6], &[1.0; 7], &[0.0; 2]);
    }
}
