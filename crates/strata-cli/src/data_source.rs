//! Naming data sets on the command line, splitting them, and the preprocessing saved with a run.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use strata::data::{
    CsvOptions, Dataset, LabelColumn, Standardizer, Task, embedded, fashion_mnist, load_csv,
    stratified_split,
};

use crate::error::{Error, Result};
use crate::run_config::RunConfig;

/// The data sets `strata list` shows.
pub const DATASETS: [(&str, &str); 4] = [
    (
        "digits",
        "UCI handwritten digits, 1797 8x8 images, 10 classes (embedded)",
    ),
    (
        "iris",
        "Fisher's iris, 150 x 4 measurements, 3 species (embedded)",
    ),
    (
        "fashion-mnist[:DIR]",
        "Fashion-MNIST, 60k/10k 28x28 images, 10 classes (Debian dataset-fashion-mnist)",
    ),
    (
        "csv:PATH",
        "any numeric CSV (gzipped or not); --label picks the label column",
    ),
];

/// A data set as named, before splitting.
pub enum Source {
    /// One set, to split three ways.
    Single(Dataset),
    /// A set with its own test set.
    TrainTest(Dataset, Dataset),
}

/// Loads the data set a run names.
///
/// # Errors
/// Unknown names, missing files, malformed files.
pub fn load_source(spec: &str, label: &LabelColumn) -> Result<Source> {
    if let Some(path) = spec.strip_prefix("csv:") {
        let options = CsvOptions {
            label: label.clone(),
            ..Default::default()
        };
        return Ok(Source::Single(load_csv(path, &options)?));
    }
    if spec == "fashion-mnist" || spec.starts_with("fashion-mnist:") {
        let dir = spec.strip_prefix("fashion-mnist:").map(PathBuf::from);
        let (train, test) = fashion_mnist(dir.as_deref())?;
        return Ok(Source::TrainTest(train, test));
    }
    match spec {
        "digits" | "iris" => Ok(Source::Single(embedded(spec)?)),
        other => Err(Error::Usage(format!(
            "unknown data set `{other}`: expected digits, iris, fashion-mnist[:DIR] or csv:PATH"
        ))),
    }
}

/// The preprocessing of a run, saved as `preprocess.json` so that evaluation and prediction
/// transform new data the same way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    /// Features per sample.
    pub n_features: usize,
    /// Image shape, for image data.
    pub image_shape: Option<[usize; 3]>,
    /// Class names (classification) in output order.
    pub class_names: Option<Vec<String>>,
    /// Standardisation fitted on the training split.
    pub standardizer: Option<Standardizer>,
}

impl Preprocess {
    /// Saves to `dir/preprocess.json`.
    ///
    /// # Errors
    /// I/O errors.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).expect("serialisable");
        strata::train::write_atomic(&dir.join("preprocess.json"), &json)?;
        Ok(())
    }

    /// Loads from `dir/preprocess.json`.
    ///
    /// # Errors
    /// A missing or corrupt file.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("preprocess.json");
        let text = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_slice(&text).map_err(|e| Error::Config {
            path,
            message: e.to_string(),
        })
    }

    /// Applies the standardisation to `data`, after checking its width.
    ///
    /// # Errors
    /// A data set with another number of features.
    pub fn apply(&self, data: &mut Dataset) -> Result<()> {
        if data.n_features != self.n_features {
            return Err(Error::Usage(format!(
                "the model was trained on {} features, this data set has {}",
                self.n_features, data.n_features
            )));
        }
        if let Some(s) = &self.standardizer {
            s.transform(data)?;
        }
        Ok(())
    }
}

/// Train, validation and test sets, preprocessed.
pub struct Prepared {
    /// Training split.
    pub train: Dataset,
    /// Validation split.
    pub valid: Dataset,
    /// Test split.
    pub test: Dataset,
    /// How they were preprocessed.
    pub preprocess: Preprocess,
}

/// The raw (unstandardised) train+validation pool and test set of a run: the same seed and
/// fractions always give the same sets.
///
/// # Errors
/// Data sets too small for the split.
pub fn split_source(source: Source, config: &RunConfig) -> Result<(Dataset, Dataset, Dataset)> {
    let seed = config.fit.seed;
    Ok(match source {
        Source::Single(data) => {
            let s = stratified_split(
                &data.strata(),
                config.valid_fraction,
                config.test_fraction,
                seed,
            )?;
            (
                data.subset(&s.train),
                data.subset(&s.valid),
                data.subset(&s.test),
            )
        }
        Source::TrainTest(train, test) => {
            let s = stratified_split(&train.strata(), config.valid_fraction, 0.0, seed)?;
            (train.subset(&s.train), train.subset(&s.valid), test)
        }
    })
}

/// Fits the preprocessing on `train` and applies it to all three sets.
///
/// # Errors
/// Standardiser errors.
pub fn prepare(
    mut train: Dataset,
    mut valid: Dataset,
    mut test: Dataset,
    config: &RunConfig,
) -> Result<Prepared> {
    let standardize = config.standardize.unwrap_or(train.image_shape.is_none());
    let standardizer = if standardize {
        let s = Standardizer::fit(&train)?;
        s.transform(&mut train)?;
        s.transform(&mut valid)?;
        s.transform(&mut test)?;
        Some(s)
    } else {
        None
    };
    let preprocess = Preprocess {
        n_features: train.n_features,
        image_shape: train.image_shape,
        class_names: train.class_names().map(<[String]>::to_vec),
        standardizer,
    };
    Ok(Prepared {
        train,
        valid,
        test,
        preprocess,
    })
}

/// Number of model outputs for a task under a loss.
pub fn n_outputs(task: Task, config: &RunConfig) -> usize {
    match (task, &config.loss) {
        (Task::Classification(_), strata::loss::LossConfig::Bce) => 1,
        (Task::Classification(k), _) => k,
        (Task::Regression, _) => 1,
    }
}
