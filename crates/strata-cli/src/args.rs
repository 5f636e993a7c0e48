//! Command-line flags.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Strata: train, evaluate and use standard deep-learning models on real data.
#[derive(Debug, Parser)]
#[command(name = "strata", version, about, args_override_self = true)]
pub struct Cli {
    /// The command (default: `train` with no flags).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a model and report its test metrics.
    Train(Box<TrainArgs>),
    /// Reload a run and compute its metrics on its test split or another data set.
    Evaluate(EvaluateArgs),
    /// Write predictions (class and probabilities, or values) for a CSV of features.
    Predict(PredictArgs),
    /// List models, data sets and backends (with which are usable here).
    List,
}

/// `strata train`. Flags override `--config`, which overrides the model's defaults.
#[derive(Debug, Args, Default)]
pub struct TrainArgs {
    /// Model: mlp or cnn [default: cnn].
    #[arg(long)]
    pub model: Option<String>,
    /// Data set: digits, iris, fashion-mnist[:DIR] or csv:PATH [default: digits].
    #[arg(long)]
    pub dataset: Option<String>,
    /// Label column of a CSV: a name, a 0-based index, or `last` [default: last].
    #[arg(long)]
    pub label: Option<String>,
    /// Backend: flex, ndarray or wgpu [default: $STRATA_BACKEND or flex].
    #[arg(long)]
    pub backend: Option<String>,
    /// Epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Batch size.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Optimizer: sgd, adam, adamw or rmsprop.
    #[arg(long)]
    pub optimizer: Option<String>,
    /// Learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Weight decay.
    #[arg(long)]
    pub weight_decay: Option<f32>,
    /// Momentum (SGD, RMSprop).
    #[arg(long)]
    pub momentum: Option<f64>,
    /// Learning-rate schedule: constant, step, cosine or plateau.
    #[arg(long)]
    pub schedule: Option<String>,
    /// Epochs of linear learning-rate warm-up.
    #[arg(long)]
    pub warmup: Option<usize>,
    /// Clip each gradient to this L2 norm.
    #[arg(long)]
    pub clip_norm: Option<f32>,
    /// Clip gradient values to [-v, v].
    #[arg(long)]
    pub clip_value: Option<f32>,
    /// Loss: cross-entropy, focal, mse or bce.
    #[arg(long)]
    pub loss: Option<String>,
    /// Label smoothing for cross-entropy.
    #[arg(long)]
    pub label_smoothing: Option<f32>,
    /// Weight classes inversely to their frequency in the loss.
    #[arg(long)]
    pub class_weights: bool,
    /// Draw class-balanced training batches.
    #[arg(long)]
    pub balanced: bool,
    /// Hidden widths of the MLP, e.g. 256,128.
    #[arg(long, value_delimiter = ',')]
    pub hidden: Option<Vec<usize>>,
    /// Channels of the CNN stages, e.g. 32,64.
    #[arg(long, value_delimiter = ',')]
    pub channels: Option<Vec<usize>>,
    /// CNN kernel size.
    #[arg(long)]
    pub kernel_size: Option<usize>,
    /// Activation: relu, leaky_relu, tanh, sigmoid, gelu, selu, elu.
    #[arg(long)]
    pub activation: Option<String>,
    /// Dropout probability.
    #[arg(long)]
    pub dropout: Option<f64>,
    /// Batch normalisation: true or false.
    #[arg(long)]
    pub batch_norm: Option<bool>,
    /// Early-stopping patience in epochs (0 turns early stopping off).
    #[arg(long)]
    pub patience: Option<usize>,
    /// Validation fraction.
    #[arg(long)]
    pub valid_fraction: Option<f64>,
    /// Test fraction (ignored by data sets with their own test set).
    #[arg(long)]
    pub test_fraction: Option<f64>,
    /// Stop cleanly after the epoch in which this many seconds have passed.
    #[arg(long)]
    pub max_seconds: Option<f64>,
    /// Seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Also run stratified k-fold cross-validation with K folds.
    #[arg(long)]
    pub kfold: Option<usize>,
    /// A run config (TOML), e.g. a previous run's config.toml.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Output directory [default: runs/<timestamp>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Resume the run in --out from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// No progress bar or per-epoch lines.
    #[arg(long, short)]
    pub quiet: bool,
    /// Stop after this many epochs of this invocation (resume later with --resume).
    #[arg(long, hide = true)]
    pub pause_after: Option<usize>,
}

/// `strata evaluate`.
#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// The run directory.
    #[arg(long)]
    pub run: PathBuf,
    /// Evaluate on this data set instead of the run's test split.
    #[arg(long)]
    pub dataset: Option<String>,
    /// Backend [default: the run's].
    #[arg(long)]
    pub backend: Option<String>,
}

/// `strata predict`.
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// The run directory.
    #[arg(long)]
    pub run: PathBuf,
    /// CSV of features (optionally with the label column, which is ignored).
    #[arg(long)]
    pub input: PathBuf,
    /// Output CSV [default: RUN/predictions.csv]; `-` for standard output.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Backend [default: the run's].
    #[arg(long)]
    pub backend: Option<String>,
}
