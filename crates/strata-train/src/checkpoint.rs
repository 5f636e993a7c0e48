//! Checkpoints: model and optimizer state (burnpack) plus the run's progress (JSON), each
//! written atomically; the progress file is written last and names the files of its epoch, so
//! a crash at any moment leaves the previous complete checkpoint usable.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::ModuleRecord;
use burn::tensor::Bytes;
use serde::{Deserialize, Serialize};
use strata_optim::Schedule;

use crate::atomic::write_atomic;
use crate::error::{Error, Result};
use crate::history::EpochRecord;

/// The progress of a run, saved with each checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Epochs completed.
    pub epochs_done: usize,
    /// One record per completed epoch.
    pub history: Vec<EpochRecord>,
    /// The learning-rate schedule (with reduce-on-plateau state).
    pub schedule: Schedule,
    /// Best monitored value so far and its epoch.
    pub best: Option<(f64, usize)>,
    /// Epochs since the monitored value last improved.
    pub bad_epochs: usize,
    /// Training wall time so far, over all sessions.
    pub train_seconds: f64,
    /// Whether the run has finished (all epochs, early stop or time budget).
    pub finished: bool,
    /// Why it stopped, when it has.
    pub stop_reason: Option<String>,
}

/// Reads and writes the checkpoints of one run directory.
#[derive(Debug, Clone)]
pub struct Checkpointer {
    dir: PathBuf,
}

const STATE: &str = "state.json";
const BEST: &str = "best.bpk";

impl Checkpointer {
    /// Checkpoints under `dir` (created when first written).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The checkpoint directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn model_file(&self, epoch: usize) -> PathBuf {
        self.dir.join(format!("model-{epoch}.bpk"))
    }

    fn optim_file(&self, epoch: usize) -> PathBuf {
        self.dir.join(format!("optim-{epoch}.bpk"))
    }

    /// Saves the model, the optimizer and the progress of epoch `state.epochs_done`, then
    /// removes older epochs' files.
    ///
    /// # Errors
    /// Serialisation or I/O errors.
    pub fn save<M: Module>(
        &self,
        model: &M,
        optim: &ModuleOptimizer,
        state: &TrainState,
    ) -> Result<()> {
        let epoch = state.epochs_done;
        save_model(model, &self.model_file(epoch))?;
        let optim_bytes = optim
            .into_bytes()
            .map_err(|e| self.err(&self.optim_file(epoch), e))?;
        write_atomic(&self.optim_file(epoch), &optim_bytes)?;
        let json = serde_json::to_vec_pretty(state).map_err(|e| Error::Checkpoint {
            path: self.dir.join(STATE),
            message: e.to_string(),
        })?;
        write_atomic(&self.dir.join(STATE), &json)?;
        // Older epochs are now superseded.
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                let stale = ["model-", "optim-"].iter().any(|p| {
                    name.strip_prefix(p)
                        .and_then(|r| r.strip_suffix(".bpk"))
                        .and_then(|n| n.parse::<usize>().ok())
                        .is_some_and(|n| n != epoch)
                });
                if stale {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(())
    }

    /// Saves the best model so far.
    ///
    /// # Errors
    /// Serialisation or I/O errors.
    pub fn save_best<M: Module>(&self, model: &M) -> Result<()> {
        save_model(model, &self.dir.join(BEST))
    }

    /// Loads the best model saved by [`save_best`](Self::save_best) into `model`.
    ///
    /// # Errors
    /// A missing or mismatched file.
    pub fn load_best<M: Module>(&self, model: M) -> Result<M> {
        load_model(model, &self.dir.join(BEST))
    }

    /// The saved progress, or `None` when there is no checkpoint.
    ///
    /// # Errors
    /// An unreadable or corrupt progress file.
    pub fn load_state(&self) -> Result<Option<TrainState>> {
        let path = self.dir.join(STATE);
        if !path.exists() {
            return Ok(None);
        }
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Checkpoint {
                path,
                message: format!("corrupt progress file: {e}"),
            })
    }

    /// Loads the model and optimizer of the checkpoint described by `state`.
    ///
    /// # Errors
    /// Missing files, or weights that do not fit `model`.
    pub fn load<M: Module>(
        &self,
        model: M,
        optim: ModuleOptimizer,
        state: &TrainState,
    ) -> Result<(M, ModuleOptimizer)> {
        let epoch = state.epochs_done;
        let model = load_model(model, &self.model_file(epoch))?;
        let path = self.optim_file(epoch);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let optim = optim
            .from_bytes(Bytes::from_bytes_vec(bytes))
            .map_err(|e| self.err(&path, e))?;
        Ok((model, optim))
    }

    fn err(&self, path: &Path, e: impl std::fmt::Display) -> Error {
        Error::Checkpoint {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }
}

/// Loads burnpack weights from `path` into `model`, checking every parameter matches.
///
/// # Errors
/// A missing file, a corrupt file, or weights of another shape or architecture.
pub fn load_model<M: Module>(model: M, path: &Path) -> Result<M> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let record =
        ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes)).map_err(|e| Error::Checkpoint {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    model
        .try_load_record(record)
        .map_err(|e| Error::Checkpoint {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}

/// Saves burnpack weights of `model` to `path`, atomically.
///
/// # Errors
/// Serialisation or I/O errors.
pub fn save_model<M: Module>(model: &M, path: &Path) -> Result<()> {
    let bytes = model
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| Error::Checkpoint {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    write_atomic(path, &bytes)
}
