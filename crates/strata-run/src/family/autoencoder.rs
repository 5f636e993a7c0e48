//! Dense autoencoders on images with values in `[0, 1]`: `ae` (plain) and `vae` (variational).
//! The family brings its own objective: the Bernoulli negative log-likelihood of the pixels
//! (plus the KL term for the VAE: the negative ELBO), in nats per image; labels are not used
//! in training. Test metrics: the reconstruction's mean squared error per pixel and its
//! Bernoulli NLL beside those of the training mean image and of PCA with as many components as
//! the code has units, and the VAE's negative ELBO.
//!
//! `--hidden` lists the encoder's widths down to the code: `--hidden 256,128,30` is a 30-unit
//! code behind two hidden layers; the decoder mirrors them.

use std::path::Path;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde_json::{Value, json};
use strata_arch::{Autoencoder, AutoencoderConfig, NetworkConfig};
use strata_data::{Batcher, Dataset, Pca, Source};
use strata_loss::{bernoulli_nll, gaussian_kl};
use strata_tensor::convert::scalar;
use strata_tensor::seed_device;
use strata_train::{Objective, fit_objective};

use super::Family;
use crate::config::RunConfig;
use crate::data::{Preprocess, prepare, split_source};
use crate::error::{Error, Result};
use crate::evaluate::{Evaluated, load_run_config};
use crate::pipeline::{Context, RunResult};
use crate::run_dir::{
    finished_weights, load_weights, run_line, run_summary, save_safetensors, write_history,
    write_json, write_metrics,
};

/// `ae`, `vae`.
pub struct Autoencoders;

/// Examples per batch when scoring.
const EVAL_BATCH: usize = 256;

impl Family for Autoencoders {
    fn name(&self) -> &'static str {
        "autoencoder"
    }

    fn models(&self) -> &'static [(&'static str, &'static str)] {
        &[
            (
                "ae",
                "dense autoencoder: encoder to a code (--hidden ...,CODE), mirrored decoder; images",
            ),
            (
                "vae",
                "variational autoencoder: Gaussian code, Bernoulli pixels, loss the negative ELBO; images",
            ),
        ]
    }

    fn has(&self, model: &str) -> bool {
        ["ae", "vae"].contains(&model)
    }

    /// Adam at 1e-3, batches of 64, 50 epochs with early stopping on the validation loss; a
    /// 16-unit code behind 64 units on the 8x8 digits, a 30-unit code behind 256 and 128 units
    /// otherwise.
    fn recipe(&self, _model: &str, dataset: &str, c: &mut RunConfig) {
        c.network.hidden = if dataset == "digits" {
            vec![64, 16]
        } else {
            vec![256, 128, 30]
        };
        c.network.dropout = 0.0;
        c.fit.batch_size = 64;
        c.fit.epochs = 50;
    }

    fn validate(&self, config: &RunConfig) -> Result<()> {
        if config.network.hidden.is_empty() {
            return Err(Error::Usage(
                "an autoencoder needs its code size: --hidden ...,CODE (e.g. 256,128,30)".into(),
            ));
        }
        Ok(())
    }

    fn check_series(&self, config: &RunConfig) -> Result<()> {
        Err(not_images(config))
    }

    fn network(&self, config: &RunConfig, _: &Preprocess, _: usize) -> Result<NetworkConfig> {
        Err(not_images(config))
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

    fn generate(
        &self,
        dir: &Path,
        _: Option<&str>,
        _: &crate::generate::Generate,
    ) -> Result<String> {
        Err(Error::Usage(format!(
            "{}: sampling from an autoencoder is not available yet",
            dir.display()
        )))
    }
}

/// The error for data that are not images.
fn not_images(config: &RunConfig) -> Error {
    Error::Usage(format!(
        "model {} reconstructs images with values in [0, 1] (digits, fashion-mnist); `{}` is not such data",
        config.model, config.dataset
    ))
}

/// The architecture a run asks for on `d_input` pixels.
///
/// # Errors
/// No code size, or zero sizes.
pub fn autoencoder_config(config: &RunConfig, d_input: usize) -> Result<AutoencoderConfig> {
    let (latent, hidden) = config
        .network
        .hidden
        .split_last()
        .ok_or_else(|| Error::Usage("an autoencoder needs --hidden ...,CODE".into()))?;
    let c = AutoencoderConfig::new(d_input)
        .with_d_latent(*latent)
        .with_d_hidden(hidden.to_vec())
        .with_activation(config.network.activation)
        .with_variational(config.model == "vae");
    c.validate()?;
    Ok(c)
}

/// Checks that `data` are images with every value in `[0, 1]`.
fn check_pixels(config: &RunConfig, data: &Dataset) -> Result<()> {
    if data.image_shape.is_none() || data.features.iter().any(|v| !(0.0..=1.0).contains(v)) {
        return Err(not_images(config));
    }
    Ok(())
}

/// Rows `indices` of `data` as a `[batch, pixels]` tensor on `batcher`'s device.
fn pixels(batcher: &Batcher, data: &Dataset, indices: &[usize]) -> Tensor<2> {
    batcher.batch(data, indices).inputs
}

/// The training loss of a batch: Bernoulli NLL, plus the KL term for a VAE (nats per image).
fn loss(model: &Autoencoder, x: Tensor<2>) -> Tensor<1> {
    let (logits, mean, log_var) = model.forward(x.clone());
    let nll = bernoulli_nll(logits, x);
    if model.variational {
        nll + gaussian_kl(mean, log_var)
    } else {
        nll
    }
}

/// What [`score`] measures on a data set.
struct Scores {
    /// Mean training loss (negative ELBO for a VAE, from one posterior sample per image).
    loss: f64,
    /// Squared error per pixel of the reconstruction from the posterior mean.
    mse: f64,
    /// Bernoulli NLL of the images under the reconstruction from the posterior mean (nats per
    /// image).
    nll: f64,
}

/// Scores `model` on `data` (evaluation mode, `device` without autodiff).
fn score(model: &Autoencoder, data: &Dataset, device: &Device) -> Scores {
    let batcher = Batcher::new(device.clone());
    let all: Vec<usize> = (0..data.len()).collect();
    let (mut l, mut se, mut nll) = (0.0f64, 0.0f64, 0.0f64);
    for chunk in all.chunks(EVAL_BATCH) {
        let x = pixels(&batcher, data, chunk);
        let n = chunk.len() as f64;
        l += scalar(loss(model, x.clone())) as f64 * n;
        let (mean, _) = model.encode(x.clone());
        let logits = model.decode(mean);
        nll += scalar(bernoulli_nll(logits.clone(), x.clone())) as f64 * n;
        let recon = burn::tensor::activation::sigmoid(logits);
        se += scalar((recon - x).powf_scalar(2.0).sum()) as f64;
    }
    let n = data.len().max(1) as f64;
    Scores {
        loss: l / n,
        mse: se / (n * data.n_features.max(1) as f64),
        nll: nll / n,
    }
}

/// The baseline every autoencoder must beat: each pixel predicted by its mean over the training
/// images. Returns its squared error per pixel and its Bernoulli NLL (nats per image) on `data`.
fn mean_image_baseline(train: &Dataset, data: &Dataset) -> (f64, f64) {
    let d = train.n_features.max(1);
    let mut mean = vec![0.0f64; d];
    for row in train.features.chunks(d) {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += *v as f64;
        }
    }
    let n_train = (train.features.len() / d).max(1) as f64;
    mean.iter_mut().for_each(|m| *m /= n_train);
    let (mut se, mut nll) = (0.0f64, 0.0f64);
    for row in data.features.chunks(d) {
        for (&m, &v) in mean.iter().zip(row) {
            let (v, p) = (v as f64, m.clamp(1e-6, 1.0 - 1e-6));
            se += (p - v).powi(2);
            nll -= v * p.ln() + (1.0 - v) * (1.0 - p).ln();
        }
    }
    let n = (data.features.len() / d).max(1) as f64;
    (se / (n * d as f64), nll / n)
}

/// The test metrics of a model with the baselines' beside them: the training mean image, and
/// PCA with as many components as the code has units (fitted on the training images).
fn test_metrics(
    model: &Autoencoder,
    train: &Dataset,
    pca: &Pca,
    test: &Dataset,
    device: &Device,
) -> Result<Value> {
    let s = score(model, test, device);
    let (base_mse, base_nll) = mean_image_baseline(train, test);
    let mut m = json!({
        "mse": s.mse,
        "bce_nats": s.nll,
        "loss": s.loss,
        "baseline_mse": base_mse,
        "baseline_bce_nats": base_nll,
        "baseline": "the training mean image",
        "pca_mse": pca.reconstruction_mse(test)?,
        "pca_components": pca.k,
        "n_samples": test.len(),
    });
    if model.variational {
        m["neg_elbo_nats"] = json!(s.loss);
    }
    Ok(m)
}

/// PCA with as many components as the code has units (at most the pixels).
fn pca_baseline(train: &Dataset, d_latent: usize) -> Result<Pca> {
    Ok(Pca::fit(train, d_latent.min(train.n_features))?)
}

/// One line of test metrics.
fn summary(m: &Value) -> String {
    let f = |k: &str| m[k].as_f64().unwrap_or(f64::NAN);
    let elbo = m
        .get("neg_elbo_nats")
        .and_then(Value::as_f64)
        .map_or(String::new(), |e| format!("  -ELBO {e:.2} nats"));
    format!(
        "mse {:.5}  bce {:.2} nats/image{elbo}  (PCA-{}: mse {:.5}; mean image: mse {:.5}, bce {:.2})",
        f("mse"),
        f("bce_nats"),
        m["pca_components"],
        f("pca_mse"),
        f("baseline_mse"),
        f("baseline_bce_nats")
    )
}

/// The objective: reconstruction (and KL) loss on the training images; validation loss and
/// squared error per pixel.
struct Reconstruct<'a> {
    train: &'a Dataset,
    valid: &'a Dataset,
    batcher: Batcher,
    plain: Device,
}

impl Objective<Autoencoder> for Reconstruct<'_> {
    fn n_train(&self) -> usize {
        self.train.len()
    }

    fn batch_loss(
        &self,
        model: &Autoencoder,
        indices: &[usize],
    ) -> strata_train::Result<Tensor<1>> {
        Ok(loss(model, pixels(&self.batcher, self.train, indices)))
    }

    fn validate(&self, model: &Autoencoder) -> strata_train::Result<(f64, f64)> {
        let s = score(model, self.valid, &self.plain);
        Ok((s.loss, s.mse))
    }

    fn metric_name(&self) -> &str {
        "mse"
    }

    fn lower_metric_is_better(&self) -> bool {
        true
    }
}

/// Trains an autoencoder on the images of `source` and writes the run directory.
fn train(ctx: &Context<'_>, source: Source) -> Result<RunResult> {
    let (config, device, out) = (ctx.config, &ctx.device, ctx.out);
    let (train, valid, test, _) = split_source(source, config)?;
    check_pixels(config, &train)?;
    let prepared = prepare(train, valid, test, config)?;
    let net = autoencoder_config(config, prepared.train.n_features)?;
    ctx.open_run_dir(config, Some(&prepared.preprocess))?;
    ctx.progress.note(&format!(
        "training {} on {} ({} train / {} valid / {} test images, code of {}) with {} on {}",
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
    let objective = Reconstruct {
        train: &prepared.train,
        valid: &prepared.valid,
        batcher: Batcher::new(ad.clone()),
        plain: device.clone(),
    };
    let ckpt = out.join("checkpoints");
    let outcome = fit_objective(model, &objective, &ctx.run(ad, Some(&ckpt), None))?;
    if !write_history(config, out, "mse", &outcome)? {
        return Ok(RunResult::paused(out, outcome.epochs_run));
    }
    let model = outcome.model.valid();
    save_safetensors(&model, &out.join("model.safetensors"))?;
    let mut metrics = run_summary(config, &outcome);
    let pca = pca_baseline(&prepared.train, net.d_latent)?;
    // The test pass draws VAE samples: seeded, so the figure repeats.
    seed_device(device, config.fit.seed);
    metrics["test"] = test_metrics(&model, &prepared.train, &pca, &prepared.test, device)?;
    metrics["valid"] = test_metrics(&model, &prepared.train, &pca, &prepared.valid, device)?;
    write_metrics(out, &metrics)?;
    let line = format!(
        "test {}  ({})",
        summary(&metrics["test"]),
        run_line(config, &outcome)
    );
    Ok(RunResult::finished(out, &outcome, metrics, line))
}

/// Re-evaluates an autoencoder run on its test split, or on `dataset`'s images.
fn evaluate(dir: &Path, backend: Option<&str>, dataset: Option<&str>) -> Result<Evaluated> {
    let config = load_run_config(dir, backend)?;
    let pre = Preprocess::load(dir)?;
    let device = config.backend.usable_device()?;
    let net = autoencoder_config(&config, pre.n_features)?;
    let model = load_weights(net.init(&device)?, &config.model, &finished_weights(dir)?)?;
    let load = |spec: &str| {
        strata_data::load_source(spec, &config.label, strata_data::Encoding::OneHot)
            .map_err(Error::from)
    };
    let (train, _, test, _) = split_source(load(&config.dataset)?, &config)?;
    let (name, data) = match dataset {
        None => (format!("{} (test split)", config.dataset), test),
        Some(spec) => match load(spec)? {
            Source::Single(d) => (spec.to_string(), d),
            Source::TrainTest(_, t) => (format!("{spec} (test set)"), t),
            _ => return Err(not_images(&config)),
        },
    };
    let mut data = data;
    pre.apply(&mut data)?;
    check_pixels(&config, &data)?;
    let pca = pca_baseline(&train, net.d_latent)?;
    seed_device(&device, config.fit.seed);
    let m = test_metrics(&model, &train, &pca, &data, &device)?;
    let out = json!({
        "model": config.model,
        "dataset": name,
        "backend": config.backend.name(),
        "test": m,
    });
    let path = dir.join("evaluation.json");
    write_json(&path, &out)?;
    Ok(Evaluated {
        summary: format!("{name}: {}", summary(&out["test"])),
        metrics: out,
        written: Some(path),
    })
}
