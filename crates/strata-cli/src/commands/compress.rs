//! `strata compress`: [`strata::run::compress`], printed.

use strata::run::{Compress, Console, Result, Silent, compress};

use crate::args::CompressArgs;

/// Runs `strata compress`.
///
/// # Errors
/// A sparsity outside [0, 1), a directory that is not a finished run of a model trained on
/// samples, training and I/O errors.
pub fn run(args: &CompressArgs) -> Result<()> {
    let request = Compress {
        prune: args.prune,
        fine_tune_epochs: args.fine_tune,
        curve: args.curve.clone(),
    };
    let (console, silent) = (Console::default(), Silent);
    let progress: &dyn strata::run::Progress = if args.quiet { &silent } else { &console };
    let done = compress(&args.run, &args.out, &request, progress)?;
    println!("{}", done.summary);
    for path in done.written {
        println!("written {}", path.display());
    }
    Ok(())
}
