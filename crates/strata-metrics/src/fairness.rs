//! Fairness of a binary classifier's decisions by group ([`group_fairness`]): each group's
//! accuracy, selection rate, true and false positive rates, precision and calibration error,
//! and the gaps between groups that the fairness literature names (demographic parity,
//! equalised odds, equal opportunity). fairlearn's definitions, checked against its
//! `MetricFrame` (tests/fixtures/gen_fairness.py).
//!
//! No figure here makes a model "fair": each measures one kind of gap, several cannot be
//! closed at once when the groups' base rates differ, and a gap says nothing of why.
//!
//! ```
//! use strata_metrics::group_fairness;
//! let y_true = [true, false, true, false, true, false];
//! let y_pred = [true, false, false, false, true, true];
//! let group = [0, 0, 0, 1, 1, 1];
//! let f = group_fairness(&y_true, &y_pred, &group, &["a".into(), "b".into()], None)?;
//! assert_eq!(f.groups[0].selection_rate, 1.0 / 3.0);
//! assert_eq!(f.groups[1].selection_rate, 2.0 / 3.0);
//! assert!((f.demographic_parity_difference - 1.0 / 3.0).abs() < 1e-12);
//! # Ok::<(), strata_metrics::Error>(())
//! ```

use serde::Serialize;

use crate::error::{Error, Result, same_len};

/// Bins of the expected calibration error: ten of equal width over `[0, 1]`.
pub const CALIBRATION_BINS: usize = 10;

/// One group's figures (or all samples', in [`Fairness::overall`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupRates {
    /// The group's name.
    pub group: String,
    /// Its samples.
    pub count: usize,
    /// Share of its samples classified correctly.
    pub accuracy: f64,
    /// Share predicted positive, `P(ŷ = 1)`.
    pub selection_rate: f64,
    /// `P(ŷ = 1 | y = 1)`; 0 for a group without positives (as scikit-learn's normalised
    /// confusion matrix, which fairlearn reads).
    pub true_positive_rate: f64,
    /// `P(ŷ = 1 | y = 0)`; 0 for a group without negatives.
    pub false_positive_rate: f64,
    /// `P(y = 1 | ŷ = 1)`; 0 for a group with no positive prediction (scikit-learn's
    /// `zero_division` default).
    pub precision: f64,
    /// Expected calibration error of the positive class's probability over
    /// [`CALIBRATION_BINS`] equal-width bins: the bins' `|observed rate - mean probability|`
    /// weighted by their share of the group's samples. `None` without probabilities.
    pub calibration_error: Option<f64>,
}

/// [`group_fairness`]'s result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fairness {
    /// Each group's figures, in the order of the names given.
    pub groups: Vec<GroupRates>,
    /// All samples' figures.
    pub overall: GroupRates,
    /// Largest minus smallest selection rate between groups (0: demographic parity).
    pub demographic_parity_difference: f64,
    /// Smallest over largest selection rate (1: parity; the "four-fifths rule" asks 0.8);
    /// NaN when no group has a positive prediction.
    pub demographic_parity_ratio: f64,
    /// The larger of the groups' spreads of true positive rate and of false positive rate
    /// (0: equalised odds).
    pub equalized_odds_difference: f64,
    /// Largest minus smallest true positive rate (0: equal opportunity).
    pub equal_opportunity_difference: f64,
}

/// The fairness figures of binary decisions `y_pred` against the truth `y_true` (`true`: the
/// positive, "good" outcome), for samples in groups `group` (indices into `names`).
/// `scores`, when given, are each sample's probability of the positive class, for the
/// calibration error. Groups with no samples are left out of the gaps.
///
/// # Errors
/// Lengths that differ, no samples, a group index out of range, fewer than two groups with
/// samples, or a score outside `[0, 1]`.
pub fn group_fairness(
    y_true: &[bool],
    y_pred: &[bool],
    group: &[usize],
    names: &[String],
    scores: Option<&[f64]>,
) -> Result<Fairness> {
    let n = y_true.len();
    if n == 0 {
        return Err(Error::Empty("group fairness"));
    }
    same_len("y_pred", y_pred.len(), n)?;
    same_len("group", group.len(), n)?;
    if let Some(s) = scores {
        same_len("scores", s.len(), n)?;
        if let Some(bad) = s.iter().find(|p| !(0.0..=1.0).contains(*p)) {
            return Err(Error::Invalid(format!(
                "a probability of the positive class must be in [0, 1], got {bad}"
            )));
        }
    }
    if let Some(&g) = group.iter().find(|&&g| g >= names.len()) {
        return Err(Error::Invalid(format!(
            "group index {g} out of range for {} groups",
            names.len()
        )));
    }
    let members = |g: usize| -> Vec<usize> { (0..n).filter(|&i| group[i] == g).collect() };
    let groups: Vec<GroupRates> = (0..names.len())
        .map(members)
        .zip(names)
        .filter(|(m, _)| !m.is_empty())
        .map(|(m, name)| rates(name, &m, y_true, y_pred, scores))
        .collect();
    if groups.len() < 2 {
        return Err(Error::Invalid(format!(
            "fairness compares groups, but the samples hold {} ({})",
            groups.len(),
            groups
                .iter()
                .map(|g| g.group.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let all: Vec<usize> = (0..n).collect();
    let overall = rates("overall", &all, y_true, y_pred, scores);
    let spread = |f: fn(&GroupRates) -> f64| {
        let (lo, hi) = groups
            .iter()
            .map(f)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(v), b.max(v))
            });
        (lo, hi)
    };
    let (sel_lo, sel_hi) = spread(|g| g.selection_rate);
    let (tpr_lo, tpr_hi) = spread(|g| g.true_positive_rate);
    let (fpr_lo, fpr_hi) = spread(|g| g.false_positive_rate);
    Ok(Fairness {
        groups,
        overall,
        demographic_parity_difference: sel_hi - sel_lo,
        demographic_parity_ratio: sel_lo / sel_hi,
        equalized_odds_difference: (tpr_hi - tpr_lo).max(fpr_hi - fpr_lo),
        equal_opportunity_difference: tpr_hi - tpr_lo,
    })
}

/// Reweighing (Kamiran & Calders 2012): each training sample's weight, so that in the weighted
/// data the group and the label are independent. A sample of group `g` and class `y` weighs
/// `n_g n_y / (n n_gy)` (`n_gy` samples share both): under-represented combinations (few
/// women with high incomes) weigh more than 1, over-represented ones less. Each group that
/// holds every class then has the overall class shares, weighted; when all groups do, the
/// weights average to 1.
///
/// # Errors
/// Lengths that differ, no samples, a group or class index out of range.
pub fn reweighing(
    group: &[usize],
    labels: &[usize],
    n_groups: usize,
    n_classes: usize,
) -> Result<Vec<f64>> {
    let n = group.len();
    if n == 0 {
        return Err(Error::Empty("reweighing"));
    }
    same_len("labels", labels.len(), n)?;
    let mut joint = vec![0usize; n_groups * n_classes];
    for (&g, &y) in group.iter().zip(labels) {
        if g >= n_groups {
            return Err(Error::Invalid(format!(
                "group index {g} out of range for {n_groups} groups"
            )));
        }
        if y >= n_classes {
            return Err(Error::ClassOutOfRange {
                index: y,
                n_classes,
            });
        }
        joint[g * n_classes + y] += 1;
    }
    let per_group: Vec<usize> = joint.chunks(n_classes).map(|r| r.iter().sum()).collect();
    let per_class: Vec<usize> = (0..n_classes)
        .map(|y| (0..n_groups).map(|g| joint[g * n_classes + y]).sum())
        .collect();
    Ok(group
        .iter()
        .zip(labels)
        .map(|(&g, &y)| {
            (per_group[g] * per_class[y]) as f64 / (n * joint[g * n_classes + y]) as f64
        })
        .collect())
}

/// The figures of the samples `m`.
fn rates(
    name: &str,
    m: &[usize],
    y_true: &[bool],
    y_pred: &[bool],
    scores: Option<&[f64]>,
) -> GroupRates {
    let count = |f: &dyn Fn(usize) -> bool| m.iter().filter(|&&i| f(i)).count();
    let tp = count(&|i| y_true[i] && y_pred[i]);
    let fp = count(&|i| !y_true[i] && y_pred[i]);
    let positives = count(&|i| y_true[i]);
    let negatives = m.len() - positives;
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    GroupRates {
        group: name.to_string(),
        count: m.len(),
        accuracy: ratio(count(&|i| y_true[i] == y_pred[i]), m.len()),
        selection_rate: ratio(tp + fp, m.len()),
        true_positive_rate: ratio(tp, positives),
        false_positive_rate: ratio(fp, negatives),
        precision: ratio(tp, tp + fp),
        calibration_error: scores.map(|s| calibration_error(m, y_true, s)),
    }
}

/// Expected calibration error of the samples `m` (see [`GroupRates::calibration_error`]).
/// Bin `b` holds probabilities in `(b / 10, (b + 1) / 10]`, the first also 0: scikit-learn's
/// `calibration_curve(strategy="uniform")` binning.
fn calibration_error(m: &[usize], y_true: &[bool], scores: &[f64]) -> f64 {
    let mut bins = [(0usize, 0usize, 0f64); CALIBRATION_BINS];
    let step = 1.0 / CALIBRATION_BINS as f64;
    for &i in m {
        let p = scores[i];
        // The first inner edge at or above p, as numpy's searchsorted (side="left").
        let b = (1..CALIBRATION_BINS)
            .position(|e| p <= e as f64 * step)
            .unwrap_or(CALIBRATION_BINS - 1);
        bins[b].0 += 1;
        bins[b].1 += usize::from(y_true[i]);
        bins[b].2 += p;
    }
    bins.iter()
        .filter(|b| b.0 > 0)
        .map(|&(k, pos, sum)| {
            k as f64 / m.len() as f64 * (pos as f64 / k as f64 - sum / k as f64).abs()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(k: usize) -> Vec<String> {
        (0..k).map(|g| format!("g{g}")).collect()
    }

    #[test]
    fn hand_counted_rates_and_gaps() {
        // Group 0: truth 1 1 0 0, predicted 1 0 1 0; group 1: truth 1 0 0, predicted 1 1 1.
        let y_true = [true, true, false, false, true, false, false];
        let y_pred = [true, false, true, false, true, true, true];
        let group = [0, 0, 0, 0, 1, 1, 1];
        let f = group_fairness(&y_true, &y_pred, &group, &names(2), None).unwrap();
        let (a, b) = (&f.groups[0], &f.groups[1]);
        assert_eq!((a.count, a.accuracy, a.selection_rate), (4, 0.5, 0.5));
        assert_eq!(
            (a.true_positive_rate, a.false_positive_rate, a.precision),
            (0.5, 0.5, 0.5)
        );
        assert_eq!((b.accuracy, b.selection_rate), (1.0 / 3.0, 1.0));
        assert_eq!((b.true_positive_rate, b.false_positive_rate), (1.0, 1.0));
        assert_eq!(b.precision, 1.0 / 3.0);
        assert_eq!(f.demographic_parity_difference, 0.5);
        assert_eq!(f.demographic_parity_ratio, 0.5);
        assert_eq!(f.equal_opportunity_difference, 0.5);
        assert_eq!(f.equalized_odds_difference, 0.5);
        assert_eq!(f.overall.count, 7);
        assert_eq!(f.overall.selection_rate, 5.0 / 7.0);
        assert!(a.calibration_error.is_none());
    }

    #[test]
    fn calibration_error_bins_as_scikit_learn() {
        // Scores 0.1 (bin 0, its upper edge), 0.15 and 0.95: bin 0 holds 0.1 (truth 0) and
        // bin 1 0.15 (truth 1), bin 9 0.95 (truth 1).
        let y_true = [false, true, true, false];
        let scores = [0.1, 0.15, 0.95, 0.0];
        let m = [0, 1, 2, 3];
        let e = calibration_error(&m, &y_true, &scores);
        // Bin 0: {0.1, 0.0}, rate 0, mean 0.05; bin 1: {0.15}, rate 1; bin 9: {0.95}, rate 1.
        let want = 0.5 * 0.05 + 0.25 * 0.85 + 0.25 * 0.05;
        assert!((e - want).abs() < 1e-15, "{e} vs {want}");
        // Perfectly calibrated extremes.
        assert_eq!(calibration_error(&[0, 1], &[false, true], &[0.0, 1.0]), 0.0);
    }

    #[test]
    fn bad_input_is_refused() {
        let n2 = names(2);
        assert!(group_fairness(&[], &[], &[], &n2, None).is_err());
        assert!(group_fairness(&[true], &[true, false], &[0], &n2, None).is_err());
        assert!(group_fairness(&[true, false], &[true, false], &[0, 2], &n2, None).is_err());
        let one = group_fairness(&[true, false], &[true, false], &[1, 1], &n2, None).unwrap_err();
        assert!(one.to_string().contains("hold 1 (g1)"), "{one}");
        let bad = group_fairness(
            &[true, false],
            &[true, false],
            &[0, 1],
            &n2,
            Some(&[0.5, 1.5]),
        );
        assert!(bad.is_err());
    }

    #[test]
    fn reweighing_has_its_closed_form() {
        // Group 0: labels 1 1 1 0; group 1: labels 1 0 0 0. n = 8, n_0 = n_1 = 4, n_y1 = 4.
        let group = [0, 0, 0, 0, 1, 1, 1, 1];
        let labels = [1, 1, 1, 0, 1, 0, 0, 0];
        let w = reweighing(&group, &labels, 2, 2).unwrap();
        // (0, 1): 4 * 4 / (8 * 3) = 2/3; (0, 0): 4 * 4 / (8 * 1) = 2; likewise mirrored.
        let want = [
            2.0 / 3.0,
            2.0 / 3.0,
            2.0 / 3.0,
            2.0,
            2.0,
            2.0 / 3.0,
            2.0 / 3.0,
            2.0 / 3.0,
        ];
        for (a, b) in w.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{w:?}");
        }
        assert!(reweighing(&[], &[], 2, 2).is_err());
        assert!(reweighing(&[0, 2], &[0, 1], 2, 2).is_err());
        assert!(reweighing(&[0, 1], &[0, 3], 2, 2).is_err());
        assert!(reweighing(&[0, 1], &[0], 2, 2).is_err());
    }

    proptest::proptest! {
        /// Every rate is a share, every gap non-negative, and relabelling the groups changes
        /// no gap.
        #[test]
        fn rates_are_shares_and_gaps_ignore_group_order(
            rows in proptest::collection::vec((proptest::bool::ANY, proptest::bool::ANY, 0usize..3, 0.0f64..=1.0), 2..80),
        ) {
            let y_true: Vec<bool> = rows.iter().map(|r| r.0).collect();
            let y_pred: Vec<bool> = rows.iter().map(|r| r.1).collect();
            let group: Vec<usize> = rows.iter().map(|r| r.2).collect();
            let scores: Vec<f64> = rows.iter().map(|r| r.3).collect();
            let Ok(f) = group_fairness(&y_true, &y_pred, &group, &names(3), Some(&scores)) else {
                // Fewer than two groups present.
                let present = (0..3).filter(|g| group.contains(g)).count();
                proptest::prop_assert!(present < 2);
                return Ok(());
            };
            for g in f.groups.iter().chain([&f.overall]) {
                for v in [g.accuracy, g.selection_rate, g.true_positive_rate,
                          g.false_positive_rate, g.precision, g.calibration_error.unwrap()] {
                    proptest::prop_assert!((0.0..=1.0).contains(&v), "{v}");
                }
            }
            proptest::prop_assert!(f.demographic_parity_difference >= 0.0);
            proptest::prop_assert!(f.equalized_odds_difference >= f.equal_opportunity_difference);
            let swapped: Vec<usize> = group.iter().map(|g| 2 - g).collect();
            let s = group_fairness(&y_true, &y_pred, &swapped, &names(3), Some(&scores)).unwrap();
            proptest::prop_assert_eq!(s.demographic_parity_difference, f.demographic_parity_difference);
            proptest::prop_assert_eq!(s.equalized_odds_difference, f.equalized_odds_difference);
        }

        /// Reweighed, every group holding both classes has the overall class shares, and when
        /// all do, the weights sum to the number of samples.
        #[test]
        fn reweighing_makes_group_and_label_independent(
            rows in proptest::collection::vec((0usize..3, 0usize..2), 1..120),
        ) {
            let group: Vec<usize> = rows.iter().map(|r| r.0).collect();
            let labels: Vec<usize> = rows.iter().map(|r| r.1).collect();
            let w = reweighing(&group, &labels, 3, 2).unwrap();
            let n = rows.len() as f64;
            let share = labels.iter().filter(|&&y| y == 1).count() as f64 / n;
            let mut all_mixed = true;
            for g in 0..3 {
                let members: Vec<usize> = (0..rows.len()).filter(|&i| group[i] == g).collect();
                let ones = members.iter().filter(|&&i| labels[i] == 1).count();
                if members.is_empty() {
                    continue;
                }
                if ones == 0 || ones == members.len() {
                    all_mixed = false;
                    continue;
                }
                let total: f64 = members.iter().map(|&i| w[i]).sum();
                let ones: f64 = members.iter().filter(|&&i| labels[i] == 1).map(|&i| w[i]).sum();
                proptest::prop_assert!((ones / total - share).abs() < 1e-9, "{} vs {}", ones / total, share);
            }
            if all_mixed {
                proptest::prop_assert!((w.iter().sum::<f64>() - n).abs() < 1e-9 * n);
            }
        }
    }
}
