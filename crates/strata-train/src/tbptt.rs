//! Language-model training by truncated back-propagation through time (TBPTT): the token
//! sequence is cut into parallel streams ([`TokenStreams`]), read chunk by chunk, and the
//! model's state is carried from each chunk to the next with its gradient history cut.
//!
//! Epochs, validation, early stopping, checkpoints, resume, the time budget (checked after
//! every step here, since one pass over a corpus can take longer than the budget) and the
//! progress reports are those of [`fit`](crate::fit).

use crate::transfer::Tuner;
use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use strata_data::{TokenChunk, TokenStreams};
use strata_tensor::convert::scalar;
use strata_tensor::derive_seed;

use crate::config::Monitor;
use crate::error::{Error, Result};
use crate::history::EpochRecord;
use crate::objective::Run;
use crate::progress::Console;
use crate::runner::{
    EpochEnd, FitOutcome, Start, check_finite, end_epoch, finish, over_budget, start,
};

/// Everything [`fit_tbptt`] needs besides the model and the tokens.
pub struct Tbptt<'a, F, D> {
    /// `(model, tokens [batch, time], state) -> (logits [batch, time, vocab], state)`.
    pub forward: F,
    /// Cuts a state from the autodiff graph.
    pub detach: D,
    /// Optimizer, schedule, settings (`batch_size` is the number of parallel streams),
    /// device, checkpoints. On resume the carried state restarts from zeros.
    pub run: Run<'a>,
    /// Steps back-propagated through (the chunk length).
    pub seq_len: usize,
    /// Steps per validation chunk ([`EVAL_CHUNK`] for recurrent models; at most the context
    /// of a transformer).
    pub eval_chunk: usize,
    /// Chunks per epoch; `None` is one pass over the training streams. Later epochs go on
    /// where the last one stopped, wrapping around.
    pub steps_per_epoch: Option<usize>,
}

/// Parallel streams used to evaluate a language model (many streams make evaluation fast;
/// each stream starts from a zero state, a negligible effect on long texts).
pub const EVAL_STREAMS: usize = 128;

/// Steps per evaluation chunk.
pub const EVAL_CHUNK: usize = 256;

fn chunk_tensors(c: &TokenChunk, device: &Device) -> (Tensor<2, Int>, Tensor<1, Int>) {
    let ids = |v: &[usize]| v.iter().map(|&i| i as i64).collect::<Vec<i64>>();
    (
        Tensor::from_data(TensorData::new(ids(&c.inputs), [c.batch, c.len]), device),
        Tensor::from_data(TensorData::new(ids(&c.targets), [c.batch * c.len]), device),
    )
}

/// Mean cross-entropy (nats per token) of next-token prediction over `tokens`, read as
/// `batch` streams in chunks of `seq_len` with the state carried through.
///
/// # Errors
/// [`Error::Invalid`] when the tokens cannot fill `batch` streams.
pub fn evaluate_tokens<M, S, F>(
    model: &M,
    forward: &F,
    tokens: &[usize],
    batch: usize,
    seq_len: usize,
    device: &Device,
) -> Result<f64>
where
    F: Fn(&M, Tensor<2, Int>, Option<S>) -> (Tensor<3>, S),
{
    let streams = TokenStreams::new(tokens, batch.min(tokens.len() / 2).max(1))
        .map_err(|e| Error::Invalid(format!("evaluation text: {e}")))?;
    let mut state = None;
    let (mut sum, mut n) = (0.0f64, 0usize);
    for k in 0..streams.n_chunks(seq_len) {
        let chunk = streams.chunk(k, seq_len);
        let (x, y) = chunk_tensors(&chunk, device);
        let (logits, s) = forward(model, x, state);
        let [b, t, v] = logits.dims();
        let loss = scalar(strata_kernels::cross_entropy(logits.reshape([b * t, v]), y)) as f64;
        sum += loss * (b * t) as f64;
        n += b * t;
        state = Some(s);
    }
    Ok(sum / n.max(1) as f64)
}

/// Trains a language model on `train` tokens, validating on `valid` after each epoch. The
/// validation metric is bits per character; early stopping and best weights follow validation
/// loss (nats per token).
///
/// # Errors
/// Invalid settings, too little text for the streams, I/O errors while checkpointing, and
/// [`Error::Diverged`] when the loss becomes NaN or infinite.
pub fn fit_tbptt<M, S, F, D>(
    model: M,
    train: &[usize],
    valid: &[usize],
    f: &Tbptt<'_, F, D>,
) -> Result<FitOutcome<M>>
where
    M: Module,
    F: Fn(&M, Tensor<2, Int>, Option<S>) -> (Tensor<3>, S),
    D: Fn(S) -> S,
{
    let config = f.run.config;
    config.validate()?;
    if f.run.collective.is_some() {
        return Err(Error::Invalid(
            "truncated back-propagation through time does not run data-parallel yet".into(),
        ));
    }
    if f.seq_len == 0 {
        return Err(Error::Invalid("sequence length must be >= 1, got 0".into()));
    }
    let streams = TokenStreams::new(train, config.batch_size)
        .map_err(|e| Error::Invalid(format!("training text: {e}")))?;
    let device = f.run.device.clone();
    let plain = device.clone().without_autodiff();
    let console = Console::default();
    let progress = f.run.progress_or(&console);
    let Start {
        mut model,
        mut optims,
        mut state,
        checkpointer,
        resumed_from,
    } = start(model, &f.run, 1, progress)?;
    let mut tuner = Tuner::new(f.run.fine_tune, &model)?;
    let per_epoch = f
        .steps_per_epoch
        .unwrap_or_else(|| streams.n_chunks(f.seq_len))
        .max(1);
    let mut carry: Option<S> = None;
    let mut epochs_this_call = 0usize;

    while !state.finished && state.epochs_done < config.epochs {
        if f.run.pause_after.is_some_and(|p| epochs_this_call >= p) {
            break;
        }
        let epoch = state.epochs_done;
        let started = Instant::now();
        let lr = state.schedule.lr(epoch);
        model = tuner.begin_epoch(model, epoch);
        device.seed(derive_seed(config.seed, 1_000_000 + epoch as u64));
        progress.epoch_started(epoch + 1, config.epochs, per_epoch);
        let (mut loss_sum, mut seen) = (0.0f64, 0usize);
        let mut cut_short = false;
        for step in 0..per_epoch {
            if over_budget(config, state.train_seconds, started) {
                cut_short = true;
                break;
            }
            let k = epoch * per_epoch + step;
            if k.is_multiple_of(streams.n_chunks(f.seq_len)) {
                carry = None; // a new pass starts the streams afresh
            }
            let chunk = streams.chunk(k, f.seq_len);
            let (x, y) = chunk_tensors(&chunk, &device);
            let (logits, s) = (f.forward)(&model, x, carry.take());
            carry = Some((f.detach)(s));
            let [b, t, v] = logits.dims();
            let loss = strata_kernels::cross_entropy(logits.reshape([b * t, v]), y);
            let value = scalar(loss.clone());
            check_finite(value, epoch, step, &state, checkpointer.is_some(), progress)?;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optims[0].step(tuner.lr(lr), model, grads);
            loss_sum += value as f64;
            seen += 1;
            progress.step_done(step, loss_sum / seen as f64);
        }
        let eval_model = model.valid();
        let valid_loss = evaluate_tokens(
            &eval_model,
            &f.forward,
            valid,
            EVAL_STREAMS,
            f.eval_chunk.max(1),
            &plain,
        )?;
        epochs_this_call += 1;
        let record = EpochRecord {
            epoch: epoch + 1,
            train_loss: loss_sum / seen.max(1) as f64,
            valid_loss,
            valid_metric: valid_loss / std::f64::consts::LN_2,
            lr,
            seconds: started.elapsed().as_secs_f64(),
            losses: Vec::new(),
            tracked: Vec::new(),
        };
        end_epoch(
            &mut state,
            record,
            &EpochEnd {
                config,
                monitor: Monitor::ValidLoss,
                lower: true,
                cut_short,
                metric_name: "bpc",
                checkpointer: checkpointer.as_ref(),
                progress,
            },
            &model,
            &optims,
        )?;
    }
    finish(model, state, config, checkpointer.as_ref(), resumed_from)
}
