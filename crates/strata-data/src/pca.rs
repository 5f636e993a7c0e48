//! Principal component analysis, the linear baseline of autoencoders: the top-k eigenvectors
//! of the training rows' covariance, from burn-linalg's SVD (Golub-Kahan, computed on the host),
//! not hand-written.
//!
//! ```
//! use strata_data::{Pca, digits};
//! let data = digits();
//! let pca = Pca::fit(&data, 10)?;
//! let few = pca.reconstruction_mse(&data)?;
//! let all = Pca::fit(&data, 64)?.reconstruction_mse(&data)?;
//! assert!(all < 1e-6 && few > all);
//! # Ok::<(), strata_data::Error>(())
//! ```

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::Dataset;
use crate::error::{Error, Result};

/// A fitted PCA: the training rows' mean and the top `k` principal directions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pca {
    /// Features per row.
    pub d: usize,
    /// Components kept.
    pub k: usize,
    /// The mean row, `[d]`.
    pub mean: Vec<f32>,
    /// The principal directions, row-major `[k, d]`, by decreasing variance.
    pub components: Vec<f32>,
}

/// Rows of `d` values as a `[n, d]` tensor on the CPU.
fn matrix(values: &[f32], d: usize, device: &Device) -> Tensor<2> {
    Tensor::from_data(
        TensorData::new(values.to_vec(), [values.len() / d, d]),
        device,
    )
}

impl Pca {
    /// Fits `k` components on the rows of `data`.
    ///
    /// # Errors
    /// `k` of 0 or above the number of features, or no rows.
    pub fn fit(data: &Dataset, k: usize) -> Result<Self> {
        let d = data.n_features;
        if k == 0 || k > d {
            return Err(Error::Invalid(format!(
                "PCA components must be in 1..={d}, got {k}"
            )));
        }
        if data.is_empty() {
            return Err(Error::TooSmall("PCA needs rows".into()));
        }
        let device = Device::flex();
        let n = data.len();
        let mut mean = vec![0.0f64; d];
        for row in data.features.chunks(d) {
            for (m, &v) in mean.iter_mut().zip(row) {
                *m += v as f64;
            }
        }
        let mean: Vec<f32> = mean.iter().map(|m| (m / n as f64) as f32).collect();
        let x = matrix(&data.features, d, &device) - matrix(&mean, d, &device);
        let covariance = x.clone().transpose().matmul(x) / n as f64;
        // The covariance is symmetric: its right singular vectors are its eigenvectors, in
        // order of decreasing eigenvalue.
        let (_, _, vt) = burn_linalg::svd::<2, 1>(covariance, 200);
        let components = strata_tensor::convert::to_vec(vt.slice([0..k, 0..d]).reshape([k * d]));
        Ok(Self {
            d,
            k,
            mean,
            components,
        })
    }

    /// The codes of the rows of `data`: their coordinates on the components (`[n, k]`,
    /// row-major), the linear counterpart of an autoencoder's code.
    ///
    /// # Errors
    /// Rows of another width.
    pub fn transform(&self, data: &Dataset) -> Result<Vec<f32>> {
        let n = data.len();
        Ok(strata_tensor::convert::to_vec(
            self.codes(data)?.reshape([n * self.k]),
        ))
    }

    /// The codes as a tensor on the host's flex device.
    fn codes(&self, data: &Dataset) -> Result<Tensor<2>> {
        if data.n_features != self.d {
            return Err(Error::Mismatch(format!(
                "the PCA was fitted on {} features, the data have {}",
                self.d, data.n_features
            )));
        }
        let device = Device::flex();
        let mean = matrix(&self.mean, self.d, &device);
        let v = matrix(&self.components, self.d, &device);
        let x = matrix(&data.features, self.d, &device) - mean;
        Ok(x.matmul(v.transpose()))
    }

    /// The rows of `data` projected on the components and back (`[n, d]`, row-major).
    ///
    /// # Errors
    /// Rows of another width.
    pub fn reconstruct(&self, data: &Dataset) -> Result<Vec<f32>> {
        let codes = self.codes(data)?;
        let device = Device::flex();
        let mean = matrix(&self.mean, self.d, &device);
        let v = matrix(&self.components, self.d, &device);
        Ok(strata_tensor::convert::to_vec(
            (codes.matmul(v) + mean).reshape([data.features.len()]),
        ))
    }

    /// The squared error of each row of `data` rebuilt by [`reconstruct`](Self::reconstruct),
    /// summed over its values (PCA's anomaly score).
    ///
    /// # Errors
    /// As [`reconstruct`](Self::reconstruct).
    pub fn row_errors(&self, data: &Dataset) -> Result<Vec<f64>> {
        let back = self.reconstruct(data)?;
        Ok(back
            .chunks(self.d.max(1))
            .zip(data.features.chunks(self.d.max(1)))
            .map(|(a, b)| a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum())
            .collect())
    }

    /// The squared error per value of [`reconstruct`](Self::reconstruct) on `data`.
    ///
    /// # Errors
    /// As [`reconstruct`](Self::reconstruct).
    pub fn reconstruction_mse(&self, data: &Dataset) -> Result<f64> {
        let back = self.reconstruct(data)?;
        let se: f64 = back
            .iter()
            .zip(&data.features)
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum();
        Ok(se / data.features.len().max(1) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Targets, digits};

    #[test]
    fn rows_on_a_plane_are_rebuilt_by_two_components() {
        // 50 points on the plane spanned by (1, 2, 0, 1) and (0, 1, 1, -1), shifted by a mean.
        let rows: Vec<f32> = (0..50)
            .flat_map(|i| {
                let (a, b) = ((i as f32 * 0.37).sin(), (i as f32 * 0.11).cos() * 2.0);
                [1.0 + a, 2.0 * a + b - 1.0, b + 0.5, a - b]
            })
            .collect();
        let data = Dataset::new("plane", rows, 4, Targets::Values(vec![0.0; 50]), None).unwrap();
        let two = Pca::fit(&data, 2)
            .unwrap()
            .reconstruction_mse(&data)
            .unwrap();
        let one = Pca::fit(&data, 1)
            .unwrap()
            .reconstruction_mse(&data)
            .unwrap();
        assert!(two < 1e-9, "{two}");
        assert!(one > 1e-3, "{one}");
    }

    #[test]
    fn more_components_never_rebuild_worse() {
        let data = digits();
        let errors: Vec<f64> = [1, 5, 20, 64]
            .iter()
            .map(|&k| {
                Pca::fit(&data, k)
                    .unwrap()
                    .reconstruction_mse(&data)
                    .unwrap()
            })
            .collect();
        assert!(errors.windows(2).all(|w| w[1] <= w[0] + 1e-9), "{errors:?}");
        assert!(errors[3] < 1e-6, "{errors:?}");
        // Codes are k per row; the row errors average to the mean error times the width.
        let pca = Pca::fit(&data, 5).unwrap();
        assert_eq!(pca.transform(&data).unwrap().len(), data.len() * 5);
        let rows = pca.row_errors(&data).unwrap();
        let mean = rows.iter().sum::<f64>() / (rows.len() * 64) as f64;
        assert!((mean - errors[1]).abs() < 1e-6 * errors[1].max(1.0));
    }

    #[test]
    fn bad_sizes_are_errors() {
        let data = digits();
        assert!(Pca::fit(&data, 0).is_err());
        assert!(Pca::fit(&data, 65).is_err());
        let pca = Pca::fit(&data, 3).unwrap();
        let other =
            Dataset::new("x", vec![0.0; 8], 4, Targets::Values(vec![0.0; 2]), None).unwrap();
        assert!(pca.reconstruct(&other).is_err());
    }
}
