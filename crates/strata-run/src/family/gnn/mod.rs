//! Graph networks: `gcn`, `sage`, `gat`, `gin` and the structure-agnostic baseline
//! `graph-mlp`, on one graph whose nodes they classify (`karate`, `cora`, `graph:DIR`) or on
//! labelled graphs (`mutag`, `tu:DIR`).
//!
//! Node classification trains full-batch: each epoch is one step on the whole graph, the loss
//! on the training nodes only. Graph classification trains on mini-batches of graphs, batched
//! into one block-diagonal graph. Several `--hidden` widths are candidates: each is trained
//! and the one with the best validation accuracy kept (model selection). `--kfold K` on
//! graphs runs stratified K-fold cross-validation, each fold selecting on an inner validation
//! split of its training part (Errica et al. 2020), before the run's own model is trained.

mod graphs;
mod node;
mod run;

use std::path::Path;

use burn::tensor::{Device, Tensor, activation::softmax};
use serde::{Deserialize, Serialize};
use strata_arch::{GnnConfig, GnnKind, NetworkConfig};
use strata_data::{Graph, GraphSource, Source};
use strata_layers::{Edges, Readout};
use strata_metrics::ClassificationReport;
use strata_optim::{ScheduleConfig, ScheduleKind};
use strata_train::{EarlyStopping, Evaluation, Monitor, Report};

use super::Family;
use crate::config::RunConfig;
use crate::data::Preprocess;
use crate::error::{Error, Result};
use crate::evaluate::Evaluated;
use crate::pipeline::{Context, RunResult};

pub use run::GnnRun;

/// `gcn`, `sage`, `gat`, `gin`, `graph-mlp`.
pub struct Gnns;

const MODELS: [(&str, &str); 5] = [
    (
        "gcn",
        "graph convolutional network (Kipf & Welling): nodes of a graph, or graphs (--dataset cora|karate|mutag|graph:DIR|tu:DIR)",
    ),
    (
        "sage",
        "GraphSAGE: mean or max of the neighbours plus the node itself (--aggregator mean|max)",
    ),
    (
        "gat",
        "graph attention network: multi-head attention over each node's neighbours (--heads)",
    ),
    (
        "gin",
        "graph isomorphism network: sum aggregation, an MLP per layer, readout from every layer",
    ),
    (
        "graph-mlp",
        "structure-agnostic baseline: an MLP on node features (summed per graph), no edges",
    ),
];

/// The layer kind of `model`.
pub(crate) fn kind(model: &str) -> GnnKind {
    match model {
        "sage" => GnnKind::Sage,
        "gat" => GnnKind::Gat,
        "gin" => GnnKind::Gin,
        "graph-mlp" => GnnKind::Mlp,
        _ => GnnKind::Gcn,
    }
}

/// Whether `dataset` names labelled graphs (graph classification).
fn graph_level_spec(dataset: &str) -> bool {
    dataset == "mutag" || dataset.starts_with("tu:")
}

impl Family for Gnns {
    fn name(&self) -> &'static str {
        "gnn"
    }

    fn models(&self) -> &'static [(&'static str, &'static str)] {
        &MODELS
    }

    fn has(&self, model: &str) -> bool {
        MODELS.iter().any(|(m, _)| *m == model)
    }

    fn default_dataset(&self, model: &str) -> &'static str {
        if model == "gin" { "mutag" } else { "cora" }
    }

    /// Node classification (Kipf & Welling's and Velickovic et al.'s settings on Cora): Adam,
    /// weight decay 5e-4, constant rate, 200 full-batch epochs, the weights of the epoch with
    /// the best validation accuracy; `gcn` 2 layers of 16 (dropout 0.5, lr 0.01), `gat` 8
    /// heads of 8 then one output head (dropout 0.6 on features and attention, lr 0.005),
    /// `sage` and `gin` 2 layers of 64, `graph-mlp` one hidden layer of 64. On the karate club
    /// (two labelled nodes, no validation nodes) all 200 epochs run.
    ///
    /// Graph classification (Xu et al.'s GIN): 4 layers of 32 with batch norm (5 readouts with
    /// the input's), sum readout, dropout 0.5 on the scores, Adam at 0.01 halved every 50
    /// epochs, batches of 32, up to 300 epochs with early stopping (patience 50) on validation
    /// accuracy; `graph-mlp` a node layer of 32, sum, a linear classifier.
    fn recipe(&self, model: &str, dataset: &str, c: &mut RunConfig) {
        let k = kind(model);
        c.optimizer.kind = strata_optim::OptimizerKind::by_name("adam").expect("adam is known");
        c.network.batch_norm = false;
        c.schedule = ScheduleConfig {
            kind: ScheduleKind::Constant,
            warmup_epochs: 0,
        };
        c.fit.restore_best = true;
        if graph_level_spec(dataset) {
            c.network.hidden = vec![32];
            c.network.layers = 4;
            c.network.batch_norm = true;
            c.network.dropout = 0.5;
            c.network.heads = 4;
            c.optimizer.lr = 0.01;
            c.optimizer.weight_decay = 0.0;
            c.schedule.kind = ScheduleKind::Step {
                step_size: 50,
                gamma: 0.5,
            };
            c.fit.epochs = 300;
            c.fit.batch_size = 32;
            c.valid_fraction = 0.1;
            c.test_fraction = 0.1;
            c.fit.early_stopping = Some(EarlyStopping {
                monitor: Monitor::ValidMetric,
                patience: 50,
                min_delta: 0.0,
            });
            return;
        }
        c.fit.epochs = 200;
        c.optimizer.weight_decay = 5e-4;
        c.network.layers = 2;
        c.fit.early_stopping = Some(EarlyStopping {
            monitor: Monitor::ValidMetric,
            patience: 200,
            min_delta: 0.0,
        });
        match k {
            GnnKind::Gat => {
                c.network.hidden = vec![8];
                c.network.heads = 8;
                c.network.dropout = 0.6;
                c.optimizer.lr = 0.005;
            }
            GnnKind::Gcn => {
                c.network.hidden = vec![16];
                c.network.dropout = 0.5;
                c.optimizer.lr = 0.01;
            }
            _ => {
                c.network.hidden = vec![64];
                c.network.dropout = 0.5;
                c.optimizer.lr = 0.01;
            }
        }
        if dataset == "karate" {
            c.fit.early_stopping = None;
        }
    }

    fn validate(&self, config: &RunConfig) -> Result<()> {
        if config.network.hidden.is_empty() || config.network.hidden.contains(&0) {
            return Err(Error::Usage(
                "a graph network needs a hidden width: --hidden 16 (several widths, --hidden 16,64, are candidates chosen on the validation set)".into(),
            ));
        }
        if config.network.layers == 0 || config.network.heads == 0 {
            return Err(Error::Usage(
                "--layers and --heads must be at least 1".into(),
            ));
        }
        Ok(())
    }

    fn warnings(&self, config: &RunConfig) -> Vec<String> {
        let mut w = Vec::new();
        if config.model != "sage" && config.network.aggregator != strata_layers::Aggregator::Mean {
            w.push(format!(
                "--aggregator applies to sage; {} does not use it",
                config.model
            ));
        }
        if config.kfold >= 2 && !graph_level_spec(&config.dataset) {
            w.push("--kfold cross-validates graph classification; a node-classification run uses its split".into());
        }
        w
    }

    fn check_series(&self, config: &RunConfig) -> Result<()> {
        Err(not_graph(config))
    }

    fn network(&self, config: &RunConfig, _: &Preprocess, _: usize) -> Result<NetworkConfig> {
        Err(not_graph(config))
    }

    fn adversarial_training(&self) -> bool {
        false
    }

    fn train(&self, ctx: &Context<'_>, source: Source) -> Result<RunResult> {
        match source {
            Source::Graph(GraphSource::Nodes(g)) => node::train(ctx, g),
            Source::Graph(GraphSource::Graphs(set)) => graphs::train(ctx, set),
            _ => Err(not_graph(ctx.config)),
        }
    }

    fn evaluate(
        &self,
        dir: &Path,
        backend: Option<&str>,
        dataset: Option<&str>,
    ) -> Result<Evaluated> {
        GnnRun::open(dir, backend)?.evaluate(dataset)
    }

    fn predict(
        &self,
        dir: &Path,
        backend: Option<&str>,
        input: &Path,
        class: Option<&str>,
    ) -> Result<crate::Predictions> {
        super::refuse_class(class)?;
        let run = GnnRun::open(dir, backend)?;
        let source = run::read_graph_input(input)?;
        run.predict(&source)
    }
}

/// The error for data that are not a graph.
fn not_graph(config: &RunConfig) -> Error {
    Error::Usage(format!(
        "model {} learns on graphs (--dataset karate, cora, mutag, graph:DIR or tu:DIR); `{}` is not a graph",
        config.model, config.dataset
    ))
}

/// What a graph run saves beside its weights (`graph.json`) to be used again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphMeta {
    /// Classifies graphs (else nodes).
    pub graph_level: bool,
    /// Features per node.
    pub n_features: usize,
    /// The class names, in output order.
    pub class_names: Vec<String>,
    /// Whether node features are divided by their row sum (non-negative features, as
    /// PyTorch Geometric's `NormalizeFeatures`).
    pub normalize_rows: bool,
    /// The hidden width chosen on the validation set.
    pub d_hidden: usize,
}

/// The network a run asks for, with hidden width `d_hidden`.
///
/// # Errors
/// Invalid sizes.
pub fn gnn_config(config: &RunConfig, meta: &GraphMeta) -> Result<GnnConfig> {
    let n = &config.network;
    let k = kind(&config.model);
    let c = GnnConfig::new(meta.n_features, meta.class_names.len())
        .with_kind(k)
        .with_d_hidden(meta.d_hidden)
        .with_n_layers(n.layers)
        .with_n_heads(if k == GnnKind::Gat || meta.graph_level {
            n.heads
        } else {
            1
        })
        .with_aggregator(n.aggregator)
        .with_dropout(n.dropout)
        .with_attention_dropout(if k == GnnKind::Gat { n.dropout } else { 0.0 })
        .with_graph_level(meta.graph_level)
        .with_readout(Readout::Sum)
        .with_batch_norm(meta.graph_level && n.batch_norm);
    c.validate()
        .map_err(|e| Error::Usage(format!("{}: {e}", config.model)))?;
    Ok(c)
}

/// A graph on one device: its node features and its edges.
pub(crate) struct OnDevice {
    /// Node features, `[nodes, features]`.
    pub x: Tensor<2>,
    /// The edges.
    pub edges: Edges,
    /// The device.
    pub device: Device,
}

impl OnDevice {
    /// `g` with node features `features` (its own, or prepared from them) on `device`.
    pub(crate) fn new(g: &Graph, features: Vec<f32>, device: &Device) -> Result<Self> {
        Ok(Self {
            x: strata_tensor::convert::matrix(features, g.n_nodes, g.n_features, device),
            edges: Edges::new(
                g.n_nodes,
                &g.source,
                &g.target,
                g.edge_weight.as_deref(),
                device,
            )?,
            device: device.clone(),
        })
    }

    /// A node classifier's logits for every node, `[nodes, classes]`.
    pub(crate) fn logits(&self, model: &strata_arch::Gnn) -> Tensor<2> {
        model.forward(self.x.clone(), &self.edges)
    }

    /// The rows `nodes` of a per-node tensor.
    pub(crate) fn rows(&self, t: Tensor<2>, nodes: &[usize]) -> Tensor<2> {
        t.select(0, strata_tensor::convert::classes(nodes, &self.device))
    }
}

/// The evaluation of `logits` (`[n, k]`) against `labels`: loss (mean negative
/// log-likelihood), accuracy, F1 and the rest, probabilities as outputs.
fn evaluation(
    logits: Tensor<2>,
    labels: &[usize],
) -> std::result::Result<Evaluation, strata_metrics::Error> {
    let k = logits.dims()[1];
    let probs = strata_tensor::convert::to_vec(softmax(logits, 1));
    let report = ClassificationReport::new(labels, &probs, k)?;
    let loss = report.log_loss;
    Ok(Evaluation {
        loss,
        report: Report::Classification(report),
        outputs: probs,
        n_outputs: k,
    })
}

/// A trained candidate of the model selection.
pub(crate) struct Fitted {
    /// How its training went (its model in training mode).
    pub outcome: strata_train::FitOutcome<strata_arch::Gnn>,
    /// Its sizes.
    pub meta: GraphMeta,
    /// Its validation accuracy.
    pub valid_accuracy: f64,
}

/// Trains one model per `--hidden` width on `objective` (from the same seed, checkpointing
/// in `checkpoints`, or `checkpoints/hidden-W` when there are several); returns them in
/// order with the index of the best validation accuracy (the first of ties), or `None` when
/// training paused.
///
/// # Errors
/// Invalid sizes, training failures.
pub(crate) fn fit_widths<O: strata_train::Objective<strata_arch::Gnn>>(
    ctx: &Context<'_>,
    base: &GraphMeta,
    checkpoints: Option<&Path>,
    objective: &O,
) -> Result<Option<(Vec<Fitted>, usize)>> {
    let config = ctx.config;
    let ad = ctx.device.clone().autodiff();
    let widths = &config.network.hidden;
    let mut fitted: Vec<Fitted> = Vec::new();
    for &w in widths {
        let meta = GraphMeta {
            d_hidden: w,
            ..base.clone()
        };
        strata_tensor::seed_device(&ad, config.fit.seed);
        let model = gnn_config(config, &meta)?.init(&ad)?;
        let ckpt = checkpoints.map(|c| {
            if widths.len() == 1 {
                c.to_path_buf()
            } else {
                c.join(format!("hidden-{w}"))
            }
        });
        if widths.len() > 1 {
            ctx.progress.note(&format!("candidate: hidden width {w}"));
        }
        let outcome = strata_train::fit_objective(
            model,
            objective,
            &ctx.run(ad.clone(), ckpt.as_deref(), None),
        )?;
        if !outcome.finished {
            return Ok(None);
        }
        let (_, acc) = objective.validate(&burn::module::Module::valid(&outcome.model))?;
        fitted.push(Fitted {
            outcome,
            meta,
            valid_accuracy: acc,
        });
    }
    let best = (0..fitted.len())
        .reduce(|b, i| {
            if fitted[i].valid_accuracy > fitted[b].valid_accuracy {
                i
            } else {
                b
            }
        })
        .expect("at least one width");
    Ok(Some((fitted, best)))
}

/// The run a model selection ends with: the chosen candidate's history written, its weights
/// (`model.safetensors`) and sizes (`graph.json`) saved; with its training's outcome and the
/// `selection` rows of `metrics.json` (each width's validation accuracy).
///
/// # Errors
/// I/O errors.
pub(crate) fn keep_best(
    ctx: &Context<'_>,
    fitted: Vec<Fitted>,
    best: usize,
) -> Result<(
    GnnRun,
    strata_train::FitOutcome<strata_arch::Gnn>,
    serde_json::Value,
)> {
    let (config, out) = (ctx.config, ctx.out);
    let selection: Vec<_> = fitted
        .iter()
        .map(|f| serde_json::json!({"d_hidden": f.meta.d_hidden, "valid_accuracy": f.valid_accuracy}))
        .collect();
    let chosen = fitted.into_iter().nth(best).expect("best is an index");
    let outcome = chosen.outcome;
    crate::run_dir::write_history(config, out, "accuracy", &outcome)?;
    let run = GnnRun {
        dir: out.to_path_buf(),
        config: config.clone(),
        meta: chosen.meta,
        model: burn::module::Module::valid(&outcome.model),
        device: ctx.device.clone(),
    };
    crate::run_dir::save_safetensors(&run.model, &out.join("model.safetensors"))?;
    crate::run_dir::write_json(&out.join("graph.json"), &run.meta)?;
    Ok((run, outcome, serde_json::json!(selection)))
}
