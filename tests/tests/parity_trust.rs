//! Attacks and explanations against PyTorch and Captum on the same MLP (`Linear(64, 32) ->
//! ReLU -> Linear(32, 10)`) and inputs:
//! - `tests/fixtures/attack.json` (`gen_attack.py`): FGSM is
//!   `(x + eps * torch.autograd.grad(F.cross_entropy(model(x), y), x)[0].sign()).clamp(0, 1)`
//!   and must match exactly; PGD (L-infinity and L2, 7 steps from the script's random starts)
//!   within 1e-5.
//! - `tests/fixtures/explain.json` (`gen_explain.py`): Captum's
//!   `Saliency(model).attribute(x, target=t)` and `IntegratedGradients(model).attribute(x,
//!   baselines=b, target=t, n_steps=50)`, within 1e-4, and the same completeness deltas.

use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use serde_json::Value;
use strata::train::{
    Attack, AttackMethod, Bounds, Norm, integrated_gradients, perturb, perturb_from,
    predicted_classes, saliency,
};
use strata_tests::{assert_close, close_to_json, fixture_json, flat, json_tensor, json_to_tensor};

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
