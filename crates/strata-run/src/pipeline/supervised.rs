//! Supervised learning on samples: split, preprocess, build the family's network, train
//! (with optional k-fold cross-validation), evaluate on the test split, write the run
//! directory.

use std::path::Path;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use serde_json::{Map, Value, json};
use strata_arch::{Network, check_input};
use strata_data::{Dataset, Source, Standardizer, Task, balanced_class_weights, stratified_kfold};
use strata_loss::LossConfig;
use strata_tensor::{TargetBatch, seed_device};
use strata_train::{
    Evaluation, Fit, FitOutcome, LoadReport, Report, evaluate, fit, fit_tracked, fit_with_loss,
    write_atomic,
};

use super::{Context, RunResult};
use crate::attack::{input_bounds, raw_units, standardised_model};
use crate::config::RunConfig;
use crate::data::{Prepared, n_outputs, prepare, split_source};
use crate::error::{Error, Result};
use crate::family::{Family, network_config};
use crate::run_dir::{
    run_line, run_summary, save_safetensors, write_history, write_json, write_metrics,
};
use crate::transfer::{check_transfer, fine_tune, init_weights};

/// Adapts the loss to the data: regression gets MSE when the loss is the classification
/// default, class weights are computed from the training labels when asked for.
pub(crate) fn fit_loss_to_task(config: &mut RunConfig, train: &Dataset) -> Result<()> {
    match (train.task(), &mut config.loss) {
        (Task::Regression, LossConfig::CrossEntropy { .. }) => config.loss = LossConfig::Mse,
        (Task::Regression, LossConfig::Mse) => {}
        (Task::Regression, other) => {
            return Err(Error::Usage(format!(
                "loss {other:?} needs class labels; `{}` has real-valued labels",
                config.dataset
            )));
        }
        (Task::Classification(_), LossConfig::Mse) => {
            return Err(Error::Usage(format!(
                "mse needs real-valued labels; `{}` has classes (use cross-entropy)",
                config.dataset
            )));
        }
        (Task::Classification(k), LossConfig::Bce) if k != 2 => {
            return Err(Error::Usage(format!(
                "bce needs 2 classes, `{}` has {k}",
                config.dataset
            )));
        }
        (Task::Classification(k), loss) => {
            if config.class_weights {
                let w = balanced_class_weights(train.labels().unwrap_or(&[]), k);
                match loss {
                    LossConfig::CrossEntropy { weights, .. } => *weights = Some(w),
                    LossConfig::Focal { alpha, .. } => *alpha = Some(w),
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

/// Trains one model on `prepared`'s training split, validating on its validation split,
/// checkpointing in `checkpoint_dir`; `resume` continues from its checkpoint.
pub(crate) fn train_once(
    ctx: &Context<'_>,
    config: &RunConfig,
    prepared: &Prepared,
    checkpoint_dir: &Path,
    resume: bool,
) -> Result<(FitOutcome<Network>, Option<LoadReport>)> {
    let train = &prepared.train;
    let n_out = n_outputs(train.task(), config);
    let net_config = network_config(config, &prepared.preprocess, n_out)?;
    check_input(&net_config, train.n_features)?;
    let ad = ctx.device.clone().autodiff();
    seed_device(&ad, config.fit.seed);
    let (model, report) = init_weights(net_config.init(&ad)?, config)?;
    if let Some(r) = &report {
        ctx.progress.note(r.to_string().trim_end());
    }
    let fine_tune = fine_tune(&model, config)?;
    let outcome = crate::family::family(&config.model)?.fit_samples(
        model,
        prepared,
        config,
        strata_train::Run {
            resume,
            ..ctx.run(ad, Some(checkpoint_dir), fine_tune.as_ref())
        },
    )?;
    Ok((outcome, report))
}

/// A training loss of the network's own, from a batch's inputs and targets.
pub(crate) type NetworkLoss =
    dyn Fn(&Network, Tensor<2>, &TargetBatch) -> strata_train::Result<Tensor<1>>;

/// Trains `model` on `prepared`'s training split with the run's augmentation, validating on
/// its validation split with the run's loss; training batches take `train_loss` when given
/// ([`strata_train::fit_with_loss`]), else the run's loss. What [`Family::fit_samples`] does
/// (with no loss of its own) unless a family trains its networks otherwise.
///
/// # Errors
/// Invalid settings, a loss that rejects the data, training and checkpoint failures.
pub(crate) fn fit_rows(
    model: Network,
    prepared: &Prepared,
    config: &RunConfig,
    run: strata_train::Run<'_>,
    train_loss: Option<&NetworkLoss>,
) -> Result<FitOutcome<Network>> {
    let loss = config.loss.init(&run.device)?;
    // Each of these replaces the training loss, which a family with a loss of its own keeps.
    if train_loss.is_some()
        && let Some(flag) = [
            ("--adversarial", config.adversarial.is_some()),
            ("--reweigh", config.reweigh.is_some()),
            ("--debias", config.debias.is_some()),
            ("--distill-from", config.distill.is_some()),
        ]
        .into_iter()
        .find_map(|(flag, set)| set.then_some(flag))
    {
        return Err(Error::Usage(format!(
            "{flag} replaces the run's training loss; the {} model trains on its own",
            config.model
        )));
    }
    if let Some(debias) = &config.debias {
        return crate::debias::fit(model, prepared, debias, loss.as_ref(), run);
    }
    let f = Fit {
        forward: |m: &Network, x| m.forward_flat(x),
        loss: loss.as_ref(),
        augment: Some(&config.augment),
        run,
    };
    let (train, valid) = (&prepared.train, &prepared.valid);
    if let Some(attack) = &config.adversarial {
        let adversarial = adversarial_loss(attack, prepared, loss.as_ref())?;
        let track = robust_validation(attack, prepared, &f.run.device.clone().without_autodiff())?;
        return Ok(fit_tracked(model, train, valid, &f, &adversarial, &track)?);
    }
    if let Some(column) = &config.reweigh {
        let reweighed = crate::fairness::reweighed_loss(column, prepared, &config.loss)?;
        return Ok(fit_with_loss(model, train, valid, &f, &reweighed)?);
    }
    if let Some(distill) = &config.distill {
        let teacher = crate::distill::teacher(distill, prepared, config.backend.name())?;
        let soft = crate::distill::distilled_loss(&teacher, distill, prepared, loss.as_ref());
        return Ok(fit_with_loss(model, train, valid, &f, &soft)?);
    }
    Ok(match train_loss {
        Some(l) => fit_with_loss(model, train, valid, &f, l)?,
        None => fit(model, train, valid, &f)?,
    })
}

/// Adversarial training's loss (Madry et al. 2018): the run's loss on the batch's adversarial
/// version under `attack`, made against the model in evaluation mode. The batches are
/// standardised; the attack moves them in the data's own units (undoing the standardisation
/// around it), clipped to the training data's range: one range for images, each column's for
/// rows.
fn adversarial_loss<'a>(
    attack: &'a strata_train::Attack,
    prepared: &Prepared,
    loss: &'a dyn strata_train::Loss,
) -> Result<impl Fn(&Network, Tensor<2>, &TargetBatch) -> strata_train::Result<Tensor<1>> + 'a> {
    let train = &prepared.train;
    if !matches!(train.task(), Task::Classification(_)) {
        return Err(Error::Usage(format!(
            "--adversarial needs a classifier; this data set has real-valued labels ({})",
            train.name
        )));
    }
    let d = train.n_features;
    let Standardizer { mean, scale } = prepared
        .preprocess
        .standardizer
        .clone()
        .unwrap_or_else(|| Standardizer::identity(d));
    let bounds = input_bounds(&raw_units(train, &prepared.preprocess)?);
    let batch_counter = std::cell::Cell::new(0u64);
    Ok(move |m: &Network, x: Tensor<2>, targets: &TargetBatch| {
        let TargetBatch::Classes(labels) = targets else {
            return Err(strata_train::Error::Invalid(
                "adversarial training needs class labels".into(),
            ));
        };
        let labels: Vec<usize> = labels
            .clone()
            .into_data()
            .iter::<i64>()
            .map(|l| l.max(0) as usize)
            .collect();
        let [n, _] = x.dims();
        let device = x.device();
        let row = |v: &[f32]| {
            Tensor::<2>::from_data(TensorData::new(v.to_vec(), [1, d]), &device).expand([n, d])
        };
        let (mean_t, scale_t) = (row(&mean).inner(), row(&scale).inner());
        let raw = x.inner() * scale_t.clone() + mean_t.clone();
        let frozen = m.valid();
        let forward = |r: Tensor<2>| frozen.forward_flat((r - mean_t.clone()) / scale_t.clone());
        // A fresh random start for every batch.
        let seeded = strata_train::Attack {
            seed: attack
                .seed
                .wrapping_add(batch_counter.replace(batch_counter.get() + 1)),
            ..attack.clone()
        };
        let adv = strata_train::perturb(&forward, raw, &labels, None, &seeded, &bounds)?;
        let standardised = ((adv - mean_t.clone()) / scale_t.clone()).autodiff();
        Ok(loss.forward(m.forward_flat(standardised), targets)?)
    })
}

/// Named figures of a model ([`strata_train::EpochRecord::tracked`]).
type Figures = Vec<(String, f64)>;

/// Validation rows whose robust accuracy adversarial training tracks each epoch: the first
/// (at most) this many, the same every epoch.
const TRACKED_ROWS: usize = 1000;

/// What adversarial training tracks after each epoch: `robust_acc`, the accuracy of the model
/// (in evaluation mode) on the first [`TRACKED_ROWS`] validation rows under the training
/// attack (its seed unchanged, so every epoch meets the same random starts), clipped to the
/// training data's range as in training.
///
/// # Errors
/// Data of another width than the standardisation's.
fn robust_validation<'a>(
    attack: &'a strata_train::Attack,
    prepared: &'a Prepared,
    plain: &Device,
) -> Result<impl Fn(&Network) -> strata_train::Result<Figures> + 'a> {
    let pre = &prepared.preprocess;
    let bounds = input_bounds(&raw_units(&prepared.train, pre)?);
    let rows: Vec<usize> = (0..prepared.valid.len().min(TRACKED_ROWS)).collect();
    let sample = raw_units(&prepared.valid.subset(&rows), pre)?;
    let plain = plain.clone();
    Ok(move |m: &Network| {
        let forward = standardised_model(m, pre, &plain);
        let r =
            strata_train::robust_accuracy(&forward, &sample, None, attack, &bounds, 256, &plain)?;
        Ok(vec![("robust_acc".to_string(), r.robust_accuracy)])
    })
}

fn eval(
    model: &Network,
    config: &RunConfig,
    data: &Dataset,
    device: &Device,
) -> Result<Evaluation> {
    let loss = config.loss.init(device)?;
    Ok(evaluate(
        model,
        &|m: &Network, x| m.forward_flat(x),
        loss.as_ref(),
        data,
        256,
        device,
    )?)
}

/// The `test` object of metrics.json: headline metrics first, then the details.
pub fn metrics_json(ev: &Evaluation) -> Value {
    let mut m = Map::new();
    match &ev.report {
        Report::Classification(r) => {
            m.insert("accuracy".into(), json!(r.accuracy));
            m.insert("macro_f1".into(), json!(r.macro_f1));
            m.insert("loss".into(), json!(ev.loss));
            m.insert("micro_f1".into(), json!(r.micro_f1));
            m.insert("macro_precision".into(), json!(r.macro_precision));
            m.insert("macro_recall".into(), json!(r.macro_recall));
            m.insert("log_loss".into(), json!(r.log_loss));
            if let Some(t) = r.top3_accuracy {
                m.insert("top3_accuracy".into(), json!(t));
            }
            m.insert("per_class".into(), json!(r.per_class));
            m.insert("confusion".into(), json!(r.confusion.counts));
        }
        Report::Regression(r) => {
            m.insert("rmse".into(), json!(r.rmse));
            m.insert("mae".into(), json!(r.mae));
            m.insert("r2".into(), json!(r.r2));
            m.insert("loss".into(), json!(ev.loss));
        }
    }
    m.insert(
        "n_samples".into(),
        json!(ev.outputs.len() / ev.n_outputs.max(1)),
    );
    Value::Object(m)
}

/// One line summarising an evaluation.
pub fn summary_line(ev: &Evaluation) -> String {
    match &ev.report {
        Report::Classification(r) => format!(
            "accuracy {:.4}  macro F1 {:.4}  loss {:.4}",
            r.accuracy, r.macro_f1, ev.loss
        ),
        Report::Regression(r) => format!("rmse {:.4}  mae {:.4}  r2 {:.4}", r.rmse, r.mae, r.r2),
    }
}

fn headline_keys(ev: &Evaluation) -> &'static [&'static str] {
    match ev.report {
        Report::Classification(_) => &["accuracy", "macro_f1", "loss"],
        Report::Regression(_) => &["rmse", "mae", "r2", "loss"],
    }
}

/// Trains `family`'s model on the samples of `source` and writes the run directory.
///
/// # Errors
/// Data the model does not read, invalid settings, training and I/O failures.
pub(crate) fn train<F: Family + ?Sized>(
    family: &F,
    ctx: &Context<'_>,
    source: Source,
) -> Result<RunResult> {
    let (device, out) = (&ctx.device, ctx.out);
    let mut config = ctx.config.clone();
    for w in family.warnings(&config) {
        ctx.progress.warning(&w);
    }
    let (train_raw, valid_raw, test_raw, test_rows) = split_source(source, &config)?;
    fit_loss_to_task(&mut config, &train_raw)?;
    // The pool that k-fold cross-validates over, before standardisation.
    let pool = (config.kfold >= 2).then(|| concat(train_raw.clone(), valid_raw.clone()));
    let prepared = prepare(train_raw, valid_raw, test_raw, &config)?;
    let n_out = n_outputs(prepared.train.task(), &config);
    // Fail before writing anything: the network, its transfer settings (parameters are
    // initialised lazily, so building it here costs little), the starting weights' file.
    let net = network_config(&config, &prepared.preprocess, n_out)?;
    check_transfer(&net.init(device)?, &config)?;
    if !config.sensitive.is_empty() {
        let pre = &prepared.preprocess;
        crate::fairness::check("--sensitive", &config.sensitive, &prepared.test, pre)?;
    }
    if let Some(column) = &config.reweigh {
        crate::fairness::check_reweigh(column, &prepared, &config.loss)?;
    }
    if let Some(d) = &config.distill {
        crate::distill::teacher(d, &prepared, config.backend.name())?;
    }
    if let Some(d) = &config.debias {
        let pre = &prepared.preprocess;
        crate::fairness::check(
            "--debias",
            std::slice::from_ref(&d.column),
            &prepared.train,
            pre,
        )?;
    }
    if !config.augment.steps.is_empty() && prepared.train.image_shape.is_none() {
        return Err(Error::Usage(format!(
            "augmentation works on images; `{}` is not image data (mixup alone works on any data)",
            config.dataset
        )));
    }

    ctx.open_run_dir(&config, Some(&prepared.preprocess))?;
    ctx.progress.note(&format!(
        "training {} on {} ({} train / {} valid / {} test) with {} on {}",
        config.model,
        config.dataset,
        prepared.train.len(),
        prepared.valid.len(),
        prepared.test.len(),
        config.optimizer.kind.name(),
        config.backend
    ));

    let kfold = match pool {
        Some(pool) => Some(cross_validate(ctx, &config, &pool)?),
        None => None,
    };

    let (outcome, report) = train_once(
        ctx,
        &config,
        &prepared,
        &out.join("checkpoints"),
        ctx.resume,
    )?;
    if !ctx.writes() {
        return Ok(RunResult::other_rank(
            out,
            outcome.finished,
            outcome.epochs_run,
        ));
    }
    if let Some(r) = &report {
        // What the starting weights gave: loaded, skipped (and why), unused.
        write_json(&out.join("init.json"), r)?;
    }
    let metric_name = if prepared.train.task() == Task::Regression {
        "rmse"
    } else {
        "accuracy"
    };
    if !write_history(&config, out, metric_name, &outcome)? {
        return Ok(RunResult::paused(out, outcome.epochs_run));
    }
    let model = outcome.model.valid();
    save_safetensors(&model, &out.join("model.safetensors"))?;
    let test = eval(&model, &config, &prepared.test, device)?;
    write_test_predictions(out, &prepared.test, &test_rows, &test)?;
    let valid = eval(&model, &config, &prepared.valid, device)?;
    let mut metrics = run_summary(&config, &outcome);
    metrics["parameters"] = json!(model.num_params());
    metrics["test"] = metrics_json(&test);
    metrics["valid"] = metrics_json(&valid);
    for (key, value) in family.finish_samples(&model, &config, &prepared, out)? {
        metrics[key] = value;
    }
    if let Some(a) = &config.adversarial {
        let pre = &prepared.preprocess;
        metrics["adversarial"] =
            crate::attack::robust_metrics(&model, pre, &prepared.test, a, device)?;
    }
    if !config.sensitive.is_empty() {
        let pre = &prepared.preprocess;
        metrics["fairness"] = crate::fairness::report(
            &config.sensitive,
            &prepared.test,
            pre,
            &test.outputs,
            out,
            device,
        )?;
    }
    if let Some(k) = kfold {
        metrics["kfold"] = k;
    }
    write_metrics(out, &metrics)?;
    let summary = format!(
        "test {}  ({})",
        summary_line(&test),
        run_line(&config, &outcome)
    );
    Ok(RunResult::finished(out, &outcome, metrics, summary))
}

/// Writes `test_predictions.csv` for a classifier: for each test sample, its row in the data
/// set as loaded (in its own test set for data sets that come with one), its label and the
/// predicted class.
fn write_test_predictions(
    out: &Path,
    test: &Dataset,
    rows: &[usize],
    ev: &Evaluation,
) -> Result<()> {
    let k = ev.n_outputs.max(1);
    if rows.len() != test.len() || ev.outputs.len() != test.len() * k {
        return Err(Error::Usage(format!(
            "internal mismatch: {} test rows, {} samples, {} outputs",
            rows.len(),
            test.len(),
            ev.outputs.len()
        )));
    }
    let mut csv = String::new();
    match (&test.targets, test.class_names()) {
        (strata_data::Targets::Classes { labels, .. }, Some(names)) => {
            csv.push_str("row,label,prediction\n");
            let predicted = strata_metrics::argmax_rows(&ev.outputs, k);
            for ((row, &label), &p) in rows.iter().zip(labels).zip(&predicted) {
                let name = |c: usize| names.get(c).map_or_else(|| c.to_string(), Clone::clone);
                csv.push_str(&format!("{row},{},{}\n", name(label), name(p)));
            }
        }
        // Regression runs report their metrics only.
        _ => return Ok(()),
    }
    write_atomic(&out.join("test_predictions.csv"), csv.as_bytes())?;
    Ok(())
}

fn concat(mut a: Dataset, b: Dataset) -> Dataset {
    a.features.extend_from_slice(&b.features);
    match (&mut a.targets, b.targets) {
        (
            strata_data::Targets::Classes { labels, .. },
            strata_data::Targets::Classes { labels: l2, .. },
        ) => labels.extend(l2),
        (strata_data::Targets::Values(v), strata_data::Targets::Values(v2)) => v.extend(v2),
        _ => unreachable!("train and validation come from one data set"),
    }
    a
}

/// Stratified k-fold over the train+validation pool: each fold trains on k-1 parts (the
/// preprocessing fitted on them), is evaluated on the held-out part; returns per-fold metrics
/// with their mean and standard deviation.
fn cross_validate(ctx: &Context<'_>, config: &RunConfig, pool: &Dataset) -> Result<Value> {
    let (device, out) = (&ctx.device, ctx.out);
    let folds = stratified_kfold(&pool.strata(), config.kfold, config.fit.seed)?;
    let mut rows = Vec::new();
    let mut keys: &[&str] = &[];
    for (i, fold) in folds.iter().enumerate() {
        ctx.progress
            .note(&format!("fold {}/{}", i + 1, folds.len()));
        let train = pool.subset(&fold.train);
        let held = pool.subset(&fold.valid);
        let prepared = prepare(train, held.clone(), held, config)?;
        let fold_dir = out.join(format!("fold-{}", i + 1));
        let (outcome, _) = train_once(ctx, config, &prepared, &fold_dir, false)?;
        let ev = eval(&outcome.model.valid(), config, &prepared.valid, device)?;
        keys = headline_keys(&ev);
        let m = metrics_json(&ev);
        let mut row = Map::new();
        row.insert("fold".into(), json!(i + 1));
        for k in keys {
            row.insert((*k).into(), m[*k].clone());
        }
        row.insert("epochs_run".into(), json!(outcome.epochs_run));
        rows.push(Value::Object(row));
        let _ = std::fs::remove_dir_all(out.join(format!("fold-{}", i + 1)));
    }
    let mut mean = Map::new();
    let mut std = Map::new();
    for k in keys {
        let v: Vec<f64> = rows.iter().filter_map(|r| r[*k].as_f64()).collect();
        let (mu, sd) = super::mean_std(&v);
        mean.insert((*k).into(), json!(mu));
        std.insert((*k).into(), json!(sd));
    }
    let first = keys.first().copied().unwrap_or("loss");
    ctx.progress.note(&format!(
        "{}-fold cross-validation: {first} {:.4} ± {:.4}",
        folds.len(),
        mean[first].as_f64().unwrap_or(f64::NAN),
        std[first].as_f64().unwrap_or(f64::NAN)
    ));
    Ok(json!({ "k": folds.len(), "folds": rows, "mean": mean, "std": std }))
}
