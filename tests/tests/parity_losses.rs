//! Losses and metrics against PyTorch / scikit-learn values in `tests/fixtures/losses.json`,
//! made by `tests/fixtures/gen_losses.py`, e.g. `F.cross_entropy(x, y, weight=w,
//! label_smoothing=0.2)` and `sklearn.metrics.log_loss(y, softmax(x))`.

use burn::tensor::{Device, Tensor, TensorData};
use serde_json::Value;
use strata::loss::LossConfig;
use strata::metrics::ClassificationReport;
use strata::tensor::TargetBatch;
use strata::tensor::convert::{classes, scalar, to_vec};

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/losses.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn matrix(v: &Value, d: &Device) -> Tensor<2> {
    let rows: Vec<Vec<f32>> = serde_json::from_value(v.clone()).unwrap();
    let (n, k) = (rows.len(), rows[0].len());
    Tensor::from_data(TensorData::new(rows.concat(), [n, k]), d)
}

fn labels(v: &Value) -> Vec<usize> {
    serde_json::from_value(v.clone()).unwrap()
}

fn check(name: &str, config: LossConfig, outputs: Tensor<2>, targets: &TargetBatch, f: &Value) {
    let d = Device::flex();
    let got = scalar(config.init(&d).unwrap().forward(outputs, targets).unwrap()) as f64;
    let want = f[name].as_f64().unwrap();
    assert!(
        (got - want).abs() < 1e-5,
        "{name}: strata {got} vs PyTorch {want}"
    );
}

#[test]
fn losses_match_pytorch() {
    let f = fixture();
    let d = Device::flex();
    let x = matrix(&f["logits"], &d);
    let y = TargetBatch::Classes(classes(&labels(&f["targets"]), &d));
    let w: Vec<f32> = serde_json::from_value(f["class_weights"].clone()).unwrap();
    let ce = |weights: Option<Vec<f32>>, smoothing| LossConfig::CrossEntropy { weights, smoothing };
    check("cross_entropy", ce(None, 0.0), x.clone(), &y, &f);
    check(
        "cross_entropy_weighted",
        ce(Some(w.clone()), 0.0),
        x.clone(),
        &y,
        &f,
    );
    check(
        "cross_entropy_smoothed_0.1",
        ce(None, 0.1),
        x.clone(),
        &y,
        &f,
    );
    check(
        "cross_entropy_weighted_smoothed_0.2",
        ce(Some(w.clone()), 0.2),
        x.clone(),
        &y,
        &f,
    );
    check(
        "focal_gamma_2",
        LossConfig::Focal {
            gamma: 2.0,
            alpha: None,
        },
        x.clone(),
        &y,
        &f,
    );
    check(
        "focal_gamma_2_alpha",
        LossConfig::Focal {
            gamma: 2.0,
            alpha: Some(w),
        },
        x.clone(),
        &y,
        &f,
    );
    let bce_x: Vec<f32> = serde_json::from_value(f["bce_logits"].clone()).unwrap();
    let bce_y = TargetBatch::Classes(classes(&labels(&f["bce_targets"]), &d));
    let n = bce_x.len();
    check(
        "bce",
        LossConfig::Bce,
        Tensor::from_data(TensorData::new(bce_x, [n, 1]), &d),
        &bce_y,
        &f,
    );
    let mse_y = TargetBatch::Values(matrix(&f["mse_targets"], &d));
    check(
        "mse",
        LossConfig::Mse,
        matrix(&f["mse_outputs"], &d),
        &mse_y,
        &f,
    );
}

#[test]
fn metrics_match_scikit_learn() {
    let f = fixture();
    let d = Device::flex();
    let probs = to_vec(burn::tensor::activation::softmax(
        matrix(&f["logits"], &d),
        1,
    ));
    let r = ClassificationReport::new(&labels(&f["targets"]), &probs, 3).unwrap();
    assert!((r.accuracy - f["softmax_accuracy"].as_f64().unwrap()).abs() < 1e-12);
    assert!((r.log_loss - f["softmax_log_loss"].as_f64().unwrap()).abs() < 1e-6);
    assert!((r.macro_f1 - f["softmax_macro_f1"].as_f64().unwrap()).abs() < 1e-9);
}
