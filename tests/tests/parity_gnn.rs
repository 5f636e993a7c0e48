//! Graph layers against PyTorch Geometric 2.8.1 in `tests/fixtures/gnn.json`, made by
//! `tests/fixtures/gen_gnn.py` on a graph with a duplicated edge, self loops (one given twice
//! with different weights), a node with no edges in and an isolated node:
//!
//! ```python
//! GCNConv(5, 4)(x, edge_index, edge_weight)
//! SAGEConv(5, 4, aggr="mean"), SAGEConv(5, 4, aggr="max")
//! GATConv(5, 3, heads=2, concat=True / False)(x, edge_index, return_attention_weights=True)
//! GINConv(Sequential(Linear(5, 6), ReLU(), Linear(6, 4)), train_eps=True)  # eps = 0.3
//! global_add_pool, global_mean_pool, global_max_pool
//! ```
//!
//! Each layer's output (1e-5), the gradients of `sum(output * upstream)` with respect to the
//! input and every parameter (1e-4), and GAT's attention coefficients (1e-5).

use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::{Device, Tensor};
use serde_json::Value;
use strata::layers::{
    Aggregator, Edges, GatConv, GatConvConfig, GcnConvConfig, GinConvConfig, GraphIndex, Readout,
    SageConvConfig,
};
use strata_tests::{close_to_json, fixture_json, flat, json_tensor, json_to_tensor};

fn fixture() -> Value {
    fixture_json("gnn")
}

fn tensor<const D: usize>(v: &Value, d: &Device) -> Tensor<D> {
    json_to_tensor(v, d)
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

/// The fixture's graph on `d`, with or without its edge weights, and its input.
fn graph(f: &Value, d: &Device, weighted: bool) -> (Edges, Tensor<2>) {
    let g = &f["graph"];
    let w: Vec<f32> = json_tensor(&g["edge_weight"]).0;
    let edges = Edges::new(
        g["n_nodes"].as_u64().unwrap() as usize,
        &usizes(&g["source"]),
        &usizes(&g["target"]),
        weighted.then_some(&w[..]),
        d,
    )
    .unwrap();
    (edges, tensor::<2>(&g["x"], d).require_grad())
}

/// Sets a burn `Linear` from PyTorch's `[out, in]` weight and optional bias.
fn set_linear(lin: &mut Linear, rec: &Value, name: &str, d: &Device) {
    let p = &rec["params"];
    lin.weight =
        Param::from_tensor(tensor::<2>(&p[format!("{name}.weight")]["value"], d).transpose());
    if let Some(b) = p.get(format!("{name}.bias")) {
        lin.bias = Some(Param::from_tensor(tensor::<1>(&b["value"], d)));
    }
}

/// Checks a Linear's gradients against PyTorch's (weight transposed back).
fn check_linear(lin: &Linear, grads: &burn::tensor::Gradients, rec: &Value, name: &str) {
    let p = &rec["params"];
    let gw = lin.weight.grad(grads).unwrap().transpose();
    close_to_json(
        &format!("{name}.weight grad"),
        flat(gw),
        &p[format!("{name}.weight")]["grad"],
        1e-4,
    );
    if let Some(b) = p.get(format!("{name}.bias")) {
        let gb = lin.bias.as_ref().unwrap().grad(grads).unwrap();
        close_to_json(&format!("{name}.bias grad"), flat(gb), &b["grad"], 1e-4);
    }
}

/// Output, upstream gradient and input gradient checks shared by every layer.
fn check_output(
    name: &str,
    rec: &Value,
    y: Tensor<2>,
    x: &Tensor<2>,
    d: &Device,
) -> burn::tensor::Gradients {
    close_to_json(
        &format!("{name} output"),
        flat(y.clone()),
        &rec["output"],
        1e-5,
    );
    let grads = (y * tensor::<2>(&rec["upstream"], d)).sum().backward();
    close_to_json(
        &format!("{name} grad input"),
        flat(x.grad(&grads).unwrap()),
        &rec["grad_input"],
        1e-4,
    );
    grads
}

#[test]
fn gcn_matches_pytorch_geometric_with_weights_duplicates_and_self_loops() {
    let f = fixture();
    let rec = &f["gcn"];
    let d = Device::flex().autodiff();
    let (edges, x) = graph(&f, &d, true);
    let mut conv = GcnConvConfig::new(5, 4).init(&d);
    set_linear(&mut conv.lin, rec, "lin", &d);
    conv.bias = Some(Param::from_tensor(tensor::<1>(
        &rec["params"]["bias"]["value"],
        &d,
    )));
    let grads = check_output("gcn", rec, conv.forward(x.clone(), &edges), &x, &d);
    check_linear(&conv.lin, &grads, rec, "lin");
    let gb = conv.bias.as_ref().unwrap().grad(&grads).unwrap();
    close_to_json(
        "gcn bias grad",
        flat(gb),
        &rec["params"]["bias"]["grad"],
        1e-4,
    );
}

#[test]
fn sage_mean_and_max_match_pytorch_geometric() {
    let f = fixture();
    let d = Device::flex().autodiff();
    for (key, aggregator) in [
        ("sage_mean", Aggregator::Mean),
        ("sage_max", Aggregator::Max),
    ] {
        let rec = &f[key];
        let (edges, x) = graph(&f, &d, false);
        let mut conv = SageConvConfig::new(5, 4)
            .with_aggregator(aggregator)
            .init(&d);
        set_linear(&mut conv.lin_l, rec, "lin_l", &d);
        set_linear(&mut conv.lin_r, rec, "lin_r", &d);
        let grads = check_output(key, rec, conv.forward(x.clone(), &edges), &x, &d);
        check_linear(&conv.lin_l, &grads, rec, "lin_l");
        check_linear(&conv.lin_r, &grads, rec, "lin_r");
    }
}

fn set_gat(conv: &mut GatConv, rec: &Value, d: &Device) {
    let p = &rec["params"];
    set_linear(&mut conv.lin, rec, "lin", d);
    // PyTorch Geometric's attention vectors are [1, heads, channels].
    conv.att_src = Param::from_tensor(tensor::<3>(&p["att_src"]["value"], d).squeeze_dim(0));
    conv.att_dst = Param::from_tensor(tensor::<3>(&p["att_dst"]["value"], d).squeeze_dim(0));
    conv.bias = Some(Param::from_tensor(tensor::<1>(&p["bias"]["value"], d)));
}

#[test]
fn gat_matches_pytorch_geometric_with_its_attention_coefficients() {
    let f = fixture();
    let d = Device::flex().autodiff();
    for (key, concat) in [("gat_concat", true), ("gat_mean", false)] {
        let rec = &f[key];
        let (edges, x) = graph(&f, &d, false);
        assert_eq!(edges.n_looped_edges(), usizes(&rec["looped_source"]).len());
        let mut conv = GatConvConfig::new(5, 3)
            .with_n_heads(2)
            .with_concat(concat)
            .init(&d);
        set_gat(&mut conv, rec, &d);
        let (y, alpha) = conv.forward_with_attention(x.clone(), &edges);
        close_to_json(
            &format!("{key} attention"),
            flat(alpha),
            &rec["attention"],
            1e-5,
        );
        let grads = check_output(key, rec, y, &x, &d);
        check_linear(&conv.lin, &grads, rec, "lin");
        let p = &rec["params"];
        for (name, param) in [("att_src", &conv.att_src), ("att_dst", &conv.att_dst)] {
            close_to_json(
                &format!("{key} {name} grad"),
                flat(param.grad(&grads).unwrap()),
                &p[name]["grad"],
                1e-4,
            );
        }
        let gb = conv.bias.as_ref().unwrap().grad(&grads).unwrap();
        close_to_json(
            &format!("{key} bias grad"),
            flat(gb),
            &p["bias"]["grad"],
            1e-4,
        );
    }
}

#[test]
fn gin_matches_pytorch_geometric_with_a_learned_eps() {
    let f = fixture();
    let rec = &f["gin"];
    let d = Device::flex().autodiff();
    let (edges, x) = graph(&f, &d, false);
    let mut conv = GinConvConfig::new(5, 6, 4).init(&d);
    set_linear(&mut conv.hidden.linear, rec, "nn.0", &d);
    set_linear(&mut conv.out, rec, "nn.2", &d);
    conv.eps = Param::from_tensor(tensor::<1>(&rec["params"]["eps"]["value"], &d));
    let grads = check_output("gin", rec, conv.forward(x.clone(), &edges), &x, &d);
    check_linear(&conv.hidden.linear, &grads, rec, "nn.0");
    check_linear(&conv.out, &grads, rec, "nn.2");
    close_to_json(
        "gin eps grad",
        flat(conv.eps.grad(&grads).unwrap()),
        &rec["params"]["eps"]["grad"],
        1e-4,
    );
}

#[test]
fn readouts_match_pytorch_geometric_forward_and_backward() {
    let f = fixture();
    let p = &f["pool"];
    let d = Device::flex().autodiff();
    let index = GraphIndex::new(&usizes(&p["batch"]), 2, &d).unwrap();
    for (key, readout) in [
        ("sum", Readout::Sum),
        ("mean", Readout::Mean),
        ("max", Readout::Max),
    ] {
        let x = tensor::<2>(&f["graph"]["x"], &d).require_grad();
        check_output(key, &p[key], readout.apply(x.clone(), &index), &x, &d);
    }
}
