//! Generation from a finished run: text from a character language model, the decoding of a
//! source by a seq2seq model, or samples of a VAE ([`generate`]).

use std::path::Path;

use strata_arch::Sampling;

use crate::error::{Error, Result};
use crate::evaluate::load_run_config;
use crate::family::family;
use crate::language::load_lm;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct Generate {
    /// Text to start from (a language model; default a newline), or the source symbols of a
    /// seq2seq run (`3 1 4 1 5`).
    pub prompt: Option<String>,
    /// Characters to generate.
    pub length: usize,
    /// Sampling temperature (0: always the most likely character).
    pub temperature: f64,
    /// Sample among the k most likely characters only.
    pub top_k: Option<usize>,
    /// Seed of the sampler.
    pub seed: u64,
    /// Beam width of a seq2seq run's decoding (1: greedy).
    pub beam: usize,
    /// Samples of a VAE.
    pub samples: usize,
    /// The class a conditional VAE samples (its name or index; default: each class in turn).
    pub class: Option<String>,
    /// Where a VAE's samples go: a `.png` grid or a `.npy` (default `generated.png` in the
    /// run directory).
    pub out: Option<std::path::PathBuf>,
}

impl Default for Generate {
    fn default() -> Self {
        Self {
            prompt: None,
            length: 300,
            temperature: 0.8,
            top_k: None,
            seed: 42,
            beam: 4,
            samples: 64,
            class: None,
            out: None,
        }
    }
}

/// Generates from the finished run in `dir` (on `backend`, or its own): for a language model,
/// the prompt followed by the generated characters; for a seq2seq run, the decoded symbols.
///
/// ```no_run
/// use strata_run::{Generate, generate};
/// let request = Generate { prompt: Some("ROMEO:".into()), length: 200, ..Default::default() };
/// println!("{}", generate("runs/lstm-shakespeare", None, &request)?);
/// # Ok::<(), strata_run::Error>(())
/// ```
///
/// # Errors
/// A run directory that does not generate, a prompt outside the model's vocabulary, invalid
/// sampling settings.
pub fn generate(
    dir: impl AsRef<Path>,
    backend: Option<&str>,
    request: &Generate,
) -> Result<String> {
    let dir = dir.as_ref();
    let config = load_run_config(dir, backend)?;
    family(&config.model)?.generate(dir, backend, request)
}

/// Samples of a generative run (a VAE's, a GAN's) written where `request` says (default
/// `DIR/generated.png`) by `write(samples, class, seed, path)`, which returns how many it
/// wrote; the line saying so.
///
/// # Errors
/// `write`'s.
pub(crate) fn write_generated(
    dir: &Path,
    request: &Generate,
    write: impl FnOnce(usize, Option<&str>, u64, &Path) -> Result<usize>,
) -> Result<String> {
    let out = request
        .out
        .clone()
        .unwrap_or_else(|| dir.join("generated.png"));
    let n = write(
        request.samples,
        request.class.as_deref(),
        request.seed,
        &out,
    )?;
    Ok(format!("{n} samples written to {}", out.display()))
}

/// Text from the character language model in `dir`: the prompt and what follows.
pub(crate) fn generate_text(
    dir: &Path,
    backend: Option<&str>,
    request: &Generate,
) -> Result<String> {
    let lm = load_lm(dir, backend)?;
    let prompt = request.prompt.clone().unwrap_or_else(|| "\n".into());
    if prompt.is_empty() {
        return Err(Error::Usage("--prompt must not be empty".into()));
    }
    let ids = lm.vocab.encode(&prompt)?;
    let sampling = Sampling {
        length: request.length,
        temperature: request.temperature,
        top_k: request.top_k,
        seed: request.seed,
    };
    let out = lm.model.generate(&ids, &sampling, &lm.device)?;
    Ok(format!("{prompt}{}", lm.vocab.decode(&out)))
}
