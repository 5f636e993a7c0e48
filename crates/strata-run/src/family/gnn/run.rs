//! A finished graph run, back for use: predictions for the nodes of a graph or for graphs,
//! re-evaluation, and the picture of a node classifier's embedding.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use burn::tensor::activation::softmax;
use serde_json::json;
use strata_arch::Gnn;
use strata_data::{Graph, GraphSource, load_graph, load_graph_dir, load_tu_dir, normalize_rows};
use strata_tensor::convert::to_vec;

use super::graphs::DeviceBatch;
use super::{GraphMeta, OnDevice, evaluation, gnn_config};
use crate::config::RunConfig;
use crate::error::{Error, Result};
use crate::evaluate::{Evaluated, load_run_config, write_evaluation};
use crate::family::Family;
use crate::pictures::{Scatter, plane, save_png};
use crate::pipeline::{metrics_json, summary_line};
use crate::run_dir::{finished_weights, load_weights};

/// A finished graph run, loaded.
///
/// ```no_run
/// use strata_run::GnnRun;
/// let run = GnnRun::open("runs/gcn-cora", None)?;
/// let cora = strata_data::GraphSource::Nodes(strata_data::cora());
/// let p = run.predict(&cora)?; // a row per node: id, class, probabilities
/// # Ok::<(), strata_run::Error>(())
/// ```
pub struct GnnRun {
    /// The run directory.
    pub dir: PathBuf,
    /// The run's config.
    pub config: RunConfig,
    /// Its sizes and classes (`graph.json`).
    pub meta: GraphMeta,
    /// The model, in evaluation mode.
    pub model: Gnn,
    /// The device it lives on.
    pub device: Device,
}

/// A graph named on the command line: a spec (`cora`, `graph:DIR`, `tu:DIR`, ...), or a
/// directory holding `nodes.csv` (one graph) or TU files (graphs).
///
/// # Errors
/// Anything else, unreadable or malformed files.
pub(crate) fn read_graph_input(input: &Path) -> Result<GraphSource> {
    let spec = input.to_string_lossy();
    if let Some(source) = load_graph(&spec)? {
        return Ok(source);
    }
    if input.is_dir() {
        if input.join("nodes.csv").exists() || input.join("nodes.csv.gz").exists() {
            return Ok(GraphSource::Nodes(load_graph_dir(input)?));
        }
        return Ok(GraphSource::Graphs(load_tu_dir(input)?));
    }
    Err(Error::Usage(format!(
        "{spec}: a graph run predicts a graph: give karate, cora, mutag, graph:DIR, tu:DIR or a directory of graph files"
    )))
}

impl GnnRun {
    /// Loads the finished graph run in `dir` (on `backend`, or its own).
    ///
    /// # Errors
    /// A directory that is not a finished graph run, weights that do not fit its config.
    pub fn open(dir: impl AsRef<Path>, backend: Option<&str>) -> Result<Self> {
        let dir = dir.as_ref();
        let config = load_run_config(dir, backend)?;
        if !super::Gnns.has(&config.model) {
            return Err(Error::Usage(format!(
                "{}: model {} is not a graph network",
                dir.display(),
                config.model
            )));
        }
        let path = dir.join("graph.json");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let meta: GraphMeta = serde_json::from_str(&text).map_err(|e| Error::Config {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let device = config.backend.usable_device()?;
        let net = gnn_config(&config, &meta)?;
        let model = load_weights(net.init(&device)?, &config.model, &finished_weights(dir)?)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            meta,
            model,
            device,
        })
    }

    /// Checks that `n` features per node is what the model reads.
    fn check_features(&self, n: usize, what: &str) -> Result<()> {
        if n != self.meta.n_features {
            return Err(Error::Usage(format!(
                "{what} has {n} features per node; the model of {} reads {}",
                self.dir.display(),
                self.meta.n_features
            )));
        }
        Ok(())
    }

    /// `g` on the run's device with its features as the model reads them (normalised by row
    /// when the run's were).
    ///
    /// # Errors
    /// Features of another width; negative features for a model trained on normalised ones.
    fn prepared(&self, g: &Graph) -> Result<OnDevice> {
        self.check_features(g.n_features, &g.name)?;
        let mut x = g.features.clone();
        if self.meta.normalize_rows && !normalize_rows(&mut x, g.n_features) {
            return Err(Error::Usage(format!(
                "{}: negative features; the model was trained on non-negative features, normalised by row",
                g.name
            )));
        }
        OnDevice::new(g, x, &self.device)
    }

    /// Predictions for `source`: a row per node of a graph (node classifier) or per graph
    /// (graph classifier), keyed by node id or graph number (from 1).
    ///
    /// # Errors
    /// Nodes for a graph classifier or graphs for a node classifier, features of another
    /// width.
    pub fn predict(&self, source: &GraphSource) -> Result<crate::Predictions> {
        let names = self.meta.class_names.clone();
        match (source, self.meta.graph_level) {
            (GraphSource::Nodes(g), false) => Ok(crate::Predictions::Keyed {
                key: "node".into(),
                ids: g.node_ids.clone(),
                names,
                probabilities: to_vec(softmax(self.prepared(g)?.logits(&self.model), 1)),
            }),
            (GraphSource::Graphs(set), true) => {
                self.check_features(set.n_features(), &set.name)?;
                let batch = DeviceBatch::new(
                    &set.batch(&(0..set.len()).collect::<Vec<_>>()),
                    &self.device,
                )?;
                Ok(crate::Predictions::Keyed {
                    key: "graph".into(),
                    ids: (1..=set.len()).map(|i| i.to_string()).collect(),
                    names,
                    probabilities: to_vec(softmax(batch.logits(&self.model), 1)),
                })
            }
            (GraphSource::Nodes(_), true) => Err(Error::Usage(format!(
                "{} classifies graphs; give labelled graphs (mutag, tu:DIR), not one graph",
                self.dir.display()
            ))),
            (GraphSource::Graphs(_), false) => Err(Error::Usage(format!(
                "{} classifies the nodes of one graph (cora, karate, graph:DIR), not a set of graphs",
                self.dir.display()
            ))),
        }
    }

    /// Evaluates the run on its own test nodes or graphs, or on `dataset` (its test split
    /// when it has one, else all of it); writes `evaluation.json`.
    ///
    /// # Errors
    /// Data that do not fit the model.
    pub fn evaluate(&self, dataset: Option<&str>) -> Result<Evaluated> {
        let spec = dataset.unwrap_or(&self.config.dataset);
        let source = load_graph(spec)?
            .ok_or_else(|| Error::Usage(format!("`{spec}` is not a graph data set")))?;
        let (name, ev) = match source {
            GraphSource::Nodes(g) => {
                if self.meta.graph_level {
                    return Err(Error::Usage(format!(
                        "{} classifies graphs, not nodes",
                        self.dir.display()
                    )));
                }
                let (labels, split, _) = super::node::split_of(&g, &self.config)?;
                let on = self.prepared(&g)?;
                let logits = on.rows(on.logits(&self.model), &split.test);
                let labels: Vec<usize> = split.test.iter().map(|&i| labels[i]).collect();
                let ev = evaluation(logits, &labels)?;
                (format!("{spec} (test nodes)"), ev)
            }
            GraphSource::Graphs(set) => {
                if !self.meta.graph_level {
                    return Err(Error::Usage(format!(
                        "{} classifies nodes, not graphs",
                        self.dir.display()
                    )));
                }
                self.check_features(set.n_features(), spec)?;
                let c = &self.config;
                let rows = if dataset.is_none() {
                    strata_data::stratified_split(
                        &set.labels,
                        c.valid_fraction,
                        c.test_fraction,
                        c.fit.seed,
                    )?
                    .test
                } else {
                    (0..set.len()).collect()
                };
                let batch = DeviceBatch::new(&set.batch(&rows), &self.device)?;
                let ev = evaluation(batch.logits(&self.model), &batch.labels)?;
                (format!("{spec} ({} graphs)", rows.len()), ev)
            }
        };
        let out = json!({
            "model": self.config.model,
            "dataset": name,
            "backend": self.config.backend.name(),
            "test": metrics_json(&ev),
        });
        let summary = format!("{name}: {}", summary_line(&ev));
        write_evaluation(&self.dir, summary, out)
    }

    /// A node classifier's hidden representation of every node of `g` in two dimensions
    /// (its first two principal components when it is wider).
    ///
    /// # Errors
    /// A graph classifier, features of another width.
    pub fn embedding(&self, g: &Graph) -> Result<Vec<[f32; 2]>> {
        self.embedding_of(&self.prepared(g)?)
    }

    /// [`embedding`](Self::embedding) of a graph already on the device.
    fn embedding_of(&self, on: &OnDevice) -> Result<Vec<[f32; 2]>> {
        if self.meta.graph_level {
            return Err(Error::Usage(
                "a graph classifier embeds graphs, not nodes".into(),
            ));
        }
        let h = self.model.hidden(on.x.clone(), &on.edges);
        let d = h.dims()[1];
        plane(to_vec(h), d)
    }

    /// Draws `embedding.png`: every node of `g` at its [`embedding`](Self::embedding),
    /// coloured by its class in `labels`. Returns whether it was drawn (not when the
    /// embedding is not finite).
    ///
    /// # Errors
    /// As [`embedding`](Self::embedding); I/O errors.
    pub fn draw_embedding(&self, g: &Graph, labels: &[usize]) -> Result<bool> {
        self.draw_embedding_of(&self.prepared(g)?, labels)
    }

    /// [`draw_embedding`](Self::draw_embedding) of a graph already on the device (with the
    /// features the model reads).
    pub(crate) fn draw_embedding_of(&self, on: &OnDevice, labels: &[usize]) -> Result<bool> {
        let points = self.embedding_of(on)?;
        if !points.iter().flatten().all(|v| v.is_finite()) {
            return Ok(false);
        }
        save_png(
            &Scatter::new(480).draw(&points, labels)?,
            &self.dir.join("embedding.png"),
        )?;
        Ok(true)
    }
}
