//! `strata train` of a GAN with the GAN flags, `strata generate` from it, and bad input: one
//! line, exit code 1.

mod common;
use common::{assert_clean_failure, json, stderr, stdout, strata};

#[test]
fn train_a_gan_and_sample_it() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("ring");
    let run_s = run.to_str().unwrap();
    let o = strata(&[
        "train",
        "--model",
        "gan",
        "--dataset",
        "ring8",
        "--gan-loss",
        "hinge",
        "--n-critic",
        "2",
        "--epochs",
        "3",
        "--quiet",
        "--out",
        run_s,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("modes"), "{}", stdout(&o));
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(
        config.contains("[gan]") && config.contains("loss = \"hinge\""),
        "{config}"
    );
    let m = json(&run.join("metrics.json"));
    assert_eq!(m["game"]["n_critic"], 2);
    assert!(m["test"]["fid"].as_f64().unwrap().is_finite());

    let points = dir.path().join("points.png");
    let o = strata(&[
        "generate",
        "--run",
        run_s,
        "--samples",
        "200",
        "--out",
        points.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(points.exists());

    assert_clean_failure(
        &["generate", "--run", run_s, "--samples", "5", "--class", "1"],
        "conditional GAN",
    );
    assert_clean_failure(
        &["predict", "--run", run_s, "--input", "x.csv"],
        "makes no predictions",
    );
}

#[test]
fn bad_gan_flags_fail_cleanly() {
    assert_clean_failure(
        &[
            "train",
            "--model",
            "gan",
            "--gan-loss",
            "minimax",
            "--quiet",
        ],
        "--gan-loss",
    );
    assert_clean_failure(
        &["train", "--model", "wgan", "--clip", "0", "--quiet"],
        "clip must be a positive number",
    );
    assert_clean_failure(
        &["train", "--model", "dcgan", "--dataset", "iris", "--quiet"],
        "needs images",
    );
}
