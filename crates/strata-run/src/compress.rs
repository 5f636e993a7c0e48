//! Smaller models from finished runs ([`compress`], `strata compress`): global magnitude
//! pruning ([`strata_train::Masks`]) to a target sparsity, optionally fine-tuned with the
//! pruned weights held at zero, written as a run that `evaluate` and `predict` load as any
//! other; int8 weights on disk ([`crate::quantize_file`]), pruned or not; and a
//! sparsity-against-accuracy curve (`sparsity.csv`, `sparsity.png`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use burn::module::Module;
use serde_json::{Value, json};
use strata_arch::Network;
use strata_train::{Fit, Masks, Progress, fit_with_loss, zeros};

use crate::data::Prepared;
use crate::error::{Error, Result};
use crate::evaluate::{Run, load_run, score};
use crate::family::{family, network_config};
use crate::pictures::{LineChart, save_png};
use crate::quantize::{Granularity, INT8_WEIGHTS, quantize_file};
use crate::run_dir::{finished_weights, load_safetensors, save_safetensors, write_json};

/// What [`compress`] does to a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Compress {
    /// Global magnitude pruning to this share of zero weights, in `[0, 1)`.
    pub prune: Option<f64>,
    /// Epochs of fine-tuning after pruning (0: none), at a tenth of the run's learning rate.
    pub fine_tune_epochs: usize,
    /// Sparsities at which to measure the test accuracy for `sparsity.csv` and `.png`.
    pub curve: Vec<f64>,
    /// Structured pruning: remove this share of each convolution's channels (CNN, VGG), each
    /// hidden layer's units (MLP) or each residual block's inner channels (ResNet), smallest L1
    /// norm first, rebuilding the layers smaller.
    pub channels: Option<f64>,
    /// Store the (pruned) weights in int8 ([`crate::quantize_file`]) with one scale per tensor
    /// or per output channel.
    pub quantize: Option<Granularity>,
    /// With `quantize`: static quantisation, the input scale of each int8 layer fixed to the
    /// largest input magnitude it sees over this many batches of training samples (spread
    /// evenly over the training split), stored with the weights. `None`: dynamic scales.
    pub calibrate: Option<usize>,
}

impl Compress {
    /// Checks the sparsities.
    ///
    /// # Errors
    /// A sparsity outside `[0, 1)`, nothing to do.
    pub fn validate(&self) -> Result<()> {
        if let Some(c) = self.channels
            && !(0.0..1.0).contains(&c)
        {
            return Err(Error::Usage(format!(
                "--prune-channels must be in [0, 1) (the share of channels removed), got {c}"
            )));
        }
        for s in self.prune.iter().chain(&self.curve) {
            if !(0.0..1.0).contains(s) {
                return Err(Error::Usage(format!(
                    "a sparsity must be in [0, 1) (the share of weights set to zero), got {s}"
                )));
            }
        }
        match (self.calibrate, self.quantize) {
            (Some(0), _) => {
                return Err(Error::Usage("--calibrate needs at least one batch".into()));
            }
            (Some(_), None) => {
                return Err(Error::Usage("--calibrate goes with --quantize int8".into()));
            }
            _ => {}
        }
        if self.prune.is_none()
            && self.curve.is_empty()
            && self.quantize.is_none()
            && self.channels.is_none()
        {
            return Err(Error::Usage(
                "nothing to do: give --prune SPARSITY, --prune-channels SHARE, --quantize int8 or --curve S1,S2,...".into(),
            ));
        }
        Ok(())
    }
}

/// What [`compress`] gave: one line, the pruned run's metrics, the files written.
#[derive(Debug, Clone)]
pub struct Compressed {
    /// E.g. `pruned to 0.80 sparsity: test accuracy 0.9805 (was 0.9889)`.
    pub summary: String,
    /// The pruned run's `metrics.json` (or the curve alone).
    pub metrics: Value,
    /// The files written.
    pub written: Vec<PathBuf>,
}

/// Compresses the finished run in `dir` as `request` says. With `prune` or `quantize`, writes
/// the pruned (and fine-tuned) and/or int8 model into `out` as a run of its own
/// (`config.toml`, `preprocess.json`, `model.safetensors` or `model.int8.safetensors`,
/// `metrics.json` with a `compression` block), scored as loaded back; with `curve`, writes
/// `sparsity.csv` and `sparsity.png` into `out`. Fine-tuning reports to `progress`.
///
/// ```no_run
/// use strata_run::{Compress, compress, Silent};
/// let request = Compress {
///     prune: Some(0.8),
///     fine_tune_epochs: 2,
///     curve: vec![],
///     quantize: Some(strata_run::Granularity::PerChannel),
///     channels: None,
///     calibrate: Some(8),
/// };
/// let done = compress("runs/cnn", "runs/cnn-pruned", &request, &Silent)?;
/// println!("{}", done.summary);
/// # Ok::<(), strata_run::Error>(())
/// ```
///
/// # Errors
/// A sparsity outside `[0, 1)`, a directory that is not a finished run of a classifier or
/// regressor trained on samples, an `out` that is the run itself, training and I/O errors.
pub fn compress(
    dir: impl AsRef<Path>,
    out: impl AsRef<Path>,
    request: &Compress,
    progress: &dyn Progress,
) -> Result<Compressed> {
    let (dir, out) = (dir.as_ref(), out.as_ref());
    request.validate()?;
    let run = load_run(dir, None)?;
    if !family(&run.config.model)?.adversarial_training() || run.preprocess.series.is_some() {
        return Err(Error::Usage(format!(
            "compress prunes classifiers and regressors trained on samples; {} is a {} run",
            dir.display(),
            run.config.model
        )));
    }
    if out.exists() && same_dir(dir, out) {
        return Err(Error::Usage(format!(
            "--out {} is the run itself: give a new directory",
            out.display()
        )));
    }
    let prepared = run.splits()?;
    let (_, _, original) = score(&run, "test split", &prepared.test)?;
    let original_parameters = run.model.num_params();
    let original_weights = finished_weights(dir)?;
    let mut written = Vec::new();
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let mut metrics = json!({});
    let mut summary = String::new();
    if !request.curve.is_empty() {
        let mut csv = String::from("sparsity,test_accuracy");
        if request.fine_tune_epochs > 0 {
            csv.push_str(",test_accuracy_fine_tuned");
        }
        csv.push('\n');
        let mut points = Vec::new();
        let mut sorted = request.curve.clone();
        sorted.sort_by(f64::total_cmp);
        sorted.dedup();
        for &s in &sorted {
            let (one_shot, _) = pruned(&run, &prepared, s, 0, progress)?;
            let mut last = headline(&run, &prepared, one_shot)?;
            let _ = write!(csv, "{s},{last:.6}");
            if request.fine_tune_epochs > 0 {
                let (tuned, _) = pruned(&run, &prepared, s, request.fine_tune_epochs, progress)?;
                last = headline(&run, &prepared, tuned)?;
                let _ = write!(csv, ",{last:.6}");
            }
            csv.push('\n');
            points.push((s, last));
        }
        let path = out.join("sparsity.csv");
        strata_train::write_atomic(&path, csv.as_bytes())?;
        written.push(path);
        if points.len() >= 2 {
            let png = out.join("sparsity.png");
            let tuned = if request.fine_tune_epochs > 0 {
                format!(", {} epochs fine-tuned", request.fine_tune_epochs)
            } else {
                String::new()
            };
            let chart = LineChart {
                width: 480,
                height: 320,
                title: format!("{}: test accuracy after pruning{tuned}", run.config.model),
                x_label: "sparsity (share of weights at zero)".into(),
            };
            save_png(&chart.draw(&points)?, &png)?;
            written.push(png);
        }
        metrics["curve"] = json!(
            points
                .iter()
                .map(|(s, a)| json!({"sparsity": s, "test_accuracy": a}))
                .collect::<Vec<_>>()
        );
        let _ = write!(summary, "sparsity curve over {} points", points.len());
    }
    if request.prune.is_some() || request.quantize.is_some() || request.channels.is_some() {
        let s = request.prune.unwrap_or(0.0);
        // Structured pruning first: a smaller run in `out`, the base of what follows.
        let config = match request.channels {
            Some(share) => {
                let (bytes, smaller) =
                    crate::shrink::shrink(&original_weights, &run.config, share)?;
                strata_train::write_atomic(&out.join("model.safetensors"), &bytes)?;
                smaller
            }
            None => run.config.clone(),
        };
        config.save(out)?;
        run.preprocess.save(out)?;
        let base = match request.channels {
            Some(_) => load_run(out, None)?,
            None => run.clone(),
        };
        let run = &base;
        let (model, masks) = pruned(run, &prepared, s, request.fine_tune_epochs, progress)?;
        let float = out.join("model.safetensors");
        save_safetensors(&model, &float)?;
        let quantized = match request.quantize {
            Some(g) => {
                let scales = match request.calibrate {
                    Some(batches) => calibrate(run, &float, &prepared, g, batches)?,
                    None => BTreeMap::new(),
                };
                let int8 = out.join(INT8_WEIGHTS);
                let mut report = quantize_file(&float, &int8, g, &scales)?;
                report.calibration_batches = request.calibrate;
                std::fs::remove_file(&float).map_err(|e| Error::io(&float, e))?;
                Some((int8, report))
            }
            None => None,
        };
        // The written run, loaded back as `evaluate` loads it.
        let written_run = load_run(out, None)?;
        let weights = finished_weights(out)?;
        let (_, mut m, ev) = score(&written_run, "test split", &prepared.test)?;
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        m["compression"] = json!({
            "from": dir,
            "channels": request.channels.map(|share| json!({
                "method": "structured: smallest L1 norm of incoming weights",
                "share_removed": share,
                "channels": run.config.network.channels,
                "hidden": run.config.network.hidden,
                "inner": written_run.config.network.inner,
                "parameters": written_run.model.num_params(),
                "original_parameters": original_parameters,
            })),
            "pruning": request.prune.map(|_| json!({
                "method": "global magnitude pruning",
                "sparsity": s,
                "weights_pruned": masks.covered() - masks.kept(),
                "weights_covered": masks.covered(),
                "fine_tune_epochs": request.fine_tune_epochs,
            })),
            "quantization": quantized.as_ref().map(|(_, r)| r),
            "zero_parameters": zeros(&written_run.model),
            "original_test": crate::pipeline::metrics_json(&original),
            "size_bytes": size(&weights),
            "original_size_bytes": size(&original_weights),
        });
        let path = out.join("metrics.json");
        write_json(&path, &m)?;
        written.extend([weights.clone(), path]);
        if !summary.is_empty() {
            summary.push_str("; ");
        }
        let mut what = Vec::new();
        if let Some(share) = request.channels {
            what.push(format!(
                "{share} of the channels removed ({} parameters, was {original_parameters})",
                written_run.model.num_params()
            ));
        }
        if request.prune.is_some() {
            what.push(format!("pruned to {s} sparsity"));
        }
        if request.fine_tune_epochs > 0 && (request.prune.is_some() || request.channels.is_some()) {
            what.push(format!("fine-tuned {} epochs", request.fine_tune_epochs));
        }
        if let Some((_, r)) = &quantized {
            what.push(format!(
                "int8 {}",
                match r.granularity {
                    Granularity::PerTensor => "per tensor",
                    Granularity::PerChannel => "per channel",
                }
            ));
        }
        let _ = write!(
            summary,
            "{}: test {} (was {}); {} bytes on disk (was {})",
            what.join(", "),
            crate::pipeline::summary_line(&ev),
            crate::pipeline::summary_line(&original),
            size(&weights),
            size(&original_weights),
        );
        metrics = m;
    }
    Ok(Compressed {
        summary,
        metrics,
        written,
    })
}

/// The input scales of the int8 layers of the model in `float` (quantised with `granularity`
/// as a run loads it), each fixed to the largest input magnitude the layer sees over
/// `batches` batches of the run's batch size, their samples spread evenly over the training
/// split.
fn calibrate(
    run: &Run,
    float: &Path,
    prepared: &Prepared,
    granularity: Granularity,
    batches: usize,
) -> Result<BTreeMap<String, f32>> {
    let n_out = crate::data::n_outputs(prepared.train.task(), &run.config);
    let net = network_config(&run.config, &run.preprocess, n_out)?;
    let device = run.device.clone().without_autodiff();
    let mut model = load_safetensors(&net, float, &device)?;
    if !model.quantize_int8(granularity == Granularity::PerChannel) {
        return Ok(BTreeMap::new());
    }
    for (_, input) in model.int8_inputs_mut() {
        input.observe();
    }
    let train = &prepared.train;
    let batch = run.config.fit.batch_size.max(1);
    let n = (batches * batch).min(train.len());
    let order: Vec<usize> = (0..n).map(|k| k * train.len() / n.max(1)).collect();
    let batcher = strata_data::Batcher::new(device);
    for b in batcher.batches(train, &order, batch) {
        let _ = model.forward_flat(b.inputs).into_data();
    }
    Ok(model
        .int8_inputs_mut()
        .into_iter()
        .filter_map(|(name, input)| match input.calibrate() {
            strata_kernels::int8::InputScale::Static(s) => Some((name, s)),
            strata_kernels::int8::InputScale::Dynamic => None,
        })
        .collect())
}

/// Whether two existing paths name one directory.
fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// The test split's headline figure (accuracy, or RMSE) of `model` in place of `run`'s.
fn headline(run: &Run, prepared: &Prepared, model: Network) -> Result<f64> {
    let r = Run {
        model,
        ..run.clone()
    };
    Ok(score(&r, "test split", &prepared.test)?.2.report.headline())
}

/// `run`'s model pruned to `sparsity`, then fine-tuned `epochs` epochs on its training split
/// at a tenth of its learning rate with the pruned weights held at zero; and the masks.
fn pruned(
    run: &Run,
    prepared: &Prepared,
    sparsity: f64,
    epochs: usize,
    progress: &dyn Progress,
) -> Result<(Network, Masks)> {
    if epochs == 0 {
        let masks = Masks::magnitude(&run.model, sparsity)?;
        return Ok((masks.prune(run.model.clone()), masks));
    }
    let config = &run.config;
    let ad = run.device.clone().autodiff();
    strata_tensor::seed_device(&ad, config.fit.seed);
    let n_out = crate::data::n_outputs(prepared.train.task(), config);
    let net = network_config(config, &run.preprocess, n_out)?;
    // The same weights on the autodiff device; the masks name its parameters.
    let model = load_safetensors(&net, &finished_weights(&run.dir)?, &ad)?;
    let masks = Masks::magnitude(&model, sparsity)?;
    let loss = config.loss.init(&ad)?;
    let optimizer = strata_train::OptimizerConfig {
        lr: config.optimizer.lr / 10.0,
        ..config.optimizer.clone()
    };
    let fit = strata_train::FitConfig {
        epochs,
        ..config.fit.clone()
    };
    let f = Fit {
        forward: |m: &Network, x| m.forward_flat(x),
        loss: loss.as_ref(),
        augment: Some(&config.augment),
        run: strata_train::Run {
            progress: Some(progress),
            ..strata_train::Run::new(&optimizer, &config.schedule, &fit, ad)
        },
    };
    let masked = |m: &Network, x, targets: &strata_tensor::TargetBatch| {
        Ok(loss.forward(masks.apply(m.clone()).forward_flat(x), targets)?)
    };
    let out = fit_with_loss(
        masks.prune(model),
        &prepared.train,
        &prepared.valid,
        &f,
        masked,
    )?;
    Ok((masks.prune(out.model.valid()), masks))
}
