//! `strata generate`: sample text from a trained character language model.

use strata::arch::Sampling;

use crate::args::GenerateArgs;
use crate::commands::language::load_lm;
use crate::error::{Error, Result};

/// Runs `strata generate`: prints the prompt followed by the generated characters.
///
/// # Errors
/// A run directory that is not a language model, a prompt with characters outside the
/// model's vocabulary, invalid sampling settings.
pub fn run(args: &GenerateArgs) -> Result<()> {
    let lm = load_lm(&args.run, args.backend.as_deref())?;
    let prompt = args.prompt.clone().unwrap_or_else(|| "\n".into());
    if prompt.is_empty() {
        return Err(Error::Usage("--prompt must not be empty".into()));
    }
    let ids = lm.vocab.encode(&prompt)?;
    let sampling = Sampling {
        length: args.length,
        temperature: args.temperature,
        top_k: args.top_k,
        seed: args.seed,
    };
    let out = lm.model.generate(&ids, &sampling, &lm.device)?;
    println!("{prompt}{}", lm.vocab.decode(&out));
    Ok(())
}
