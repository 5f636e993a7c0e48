//! Built-in sequence transduction tasks whose correct answer is known: reverse, sort or copy a
//! random sequence of symbols. They test that a sequence-to-sequence model's attention and
//! masks are right: a model can only reverse a sequence by attending to the right source
//! position for each target position.
//!
//! Sources are drawn uniformly (length uniform in `min_len..=max_len`, each symbol uniform in
//! `0..n_symbols`) and kept distinct across the whole draw, so no test source was seen in
//! training.
//!
//! ```
//! use strata_data::{TransductionConfig, TransductionTask};
//! let config = TransductionConfig::new(TransductionTask::Reverse);
//! let [train, valid, test] = config.splits([100, 10, 10], 7)?;
//! assert_eq!(train.len(), 100);
//! let (src, tgt) = &test[0];
//! assert_eq!(tgt.iter().rev().collect::<Vec<_>>(), src.iter().collect::<Vec<_>>());
//! # Ok::<(), strata_data::Error>(())
//! ```

use std::collections::HashSet;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What the target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransductionTask {
    /// The source backwards.
    Reverse,
    /// The source's symbols in increasing order.
    Sort,
    /// The source itself.
    Copy,
}

impl TransductionTask {
    /// Parses `reverse`, `sort` or `copy`.
    ///
    /// # Errors
    /// [`Error::Invalid`] for another name.
    pub fn by_name(name: &str) -> Result<Self> {
        Ok(match name {
            "reverse" => Self::Reverse,
            "sort" => Self::Sort,
            "copy" => Self::Copy,
            other => {
                return Err(Error::Invalid(format!(
                    "unknown transduction task `{other}`: expected reverse, sort or copy"
                )));
            }
        })
    }

    /// The task's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Reverse => "reverse",
            Self::Sort => "sort",
            Self::Copy => "copy",
        }
    }

    /// The correct target for `source`.
    pub fn target(self, source: &[usize]) -> Vec<usize> {
        let mut t = source.to_vec();
        match self {
            Self::Reverse => t.reverse(),
            Self::Sort => t.sort_unstable(),
            Self::Copy => {}
        }
        t
    }
}

/// A task and the sequences it draws.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransductionConfig {
    /// What the target is.
    pub task: TransductionTask,
    /// Symbols `0..n_symbols`, default 10.
    pub n_symbols: usize,
    /// Shortest source, default 4.
    pub min_len: usize,
    /// Longest source, default 12.
    pub max_len: usize,
}

/// A source and its target.
pub type Pair = (Vec<usize>, Vec<usize>);

impl TransductionConfig {
    /// A task with 10 symbols and sources of 4 to 12 symbols.
    pub fn new(task: TransductionTask) -> Self {
        Self {
            task,
            n_symbols: 10,
            min_len: 4,
            max_len: 12,
        }
    }

    /// Distinct sources of this length range.
    fn n_possible(&self) -> f64 {
        (self.min_len..=self.max_len)
            .map(|l| (self.n_symbols as f64).powi(l as i32))
            .sum()
    }

    /// Draws `sizes[0] + sizes[1] + sizes[2]` distinct sources with their targets and cuts
    /// them into train, validation and test, in that order; the same seed gives the same sets.
    ///
    /// # Errors
    /// [`Error::Invalid`] for no symbols, an empty or reversed length range, or more sources
    /// than half the distinct ones there are (drawing would crawl).
    pub fn splits(&self, sizes: [usize; 3], seed: u64) -> Result<[Vec<Pair>; 3]> {
        if self.n_symbols == 0 || self.min_len == 0 || self.min_len > self.max_len {
            return Err(Error::Invalid(format!(
                "a transduction task needs symbols and 1 <= min_len <= max_len, got {} symbols, lengths {}..={}",
                self.n_symbols, self.min_len, self.max_len
            )));
        }
        let total: usize = sizes.iter().sum();
        if total as f64 > self.n_possible() / 2.0 {
            return Err(Error::Invalid(format!(
                "{total} distinct sources asked for, but only {} exist",
                self.n_possible()
            )));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut seen = HashSet::with_capacity(total);
        let mut pairs = Vec::with_capacity(total);
        while pairs.len() < total {
            let len = rng.random_range(self.min_len..=self.max_len);
            let source: Vec<usize> = (0..len)
                .map(|_| rng.random_range(0..self.n_symbols))
                .collect();
            if seen.insert(source.clone()) {
                let target = self.task.target(&source);
                pairs.push((source, target));
            }
        }
        let test = pairs.split_off(sizes[0] + sizes[1]);
        let valid = pairs.split_off(sizes[0]);
        Ok([pairs, valid, test])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_are_distinct_correct_and_reproducible() {
        for task in [
            TransductionTask::Reverse,
            TransductionTask::Sort,
            TransductionTask::Copy,
        ] {
            let c = TransductionConfig::new(task);
            let [a, b, t] = c.splits([2000, 200, 200], 1).unwrap();
            assert_eq!((a.len(), b.len(), t.len()), (2000, 200, 200));
            let train: HashSet<&Vec<usize>> = a.iter().map(|p| &p.0).collect();
            assert!(b.iter().chain(&t).all(|p| !train.contains(&p.0)));
            for (s, y) in a.iter().chain(&t) {
                assert!((4..=12).contains(&s.len()) && s.iter().all(|&x| x < 10));
                assert_eq!(y.len(), s.len());
                match task {
                    TransductionTask::Reverse => assert!(s.iter().eq(y.iter().rev())),
                    TransductionTask::Sort => assert!(y.is_sorted()),
                    TransductionTask::Copy => assert_eq!(s, y),
                }
            }
            assert_eq!(c.splits([2000, 200, 200], 1).unwrap()[2], t);
        }
        assert_eq!(
            TransductionTask::by_name("sort").unwrap(),
            TransductionTask::Sort
        );
        assert!(TransductionTask::by_name("rotate").is_err());
    }

    #[test]
    fn impossible_requests_are_errors() {
        let mut c = TransductionConfig::new(TransductionTask::Copy);
        c.n_symbols = 2;
        c.min_len = 1;
        c.max_len = 2;
        assert!(
            c.splits([10, 1, 1], 0)
                .unwrap_err()
                .to_string()
                .contains("only 6")
        );
        c.min_len = 3;
        assert!(c.splits([1, 1, 1], 0).is_err());
    }
}
