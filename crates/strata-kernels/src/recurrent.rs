//! One direction of a recurrent layer (Elman RNN, LSTM, GRU) over a whole sequence, forward and
//! backward, in PyTorch's fused weight layout (`weight_ih` `[gates * H, I]`, `weight_hh`
//! `[gates * H, H]`, gates LSTM `i, f, g, o`, GRU `r, z, n`).
//!
//! burn composes a recurrent step from about 15 tensor operations forward and 30 backward,
//! each a pass over memory with its own allocation and autodiff bookkeeping. Here:
//! - forward: the input projection of every step is one matrix product, then per step one
//!   product of the state by `weight_hh` (added into that step's projection) and one pointwise
//!   pass that applies the gates, the mask and the state update;
//! - backward: per step (last to first) one pointwise pass and one product by `weight_hh`, then
//!   the weight and input gradients as three products over all steps at once.
//!
//! The forward pass keeps, per sequence and step, what its backward pass reads (the
//! *workspace*, [`Geometry::width`] floats: the gate activations, the states it started from
//! and, for the LSTM, the new cell; for the GRU the recurrent part of its candidate gate).
//!
//! A mask (`[batch, time]`, 1 for a real step and 0 for padding) blends as burn's composed
//! layer does: the output is `h' m`, the carried state `h' m + h (1 - m)`.

use crate::gemm::{View, matmul, transpose, with_scratch};
use crate::linear::column_sums;
use crate::math::{sigmoid, simd, tanh};
use crate::memory::zeroed;

/// Sequences of at least this many steps transpose `w_hh` once for their per-step products.
const TRANSPOSE_FROM: usize = 8;

/// The recurrent cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecurrentCell {
    /// `h' = tanh(W_ih x + b_ih + W_hh h + b_hh)`.
    RnnTanh,
    /// `h' = relu(W_ih x + b_ih + W_hh h + b_hh)`.
    RnnRelu,
    /// Long short-term memory, gates `i, f, g, o`.
    Lstm,
    /// Gated recurrent unit, gates `r, z, n`.
    Gru,
}

impl RecurrentCell {
    /// Gate blocks in the fused weights: 1, 4 or 3.
    pub fn gates(self) -> usize {
        match self {
            RecurrentCell::RnnTanh | RecurrentCell::RnnRelu => 1,
            RecurrentCell::Lstm => 4,
            RecurrentCell::Gru => 3,
        }
    }

    /// State tensors: 2 for the LSTM (hidden and cell), 1 otherwise.
    pub fn states(self) -> usize {
        if self == RecurrentCell::Lstm { 2 } else { 1 }
    }
}

/// What one call runs: the cell, whether the sequence is read last to first, and whether its
/// input is table rows ([`Input::Rows`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecurrentSpec {
    /// The cell.
    pub cell: RecurrentCell,
    /// Read the sequence last to first (the reverse direction of a bidirectional layer).
    pub reverse: bool,
    /// The input is a table of input products `W_ih x` (`[rows, G]`, without the bias) whose
    /// rows the tokens pick; `w_ih` is then `[G, 0]`, unread, and its gradient empty.
    pub projected: bool,
}

/// What a run reads as each step's input.
#[derive(Clone, Copy, Debug)]
pub enum Input<'a> {
    /// Features `[batch, time, d_input]`, multiplied by `w_ih` in the run.
    Features(&'a [f32]),
    /// The input products `W_ih x` taken already (without the bias), as the rows of a table
    /// `[rows, G]` (e.g. an embedding table projected once), and each step's row, `tokens`
    /// `[batch, time]`. The geometry is then `projected` and `w_ih` empty.
    Rows {
        /// `[rows, G]`.
        table: &'a [f32],
        /// `[batch, time]`, each below `rows`.
        tokens: &'a [usize],
    },
}

impl Input<'_> {
    /// Checks the lengths against `g`, and the tokens against the table's rows.
    fn check(&self, g: &Geometry) {
        let (n, gates) = (g.batch * g.time, g.gates());
        match *self {
            Input::Features(x) => {
                assert!(!g.projected, "features for a projected geometry");
                assert_eq!(x.len(), n * g.d_input, "x length");
            }
            Input::Rows { table, tokens } => {
                assert!(
                    g.projected,
                    "table rows for a geometry that is not projected"
                );
                assert_eq!(table.len() % gates.max(1), 0, "table length");
                assert_eq!(tokens.len(), n, "tokens length");
                let rows = table.len() / gates.max(1);
                assert!(tokens.iter().all(|&k| k < rows), "a token past the table");
            }
        }
    }
}

/// The sizes of one direction's run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// The cell.
    pub cell: RecurrentCell,
    /// Sequences.
    pub batch: usize,
    /// Steps per sequence.
    pub time: usize,
    /// Input features per step.
    pub d_input: usize,
    /// Hidden units.
    pub d_hidden: usize,
    /// Read last to first.
    pub reverse: bool,
    /// The input is [`Input::Rows`], input products `W_ih x` taken already (`d_input` is
    /// then the gate count and `w_ih` empty): the forward pass reads them instead of
    /// multiplying, and the backward pass returns the table's gradient as `x`'s.
    pub projected: bool,
}

impl Geometry {
    /// Rows of the fused weights: `gates * d_hidden`.
    pub fn gates(&self) -> usize {
        self.cell.gates() * self.d_hidden
    }

    /// Floats the forward pass keeps per sequence and step: the gate activations (`gates`),
    /// then for the LSTM the previous and new cell (`2 H`), for the GRU the candidate gate's
    /// recurrent part (`H`), and last the hidden state the step started from (`H`).
    pub fn width(&self) -> usize {
        self.d_hidden
            * match self.cell {
                RecurrentCell::Lstm => 7,
                RecurrentCell::Gru => 5,
                RecurrentCell::RnnTanh | RecurrentCell::RnnRelu => 2,
            }
    }

    /// Length of the workspace: `batch * time * width`.
    pub fn workspace_len(&self) -> usize {
        self.batch * self.time * self.width()
    }

    /// Length of the outputs at the start of the packed output: `[batch, time, d_hidden]`.
    pub fn outputs_len(&self) -> usize {
        self.batch * self.time * self.d_hidden
    }

    /// Length of the packed output: every step's output (`[batch, time, d_hidden]`), then the
    /// final hidden state (`[batch, d_hidden]`) and, for the LSTM, the final cell (the same).
    pub fn packed_len(&self) -> usize {
        (self.time + self.cell.states()) * self.batch * self.d_hidden
    }

    /// Where the step's starting hidden state sits in a workspace row.
    fn hprev_at(&self) -> usize {
        self.width() - self.d_hidden
    }

    /// The steps in the order the recurrence reads them.
    fn order(&self) -> Vec<usize> {
        if self.reverse {
            (0..self.time).rev().collect()
        } else {
            (0..self.time).collect()
        }
    }

    /// Rows `(b, t)` of a `[batch * time, cols]` matrix for one step `t`, inside rows of
    /// `row` floats starting at column `at`.
    fn step_rows(&self, t: usize, row: usize, at: usize, cols: usize) -> View {
        View {
            offset: t * row + at,
            rows: self.batch,
            cols,
            row_stride: self.time * row,
            col_stride: 1,
        }
    }
}

/// A direction's parameters: `w_ih` `[G, I]`, `w_hh` `[G, H]`, `b_ih` and `b_hh` `[G]` (zeros
/// for a layer without biases).
#[derive(Clone, Copy, Debug)]
pub struct Weights<'a> {
    /// Input weights, `[G, I]`.
    pub w_ih: &'a [f32],
    /// Recurrent weights, `[G, H]`.
    pub w_hh: &'a [f32],
    /// Input bias, `[G]`.
    pub b_ih: &'a [f32],
    /// Recurrent bias, `[G]`.
    pub b_hh: &'a [f32],
}

impl Weights<'_> {
    fn check(&self, g: &Geometry) {
        let gates = g.gates();
        if g.projected {
            assert_eq!(g.d_input, gates, "projected input width");
            assert!(self.w_ih.is_empty(), "w_ih with a projected input");
        } else {
            assert_eq!(self.w_ih.len(), gates * g.d_input, "w_ih length");
        }
        assert_eq!(self.w_hh.len(), gates * g.d_hidden, "w_hh length");
        assert_eq!(self.b_ih.len(), gates, "b_ih length");
        assert_eq!(self.b_hh.len(), gates, "b_hh length");
    }
}

/// The gradients of [`forward`]'s packed output with respect to each input.
#[derive(Clone, Debug, PartialEq)]
pub struct Gradients {
    /// `[batch, time, d_input]`.
    pub x: Vec<f32>,
    /// `[G, I]` (empty for a projected input).
    pub w_ih: Vec<f32>,
    /// `[G, H]`.
    pub w_hh: Vec<f32>,
    /// `[G]`.
    pub b_ih: Vec<f32>,
    /// `[G]`.
    pub b_hh: Vec<f32>,
    /// `[batch, H]`.
    pub h0: Vec<f32>,
    /// `[batch, H]` (zeros for a cell without one).
    pub c0: Vec<f32>,
}

/// Runs one direction over `input` (features `[batch, time, d_input]` or table rows) from
/// `h0` (and, for the LSTM, `c0`; both `[batch, H]`), writing what the backward pass needs
/// into `workspace` ([`Geometry::workspace_len`] floats). Returns the packed output
/// ([`Geometry::packed_len`]): every step's output `[batch, time, H]`, then the final hidden
/// state `[batch, H]` (and cell).
///
/// # Panics
/// When a slice's length disagrees with `g`, or a token is past the table.
pub fn forward(
    g: &Geometry,
    input: Input,
    w: &Weights,
    h0: &[f32],
    c0: &[f32],
    mask: Option<&[f32]>,
    workspace: &mut [f32],
) -> Vec<f32> {
    let (batch, time, hd) = (g.batch, g.time, g.d_hidden);
    let (gates, width) = (g.gates(), g.width());
    input.check(g);
    assert_eq!(h0.len(), batch * hd, "h0 length");
    assert_eq!(workspace.len(), g.workspace_len(), "workspace length");
    if let Some(m) = mask {
        assert_eq!(m.len(), batch * time, "mask length");
    }
    w.check(g);
    let lstm = g.cell == RecurrentCell::Lstm;
    if lstm {
        assert_eq!(c0.len(), batch * hd, "c0 length");
    }
    let mut packed = zeroed(g.packed_len());
    if batch == 0 || time == 0 || hd == 0 {
        return packed;
    }
    // Outside the GRU's candidate gate the two biases appear summed: add them once.
    let bias: Vec<f32> = if g.cell == RecurrentCell::Gru {
        w.b_ih.to_vec()
    } else {
        w.b_ih.iter().zip(w.b_hh).map(|(a, b)| a + b).collect()
    };
    // `w_hh` transposed once per sequence (`[H, G]`), so that each step's product reads it as
    // gemm's column-major left operand, without packing it again at every step; not worth its
    // copy for a few steps (generation runs one step per call).
    let w_hh_t = (time >= TRANSPOSE_FROM).then(|| {
        let mut t = vec![0.0f32; gates * hd];
        transpose(w.w_hh, hd, gates, hd, &mut t, gates);
        t
    });
    // `inputs`: the input products, `[batch, time, G]` or table rows picked by `tokens`.
    let mut run = |inputs: &[f32], tokens: Option<&[usize]>| {
        // The sequences are independent: each chunk of them runs its whole recurrence on one
        // thread, with no hand-off between threads at each step.
        let chunks = split_batch(batch);
        let ws_parts = split_rows(workspace, &chunks, time * width);
        let out_parts = split_packed(&mut packed, &chunks, g);
        let jobs: Vec<_> = chunks.iter().zip(ws_parts).zip(out_parts).collect();
        run_jobs(jobs, |((&(b0, b1), ws), out)| {
            let chunk = Geometry {
                batch: b1 - b0,
                ..*g
            };
            let c0 = if lstm { &c0[b0 * hd..b1 * hd] } else { &[][..] };
            let state = (&h0[b0 * hd..b1 * hd], c0);
            let inputs = match tokens {
                Some(tokens) => (inputs, Some(&tokens[b0 * time..b1 * time])),
                None => (&inputs[b0 * time * gates..b1 * time * gates], None),
            };
            let mask = mask.map(|m| &m[b0 * time..b1 * time]);
            let weights = (w, w_hh_t.as_deref(), &bias[..]);
            recur(&chunk, weights, inputs, state, mask, ws, out);
        });
    };
    match input {
        Input::Rows { table, tokens } => run(table, Some(tokens)),
        // Every step's input projection at once (the pointwise passes add the bias).
        Input::Features(x) => with_scratch(batch * time * gates, |inputs| {
            matmul(
                inputs,
                View::row_major(0, batch * time, gates),
                x,
                View::row_major(0, batch * time, g.d_input),
                w.w_ih,
                View::row_major(0, gates, g.d_input).t(),
                false,
            );
            run(inputs, None);
        }),
    }
    packed
}

/// A chunk's parts of the packed output: its outputs, final hidden states and final cells.
type PackedPart<'a> = (&'a mut [f32], &'a mut [f32], &'a mut [f32]);

/// The packed output cut into each chunk's outputs, final hidden states and (for the LSTM)
/// final cells.
fn split_packed<'a>(
    packed: &'a mut [f32],
    chunks: &[(usize, usize)],
    g: &Geometry,
) -> Vec<PackedPart<'a>> {
    let hd = g.d_hidden;
    let (outputs, finals) = packed.split_at_mut(g.outputs_len());
    let (hidden, cell) = finals.split_at_mut(g.batch * hd);
    let cell_width = if g.cell == RecurrentCell::Lstm { hd } else { 0 };
    split_rows(outputs, chunks, g.time * hd)
        .into_iter()
        .zip(split_rows(hidden, chunks, hd))
        .zip(split_rows(cell, chunks, cell_width))
        .map(|((o, h), c)| (o, h, c))
        .collect()
}

/// A chunk's parts of the packed output's gradient, as [`split_packed`] cuts them.
fn packed_part<'a>(packed: &'a [f32], g: &Geometry, b0: usize, b1: usize) -> [&'a [f32]; 3] {
    let hd = g.d_hidden;
    let (outputs, finals) = packed.split_at(g.outputs_len());
    let (hidden, cell) = finals.split_at(g.batch * hd);
    let cell = if g.cell == RecurrentCell::Lstm {
        &cell[b0 * hd..b1 * hd]
    } else {
        &[][..]
    };
    [
        &outputs[b0 * g.time * hd..b1 * g.time * hd],
        &hidden[b0 * hd..b1 * hd],
        cell,
    ]
}

/// `run` over the chunks' jobs: on rayon's threads when there are several.
fn run_jobs<J: Send>(jobs: Vec<J>, run: impl Fn(J) + Send + Sync) {
    if jobs.len() > 1 {
        use rayon::prelude::*;
        crate::gemm::region(|| jobs.into_par_iter().for_each(run));
    } else {
        jobs.into_iter().for_each(run);
    }
}

/// Chunks of the batch, one per thread when the caller is not already on a worker thread:
/// `(first, end)` pairs covering `0..batch`.
fn split_batch(batch: usize) -> Vec<(usize, usize)> {
    let threads = if crate::gemm::on_worker() {
        1
    } else {
        rayon::current_num_threads()
    };
    let n = threads.clamp(1, batch.max(1));
    (0..n)
        .map(|i| (i * batch / n, (i + 1) * batch / n))
        .collect()
}

/// `buffer` cut into the parts that hold each chunk's sequences, `per_sequence` floats each.
fn split_rows<'a>(
    mut buffer: &'a mut [f32],
    chunks: &[(usize, usize)],
    per_sequence: usize,
) -> Vec<&'a mut [f32]> {
    let mut parts = Vec::with_capacity(chunks.len());
    for &(b0, b1) in chunks {
        let (part, rest) = std::mem::take(&mut buffer).split_at_mut((b1 - b0) * per_sequence);
        parts.push(part);
        buffer = rest;
    }
    parts
}

/// The recurrence of one chunk of sequences (`g.batch` of them), serial: per step the product
/// of the state by `w_hh` (into a small buffer that stays in cache) and the pointwise pass,
/// which adds it to the step's input products (`inputs`: rows `[batch, time, G]`, or table
/// rows picked by the chunk's tokens) and the bias.
/// `weights` are the direction's weights, `w_hh` transposed (for sequences of
/// `TRANSPOSE_FROM` steps or more) and the bias the pointwise pass adds; `state` the initial
/// hidden state and cell, `ws` the chunk's workspace rows, `out` its parts of the packed output.
fn recur(
    g: &Geometry,
    weights: (&Weights, Option<&[f32]>, &[f32]),
    inputs: (&[f32], Option<&[usize]>),
    state: (&[f32], &[f32]),
    mask: Option<&[f32]>,
    workspace: &mut [f32],
    out: PackedPart<'_>,
) {
    let (w, w_hh_t, bias) = weights;
    let (batch, time, hd) = (g.batch, g.time, g.d_hidden);
    let (gates, width) = (g.gates(), g.width());
    let lstm = g.cell == RecurrentCell::Lstm;
    let (outputs, h_n, c_n) = out;
    let mut h = state.0.to_vec();
    let mut c = if lstm { state.1.to_vec() } else { Vec::new() };
    // The step's recurrent products, `[batch, G]`.
    let mut products = vec![0.0f32; batch * gates];
    let hprev_at = g.hprev_at();
    for t in g.order() {
        for b in 0..batch {
            let row = (b * time + t) * width;
            workspace[row + hprev_at..row + width].copy_from_slice(&h[b * hd..(b + 1) * hd]);
            if lstm {
                workspace[row + 4 * hd..row + 5 * hd].copy_from_slice(&c[b * hd..(b + 1) * hd]);
            }
        }
        // Each step's product transposed, `products^T = w_hh h^T`: gemm then runs its widest
        // kernel down the `G` rows, with every operand in the layout it reads unpacked.
        let d = View::row_major(0, batch, gates);
        match w_hh_t {
            Some(w_t) => {
                let weights = View::row_major(0, hd, gates).t();
                let state_t = View::row_major(0, batch, hd).t();
                matmul(&mut products, d.t(), w_t, weights, &h, state_t, false);
            }
            None => {
                let weights_t = View::row_major(0, gates, hd).t();
                let state = View::row_major(0, batch, hd);
                matmul(&mut products, d, &h, state, w.w_hh, weights_t, false);
            }
        }
        let step = Step {
            g,
            t,
            inputs: inputs.0,
            tokens: inputs.1,
            bias,
            products: &products,
            mask,
        };
        match g.cell {
            RecurrentCell::Lstm => lstm_step(&step, workspace, &mut h, &mut c, outputs),
            RecurrentCell::Gru => gru_step(&step, w.b_hh, workspace, &mut h, outputs),
            _ => rnn_step(&step, workspace, &mut h, outputs),
        }
    }
    h_n.copy_from_slice(&h);
    c_n.copy_from_slice(&c);
}

/// What a forward step's pointwise pass reads: step `t`'s input products (`inputs`, rows
/// `[batch, time, G]`, or the rows of a table that `tokens` `[batch, time]` pick), the bias to
/// add to them, the step's recurrent products (`[batch, G]`) and the mask.
struct Step<'a> {
    g: &'a Geometry,
    t: usize,
    inputs: &'a [f32],
    tokens: Option<&'a [usize]>,
    bias: &'a [f32],
    products: &'a [f32],
    mask: Option<&'a [f32]>,
}

impl Step<'_> {
    /// Sequence `b`'s input products (without the bias) and recurrent products.
    fn rows(&self, b: usize) -> (&[f32], &[f32]) {
        let gates = self.g.gates();
        let at = b * self.g.time + self.t;
        let row = self.tokens.map_or(at, |tokens| tokens[at]);
        (
            &self.inputs[row * gates..][..gates],
            &self.products[b * gates..][..gates],
        )
    }

    /// Sequence `b`'s mask value at this step.
    fn mask(&self, b: usize) -> Option<f32> {
        self.mask.map(|m| m[b * self.g.time + self.t])
    }
}

/// [`forward`] without keeping a workspace for the backward pass (inference).
///
/// # Panics
/// As [`forward`].
pub fn infer(
    g: &Geometry,
    input: Input,
    w: &Weights,
    h0: &[f32],
    c0: &[f32],
    mask: Option<&[f32]>,
) -> Vec<f32> {
    with_scratch(g.workspace_len(), |ws| {
        forward(g, input, w, h0, c0, mask, ws)
    })
}

/// The gradients of [`forward`] given the gradient of its packed output, from the inputs and
/// the workspace that forward pass wrote. For [`Input::Rows`] the input's gradient is the
/// table's (`[rows, G]`).
///
/// # Panics
/// When a slice's length disagrees with `g`, or a token is past the table.
pub fn backward(
    g: &Geometry,
    input: Input,
    w: &Weights,
    workspace: &[f32],
    mask: Option<&[f32]>,
    packed_grad: &[f32],
) -> Gradients {
    let (batch, time, hd, d_in) = (g.batch, g.time, g.d_hidden, g.d_input);
    let (gates, width) = (g.gates(), g.width());
    input.check(g);
    assert_eq!(workspace.len(), g.workspace_len(), "workspace length");
    assert_eq!(packed_grad.len(), g.packed_len(), "gradient length");
    if let Some(m) = mask {
        assert_eq!(m.len(), batch * time, "mask length");
    }
    w.check(g);
    let gru = g.cell == RecurrentCell::Gru;
    let n = batch * time * gates;
    let mut out = Gradients {
        x: match input {
            // Summed per token below.
            Input::Rows { table, .. } => vec![0.0; table.len()],
            // Written whole by a product below.
            Input::Features(_) => zeroed(batch * time * d_in),
        },
        w_ih: if g.projected {
            Vec::new()
        } else {
            vec![0.0; gates * d_in]
        },
        w_hh: vec![0.0; gates * hd],
        b_ih: vec![0.0; gates],
        b_hh: vec![0.0; gates],
        h0: vec![0.0; batch * hd],
        c0: vec![0.0; batch * hd],
    };
    // The pre-activation gradients of every step, `[batch * time, G]` (for the GRU a second
    // matrix for the recurrent side, whose candidate block is scaled by `r`).
    let scratch = if gru { 2 * n } else { n };
    with_scratch(scratch, |buffer| {
        let (dgx, dgh) = buffer.split_at_mut(n);
        // Each chunk of sequences runs its steps back on one thread, as forward.
        let chunks = split_batch(batch);
        let dgx_parts = split_rows(dgx, &chunks, time * gates);
        let dgh_parts = if gru {
            split_rows(dgh, &chunks, time * gates)
        } else {
            chunks.iter().map(|_| Default::default()).collect()
        };
        let dh_parts = split_rows(&mut out.h0, &chunks, hd);
        let dc_parts = split_rows(&mut out.c0, &chunks, hd);
        let jobs: Vec<_> = chunks
            .iter()
            .zip(dgx_parts.into_iter().zip(dgh_parts))
            .zip(dh_parts.into_iter().zip(dc_parts))
            .map(|((&(b0, b1), (dgx, dgh)), (dh, dc))| (b0, b1, dgx, dgh, dh, dc))
            .collect();
        let run = |(b0, b1, dgx, dgh, dh, dc): Job<'_>| {
            let chunk = Geometry {
                batch: b1 - b0,
                ..*g
            };
            let ws = &workspace[b0 * time * width..b1 * time * width];
            let grad = packed_part(packed_grad, g, b0, b1);
            let mask = mask.map(|m| &m[b0 * time..b1 * time]);
            recur_back(&chunk, w, ws, grad, mask, dh, dc, dgx, dgh);
        };
        run_jobs(jobs, run);
        let dgh: &[f32] = if gru { &*dgh } else { &*dgx };
        let all = View::row_major(0, batch * time, gates);
        match input {
            Input::Features(x) => {
                matmul(
                    &mut out.w_ih,
                    View::row_major(0, gates, d_in),
                    dgx,
                    all.t(),
                    x,
                    View::row_major(0, batch * time, d_in),
                    false,
                );
                matmul(
                    &mut out.x,
                    View::row_major(0, batch * time, d_in),
                    dgx,
                    all,
                    w.w_ih,
                    View::row_major(0, gates, d_in),
                    false,
                );
                column_sums(dgx, &mut out.b_ih);
            }
            // The table's rows and the bias in one pass over the gradients.
            Input::Rows { tokens, .. } => sum_by_token(dgx, tokens, &mut out.x, &mut out.b_ih),
        }
        let hprev = View {
            offset: g.hprev_at(),
            rows: batch * time,
            cols: hd,
            row_stride: width,
            col_stride: 1,
        };
        matmul(
            &mut out.w_hh,
            View::row_major(0, gates, hd),
            dgh,
            all.t(),
            workspace,
            hprev,
            false,
        );
        if gru {
            column_sums(dgh, &mut out.b_hh);
        } else {
            out.b_hh.copy_from_slice(&out.b_ih);
        }
    });
    out
}

/// Columns per task of [`sum_by_token`].
const TOKEN_COLUMNS: usize = 256;

/// Adds each row of `rows` (`[n, G]`, `G = sums.len()`) into row `tokens[i]` of `table`
/// (`[_, G]`, zeros on entry) and into `sums`. Blocks of columns run on rayon's threads, each
/// summing its rows in order, so the result does not depend on the number of threads.
fn sum_by_token(rows: &[f32], tokens: &[usize], table: &mut [f32], sums: &mut [f32]) {
    use rayon::prelude::*;
    let cols = sums.len();
    if cols == 0 {
        return;
    }
    let table_rows = table.len() / cols;
    // Each block's own `[rows, block]` part of the table (its first column and width), copied
    // into place after.
    let block = |(k, sums): (usize, &mut [f32])| {
        let (at, len) = (k * TOKEN_COLUMNS, sums.len());
        let mut part = vec![0.0f32; table_rows * len];
        add_rows(rows, cols, at, tokens, &mut part, sums);
        (at, len, part)
    };
    let parts: Vec<(usize, usize, Vec<f32>)> = if cols > TOKEN_COLUMNS && !crate::gemm::on_worker()
    {
        sums.par_chunks_mut(TOKEN_COLUMNS)
            .enumerate()
            .map(block)
            .collect()
    } else {
        sums.chunks_mut(TOKEN_COLUMNS)
            .enumerate()
            .map(block)
            .collect()
    };
    for (at, len, part) in parts {
        for (dst, src) in table.chunks_exact_mut(cols).zip(part.chunks_exact(len)) {
            dst[at..at + len].copy_from_slice(src);
        }
    }
}

simd! {
    /// Columns `at..at + sums.len()` of `rows` (rows of `cols` floats) added into `part`'s row
    /// `tokens[i]` (rows of `sums.len()` floats) and into `sums` (zeros on entry).
    fn add_rows(rows: &[f32], cols: usize, at: usize, tokens: &[usize], part: &mut [f32], sums: &mut [f32]) {
        let len = sums.len();
        for (row, &k) in rows.chunks_exact(cols).zip(tokens) {
            let src = &row[at..at + len];
            for ((s, d), v) in sums.iter_mut().zip(&mut part[k * len..(k + 1) * len]).zip(src) {
                *s += v;
                *d += v;
            }
        }
    }
}

/// What one chunk's backward pass writes: its first and end sequence, its rows of the
/// pre-activation gradients (input and recurrent side), and its initial state's gradients.
type Job<'a> = (
    usize,
    usize,
    &'a mut [f32],
    &'a mut [f32],
    &'a mut [f32],
    &'a mut [f32],
);

/// The steps of one chunk of sequences back, serial: from the final state's gradient (the
/// chunk's parts of the packed output's gradient: outputs, final hidden state, final cell) to
/// the initial state's (left in `dh`, `dc`), writing every step's
/// pre-activation gradients into `dgx` (and `dgh` for the GRU).
#[allow(clippy::too_many_arguments)]
fn recur_back(
    g: &Geometry,
    w: &Weights,
    workspace: &[f32],
    packed_grad: [&[f32]; 3],
    mask: Option<&[f32]>,
    dh: &mut [f32],
    dc: &mut [f32],
    dgx: &mut [f32],
    dgh: &mut [f32],
) {
    let (batch, hd) = (g.batch, g.d_hidden);
    let gates = g.gates();
    let gru = g.cell == RecurrentCell::Gru;
    let [douts, dh_n, dc_n] = packed_grad;
    dh.copy_from_slice(dh_n);
    if g.cell == RecurrentCell::Lstm {
        dc.copy_from_slice(dc_n);
    }
    for t in g.order().into_iter().rev() {
        match g.cell {
            RecurrentCell::Lstm => lstm_step_back(g, t, workspace, douts, mask, dh, dc, dgx),
            RecurrentCell::Gru => gru_step_back(g, t, workspace, douts, mask, dh, dgx, dgh),
            _ => rnn_step_back(g, t, workspace, douts, mask, dh, dgx),
        }
        // Transposed as forward: `dh^T += w_hh^T dg^T`, where `w_hh^T` is `w_hh` read
        // column-major.
        let dg: &[f32] = if gru { &*dgh } else { &*dgx };
        matmul(
            dh,
            View::row_major(0, batch, hd).t(),
            w.w_hh,
            View::row_major(0, gates, hd).t(),
            dg,
            g.step_rows(t, gates, 0, gates).t(),
            true,
        );
    }
}

/// The `N` gate blocks of `H` floats at the start of `v`.
#[inline(always)]
fn blocks<const N: usize>(v: &[f32], hd: usize) -> [&[f32]; N] {
    std::array::from_fn(|k| &v[k * hd..(k + 1) * hd])
}

/// `(new, old)` blended by the mask value: `new m + old (1 - m)`, or `new` without a mask.
#[inline(always)]
fn blend(new: f32, old: f32, m: Option<f32>) -> f32 {
    match m {
        Some(m) => new * m + old * (1.0 - m),
        None => new,
    }
}

/// The step's output: `new m`, or `new` without a mask.
#[inline(always)]
fn masked(new: f32, m: Option<f32>) -> f32 {
    match m {
        Some(m) => new * m,
        None => new,
    }
}

simd! {
    /// An LSTM step's pointwise pass: the gates from their pre-activations (input products,
    /// bias and recurrent products; the activations are kept in the workspace), the new
    /// cell (kept), the output and the carried state.
    fn lstm_step(
        step: &Step,
        ws: &mut [f32],
        h: &mut [f32],
        c: &mut [f32],
        outputs: &mut [f32],
    ) {
        let g = step.g;
        let (hd, width) = (g.d_hidden, g.width());
        let [bi, bf, bg, bo] = blocks(step.bias, hd);
        for b in 0..g.batch {
            let m = step.mask(b);
            let (x, p) = step.rows(b);
            let [xi, xf, xg, xo] = blocks(x, hd);
            let [pi, pf, pg, po] = blocks(p, hd);
            let row = (b * g.time + step.t) * width;
            let (act, rest) = ws[row..row + width].split_at_mut(4 * hd);
            let (ai, act) = act.split_at_mut(hd);
            let (af, act) = act.split_at_mut(hd);
            let (ag, ao) = act.split_at_mut(hd);
            let c_new = &mut rest[hd..2 * hd];
            let hb = &mut h[b * hd..(b + 1) * hd];
            let cb = &mut c[b * hd..(b + 1) * hd];
            let out = &mut outputs[(b * g.time + step.t) * hd..][..hd];
            for j in 0..hd {
                let i = sigmoid(xi[j] + bi[j] + pi[j]);
                let f = sigmoid(xf[j] + bf[j] + pf[j]);
                let gg = tanh(xg[j] + bg[j] + pg[j]);
                let o = sigmoid(xo[j] + bo[j] + po[j]);
                ai[j] = i;
                af[j] = f;
                ag[j] = gg;
                ao[j] = o;
                let cn = f * cb[j] + i * gg;
                c_new[j] = cn;
                let hn = o * tanh(cn);
                out[j] = masked(hn, m);
                hb[j] = blend(hn, hb[j], m);
                cb[j] = blend(cn, cb[j], m);
            }
        }
    }
}

simd! {
    /// A GRU step's pointwise pass, from the input side's pre-activations (input products and
    /// `b_ih`) and the recurrent side's (products and `b_hh`); `r, z, n` and the candidate
    /// gate's recurrent part are kept in the workspace.
    fn gru_step(step: &Step, b_hh: &[f32], ws: &mut [f32], h: &mut [f32], outputs: &mut [f32]) {
        let g = step.g;
        let (hd, width) = (g.d_hidden, g.width());
        let [bh_r, bh_z, bh_n] = blocks(b_hh, hd);
        let [bi_r, bi_z, bi_n] = blocks(step.bias, hd);
        for b in 0..g.batch {
            let m = step.mask(b);
            let (x, gh) = step.rows(b);
            let [x_r, x_z, x_n] = blocks(x, hd);
            let [gh_r, gh_z, gh_n] = blocks(gh, hd);
            let row = (b * g.time + step.t) * width;
            let (act, rest) = ws[row..row + width].split_at_mut(3 * hd);
            let (ar, act) = act.split_at_mut(hd);
            let (az, an) = act.split_at_mut(hd);
            let ghn = &mut rest[..hd];
            let hb = &mut h[b * hd..(b + 1) * hd];
            let out = &mut outputs[(b * g.time + step.t) * hd..][..hd];
            for j in 0..hd {
                let r = sigmoid((x_r[j] + bi_r[j]) + (gh_r[j] + bh_r[j]));
                let z = sigmoid((x_z[j] + bi_z[j]) + (gh_z[j] + bh_z[j]));
                let hn_part = gh_n[j] + bh_n[j];
                let n = tanh((x_n[j] + bi_n[j]) + r * hn_part);
                ar[j] = r;
                az[j] = z;
                an[j] = n;
                ghn[j] = hn_part;
                let hn = n + z * (hb[j] - n);
                out[j] = masked(hn, m);
                hb[j] = blend(hn, hb[j], m);
            }
        }
    }
}

simd! {
    /// An Elman step's pointwise pass: tanh or ReLU of the pre-activation (input products,
    /// bias and recurrent products), kept in the workspace.
    fn rnn_step(step: &Step, ws: &mut [f32], h: &mut [f32], outputs: &mut [f32]) {
        let g = step.g;
        let (hd, width) = (g.d_hidden, g.width());
        let relu = g.cell == RecurrentCell::RnnRelu;
        for b in 0..g.batch {
            let m = step.mask(b);
            let (x, p) = step.rows(b);
            let row = (b * g.time + step.t) * width;
            let act = &mut ws[row..row + hd];
            let hb = &mut h[b * hd..(b + 1) * hd];
            let out = &mut outputs[(b * g.time + step.t) * hd..][..hd];
            let (x, p, bias) = (&x[..hd], &p[..hd], &step.bias[..hd]);
            for j in 0..hd {
                let pre = x[j] + bias[j] + p[j];
                let hn = if relu { pre.max(0.0) } else { tanh(pre) };
                act[j] = hn;
                out[j] = masked(hn, m);
                hb[j] = blend(hn, hb[j], m);
            }
        }
    }
}

simd! {
    /// An LSTM step backward: the pre-activation gradients into `dg`'s rows of step `t`, and
    /// `dh`, `dc` carried to the previous step (before the product by `w_hh`).
    #[allow(clippy::too_many_arguments)]
    fn lstm_step_back(
        g: &Geometry,
        t: usize,
        ws: &[f32],
        douts: &[f32],
        mask: Option<&[f32]>,
        dh: &mut [f32],
        dc: &mut [f32],
        dg: &mut [f32],
    ) {
        let (hd, width) = (g.d_hidden, g.width());
        for b in 0..g.batch {
            let m = mask.map(|m| m[b * g.time + t]);
            let row = (b * g.time + t) * width;
            let (act, rest) = ws[row..row + width].split_at(4 * hd);
            let (ai, act) = act.split_at(hd);
            let (af, act) = act.split_at(hd);
            let (ag, ao) = act.split_at(hd);
            let (c_prev, rest) = rest.split_at(hd);
            let c_new = &rest[..hd];
            let dout = &douts[(b * g.time + t) * hd..][..hd];
            let dhb = &mut dh[b * hd..(b + 1) * hd];
            let dcb = &mut dc[b * hd..(b + 1) * hd];
            let dgb = &mut dg[(b * g.time + t) * 4 * hd..][..4 * hd];
            let (d_i, dgb) = dgb.split_at_mut(hd);
            let (d_f, dgb) = dgb.split_at_mut(hd);
            let (d_g, d_o) = dgb.split_at_mut(hd);
            for j in 0..hd {
                let (i, f, gg, o) = (ai[j], af[j], ag[j], ao[j]);
                let dh_new = masked(dout[j] + dhb[j], m);
                let tc = tanh(c_new[j]);
                let dc_new = masked(dcb[j], m) + dh_new * o * (1.0 - tc * tc);
                d_i[j] = dc_new * gg * i * (1.0 - i);
                d_f[j] = dc_new * c_prev[j] * f * (1.0 - f);
                d_g[j] = dc_new * i * (1.0 - gg * gg);
                d_o[j] = dh_new * tc * o * (1.0 - o);
                let (dh_keep, dc_keep) = match m {
                    Some(m) => (dhb[j] * (1.0 - m), dcb[j] * (1.0 - m)),
                    None => (0.0, 0.0),
                };
                dhb[j] = dh_keep;
                dcb[j] = dc_new * f + dc_keep;
            }
        }
    }
}

simd! {
    /// A GRU step backward: the input side's pre-activation gradients into `dgx`, the
    /// recurrent side's into `dgh` (the candidate block times `r`), and `dh` carried to the
    /// previous step (before the product by `w_hh`).
    #[allow(clippy::too_many_arguments)]
    fn gru_step_back(
        g: &Geometry,
        t: usize,
        ws: &[f32],
        douts: &[f32],
        mask: Option<&[f32]>,
        dh: &mut [f32],
        dgx: &mut [f32],
        dgh: &mut [f32],
    ) {
        let (hd, width) = (g.d_hidden, g.width());
        for b in 0..g.batch {
            let m = mask.map(|m| m[b * g.time + t]);
            let row = (b * g.time + t) * width;
            let (act, rest) = ws[row..row + width].split_at(3 * hd);
            let (ar, act) = act.split_at(hd);
            let (az, an) = act.split_at(hd);
            let (ghn, rest) = rest.split_at(hd);
            let h_prev = &rest[..hd];
            let dout = &douts[(b * g.time + t) * hd..][..hd];
            let dhb = &mut dh[b * hd..(b + 1) * hd];
            let at = (b * g.time + t) * 3 * hd;
            let dx = &mut dgx[at..at + 3 * hd];
            let (dx_r, dx) = dx.split_at_mut(hd);
            let (dx_z, dx_n) = dx.split_at_mut(hd);
            let dr = &mut dgh[at..at + 3 * hd];
            let (dh_r, dr) = dr.split_at_mut(hd);
            let (dh_z, dh_n) = dr.split_at_mut(hd);
            for j in 0..hd {
                let (r, z, n) = (ar[j], az[j], an[j]);
                let dh_new = masked(dout[j] + dhb[j], m);
                let dn = dh_new * (1.0 - z) * (1.0 - n * n);
                let dz = dh_new * (h_prev[j] - n) * z * (1.0 - z);
                let dr = dn * ghn[j] * r * (1.0 - r);
                dx_r[j] = dr;
                dx_z[j] = dz;
                dx_n[j] = dn;
                dh_r[j] = dr;
                dh_z[j] = dz;
                dh_n[j] = dn * r;
                let keep = match m {
                    Some(m) => dhb[j] * (1.0 - m),
                    None => 0.0,
                };
                dhb[j] = dh_new * z + keep;
            }
        }
    }
}

simd! {
    /// An Elman step backward: the pre-activation gradient into `dg`, and `dh` carried to the
    /// previous step (before the product by `w_hh`).
    fn rnn_step_back(
        g: &Geometry,
        t: usize,
        ws: &[f32],
        douts: &[f32],
        mask: Option<&[f32]>,
        dh: &mut [f32],
        dg: &mut [f32],
    ) {
        let (hd, width) = (g.d_hidden, g.width());
        let relu = g.cell == RecurrentCell::RnnRelu;
        for b in 0..g.batch {
            let m = mask.map(|m| m[b * g.time + t]);
            let row = (b * g.time + t) * width;
            let act = &ws[row..row + hd];
            let dout = &douts[(b * g.time + t) * hd..][..hd];
            let dhb = &mut dh[b * hd..(b + 1) * hd];
            let dgb = &mut dg[(b * g.time + t) * hd..][..hd];
            for j in 0..hd {
                let hn = act[j];
                let dh_new = masked(dout[j] + dhb[j], m);
                dgb[j] = if relu {
                    if hn > 0.0 { dh_new } else { 0.0 }
                } else {
                    dh_new * (1.0 - hn * hn)
                };
                dhb[j] = match m {
                    Some(m) => dhb[j] * (1.0 - m),
                    None => 0.0,
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random vector in [-scale, scale].
    fn values(n: usize, seed: u32, scale: f32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(12_345);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32 * 2.0 - 1.0) * scale
            })
            .collect()
    }

    struct Case {
        g: Geometry,
        x: Vec<f32>,
        w_ih: Vec<f32>,
        w_hh: Vec<f32>,
        b_ih: Vec<f32>,
        b_hh: Vec<f32>,
        h0: Vec<f32>,
        c0: Vec<f32>,
        mask: Option<Vec<f32>>,
    }

    impl Case {
        /// Three sequences of `time` steps (lengths `time`, `time / 2` and `time - 1` when
        /// masked); from `TRANSPOSE_FROM` steps on the products take the transposed `w_hh`.
        fn new(cell: RecurrentCell, reverse: bool, masked: bool, time: usize) -> Self {
            let g = Geometry {
                cell,
                batch: 3,
                time,
                d_input: 5,
                d_hidden: 6,
                reverse,
                projected: false,
            };
            let gates = g.gates();
            let mask = masked.then(|| {
                // Lengths 4, 2 and 3.
                let lengths = [time, time / 2, time - 1];
                (0..3)
                    .flat_map(|b| (0..time).map(move |t| if t < lengths[b] { 1.0 } else { 0.0 }))
                    .collect()
            });
            Self {
                g,
                x: values(3 * time * 5, 1, 1.0),
                w_ih: values(gates * 5, 2, 0.5),
                w_hh: values(gates * 6, 3, 0.5),
                b_ih: values(gates, 4, 0.3),
                b_hh: values(gates, 5, 0.3),
                h0: values(18, 6, 0.5),
                c0: values(18, 7, 0.5),
                mask,
            }
        }

        fn weights(&self) -> Weights<'_> {
            Weights {
                w_ih: &self.w_ih,
                w_hh: &self.w_hh,
                b_ih: &self.b_ih,
                b_hh: &self.b_hh,
            }
        }

        fn run(&self) -> Vec<f32> {
            infer(
                &self.g,
                Input::Features(&self.x),
                &self.weights(),
                &self.h0,
                &self.c0,
                self.mask.as_deref(),
            )
        }
    }

    /// A plain per-step reference in f64, straight from the cell's equations.
    fn reference(case: &Case) -> Vec<f64> {
        let g = &case.g;
        let (hd, gates) = (g.d_hidden, g.gates());
        let mut packed = vec![0.0f64; g.packed_len()];
        let (h_n, c_n) = (g.outputs_len(), g.outputs_len() + g.batch * hd);
        for b in 0..g.batch {
            let mut h: Vec<f64> = case.h0[b * hd..(b + 1) * hd]
                .iter()
                .map(|&v| v as f64)
                .collect();
            let mut c: Vec<f64> = case.c0[b * hd..(b + 1) * hd]
                .iter()
                .map(|&v| v as f64)
                .collect();
            for t in g.order() {
                let xt = &case.x[(b * g.time + t) * g.d_input..][..g.d_input];
                let lin = |w: &[f32], v: &[f64], k: usize, d: usize| -> f64 {
                    (0..d).map(|p| w[k * d + p] as f64 * v[p]).sum()
                };
                let xv: Vec<f64> = xt.iter().map(|&v| v as f64).collect();
                let gx: Vec<f64> = (0..gates)
                    .map(|k| lin(&case.w_ih, &xv, k, g.d_input) + case.b_ih[k] as f64)
                    .collect();
                let ghv: Vec<f64> = (0..gates)
                    .map(|k| lin(&case.w_hh, &h, k, hd) + case.b_hh[k] as f64)
                    .collect();
                let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
                let (hn, cn): (Vec<f64>, Vec<f64>) = match g.cell {
                    RecurrentCell::RnnTanh => (
                        (0..hd).map(|j| (gx[j] + ghv[j]).tanh()).collect(),
                        c.clone(),
                    ),
                    RecurrentCell::RnnRelu => (
                        (0..hd).map(|j| (gx[j] + ghv[j]).max(0.0)).collect(),
                        c.clone(),
                    ),
                    RecurrentCell::Lstm => {
                        let p = |k: usize| gx[k] + ghv[k];
                        let cn: Vec<f64> = (0..hd)
                            .map(|j| sig(p(hd + j)) * c[j] + sig(p(j)) * p(2 * hd + j).tanh())
                            .collect();
                        (
                            (0..hd).map(|j| sig(p(3 * hd + j)) * cn[j].tanh()).collect(),
                            cn,
                        )
                    }
                    RecurrentCell::Gru => {
                        let hn = (0..hd)
                            .map(|j| {
                                let r = sig(gx[j] + ghv[j]);
                                let z = sig(gx[hd + j] + ghv[hd + j]);
                                let n = (gx[2 * hd + j] + r * ghv[2 * hd + j]).tanh();
                                (1.0 - z) * n + z * h[j]
                            })
                            .collect();
                        (hn, c.clone())
                    }
                };
                let m = case.mask.as_ref().map_or(1.0, |m| m[b * g.time + t] as f64);
                for j in 0..hd {
                    packed[(b * g.time + t) * hd + j] = hn[j] * m;
                    h[j] = hn[j] * m + h[j] * (1.0 - m);
                    c[j] = cn[j] * m + c[j] * (1.0 - m);
                }
            }
            for j in 0..hd {
                packed[h_n + b * hd + j] = h[j];
                if g.cell == RecurrentCell::Lstm {
                    packed[c_n + b * hd + j] = c[j];
                }
            }
        }
        packed
    }

    /// One input of a case, by name.
    type Field = fn(&mut Case) -> &mut Vec<f32>;

    const CELLS: [RecurrentCell; 4] = [
        RecurrentCell::RnnTanh,
        RecurrentCell::RnnRelu,
        RecurrentCell::Lstm,
        RecurrentCell::Gru,
    ];

    #[test]
    fn forward_matches_the_cell_equations() {
        for cell in CELLS {
            for reverse in [false, true] {
                for masked in [false, true] {
                    for time in [4, TRANSPOSE_FROM + 3] {
                        let case = Case::new(cell, reverse, masked, time);
                        let got = case.run();
                        let want = reference(&case);
                        assert_eq!(got.len(), want.len());
                        for (k, (a, b)) in got.iter().zip(&want).enumerate() {
                            assert!(
                                (*a as f64 - b).abs() < 1e-5,
                                "{cell:?} reverse {reverse} masked {masked} time {time} at {k}: \
                             {a} vs {b}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// The forward pass writes every element of the workspace before reading it, so a reused
    /// workspace's old contents (here NaN) change no output or gradient (the flex kernel op
    /// hands out kept workspaces unzeroed).
    #[test]
    fn old_workspace_contents_are_never_read() {
        for cell in CELLS {
            for (reverse, masked) in [(false, false), (true, true)] {
                let case = Case::new(cell, reverse, masked, TRANSPOSE_FROM + 3);
                let v = values(case.g.packed_len(), 11, 1.0);
                let run = |fill: f32| {
                    let mut ws = vec![fill; case.g.workspace_len()];
                    let (w, mask) = (case.weights(), case.mask.as_deref());
                    let x = Input::Features(&case.x);
                    let out = forward(&case.g, x, &w, &case.h0, &case.c0, mask, &mut ws);
                    let grads = backward(&case.g, x, &w, &ws, mask, &v);
                    (out, ws, grads)
                };
                let (out, ws, grads) = run(0.0);
                let (out_nan, ws_nan, grads_nan) = run(f32::NAN);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                let at = format!("{cell:?} reverse {reverse} masked {masked}");
                assert_eq!(bits(&ws), bits(&ws_nan), "{at}: workspace");
                assert_eq!(bits(&out), bits(&out_nan), "{at}: outputs");
                assert_eq!(grads, grads_nan, "{at}: gradients");
            }
        }
    }

    /// Driven from one of rayon's threads ([`crate::drive`]), the batch's chunks still run in
    /// parallel with serial products inside, and the outputs are the same bits.
    #[test]
    fn a_driven_run_gives_the_same_bits() {
        for cell in CELLS {
            let case = Case::new(cell, false, true, TRANSPOSE_FROM + 3);
            let plain = case.run();
            let driven = crate::drive(|| case.run());
            assert_eq!(plain.len(), driven.len());
            let same = plain
                .iter()
                .zip(&driven)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{cell:?}: driven outputs differ");
        }
    }

    /// Given `x W_ih^T` as its input, the projected run outputs what the plain run does, and
    /// its input gradient (the pre-activation gradient) gives the plain run's `x` and `w_ih`
    /// gradients through the product: `dx = dg W_ih`, `dW_ih = dg^T x`.
    #[test]
    fn a_projected_input_matches_its_product() {
        for cell in CELLS {
            for reverse in [false, true] {
                for masked in [false, true] {
                    for time in [4, TRANSPOSE_FROM + 3] {
                        let case = Case::new(cell, reverse, masked, time);
                        let (g, gates, d_in) = (case.g, case.g.gates(), case.g.d_input);
                        let rows = g.batch * g.time;
                        let xp: Vec<f32> = (0..rows * gates)
                            .map(|k| {
                                let (r, o) = (k / gates, k % gates);
                                (0..d_in)
                                    .map(|p| case.x[r * d_in + p] * case.w_ih[o * d_in + p])
                                    .sum()
                            })
                            .collect();
                        let gp = Geometry {
                            d_input: gates,
                            projected: true,
                            ..g
                        };
                        let wp = Weights {
                            w_ih: &[],
                            ..case.weights()
                        };
                        let v = values(g.packed_len(), 11, 1.0);
                        let run = |g: &Geometry, x: Input, w: &Weights| {
                            let mut ws = vec![0.0; g.workspace_len()];
                            let (h0, c0, mask) = (&case.h0, &case.c0, case.mask.as_deref());
                            let out = forward(g, x, w, h0, c0, mask, &mut ws);
                            (out, backward(g, x, w, &ws, mask, &v))
                        };
                        let (out, grads) = run(&g, Input::Features(&case.x), &case.weights());
                        // One table row per step, in order.
                        let tokens: Vec<usize> = (0..rows).collect();
                        let rows_input = Input::Rows {
                            table: &xp,
                            tokens: &tokens,
                        };
                        let (out_p, grads_p) = run(&gp, rows_input, &wp);
                        let at = format!("{cell:?} reverse {reverse} masked {masked} time {time}");
                        let close = |a: &[f32], b: &[f32], tol: f32, what: &str| {
                            assert_eq!(a.len(), b.len(), "{at}: {what} length");
                            for (k, (x, y)) in a.iter().zip(b).enumerate() {
                                assert!((x - y).abs() <= tol, "{at}: {what}[{k}] {x} vs {y}");
                            }
                        };
                        close(&out_p, &out, 1e-5, "output");
                        assert!(grads_p.w_ih.is_empty(), "{at}: no w_ih gradient");
                        let dg = &grads_p.x;
                        assert_eq!(dg.len(), rows * gates, "{at}: input gradient length");
                        let dx: Vec<f32> = (0..rows * d_in)
                            .map(|k| {
                                let (r, p) = (k / d_in, k % d_in);
                                (0..gates)
                                    .map(|o| dg[r * gates + o] * case.w_ih[o * d_in + p])
                                    .sum()
                            })
                            .collect();
                        let dw: Vec<f32> = (0..gates * d_in)
                            .map(|k| {
                                let (o, p) = (k / d_in, k % d_in);
                                (0..rows)
                                    .map(|r| dg[r * gates + o] * case.x[r * d_in + p])
                                    .sum()
                            })
                            .collect();
                        close(&dx, &grads.x, 1e-4, "x gradient");
                        close(&dw, &grads.w_ih, 1e-4, "w_ih gradient");
                        close(&grads_p.w_hh, &grads.w_hh, 1e-4, "w_hh gradient");
                        close(&grads_p.b_ih, &grads.b_ih, 1e-4, "b_ih gradient");
                        close(&grads_p.b_hh, &grads.b_hh, 1e-4, "b_hh gradient");
                        close(&grads_p.h0, &grads.h0, 1e-4, "h0 gradient");
                        close(&grads_p.c0, &grads.c0, 1e-4, "c0 gradient");
                    }
                }
            }
        }
    }

    /// Rows picked by tokens (repeated, in any order) run as the same rows gathered into a
    /// table of one row per step, and the table's gradient is that run's row gradients summed
    /// per token; the bias gradient is the same.
    #[test]
    fn table_rows_by_token_match_the_gathered_rows() {
        for cell in CELLS {
            let case = Case::new(cell, false, true, TRANSPOSE_FROM + 3);
            let g = Geometry {
                d_input: case.g.gates(),
                projected: true,
                ..case.g
            };
            let (gates, steps) = (g.gates(), g.batch * g.time);
            let table = values(5 * gates, 31, 1.0);
            let tokens: Vec<usize> = (0..steps).map(|i| (i * 7 + i / 3) % 5).collect();
            let gathered: Vec<f32> = tokens
                .iter()
                .flat_map(|&k| table[k * gates..(k + 1) * gates].iter().copied())
                .collect();
            let order: Vec<usize> = (0..steps).collect();
            let w = Weights {
                w_ih: &[],
                ..case.weights()
            };
            let v = values(g.packed_len(), 11, 1.0);
            let run = |input: Input| {
                let mut ws = vec![0.0; g.workspace_len()];
                let (h0, c0, mask) = (&case.h0, &case.c0, case.mask.as_deref());
                let out = forward(&g, input, &w, h0, c0, mask, &mut ws);
                (out, backward(&g, input, &w, &ws, mask, &v))
            };
            let (out, grads) = run(Input::Rows {
                table: &table,
                tokens: &tokens,
            });
            let (out_g, grads_g) = run(Input::Rows {
                table: &gathered,
                tokens: &order,
            });
            assert_eq!(out, out_g, "{cell:?}: outputs");
            let mut summed = vec![0.0f32; table.len()];
            for (i, &k) in tokens.iter().enumerate() {
                for j in 0..gates {
                    summed[k * gates + j] += grads_g.x[i * gates + j];
                }
            }
            assert_eq!(
                grads.x.len(),
                table.len(),
                "{cell:?}: table gradient length"
            );
            for (k, (a, b)) in grads.x.iter().zip(&summed).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-5,
                    "{cell:?}: table gradient [{k}] {a} vs {b}"
                );
            }
            assert_eq!(grads.b_ih, grads_g.b_ih, "{cell:?}: bias gradient");
            assert_eq!(grads.w_hh, grads_g.w_hh, "{cell:?}: w_hh gradient");
        }
    }

    /// No sequences and an empty table: empty outputs and gradients, no panic.
    #[test]
    fn an_empty_batch_over_an_empty_table_runs() {
        let case = Case::new(RecurrentCell::Lstm, false, false, 4);
        let g = Geometry {
            batch: 0,
            d_input: case.g.gates(),
            projected: true,
            ..case.g
        };
        let w = Weights {
            w_ih: &[],
            ..case.weights()
        };
        let input = Input::Rows {
            table: &[],
            tokens: &[],
        };
        let out = forward(&g, input, &w, &[], &[], None, &mut []);
        assert!(out.is_empty());
        let grads = backward(&g, input, &w, &[], None, &[]);
        assert!(grads.x.is_empty() && grads.h0.is_empty());
        assert!(grads.w_hh.iter().chain(&grads.b_ih).all(|&v| v == 0.0));
    }

    #[test]
    #[should_panic(expected = "a token past the table")]
    fn a_token_past_the_table_panics() {
        let case = Case::new(RecurrentCell::Gru, false, false, 4);
        let g = Geometry {
            d_input: case.g.gates(),
            projected: true,
            ..case.g
        };
        let table = vec![0.0; 2 * g.gates()];
        let mut tokens = vec![0; g.batch * g.time];
        tokens[5] = 2;
        let w = Weights {
            w_ih: &[],
            ..case.weights()
        };
        let input = Input::Rows {
            table: &table,
            tokens: &tokens,
        };
        let _ = infer(&g, input, &w, &case.h0, &case.c0, None);
    }

    /// The directional derivative of `<v, packed>` along each input, by central differences
    /// in f32 on a perturbation of one whole input, against the analytic gradient's dot
    /// product with the same perturbation.
    #[test]
    fn gradients_match_finite_differences() {
        for cell in CELLS {
            for reverse in [false, true] {
                for masked in [false, true] {
                    for time in [4, TRANSPOSE_FROM + 3] {
                        let case = Case::new(cell, reverse, masked, time);
                        let v = values(case.g.packed_len(), 11, 1.0);
                        let mut ws = vec![0.0; case.g.workspace_len()];
                        let _ = forward(
                            &case.g,
                            Input::Features(&case.x),
                            &case.weights(),
                            &case.h0,
                            &case.c0,
                            case.mask.as_deref(),
                            &mut ws,
                        );
                        let grads = backward(
                            &case.g,
                            Input::Features(&case.x),
                            &case.weights(),
                            &ws,
                            case.mask.as_deref(),
                            &v,
                        );
                        let objective = |c: &Case| -> f64 {
                            c.run()
                                .iter()
                                .zip(&v)
                                .map(|(a, b)| *a as f64 * *b as f64)
                                .sum()
                        };
                        let fields: [(&str, &Vec<f32>, Field); 7] = [
                            ("x", &grads.x, |c| &mut c.x),
                            ("w_ih", &grads.w_ih, |c| &mut c.w_ih),
                            ("w_hh", &grads.w_hh, |c| &mut c.w_hh),
                            ("b_ih", &grads.b_ih, |c| &mut c.b_ih),
                            ("b_hh", &grads.b_hh, |c| &mut c.b_hh),
                            ("h0", &grads.h0, |c| &mut c.h0),
                            ("c0", &grads.c0, |c| &mut c.c0),
                        ];
                        for (k, (name, grad, field)) in fields.into_iter().enumerate() {
                            let mut probe = Case::new(cell, reverse, masked, time);
                            let direction = values(field(&mut probe).len(), 20 + k as u32, 1.0);
                            // Smaller for ReLU, whose kinks a larger step may cross.
                            let eps = if cell == RecurrentCell::RnnRelu {
                                1e-3f32
                            } else {
                                1e-2
                            };
                            let shifted = |sign: f32| {
                                let mut c = Case::new(cell, reverse, masked, time);
                                for (p, d) in field(&mut c).iter_mut().zip(&direction) {
                                    *p += sign * eps * d;
                                }
                                objective(&c)
                            };
                            let numeric = (shifted(1.0) - shifted(-1.0)) / (2.0 * eps as f64);
                            let analytic: f64 = grad
                                .iter()
                                .zip(&direction)
                                .map(|(a, b)| *a as f64 * *b as f64)
                                .sum();
                            assert_eq!(grad.len(), direction.len(), "{name} length");
                            let tol = 2e-3 * (1.0 + analytic.abs());
                            assert!(
                                (numeric - analytic).abs() < tol,
                                "{cell:?} reverse {reverse} masked {masked} time {time} {name}: \
                             numeric {numeric} vs analytic {analytic}"
                            );
                        }
                    }
                }
            }
        }
    }
}
