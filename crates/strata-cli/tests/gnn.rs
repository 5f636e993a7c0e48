//! `strata train` on graphs with the graph flags, `strata predict` and `strata evaluate` on a
//! graph run, and their bad input: one line, exit code 1.

mod common;
use common::{assert_clean_failure, json, stderr, stdout, strata};

#[test]
fn train_predict_and_evaluate_a_graph_run() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("sage");
    let run_s = run.to_str().unwrap();
    let o = strata(&[
        "train",
        "--model",
        "sage",
        "--dataset",
        "karate",
        "--aggregator",
        "max",
        "--hidden",
        "8",
        "--layers",
        "2",
        "--epochs",
        "50",
        "--quiet",
        "--out",
        run_s,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("test accuracy"), "{}", stdout(&o));
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(config.contains("aggregator = \"max\""), "{config}");
    let m = json(&run.join("metrics.json"));
    assert_eq!(m["test"]["n_samples"], 32);

    let o = strata(&[
        "predict", "--run", run_s, "--input", "karate", "--output", "-",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("node,class,p_Mr. Hi,p_Officer\n"), "{out}");
    assert_eq!(out.lines().count(), 35);

    let o = strata(&["evaluate", "--run", run_s]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("karate (test nodes): accuracy"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn bad_graph_flags_and_inputs_fail_cleanly() {
    assert_clean_failure(
        &[
            "train",
            "--model",
            "sage",
            "--dataset",
            "karate",
            "--aggregator",
            "sum",
        ],
        "--aggregator: unknown variant `sum`, expected `mean` or `max`",
    );
    assert_clean_failure(
        &["train", "--model", "gcn", "--dataset", "digits"],
        "learns on graphs",
    );
    assert_clean_failure(
        &["train", "--model", "cnn", "--dataset", "mutag"],
        "is a graph",
    );
    assert_clean_failure(
        &["train", "--model", "gat", "--dataset", "tu:/no/such/dir"],
        "/no/such/dir",
    );
}
