//! The capsule network against the PyTorch reference in `tests/fixtures/gen_capsnet.py`
//! (written after the paper; values in `tests/fixtures/capsnet.json`, computed in float64):
//!
//! - `squash` of fixed vectors, one of them zero (1e-5);
//! - routing of fixed predictions `u_hat` with r = 1 and r = 3: capsules and coupling (1e-5);
//! - a small CapsNet for 12x12 images (Conv2d(1, 6, 3), 3 types of 4-D primary capsules,
//!   3 class capsules of 5-D, r = 3, a 8-16 decoder) from the same weights: the scores (capsule
//!   lengths), the coupling and the masked reconstruction (1e-5), both loss terms with the
//!   reconstruction weight 0.05 (1e-5), and the gradient of every parameter after backward
//!   (1e-4, and a thousandth of the largest element for the decoder's small gradients).

use burn::module::Param;
use burn::nn::Linear;
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Tensor};
use serde_json::Value;
use strata::arch::{CapsNet, CapsNetConfig};
use strata::layers::{route, squash};
use strata::tensor::convert::{classes, scalar};
use strata_tests::{close_to_json, fixture_json, flat, json_tensor, json_to_tensor};

/// [`close_to_json`] within 1e-4, or within a thousandth of the largest reference element when
/// that is tighter (gradients far below 1e-4 are then still checked).
fn grad_close(what: &str, got: Vec<f32>, want: &Value) {
    let largest = json_tensor(want)
        .0
        .iter()
        .fold(0.0f32, |m, v| m.max(v.abs()));
    close_to_json(what, got, want, 1e-4f32.min(1e-3 * largest));
}

fn t<const D: usize>(v: &Value, d: &Device) -> Tensor<D> {
    json_to_tensor(v, d)
}

fn set_conv(c: &mut Conv2d, w: &Value, name: &str, d: &Device) {
    c.weight = Param::from_tensor(t(&w[format!("{name}.weight")], d));
    c.bias = Some(Param::from_tensor(t(&w[format!("{name}.bias")], d)));
}

fn set_linear(l: &mut Linear, w: &Value, name: &str, d: &Device) {
    l.weight = Param::from_tensor(t::<2>(&w[format!("{name}.weight")], d).transpose());
    l.bias = Some(Param::from_tensor(t(&w[format!("{name}.bias")], d)));
}

/// The fixture's network with PyTorch's weights, on `d` (an autodiff device for gradients).
fn capsnet(f: &Value, d: &Device) -> CapsNet {
    let w = &f["weights"];
    let mut net = CapsNetConfig::new(1, 12, 12, 3)
        .with_conv_channels(6)
        .with_kernel_size(3)
        .with_primary_types(3)
        .with_primary_dim(4)
        .with_class_dim(5)
        .with_decoder(vec![8, 16])
        .with_reconstruction(0.05)
        .init(d)
        .unwrap();
    set_conv(&mut net.conv1, w, "conv1", d);
    set_conv(&mut net.primary_caps.conv, w, "primary", d);
    net.class_caps.weight = Param::from_tensor(t(&w["W"], d));
    for i in 0..3 {
        set_linear(&mut net.decoder[i], w, &format!("decoder.{i}"), d);
    }
    net
}

#[test]
fn squash_matches_the_reference() {
    let f = fixture_json("capsnet");
    let d = Device::flex();
    let got = squash(t::<2>(&f["squash"]["input"], &d), 1);
    close_to_json("squash", flat(got), &f["squash"]["output"], 1e-5);
}

#[test]
fn routing_matches_the_reference_with_one_and_three_iterations() {
    let f = fixture_json("capsnet");
    let d = Device::flex();
    let u_hat = t::<4>(&f["routing"]["u_hat"], &d);
    for r in [1, 3] {
        let want = &f["routing"][format!("r{r}")];
        let routed = route(u_hat.clone(), r);
        close_to_json(
            &format!("capsules r={r}"),
            flat(routed.capsules),
            &want["capsules"],
            1e-5,
        );
        close_to_json(
            &format!("coupling r={r}"),
            flat(routed.coupling),
            &want["coupling"],
            1e-5,
        );
    }
}

#[test]
fn a_small_capsnet_matches_forward_and_backward() {
    let f = &fixture_json("capsnet")["capsnet"];
    let d = Device::flex().autodiff();
    let net = capsnet(f, &d);
    let x = t::<4>(&f["x"], &d);
    let labels: Vec<usize> = f["y"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let y = classes(&labels, &d);

    let routed = net.capsules(x.clone());
    close_to_json("scores", flat(net.forward(x.clone())), &f["scores"], 1e-5);
    close_to_json("coupling", flat(routed.coupling), &f["coupling"], 1e-5);
    let image = net.reconstruct(routed.capsules, y.clone());
    close_to_json(
        "reconstruction image",
        flat(image),
        &f["reconstruction_image"],
        1e-5,
    );

    let loss = net.loss(x, y);
    let margin = scalar(loss.margin.clone());
    let recon = scalar(loss.reconstruction.clone());
    assert!(
        (margin - f["margin"].as_f64().unwrap() as f32).abs() < 1e-5,
        "margin {margin}"
    );
    assert!(
        (recon - f["reconstruction"].as_f64().unwrap() as f32).abs() < 1e-5,
        "recon {recon}"
    );

    let grads = loss.total.backward();
    let g = &f["grads"];
    let grad = |p: &Param<Tensor<4>>| flat(p.grad(&grads).expect("a gradient"));
    grad_close(
        "d conv1.weight",
        grad(&net.conv1.weight),
        &g["conv1.weight"],
    );
    grad_close(
        "d primary.weight",
        grad(&net.primary_caps.conv.weight),
        &g["primary.weight"],
    );
    grad_close("d W", grad(&net.class_caps.weight), &g["W"]);
    let bias = |p: &Option<Param<Tensor<1>>>| flat(p.as_ref().unwrap().grad(&grads).unwrap());
    grad_close("d conv1.bias", bias(&net.conv1.bias), &g["conv1.bias"]);
    grad_close(
        "d primary.bias",
        bias(&net.primary_caps.conv.bias),
        &g["primary.bias"],
    );
    for i in 0..3 {
        let l = &net.decoder[i];
        grad_close(
            &format!("d decoder.{i}.weight"),
            flat(l.weight.grad(&grads).unwrap().transpose()),
            &g[format!("decoder.{i}.weight")],
        );
        grad_close(
            &format!("d decoder.{i}.bias"),
            bias(&l.bias),
            &g[format!("decoder.{i}.bias")],
        );
    }
}
