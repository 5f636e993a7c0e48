//! Classification metrics: accuracy, top-k, confusion matrix, precision / recall / F1 (per
//! class, macro, micro), log-loss. Conventions follow scikit-learn: a class with no predicted
//! (or no true) samples gets precision (recall) 0, as with `zero_division=0`.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, same_len};

/// Fraction of predictions equal to the true class.
///
/// # Errors
/// On empty or unequal-length inputs.
pub fn accuracy(y_true: &[usize], y_pred: &[usize]) -> Result<f64> {
    same_len("y_pred", y_pred.len(), y_true.len())?;
    if y_true.is_empty() {
        return Err(Error::Empty("accuracy"));
    }
    let hits = y_true.iter().zip(y_pred).filter(|(a, b)| a == b).count();
    Ok(hits as f64 / y_true.len() as f64)
}

/// Fraction of samples whose true class is among the `k` highest scores. `scores` is row-major
/// `[n, n_classes]`. Ties are broken towards the lower class index, as `argsort` would.
///
/// # Errors
/// On shape mismatches, `k = 0` or `k > n_classes`.
pub fn top_k_accuracy(y_true: &[usize], scores: &[f32], n_classes: usize, k: usize) -> Result<f64> {
    if k == 0 || k > n_classes {
        return Err(Error::Invalid(format!(
            "top-k needs 1 <= k <= {n_classes}, got {k}"
        )));
    }
    same_len("scores", scores.len(), y_true.len() * n_classes)?;
    if y_true.is_empty() {
        return Err(Error::Empty("top_k_accuracy"));
    }
    let mut hits = 0usize;
    for (i, &t) in y_true.iter().enumerate() {
        check_class(t, n_classes)?;
        let row = &scores[i * n_classes..(i + 1) * n_classes];
        let target = row[t];
        // Number of classes ranked strictly before the target.
        let better = row
            .iter()
            .enumerate()
            .filter(|&(j, &s)| s > target || (s == target && j < t))
            .count();
        if better < k {
            hits += 1;
        }
    }
    Ok(hits as f64 / y_true.len() as f64)
}

fn check_class(index: usize, n_classes: usize) -> Result<()> {
    if index < n_classes {
        Ok(())
    } else {
        Err(Error::ClassOutOfRange { index, n_classes })
    }
}

/// A confusion matrix: `counts[true][pred]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfusionMatrix {
    /// `counts[t][p]` is the number of samples of true class `t` predicted as `p`.
    pub counts: Vec<Vec<usize>>,
}

impl ConfusionMatrix {
    /// Counts predictions against truths for `n_classes` classes.
    ///
    /// # Errors
    /// On unequal lengths or a class index out of range.
    pub fn new(y_true: &[usize], y_pred: &[usize], n_classes: usize) -> Result<Self> {
        same_len("y_pred", y_pred.len(), y_true.len())?;
        let mut counts = vec![vec![0usize; n_classes]; n_classes];
        for (&t, &p) in y_true.iter().zip(y_pred) {
            check_class(t, n_classes)?;
            check_class(p, n_classes)?;
            counts[t][p] += 1;
        }
        Ok(Self { counts })
    }

    /// Number of classes.
    pub fn n_classes(&self) -> usize {
        self.counts.len()
    }

    /// Total number of samples counted.
    pub fn total(&self) -> usize {
        self.counts.iter().flatten().sum()
    }

    fn true_positives(&self, c: usize) -> usize {
        self.counts[c][c]
    }

    fn predicted(&self, c: usize) -> usize {
        self.counts.iter().map(|row| row[c]).sum()
    }

    fn actual(&self, c: usize) -> usize {
        self.counts[c].iter().sum()
    }

    /// Per-class precision, recall, F1 and support.
    pub fn per_class(&self) -> Vec<ClassScores> {
        (0..self.n_classes())
            .map(|c| {
                let tp = self.true_positives(c) as f64;
                let precision = ratio(tp, self.predicted(c) as f64);
                let recall = ratio(tp, self.actual(c) as f64);
                ClassScores {
                    precision,
                    recall,
                    f1: harmonic(precision, recall),
                    support: self.actual(c),
                }
            })
            .collect()
    }

    /// Unweighted mean over classes of precision, recall and F1 (scikit-learn's `average="macro"`).
    pub fn macro_avg(&self) -> Averages {
        let per = self.per_class();
        let n = per.len().max(1) as f64;
        Averages {
            precision: per.iter().map(|s| s.precision).sum::<f64>() / n,
            recall: per.iter().map(|s| s.recall).sum::<f64>() / n,
            f1: per.iter().map(|s| s.f1).sum::<f64>() / n,
        }
    }

    /// Precision, recall and F1 from global counts (`average="micro"`); for single-label
    /// classification all three equal the accuracy.
    pub fn micro_avg(&self) -> Averages {
        let tp: usize = (0..self.n_classes()).map(|c| self.true_positives(c)).sum();
        let total = self.total() as f64;
        let p = ratio(tp as f64, total);
        Averages {
            precision: p,
            recall: p,
            f1: harmonic(p, p),
        }
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 { 0.0 } else { a / b }
}

fn harmonic(p: f64, r: f64) -> f64 {
    if p + r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    }
}

/// Scores of one class.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClassScores {
    /// TP / (TP + FP), 0 when nothing was predicted as this class.
    pub precision: f64,
    /// TP / (TP + FN), 0 when the class has no samples.
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
    /// Number of true samples of the class.
    pub support: usize,
}

/// Averaged precision, recall and F1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Averages {
    /// Averaged precision.
    pub precision: f64,
    /// Averaged recall.
    pub recall: f64,
    /// Averaged F1.
    pub f1: f64,
}

/// Mean negative log-likelihood of the true class under predicted probabilities (row-major
/// `[n, n_classes]`), with probabilities clipped to `[1e-15, 1 - 1e-15]` as scikit-learn does.
///
/// # Errors
/// On shape mismatches or class indices out of range.
pub fn log_loss(y_true: &[usize], probs: &[f32], n_classes: usize) -> Result<f64> {
    same_len("probs", probs.len(), y_true.len() * n_classes)?;
    if y_true.is_empty() {
        return Err(Error::Empty("log_loss"));
    }
    let mut total = 0.0f64;
    for (i, &t) in y_true.iter().enumerate() {
        check_class(t, n_classes)?;
        let p = (probs[i * n_classes + t] as f64).clamp(1e-15, 1.0 - 1e-15);
        total -= p.ln();
    }
    Ok(total / y_true.len() as f64)
}

/// The index of the largest value of each row of a row-major `[n, n_classes]` matrix.
pub fn argmax_rows(scores: &[f32], n_classes: usize) -> Vec<usize> {
    scores
        .chunks(n_classes.max(1))
        .map(|row| {
            let mut best = 0;
            for (j, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = j;
                }
            }
            best
        })
        .collect()
}

/// Everything `metrics.json` reports for a classifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassificationReport {
    /// Accuracy.
    pub accuracy: f64,
    /// Macro-averaged F1.
    pub macro_f1: f64,
    /// Macro-averaged precision.
    pub macro_precision: f64,
    /// Macro-averaged recall.
    pub macro_recall: f64,
    /// Micro-averaged F1 (equals accuracy for single-label data).
    pub micro_f1: f64,
    /// Top-3 accuracy, when there are more than three classes.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub top3_accuracy: Option<f64>,
    /// Log-loss of the predicted probabilities.
    pub log_loss: f64,
    /// Per-class scores.
    pub per_class: Vec<ClassScores>,
    /// The confusion matrix.
    pub confusion: ConfusionMatrix,
}

impl ClassificationReport {
    /// Computes the report from true classes and predicted probabilities (`[n, n_classes]`).
    ///
    /// # Errors
    /// On empty input, shape mismatches or class indices out of range.
    pub fn new(y_true: &[usize], probs: &[f32], n_classes: usize) -> Result<Self> {
        let y_pred = argmax_rows(probs, n_classes);
        same_len("predictions", y_pred.len(), y_true.len())?;
        let confusion = ConfusionMatrix::new(y_true, &y_pred, n_classes)?;
        let macro_avg = confusion.macro_avg();
        Ok(Self {
            accuracy: accuracy(y_true, &y_pred)?,
            macro_f1: macro_avg.f1,
            macro_precision: macro_avg.precision,
            macro_recall: macro_avg.recall,
            micro_f1: confusion.micro_avg().f1,
            top3_accuracy: if n_classes > 3 {
                Some(top_k_accuracy(y_true, probs, n_classes, 3)?)
            } else {
                None
            },
            log_loss: log_loss(y_true, probs, n_classes)?,
            per_class: confusion.per_class(),
            confusion,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference values from scikit-learn 1.2:
    // y_true = [0, 1, 2, 2, 1, 0, 2, 1]; y_pred = [0, 2, 2, 2, 1, 0, 1, 1]
    // accuracy_score -> 0.75
    // precision_recall_fscore_support(average=None) ->
    //   p = [1.0, 0.6666667, 0.6666667], r = [1.0, 0.6666667, 0.6666667]
    // f1_score(average="macro") -> 0.7777778 ; f1_score(average="micro") -> 0.75
    const T: [usize; 8] = [0, 1, 2, 2, 1, 0, 2, 1];
    const P: [usize; 8] = [0, 2, 2, 2, 1, 0, 1, 1];

    #[test]
    fn matches_scikit_learn() {
        assert_eq!(accuracy(&T, &P).unwrap(), 0.75);
        let cm = ConfusionMatrix::new(&T, &P, 3).unwrap();
        assert_eq!(cm.counts, vec![vec![2, 0, 0], vec![0, 2, 1], vec![0, 1, 2]]);
        let per = cm.per_class();
        assert!((per[1].precision - 2.0 / 3.0).abs() < 1e-12);
        assert!((per[2].recall - 2.0 / 3.0).abs() < 1e-12);
        assert!((cm.macro_avg().f1 - 0.777_777_777_8).abs() < 1e-9);
        assert!((cm.micro_avg().f1 - 0.75).abs() < 1e-12);
    }

    #[test]
    fn unpredicted_class_scores_zero() {
        // sklearn: precision_score([0, 1], [0, 0], average=None, zero_division=0) -> [0.5, 0.0]
        let cm = ConfusionMatrix::new(&[0, 1], &[0, 0], 2).unwrap();
        let per = cm.per_class();
        assert_eq!(per[0].precision, 0.5);
        assert_eq!(per[1].precision, 0.0);
        assert_eq!(per[1].f1, 0.0);
    }

    #[test]
    fn log_loss_matches_scikit_learn() {
        // sklearn.metrics.log_loss([0, 1, 1], [[.9, .1], [.2, .8], [.3, .7]]) -> 0.2283930
        let l = log_loss(&[0, 1, 1], &[0.9, 0.1, 0.2, 0.8, 0.3, 0.7], 2).unwrap();
        assert!((l - 0.228_393_0).abs() < 1e-6, "{l}");
    }

    #[test]
    fn top_k_matches_scikit_learn() {
        // sklearn.metrics.top_k_accuracy_score([0, 1, 2, 2],
        //   [[.5, .2, .2], [.3, .4, .2], [.2, .4, .3], [.7, .2, .1]], k=2) -> 0.75
        let s = [0.5, 0.2, 0.2, 0.3, 0.4, 0.2, 0.2, 0.4, 0.3, 0.7, 0.2, 0.1];
        assert_eq!(top_k_accuracy(&[0, 1, 2, 2], &s, 3, 2).unwrap(), 0.75);
        assert_eq!(top_k_accuracy(&[0, 1, 2, 2], &s, 3, 1).unwrap(), 0.5);
        assert!(top_k_accuracy(&[0], &s[..3], 3, 0).is_err());
    }

    #[test]
    fn bad_input_errors() {
        assert!(matches!(accuracy(&[], &[]), Err(Error::Empty(_))));
        assert!(matches!(
            accuracy(&[1], &[1, 2]),
            Err(Error::LengthMismatch { .. })
        ));
        assert!(matches!(
            ConfusionMatrix::new(&[3], &[0], 3),
            Err(Error::ClassOutOfRange { index: 3, .. })
        ));
    }

    #[test]
    fn report_is_consistent() {
        let probs = [0.8, 0.1, 0.1, 0.1, 0.7, 0.2, 0.3, 0.3, 0.4, 0.6, 0.2, 0.2];
        let r = ClassificationReport::new(&[0, 1, 2, 1], &probs, 3).unwrap();
        assert_eq!(r.accuracy, 0.75);
        assert_eq!(r.confusion.total(), 4);
        assert!(r.top3_accuracy.is_none());
    }
}
