//! Helpers shared by the binary's end-to-end tests.

#![allow(dead_code)] // each test file uses a different subset

use std::path::Path;
use std::process::{Command, Output};

/// Runs the `strata` binary with `args` (without `STRATA_BACKEND` from the environment).
pub fn strata(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .env_remove("STRATA_BACKEND")
        .output()
        .expect("the binary runs")
}

/// Its standard error.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Its standard output.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// A JSON file.
pub fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Asserts that `strata args` fails with exit code 1 and one line containing `expect`, and
/// no panic.
pub fn assert_clean_failure(args: &[&str], expect: &str) {
    let o = strata(args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "args {args:?}: {err}");
    assert!(
        err.contains(expect),
        "args {args:?}: expected `{expect}` in:\n{err}"
    );
    assert!(
        !err.contains("panicked")
            && !err.contains("RUST_BACKTRACE")
            && !err.contains("internal error"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "one line, got:\n{err}");
}
