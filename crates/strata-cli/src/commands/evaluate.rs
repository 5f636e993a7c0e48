//! `strata evaluate`: [`strata::run::evaluate`] (or [`strata::run::evaluate_perturbed`] with
//! `--perturb`), printed.

use strata::data::Augment;
use strata::run::{Result, evaluate, evaluate_perturbed};

use crate::args::EvaluateArgs;

/// Runs `strata evaluate`.
///
/// # Errors
/// A directory that is not a finished run, and data errors.
pub fn run(args: &EvaluateArgs) -> Result<()> {
    let (backend, dataset) = (args.backend.as_deref(), args.dataset.as_deref());
    let ev = match &args.perturb {
        Some(spec) => {
            let perturb = Augment::parse(spec)?;
            evaluate_perturbed(&args.run, backend, dataset, &perturb, args.seed)?
        }
        None => evaluate(&args.run, backend, dataset)?,
    };
    println!("{}", ev.summary);
    if let Some(path) = ev.written {
        println!("written to {}", path.display());
    }
    Ok(())
}
