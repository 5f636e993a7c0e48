//! The edges of a graph on the device, in the forms the convolutions need: as given (sum,
//! mean and max aggregation), and with exactly one self loop per node (GCN, GAT) with GCN's
//! symmetric normalisation.

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::error::{Error, Result};

/// A graph's edges on a device (built once per graph or batch, shared by every layer).
///
/// Messages flow `source[e] -> target[e]`. The raw edges are exactly those given (self
/// loops and duplicates included, each counted once). The looped edges drop every given self
/// loop and add one per node, weighted by the node's given self-loop weight (the last one,
/// when given twice) or 1, as PyTorch Geometric's `add_remaining_self_loops`; GCN's
/// normalisation `w / sqrt(deg(source) deg(target))` uses them, with degrees summed over the
/// target's looped edges.
///
/// ```
/// use burn::tensor::Device;
/// use strata_layers::Edges;
/// let d = Device::flex();
/// // 0 -> 1, 1 -> 1 (a self loop); node 2 isolated.
/// let e = Edges::new(3, &[0, 1], &[1, 1], None, &d)?;
/// assert_eq!((e.n_edges(), e.n_looped_edges()), (2, 4));
/// assert_eq!(e.in_degrees(), vec![0, 2, 0]);
/// # Ok::<(), strata_layers::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Edges {
    n_nodes: usize,
    degrees: Vec<usize>,
    /// Raw edges' sources, `[E]`.
    pub source: Tensor<1, Int>,
    /// Raw edges' targets, `[E]`.
    pub target: Tensor<1, Int>,
    /// Raw edges' weights, `[E]` (`None`: all 1).
    pub weight: Option<Tensor<1>>,
    /// Each node's raw in-degree as a float column, at least 1, `[N, 1]` (the divisor of mean
    /// aggregation; a node with no edges in gets 0 from the sum either way).
    pub degree: Tensor<2>,
    /// Looped edges' sources, `[E' = E - self loops + N]`.
    pub looped_source: Tensor<1, Int>,
    /// Looped edges' targets, `[E']`.
    pub looped_target: Tensor<1, Int>,
    /// GCN's coefficient of each looped edge, `[E']`.
    pub gcn_norm: Tensor<1>,
}

/// An int vector on `device`.
fn ints(v: &[usize], device: &Device) -> Tensor<1, Int> {
    let v: Vec<i64> = v.iter().map(|&i| i as i64).collect();
    let n = v.len();
    Tensor::from_data(TensorData::new(v, [n]), device)
}

/// A float vector on `device`.
fn floats(v: Vec<f32>, device: &Device) -> Tensor<1> {
    let n = v.len();
    Tensor::from_data(TensorData::new(v, [n]), device)
}

impl Edges {
    /// The edges `source[e] -> target[e]` of a graph of `n_nodes` nodes, with optional
    /// weights, on `device`.
    ///
    /// # Errors
    /// No nodes, lists of different lengths, an edge to a node that does not exist, a weight
    /// that is not finite.
    pub fn new(
        n_nodes: usize,
        source: &[usize],
        target: &[usize],
        weight: Option<&[f32]>,
        device: &Device,
    ) -> Result<Self> {
        let bad = |m: String| Err(Error::Graph(m));
        if n_nodes == 0 {
            return bad("a graph needs at least one node".into());
        }
        if source.len() != target.len() {
            return bad(format!(
                "{} sources but {} targets",
                source.len(),
                target.len()
            ));
        }
        if let Some(e) = (0..source.len()).find(|&e| source[e].max(target[e]) >= n_nodes) {
            return bad(format!(
                "edge {e} ({} -> {}) names a node that does not exist (the graph has {n_nodes})",
                source[e], target[e]
            ));
        }
        if let Some(w) = weight {
            if w.len() != source.len() {
                return bad(format!("{} weights for {} edges", w.len(), source.len()));
            }
            if let Some(e) = w.iter().position(|v| !v.is_finite()) {
                return bad(format!("edge {e} has weight {}", w[e]));
            }
        }
        let w = |e: usize| weight.map_or(1.0, |w| f64::from(w[e]));
        let mut degrees = vec![0usize; n_nodes];
        for &t in target {
            degrees[t] += 1;
        }
        // Looped edges: the given ones that are not self loops, then one loop per node.
        let mut loop_weight = vec![1.0f64; n_nodes];
        let (mut ls, mut lt, mut lw) = (Vec::new(), Vec::new(), Vec::new());
        for e in 0..source.len() {
            if source[e] == target[e] {
                loop_weight[source[e]] = w(e);
            } else {
                ls.push(source[e]);
                lt.push(target[e]);
                lw.push(w(e));
            }
        }
        ls.extend(0..n_nodes);
        lt.extend(0..n_nodes);
        lw.extend_from_slice(&loop_weight);
        let mut deg = vec![0.0f64; n_nodes];
        for (&t, &x) in lt.iter().zip(&lw) {
            deg[t] += x;
        }
        let inv_sqrt: Vec<f64> = deg
            .iter()
            .map(|&d| if d > 0.0 { 1.0 / d.sqrt() } else { 0.0 })
            .collect();
        let norm: Vec<f32> = (0..ls.len())
            .map(|e| (inv_sqrt[ls[e]] * lw[e] * inv_sqrt[lt[e]]) as f32)
            .collect();
        let degree: Vec<f32> = degrees.iter().map(|&d| d.max(1) as f32).collect();
        Ok(Self {
            n_nodes,
            source: ints(source, device),
            target: ints(target, device),
            weight: weight.map(|w| floats(w.to_vec(), device)),
            degree: floats(degree, device).reshape([n_nodes, 1]),
            looped_source: ints(&ls, device),
            looped_target: ints(&lt, device),
            gcn_norm: floats(norm, device),
            degrees,
        })
    }

    /// Number of nodes.
    pub fn n_nodes(&self) -> usize {
        self.n_nodes
    }

    /// Number of raw edges.
    pub fn n_edges(&self) -> usize {
        self.source.dims()[0]
    }

    /// Number of looped edges.
    pub fn n_looped_edges(&self) -> usize {
        self.looped_source.dims()[0]
    }

    /// Each node's raw in-degree (self loops and duplicates counted).
    pub fn in_degrees(&self) -> Vec<usize> {
        self.degrees.clone()
    }
}
