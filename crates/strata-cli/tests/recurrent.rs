//! The recurrent families through the `strata` binary: forecasting a series (metrics in the
//! series' units beside the seasonal-naive baseline, reloaded by `evaluate` and `predict`), a
//! character language model (`generate` from its run directory, the time budget), sequence
//! classification, and clean one-line errors for bad series, windows, prompts and run
//! directories.

mod common;
use common::{assert_clean_failure, json, stderr, stdout, strata};

use std::path::Path;

#[test]
fn a_forecasting_run_reports_series_units_and_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("air");
    let o = strata(&[
        "train",
        "--model",
        "gru",
        "--dataset",
        "airline",
        "--epochs",
        "40",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = json(&out.join("metrics.json"));
    let test = &m["test"];
    for key in ["rmse", "mae", "r2", "baseline_rmse"] {
        assert!(test[key].as_f64().is_some_and(f64::is_finite), "{key}: {m}");
    }
    assert_eq!(test["n_samples"], 24);
    assert_eq!(test["period"][0], "1959-01");
    // The seasonal-naive RMSE of airline's last 24 months, computed by hand from the data:
    // sqrt(mean((y[t] - y[t-12])^2)) over 1959-01..1960-12.
    let y = strata::data::airline().values;
    let se: f64 = (120..144)
        .map(|t| ((y[t] - y[t - 12]) as f64).powi(2))
        .sum();
    let want = (se / 24.0).sqrt();
    assert!((test["baseline_rmse"].as_f64().unwrap() - want).abs() < 1e-3);
    let pre = json(&out.join("preprocess.json"));
    assert_eq!(pre["series"]["window"], 24);
    assert_eq!(pre["series"]["split"]["valid_end"], 120);

    // evaluate reproduces the test RMSE.
    let o = strata(&["evaluate", "--run", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let e = json(&out.join("evaluation.json"));
    let (a, b) = (
        e["test"]["rmse"].as_f64().unwrap(),
        test["rmse"].as_f64().unwrap(),
    );
    assert!((a - b).abs() < 1e-6 * b.max(1.0), "{a} vs {b}");

    // predict takes raw windows (oldest first) and answers in passengers.
    let csv = dir.path().join("window.csv");
    let row: Vec<String> = y[96..120].iter().map(|v| v.to_string()).collect();
    std::fs::write(&csv, format!("{}\n", row.join(","))).unwrap();
    let o = strata(&[
        "predict",
        "--run",
        out.to_str().unwrap(),
        "--input",
        csv.to_str().unwrap(),
        "--output",
        "-",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let value: f64 = text
        .lines()
        .nth(1)
        .and_then(|l| l.split(',').nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no prediction in {text}"));
    // January 1959 had 360 thousand passengers; a trained forecaster is in that region.
    assert!((250.0..500.0).contains(&value), "{value}");
}

fn small_text(dir: &Path) -> String {
    let text: String = strata::data::shakespeare().chars().take(60_000).collect();
    let path = dir.join("play.txt");
    std::fs::write(&path, text).unwrap();
    format!("text:{}", path.display())
}

#[test]
fn a_language_model_generates_from_its_run_directory() {
    let dir = tempfile::tempdir().unwrap();
    let text = small_text(dir.path());
    let out = dir.path().join("lm");
    let o = strata(&[
        "train",
        "--model",
        "lstm",
        "--dataset",
        &text,
        "--hidden",
        "32",
        "--layers",
        "1",
        "--embed",
        "16",
        "--seq-len",
        "20",
        "--steps-per-epoch",
        "10",
        "--epochs",
        "2",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = json(&out.join("metrics.json"));
    let (nats, bpc) = (
        m["test"]["loss_nats"].as_f64().unwrap(),
        m["test"]["bits_per_char"].as_f64().unwrap(),
    );
    assert!((bpc - nats / std::f64::consts::LN_2).abs() < 1e-9);
    assert!(nats.is_finite() && nats > 0.0);
    let vocab = json(&out.join("preprocess.json"))["vocab"]["chars"].clone();
    assert!(vocab.as_array().is_some_and(|v| v.len() > 40));

    let generate = |seed: &str| {
        strata(&[
            "generate",
            "--run",
            out.to_str().unwrap(),
            "--prompt",
            "KING",
            "--length",
            "40",
            "--top-k",
            "5",
            "--seed",
            seed,
        ])
    };
    let a = generate("3");
    assert!(a.status.success(), "{}", stderr(&a));
    let sample = stdout(&a);
    assert!(sample.starts_with("KING"));
    // `generate` prints the text and one newline; the text itself may end in newlines.
    let generated = sample.strip_suffix('\n').expect("one line ending");
    assert_eq!(generated.chars().count(), 44);
    assert_eq!(sample, stdout(&generate("3")), "same seed, same text");

    // A prompt outside the vocabulary, and sampling settings out of range.
    let run = out.to_str().unwrap();
    assert_clean_failure(&["generate", "--run", run, "--prompt", "KING€"], "'€'");
    assert_clean_failure(
        &["generate", "--run", run, "--temperature=-1"],
        "temperature",
    );
    // evaluate reproduces the test loss.
    let o = strata(&["evaluate", "--run", run]);
    assert!(o.status.success(), "{}", stderr(&o));
    let e = json(&out.join("evaluation.json"));
    assert!((e["test"]["loss_nats"].as_f64().unwrap() - nats).abs() < 1e-6);
    assert_clean_failure(
        &["predict", "--run", run, "--input", "x.csv"],
        "strata generate",
    );
}

#[test]
fn the_time_budget_stops_training_cleanly_and_still_evaluates() {
    let dir = tempfile::tempdir().unwrap();
    let text = small_text(dir.path());
    let out = dir.path().join("lm");
    let o = strata(&[
        "train",
        "--model",
        "gru",
        "--dataset",
        &text,
        "--hidden",
        "16",
        "--layers",
        "1",
        "--seq-len",
        "10",
        "--steps-per-epoch",
        "100000",
        "--max-seconds",
        "2",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = json(&out.join("metrics.json"));
    assert_eq!(m["stop_reason"], "time budget");
    assert_eq!(m["epochs_run"], 1);
    let secs = m["train_seconds"].as_f64().unwrap();
    // Stopped within the first of 100000 steps' worth of time, not at the end of the epoch.
    assert!(secs < 60.0, "{secs}");
    assert!(m["test"]["loss_nats"].as_f64().is_some());
    assert!(out.join("model.safetensors").exists());
}

#[test]
fn recurrent_classifier_reads_images_as_rows() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rows");
    let o = strata(&[
        "train",
        "--model",
        "gru",
        "--dataset",
        "digits",
        "--bidirectional",
        "--hidden",
        "64",
        "--epochs",
        "20",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = json(&out.join("metrics.json"));
    let acc = m["test"]["accuracy"].as_f64().unwrap();
    // 8 steps of 8 pixels; a bidirectional GRU reads digits well above chance (0.1).
    assert!(acc >= 0.9, "accuracy {acc}");
    let cfg = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(cfg.contains("bidirectional = true"), "{cfg}");
    assert!(
        cfg.contains("clip"),
        "recurrent runs clip gradients by default:\n{cfg}"
    );
}

#[test]
fn bad_recurrent_input_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        format!("series:{}", p.display())
    };
    let out = dir.path().join("o");
    let out = out.to_str().unwrap();
    let empty = file("empty.csv", "month,value\n");
    let one = file("one.csv", "month,value\n2000-01,5\n");
    let gap = file("gap.csv", "month,value\n1,1\n2,\n3,2\n");
    let q = "--quiet";
    assert_clean_failure(
        &[
            "train",
            "--model",
            "lstm",
            "--dataset",
            &empty,
            "--out",
            out,
            q,
        ],
        "at least two",
    );
    assert_clean_failure(
        &[
            "train",
            "--model",
            "lstm",
            "--dataset",
            &one,
            "--out",
            out,
            q,
        ],
        "at least two",
    );
    assert_clean_failure(
        &[
            "train",
            "--model",
            "lstm",
            "--dataset",
            &gap,
            "--out",
            out,
            q,
        ],
        "missing value",
    );
    assert_clean_failure(
        &[
            "train",
            "--model",
            "lstm",
            "--dataset",
            "airline",
            "--seq-len",
            "500",
            "--out",
            out,
            q,
        ],
        "window of 500",
    );
    assert_clean_failure(
        &[
            "train",
            "--model",
            "cnn",
            "--dataset",
            "sunspots",
            "--out",
            out,
            q,
        ],
        "needs images",
    );
    assert_clean_failure(
        &["train", "--model", "lstm", "--layers", "0", "--out", out, q],
        "--layers",
    );
    // `generate` on a run of another model.
    let iris = dir.path().join("iris");
    let o = strata(&[
        "train",
        "--model",
        "mlp",
        "--dataset",
        "iris",
        "--epochs",
        "2",
        "--out",
        iris.to_str().unwrap(),
        q,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_clean_failure(
        &["generate", "--run", iris.to_str().unwrap()],
        "not a character language model",
    );
}

#[test]
fn a_transformer_lm_trains_generates_and_checks_its_heads() {
    let dir = tempfile::tempdir().unwrap();
    let text = small_text(dir.path());
    let out = dir.path().join("tlm");
    let run = out.to_str().unwrap();
    let o = strata(&[
        "train",
        "--model",
        "transformer-lm",
        "--dataset",
        &text,
        "--hidden",
        "32",
        "--heads",
        "2",
        "--layers",
        "1",
        "--seq-len",
        "32",
        "--steps-per-epoch",
        "10",
        "--epochs",
        "2",
        "--out",
        run,
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = json(&out.join("metrics.json"));
    assert!(m["test"]["loss_nats"].as_f64().is_some_and(f64::is_finite));
    let g = strata(&[
        "generate", "--run", run, "--prompt", "KING", "--length", "60", "--seed", "2",
    ]);
    assert!(g.status.success(), "{}", stderr(&g));
    // 64 characters: longer than the 32-step context, so the window slides.
    let printed = stdout(&g);
    let generated = printed.strip_suffix('\n').expect("one line ending");
    assert_eq!(generated.chars().count(), 64, "{generated:?}");
    let e = strata(&["evaluate", "--run", run]);
    assert!(e.status.success(), "{}", stderr(&e));
    let q = "--quiet";
    let bad = dir.path().join("bad");
    assert_clean_failure(
        &[
            "train",
            "--model",
            "transformer-lm",
            "--dataset",
            &text,
            "--hidden",
            "30",
            "--heads",
            "4",
            "--out",
            bad.to_str().unwrap(),
            q,
        ],
        "4 heads do not divide the model width 30",
    );
    assert_clean_failure(
        &[
            "train",
            "--model",
            "transformer-lm",
            "--dataset",
            "airline",
            "--out",
            bad.to_str().unwrap(),
            q,
        ],
        "train it on text",
    );
}
