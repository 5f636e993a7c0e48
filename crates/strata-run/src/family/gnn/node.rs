//! Node classification on one graph: full-batch training (one step per epoch on the whole
//! graph, the loss on the training nodes), model selection over the `--hidden` widths on the
//! validation nodes, test metrics, predictions and the embedding picture.

use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{Int, Tensor};
use serde_json::json;
use strata_arch::Gnn;
use strata_data::{Graph, NodeSplit, normalize_rows, stratified_split};
use strata_tensor::convert::classes;
use strata_train::{Objective, write_atomic};

use super::{Fitted, GraphMeta, OnDevice, evaluation, fit_widths, gnn_config, keep_best};
use crate::config::RunConfig;
use crate::error::{Error, Result};
use crate::pipeline::{Context, RunResult, metrics_json, summary_line};
use crate::run_dir::{run_line, run_summary, write_metrics};

/// A graph ready for training: features normalised, the split fixed.
pub(crate) struct NodeData {
    /// The graph (features normalised when `meta.normalize_rows`).
    pub graph: Graph,
    /// Its labels.
    pub labels: Vec<usize>,
    /// The split; `valid` is the training nodes when the data set has no validation nodes.
    pub split: NodeSplit,
    /// Whether validation falls back on the training nodes.
    pub valid_is_train: bool,
    /// What a run saves of it (with the hidden width still to choose).
    pub meta: GraphMeta,
}

/// The node labels and the split of `graph`: the data set's own, else a stratified one from
/// the run's fractions and seed; `valid` is the training nodes when there are no validation
/// nodes (and the flag says so).
///
/// # Errors
/// A graph without labels, a split without training or test nodes.
pub(crate) fn split_of(graph: &Graph, config: &RunConfig) -> Result<(Vec<usize>, NodeSplit, bool)> {
    let labels = graph.labels.clone().ok_or_else(|| {
        Error::Usage(format!(
            "{}: the graph's nodes have no labels",
            config.dataset
        ))
    })?;
    let mut split = match &graph.split {
        Some(s) => s.clone(),
        None => {
            let s = stratified_split(
                &labels,
                config.valid_fraction,
                config.test_fraction,
                config.fit.seed,
            )?;
            NodeSplit {
                train: s.train,
                valid: s.valid,
                test: s.test,
            }
        }
    };
    if split.train.is_empty() || split.test.is_empty() {
        return Err(Error::Usage(format!(
            "{}: the split has {} training and {} test nodes; both are needed",
            config.dataset,
            split.train.len(),
            split.test.len()
        )));
    }
    let valid_is_train = split.valid.is_empty();
    if valid_is_train {
        split.valid = split.train.clone();
    }
    Ok((labels, split, valid_is_train))
}

/// Fixes the split ([`split_of`]) and normalises non-negative features by row.
///
/// # Errors
/// As [`split_of`].
pub(crate) fn prepare(mut graph: Graph, config: &RunConfig) -> Result<NodeData> {
    let (labels, split, valid_is_train) = split_of(&graph, config)?;
    let normalize = normalize_rows(&mut graph.features, graph.n_features);
    let meta = GraphMeta {
        graph_level: false,
        n_features: graph.n_features,
        class_names: graph.class_names.clone(),
        normalize_rows: normalize,
        d_hidden: 0,
    };
    Ok(NodeData {
        graph,
        labels,
        split,
        valid_is_train,
        meta,
    })
}

/// What [`fit_objective`] trains a node classifier on: one example, the graph.
struct NodeObjective<'a> {
    train: OnDevice,
    valid: OnDevice,
    data: &'a NodeData,
    train_labels: Tensor<1, Int>,
}

fn labels_of(data: &NodeData, nodes: &[usize]) -> Vec<usize> {
    nodes.iter().map(|&i| data.labels[i]).collect()
}

impl Objective<Gnn> for NodeObjective<'_> {
    fn n_train(&self) -> usize {
        1
    }

    fn batch_loss(&self, model: &Gnn, _: &[usize]) -> strata_train::Result<Tensor<1>> {
        let logits = self
            .train
            .rows(self.train.logits(model), &self.data.split.train);
        let ce = CrossEntropyLossConfig::new().init(&self.train.device);
        Ok(ce.forward(logits, self.train_labels.clone()))
    }

    fn validate(&self, model: &Gnn) -> strata_train::Result<(f64, f64)> {
        let nodes = &self.data.split.valid;
        let ev = evaluation(
            self.valid.rows(self.valid.logits(model), nodes),
            &labels_of(self.data, nodes),
        )?;
        Ok((ev.loss, ev.report.headline()))
    }

    fn metric_name(&self) -> &str {
        "acc"
    }

    fn lower_metric_is_better(&self) -> bool {
        false
    }
}

/// Trains one node classifier per `--hidden` width (see [`fit_widths`]).
pub(crate) fn fit_nodes(
    ctx: &Context<'_>,
    data: &NodeData,
    checkpoints: Option<&std::path::Path>,
) -> Result<Option<(Vec<Fitted>, usize)>> {
    let ad = ctx.device.clone().autodiff();
    let objective = NodeObjective {
        train: OnDevice::new(&data.graph, data.graph.features.clone(), &ad)?,
        valid: OnDevice::new(&data.graph, data.graph.features.clone(), &ctx.device)?,
        data,
        train_labels: classes(&labels_of(data, &data.split.train), &ad),
    };
    fit_widths(ctx, &data.meta, checkpoints, &objective)
}

/// Trains a node classifier on `graph` and writes the run directory.
pub(crate) fn train(ctx: &Context<'_>, graph: Graph) -> Result<RunResult> {
    let (config, out) = (ctx.config, ctx.out);
    for w in crate::family::Family::warnings(&super::Gnns, config) {
        ctx.progress.warning(&w);
    }
    let data = prepare(graph, config)?;
    gnn_config(
        config,
        &GraphMeta {
            d_hidden: config.network.hidden[0],
            ..data.meta.clone()
        },
    )?;
    ctx.open_run_dir(config, None)?;
    let s = &data.split;
    ctx.progress.note(&format!(
        "training {} on {} ({} nodes, {} edges; {} train / {} valid / {} test nodes{}) with {} on {}",
        config.model,
        config.dataset,
        data.graph.n_nodes,
        data.graph.n_edges(),
        s.train.len(),
        if data.valid_is_train { 0 } else { s.valid.len() },
        s.test.len(),
        if data.valid_is_train { "; validation on the training nodes" } else { "" },
        config.optimizer.kind.name(),
        config.backend
    ));
    let Some((fitted, best)) = fit_nodes(ctx, &data, Some(&out.join("checkpoints")))? else {
        return Ok(RunResult::paused(out, 0));
    };
    let (run, outcome, selection) = keep_best(ctx, fitted, best)?;
    // One forward pass for the test and validation figures; the embedding reads the same
    // prepared graph.
    let on = OnDevice::new(&data.graph, data.graph.features.clone(), &ctx.device)?;
    let logits = on.logits(&run.model);
    let test = evaluation(on.rows(logits.clone(), &s.test), &labels_of(&data, &s.test))?;
    let valid = evaluation(on.rows(logits, &s.valid), &labels_of(&data, &s.valid))?;
    write_node_predictions(out, &data, &test.outputs, test.n_outputs)?;
    let mut metrics = run_summary(config, &outcome);
    metrics["test"] = metrics_json(&test);
    metrics["valid"] = metrics_json(&valid);
    metrics["selection"] = selection;
    metrics["graph"] = json!({
        "nodes": data.graph.n_nodes,
        "edges": data.graph.n_edges(),
        "train_nodes": s.train.len(),
        "valid_nodes": if data.valid_is_train { 0 } else { s.valid.len() },
        "test_nodes": s.test.len(),
    });
    if run.draw_embedding_of(&on, &data.labels)? {
        metrics["pictures"] = json!(["embedding.png"]);
    }
    write_metrics(out, &metrics)?;
    let line = format!(
        "test {}  ({})",
        summary_line(&test),
        run_line(config, &outcome)
    );
    Ok(RunResult::finished(out, &outcome, metrics, line))
}

/// `test_predictions.csv`: `node,label,prediction` for each test node.
fn write_node_predictions(
    out: &std::path::Path,
    data: &NodeData,
    probs: &[f32],
    k: usize,
) -> Result<()> {
    let names = &data.meta.class_names;
    let predicted = strata_metrics::argmax_rows(probs, k);
    let mut csv = String::from("node,label,prediction\n");
    for (&i, &p) in data.split.test.iter().zip(&predicted) {
        csv.push_str(&format!(
            "{},{},{}\n",
            data.graph.node_ids[i], names[data.labels[i]], names[p]
        ));
    }
    write_atomic(&out.join("test_predictions.csv"), csv.as_bytes())?;
    Ok(())
}
