//! Transfer learning: pretrained weights loaded by name with a report of what loaded and what
//! did not ([`load_pretrained`]), and fine-tuning settings for the runners ([`FineTune`]):
//! parameters that start frozen and may thaw at a later epoch, and a smaller learning rate for
//! the backbone than for the head.
//!
//! Parts of a model are named by burn-store path prefixes (`resnet.layer1`, `fc`): a prefix
//! covers the parameter of that name and everything below it.
//!
//! ```
//! use burn::tensor::Device;
//! use strata_arch::MlpConfig;
//! use strata_train::FineTune;
//!
//! let device = Device::flex().autodiff();
//! let model = MlpConfig::new(4, 3).with_d_hidden(vec![8]).init(&device)?;
//! // The first layer frozen for two epochs, then trained at a tenth of the head's rate.
//! let tune = FineTune {
//!     frozen: vec!["hidden".into()],
//!     unfreeze_at_epoch: Some(3),
//!     backbone: vec!["hidden".into()],
//!     backbone_lr_factor: 0.1,
//! };
//! assert_eq!(tune.parameters(&model, &tune.frozen)?.len(), 2); // weight and bias
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use burn::module::{Module, ParamGroup, ParamId};
use burn::optim::lr_scheduler::constant::ConstantLr;
use burn::optim::lr_scheduler::module_lr_scheduler::{ModuleLearningRate, ModuleLrScheduler};
use burn::store::{
    ApplyResult, BurnpackStore, KeyRemapper, ModuleSnapshot, PyTorchToBurnAdapter, PytorchStore,
    SafetensorsStore, burn_pack::Tensor as PackTensor,
};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Fine-tuning settings of a run (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FineTune {
    /// Path prefixes of the parameters frozen at the start (no gradient, no update; batch
    /// norms among them normalise with their running statistics and leave them unchanged).
    pub frozen: Vec<String>,
    /// The 1-based epoch from which the frozen parameters train; `None` keeps them frozen.
    pub unfreeze_at_epoch: Option<usize>,
    /// Path prefixes of the backbone, whose learning rate is the schedule's times
    /// `backbone_lr_factor`.
    pub backbone: Vec<String>,
    /// The backbone's learning rate relative to the head's (1 = the same).
    pub backbone_lr_factor: f64,
}

impl FineTune {
    /// Checks the settings.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a non-positive learning-rate factor, an unfreeze epoch below 2,
    /// or an unfreeze epoch with nothing frozen.
    pub fn validate(&self) -> Result<()> {
        let f = self.backbone_lr_factor;
        if !(f.is_finite() && f > 0.0) {
            return Err(Error::Invalid(format!(
                "the backbone learning-rate factor must be > 0, got {f}"
            )));
        }
        if let Some(e) = self.unfreeze_at_epoch {
            if e < 2 {
                return Err(Error::Invalid(format!(
                    "unfreeze at epoch {e}: it must be 2 or later (epochs count from 1, and epoch 1 would never be frozen)"
                )));
            }
            if self.frozen.is_empty() {
                return Err(Error::Invalid(
                    "unfreezing at an epoch needs something frozen".into(),
                ));
            }
        }
        Ok(())
    }

    /// The ids of `model`'s parameters under `prefixes`, in model order.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming a prefix that covers no parameter.
    pub fn parameters<M: Module>(&self, model: &M, prefixes: &[String]) -> Result<Vec<ParamId>> {
        ids_under(&model.collect(None, None, false), prefixes)
    }
}

/// The ids of the collected `tensors` under `prefixes`, in model order.
fn ids_under(tensors: &[PackTensor], prefixes: &[String]) -> Result<Vec<ParamId>> {
    let mut ids = Vec::new();
    for p in prefixes {
        let before = ids.len();
        for t in tensors {
            if under(&t.name, p)
                && let Some(id) = t.param_id
            {
                ids.push(ParamId::from(id));
            }
        }
        if ids.len() == before {
            return Err(Error::Invalid(format!(
                "`{p}` names no parameter of the model"
            )));
        }
    }
    Ok(ids)
}

/// Whether the parameter `name` is `prefix` or lies under it.
fn under(name: &str, prefix: &str) -> bool {
    name == prefix || (name.starts_with(prefix) && name.as_bytes().get(prefix.len()) == Some(&b'.'))
}

/// [`FineTune`] resolved against the model a runner trains.
pub(crate) struct Tuner {
    frozen: Option<(ParamGroup, Option<usize>)>,
    frozen_now: bool,
    backbone: Option<(ParamGroup, f64)>,
}

impl Tuner {
    /// Resolves `tune` (if any) against `model`.
    pub(crate) fn new<M: Module>(tune: Option<&FineTune>, model: &M) -> Result<Self> {
        let Some(t) = tune else {
            return Ok(Self {
                frozen: None,
                frozen_now: false,
                backbone: None,
            });
        };
        t.validate()?;
        let tensors = model.collect(None, None, false);
        let frozen = if t.frozen.is_empty() {
            None
        } else {
            let ids = ids_under(&tensors, &t.frozen)?;
            Some((ParamGroup::from_ids(ids), t.unfreeze_at_epoch))
        };
        let backbone = if t.backbone.is_empty() || t.backbone_lr_factor == 1.0 {
            None
        } else {
            let ids = ids_under(&tensors, &t.backbone)?;
            Some((ParamGroup::from_ids(ids), t.backbone_lr_factor))
        };
        Ok(Self {
            frozen,
            frozen_now: false,
            backbone,
        })
    }

    /// Freezes or thaws the frozen part for `epoch` (0-based); a no-op when nothing changes.
    pub(crate) fn begin_epoch<M: Module>(&mut self, model: M, epoch: usize) -> M {
        let Some((group, thaw)) = &self.frozen else {
            return model;
        };
        let freeze = thaw.is_none_or(|e| epoch + 1 < e);
        if freeze == self.frozen_now {
            return model;
        }
        self.frozen_now = freeze;
        model.set_require_grad_group(group.clone(), !freeze)
    }

    /// The learning rate of each parameter for a step at the schedule's `lr`.
    pub(crate) fn lr(&self, lr: f64) -> ModuleLearningRate {
        match &self.backbone {
            None => lr.into(),
            Some((group, factor)) => ModuleLrScheduler::new(ConstantLr::new(lr))
                .with_group(group.clone(), ConstantLr::new(lr * factor))
                .step(),
        }
    }
}

/// How the names and layouts of a weights file are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// PyTorch's `state_dict` (`.pt`, `.pth`, or `.safetensors` from
    /// `safetensors.torch.save_file`): linear weights `[out, in]`, torchvision names.
    Torch,
    /// Strata's own files: a run's `model.safetensors` or a checkpoint's `.bpk`.
    Strata,
}

/// Where pretrained weights come from and how to fit them to a model.
#[derive(Debug, Clone)]
pub struct Pretrained<'a> {
    /// The weights file: `.pt` / `.pth`, `.safetensors` or `.bpk`.
    pub path: &'a Path,
    /// Its layout.
    pub layout: Layout,
    /// Path prefixes of the model's head: loaded when the file has them with the model's
    /// shapes, otherwise left as initialised (a head for another number of classes).
    pub head: &'a [String],
    /// Leave the head as initialised even when the file's fits (a new task).
    pub new_head: bool,
    /// Regex key remappings applied to the file's names (`Vgg::pytorch_key_remapping`).
    pub remap: &'a [(String, String)],
}

/// A parameter that was not loaded, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    /// The model's name for it.
    pub key: String,
    /// Why it keeps its initial value.
    pub reason: String,
}

/// What [`load_pretrained`] did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    /// The weights file.
    pub source: PathBuf,
    /// The model's parameters that took the file's values.
    pub loaded: Vec<String>,
    /// The head's parameters that kept their initial values, with the reason.
    pub skipped: Vec<Skipped>,
    /// The file's tensors with no place in the model (PyTorch's `num_batches_tracked`, the
    /// old head's when it was not loaded).
    pub unused: Vec<String>,
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "loaded {} tensors from {}",
            self.loaded.len(),
            self.source.display()
        )?;
        for s in &self.skipped {
            writeln!(f, "  skipped {}: {}", s.key, s.reason)?;
        }
        if !self.unused.is_empty() {
            writeln!(f, "  unused in the file: {}", self.unused.join(", "))?;
        }
        Ok(())
    }
}

/// Loads the weights of `p.path` into `model` by name: every parameter outside the head must
/// be in the file with the model's shape; the head loads when it fits and is skipped (kept
/// as initialised) when it does not or when `p.new_head`.
///
/// # Errors
/// [`Error::Weights`] for an unreadable or truncated file, and for a file that does not fit
/// the backbone, listing the model's parameters the file lacks, the file's tensors the model
/// has no place for, and each shape mismatch.
pub fn load_pretrained<M: Module>(mut model: M, p: &Pretrained<'_>) -> Result<(M, LoadReport)> {
    let fail = |message: String| Error::Weights {
        path: p.path.to_path_buf(),
        message,
    };
    if !p.path.is_file() {
        return Err(fail("no such file".into()));
    }
    let is_head = |k: &str| p.head.iter().any(|h| under(k, h));
    // The head as initialised, to put back when it is not to be loaded.
    let fresh_head: Vec<_> = model
        .collect(None, None, false)
        .into_iter()
        .filter(|t| is_head(&t.name))
        .collect();
    let ext = p
        .path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let remapper = || {
        KeyRemapper::from_patterns(p.remap.to_vec())
            .map_err(|e| fail(format!("bad key remapping: {e}")))
    };
    let result: ApplyResult = match (ext.as_str(), p.layout) {
        ("pt" | "pth", Layout::Torch) => {
            let mut store = PytorchStore::from_file(p.path)
                .validate(false)
                .allow_partial(true)
                .map_indices_contiguous(false)
                .remap(remapper()?);
            model
                .load_from(&mut store)
                .map_err(|e| fail(e.to_string()))?
        }
        ("safetensors", layout) => {
            let mut store = SafetensorsStore::from_file(p.path)
                .validate(false)
                .allow_partial(true);
            if layout == Layout::Torch {
                store = store
                    .with_from_adapter(PyTorchToBurnAdapter)
                    .map_indices_contiguous(false);
            }
            let mut store = store.remap(remapper()?);
            model
                .load_from(&mut store)
                .map_err(|e| fail(e.to_string()))?
        }
        ("bpk", Layout::Strata) => {
            let mut store = BurnpackStore::from_file(p.path)
                .validate(false)
                .allow_partial(true);
            model
                .load_from(&mut store)
                .map_err(|e| fail(e.to_string()))?
        }
        (other, layout) => {
            return Err(fail(format!(
                "cannot read `.{other}` files as {layout:?} weights: expected .pt, .pth or .safetensors (PyTorch) or a Strata run's .safetensors / .bpk"
            )));
        }
    };

    let mut skipped = Vec::new();
    let mut bad = Vec::new();
    for e in &result.errors {
        let key = error_path(e);
        if is_head(key) {
            skipped.push(Skipped {
                key: key.to_string(),
                reason: e.to_string(),
            });
        } else {
            bad.push(e.to_string());
        }
    }
    let mut missing = Vec::new();
    for (key, _) in &result.missing {
        if is_head(key) {
            skipped.push(Skipped {
                key: key.clone(),
                reason: "not in the file".into(),
            });
        } else {
            missing.push(key.clone());
        }
    }
    if !bad.is_empty() || !missing.is_empty() {
        let mut m = String::from("the weights do not fit this model's backbone");
        if !missing.is_empty() {
            m += &format!(
                "; missing from the file ({}): {}",
                missing.len(),
                missing.join(", ")
            );
        }
        if !result.unused.is_empty() {
            m += &format!(
                "; in the file but not in the model ({}): {}",
                result.unused.len(),
                result.unused.join(", ")
            );
        }
        if !bad.is_empty() {
            m += &format!("; {}", bad.join("; "));
        }
        if result.applied.is_empty() {
            m += " (nothing matched: weights of another architecture?)";
        }
        return Err(fail(m));
    }
    let mut loaded: Vec<String> = result.applied;
    if p.new_head {
        let head_keys: BTreeSet<String> = fresh_head.iter().map(|t| t.name.clone()).collect();
        let restored = model.apply(fresh_head, None, None, false);
        if !restored.errors.is_empty() {
            return Err(fail(format!(
                "could not restore the new head: {:?}",
                restored.errors
            )));
        }
        loaded.retain(|k| {
            if head_keys.contains(k) {
                skipped.push(Skipped {
                    key: k.clone(),
                    reason: "a new head was asked for".into(),
                });
                false
            } else {
                true
            }
        });
    }
    skipped.sort_by(|a, b| a.key.cmp(&b.key));
    Ok((
        model,
        LoadReport {
            source: p.path.to_path_buf(),
            loaded,
            skipped,
            unused: result.unused,
        },
    ))
}

fn error_path(e: &burn::store::ApplyError) -> &str {
    use burn::store::ApplyError as E;
    match e {
        E::ShapeMismatch { path, .. }
        | E::DTypeMismatch { path, .. }
        | E::AdapterError { path, .. }
        | E::LoadError { path, .. } => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Fit, FitConfig, Run, fit};
    use burn::tensor::Device;
    use strata_arch::{Mlp, MlpConfig};
    use strata_data::iris;
    use strata_loss::LossConfig;
    use strata_optim::{OptimizerConfig, OptimizerKind, ScheduleConfig};
    use strata_tensor::convert::to_vec;

    /// The hidden layer's and the output layer's weights.
    type Weights = (Vec<f32>, Vec<f32>);

    fn weights(m: &Mlp) -> Weights {
        (
            to_vec(m.hidden[0].linear.weight.val()),
            to_vec(m.output.weight.val()),
        )
    }

    /// The largest difference; NaN, an infinity or a length mismatch fails the test.
    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        strata_tensor::compare::max_abs_diff(a, b).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `epochs` of plain SGD (one full batch per epoch) on iris with `tune`; the weights before
    /// and after.
    /// A small MLP with every (lazily initialised) parameter materialised, so that clones
    /// trained with different settings start from the same weights.
    fn start() -> Mlp {
        let model = MlpConfig::new(4, 3)
            .with_d_hidden(vec![8])
            .init(&Device::flex().autodiff())
            .unwrap();
        let _ = model.collect(None, None, false);
        model
    }

    fn train(model: Mlp, tune: Option<&FineTune>, epochs: usize) -> (Weights, Weights) {
        let data = iris();
        let device = Device::flex().autodiff();
        let before = weights(&model);
        let loss = LossConfig::default().init(&device).unwrap();
        let optimizer = OptimizerConfig {
            kind: OptimizerKind::Sgd {
                momentum: 0.0,
                dampening: 0.0,
                nesterov: false,
            },
            lr: 0.1,
            ..Default::default()
        };
        let schedule = ScheduleConfig::by_name("constant").unwrap();
        let config = FitConfig {
            epochs,
            batch_size: data.len(),
            progress: false,
            restore_best: false,
            ..Default::default()
        };
        let out = fit(
            model,
            &data,
            &data,
            &Fit {
                forward: |m: &Mlp, x| m.forward(x),
                loss: loss.as_ref(),
                augment: None,
                run: Run {
                    fine_tune: tune,
                    ..Run::new(&optimizer, &schedule, &config, device.clone())
                },
            },
        )
        .unwrap();
        (before, weights(&out.model))
    }

    #[test]
    fn frozen_parameters_stay_until_they_thaw() {
        let tune = FineTune {
            frozen: vec!["hidden".into()],
            unfreeze_at_epoch: Some(3),
            backbone: vec![],
            backbone_lr_factor: 1.0,
        };
        // Two epochs: the hidden layer is frozen throughout, the output layer trains.
        let ((h0, o0), (h1, o1)) = train(start(), Some(&tune), 2);
        assert_eq!(h0, h1);
        assert!(max_diff(&o0, &o1) > 1e-4);
        // Three epochs: it thaws at the third.
        let ((h0, _), (h1, _)) = train(start(), Some(&tune), 3);
        assert!(max_diff(&h0, &h1) > 1e-5);
        // Never thawing: frozen after three epochs too.
        let never = FineTune {
            unfreeze_at_epoch: None,
            ..tune
        };
        let ((h0, _), (h1, _)) = train(start(), Some(&never), 3);
        assert_eq!(h0, h1);
    }

    #[test]
    fn the_backbone_factor_scales_its_sgd_steps() {
        // One full-batch step of plain SGD: the update is -lr * gradient, so a backbone factor
        // of 0.25 gives the hidden layer a quarter of the step and the head the same step.
        let model = start();
        let ((h0, o0), (h1, o1)) = train(model.clone(), None, 1);
        let tune = FineTune {
            frozen: vec![],
            unfreeze_at_epoch: None,
            backbone: vec!["hidden".into()],
            backbone_lr_factor: 0.25,
        };
        let ((g0, p0), (g1, p1)) = train(model, Some(&tune), 1);
        assert_eq!((h0.clone(), o0.clone()), (g0, p0)); // same start
        for i in 0..h0.len() {
            let (full, quarter) = (h1[i] - h0[i], g1[i] - h0[i]);
            assert!(
                (quarter - 0.25 * full).abs() < 1e-7,
                "{i}: {full} {quarter}"
            );
        }
        assert!(max_diff(&h0, &h1) > 1e-3);
        assert!(max_diff(&o1, &p1) < 1e-7);
    }

    #[test]
    fn bad_settings_are_errors() {
        let model = MlpConfig::new(4, 3)
            .with_d_hidden(vec![8])
            .init(&Device::flex())
            .unwrap();
        let ok = FineTune {
            frozen: vec!["hidden".into()],
            unfreeze_at_epoch: Some(2),
            backbone: vec!["hidden".into()],
            backbone_lr_factor: 0.1,
        };
        assert!(Tuner::new(Some(&ok), &model).is_ok());
        let e = |t: FineTune| Tuner::new(Some(&t), &model).err().unwrap().to_string();
        assert!(
            e(FineTune {
                frozen: vec!["hiden".into()],
                ..ok.clone()
            })
            .contains("`hiden` names no parameter")
        );
        // A prefix is a whole path segment: `hid` is not `hidden`.
        assert!(
            e(FineTune {
                frozen: vec!["hid".into()],
                ..ok.clone()
            })
            .contains("names no parameter")
        );
        assert!(
            e(FineTune {
                backbone_lr_factor: 0.0,
                ..ok.clone()
            })
            .contains("factor")
        );
        assert!(
            e(FineTune {
                unfreeze_at_epoch: Some(1),
                ..ok.clone()
            })
            .contains("2 or later")
        );
        assert!(
            e(FineTune {
                frozen: vec![],
                ..ok.clone()
            })
            .contains("needs something frozen")
        );
    }
}
