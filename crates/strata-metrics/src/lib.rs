//! # strata-metrics
//!
//! Classification metrics (accuracy, top-k, confusion matrix, per-class and macro/micro
//! precision, recall and F1, log-loss), regression metrics (MSE, MAE, RMSE, R²), ranking
//! metrics (ROC AUC, average precision), measures of generated samples (Frechet distance,
//! KID, precision and recall of distributions, mode coverage) and group fairness (rates by
//! group, demographic parity, equalised odds, equal opportunity), on plain slices, checked
//! against scikit-learn's, numpy's and fairlearn's values.
//!
//! ```
//! use strata_metrics::{accuracy, ConfusionMatrix};
//! let y_true = [0, 1, 2, 2];
//! let y_pred = [0, 2, 2, 2];
//! assert_eq!(accuracy(&y_true, &y_pred)?, 0.75);
//! let cm = ConfusionMatrix::new(&y_true, &y_pred, 3)?;
//! assert_eq!(cm.total(), 4);
//! assert!(cm.macro_avg().f1 <= 1.0);
//! # Ok::<(), strata_metrics::Error>(())
//! ```

mod classification;
mod error;
mod fairness;
mod generative;
mod ranking;
mod regression;
mod thresholds;

pub use classification::{
    Averages, ClassScores, ClassificationReport, ConfusionMatrix, accuracy, argmax_rows, log_loss,
    top_k_accuracy,
};
pub use error::{Error, Result};
pub use fairness::{CALIBRATION_BINS, Fairness, GroupRates, group_fairness, reweighing};
pub use generative::{
    ModeCoverage, frechet_distance, kernel_distance, mmd2_polynomial, mode_coverage,
    precision_recall,
};
pub use ranking::{average_precision, roc_auc};
pub use regression::{RegressionReport, mae, mse, r2, rmse};
pub use thresholds::{FairnessConstraint, GRID, GroupThresholds, ThresholdRule};

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn labelled(n_classes: usize) -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
        (1usize..200).prop_flat_map(move |n| {
            (
                prop::collection::vec(0..n_classes, n),
                prop::collection::vec(0..n_classes, n),
            )
        })
    }

    proptest! {
        #[test]
        fn f1_precision_recall_in_unit_interval((t, p) in labelled(5)) {
            let cm = ConfusionMatrix::new(&t, &p, 5).unwrap();
            for s in cm.per_class() {
                prop_assert!((0.0..=1.0).contains(&s.precision));
                prop_assert!((0.0..=1.0).contains(&s.recall));
                prop_assert!((0.0..=1.0).contains(&s.f1));
            }
            let m = cm.macro_avg();
            prop_assert!((0.0..=1.0).contains(&m.f1));
        }

        #[test]
        fn confusion_sums_to_n_and_micro_is_accuracy((t, p) in labelled(4)) {
            let cm = ConfusionMatrix::new(&t, &p, 4).unwrap();
            prop_assert_eq!(cm.total(), t.len());
            let support: usize = cm.per_class().iter().map(|s| s.support).sum();
            prop_assert_eq!(support, t.len());
            let acc = accuracy(&t, &p).unwrap();
            prop_assert!((cm.micro_avg().f1 - acc).abs() < 1e-12);
        }

        #[test]
        fn perfect_prediction_scores_one(t in prop::collection::vec(0usize..3, 1..100)) {
            let cm = ConfusionMatrix::new(&t, &t, 3).unwrap();
            prop_assert_eq!(accuracy(&t, &t).unwrap(), 1.0);
            for (c, s) in cm.per_class().iter().enumerate() {
                if t.contains(&c) { prop_assert_eq!(s.f1, 1.0); }
            }
        }

        #[test]
        fn regression_metrics_are_ordered(
            pairs in prop::collection::vec((-1e3f32..1e3, -1e3f32..1e3), 1..100)
        ) {
            let (t, p): (Vec<f32>, Vec<f32>) = pairs.into_iter().unzip();
            let r = RegressionReport::new(&t, &p).unwrap();
            prop_assert!(r.mae >= 0.0);
            // RMSE >= MAE (power-mean inequality), up to rounding.
            prop_assert!(r.rmse + 1e-9 >= r.mae);
            prop_assert!(r.r2 <= 1.0);
        }
    }
}
