//! `strata train`: resolve the run config, load and split the data, train (with optional
//! k-fold cross-validation), evaluate on the test split and write the run directory.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::Device;
use serde_json::{Map, Value, json};
use strata::arch::{Network, check_input};
use strata::data::{
    Dataset, LabelColumn, Sampling, Task, balanced_class_weights, stratified_kfold,
};
use strata::loss::LossConfig;
use strata::optim::{Clipping, OptimizerKind, ScheduleConfig};
use strata::tensor::{Backend, seed_device};
use strata::train::{
    EarlyStopping, Evaluation, Fit, FitOutcome, LoadReport, Monitor, Report, Run, evaluate, fit,
    write_atomic, write_csv, write_curves_svg,
};

use crate::args::TrainArgs;
use crate::commands::{forecast, language, seq2seq};
use crate::data_source::{Prepared, Source, load_source, n_outputs, prepare, split_source};
use crate::error::{Error, Result};
use crate::network::{network_config, save_safetensors};
use crate::run_config::{Freeze, MAX_SIDE, RunConfig, is_recurrent};
use crate::transfer::{check_transfer, fine_tune, init_weights};

/// Builds the run config: the model's defaults, then `--config` (or the resumed run's
/// config.toml), then each flag given.
///
/// # Errors
/// Unreadable configs and unknown names.
pub fn resolve(args: &TrainArgs, out: &Path) -> Result<RunConfig> {
    let resumed_config = out.join("config.toml");
    let mut c = if let Some(path) = &args.config {
        RunConfig::load(path)?
    } else if args.resume && resumed_config.exists() {
        RunConfig::load(&resumed_config)?
    } else {
        let model = args.model.as_deref().unwrap_or("cnn");
        let dataset = args
            .dataset
            .as_deref()
            .unwrap_or(RunConfig::default_dataset(model));
        let mut c = RunConfig::defaults_for(model, dataset);
        if let Some(b) = Backend::from_env()? {
            c.backend = b;
        }
        c
    };
    if let Some(m) = &args.model {
        if *m != c.model {
            // Switching model keeps the file's other settings but takes the model's network
            // defaults.
            c.network = RunConfig::defaults_for(m, &c.dataset).network;
        }
        c.model = m.clone();
    }
    if let Some(l) = args.layers {
        c.network.layers = l;
    }
    if args.bidirectional {
        c.network.bidirectional = true;
    }
    if let Some(s) = args.seq_len {
        c.network.seq_len = s;
    }
    if let Some(e) = args.embed {
        c.network.embed = e;
    }
    if let Some(p) = &args.pooling {
        c.network.sequence_pooling = match p.as_str() {
            "last" => strata::arch::SequencePooling::Last,
            "mean" => strata::arch::SequencePooling::Mean,
            other => {
                return Err(Error::Usage(format!(
                    "unknown sequence pooling `{other}`: expected last or mean"
                )));
            }
        };
    }
    if let Some(h) = args.heads {
        c.network.heads = h;
    }
    if let Some(p) = &args.positional {
        c.network.positional = match p.as_str() {
            "learned" => strata::arch::Positional::Learned,
            "sinusoidal" => strata::arch::Positional::Sinusoidal,
            other => {
                return Err(Error::Usage(format!(
                    "unknown positional encoding `{other}`: expected learned or sinusoidal"
                )));
            }
        };
    }
    if let Some(a) = &args.augment {
        c.augment = if a.trim() == "none" {
            strata::data::Augment::default()
        } else {
            strata::data::Augment::parse(a)?
        };
    }
    if let Some(p) = args.patch_size {
        c.network.patch_size = p;
    }
    if let Some(p) = args.pool_size {
        c.network.pool_size = p;
    }
    if let Some(shape) = &args.image_shape {
        c.image_shape = Some(parse_image_shape(shape)?);
    }
    if let Some(r) = &args.resize {
        c.resize = Some(parse_size(r)?);
    }
    if let Some(f) = args.train_fraction {
        c.train_fraction = Some(f);
    }
    let t = &mut c.transfer;
    if let Some(p) = &args.init_from {
        t.init_from = Some(p.clone());
    }
    if let Some(p) = &args.init_from_run {
        t.init_from_run = Some(p.clone());
    }
    t.new_head |= args.new_head;
    if let Some(f) = &args.freeze {
        t.freeze = Some(Freeze::try_from(f.clone()).map_err(Error::Usage)?);
    }
    if let Some(e) = args.unfreeze_at_epoch {
        t.unfreeze_at_epoch = Some(e);
    }
    if let Some(f) = args.backbone_lr_factor {
        t.backbone_lr_factor = f;
    }
    if let Some(s) = args.steps_per_epoch {
        c.steps_per_epoch = Some(s);
    }
    if let Some(d) = &args.dataset {
        c.dataset = d.clone();
    }
    if let Some(l) = &args.label {
        c.label = LabelColumn::parse(l);
    }
    if let Some(b) = &args.backend {
        c.backend = b.parse()?;
    }
    if let Some(e) = args.epochs {
        c.fit.epochs = e;
    }
    if let Some(b) = args.batch_size {
        c.fit.batch_size = b;
    }
    if let Some(s) = args.seed {
        c.fit.seed = s;
    }
    if let Some(o) = &args.optimizer {
        c.optimizer.kind = OptimizerKind::by_name(o)?;
    }
    if let Some(m) = args.momentum {
        match &mut c.optimizer.kind {
            OptimizerKind::Sgd { momentum, .. } => *momentum = m,
            OptimizerKind::RmsProp { momentum, .. } => *momentum = m as f32,
            _ => {
                return Err(Error::Usage(format!(
                    "--momentum applies to sgd and rmsprop, not {}",
                    c.optimizer.kind.name()
                )));
            }
        }
    }
    if let Some(lr) = args.lr {
        c.optimizer.lr = lr;
    }
    if let Some(w) = args.weight_decay {
        c.optimizer.weight_decay = w;
    }
    if let Some(v) = args.clip_norm {
        c.optimizer.clip = Some(Clipping::Norm(v));
    }
    if let Some(v) = args.clip_value {
        c.optimizer.clip = Some(Clipping::Value(v));
    }
    if let Some(s) = &args.schedule {
        let warmup = c.schedule.warmup_epochs;
        c.schedule = ScheduleConfig::by_name(s)?;
        c.schedule.warmup_epochs = warmup;
    }
    if let Some(w) = args.warmup {
        c.schedule.warmup_epochs = w;
    }
    if let Some(l) = &args.loss {
        c.loss = match l.to_ascii_lowercase().replace('_', "-").as_str() {
            "cross-entropy" | "ce" => LossConfig::CrossEntropy {
                weights: None,
                smoothing: 0.0,
            },
            "focal" => LossConfig::Focal {
                gamma: 2.0,
                alpha: None,
            },
            "mse" => LossConfig::Mse,
            "bce" => LossConfig::Bce,
            other => {
                return Err(Error::Usage(format!(
                    "unknown loss `{other}`: expected cross-entropy, focal, mse or bce"
                )));
            }
        };
    }
    if let Some(s) = args.label_smoothing {
        match &mut c.loss {
            LossConfig::CrossEntropy { smoothing, .. } => *smoothing = s,
            _ => {
                return Err(Error::Usage(
                    "--label-smoothing applies to cross-entropy".into(),
                ));
            }
        }
    }
    c.class_weights |= args.class_weights;
    if args.balanced {
        c.fit.sampling = Sampling::Balanced;
    }
    if let Some(h) = &args.hidden {
        c.network.hidden = h.clone();
    }
    if let Some(ch) = &args.channels {
        c.network.channels = ch.clone();
    }
    if let Some(k) = args.kernel_size {
        c.network.kernel_size = k;
    }
    if let Some(a) = &args.activation {
        c.network.activation = a.parse().map_err(Error::Usage)?;
    }
    if let Some(d) = args.dropout {
        c.network.dropout = d;
    }
    if let Some(b) = args.batch_norm {
        c.network.batch_norm = b;
    }
    if let Some(p) = args.patience {
        c.fit.early_stopping = (p > 0).then_some(EarlyStopping {
            monitor: Monitor::ValidLoss,
            patience: p,
            min_delta: 0.0,
        });
    }
    if let Some(v) = args.valid_fraction {
        c.valid_fraction = v;
    }
    if let Some(t) = args.test_fraction {
        c.test_fraction = t;
    }
    if let Some(s) = args.max_seconds {
        c.fit.max_seconds = Some(s);
    }
    if let Some(k) = args.kfold {
        c.kfold = k;
    }
    c.fit.progress = !args.quiet;
    Ok(c)
}

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

/// Trains one model on `train`, validating on `valid`.
#[allow(clippy::too_many_arguments)] // internal helper shared by the main run and the folds
pub(crate) fn train_once(
    config: &RunConfig,
    prepared: &Prepared,
    train: &Dataset,
    valid: &Dataset,
    device: &Device,
    checkpoint_dir: Option<&Path>,
    resume: bool,
    pause_after: Option<usize>,
) -> Result<(FitOutcome<Network>, Option<LoadReport>)> {
    let n_out = n_outputs(train.task(), config);
    let net_config = network_config(config, &prepared.preprocess, n_out)?;
    check_input(&net_config, train.n_features)?;
    let ad = device.clone().autodiff();
    seed_device(&ad, config.fit.seed);
    let (model, report) = init_weights(net_config.init(&ad)?, config)?;
    if let Some(r) = &report
        && config.fit.progress
    {
        eprint!("{r}");
    }
    let fine_tune = fine_tune(&model, config)?;
    let loss = config.loss.init(&ad)?;
    let outcome = fit(
        model,
        train,
        valid,
        &Fit {
            forward: |m: &Network, x| m.forward_flat(x),
            loss: loss.as_ref(),
            augment: Some(&config.augment),
            run: Run {
                optimizer: &config.optimizer,
                schedule: &config.schedule,
                config: &config.fit,
                device: ad,
                checkpoint_dir,
                resume,
                pause_after,
                fine_tune: fine_tune.as_ref(),
            },
        },
    )?;
    Ok((outcome, report))
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

/// Sizes written `AxBxC`; `None` when `s` is not that.
fn parse_dims(s: &str) -> Option<Vec<usize>> {
    s.split(['x', 'X'])
        .map(|v| v.trim().parse::<usize>().ok())
        .collect()
}

/// `CxHxW`.
fn parse_image_shape(s: &str) -> Result<[usize; 3]> {
    match parse_dims(s).as_deref() {
        Some(&[c, h, w]) if [c, h, w].iter().all(|d| (1..=MAX_SIDE).contains(d)) => Ok([c, h, w]),
        _ => Err(Error::Usage(format!(
            "--image-shape `{s}`: expected CxHxW with sizes in 1..={MAX_SIDE}, e.g. 1x28x28"
        ))),
    }
}

/// `HxW` or one side for both.
fn parse_size(s: &str) -> Result<[usize; 2]> {
    let [h, w] = match parse_dims(s).as_deref() {
        Some(&[h, w]) => [h, w],
        Some(&[n]) => [n, n],
        _ => {
            return Err(Error::Usage(format!(
                "--resize `{s}`: expected HxW (28x28) or one side (28)"
            )));
        }
    };
    if !(1..=MAX_SIDE).contains(&h) || !(1..=MAX_SIDE).contains(&w) {
        return Err(Error::Usage(format!(
            "--resize `{s}`: each side must be in 1..={MAX_SIDE}"
        )));
    }
    Ok([h, w])
}

pub(crate) fn default_out() -> PathBuf {
    PathBuf::from("runs").join(chrono::Utc::now().format("%Y%m%d-%H%M%S").to_string())
}

/// Runs `strata train`.
///
/// # Errors
/// Any invalid input, and training or I/O failures.
pub fn run(args: &TrainArgs) -> Result<()> {
    if args.resume && args.out.is_none() {
        return Err(Error::Usage(
            "--resume needs --out DIR (the run to resume)".into(),
        ));
    }
    let out = args.out.clone().unwrap_or_else(default_out);
    let mut config = resolve(args, &out)?;
    config.validate()?;
    let device = config.backend.usable_device()?;
    let source = load_source(&config.dataset, &config.label, &config.model)?;
    let source = match source {
        Source::Series(s) => return forecast::train(&config, &s, &device, &out, args),
        Source::Text { text, .. } => return language::train(&config, &text, &device, &out, args),
        Source::Transduction(task) => return seq2seq::train(&config, task, &device, &out, args),
        other => other,
    };
    if is_recurrent(&config.model)
        && config.network.seq_len == 0
        && config.dataset.starts_with("csv:")
    {
        eprintln!(
            "note: reading each CSV row as one feature per step (set --seq-len to group features)"
        );
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
    check_transfer(&net.init(&device)?, &config)?;
    if !config.augment.steps.is_empty() && prepared.train.image_shape.is_none() {
        return Err(Error::Usage(format!(
            "augmentation works on images; `{}` is not image data (mixup alone works on any data)",
            config.dataset
        )));
    }

    if args.resume {
        // A damaged checkpoint is refused, by name, before anything in the run is rewritten.
        strata::train::Checkpointer::new(out.join("checkpoints")).verify()?;
    }
    std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    write_atomic(&out.join("config.toml"), config.to_toml().as_bytes())?;
    prepared.preprocess.save(&out)?;
    let quiet = !config.fit.progress;
    if !quiet {
        eprintln!(
            "training {} on {} ({} train / {} valid / {} test) with {} on {}",
            config.model,
            config.dataset,
            prepared.train.len(),
            prepared.valid.len(),
            prepared.test.len(),
            config.optimizer.kind.name(),
            config.backend
        );
    }

    let kfold = match pool {
        Some(pool) => Some(cross_validate(&config, &pool, &device, &out)?),
        None => None,
    };

    let (outcome, report) = train_once(
        &config,
        &prepared,
        &prepared.train,
        &prepared.valid,
        &device,
        Some(&out.join("checkpoints")),
        args.resume,
        args.pause_after,
    )?;
    if let Some(r) = &report {
        // What the starting weights gave: loaded, skipped (and why), unused.
        write_atomic(
            &out.join("init.json"),
            serde_json::to_string_pretty(r).expect("json").as_bytes(),
        )?;
    }
    let metric_name = if prepared.train.task() == Task::Regression {
        "rmse"
    } else {
        "accuracy"
    };
    if !write_history(&config, &out, metric_name, &outcome)? {
        return Ok(());
    }
    let model = outcome.model.valid();
    save_safetensors(&model, &out.join("model.safetensors"))?;
    let test = eval(&model, &config, &prepared.test, &device)?;
    write_test_predictions(&out, &prepared.test, &test_rows, &test)?;
    let valid = eval(&model, &config, &prepared.valid, &device)?;
    let mut metrics = run_summary(&config, &outcome);
    metrics["test"] = metrics_json(&test);
    metrics["valid"] = metrics_json(&valid);
    if let Some(k) = kfold {
        metrics["kfold"] = k;
    }
    write_metrics(&out, &metrics)?;
    println!(
        "test {}  ({} on {}, {}, {} epochs, {:.1} s)",
        summary_line(&test),
        config.model,
        config.dataset,
        config.backend,
        outcome.epochs_run,
        outcome.train_seconds
    );
    println!("run written to {}", out.display());
    Ok(())
}

/// Writes `test_predictions.csv` for a classifier: for each test sample, its row in the data
/// set as loaded (in its own test set for data sets that come with one), its label and the
/// predicted class.
fn write_test_predictions(
    out: &Path,
    test: &Dataset,
    rows: &[usize],
    ev: &strata::train::Evaluation,
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
        (strata::data::Targets::Classes { labels, .. }, Some(names)) => {
            csv.push_str("row,label,prediction\n");
            let predicted = strata::metrics::argmax_rows(&ev.outputs, k);
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

/// Writes `history.csv` and `curves.svg`; returns whether the run finished (when paused, says
/// how to resume).
///
/// # Errors
/// I/O errors.
pub(crate) fn write_history<M>(
    config: &RunConfig,
    out: &Path,
    metric_name: &str,
    outcome: &FitOutcome<M>,
) -> Result<bool> {
    write_csv(&out.join("history.csv"), metric_name, &outcome.history)?;
    write_curves_svg(
        &out.join("curves.svg"),
        &format!(
            "{} on {} ({})",
            config.model, config.dataset, config.backend
        ),
        metric_name,
        &outcome.history,
    )?;
    if !outcome.finished {
        eprintln!(
            "paused after epoch {}; continue with: strata train --out {} --resume",
            outcome.epochs_run,
            out.display()
        );
    }
    Ok(outcome.finished)
}

/// The head of a run's `metrics.json`: model, data set, backend and how training went; the
/// caller adds `test` and `valid`.
pub(crate) fn run_summary<M>(config: &RunConfig, outcome: &FitOutcome<M>) -> Value {
    json!({
        "model": config.model,
        "dataset": config.dataset,
        "backend": config.backend.name(),
        "epochs_run": outcome.epochs_run,
        "train_seconds": outcome.train_seconds,
        "stop_reason": outcome.stop_reason,
        "best_epoch": outcome.best.map(|(_, e)| e),
    })
}

/// Writes `metrics.json` atomically.
///
/// # Errors
/// I/O errors.
pub(crate) fn write_metrics(out: &Path, metrics: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(metrics).expect("serialisable");
    write_atomic(&out.join("metrics.json"), text.as_bytes())?;
    Ok(())
}

fn concat(mut a: Dataset, b: Dataset) -> Dataset {
    a.features.extend_from_slice(&b.features);
    match (&mut a.targets, b.targets) {
        (
            strata::data::Targets::Classes { labels, .. },
            strata::data::Targets::Classes { labels: l2, .. },
        ) => labels.extend(l2),
        (strata::data::Targets::Values(v), strata::data::Targets::Values(v2)) => v.extend(v2),
        _ => unreachable!("train and validation come from one data set"),
    }
    a
}

/// Stratified k-fold over the train+validation pool: each fold trains on k-1 parts (the
/// preprocessing fitted on them), is evaluated on the held-out part; returns per-fold metrics
/// with their mean and standard deviation.
fn cross_validate(
    config: &RunConfig,
    pool: &Dataset,
    device: &Device,
    out: &Path,
) -> Result<Value> {
    let folds = stratified_kfold(&pool.strata(), config.kfold, config.fit.seed)?;
    let mut rows = Vec::new();
    let mut keys: &[&str] = &[];
    for (i, fold) in folds.iter().enumerate() {
        if config.fit.progress {
            eprintln!("fold {}/{}", i + 1, folds.len());
        }
        let train = pool.subset(&fold.train);
        let held = pool.subset(&fold.valid);
        let prepared = prepare(train, held.clone(), held, config)?;
        let (outcome, _) = train_once(
            config,
            &prepared,
            &prepared.train,
            &prepared.valid,
            device,
            Some(&out.join(format!("fold-{}", i + 1))),
            false,
            None,
        )?;
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
        let mu = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (x - mu).powi(2)).sum::<f64>() / (v.len().max(2) - 1) as f64;
        mean.insert((*k).into(), json!(mu));
        std.insert((*k).into(), json!(var.sqrt()));
    }
    if config.fit.progress {
        let first = keys.first().copied().unwrap_or("loss");
        eprintln!(
            "{}-fold cross-validation: {first} {:.4} ± {:.4}",
            folds.len(),
            mean[first].as_f64().unwrap_or(f64::NAN),
            std[first].as_f64().unwrap_or(f64::NAN)
        );
    }
    Ok(json!({ "k": folds.len(), "folds": rows, "mean": mean, "std": std }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// `--image-shape` and `--resize` take any text: a bounded size or an error.
        #[test]
        fn size_flags_never_panic(s in prop_oneof![".{0,30}", "[0-9]{0,22}(x[0-9]{0,22}){0,3}"]) {
            if let Ok(shape) = parse_image_shape(&s) {
                prop_assert!(shape.iter().all(|d| (1..=MAX_SIDE).contains(d)));
            }
            if let Ok(size) = parse_size(&s) {
                prop_assert!(size.iter().all(|d| (1..=MAX_SIDE).contains(d)));
            }
        }
    }

    #[test]
    fn sizes_that_overflowed_are_errors() {
        // 2^32 x 2^32 x 1 wrapped to 0, and 2^63 x 2 x 1 wrapped to 0 too.
        assert!(parse_image_shape("4294967296x4294967296x1").is_err());
        assert!(parse_image_shape("9223372036854775808x2x1").is_err());
        assert!(parse_size("100000000").is_err());
        assert_eq!(parse_size("28").unwrap(), [28, 28]);
        assert_eq!(parse_image_shape("1x28x28").unwrap(), [1, 28, 28]);
    }
}
