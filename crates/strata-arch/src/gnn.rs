//! Graph neural networks: a node classifier (a stack of graph convolutions, Kipf & Welling
//! 2017, Hamilton et al. 2017, Velickovic et al. 2018), a graph classifier (convolutions with a
//! readout from every layer, as GIN in Xu et al. 2019), and the structure-agnostic baseline of
//! Errica et al. (2020): an MLP on each node's features, with no edges.
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use strata_arch::{GnnConfig, GnnKind};
//! use strata_layers::{Edges, GraphIndex};
//! let d = Device::flex();
//! let edges = Edges::new(4, &[0, 1, 2, 3], &[1, 0, 3, 2], None, &d)?;
//! let x = Tensor::<2>::ones([4, 3], &d);
//! // Two classes per node.
//! let gcn = GnnConfig::new(3, 2).init(&d)?;
//! assert_eq!(gcn.forward(x.clone(), &edges).dims(), [4, 2]);
//! // Two classes per graph: nodes 0, 1 are graph 0; 2, 3 graph 1.
//! let gin = GnnConfig::new(3, 2).with_kind(GnnKind::Gin).with_graph_level(true).init(&d)?;
//! let graphs = GraphIndex::new(&[0, 0, 1, 1], 2, &d)?;
//! assert_eq!(gin.forward_graphs(x, &edges, &graphs).dims(), [2, 2]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use burn::config::Config;
use burn::module::Module;
use burn::nn::{BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::activation::{elu, relu};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};
use strata_layers::{
    Aggregator, Edges, GatConv, GatConvConfig, GcnConv, GcnConvConfig, GinConv, GinConvConfig,
    GraphIndex, Readout, SageConv, SageConvConfig,
};

use crate::error::Error as ArchError;

/// Which layer a graph network stacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum GnnKind {
    /// Kipf & Welling's graph convolution.
    #[default]
    Gcn,
    /// GraphSAGE.
    Sage,
    /// Graph attention.
    Gat,
    /// Graph isomorphism network.
    Gin,
    /// No edges: a linear layer on each node (the structure-agnostic baseline).
    Mlp,
}

/// One layer of a graph network.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum GraphConv {
    /// GCN.
    Gcn(GcnConv),
    /// GraphSAGE.
    Sage(SageConv),
    /// GAT.
    Gat(GatConv),
    /// GIN.
    Gin(GinConv),
    /// A linear layer per node (no message passing).
    Linear(Linear),
}

impl GraphConv {
    /// # Shapes
    /// `x` `[nodes, d_in]` -> `[nodes, d_out]`.
    pub fn forward(&self, x: Tensor<2>, edges: &Edges) -> Tensor<2> {
        match self {
            GraphConv::Gcn(c) => c.forward(x, edges),
            GraphConv::Sage(c) => c.forward(x, edges),
            GraphConv::Gat(c) => c.forward(x, edges),
            GraphConv::Gin(c) => c.forward(x, edges),
            GraphConv::Linear(l) => l.forward(x),
        }
    }
}

/// Settings of a [`Gnn`].
#[derive(Config, Debug)]
pub struct GnnConfig {
    /// Features per node.
    pub d_input: usize,
    /// Classes (per node, or per graph when `graph_level`).
    pub n_classes: usize,
    /// The layer stacked.
    #[config(default = "GnnKind::Gcn")]
    pub kind: GnnKind,
    /// Width of each hidden layer (per head for GAT).
    #[config(default = 16)]
    pub d_hidden: usize,
    /// Graph layers. A node classifier's last layer outputs the classes; a graph classifier's
    /// layers are all hidden, with a linear classifier on the readout of every layer and of
    /// the input.
    #[config(default = 2)]
    pub n_layers: usize,
    /// GAT's heads in each hidden layer (concatenated).
    #[config(default = 8)]
    pub n_heads: usize,
    /// GAT's heads in a node classifier's output layer (averaged).
    #[config(default = 1)]
    pub output_heads: usize,
    /// GraphSAGE's aggregator.
    #[config(default = "Aggregator::Mean")]
    pub aggregator: Aggregator,
    /// Dropout on the features before each layer (node level) or on each readout's scores
    /// (graph level), while training.
    #[config(default = 0.5)]
    pub dropout: f64,
    /// GAT's dropout on attention coefficients, while training.
    #[config(default = 0.0)]
    pub attention_dropout: f64,
    /// Classify graphs rather than nodes.
    #[config(default = false)]
    pub graph_level: bool,
    /// How a graph classifier reads each layer out.
    #[config(default = "Readout::Sum")]
    pub readout: Readout,
    /// Batch norm after each hidden layer of a graph classifier (and in GIN's MLPs), as Xu et
    /// al.
    #[config(default = true)]
    pub batch_norm: bool,
}

/// A graph network: see the module page.
#[derive(Module, Debug)]
pub struct Gnn {
    /// The graph layers.
    pub convs: Vec<GraphConv>,
    /// A graph classifier's batch norm after each layer.
    pub norms: Vec<BatchNorm>,
    /// A graph classifier's linear classifiers: on the readout of the input and of each layer
    /// (one, on the last layer, for the MLP baseline).
    pub heads: Vec<Linear>,
    /// Dropout.
    pub dropout: Dropout,
    /// The layer kind.
    #[module(skip)]
    pub kind: GnnKind,
    /// Graph level.
    #[module(skip)]
    pub graph_level: bool,
    /// The readout.
    #[module(skip)]
    pub readout: Readout,
}

impl GnnConfig {
    /// Checks the sizes.
    ///
    /// # Errors
    /// A size of 0, fewer than 2 classes, a dropout outside `[0, 1)`.
    pub fn validate(&self) -> crate::Result<()> {
        let sizes = [
            ("d_input", self.d_input),
            ("d_hidden", self.d_hidden),
            ("n_layers", self.n_layers),
            ("n_heads", self.n_heads),
            ("output_heads", self.output_heads),
        ];
        if let Some((name, _)) = sizes.iter().find(|(_, v)| *v == 0) {
            return Err(ArchError::Invalid(format!(
                "graph network: {name} must be at least 1"
            )));
        }
        if self.n_classes < 2 {
            return Err(ArchError::Invalid(format!(
                "graph network: {} classes; classification needs at least 2",
                self.n_classes
            )));
        }
        for (name, p) in [
            ("dropout", self.dropout),
            ("attention dropout", self.attention_dropout),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(ArchError::Invalid(format!(
                    "graph network: {name} {p} is not in [0, 1)"
                )));
            }
        }
        Ok(())
    }

    /// One layer from `d_in` features to `d_out` (for GAT: `heads` heads of `d_out`,
    /// concatenated or averaged).
    fn conv(
        &self,
        d_in: usize,
        d_out: usize,
        heads: usize,
        concat: bool,
        device: &Device,
    ) -> GraphConv {
        match self.kind {
            GnnKind::Gcn => GraphConv::Gcn(GcnConvConfig::new(d_in, d_out).init(device)),
            GnnKind::Sage => GraphConv::Sage(
                SageConvConfig::new(d_in, d_out)
                    .with_aggregator(self.aggregator)
                    .init(device),
            ),
            GnnKind::Gat => GraphConv::Gat(
                GatConvConfig::new(d_in, d_out)
                    .with_n_heads(heads)
                    .with_concat(concat)
                    .with_dropout(self.attention_dropout)
                    .init(device),
            ),
            GnnKind::Gin => GraphConv::Gin(
                GinConvConfig::new(d_in, self.d_hidden, d_out)
                    .with_batch_norm(self.batch_norm)
                    .init(device),
            ),
            GnnKind::Mlp => GraphConv::Linear(LinearConfig::new(d_in, d_out).init(device)),
        }
    }

    /// Width of a hidden layer's output.
    fn hidden_width(&self) -> usize {
        match self.kind {
            GnnKind::Gat => self.d_hidden * self.n_heads,
            _ => self.d_hidden,
        }
    }

    /// The network, initialised on `device`.
    ///
    /// # Errors
    /// As [`validate`](Self::validate).
    pub fn init(&self, device: &Device) -> crate::Result<Gnn> {
        self.validate()?;
        let w = self.hidden_width();
        let mut convs = Vec::new();
        let mut norms = Vec::new();
        let mut heads = Vec::new();
        if self.graph_level {
            for l in 0..self.n_layers {
                let d_in = if l == 0 { self.d_input } else { w };
                convs.push(self.conv(d_in, self.d_hidden, self.n_heads, true, device));
                if self.batch_norm {
                    norms.push(BatchNormConfig::new(w).init(device));
                }
            }
            if self.kind == GnnKind::Mlp {
                heads.push(LinearConfig::new(w, self.n_classes).init(device));
            } else {
                heads.push(LinearConfig::new(self.d_input, self.n_classes).init(device));
                for _ in 0..self.n_layers {
                    heads.push(LinearConfig::new(w, self.n_classes).init(device));
                }
            }
        } else {
            for l in 0..self.n_layers {
                let d_in = if l == 0 { self.d_input } else { w };
                if l + 1 == self.n_layers {
                    convs.push(self.conv(d_in, self.n_classes, self.output_heads, false, device));
                } else {
                    convs.push(self.conv(d_in, self.d_hidden, self.n_heads, true, device));
                }
            }
        }
        Ok(Gnn {
            convs,
            norms,
            heads,
            dropout: DropoutConfig::new(self.dropout).init(),
            kind: self.kind,
            graph_level: self.graph_level,
            readout: self.readout,
        })
    }
}

impl Gnn {
    /// The nonlinearity after a hidden layer: ELU for GAT (as Velickovic et al.), ReLU for
    /// the rest.
    fn activate(&self, x: Tensor<2>) -> Tensor<2> {
        match self.kind {
            GnnKind::Gat => elu(x, 1.0),
            _ => relu(x),
        }
    }

    /// A node classifier's hidden representation: the input to its last layer (the input
    /// itself for a single layer).
    ///
    /// # Shapes
    /// `x` `[nodes, d_input]` -> `[nodes, hidden]`.
    pub fn hidden(&self, x: Tensor<2>, edges: &Edges) -> Tensor<2> {
        let n = self.convs.len();
        self.convs[..n.saturating_sub(1)].iter().fold(x, |x, conv| {
            self.activate(conv.forward(strata_kernels::dropout_layer(&self.dropout, x), edges))
        })
    }

    /// The class scores (logits) of each node.
    ///
    /// # Shapes
    /// `x` `[nodes, d_input]` -> `[nodes, n_classes]`.
    ///
    /// # Panics
    /// A graph classifier (use [`forward_graphs`](Self::forward_graphs)).
    pub fn forward(&self, x: Tensor<2>, edges: &Edges) -> Tensor<2> {
        assert!(
            !self.graph_level,
            "a graph classifier scores graphs: use forward_graphs"
        );
        let h = self.hidden(x, edges);
        let last = self.convs.last().expect("at least one layer");
        last.forward(strata_kernels::dropout_layer(&self.dropout, h), edges)
    }

    /// The class scores (logits) of each graph of a batch.
    ///
    /// # Shapes
    /// `x` `[nodes, d_input]` -> `[graphs, n_classes]`.
    ///
    /// # Panics
    /// A node classifier (use [`forward`](Self::forward)).
    pub fn forward_graphs(&self, x: Tensor<2>, edges: &Edges, graphs: &GraphIndex) -> Tensor<2> {
        assert!(
            self.graph_level,
            "a node classifier scores nodes: use forward"
        );
        let mut layers = vec![x];
        for (l, conv) in self.convs.iter().enumerate() {
            let mut h = conv.forward(layers[l].clone(), edges);
            if let Some(norm) = self.norms.get(l) {
                h = strata_kernels::batch_norm_layer(norm, h);
            }
            layers.push(relu(h));
        }
        // The MLP baseline reads its last layer out; the others every layer and the input.
        let read = if self.heads.len() == 1 {
            &layers[layers.len() - 1..]
        } else {
            &layers[..]
        };
        read.iter()
            .zip(&self.heads)
            .map(|(h, head)| {
                self.dropout
                    .forward(head.forward(self.readout.apply(h.clone(), graphs)))
            })
            .reduce(|a, b| a + b)
            .expect("at least one readout")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_tensor::convert::{matrix, to_vec};

    fn ring(n: usize, d: &Device) -> Edges {
        let s: Vec<usize> = (0..n).chain((0..n).map(|i| (i + 1) % n)).collect();
        let t: Vec<usize> = (0..n).map(|i| (i + 1) % n).chain(0..n).collect();
        Edges::new(n, &s, &t, None, d).unwrap()
    }

    #[test]
    fn every_kind_builds_at_both_levels_with_the_right_shapes() {
        let d = Device::flex();
        let e = ring(5, &d);
        let x = Tensor::<2>::ones([5, 3], &d);
        let g = GraphIndex::new(&[0, 0, 1, 1, 1], 2, &d).unwrap();
        for kind in [
            GnnKind::Gcn,
            GnnKind::Sage,
            GnnKind::Gat,
            GnnKind::Gin,
            GnnKind::Mlp,
        ] {
            for layers in [1, 3] {
                let c = GnnConfig::new(3, 4)
                    .with_kind(kind)
                    .with_n_layers(layers)
                    .with_n_heads(2);
                let node = c.init(&d).unwrap();
                assert_eq!(node.forward(x.clone(), &e).dims(), [5, 4], "{kind:?}");
                let graph = c.with_graph_level(true).init(&d).unwrap();
                assert_eq!(
                    graph.forward_graphs(x.clone(), &e, &g).dims(),
                    [2, 4],
                    "{kind:?}"
                );
            }
        }
    }

    #[test]
    fn bad_sizes_are_refused() {
        let d = Device::flex();
        assert!(GnnConfig::new(3, 1).init(&d).is_err());
        assert!(GnnConfig::new(3, 2).with_n_layers(0).init(&d).is_err());
        assert!(GnnConfig::new(0, 2).init(&d).is_err());
        assert!(GnnConfig::new(3, 2).with_dropout(1.0).init(&d).is_err());
    }

    #[test]
    fn the_mlp_baseline_ignores_edges() {
        let d = Device::flex();
        let m = GnnConfig::new(2, 3)
            .with_kind(GnnKind::Mlp)
            .init(&d)
            .unwrap();
        let x = matrix(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 3, 2, &d);
        let none = Edges::new(3, &[], &[], None, &d).unwrap();
        let some = Edges::new(3, &[0, 1, 2], &[1, 2, 0], None, &d).unwrap();
        assert_eq!(
            to_vec(m.forward(x.clone(), &none)),
            to_vec(m.forward(x, &some))
        );
    }
    use proptest::prelude::*;

    /// Nodes, edges, features (3 per node) and a permutation of the nodes.
    type RandomGraph = (usize, Vec<(usize, usize)>, Vec<f32>, Vec<usize>);

    /// A random graph: `n` nodes, edges (self loops and duplicates allowed), features.
    fn graph() -> impl Strategy<Value = RandomGraph> {
        (1usize..8).prop_flat_map(|n| {
            (
                Just(n),
                prop::collection::vec((0..n, 0..n), 0..20),
                prop::collection::vec(-2.0f32..2.0, n * 3),
                Just(n).prop_perturb(|n, mut rng| {
                    let mut p: Vec<usize> = (0..n).collect();
                    for i in (1..n).rev() {
                        p.swap(i, rng.random_range(0..=i));
                    }
                    p
                }),
            )
        })
    }

    fn kinds() -> impl Strategy<Value = GnnKind> {
        prop::sample::select(vec![
            GnnKind::Gcn,
            GnnKind::Sage,
            GnnKind::Gat,
            GnnKind::Gin,
            GnnKind::Mlp,
        ])
    }

    fn edges_of(n: usize, e: &[(usize, usize)], perm: Option<&[usize]>, d: &Device) -> Edges {
        let map = |i: usize| perm.map_or(i, |p| p[i]);
        let s: Vec<usize> = e.iter().map(|(a, _)| map(*a)).collect();
        let t: Vec<usize> = e.iter().map(|(_, b)| map(*b)).collect();
        Edges::new(n, &s, &t, None, d).unwrap()
    }

    fn permute_rows(x: &[f32], width: usize, perm: &[usize]) -> Vec<f32> {
        let mut out = vec![0.0; x.len()];
        for (i, &p) in perm.iter().enumerate() {
            out[p * width..(p + 1) * width].copy_from_slice(&x[i * width..(i + 1) * width]);
        }
        out
    }

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| (x - y).abs() <= 1e-4 * (1.0 + y.abs()))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Relabelling the nodes relabels a node classifier's outputs the same way.
        #[test]
        fn node_outputs_are_equivariant((n, e, x, perm) in graph(), kind in kinds(), seed in 0u64..4) {
            let d = Device::flex();
            strata_tensor::seed_device(&d, seed);
            let m = GnnConfig::new(3, 3).with_kind(kind).with_n_heads(2).init(&d).unwrap();
            let out = to_vec(m.forward(matrix(x.clone(), n, 3, &d), &edges_of(n, &e, None, &d)));
            let px = permute_rows(&x, 3, &perm);
            let pout = to_vec(m.forward(matrix(px, n, 3, &d), &edges_of(n, &e, Some(&perm), &d)));
            prop_assert!(out.iter().all(|v| v.is_finite()));
            prop_assert!(close(&pout, &permute_rows(&out, 3, &perm)), "{kind:?}: {pout:?} vs {out:?}");
        }

        /// Relabelling the nodes leaves a graph classifier's scores unchanged, and batching
        /// two graphs gives each the scores it gets alone.
        #[test]
        fn graph_scores_are_invariant_and_batch_independent(
            (n, e, x, perm) in graph(),
            (n2, e2, x2, _) in graph(),
            kind in kinds(),
        ) {
            let d = Device::flex();
            let m = GnnConfig::new(3, 2).with_kind(kind).with_n_heads(2).with_graph_level(true)
                .init(&d).unwrap();
            let one = GraphIndex::new(&vec![0; n], 1, &d).unwrap();
            let alone = to_vec(m.forward_graphs(matrix(x.clone(), n, 3, &d), &edges_of(n, &e, None, &d), &one));
            let px = permute_rows(&x, 3, &perm);
            let relabelled = to_vec(m.forward_graphs(matrix(px, n, 3, &d), &edges_of(n, &e, Some(&perm), &d), &one));
            prop_assert!(close(&relabelled, &alone), "{kind:?}: {relabelled:?} vs {alone:?}");

            let one2 = GraphIndex::new(&vec![0; n2], 1, &d).unwrap();
            let alone2 = to_vec(m.forward_graphs(matrix(x2.clone(), n2, 3, &d), &edges_of(n2, &e2, None, &d), &one2));
            let both: Vec<(usize, usize)> = e.iter().copied()
                .chain(e2.iter().map(|(a, b)| (a + n, b + n))).collect();
            let xs: Vec<f32> = x.iter().chain(&x2).copied().collect();
            let index: Vec<usize> = (0..n + n2).map(|i| usize::from(i >= n)).collect();
            let two = GraphIndex::new(&index, 2, &d).unwrap();
            let batched = to_vec(m.forward_graphs(matrix(xs, n + n2, 3, &d), &edges_of(n + n2, &both, None, &d), &two));
            let apart: Vec<f32> = alone.iter().chain(&alone2).copied().collect();
            prop_assert!(close(&batched, &apart), "{kind:?}: {batched:?} vs {apart:?}");
        }
    }
}
