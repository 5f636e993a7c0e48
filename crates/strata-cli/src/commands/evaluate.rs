//! `strata evaluate`: [`strata::run::evaluate`], printed.

use strata::run::{Result, evaluate};

use crate::args::EvaluateArgs;

/// Runs `strata evaluate`.
///
/// # Errors
/// A directory that is not a finished run, and data errors.
pub fn run(args: &EvaluateArgs) -> Result<()> {
    let ev = evaluate(&args.run, args.backend.as_deref(), args.dataset.as_deref())?;
    println!("{}", ev.summary);
    if let Some(path) = ev.written {
        println!("written to {}", path.display());
    }
    Ok(())
}
