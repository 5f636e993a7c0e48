//! Smaller models: knowledge distillation (`--distill-from`) on digits, its settings and bad
//! teachers as one line with exit code 1.

mod common;
use common::{assert_clean_failure, json, stderr, strata};

/// Trains `strata train ARGS --quiet --out OUT` and returns `metrics.json`.
fn train(out: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let o = strata(&[args, &["--quiet", "--out", out.to_str().unwrap()]].concat());
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    json(&out.join("metrics.json"))
}

#[test]
fn a_student_learns_from_its_teacher_alone() {
    let dir = tempfile::tempdir().unwrap();
    let teacher = dir.path().join("teacher");
    let t = teacher.to_str().unwrap();
    train(
        &teacher,
        &[
            "train",
            "--model",
            "cnn",
            "--dataset",
            "digits",
            "--epochs",
            "10",
        ],
    );
    // The student (an MLP on standardised rows) learns from the teacher's outputs only
    // (weight 1): the teacher (a CNN on unstandardised pixels) must see each batch as its own
    // run would, or its targets are noise. Bar set before the first run: 0.85 (a plain MLP
    // of this size reaches 0.95 on the test split).
    let student = dir.path().join("student");
    let m = train(
        &student,
        &[
            "train",
            "--model",
            "mlp",
            "--dataset",
            "digits",
            "--hidden",
            "64",
            "--distill-from",
            t,
            "--distill-weight",
            "1",
            "--temperature",
            "1",
        ],
    );
    let accuracy = m["test"]["accuracy"].as_f64().unwrap();
    assert!(accuracy > 0.85, "student's test accuracy {accuracy}");
    let config = std::fs::read_to_string(student.join("config.toml")).unwrap();
    assert!(config.contains("[distill]"), "{config}");
    assert!(config.contains("temperature = 1.0"), "{config}");

    // Bad teachers and settings: one line, exit code 1, nothing written.
    let iris = dir.path().join("iris");
    train(
        &iris,
        &[
            "train",
            "--model",
            "mlp",
            "--dataset",
            "iris",
            "--epochs",
            "2",
        ],
    );
    let out = dir.path().join("bad");
    let o = out.to_str().unwrap();
    let base = ["train", "--model", "mlp", "--dataset", "digits", "--out", o];
    assert_clean_failure(
        &[&base[..], &["--distill-from", iris.to_str().unwrap()]].concat(),
        "the teacher predicts 3 classes, digits has 10",
    );
    assert_clean_failure(
        &[&base[..], &["--distill-from", dir.path().to_str().unwrap()]].concat(),
        "not a run directory",
    );
    assert_clean_failure(
        &[&base[..], &["--distill-from", t, "--temperature", "0"]].concat(),
        "--temperature must be a finite number > 0",
    );
    assert_clean_failure(
        &[&base[..], &["--distill-from", t, "--distill-weight", "1.5"]].concat(),
        "--distill-weight must be in [0, 1]",
    );
    assert_clean_failure(
        &[&base[..], &["--temperature", "4"]].concat(),
        "give --distill-from RUN",
    );
    assert_clean_failure(
        &[
            &base[..],
            &["--distill-from", t, "--adversarial", "fgsm:eps=0.1"],
        ]
        .concat(),
        "choose one",
    );
    assert!(!out.exists(), "nothing written for a refused run");
}
