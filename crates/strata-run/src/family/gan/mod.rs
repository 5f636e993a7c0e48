//! Generative adversarial networks: `gan` (dense players, for rows and 2-D points), `dcgan`,
//! `cgan` (conditional DCGAN), `wgan` (Wasserstein, clipped critic) and `sngan` (spectrally
//! normalised discriminator, hinge loss). Two players train in turn with their own optimizers
//! (`strata_train::fit_players`); the run keeps a grid of samples from fixed noise after every
//! epoch (`samples/epoch-NNN.png`), the final grid (`samples.png`), and its measures in
//! `metrics.json` (see docs/gan.md).
//!
//! `--hidden` sets the dense players' widths, `--channels W` the DCGAN width (channels at the
//! largest side); the `[gan]` table of a config sets the game, critic steps, clipping, noise
//! size and the evaluating classifier.

mod measure;
mod objective;
mod run;

use std::cell::{Cell, RefCell};
use std::path::Path;

use burn::module::Module;
use burn::tensor::{Distribution, Tensor};
use serde_json::json;
use strata_arch::GanConfig;
use strata_data::Source;
use strata_loss::AdversarialLoss;
use strata_optim::{OptimizerKind, ScheduleConfig};
use strata_tensor::convert::to_vec;
use strata_tensor::seed_device;
use strata_train::fit_players;

use super::Family;
use crate::config::RunConfig;
use crate::data::{Preprocess, prepare, split_source};
use crate::error::{Error, Result};
use crate::evaluate::Evaluated;
use crate::generate::Generate;
use crate::pipeline::{Context, RunResult};
use crate::run_dir::{run_line, run_summary, save_safetensors, write_history, write_metrics};

pub use run::GanRun;

/// `gan`, `dcgan`, `cgan`, `wgan`, `sngan`.
pub struct Gans;

/// What a model name (and the `[gan]` table) asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Kind {
    /// Convolutional players only (`dcgan`): images required.
    pub conv_only: bool,
    /// Dense players always (`gan`); the others are convolutional on images, dense on rows.
    pub dense_only: bool,
    /// Both players see the class.
    pub conditional: bool,
    /// The game.
    pub loss: AdversarialLoss,
    /// Discriminator steps per generator step.
    pub n_critic: usize,
    /// The critic's weight clipping.
    pub clip: Option<f32>,
    /// Spectral normalisation of the discriminator.
    pub spectral_norm: bool,
}

/// The kind of `config.model`, with the `[gan]` table's overrides.
pub(crate) fn kind(config: &RunConfig) -> Kind {
    let wgan = config.model == "wgan";
    let g = &config.gan;
    Kind {
        conv_only: config.model == "dcgan",
        dense_only: config.model == "gan",
        conditional: config.model == "cgan",
        loss: g.loss.unwrap_or(match config.model.as_str() {
            "wgan" => AdversarialLoss::Wasserstein,
            "sngan" => AdversarialLoss::Hinge,
            _ => AdversarialLoss::Bce,
        }),
        n_critic: g.n_critic.unwrap_or(if wgan { 5 } else { 1 }),
        clip: g.clip.or(wgan.then_some(0.01)),
        spectral_norm: config.model == "sngan",
    }
}

const MODELS: [(&str, &str); 5] = [
    (
        "gan",
        "dense GAN for rows of features and 2-D points (ring8): --hidden widths of both players",
    ),
    (
        "dcgan",
        "DCGAN (Radford et al.): transposed convolutions against strided ones; --channels W",
    ),
    (
        "cgan",
        "conditional GAN (DCGAN on images, dense on rows): class embedding, projection; --class",
    ),
    (
        "wgan",
        "Wasserstein GAN: critic clipped to 0.01, 5 critic steps per generator step, RMSprop",
    ),
    (
        "sngan",
        "spectrally normalised discriminator (Miyato et al.), hinge loss; DCGAN or dense",
    ),
];

impl Family for Gans {
    fn name(&self) -> &'static str {
        "gan"
    }

    fn models(&self) -> &'static [(&'static str, &'static str)] {
        &MODELS
    }

    fn has(&self, model: &str) -> bool {
        MODELS.iter().any(|(m, _)| *m == model)
    }

    fn default_dataset(&self, model: &str) -> &'static str {
        if model == "gan" { "ring8" } else { "digits" }
    }

    /// Radford et al.'s training: Adam at 2e-4 with beta1 0.5, batches of 64, a constant
    /// rate; a WGAN's RMSprop at 5e-5. DCGAN width 32 on the 8x8 digits, 64 elsewhere; dense
    /// players of 128 and 128 units (256 and 256 on the ring, at 1e-3 decaying by cosine over
    /// 300 epochs, the discriminator packing 4 samples as PacGAN). Final weights are kept (a GAN's validation loss does not pick its best
    /// epoch), no early stopping; the ring's points stay in their units.
    fn recipe(&self, model: &str, dataset: &str, c: &mut RunConfig) {
        let digits = dataset == "digits";
        let ring = dataset == "ring8";
        c.network.dropout = 0.0;
        c.network.hidden = if ring { vec![256, 256] } else { vec![128, 128] };
        c.network.channels = vec![if digits { 32 } else { 64 }];
        c.fit.batch_size = 64;
        c.fit.epochs = match (ring, digits) {
            (true, _) => 300,
            (_, true) => 100,
            _ => 15,
        };
        c.fit.early_stopping = None;
        c.fit.restore_best = false;
        // On the ring, the rate decays to 0 so that samples settle on the modes (std 0.02).
        c.schedule = ScheduleConfig::by_name(if ring { "cosine" } else { "constant" })
            .expect("a known schedule");
        if ring {
            // Unpacked, a GAN covers 5 or 6 of the 8 modes here (PacGAN's table: 6.3);
            // packed by 4, the discriminator sees when a batch misses modes.
            c.standardize = Some(false);
            c.gan.pack = 4;
        }
        let (kind, lr) = if model == "wgan" {
            ("rmsprop", 5e-5)
        } else {
            ("adam", if ring { 1e-3 } else { 2e-4 })
        };
        c.optimizer.kind = OptimizerKind::by_name(kind).expect("a known optimizer");
        if let OptimizerKind::Adam { beta1, .. } = &mut c.optimizer.kind {
            *beta1 = 0.5;
        }
        c.optimizer.lr = lr;
    }

    fn validate(&self, config: &RunConfig) -> Result<()> {
        let k = kind(config);
        if !k.dense_only && config.network.channels.first().is_none_or(|&w| w == 0) {
            return Err(Error::Usage(format!(
                "{} needs its width: --channels W (e.g. 64)",
                config.model
            )));
        }
        if !k.conv_only && config.network.hidden.is_empty() {
            return Err(Error::Usage(format!(
                "{} needs the hidden widths of its dense players: --hidden 128,128",
                config.model
            )));
        }
        if config.kfold > 0 {
            return Err(Error::Usage(
                "--kfold applies to classifiers, not to a GAN".into(),
            ));
        }
        Ok(())
    }

    fn check_series(&self, config: &RunConfig) -> Result<()> {
        Err(not_rows(config))
    }

    fn network(
        &self,
        config: &RunConfig,
        _: &Preprocess,
        _: usize,
    ) -> Result<strata_arch::NetworkConfig> {
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
        _backend: Option<&str>,
        _dataset: Option<&str>,
    ) -> Result<Evaluated> {
        Err(Error::Usage(format!(
            "{}: a GAN is measured when it finishes training (metrics.json); sample it with `strata generate`",
            dir.display()
        )))
    }

    fn generate(&self, dir: &Path, backend: Option<&str>, request: &Generate) -> Result<String> {
        let run = GanRun::open(dir, backend)?;
        crate::generate::write_generated(dir, request, |n, class, seed, out| {
            run.write_samples(n, class, seed, out)
        })
    }

    fn predict(
        &self,
        dir: &Path,
        _backend: Option<&str>,
        _input: &Path,
        _class: Option<&str>,
    ) -> Result<crate::Predictions> {
        Err(Error::Usage(format!(
            "{}: a GAN makes no predictions; sample it with `strata generate`",
            dir.display()
        )))
    }
}

/// The error for data that are neither images nor rows of features.
fn not_rows(config: &RunConfig) -> Error {
    Error::Usage(format!(
        "model {} generates images or rows of features (digits, fashion-mnist, ring8, csv:PATH); `{}` is not such data",
        config.model, config.dataset
    ))
}

/// The architecture a run asks for on the data `pre` describes: DCGAN players for images (in
/// `[0, 1]`, generated in `[-1, 1]` by a tanh), dense ones for rows (a linear output for
/// standardised rows and points).
///
/// # Errors
/// A convolutional model on data that are not images or whose sides do not halve, a
/// conditional model on unlabelled data, zero sizes.
pub fn gan_config(config: &RunConfig, pre: &Preprocess) -> Result<GanConfig> {
    let k = kind(config);
    let images = pre.image_shape.filter(|_| pre.standardizer.is_none());
    if k.conv_only && images.is_none() {
        return Err(Error::Usage(format!(
            "model {} needs images in [0, 1] (digits, fashion-mnist); `{}` is not such images: use --model gan, or cgan, wgan, sngan (dense on rows)",
            config.model, config.dataset
        )));
    }
    let n_classes = match (&pre.class_names, k.conditional) {
        (_, false) => 0,
        (Some(names), true) => names.len(),
        (None, true) => {
            return Err(Error::Usage(format!(
                "a conditional GAN needs labelled data; `{}` has no classes",
                config.dataset
            )));
        }
    };
    let c = GanConfig::new(pre.n_features)
        .with_image_shape(if k.dense_only { None } else { images })
        .with_d_noise(config.gan.d_noise)
        .with_pack(config.gan.pack)
        .with_n_classes(n_classes)
        .with_width(config.network.channels.first().copied().unwrap_or(64))
        .with_d_hidden(config.network.hidden.clone())
        .with_spectral_norm(k.spectral_norm)
        .with_batch_norm(config.network.batch_norm)
        .with_tanh_output(images.is_some());
    c.validate()
        .map_err(|e| Error::Usage(format!("{}: {e}", config.model)))?;
    Ok(c)
}

/// Trains a GAN on `source` and writes the run directory.
fn train(ctx: &Context<'_>, source: Source) -> Result<RunResult> {
    let (config, device, out) = (ctx.config, &ctx.device, ctx.out);
    let (train, valid, test, _) = split_source(source, config)?;
    let (raw_train, raw_test) = (train.clone(), test.clone());
    let prepared = prepare(train, valid, test, config)?;
    let pre = &prepared.preprocess;
    let net = gan_config(config, pre)?;
    // Rows generated through a tanh: images in [0, 1], scaled to [-1, 1].
    let images = net.tanh_output;
    if images
        && prepared
            .train
            .features
            .iter()
            .any(|v| !(0.0..=1.0).contains(v))
    {
        return Err(Error::Usage(format!(
            "{}: {} generates images in [0, 1]; these rows have values outside",
            config.dataset, config.model
        )));
    }
    ctx.open_run_dir(config, Some(pre))?;
    let k = kind(config);
    ctx.progress.note(&format!(
        "training {} on {} ({} train / {} valid / {} test rows; {} loss, {} critic step(s) per generator step{}) with {} on {}",
        config.model,
        config.dataset,
        prepared.train.len(),
        prepared.valid.len(),
        prepared.test.len(),
        k.loss.name(),
        k.n_critic,
        k.clip.map_or(String::new(), |c| format!(", clipped to {c}")),
        config.optimizer.kind.name(),
        config.backend
    ));
    let ad = device.clone().autodiff();
    seed_device(&ad, config.fit.seed);
    let model = net.init(&ad)?;
    // Fixed noise for the per-epoch grids and validation: 8 rows of classes, or 64.
    let n_fixed = if net.n_classes > 0 {
        8 * net.n_classes
    } else {
        64
    };
    seed_device(device, config.fit.seed ^ 0xF1ED);
    let fixed_noise = Tensor::<2>::random(
        [n_fixed, net.d_noise],
        Distribution::Normal(0.0, 1.0),
        device,
    );
    let valid_rows: Vec<usize> = (0..prepared.valid.len().min(n_fixed)).collect();
    let (real, _) = objective::batch(&prepared.valid, &valid_rows, images, device);
    let game = objective::Game {
        train: &prepared.train,
        valid: &prepared.valid,
        device: ad.clone(),
        plain: device.clone(),
        kind: k,
        images,
        fixed_noise,
        fixed_classes: (net.n_classes > 0)
            .then(|| (0..n_fixed).map(|i| i % net.n_classes).collect()),
        grid_dir: net.image_shape.map(|_| out.join("samples")),
        real_diversity: objective::diversity(&to_vec(real), net.d_data),
        epoch: Cell::new(0),
        warnings: RefCell::new(Vec::new()),
    };
    let ckpt = out.join("checkpoints");
    let outcome = fit_players(model, &game, &ctx.run(ad, Some(&ckpt), None))?;
    if !write_history(config, out, "diversity", &outcome)? {
        return Ok(RunResult::paused(out, outcome.epochs_run));
    }
    let model = outcome.model.valid();
    save_safetensors(&model, &out.join("model.safetensors"))?;
    let run = GanRun {
        dir: out.to_path_buf(),
        config: config.clone(),
        preprocess: pre.clone(),
        model,
        device: device.clone(),
    };
    let mut metrics = run_summary(config, &outcome);
    let collapsed = outcome
        .history
        .iter()
        .filter(|r| r.valid_metric < objective::COLLAPSE)
        .count();
    metrics["collapse_warnings"] = json!(collapsed);
    let samples = out.join("samples.png");
    let written = match run.write_samples(n_fixed, None, config.fit.seed, &samples) {
        Ok(_) => vec!["samples.png"],
        Err(Error::Usage(_)) => Vec::new(), // rows that are neither images nor points
        Err(e) => return Err(e),
    };
    metrics["pictures"] = json!(written);
    let features = measure::features(ctx, &raw_train, || {
        strata_data::load_source(
            &config.dataset,
            &config.label,
            strata_data::Encoding::OneHot,
        )
        .map_err(Error::from)
    })?;
    metrics["test"] = measure::report(&run, &features, &raw_train, &raw_test, ctx)?;
    metrics["game"] = json!({
        "loss": k.loss.name(),
        "n_critic": k.n_critic,
        "clip": k.clip,
        "spectral_norm": k.spectral_norm,
    });
    write_metrics(out, &metrics)?;
    let line = format!(
        "test {}  ({})",
        measure::summary(&metrics["test"]),
        run_line(config, &outcome)
    );
    Ok(RunResult::finished(out, &outcome, metrics, line))
}
