//! Strata's own CPU kernels (`strata::kernels`) against PyTorch (`tests/fixtures/gen_kernels.py`,
//! values in `tests/fixtures/kernels.json`, computed in float64), on every usable backend (flex
//! runs Strata's kernels, the others burn's ops):
//!
//! - conv2d with bias or not, stride, asymmetric padding, dilation, groups (grouped,
//!   depthwise) and 1x1: the output (1e-5) and the gradients of `sum(y * r)` for the input,
//!   weight and bias (1e-4); on wgpu the first case only;
//! - batch norm in training on `[N, C, H, W]` and `[N, C]`: output, batch mean and biased
//!   variance (1e-5), the three gradients (1e-4);
//! - five Adam and AdamW steps with weight decay against `torch.optim` (1e-5);
//! - five SGD steps (plain, momentum with dampening, Nesterov) with weight decay (1e-5).

use burn::backend::ops::ConvOptions;
use burn::tensor::{Device, Tensor};
use serde_json::Value;
use strata::kernels::{AdamStep, SgdStep, adam_step, batch_norm_train, conv2d, sgd_step};
use strata::tensor::Backend;
use strata_tests::{close_to_json, fixture_json, flat, json_to_tensor, usable_backends};

fn t<const D: usize>(v: &Value, d: &Device) -> Tensor<D> {
    json_to_tensor(v, d)
}

fn pair(v: &Value) -> [usize; 2] {
    [0, 1].map(|i| v[i].as_u64().expect("a size") as usize)
}

fn conv_case(c: &Value, device: &Device) {
    let name = c["name"].as_str().unwrap();
    let d = device.clone().autodiff();
    let padding = [0, 1].map(|i| {
        let p = pair(&c["padding"][i]);
        (p[0], p[1])
    });
    let options = ConvOptions::new_with_padding(
        pair(&c["stride"]),
        padding,
        pair(&c["dilation"]),
        c["groups"].as_u64().unwrap() as usize,
    );
    let x = t::<4>(&c["x"], &d).require_grad();
    let weight = t::<4>(&c["weight"], &d).require_grad();
    let bias = c.get("bias").map(|b| t::<1>(b, &d).require_grad());
    let y = conv2d(x.clone(), weight.clone(), bias.clone(), options);
    close_to_json(&format!("{name}: y"), flat(y.clone()), &c["y"], 1e-5);
    let grads = (y * t::<4>(&c["upstream"], &d)).sum().backward();
    close_to_json(
        &format!("{name}: dx"),
        flat(x.grad(&grads).unwrap()),
        &c["dx"],
        1e-4,
    );
    let dw = weight.grad(&grads).unwrap();
    close_to_json(&format!("{name}: dweight"), flat(dw), &c["dweight"], 1e-4);
    if let Some(bias) = bias {
        let db = bias.grad(&grads).unwrap();
        close_to_json(&format!("{name}: dbias"), flat(db), &c["dbias"], 1e-4);
    }
}

#[test]
fn conv2d_matches_pytorch_on_every_backend() {
    let f = fixture_json("kernels");
    let cases = f["conv2d"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    for (backend, device) in usable_backends() {
        eprintln!("{backend:?}");
        // wgpu runs burn's ops (checked against flex in cross_backend.rs); one case proves the
        // extension routes there, without compiling shaders for every shape on lavapipe.
        let take = if backend == Backend::Wgpu {
            1
        } else {
            cases.len()
        };
        for c in &cases[..take] {
            conv_case(c, &device);
        }
    }
}

fn batch_norm_case<const D: usize>(c: &Value, d: &Device) {
    let x = t::<D>(&c["x"], d).require_grad();
    let gamma = t::<1>(&c["gamma"], d).require_grad();
    let beta = t::<1>(&c["beta"], d).require_grad();
    let (y, mean, var) = batch_norm_train(x.clone(), gamma.clone(), beta.clone(), 1e-5);
    close_to_json("y", flat(y.clone()), &c["y"], 1e-5);
    close_to_json("mean", flat(mean), &c["mean"], 1e-5);
    close_to_json("variance", flat(var), &c["variance"], 1e-5);
    let grads = (y * t::<D>(&c["upstream"], d)).sum().backward();
    close_to_json("dx", flat(x.grad(&grads).unwrap()), &c["dx"], 1e-4);
    close_to_json(
        "dgamma",
        flat(gamma.grad(&grads).unwrap()),
        &c["dgamma"],
        1e-4,
    );
    close_to_json("dbeta", flat(beta.grad(&grads).unwrap()), &c["dbeta"], 1e-4);
}

#[test]
fn batch_norm_matches_pytorch_on_every_backend() {
    let f = fixture_json("kernels");
    for (backend, device) in usable_backends() {
        eprintln!("{backend:?}");
        let d = device.autodiff();
        batch_norm_case::<4>(&f["batch_norm"][0], &d);
        batch_norm_case::<2>(&f["batch_norm"][1], &d);
    }
}

#[test]
fn adam_and_adamw_match_torch_optim() {
    let f = fixture_json("kernels");
    for (backend, device) in usable_backends() {
        for (kind, decoupled) in [("adam", false), ("adamw", true)] {
            let c = &f[kind];
            let mut p = t::<2>(&c["start"], &device);
            let mut m = p.zeros_like();
            let mut v = p.zeros_like();
            let lrs = c["lrs"].as_array().unwrap();
            for (i, g) in c["grads"].as_array().unwrap().iter().enumerate() {
                let step = AdamStep {
                    lr: lrs[i].as_f64().unwrap(),
                    beta_1: c["beta_1"].as_f64().unwrap() as f32,
                    beta_2: c["beta_2"].as_f64().unwrap() as f32,
                    epsilon: c["epsilon"].as_f64().unwrap() as f32,
                    weight_decay: c["weight_decay"].as_f64().unwrap() as f32,
                    decoupled,
                    time: i + 1,
                };
                (p, m, v) = adam_step(p, t::<2>(g, &device), m, v, step);
            }
            close_to_json(&format!("{backend:?} {kind}"), flat(p), &c["end"], 1e-5);
        }
    }
}

#[test]
fn sgd_matches_torch_optim() {
    let f = fixture_json("kernels");
    let cases = f["sgd"].as_array().unwrap();
    assert_eq!(cases.len(), 3, "the fixture's SGD cases");
    for (backend, device) in usable_backends() {
        for c in cases {
            let momentum = c["momentum"].as_f64().unwrap();
            let mut p = t::<2>(&c["start"], &device);
            let mut velocity = None;
            let lrs = c["lrs"].as_array().unwrap();
            for (i, g) in c["grads"].as_array().unwrap().iter().enumerate() {
                let g = t::<2>(g, &device);
                let step = SgdStep {
                    lr: lrs[i].as_f64().unwrap(),
                    weight_decay: c["weight_decay"].as_f64().unwrap() as f32,
                    momentum: momentum as f32,
                    dampening: c["dampening"].as_f64().unwrap(),
                    nesterov: c["nesterov"].as_bool().unwrap(),
                    first: i == 0,
                };
                let v = (momentum > 0.0).then(|| velocity.take().unwrap_or_else(|| g.zeros_like()));
                (p, velocity) = sgd_step(p, g, v, step);
            }
            let name = format!(
                "{backend:?} sgd momentum {momentum} nesterov {}",
                c["nesterov"]
            );
            close_to_json(&name, flat(p), &c["end"], 1e-5);
        }
    }
}
