//! Adversarial debiasing (Zhang, Lemoine & Mitchell 2018), `--debias COL`: the classifier (the
//! predictor) trains beside an adversary that tries to tell each sample's group from the
//! predictor's output, on [`strata_train::fit_players`]. The adversary learns to predict the
//! group; the predictor learns its task while making that prediction hard.
//!
//! Each batch, the predictor's gradient of its own loss `∇L_P` is stripped of its component
//! along the adversary's gradient `∇L_A` (so that no step helps the adversary), and `α ∇L_A`
//! is subtracted on top (so that steps hurt it):
//! `∇L_P − proj_{∇L_A} ∇L_P − α ∇L_A`, parameter tensor by parameter tensor, as Zhang et al.
//! and fairlearn's `AdversarialFairnessClassifier` do.
//!
//! The adversary is a logistic regression on the predictor's probability of the positive class
//! `s` (as fairlearn's; a raw logit, unbounded, lets the predictor hide the group in the
//! logit's size where a linear adversary cannot see it). For demographic parity it sees `s`
//! alone. For equalised odds it also sees the true class `y`, as `[s·y, s·(1 − y), y]`: a
//! slope and an intercept per class, so that knowing the class, the score should tell it
//! nothing more about the group. (Zhang et al. write `[s, s·y, s·(1 − y)]`, without `y`
//! itself; then the adversary reads the class from the score's size wherever the groups'
//! base rates differ, and the predictor, defeating it, pulls the groups' true positive rates
//! apart: on Adult the odds gap rose from 0.07 to 0.18.)

use std::cell::RefCell;

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::{Linear, LinearConfig};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Gradients, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use strata_arch::Network;
use strata_data::{Batcher, Dataset};
use strata_loss::LossConfig;
use strata_metrics::{FairnessConstraint, group_fairness};
use strata_tensor::TargetBatch;
use strata_tensor::convert::{classes, to_vec};
use strata_train::{FitOutcome, Loss, Players, evaluate, fit_players};

use crate::data::Prepared;
use crate::error::{Error, Result};

/// Adversarial debiasing's settings: `--debias COL[:alpha=A,constraint=C]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Debias {
    /// The categorical column whose groups the adversary predicts.
    pub column: String,
    /// The weight `α` of hurting the adversary (0: only never helping it).
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// What the adversary sees: the score alone (demographic parity) or the score and the
    /// true class (equalised odds).
    #[serde(default = "default_constraint")]
    pub constraint: FairnessConstraint,
}

fn default_alpha() -> f64 {
    1.0
}

fn default_constraint() -> FairnessConstraint {
    FairnessConstraint::EqualizedOdds
}

impl Debias {
    /// Debiasing on `column`'s groups for equalised odds with `α = 1` (fairlearn's default).
    #[must_use]
    pub fn new(column: impl Into<String>) -> Self {
        Self {
            column: column.into(),
            alpha: default_alpha(),
            constraint: default_constraint(),
        }
    }

    /// Reads `COL[:alpha=A,constraint=equalized-odds|demographic-parity]`, e.g. `sex` or
    /// `sex:alpha=0.5,constraint=demographic-parity`.
    ///
    /// # Errors
    /// An empty column, an unknown key, a value that does not parse, an `α` that is negative
    /// or not finite.
    pub fn parse(spec: &str) -> Result<Self> {
        let bad = |why: String| Error::Usage(format!("--debias `{spec}`: {why}"));
        let (column, settings) = spec.trim().split_once(':').unwrap_or((spec.trim(), ""));
        if column.trim().is_empty() {
            return Err(bad("name the column, e.g. sex".into()));
        }
        let mut d = Self::new(column.trim());
        for item in settings.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let Some((key, value)) = item.split_once('=') else {
                return Err(bad(format!("`{item}` is not key=value")));
            };
            let (key, value) = (key.trim(), value.trim());
            match key {
                "alpha" => {
                    d.alpha = value
                        .parse()
                        .map_err(|_| bad(format!("alpha: `{value}` is not a number")))?;
                }
                "constraint" => {
                    d.constraint = value.parse().map_err(|e| bad(format!("{e}")))?;
                }
                other => {
                    return Err(bad(format!(
                        "unknown key `{other}`: expected alpha or constraint"
                    )));
                }
            }
        }
        d.validate()?;
        Ok(d)
    }

    /// Checks `α`.
    ///
    /// # Errors
    /// An `α` that is negative or not finite.
    pub fn validate(&self) -> Result<()> {
        if !(self.alpha.is_finite() && self.alpha >= 0.0) {
            return Err(Error::Usage(format!(
                "--debias: alpha must be a finite number >= 0, got {}",
                self.alpha
            )));
        }
        Ok(())
    }
}

/// The adversary's learning rate over the predictor's: the adversary, a logistic regression
/// of one to three inputs, has to keep up with the predictor it judges.
const ADVERSARY_LR: f64 = 10.0;

/// The predictor and its adversary, trained as two players.
#[derive(Module, Debug)]
pub(crate) struct Debiased {
    /// The classifier.
    pub predictor: Network,
    /// Logistic regression from the predictor's logit (and the class) to the group.
    pub adversary: Linear,
}

/// Trains `model` on `prepared`'s training split with adversarial debiasing under `debias`;
/// `loss` is the run's (the predictor's) loss, validation as for any classifier. Tracks, per
/// epoch on the validation split, the adversary's accuracy at telling the groups apart and the
/// gap the constraint targets. Returns the predictor.
///
/// # Errors
/// As [`crate::fairness::check`] for the column; training errors.
pub(crate) fn fit(
    model: Network,
    prepared: &Prepared,
    debias: &Debias,
    loss: &dyn Loss,
    run: strata_train::Run<'_>,
) -> Result<FitOutcome<Network>> {
    let column = std::slice::from_ref(&debias.column);
    let schema = crate::fairness::check("--debias", column, &prepared.train, &prepared.preprocess)?;
    let (names, train_group) = schema.categories_of(&prepared.train.features, &debias.column)?;
    let (_, valid_group) = schema.categories_of(&prepared.valid.features, &debias.column)?;
    let odds = debias.constraint == FairnessConstraint::EqualizedOdds;
    let adversary = LinearConfig::new(if odds { 3 } else { 1 }, names.len()).init(&run.device);
    let plain = run.device.clone().without_autodiff();
    let game = Game {
        train: &prepared.train,
        valid: &prepared.valid,
        train_group,
        valid_group,
        names,
        debias,
        loss,
        group_loss: LossConfig::CrossEntropy {
            weights: None,
            smoothing: 0.0,
        }
        .init(&run.device)?,
        batcher: Batcher::new(run.device.clone()),
        plain,
        last: RefCell::new(Vec::new()),
    };
    let adversary_optimizer = strata_train::OptimizerConfig {
        lr: run.optimizer.lr * ADVERSARY_LR,
        ..run.optimizer.clone()
    };
    let both = [
        (run.optimizer.clone(), run.schedule.clone()),
        (adversary_optimizer, run.schedule.clone()),
    ];
    let run = strata_train::Run {
        per_player: &both,
        ..run
    };
    let out = fit_players(
        Debiased {
            predictor: model,
            adversary,
        },
        &game,
        &run,
    )?;
    Ok(out.map(|m| m.predictor))
}

/// The two players' game on a table's training split.
struct Game<'a> {
    train: &'a Dataset,
    valid: &'a Dataset,
    train_group: Vec<usize>,
    valid_group: Vec<usize>,
    names: Vec<String>,
    debias: &'a Debias,
    loss: &'a dyn Loss,
    /// The adversary's loss: plain cross-entropy over the groups.
    group_loss: Box<dyn Loss>,
    batcher: Batcher,
    plain: Device,
    /// The predictor's last batch, for the adversary's gradient in [`Players::gradients`].
    last: RefCell<Vec<usize>>,
}

impl Game<'_> {
    /// The adversary's input from the predictor's outputs `out` (`[n, k]`) and the classes
    /// `y`: the positive class's probability `s`, or `[s·y, s·(1 − y), y]` for equalised
    /// odds.
    fn adversary_input(&self, out: Tensor<2>, y: &Tensor<1, Int>) -> Tensor<2> {
        let [n, k] = out.dims();
        let logit = if k >= 2 {
            out.clone().narrow(1, 1, 1) - out.narrow(1, 0, 1)
        } else {
            out
        };
        let s = burn::tensor::activation::sigmoid(logit);
        if self.debias.constraint == FairnessConstraint::DemographicParity {
            return s;
        }
        let y = y.clone().float().reshape([n, 1]);
        let not_y = y.clone().neg() + 1.0;
        Tensor::cat(vec![s.clone() * y.clone(), s * not_y, y], 1)
    }

    /// The batch `indices`: inputs, classes, groups.
    fn batch(
        &self,
        indices: &[usize],
    ) -> Result<(Tensor<2>, TargetBatch, Tensor<1, Int>, Vec<usize>)> {
        let b = self.batcher.batch(self.train, indices);
        let TargetBatch::Classes(y) = &b.targets else {
            return Err(Error::Usage("--debias needs class labels".into()));
        };
        let y = y.clone();
        let groups = indices.iter().map(|&i| self.train_group[i]).collect();
        Ok((b.inputs, b.targets, y, groups))
    }

    /// The adversary's loss on the batch `indices`, the predictor's output detached or not.
    fn adversary_on(
        &self,
        m: &Debiased,
        indices: &[usize],
        detach: bool,
    ) -> strata_train::Result<Tensor<1>> {
        let (x, _, y, groups) = self.batch(indices).map_err(train_error)?;
        let mut out = m.predictor.forward_flat(x);
        if detach {
            out = out.detach();
        }
        let guess = m.adversary.forward(self.adversary_input(out, &y));
        let groups = TargetBatch::Classes(classes(&groups, &guess.device()));
        Ok(self.group_loss.forward(guess, &groups)?)
    }
}

fn train_error(e: Error) -> strata_train::Error {
    strata_train::Error::Invalid(e.to_string())
}

impl Players<Debiased> for Game<'_> {
    fn names(&self) -> Vec<String> {
        vec!["predictor".into(), "adversary".into()]
    }

    fn n_train(&self) -> usize {
        self.train.len()
    }

    /// The adversary first, catching up with the predictor as it stands, then the predictor.
    fn turns(&self, _batch: usize) -> Vec<usize> {
        vec![1, 0]
    }

    fn player_loss(
        &self,
        m: &Debiased,
        player: usize,
        indices: &[usize],
    ) -> strata_train::Result<Tensor<1>> {
        if player == 0 {
            let (x, targets, _, _) = self.batch(indices).map_err(train_error)?;
            self.last.replace(indices.to_vec());
            Ok(self.loss.forward(m.predictor.forward_flat(x), &targets)?)
        } else {
            self.adversary_on(m, indices, true)
        }
    }

    fn gradients(&self, m: &Debiased, player: usize, grads: Gradients) -> GradientsParams {
        if player == 1 {
            return GradientsParams::from_grads(grads, &m.adversary);
        }
        let own = GradientsParams::from_grads(grads, &m.predictor);
        let indices = self.last.borrow().clone();
        let Ok(adv) = self.adversary_on(m, &indices, false) else {
            return own;
        };
        let adv = GradientsParams::from_grads(adv.backward(), &m.predictor);
        let mut combine = Combine {
            own,
            adv,
            out: GradientsParams::new(),
            alpha: self.debias.alpha,
        };
        m.predictor.visit(&mut combine);
        combine.out
    }

    fn validate(&self, m: &Debiased) -> strata_train::Result<(f64, f64)> {
        let forward = |p: &Network, x| p.forward_flat(x);
        let ev = evaluate(
            &m.predictor,
            &forward,
            self.loss,
            self.valid,
            256,
            &self.plain,
        )?;
        Ok((ev.loss, ev.report.headline()))
    }

    fn tracked(&self, m: &Debiased) -> strata_train::Result<Vec<(String, f64)>> {
        // The adversary's accuracy at telling the groups from the predictor's output, and
        // the gap the constraint targets, on the validation split.
        let b = Batcher::new(self.plain.clone());
        let all: Vec<usize> = (0..self.valid.len()).collect();
        let batch = b.batch(self.valid, &all);
        let TargetBatch::Classes(y) = &batch.targets else {
            return Ok(Vec::new());
        };
        let out = m.predictor.forward_flat(batch.inputs);
        let k = out.dims()[1];
        let guess = m
            .adversary
            .forward(self.adversary_input(out.clone(), y))
            .argmax(1);
        let guess: Vec<i64> = guess.into_data().iter::<i64>().collect();
        let hits = guess
            .iter()
            .zip(&self.valid_group)
            .filter(|(a, b)| **a as usize == **b)
            .count();
        let labels: Vec<bool> = y
            .clone()
            .into_data()
            .iter::<i64>()
            .map(|l| l == 1)
            .collect();
        let (_, pred) = crate::fairness::decisions(&to_vec(out), k, &self.plain);
        let mut figures = vec![(
            "adversary_acc".to_string(),
            hits as f64 / self.valid.len().max(1) as f64,
        )];
        if let Ok(f) = group_fairness(&labels, &pred, &self.valid_group, &self.names, None) {
            figures.push(match self.debias.constraint {
                FairnessConstraint::EqualizedOdds => {
                    ("odds_gap".to_string(), f.equalized_odds_difference)
                }
                FairnessConstraint::DemographicParity => {
                    ("parity_gap".to_string(), f.demographic_parity_difference)
                }
            });
        }
        Ok(figures)
    }

    fn metric_name(&self) -> &str {
        "acc"
    }

    fn lower_metric_is_better(&self) -> bool {
        false
    }
}

/// Zhang et al.'s update of each predictor parameter from its gradients of its own loss
/// (`own`) and of the adversary's (`adv`): `own − proj_adv own − α adv`.
struct Combine {
    own: GradientsParams,
    adv: GradientsParams,
    out: GradientsParams,
    alpha: f64,
}

impl ModuleVisitor for Combine {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let id = param.id;
        let Some(own) = self.own.remove::<D>(id) else {
            return;
        };
        let Some(adv) = self.adv.remove::<D>(id) else {
            self.out.register(id, own);
            return;
        };
        let (shape, device) = (own.shape(), own.device());
        let g = combine(&to_vec(own), &to_vec(adv), self.alpha);
        self.out.register(
            id,
            Tensor::<D>::from_data(TensorData::new(g, shape), &device),
        );
    }
}

/// `own − (own · u) u − α adv` with `u = adv / ‖adv‖` (a zero `adv` leaves `own`).
fn combine(own: &[f32], adv: &[f32], alpha: f64) -> Vec<f32> {
    let norm = adv
        .iter()
        .map(|&a| f64::from(a) * f64::from(a))
        .sum::<f64>()
        .sqrt();
    let unit: Vec<f64> = adv
        .iter()
        .map(|&a| f64::from(a) / (norm + f64::from(f32::MIN_POSITIVE)))
        .collect();
    let proj: f64 = own.iter().zip(&unit).map(|(&o, u)| f64::from(o) * u).sum();
    own.iter()
        .zip(&unit)
        .zip(adv)
        .map(|((&o, u), &a)| (f64::from(o) - proj * u - alpha * f64::from(a)) as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_update_has_no_component_along_the_adversary_but_its_own() {
        let own = [1.0f32, 2.0, -0.5];
        let adv = [0.5f32, -1.0, 2.0];
        // α = 0: orthogonal to the adversary's gradient.
        let g = combine(&own, &adv, 0.0);
        let dot: f32 = g.iter().zip(&adv).map(|(a, b)| a * b).sum();
        assert!(dot.abs() < 1e-6, "{dot}");
        // α = 1: its component along the adversary's gradient is -‖adv‖.
        let g = combine(&own, &adv, 1.0);
        let norm = adv.iter().map(|a| a * a).sum::<f32>().sqrt();
        let along: f32 = g.iter().zip(&adv).map(|(a, b)| a * b).sum::<f32>() / norm;
        assert!((along + norm).abs() < 1e-5, "{along} vs {}", -norm);
        // A zero adversary gradient leaves the predictor's own.
        assert_eq!(combine(&own, &[0.0; 3], 1.0), own.to_vec());
    }

    #[test]
    fn specs_parse_or_name_the_problem() {
        assert_eq!(Debias::parse("sex").unwrap(), Debias::new("sex"));
        let d = Debias::parse("race:alpha=0.5,constraint=demographic-parity").unwrap();
        assert_eq!(d.column, "race");
        assert_eq!(d.alpha, 0.5);
        assert_eq!(d.constraint, FairnessConstraint::DemographicParity);
        for (spec, why) in [
            ("", "name the column"),
            (":alpha=1", "name the column"),
            ("sex:alpha=-1", "alpha must be"),
            ("sex:alpha=x", "not a number"),
            ("sex:alpha=inf", "alpha must be"),
            ("sex:beta=1", "unknown key `beta`"),
            ("sex:alpha", "not key=value"),
            ("sex:constraint=fast", "unknown fairness constraint"),
        ] {
            let e = Debias::parse(spec).unwrap_err().to_string();
            assert!(e.contains(why), "{spec}: {e}");
        }
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(spec in ".{0,40}") {
            let _ = Debias::parse(&spec);
        }
    }
}
