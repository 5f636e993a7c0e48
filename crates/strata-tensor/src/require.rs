//! What a test or an example needs that a machine may lack (a usable wgpu, Fashion-MNIST, a
//! Python with torchvision), and what happens when it is missing: a skip that is printed and
//! counted, or, where the need is required, a failure.
//!
//! A need is required when the `CI` environment variable is set (to anything but empty,
//! `false` or `0`) and the need is one that CI installs ([`CI_REQUIREMENTS`]), or when
//! `STRATA_REQUIRE` lists it (comma-separated; `all` requires every need). So in CI a broken
//! wgpu or a missing data set fails the test instead of passing it quietly. Each skip is also
//! appended, one line, to the file named by `STRATA_SKIP_LOG` when set: `cargo xtask ci`
//! collects them into its summary.
//!
//! ```
//! use strata_tensor::require::{is_required_in, unmet};
//! // Under CI=true, wgpu is required; a need CI does not install is not.
//! assert!(is_required_in("wgpu", Some("true"), None));
//! assert!(!is_required_in("torchvision", Some("true"), None));
//! assert!(is_required_in("torchvision", None, Some("wgpu, torchvision")));
//! assert!(!is_required_in("wgpu", Some("false"), None));
//! ```
//!
//! In a test: `if !available { return unmet("wgpu", "no Vulkan adapter"); }` ([`unmet`]).

use std::io::Write;

/// The variable that lists needs to require outside CI (`wgpu,fashion-mnist`, or `all`).
pub const REQUIRE_ENV: &str = "STRATA_REQUIRE";

/// The variable naming a file to which every skip appends one line.
pub const SKIP_LOG_ENV: &str = "STRATA_SKIP_LOG";

/// The needs that `.ci/run` installs, and so requires whenever `CI` is set.
pub const CI_REQUIREMENTS: [&str; 3] = ["wgpu", "fashion-mnist", "mpi"];

/// Whether `need` is required, given the values of `CI` and `STRATA_REQUIRE`.
pub fn is_required_in(need: &str, ci: Option<&str>, require: Option<&str>) -> bool {
    let ci = ci.is_some_and(|v| !matches!(v.trim(), "" | "0" | "false" | "False" | "FALSE"));
    let listed = require.is_some_and(|list| {
        list.split(',')
            .map(str::trim)
            .any(|n| n.eq_ignore_ascii_case(need) || n.eq_ignore_ascii_case("all"))
    });
    listed || (ci && CI_REQUIREMENTS.contains(&need))
}

/// Whether `need` is required in this process's environment.
pub fn is_required(need: &str) -> bool {
    is_required_in(
        need,
        std::env::var("CI").ok().as_deref(),
        std::env::var(REQUIRE_ENV).ok().as_deref(),
    )
}

/// Reports that `need` is not met here, for the reason `why`.
///
/// # Panics
/// When `need` is [required](is_required): the test fails with `why`. Otherwise it prints
/// `SKIPPED [need]: why` to standard error, appends the same line to `STRATA_SKIP_LOG` when
/// that is set, and returns so the caller can return.
pub fn unmet(need: &str, why: &str) {
    let log = std::env::var(SKIP_LOG_ENV).ok().filter(|p| !p.is_empty());
    report(need, why, is_required(need), log.as_deref());
}

fn report(need: &str, why: &str, required: bool, log: Option<&str>) {
    if required {
        panic!("required `{need}` is not met: {why} (required because CI or {REQUIRE_ENV} is set)");
    }
    let line = format!("SKIPPED [{need}]: {why}");
    eprintln!("{line}");
    if let Some(path) = log
        && let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    {
        // One write per line: appends of a short line from several test processes do not
        // interleave.
        let _ = f.write_all(format!("{line}\n").as_bytes());
    }
}

/// Runs `f` on its own thread and waits at most `limit` for it: `Some` of its value, or
/// `None` when it is still running then (a hang). The no-panic property tests of every parser
/// use it so that an input which makes a parser loop fails the test instead of stalling it.
///
/// # Panics
/// When `f` panics: the panic is passed on with its message.
pub fn within<T: Send + 'static>(
    limit: std::time::Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => {
            let _ = handle.join();
            Some(v)
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Err(payload) => std::panic::resume_unwind(payload),
            Ok(()) => None,
        },
        // The thread is left running: a test fails on `None`.
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ci_requires_what_it_installs_and_the_list_adds_more() {
        for ci in ["true", "1", "yes"] {
            assert!(is_required_in("wgpu", Some(ci), None));
            assert!(is_required_in("fashion-mnist", Some(ci), None));
        }
        for ci in [None, Some(""), Some("0"), Some("false")] {
            assert!(!is_required_in("wgpu", ci, None), "{ci:?}");
        }
        assert!(is_required_in("anything", None, Some("all")));
        assert!(is_required_in(
            "Fashion-MNIST",
            None,
            Some("wgpu,fashion-mnist")
        ));
        assert!(!is_required_in("wgpu", None, Some("fashion-mnist")));
    }

    #[test]
    fn a_skip_is_logged_when_not_required() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("skips.log");
        let log = log.to_str().unwrap();
        report("need-a", "a reason", false, Some(log));
        report("need-b", "another", false, Some(log));
        let text = std::fs::read_to_string(log).unwrap();
        assert_eq!(
            text,
            "SKIPPED [need-a]: a reason\nSKIPPED [need-b]: another\n"
        );
    }

    #[test]
    fn within_returns_values_and_reports_hangs() {
        use std::time::Duration;
        assert_eq!(within(Duration::from_secs(5), || 2 + 2), Some(4));
        let hang = within(Duration::from_millis(50), || {
            std::thread::sleep(Duration::from_secs(2));
        });
        assert_eq!(hang, None);
    }

    #[test]
    #[should_panic(expected = "inner boom")]
    fn within_passes_a_panic_on() {
        within(std::time::Duration::from_secs(5), || panic!("inner boom"));
    }

    #[test]
    #[should_panic(expected = "required `x-need` is not met: gone")]
    fn a_required_need_fails() {
        report("x-need", "gone", true, None);
    }
}
