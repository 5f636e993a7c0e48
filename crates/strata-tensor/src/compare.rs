//! Element-wise comparison of two flat tensors that cannot be fooled by NaN: the check behind
//! every PyTorch-parity test, the torchvision logits check and the weight comparisons of the
//! fine-tuning tests.
//!
//! `f32::max(x, NaN)` is `x`, so a largest difference folded with `f32::max` calls all-NaN
//! outputs equal. [`max_abs_diff`] refuses a length mismatch and any non-finite value on either
//! side, naming the index, before it measures anything.
//!
//! ```
//! use strata_tensor::compare::{Mismatch, max_abs_diff};
//! assert_eq!(max_abs_diff(&[1.0, 2.0], &[1.0, 2.5])?, 0.5);
//! assert!(matches!(
//!     max_abs_diff(&[1.0, f32::NAN], &[1.0, 2.0]),
//!     Err(Mismatch::NotFinite { index: 1, .. })
//! ));
//! assert!(matches!(max_abs_diff(&[1.0], &[1.0, 2.0]), Err(Mismatch::Length { .. })));
//! # Ok::<(), Mismatch>(())
//! ```

/// Why two tensors could not be compared.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Mismatch {
    /// The two sides hold different numbers of values.
    #[error("lengths differ: {got} values against {want}")]
    Length {
        /// Values on the left (the tensor under test).
        got: usize,
        /// Values on the right (the reference).
        want: usize,
    },
    /// A value on either side is NaN or infinite.
    #[error("value {index} is not finite: {got} against {want}")]
    NotFinite {
        /// Its flat index.
        index: usize,
        /// The left value.
        got: f32,
        /// The right value.
        want: f32,
    },
}

/// The largest `|got[i] - want[i]|`, with the index where it occurs.
///
/// # Errors
/// [`Mismatch::Length`] when the lengths differ, [`Mismatch::NotFinite`] at the first index
/// where either side is NaN or infinite.
pub fn worst_abs_diff(got: &[f32], want: &[f32]) -> Result<(f32, usize), Mismatch> {
    if got.len() != want.len() {
        return Err(Mismatch::Length {
            got: got.len(),
            want: want.len(),
        });
    }
    let mut worst = (0.0f32, 0usize);
    for (index, (&g, &w)) in got.iter().zip(want).enumerate() {
        if !g.is_finite() || !w.is_finite() {
            return Err(Mismatch::NotFinite {
                index,
                got: g,
                want: w,
            });
        }
        let d = (g - w).abs();
        if d > worst.0 {
            worst = (d, index);
        }
    }
    Ok(worst)
}

/// The largest `|got[i] - want[i]|`.
///
/// # Errors
/// As [`worst_abs_diff`].
pub fn max_abs_diff(got: &[f32], want: &[f32]) -> Result<f32, Mismatch> {
    worst_abs_diff(got, want).map(|(d, _)| d)
}

/// Checks that `got` is within `tol` of `want` everywhere; the message names `what`, the worst
/// index and both values.
///
/// # Errors
/// A message for a length mismatch, a non-finite value, or a difference over `tol`.
pub fn check_close(what: &str, got: &[f32], want: &[f32], tol: f32) -> Result<f32, String> {
    match worst_abs_diff(got, want) {
        Err(e) => Err(format!("{what}: {e}")),
        // `d` is finite here, so `>` is the negation of `<=`; a NaN `tol` passes nothing.
        Ok((d, i)) if d > tol || tol.is_nan() => Err(format!(
            "{what}: |got - want| = {d:e} > {tol:e} at index {i} ({} against {})",
            got[i], want[i]
        )),
        Ok((d, _)) => Ok(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn nan_on_either_side_is_refused_with_its_index() {
        let e = max_abs_diff(&[0.0, 1.0, f32::NAN], &[0.0, 1.0, 2.0]).unwrap_err();
        assert!(matches!(e, Mismatch::NotFinite { index: 2, .. }), "{e}");
        let e = max_abs_diff(&[f32::NAN; 3], &[f32::NAN; 3]).unwrap_err();
        assert!(matches!(e, Mismatch::NotFinite { index: 0, .. }), "{e}");
        let e = max_abs_diff(&[1.0], &[f32::INFINITY]).unwrap_err();
        assert!(e.to_string().contains("value 0 is not finite"), "{e}");
    }

    #[test]
    fn a_length_mismatch_is_refused() {
        let e = check_close("x", &[1.0, 2.0], &[1.0, 2.0, 3.0], 1.0).unwrap_err();
        assert!(e.contains("lengths differ: 2 values against 3"), "{e}");
    }

    #[test]
    fn the_worst_difference_is_named_with_its_index() {
        let e = check_close("logits", &[1.0, 2.0, 3.0], &[1.0, 2.5, 3.1], 0.2).unwrap_err();
        assert!(e.contains("at index 1 (2 against 2.5)"), "{e}");
        let d = check_close("ok", &[1.0], &[1.05], 0.1).unwrap();
        assert!((d - 0.05).abs() < 1e-6, "{d}");
    }

    proptest! {
        /// A finite vector is within 0 of itself, and any single NaN planted in either copy
        /// is caught at its index.
        #[test]
        fn a_planted_nan_is_always_caught(
            v in prop::collection::vec(-1e6f32..1e6, 1..64),
            at in any::<prop::sample::Index>(),
            left in any::<bool>(),
        ) {
            prop_assert_eq!(max_abs_diff(&v, &v).unwrap(), 0.0);
            let i = at.index(v.len());
            let mut bad = v.clone();
            bad[i] = f32::NAN;
            let r = if left { max_abs_diff(&bad, &v) } else { max_abs_diff(&v, &bad) };
            let caught = matches!(r, Err(Mismatch::NotFinite { index, .. }) if index == i);
            prop_assert!(caught, "NaN at {} not caught: {:?}", i, r);
        }
    }
}
