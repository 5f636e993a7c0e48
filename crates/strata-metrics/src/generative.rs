//! Measures of generated samples against real ones, in a feature space (rows of `dim` values:
//! a classifier's penultimate activations, or the raw coordinates of 2-D points):
//!
//! - [`frechet_distance`]: the Frechet distance between Gaussians fitted to the two sets
//!   (`|mu_a - mu_b|² + tr(S_a + S_b - 2 (S_a S_b)^½)`), what FID computes in Inception's
//!   features (Heusel et al. 2017). Covariances are unbiased (numpy's `np.cov`).
//! - [`kernel_distance`]: the kernel inception distance (Binkowski et al. 2018), the unbiased
//!   squared MMD with the kernel `(x·y / dim + 1)³`, averaged over random subsets.
//! - [`precision_recall`]: the improved precision and recall of Kynkaanniemi et al. 2019: the
//!   share of generated samples inside the real manifold (balls reaching each real sample's
//!   k-th nearest real neighbour), and of real samples inside the generated one.
//! - [`mode_coverage`]: for toy mixtures (the ring of 8 Gaussians), the modes that generated
//!   samples cover and the share of high-quality samples.
//!
//! All accumulate in f64.
//!
//! ```
//! use strata_metrics::{frechet_distance, precision_recall};
//! let a = [0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0]; // four 2-D points
//! let b = [5.0, 0.0, 6.0, 0.0, 5.0, 1.0, 6.0, 1.0]; // the same, moved by 5 along x
//! assert!((frechet_distance(&a, &b, 2)? - 25.0).abs() < 1e-9);
//! let (precision, recall) = precision_recall(&a, &b, 2, 1)?;
//! assert_eq!((precision, recall), (0.0, 0.0));
//! # Ok::<(), strata_metrics::Error>(())
//! ```

use nalgebra::{DMatrix, DVector, SymmetricEigen};
use rand::SeedableRng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Checks rows of `dim` values and returns their count.
fn rows(what: &'static str, x: &[f32], dim: usize, at_least: usize) -> Result<usize> {
    if dim == 0 {
        return Err(Error::Invalid(
            "feature rows need at least one value".into(),
        ));
    }
    if !x.len().is_multiple_of(dim) {
        return Err(Error::Invalid(format!(
            "{what}: {} values are not rows of {dim}",
            x.len()
        )));
    }
    if x.iter().any(|v| !v.is_finite()) {
        return Err(Error::Invalid(format!(
            "{what}: a value is NaN or infinite"
        )));
    }
    let n = x.len() / dim;
    if n < at_least {
        return Err(Error::Invalid(format!(
            "{what}: {n} rows, at least {at_least} needed"
        )));
    }
    Ok(n)
}

/// Mean and unbiased covariance of rows.
fn moments(x: &[f32], dim: usize) -> (DVector<f64>, DMatrix<f64>) {
    let n = x.len() / dim;
    let m = DMatrix::from_row_iterator(n, dim, x.iter().map(|&v| v as f64));
    let mean = m.row_mean().transpose();
    let centred = DMatrix::from_fn(n, dim, |i, j| m[(i, j)] - mean[j]);
    let cov = centred.transpose() * &centred / (n as f64 - 1.0);
    (mean, cov)
}

/// The square root of a symmetric positive semi-definite matrix (negative eigenvalues, from
/// rounding, taken as 0).
fn sqrt_psd(m: DMatrix<f64>) -> DMatrix<f64> {
    let sym = (&m + m.transpose()) * 0.5;
    let e = SymmetricEigen::new(sym);
    let roots = e.eigenvalues.map(|l| l.max(0.0).sqrt());
    &e.eigenvectors * DMatrix::from_diagonal(&roots) * e.eigenvectors.transpose()
}

/// The Frechet distance between Gaussians fitted to rows `a` and rows `b` (`dim` values each).
///
/// # Errors
/// Fewer than 2 rows in either, ragged rows, NaN or infinite values.
pub fn frechet_distance(a: &[f32], b: &[f32], dim: usize) -> Result<f64> {
    rows("first set", a, dim, 2)?;
    rows("second set", b, dim, 2)?;
    let (mu_a, s_a) = moments(a, dim);
    let (mu_b, s_b) = moments(b, dim);
    // tr((S_a S_b)^½) = tr((S_a^½ S_b S_a^½)^½): the eigenvalues of a symmetric PSD matrix.
    let ra = sqrt_psd(s_a.clone());
    let inner = &ra * &s_b * &ra;
    let inner = (&inner + inner.transpose()) * 0.5;
    let cross: f64 = SymmetricEigen::new(inner)
        .eigenvalues
        .iter()
        .map(|l| l.max(0.0).sqrt())
        .sum();
    let d = &mu_a - &mu_b;
    Ok(d.dot(&d) + s_a.trace() + s_b.trace() - 2.0 * cross)
}

/// The unbiased squared MMD between rows `a` and rows `b` with the polynomial kernel
/// `(x·y / dim + 1)³`.
///
/// # Errors
/// Fewer than 2 rows in either, ragged rows, NaN or infinite values.
pub fn mmd2_polynomial(a: &[f32], b: &[f32], dim: usize) -> Result<f64> {
    let m = rows("first set", a, dim, 2)?;
    let n = rows("second set", b, dim, 2)?;
    let k = |x: &[f32], y: &[f32]| {
        let dot: f64 = x.iter().zip(y).map(|(&p, &q)| p as f64 * q as f64).sum();
        (dot / dim as f64 + 1.0).powi(3)
    };
    let within = |x: &[f32], r: usize| {
        let mut s = 0.0;
        for i in 0..r {
            for j in (i + 1)..r {
                s += k(&x[i * dim..(i + 1) * dim], &x[j * dim..(j + 1) * dim]);
            }
        }
        2.0 * s / (r * (r - 1)) as f64
    };
    let mut across = 0.0;
    for i in 0..m {
        for j in 0..n {
            across += k(&a[i * dim..(i + 1) * dim], &b[j * dim..(j + 1) * dim]);
        }
    }
    Ok(within(a, m) + within(b, n) - 2.0 * across / (m * n) as f64)
}

/// The kernel inception distance: the mean and standard deviation of [`mmd2_polynomial`]
/// over `subsets` random subsets of `subset_size` rows of each set (drawn without
/// replacement within a subset, from `seed`; all rows when a set is smaller).
///
/// # Errors
/// As [`mmd2_polynomial`]; `subsets` or `subset_size` below 1 or 2.
pub fn kernel_distance(
    a: &[f32],
    b: &[f32],
    dim: usize,
    subsets: usize,
    subset_size: usize,
    seed: u64,
) -> Result<(f64, f64)> {
    let m = rows("first set", a, dim, 2)?;
    let n = rows("second set", b, dim, 2)?;
    if subsets == 0 || subset_size < 2 {
        return Err(Error::Invalid(format!(
            "KID needs at least one subset of at least 2 rows, got {subsets} of {subset_size}"
        )));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let pick = |x: &[f32], r: usize, rng: &mut ChaCha8Rng| -> Vec<f32> {
        let size = subset_size.min(r);
        let mut out = Vec::with_capacity(size * dim);
        for i in sample(rng, r, size) {
            out.extend_from_slice(&x[i * dim..(i + 1) * dim]);
        }
        out
    };
    let mut values = Vec::with_capacity(subsets);
    for _ in 0..subsets {
        let sa = pick(a, m, &mut rng);
        let sb = pick(b, n, &mut rng);
        values.push(mmd2_polynomial(&sa, &sb, dim)?);
    }
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let var = if values.len() > 1 {
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (values.len() - 1) as f64
    } else {
        0.0
    };
    Ok((mean, var.sqrt()))
}

/// The squared distance between two rows.
fn sq_distance(x: &[f32], y: &[f32]) -> f64 {
    x.iter()
        .zip(y)
        .map(|(&p, &q)| (p as f64 - q as f64).powi(2))
        .sum()
}

/// The squared radius of each row's ball: the squared distance to its `k`-th nearest other
/// row (row by row: memory stays linear in the rows).
fn radii(x: &[f32], dim: usize, k: usize) -> Vec<f64> {
    let n = x.len() / dim;
    let mut row = Vec::with_capacity(n);
    (0..n)
        .map(|i| {
            let xi = &x[i * dim..(i + 1) * dim];
            row.clear();
            row.extend(
                (0..n)
                    .filter(|&j| j != i)
                    .map(|j| sq_distance(xi, &x[j * dim..(j + 1) * dim])),
            );
            let (_, kth, _) = row.select_nth_unstable_by(k - 1, f64::total_cmp);
            *kth
        })
        .collect()
}

/// The share of rows of `probe` inside the union of `support`'s balls (`support_radii`).
fn coverage(probe: &[f32], support: &[f32], support_radii: &[f64], dim: usize) -> f64 {
    let inside = probe
        .chunks(dim)
        .filter(|p| {
            support
                .chunks(dim)
                .zip(support_radii)
                .any(|(s, &r)| sq_distance(p, s) <= r)
        })
        .count();
    inside as f64 / (probe.len() / dim) as f64
}

/// Improved precision and recall (Kynkaanniemi et al. 2019) of generated rows `fake` against
/// `real`, with `k`-nearest-neighbour balls (`k = 3` in the paper): precision is the share of
/// generated rows within some real row's ball, recall the share of real rows within some
/// generated row's ball.
///
/// # Errors
/// Ragged rows, NaN or infinite values, `k` of 0, or either set with no more than `k` rows.
pub fn precision_recall(real: &[f32], fake: &[f32], dim: usize, k: usize) -> Result<(f64, f64)> {
    if k == 0 {
        return Err(Error::Invalid("k must be at least 1".into()));
    }
    rows("real set", real, dim, k + 1)?;
    rows("generated set", fake, dim, k + 1)?;
    let precision = coverage(fake, real, &radii(real, dim, k), dim);
    let recall = coverage(real, fake, &radii(fake, dim, k), dim);
    Ok((precision, recall))
}

/// How generated 2-D points cover a mixture's modes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModeCoverage {
    /// Modes with at least the minimum count of high-quality samples.
    pub modes_covered: usize,
    /// Modes of the mixture.
    pub modes: usize,
    /// The share of samples within 3 standard deviations of their nearest mode.
    pub high_quality: f64,
    /// High-quality samples at each mode.
    pub per_mode: Vec<usize>,
}

/// The coverage of a mixture of isotropic Gaussians at `centres` (standard deviation `std`)
/// by `points` (x, y pairs): a sample is high-quality when it lies within `3 std` of its
/// nearest centre; a mode is covered when at least `min_count` high-quality samples lie at it.
///
/// # Errors
/// No centres, no points, an odd number of values, `std` not positive.
pub fn mode_coverage(
    points: &[f32],
    centres: &[[f64; 2]],
    std: f64,
    min_count: usize,
) -> Result<ModeCoverage> {
    if centres.is_empty() {
        return Err(Error::Empty("mode coverage (centres)"));
    }
    if std.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
        return Err(Error::Invalid(format!(
            "the standard deviation must be positive, got {std}"
        )));
    }
    let n = rows("points", points, 2, 1)?;
    let mut per_mode = vec![0usize; centres.len()];
    let mut good = 0usize;
    for p in points.chunks(2) {
        let (x, y) = (p[0] as f64, p[1] as f64);
        let (best, d2) = centres
            .iter()
            .enumerate()
            .map(|(i, c)| (i, (x - c[0]).powi(2) + (y - c[1]).powi(2)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap_or((0, f64::INFINITY));
        if d2.sqrt() <= 3.0 * std {
            per_mode[best] += 1;
            good += 1;
        }
    }
    Ok(ModeCoverage {
        modes_covered: per_mode.iter().filter(|&&c| c >= min_count).count(),
        modes: centres.len(),
        high_quality: good as f64 / n as f64,
        per_mode,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn identical_sets_are_at_distance_zero() {
        let a: Vec<f32> = (0..60).map(|i| ((i * 37) % 17) as f32 / 7.0).collect();
        assert!(frechet_distance(&a, &a, 3).unwrap().abs() < 1e-9);
        let (p, r) = precision_recall(&a, &a, 3, 3).unwrap();
        assert_eq!((p, r), (1.0, 1.0));
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(frechet_distance(&[1.0, 2.0, 3.0], &[1.0, 2.0], 2).is_err());
        assert!(frechet_distance(&[1.0, 2.0], &[1.0, 2.0, 3.0, 4.0], 2).is_err());
        assert!(frechet_distance(&[f32::NAN, 0.0, 1.0, 1.0], &[0.0, 0.0, 1.0, 1.0], 2).is_err());
        assert!(precision_recall(&[0.0; 8], &[0.0; 8], 2, 0).is_err());
        assert!(precision_recall(&[0.0; 6], &[0.0; 8], 2, 3).is_err());
        assert!(kernel_distance(&[0.0; 8], &[0.0; 8], 2, 0, 10, 1).is_err());
        assert!(mode_coverage(&[0.0, 0.0], &[], 1.0, 1).is_err());
        assert!(mode_coverage(&[0.0, 0.0], &[[0.0, 0.0]], 0.0, 1).is_err());
        assert!(mode_coverage(&[0.0], &[[0.0, 0.0]], 1.0, 1).is_err());
    }

    #[test]
    fn mode_coverage_counts_near_samples_only() {
        let centres = [[2.0, 0.0], [-2.0, 0.0]];
        let points = [2.01, 0.0, 1.99, 0.01, 0.0, 0.0, -2.0, 0.05];
        let m = mode_coverage(&points, &centres, 0.02, 2).unwrap();
        assert_eq!(m.per_mode, vec![2, 1]);
        assert_eq!(m.modes_covered, 1);
        assert!((m.high_quality - 0.75).abs() < 1e-12);
    }

    proptest! {
        #[test]
        fn distances_are_symmetric_and_not_negative(
            a in prop::collection::vec(-3.0f32..3.0, 8..40),
            b in prop::collection::vec(-3.0f32..3.0, 8..40),
        ) {
            let (a, b) = (&a[..a.len() / 4 * 4], &b[..b.len() / 4 * 4]);
            let ab = frechet_distance(a, b, 2).unwrap();
            let ba = frechet_distance(b, a, 2).unwrap();
            prop_assert!(ab > -1e-6 && (ab - ba).abs() <= 1e-6 * (1.0 + ab.abs()));
            let (p, r) = precision_recall(a, b, 2, 1).unwrap();
            prop_assert!((0.0..=1.0).contains(&p) && (0.0..=1.0).contains(&r));
            let (p2, r2) = precision_recall(b, a, 2, 1).unwrap();
            prop_assert_eq!((p, r), (r2, p2));
        }
    }
}
