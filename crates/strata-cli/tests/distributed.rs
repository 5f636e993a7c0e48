//! Data-parallel training through Open MPI, two ranks on this machine (shared memory and
//! loopback): `mpirun -np 2 strata train ... --distributed mpi`.
//!
//! - Gradient equivalence: after an epoch, the weights of a 2-rank run with batch B per rank
//!   equal those of one process with batch 2B within 1e-5 (same seed, flex, no dropout), for
//!   the MLP and the CNN.
//! - A whole 2-rank `strata train` of the digits CNN reaches the single-process bar (0.98).
//! - One rank SIGKILLed mid-epoch ends the job with Open MPI's message naming it; the last
//!   checkpoint is intact, and `--resume` finishes the run with 1 rank and with 2.
//!
//! These need a build with the `mpi` feature and Open MPI's `mpirun`; `.ci/run` installs
//! them, so in CI a missing one fails the test, elsewhere it is a counted skip.

mod common;
use common::{json, stderr};

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Whether this build and machine can run two MPI ranks; a counted skip (a failure in CI)
/// when not.
fn mpi_ready() -> bool {
    if !cfg!(feature = "mpi") {
        strata::tensor::require::unmet(
            "mpi",
            "strata-cli built without the `mpi` feature (cargo test --features strata-cli/mpi)",
        );
        return false;
    }
    let found = Command::new("mpirun")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        strata::tensor::require::unmet(
            "mpi",
            "no `mpirun` on PATH (Debian: apt install openmpi-bin libopenmpi-dev)",
        );
    }
    found
}

/// `strata ARGS` under `mpirun -np RANKS`, each rank on one thread.
fn mpirun(ranks: usize, args: &[&str]) -> Command {
    let mut c = Command::new("mpirun");
    c.args([
        "--allow-run-as-root",
        "--oversubscribe",
        "--bind-to",
        "none",
    ])
    .args(["-np", &ranks.to_string()])
    // Each rank's environment: one thread, and no backend from the caller's shell.
    .args(["-x", "RAYON_NUM_THREADS=1"])
    .arg(env!("CARGO_BIN_EXE_strata"))
    .args(args)
    .env_remove("STRATA_BACKEND")
    .env_remove("STRATA_FAULT")
    // Containers often forbid the cross-process copies of the shared-memory transport.
    .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none");
    c
}

/// `strata ARGS` in one process.
fn single(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .env_remove("STRATA_BACKEND")
        .env_remove("STRATA_FAULT")
        .output()
        .expect("the binary runs")
}

/// Every tensor of a safetensors file (all F32 in a Strata model), by name.
fn tensors(path: &Path) -> BTreeMap<String, Vec<f32>> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, values)
        })
        .collect()
}

/// The largest absolute difference between two models' weights; a NaN, a missing tensor or
/// a length mismatch fails.
fn largest_gap(a: &Path, b: &Path) -> f32 {
    let (ta, tb) = (tensors(a), tensors(b));
    assert_eq!(
        ta.keys().collect::<Vec<_>>(),
        tb.keys().collect::<Vec<_>>(),
        "the two models have different tensors"
    );
    let mut gap = 0.0f32;
    for (name, va) in &ta {
        let vb = &tb[name];
        assert_eq!(va.len(), vb.len(), "{name}: lengths differ");
        for (x, y) in va.iter().zip(vb) {
            assert!(x.is_finite() && y.is_finite(), "{name}: {x} against {y}");
            gap = gap.max((x - y).abs());
        }
    }
    gap
}

/// One epoch of `model` on the digits: one process with batch 64 against two ranks with
/// batch 32 each.
fn equivalent_steps(model: &str, extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    let run = |batch: &'static str, out: &Path| -> Vec<String> {
        let mut a: Vec<String> = [
            "train",
            "--model",
            model,
            "--dataset",
            "digits",
            "--epochs",
            "1",
            "--dropout",
            "0",
            "--seed",
            "11",
            "--backend",
            "flex",
            "--quiet",
            "--batch-size",
            batch,
            "--out",
            out.to_str().unwrap(),
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        a.extend(extra.iter().map(ToString::to_string));
        a
    };
    let a = run("64", &one);
    let o = single(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));
    let mut b = run("32", &two);
    b.extend(["--distributed".to_string(), "mpi".to_string()]);
    let o = mpirun(2, &b.iter().map(String::as_str).collect::<Vec<_>>())
        .output()
        .unwrap();
    assert!(o.status.success(), "mpirun: {}", stderr(&o));
    let gap = largest_gap(
        &one.join("model.safetensors"),
        &two.join("model.safetensors"),
    );
    eprintln!("{model}: largest weight gap after one epoch {gap:.3e}");
    assert!(gap <= 1e-5, "{model}: weights differ by {gap}");
    // The same number of steps: one epoch of the same global batches.
    let (h1, h2) = (
        std::fs::read_to_string(one.join("history.csv")).unwrap(),
        std::fs::read_to_string(two.join("history.csv")).unwrap(),
    );
    assert_eq!(h1.lines().count(), h2.lines().count());
    // Validation is sharded and reduced: the same figures as one process's.
    let (m1, m2) = (
        json(&one.join("metrics.json")),
        json(&two.join("metrics.json")),
    );
    let (v1, v2) = (
        m1["valid"]["accuracy"].as_f64().unwrap(),
        m2["valid"]["accuracy"].as_f64().unwrap(),
    );
    assert!((v1 - v2).abs() < 1e-9, "valid accuracy {v1} against {v2}");
}

#[test]
fn two_ranks_take_the_steps_of_one_process_with_twice_the_batch() {
    if !mpi_ready() {
        return;
    }
    equivalent_steps("mlp", &[]);
    equivalent_steps("cnn", &["--batch-norm", "false"]);
}

#[test]
fn a_two_rank_cnn_reaches_the_single_process_bar() {
    if !mpi_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cnn");
    // 16 per rank: the global batch of 32 of the single-process recipe.
    let o = mpirun(
        2,
        &[
            "train",
            "--model",
            "cnn",
            "--dataset",
            "digits",
            "--batch-size",
            "16",
            "--backend",
            "flex",
            "--distributed",
            "mpi",
            "--out",
            out.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("data-parallel over MPI") && err.contains("2 ranks"),
        "{err}"
    );
    // Rank 0 alone reports: one summary line.
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(text.matches("test accuracy").count(), 1, "{text}");
    let acc = json(&out.join("metrics.json"))["test"]["accuracy"]
        .as_f64()
        .unwrap();
    eprintln!("2-rank CNN on the digits: test accuracy {acc:.4}");
    assert!(acc >= 0.98, "test accuracy {acc}");
}

/// A CNN on the digits with small batches, so that an epoch lasts long enough for a kill to
/// land inside one.
fn crash_run(out: &Path) -> Vec<String> {
    [
        "train",
        "--model",
        "cnn",
        "--dataset",
        "digits",
        "--epochs",
        "8",
        "--batch-size",
        "4",
        "--backend",
        "flex",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]
    .iter()
    .map(ToString::to_string)
    .collect()
}

/// The process ids of rank `rank` of the `strata` runs writing to `out`.
fn rank_pids(out: &Path, rank: usize) -> Vec<u32> {
    let want = format!("OMPI_COMM_WORLD_RANK={rank}");
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let env = std::fs::read(e.path().join("environ")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd);
        let env = String::from_utf8_lossy(&env);
        if cmd.contains(out.to_str().unwrap())
            && !cmd.starts_with("mpirun")
            && env.split('\0').any(|v| v == want)
        {
            pids.push(pid);
        }
    }
    pids
}

/// Epochs done according to the checkpoint, 0 when there is none.
fn epochs_done(out: &Path) -> u64 {
    let state = out.join("checkpoints/state.json");
    std::fs::read_to_string(state)
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .and_then(|v| v["epochs_done"].as_u64())
        .unwrap_or(0)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn a_killed_rank_ends_the_job_and_the_run_resumes_with_one_or_two_ranks() {
    if !mpi_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut args = crash_run(&out);
    args.extend(["--distributed".to_string(), "mpi".to_string()]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut job = mpirun(2, &argv)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first checkpoint, then kill rank 1 in the middle of the next epoch.
    let start = Instant::now();
    while epochs_done(&out) < 1 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no checkpoint after 120 s"
        );
        assert!(
            job.try_wait().unwrap().is_none(),
            "the job ended before its first checkpoint"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(30));
    let pids = rank_pids(&out, 1);
    assert_eq!(pids.len(), 1, "rank 1's process: {pids:?}");
    let killed = Command::new("kill")
        .args(["-9", &pids[0].to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let o = job.wait_with_output().unwrap();
    let err = stderr(&o);
    assert!(!o.status.success(), "the job went on without rank 1: {err}");
    assert!(
        err.contains("rank 1") && err.contains("signal 9"),
        "Open MPI's message should name the killed rank:\n{err}"
    );
    let done = epochs_done(&out);
    assert!(
        (1..8).contains(&done),
        "checkpoint after {done} epochs of 8"
    );
    eprintln!("rank 1 killed; checkpoint intact after {done} epochs of 8");

    // Resume with one rank (no mpirun) and with two.
    let one = dir.path().join("one");
    copy_dir(&out, &one);
    let o = single(&[
        "train",
        "--out",
        one.to_str().unwrap(),
        "--resume",
        "--quiet",
    ]);
    assert!(o.status.success(), "resume with one rank: {}", stderr(&o));
    assert_eq!(json(&one.join("metrics.json"))["epochs_run"], 8);

    let o = mpirun(
        2,
        &[
            "train",
            "--out",
            out.to_str().unwrap(),
            "--resume",
            "--quiet",
            "--distributed",
            "mpi",
        ],
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "resume with two ranks: {}", stderr(&o));
    let m = json(&out.join("metrics.json"));
    assert_eq!(m["epochs_run"], 8);
    assert!(m["test"]["accuracy"].as_f64().unwrap() > 0.9, "{m}");
}

#[test]
fn distributed_refuses_what_it_does_not_run() {
    let train = |extra: &[&'static str]| -> Vec<&'static str> {
        let mut a = vec!["train", "--model", "mlp", "--dataset", "iris"];
        a.extend(extra);
        a
    };
    // Whatever the build: an unknown engine is one line.
    let mut cases = vec![
        (train(&["--distributed", "nccl"]), "--distributed `nccl`"),
        (
            train(&["--devices", "0,1"]),
            "--devices 0,1: several devices in one process need burn's collective operations",
        ),
        (
            train(&["--devices", "0,1", "--backend", "ndarray"]),
            "a CPU backend is one device",
        ),
        (train(&["--devices", "2"]), "trains on its default device"),
    ];
    if cfg!(feature = "mpi") {
        // A single process is one rank: what does not run data-parallel is refused by name.
        let lm = ["train", "--model", "lstm", "--dataset", "shakespeare"];
        let mut lm = lm.to_vec();
        lm.extend(["--distributed", "mpi"]);
        cases.push((lm, "not lstm on shakespeare"));
        cases.push((
            train(&["--kfold", "3", "--distributed", "mpi"]),
            "--kfold does not run data-parallel",
        ));
    } else {
        cases.push((train(&["--distributed", "mpi"]), "built without MPI"));
    }
    for (args, expect) in cases {
        common::assert_clean_failure(&args, expect);
    }
}
