//! `strata attack`: [`strata::run::attack`], printed.

use strata::run::{AttackRequest, Error, Result, attack};
use strata::train::{Attack, AttackMethod, Norm};

use crate::args::AttackArgs;

/// Runs `strata attack`.
///
/// # Errors
/// An unknown method or norm, invalid settings, a directory that is not a finished classifier
/// run, data errors.
pub fn run(args: &AttackArgs) -> Result<()> {
    let method = match args.method.as_str() {
        "fgsm" => AttackMethod::Fgsm,
        "pgd" => AttackMethod::Pgd,
        other => {
            return Err(Error::Usage(format!(
                "--method must be fgsm or pgd, got `{other}`"
            )));
        }
    };
    let norm = match args.norm.as_str() {
        "inf" | "linf" => Norm::Inf,
        "2" | "l2" => Norm::L2,
        other => {
            return Err(Error::Usage(format!(
                "--norm must be inf or 2, got `{other}`"
            )));
        }
    };
    let base = match method {
        AttackMethod::Fgsm => Attack::fgsm(args.eps),
        AttackMethod::Pgd => Attack::pgd(args.eps),
    };
    let request = AttackRequest {
        attack: Attack {
            norm,
            steps: args.steps,
            step_size: args.step_size,
            restarts: args.restarts,
            seed: args.seed,
            ..base
        },
        curve: args.curve.clone(),
        dataset: args.dataset.clone(),
        limit: args.limit,
    };
    let done = attack(&args.run, args.backend.as_deref(), &request)?;
    println!("{}", done.summary);
    for path in &done.written {
        println!("written: {}", path.display());
    }
    Ok(())
}
