//! Graphs: one graph with labelled nodes ([`Graph`], node classification) or many labelled
//! graphs ([`GraphSet`], graph classification), batched PyTorch-Geometric style into one
//! block-diagonal graph with a per-node graph index ([`GraphBatch`]).
//!
//! Edges are directed pairs in COO form, `source[e] -> target[e]`: a message flows from the
//! source to the target, and an undirected edge is two directed ones. What a [`Graph`] holds is
//! exactly what it was given; nothing is added or merged behind the caller's back:
//! - **self loops** `(i, i)` are kept as ordinary edges. Layers that need exactly one self loop
//!   per node (GCN, GAT) replace them themselves; sum, mean and max aggregators count a self
//!   loop as one more neighbour, as PyTorch Geometric does;
//! - **duplicate edges** are kept and count once each (a node with a doubled edge hears that
//!   neighbour twice, as in PyTorch Geometric); [`Graph::coalesced`] merges them;
//! - **directed edges** stay directed; [`Graph::to_undirected`] adds each missing reverse;
//! - **isolated nodes** (no edge in or out) are allowed: they hear nothing but themselves.
//!
//! The file loaders ([`crate::load_graph_dir`], [`crate::load_tu_dir`]) document their own
//! policies (the node/edge CSVs are undirected; the TU format is taken as given).
//!
//! ```
//! use strata_data::{Graph, GraphSet};
//! // A path 0 - 1 - 2, given one way, made undirected; node 3 is isolated.
//! let g = Graph::new("path", 4, vec![0.0; 4], 1, vec![0, 1], vec![1, 2], None)?
//!     .to_undirected();
//! assert_eq!(g.n_edges(), 4);
//! assert_eq!(g.in_degrees(), vec![1, 2, 1, 0]);
//! let set = GraphSet::new("two", vec![g.clone(), g], vec![0, 1], vec!["a".into(), "b".into()])?;
//! let batch = set.batch(&[1, 0]);
//! assert_eq!(batch.graph.n_nodes, 8);
//! assert_eq!(batch.graph_index, vec![0, 0, 0, 0, 1, 1, 1, 1]);
//! assert_eq!(batch.labels, vec![1, 0]);
//! # Ok::<(), strata_data::Error>(())
//! ```

use std::collections::HashSet;

use crate::error::{Error, Result};

/// The nodes of each split of a node-classification graph (node indices).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeSplit {
    /// Nodes whose labels train the model.
    pub train: Vec<usize>,
    /// Nodes for early stopping and model selection (may be empty).
    pub valid: Vec<usize>,
    /// Nodes held out for the test figures.
    pub test: Vec<usize>,
}

/// One graph: node features, directed edges (COO, optional weights), and optionally node
/// labels with their split (see the module page for self loops, duplicates and direction).
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    /// A name for messages.
    pub name: String,
    /// Number of nodes.
    pub n_nodes: usize,
    /// Node features, row-major `[n_nodes, n_features]`.
    pub features: Vec<f32>,
    /// Features per node.
    pub n_features: usize,
    /// Source node of each edge.
    pub source: Vec<usize>,
    /// Target node of each edge.
    pub target: Vec<usize>,
    /// A weight per edge (all 1 when `None`).
    pub edge_weight: Option<Vec<f32>>,
    /// A class per node, for node classification.
    pub labels: Option<Vec<usize>>,
    /// The class names (empty without labels).
    pub class_names: Vec<String>,
    /// The nodes' ids as the files name them (`0..n_nodes` when built in code).
    pub node_ids: Vec<String>,
    /// The split of labelled nodes, when the data set fixes one.
    pub split: Option<NodeSplit>,
}

impl Graph {
    /// A graph of `n_nodes` nodes with `features` (`[n_nodes, n_features]`) and edges
    /// `source[e] -> target[e]` (with optional weights); no labels.
    ///
    /// # Errors
    /// Features that are not `n_nodes` rows of `n_features`, edge lists of different lengths,
    /// an edge to a node that does not exist, a weight that is not finite.
    pub fn new(
        name: &str,
        n_nodes: usize,
        features: Vec<f32>,
        n_features: usize,
        source: Vec<usize>,
        target: Vec<usize>,
        edge_weight: Option<Vec<f32>>,
    ) -> Result<Self> {
        let g = Self {
            name: name.to_string(),
            n_nodes,
            features,
            n_features,
            source,
            target,
            edge_weight,
            labels: None,
            class_names: Vec::new(),
            node_ids: (0..n_nodes).map(|i| i.to_string()).collect(),
            split: None,
        };
        g.validate()?;
        Ok(g)
    }

    /// The graph with node labels `labels` (indices into `class_names`) and their split.
    ///
    /// # Errors
    /// Labels of another length than the nodes, a label with no class name, a split naming a
    /// node that does not exist.
    pub fn with_labels(
        mut self,
        labels: Vec<usize>,
        class_names: Vec<String>,
        split: Option<NodeSplit>,
    ) -> Result<Self> {
        self.labels = Some(labels);
        self.class_names = class_names;
        self.split = split;
        self.validate()?;
        Ok(self)
    }

    /// Checks that every part agrees with the others.
    ///
    /// # Errors
    /// The first disagreement, by name.
    pub fn validate(&self) -> Result<()> {
        let n = self.n_nodes;
        let bad = |m: String| Err(Error::Mismatch(format!("graph {}: {m}", self.name)));
        if self.features.len() != n * self.n_features {
            return bad(format!(
                "{} feature values are not {n} nodes x {} features",
                self.features.len(),
                self.n_features
            ));
        }
        if self.source.len() != self.target.len() {
            return bad(format!(
                "{} edge sources but {} targets",
                self.source.len(),
                self.target.len()
            ));
        }
        if let Some(e) = (0..self.source.len()).find(|&e| self.source[e].max(self.target[e]) >= n) {
            return bad(format!(
                "edge {e} ({} -> {}) names a node that does not exist (the graph has {n})",
                self.source[e], self.target[e]
            ));
        }
        if let Some(w) = &self.edge_weight {
            if w.len() != self.source.len() {
                return bad(format!(
                    "{} edge weights for {} edges",
                    w.len(),
                    self.source.len()
                ));
            }
            if let Some(e) = w.iter().position(|v| !v.is_finite()) {
                return bad(format!("edge {e} has weight {}", w[e]));
            }
        }
        if self.node_ids.len() != n {
            return bad(format!("{} node ids for {n} nodes", self.node_ids.len()));
        }
        if let Some(labels) = &self.labels {
            if labels.len() != n {
                return bad(format!("{} labels for {n} nodes", labels.len()));
            }
            let k = self.class_names.len();
            if let Some(i) = labels.iter().position(|&l| l >= k) {
                return bad(format!("node {i} has label {} of {k} classes", labels[i]));
            }
        }
        if let Some(s) = &self.split {
            let all = s.train.iter().chain(&s.valid).chain(&s.test);
            if let Some(i) = all.copied().find(|&i| i >= n) {
                return bad(format!("split names node {i} of {n}"));
            }
        }
        Ok(())
    }

    /// Number of (directed) edges.
    pub fn n_edges(&self) -> usize {
        self.source.len()
    }

    /// Number of classes of the node labels.
    pub fn n_classes(&self) -> usize {
        self.class_names.len()
    }

    /// The edges into each node (self loops and duplicates counted).
    pub fn in_degrees(&self) -> Vec<usize> {
        let mut d = vec![0; self.n_nodes];
        for &t in &self.target {
            d[t] += 1;
        }
        d
    }

    /// Whether any edge is a self loop.
    pub fn has_self_loops(&self) -> bool {
        self.source.iter().zip(&self.target).any(|(s, t)| s == t)
    }

    /// Nodes with no edge in or out.
    pub fn isolated_nodes(&self) -> Vec<usize> {
        let mut touched = vec![false; self.n_nodes];
        for (&s, &t) in self.source.iter().zip(&self.target) {
            touched[s] = true;
            touched[t] = true;
        }
        (0..self.n_nodes).filter(|&i| !touched[i]).collect()
    }

    /// The graph with each repeated `(source, target)` pair kept once (its first weight),
    /// in first-seen order.
    pub fn coalesced(&self) -> Self {
        let mut seen = HashSet::new();
        let keep: Vec<usize> = (0..self.n_edges())
            .filter(|&e| seen.insert((self.source[e], self.target[e])))
            .collect();
        self.with_edges(&keep, &[])
    }

    /// The graph with the reverse of every edge that lacks one (with the same weight), after
    /// [`coalesced`](Self::coalesced): each directed pair once, self loops once.
    pub fn to_undirected(&self) -> Self {
        let g = self.coalesced();
        let present: HashSet<(usize, usize)> = g
            .source
            .iter()
            .copied()
            .zip(g.target.iter().copied())
            .collect();
        let reverse: Vec<usize> = (0..g.n_edges())
            .filter(|&e| !present.contains(&(g.target[e], g.source[e])))
            .collect();
        g.with_edges(&(0..g.n_edges()).collect::<Vec<_>>(), &reverse)
    }

    /// The edges `keep` as they are, then the edges `reversed` turned round.
    fn with_edges(&self, keep: &[usize], reversed: &[usize]) -> Self {
        let mut g = self.clone();
        g.source = keep.iter().map(|&e| self.source[e]).collect();
        g.target = keep.iter().map(|&e| self.target[e]).collect();
        g.source.extend(reversed.iter().map(|&e| self.target[e]));
        g.target.extend(reversed.iter().map(|&e| self.source[e]));
        g.edge_weight = self.edge_weight.as_ref().map(|w| {
            keep.iter()
                .chain(reversed)
                .map(|&e| w[e])
                .collect::<Vec<f32>>()
        });
        g
    }

    /// The graph with node `i` renamed `perm[i]`: features, labels, ids and split move with
    /// their nodes, edges are relabelled (their order kept).
    ///
    /// # Errors
    /// `perm` that is not a permutation of `0..n_nodes`.
    pub fn permuted(&self, perm: &[usize]) -> Result<Self> {
        let n = self.n_nodes;
        let mut seen = vec![false; n];
        if perm.len() != n
            || perm
                .iter()
                .any(|&p| p >= n || std::mem::replace(&mut seen[p], true))
        {
            return Err(Error::Invalid(format!(
                "not a permutation of 0..{n}: {perm:?}"
            )));
        }
        let f = self.n_features;
        let mut g = self.clone();
        for i in 0..n {
            let p = perm[i];
            g.features[p * f..(p + 1) * f].copy_from_slice(&self.features[i * f..(i + 1) * f]);
            g.node_ids[p].clone_from(&self.node_ids[i]);
            if let (Some(out), Some(l)) = (&mut g.labels, &self.labels) {
                out[p] = l[i];
            }
        }
        g.source = self.source.iter().map(|&s| perm[s]).collect();
        g.target = self.target.iter().map(|&t| perm[t]).collect();
        g.split = self.split.as_ref().map(|s| NodeSplit {
            train: s.train.iter().map(|&i| perm[i]).collect(),
            valid: s.valid.iter().map(|&i| perm[i]).collect(),
            test: s.test.iter().map(|&i| perm[i]).collect(),
        });
        Ok(g)
    }
}

/// Divides each row of `width` values by its sum, as PyTorch Geometric's `NormalizeFeatures`
/// (a row summing to 0 stays 0), when every value is non-negative (bags of words, one-hot
/// ids); returns whether it did. Rows with a negative value are left as they are.
///
/// ```
/// let mut x = vec![1.0, 3.0, 0.0, 0.0];
/// assert!(strata_data::normalize_rows(&mut x, 2));
/// assert_eq!(x, vec![0.25, 0.75, 0.0, 0.0]);
/// let mut y = vec![1.0, -1.0];
/// assert!(!strata_data::normalize_rows(&mut y, 2));
/// assert_eq!(y, vec![1.0, -1.0]);
/// ```
pub fn normalize_rows(values: &mut [f32], width: usize) -> bool {
    if values.iter().any(|v| *v < 0.0) {
        return false;
    }
    for row in values.chunks_mut(width.max(1)) {
        let s: f32 = row.iter().sum();
        if s > 0.0 {
            row.iter_mut().for_each(|v| *v /= s);
        }
    }
    true
}

/// Many graphs, each with a class: graph classification.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphSet {
    /// A name for messages.
    pub name: String,
    /// The graphs (their node labels unused).
    pub graphs: Vec<Graph>,
    /// The class of each graph.
    pub labels: Vec<usize>,
    /// The class names.
    pub class_names: Vec<String>,
}

impl GraphSet {
    /// A set of graphs with a class each.
    ///
    /// # Errors
    /// No graphs, labels of another length, a label with no class name, graphs whose nodes
    /// have different numbers of features.
    pub fn new(
        name: &str,
        graphs: Vec<Graph>,
        labels: Vec<usize>,
        class_names: Vec<String>,
    ) -> Result<Self> {
        let bad = |m: String| Err(Error::Mismatch(format!("graph set {name}: {m}")));
        if graphs.is_empty() {
            return bad("no graphs".into());
        }
        if labels.len() != graphs.len() {
            return bad(format!(
                "{} labels for {} graphs",
                labels.len(),
                graphs.len()
            ));
        }
        if let Some(i) = labels.iter().position(|&l| l >= class_names.len()) {
            return bad(format!(
                "graph {i} has label {} of {} classes",
                labels[i],
                class_names.len()
            ));
        }
        let f = graphs[0].n_features;
        if let Some(i) = graphs.iter().position(|g| g.n_features != f) {
            return bad(format!(
                "graph {i} has {} features per node, graph 0 has {f}",
                graphs[i].n_features
            ));
        }
        Ok(Self {
            name: name.to_string(),
            graphs,
            labels,
            class_names,
        })
    }

    /// Number of graphs.
    pub fn len(&self) -> usize {
        self.graphs.len()
    }

    /// Whether there are no graphs (never, once built).
    pub fn is_empty(&self) -> bool {
        self.graphs.is_empty()
    }

    /// Features per node.
    pub fn n_features(&self) -> usize {
        self.graphs[0].n_features
    }

    /// Number of classes.
    pub fn n_classes(&self) -> usize {
        self.class_names.len()
    }

    /// The graphs `indices` as a set of their own.
    pub fn subset(&self, indices: &[usize]) -> Self {
        Self {
            name: self.name.clone(),
            graphs: indices.iter().map(|&i| self.graphs[i].clone()).collect(),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            class_names: self.class_names.clone(),
        }
    }

    /// The graphs `indices`, in that order, as one block-diagonal graph: node ids of graph
    /// `k` are offset by the nodes before it, and `graph_index[node]` says which of the
    /// batch's graphs a node belongs to.
    ///
    /// # Panics
    /// An index out of range.
    pub fn batch(&self, indices: &[usize]) -> GraphBatch {
        let graphs: Vec<&Graph> = indices.iter().map(|&i| &self.graphs[i]).collect();
        let labels = indices.iter().map(|&i| self.labels[i]).collect();
        GraphBatch::of(&graphs, labels)
    }
}

/// Graphs batched into one block-diagonal graph.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphBatch {
    /// All nodes and edges, graph after graph.
    pub graph: Graph,
    /// The batch's graph of each node (`0..n_graphs`).
    pub graph_index: Vec<usize>,
    /// Number of graphs.
    pub n_graphs: usize,
    /// The class of each graph.
    pub labels: Vec<usize>,
}

impl GraphBatch {
    /// Batches `graphs` (with their `labels`) into one graph.
    ///
    /// # Panics
    /// Graphs with different numbers of features, or some with edge weights and some
    /// without.
    pub fn of(graphs: &[&Graph], labels: Vec<usize>) -> Self {
        let f = graphs.first().map_or(0, |g| g.n_features);
        let weighted = graphs.first().is_some_and(|g| g.edge_weight.is_some());
        let mut b = Graph {
            name: "batch".into(),
            n_nodes: 0,
            features: Vec::new(),
            n_features: f,
            source: Vec::new(),
            target: Vec::new(),
            edge_weight: weighted.then(Vec::new),
            labels: None,
            class_names: Vec::new(),
            node_ids: Vec::new(),
            split: None,
        };
        let mut graph_index = Vec::new();
        for (k, g) in graphs.iter().enumerate() {
            assert_eq!(
                g.n_features, f,
                "batched graphs differ in features per node"
            );
            let off = b.n_nodes;
            b.features.extend_from_slice(&g.features);
            b.source.extend(g.source.iter().map(|s| s + off));
            b.target.extend(g.target.iter().map(|t| t + off));
            match (&mut b.edge_weight, &g.edge_weight) {
                (Some(out), Some(w)) => out.extend_from_slice(w),
                (None, None) => {}
                _ => panic!("batched graphs differ in having edge weights"),
            }
            b.node_ids
                .extend(g.node_ids.iter().map(|id| format!("{k}:{id}")));
            graph_index.extend(std::iter::repeat_n(k, g.n_nodes));
            b.n_nodes += g.n_nodes;
        }
        Self {
            graph: b,
            graph_index,
            n_graphs: graphs.len(),
            labels,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn triangle_and_isolated() -> Graph {
        // 0 -> 1 twice (duplicate), 1 -> 2, 2 -> 2 (self loop), node 3 isolated.
        Graph::new(
            "t",
            4,
            vec![1.0, 2.0, 3.0, 4.0],
            1,
            vec![0, 0, 1, 2],
            vec![1, 1, 2, 2],
            Some(vec![1.0, 2.0, 3.0, 4.0]),
        )
        .unwrap()
    }

    #[test]
    fn a_graph_keeps_what_it_is_given() {
        let g = triangle_and_isolated();
        assert_eq!(g.n_edges(), 4);
        assert_eq!(g.in_degrees(), vec![0, 2, 2, 0]);
        assert!(g.has_self_loops());
        assert_eq!(g.isolated_nodes(), vec![3]);
    }

    #[test]
    fn coalescing_keeps_the_first_of_each_pair() {
        let g = triangle_and_isolated().coalesced();
        assert_eq!(
            (g.source.clone(), g.target.clone()),
            (vec![0, 1, 2], vec![1, 2, 2])
        );
        assert_eq!(g.edge_weight, Some(vec![1.0, 3.0, 4.0]));
    }

    #[test]
    fn undirected_adds_each_missing_reverse_once_and_keeps_self_loops_single() {
        let g = triangle_and_isolated().to_undirected();
        let mut pairs: Vec<(usize, usize)> =
            g.source.iter().copied().zip(g.target.clone()).collect();
        pairs.sort_unstable();
        assert_eq!(pairs, vec![(0, 1), (1, 0), (1, 2), (2, 1), (2, 2)]);
        // The reverse carries the weight of its edge.
        assert_eq!(g.edge_weight, Some(vec![1.0, 3.0, 4.0, 1.0, 3.0]));
        // Undirected twice changes nothing.
        assert_eq!(g.to_undirected(), g);
    }

    #[test]
    fn bad_graphs_are_refused_by_name() {
        let e = Graph::new("g", 2, vec![0.0; 2], 1, vec![0], vec![2], None).unwrap_err();
        assert!(e.to_string().contains("edge 0 (0 -> 2)"), "{e}");
        let e = Graph::new("g", 2, vec![0.0; 3], 1, vec![], vec![], None).unwrap_err();
        assert!(e.to_string().contains("3 feature values"), "{e}");
        let e = Graph::new(
            "g",
            2,
            vec![0.0; 2],
            1,
            vec![0],
            vec![1],
            Some(vec![f32::NAN]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("weight NaN"), "{e}");
        let g = Graph::new("g", 2, vec![0.0; 2], 1, vec![0], vec![1], None).unwrap();
        assert!(
            g.clone()
                .with_labels(vec![0], vec!["a".into()], None)
                .is_err()
        );
        assert!(g.with_labels(vec![0, 1], vec!["a".into()], None).is_err());
        assert!(GraphSet::new("s", vec![], vec![], vec![]).is_err());
    }

    proptest! {
        #[test]
        fn permuting_and_unpermuting_gives_the_graph_back(
            n in 1usize..12,
            edges in prop::collection::vec((0usize..12, 0usize..12), 0..30),
            seed in any::<u64>(),
        ) {
            let (s, t): (Vec<usize>, Vec<usize>) =
                edges.into_iter().map(|(a, b)| (a % n, b % n)).unzip();
            let g = Graph::new("p", n, (0..n).map(|i| i as f32).collect(), 1, s, t, None).unwrap();
            let mut perm: Vec<usize> = (0..n).collect();
            use rand::{SeedableRng, seq::SliceRandom};
            perm.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
            let mut inv = vec![0; n];
            for (i, &p) in perm.iter().enumerate() {
                inv[p] = i;
            }
            let p = g.permuted(&perm).unwrap();
            prop_assert_eq!(p.in_degrees().iter().sum::<usize>(), g.n_edges());
            prop_assert_eq!(p.permuted(&inv).unwrap(), g);
        }

        #[test]
        fn a_batch_holds_each_graph_at_its_offset(sizes in prop::collection::vec(1usize..6, 1..5)) {
            let graphs: Vec<Graph> = sizes.iter().map(|&n| {
                let s: Vec<usize> = (0..n - 1).collect();
                let t: Vec<usize> = (1..n).collect();
                Graph::new("c", n, vec![n as f32; n], 1, s, t, None).unwrap()
            }).collect();
            let labels = vec![0; graphs.len()];
            let set = GraphSet::new("s", graphs, labels, vec!["x".into()]).unwrap();
            let order: Vec<usize> = (0..set.len()).rev().collect();
            let b = set.batch(&order);
            prop_assert_eq!(b.graph.n_nodes, sizes.iter().sum::<usize>());
            b.graph.validate().unwrap();
            for (e, (&s, &t)) in b.graph.source.iter().zip(&b.graph.target).enumerate() {
                prop_assert_eq!(b.graph_index[s], b.graph_index[t], "edge {} crosses graphs", e);
            }
            // Node features say their graph's size: graph k of the batch is set[order[k]].
            for (i, &k) in b.graph_index.iter().enumerate() {
                prop_assert_eq!(b.graph.features[i] as usize, sizes[order[k]]);
            }
        }
    }
}
