//! `strata train` with the autoencoder flags, `strata encode`, `strata predict` and
//! `strata generate` on autoencoder runs, and their bad input: one line, exit code 1.

mod common;
use common::{assert_clean_failure, json, stderr, stdout, strata};

#[test]
fn train_encode_predict_and_generate() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("vae");
    let run_s = run.to_str().unwrap();
    let o = strata(&[
        "train",
        "--model",
        "vae",
        "--dataset",
        "digits",
        "--epochs",
        "3",
        "--beta",
        "0.5",
        "--kl-warmup",
        "2",
        "--noise",
        "mask:0.2",
        "--quiet",
        "--out",
        run_s,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("-ELBO"), "{}", stdout(&o));
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    for line in ["beta = 0.5", "kl_warmup_epochs = 2", "noise = \"mask:0.2\""] {
        assert!(config.contains(line), "{line} in\n{config}");
    }
    let m = json(&run.join("metrics.json"));
    assert!(
        m["test"]["denoising"]["psnr_noisy_db"]
            .as_f64()
            .unwrap()
            .is_finite()
    );

    let rows = dir.path().join("rows.csv");
    std::fs::write(&rows, "0,0.5,1,0.25,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0\n").unwrap();
    let o = strata(&[
        "encode",
        "--run",
        run_s,
        "--input",
        rows.to_str().unwrap(),
        "--output",
        "-",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("row,z0,z1,"), "{out}");
    assert_eq!(out.lines().count(), 2);
    let o = strata(&[
        "predict",
        "--run",
        run_s,
        "--input",
        rows.to_str().unwrap(),
        "--output",
        "-",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("row,anomaly_score\n0,"),
        "{}",
        stdout(&o)
    );
    let png = dir.path().join("s.png");
    let o = strata(&[
        "generate",
        "--run",
        run_s,
        "--samples",
        "9",
        "--out",
        png.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("9 samples written"), "{}", stdout(&o));
    assert!(png.exists());

    assert_clean_failure(
        &["generate", "--run", run_s, "--class", "3"],
        "--class needs a conditional model",
    );
    assert_clean_failure(
        &[
            "encode",
            "--run",
            run_s,
            "--input",
            run.join("nothing.csv").to_str().unwrap(),
        ],
        "nothing.csv",
    );
}

#[test]
fn bad_autoencoder_flags_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x");
    let out = out.to_str().unwrap();
    let base = [
        "train",
        "--dataset",
        "digits",
        "--epochs",
        "1",
        "--quiet",
        "--out",
        out,
    ];
    for (extra, expect) in [
        (
            &["--model", "ae", "--normal-class", "ten"][..],
            "is not a class of digits",
        ),
        (
            &["--model", "ae", "--hidden", "32,0"],
            "d_latent must be >= 1",
        ),
        (
            &["--model", "conv-ae", "--resize", "6"],
            "cannot halve a 6x6 image",
        ),
        (
            &["--model", "dae", "--noise", "blur"],
            "unknown noise `blur`",
        ),
        (
            &["--model", "dae", "--noise", "gaussian:-1"],
            "out of range",
        ),
        (&["--model", "vae", "--beta", "nan"], "beta must be"),
        (
            &["--model", "sparse-ae", "--sparsity=-0.5"],
            "sparsity must be",
        ),
    ] {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        assert_clean_failure(&args, expect);
    }
}
