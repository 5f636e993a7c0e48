//! Crash safety, measured: `strata train` killed at many points (SIGKILL in the middle of an
//! epoch, a death halfway through a checkpoint file or right after one) resumes with
//! `--resume` from the last complete checkpoint and ends with the per-epoch history and the
//! test metrics of an uninterrupted run, bit for bit (flex). A checkpoint file damaged after
//! the fact (bytes flipped, cut short) is refused on resume with one line naming it, and the
//! run directory is left exactly as it was.

mod common;
use common::{assert_clean_failure, json, stderr};

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A CNN on the digits with small batches: epochs long enough (~0.5 s) for a timed kill to
/// land inside one, and six of them.
const RUN: &[&str] = &[
    "train",
    "--model",
    "cnn",
    "--dataset",
    "digits",
    "--epochs",
    "6",
    "--batch-size",
    "8",
    "--backend",
    "flex",
    "--quiet",
];

fn train(out: &Path, resume: bool, fault: Option<&str>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_strata"));
    c.args(RUN).args(["--out", out.to_str().unwrap()]);
    if resume {
        c.arg("--resume");
    }
    c.env_remove("STRATA_BACKEND").env_remove("STRATA_FAULT");
    if let Some(f) = fault {
        c.env("STRATA_FAULT", f);
    }
    c.output().expect("the binary runs")
}

/// The per-epoch figures of `history.csv` (every column but the wall time).
fn history(out: &Path) -> Vec<String> {
    std::fs::read_to_string(out.join("history.csv"))
        .unwrap()
        .lines()
        .map(|l| l.rsplit_once(',').unwrap().0.to_string())
        .collect()
}

/// Epochs done according to the checkpoint, 0 when there is none.
fn epochs_done(out: &Path) -> u64 {
    let state = out.join("checkpoints/state.json");
    if state.exists() {
        json(&state)["epochs_done"].as_u64().unwrap()
    } else {
        0
    }
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let name = p.strip_prefix(dir).unwrap().display().to_string();
                files.insert(name, std::fs::read(&p).unwrap());
            }
        }
    }
    files
}

fn assert_same_run(reference: &Path, out: &Path, how: &str) {
    let (a, b) = (history(reference), history(out));
    assert_eq!(a.len(), 7, "header and 6 epochs: {a:?}");
    assert_eq!(a, b, "{how}: the per-epoch history differs");
    let (ma, mb) = (
        json(&reference.join("metrics.json")),
        json(&out.join("metrics.json")),
    );
    assert_eq!(ma["test"], mb["test"], "{how}: the test metrics differ");
    assert_eq!(mb["epochs_run"], 6);
}

#[test]
fn killed_runs_resume_to_the_uninterrupted_result() {
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("whole");
    let o = train(&reference, false, None);
    assert!(o.status.success(), "{}", stderr(&o));

    // Deaths at chosen points of the checkpoint writes, one after another in one run.
    let out = dir.path().join("faults");
    let mut resume = false;
    for (fault, done_after) in [
        ("during:best.bpk", 0), // epoch 1's best weights (written first), half written
        ("during:state.json", 0), // the first progress file, half written
        ("during:model-2.bpk", 1), // epoch 2's weights, half written
        ("after:model-2.bpk", 1), // epoch 2's weights in place, its optimizer not
        ("during:optim-3.bpk", 2), // epoch 3's optimizer, half written
        ("after:optim-4.bpk", 3), // epoch 4's files in place, its progress not
    ] {
        let o = train(&out, resume, Some(fault));
        assert!(
            !o.status.success(),
            "{fault}: the injected death did not happen"
        );
        assert_eq!(
            epochs_done(&out),
            done_after,
            "{fault}: the last complete checkpoint"
        );
        resume = true;
    }
    let o = train(&out, true, None);
    assert!(o.status.success(), "final resume: {}", stderr(&o));
    assert_same_run(&reference, &out, "after injected deaths");
    let leftovers: Vec<String> = snapshot(&out)
        .into_keys()
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporaries left: {leftovers:?}");

    // SIGKILL at times spread over the run, each resume going on from wherever it stopped.
    let out = dir.path().join("killed");
    let start = Instant::now();
    let mut kills = 0;
    let mut delay = Duration::from_millis(150);
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no finish after {kills} kills"
        );
        let mut c = Command::new(env!("CARGO_BIN_EXE_strata"));
        c.args(RUN)
            .args(["--out", out.to_str().unwrap(), "--resume"])
            .env_remove("STRATA_BACKEND")
            .env_remove("STRATA_FAULT")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let t = Instant::now();
        while t.elapsed() < delay && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Some(status) = child.try_wait().unwrap() {
            let o = child.wait_with_output().unwrap();
            assert!(status.success(), "{}", stderr(&o));
            break;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        delay += Duration::from_millis(170);
    }
    assert!(
        kills >= 3,
        "only {kills} kills landed before the run finished"
    );
    eprintln!("SIGKILLed {kills} times, then finished");
    assert_same_run(&reference, &out, "after SIGKILLs");
}

#[test]
fn a_damaged_checkpoint_is_refused_by_name_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r");
    let o = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(RUN)
        .args(["--out", out.to_str().unwrap(), "--pause-after", "2"])
        .env_remove("STRATA_BACKEND")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let good = snapshot(&out);
    let resume = [
        "train",
        "--out",
        out.to_str().unwrap(),
        "--resume",
        "--quiet",
    ];
    for (file, damage) in [
        ("model-2.bpk", "flip"),
        ("model-2.bpk", "cut"),
        ("optim-2.bpk", "flip"),
        ("optim-2.bpk", "cut"),
        ("state.json", "cut"),
    ] {
        let path = out.join("checkpoints").join(file);
        let mut bytes = good[&format!("checkpoints/{file}")].clone();
        match damage {
            "flip" => {
                let at = bytes.len() * 2 / 3;
                bytes[at] ^= 0x5a;
            }
            _ => bytes.truncate(bytes.len() / 2),
        }
        std::fs::write(&path, &bytes).unwrap();
        let damaged = snapshot(&out);
        assert_clean_failure(&resume, file);
        assert_eq!(
            snapshot(&out),
            damaged,
            "{file} {damage}: the run directory changed"
        );
        std::fs::write(&path, &good[&format!("checkpoints/{file}")]).unwrap();
    }
    // Repaired, the same run resumes and finishes.
    let o = common::strata(&resume);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json(&out.join("metrics.json"))["epochs_run"], 6);
}
