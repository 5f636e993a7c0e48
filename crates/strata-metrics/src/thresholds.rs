//! Per-group threshold optimisation (Hardt, Price & Srebro 2016): after training, each group
//! gets its own randomised threshold on the model's score so that the decisions meet a
//! fairness constraint (equal selection rates, or equal true and false positive rates) at the
//! best accuracy the scores allow. fairlearn's `ThresholdOptimizer` by the same construction,
//! checked against it (tests/fixtures/gen_fairness.py).
//!
//! For each group, every threshold of its scores gives a point (its false positive rate and
//! true positive rate, or its selection rate and accuracy); the upper convex hull of those
//! points is what randomising between two thresholds can reach. The hulls are read on a grid
//! of [`GRID`] + 1 points over `[0, 1]`:
//! - **demographic parity**: the selection rate whose groups' accuracies, weighted by the
//!   groups' sizes, sum highest;
//! - **equalised odds**: the false positive rate whose highest true positive rate that every
//!   group can reach gives the best overall accuracy; a group above it mixes in a constant
//!   random decision to come down to it.
//!
//! Decisions are random by design (a coin decides between two thresholds): the rule gives
//! each sample its probability of a positive decision ([`GroupThresholds::probabilities`]),
//! and [`GroupThresholds::decide`] draws the decisions from a seed. The constraint holds on
//! the data the rules were fitted on, in expectation; on new data it holds as well as those
//! data resemble them.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize, Serializer};

use crate::error::{Error, Result, same_len};

/// Steps of the grid the hulls are read on (fairlearn's default `grid_size`).
pub const GRID: usize = 1000;

/// What the per-group thresholds equalise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FairnessConstraint {
    /// Equal selection rates, `P(ŷ = 1 | group)`.
    DemographicParity,
    /// Equal true positive and false positive rates.
    EqualizedOdds,
}

impl FairnessConstraint {
    /// Its name, as [`FromStr`](std::str::FromStr) reads it: `demographic-parity` or
    /// `equalized-odds`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::DemographicParity => "demographic-parity",
            Self::EqualizedOdds => "equalized-odds",
        }
    }
}

impl std::str::FromStr for FairnessConstraint {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "demographic-parity" | "demographic_parity" | "parity" => Ok(Self::DemographicParity),
            "equalized-odds" | "equalized_odds" | "equalised-odds" | "odds" => {
                Ok(Self::EqualizedOdds)
            }
            other => Err(Error::Invalid(format!(
                "unknown fairness constraint `{other}`: demographic-parity or equalized-odds"
            ))),
        }
    }
}

/// One group's randomised rule: with probability `p_ignore` the decision is positive with
/// probability `constant` whatever the score; otherwise it is `score > threshold0` with
/// probability `p0` and `score > threshold1` with probability `p1 = 1 - p0`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThresholdRule {
    /// Weight of the first threshold.
    pub p0: f64,
    /// The first threshold (`+inf`: never positive).
    #[serde(serialize_with = "finite_or_text")]
    pub threshold0: f64,
    /// Weight of the second threshold.
    pub p1: f64,
    /// The second threshold (`-inf`: always positive).
    #[serde(serialize_with = "finite_or_text")]
    pub threshold1: f64,
    /// Probability of ignoring the score (equalised odds only; 0 otherwise).
    pub p_ignore: f64,
    /// The positive probability of the decision that ignores the score.
    pub constant: f64,
}

impl ThresholdRule {
    /// The probability of a positive decision for `score`.
    #[must_use]
    pub fn probability(&self, score: f64) -> f64 {
        let above = |t: f64| if score > t { 1.0 } else { 0.0 };
        let thresholded = self.p0 * above(self.threshold0) + self.p1 * above(self.threshold1);
        self.p_ignore * self.constant + (1.0 - self.p_ignore) * thresholded
    }
}

fn finite_or_text<S: Serializer>(v: &f64, s: S) -> std::result::Result<S::Ok, S::Error> {
    if v.is_finite() {
        s.serialize_f64(*v)
    } else if *v > 0.0 {
        s.serialize_str("inf")
    } else {
        s.serialize_str("-inf")
    }
}

/// Rules fitted by [`GroupThresholds::fit`]: one per group.
///
/// ```
/// use strata_metrics::{FairnessConstraint, GroupThresholds};
/// let scores = [0.9, 0.8, 0.3, 0.2, 0.7, 0.6, 0.4, 0.1];
/// let y_true = [true, true, false, false, true, false, true, false];
/// let group = [0, 0, 0, 0, 1, 1, 1, 1];
/// let t = GroupThresholds::fit(&y_true, &scores, &group, 2, FairnessConstraint::DemographicParity)?;
/// let p = t.probabilities(&scores, &group)?;
/// // Both groups select the same share of their samples, in expectation.
/// let rate = |g: usize| p[4 * g..4 * g + 4].iter().sum::<f64>() / 4.0;
/// assert!((rate(0) - rate(1)).abs() < 1e-9);
/// # Ok::<(), strata_metrics::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupThresholds {
    /// The constraint they meet.
    pub constraint: FairnessConstraint,
    /// Each group's rule, by group index.
    pub rules: Vec<ThresholdRule>,
    /// The operating point chosen: the common selection rate (demographic parity) or false
    /// positive rate (equalised odds).
    pub x: f64,
    /// Its value: the size-weighted accuracy (demographic parity) or the common true positive
    /// rate (equalised odds), on the data fitted.
    pub y: f64,
}

impl GroupThresholds {
    /// Fits each of `n_groups` groups' rule on the true outcomes `y_true`, the model's
    /// scores (any increasing score of the positive class, e.g. its probability) and each
    /// sample's group, for the best accuracy under `constraint`.
    ///
    /// # Errors
    /// Lengths that differ, no samples, a group index out of range, a group without samples
    /// or whose samples are all positive or all negative (its rates are undefined), a score
    /// that is NaN.
    pub fn fit(
        y_true: &[bool],
        scores: &[f64],
        group: &[usize],
        n_groups: usize,
        constraint: FairnessConstraint,
    ) -> Result<Self> {
        let n = y_true.len();
        if n == 0 {
            return Err(Error::Empty("threshold optimisation"));
        }
        same_len("scores", scores.len(), n)?;
        same_len("group", group.len(), n)?;
        if scores.iter().any(|s| s.is_nan()) {
            return Err(Error::Invalid("a score is NaN".into()));
        }
        if let Some(&g) = group.iter().find(|&&g| g >= n_groups) {
            return Err(Error::Invalid(format!(
                "group index {g} out of range for {n_groups} groups"
            )));
        }
        let grid: Vec<f64> = (0..=GRID).map(|i| i as f64 / GRID as f64).collect();
        let mut curves = Vec::with_capacity(n_groups);
        let mut shares = Vec::with_capacity(n_groups);
        for g in 0..n_groups {
            let members: Vec<usize> = (0..n).filter(|&i| group[i] == g).collect();
            let positives = members.iter().filter(|&&i| y_true[i]).count();
            if positives == 0 || positives == members.len() {
                return Err(Error::Invalid(format!(
                    "group {g} has {} samples, {positives} of them positive: its rates need both outcomes",
                    members.len()
                )));
            }
            let s: Vec<f64> = members.iter().map(|&i| scores[i]).collect();
            let y: Vec<bool> = members.iter().map(|&i| y_true[i]).collect();
            let points = tradeoff(&s, &y, constraint);
            curves.push(interpolate(&upper_hull(points), &grid));
            shares.push(members.len() as f64 / n as f64);
        }
        match constraint {
            FairnessConstraint::DemographicParity => {
                let overall: Vec<f64> = (0..grid.len())
                    .map(|i| curves.iter().zip(&shares).map(|(c, p)| p * c[i].y).sum())
                    .collect();
                let best = first_max(&overall);
                let rules = curves.iter().map(|c| c[best].rule(0.0, 0.0)).collect();
                Ok(Self {
                    constraint,
                    rules,
                    x: grid[best],
                    y: overall[best],
                })
            }
            FairnessConstraint::EqualizedOdds => {
                let n_pos = y_true.iter().filter(|&&y| y).count() as f64;
                let n_neg = n as f64 - n_pos;
                let y_min: Vec<f64> = (0..grid.len())
                    .map(|i| curves.iter().map(|c| c[i].y).fold(f64::INFINITY, f64::min))
                    .collect();
                // Overall accuracy at (FPR x, TPR y_min), rounded to 15 decimals as fairlearn
                // does so that ties break the same way.
                let accuracy: Vec<f64> = grid
                    .iter()
                    .zip(&y_min)
                    .map(|(&x, &y)| {
                        let a = (n_pos * y + n_neg * (1.0 - x)) / n as f64;
                        (a * 1e15).round() / 1e15
                    })
                    .collect();
                let best = first_max(&accuracy);
                let (x, y) = (grid[best], y_min[best]);
                let rules = curves
                    .iter()
                    .map(|c| {
                        let p = &c[best];
                        let p_ignore = if p.y == p.x {
                            0.0
                        } else {
                            (p.y - y) / (p.y - p.x)
                        };
                        p.rule(p_ignore, x)
                    })
                    .collect();
                Ok(Self {
                    constraint,
                    rules,
                    x,
                    y,
                })
            }
        }
    }

    /// Each sample's probability of a positive decision under its group's rule.
    ///
    /// # Errors
    /// Lengths that differ, a group index without a rule.
    pub fn probabilities(&self, scores: &[f64], group: &[usize]) -> Result<Vec<f64>> {
        same_len("group", group.len(), scores.len())?;
        scores
            .iter()
            .zip(group)
            .map(|(&s, &g)| {
                self.rules.get(g).map(|r| r.probability(s)).ok_or_else(|| {
                    Error::Invalid(format!(
                        "group index {g} out of range for {} groups",
                        self.rules.len()
                    ))
                })
            })
            .collect()
    }

    /// Decisions drawn from [`probabilities`](Self::probabilities) with a generator seeded
    /// by `seed`: the same seed, the same decisions.
    ///
    /// # Errors
    /// As [`probabilities`](Self::probabilities).
    pub fn decide(&self, scores: &[f64], group: &[usize], seed: u64) -> Result<Vec<bool>> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        Ok(self
            .probabilities(scores, group)?
            .into_iter()
            .map(|p| rng.random::<f64>() < p)
            .collect())
    }
}

/// The index of the first largest value.
fn first_max(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// A point of a trade-off curve: the rates of `score > threshold`.
#[derive(Debug, Clone, Copy)]
struct Point {
    x: f64,
    y: f64,
    threshold: f64,
}

/// A point of the hull read at a grid value: between hull points `t0` and `t1`.
#[derive(Debug, Clone, Copy)]
struct Reading {
    x: f64,
    y: f64,
    p0: f64,
    t0: f64,
    t1: f64,
}

impl Reading {
    fn rule(&self, p_ignore: f64, constant: f64) -> ThresholdRule {
        ThresholdRule {
            p0: self.p0,
            threshold0: self.t0,
            p1: 1.0 - self.p0,
            threshold1: self.t1,
            p_ignore,
            constant,
        }
    }
}

/// Every threshold between distinct scores (and above all of them) as a point: (false
/// positive rate, true positive rate) for equalised odds, (selection rate, accuracy) for
/// demographic parity; sorted by x, then y.
fn tradeoff(scores: &[f64], y_true: &[bool], constraint: FairnessConstraint) -> Vec<Point> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let n = scores.len() as f64;
    let n_pos = y_true.iter().filter(|&&y| y).count() as f64;
    let n_neg = n - n_pos;
    let point = |fp: f64, tp: f64, threshold: f64| {
        let (x, y) = match constraint {
            FairnessConstraint::EqualizedOdds => (fp / n_neg, tp / n_pos),
            FairnessConstraint::DemographicParity => ((fp + tp) / n, (tp + n_neg - fp) / n),
        };
        Point { x, y, threshold }
    };
    let mut points = vec![point(0.0, 0.0, f64::INFINITY)];
    let (mut fp, mut tp) = (0.0, 0.0);
    let mut i = 0;
    while i < order.len() {
        let s = scores[order[i]];
        while i < order.len() && scores[order[i]] == s {
            if y_true[order[i]] {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
            i += 1;
        }
        let next = order.get(i).map_or(f64::NEG_INFINITY, |&j| scores[j]);
        points.push(point(fp, tp, (s + next) / 2.0));
    }
    points.sort_by(|a, b| a.x.total_cmp(&b.x).then(a.y.total_cmp(&b.y)));
    points
}

/// The upper convex hull of points sorted by x then y (Andrew's monotone chain).
fn upper_hull(points: Vec<Point>) -> Vec<Point> {
    let mut hull: Vec<Point> = Vec::with_capacity(points.len());
    for p in points {
        while let [.., a, b] = hull[..] {
            if (b.y - a.y) * (p.x - a.x) <= (p.y - a.y) * (b.x - a.x) {
                hull.pop();
            } else {
                break;
            }
        }
        hull.push(p);
    }
    hull
}

/// The hull read at each grid value, between the hull points on either side: the left one
/// strictly below the value (except at the grid's first), the right one at or above it.
fn interpolate(hull: &[Point], grid: &[f64]) -> Vec<Reading> {
    grid.iter()
        .enumerate()
        .map(|(i, &g)| {
            // The last hull point at or left of g, one further left when it sits on g.
            let mut k = hull.partition_point(|p| p.x <= g).saturating_sub(1);
            if i > 0 && k > 0 && hull[k].x == g {
                k -= 1;
            }
            let k = k.min(hull.len().saturating_sub(2));
            let (a, b) = (hull[k], hull[k + 1]);
            let p0 = (b.x - g) / (b.x - a.x);
            Reading {
                x: g,
                y: p0 * a.y + (1.0 - p0) * b.y,
                p0,
                t0: a.threshold,
                t1: b.threshold,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> (Vec<bool>, Vec<f64>, Vec<usize>) {
        // Two groups whose scores separate the classes differently well.
        let mut y = Vec::new();
        let mut s = Vec::new();
        let mut g = Vec::new();
        for i in 0..200 {
            let group = i % 2;
            let positive = (i * 7919) % 13 < 5 + 3 * group;
            let noise = ((i * 104_729) % 97) as f64 / 97.0;
            let score =
                if positive { 0.35 } else { 0.0 } + 0.65 * noise * (1.0 - 0.3 * group as f64);
            y.push(positive);
            s.push(score);
            g.push(group);
        }
        (y, s, g)
    }

    fn rate(p: &[f64], keep: impl Fn(usize) -> bool) -> f64 {
        let (sum, n) = p
            .iter()
            .enumerate()
            .filter(|(i, _)| keep(*i))
            .fold((0.0, 0.0), |(s, n), (_, &v)| (s + v, n + 1.0));
        sum / n
    }

    #[test]
    fn demographic_parity_equalises_expected_selection_rates() {
        let (y, s, g) = data();
        let t = GroupThresholds::fit(&y, &s, &g, 2, FairnessConstraint::DemographicParity).unwrap();
        let p = t.probabilities(&s, &g).unwrap();
        let r0 = rate(&p, |i| g[i] == 0);
        let r1 = rate(&p, |i| g[i] == 1);
        assert!((r0 - r1).abs() < 1e-9, "{r0} vs {r1}");
        assert!((r0 - t.x).abs() < 1e-9, "{r0} vs the chosen rate {}", t.x);
    }

    #[test]
    fn equalized_odds_equalises_expected_rates() {
        let (y, s, g) = data();
        let t = GroupThresholds::fit(&y, &s, &g, 2, FairnessConstraint::EqualizedOdds).unwrap();
        let p = t.probabilities(&s, &g).unwrap();
        for group in 0..2 {
            let tpr = rate(&p, |i| g[i] == group && y[i]);
            let fpr = rate(&p, |i| g[i] == group && !y[i]);
            assert!(
                (tpr - t.y).abs() < 1e-9,
                "group {group}: TPR {tpr} vs {}",
                t.y
            );
            assert!(
                (fpr - t.x).abs() < 1e-9,
                "group {group}: FPR {fpr} vs {}",
                t.x
            );
        }
    }

    proptest::proptest! {
        /// On any scored samples of three groups that each hold both outcomes, the fitted
        /// rules give probabilities in [0, 1] that meet the constraint in expectation.
        #[test]
        fn rules_meet_their_constraint(
            rows in proptest::collection::vec((0.0f64..1.0, proptest::bool::ANY, 0usize..3), 12..120)
        ) {
            let mut rows = rows;
            for g in 0..3 {
                rows.push((0.9, true, g));
                rows.push((0.1, false, g));
            }
            let s: Vec<f64> = rows.iter().map(|r| (r.0 * 20.0).round() / 20.0).collect();
            let y: Vec<bool> = rows.iter().map(|r| r.1).collect();
            let g: Vec<usize> = rows.iter().map(|r| r.2).collect();
            for c in [FairnessConstraint::DemographicParity, FairnessConstraint::EqualizedOdds] {
                let t = GroupThresholds::fit(&y, &s, &g, 3, c).unwrap();
                let p = t.probabilities(&s, &g).unwrap();
                proptest::prop_assert!(p.iter().all(|v| (-1e-12..=1.0 + 1e-12).contains(v)));
                for group in 0..3 {
                    if c == FairnessConstraint::DemographicParity {
                        let r = rate(&p, |i| g[i] == group);
                        proptest::prop_assert!((r - t.x).abs() < 1e-9, "{r} vs {}", t.x);
                    } else {
                        let tpr = rate(&p, |i| g[i] == group && y[i]);
                        let fpr = rate(&p, |i| g[i] == group && !y[i]);
                        proptest::prop_assert!((tpr - t.y).abs() < 1e-9, "TPR {tpr} vs {}", t.y);
                        proptest::prop_assert!((fpr - t.x).abs() < 1e-9, "FPR {fpr} vs {}", t.x);
                    }
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn constraint_parsing_never_panics(spec in ".{0,30}") {
            let _ = spec.parse::<FairnessConstraint>();
        }
    }

    #[test]
    fn decisions_follow_a_seed() {
        let (y, s, g) = data();
        let t = GroupThresholds::fit(&y, &s, &g, 2, FairnessConstraint::EqualizedOdds).unwrap();
        assert_eq!(t.decide(&s, &g, 3).unwrap(), t.decide(&s, &g, 3).unwrap());
    }

    #[test]
    fn bad_input_is_refused() {
        let c = FairnessConstraint::DemographicParity;
        assert!(matches!(
            GroupThresholds::fit(&[true, false], &[0.5, 0.2], &[0, 1], 2, c),
            Err(Error::Invalid(m)) if m.contains("group 0")
        ));
        assert!(matches!(
            GroupThresholds::fit(&[true], &[0.5, 0.2], &[0], 1, c),
            Err(Error::LengthMismatch { .. })
        ));
        assert!(matches!(
            GroupThresholds::fit(&[true, false], &[0.5, f64::NAN], &[0, 0], 1, c),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            GroupThresholds::fit(&[true, false], &[0.5, 0.1], &[0, 2], 2, c),
            Err(Error::Invalid(_))
        ));
        assert!(GroupThresholds::fit(&[], &[], &[], 1, c).is_err());
        assert!("fast".parse::<FairnessConstraint>().is_err());
        for c in [
            FairnessConstraint::DemographicParity,
            FairnessConstraint::EqualizedOdds,
        ] {
            assert_eq!(c.name().parse::<FairnessConstraint>(), Ok(c));
        }
    }
}
