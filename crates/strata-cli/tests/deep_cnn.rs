//! Residual networks and VGG through the `strata` binary: a CIFAR-style ResNet-20 and a
//! VGG-11-BN (on digits resized to 32x32) learn the digits and reload, and a ResNet asked of
//! tabular data fails cleanly.

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
fn a_vgg_learns_the_digits_resized_to_32_pixels_and_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("vgg");
    let out_s = out.to_str().unwrap();
    // A narrow classifier and 30% of the training digits keep this short (about 30 s).
    let o = strata(&[
        "train",
        "--model",
        "vgg11_bn",
        "--resize",
        "32",
        "--hidden",
        "64",
        "--epochs",
        "3",
        "--train-fraction",
        "0.3",
        "--out",
        out_s,
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = json(&out.join("metrics.json"));
    let acc = m["test"]["accuracy"].as_f64().unwrap();
    // Measured: 0.7159 after 3 epochs.
    assert!(acc >= 0.5, "VGG-11-BN digits accuracy {acc}");
    // Evaluation reads the 8x8 test digits and resizes them as in training.
    let o = strata(&["evaluate", "--run", out_s, "--dataset", "digits"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn csv_rows_read_as_images_train_a_resnet() {
    let dir = tempfile::tempdir().unwrap();
    // The digits as a CSV of 64 pixel values (0-1) and a label.
    let digits = strata::data::digits();
    let mut csv = String::new();
    for i in 0..digits.len() {
        let row: Vec<String> = digits.row(i).iter().map(|v| v.to_string()).collect();
        csv += &format!("{},{}\n", row.join(","), digits.labels().unwrap()[i]);
    }
    let path = dir.path().join("digits.csv");
    std::fs::write(&path, csv).unwrap();
    let spec = format!("csv:{}", path.display());
    let out = dir.path().join("r");
    let o = strata(&[
        "train",
        "--model",
        "resnet20",
        "--dataset",
        &spec,
        "--image-shape",
        "1x8x8",
        "--epochs",
        "3",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let acc = json(&out.join("metrics.json"))["test"]["accuracy"]
        .as_f64()
        .unwrap();
    // Measured: 0.9248 after 3 epochs.
    assert!(acc >= 0.8, "ResNet-20 on CSV images: {acc}");
    assert_clean_failure(
        &[
            "train",
            "--model",
            "resnet20",
            "--dataset",
            &spec,
            "--image-shape",
            "1x8x9",
            "--out",
            out.to_str().unwrap(),
        ],
        "--image-shape 1x8x9 holds 72 values, but `digits.csv` has rows of 64",
    );
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

#[test]
fn augmentation_is_seeded_configurable_and_refused_on_tables() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str| {
        let out = dir.path().join(name);
        let o = strata(&[
            "train",
            "--dataset",
            "digits",
            "--epochs",
            "12",
            "--augment",
            "crop:1,affine:10:0.1,erase:0.3,noise:0.02,mixup:0.2",
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        (json(&out.join("metrics.json")), out)
    };
    let (a, out) = run("a");
    let (b, _) = run("b");
    let acc = a["test"]["accuracy"].as_f64().unwrap();
    assert!(acc >= 0.9, "augmented CNN digits accuracy {acc}");
    // Same seed, same augmented batches: the same model.
    assert_eq!(a["test"], b["test"]);
    // The run's config keeps the pipeline, and --config reproduces it.
    let toml = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(
        toml.contains("random_erasing") && toml.contains("mixup = 0.2"),
        "{toml}"
    );
    assert_clean_failure(
        &[
            "train",
            "--model",
            "mlp",
            "--dataset",
            "iris",
            "--augment",
            "crop",
            "--out",
            dir.path().join("c").to_str().unwrap(),
        ],
        "augmentation works on images",
    );
    assert_clean_failure(
        &[
            "train",
            "--augment",
            "rotate",
            "--out",
            dir.path().join("d").to_str().unwrap(),
        ],
        "unknown augmentation `rotate`",
    );
}
