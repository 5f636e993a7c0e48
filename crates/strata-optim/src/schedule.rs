//! Learning-rate schedules by epoch: constant, step, cosine, each with optional linear warm-up,
//! and reduce-on-plateau (which burn lacks).
//!
//! The epoch-indexed schedules are pure functions of the epoch, so a resumed run recomputes the
//! rate with nothing to restore; reduce-on-plateau keeps a small serialisable state.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The shape of the schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ScheduleKind {
    /// The base rate throughout.
    Constant,
    /// Multiply by `gamma` every `step_size` epochs (PyTorch `StepLR`).
    Step {
        /// Epochs between decays.
        step_size: usize,
        /// Decay factor.
        gamma: f64,
    },
    /// Cosine annealing from the base rate to `min_lr` over the run (PyTorch
    /// `CosineAnnealingLR` with `T_max` = epochs after warm-up).
    Cosine {
        /// The final rate.
        #[serde(default)]
        min_lr: f64,
    },
    /// Multiply by `factor` when the validation loss has not improved by more than
    /// `threshold` (relative) for `patience` epochs (PyTorch `ReduceLROnPlateau`, mode `min`).
    Plateau {
        /// Decay factor, default 0.1.
        #[serde(default = "plateau_factor")]
        factor: f64,
        /// Epochs without improvement before decaying, default 10.
        #[serde(default = "plateau_patience")]
        patience: usize,
        /// Relative improvement that counts, default 1e-4.
        #[serde(default = "plateau_threshold")]
        threshold: f64,
        /// Lower bound on the rate.
        #[serde(default)]
        min_lr: f64,
    },
}

fn plateau_factor() -> f64 {
    0.1
}
fn plateau_patience() -> usize {
    10
}
fn plateau_threshold() -> f64 {
    1e-4
}

/// A schedule: its kind plus an optional linear warm-up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleConfig {
    /// The schedule after warm-up.
    #[serde(flatten)]
    pub kind: ScheduleKind,
    /// Epochs of linear warm-up from `base / (warmup + 1)` to the base rate, default 0.
    #[serde(default)]
    pub warmup_epochs: usize,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            kind: ScheduleKind::Constant,
            warmup_epochs: 0,
        }
    }
}

impl ScheduleConfig {
    /// A schedule with default parameters by name: `constant`, `step` (every 10 epochs by 0.1),
    /// `cosine`, `plateau`.
    ///
    /// # Errors
    /// [`Error::UnknownSchedule`] for any other name.
    pub fn by_name(name: &str) -> Result<Self> {
        let kind = match name.trim().to_ascii_lowercase().as_str() {
            "constant" => ScheduleKind::Constant,
            "step" => ScheduleKind::Step {
                step_size: 10,
                gamma: 0.1,
            },
            "cosine" => ScheduleKind::Cosine { min_lr: 0.0 },
            "plateau" | "reduce-on-plateau" => ScheduleKind::Plateau {
                factor: plateau_factor(),
                patience: plateau_patience(),
                threshold: plateau_threshold(),
                min_lr: 0.0,
            },
            other => return Err(Error::UnknownSchedule(other.into())),
        };
        Ok(Self {
            kind,
            warmup_epochs: 0,
        })
    }

    /// Checks the parameters.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the value out of range.
    pub fn validate(&self) -> Result<()> {
        match &self.kind {
            ScheduleKind::Constant => Ok(()),
            ScheduleKind::Step { step_size, gamma } => {
                if *step_size == 0 || !(*gamma > 0.0 && *gamma <= 1.0) {
                    Err(Error::Invalid(format!(
                        "step schedule needs step_size >= 1 and 0 < gamma <= 1, got {step_size}, {gamma}"
                    )))
                } else {
                    Ok(())
                }
            }
            ScheduleKind::Cosine { min_lr } | ScheduleKind::Plateau { min_lr, .. }
                if min_lr.is_nan() || *min_lr < 0.0 =>
            {
                Err(Error::Invalid(format!("min_lr must be >= 0, got {min_lr}")))
            }
            ScheduleKind::Plateau { factor, .. } if !(*factor > 0.0 && *factor < 1.0) => Err(
                Error::Invalid(format!("plateau factor must be in (0, 1), got {factor}")),
            ),
            _ => Ok(()),
        }
    }

    /// Starts the schedule for a run of `total_epochs` at `base_lr`.
    ///
    /// # Errors
    /// As [`validate`](Self::validate).
    pub fn start(&self, base_lr: f64, total_epochs: usize) -> Result<Schedule> {
        self.validate()?;
        Ok(Schedule {
            config: self.clone(),
            base_lr,
            total_epochs,
            plateau: PlateauState {
                scale: 1.0,
                best: None,
                bad_epochs: 0,
            },
        })
    }
}

/// Reduce-on-plateau bookkeeping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlateauState {
    /// The current multiplier of the base rate.
    pub scale: f64,
    /// The best validation loss so far (`None` before the first epoch).
    pub best: Option<f64>,
    /// Epochs since the last improvement.
    pub bad_epochs: usize,
}

/// A running schedule. Serialisable, so checkpoints carry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    config: ScheduleConfig,
    base_lr: f64,
    total_epochs: usize,
    plateau: PlateauState,
}

impl Schedule {
    /// The learning rate for the 0-based `epoch`.
    pub fn lr(&self, epoch: usize) -> f64 {
        let warm = self.config.warmup_epochs;
        if epoch < warm {
            return self.base_lr * (epoch + 1) as f64 / (warm + 1) as f64;
        }
        let e = epoch - warm;
        match &self.config.kind {
            ScheduleKind::Constant => self.base_lr,
            ScheduleKind::Step { step_size, gamma } => {
                self.base_lr * gamma.powi((e / step_size) as i32)
            }
            ScheduleKind::Cosine { min_lr } => {
                let t_max = self.total_epochs.saturating_sub(warm).max(1) as f64;
                let t = (e as f64).min(t_max);
                min_lr
                    + (self.base_lr - min_lr) * (1.0 + (std::f64::consts::PI * t / t_max).cos())
                        / 2.0
            }
            ScheduleKind::Plateau { min_lr, .. } => {
                (self.base_lr * self.plateau.scale).max(*min_lr)
            }
        }
    }

    /// Reports the validation loss at the end of an epoch (used by reduce-on-plateau only).
    pub fn observe(&mut self, valid_loss: f64) {
        if let ScheduleKind::Plateau {
            factor,
            patience,
            threshold,
            ..
        } = self.config.kind
        {
            let improved = match self.plateau.best {
                None => true,
                Some(best) => valid_loss < best * (1.0 - threshold),
            };
            if improved {
                self.plateau.best = Some(valid_loss);
                self.plateau.bad_epochs = 0;
            } else {
                self.plateau.bad_epochs += 1;
                if self.plateau.bad_epochs > patience {
                    self.plateau.scale *= factor;
                    self.plateau.bad_epochs = 0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn step_and_warmup() {
        let s = ScheduleConfig {
            kind: ScheduleKind::Step {
                step_size: 2,
                gamma: 0.5,
            },
            warmup_epochs: 0,
        }
        .start(1.0, 10)
        .unwrap();
        let lrs: Vec<f64> = (0..5).map(|e| s.lr(e)).collect();
        assert_eq!(lrs, vec![1.0, 1.0, 0.5, 0.5, 0.25]);
        let w = ScheduleConfig {
            kind: ScheduleKind::Constant,
            warmup_epochs: 3,
        }
        .start(1.0, 10)
        .unwrap();
        assert!(close(w.lr(0), 0.25) && close(w.lr(2), 0.75) && close(w.lr(3), 1.0));
    }

    /// PyTorch CosineAnnealingLR(opt, T_max=4, eta_min=0.0) from lr=1:
    /// [1.0, 0.8535534, 0.5, 0.1464466, 0.0]
    #[test]
    fn cosine_matches_pytorch() {
        let s = ScheduleConfig::by_name("cosine")
            .unwrap()
            .start(1.0, 4)
            .unwrap();
        let want = [1.0, 0.853_553_4, 0.5, 0.146_446_6, 0.0];
        for (e, w) in want.iter().enumerate() {
            assert!((s.lr(e) - w).abs() < 1e-7, "epoch {e}: {} vs {w}", s.lr(e));
        }
    }

    #[test]
    fn plateau_reduces_after_patience() {
        let mut s = ScheduleConfig {
            kind: ScheduleKind::Plateau {
                factor: 0.5,
                patience: 1,
                threshold: 0.0,
                min_lr: 0.0,
            },
            warmup_epochs: 0,
        }
        .start(1.0, 10)
        .unwrap();
        s.observe(1.0);
        assert_eq!(s.lr(1), 1.0);
        s.observe(1.0); // 1 bad epoch: within patience
        assert_eq!(s.lr(2), 1.0);
        s.observe(1.0); // 2 bad epochs > patience 1: halve
        assert_eq!(s.lr(3), 0.5);
        s.observe(0.5); // improvement
        assert_eq!(s.lr(4), 0.5);
    }

    #[test]
    fn plateau_state_survives_json() {
        let mut s = ScheduleConfig::by_name("plateau")
            .unwrap()
            .start(0.1, 5)
            .unwrap();
        let fresh: Schedule = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(fresh, s);
        s.observe(0.5);
        let back: Schedule = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn bad_schedules_are_errors() {
        assert!(ScheduleConfig::by_name("linear9").is_err());
        let bad = ScheduleConfig {
            kind: ScheduleKind::Step {
                step_size: 0,
                gamma: 0.5,
            },
            warmup_epochs: 0,
        };
        assert!(bad.start(0.1, 3).is_err());
    }
}
