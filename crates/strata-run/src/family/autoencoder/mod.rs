//! Autoencoders: `ae`, `conv-ae`, `dae`, `sparse-ae`, `vae`, `conv-vae`, `cvae`. The family
//! brings its own objective (the negative log-likelihood of the input, Bernoulli for images in
//! `[0, 1]`, unit-variance Gaussian for standardised data, plus the weighted KL term of a VAE
//! and the L1 penalty of a sparse code, in nats per example), its own metrics and pictures.
//! Labels are used only for evaluation, to choose the normal class of a one-class run, and as
//! the condition of a `cvae`.
//!
//! `--hidden` lists the dense widths down to the code: `--hidden 256,128,30` is a 30-unit code
//! behind two hidden layers; the decoder mirrors them. A convolutional model first halves the
//! image once per `--channels` entry.

mod measure;
mod objective;
mod run;

use std::path::Path;

use burn::module::Module;
use serde_json::{Value, json};
use strata_arch::{AutoencoderConfig, Likelihood, NetworkConfig};
use strata_data::{Dataset, Pca, Source};
use strata_tensor::seed_device;
use strata_train::fit_objective;

use super::Family;
use crate::config::RunConfig;
use crate::data::{Preprocess, prepare, split_source};
use crate::error::{Error, Result};
use crate::evaluate::Evaluated;
use crate::generate::Generate;
use crate::pipeline::{Context, RunResult};
use crate::run_dir::{run_line, run_summary, save_safetensors, write_history, write_metrics};

pub use measure::{IwBound, iw_bound};
pub use run::{AutoencoderRun, Codes};

/// `ae`, `conv-ae`, `dae`, `sparse-ae`, `vae`, `conv-vae`, `cvae`.
pub struct Autoencoders;

/// What a model name asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Kind {
    /// Strided convolutions before the dense layers.
    pub conv: bool,
    /// A Gaussian code and the KL term.
    pub variational: bool,
    /// Conditioned on the class.
    pub conditional: bool,
}

/// The kind of `model`.
pub(crate) fn kind(model: &str) -> Kind {
    let (conv, variational, conditional) = match model {
        "conv-ae" => (true, false, false),
        "vae" => (false, true, false),
        "conv-vae" => (true, true, false),
        "cvae" => (false, true, true),
        _ => (false, false, false),
    };
    Kind {
        conv,
        variational,
        conditional,
    }
}

const MODELS: [(&str, &str); 7] = [
    (
        "ae",
        "dense autoencoder: encoder to a code (--hidden ...,CODE), mirrored decoder",
    ),
    (
        "conv-ae",
        "convolutional autoencoder: stride-2 convolutions down (--channels), transposed up",
    ),
    (
        "dae",
        "denoising autoencoder: learns to undo --noise gaussian:0.3 | mask:F | salt-pepper:F",
    ),
    (
        "sparse-ae",
        "sparse autoencoder: an L1 penalty on the code (--sparsity)",
    ),
    (
        "vae",
        "variational autoencoder: Gaussian code, loss the negative ELBO (--beta, --kl-warmup)",
    ),
    ("conv-vae", "convolutional variational autoencoder"),
    (
        "cvae",
        "conditional VAE: encoder and decoder see the class; generates by class",
    ),
];

impl Family for Autoencoders {
    fn name(&self) -> &'static str {
        "autoencoder"
    }

    fn models(&self) -> &'static [(&'static str, &'static str)] {
        &MODELS
    }

    fn has(&self, model: &str) -> bool {
        MODELS.iter().any(|(m, _)| *m == model)
    }

    /// Adam at 1e-3, batches of 64, 50 epochs with early stopping on the validation loss; on
    /// the 8x8 digits a 16-unit code (behind 64 units, or two convolutions of 16 and 32
    /// channels), elsewhere a 30-unit code (behind 256 and 128 units, or convolutions of 32
    /// and 64 channels). `dae` adds Gaussian noise of standard deviation 0.3 (and on the
    /// digits, an over-complete code of 128 units behind 256); `sparse-ae` an L1 weight of
    /// 0.05.
    fn recipe(&self, model: &str, dataset: &str, c: &mut RunConfig) {
        let digits = dataset == "digits";
        let k = kind(model);
        c.network.hidden = match (k.conv, digits) {
            (true, true) => vec![16],
            (true, false) => vec![30],
            // A denoising autoencoder needs no bottleneck: the noise, not the code size, keeps
            // it from copying its input (Vincent et al. 2008 used over-complete codes). With
            // 16 units its reconstructions of the 8x8 digits cannot get far from the noise.
            (false, true) if model == "dae" => vec![256, 128],
            (false, true) => vec![64, 16],
            (false, false) => vec![256, 128, 30],
        };
        if k.conv {
            c.network.channels = if digits { vec![16, 32] } else { vec![32, 64] };
        }
        c.network.dropout = 0.0;
        c.fit.batch_size = 64;
        c.fit.epochs = 50;
        match model {
            "dae" => {
                c.autoencoder.noise = Some(strata_data::Corruption::Gaussian { std: 0.3 });
            }
            "sparse-ae" => c.autoencoder.sparsity = 0.05,
            _ => {}
        }
    }

    fn validate(&self, config: &RunConfig) -> Result<()> {
        if config.network.hidden.is_empty() {
            return Err(Error::Usage(
                "an autoencoder needs its code size: --hidden ...,CODE (e.g. 256,128,30)".into(),
            ));
        }
        let k = kind(&config.model);
        if k.conv && config.network.channels.is_empty() {
            return Err(Error::Usage(format!(
                "{} needs the channels of its convolutions: --channels 32,64",
                config.model
            )));
        }
        if k.conditional && config.autoencoder.normal_class.is_some() {
            return Err(Error::Usage(
                "--normal-class trains on one class: a conditional VAE has nothing to condition on"
                    .into(),
            ));
        }
        Ok(())
    }

    fn warnings(&self, config: &RunConfig) -> Vec<String> {
        let a = &config.autoencoder;
        let mut w = Vec::new();
        if !kind(&config.model).variational && (a.beta != 1.0 || a.kl_warmup_epochs > 0) {
            w.push(format!(
                "--beta and --kl-warmup weigh a VAE's KL term; {} has none",
                config.model
            ));
        }
        w
    }

    fn check_series(&self, config: &RunConfig) -> Result<()> {
        Err(not_rows(config))
    }

    fn network(&self, config: &RunConfig, _: &Preprocess, _: usize) -> Result<NetworkConfig> {
        Err(not_rows(config))
    }

    fn adversarial_training(&self) -> bool {
        false
    }

    fn train(&self, ctx: &Context<'_>, source: Source) -> Result<RunResult> {
        match source {
            s @ (Source::Single(_) | Source::TrainTest(..)) => train(ctx, s),
            other => crate::pipeline::train_default(self, ctx, other),
        }
    }

    fn evaluate(
        &self,
        dir: &Path,
        backend: Option<&str>,
        dataset: Option<&str>,
    ) -> Result<Evaluated> {
        evaluate(dir, backend, dataset)
    }

    fn generate(&self, dir: &Path, backend: Option<&str>, request: &Generate) -> Result<String> {
        let run = AutoencoderRun::open(dir, backend)?;
        crate::generate::write_generated(dir, request, |n, class, seed, out| {
            run.write_samples(n, class, seed, out)
        })
    }

    fn predict(
        &self,
        dir: &Path,
        backend: Option<&str>,
        input: &Path,
        class: Option<&str>,
    ) -> Result<crate::Predictions> {
        let run = AutoencoderRun::open(dir, backend)?;
        let rows = run.read_rows(input)?;
        Ok(crate::Predictions::Scores(run.scores(rows, class)?))
    }
}

/// The error for data that are neither images nor rows of features.
fn not_rows(config: &RunConfig) -> Error {
    Error::Usage(format!(
        "model {} reconstructs images or rows of features (digits, fashion-mnist, csv:PATH); `{}` is not such data",
        config.model, config.dataset
    ))
}

/// The architecture a run asks for on the data `pre` describes: Bernoulli outputs for
/// unstandardised data (images in `[0, 1]`), Gaussian for standardised.
///
/// # Errors
/// No code size, zero sizes, a convolutional model on data that are not images or whose sides
/// its convolutions cannot halve, a conditional model on unlabelled data.
pub fn autoencoder_config(config: &RunConfig, pre: &Preprocess) -> Result<AutoencoderConfig> {
    let (latent, hidden) = config
        .network
        .hidden
        .split_last()
        .ok_or_else(|| Error::Usage("an autoencoder needs --hidden ...,CODE".into()))?;
    let k = kind(&config.model);
    if k.conv && pre.image_shape.is_none() {
        return Err(Error::Usage(format!(
            "model {} needs images (digits, fashion-mnist, csv:PATH with --image-shape); `{}` is not images",
            config.model, config.dataset
        )));
    }
    let n_classes = match (&pre.class_names, k.conditional) {
        (_, false) => 0,
        (Some(names), true) => names.len(),
        (None, true) => {
            return Err(Error::Usage(format!(
                "a conditional VAE needs labelled data; `{}` has no classes",
                config.dataset
            )));
        }
    };
    let c = AutoencoderConfig::new(pre.n_features)
        .with_d_latent(*latent)
        .with_d_hidden(hidden.to_vec())
        .with_channels(if k.conv {
            config.network.channels.clone()
        } else {
            Vec::new()
        })
        .with_image_shape(pre.image_shape)
        .with_activation(config.network.activation)
        .with_variational(k.variational)
        .with_n_classes(n_classes)
        .with_likelihood(if pre.standardizer.is_some() {
            Likelihood::Gaussian
        } else {
            Likelihood::Bernoulli
        });
    c.validate()
        .map_err(|e| Error::Usage(format!("{}: {e}", config.model)))?;
    Ok(c)
}

/// The splits of a run: training and validation rows of the normal class only when one is
/// named; the test split whole.
struct Splits {
    train: Dataset,
    valid: Dataset,
    test: Dataset,
    /// The normal class's index, for a one-class run.
    normal: Option<usize>,
}

/// The index of class `name` (its name, or its index) in `data`.
fn class_index(config: &RunConfig, data: &Dataset, name: &str) -> Result<usize> {
    let names = data.class_names().ok_or_else(|| {
        Error::Usage(format!(
            "--normal-class needs labelled data; `{}` has no classes",
            config.dataset
        ))
    })?;
    let name = name.trim();
    find_class(names, name).ok_or_else(|| {
        Error::Usage(format!(
            "--normal-class `{name}` is not a class of {}: expected one of {} (or an index 0..{})",
            config.dataset,
            names.join(", "),
            names.len()
        ))
    })
}

/// The index of the class called `name`, or numbered `name` (0-based).
pub(crate) fn find_class(names: &[String], name: &str) -> Option<usize> {
    let name = name.trim();
    names
        .iter()
        .position(|n| n == name)
        .or_else(|| name.parse::<usize>().ok().filter(|i| *i < names.len()))
}

/// The rows of `data` of class `k`.
fn only_class(data: &Dataset, k: usize) -> Dataset {
    let rows: Vec<usize> = data
        .labels()
        .map(|l| (0..l.len()).filter(|&i| l[i] == k).collect())
        .unwrap_or_default();
    data.subset(&rows)
}

/// Splits `source` as the run says, keeping only the normal class for training.
fn splits(source: Source, config: &RunConfig) -> Result<Splits> {
    let (train, valid, test, _) = split_source(source, config)?;
    let normal = match &config.autoencoder.normal_class {
        None => None,
        Some(name) => Some(class_index(config, &train, name)?),
    };
    let (train, valid) = match normal {
        Some(k) => (only_class(&train, k), only_class(&valid, k)),
        None => (train, valid),
    };
    if train.is_empty() || valid.is_empty() {
        return Err(Error::Usage(format!(
            "{}: no training or validation rows of the normal class",
            config.dataset
        )));
    }
    Ok(Splits {
        train,
        valid,
        test,
        normal,
    })
}

/// Checks that unstandardised data lie in `[0, 1]` (what Bernoulli outputs model).
fn check_range(config: &RunConfig, pre: &Preprocess, data: &Dataset) -> Result<()> {
    if pre.standardizer.is_none() && data.features.iter().any(|v| !(0.0..=1.0).contains(v)) {
        return Err(Error::Usage(format!(
            "{}: {} reconstructs unstandardised data as Bernoulli pixels, which need values in [0, 1]; standardise the data (standardize = true) or scale it",
            config.dataset, config.model
        )));
    }
    Ok(())
}

/// PCA with as many components as the code has units (at most the features).
fn pca_baseline(train: &Dataset, d_latent: usize) -> Result<Pca> {
    Ok(Pca::fit(train, d_latent.min(train.n_features))?)
}

/// Trains an autoencoder on `source` and writes the run directory.
fn train(ctx: &Context<'_>, source: Source) -> Result<RunResult> {
    let (config, device, out) = (ctx.config, &ctx.device, ctx.out);
    let s = splits(source, config)?;
    let prepared = prepare(s.train, s.valid, s.test, config)?;
    check_range(config, &prepared.preprocess, &prepared.train)?;
    let net = autoencoder_config(config, &prepared.preprocess)?;
    ctx.open_run_dir(config, Some(&prepared.preprocess))?;
    let one_class = s
        .normal
        .map_or(String::new(), |k| format!(", normal class {k}"));
    ctx.progress.note(&format!(
        "training {} on {} ({} train / {} valid / {} test rows{one_class}, code of {}) with {} on {}",
        config.model,
        config.dataset,
        prepared.train.len(),
        prepared.valid.len(),
        prepared.test.len(),
        net.d_latent,
        config.optimizer.kind.name(),
        config.backend
    ));
    let ad = device.clone().autodiff();
    seed_device(&ad, config.fit.seed);
    let model = net.init(&ad)?;
    let objective = objective::Reconstruct::new(
        &prepared.train,
        &prepared.valid,
        ad.clone(),
        device.clone(),
        config,
        net.n_classes,
    );
    let ckpt = out.join("checkpoints");
    let outcome = fit_objective(model, &objective, &ctx.run(ad, Some(&ckpt), None))?;
    if !write_history(config, out, "mse", &outcome)? {
        return Ok(RunResult::paused(out, outcome.epochs_run));
    }
    let model = outcome.model.valid();
    save_safetensors(&model, &out.join("model.safetensors"))?;
    let mut metrics = run_summary(config, &outcome);
    let run = AutoencoderRun {
        dir: out.to_path_buf(),
        config: config.clone(),
        preprocess: prepared.preprocess.clone(),
        model,
        device: device.clone(),
    };
    let pca = pca_baseline(&prepared.train, net.d_latent)?;
    let report = measure::Report::new(&run, &prepared.train, &pca, s.normal);
    metrics["test"] = report.metrics(&prepared.test, true)?;
    metrics["valid"] = report.metrics(&prepared.valid, false)?;
    let pictures = run.draw_pictures(&prepared.test)?;
    metrics["pictures"] = json!(pictures);
    write_metrics(out, &metrics)?;
    let line = format!(
        "test {}  ({})",
        measure::summary(&metrics["test"]),
        run_line(config, &outcome)
    );
    Ok(RunResult::finished(out, &outcome, metrics, line))
}

/// Re-evaluates an autoencoder run on its test split, or on `dataset`.
fn evaluate(dir: &Path, backend: Option<&str>, dataset: Option<&str>) -> Result<Evaluated> {
    let run = AutoencoderRun::open(dir, backend)?;
    let config = &run.config;
    let pre = &run.preprocess;
    let load = |spec: &str| {
        strata_data::load_source(spec, &config.label, strata_data::Encoding::OneHot)
            .map_err(Error::from)
    };
    let s = splits(load(&config.dataset)?, config)?;
    let (name, mut data) = match dataset {
        None => (format!("{} (test split)", config.dataset), s.test),
        Some(spec) => match load(spec)? {
            Source::Single(d) => (spec.to_string(), d),
            Source::TrainTest(_, t) => (format!("{spec} (test set)"), t),
            _ => return Err(not_rows(config)),
        },
    };
    let mut train = s.train;
    pre.apply(&mut train)?;
    pre.apply(&mut data)?;
    check_range(config, pre, &data)?;
    let pca = pca_baseline(&train, run.model.d_latent)?;
    let report = measure::Report::new(&run, &train, &pca, s.normal);
    let m = report.metrics(&data, true)?;
    let out = json!({
        "model": config.model,
        "dataset": name,
        "backend": config.backend.name(),
        "test": m,
    });
    let summary = format!("{name}: {}", measure::summary(&out["test"]));
    crate::evaluate::write_evaluation(dir, summary, out)
}

/// Reads an f64 from a metrics object (NaN when absent).
fn get(m: &Value, k: &str) -> f64 {
    m.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN)
}
