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
    /// Generate text from a trained character language model.
    Generate(GenerateArgs),
    /// List models, data sets and backends (with which are usable here).
    List,
}

/// `strata train`. Flags override `--config`, which overrides the model's defaults.
#[derive(Debug, Args, Default)]
pub struct TrainArgs {
    /// Model: mlp, cnn, rnn, rnn-relu, lstm, gru, transformer-lm, vit, tab-transformer,
    /// seq2seq, resnet20/32/56 or resnet18/34/50/101 [default: cnn].
    #[arg(long)]
    pub model: Option<String>,
    /// Data set: digits, iris, adult, fashion-mnist[-rows][:DIR], airline, sunspots, co2,
    /// shakespeare, reverse, sort, copy, csv:PATH, table:PATH or text:PATH [default: digits;
    /// airline for recurrent models; shakespeare, adult or reverse for transformers].
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
    /// Hidden widths of the MLP, e.g. 256,128; hidden units of a recurrent model.
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
    /// Stacked recurrent layers.
    #[arg(long)]
    pub layers: Option<usize>,
    /// Bidirectional recurrent layers.
    #[arg(long)]
    pub bidirectional: bool,
    /// Time steps: the forecasting window, the back-propagation length of a language model,
    /// or the steps a CSV row is cut into.
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// Character embedding width of a language model.
    #[arg(long)]
    pub embed: Option<usize>,
    /// Attention heads of a transformer.
    #[arg(long)]
    pub heads: Option<usize>,
    /// Positions of a transformer: learned or sinusoidal.
    #[arg(long)]
    pub positional: Option<String>,
    /// Augmentation of the training batches, comma-separated: crop[:PAD], flip[:P],
    /// affine[:DEGREES[:SHIFT]], noise[:STD], erase[:P], mixup[:ALPHA] (e.g. crop:4,flip);
    /// `none` clears it.
    #[arg(long)]
    pub augment: Option<String>,
    /// Patch side of a Vision Transformer (default: the largest up to 4 that leaves at least
    /// 16 patches).
    #[arg(long)]
    pub patch_size: Option<usize>,
    /// Sequence summary of a recurrent classifier: last or mean.
    #[arg(long)]
    pub pooling: Option<String>,
    /// Training chunks per epoch of a language model.
    #[arg(long)]
    pub steps_per_epoch: Option<usize>,
    /// Early-stopping patience in epochs (0 turns early stopping off).
    #[arg(long)]
    pub patience: Option<usize>,
    /// Validation fraction.
    #[arg(long)]
    pub valid_fraction: Option<f64>,
    /// Test fraction (ignored by data sets with their own test set).
    #[arg(long)]
    pub test_fraction: Option<f64>,
    /// Time budget in seconds: training stops cleanly (checkpoints, then evaluates) once spent.
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

/// `strata generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The run directory of a character language model or a seq2seq model.
    #[arg(long)]
    pub run: PathBuf,
    /// Text to start from [default: a newline]; for a seq2seq run, the source symbols
    /// (`3 1 4 1 5`).
    #[arg(long)]
    pub prompt: Option<String>,
    /// Beam width of a seq2seq run's decoding (1: greedy).
    #[arg(long, default_value_t = 4)]
    pub beam: usize,
    /// Characters to generate.
    #[arg(long, default_value_t = 300)]
    pub length: usize,
    /// Sampling temperature (0: always the most likely character).
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f64,
    /// Sample among the k most likely characters only.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Backend [default: the run's].
    #[arg(long)]
    pub backend: Option<String>,
}
