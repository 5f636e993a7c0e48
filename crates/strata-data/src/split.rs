//! Stratified train/validation/test splits and stratified k-fold cross-validation, seeded.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Indices of the three parts of a split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    /// Training indices.
    pub train: Vec<usize>,
    /// Validation indices.
    pub valid: Vec<usize>,
    /// Test indices.
    pub test: Vec<usize>,
}

fn by_class(strata: &[usize], rng: &mut ChaCha8Rng) -> Vec<Vec<usize>> {
    let n_classes = strata.iter().copied().max().map_or(0, |m| m + 1);
    let mut groups = vec![Vec::new(); n_classes];
    for (i, &c) in strata.iter().enumerate() {
        groups[c].push(i);
    }
    for g in &mut groups {
        g.shuffle(rng);
    }
    groups
}

/// Splits sample indices into train/validation/test so that each class keeps its proportion
/// in each part (to within one sample per class). `strata` holds each sample's class (all
/// zeros for a plain random split). Same seed, same split.
///
/// # Errors
/// Fractions outside `[0, 1)` or summing to 1 or more, or a data set too small for every part
/// to get at least one sample.
pub fn stratified_split(strata: &[usize], valid: f64, test: f64, seed: u64) -> Result<Split> {
    for (name, f) in [("validation", valid), ("test", test)] {
        if !(0.0..1.0).contains(&f) || !f.is_finite() {
            return Err(Error::Invalid(format!(
                "{name} fraction {f} is not in [0, 1)"
            )));
        }
    }
    if valid + test >= 1.0 {
        return Err(Error::Invalid(format!(
            "validation + test fractions ({valid} + {test}) leave nothing to train on"
        )));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut split = Split {
        train: vec![],
        valid: vec![],
        test: vec![],
    };
    for group in by_class(strata, &mut rng) {
        let n = group.len();
        let n_test = (n as f64 * test).round() as usize;
        let n_valid = (n as f64 * valid).round() as usize;
        let (n_test, n_valid) = if n_test + n_valid >= n && n > 0 {
            // Keep at least one training sample per class.
            let spare = n - 1;
            let t = n_test.min(spare);
            (t, n_valid.min(spare - t))
        } else {
            (n_test, n_valid)
        };
        split.test.extend_from_slice(&group[..n_test]);
        split
            .valid
            .extend_from_slice(&group[n_test..n_test + n_valid]);
        split.train.extend_from_slice(&group[n_test + n_valid..]);
    }
    let n = strata.len();
    if split.train.is_empty()
        || (valid > 0.0 && split.valid.is_empty())
        || (test > 0.0 && split.test.is_empty())
    {
        return Err(Error::TooSmall(format!(
            "{n} samples cannot be split into train / {valid} validation / {test} test with every part non-empty"
        )));
    }
    split.train.shuffle(&mut rng);
    split.valid.shuffle(&mut rng);
    split.test.shuffle(&mut rng);
    Ok(split)
}

/// One fold of a k-fold cross-validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fold {
    /// Indices to train on.
    pub train: Vec<usize>,
    /// Indices to validate on (this fold's held-out part).
    pub valid: Vec<usize>,
}

/// Stratified k-fold: every sample is held out in exactly one fold, and each class is spread
/// over the folds as evenly as possible (fold sizes per class differ by at most one).
///
/// # Errors
/// `k < 2`, or fewer samples than folds.
pub fn stratified_kfold(strata: &[usize], k: usize, seed: u64) -> Result<Vec<Fold>> {
    if k < 2 {
        return Err(Error::Invalid(format!("k-fold needs k >= 2, got {k}")));
    }
    if strata.len() < k {
        return Err(Error::TooSmall(format!(
            "{} samples cannot make {k} folds",
            strata.len()
        )));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut held = vec![Vec::new(); k];
    let mut next = 0usize;
    for group in by_class(strata, &mut rng) {
        for i in group {
            held[next % k].push(i);
            next += 1;
        }
    }
    Ok((0..k)
        .map(|f| {
            let mut train: Vec<usize> = (0..k)
                .filter(|&g| g != f)
                .flat_map(|g| held[g].clone())
                .collect();
            train.shuffle(&mut rng);
            Fold {
                train,
                valid: held[f].clone(),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn count(strata: &[usize], idx: &[usize], c: usize) -> usize {
        idx.iter().filter(|&&i| strata[i] == c).count()
    }

    #[test]
    fn small_data_errors() {
        assert!(matches!(
            stratified_split(&[0, 1], 0.2, 0.2, 0),
            Err(Error::TooSmall(_))
        ));
        assert!(stratified_split(&[0; 10], 0.6, 0.5, 0).is_err());
        assert!(stratified_kfold(&[0, 1], 3, 0).is_err());
        assert!(stratified_kfold(&[0, 1], 1, 0).is_err());
    }

    #[test]
    fn same_seed_same_split() {
        let s: Vec<usize> = (0..100).map(|i| i % 3).collect();
        assert_eq!(
            stratified_split(&s, 0.2, 0.2, 5).unwrap(),
            stratified_split(&s, 0.2, 0.2, 5).unwrap()
        );
        assert_ne!(
            stratified_split(&s, 0.2, 0.2, 5).unwrap(),
            stratified_split(&s, 0.2, 0.2, 6).unwrap()
        );
    }

    fn strata_strategy() -> impl Strategy<Value = Vec<usize>> {
        (1usize..5).prop_flat_map(|k| prop::collection::vec(0..k, 20..300))
    }

    proptest! {
        #[test]
        fn split_partitions_and_stratifies(strata in strata_strategy(), seed in any::<u64>()) {
            let s = stratified_split(&strata, 0.2, 0.2, seed).unwrap();
            let all: Vec<usize> = s.train.iter().chain(&s.valid).chain(&s.test).copied().collect();
            let set: HashSet<usize> = all.iter().copied().collect();
            prop_assert_eq!(all.len(), strata.len(), "no sample lost");
            prop_assert_eq!(set.len(), strata.len(), "no sample repeated");
            let classes: HashSet<usize> = strata.iter().copied().collect();
            for c in classes {
                let n_c = count(&strata, &all, c) as f64;
                for (part, frac) in [(&s.test, 0.2), (&s.valid, 0.2)] {
                    let got = count(&strata, part, c) as f64;
                    // Each class's share of each part is its rounded proportion (within 1).
                    prop_assert!((got - n_c * frac).abs() <= 1.0, "class {} got {} of {}", c, got, n_c);
                }
            }
        }

        #[test]
        fn kfold_holds_out_each_sample_once(strata in strata_strategy(), k in 2usize..8, seed in any::<u64>()) {
            let folds = stratified_kfold(&strata, k, seed).unwrap();
            prop_assert_eq!(folds.len(), k);
            let mut seen = vec![0usize; strata.len()];
            for f in &folds {
                for &i in &f.valid { seen[i] += 1; }
                let train: HashSet<usize> = f.train.iter().copied().collect();
                prop_assert_eq!(train.len(), f.train.len(), "no repeats in train");
                prop_assert!(f.valid.iter().all(|i| !train.contains(i)), "train and valid disjoint");
                prop_assert_eq!(f.train.len() + f.valid.len(), strata.len());
            }
            prop_assert!(seen.iter().all(|&s| s == 1));
            let classes: HashSet<usize> = strata.iter().copied().collect();
            for c in classes {
                let per: Vec<usize> = folds.iter().map(|f| count(&strata, &f.valid, c)).collect();
                let (lo, hi) = (per.iter().min().unwrap(), per.iter().max().unwrap());
                prop_assert!(hi - lo <= 1, "class {} spread {:?}", c, per);
            }
        }
    }
}
