//! `strata attack`, `strata train --adversarial` and `strata explain` end to end: a digits
//! CNN's robust accuracy under FGSM and PGD, the curve against epsilon, adversarial training,
//! heat maps and Adult column attributions, and bad input as one line with exit code 1.

mod common;
use common::{assert_clean_failure, json, stderr, stdout, strata};

use std::path::Path;

/// Trains `model` on `dataset` for `epochs` into `out`, quietly, with `extra` flags.
fn train(model: &str, dataset: &str, epochs: &str, out: &Path, extra: &[&str]) {
    let args = [
        &[
            "train",
            "--model",
            model,
            "--dataset",
            dataset,
            "--epochs",
            epochs,
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ][..],
        extra,
    ]
    .concat();
    let o = strata(&args);
    assert!(o.status.success(), "{}", stderr(&o));
}

fn train_cnn(out: &Path) {
    train("cnn", "digits", "15", out, &[]);
}

fn is_png(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|b| b.starts_with(b"\x89PNG\r\n\x1a\n") && b.len() > 100)
}

#[test]
fn attacks_lower_a_digits_cnn_s_accuracy() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("cnn");
    train_cnn(&run);
    let r = run.to_str().unwrap();
    let test_accuracy = json(&run.join("metrics.json"))["test"]["accuracy"]
        .as_f64()
        .unwrap();

    let o = strata(&["attack", "--run", r, "--method", "fgsm", "--eps", "0.1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("robust accuracy"), "{}", stdout(&o));
    let out = run.join("attack");
    let fgsm = json(&out.join("attack.json"));
    // The clean accuracy is the run's own test accuracy, and epsilon 0 changes nothing.
    let clean = fgsm["clean_accuracy"].as_f64().unwrap();
    assert!(
        (clean - test_accuracy).abs() < 1e-12,
        "{clean} vs {test_accuracy}"
    );
    let curve = fgsm["curve"].as_array().unwrap();
    assert_eq!(curve.len(), 7);
    assert_eq!(curve[0]["eps"].as_f64(), Some(0.0));
    assert_eq!(curve[0]["robust_accuracy"].as_f64(), Some(clean));
    // A CNN trained without adversaries is not robust: at 0.1 (a tenth of the pixel range)
    // FGSM takes more than 5 points off, and the curve falls as epsilon grows.
    let robust = fgsm["robust_accuracy"].as_f64().unwrap();
    assert!(robust < clean - 0.05, "FGSM: {robust} vs clean {clean}");
    let accs: Vec<f64> = curve
        .iter()
        .map(|p| p["robust_accuracy"].as_f64().unwrap())
        .collect();
    assert!(accs.last().unwrap() < &robust, "{accs:?}");
    let csv = std::fs::read_to_string(out.join("robustness.csv")).unwrap();
    assert_eq!(csv.lines().count(), 8, "{csv}");
    assert!(is_png(&out.join("robustness.png")) && is_png(&out.join("adversarial.png")));

    // PGD at the same epsilon is at least as strong as FGSM (up to a sample or two).
    let o = strata(&[
        "attack", "--run", r, "--method", "pgd", "--eps", "0.1", "--steps", "7", "--curve", "0.1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let pgd = json(&out.join("attack.json"));
    let pgd_robust = pgd["robust_accuracy"].as_f64().unwrap();
    assert!(
        pgd_robust <= robust + 0.01,
        "PGD {pgd_robust} vs FGSM {robust}"
    );
    assert_eq!(pgd["attack"]["steps"].as_u64(), Some(7));

    // An L2 ball, on the first 50 samples.
    let o = strata(&[
        "attack", "--run", r, "--norm", "2", "--eps", "1.0", "--limit", "50", "--curve", "0,1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let l2 = json(&out.join("attack.json"));
    assert_eq!(l2["samples"].as_u64(), Some(50));
    assert_eq!(l2["attack"]["norm"], "l2");

    // Bad input: one line, exit code 1.
    assert_clean_failure(&["attack", "--run", r, "--eps", "-0.1"], "epsilon");
    assert_clean_failure(
        &["attack", "--run", r, "--eps", "0.1", "--method", "cw"],
        "fgsm or pgd",
    );
    assert_clean_failure(
        &["attack", "--run", r, "--eps", "0.1", "--norm", "1"],
        "inf or 2",
    );
    assert_clean_failure(
        &["attack", "--run", r, "--eps", "0.1", "--steps", "0"],
        "step",
    );
    assert_clean_failure(
        &["attack", "--run", r, "--eps", "0.1", "--curve", "0,-1"],
        "curve",
    );
    assert_clean_failure(
        &["attack", "--run", r, "--eps", "0.1", "--limit", "0"],
        "--limit",
    );
    let missing = dir.path().join("nothing");
    assert_clean_failure(
        &["attack", "--run", missing.to_str().unwrap(), "--eps", "0.1"],
        "not a run directory",
    );
}

#[test]
fn a_run_that_is_not_a_classifier_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("forecaster");
    train("mlp", "airline", "2", &run, &[]);
    assert_clean_failure(
        &["attack", "--run", run.to_str().unwrap(), "--eps", "0.1"],
        "not a classifier",
    );
}

/// Adversarial training (PGD, Madry et al.) on digits: the same CNN, the same epochs and seed,
/// with and without it. Bars set before the first run: the adversarially trained model keeps
/// a clean accuracy of at least 0.95 and beats the plain one's robust accuracy under the same
/// PGD attack by at least 5 points.
#[test]
fn adversarial_training_makes_a_digits_cnn_more_robust() {
    let dir = tempfile::tempdir().unwrap();
    let (plain, robust) = (dir.path().join("plain"), dir.path().join("robust"));
    let cnn = |out: &Path, extra: &[&str]| train("cnn", "digits", "10", out, extra);
    cnn(&plain, &[]);
    cnn(&robust, &["--adversarial", "pgd:eps=0.1,steps=3"]);
    let m = json(&robust.join("metrics.json"));
    let block = &m["adversarial"];
    assert_eq!(block["attack"]["method"], "pgd");
    let clean = block["test_clean_accuracy"].as_f64().unwrap();
    assert_eq!(m["test"]["accuracy"].as_f64(), Some(clean));
    assert!(clean >= 0.95, "clean accuracy {clean}");
    let trained_robust = block["test_robust_accuracy"].as_f64().unwrap();
    // The plain model under the attack it was not trained against.
    let o = strata(&[
        "attack",
        "--run",
        plain.to_str().unwrap(),
        "--eps",
        "0.1",
        "--steps",
        "3",
        "--curve",
        "0.1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let plain_robust = json(&plain.join("attack/attack.json"))["robust_accuracy"]
        .as_f64()
        .unwrap();
    assert!(
        trained_robust >= plain_robust + 0.05,
        "robust accuracy {trained_robust} (adversarial training) vs {plain_robust} (plain)"
    );
    // The robust accuracy of validation rows, tracked each epoch.
    let history = std::fs::read_to_string(robust.join("history.csv")).unwrap();
    let mut lines = history.lines();
    let header = lines.next().unwrap();
    assert!(header.ends_with(",valid_robust_acc"), "{header}");
    let tracked: Vec<f64> = lines
        .map(|l| l.rsplit(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(tracked.len(), 10);
    assert!(
        tracked.iter().all(|r| (0.0..=1.0).contains(r)),
        "{tracked:?}"
    );
    // Robust accuracy grows with adversarial training: the last epoch beats the first.
    assert!(tracked[9] > tracked[0], "{tracked:?}");
    // The config records the attack, so the run can be repeated.
    let config = std::fs::read_to_string(robust.join("config.toml")).unwrap();
    assert!(config.contains("[adversarial]"), "{config}");

    // Bad specs, and data it cannot apply to: one line, exit code 1.
    let out = dir.path().join("bad");
    let o = out.to_str().unwrap();
    let base = ["train", "--model", "cnn", "--dataset", "digits", "--out", o];
    assert_clean_failure(
        &[&base[..], &["--adversarial", "pgd"]].concat(),
        "eps=E is required",
    );
    assert_clean_failure(
        &[&base[..], &["--adversarial", "pgd:eps=-0.1"]].concat(),
        "epsilon",
    );
    assert_clean_failure(
        &[&base[..], &["--adversarial", "fgsm:eps=0.1,colour=red"]].concat(),
        "unknown setting",
    );
    assert_clean_failure(
        &[
            "train",
            "--model",
            "mlp",
            "--dataset",
            "airline",
            "--out",
            o,
            "--adversarial",
            "fgsm:eps=0.1",
        ],
        "classifiers on samples",
    );
    assert_clean_failure(
        &[
            "train",
            "--model",
            "vae",
            "--dataset",
            "digits",
            "--out",
            o,
            "--adversarial",
            "fgsm:eps=0.1",
        ],
        "classifiers on samples",
    );
}

/// Digit rows as the built-in loader gives them (pixels in [0, 1]), no label column.
fn digit_rows(path: &Path, n: usize) {
    let data = strata::data::digits();
    let mut text = String::new();
    for row in data.features.chunks(64).take(n) {
        let cells: Vec<String> = row.iter().map(f32::to_string).collect();
        text.push_str(&cells.join(","));
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

/// `strata explain --run RUN --input INPUT --out OUT` with `extra` flags.
fn explain(run: &Path, input: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let args = [
        &[
            "explain",
            "--run",
            run.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ][..],
        extra,
    ]
    .concat();
    strata(&args)
}

/// The percentage in "... within X%" of `explain`'s summary.
fn completeness(summary: &str) -> f64 {
    let tail = summary
        .split("within ")
        .nth(1)
        .expect("a completeness check");
    tail.trim_end().trim_end_matches('%').parse().unwrap()
}

#[test]
fn explanations_of_a_digits_cnn_and_an_adult_mlp() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("cnn");
    train_cnn(&run);
    let r = run.to_str().unwrap();
    let input = dir.path().join("digits.csv");
    digit_rows(&input, 3);
    let i = input.to_str().unwrap();
    for method in ["saliency", "smoothgrad", "ig"] {
        let png = dir.path().join(format!("{method}.png"));
        let o = explain(&run, &input, &png, &["--row", "2", "--method", method]);
        assert!(o.status.success(), "{method}: {}", stderr(&o));
        assert!(is_png(&png), "{method}");
        let text = stdout(&o);
        assert!(text.contains("row 2"), "{text}");
        if method == "ig" {
            // Integrated gradients' attributions sum to f(x) - f(baseline) within 1%.
            let pct = completeness(text.lines().next().unwrap());
            assert!(pct < 1.0, "completeness {pct}%");
        }
    }
    // Grad-CAM at the last convolutional stage (the default) and at the first.
    for layer in [None, Some("features.0")] {
        let png = dir.path().join("gradcam.png");
        let mut args = vec!["--method", "gradcam"];
        if let Some(l) = layer {
            args.extend(["--layer", l]);
        }
        let o = explain(&run, &input, &png, &args);
        assert!(o.status.success(), "{layer:?}: {}", stderr(&o));
        assert!(is_png(&png));
        assert!(stdout(&o).contains("Grad-CAM"), "{}", stdout(&o));
        std::fs::remove_file(&png).unwrap();
    }

    // A ViT's attention rollout, the same for every class; refused for the CNN.
    let vit = dir.path().join("vit");
    train("vit", "digits", "2", &vit, &[]);
    let png = dir.path().join("rollout.png");
    let o = explain(&vit, &input, &png, &["--method", "rollout"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(is_png(&png));
    assert!(
        stdout(&o).contains("attention rollout, the same for every class"),
        "{}",
        stdout(&o)
    );
    let o = png.to_str().unwrap();
    assert_clean_failure(
        &[
            "explain", "--run", r, "--input", i, "--method", "rollout", "--out", o,
        ],
        "explains a ViT",
    );

    // A class by name.
    let png = dir.path().join("class.png");
    let o = explain(&run, &input, &png, &["--class", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("of class 3"), "{}", stdout(&o));

    // Adult: each column's attribution, one-hot categories summed into their column.
    let adult = dir.path().join("adult");
    train("mlp", "adult", "2", &adult, &[]);
    let rows = dir.path().join("adult.csv");
    std::fs::write(
        &rows,
        "age,workclass,fnlwgt,education,education-num,marital-status,occupation,relationship,race,sex,capital-gain,capital-loss,hours-per-week,native-country\n\
         38,Private,89814,HS-grad,9,Married-civ-spouse,Farming-fishing,Husband,White,Male,0,0,50,United-States\n",
    )
    .unwrap();
    let png = dir.path().join("adult.png");
    let o = explain(&adult, &rows, &png, &["--method", "ig"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(completeness(stdout(&o).lines().next().unwrap()) < 1.0);
    let csv = std::fs::read_to_string(dir.path().join("adult_attributions.csv")).unwrap();
    assert!(
        std::fs::read_to_string(&rows).unwrap().starts_with("age,"),
        "input intact"
    );
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "column,attribution");
    assert_eq!(lines.len(), 15, "{csv}");
    assert!(lines.iter().any(|l| l.starts_with("marital-status,")));
    assert!(is_png(&png));

    // Bad input: one line, exit code 1.
    let out = dir.path().join("x.png");
    let o = out.to_str().unwrap();
    assert_clean_failure(
        &[
            "explain", "--run", r, "--input", i, "--method", "lime", "--out", o,
        ],
        "saliency, smoothgrad, ig, gradcam or rollout",
    );
    assert_clean_failure(
        &[
            "explain", "--run", r, "--input", i, "--row", "3", "--out", o,
        ],
        "--row 3",
    );
    assert_clean_failure(
        &[
            "explain", "--run", r, "--input", i, "--class", "ten", "--out", o,
        ],
        "neither an index",
    );
    assert_clean_failure(
        &[
            "explain", "--run", r, "--input", i, "--class", "10", "--out", o,
        ],
        "--class 10",
    );
    assert_clean_failure(
        &["explain", "--run", r, "--input", i, "--out", i],
        "overwrite",
    );
    // A layer the network lacks: the error lists those it has.
    assert_clean_failure(
        &[
            "explain", "--run", r, "--input", i, "--method", "gradcam", "--layer", "conv9",
            "--out", o,
        ],
        "features.0, features.1",
    );
    assert_clean_failure(
        &[
            "explain",
            "--run",
            r,
            "--input",
            i,
            "--layer",
            "features.0",
            "--out",
            o,
        ],
        "--method gradcam",
    );
    assert_clean_failure(
        &[
            "explain",
            "--run",
            adult.to_str().unwrap(),
            "--input",
            rows.to_str().unwrap(),
            "--method",
            "gradcam",
            "--out",
            o,
        ],
        "explains images",
    );
    let missing = dir.path().join("none.csv");
    assert_clean_failure(
        &[
            "explain",
            "--run",
            r,
            "--input",
            missing.to_str().unwrap(),
            "--out",
            o,
        ],
        "none.csv",
    );
}
