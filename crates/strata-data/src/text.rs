//! Text for character-level language models: the embedded Shakespeare corpus, a character
//! vocabulary (saved with a model so generation works from a run directory), a contiguous
//! train/validation/test split, and the batch streams of truncated back-propagation through
//! time.
//!
//! ```
//! use strata_data::{CharVocab, TokenStreams};
//! let text = "to be or not to be";
//! let vocab = CharVocab::from_text(text);
//! let ids = vocab.encode(text)?;
//! assert_eq!(vocab.decode(&ids), text);
//! // 2 parallel streams, chunks of 4 steps; targets are the inputs shifted by one.
//! let streams = TokenStreams::new(&ids, 2)?;
//! let chunk = streams.chunk(0, 4);
//! assert_eq!(chunk.inputs.len(), 2 * 4);
//! assert_eq!(chunk.targets[0], chunk.inputs[1]);
//! # Ok::<(), strata_data::Error>(())
//! ```

use std::collections::BTreeSet;
use std::io::Read;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

static SHAKESPEARE_GZ: &[u8] = include_bytes!("../data/shakespeare_gut.txt.gz");

/// The works of Shakespeare (42 Project Gutenberg texts, headers removed, concatenated):
/// about 5.0 million characters, 84 distinct.
pub fn shakespeare() -> String {
    let mut text = String::new();
    flate2::read::GzDecoder::new(SHAKESPEARE_GZ)
        .read_to_string(&mut text)
        .expect("embedded Shakespeare decompresses");
    text
}

/// A character vocabulary: the distinct characters of a text, sorted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CharVocab {
    /// The characters; a character's index is its token id.
    pub chars: Vec<char>,
}

impl CharVocab {
    /// The vocabulary of `text`.
    pub fn from_text(text: &str) -> Self {
        let set: BTreeSet<char> = text.chars().collect();
        Self {
            chars: set.into_iter().collect(),
        }
    }

    /// Number of characters.
    pub fn len(&self) -> usize {
        self.chars.len()
    }

    /// Whether the vocabulary is empty.
    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }

    /// Token ids of `text`.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the first character (and its position) not in the vocabulary.
    pub fn encode(&self, text: &str) -> Result<Vec<usize>> {
        text.chars()
            .enumerate()
            .map(|(pos, c)| {
                self.chars.binary_search(&c).map_err(|_| {
                    Error::Invalid(format!(
                        "character {c:?} (U+{:04X}) at position {pos} is not in the model's vocabulary of {} characters",
                        c as u32,
                        self.chars.len()
                    ))
                })
            })
            .collect()
    }

    /// The text of token ids (ids outside the vocabulary become `\u{FFFD}`).
    pub fn decode(&self, ids: &[usize]) -> String {
        ids.iter()
            .map(|&i| self.chars.get(i).copied().unwrap_or('\u{FFFD}'))
            .collect()
    }
}

/// Contiguous parts of a token sequence: the first `1 - valid - test` for training, then
/// validation, then test (no shuffling: neighbouring characters stay together).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextSplit {
    /// Training tokens.
    pub train: Vec<usize>,
    /// Validation tokens.
    pub valid: Vec<usize>,
    /// Test tokens.
    pub test: Vec<usize>,
}

/// Splits `tokens` contiguously.
///
/// # Errors
/// [`Error::Invalid`] for fractions outside `(0, 1)` or summing to 1 or more;
/// [`Error::TooSmall`] when a part would hold fewer than two tokens.
pub fn contiguous_split(tokens: &[usize], valid: f64, test: f64) -> Result<TextSplit> {
    if !(valid > 0.0 && test > 0.0 && valid + test < 1.0) {
        return Err(Error::Invalid(format!(
            "validation and test fractions must be > 0 with a sum < 1, got {valid} and {test}"
        )));
    }
    let n = tokens.len();
    let n_test = (n as f64 * test).round() as usize;
    let n_valid = (n as f64 * valid).round() as usize;
    let n_train = n.saturating_sub(n_test + n_valid);
    if n_test < 2 || n_valid < 2 || n_train < 2 {
        return Err(Error::TooSmall(format!(
            "{n} tokens give parts of {n_train}, {n_valid} and {n_test}; each needs at least 2"
        )));
    }
    Ok(TextSplit {
        train: tokens[..n_train].to_vec(),
        valid: tokens[n_train..n_train + n_valid].to_vec(),
        test: tokens[n_train + n_valid..].to_vec(),
    })
}

/// A token sequence cut into `batch` equal parallel streams, read chunk by chunk. Chunk `k` of
/// every stream follows chunk `k - 1` of the same stream, so a model's final state after one
/// chunk is the right initial state for the next: truncated back-propagation through time.
#[derive(Debug, Clone)]
pub struct TokenStreams {
    /// `[batch, stream_len + 1]` row-major (one extra token for the last target).
    tokens: Vec<usize>,
    batch: usize,
    stream_len: usize,
}

/// One chunk of every stream: inputs and next-token targets, row-major `[batch, len]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenChunk {
    /// Input tokens.
    pub inputs: Vec<usize>,
    /// The token after each input.
    pub targets: Vec<usize>,
    /// Streams.
    pub batch: usize,
    /// Steps.
    pub len: usize,
}

impl TokenStreams {
    /// Cuts `tokens` into `batch` streams (the remainder that does not divide is dropped).
    ///
    /// # Errors
    /// [`Error::Invalid`] for `batch = 0`; [`Error::TooSmall`] when a stream would hold fewer
    /// than one input and its target.
    pub fn new(tokens: &[usize], batch: usize) -> Result<Self> {
        if batch == 0 {
            return Err(Error::Invalid("batch must be >= 1".into()));
        }
        let per = tokens.len() / batch;
        if per < 2 {
            return Err(Error::TooSmall(format!(
                "{} tokens cannot make {batch} streams of at least 2",
                tokens.len()
            )));
        }
        Ok(Self {
            tokens: tokens[..per * batch].to_vec(),
            batch,
            stream_len: per - 1,
        })
    }

    /// Parallel streams.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Input steps per stream.
    pub fn stream_len(&self) -> usize {
        self.stream_len
    }

    /// Chunks of `len` steps in one pass over the streams (the last may be shorter).
    pub fn n_chunks(&self, len: usize) -> usize {
        self.stream_len.div_ceil(len.max(1))
    }

    /// Chunk `k` of `len` steps (wrapping around after the last chunk).
    pub fn chunk(&self, k: usize, len: usize) -> TokenChunk {
        let len = len.max(1);
        let start = (k % self.n_chunks(len)) * len;
        let steps = len.min(self.stream_len - start);
        let row = self.stream_len + 1;
        let mut inputs = Vec::with_capacity(self.batch * steps);
        let mut targets = Vec::with_capacity(self.batch * steps);
        for b in 0..self.batch {
            let s = &self.tokens[b * row + start..b * row + start + steps + 1];
            inputs.extend_from_slice(&s[..steps]);
            targets.extend_from_slice(&s[1..]);
        }
        TokenChunk {
            inputs,
            targets,
            batch: self.batch,
            len: steps,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shakespeare_has_its_documented_vocabulary() {
        let text = shakespeare();
        assert!(text.len() > 4_900_000, "{}", text.len());
        let v = CharVocab::from_text(&text);
        assert_eq!(v.len(), 84);
        assert!(text.starts_with("ALL'S WELL THAT ENDS WELL"));
    }

    #[test]
    fn unknown_characters_are_named() {
        let v = CharVocab::from_text("abc");
        let e = v.encode("abz").unwrap_err().to_string();
        assert!(e.contains("'z'") && e.contains("position 2"), "{e}");
    }

    #[test]
    fn splits_are_contiguous_and_complete() {
        let t: Vec<usize> = (0..100).collect();
        let s = contiguous_split(&t, 0.1, 0.2).unwrap();
        assert_eq!((s.train.len(), s.valid.len(), s.test.len()), (70, 10, 20));
        assert_eq!([s.train, s.valid, s.test].concat(), t);
        assert!(contiguous_split(&t, 0.5, 0.5).is_err());
        assert!(contiguous_split(&[1, 2, 3], 0.1, 0.1).is_err());
    }

    #[test]
    fn chunks_continue_their_streams() {
        let t: Vec<usize> = (0..23).collect();
        let s = TokenStreams::new(&t, 2).unwrap(); // streams 0..11 and 11..22, 10 steps each
        assert_eq!((s.stream_len(), s.n_chunks(4)), (10, 3));
        let c0 = s.chunk(0, 4);
        let c1 = s.chunk(1, 4);
        let c2 = s.chunk(2, 4);
        assert_eq!(c0.inputs, vec![0, 1, 2, 3, 11, 12, 13, 14]);
        assert_eq!(c0.targets, vec![1, 2, 3, 4, 12, 13, 14, 15]);
        assert_eq!(c1.inputs[..4], [4, 5, 6, 7]);
        assert_eq!((c2.len, c2.inputs.clone()), (2, vec![8, 9, 19, 20]));
        assert_eq!(c2.targets, vec![9, 10, 20, 21]);
        assert_eq!(s.chunk(3, 4), c0);
        assert!(TokenStreams::new(&t, 20).is_err());
    }
}
