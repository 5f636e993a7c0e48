//! Residual networks through the `strata` binary: a CIFAR-style ResNet-20 learns the digits
//! and reloads, and a ResNet asked of tabular data fails cleanly.

mod common;
use common::{assert_clean_failure, json, stderr, stdout, strata};

#[test]
fn resnet20_learns_the_digits_and_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r20");
    let out_s = out.to_str().unwrap();
    let o = strata(&[
        "train",
        "--model",
        "resnet20",
        "--dataset",
        "digits",
        "--out",
        out_s,
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = json(&out.join("metrics.json"));
    let acc = m["test"]["accuracy"].as_f64().unwrap();
    // 15 epochs of SGD: measured 0.9889.
    assert!(acc >= 0.97, "ResNet-20 digits accuracy {acc}");
    let o = strata(&["evaluate", "--run", out_s]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains(&format!("{acc:.4}")), "{}", stdout(&o));
}

#[test]
fn a_resnet_needs_images() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x");
    assert_clean_failure(
        &[
            "train",
            "--model",
            "resnet18",
            "--dataset",
            "iris",
            "--out",
            out.to_str().unwrap(),
        ],
        "model resnet18 needs image data",
    );
    assert_clean_failure(
        &[
            "train",
            "--model",
            "resnet19",
            "--out",
            out.to_str().unwrap(),
        ],
        "unknown model `resnet19`",
    );
}
