//! `strata encode`: an autoencoder's codes for a file of rows
//! ([`strata::run::AutoencoderRun::encode_file`]), written as CSV.

use strata::run::{AutoencoderRun, Result};

use crate::args::EncodeArgs;

/// Runs `strata encode`.
///
/// # Errors
/// A directory that is not a finished autoencoder run, a bad input file.
pub fn run(args: &EncodeArgs) -> Result<()> {
    let run = AutoencoderRun::open(&args.run, args.backend.as_deref())?;
    let codes = run.encode_file(&args.input, args.class.as_deref())?;
    super::write_csv(
        args.output.as_deref(),
        &codes.to_csv(),
        &format!("{} codes", codes.len()),
        &args.run.join("codes.csv"),
    )
}
