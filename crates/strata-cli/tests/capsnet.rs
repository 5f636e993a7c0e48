//! `strata train --model capsnet` with its flags, `strata predict` of capsule lengths, and bad
//! settings: one line, exit code 1.

mod common;
use common::{assert_clean_failure, json, stderr, strata};

#[test]
fn train_a_capsnet_with_its_flags_and_predict_lengths() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("caps");
    let run_s = run.to_str().unwrap();
    let o = strata(&[
        "train",
        "--model",
        "capsnet",
        "--capsnet-size",
        "small",
        "--routing",
        "2",
        "--reconstruction",
        "0.001",
        "--epochs",
        "2",
        "--out",
        run_s,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The memory estimate comes before training.
    let err = stderr(&o);
    let estimate = err.find("routing's tensors take about").expect(&err);
    assert!(estimate < err.find("epoch   1/2").expect(&err), "{err}");
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(
        config.contains("[capsnet]") && config.contains("routing = 2"),
        "{config}"
    );
    assert!(json(&run.join("metrics.json"))["test"]["accuracy"].is_number());

    let rows = dir.path().join("rows.csv");
    std::fs::write(&rows, vec!["0.5"; 64].join(",")).unwrap();
    let out = dir.path().join("p.csv");
    let o = strata(&[
        "predict",
        "--run",
        run_s,
        "--input",
        rows.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let csv = std::fs::read_to_string(&out).unwrap();
    assert!(csv.starts_with("row,class,length_0,"), "{csv}");

    // The viewpoint test's command: the test images rotated and shifted.
    let o = strata(&[
        "evaluate",
        "--run",
        run_s,
        "--perturb",
        "affine:30:0.1",
        "--seed",
        "4",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ev = json(&run.join("evaluation.json"));
    assert_eq!(ev["seed"], 4);
    assert!(ev["dataset"].as_str().unwrap().contains("perturbed"));
    assert_clean_failure(
        &["evaluate", "--run", run_s, "--perturb", "mixup:0.2"],
        "mixup mixes labels",
    );
    assert_clean_failure(
        &["evaluate", "--run", run_s, "--perturb", "spin:3"],
        "unknown augmentation",
    );
}

#[test]
fn bad_capsnet_settings_end_with_one_line() {
    let train = |extra: &[&'static str]| {
        let mut a = vec!["train", "--model", "capsnet", "--epochs", "1", "--quiet"];
        a.extend_from_slice(extra);
        a
    };
    assert_clean_failure(&train(&["--routing", "0"]), "at least 1 iteration");
    assert_clean_failure(
        &train(&["--capsnet-size", "paper"]),
        "too small for CapsNet's 9x9 convolutions",
    );
    assert_clean_failure(&train(&["--capsnet-size", "huge"]), "--capsnet-size");
    assert_clean_failure(&train(&["--reconstruction=-1"]), "--reconstruction");
    assert_clean_failure(&train(&["--dataset", "iris"]), "needs image data");
}
