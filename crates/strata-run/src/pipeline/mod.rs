//! Training a run: [`train`] validates the config, loads the data its spec names, and hands
//! both to the model's family, which trains and writes the run directory.

pub(crate) mod supervised;

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use serde_json::Value;
use strata_data::Source;
use strata_tensor::Backend;
use strata_train::{Collective, Console, FineTune, FitOutcome, Progress, Silent};

use crate::config::RunConfig;
use crate::data::Preprocess;
use crate::error::{Error, Result};
use crate::family::{Family, family};

pub use supervised::{metrics_json, summary_line};

/// How [`train_with`] runs besides the config.
#[derive(Default, Clone, Copy)]
pub struct TrainOptions<'a> {
    /// Continue the run in the output directory from its last checkpoint.
    pub resume: bool,
    /// Stop (as if interrupted) after this many epochs; resume later.
    pub pause_after: Option<usize>,
    /// Where progress goes; `None`: a console bar and lines when `config.fit.progress` is set,
    /// else nothing.
    pub progress: Option<&'a dyn Progress>,
    /// Data-parallel training with these ranks (`strata_train::Mpi` under `mpirun`): each
    /// trains on its share of every batch, rank 0 alone reports and writes the run. Models
    /// trained on samples (the supervised families) only.
    pub collective: Option<&'a dyn Collective>,
}

/// What a run gave: where it is, whether it finished, its `metrics.json`, and one line saying
/// its test figures.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// The run directory.
    pub dir: PathBuf,
    /// Whether training finished (false when paused: resume it with
    /// [`TrainOptions::resume`]).
    pub finished: bool,
    /// Epochs run in total.
    pub epochs_run: usize,
    /// The run's `metrics.json` (`Value::Null` when paused).
    pub metrics: Value,
    /// One line of test metrics, e.g. `test accuracy 0.9833  macro F1 0.9832  loss 0.0712
    /// (cnn on digits, flex, 30 epochs, 20.1 s)`; empty when paused.
    pub summary: String,
}

impl RunResult {
    /// A finished run.
    pub(crate) fn finished<M>(
        dir: &Path,
        outcome: &FitOutcome<M>,
        metrics: Value,
        summary: String,
    ) -> Self {
        Self {
            dir: dir.to_path_buf(),
            finished: true,
            epochs_run: outcome.epochs_run,
            metrics,
            summary,
        }
    }

    /// What a rank other than 0 of a data-parallel run gives: it trained beside rank 0, which
    /// evaluated and wrote the run (`metrics` is `Value::Null`, `summary` empty).
    pub(crate) fn other_rank(dir: &Path, finished: bool, epochs_run: usize) -> Self {
        Self {
            dir: dir.to_path_buf(),
            finished,
            epochs_run,
            metrics: Value::Null,
            summary: String::new(),
        }
    }

    /// A paused run.
    pub(crate) fn paused(dir: &Path, epochs_run: usize) -> Self {
        Self {
            dir: dir.to_path_buf(),
            finished: false,
            epochs_run,
            metrics: Value::Null,
            summary: String::new(),
        }
    }

    /// A headline test metric of `metrics.json` (`accuracy`, `rmse`, `exact_match`,
    /// `loss_nats`, ...), when the run has it.
    pub fn test_metric(&self, name: &str) -> Option<f64> {
        self.metrics["test"][name].as_f64()
    }
}

/// What a family's training gets: the validated config, the device, the run directory, how to
/// run and where progress goes.
pub struct Context<'a> {
    /// The run's config, validated.
    pub config: &'a RunConfig,
    /// The device (without autodiff) of the run's backend.
    pub device: Device,
    /// The run directory.
    pub out: &'a Path,
    /// Continue from the last checkpoint.
    pub resume: bool,
    /// Stop after this many epochs.
    pub pause_after: Option<usize>,
    /// Where progress goes.
    pub progress: &'a dyn Progress,
    /// The ranks of a data-parallel run, if it is one.
    pub collective: Option<&'a dyn Collective>,
}

impl Context<'_> {
    /// Whether this process writes the run: always, but in a data-parallel run rank 0 only.
    pub fn writes(&self) -> bool {
        self.collective.is_none_or(|c| c.is_root())
    }

    /// Starts the run directory: refuses a damaged checkpoint by name when resuming (before
    /// anything in the run is rewritten), then writes `config.toml` and, when given,
    /// `preprocess.json`.
    ///
    /// # Errors
    /// A damaged checkpoint, I/O errors.
    pub fn open_run_dir(&self, config: &RunConfig, preprocess: Option<&Preprocess>) -> Result<()> {
        let out = self.out;
        if self.resume {
            strata_train::Checkpointer::new(out.join("checkpoints")).verify()?;
        }
        if !self.writes() {
            return Ok(());
        }
        std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
        config.save(out)?;
        if let Some(p) = preprocess {
            p.save(out)?;
        }
        Ok(())
    }

    /// The runner's settings for a model on the autodiff device `ad`, checkpointing in
    /// `checkpoint_dir`.
    pub fn run<'b>(
        &'b self,
        ad: Device,
        checkpoint_dir: Option<&'b Path>,
        fine_tune: Option<&'b FineTune>,
    ) -> strata_train::Run<'b> {
        let c = self.config;
        strata_train::Run {
            optimizer: &c.optimizer,
            schedule: &c.schedule,
            config: &c.fit,
            device: ad,
            checkpoint_dir,
            resume: self.resume,
            pause_after: self.pause_after,
            fine_tune,
            progress: Some(self.progress),
            per_player: &[],
            collective: self.collective,
        }
    }
}

/// Trains the run `config` describes and writes its directory `out`: `config.toml`,
/// `preprocess.json`, `history.csv`, `curves.svg`, `model.safetensors`, `metrics.json` (and
/// `test_predictions.csv` for classifiers). Progress goes to the console when
/// `config.fit.progress` is set.
///
/// ```no_run
/// let mut config = strata_run::RunConfig::defaults_for("cnn", "digits");
/// config.fit.epochs = 5;
/// let result = strata_run::train(&config, "runs/cnn-digits")?;
/// println!("{}", result.summary);
/// # Ok::<(), strata_run::Error>(())
/// ```
///
/// # Errors
/// Invalid settings, a model and data that do not go together, unreadable data, training and
/// I/O failures. Nothing is written before the settings, the data and the model are checked.
pub fn train(config: &RunConfig, out: impl AsRef<Path>) -> Result<RunResult> {
    train_with(config, out.as_ref(), &TrainOptions::default())
}

/// [`train`] with options: resume, pause, your own progress reports.
///
/// # Errors
/// As [`train`].
pub fn train_with(config: &RunConfig, out: &Path, options: &TrainOptions<'_>) -> Result<RunResult> {
    config.validate()?;
    let family = family(&config.model)?;
    let device = config.backend.usable_device()?;
    let source = strata_data::load_source(
        &config.dataset,
        &config.label,
        family.encoding(&config.model),
    )?;
    if let Some(c) = options.collective {
        check_distributed(config, family.name(), &source, c)?;
    }
    let console = Console::default();
    let progress: &dyn Progress = match options.progress {
        Some(p) => p,
        None if config.fit.progress => &console,
        None => &Silent,
    };
    let ctx = Context {
        config,
        device,
        out,
        resume: options.resume,
        pause_after: options.pause_after,
        progress: match options.collective {
            Some(c) if !c.is_root() => &Silent,
            _ => progress,
        },
        collective: options.collective,
    };
    family.train(&ctx, source)
}

/// An engine that connects the processes of a data-parallel run (`--distributed ENGINE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// MPI: the ranks `mpirun -np N` started ([`strata_train::Collective`] over Open MPI;
    /// a build with the `mpi` feature).
    Mpi,
}

impl std::str::FromStr for Engine {
    type Err = Error;

    /// `mpi` (any case).
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "mpi" => Ok(Engine::Mpi),
            _ => Err(Error::Usage(format!(
                "--distributed `{}`: the engine is `mpi` (start the ranks with mpirun -np N)",
                s.escape_debug()
            ))),
        }
    }
}

impl Engine {
    /// This process's ranks, to give a run as [`TrainOptions::collective`]. MPI is
    /// initialised here and finalised when the value is dropped.
    ///
    /// # Errors
    /// A build without the `mpi` feature, with how to get one; MPI initialised already.
    pub fn connect(self) -> Result<Box<dyn Collective>> {
        match self {
            #[cfg(feature = "mpi")]
            Engine::Mpi => Ok(Box::new(strata_train::Mpi::init()?)),
            #[cfg(not(feature = "mpi"))]
            Engine::Mpi => Err(Error::Usage(
                "--distributed mpi: this strata was built without MPI; build it with `cargo install --path crates/strata-cli --features mpi` (needs an MPI library: apt install libopenmpi-dev openmpi-bin libclang-dev)".into(),
            )),
        }
    }
}

/// Checks a request to train on the devices `devices` of `backend` in one process
/// (`strata train --devices 0,1`). One device, the backend's default (0), trains as usual.
/// Several need burn's collective operations between the devices of a process
/// (`burn::tensor::distributed`), which burn 0.22 implements for CUDA alone (through NCCL):
/// its wgpu backend has no transport between devices and its CPU backends are one device
/// each, so this build refuses them with the reason and what to run instead (one MPI rank
/// per device, see docs/distributed.md).
///
/// # Errors
/// [`Error::Usage`] for anything but `[]` and `[0]`.
pub fn check_devices(backend: Backend, devices: &[usize]) -> Result<()> {
    let list = devices
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    match devices {
        [] | [0] => Ok(()),
        [_] => Err(Error::Usage(format!(
            "--devices {list}: the {backend} backend trains on its default device (0) in this build"
        ))),
        _ => {
            let why = match backend {
                Backend::Wgpu => {
                    "burn 0.22's wgpu backend has no transport between devices for its all-reduce (burn implements it for CUDA, through NCCL)"
                }
                Backend::Flex | Backend::Ndarray => {
                    "a CPU backend is one device, whose cores its threads already share"
                }
            };
            Err(Error::Usage(format!(
                "--devices {list}: several devices in one process need burn's collective operations; {why}. Run one process per device instead: mpirun -np N strata train ... --distributed mpi"
            )))
        }
    }
}

/// [`Error::Usage`] for what a data-parallel run does not do yet: models trained outside
/// the supervised runner (language models, forecasters, graph networks, GANs, autoencoders,
/// sequence-to-sequence models), and options that change the training loss or repeat it.
fn check_distributed(
    config: &RunConfig,
    family: &str,
    source: &Source,
    collective: &dyn Collective,
) -> Result<()> {
    let families = ["mlp", "cnn", "resnet", "vgg", "transformer", "recurrent"];
    let samples = matches!(source, Source::Single(_) | Source::TrainTest(..));
    if !samples || !families.contains(&family) {
        return Err(Error::Usage(format!(
            "data-parallel training (--distributed) trains classifiers and regressors on samples \
             (mlp, cnn, resnet, vgg, vit, ft-transformer, recurrent classifiers); not {} on {} yet",
            config.model, config.dataset
        )));
    }
    let refused = [
        ("--kfold", config.kfold >= 2),
        ("--adversarial", config.adversarial.is_some()),
        ("--debias", config.debias.is_some()),
        ("--distill-from", config.distill.is_some()),
    ];
    if let Some((flag, _)) = refused.iter().find(|(_, set)| *set) {
        return Err(Error::Usage(format!(
            "{flag} does not run data-parallel yet; drop --distributed, or {flag}"
        )));
    }
    if collective.size() == 0 {
        return Err(Error::Usage(
            "a data-parallel run needs at least one rank".into(),
        ));
    }
    Ok(())
}

/// The mean and the sample standard deviation (n - 1 in the denominator; 0 for one value) of
/// per-fold or per-seed figures.
pub(crate) fn mean_std(v: &[f64]) -> (f64, f64) {
    let mu = v.iter().sum::<f64>() / v.len().max(1) as f64;
    let var = v.iter().map(|x| (x - mu).powi(2)).sum::<f64>() / (v.len().max(2) - 1) as f64;
    (mu, var.sqrt())
}

/// The training of a family that does not bring its own: supervised learning on samples,
/// forecasting on a series, a character language model on text.
///
/// # Errors
/// Data the family does not train on, and the pipelines' errors.
pub fn train_default<F: Family + ?Sized>(
    family: &F,
    ctx: &Context<'_>,
    source: Source,
) -> Result<RunResult> {
    match source {
        Source::Series(_) | Source::Text { .. } if ctx.config.adversarial.is_some() => {
            Err(Error::Usage(format!(
                "--adversarial trains classifiers on samples; `{}` is a series or a text",
                ctx.config.dataset
            )))
        }
        Source::Series(s) => crate::forecast::train(family, ctx, &s),
        Source::Text { text } => crate::language::train(family, ctx, &text),
        Source::Transduction(_) => Err(Error::Usage(format!(
            "`{}` is a sequence transduction task: train it with --model seq2seq, not {}",
            ctx.config.dataset, ctx.config.model
        ))),
        Source::Graph(_) => Err(Error::Usage(format!(
            "`{}` is a graph: train a graph network on it with --model gcn, sage, gat, gin or graph-mlp, not {}",
            ctx.config.dataset, ctx.config.model
        ))),
        samples => supervised::train(family, ctx, samples),
    }
}
