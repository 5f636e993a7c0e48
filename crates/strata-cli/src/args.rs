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
    /// Attack a classifier run (FGSM or PGD) and report its robust accuracy.
    Attack(AttackArgs),
    /// Make a run's model smaller: magnitude or channel pruning (with fine-tuning) and int8
    /// weights into a new run, or a sparsity-against-accuracy curve.
    Compress(CompressArgs),
    /// Explain a classifier run's prediction for one row: a heat map or column attributions.
    Explain(ExplainArgs),
    /// Write predictions (class and probabilities, or values) for a CSV of features.
    Predict(PredictArgs),
    /// Generate text from a character language model, a seq2seq decoding, or a VAE's samples.
    Generate(GenerateArgs),
    /// Write an autoencoder's codes for a CSV (or .npy) of rows.
    Encode(EncodeArgs),
    /// List models, data sets and backends (with which are usable here).
    List,
}

/// `strata train`. Flags override `--config`, which overrides the model's defaults.
#[derive(Debug, Args, Default)]
pub struct TrainArgs {
    /// Model: mlp, cnn, rnn, rnn-relu, lstm, gru, transformer-lm, vit, tab-transformer,
    /// seq2seq, resnet20/32/56, resnet18/34/50/101 or vgg11/13/16/19[_bn] [default: cnn].
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
    /// Stacked recurrent layers, or a graph network's graph layers.
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
    /// Attention heads of a transformer or a graph attention network.
    #[arg(long)]
    pub heads: Option<usize>,
    /// GraphSAGE's neighbour aggregator: mean or max.
    #[arg(long)]
    pub aggregator: Option<String>,
    /// Positions of a transformer: learned or sinusoidal.
    #[arg(long)]
    pub positional: Option<String>,
    /// Augmentation of the training batches, comma-separated: crop[:PAD], flip[:P],
    /// affine[:DEGREES[:SHIFT]], noise[:STD], erase[:P], mixup[:ALPHA] (e.g. crop:4,flip);
    /// `none` clears it.
    #[arg(long)]
    pub augment: Option<String>,
    /// Adversarial training: each training batch replaced by its adversarial version,
    /// fgsm|pgd:eps=E[,steps=N,step=S,norm=inf|2,restarts=R,random_start=true|false,seed=K]
    /// (e.g. pgd:eps=0.1,steps=7); `none` clears it.
    #[arg(long)]
    pub adversarial: Option<String>,
    /// Categorical columns of a table (e.g. sex,race) by whose groups the test decisions are
    /// compared: metrics.json's `fairness`, fairness_COLUMN.csv and .png; `none` clears it.
    #[arg(long)]
    pub sensitive: Option<String>,
    /// Reweighing (Kamiran & Calders) by a categorical column of a table: each training
    /// sample's cross-entropy weighted so the column's groups and the labels are independent;
    /// `none` clears it.
    #[arg(long)]
    pub reweigh: Option<String>,
    /// Adversarial debiasing (Zhang et al.) on a categorical column of a table:
    /// COL[:alpha=A,constraint=equalized-odds|demographic-parity] (e.g. sex); an adversary
    /// learns to predict the group from the model's output while the model learns to defeat
    /// it; `none` clears it.
    #[arg(long)]
    pub debias: Option<String>,
    /// Knowledge distillation: train on this finished classifier run's (the teacher's)
    /// softened outputs beside the labels; `none` clears it.
    #[arg(long)]
    pub distill_from: Option<PathBuf>,
    /// Distillation's softmax temperature [default: 4].
    #[arg(long, allow_negative_numbers = true)]
    pub temperature: Option<f64>,
    /// Distillation's weight of the teacher's part, in [0, 1] [default: 0.9].
    #[arg(long, allow_negative_numbers = true)]
    pub distill_weight: Option<f64>,
    /// Read each CSV row as an image: CxHxW (e.g. 1x28x28), row-major.
    #[arg(long)]
    pub image_shape: Option<String>,
    /// Autoencoders: corrupt the training inputs (a denoising autoencoder): gaussian[:STD],
    /// mask[:FRACTION] or salt-pepper[:FRACTION]; `none` clears it [dae: gaussian:0.3].
    #[arg(long)]
    pub noise: Option<String>,
    /// Autoencoders: weight of the L1 penalty on the code [sparse-ae: 0.05].
    #[arg(long)]
    pub sparsity: Option<f64>,
    /// VAEs: weight of the KL term (beta-VAE) [default: 1, the ELBO].
    #[arg(long)]
    pub beta: Option<f64>,
    /// VAEs: epochs over which the KL weight rises linearly to beta [default: 0].
    #[arg(long)]
    pub kl_warmup: Option<usize>,
    /// Autoencoders: train on this class only (name or index) and report anomaly-detection
    /// AUROC and average precision on the whole test split.
    #[arg(long)]
    pub normal_class: Option<String>,
    /// GANs: the game, bce, wasserstein or hinge [wgan: wasserstein, sngan: hinge, else bce].
    #[arg(long)]
    pub gan_loss: Option<String>,
    /// GANs: discriminator (critic) steps per generator step [wgan: 5, else 1].
    #[arg(long)]
    pub n_critic: Option<usize>,
    /// GANs: PacGAN's packing, the discriminator scores N examples at once (dense,
    /// unconditional GANs) [ring8: 4, else 1].
    #[arg(long)]
    pub pack: Option<usize>,
    /// GANs: clip every critic weight to [-C, C] after each of its steps [wgan: 0.01].
    #[arg(long)]
    pub clip: Option<f32>,
    /// GANs: a finished mlp or cnn run on the same data, in whose features the samples are
    /// measured [default: one is trained into the run's evaluator/].
    #[arg(long)]
    pub evaluator: Option<std::path::PathBuf>,
    /// GANs: a finished vae, conv-vae or cvae run on the same data whose samples are measured
    /// beside the GAN's.
    #[arg(long)]
    pub compare: Option<std::path::PathBuf>,
    /// Capsule networks: the paper's configuration (256 9x9 filters, 32x8-D primary capsules)
    /// or the CPU-sized one (64 filters, 16x8-D; 3x3 kernels under 20 pixels) [default: small].
    #[arg(long)]
    pub capsnet_size: Option<String>,
    /// Capsule networks: routing-by-agreement iterations [default: 3].
    #[arg(long)]
    pub routing: Option<usize>,
    /// Capsule networks: weight of the decoder's summed squared reconstruction error; 0
    /// trains without it [default: 0.0005].
    #[arg(long)]
    pub reconstruction: Option<f64>,
    /// Side of a VGG's average pool before the classifier [default: 7 (torchvision's) for
    /// images of 224 pixels or more and with --init-from, else 1].
    #[arg(long)]
    pub pool_size: Option<usize>,
    /// Resize images when loading: HxW or one side (e.g. 28 for the digits beside a model
    /// pretrained on Fashion-MNIST; 32 for a VGG).
    #[arg(long)]
    pub resize: Option<String>,
    /// Train on this stratified fraction of the training split (validation and test stay
    /// whole), e.g. 0.1.
    #[arg(long)]
    pub train_fraction: Option<f64>,
    /// Start from PyTorch weights (.pt, .pth or .safetensors with torchvision's names) of a
    /// resnet* or vgg*; a head of another shape is skipped, and the report says what loaded.
    #[arg(long)]
    pub init_from: Option<PathBuf>,
    /// Start from a Strata run's weights (its model.safetensors, or the best checkpoint of a
    /// run still going).
    #[arg(long)]
    pub init_from_run: Option<PathBuf>,
    /// With --init-from[-run]: keep the head as initialised even when the pretrained one fits
    /// (a new task with the same number of classes).
    #[arg(long)]
    pub new_head: bool,
    /// Freeze `backbone` (only the head trains) or the first N stages (with the stem).
    #[arg(long)]
    pub freeze: Option<String>,
    /// The epoch (from 1) at which the frozen part starts to train.
    #[arg(long)]
    pub unfreeze_at_epoch: Option<usize>,
    /// The backbone's learning rate relative to the head's, e.g. 0.1.
    #[arg(long)]
    pub backbone_lr_factor: Option<f64>,
    /// CNN: width of the dense layer before the output (0: none) [default: 128].
    #[arg(long)]
    pub head: Option<usize>,
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
    /// Data-parallel training across the processes that `mpirun -np N` starts: `mpi` (a
    /// build with the `mpi` feature). Each rank trains on its share of every batch (the global
    /// batch is N x --batch-size); rank 0 writes the run. See docs/distributed.md.
    #[arg(long, value_name = "ENGINE")]
    pub distributed: Option<String>,
    /// Train on these devices of the backend in one process, e.g. 0,1. Several devices need
    /// burn's collective operations, which none of this build's backends has; one MPI rank
    /// per device (--distributed mpi) is the way there. See docs/distributed.md.
    #[arg(long, value_delimiter = ',')]
    pub devices: Option<Vec<usize>>,
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
    /// Transform every test image first, as --augment writes it: affine[:DEG[:SHIFT]] (a
    /// random rotation of up to DEG degrees and shift of up to SHIFT of the side), crop[:PAD],
    /// flip[:P], noise[:STD], erase[:P]; e.g. affine:30:0.1.
    #[arg(long)]
    pub perturb: Option<String>,
    /// Seed of --perturb's random transforms, or of --thresholds' randomised decisions.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Compare the decisions by group of these categorical columns of a two-class table
    /// (e.g. sex,race): a `fairness` block in evaluation.json, tables and charts in
    /// RUN/fairness/.
    #[arg(long, value_delimiter = ',', conflicts_with = "perturb")]
    pub sensitive: Vec<String>,
    /// Then fit per-group thresholds on the run's validation split for the best accuracy
    /// under demographic-parity or equalized-odds (Hardt et al.), and report the decisions
    /// they give beside the model's own (one --sensitive column).
    #[arg(long, requires = "sensitive")]
    pub thresholds: Option<String>,
}

/// `strata compress`.
#[derive(Debug, Args)]
pub struct CompressArgs {
    /// The run directory (a classifier's or regressor's, trained on samples).
    #[arg(long)]
    pub run: PathBuf,
    /// Global magnitude pruning to this sparsity (share of weights set to zero), in [0, 1).
    #[arg(long, allow_negative_numbers = true)]
    pub prune: Option<f64>,
    /// Epochs of fine-tuning after pruning, the pruned weights held at zero.
    #[arg(long, default_value_t = 0)]
    pub fine_tune: usize,
    /// Sparsities at which to measure the test accuracy: sparsity.csv and sparsity.png in
    /// --out (e.g. 0.5,0.8,0.9,0.95).
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
    pub curve: Vec<f64>,
    /// Structured pruning: remove this share of each convolution's channels (cnn, vgg*),
    /// each hidden layer's units (mlp) or the channels inside each residual block (resnet*),
    /// smallest first, rebuilding the layers smaller.
    #[arg(long, allow_negative_numbers = true)]
    pub prune_channels: Option<f64>,
    /// Store the weights in int8 on disk (after any pruning): int8.
    #[arg(long)]
    pub quantize: Option<String>,
    /// With --quantize: one scale per output channel instead of per tensor.
    #[arg(long, requires = "quantize")]
    pub per_channel: bool,
    /// With --quantize: static quantisation, each int8 layer's input scale fixed to the
    /// largest input it sees over this many training batches (instead of computed per
    /// sample as inputs arrive).
    #[arg(long)]
    pub calibrate: Option<usize>,
    /// Where to write the compressed run (or the curve).
    #[arg(long)]
    pub out: PathBuf,
    /// No progress lines while fine-tuning.
    #[arg(long)]
    pub quiet: bool,
}

/// `strata attack`.
#[derive(Debug, Args)]
pub struct AttackArgs {
    /// The run directory (a classifier's).
    #[arg(long)]
    pub run: PathBuf,
    /// The attack: fgsm or pgd.
    #[arg(long, default_value = "pgd")]
    pub method: String,
    /// The ball's radius, in the data's units (pixels in [0, 1]).
    #[arg(long, allow_negative_numbers = true)]
    pub eps: f64,
    /// The ball: inf or 2.
    #[arg(long, default_value = "inf")]
    pub norm: String,
    /// PGD's steps.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// PGD's step size [default: 2.5 eps / steps].
    #[arg(long)]
    pub step_size: Option<f64>,
    /// PGD's random restarts.
    #[arg(long, default_value_t = 1)]
    pub restarts: usize,
    /// The robustness curve's epsilons, comma-separated [default: 0 to 2 eps].
    #[arg(long, value_delimiter = ',')]
    pub curve: Vec<f64>,
    /// Attack this data set instead of the run's test split.
    #[arg(long)]
    pub dataset: Option<String>,
    /// Attack only the first N samples.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Seed of the random starts.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Backend [default: the run's].
    #[arg(long)]
    pub backend: Option<String>,
}

/// `strata explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The run directory (a classifier's).
    #[arg(long)]
    pub run: PathBuf,
    /// A CSV of raw features, as `strata predict` reads them.
    #[arg(long)]
    pub input: PathBuf,
    /// The row of --input to explain (from 0).
    #[arg(long, default_value_t = 0)]
    pub row: usize,
    /// The class to explain, by name or index [default: the predicted one].
    #[arg(long)]
    pub class: Option<String>,
    /// saliency, smoothgrad, ig (integrated gradients, with its completeness check), gradcam or
    /// rollout (a ViT's attention rollout, the same for every class).
    #[arg(long, default_value = "saliency")]
    pub method: String,
    /// Grad-CAM's convolutional layer, e.g. features.1 (CNN), layer3 (ResNet), features.28
    /// (VGG16) [default: the last].
    #[arg(long)]
    pub layer: Option<String>,
    /// The picture to write (PNG); rows of a table also get STEM_attributions.csv beside it.
    #[arg(long, default_value = "heat.png")]
    pub out: PathBuf,
    /// Backend [default: the run's].
    #[arg(long)]
    pub backend: Option<String>,
}

/// `strata predict`: with a run directory, or with foreign weights (`--model` and
/// `--weights`).
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// The run directory.
    #[arg(long, required_unless_present = "weights", conflicts_with = "weights")]
    pub run: Option<PathBuf>,
    /// A run: CSV of features (optionally with the label column, which is ignored). Foreign
    /// weights: a float32 .npy batch of images, NCHW.
    #[arg(long)]
    pub input: PathBuf,
    /// Output CSV [default: RUN/predictions.csv; logits.csv beside the input with
    /// --weights]; `-` for standard output.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// With --weights: the architecture, resnet18/34/50/101, resnet20/32/56 or
    /// vgg11/13/16/19[_bn].
    #[arg(long, requires = "weights")]
    pub model: Option<String>,
    /// PyTorch weights (.pt, .pth or .safetensors with torchvision's names) to predict with,
    /// without a run directory: writes one row of logits per input, in evaluation mode.
    #[arg(long, requires = "model")]
    pub weights: Option<PathBuf>,
    /// With --weights: classes of the head.
    #[arg(long, default_value_t = 1000)]
    pub num_classes: usize,
    /// With --weights: input channels.
    #[arg(long, default_value_t = 3)]
    pub in_channels: usize,
    /// A conditional VAE run: the class of every row.
    #[arg(long, conflicts_with = "weights")]
    pub class: Option<String>,
    /// Backend [default: the run's].
    #[arg(long)]
    pub backend: Option<String>,
}

/// `strata generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The run directory of a character language model, a seq2seq model or a VAE.
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
    /// A VAE: how many samples.
    #[arg(long, default_value_t = 64)]
    pub samples: usize,
    /// A conditional VAE: the class to sample (name or index) [default: each in turn].
    #[arg(long)]
    pub class: Option<String>,
    /// A VAE: where the samples go, a .png grid or a .npy [default: RUN/generated.png].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Backend [default: the run's].
    #[arg(long)]
    pub backend: Option<String>,
}

/// `strata encode`.
#[derive(Debug, Args)]
pub struct EncodeArgs {
    /// The run directory of an autoencoder.
    #[arg(long)]
    pub run: PathBuf,
    /// A CSV of rows (the label column, if present, is ignored) or a float32 .npy of [N, ...].
    #[arg(long)]
    pub input: PathBuf,
    /// Output CSV [default: RUN/codes.csv]; `-` for standard output.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// A conditional VAE run: the class of every row.
    #[arg(long)]
    pub class: Option<String>,
    /// Backend [default: the run's].
    #[arg(long)]
    pub backend: Option<String>,
}
