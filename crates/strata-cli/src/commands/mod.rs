//! One module per command: each turns its flags into a call of `strata::run` and prints.

pub mod attack;
pub mod compress;
pub mod encode;
pub mod evaluate;
pub mod explain;
pub mod generate;
pub mod list;
pub mod predict;
pub mod train;

use std::path::Path;

/// Writes `csv` to `output` (`-`: standard output), else to `default`, and says where.
///
/// # Errors
/// I/O errors.
pub fn write_csv(
    output: Option<&Path>,
    csv: &str,
    what: &str,
    default: &Path,
) -> strata::run::Result<()> {
    match output {
        Some(p) if p.as_os_str() == "-" => print!("{csv}"),
        other => {
            let path = other.unwrap_or(default);
            strata::train::write_atomic(path, csv.as_bytes())?;
            println!("{what} written to {}", path.display());
        }
    }
    Ok(())
}
