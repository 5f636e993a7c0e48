//! The in-memory data set: a feature matrix and its targets.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::tabular::TableSchema;

/// What is predicted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Targets {
    /// One class index per sample, each below `names.len()`.
    Classes {
        /// The class of each sample.
        labels: Vec<usize>,
        /// The name of each class, in index order.
        names: Vec<String>,
    },
    /// One real value per sample (single-output regression).
    Values(Vec<f32>),
}

/// The kind of task a data set poses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Classification into this many classes.
    Classification(usize),
    /// Single-output regression.
    Regression,
}

/// A data set held in memory: `n` samples of `d` features (row-major) and their targets.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Short name (`digits`, `iris`, a file name).
    pub name: String,
    /// Row-major `[n, d]` features.
    pub features: Vec<f32>,
    /// Number of features `d`.
    pub n_features: usize,
    /// One target per sample.
    pub targets: Targets,
    /// Feature names (column headers, or `x0..`).
    pub feature_names: Vec<String>,
    /// `[channels, height, width]` when each row is an image.
    pub image_shape: Option<[usize; 3]>,
    /// The schema of an encoded table with categorical columns: numeric features first, then
    /// the categories.
    pub table: Option<TableSchema>,
}

impl Dataset {
    /// Builds a data set, checking that the sizes agree.
    ///
    /// # Errors
    /// [`Error::Mismatch`] when the feature matrix, the targets or the image shape disagree.
    pub fn new(
        name: impl Into<String>,
        features: Vec<f32>,
        n_features: usize,
        targets: Targets,
        image_shape: Option<[usize; 3]>,
    ) -> Result<Self> {
        let n_targets = match &targets {
            Targets::Classes { labels, names } => {
                if let Some(&bad) = labels.iter().find(|&&l| l >= names.len()) {
                    return Err(Error::Mismatch(format!(
                        "label {bad} but only {} class names",
                        names.len()
                    )));
                }
                labels.len()
            }
            Targets::Values(v) => v.len(),
        };
        if n_features == 0 || features.len() != n_targets * n_features {
            return Err(Error::Mismatch(format!(
                "{} feature values for {n_targets} samples of {n_features} features",
                features.len()
            )));
        }
        if let Some([c, h, w]) = image_shape
            && c * h * w != n_features
        {
            return Err(Error::Mismatch(format!(
                "image shape {c}x{h}x{w} does not hold {n_features} features"
            )));
        }
        Ok(Self {
            name: name.into(),
            features,
            n_features,
            targets,
            feature_names: (0..n_features).map(|i| format!("x{i}")).collect(),
            image_shape,
            table: None,
        })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.features.len() / self.n_features.max(1)
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The task: classification with its class count, or regression.
    pub fn task(&self) -> Task {
        match &self.targets {
            Targets::Classes { names, .. } => Task::Classification(names.len()),
            Targets::Values(_) => Task::Regression,
        }
    }

    /// The class labels, when this is a classification set.
    pub fn labels(&self) -> Option<&[usize]> {
        match &self.targets {
            Targets::Classes { labels, .. } => Some(labels),
            Targets::Values(_) => None,
        }
    }

    /// The class names, when this is a classification set.
    pub fn class_names(&self) -> Option<&[String]> {
        match &self.targets {
            Targets::Classes { names, .. } => Some(names),
            Targets::Values(_) => None,
        }
    }

    /// Labels for stratification: the classes, or all zeros for regression.
    pub fn strata(&self) -> Vec<usize> {
        self.labels()
            .map(<[usize]>::to_vec)
            .unwrap_or_else(|| vec![0; self.len()])
    }

    /// One sample's features.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.features[i * self.n_features..(i + 1) * self.n_features]
    }

    /// The samples at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let mut features = Vec::with_capacity(indices.len() * self.n_features);
        for &i in indices {
            features.extend_from_slice(self.row(i));
        }
        let targets = match &self.targets {
            Targets::Classes { labels, names } => Targets::Classes {
                labels: indices.iter().map(|&i| labels[i]).collect(),
                names: names.clone(),
            },
            Targets::Values(v) => Targets::Values(indices.iter().map(|&i| v[i]).collect()),
        };
        Dataset {
            name: self.name.clone(),
            features,
            n_features: self.n_features,
            targets,
            feature_names: self.feature_names.clone(),
            image_shape: self.image_shape,
            table: self.table.clone(),
        }
    }

    /// The images resized to `height x width` (bilinear, see
    /// [`resize_images`](crate::resize_images)); the digits' 8x8 at 28x28 for a model
    /// pretrained on Fashion-MNIST, say.
    ///
    /// # Errors
    /// [`Error::Invalid`] for data that are not images, or a zero size.
    pub fn resized(&self, height: usize, width: usize) -> Result<Dataset> {
        let Some([c, h, w]) = self.image_shape else {
            return Err(Error::Invalid(format!(
                "`{}` is not image data and cannot be resized",
                self.name
            )));
        };
        if height == 0 || width == 0 {
            return Err(Error::Invalid(format!(
                "cannot resize images to {height}x{width}"
            )));
        }
        if (h, w) == (height, width) {
            return Ok(self.clone());
        }
        let features = crate::resize_images(&self.features, [c, h, w], [height, width]);
        let mut out = Dataset::new(
            self.name.clone(),
            features,
            c * height * width,
            self.targets.clone(),
            Some([c, height, width]),
        )?;
        out.table = None;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Dataset {
        Dataset::new(
            "tiny",
            vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            2,
            Targets::Classes {
                labels: vec![0, 1, 0],
                names: vec!["a".into(), "b".into()],
            },
            None,
        )
        .unwrap()
    }

    #[test]
    fn subset_keeps_rows_and_labels() {
        let d = tiny();
        let s = d.subset(&[2, 0]);
        assert_eq!(s.features, vec![5.0, 6.0, 1.0, 2.0]);
        assert_eq!(s.labels().unwrap(), &[0, 0]);
        assert_eq!(d.task(), Task::Classification(2));
    }

    #[test]
    fn resizing_keeps_constant_images_and_corners_and_refuses_tables() {
        let img = Dataset::new(
            "img",
            vec![2.0, 2.0, 2.0, 2.0, 0.0, 1.0, 2.0, 3.0],
            4,
            Targets::Values(vec![0.0, 1.0]),
            Some([1, 2, 2]),
        )
        .unwrap();
        let big = img.resized(4, 6).unwrap();
        assert_eq!(big.image_shape, Some([1, 4, 6]));
        assert_eq!(big.n_features, 24);
        assert!(big.row(0).iter().all(|&v| (v - 2.0).abs() < 1e-6));
        // PyTorch: F.interpolate(x, (4, 6), mode="bilinear", align_corners=False) of
        // [[0, 1], [2, 3]]: edges clamp, the first row is 0, 0, 1/3, 2/3, 1, 1.
        let r = big.row(1);
        for (got, want) in r[..6]
            .iter()
            .zip([0.0, 0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0, 1.0])
        {
            assert!((got - want).abs() < 1e-6, "{:?}", &r[..6]);
        }
        assert!((r[23] - 3.0).abs() < 1e-6);
        assert!(tiny().resized(4, 4).is_err());
        assert!(img.resized(0, 4).is_err());
    }

    #[test]
    fn mismatches_are_errors() {
        assert!(Dataset::new("x", vec![1.0; 5], 2, Targets::Values(vec![0.0; 2]), None).is_err());
        assert!(
            Dataset::new(
                "x",
                vec![1.0; 4],
                2,
                Targets::Values(vec![0.0; 2]),
                Some([1, 1, 3])
            )
            .is_err()
        );
        let bad = Targets::Classes {
            labels: vec![2],
            names: vec!["a".into()],
        };
        assert!(Dataset::new("x", vec![1.0], 1, bad, None).is_err());
    }
}
