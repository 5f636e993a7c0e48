//! Atomic file writes: a uniquely named temporary file in the same directory
//! (`tempfile::NamedTempFile::new_in`), written and flushed to disk, then renamed over the
//! target (`persist`), then the directory flushed so the rename itself survives a crash. A
//! reader sees the old file or the new one, never half of one, and two threads writing at once
//! never share a temporary.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Writes `bytes` to `path` atomically.
///
/// # Errors
/// I/O errors, with the path.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "file".into());
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    // A temporary file is private (0600); the file it becomes keeps the permissions of the
    // file it replaces, or gets the usual 0644 (rw-r--r--, less what the umask removes).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).map_or(0o644, |m| m.permissions().mode() & 0o777);
        builder.permissions(std::fs::Permissions::from_mode(mode));
    }
    let mut tmp = builder.tempfile_in(dir).map_err(|e| Error::io(dir, e))?;
    let fault = injected_fault(&name);
    if fault == Some(Fault::During) {
        // Half the file reaches the disk, then the process dies as under SIGKILL: no
        // destructor runs, so the temporary stays behind, as it would.
        let _ = tmp.write_all(&bytes[..bytes.len() / 2]);
        let _ = tmp.as_file().sync_all();
        std::process::abort();
    }
    tmp.write_all(bytes).map_err(|e| Error::io(path, e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    // On failure the temporary is removed when `persist`'s error drops it.
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    // The rename lives in the directory: flush it too (where directories can be opened).
    if let Ok(d) = std::fs::File::open(dir) {
        d.sync_all().map_err(|e| Error::io(dir, e))?;
    }
    if fault == Some(Fault::After) {
        std::process::abort();
    }
    Ok(())
}

/// The environment variable of the crash-safety tests' fault injection: `during:NAME` kills
/// the process halfway through writing the file named `NAME` (say `model-3.bpk`), `after:NAME`
/// right after it is in place. Unset in normal use.
pub const FAULT_ENV: &str = "STRATA_FAULT";

#[derive(Debug, PartialEq, Eq)]
enum Fault {
    During,
    After,
}

/// The fault injected into the write of the file `name`, if any.
fn injected_fault(name: &str) -> Option<Fault> {
    let spec = std::env::var(FAULT_ENV).ok()?;
    match spec.split_once(':')? {
        ("during", n) if n == name => Some(Fault::During),
        ("after", n) if n == name => Some(Fault::After),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn threads_writing_at_once_never_share_a_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        std::thread::scope(|s| {
            for t in 0..8u8 {
                let p = &p;
                s.spawn(move || {
                    for _ in 0..20 {
                        write_atomic(p, &[t; 4096]).unwrap();
                    }
                });
            }
        });
        // Whatever won, the file is one writer's whole content, and no temporary is left.
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(bytes.len(), 4096);
        assert!(bytes.iter().all(|&b| b == bytes[0]));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn a_new_file_is_readable_by_others_and_a_replaced_one_keeps_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metrics.json");
        write_atomic(&p, b"{}").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        // As a plain `File::create` would make it under this process's umask, less write
        // permission for group and others.
        let plain = dir.path().join("plain");
        std::fs::write(&plain, b"").unwrap();
        assert_eq!(mode(&p), mode(&plain) & 0o644);
        assert_ne!(mode(&p) & 0o400, 0, "the owner can read it");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        write_atomic(&p, b"{ }").unwrap();
        assert_eq!(mode(&p), 0o600);
    }

    #[test]
    fn unwritable_target_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        // A directory cannot be replaced by a file.
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d").join("x"), b"").unwrap();
        assert!(write_atomic(&dir.path().join("d"), b"x").is_err());
    }
}
