//! How a GAN run is measured, without downloaded weights: in the penultimate features of a
//! Strata classifier trained on the same data (the run's `evaluator/`, or a finished run named
//! by `[gan] evaluator`), or in the raw coordinates of 2-D points.
//!
//! - `fid` and `kid` of generated samples against the test split, printed beside the floor
//!   (training rows against the test split: what real data scores) and an untrained
//!   generator's value;
//! - `precision` and `recall` of the generated distribution (k = 3);
//! - conditional GANs: `gan_test_accuracy` (the evaluator's accuracy on samples of each
//!   class) and `gan_train_accuracy` (real-test accuracy of a classifier of the evaluator's
//!   kind trained only on generated samples);
//! - 2-D points of the ring: modes covered and the share of high-quality samples.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use serde_json::{Value, json};
use strata_data::{Dataset, RING_MODES, Source, Targets};
use strata_metrics::{
    accuracy, argmax_rows, frechet_distance, kernel_distance, mode_coverage, precision_recall,
};
use strata_tensor::convert::to_vec;
use strata_tensor::seed_device;
use strata_train::Progress;

use super::gan_config;
use super::run::GanRun;
use crate::config::RunConfig;
use crate::error::{Error, Result};
use crate::family::family;
use crate::pipeline::Context;

/// KID's subsets and their size (Binkowski et al. used 100 of 1000; 50 keep it quick).
const KID_SUBSETS: usize = 50;
const KID_SUBSET_SIZE: usize = 1000;
/// Precision and recall compare at most this many rows of each set (their cost is quadratic).
const PR_ROWS: usize = 5000;
/// A ring mode is covered by at least this many high-quality samples of 2,500 (PacGAN's count).
const RING_SAMPLES: usize = 2500;
const RING_MIN: usize = 20;

/// The feature space samples are measured in.
pub(crate) enum Features {
    /// A classifier's penultimate features, and where the classifier is.
    Classifier(Box<crate::Run>),
    /// The rows themselves (2-D points).
    Raw,
}

impl Features {
    /// What the features are, for `metrics.json`.
    fn describe(&self) -> Value {
        match self {
            Features::Classifier(run) => {
                let accuracy = std::fs::read_to_string(run.dir.join("metrics.json"))
                    .ok()
                    .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                    .and_then(|m| m["test"]["accuracy"].as_f64());
                json!({
                    "kind": "penultimate features",
                    "model": run.config.model,
                    "run": run.dir.display().to_string(),
                    "test_accuracy": accuracy,
                })
            }
            Features::Raw => json!({ "kind": "raw coordinates" }),
        }
    }

    /// The features of rows in the data's units, and their width.
    fn of(&self, rows: &[f32], width: usize) -> Result<(Vec<f32>, usize)> {
        match self {
            Features::Raw => Ok((rows.to_vec(), width)),
            Features::Classifier(run) => {
                let (out, dim) = by_chunks(run, rows, width, |t| run.model.features_flat(t))?;
                Ok((out, dim))
            }
        }
    }

    /// The classifier's predicted classes of rows in the data's units.
    fn predict(&self, rows: &[f32], width: usize) -> Result<Vec<usize>> {
        let Features::Classifier(run) = self else {
            return Err(Error::Usage("no classifier to predict with".into()));
        };
        let (logits, k) = by_chunks(run, rows, width, |t| Ok(run.model.forward_flat(t)))?;
        Ok(argmax_rows(&logits, k))
    }
}

/// `f` of rows in the data's units, preprocessed as the classifier run was trained and fed in
/// chunks of 500: the outputs, row-major, and their width.
fn by_chunks(
    run: &crate::Run,
    rows: &[f32],
    width: usize,
    f: impl Fn(Tensor<2>) -> strata_arch::Result<Tensor<2>>,
) -> Result<(Vec<f32>, usize)> {
    let mut x = rows.to_vec();
    if let Some(s) = &run.preprocess.standardizer {
        s.transform_rows(&mut x)?;
    }
    let (mut out, mut dim) = (Vec::new(), 0);
    for chunk in x.chunks(500 * width) {
        let n = chunk.len() / width;
        let t = Tensor::<2>::from_data(TensorData::new(chunk.to_vec(), [n, width]), &run.device);
        let y = f(t)?;
        dim = y.dims()[1];
        out.extend(to_vec(y));
    }
    Ok((out, dim))
}

/// The classifier a GAN's data calls for: a CNN for images, an MLP for rows.
fn classifier_model(data: &Dataset) -> &'static str {
    if data.image_shape.is_some() {
        "cnn"
    } else {
        "mlp"
    }
}

/// Epochs of the classifiers a GAN run trains (its evaluator, its GAN-train classifier): at
/// most this many of their recipe's.
const CLASSIFIER_EPOCHS: usize = 5;

/// The settings of a classifier of `model` on the GAN run's data, seed and backend, at most
/// [`CLASSIFIER_EPOCHS`] epochs.
fn classifier_config(config: &RunConfig, model: &str) -> RunConfig {
    let mut c = RunConfig::defaults_for(model, &config.dataset);
    c.fit.epochs = c.fit.epochs.min(CLASSIFIER_EPOCHS);
    c.backend = config.backend;
    c.fit.seed = config.fit.seed;
    c.fit.progress = config.fit.progress;
    c.valid_fraction = config.valid_fraction;
    c.test_fraction = config.test_fraction;
    c.label = config.label.clone();
    c.image_shape = config.image_shape;
    c.resize = config.resize;
    c.train_fraction = config.train_fraction;
    c
}

/// Trains a classifier of `config` on `source` into `out`; its `metrics.json`.
fn train_classifier(
    config: &RunConfig,
    source: Source,
    out: &Path,
    device: &Device,
    progress: &dyn Progress,
) -> Result<Value> {
    let ctx = Context {
        config,
        device: device.clone(),
        out,
        resume: false,
        pause_after: None,
        progress,
        collective: None,
    };
    Ok(family(&config.model)?.train(&ctx, source)?.metrics)
}

/// The feature space of a run: the named evaluator, raw coordinates for 2-D points, or a
/// classifier trained now into `out/evaluator` on the same data (its splits are the GAN's: the
/// same seed and fractions).
pub(crate) fn features(
    ctx: &Context<'_>,
    train: &Dataset,
    source: impl FnOnce() -> Result<Source>,
) -> Result<Features> {
    let config = ctx.config;
    if let Some(dir) = &config.gan.evaluator {
        let run = crate::Run::open_on(dir, Some(config.backend.name()))?;
        if run.preprocess.n_features != train.n_features {
            return Err(Error::Usage(format!(
                "the evaluator {} reads rows of {} features; {} has {}",
                dir.display(),
                run.preprocess.n_features,
                config.dataset,
                train.n_features
            )));
        }
        return Ok(Features::Classifier(Box::new(run)));
    }
    if train.n_features == 2 || train.labels().is_none() {
        return Ok(Features::Raw);
    }
    let c = classifier_config(config, classifier_model(train));
    let dir = ctx.out.join("evaluator");
    ctx.progress.note(&format!(
        "training the evaluating classifier ({} on {}) into {}",
        c.model,
        c.dataset,
        dir.display()
    ));
    train_classifier(&c, source()?, &dir, &ctx.device, ctx.progress)?;
    Ok(Features::Classifier(Box::new(crate::Run::open_on(
        &dir,
        Some(config.backend.name()),
    )?)))
}

/// The first `n` rows' values.
fn first(rows: &[f32], width: usize, n: usize) -> &[f32] {
    &rows[..(n * width).min(rows.len())]
}

/// FID, KID (mean and standard deviation) of `a` against `b`.
fn distances(a: &[f32], b: &[f32], dim: usize, seed: u64) -> Result<Value> {
    let fid = frechet_distance(a, b, dim)?;
    let (kid, kid_std) = kernel_distance(a, b, dim, KID_SUBSETS, KID_SUBSET_SIZE, seed)?;
    Ok(json!({ "fid": fid, "kid": kid, "kid_std": kid_std }))
}

/// Everything a finished GAN run is measured by (`test` in `metrics.json`). `train` and `test`
/// are the raw splits (the data's units).
pub(crate) fn report(
    run: &GanRun,
    features: &Features,
    train: &Dataset,
    test: &Dataset,
    ctx: &Context<'_>,
) -> Result<Value> {
    let config = &run.config;
    let width = train.n_features;
    let seed = config.fit.seed;
    let n = config.gan.eval_samples.unwrap_or(test.len()).min(10_000);
    let k = run.model.n_classes;
    // Conditional samples cycle through the classes; unconditional ones take none.
    let classes: Option<Vec<usize>> = (k > 0).then(|| (0..n).map(|i| i % k).collect());
    let fake = run.sample_classes(n, classes.as_deref(), seed ^ 0x6A4E)?;
    // An untrained generator: the same architecture and seed, before any step.
    let untrained = {
        let pre = &run.preprocess;
        seed_device(&run.device, seed);
        let model = gan_config(config, pre)?.init(&run.device)?;
        let fresh = GanRun {
            dir: run.dir.clone(),
            config: config.clone(),
            preprocess: pre.clone(),
            model,
            device: run.device.clone(),
        };
        fresh.sample_classes(n, classes.as_deref(), seed ^ 0x6A4E)?
    };
    let test_rows = first(&test.features, width, n);
    let train_rows = first(&train.features, width, n.min(test.len()));
    let (f_test, dim) = features.of(test_rows, width)?;
    let (f_fake, _) = features.of(&fake, width)?;
    let (f_train, _) = features.of(train_rows, width)?;
    let (f_untrained, _) = features.of(&untrained, width)?;
    let mut m = distances(&f_fake, &f_test, dim, seed)?;
    let (precision, recall) = precision_recall(
        first(&f_test, dim, PR_ROWS),
        first(&f_fake, dim, PR_ROWS),
        dim,
        3,
    )?;
    m["precision"] = json!(precision);
    m["recall"] = json!(recall);
    m["samples"] = json!(n);
    m["features"] = features.describe();
    m["real_floor"] = distances(&f_train, &f_test, dim, seed)?;
    m["untrained"] = distances(&f_untrained, &f_test, dim, seed)?;
    if let Some(dir) = &config.gan.compare {
        let vae = crate::AutoencoderRun::open(dir, Some(config.backend.name()))?;
        if vae.preprocess.n_features != width {
            return Err(Error::Usage(format!(
                "{}: its rows have {} values, the GAN's {width}",
                dir.display(),
                vae.preprocess.n_features
            )));
        }
        let samples = vae.sample(n, None, seed ^ 0x6A4E)?;
        let (f_vae, _) = features.of(&samples, width)?;
        let mut c = distances(&f_vae, &f_test, dim, seed)?;
        let (p, r) = precision_recall(
            first(&f_test, dim, PR_ROWS),
            first(&f_vae, dim, PR_ROWS),
            dim,
            3,
        )?;
        c["precision"] = json!(p);
        c["recall"] = json!(r);
        c["run"] = json!(dir.display().to_string());
        c["model"] = json!(vae.config.model);
        m["compared"] = c;
    }
    if width == 2 && config.dataset == "ring8" {
        let points = run.sample_classes(RING_SAMPLES, None, seed ^ 0x41)?;
        let cover = mode_coverage(&points, &RING_MODES.centres(), RING_MODES.std, RING_MIN)?;
        m["modes_covered"] = json!(cover.modes_covered);
        m["modes"] = json!(cover.modes);
        m["high_quality"] = json!(cover.high_quality);
        m["per_mode"] = json!(cover.per_mode);
    }
    if let (Some(classes), Features::Classifier(_)) = (&classes, features) {
        let predicted = features.predict(&fake, width)?;
        m["gan_test_accuracy"] = json!(accuracy(classes, &predicted)?);
        m["gan_train_accuracy"] = json!(gan_train(run, features, train, test, ctx)?);
    }
    Ok(m)
}

/// The real-test accuracy of a classifier of the evaluator's kind trained only on generated
/// samples (as many as the training split, classes in turn), in `out/gan-train`.
fn gan_train(
    run: &GanRun,
    features: &Features,
    train: &Dataset,
    test: &Dataset,
    ctx: &Context<'_>,
) -> Result<f64> {
    let Features::Classifier(evaluator) = features else {
        return Err(Error::Usage("GAN-train needs a classifier".into()));
    };
    let k = run.model.n_classes;
    let n = train.len();
    let labels: Vec<usize> = (0..n).map(|i| i % k).collect();
    let rows = run.sample_classes(n, Some(&labels), run.config.fit.seed ^ 0x7A41)?;
    let names = run.class_names();
    let generated = Dataset::new(
        "generated",
        rows,
        train.n_features,
        Targets::Classes { labels, names },
        train.image_shape,
    )?;
    let c = classifier_config(&run.config, &evaluator.config.model);
    let dir = ctx.out.join("gan-train");
    ctx.progress.note(&format!(
        "GAN-train: {} on {n} generated samples, tested on the real test split",
        c.model
    ));
    let metrics = train_classifier(
        &c,
        Source::TrainTest(generated, test.clone()),
        &dir,
        &ctx.device,
        ctx.progress,
    )?;
    metrics["test"]["accuracy"]
        .as_f64()
        .ok_or_else(|| Error::Usage("the GAN-train classifier reported no accuracy".into()))
}

/// `fid 12.3 (floor 1.2, untrained 345.6)  precision 0.71  recall 0.52 ...`.
pub(crate) fn summary(m: &Value) -> String {
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let mut s = format!(
        "fid {:.2} (real floor {:.2}, untrained {:.2})  kid {:.4}  precision {:.3}  recall {:.3}",
        f(&m["fid"]),
        f(&m["real_floor"]["fid"]),
        f(&m["untrained"]["fid"]),
        f(&m["kid"]),
        f(&m["precision"]),
        f(&m["recall"])
    );
    if let Some(fid) = m["compared"]["fid"].as_f64() {
        s.push_str(&format!(
            "  {} fid {fid:.2}",
            m["compared"]["model"].as_str().unwrap_or("vae")
        ));
    }
    if let Some(c) = m["modes_covered"].as_u64() {
        s.push_str(&format!(
            "  modes {c}/{}  high-quality {:.3}",
            m["modes"],
            f(&m["high_quality"])
        ));
    }
    if m.get("gan_test_accuracy").is_some() {
        s.push_str(&format!(
            "  GAN-test {:.3}  GAN-train {:.3}",
            f(&m["gan_test_accuracy"]),
            f(&m["gan_train_accuracy"])
        ));
    }
    s
}
