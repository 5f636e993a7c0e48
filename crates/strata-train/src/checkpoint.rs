//! Checkpoints: model and optimizer state (burnpack) plus the run's progress (JSON), each
//! written atomically; the progress file is written last and names the files of its epoch with
//! their CRC-32, so a crash at any moment leaves the previous complete checkpoint usable, and a
//! file damaged afterwards (bytes flipped, cut short) is refused on resume, by name, before
//! anything is loaded or written.

use std::collections::BTreeMap;
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
    /// The learning-rate schedule (with reduce-on-plateau state); the first player's in a run
    /// of several ([`fit_players`](crate::fit_players)).
    pub schedule: Schedule,
    /// The schedules of the other players, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_schedules: Vec<Schedule>,
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

impl TrainState {
    /// The learning rate of player `player` (0-based) in epoch `epoch` (0-based).
    pub fn lr(&self, player: usize, epoch: usize) -> f64 {
        match player {
            0 => self.schedule.lr(epoch),
            p => self
                .other_schedules
                .get(p - 1)
                .map_or_else(|| self.schedule.lr(epoch), |s| s.lr(epoch)),
        }
    }
}

/// What `state.json` holds: the progress and the CRC-32 of each file of its epoch (absent in
/// checkpoints written before checksums, which then load unchecked).
#[derive(Serialize, Deserialize)]
struct Saved {
    #[serde(flatten)]
    state: TrainState,
    #[serde(default)]
    checksums: BTreeMap<String, u32>,
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

    /// The state of optimizer `player` (0-based) after epoch `epoch`: `optim-E.bpk` for the
    /// first (the only one of most runs), `optimP-E.bpk` for the others.
    fn optim_file(&self, epoch: usize, player: usize) -> PathBuf {
        match player {
            0 => self.dir.join(format!("optim-{epoch}.bpk")),
            p => self.dir.join(format!("optim{p}-{epoch}.bpk")),
        }
    }

    /// Saves the model, each player's optimizer and the progress of epoch
    /// `state.epochs_done`, then removes older epochs' files.
    ///
    /// # Errors
    /// Serialisation or I/O errors.
    pub fn save<M: Module>(
        &self,
        model: &M,
        optims: &[ModuleOptimizer],
        state: &TrainState,
    ) -> Result<()> {
        let epoch = state.epochs_done;
        let model_bytes = model_bytes(model, &self.model_file(epoch))?;
        write_atomic(&self.model_file(epoch), &model_bytes)?;
        let mut checksums = BTreeMap::new();
        checksums.insert(
            file_name(&self.model_file(epoch)),
            crc32fast::hash(&model_bytes),
        );
        for (p, optim) in optims.iter().enumerate() {
            let path = self.optim_file(epoch, p);
            let bytes = optim.into_bytes().map_err(|e| self.err(&path, e))?;
            write_atomic(&path, &bytes)?;
            checksums.insert(file_name(&path), crc32fast::hash(&bytes));
        }
        let saved = Saved {
            state: state.clone(),
            checksums,
        };
        let json = serde_json::to_vec_pretty(&saved).map_err(|e| Error::Checkpoint {
            path: self.dir.join(STATE),
            message: e.to_string(),
        })?;
        write_atomic(&self.dir.join(STATE), &json)?;
        // Older epochs are now superseded.
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                // `model-E.bpk`, `optim-E.bpk`, `optimP-E.bpk` of another epoch E.
                let stale = (name.starts_with("model-") || name.starts_with("optim"))
                    && name
                        .strip_suffix(".bpk")
                        .and_then(|r| r.rsplit_once('-'))
                        .and_then(|(_, n)| n.parse::<usize>().ok())
                        .is_some_and(|n| n != epoch);
                // Temporaries of writes a crash interrupted are never read; clear them.
                let interrupted = name.starts_with('.') && name.ends_with(".tmp");
                if stale || interrupted {
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
        self.load_saved().map(|s| Some(s.state))
    }

    /// Checks the checkpoint that a resume would load, without loading or writing anything:
    /// the progress file parses and the epoch's model and optimizer files (every player's)
    /// match their recorded CRC-32. Returns the progress, or `None` when there is no checkpoint.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] or an I/O error naming the damaged or missing file.
    pub fn verify(&self) -> Result<Option<TrainState>> {
        if !self.dir.join(STATE).exists() {
            return Ok(None);
        }
        let saved = self.load_saved()?;
        let epoch = saved.state.epochs_done;
        let players = 1 + saved.state.other_schedules.len();
        self.read_checked(&self.model_file(epoch), &saved.checksums)?;
        for p in 0..players {
            self.read_checked(&self.optim_file(epoch, p), &saved.checksums)?;
        }
        Ok(Some(saved.state))
    }

    fn load_saved(&self) -> Result<Saved> {
        let path = self.dir.join(STATE);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Checkpoint {
            path,
            message: format!("corrupt progress file: {e}"),
        })
    }

    /// The bytes of the checkpoint file `path`, checked against the CRC-32 that `state.json`
    /// recorded for it.
    fn read_checked(&self, path: &Path, checksums: &BTreeMap<String, u32>) -> Result<Vec<u8>> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        if let Some(&want) = checksums.get(&file_name(path)) {
            let got = crc32fast::hash(&bytes);
            if got != want {
                return Err(self.err(
                    path,
                    format!(
                        "checksum mismatch (CRC-32 {got:08x}, state.json recorded {want:08x}): the file is corrupt or truncated; nothing was loaded"
                    ),
                ));
            }
        }
        Ok(bytes)
    }

    /// Loads the model and the optimizers (one per player, in order) of the checkpoint
    /// described by `state`.
    ///
    /// # Errors
    /// Missing files, a checkpoint of another number of players, or weights that do not fit
    /// `model`.
    pub fn load<M: Module>(
        &self,
        model: M,
        optims: Vec<ModuleOptimizer>,
        state: &TrainState,
    ) -> Result<(M, Vec<ModuleOptimizer>)> {
        let epoch = state.epochs_done;
        let saved_players = 1 + state.other_schedules.len();
        if saved_players != optims.len() {
            return Err(self.err(
                &self.dir.join(STATE),
                format!(
                    "the checkpoint has {saved_players} optimizers, this run {}",
                    optims.len()
                ),
            ));
        }
        let checksums = self.load_saved()?.checksums;
        let model_path = self.model_file(epoch);
        // Every file is checked before any is loaded.
        let model_bytes = self.read_checked(&model_path, &checksums)?;
        let mut optim_bytes = Vec::with_capacity(optims.len());
        for p in 0..optims.len() {
            optim_bytes.push(self.read_checked(&self.optim_file(epoch, p), &checksums)?);
        }
        let model = model_from_bytes(model, model_bytes, &model_path)?;
        let mut loaded = Vec::with_capacity(optims.len());
        for (p, (optim, bytes)) in optims.into_iter().zip(optim_bytes).enumerate() {
            let optim = optim
                .from_bytes(Bytes::from_bytes_vec(bytes))
                .map_err(|e| self.err(&self.optim_file(epoch, p), e))?;
            loaded.push(optim);
        }
        Ok((model, loaded))
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
    model_from_bytes(model, bytes, path)
}

/// The file name of `path`, as `state.json` keys its checksums.
fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default()
}

/// Loads burnpack `bytes` (read from `path`) into `model`.
fn model_from_bytes<M: Module>(model: M, bytes: Vec<u8>, path: &Path) -> Result<M> {
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
    write_atomic(path, &model_bytes(model, path)?)
}

/// The burnpack bytes of `model` (bound for `path`, which errors name).
fn model_bytes<M: Module>(model: &M, path: &Path) -> Result<Vec<u8>> {
    let bytes = model
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| Error::Checkpoint {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    Ok(bytes.to_vec())
}
