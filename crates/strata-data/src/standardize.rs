//! Feature standardisation, fitted on the training split only.

use serde::{Deserialize, Serialize};

use crate::dataset::Dataset;
use crate::error::{Error, Result};

/// Per-feature mean and standard deviation (population), as scikit-learn's `StandardScaler`.
/// A constant feature gets scale 1, so it maps to 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    /// Mean of each feature on the fitting data.
    pub mean: Vec<f32>,
    /// Standard deviation of each feature (1 where it was 0).
    pub scale: Vec<f32>,
}

impl Standardizer {
    /// The standardisation that leaves `n_features` features as they are: mean 0, scale 1
    /// (what data that were not standardised amount to).
    #[must_use]
    pub fn identity(n_features: usize) -> Self {
        Self {
            mean: vec![0.0; n_features],
            scale: vec![1.0; n_features],
        }
    }

    /// Fits on `data` (the training split).
    ///
    /// # Errors
    /// When `data` is empty.
    pub fn fit(data: &Dataset) -> Result<Self> {
        let n = data.len();
        if n == 0 {
            return Err(Error::TooSmall(
                "cannot fit a standardiser on no samples".into(),
            ));
        }
        let d = data.n_features;
        let mut mean = vec![0f64; d];
        for i in 0..n {
            for (m, &v) in mean.iter_mut().zip(data.row(i)) {
                *m += v as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let mut var = vec![0f64; d];
        for i in 0..n {
            for ((s, &v), m) in var.iter_mut().zip(data.row(i)).zip(&mean) {
                *s += (v as f64 - m).powi(2);
            }
        }
        Ok(Self {
            mean: mean.iter().map(|&m| m as f32).collect(),
            scale: var
                .iter()
                .map(|&s| {
                    let sd = (s / n as f64).sqrt();
                    if sd < 1e-12 { 1.0 } else { sd as f32 }
                })
                .collect(),
        })
    }

    /// Leaves the features from index `first` on unchanged (mean 0, scale 1): the category
    /// codes that follow the numeric features of an encoded table.
    pub fn numeric_only(mut self, first: usize) -> Self {
        for j in first..self.mean.len() {
            self.mean[j] = 0.0;
            self.scale[j] = 1.0;
        }
        self
    }

    /// Standardises `data` in place.
    ///
    /// # Errors
    /// When `data` has a different number of features than the fitted data.
    pub fn transform(&self, data: &mut Dataset) -> Result<()> {
        self.transform_rows(&mut data.features)
    }

    /// Standardises a row-major feature matrix in place.
    ///
    /// # Errors
    /// When the length is not a multiple of the number of features.
    pub fn transform_rows(&self, features: &mut [f32]) -> Result<()> {
        let d = self.width_of(features)?;
        for row in features.chunks_mut(d) {
            for ((v, m), s) in row.iter_mut().zip(&self.mean).zip(&self.scale) {
                *v = (*v - m) / s;
            }
        }
        Ok(())
    }

    /// The fitted width, checked against a row-major matrix of `features`.
    fn width_of(&self, features: &[f32]) -> Result<usize> {
        let d = self.mean.len();
        if d == 0 || !features.len().is_multiple_of(d) {
            return Err(Error::Mismatch(format!(
                "standardiser fitted on {d} features, data has {} values",
                features.len()
            )));
        }
        Ok(d)
    }

    /// Undoes [`transform_rows`](Self::transform_rows): values back in the data's units.
    ///
    /// # Errors
    /// When the length is not a multiple of the number of features.
    pub fn inverse_rows(&self, features: &mut [f32]) -> Result<()> {
        let d = self.width_of(features)?;
        for row in features.chunks_mut(d) {
            for ((v, m), s) in row.iter_mut().zip(&self.mean).zip(&self.scale) {
                *v = *v * s + m;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Targets;

    #[test]
    fn fitted_on_train_only() {
        let train = Dataset::new(
            "t",
            vec![1.0, 5.0, 3.0, 5.0],
            2,
            Targets::Values(vec![0.0; 2]),
            None,
        )
        .unwrap();
        let s = Standardizer::fit(&train).unwrap();
        assert_eq!(s.mean, vec![2.0, 5.0]);
        assert_eq!(s.scale, vec![1.0, 1.0]); // sd of [1,3] is 1; constant column gets 1
        let mut test =
            Dataset::new("t", vec![4.0, 7.0], 2, Targets::Values(vec![0.0]), None).unwrap();
        s.transform(&mut test).unwrap();
        assert_eq!(test.features, vec![2.0, 2.0]);
        let mut wrong = vec![1.0; 3];
        assert!(s.transform_rows(&mut wrong).is_err());
    }
}
