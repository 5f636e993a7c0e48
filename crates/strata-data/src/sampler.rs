//! Epoch orderings: shuffled, and class-balanced (for imbalanced data).

use rand::SeedableRng;
use rand::distr::{Distribution, weighted::WeightedIndex};
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How the training samples of an epoch are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sampling {
    /// Every sample once, in a seeded random order (default).
    #[default]
    Shuffle,
    /// As many draws as samples, with replacement, each class equally likely.
    Balanced,
}

/// A seeded random permutation of `0..n` for one epoch: the same `(seed, epoch)` always gives
/// the same order, which is what lets a resumed run repeat an uninterrupted one.
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(strata_tensor::derive_seed(seed, epoch as u64));
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(&mut rng);
    idx
}

/// Draws epochs in which every class is equally likely, whatever its frequency.
#[derive(Debug, Clone)]
pub struct BalancedSampler {
    weights: WeightedIndex<f64>,
    n: usize,
}

impl BalancedSampler {
    /// A sampler over samples labelled `labels`: each sample's weight is `1 / count(its class)`.
    ///
    /// # Errors
    /// When `labels` is empty.
    pub fn new(labels: &[usize]) -> Result<Self> {
        if labels.is_empty() {
            return Err(Error::TooSmall(
                "balanced sampling needs at least one sample".into(),
            ));
        }
        let n_classes = labels.iter().max().map_or(0, |m| m + 1);
        let mut counts = vec![0usize; n_classes];
        for &l in labels {
            counts[l] += 1;
        }
        let weights = labels.iter().map(|&l| 1.0 / counts[l] as f64);
        Ok(Self {
            weights: WeightedIndex::new(weights)
                .map_err(|e| Error::Invalid(format!("balanced sampler: {e}")))?,
            n: labels.len(),
        })
    }

    /// The indices of one epoch (`len(labels)` draws with replacement).
    pub fn epoch(&self, seed: u64, epoch: usize) -> Vec<usize> {
        let mut rng = ChaCha8Rng::seed_from_u64(strata_tensor::derive_seed(seed, epoch as u64));
        (0..self.n).map(|_| self.weights.sample(&mut rng)).collect()
    }
}

/// Class weights inversely proportional to class frequency, `n / (k * count_c)` (scikit-learn's
/// `class_weight="balanced"`), for a weighted cross-entropy. A class with no samples gets 0.
pub fn balanced_class_weights(labels: &[usize], n_classes: usize) -> Vec<f32> {
    let mut counts = vec![0usize; n_classes];
    for &l in labels {
        if l < n_classes {
            counts[l] += 1;
        }
    }
    counts
        .iter()
        .map(|&c| {
            if c == 0 {
                0.0
            } else {
                labels.len() as f32 / (n_classes as f32 * c as f32)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_order_is_a_seeded_permutation() {
        let a = epoch_order(50, 1, 0);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_eq!(a, epoch_order(50, 1, 0));
        assert_ne!(a, epoch_order(50, 1, 1));
    }

    #[test]
    fn balanced_sampler_evens_out_classes() {
        // 90% class 0, 10% class 1.
        let labels: Vec<usize> = (0..1000).map(|i| usize::from(i % 10 == 0)).collect();
        let s = BalancedSampler::new(&labels).unwrap();
        let draws = s.epoch(3, 0);
        assert_eq!(draws.len(), 1000);
        let ones = draws.iter().filter(|&&i| labels[i] == 1).count();
        assert!(
            (400..600).contains(&ones),
            "{ones} of 1000 draws from the 10% class"
        );
        assert!(BalancedSampler::new(&[]).is_err());
    }

    #[test]
    fn class_weights_match_scikit_learn() {
        // sklearn compute_class_weight("balanced", classes=[0,1,2], y=[0,0,0,1,2,2]) -> [0.667, 2., 1.]
        let w = balanced_class_weights(&[0, 0, 0, 1, 2, 2], 3);
        assert!((w[0] - 2.0 / 3.0).abs() < 1e-6 && w[1] == 2.0 && w[2] == 1.0);
    }
}
