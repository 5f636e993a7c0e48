//! Predictions of a finished run on new rows ([`Run::predict`], [`Run::predict_file`]), and
//! logits of PyTorch weights without a run ([`torch_logits`]).

use std::fmt::Write as _;
use std::path::Path;

use burn::module::Module;
use burn::tensor::Device;
use strata_arch::Network;
use strata_data::{Table, read_feature_rows};
use strata_tensor::Backend;
use strata_train::{predict, probabilities};

use crate::error::{Error, Result};
use crate::evaluate::Run;
use crate::family::family;
use crate::transfer::load_torch;

/// What a run predicts for some rows.
#[derive(Debug, Clone, PartialEq)]
pub enum Predictions {
    /// A classifier's class probabilities, one row of `names.len()` per input row.
    Classes {
        /// The class names, in output order.
        names: Vec<String>,
        /// Probabilities, row-major.
        probabilities: Vec<f32>,
    },
    /// A capsule network's class scores: the class capsules' lengths, each in `[0, 1)` and
    /// not summing to 1 (each says how present its class is), one row of `names.len()` per
    /// input row.
    Lengths {
        /// The class names, in output order.
        names: Vec<String>,
        /// Lengths, row-major.
        lengths: Vec<f32>,
    },
    /// A regressor's or forecaster's values (in the data's units), one per input row.
    Values(Vec<f32>),
    /// An autoencoder's anomaly scores (squared reconstruction errors; higher is more
    /// anomalous), one per input row.
    Scores(Vec<f64>),
    /// A graph network's class probabilities, one row per node or per graph, with its id.
    Keyed {
        /// What a row is: `node` or `graph`.
        key: String,
        /// The id of each row (a node's id in the files, a graph's number from 1).
        ids: Vec<String>,
        /// The class names, in output order.
        names: Vec<String>,
        /// Probabilities, row-major.
        probabilities: Vec<f32>,
    },
}

impl Predictions {
    /// Number of rows predicted.
    pub fn len(&self) -> usize {
        match self {
            Predictions::Classes {
                names,
                probabilities,
            }
            | Predictions::Keyed {
                names,
                probabilities,
                ..
            }
            | Predictions::Lengths {
                names,
                lengths: probabilities,
            } => probabilities.len() / names.len().max(1),
            Predictions::Values(v) => v.len(),
            Predictions::Scores(v) => v.len(),
        }
    }

    /// Whether no row was predicted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most probable class of each row (classifiers; a capsule network's longest
    /// capsule), else empty.
    pub fn classes(&self) -> Vec<&str> {
        match self {
            Predictions::Classes {
                names,
                probabilities,
            }
            | Predictions::Keyed {
                names,
                probabilities,
                ..
            }
            | Predictions::Lengths {
                names,
                lengths: probabilities,
            } => probabilities
                .chunks(names.len().max(1))
                .map(|row| names[strata_metrics::argmax_rows(row, names.len())[0]].as_str())
                .collect(),
            Predictions::Values(_) | Predictions::Scores(_) => Vec::new(),
        }
    }

    /// The CSV `strata predict` writes: `row,class,p_<class>...` for a classifier,
    /// `row,class,length_<class>...` for a capsule network,
    /// `row,anomaly_score` for an autoencoder, `node,class,p_<class>...` or
    /// `graph,class,...` for a graph network, `row,prediction` otherwise.
    pub fn to_csv(&self) -> String {
        let mut csv = String::new();
        match self {
            Predictions::Classes {
                names,
                probabilities,
            } => {
                let header: Vec<String> = names.iter().map(|c| format!("p_{c}")).collect();
                let _ = writeln!(csv, "row,class,{}", header.join(","));
                let classes = self.classes();
                for (i, row) in probabilities.chunks(names.len().max(1)).enumerate() {
                    let cells: Vec<String> = row.iter().map(|p| format!("{p:.6}")).collect();
                    let _ = writeln!(csv, "{i},{},{}", classes[i], cells.join(","));
                }
            }
            Predictions::Lengths { names, lengths } => {
                let header: Vec<String> = names.iter().map(|c| format!("length_{c}")).collect();
                let _ = writeln!(csv, "row,class,{}", header.join(","));
                let classes = self.classes();
                for (i, row) in lengths.chunks(names.len().max(1)).enumerate() {
                    let cells: Vec<String> = row.iter().map(|p| format!("{p:.6}")).collect();
                    let _ = writeln!(csv, "{i},{},{}", classes[i], cells.join(","));
                }
            }
            Predictions::Values(values) => {
                let _ = writeln!(csv, "row,prediction");
                for (i, v) in values.iter().enumerate() {
                    let _ = writeln!(csv, "{i},{v}");
                }
            }
            Predictions::Keyed {
                key,
                ids,
                names,
                probabilities,
            } => {
                let header: Vec<String> = names.iter().map(|c| format!("p_{c}")).collect();
                let _ = writeln!(csv, "{key},class,{}", header.join(","));
                let classes = self.classes();
                for ((id, class), row) in ids
                    .iter()
                    .zip(&classes)
                    .zip(probabilities.chunks(names.len().max(1)))
                {
                    let cells: Vec<String> = row.iter().map(|p| format!("{p:.6}")).collect();
                    let _ = writeln!(csv, "{id},{class},{}", cells.join(","));
                }
            }
            Predictions::Scores(scores) => {
                let _ = writeln!(csv, "row,anomaly_score");
                for (i, v) in scores.iter().enumerate() {
                    let _ = writeln!(csv, "{i},{v:.6}");
                }
            }
        }
        csv
    }
}

impl Run {
    /// Predicts rows of raw features (as in the training data, before standardisation),
    /// `n_features` values each; a forecaster reads rows of `window` raw values, oldest first.
    ///
    /// # Errors
    /// Rows of another width, a run directory whose files disagree.
    pub fn predict(&self, features: Vec<f32>) -> Result<Predictions> {
        let (outputs, k) = self.outputs(features)?;
        let pre = &self.preprocess;
        Ok(match &pre.class_names {
            Some(names) => {
                // One probability per class; a single (BCE) score gives two.
                let width = if k == 1 { 2 } else { k };
                if names.len() != width {
                    return Err(Error::Usage(format!(
                        "{}: preprocess.json lists {} class names but the model scores {width} classes; the run directory is inconsistent",
                        self.dir.display(),
                        names.len()
                    )));
                }
                Predictions::Classes {
                    names: names.clone(),
                    probabilities: probabilities(&outputs, k, &self.device),
                }
            }
            None => Predictions::Values(
                outputs
                    .chunks(k.max(1))
                    .map(|v| pre.series.as_ref().map_or(v[0], |s| s.scaler.unscale(v[0])))
                    .collect(),
            ),
        })
    }

    /// The model's raw outputs for rows of raw features (as [`predict`](Self::predict) reads
    /// them), flattened, and the number of outputs per row.
    ///
    /// # Errors
    /// Rows of another width.
    pub fn outputs(&self, mut features: Vec<f32>) -> Result<(Vec<f32>, usize)> {
        let pre = &self.preprocess;
        if !features.len().is_multiple_of(pre.n_features.max(1)) {
            return Err(Error::Usage(format!(
                "{} values are not rows of {} features",
                features.len(),
                pre.n_features
            )));
        }
        if let Some(s) = &pre.standardizer {
            s.transform_rows(&mut features)?;
        }
        // A forecaster reads rows of `window` raw values, scaled as in training.
        if let Some(s) = &pre.series {
            for v in &mut features {
                *v = s.scaler.scale(*v);
            }
        }
        forward_rows(
            &self.model,
            features,
            pre.n_features,
            pre.image_shape,
            256,
            &self.device,
        )
    }

    /// Predicts the rows of a CSV file: numeric features (the label column, if present, is
    /// ignored), or for a table with categorical columns, its columns found by name.
    ///
    /// # Errors
    /// An unreadable or malformed file, rows of another width.
    pub fn predict_file(&self, path: impl AsRef<Path>) -> Result<Predictions> {
        self.predict(self.read_rows(path)?)
    }

    /// The raw feature rows of a CSV file, as [`predict_file`](Self::predict_file) reads them.
    ///
    /// # Errors
    /// An unreadable or malformed file, rows of another width.
    pub fn read_rows(&self, path: impl AsRef<Path>) -> Result<Vec<f32>> {
        let path = path.as_ref();
        Ok(match &self.preprocess.table {
            // Encoded by the schema fitted in training (the label column may be absent).
            Some(schema) => schema.encode_features(&Table::load(path)?)?,
            None => read_feature_rows(path, self.preprocess.n_features, &self.config.label)?.0,
        })
    }
}

/// Predictions of the finished run in `dir` (on `backend`, or its own) for the rows of a
/// file: [`Run::predict_file`] for most runs, anomaly scores for an autoencoder's
/// ([`AutoencoderRun::scores`](crate::AutoencoderRun::scores)). `class` is the class of every
/// row for a conditional VAE.
///
/// # Errors
/// A directory that is not a finished run, an unreadable or malformed file.
pub fn predict_file(
    dir: impl AsRef<Path>,
    backend: Option<&str>,
    input: impl AsRef<Path>,
    class: Option<&str>,
) -> Result<Predictions> {
    let dir = dir.as_ref();
    let config = crate::evaluate::load_run_config(dir, backend)?;
    family(&config.model)?.predict(dir, backend, input.as_ref(), class)
}

/// What [`torch_logits`] reads: torchvision-layout weights of a ResNet or a VGG.
#[derive(Debug, Clone)]
pub struct TorchWeights<'a> {
    /// The architecture: resnet18/34/50/101, resnet20/32/56 or vgg11/13/16/19[_bn].
    pub model: &'a str,
    /// The weights (`.pt`, `.pth` or `.safetensors` with torchvision's names).
    pub path: &'a Path,
    /// Classes of the head.
    pub num_classes: usize,
    /// Input channels.
    pub in_channels: usize,
    /// The backend (`None`: `$STRATA_BACKEND` or flex).
    pub backend: Option<&'a str>,
}

/// The logits of PyTorch weights on a batch of images `[n, c, h, w]` (row-major values) that
/// errors call `input` (its file), in evaluation mode, without a run directory; returns them
/// row-major with the number per row.
///
/// # Errors
/// An unknown architecture, another channel count, weights that do not fit (a wrong
/// `num_classes`: the error lists what did not load).
pub fn torch_logits(
    weights: &TorchWeights<'_>,
    input: &str,
    shape: [usize; 4],
    values: Vec<f32>,
) -> Result<(Vec<f32>, usize)> {
    let [_, c, h, w] = shape;
    let name = weights.model;
    if c != weights.in_channels {
        return Err(Error::Usage(format!(
            "{input}: {c} channels, but the model reads {} (--in-channels)",
            weights.in_channels
        )));
    }
    let not_torchvision = || {
        Error::Usage(format!(
            "--weights loads torchvision's layout: --model resnet18/34/50/101, resnet20/32/56 or vgg11/13/16/19[_bn], not `{name}`"
        ))
    };
    let net = family(name)
        .map_err(|_| not_torchvision())?
        .torchvision_network(name, c, weights.num_classes, [h, w])?;
    net.validate()?;
    let backend: Backend = match weights.backend {
        Some(b) => b.parse()?,
        None => Backend::from_env()?.unwrap_or_default(),
    };
    let device = backend.usable_device()?;
    let (model, report) = load_torch(net.init(&device)?, weights.path, false)?;
    let extra: Vec<&String> = report
        .unused
        .iter()
        .filter(|k| !k.ends_with("num_batches_tracked"))
        .collect();
    if !report.skipped.is_empty() || !extra.is_empty() {
        let skipped: Vec<String> = report
            .skipped
            .iter()
            .map(|s| format!("{} ({})", s.key, s.reason))
            .collect();
        return Err(Error::Usage(format!(
            "{} does not fit {name} with {} classes: not loaded: {}; in the file but not in the model: {:?} (is --num-classes right?)",
            weights.path.display(),
            weights.num_classes,
            skipped.join(", "),
            extra
        )));
    }
    forward_rows(
        &model.valid(),
        values,
        c * h * w,
        Some([c, h, w]),
        64,
        &device,
    )
}

/// The outputs of `model` on `rows` of `n_features` values each (images when `image_shape`
/// is given), `batch` rows at a time, flattened, and the number of outputs per row.
fn forward_rows(
    model: &Network,
    rows: Vec<f32>,
    n_features: usize,
    image_shape: Option<[usize; 3]>,
    batch: usize,
    device: &Device,
) -> Result<(Vec<f32>, usize)> {
    let n = rows.len() / n_features.max(1);
    let data = strata_data::Dataset::new(
        "input",
        rows,
        n_features,
        strata_data::Targets::Values(vec![0.0; n]),
        image_shape,
    )?;
    Ok(predict(
        model,
        &|m: &Network, x| m.forward_flat(x),
        &data,
        batch,
        device,
    ))
}
