//! `strata compress`: [`strata::run::compress`], printed.

use strata::run::{Compress, Console, Error, Granularity, Result, Silent, compress};

use crate::args::CompressArgs;

/// Runs `strata compress`.
///
/// # Errors
/// A sparsity outside [0, 1), a directory that is not a finished run of a model trained on
/// samples, training and I/O errors.
pub fn run(args: &CompressArgs) -> Result<()> {
    let quantize = match args.quantize.as_deref() {
        None => None,
        Some("int8") if args.per_channel => Some(Granularity::PerChannel),
        Some("int8") => Some(Granularity::PerTensor),
        Some(other) => {
            return Err(Error::Usage(format!(
                "--quantize supports int8, got `{other}`"
            )));
        }
    };
    let request = Compress {
        prune: args.prune,
        fine_tune_epochs: args.fine_tune,
        curve: args.curve.clone(),
        quantize,
        channels: args.prune_channels,
        calibrate: args.calibrate,
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
