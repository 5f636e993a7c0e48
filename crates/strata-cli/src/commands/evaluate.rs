//! `strata evaluate`: [`strata::run::evaluate`] (or [`strata::run::evaluate_perturbed`] with
//! `--perturb`, [`strata::run::evaluate_fairness`] with `--sensitive`), printed.

use strata::data::Augment;
use strata::metrics::FairnessConstraint;
use strata::run::{Error, Result, evaluate, evaluate_fairness, evaluate_perturbed};

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
        None if !args.sensitive.is_empty() => {
            let thresholds = args
                .thresholds
                .as_deref()
                .map(|t| {
                    t.parse::<FairnessConstraint>()
                        .map_err(|e| Error::Usage(format!("--thresholds: {e}")))
                })
                .transpose()?;
            evaluate_fairness(
                &args.run,
                backend,
                dataset,
                &args.sensitive,
                thresholds,
                args.seed,
            )?
        }
        None => evaluate(&args.run, backend, dataset)?,
    };
    println!("{}", ev.summary);
    if let Some(path) = ev.written {
        println!("written to {}", path.display());
    }
    Ok(())
}
