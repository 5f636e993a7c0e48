//! Project automation.
//!
//! - `cargo xtask ci`: format check, clippy with warnings denied, every test (release profile,
//!   so burn is built once for the tests and the main job).
//! - `cargo xtask bench [--steps N]`: Strata's training-step benchmarks on each CPU backend
//!   beside PyTorch's, in one run; prints ms/step and the Strata/PyTorch ratio.
//! - `cargo xtask accuracy [NAME...]`: the long accuracy runs; regenerates docs/results.md.
//! - `cargo xtask fixtures`: regenerates the PyTorch fixtures (needs PyTorch).
//!
//! PyTorch is found as `$STRATA_PYTHON`, else `python3`; when it cannot import torch the
//! PyTorch parts are skipped with a message.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

/// The workspace root: from the running `cargo run`'s `CARGO_MANIFEST_DIR` first, since a
/// target directory shared by several clones can hold an xtask built in another one.
fn root() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    Path::new(&manifest)
        .parent()
        .expect("xtask is in the workspace")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

fn run(mut c: Command) -> Result<(), String> {
    eprintln!("+ {c:?}");
    let status = c.status().map_err(|e| format!("cannot start {c:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{c:?} failed: {status}"))
    }
}

fn python() -> Option<String> {
    let py = std::env::var("STRATA_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&py)
        .args(["-c", "import torch"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    ok.then_some(py)
}

fn ci() -> Result<(), String> {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--check"]);
    run(fmt)?;
    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--release",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    run(clippy)?;
    let mut test = cargo();
    test.args(["test", "--release", "--workspace"]);
    run(test)
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn bench(args: &[String]) -> Result<(), String> {
    let steps = args
        .iter()
        .position(|a| a == "--steps")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| "30".into());
    let backends = args
        .iter()
        .position(|a| a == "--backends")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| "flex,ndarray".into());
    let mut b = cargo();
    b.args([
        "run",
        "--quiet",
        "--release",
        "-p",
        "strata-benches",
        "--bin",
        "strata-bench",
        "--",
    ])
    .args(["--steps", &steps, "--backends", &backends]);
    eprintln!("+ {b:?}");
    let out = b.output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "strata-bench failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let ours = json_lines(&String::from_utf8_lossy(&out.stdout));
    let mut torch: BTreeMap<String, f64> = BTreeMap::new();
    match python() {
        Some(py) => {
            let out = Command::new(&py)
                .current_dir(root())
                .args([
                    "benches/pytorch/train_step.py",
                    "--steps",
                    &steps,
                    "--threads",
                    "2",
                ])
                .output()
                .map_err(|e| e.to_string())?;
            for v in json_lines(&String::from_utf8_lossy(&out.stdout)) {
                if let (Some(m), Some(ms)) = (v["model"].as_str(), v["ms_per_step"].as_f64()) {
                    torch.insert(m.to_string(), ms);
                }
            }
        }
        None => eprintln!("PyTorch not installed (set STRATA_PYTHON): skipping the PyTorch column"),
    }
    println!("| model | backend | Strata ms/step | PyTorch ms/step | Strata / PyTorch |");
    println!("|---|---|---|---|---|");
    for v in &ours {
        let model = v["model"].as_str().unwrap_or("?");
        let ms = v["ms_per_step"].as_f64().unwrap_or(f64::NAN);
        let (t, ratio) = match torch.get(model) {
            Some(t) => (format!("{t:.2}"), format!("{:.2}", ms / t)),
            None => ("-".into(), "-".into()),
        };
        println!(
            "| {model} | {} | {ms:.2} | {t} | {ratio} |",
            v["backend"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}

/// What a run must reach.
#[derive(Clone, Copy)]
enum Bar {
    /// The metric is at least this.
    AtLeast(f64),
    /// The metric is at most this.
    AtMost(f64),
    /// The metric is below another metric of the same run (a baseline).
    Below(&'static str),
}

/// The accuracy runs: name, `strata train` flags, test metric and bar.
const RUNS: &[(&str, &[&str], &str, Bar)] = &[
    ("cnn-digits", &[], "accuracy", Bar::AtLeast(0.98)),
    (
        "mlp-digits",
        &["--model", "mlp"],
        "accuracy",
        Bar::AtLeast(0.97),
    ),
    (
        "mlp-iris",
        &[
            "--model",
            "mlp",
            "--dataset",
            "iris",
            "--epochs",
            "100",
            "--lr",
            "0.01",
            "--hidden",
            "32",
        ],
        "accuracy",
        Bar::AtLeast(0.93),
    ),
    (
        "cnn-fashion-mnist",
        &[
            "--dataset",
            "fashion-mnist",
            "--epochs",
            "12",
            "--batch-size",
            "64",
            "--patience",
            "4",
        ],
        "accuracy",
        Bar::AtLeast(0.90),
    ),
    (
        "lstm-airline",
        &["--model", "lstm", "--dataset", "airline"],
        "rmse",
        Bar::Below("baseline_rmse"),
    ),
    (
        "lstm-sunspots",
        &["--model", "lstm", "--dataset", "sunspots"],
        "rmse",
        Bar::Below("baseline_rmse"),
    ),
    (
        "lstm-co2",
        &["--model", "lstm", "--dataset", "co2"],
        "rmse",
        Bar::Below("baseline_rmse"),
    ),
    (
        "gru-airline",
        &["--model", "gru", "--dataset", "airline"],
        "rmse",
        Bar::Below("baseline_rmse"),
    ),
    (
        "lstm-fashion-mnist-rows",
        &[
            "--model",
            "lstm",
            "--dataset",
            "fashion-mnist-rows",
            "--epochs",
            "6",
        ],
        "accuracy",
        Bar::AtLeast(0.85),
    ),
    (
        "lstm-shakespeare",
        &[
            "--model",
            "lstm",
            "--dataset",
            "shakespeare",
            "--max-seconds",
            "900",
        ],
        "loss_nats",
        Bar::AtMost(2.0),
    ),
    (
        "transformer-lm-shakespeare",
        &[
            "--model",
            "transformer-lm",
            "--dataset",
            "shakespeare",
            "--max-seconds",
            "900",
        ],
        "loss_nats",
        Bar::AtMost(2.0),
    ),
    (
        "vit-digits",
        &["--model", "vit", "--dataset", "digits"],
        "accuracy",
        Bar::AtLeast(0.97),
    ),
    (
        "vit-fashion-mnist",
        &["--model", "vit", "--dataset", "fashion-mnist"],
        "accuracy",
        Bar::AtLeast(0.87),
    ),
    (
        "tab-transformer-adult",
        &["--model", "tab-transformer", "--dataset", "adult"],
        "accuracy",
        Bar::AtLeast(0.84),
    ),
    (
        "mlp-adult",
        &[
            "--model",
            "mlp",
            "--dataset",
            "adult",
            "--epochs",
            "10",
            "--batch-size",
            "128",
        ],
        "accuracy",
        Bar::AtLeast(0.84),
    ),
    (
        "seq2seq-reverse",
        &["--model", "seq2seq", "--dataset", "reverse"],
        "exact_match",
        Bar::AtLeast(0.99),
    ),
    (
        "resnet20-fashion-mnist",
        &[
            "--model",
            "resnet20",
            "--dataset",
            "fashion-mnist",
            "--augment",
            "crop:2,flip",
            "--epochs",
            "20",
        ],
        "accuracy",
        Bar::AtLeast(0.92),
    ),
    (
        "resnet20-fashion-mnist-noaug",
        &[
            "--model",
            "resnet20",
            "--dataset",
            "fashion-mnist",
            "--epochs",
            "20",
        ],
        "accuracy",
        Bar::AtLeast(0.90),
    ),
    (
        "seq2seq-sort",
        &["--model", "seq2seq", "--dataset", "sort"],
        "exact_match",
        Bar::AtLeast(0.99),
    ),
];

const RESULTS_HEAD: &str = "# Results\n\nRegenerated by `cargo xtask accuracy` (release build, this machine: 2 cores). Each row is\none `strata train` run; the figure is the test-split metric from its `metrics.json`, the wall\ntime is the whole command (data loading, training, evaluation). `cargo xtask accuracy NAME...`\nreruns some runs and updates their rows; `--resume` continues runs from their checkpoints (runs\nlonger than a session), and their wall column shows the training time summed over sessions.\nForecasting runs compare the test RMSE (in the\nseries' units) with the seasonal-naive forecast's on the same test period; the language model's\nfigure is its test loss in nats per character; a seq2seq run's is the share of test sequences\ndecoded exactly (greedy).\n\n| run | command | test | bar | met | epochs | wall | backend |\n|---|---|---|---|---|---|---|---|\n";

fn accuracy(args: &[String]) -> Result<(), String> {
    let exe = strata_exe()?;
    // Rows of docs/results.md by run name; a partial rerun updates its rows only.
    let path = root().join("docs/results.md");
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let mut rows: BTreeMap<String, String> = old
        .lines()
        .filter_map(|l| {
            let name = l.strip_prefix("| ")?.split(" |").next()?.trim().to_string();
            RUNS.iter()
                .any(|r| r.0 == name)
                .then(|| (name, l.to_string()))
        })
        .collect();
    // `--resume`: continue runs from their checkpoints (long runs over several sessions); the
    // wall column then shows the training time summed over the sessions.
    let resume = args.iter().any(|a| a == "--resume");
    let names: Vec<&String> = args.iter().filter(|a| *a != "--resume").collect();
    for (name, flags, metric, bar) in RUNS {
        if !names.is_empty() && !names.iter().any(|a| *a == name) {
            continue;
        }
        let out = root().join("runs").join(format!("accuracy-{name}"));
        let resumed = resume && out.join("config.toml").exists();
        if !resumed {
            let _ = std::fs::remove_dir_all(&out);
        }
        let mut c = Command::new(&exe);
        c.current_dir(root())
            .arg("train")
            .args(*flags)
            .arg("--out")
            .arg(&out)
            .arg("--quiet");
        if resumed {
            c.arg("--resume");
        }
        let started = Instant::now();
        run(c)?;
        let wall = started.elapsed().as_secs_f64();
        let m = run_metrics(&out)?;
        let value = m["test"][*metric].as_f64().unwrap_or(f64::NAN);
        let (bar_text, met) = match bar {
            Bar::AtLeast(v) => (format!(">= {v}"), value >= *v),
            Bar::AtMost(v) => (format!("<= {v}"), value <= *v),
            Bar::Below(key) => {
                let b = m["test"][*key].as_f64().unwrap_or(f64::NAN);
                (format!("< {key} {b:.3}"), value < b)
            }
        };
        let command = format!("strata train {}", flags.join(" "))
            .trim()
            .to_string();
        let wall = if resumed {
            format!(
                "{:.0} s training, resumed",
                m["train_seconds"].as_f64().unwrap_or(f64::NAN)
            )
        } else {
            format!("{wall:.0} s")
        };
        rows.insert(
            name.to_string(),
            format!(
                "| {name} | `{command}` | {metric} {value:.4} | {bar_text} | {} | {} | {wall} | {} |",
                if met { "yes" } else { "**no**" },
                m["epochs_run"],
                m["backend"].as_str().unwrap_or("?")
            ),
        );
        eprintln!("{}", rows[*name]);
    }
    let ordered: Vec<&String> = RUNS.iter().filter_map(|r| rows.get(r.0)).collect();
    let md = format!(
        "{RESULTS_HEAD}{}\n",
        ordered
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    std::fs::write(&path, md).map_err(|e| e.to_string())?;
    eprintln!("docs/results.md written");
    Ok(())
}

/// The `strata` binary, built in release.
fn strata_exe() -> Result<PathBuf, String> {
    let mut b = cargo();
    b.args(["build", "--release", "-p", "strata-cli"]);
    run(b)?;
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("target"));
    Ok(target.join("release").join("strata"))
}

/// A run's metrics.json.
fn run_metrics(out: &Path) -> Result<serde_json::Value, String> {
    let text = std::fs::read_to_string(out.join("metrics.json")).map_err(|e| e.to_string())?;
    let m: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    Ok(m)
}

/// The transfer study's fine-tuning runs: the shared flags, then each variant's.
const TRANSFER_COMMON: [&str; 12] = [
    "--model",
    "resnet20",
    "--dataset",
    "digits",
    "--resize",
    "28",
    "--train-fraction",
    "0.1",
    "--epochs",
    "30",
    "--batch-size",
    "16",
];

/// `cargo xtask transfer [--seeds N]`: ResNet-20 pretrained on Fashion-MNIST, then trained on
/// 10% of the digits' training split (resized to 28x28) from scratch, with the pretrained
/// backbone frozen, frozen then thawed at a tenth of the head's learning rate, and with every
/// layer trained from the start; N seeds (default 5) each; writes docs/transfer.md.
fn transfer(args: &[String]) -> Result<(), String> {
    let seeds: u64 = match args.iter().position(|a| a == "--seeds") {
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .ok_or("--seeds N")?,
        None => 5,
    };
    let exe = strata_exe()?;
    let dir = root().join("runs").join("transfer");
    let pre = dir.join("pretrain-fashion-mnist");
    let pre_flags = [
        "--model",
        "resnet20",
        "--dataset",
        "fashion-mnist",
        "--epochs",
        "2",
    ];
    if !pre.join("model.safetensors").exists() {
        let mut c = Command::new(&exe);
        c.current_dir(root())
            .arg("train")
            .args(pre_flags)
            .arg("--out")
            .arg(&pre)
            .arg("--quiet");
        if pre.join("config.toml").exists() {
            c.arg("--resume");
        }
        run(c)?;
    }
    let pre_m = run_metrics(&pre)?;
    let pre_s = pre.to_string_lossy().to_string();
    let frozen = vec![
        "--init-from-run",
        &pre_s,
        "--new-head",
        "--freeze",
        "backbone",
    ];
    let thawed = [
        frozen.clone(),
        vec!["--unfreeze-at-epoch", "16", "--backbone-lr-factor", "0.1"],
    ]
    .concat();
    let variants = [
        ("scratch", vec![]),
        ("frozen", frozen.clone()),
        ("frozen, then unfrozen", thawed),
        ("all layers trained", frozen[..3].to_vec()),
    ];
    let mut rows = Vec::new();
    for (name, flags) in &variants {
        let mut accs = Vec::new();
        let mut seconds = 0.0;
        for seed in 1..=seeds {
            let out = dir.join(format!("{}-seed{seed}", name.replace([',', ' '], "")));
            let _ = std::fs::remove_dir_all(&out);
            let mut c = Command::new(&exe);
            c.current_dir(root())
                .arg("train")
                .args(TRANSFER_COMMON)
                .args(flags)
                .args(["--seed", &seed.to_string(), "--quiet", "--out"])
                .arg(&out);
            run(c)?;
            let m = run_metrics(&out)?;
            accs.push(m["test"]["accuracy"].as_f64().unwrap_or(f64::NAN));
            seconds += m["train_seconds"].as_f64().unwrap_or(f64::NAN);
        }
        let n = accs.len() as f64;
        let mean = accs.iter().sum::<f64>() / n;
        let sd = (accs.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0)).sqrt();
        let each: Vec<String> = accs.iter().map(|a| format!("{a:.4}")).collect();
        let command = format!(
            "strata train {} {} --seed S",
            TRANSFER_COMMON.join(" "),
            flags
                .join(" ")
                .replace(&pre_s, "runs/transfer/pretrain-fashion-mnist")
        );
        rows.push(format!(
            "| {name} | {mean:.4} ± {sd:.4} | {} | {:.0} s | `{}` |",
            each.join(", "),
            seconds / n,
            command.split_whitespace().collect::<Vec<_>>().join(" ")
        ));
        eprintln!("{}", rows.last().expect("a row"));
    }
    let md = format!(
        "# Transfer learning: Fashion-MNIST to the digits\n\n\
Regenerated by `cargo xtask transfer` (release build, flex backend, this machine: 2 cores).\n\n\
A ResNet-20 pretrained on Fashion-MNIST (`strata train {}`:\n\
test accuracy {:.4}) is fine-tuned on 10% of the digits' training split (117 images,\n\
stratified), the 8x8 digits resized to 28x28 (bilinear), with a new head; the same ResNet-20\n\
trained from scratch on the same images is the baseline. 30 epochs, SGD with momentum 0.9 at\n\
0.05, weight decay 5e-4, a warm-up epoch and cosine decay, batch 16; the weights of the best\n\
validation epoch (269 images) are kept and scored on the test split (359 images). Each seed\n\
draws its own split, training subset, initialisation and order; the variants of one seed\n\
share the split and the subset. The figure is the test accuracy, mean ± sample standard\n\
deviation over {seeds} seeds.\n\n\
| variant | test accuracy | per seed | training time per run | command |\n|---|---|---|---|---|\n{}\n",
        pre_flags.join(" "),
        pre_m["test"]["accuracy"].as_f64().unwrap_or(f64::NAN),
        rows.join("\n")
    );
    let path = root().join("docs/transfer.md");
    std::fs::write(&path, md).map_err(|e| e.to_string())?;
    eprintln!("{} written", path.display());
    Ok(())
}

fn fixtures() -> Result<(), String> {
    let py = python().ok_or("PyTorch not installed (set STRATA_PYTHON to a python with torch)")?;
    let dir = root().join("tests/fixtures");
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("gen_"))
        })
        .collect();
    scripts.sort();
    for s in scripts {
        let mut c = Command::new(&py);
        c.current_dir(&dir).arg(&s);
        run(c)?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("bench") => bench(&args[1..]),
        Some("accuracy") => accuracy(&args[1..]),
        Some("fixtures") => fixtures(),
        Some("transfer") => transfer(&args[1..]),
        _ => Err("usage: cargo xtask ci | bench [--steps N] [--backends flex,ndarray,wgpu] | accuracy [--resume] [NAME...] | transfer [--seeds N] | fixtures".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}
