//! `strata generate`: [`strata::run::generate`], printed.

use strata::run::{Generate, Result, generate};

use crate::args::GenerateArgs;

/// Runs `strata generate`: prints the prompt followed by the generated characters, or a
/// seq2seq run's decoding of the prompt's symbols.
///
/// # Errors
/// A run directory that does not generate, a prompt with characters outside the model's
/// vocabulary, invalid sampling settings.
pub fn run(args: &GenerateArgs) -> Result<()> {
    let request = Generate {
        prompt: args.prompt.clone(),
        length: args.length,
        temperature: args.temperature,
        top_k: args.top_k,
        seed: args.seed,
        beam: args.beam,
        samples: args.samples,
        class: args.class.clone(),
        out: args.out.clone(),
    };
    println!(
        "{}",
        generate(&args.run, args.backend.as_deref(), &request)?
    );
    Ok(())
}
