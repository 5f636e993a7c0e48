//! Project automation.
//!
//! - `cargo xtask ci`: format check, clippy with warnings denied, every test (release profile,
//!   so burn is built once for the tests and the main job), then a summary of the tests that
//!   skipped and why (`N skipped: why`). Under `CI=true` the needs CI installs (wgpu,
//!   Fashion-MNIST) fail instead of skipping; see `strata::tensor::require`.
//! - `cargo xtask bench [--steps N]`: Strata's training-step and inference benchmarks
//!   (`cnn-infer-64`: forward passes at batch 64) on each CPU backend beside PyTorch's, in one
//!   run; prints ms/step and the Strata/PyTorch ratio.
//! - `cargo xtask time-to-accuracy [--max-seconds S] [NAME...]`: `strata train`'s CNN recipes
//!   (digits, Fashion-MNIST) beside the same recipes in PyTorch: wall seconds of training until
//!   the validation accuracy reaches the bar (0.98, 0.90), and the test accuracy.
//! - `cargo xtask accuracy [NAME...]`: the long accuracy runs; regenerates docs/results.md.
//! - `cargo xtask gnn [--seeds N] [NAME...]`: the graph networks over N seeds (default 10);
//!   regenerates the table of docs/gnn.md.
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

/// Whether this machine can build and run the `mpi` feature: Open MPI's compiler wrapper
/// (the `mpi` crate finds the library through it) and `mpirun`.
fn mpi_available() -> bool {
    ["mpicc", "mpirun"].iter().all(|tool| {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// The cargo arguments of the test build: the `mpi` feature where Open MPI is there. `cargo
/// xtask ci` and the other tasks build alike, so that neither rebuilds the other's.
fn mpi_features() -> &'static [&'static str] {
    if mpi_available() {
        &["--features", "strata-cli/mpi"]
    } else {
        &[]
    }
}

fn ci() -> Result<(), String> {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--check"]);
    run(fmt)?;
    // The data-parallel tests need the `mpi` feature; CI installs Open MPI (.ci/run), and
    // elsewhere a machine without it builds without the feature and counts the skips.
    let ci = std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"));
    let features = mpi_features();
    if features.is_empty() {
        if ci {
            return Err(
                "CI needs Open MPI (mpicc, mpirun): .ci/run installs libopenmpi-dev".into(),
            );
        }
        eprintln!("no Open MPI here (mpicc, mpirun): building without the `mpi` feature");
    }
    let mut clippy = cargo();
    clippy.args(["clippy", "--release", "--workspace", "--all-targets"]);
    clippy.args(features).args(["--", "-D", "warnings"]);
    run(clippy)?;
    // Every test that skips appends a line to this file (strata_tensor::require::SKIP_LOG_ENV):
    // the summary below lists them, so a skip is never mistaken for a pass.
    let log = std::env::temp_dir().join(format!("strata-skips-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let mut test = cargo();
    test.args(["test", "--release", "--workspace"])
        .args(features)
        .env("STRATA_SKIP_LOG", &log);
    let outcome = run(test);
    let skips = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    eprintln!("{}", skip_summary(&skips));
    outcome?;
    examples()
}

/// The facade's examples with small settings (`cargo test` has built them), each in a
/// directory of its own: a library user's first programs must run, not just compile.
const EXAMPLES: [(&str, &[&str]); 5] = [
    ("train_cnn", &["--epochs", "2", "--out", "cnn"]),
    ("custom_model", &["--epochs", "2"]),
    ("fine_tune_resnet", &["--epochs", "2", "--out", "fine-tune"]),
    ("predict_run", &[]),
    ("vae_bounds", &[]),
];

fn examples() -> Result<(), String> {
    let dir = target_dir().join("release").join("examples");
    for (name, args) in EXAMPLES {
        let work =
            std::env::temp_dir().join(format!("strata-example-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
        let mut cmd = Command::new(dir.join(name));
        cmd.args(args).current_dir(&work);
        eprintln!("example {name} {}", args.join(" "));
        let result = run(cmd);
        let _ = std::fs::remove_dir_all(&work);
        result?;
    }
    Ok(())
}

/// The skip summary of `cargo xtask ci`: `N skipped: why` with each distinct reason and how
/// many tests gave it.
fn skip_summary(log: &str) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        *counts.entry(line.trim()).or_default() += 1;
    }
    let n: usize = counts.values().sum();
    if n == 0 {
        return "skip summary: 0 skipped (every requirement was met)".into();
    }
    let mut out = format!("skip summary: {n} skipped:");
    for (line, k) in counts {
        out.push_str(&format!("\n  {k} x {line}"));
    }
    out
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
    let models = args
        .iter()
        .position(|a| a == "--models")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| {
            let training = "mlp,cnn,lstm,gru,transformer,resnet20,resnet18,conv-vae";
            let inference = ["mlp", "cnn", "resnet20", "resnet18"]
                .iter()
                .flat_map(|m| [format!("{m}-infer-1"), format!("{m}-infer-64")])
                .collect::<Vec<_>>()
                .join(",");
            format!("{training},{inference},lstm-generate,gru-generate,transformer-generate")
        });
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
    .args([
        "--steps",
        &steps,
        "--backends",
        &backends,
        "--models",
        &models,
    ]);
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
                    "--models",
                    &models,
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
    /// The metric exceeds another metric of the same run by at least a margin.
    Exceeds(&'static str, f64),
}

/// The test metric at `path` (`/` between nested keys: `denoising/psnr_denoised_db`; a path
/// starting `../` is from the top of `metrics.json`: `../kfold/mean/accuracy`).
fn test_metric(m: &serde_json::Value, path: &str) -> f64 {
    let (start, path) = match path.strip_prefix("../") {
        Some(p) => (m, p),
        None => (&m["test"], path),
    };
    path.split('/')
        .fold(start, |at, k| &at[k])
        .as_f64()
        .unwrap_or(f64::NAN)
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
    (
        "ae-digits",
        &["--model", "ae"],
        "mse",
        Bar::Below("baseline_mse"),
    ),
    (
        "ae-fashion-mnist",
        &[
            "--model",
            "ae",
            "--dataset",
            "fashion-mnist",
            "--max-seconds",
            "420",
        ],
        "mse",
        Bar::Below("pca_mse"),
    ),
    (
        "dae-fashion-mnist",
        &[
            "--model",
            "dae",
            "--dataset",
            "fashion-mnist",
            "--max-seconds",
            "420",
        ],
        "denoising/psnr_denoised_db",
        Bar::Exceeds("denoising/psnr_noisy_db", 5.0),
    ),
    (
        "vae-fashion-mnist",
        &[
            "--model",
            "vae",
            "--dataset",
            "fashion-mnist",
            "--max-seconds",
            "420",
        ],
        "iw_bound/iw_nats",
        Bar::Below("iw_bound/neg_elbo_nats"),
    ),
    (
        "conv-vae-fashion-mnist",
        &[
            "--model",
            "conv-vae",
            "--dataset",
            "fashion-mnist",
            "--max-seconds",
            "600",
        ],
        "neg_elbo_nats",
        Bar::Below("baseline_nll_nats"),
    ),
    (
        "gan-ring8",
        &["--model", "gan", "--dataset", "ring8"],
        "modes_covered",
        Bar::AtLeast(8.0),
    ),
    // Measured in the penultimate features of the cnn-fashion-mnist run above, beside the
    // conv-vae-fashion-mnist run's samples. Width 32: a width-64 step takes 0.8 s on flex here
    // (a tenth of an epoch a minute); at width 32 an epoch takes about 200 s. Bounded by
    // epochs, not seconds, so that a busy machine makes the run slower, not worse: 3 epochs
    // (600 s) left the FID at 418, above the VAE's 376.
    (
        "dcgan-fashion-mnist",
        &[
            "--model",
            "dcgan",
            "--dataset",
            "fashion-mnist",
            "--channels",
            "32",
            "--epochs",
            "12",
            "--evaluator",
            "runs/accuracy-cnn-fashion-mnist",
            "--compare",
            "runs/accuracy-conv-vae-fashion-mnist",
        ],
        "fid",
        Bar::Below("compared/fid"),
    ),
    (
        "cgan-fashion-mnist",
        &[
            "--model",
            "cgan",
            "--dataset",
            "fashion-mnist",
            "--channels",
            "32",
            "--max-seconds",
            "600",
            "--evaluator",
            "runs/accuracy-cnn-fashion-mnist",
        ],
        "gan_test_accuracy",
        Bar::AtLeast(0.80),
    ),
    // The CPU-sized CapsNet (64 9x9 filters, 16 types of 8-D primary capsules, 16-D class
    // capsules, 3 routing passes, the decoder's 0.0005). An epoch takes about 12 minutes here.
    (
        "capsnet-fashion-mnist",
        &[
            "--model",
            "capsnet",
            "--dataset",
            "fashion-mnist",
            "--epochs",
            "6",
        ],
        "accuracy",
        Bar::AtLeast(0.90),
    ),
    (
        "gcn-cora",
        &["--model", "gcn", "--dataset", "cora"],
        "accuracy",
        Bar::AtLeast(0.80),
    ),
    (
        "gat-cora",
        &["--model", "gat", "--dataset", "cora"],
        "accuracy",
        Bar::AtLeast(0.81),
    ),
    (
        "sage-cora",
        &["--model", "sage", "--dataset", "cora"],
        "accuracy",
        Bar::AtLeast(0.79),
    ),
    (
        "gcn-karate",
        &["--model", "gcn", "--dataset", "karate"],
        "accuracy",
        Bar::AtLeast(0.85),
    ),
    (
        "gin-mutag-10fold",
        &["--model", "gin", "--dataset", "mutag", "--kfold", "10"],
        "../kfold/mean/accuracy",
        Bar::AtLeast(0.85),
    ),
    (
        "graph-mlp-mutag-10fold",
        &[
            "--model",
            "graph-mlp",
            "--dataset",
            "mutag",
            "--kfold",
            "10",
        ],
        "../kfold/mean/accuracy",
        // The majority class's share: a baseline that learns anything beats it.
        Bar::AtLeast(0.665),
    ),
];

const RESULTS_HEAD: &str = "# Results\n\nRegenerated by `cargo xtask accuracy` (release build, this machine: 2 cores). Each row is\none `strata train` run; the figure is the test-split metric from its `metrics.json`, the wall\ntime is the whole command (data loading, training, evaluation). `cargo xtask accuracy NAME...`\nreruns some runs and updates their rows; `--resume` continues runs from their checkpoints (runs\nlonger than a session), and their wall column shows the training time summed over sessions.\nForecasting runs compare the test RMSE (in the\nseries' units) with the seasonal-naive forecast's on the same test period; the language model's\nfigure is its test loss in nats per character; a seq2seq run's is the share of test sequences\ndecoded exactly (greedy). The commit column names the commit whose code each row ran (rows\nfrom before this column name the commit that recorded them); every `cargo xtask accuracy`\nmarks a row **stale** when the code under `crates/`, `Cargo.toml` or `Cargo.lock` has changed\nsince (`cargo xtask accuracy --mark-stale` only marks).\n\n| run | command | test | bar | met | epochs | wall | backend | commit |\n|---|---|---|---|---|---|---|---|---|\n";

/// What the figures of the docs ran: a change here makes a row stale.
const CODE_PATHS: [&str; 3] = ["crates", "Cargo.toml", "Cargo.lock"];

/// `git args` in the workspace: its standard output, or `None` when git fails.
fn git(args: &[&str]) -> Option<String> {
    let o = Command::new("git")
        .current_dir(root())
        .args(args)
        .output()
        .ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// The commit a run made now measures: HEAD, with `+uncommitted` when the code differs from
/// it (such a row is stale from the start: its code is in no commit).
fn measured_commit() -> String {
    let head = git(&["rev-parse", "--short=7", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let mut status = vec!["status", "--porcelain", "--"];
    status.extend(CODE_PATHS);
    match git(&status) {
        Some(s) if s.is_empty() => head,
        _ => format!("{head}+uncommitted"),
    }
}

/// Whether the code has changed since `commit` (the working tree against it).
fn is_stale(commit: &str) -> bool {
    if commit.ends_with("+uncommitted") {
        return true;
    }
    let mut diff = vec!["diff", "--quiet", commit, "--"];
    diff.extend(CODE_PATHS);
    // `git diff --quiet` exits 1 on a difference; an unknown commit is stale too.
    git(&diff).is_none()
}

/// The commit cell of a table row: the commit in backquotes, and **stale** when the code has
/// changed since.
fn commit_cell(commit: &str) -> String {
    if is_stale(commit) {
        format!("`{commit}` **stale**")
    } else {
        format!("`{commit}`")
    }
}

/// Re-marks the commit column (the last cell) of every table row of the markdown file at
/// `path` whose first cell is in `names`. A row without a commit cell gets the commit that
/// last changed its line (`git blame`). Only the table whose header starts with `header` is
/// touched: other tables of the page keep their columns.
fn mark_stale(path: &Path, header: &str, names: &[&str], columns: usize) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let rel = path
        .strip_prefix(root())
        .unwrap_or(path)
        .to_string_lossy()
        .to_string();
    let mut out = Vec::new();
    let mut widen_separator = false;
    for (i, line) in text.lines().enumerate() {
        let cells: Vec<&str> = line
            .strip_prefix("| ")
            .and_then(|l| l.strip_suffix(" |"))
            .map(|l| l.split(" | ").collect())
            .unwrap_or_default();
        // The header row and its separator gain the commit column where they lack it.
        let is_header = cells.first().is_some_and(|c| c.trim() == header);
        let separator =
            widen_separator && line.starts_with("|---") && line.matches('|').count() == columns;
        widen_separator = false;
        if (is_header && cells.len() == columns - 1) || separator {
            widen_separator = !separator;
            let cell = if separator { "---" } else { "commit" };
            out.push(format!("{line} {cell} |").replace("| --- |", "|---|"));
            continue;
        }
        if cells.is_empty() || !names.contains(&cells[0].trim()) {
            out.push(line.to_string());
            continue;
        }
        let (body, commit) = if cells.len() == columns {
            let c = cells[columns - 1]
                .split('`')
                .nth(1)
                .unwrap_or("unknown")
                .to_string();
            (&cells[..columns - 1], c)
        } else {
            let at = format!("{},{}", i + 1, i + 1);
            let blame = git(&["blame", "--porcelain", "-L", &at, "--", &rel]).unwrap_or_default();
            let c: String = blame.chars().take(7).collect();
            (&cells[..], if c.is_empty() { "unknown".into() } else { c })
        };
        out.push(format!(
            "| {} | {} |",
            body.join(" | "),
            commit_cell(&commit)
        ));
    }
    std::fs::write(path, out.join("\n") + "\n").map_err(|e| e.to_string())
}

fn accuracy(args: &[String]) -> Result<(), String> {
    let names: Vec<&str> = RUNS.iter().map(|r| r.0).collect();
    let results = root().join("docs/results.md");
    if args.iter().any(|a| a == "--mark-stale") {
        // The page's text as `accuracy` writes it, then the rows re-marked.
        let old = std::fs::read_to_string(&results).map_err(|e| e.to_string())?;
        let rows: Vec<&str> = old
            .lines()
            .filter(|l| {
                l.strip_prefix("| ")
                    .and_then(|r| r.split(" |").next())
                    .is_some_and(|n| names.contains(&n.trim()))
            })
            .collect();
        std::fs::write(&results, format!("{RESULTS_HEAD}{}\n", rows.join("\n")))
            .map_err(|e| e.to_string())?;
        mark_stale(&results, "run", &names, 9)?;
        mark_stale(
            &root().join("docs/transfer.md"),
            "variant",
            &TRANSFER_VARIANTS,
            7,
        )?;
        eprintln!("docs/results.md and docs/transfer.md re-marked");
        return Ok(());
    }
    let exe = strata_exe()?;
    // Give every old row its commit before any is replaced.
    mark_stale(&results, "run", &names, 9)?;
    // Rows of docs/results.md by run name; a partial rerun updates its rows only.
    let path = results;
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
    let commit = measured_commit();
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
        let value = test_metric(&m, metric);
        let (bar_text, met) = match bar {
            Bar::AtLeast(v) => (format!(">= {v}"), value >= *v),
            Bar::AtMost(v) => (format!("<= {v}"), value <= *v),
            Bar::Below(key) => {
                let b = test_metric(&m, key);
                (format!("< {key} {b:.4}"), value < b)
            }
            Bar::Exceeds(key, margin) => {
                let b = test_metric(&m, key);
                (format!(">= {key} {b:.4} + {margin}"), value >= b + margin)
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
                "| {name} | `{command}` | {} {value:.4} | {bar_text} | {} | {} | {wall} | {} | `{commit}` |",
                metric.strip_prefix("../").unwrap_or(metric),
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
    mark_stale(
        &path,
        "run",
        &RUNS.iter().map(|r| r.0).collect::<Vec<_>>(),
        9,
    )?;
    mark_stale(
        &root().join("docs/transfer.md"),
        "variant",
        &TRANSFER_VARIANTS,
        7,
    )?;
    eprintln!("docs/results.md written; docs/transfer.md re-marked");
    Ok(())
}

/// The `strata` binary, built in release as the tests build it: `cargo test --workspace`
/// resolves the dependencies' features for the whole workspace, where `cargo build -p
/// strata-cli` would resolve them for the CLI alone and rebuild burn with another feature set.
fn strata_exe() -> Result<PathBuf, String> {
    let mut b = cargo();
    b.args(["test", "--release", "--workspace", "--no-run", "--quiet"]);
    b.args(mpi_features());
    run(b)?;
    Ok(target_dir().join("release").join("strata"))
}

/// Cargo's target directory.
fn target_dir() -> PathBuf {
    std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("target"))
}

/// A run's metrics.json.
fn run_metrics(out: &Path) -> Result<serde_json::Value, String> {
    let text = std::fs::read_to_string(out.join("metrics.json")).map_err(|e| e.to_string())?;
    let m: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    Ok(m)
}

/// The one-class anomaly-detection protocol (Ruff et al. 2018) on Fashion-MNIST: one run per
/// class, trained on that class's training images only, scored on the whole test split (the
/// other nine classes are the anomalies); AUROC and average precision of the model's scores
/// beside PCA's reconstruction error with as many components. Writes docs/oneclass.md.
fn oneclass(args: &[String]) -> Result<(), String> {
    let flag = |name: &str, default: &str| -> String {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_else(|| default.to_string())
    };
    let model = flag("--model", "ae");
    let epochs = flag("--epochs", "30");
    let exe = strata_exe()?;
    let commit = measured_commit();
    let mut rows = Vec::new();
    let (mut sum, mut sum_pca, mut sum_ap, mut sum_pca_ap) = (0.0, 0.0, 0.0, 0.0);
    let started = Instant::now();
    for class in 0..10 {
        let out = root()
            .join("runs")
            .join("oneclass")
            .join(format!("{model}-{class}"));
        let _ = std::fs::remove_dir_all(&out);
        let mut c = Command::new(&exe);
        c.current_dir(root()).args([
            "train",
            "--model",
            &model,
            "--dataset",
            "fashion-mnist",
            "--epochs",
            &epochs,
            "--normal-class",
            &class.to_string(),
            "--quiet",
            "--out",
        ]);
        c.arg(&out);
        run(c)?;
        let m = run_metrics(&out)?;
        let a = &m["test"]["anomaly"];
        let f = |k: &str| a[k].as_f64().unwrap_or(f64::NAN);
        sum += f("auroc");
        sum_pca += f("pca_auroc");
        sum_ap += f("average_precision");
        sum_pca_ap += f("pca_average_precision");
        let row = format!(
            "| {class} {} | {:.4} | {:.4} | {:.4} | {:.4} | {} |",
            a["normal_class"].as_str().unwrap_or("?"),
            f("auroc"),
            f("pca_auroc"),
            f("average_precision"),
            f("pca_average_precision"),
            m["epochs_run"]
        );
        eprintln!("{row}");
        rows.push(row);
    }
    let md = format!(
        "# One-class anomaly detection on Fashion-MNIST\n\nRegenerated by `cargo xtask oneclass --model {model} --epochs {epochs}` (release build, this machine: 2 cores, {:.0} s in all) at commit `{commit}`. The protocol of Ruff et al. (2018): for each class, `strata train --model {model} --dataset fashion-mnist --normal-class K --epochs {epochs}` trains on that class's training images only (about 5,100 after the validation split) and scores all 10,000 test images, of which the 9,000 of other classes are the anomalies. The score is the negative log-likelihood of the image's reconstruction (plus the KL term for a VAE); the baseline is the squared error of PCA's reconstruction with as many components as the code has units, fitted on the same images.\n\n| normal class | AUROC | PCA AUROC | average precision | PCA average precision | epochs |\n|---|---|---|---|---|---|\n{}\n| **mean** | **{:.4}** | **{:.4}** | **{:.4}** | **{:.4}** | |\n",
        started.elapsed().as_secs_f64(),
        rows.join("\n"),
        sum / 10.0,
        sum_pca / 10.0,
        sum_ap / 10.0,
        sum_pca_ap / 10.0
    );
    std::fs::write(root().join("docs/oneclass.md"), md).map_err(|e| e.to_string())?;
    eprintln!("docs/oneclass.md written");
    Ok(())
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

/// The transfer study's variants, in the order of docs/transfer.md's rows.
const TRANSFER_VARIANTS: [&str; 4] = [
    "scratch",
    "frozen",
    "frozen, then unfrozen",
    "all layers trained",
];

/// One fine-tuning run of the study.
struct TransferRun {
    variant: &'static str,
    seed: u64,
    /// The commit whose code the run used.
    commit: String,
    test: f64,
    valid: f64,
    seconds: f64,
    /// The test split: the row of each test sample in the digits, with its label and the
    /// prediction (`test_predictions.csv`).
    predictions: BTreeMap<usize, (String, String)>,
}

fn read_predictions(dir: &Path) -> Result<BTreeMap<usize, (String, String)>, String> {
    let path = dir.join("test_predictions.csv");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = BTreeMap::new();
    for line in text.lines().skip(1) {
        let mut cells = line.split(',');
        let (Some(row), Some(label), Some(pred)) = (cells.next(), cells.next(), cells.next())
        else {
            return Err(format!("{}: bad line {line}", path.display()));
        };
        let row: usize = row.parse().map_err(|_| format!("bad row {row}"))?;
        out.insert(row, (label.to_string(), pred.to_string()));
    }
    Ok(out)
}

/// Two runs side by side: the test rows both scored, on how many of those they predict the
/// same class, and on how many both are right.
fn shared(a: &TransferRun, b: &TransferRun) -> (usize, usize, usize) {
    let mut common = 0;
    let mut same = 0;
    let mut both_right = 0;
    for (row, (label, pa)) in &a.predictions {
        if let Some((_, pb)) = b.predictions.get(row) {
            common += 1;
            same += usize::from(pa == pb);
            both_right += usize::from(pa == label && pb == label);
        }
    }
    (common, same, both_right)
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let sd = (v.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0)).sqrt();
    (mean, sd)
}

/// `cargo xtask transfer [--seeds N]`: ResNet-20 pretrained on Fashion-MNIST, then trained on
/// 10% of the digits' training split (resized to 28x28) from scratch, with the pretrained
/// backbone frozen, frozen then thawed at a tenth of the head's learning rate, and with every
/// layer trained from the start; N seeds (default 10) each; writes docs/transfer.md with the
/// per-seed validation and test figures, and what runs with equal test figures share.
fn transfer(args: &[String]) -> Result<(), String> {
    let seeds: u64 = match args.iter().position(|a| a == "--seeds") {
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .ok_or("--seeds N")?,
        None => 10,
    };
    let exe = strata_exe()?;
    let commit = measured_commit();
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
    let flags_of = [vec![], frozen.clone(), thawed, frozen[..3].to_vec()];
    let mut runs: Vec<TransferRun> = Vec::new();
    let mut rows = Vec::new();
    for (variant, flags) in TRANSFER_VARIANTS.iter().zip(&flags_of) {
        for seed in 1..=seeds {
            let out = dir.join(format!("{}-seed{seed}", variant.replace([',', ' '], "")));
            // A finished run whose code has not changed since is kept (the study resumes
            // across sessions).
            let recorded = std::fs::read_to_string(out.join("commit")).ok();
            let done = out.join("test_predictions.csv").exists()
                && recorded.as_deref().is_some_and(|c| !is_stale(c));
            if !done {
                let _ = std::fs::remove_dir_all(&out);
                let mut c = Command::new(&exe);
                c.current_dir(root())
                    .arg("train")
                    .args(TRANSFER_COMMON)
                    .args(flags)
                    .args(["--seed", &seed.to_string(), "--quiet", "--out"])
                    .arg(&out);
                run(c)?;
                std::fs::write(out.join("commit"), &commit).map_err(|e| e.to_string())?;
            }
            let m = run_metrics(&out)?;
            runs.push(TransferRun {
                variant,
                seed,
                commit: std::fs::read_to_string(out.join("commit")).map_err(|e| e.to_string())?,
                test: m["test"]["accuracy"].as_f64().unwrap_or(f64::NAN),
                valid: m["valid"]["accuracy"].as_f64().unwrap_or(f64::NAN),
                seconds: m["train_seconds"].as_f64().unwrap_or(f64::NAN),
                predictions: read_predictions(&out)?,
            });
        }
        let mine: Vec<&TransferRun> = runs.iter().filter(|r| r.variant == *variant).collect();
        let (test_mean, test_sd) = mean_sd(&mine.iter().map(|r| r.test).collect::<Vec<_>>());
        let (valid_mean, valid_sd) = mean_sd(&mine.iter().map(|r| r.valid).collect::<Vec<_>>());
        let each: Vec<String> = mine
            .iter()
            .map(|r| format!("{:.4} ({:.4})", r.test, r.valid))
            .collect();
        let seconds = mine.iter().map(|r| r.seconds).sum::<f64>() / mine.len() as f64;
        let command = format!(
            "strata train {} {} --seed S",
            TRANSFER_COMMON.join(" "),
            flags
                .join(" ")
                .replace(&pre_s, "runs/transfer/pretrain-fashion-mnist")
        );
        let commits: std::collections::BTreeSet<&str> =
            mine.iter().map(|r| r.commit.as_str()).collect();
        rows.push(format!(
            "| {variant} | {test_mean:.4} ± {test_sd:.4} | {valid_mean:.4} ± {valid_sd:.4} | {} | {seconds:.0} s | `{}` | `{}` |",
            each.join(", "),
            command.split_whitespace().collect::<Vec<_>>().join(" "),
            commits.into_iter().collect::<Vec<_>>().join(", ")
        ));
        eprintln!("{}", rows.last().expect("a row"));
    }

    // Runs with equal test accuracy: what they share. And how many ties chance gives: with a
    // variant's seeds spread with standard deviation `sd` test images, two runs land on the
    // same count with probability about 1 / (2 sqrt(pi) sd) (two normal draws).
    let n_test = runs.first().map_or(0, |r| r.predictions.len());
    let mut ties = Vec::new();
    for (i, a) in runs.iter().enumerate() {
        for b in &runs[i + 1..] {
            if a.test == b.test {
                let (common, same, both) = shared(a, b);
                ties.push(format!(
                    "| {} seed {} | {} seed {} | {:.4} | {common} | {same} | {both} |",
                    a.variant, a.seed, b.variant, b.seed, a.test
                ));
            }
        }
    }
    let mut chance = Vec::new();
    for variant in TRANSFER_VARIANTS {
        let mine: Vec<&TransferRun> = runs.iter().filter(|r| r.variant == variant).collect();
        let counts: Vec<f64> = mine.iter().map(|r| r.test * n_test as f64).collect();
        let (_, sd) = mean_sd(&counts);
        let pairs = (mine.len() * (mine.len() - 1) / 2) as f64;
        let expected = pairs / (2.0 * std::f64::consts::PI.sqrt() * sd.max(0.5));
        let observed = mine
            .iter()
            .enumerate()
            .map(|(i, a)| mine[i + 1..].iter().filter(|b| b.test == a.test).count())
            .sum::<usize>();
        chance.push(format!(
            "| {variant}: ties | {sd:.1} | {observed} | {expected:.1} |"
        ));
    }
    let same_seed: Vec<String> = (1..=seeds)
        .filter_map(|seed| {
            let a = runs
                .iter()
                .find(|r| r.variant == "scratch" && r.seed == seed)?;
            let b = runs
                .iter()
                .find(|r| r.variant == "all layers trained" && r.seed == seed)?;
            let (common, same, _) = shared(a, b);
            Some(format!("{seed}: {same} of {common}"))
        })
        .collect();
    let md = format!(
        "# Transfer learning: Fashion-MNIST to the digits\n\n\
Regenerated by `cargo xtask transfer` (release build, flex backend, this machine: 2 cores).\n\n\
A ResNet-20 pretrained on Fashion-MNIST (`strata train {}`:\n\
test accuracy {:.4}) is fine-tuned on 10% of the digits' training split (117 images,\n\
stratified), the 8x8 digits resized to 28x28 (bilinear), with a new head; the same ResNet-20\n\
trained from scratch on the same images is the baseline. 30 epochs, SGD with momentum 0.9 at\n\
0.05, weight decay 5e-4, a warm-up epoch and cosine decay, batch 16; the weights of the best\n\
validation epoch (269 images) are kept and scored on the test split ({n_test} images). Each seed\n\
draws its own split, training subset, initialisation and order; the variants of one seed\n\
share the split and the subset. The figures are accuracies, mean ± sample standard\n\
deviation over {seeds} seeds; per seed, the test accuracy with the validation accuracy in\n\
brackets. The commit column names the code the runs used; `cargo xtask accuracy` marks it\n\
**stale** once that code changes.\n\n\
| variant | test accuracy | validation accuracy | per seed: test (validation) | training time per run | command | commit |\n\
|---|---|---|---|---|---|---|\n{}\n\n\
## Equal figures\n\n\
A test accuracy is a count out of {n_test}, so runs can tie. Each pair of runs with the same test\n\
accuracy: the test rows both scored (seeds draw their own splits, so two seeds share only part\n\
of their test sets; two variants of one seed share all of it), on how many of those they\n\
predict the same class, and on how many both are right.\n\n\
| run | run | test accuracy | common test rows | same prediction | both right |\n\
|---|---|---|---|---|---|\n{}\n\n\
Ties within a variant against chance: the spread of its seeds' test counts (standard\n\
deviation, in images), the pairs of seeds that tie, and the number of ties expected by chance\n\
for that spread (`pairs / (2 sqrt(pi) sd)`, two draws from one normal).\n\n\
| variant | sd of the count | tied pairs | expected by chance |\n|---|---|---|---|\n{}\n\n\
Scratch against every layer trained from the pretrained weights, same seed (same split, same\n\
training subset, different starting weights): same test prediction on {}.\n",
        pre_flags.join(" "),
        pre_m["test"]["accuracy"].as_f64().unwrap_or(f64::NAN),
        rows.join("\n"),
        if ties.is_empty() {
            "| (no two runs tie) | | | | | |".to_string()
        } else {
            ties.join("\n")
        },
        chance.join("\n"),
        same_seed.join("; ")
    );
    let path = root().join("docs/transfer.md");
    std::fs::write(&path, md).map_err(|e| e.to_string())?;
    mark_stale(&path, "variant", &TRANSFER_VARIANTS, 7)?;
    eprintln!("{} written", path.display());
    Ok(())
}

/// The graph runs of docs/gnn.md: `(name, strata train flags, metric)`; each runs once per
/// seed.
const GNN_RUNS: &[(&str, &[&str], &str)] = &[
    (
        "gcn-cora",
        &["--model", "gcn", "--dataset", "cora"],
        "accuracy",
    ),
    (
        "gat-cora",
        &["--model", "gat", "--dataset", "cora"],
        "accuracy",
    ),
    (
        "sage-cora",
        &["--model", "sage", "--dataset", "cora"],
        "accuracy",
    ),
    (
        "sage-max-cora",
        &[
            "--model",
            "sage",
            "--dataset",
            "cora",
            "--aggregator",
            "max",
        ],
        "accuracy",
    ),
    (
        "graph-mlp-cora",
        &["--model", "graph-mlp", "--dataset", "cora"],
        "accuracy",
    ),
    (
        "gcn-karate",
        &["--model", "gcn", "--dataset", "karate"],
        "accuracy",
    ),
    (
        "gin-mutag-10fold",
        &["--model", "gin", "--dataset", "mutag", "--kfold", "10"],
        "../kfold/mean/accuracy",
    ),
    (
        "graph-mlp-mutag-10fold",
        &[
            "--model",
            "graph-mlp",
            "--dataset",
            "mutag",
            "--kfold",
            "10",
        ],
        "../kfold/mean/accuracy",
    ),
];

/// `cargo xtask gnn [--seeds N] [NAME...]`: each graph run of [`GNN_RUNS`] with seeds 1..=N
/// (default 10); writes the table between the `gnn-seeds` markers of docs/gnn.md: mean,
/// standard deviation, minimum and maximum of the test figure over the seeds (for the
/// cross-validated runs, of the 10-fold mean accuracy), with the mean seconds a run took.
fn gnn(args: &[String]) -> Result<(), String> {
    let mut seeds = 10u64;
    let mut names = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--seeds" {
            seeds = it.next().and_then(|s| s.parse().ok()).ok_or("--seeds N")?;
        } else {
            names.push(a.as_str());
        }
    }
    let exe = strata_exe()?;
    let commit = measured_commit();
    let page = root().join("docs/gnn.md");
    let old = std::fs::read_to_string(&page).map_err(|e| e.to_string())?;
    let (begin, end) = ("<!-- gnn-seeds begin -->", "<!-- gnn-seeds end -->");
    let (head, rest) = old
        .split_once(begin)
        .ok_or("docs/gnn.md lacks the gnn-seeds markers")?;
    let (table, tail) = rest
        .split_once(end)
        .ok_or("docs/gnn.md lacks the gnn-seeds end marker")?;
    // Rows kept from the old table for runs not rerun now.
    let mut rows: BTreeMap<String, String> = table
        .lines()
        .filter_map(|l| {
            let name = l.strip_prefix("| ")?.split(" |").next()?.trim().to_string();
            GNN_RUNS
                .iter()
                .any(|r| r.0 == name)
                .then(|| (name, l.to_string()))
        })
        .collect();
    for (name, flags, metric) in GNN_RUNS {
        if !names.is_empty() && !names.contains(name) {
            continue;
        }
        let mut values = Vec::new();
        let mut seconds = 0.0;
        for seed in 1..=seeds {
            let out = root()
                .join("runs")
                .join("gnn")
                .join(format!("{name}-{seed}"));
            let _ = std::fs::remove_dir_all(&out);
            let mut c = Command::new(&exe);
            c.current_dir(root())
                .arg("train")
                .args(*flags)
                .args(["--seed", &seed.to_string(), "--quiet", "--out"])
                .arg(&out);
            let started = Instant::now();
            run(c)?;
            seconds += started.elapsed().as_secs_f64();
            let v = test_metric(&run_metrics(&out)?, metric);
            eprintln!("{name} seed {seed}: {v:.4}");
            values.push(v);
        }
        let n = values.len() as f64;
        let (mean, sd) = mean_sd(&values);
        let (lo, hi) = values
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
        let what = if metric.contains("kfold") {
            "10-fold accuracy"
        } else {
            "test accuracy"
        };
        rows.insert(
            name.to_string(),
            format!(
                "| {name} | `strata train {}` | {what} | {mean:.4} | {sd:.4} | {lo:.4} | {hi:.4} | {} | {:.0} s | `{commit}` |",
                flags.join(" "),
                values.len(),
                seconds / n
            ),
        );
    }
    let ordered: Vec<&str> = GNN_RUNS
        .iter()
        .filter_map(|r| rows.get(r.0).map(String::as_str))
        .collect();
    let md = format!(
        "{head}{begin}\n| run | command | figure | mean | std | min | max | seeds | s per run | commit |\n|---|---|---|---|---|---|---|---|---|---|\n{}\n{end}{tail}",
        ordered.join("\n")
    );
    std::fs::write(&page, md).map_err(|e| e.to_string())?;
    let names: Vec<&str> = GNN_RUNS.iter().map(|r| r.0).collect();
    mark_stale(&page, "run", &names, 10)?;
    eprintln!("docs/gnn.md written");
    Ok(())
}

/// The CNN of `cargo xtask capsnet viewpoint`: 2.84M parameters beside the CPU-sized
/// CapsNet's 2.82M (1.41M of which are its decoder's), trained for as many epochs as the
/// `capsnet-fashion-mnist` run.
const VIEWPOINT_CNN: &[&str] = &[
    "--model",
    "cnn",
    "--dataset",
    "fashion-mnist",
    "--channels",
    "64,128",
    "--head",
    "440",
    "--epochs",
    "6",
];

/// The test-image transforms of the viewpoint test (`strata evaluate --perturb`, seed 0).
const VIEWPOINTS: &[&str] = &[
    "affine:0:0.1",
    "affine:30:0",
    "affine:15:0.1",
    "affine:30:0.2",
];

/// Replaces what lies between `<!-- NAME begin -->` and `<!-- NAME end -->` in `page`.
fn replace_section(page: &Path, name: &str, body: &str) -> Result<(), String> {
    let old = std::fs::read_to_string(page).map_err(|e| format!("{}: {e}", page.display()))?;
    let (begin, end) = (
        format!("<!-- {name} begin -->"),
        format!("<!-- {name} end -->"),
    );
    let (head, rest) = old
        .split_once(&begin)
        .ok_or_else(|| format!("{} lacks {begin}", page.display()))?;
    let (_, tail) = rest
        .split_once(&end)
        .ok_or_else(|| format!("{} lacks {end}", page.display()))?;
    std::fs::write(page, format!("{head}{begin}\n{body}\n{end}{tail}")).map_err(|e| e.to_string())
}

/// `cargo xtask capsnet ablation [--seeds N] [--fraction F] [--epochs E]`: the paper's
/// ablation on a stratified fraction of Fashion-MNIST's training split (default 0.1, 5
/// epochs, 3 seeds): routing 1 or 3, with the decoder's 0.0005 or without; the test error's
/// mean and standard deviation, written into docs/capsules.md.
///
/// `cargo xtask capsnet viewpoint`: the accuracy run `capsnet-fashion-mnist` and a CNN of as
/// many parameters, both trained on the centred images, evaluated on the test images as they
/// are and rotated and shifted by `strata evaluate --perturb` (seed 0); written into
/// docs/capsules.md.
fn capsnet(args: &[String]) -> Result<(), String> {
    let mut seeds = 3u64;
    let mut fraction = "0.1".to_string();
    let mut epochs = "5".to_string();
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--seeds" => seeds = value()?.parse().map_err(|_| "--seeds N")?,
            "--fraction" => fraction = value()?,
            "--epochs" => epochs = value()?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    let exe = strata_exe()?;
    let commit = measured_commit();
    let page = root().join("docs/capsules.md");
    let train = |flags: &[&str], out: &Path| -> Result<serde_json::Value, String> {
        let _ = std::fs::remove_dir_all(out);
        let mut c = Command::new(&exe);
        c.current_dir(root())
            .arg("train")
            .args(flags)
            .args(["--quiet", "--out"])
            .arg(out);
        run(c)?;
        run_metrics(out)
    };
    match args.first().map(String::as_str) {
        Some("ablation") => {
            let mut rows = Vec::new();
            for (routing, reconstruction) in [("1", "0"), ("1", "0.0005"), ("3", "0"), ("3", "0.0005")] {
                let flags = [
                    "--model",
                    "capsnet",
                    "--dataset",
                    "fashion-mnist",
                    "--train-fraction",
                    &fraction,
                    "--epochs",
                    &epochs,
                    "--routing",
                    routing,
                    "--reconstruction",
                    reconstruction,
                ];
                let mut errors = Vec::new();
                let mut seconds = 0.0;
                for seed in 1..=seeds {
                    let out = root()
                        .join("runs/capsnet")
                        .join(format!("ablation-r{routing}-w{reconstruction}-{seed}"));
                    let started = Instant::now();
                    let seed_s = seed.to_string();
                    let mut all = flags.to_vec();
                    all.extend(["--seed", &seed_s]);
                    let m = train(&all, &out)?;
                    seconds += started.elapsed().as_secs_f64();
                    let error = 100.0 * (1.0 - test_metric(&m, "accuracy"));
                    eprintln!("routing {routing}, reconstruction {reconstruction}, seed {seed}: {error:.2}% error");
                    errors.push(error);
                }
                let (mean, sd) = mean_sd(&errors);
                rows.push(format!(
                    "| {routing} | {} | {mean:.2} | {sd:.2} | {seeds} | {:.0} s | `{commit}` |",
                    if reconstruction == "0" { "no" } else { "yes (0.0005)" },
                    seconds / seeds as f64
                ));
            }
            let body = format!(
                "Fashion-MNIST, a stratified {fraction} of the training split, {epochs} epochs, the CPU-sized network (`cargo xtask capsnet ablation --seeds {seeds} --fraction {fraction} --epochs {epochs}`); test error in %:\n\n| routing | reconstruction | error mean | std | seeds | s per run | commit |\n|---|---|---|---|---|---|---|\n{}",
                rows.join("\n")
            );
            replace_section(&page, "capsnet-ablation", &body)?;
        }
        Some("viewpoint") => {
            let caps = root().join("runs/accuracy-capsnet-fashion-mnist");
            if !caps.join("model.safetensors").exists() {
                return Err("run `cargo xtask accuracy capsnet-fashion-mnist` first".into());
            }
            let cnn = root().join("runs/capsnet/viewpoint-cnn");
            train(VIEWPOINT_CNN, &cnn)?;
            let mut rows = Vec::new();
            for (name, dir) in [("capsnet (small)", &caps), ("cnn 64,128, head 440", &cnn)] {
                let mut params = 0;
                let mut cells = Vec::new();
                for perturb in std::iter::once(None).chain(VIEWPOINTS.iter().map(Some)) {
                    let mut c = Command::new(&exe);
                    c.current_dir(root()).arg("evaluate").arg("--run").arg(dir);
                    if let Some(p) = perturb {
                        c.args(["--perturb", p, "--seed", "0"]);
                    }
                    run(c)?;
                    let ev: serde_json::Value = serde_json::from_str(
                        &std::fs::read_to_string(dir.join("evaluation.json"))
                            .map_err(|e| e.to_string())?,
                    )
                    .map_err(|e| e.to_string())?;
                    params = ev["parameters"].as_u64().unwrap_or(0);
                    cells.push(format!("{:.4}", test_metric(&ev, "accuracy")));
                }
                rows.push(format!(
                    "| {name} | {:.2}M | {} | `{commit}` |",
                    params as f64 / 1e6,
                    cells.join(" | ")
                ));
            }
            let body = format!(
                "Both trained on the centred Fashion-MNIST images (`cargo xtask capsnet viewpoint`); test accuracy on the test images as they are, and each image rotated by a uniform angle in [-DEG, DEG] and shifted by up to SHIFT of its side (`strata evaluate --perturb affine:DEG:SHIFT --seed 0`, bilinear, zeros coming in):\n\n| model | parameters | centred | {} | commit |\n|---|---|---|{}---|\n{}",
                VIEWPOINTS.join(" | "),
                "---|".repeat(VIEWPOINTS.len()),
                rows.join("\n")
            );
            replace_section(&page, "capsnet-viewpoint", &body)?;
        }
        _ => return Err("usage: cargo xtask capsnet ablation [--seeds N] [--fraction F] [--epochs E] | viewpoint".into()),
    }
    eprintln!("docs/capsules.md written");
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

/// The recipes `time-to-accuracy` times, by their names in [`RUNS`] (whose flags they take:
/// `benches/pytorch/time_to_accuracy.py` reads the same flags, with `strata train`'s defaults),
/// and the validation accuracy to reach.
const TIME_TO_ACCURACY: &[(&str, f64)] = &[("cnn-digits", 0.98), ("cnn-fashion-mnist", 0.90)];

/// The first epoch whose validation accuracy reaches `bar` and the training seconds until
/// then, from a run's `history.csv`; and the seconds of all its epochs.
fn reached(history: &str, bar: f64) -> (Option<(usize, f64)>, f64) {
    let mut lines = history.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (Some(acc), Some(secs)) = (col("valid_accuracy"), col("seconds")) else {
        return (None, f64::NAN);
    };
    let (mut total, mut first) = (0.0, None);
    for (i, line) in lines.enumerate() {
        let cells: Vec<f64> = line
            .split(',')
            .map(|c| c.parse().unwrap_or(f64::NAN))
            .collect();
        total += cells.get(secs).copied().unwrap_or(f64::NAN);
        if first.is_none() && cells.get(acc).is_some_and(|&a| a >= bar) {
            first = Some((i + 1, total));
        }
    }
    (first, total)
}

/// `cargo xtask time-to-accuracy [--max-seconds S] [NAME...]`: each CNN recipe with
/// `strata train` and with the same recipe in PyTorch, one after the other: the epoch and the
/// training seconds until the validation accuracy first reaches the bar, the test accuracy.
fn time_to_accuracy(args: &[String]) -> Result<(), String> {
    let budget = args
        .iter()
        .position(|a| a == "--max-seconds")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let names: Vec<&String> = args
        .iter()
        .enumerate()
        .filter(|(i, a)| !a.starts_with("--") && (*i == 0 || args[i - 1] != "--max-seconds"))
        .map(|(_, a)| a)
        .collect();
    let exe = strata_exe()?;
    let py = python();
    let mut rows = vec![];
    for (name, bar) in TIME_TO_ACCURACY {
        if !names.is_empty() && !names.iter().any(|n| n == name) {
            continue;
        }
        let flags = RUNS
            .iter()
            .find(|r| r.0 == *name)
            .map(|r| r.1)
            .ok_or_else(|| format!("{name} is not an accuracy run"))?;
        let out = root().join("runs").join(format!("time-to-accuracy-{name}"));
        let _ = std::fs::remove_dir_all(&out);
        let mut c = Command::new(&exe);
        c.current_dir(root())
            .arg("train")
            .args(flags)
            .arg("--out")
            .arg(&out)
            .arg("--quiet");
        if let Some(b) = &budget {
            c.args(["--max-seconds", b]);
        }
        run(c)?;
        let history =
            std::fs::read_to_string(out.join("history.csv")).map_err(|e| e.to_string())?;
        let (ours, ours_total) = reached(&history, *bar);
        let ours_test = test_metric(&run_metrics(&out)?, "accuracy");
        let theirs = match &py {
            Some(py) => {
                let mut c = Command::new(py);
                c.current_dir(root())
                    .arg("benches/pytorch/time_to_accuracy.py")
                    .args(flags)
                    .args(["--bar", &bar.to_string()]);
                if let Some(b) = &budget {
                    c.args(["--max-seconds", b]);
                }
                eprintln!("+ {c:?}");
                let o = c.output().map_err(|e| e.to_string())?;
                if !o.status.success() {
                    return Err(format!(
                        "time_to_accuracy.py failed: {}",
                        String::from_utf8_lossy(&o.stderr)
                    ));
                }
                json_lines(&String::from_utf8_lossy(&o.stdout)).pop()
            }
            None => {
                eprintln!("PyTorch not installed (set STRATA_PYTHON): skipping its column");
                None
            }
        };
        let at = |r: Option<(usize, f64)>| match r {
            Some((e, s)) => format!("epoch {e}, {s:.1} s"),
            None => "not reached".into(),
        };
        let theirs_reached = theirs.as_ref().and_then(|t| {
            Some((
                t["reached"]["epoch"].as_u64()? as usize,
                t["reached"]["seconds"].as_f64()?,
            ))
        });
        let ratio = match (ours, theirs_reached) {
            (Some((_, a)), Some((_, b))) => format!("{:.2}", a / b),
            _ => "-".into(),
        };
        let field = |k: &str| {
            theirs
                .as_ref()
                .and_then(|t| t[k].as_f64())
                .map_or("-".into(), |v| format!("{v:.4}"))
        };
        let theirs_total = theirs
            .as_ref()
            .and_then(|t| t["train_seconds"].as_f64())
            .map_or("-".into(), |v| format!("{v:.1}"));
        rows.push(format!(
            "| {name} | {bar} | {} | {} | {ratio} | {ours_test:.4} | {} | {ours_total:.1} | {theirs_total} |",
            at(ours),
            theirs_reached.map_or("-".into(), |r| at(Some(r))),
            field("test_accuracy"),
        ));
    }
    println!(
        "| recipe | validation bar | Strata reaches it | PyTorch reaches it | Strata / PyTorch | Strata test accuracy | PyTorch test accuracy | Strata training s | PyTorch training s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
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
        Some("capsnet") => capsnet(&args[1..]),
        Some("transfer") => transfer(&args[1..]),
        Some("oneclass") => oneclass(&args[1..]),
        Some("gnn") => gnn(&args[1..]),
        Some("time-to-accuracy") => time_to_accuracy(&args[1..]),
        _ => Err("usage: cargo xtask ci | bench [--steps N] [--backends flex,ndarray,wgpu] [--models mlp,conv-vae,...] | time-to-accuracy [--max-seconds S] [NAME...] | accuracy [--resume] [NAME...] | transfer [--seeds N] | oneclass [--model ae] [--epochs N] | gnn [--seeds N] [NAME...] | capsnet ablation|viewpoint | fixtures".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_to_accuracy_times_accuracy_runs() {
        for (name, _) in TIME_TO_ACCURACY {
            assert!(RUNS.iter().any(|r| r.0 == *name), "{name}");
        }
    }

    #[test]
    fn time_to_accuracy_reads_the_first_epoch_at_the_bar() {
        let history = "epoch,train_loss,valid_loss,valid_accuracy,lr,seconds\n1,1,1,0.5,1e-3,2.0\n2,1,1,0.98,1e-3,3.0\n3,1,1,0.99,1e-3,4.0\n";
        assert_eq!(reached(history, 0.98), (Some((2, 5.0)), 9.0));
        assert_eq!(reached(history, 0.995).0, None);
        assert!(reached("epoch,loss\n1,2\n", 0.9).1.is_nan());
    }

    #[test]
    fn marking_stale_rows_leaves_the_other_tables_of_a_page_alone() {
        let dir = std::env::temp_dir().join(format!("xtask-stale-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let page = dir.join("page.md");
        let ties = "| run | run | test accuracy | common test rows | same prediction | both right |\n|---|---|---|---|---|---|\n| scratch seed 1 | scratch seed 3 | 0.9526 | 63 | 56 | 55 |\n";
        let text = format!(
            "| variant | a | b | c | d | e | commit |\n|---|---|---|---|---|---|---|\n| scratch | 1 | 2 | 3 | 4 | 5 | `nosuchcommit` |\n\n{ties}"
        );
        std::fs::write(&page, text).unwrap();
        mark_stale(&page, "variant", &["scratch"], 7).unwrap();
        let out = std::fs::read_to_string(&page).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            out.contains("| scratch | 1 | 2 | 3 | 4 | 5 | `nosuchcommit` **stale** |"),
            "{out}"
        );
        assert!(out.ends_with(ties), "{out}");
    }

    #[test]
    fn the_skip_summary_counts_each_reason() {
        let log = "SKIPPED [wgpu]: no adapter\nSKIPPED [torchvision]: no torch\nSKIPPED [wgpu]: no adapter\n";
        assert_eq!(
            skip_summary(log),
            "skip summary: 3 skipped:\n  1 x SKIPPED [torchvision]: no torch\n  2 x SKIPPED [wgpu]: no adapter"
        );
        assert!(skip_summary("").contains("0 skipped"));
    }
}
