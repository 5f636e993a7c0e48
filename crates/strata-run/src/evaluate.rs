//! A finished run loaded back ([`Run::open`]) and its evaluation on its test split or on
//! another data set ([`evaluate`]).

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use strata_arch::Network;
use strata_data::{Dataset, Source, load_series, load_source};
use strata_tensor::Backend;
use strata_train::{Evaluation, evaluate as evaluate_model};

use crate::config::RunConfig;
use crate::data::{Preprocess, n_outputs, split_source};
use crate::error::{Error, Result};
use crate::family::{family, network_config};
use crate::forecast::{forecast_metrics, prepare_series};
use crate::language::{load_lm, split_text};
use crate::pipeline::{metrics_json, summary_line};
use crate::run_dir::{finished_weights, load_safetensors, write_json};

/// A finished run loaded back for inference: its config, preprocessing and model (a
/// classifier, a regressor or a forecaster; language-model and seq2seq runs are used through
/// [`generate`](crate::generate())).
///
/// ```no_run
/// let run = strata_run::Run::open("runs/cnn-digits")?;
/// let predictions = run.predict_file("new-digits.csv")?;
/// println!("{}", predictions.to_csv());
/// # Ok::<(), strata_run::Error>(())
/// ```
#[derive(Clone)]
pub struct Run {
    /// The run directory.
    pub dir: PathBuf,
    /// The run's config.
    pub config: RunConfig,
    /// Its preprocessing.
    pub preprocess: Preprocess,
    /// The model in evaluation mode.
    pub model: Network,
    /// The device it lives on.
    pub device: burn::tensor::Device,
}

impl Run {
    /// Loads the finished run in `dir` on the backend it was trained on.
    ///
    /// # Errors
    /// A directory that is not a finished run, or weights that do not fit its config.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        load_run(dir.as_ref(), None)
    }

    /// Loads the finished run in `dir` on `backend` (`flex`, `ndarray`, `wgpu`), or on its
    /// own when `None`.
    ///
    /// # Errors
    /// As [`Run::open`], and an unknown or unusable backend.
    pub fn open_on(dir: impl AsRef<Path>, backend: Option<&str>) -> Result<Self> {
        load_run(dir.as_ref(), backend)
    }

    /// The run's training, validation and test splits as it trained on them (the same seed
    /// and fractions), preprocessed by its own preprocessing.
    pub(crate) fn splits(&self) -> Result<crate::data::Prepared> {
        let config = &self.config;
        let encoding = family(&config.model)?.encoding(&config.model);
        let source = load_source(&config.dataset, &config.label, encoding)?;
        let (mut train, mut valid, mut test, _) = split_source(source, config)?;
        for d in [&mut train, &mut valid, &mut test] {
            self.preprocess.apply(d)?;
        }
        Ok(crate::data::Prepared {
            train,
            valid,
            test,
            preprocess: self.preprocess.clone(),
        })
    }
}

/// What an evaluation gave: one line, its metrics, and the file it wrote (`evaluation.json`)
/// if any.
#[derive(Debug, Clone)]
pub struct Evaluated {
    /// One line of metrics, e.g. `digits (test split): accuracy 0.9833  macro F1 ...`.
    pub summary: String,
    /// The metrics.
    pub metrics: Value,
    /// The `evaluation.json` written, if any.
    pub written: Option<PathBuf>,
}

/// Evaluates the finished run in `dir` on its test split, or on `dataset` (a data-set spec),
/// on `backend` or its own; writes `evaluation.json` into the run for classifiers,
/// regressors, forecasters and language models.
///
/// # Errors
/// A directory that is not a finished run, data that does not fit the model.
pub fn evaluate(
    dir: impl AsRef<Path>,
    backend: Option<&str>,
    dataset: Option<&str>,
) -> Result<Evaluated> {
    let dir = dir.as_ref();
    let config = load_run_config(dir, backend)?;
    family(&config.model)?.evaluate(dir, backend, dataset)
}

/// Reads a run directory's `config.toml`, with the backend overridden when one is given.
///
/// # Errors
/// A directory without `config.toml`, an unreadable config, an unknown backend.
pub fn load_run_config(dir: &Path, backend: Option<&str>) -> Result<RunConfig> {
    let config_path = dir.join("config.toml");
    if !config_path.exists() {
        return Err(Error::Usage(format!(
            "{} is not a run directory (no config.toml)",
            dir.display()
        )));
    }
    let mut config = RunConfig::load(&config_path)?;
    if let Some(b) = backend {
        config.backend = b.parse::<Backend>()?;
    }
    Ok(config)
}

/// Loads a run directory.
pub(crate) fn load_run(dir: &Path, backend: Option<&str>) -> Result<Run> {
    if let Ok(pre) = Preprocess::load(dir)
        && pre.vocab.is_some()
    {
        return Err(Error::Usage(format!(
            "{} is a language model: use `strata generate --run {}`",
            dir.display(),
            dir.display()
        )));
    }
    let config = load_run_config(dir, backend)?;
    let preprocess = Preprocess::load(dir)?;
    let task = match &preprocess.class_names {
        Some(names) => strata_data::Task::Classification(names.len()),
        None => strata_data::Task::Regression,
    };
    let net = network_config(&config, &preprocess, n_outputs(task, &config))?;
    let device = config.backend.usable_device()?;
    let weights = finished_weights(dir)?;
    let model = load_safetensors(&net, &weights, &device)?;
    Ok(Run {
        dir: dir.to_path_buf(),
        config,
        preprocess,
        model,
        device,
    })
}

/// The evaluation of a run of a family without its own: a language model, a forecaster, a
/// classifier or a regressor.
pub(crate) fn evaluate_default(
    dir: &Path,
    backend: Option<&str>,
    dataset: Option<&str>,
) -> Result<Evaluated> {
    let pre = Preprocess::load(dir).ok();
    if pre.as_ref().is_some_and(|p| p.vocab.is_some()) {
        return evaluate_lm(dir, backend, dataset);
    }
    let run = load_run(dir, backend)?;
    if run.preprocess.series.is_some() {
        return evaluate_forecaster(dataset, &run);
    }
    let (name, data) = samples_to_evaluate(&run, dataset)?;
    evaluate_samples(dir, &run, name, data, None)
}

/// Evaluates the finished classifier or regressor of images in `dir` on its test split (or
/// on `dataset`) with every image first transformed by `perturb` (seeded by `seed`): how a
/// model trained on centred images copes with shifted and rotated ones. The transform works
/// on the images as loaded (pixels in `[0, 1]` for the built-in sets, zeros coming in at the
/// edges), before the run's preprocessing. `evaluation.json` records the transform and seed.
///
/// ```no_run
/// use strata_data::Augment;
/// // Rotations of up to 30 degrees and shifts of up to a tenth of the side.
/// let perturb = Augment::parse("affine:30:0.1")?;
/// let ev = strata_run::evaluate_perturbed("runs/capsnet", None, None, &perturb, 0)?;
/// println!("{}", ev.summary);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// A directory that is not a finished run of a classifier or regressor, data that are not
/// images, a perturbation that changes labels (mixup).
pub fn evaluate_perturbed(
    dir: impl AsRef<Path>,
    backend: Option<&str>,
    dataset: Option<&str>,
    perturb: &strata_data::Augment,
    seed: u64,
) -> Result<Evaluated> {
    let dir = dir.as_ref();
    perturb.validate()?;
    if perturb.mixup.is_some() {
        return Err(Error::Usage(
            "mixup mixes labels; a perturbation transforms test images only (affine, crop, flip, noise, erase)".into(),
        ));
    }
    if perturb.is_empty() {
        return Err(Error::Usage(
            "the perturbation is empty: give one, e.g. affine:30:0.1".into(),
        ));
    }
    let run = load_run(dir, backend)?;
    let Some(shape) = run.preprocess.image_shape else {
        return Err(Error::Usage(format!(
            "{}: a perturbation transforms images; this {} run reads rows of features",
            dir.display(),
            run.config.model
        )));
    };
    let (name, mut data) = samples_to_evaluate(&run, dataset)?;
    perturb.apply(&mut data.features, shape, seed)?;
    let name = format!("{name}, perturbed (seed {seed})");
    evaluate_samples(
        dir,
        &run,
        name,
        data,
        Some(json!({ "perturbation": perturb, "seed": seed })),
    )
}

/// The samples a run is evaluated on, as loaded (before its preprocessing), and their name:
/// its test split, or `dataset`.
pub(crate) fn samples_to_evaluate(run: &Run, dataset: Option<&str>) -> Result<(String, Dataset)> {
    let config = &run.config;
    let encoding = family(&config.model)?.encoding(&config.model);
    let (name, data) = match dataset {
        None => {
            let source = load_source(&config.dataset, &config.label, encoding)?;
            let (_, _, test, _) = split_source(source, config)?;
            (format!("{} (test split)", config.dataset), test)
        }
        Some(spec) if run.preprocess.table.is_some() && !spec.contains(':') && spec != "adult" => {
            return Err(Error::Usage(format!(
                "this {} model reads tables with the columns it was trained on: give --dataset table:PATH",
                config.model
            )));
        }
        Some(spec) if run.preprocess.table.is_some() && spec != "adult" => {
            // Encode with the training schema: an unseen category is an error, not a new code.
            let path = spec.split_once(':').map_or(spec, |(_, p)| p);
            let schema = run.preprocess.table.as_ref().expect("checked above");
            (
                spec.to_string(),
                schema.encode(&strata_data::Table::load(path)?)?,
            )
        }
        Some(spec) => match load_source(spec, &config.label, encoding)? {
            Source::Single(d) => (spec.to_string(), d),
            Source::TrainTest(_, test) => (format!("{spec} (test set)"), test),
            Source::Series(_)
            | Source::Text { .. }
            | Source::Transduction(_)
            | Source::Graph(_) => {
                return Err(Error::Usage(format!(
                    "{spec} is a series, a text, a transduction task or a graph; this {} model was trained on samples of {} features",
                    config.model, run.preprocess.n_features
                )));
            }
        },
    };
    if let (Some(names), Some(got)) = (&run.preprocess.class_names, data.class_names())
        && names.len() != got.len()
    {
        return Err(Error::Usage(format!(
            "the model predicts {} classes, {name} has {}",
            names.len(),
            got.len()
        )));
    }
    Ok((name, data))
}

/// Evaluates `run` on the samples `data` (as loaded) named `name`, and writes
/// `evaluation.json` (with `extra`'s entries).
fn evaluate_samples(
    dir: &Path,
    run: &Run,
    name: String,
    mut data: Dataset,
    extra: Option<Value>,
) -> Result<Evaluated> {
    run.preprocess.apply(&mut data)?;
    let (summary, mut out, _) = score(run, &name, &data)?;
    if let Some(Value::Object(extra)) = extra {
        for (k, v) in extra {
            out[k] = v;
        }
    }
    write_evaluation(dir, summary, out)
}

/// `run`'s evaluation on the preprocessed samples `data` named `name`: its one line, the
/// body of `evaluation.json`, and the evaluation (with the raw outputs).
pub(crate) fn score(run: &Run, name: &str, data: &Dataset) -> Result<(String, Value, Evaluation)> {
    let config = &run.config;
    let loss = config.loss.init(&run.device)?;
    let ev: Evaluation = evaluate_model(
        &run.model,
        &|m: &Network, x| m.forward_flat(x),
        loss.as_ref(),
        data,
        256,
        &run.device,
    )?;
    let summary = format!("{name}: {}", summary_line(&ev));
    let out = json!({
        "model": config.model,
        "parameters": burn::module::Module::num_params(&run.model),
        "dataset": name,
        "backend": config.backend.name(),
        "test": metrics_json(&ev),
    });
    Ok((summary, out, ev))
}

/// Evaluates the finished two-class table classifier in `dir` (on its test split, or on
/// `dataset`) as [`evaluate`] does, and its decisions by group of each of the `sensitive`
/// columns: a `fairness` block in `evaluation.json`, and `DIR/fairness/fairness_COL.csv` and
/// `.png`, as `strata train --sensitive` writes for the test split.
///
/// With `thresholds`, it then fits per-group thresholds on the run's validation split for the
/// best accuracy under that constraint (Hardt et al. 2016, [`strata_metrics::GroupThresholds`];
/// one sensitive column), draws the new decisions with `seed`, and reports them beside the
/// model's own: a `thresholds` block (the rules, the accuracy and the fairness figures after)
/// and `fairness_COL_thresholded.csv` and `.png`.
///
/// ```no_run
/// use strata_metrics::FairnessConstraint;
/// let ev = strata_run::evaluate_fairness(
///     "runs/adult", None, None, &["sex".into()], Some(FairnessConstraint::EqualizedOdds), 0,
/// )?;
/// println!("{}", ev.summary);
/// # Ok::<(), strata_run::Error>(())
/// ```
///
/// # Errors
/// As [`evaluate`]; a run that is not a two-class table classifier, a column it lacks or whose
/// rows hold one group, several columns with `thresholds`, a group of the validation split
/// without both outcomes.
pub fn evaluate_fairness(
    dir: impl AsRef<Path>,
    backend: Option<&str>,
    dataset: Option<&str>,
    sensitive: &[String],
    thresholds: Option<strata_metrics::FairnessConstraint>,
    seed: u64,
) -> Result<Evaluated> {
    let dir = dir.as_ref();
    if sensitive.is_empty() {
        return Err(Error::Usage(
            "name the sensitive columns whose groups to compare, e.g. --sensitive sex".into(),
        ));
    }
    if thresholds.is_some() && sensitive.len() != 1 {
        return Err(Error::Usage(format!(
            "--thresholds fits one column's groups; --sensitive names {}",
            sensitive.len()
        )));
    }
    let run = load_run(dir, backend)?;
    let (name, mut data) = samples_to_evaluate(&run, dataset)?;
    // Refused before any scoring: a run that is not a two-class table classifier.
    crate::fairness::check("--sensitive", sensitive, &data, &run.preprocess)?;
    run.preprocess.apply(&mut data)?;
    let (mut summary, mut out, ev) = score(&run, &name, &data)?;
    let folder = dir.join("fairness");
    std::fs::create_dir_all(&folder).map_err(|e| Error::io(&folder, e))?;
    let pre = &run.preprocess;
    out["fairness"] =
        crate::fairness::report(sensitive, &data, pre, &ev.outputs, &folder, &run.device)?;
    if let Some(constraint) = thresholds {
        let column = &sensitive[0];
        let valid = run.splits()?.valid;
        let (_, _, fit) = score(&run, "validation split", &valid)?;
        let after = crate::fairness::thresholded(
            column,
            constraint,
            (&valid, &fit.outputs),
            (&data, &ev.outputs),
            pre,
            seed,
            &folder,
            &run.device,
        )?;
        summary = format!(
            "{summary}\n{column} thresholds for {}: accuracy {:.4}",
            constraint.name(),
            after["accuracy"].as_f64().unwrap_or(f64::NAN)
        );
        out["thresholds"] = after;
    }
    write_evaluation(dir, summary, out)
}

/// Writes `evaluation.json` (`metrics`) into the run `dir`; the evaluation with its one-line
/// `summary`.
///
/// # Errors
/// I/O errors.
pub(crate) fn write_evaluation(dir: &Path, summary: String, metrics: Value) -> Result<Evaluated> {
    let path = dir.join("evaluation.json");
    write_json(&path, &metrics)?;
    Ok(Evaluated {
        summary,
        metrics,
        written: Some(path),
    })
}

/// Re-evaluates a forecasting run on its series' test period (or on another series).
fn evaluate_forecaster(dataset: Option<&str>, run: &Run) -> Result<Evaluated> {
    let name = dataset.unwrap_or(&run.config.dataset);
    let src = load_series(name)?;
    let prep = prepare_series(&run.config, &src)?;
    let m = forecast_metrics(&run.model, &src, &prep, &run.device)?;
    let t = &m["test"];
    let summary = format!(
        "{name} (test period): rmse {:.3}  mae {:.3}  r2 {:.4}  (seasonal naive rmse {:.3})",
        t["rmse"].as_f64().unwrap_or(f64::NAN),
        t["mae"].as_f64().unwrap_or(f64::NAN),
        t["r2"].as_f64().unwrap_or(f64::NAN),
        t["baseline_rmse"].as_f64().unwrap_or(f64::NAN),
    );
    write_evaluation(
        &run.dir,
        summary,
        json!({
            "model": run.config.model,
            "dataset": name,
            "backend": run.config.backend.name(),
            "test": m["test"],
        }),
    )
}

/// Re-evaluates a language model on its text's test part (or another text's, read with the
/// model's vocabulary).
fn evaluate_lm(dir: &Path, backend: Option<&str>, dataset: Option<&str>) -> Result<Evaluated> {
    let lm = load_lm(dir, backend)?;
    let name = dataset.unwrap_or(&lm.config.dataset);
    let encoding = family(&lm.config.model)?.encoding(&lm.config.model);
    let Source::Text { text, .. } = load_source(name, &lm.config.label, encoding)? else {
        return Err(Error::Usage(format!(
            "{name} is not a text: a language model is evaluated on text (shakespeare, text:PATH)"
        )));
    };
    let (vocab, split) = split_text(&text)?;
    let tokens = if vocab == lm.vocab {
        split.test
    } else {
        // Another text: all of it, in the model's vocabulary.
        lm.vocab.encode(&text)?
    };
    let nats = lm.model.eval_nats(&tokens, &lm.device)?;
    let bpc = nats / std::f64::consts::LN_2;
    let summary = format!("{name}: loss {nats:.4} nats/char ({bpc:.4} bits/char)");
    write_evaluation(
        dir,
        summary,
        json!({
            "model": lm.config.model,
            "dataset": name,
            "backend": lm.config.backend.name(),
            "test": {"loss_nats": nats, "bits_per_char": bpc, "n_chars": tokens.len()},
        }),
    )
}
