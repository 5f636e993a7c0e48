//! How a run's data is split and preprocessed: the train / validation / test split (stratified,
//! seeded), the training fraction, resizing, standardisation fitted on the training split, and
//! the [`Preprocess`] record saved as `preprocess.json` so that evaluation and prediction
//! transform new data the same way.

use std::path::Path;

use serde::{Deserialize, Serialize};
use strata_data::{
    CharVocab, Dataset, SeriesScaler, Source, Standardizer, TableSchema, Task, TimeSplit,
    stratified_split,
};

use crate::config::RunConfig;
use crate::error::{Error, Result};

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
    /// For forecasting runs: the series' split, scaling and window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series: Option<SeriesPrep>,
    /// For language models: the character vocabulary (saved with the model so that
    /// `strata generate` can encode prompts and decode samples).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocab: Option<CharVocab>,
    /// For tables with categorical columns: the schema fitted on the training table, which
    /// encodes new rows the same way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<TableSchema>,
}

/// How a forecasting run read its series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesPrep {
    /// The split by time.
    pub split: TimeSplit,
    /// Scaling fitted on the training period.
    pub scaler: SeriesScaler,
    /// Values per input window.
    pub window: usize,
}

impl Preprocess {
    /// Saves to `dir/preprocess.json`.
    ///
    /// # Errors
    /// I/O errors.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).expect("serialisable");
        strata_train::write_atomic(&dir.join("preprocess.json"), &json)?;
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
        // Images of another size for a model trained on resized images: resized alike.
        if let (Some([c, h, w]), Some([dc, dh, dw])) = (self.image_shape, data.image_shape)
            && c == dc
            && (h, w) != (dh, dw)
        {
            *data = data.resized(h, w)?;
        }
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

/// The raw (unstandardised) training, validation and test sets of a run, and the row of each
/// test sample in the data set as loaded (in its own test set, for data sets that come with
/// one): the same seed and fractions always give the same sets.
///
/// # Errors
/// Data sets too small for the split.
pub fn split_source(
    source: Source,
    config: &RunConfig,
) -> Result<(Dataset, Dataset, Dataset, Vec<usize>)> {
    let seed = config.fit.seed;
    let source = match config.image_shape {
        Some(shape) => with_image_shape(source, shape)?,
        None => source,
    };
    let (train, valid, test, test_rows) = match source {
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
                s.test,
            )
        }
        Source::TrainTest(train, test) => {
            let s = stratified_split(&train.strata(), config.valid_fraction, 0.0, seed)?;
            let rows = (0..test.len()).collect();
            (train.subset(&s.train), train.subset(&s.valid), test, rows)
        }
        Source::Series(_) | Source::Text { .. } | Source::Transduction(_) | Source::Graph(_) => {
            return Err(Error::Usage(format!(
                "`{}` is a series, a text, a transduction task or a graph, not a table of samples",
                config.dataset
            )));
        }
    };
    let train = match config.train_fraction {
        // A stratified subset: the complement of a "validation" part of 1 - f.
        Some(f) if f < 1.0 => {
            let s = stratified_split(&train.strata(), 1.0 - f, 0.0, seed ^ 0x7F4A_7C15)?;
            train.subset(&s.train)
        }
        _ => train,
    };
    Ok(match config.resize {
        Some([h, w]) => (
            train.resized(h, w)?,
            valid.resized(h, w)?,
            test.resized(h, w)?,
            test_rows,
        ),
        None => (train, valid, test, test_rows),
    })
}

/// The rows of a CSV data set read as images of `shape`.
fn with_image_shape(source: Source, shape: [usize; 3]) -> Result<Source> {
    let set = |mut d: Dataset| -> Result<Dataset> {
        let [c, h, w] = shape;
        if d.table.is_some() || c * h * w != d.n_features {
            return Err(Error::Usage(format!(
                "--image-shape {c}x{h}x{w} holds {} values, but `{}` has rows of {} numeric features",
                c * h * w,
                d.name,
                d.n_features
            )));
        }
        d.image_shape = Some(shape);
        Ok(d)
    };
    Ok(match source {
        Source::Single(d) => Source::Single(set(d)?),
        Source::TrainTest(a, b) => Source::TrainTest(set(a)?, set(b)?),
        other => other,
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
    // Built-in images come scaled to [0, 1]; tables, and CSV rows read as images (raw pixel
    // values, often 0-255), are standardised.
    let standardize = config
        .standardize
        .unwrap_or(train.image_shape.is_none() || config.image_shape.is_some());
    let standardizer = if standardize {
        let mut s = Standardizer::fit(&train)?;
        if let Some(t) = &train.table {
            // Category codes stay as they are.
            s = s.numeric_only(t.n_numeric());
        }
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
        series: None,
        vocab: None,
        table: train.table.clone(),
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
        (Task::Classification(_), strata_loss::LossConfig::Bce) => 1,
        (Task::Classification(k), _) => k,
        (Task::Regression, _) => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::store::ModuleSnapshot;
    use std::collections::BTreeSet;

    /// The transfer study's setting (digits resized to 28x28, 10% of the training split).
    fn study(seed: u64) -> RunConfig {
        let mut c = RunConfig::defaults_for("resnet20", "digits");
        c.train_fraction = Some(0.1);
        c.resize = Some([28, 28]);
        c.fit.seed = seed;
        c
    }

    /// Each seed of the transfer study draws its own test split, its own training subset and
    /// its own initial weights: the seeds whose test accuracies tied (3, 4, 5) measured
    /// different things, and their tie is not one run repeated.
    #[test]
    fn the_split_the_subset_and_the_initialisation_change_with_the_seed() {
        let mut tests = Vec::new();
        let mut subsets = Vec::new();
        let mut weights = Vec::new();
        for seed in [3, 4, 5] {
            let c = study(seed);
            let source =
                strata_data::load_source(&c.dataset, &c.label, strata_data::Encoding::OneHot)
                    .unwrap();
            let (train, valid, test, rows) = split_source(source, &c).unwrap();
            assert_eq!((train.len(), valid.len(), test.len()), (117, 269, 359));
            assert_eq!(rows.len(), 359);
            tests.push(rows.into_iter().collect::<BTreeSet<usize>>());
            subsets.push(train.features.clone());
            let pre = prepare(train, valid, test, &c).unwrap();
            let net = crate::family::network_config(&c, &pre.preprocess, 10).unwrap();
            let device = burn::tensor::Device::flex();
            strata_tensor::seed_device(&device, seed);
            let model = net.init(&device).unwrap();
            let first = model
                .collect(None, None, false)
                .into_iter()
                .next()
                .expect("a parameter")
                .to_bytes()
                .unwrap()
                .to_vec();
            weights.push(first);
        }
        for (i, j) in [(0, 1), (0, 2), (1, 2)] {
            let common = tests[i].intersection(&tests[j]).count();
            // Two random 20% test splits of 1797 digits share about a fifth of their rows.
            assert!(
                (20..200).contains(&common),
                "seeds {} and {}: {common} common test rows",
                i + 3,
                j + 3
            );
            assert_ne!(subsets[i], subsets[j], "training subsets of two seeds");
            assert_ne!(weights[i], weights[j], "initial weights of two seeds");
        }
    }
}
