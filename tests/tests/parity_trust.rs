//! Attacks and explanations against PyTorch and Captum on the same MLP (`Linear(64, 32) ->
//! ReLU -> Linear(32, 10)`) and inputs:
//! - `tests/fixtures/attack.json` (`gen_attack.py`): FGSM is
//!   `(x + eps * torch.autograd.grad(F.cross_entropy(model(x), y), x)[0].sign()).clamp(0, 1)`
//!   and must match exactly; PGD (L-infinity and L2, 7 steps from the script's random starts)
//!   within 1e-5.
//! - `tests/fixtures/explain.json` (`gen_explain.py`): Captum's
//!   `Saliency(model).attribute(x, target=t)` and `IntegratedGradients(model).attribute(x,
//!   baselines=b, target=t, n_steps=50)`, within 1e-4, and the same completeness deltas; and
//!   `LayerGradCam(cnn, cnn.relu2).attribute(images, target=t, relu_attributions=r)` on a
//!   small CNN (two 3x3 convolutions with ReLUs, a linear layer) within 1e-6, with and
//!   without the ReLU, and on `gen_resnet.py`'s CIFAR-stem ResNet at `layer1` and `layer2`
//!   (Strata's `ResNet::forward_to` and `forward_from`); attention rollout against a PyTorch
//!   reference (vit-explain's formula) on random attention weights, within 1e-6.

use burn::backend::ops::ConvOptions;
use burn::module::Module;
use burn::tensor::activation::relu;
use burn::tensor::module::conv2d;
use burn::tensor::{Device, Tensor};
use serde_json::Value;
use strata::train::{
    Attack, AttackMethod, Bounds, Norm, attention_rollout, grad_cam, integrated_gradients, perturb,
    perturb_from, predicted_classes, saliency,
};
use strata_tests::{
    assert_close, close_to_json, fixture_json, flat, json_tensor, json_to_tensor, pytorch_resnet,
};

fn labels(v: &Value) -> Vec<usize> {
    serde_json::from_value(v.clone()).unwrap()
}

/// The fixture's MLP, as a closure of its inputs.
fn model(f: &Value, d: &Device) -> impl Fn(Tensor<2>) -> Tensor<2> + use<> {
    let w1 = json_to_tensor::<2>(&f["w1"], d).transpose();
    let w2 = json_to_tensor::<2>(&f["w2"], d).transpose();
    let b1 = json_to_tensor::<1>(&f["b1"], d).unsqueeze_dim::<2>(0);
    let b2 = json_to_tensor::<1>(&f["b2"], d).unsqueeze_dim::<2>(0);
    move |x: Tensor<2>| relu(x.matmul(w1.clone()) + b1.clone()).matmul(w2.clone()) + b2.clone()
}

#[test]
fn fgsm_matches_pytorch_exactly() {
    let f = fixture_json("attack");
    let d = Device::flex();
    let forward = model(&f, &d);
    let x = json_to_tensor::<2>(&f["x"], &d);
    let (y, t) = (labels(&f["labels"]), labels(&f["targets"]));
    let attack = Attack::fgsm(f["eps_inf"].as_f64().unwrap());
    let bounds = Bounds::uniform(64, 0.0, 1.0);
    let adv = perturb(&forward, x.clone(), &y, None, &attack, &bounds).unwrap();
    assert_close("FGSM", &flat(adv.clone()), &json_tensor(&f["fgsm"]).0, 0.0);
    let z = flat(forward(adv));
    assert_eq!(predicted_classes(&z, 10), labels(&f["fgsm_predictions"]));
    let targeted = perturb(&forward, x, &y, Some(&t), &attack, &bounds).unwrap();
    close_to_json("targeted FGSM", flat(targeted), &f["fgsm_targeted"], 0.0);
}

#[test]
fn pgd_matches_pytorch_from_the_same_start() {
    let f = fixture_json("attack");
    let d = Device::flex();
    let forward = model(&f, &d);
    let x = json_to_tensor::<2>(&f["x"], &d);
    let y = labels(&f["labels"]);
    let steps = f["steps"].as_u64().unwrap() as usize;
    let bounds = Bounds::uniform(64, 0.0, 1.0);
    let cases = [
        (Norm::Inf, "eps_inf", 0.025, "start_inf", "pgd_inf"),
        (Norm::L2, "eps_l2", 0.25, "start_l2", "pgd_l2"),
    ];
    for (norm, eps, step, start, want) in cases {
        let eps = f[eps].as_f64().unwrap();
        let attack = Attack {
            method: AttackMethod::Pgd,
            norm,
            steps,
            step_size: Some(step),
            ..Attack::pgd(eps)
        };
        let start = Some(json_tensor(&f[start]).0);
        let adv = perturb_from(&forward, x.clone(), start, &y, None, &attack, &bounds).unwrap();
        close_to_json(want, flat(adv), &f[want], 1e-5);
    }
}

#[test]
fn saliency_and_integrated_gradients_match_captum() {
    let (f, e) = (fixture_json("attack"), fixture_json("explain"));
    let d = Device::flex();
    let forward = model(&f, &d);
    let x = json_to_tensor::<2>(&f["x"], &d);
    let t = labels(&e["target"]);
    let s = saliency(&forward, x.clone(), &t).unwrap();
    close_to_json("saliency", flat(s), &e["saliency"], 1e-4);
    let baseline = json_to_tensor::<2>(&e["baseline"], &d);
    let ig = integrated_gradients(&forward, x, baseline, &t, 50).unwrap();
    close_to_json(
        "integrated gradients",
        flat(ig.attributions),
        &e["integrated_gradients"],
        1e-4,
    );
    // Captum's delta is the attributions' sum minus f(x) - f(baseline), as ours.
    close_to_json("completeness delta", ig.delta, &e["delta"], 1e-4);
}

#[test]
fn grad_cam_matches_captum() {
    let (f, e) = (fixture_json("attack"), fixture_json("explain"));
    let d = Device::flex();
    let p = &e["cnn"];
    let conv = |w: &str, b: &str| {
        let (w, b) = (
            json_to_tensor::<4>(&p[w], &d),
            json_to_tensor::<1>(&p[b], &d),
        );
        move |x: Tensor<4>| {
            relu(conv2d(
                x,
                w.clone(),
                Some(b.clone()),
                ConvOptions::new([1, 1], [1, 1], [1, 1], 1),
            ))
        }
    };
    let (conv1, conv2) = (
        conv("conv1.weight", "conv1.bias"),
        conv("conv2.weight", "conv2.bias"),
    );
    let head = |x: Tensor<2>| {
        let n = x.dims()[0];
        conv2(conv1(x.reshape([n, 1, 8, 8])))
    };
    let fc_w = json_to_tensor::<2>(&p["fc.weight"], &d).transpose();
    let fc_b = json_to_tensor::<1>(&p["fc.bias"], &d).unsqueeze_dim::<2>(0);
    let tail = |a: Tensor<4>| {
        let n = a.dims()[0];
        a.reshape([n, 6 * 8 * 8]).matmul(fc_w.clone()) + fc_b.clone()
    };
    let x = json_to_tensor::<2>(&f["x"], &d);
    let t = labels(&e["target"]);
    let cam = grad_cam(&head, &tail, x.clone(), &t, true).unwrap();
    assert_eq!(cam.dims(), [16, 1, 8, 8]);
    // The maps are about 1e-3: compared at 1e-6, a thousandth of their size.
    close_to_json("Grad-CAM", flat(cam), &e["gradcam"], 1e-6);
    let raw = grad_cam(&head, &tail, x, &t, false).unwrap();
    close_to_json("Grad-CAM without ReLU", flat(raw), &e["gradcam_raw"], 1e-6);
}

#[test]
fn grad_cam_of_a_resnet_matches_captum() {
    let (r, e) = (fixture_json("resnet"), fixture_json("explain"));
    let d = Device::flex();
    let f = &r["cifar_basic"];
    let resnet = pytorch_resnet("cifar_basic", f, &d).valid();
    let images = json_to_tensor::<4>(&f["x"], &d);
    let [n, c, h, w] = images.dims();
    let x = images.reshape([n, c * h * w]);
    let t = labels(&e["resnet_target"]);
    for (stage, layer) in ["layer1", "layer2"].into_iter().enumerate() {
        let head = |x: Tensor<2>| resnet.forward_to(x.reshape([n, c, h, w]), stage);
        let tail = |a: Tensor<4>| resnet.forward_from(a, stage);
        let cam = grad_cam(&head, &tail, x.clone(), &t, true).unwrap();
        // The maps reach about 0.006 (layer1) and 0.02 (layer2): 1e-6 is below a thousandth.
        close_to_json(layer, flat(cam), &e["resnet_gradcam"][layer], 1e-6);
    }
}

#[test]
fn attention_rollout_matches_a_pytorch_reference() {
    let e = fixture_json("explain");
    let d = Device::flex();
    let layers: Vec<Tensor<4>> = e["attentions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| json_to_tensor::<4>(a, &d))
        .collect();
    assert_eq!(layers.len(), 3);
    let r = attention_rollout(&layers).unwrap();
    assert_eq!(r.dims(), [2, 5, 5]);
    close_to_json("rollout", flat(r), &e["rollout"], 1e-6);
}
