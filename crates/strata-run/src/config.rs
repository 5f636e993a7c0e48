//! A run as data: what `config.toml` holds and `strata train --config` reads back. A config
//! written by any earlier version still loads (new fields have defaults).
//!
//! ```
//! use strata_run::RunConfig;
//! let mut config = RunConfig::defaults_for("resnet20", "digits");
//! assert_eq!(config.optimizer.kind.name(), "sgd"); // the ResNet family's recipe
//! config.fit.epochs = 2;
//! config.validate()?;
//! let back: RunConfig = toml::from_str(&config.to_toml())?;
//! assert_eq!(back, config);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use strata_arch::{ActivationKind, Pooling, Positional, SequencePooling};
use strata_data::{Augment, Corruption, LabelColumn, Sampling};
use strata_loss::LossConfig;
use strata_optim::{OptimizerConfig, ScheduleConfig, ScheduleKind};
use strata_tensor::Backend;
use strata_train::{EarlyStopping, FitConfig, Monitor};

use crate::error::{Error, Result};
use crate::family::family;

/// Architecture hyper-parameters (the sizes that depend on the data are filled in at run time).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkSpec {
    /// MLP hidden widths.
    #[serde(default = "default_hidden")]
    pub hidden: Vec<usize>,
    /// CNN stage channels.
    #[serde(default = "default_channels")]
    pub channels: Vec<usize>,
    /// CNN kernel size.
    #[serde(default = "default_kernel")]
    pub kernel_size: usize,
    /// CNN pooling.
    #[serde(default)]
    pub pooling: Pooling,
    /// CNN dense head width (0 = none).
    #[serde(default = "default_head")]
    pub d_hidden: usize,
    /// Activation.
    #[serde(default)]
    pub activation: ActivationKind,
    /// Dropout probability.
    #[serde(default)]
    pub dropout: f64,
    /// Batch normalisation.
    #[serde(default)]
    pub batch_norm: bool,
    /// Recurrent layers.
    #[serde(default = "one")]
    pub layers: usize,
    /// Bidirectional recurrent layers.
    #[serde(default)]
    pub bidirectional: bool,
    /// Time steps per sample: the forecasting window, the back-propagation length of a
    /// language model, or the steps a flat row is cut into (0: one feature per step; image
    /// rows for images).
    #[serde(default)]
    pub seq_len: usize,
    /// How a recurrent classifier summarises a sequence.
    #[serde(default)]
    pub sequence_pooling: SequencePooling,
    /// Character embedding width of a language model.
    #[serde(default = "default_embed")]
    pub embed: usize,
    /// Attention heads of a transformer.
    #[serde(default = "default_heads")]
    pub heads: usize,
    /// Positions of a transformer: learned or sinusoidal.
    #[serde(default)]
    pub positional: Positional,
    /// Patch side of a Vision Transformer (0: the largest up to 4 that leaves at least 16
    /// patches).
    #[serde(default)]
    pub patch_size: usize,
    /// Side of a VGG's average pool before its classifier (0: torchvision's 7 for images of
    /// 224 pixels or more and for torchvision weights, else 1, the CIFAR-style VGG).
    #[serde(default)]
    pub pool_size: usize,
    /// GraphSAGE's neighbour aggregator: `mean` or `max`.
    #[serde(default)]
    pub aggregator: strata_layers::Aggregator,
    /// A ResNet's first-convolution widths, one per residual block, or a VGG's convolution
    /// widths, one per convolution (empty: the named architecture's); `compress
    /// --prune-channels` writes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inner: Vec<usize>,
}

fn default_heads() -> usize {
    4
}

fn one() -> usize {
    1
}
fn default_embed() -> usize {
    64
}

fn default_hidden() -> Vec<usize> {
    vec![256, 128]
}
fn default_channels() -> Vec<usize> {
    vec![32, 64]
}
fn default_kernel() -> usize {
    3
}
fn default_head() -> usize {
    128
}

/// The largest image side accepted by `--image-shape` and `--resize` (and their TOML keys):
/// far beyond any image Strata trains on, small enough that no size computation overflows.
pub const MAX_SIDE: usize = 8192;

/// A run, as data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// The model's name (`mlp`, `cnn`, `lstm`, `resnet20`, ...: see [`FAMILIES`](crate::FAMILIES)).
    pub model: String,
    /// The data-set spec (`digits`, `fashion-mnist[:DIR]`, `csv:PATH`, ...: see
    /// [`strata_data::DATASETS`]).
    pub dataset: String,
    /// Label column of a CSV data set.
    #[serde(default)]
    pub label: LabelColumn,
    /// Backend.
    #[serde(default)]
    pub backend: Backend,
    /// Fraction of the data held out for validation.
    pub valid_fraction: f64,
    /// Fraction held out for testing (data sets with their own test set ignore it).
    pub test_fraction: f64,
    /// Standardise features (fitted on the training split). Default: on for tabular data, off
    /// for images (already scaled to [0, 1]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standardize: Option<bool>,
    /// Folds of cross-validation (0 = none).
    #[serde(default)]
    pub kfold: usize,
    /// Use balanced class weights in the loss.
    #[serde(default)]
    pub class_weights: bool,
    /// Architecture hyper-parameters.
    pub network: NetworkSpec,
    /// Training settings.
    pub fit: FitConfig,
    /// Optimizer.
    pub optimizer: OptimizerConfig,
    /// Learning-rate schedule.
    pub schedule: ScheduleConfig,
    /// Loss.
    pub loss: LossConfig,
    /// Training chunks per epoch of a language model (default: one pass over the text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps_per_epoch: Option<usize>,
    /// Adversarial training (Madry et al. 2018): every training batch replaced by its
    /// adversarial version under this attack, against the model as it stands (in evaluation
    /// mode), in the data's own units (`--adversarial pgd:eps=0.1,steps=7`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adversarial: Option<strata_train::Attack>,
    /// Categorical columns of a table by whose groups the finished classifier's test
    /// decisions are compared (`--sensitive sex,race`): a `fairness` block in `metrics.json`,
    /// `fairness_COLUMN.csv` and `fairness_COLUMN.png`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sensitive: Vec<String>,
    /// Reweighing (Kamiran & Calders 2012) by a categorical column of a table: each training
    /// sample's cross-entropy weighted so that the column's groups and the labels are
    /// independent (`--reweigh sex`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reweigh: Option<String>,
    /// Adversarial debiasing (Zhang et al. 2018) on a categorical column of a table: the
    /// classifier trains beside an adversary that predicts the column's group from its output
    /// (`--debias sex[:alpha=1,constraint=equalized-odds]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debias: Option<crate::debias::Debias>,
    /// Knowledge distillation (Hinton et al. 2015) from a finished classifier run, the teacher
    /// (`--distill-from RUN --temperature 4`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distill: Option<crate::distill::Distill>,
    /// Augmentation of the training batches (images; mixup for any data).
    #[serde(default, skip_serializing_if = "Augment::is_empty")]
    pub augment: Augment,
    /// Read each row of a CSV as an image of `[channels, height, width]` (row-major).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_shape: Option<[usize; 3]>,
    /// Resize every image to `[height, width]` when loading (bilinear).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize: Option<[usize; 2]>,
    /// Train on this stratified fraction of the training split (the validation and test
    /// splits stay whole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_fraction: Option<f64>,
    /// Pretrained weights, freezing and the backbone's learning rate.
    #[serde(default, skip_serializing_if = "TransferSpec::is_off")]
    pub transfer: TransferSpec,
    /// An autoencoder's training: corruption, sparsity, the KL term's weight, one-class
    /// training.
    #[serde(default, skip_serializing_if = "AutoencoderSpec::is_default")]
    pub autoencoder: AutoencoderSpec,
    /// A GAN's training and evaluation: the game, critic steps and clipping, the evaluating
    /// classifier.
    #[serde(default, skip_serializing_if = "GanSpec::is_default")]
    pub gan: GanSpec,
    /// A capsule network's size, routing and reconstruction weight.
    #[serde(default, skip_serializing_if = "CapsSpec::is_default")]
    pub capsnet: CapsSpec,
}

/// Which configuration a capsule network takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CapsSize {
    /// The paper's: 256 9x9 filters, 32 types of 8-D primary capsules, 16-D class capsules.
    Paper,
    /// The CPU-sized one ([`strata_arch::CapsNetConfig::small`]): 64 filters, 16 types of
    /// primary capsules, 3x3 kernels on images under 20 pixels a side.
    #[default]
    Small,
}

/// How a capsule network is built and trained (the `[capsnet]` table of a config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapsSpec {
    /// The paper's configuration or the CPU-sized one.
    #[serde(default)]
    pub size: CapsSize,
    /// Routing iterations (the paper's 3).
    #[serde(default = "default_routing")]
    pub routing: usize,
    /// Weight of the summed squared reconstruction error (the paper's 0.0005; 0: no decoder
    /// term).
    #[serde(default = "default_reconstruction")]
    pub reconstruction: f64,
}

fn default_routing() -> usize {
    3
}

fn default_reconstruction() -> f64 {
    0.0005
}

impl Default for CapsSpec {
    fn default() -> Self {
        Self {
            size: CapsSize::default(),
            routing: default_routing(),
            reconstruction: default_reconstruction(),
        }
    }
}

impl CapsSpec {
    /// Whether everything is at its default.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Checks the routing and the weight.
    ///
    /// # Errors
    /// Zero routing iterations, a negative or non-finite weight.
    pub fn validate(&self) -> Result<()> {
        if self.routing == 0 {
            return Err(Error::Usage(
                "--routing needs at least 1 iteration (the paper's 3), got 0".into(),
            ));
        }
        if !(self.reconstruction.is_finite() && self.reconstruction >= 0.0) {
            return Err(Error::Usage(format!(
                "--reconstruction must be a weight >= 0 (the paper's 0.0005), got {}",
                self.reconstruction
            )));
        }
        Ok(())
    }
}

/// How a GAN trains and is measured (the `[gan]` table of a config); the model's recipe fills
/// what is left at its default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GanSpec {
    /// The game: `bce`, `wasserstein` or `hinge`; `None`: the model's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<strata_loss::AdversarialLoss>,
    /// Discriminator (critic) steps per generator step; `None`: the model's (5 for a WGAN,
    /// else 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_critic: Option<usize>,
    /// Clip every critic weight to `[-c, c]` after each of its steps; `None`: the model's
    /// (0.01 for a WGAN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip: Option<f32>,
    /// Size of the generator's noise.
    #[serde(default = "default_noise")]
    pub d_noise: usize,
    /// PacGAN's packing: the discriminator scores this many examples at once (dense,
    /// unconditional GANs; 1: none).
    #[serde(default = "one")]
    pub pack: usize,
    /// The finished classifier run (mlp or cnn on the same data) in whose penultimate features
    /// the samples are measured; `None`: one is trained into the run's `evaluator/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluator: Option<PathBuf>,
    /// A finished VAE run on the same data whose samples are measured beside the GAN's, in
    /// the same features (`test.compared` in `metrics.json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compare: Option<PathBuf>,
    /// Generated samples measured against the test split; `None`: as many as it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_samples: Option<usize>,
}

fn default_noise() -> usize {
    100
}

impl Default for GanSpec {
    fn default() -> Self {
        Self {
            loss: None,
            n_critic: None,
            clip: None,
            d_noise: default_noise(),
            pack: 1,
            evaluator: None,
            compare: None,
            eval_samples: None,
        }
    }
}

impl GanSpec {
    /// Whether everything is at its default.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Checks the counts and the clipping.
    ///
    /// # Errors
    /// A zero count, a clipping bound that is not a positive finite number.
    pub fn validate(&self) -> Result<()> {
        if self.n_critic == Some(0) {
            return Err(Error::Usage("n_critic must be >= 1".into()));
        }
        if self.d_noise == 0 {
            return Err(Error::Usage("d_noise must be >= 1".into()));
        }
        if self.pack == 0 {
            return Err(Error::Usage("pack must be >= 1".into()));
        }
        if self.eval_samples.is_some_and(|n| n < 10) {
            return Err(Error::Usage(
                "eval_samples must be at least 10 (precision and recall need neighbours)".into(),
            ));
        }
        if let Some(c) = self.clip
            && !(c.is_finite() && c > 0.0)
        {
            return Err(Error::Usage(format!(
                "clip must be a positive number, got {c}"
            )));
        }
        Ok(())
    }
}

/// How an autoencoder trains (the `[autoencoder]` table of a config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoencoderSpec {
    /// The corruption of training inputs (a denoising autoencoder); the clean input stays the
    /// target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise: Option<Corruption>,
    /// Weight of the L1 penalty on the code (nats per unit of `sum |code|`, per example).
    #[serde(default)]
    pub sparsity: f64,
    /// Weight of the KL term of a VAE (beta-VAE; 1 is the ELBO).
    #[serde(default = "unit_factor")]
    pub beta: f64,
    /// Epochs over which the KL weight rises linearly from `beta / N` to `beta` (0: none).
    #[serde(default)]
    pub kl_warmup_epochs: usize,
    /// Train on this class only (its name or index) and score every test image as normal or
    /// anomalous (one-class anomaly detection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normal_class: Option<String>,
}

impl Default for AutoencoderSpec {
    fn default() -> Self {
        Self {
            noise: None,
            sparsity: 0.0,
            beta: 1.0,
            kl_warmup_epochs: 0,
            normal_class: None,
        }
    }
}

impl AutoencoderSpec {
    /// Whether everything is at its default.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Checks the weights and the corruption.
    ///
    /// # Errors
    /// A negative or non-finite weight, a corruption out of range.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [("sparsity", self.sparsity), ("beta", self.beta)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::Usage(format!(
                    "{name} must be a finite number >= 0, got {v}"
                )));
            }
        }
        if let Some(n) = &self.noise {
            n.validate()?;
        }
        if self
            .normal_class
            .as_deref()
            .is_some_and(|c| c.trim().is_empty())
        {
            return Err(Error::Usage("the normal class must not be empty".into()));
        }
        Ok(())
    }
}

/// What a run freezes at the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Freeze {
    /// The whole backbone: only the head trains.
    Backbone,
    /// The first N stages (with the stem).
    Stages(usize),
}

impl TryFrom<String> for Freeze {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        match s.trim() {
            "backbone" | "all" => Ok(Freeze::Backbone),
            n => match n.parse::<usize>() {
                Ok(k) if k > 0 => Ok(Freeze::Stages(k)),
                _ => Err(format!(
                    "freeze `{s}`: expected `backbone` or a number of stages (1, 2, ...)"
                )),
            },
        }
    }
}

impl From<Freeze> for String {
    fn from(f: Freeze) -> String {
        match f {
            Freeze::Backbone => "backbone".into(),
            Freeze::Stages(k) => k.to_string(),
        }
    }
}

/// Transfer learning settings of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferSpec {
    /// PyTorch weights (`.pt`, `.pth`, `.safetensors`, torchvision names) to start from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_from: Option<std::path::PathBuf>,
    /// A Strata run directory whose weights (`model.safetensors`, or the best checkpoint of
    /// a run still going) to start from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_from_run: Option<std::path::PathBuf>,
    /// Keep the head as initialised even when the pretrained one fits.
    #[serde(default)]
    pub new_head: bool,
    /// What is frozen at the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeze: Option<Freeze>,
    /// The 1-based epoch from which the frozen part trains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unfreeze_at_epoch: Option<usize>,
    /// The backbone's learning rate relative to the head's.
    #[serde(default = "unit_factor")]
    pub backbone_lr_factor: f64,
}

fn unit_factor() -> f64 {
    1.0
}

impl Default for TransferSpec {
    fn default() -> Self {
        Self {
            init_from: None,
            init_from_run: None,
            new_head: false,
            freeze: None,
            unfreeze_at_epoch: None,
            backbone_lr_factor: 1.0,
        }
    }
}

impl TransferSpec {
    /// Whether nothing is asked for.
    pub fn is_off(&self) -> bool {
        *self == Self::default()
    }

    /// Whether the run trains parts of the model differently (frozen, or a backbone factor).
    pub fn tunes(&self) -> bool {
        self.freeze.is_some() || self.backbone_lr_factor != 1.0
    }
}

impl RunConfig {
    /// The data set a model trains on when none is named (its family's choice: digits for
    /// most, airline for recurrent models, shakespeare, adult or reverse for transformers).
    pub fn default_dataset(model: &str) -> &'static str {
        family(model).map_or("digits", |f| f.default_dataset(model))
    }

    /// The defaults of `model` on `dataset`: the settings every model shares, then its
    /// family's recipe (tuned per data set; see docs/results.md).
    pub fn defaults_for(model: &str, dataset: &str) -> Self {
        let mut c = Self::base(model);
        c.dataset = dataset.to_string();
        if let Ok(f) = family(model) {
            f.recipe(model, dataset, &mut c);
        }
        c
    }

    /// Every transformer's training: dropout 0.1, no batch norm, AdamW at `lr` with one warm-up
    /// epoch and cosine decay to `min_lr`, clipping at norm 1, no early stopping.
    pub fn transformer_training(&mut self, lr: f64, min_lr: f64) {
        self.network.dropout = 0.1;
        self.network.batch_norm = false;
        self.optimizer.kind =
            strata_optim::OptimizerKind::by_name("adamw").expect("adamw is an optimizer");
        self.optimizer.lr = lr;
        self.optimizer.clip = Some(strata_optim::Clipping::Norm(1.0));
        self.schedule = ScheduleConfig {
            kind: ScheduleKind::Cosine { min_lr },
            warmup_epochs: 1,
        };
        self.fit.early_stopping = None;
    }

    /// The defaults of `model` on its default data set.
    pub fn defaults(model: &str) -> Self {
        Self::defaults_for(model, Self::default_dataset(model))
    }

    /// The settings every model shares, before its family's recipe.
    fn base(model: &str) -> Self {
        RunConfig {
            model: model.to_string(),
            dataset: Self::default_dataset(model).into(),
            label: LabelColumn::Last,
            backend: Backend::Flex,
            valid_fraction: 0.15,
            test_fraction: 0.2,
            standardize: None,
            kfold: 0,
            class_weights: false,
            network: NetworkSpec {
                hidden: default_hidden(),
                channels: default_channels(),
                kernel_size: default_kernel(),
                pooling: Pooling::Max,
                d_hidden: default_head(),
                activation: ActivationKind::Relu,
                dropout: 0.2,
                batch_norm: false,
                layers: 1,
                bidirectional: false,
                seq_len: 0,
                sequence_pooling: SequencePooling::Last,
                embed: default_embed(),
                heads: default_heads(),
                positional: Positional::Learned,
                patch_size: 0,
                pool_size: 0,
                aggregator: strata_layers::Aggregator::Mean,
                inner: Vec::new(),
            },
            fit: FitConfig {
                epochs: 30,
                batch_size: 32,
                seed: 42,
                early_stopping: Some(EarlyStopping {
                    monitor: Monitor::ValidLoss,
                    patience: 10,
                    min_delta: 0.0,
                }),
                sampling: Sampling::Shuffle,
                max_seconds: None,
                restore_best: true,
                progress: true,
            },
            optimizer: OptimizerConfig::default(),
            schedule: ScheduleConfig {
                kind: ScheduleKind::Cosine { min_lr: 0.0 },
                warmup_epochs: 0,
            },
            loss: LossConfig::default(),
            steps_per_epoch: None,
            adversarial: None,
            sensitive: Vec::new(),
            reweigh: None,
            debias: None,
            distill: None,
            augment: Augment::default(),
            image_shape: None,
            resize: None,
            train_fraction: None,
            transfer: TransferSpec::default(),
            autoencoder: AutoencoderSpec::default(),
            gan: GanSpec::default(),
            capsnet: CapsSpec::default(),
        }
    }

    /// Reads a TOML config.
    ///
    /// # Errors
    /// An unreadable file or invalid TOML, naming the field.
    pub fn load(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        toml::from_str(&text).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            message: e.message().to_string(),
        })
    }

    /// The TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a run config serialises")
    }

    /// Writes `config.toml` into `dir` (atomically).
    ///
    /// # Errors
    /// I/O errors.
    pub fn save(&self, dir: &std::path::Path) -> Result<()> {
        strata_train::write_atomic(&dir.join("config.toml"), self.to_toml().as_bytes())?;
        Ok(())
    }

    /// Checks everything that does not need the data.
    ///
    /// # Errors
    /// The first invalid value.
    pub fn validate(&self) -> Result<()> {
        let family = family(&self.model)?;
        if self.steps_per_epoch == Some(0) {
            return Err(Error::Usage("steps per epoch must be >= 1".into()));
        }
        family.validate(self)?;
        self.fit.validate()?;
        self.optimizer.validate()?;
        self.schedule.validate()?;
        self.loss.validate()?;
        self.augment.validate()?;
        let replacing: Vec<&str> = [
            ("--adversarial", self.adversarial.is_some()),
            ("--reweigh", self.reweigh.is_some()),
            ("--debias", self.debias.is_some()),
            ("--distill-from", self.distill.is_some()),
        ]
        .into_iter()
        .filter_map(|(flag, set)| set.then_some(flag))
        .collect();
        if replacing.len() > 1 {
            return Err(Error::Usage(format!(
                "{} each replace the training loss: choose one",
                replacing.join(" and ")
            )));
        }
        // Each of these trains a classifier on samples through the supervised pipeline.
        let on_samples = |flag: &str| {
            if family.adversarial_training() {
                Ok(())
            } else {
                Err(Error::Usage(format!(
                    "{flag} trains classifiers on samples; the {} model trains otherwise",
                    self.model
                )))
            }
        };
        if let Some(d) = &self.distill {
            d.validate()?;
            on_samples("--distill-from")?;
        }
        if let Some(d) = &self.debias {
            d.validate()?;
            on_samples("--debias")?;
        }
        if let Some(a) = &self.adversarial {
            a.validate()?;
            on_samples("--adversarial")?;
        }
        self.autoencoder.validate()?;
        self.gan.validate()?;
        self.capsnet.validate()?;
        for (name, f) in [
            ("valid fraction", self.valid_fraction),
            ("test fraction", self.test_fraction),
        ] {
            if !(0.0..1.0).contains(&f) || (name == "valid fraction" && f == 0.0) {
                return Err(Error::Usage(format!("{name} must be in (0, 1), got {f}")));
            }
        }
        if self.kfold == 1 {
            return Err(Error::Usage("--kfold needs at least 2 folds".into()));
        }
        if let Some(f) = self.train_fraction
            && !(f > 0.0 && f <= 1.0)
        {
            return Err(Error::Usage(format!(
                "train fraction must be in (0, 1], got {f}"
            )));
        }
        let side = |d: &usize| (1..=MAX_SIDE).contains(d);
        if let Some([h, w]) = self.resize
            && !(side(&h) && side(&w))
        {
            return Err(Error::Usage(format!(
                "cannot resize images to {h}x{w}: each side must be in 1..={MAX_SIDE}"
            )));
        }
        if let Some([c, h, w]) = self.image_shape
            && ![c, h, w].iter().all(side)
        {
            return Err(Error::Usage(format!(
                "image shape {c}x{h}x{w}: each size must be in 1..={MAX_SIDE}"
            )));
        }
        let t = &self.transfer;
        if t.init_from.is_some() && t.init_from_run.is_some() {
            return Err(Error::Usage(
                "--init-from and --init-from-run both name the starting weights: give one".into(),
            ));
        }
        if t.init_from.is_some() && !family.has_backbone() {
            return Err(Error::Usage(format!(
                "--init-from reads torchvision's ResNet and VGG weights; for a {} start from a Strata run with --init-from-run",
                self.model
            )));
        }
        if t.tunes() && !family.has_backbone() {
            return Err(Error::Usage(format!(
                "--freeze and --backbone-lr-factor need a model with a backbone and a head (resnet*, vgg*), not {}",
                self.model
            )));
        }
        if t.unfreeze_at_epoch.is_some() && t.freeze.is_none() {
            return Err(Error::Usage(
                "--unfreeze-at-epoch needs something frozen (--freeze backbone or --freeze N)"
                    .into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_round_trips() {
        for (m, d) in [
            ("mlp", "digits"),
            ("cnn", "digits"),
            ("lstm", "airline"),
            ("gru", "shakespeare"),
            ("rnn", "fashion-mnist-rows"),
            ("transformer-lm", "shakespeare"),
            ("vit", "fashion-mnist"),
            ("tab-transformer", "adult"),
            ("seq2seq", "reverse"),
            ("resnet20", "fashion-mnist"),
            ("vgg11_bn", "fashion-mnist"),
        ] {
            let mut c = RunConfig::defaults_for(m, d);
            if m == "resnet20" {
                c.augment = Augment::parse("crop:4,flip,affine:10:0.1,erase,mixup:0.2").unwrap();
                c.resize = Some([32, 32]);
                c.image_shape = Some([1, 28, 28]);
                c.train_fraction = Some(0.1);
                c.transfer = TransferSpec {
                    init_from_run: Some("runs/pre".into()),
                    new_head: true,
                    freeze: Some(Freeze::Stages(2)),
                    unfreeze_at_epoch: Some(5),
                    backbone_lr_factor: 0.1,
                    ..Default::default()
                };
            }
            let back: RunConfig = toml::from_str(&c.to_toml()).unwrap();
            assert_eq!(back, c);
        }
    }

    #[test]
    fn invalid_values_are_caught() {
        let mut c = RunConfig::defaults("cnn");
        c.fit.batch_size = 0;
        assert!(c.validate().unwrap_err().to_string().contains("batch size"));
        let mut c = RunConfig::defaults("cnn");
        c.model = "transformer9".into();
        assert!(c.validate().is_err());
        let mut c = RunConfig::defaults("mlp");
        c.optimizer.lr = -1.0;
        assert!(c.validate().is_err());
    }

    mod no_panic {
        use super::*;
        use proptest::prelude::*;

        /// A valid config with some of its bytes replaced by characters that matter in TOML
        /// and numbers, and bytes cut from the end.
        fn mutated() -> impl Strategy<Value = String> {
            let mut c = RunConfig::defaults_for("resnet20", "fashion-mnist");
            c.augment = Augment::parse("crop:4,flip,affine,erase,mixup:0.2").unwrap();
            mutated_from(c)
        }

        /// A capsule network's config (its `[capsnet]` table and margin loss), mutated alike.
        fn mutated_capsnet() -> impl Strategy<Value = String> {
            let mut c = RunConfig::defaults_for("capsnet", "fashion-mnist");
            c.capsnet = CapsSpec {
                size: CapsSize::Paper,
                routing: 2,
                reconstruction: 0.001,
            };
            mutated_from(c)
        }

        fn mutated_from(c: RunConfig) -> impl Strategy<Value = String> {
            let base = c.to_toml().into_bytes();
            (
                prop::collection::vec(
                    (
                        any::<prop::sample::Index>(),
                        prop::sample::select(b"-09.e=[]\"#,\n nan inf".to_vec()),
                    ),
                    1..10,
                ),
                any::<prop::sample::Index>(),
            )
                .prop_map(move |(flips, cut)| {
                    let mut b = base.clone();
                    for (at, v) in flips {
                        let i = at.index(b.len());
                        b[i] = v;
                    }
                    b.truncate(cut.index(b.len() + 1).max(b.len() * 3 / 4));
                    String::from_utf8_lossy(&b).to_string()
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(384))]

            /// Any TOML text gives a config or an error, and a config that validates can be
            /// written back: never a panic or a hang.
            #[test]
            fn run_toml_never_panics(text in prop_oneof![".{0,200}", mutated(), mutated_capsnet()]) {
                let done = strata_tensor::require::within(
                    std::time::Duration::from_secs(20),
                    move || {
                        if let Ok(c) = toml::from_str::<RunConfig>(&text)
                            && c.validate().is_ok()
                        {
                            let _ = c.to_toml();
                        }
                    },
                );
                prop_assert!(done.is_some(), "no answer within 20 s");
            }
        }
    }
}
