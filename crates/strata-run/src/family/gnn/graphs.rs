//! Graph classification: mini-batches of graphs batched into one block-diagonal graph, model
//! selection over the `--hidden` widths on a validation split, stratified k-fold
//! cross-validation with an inner validation split per fold (Errica et al. 2020).

use std::path::Path;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{Device, Tensor};
use serde_json::{Value, json};
use strata_arch::Gnn;
use strata_data::{GraphBatch, GraphSet, stratified_kfold, stratified_split};
use strata_layers::GraphIndex;
use strata_tensor::convert::classes;
use strata_train::{Objective, write_atomic};

use super::{GraphMeta, OnDevice, evaluation, fit_widths, gnn_config, keep_best};
use crate::error::{Error, Result};
use crate::pipeline::{Context, RunResult, mean_std, metrics_json, summary_line};
use crate::run_dir::{run_line, run_summary, write_metrics};

/// A batch of graphs on one device.
pub(crate) struct DeviceBatch {
    graph: OnDevice,
    graphs: GraphIndex,
    /// The graphs' classes.
    pub labels: Vec<usize>,
}

impl DeviceBatch {
    /// `batch` on `device`.
    pub(crate) fn new(batch: &GraphBatch, device: &Device) -> Result<Self> {
        let g = &batch.graph;
        Ok(Self {
            graph: OnDevice::new(g, g.features.clone(), device)?,
            graphs: GraphIndex::new(&batch.graph_index, batch.n_graphs, device)?,
            labels: batch.labels.clone(),
        })
    }

    /// The class scores of each graph.
    pub(crate) fn logits(&self, model: &Gnn) -> Tensor<2> {
        model.forward_graphs(self.graph.x.clone(), &self.graph.edges, &self.graphs)
    }
}

/// All graphs of `set`, batched.
fn whole(set: &GraphSet) -> GraphBatch {
    set.batch(&(0..set.len()).collect::<Vec<_>>())
}

/// What [`fit_objective`](strata_train::fit_objective) trains a graph classifier on.
struct GraphObjective<'a> {
    train: &'a GraphSet,
    valid: DeviceBatch,
    ad: Device,
}

impl Objective<Gnn> for GraphObjective<'_> {
    fn n_train(&self) -> usize {
        self.train.len()
    }

    fn batch_loss(&self, model: &Gnn, indices: &[usize]) -> strata_train::Result<Tensor<1>> {
        let b = DeviceBatch::new(&self.train.batch(indices), &self.ad)
            .map_err(|e| strata_train::Error::Objective(e.to_string()))?;
        let ce = CrossEntropyLossConfig::new().init(&self.ad);
        Ok(ce.forward(b.logits(model), classes(&b.labels, &self.ad)))
    }

    fn validate(&self, model: &Gnn) -> strata_train::Result<(f64, f64)> {
        let ev = evaluation(self.valid.logits(model), &self.valid.labels)?;
        Ok((ev.loss, ev.report.headline()))
    }

    fn metric_name(&self) -> &str {
        "acc"
    }

    fn lower_metric_is_better(&self) -> bool {
        false
    }
}

/// Trains one graph classifier per `--hidden` width on `train`, selecting on `valid`.
fn fit_graphs(
    ctx: &Context<'_>,
    train: &GraphSet,
    valid: &GraphSet,
    base: &GraphMeta,
    checkpoints: Option<&Path>,
) -> Result<Option<(Vec<super::Fitted>, usize)>> {
    let objective = GraphObjective {
        train,
        valid: DeviceBatch::new(&whole(valid), &ctx.device)?,
        ad: ctx.device.clone().autodiff(),
    };
    fit_widths(ctx, base, checkpoints, &objective)
}

/// The graphs `rows` of `set` (indices into `of`).
fn pick(of: &[usize], rows: &[usize]) -> Vec<usize> {
    rows.iter().map(|&r| of[r]).collect()
}

/// Stratified k-fold cross-validation: each fold's training part is split again (stratified,
/// the run's validation fraction) for model selection, and the selected model is tested on the
/// held-out fold. Per-fold rows with the mean and standard deviation of the test accuracy.
fn cross_validate(ctx: &Context<'_>, set: &GraphSet, base: &GraphMeta) -> Result<Value> {
    let config = ctx.config;
    let folds = stratified_kfold(&set.labels, config.kfold, config.fit.seed)?;
    let mut rows = Vec::new();
    let mut accuracies = Vec::new();
    for (i, fold) in folds.iter().enumerate() {
        ctx.progress
            .note(&format!("fold {}/{}", i + 1, folds.len()));
        let strata: Vec<usize> = fold.train.iter().map(|&g| set.labels[g]).collect();
        let inner = stratified_split(
            &strata,
            config.valid_fraction,
            0.0,
            config.fit.seed + i as u64,
        )?;
        let train = set.subset(&pick(&fold.train, &inner.train));
        let valid = set.subset(&pick(&fold.train, &inner.valid));
        let Some((fitted, best)) = fit_graphs(ctx, &train, &valid, base, None)? else {
            return Err(Error::Usage(
                "cross-validation cannot pause: run it without --pause-after".into(),
            ));
        };
        let chosen = &fitted[best];
        let held = DeviceBatch::new(&whole(&set.subset(&fold.valid)), &ctx.device)?;
        let ev = evaluation(held.logits(&chosen.outcome.model.valid()), &held.labels)?;
        let acc = ev.report.headline();
        accuracies.push(acc);
        rows.push(json!({
            "fold": i + 1,
            "accuracy": acc,
            "macro_f1": metrics_json(&ev)["macro_f1"],
            "test_graphs": fold.valid.len(),
            "d_hidden": chosen.meta.d_hidden,
            "valid_accuracy": chosen.valid_accuracy,
            "epochs_run": chosen.outcome.epochs_run,
            "best_epoch": chosen.outcome.best.map(|(_, e)| e),
        }));
    }
    let (mean, std) = mean_std(&accuracies);
    ctx.progress.note(&format!(
        "{}-fold cross-validation: accuracy {mean:.4} +- {std:.4}",
        folds.len()
    ));
    Ok(json!({"folds": rows, "mean": {"accuracy": mean}, "std": {"accuracy": std}}))
}

/// Trains a graph classifier on `set` and writes the run directory.
pub(crate) fn train(ctx: &Context<'_>, set: GraphSet) -> Result<RunResult> {
    let (config, out) = (ctx.config, ctx.out);
    for w in crate::family::Family::warnings(&super::Gnns, config) {
        ctx.progress.warning(&w);
    }
    let base = GraphMeta {
        graph_level: true,
        n_features: set.n_features(),
        class_names: set.class_names.clone(),
        normalize_rows: false,
        d_hidden: config.network.hidden[0],
    };
    gnn_config(config, &base)?;
    let split = stratified_split(
        &set.labels,
        config.valid_fraction,
        config.test_fraction,
        config.fit.seed,
    )?;
    ctx.open_run_dir(config, None)?;
    ctx.progress.note(&format!(
        "training {} on {} ({} graphs, {} features per node; {} train / {} valid / {} test) with {} on {}",
        config.model,
        config.dataset,
        set.len(),
        set.n_features(),
        split.train.len(),
        split.valid.len(),
        split.test.len(),
        config.optimizer.kind.name(),
        config.backend
    ));
    let kfold = if config.kfold >= 2 {
        Some(cross_validate(ctx, &set, &base)?)
    } else {
        None
    };
    let (train, valid, test) = (
        set.subset(&split.train),
        set.subset(&split.valid),
        set.subset(&split.test),
    );
    let Some((fitted, best)) =
        fit_graphs(ctx, &train, &valid, &base, Some(&out.join("checkpoints")))?
    else {
        return Ok(RunResult::paused(out, 0));
    };
    let (run, outcome, selection) = keep_best(ctx, fitted, best)?;
    let test_batch = DeviceBatch::new(&whole(&test), &ctx.device)?;
    let test_ev = evaluation(test_batch.logits(&run.model), &test_batch.labels)?;
    let valid_batch = DeviceBatch::new(&whole(&valid), &ctx.device)?;
    let valid_ev = evaluation(valid_batch.logits(&run.model), &valid_batch.labels)?;
    let names = &run.meta.class_names;
    let predicted = strata_metrics::argmax_rows(&test_ev.outputs, test_ev.n_outputs);
    let mut csv = String::from("graph,label,prediction\n");
    for ((&g, &l), &p) in split.test.iter().zip(&test_batch.labels).zip(&predicted) {
        csv.push_str(&format!("{},{},{}\n", g + 1, names[l], names[p]));
    }
    write_atomic(&out.join("test_predictions.csv"), csv.as_bytes())?;
    let mut metrics = run_summary(config, &outcome);
    metrics["test"] = metrics_json(&test_ev);
    metrics["valid"] = metrics_json(&valid_ev);
    metrics["selection"] = selection;
    if let Some(k) = kfold {
        metrics["kfold"] = k;
    }
    write_metrics(out, &metrics)?;
    let mut line = format!(
        "test {}  ({})",
        summary_line(&test_ev),
        run_line(config, &outcome)
    );
    if let Some(k) = metrics.get("kfold") {
        line = format!(
            "{}-fold accuracy {:.4} +- {:.4};  {line}",
            config.kfold,
            k["mean"]["accuracy"].as_f64().unwrap_or(f64::NAN),
            k["std"]["accuracy"].as_f64().unwrap_or(f64::NAN)
        );
    }
    Ok(RunResult::finished(out, &outcome, metrics, line))
}
