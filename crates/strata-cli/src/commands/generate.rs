//! `strata generate`: sample text from a trained character language model, or decode a
//! source with a trained seq2seq model.

use strata::arch::Sampling;

use crate::args::GenerateArgs;
use crate::commands::language::load_lm;
use crate::commands::seq2seq::transduce;
use crate::error::{Error, Result};

/// Runs `strata generate`: prints the prompt followed by the generated characters.
///
/// # Errors
/// A run directory that is not a language model, a prompt with characters outside the
/// model's vocabulary, invalid sampling settings.
pub fn run(args: &GenerateArgs) -> Result<()> {
    let config = crate::commands::evaluate::load_run_config(&args.run, args.backend.as_deref())?;
    if config.model == "seq2seq" {
        let prompt = args.prompt.as_deref().unwrap_or("");
        let source = prompt
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|t| !t.is_empty())
            .map(|t| {
                t.parse::<usize>().map_err(|_| {
                    Error::Usage(format!("--prompt: `{t}` is not a symbol (a number >= 0)"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if source.is_empty() {
            return Err(Error::Usage(
                "a seq2seq run needs --prompt with source symbols, e.g. \"3 1 4 1 5\"".into(),
            ));
        }
        let out = transduce(&args.run, args.backend.as_deref(), &source, args.beam)?;
        let text: Vec<String> = out.iter().map(ToString::to_string).collect();
        println!("{}", text.join(" "));
        return Ok(());
    }
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
