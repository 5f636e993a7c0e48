//! Adversarial examples against PyTorch's on the same MLP and inputs, from
//! `tests/fixtures/attack.json`, made by `tests/fixtures/gen_attack.py`: FGSM is
//! `(x + eps * torch.autograd.grad(F.cross_entropy(model(x), y), x)[0].sign()).clamp(0, 1)`
//! and must match exactly; PGD (L-infinity and L2, 7 steps from the script's random starts)
//! within 1e-5.

use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor, TensorData};
use serde_json::Value;
use strata::tensor::convert::to_vec;
use strata::train::{Attack, AttackMethod, Bounds, Norm, perturb, perturb_from, predicted_classes};

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/attack.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn rows(v: &Value) -> (Vec<f32>, usize, usize) {
    let rows: Vec<Vec<f32>> = serde_json::from_value(v.clone()).unwrap();
    let (n, k) = (rows.len(), rows[0].len());
    (rows.concat(), n, k)
}

fn matrix(v: &Value, d: &Device) -> Tensor<2> {
    let (values, n, k) = rows(v);
    Tensor::from_data(TensorData::new(values, [n, k]), d)
}

fn vector(v: &Value, d: &Device) -> Tensor<2> {
    let values: Vec<f32> = serde_json::from_value(v.clone()).unwrap();
    let n = values.len();
    Tensor::from_data(TensorData::new(values, [1, n]), d)
}

fn labels(v: &Value) -> Vec<usize> {
    serde_json::from_value(v.clone()).unwrap()
}

/// The fixture's `Linear(64, 32) -> ReLU -> Linear(32, 10)`.
fn model(f: &Value, d: &Device) -> impl Fn(Tensor<2>) -> Tensor<2> + use<> {
    let (w1, b1) = (matrix(&f["w1"], d).transpose(), vector(&f["b1"], d));
    let (w2, b2) = (matrix(&f["w2"], d).transpose(), vector(&f["b2"], d));
    move |x: Tensor<2>| relu(x.matmul(w1.clone()) + b1.clone()).matmul(w2.clone()) + b2.clone()
}

/// The largest absolute difference; a NaN or a length mismatch fails.
fn worst(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "lengths differ");
    got.iter()
        .zip(want)
        .map(|(a, b)| {
            if a.is_finite() {
                (a - b).abs()
            } else {
                f32::INFINITY
            }
        })
        .fold(0.0, f32::max)
}

#[test]
fn fgsm_matches_pytorch_exactly() {
    let f = fixture();
    let d = Device::flex();
    let forward = model(&f, &d);
    let x = matrix(&f["x"], &d);
    let y = labels(&f["labels"]);
    let t = labels(&f["targets"]);
    let eps = f["eps_inf"].as_f64().unwrap();
    let bounds = Bounds::uniform(64, 0.0, 1.0);
    let attack = Attack::fgsm(eps);
    let adv = to_vec(perturb(&forward, x.clone(), &y, None, &attack, &bounds).unwrap());
    assert_eq!(worst(&adv, &rows(&f["fgsm"]).0), 0.0, "untargeted FGSM");
    let z = to_vec(forward(Tensor::from_data(
        TensorData::new(adv, [16, 64]),
        &d,
    )));
    assert_eq!(predicted_classes(&z, 10), labels(&f["fgsm_predictions"]));
    let targeted = to_vec(perturb(&forward, x, &y, Some(&t), &attack, &bounds).unwrap());
    assert_eq!(
        worst(&targeted, &rows(&f["fgsm_targeted"]).0),
        0.0,
        "targeted FGSM"
    );
}

#[test]
fn pgd_matches_pytorch_from_the_same_start() {
    let f = fixture();
    let d = Device::flex();
    let forward = model(&f, &d);
    let x = matrix(&f["x"], &d);
    let y = labels(&f["labels"]);
    let steps = f["steps"].as_u64().unwrap() as usize;
    let bounds = Bounds::uniform(64, 0.0, 1.0);
    let cases = [
        (
            Norm::Inf,
            f["eps_inf"].as_f64().unwrap(),
            0.025,
            "start_inf",
            "pgd_inf",
        ),
        (
            Norm::L2,
            f["eps_l2"].as_f64().unwrap(),
            0.25,
            "start_l2",
            "pgd_l2",
        ),
    ];
    for (norm, eps, step, start, want) in cases {
        let attack = Attack {
            method: AttackMethod::Pgd,
            norm,
            eps,
            steps,
            step_size: Some(step),
            ..Attack::pgd(eps)
        };
        let start = Some(rows(&f[start]).0);
        let adv = perturb_from(&forward, x.clone(), start, &y, None, &attack, &bounds).unwrap();
        let diff = worst(&to_vec(adv), &rows(&f[want]).0);
        assert!(diff < 1e-5, "{norm:?}: {diff}");
    }
}
