//! Ranking metrics of scores against binary labels (anomaly detection: a higher score means
//! more anomalous): the area under the ROC curve and average precision, as scikit-learn's
//! `roc_auc_score` and `average_precision_score` compute them (ties count half in the AUC;
//! average precision steps at each distinct score).
//!
//! ```
//! use strata_metrics::{average_precision, roc_auc};
//! // scikit-learn's documentation example.
//! let (y, s) = ([false, false, true, true], [0.1, 0.4, 0.35, 0.8]);
//! assert_eq!(roc_auc(&y, &s)?, 0.75);
//! assert!((average_precision(&y, &s)? - 0.833_333_333).abs() < 1e-9);
//! # Ok::<(), strata_metrics::Error>(())
//! ```

use crate::error::{Error, Result, same_len};

/// Checks the inputs and returns the indices ordered by decreasing score.
fn ranked(positive: &[bool], scores: &[f64]) -> Result<Vec<usize>> {
    same_len("scores", scores.len(), positive.len())?;
    if positive.is_empty() {
        return Err(Error::Empty("labels"));
    }
    if scores.iter().any(|s| s.is_nan()) {
        return Err(Error::Invalid("a score is NaN".into()));
    }
    let n_pos = positive.iter().filter(|p| **p).count();
    if n_pos == 0 || n_pos == positive.len() {
        return Err(Error::Invalid(
            "ranking metrics need both positive and negative examples".into(),
        ));
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    Ok(order)
}

/// The area under the ROC curve: the probability that a random positive scores above a random
/// negative, ties counting half.
///
/// # Errors
/// Lengths that differ, no examples, a NaN score, or labels of one kind only.
pub fn roc_auc(positive: &[bool], scores: &[f64]) -> Result<f64> {
    let order = ranked(positive, scores)?;
    let n_pos = positive.iter().filter(|p| **p).count() as f64;
    let n_neg = positive.len() as f64 - n_pos;
    // Walk down the scores group by group of ties: each negative in a group is beaten by the
    // positives above the group and ties with half of those in it.
    let (mut above, mut wins, mut i) = (0.0f64, 0.0f64, 0);
    while i < order.len() {
        let mut j = i;
        let (mut pos, mut neg) = (0.0, 0.0);
        while j < order.len() && scores[order[j]] == scores[order[i]] {
            if positive[order[j]] {
                pos += 1.0;
            } else {
                neg += 1.0;
            }
            j += 1;
        }
        wins += neg * (above + pos / 2.0);
        above += pos;
        i = j;
    }
    Ok(wins / (n_pos * n_neg))
}

/// Average precision: the precision at each distinct score threshold, weighted by the recall
/// gained there (`sum_n (R_n - R_{n-1}) P_n`).
///
/// # Errors
/// As [`roc_auc`].
pub fn average_precision(positive: &[bool], scores: &[f64]) -> Result<f64> {
    let order = ranked(positive, scores)?;
    let n_pos = positive.iter().filter(|p| **p).count() as f64;
    let (mut tp, mut seen, mut ap, mut i) = (0.0f64, 0.0f64, 0.0f64, 0);
    while i < order.len() {
        let mut j = i;
        let mut gained = 0.0;
        while j < order.len() && scores[order[j]] == scores[order[i]] {
            if positive[order[j]] {
                gained += 1.0;
            }
            j += 1;
        }
        tp += gained;
        seen += (j - i) as f64;
        ap += (gained / n_pos) * (tp / seen);
        i = j;
    }
    Ok(ap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn matches_scikit_learn() {
        // scikit-learn 1.9.1: roc_auc_score([0, 1, 1, 0, 1], [0.5, 0.5, 0.9, 0.1, 0.2]) -> 0.75;
        // average_precision_score(same) -> 0.8055556 (thresholds 0.9, 0.5, 0.2: precisions 1,
        // 2/3, 3/4 at recalls 1/3, 2/3, 1). More in tests/fixtures/autoencoder.json.
        let y = [false, true, true, false, true];
        let s = [0.5, 0.5, 0.9, 0.1, 0.2];
        assert!((roc_auc(&y, &s).unwrap() - 0.75).abs() < 1e-12);
        let ap = (1.0 + 2.0 / 3.0 + 0.75) / 3.0;
        assert!((average_precision(&y, &s).unwrap() - ap).abs() < 1e-12);
    }

    #[test]
    fn bad_input_errors() {
        assert!(matches!(roc_auc(&[], &[]), Err(Error::Empty(_))));
        assert!(matches!(
            roc_auc(&[true, false], &[1.0]),
            Err(Error::LengthMismatch { .. })
        ));
        assert!(roc_auc(&[true, true], &[1.0, 2.0]).is_err());
        assert!(average_precision(&[true, false], &[f64::NAN, 1.0]).is_err());
    }

    proptest! {
        /// Both lie in [0, 1]; a perfect ranking scores 1 and the reversed one gives AUC 0;
        /// the AUC of negated scores is one minus the AUC.
        #[test]
        fn bounds_and_symmetry(pairs in prop::collection::vec((any::<bool>(), -5i32..5), 2..60)) {
            let y: Vec<bool> = pairs.iter().map(|p| p.0).collect();
            let s: Vec<f64> = pairs.iter().map(|p| p.1 as f64).collect();
            prop_assume!(y.iter().any(|p| *p) && y.iter().any(|p| !*p));
            let auc = roc_auc(&y, &s).unwrap();
            let ap = average_precision(&y, &s).unwrap();
            prop_assert!((0.0..=1.0).contains(&auc) && (0.0..=1.0).contains(&ap));
            let neg: Vec<f64> = s.iter().map(|v| -v).collect();
            prop_assert!((roc_auc(&y, &neg).unwrap() - (1.0 - auc)).abs() < 1e-12);
            let perfect: Vec<f64> = y.iter().map(|p| if *p { 1.0 } else { 0.0 }).collect();
            prop_assert_eq!(roc_auc(&y, &perfect).unwrap(), 1.0);
            prop_assert_eq!(average_precision(&y, &perfect).unwrap(), 1.0);
        }
    }
}
