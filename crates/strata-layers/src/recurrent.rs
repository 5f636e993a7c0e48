//! Recurrent layers (vanilla RNN, LSTM, GRU): stacked, optionally bidirectional, with padding
//! masks, laid out exactly like PyTorch's `nn.RNN`, `nn.LSTM` and `nn.GRU`.
//!
//! burn has `Rnn`, `Lstm` and `Gru` (and `Bi*`), but they take no lengths or mask, compute each
//! gate with its own pair of linear layers (eight matrix products per LSTM step), and stack
//! neither layers nor directions. This module keeps PyTorch's fused layout instead: per layer and
//! direction a `weight_ih` of `[gates * d_hidden, d_input]`, a `weight_hh` of
//! `[gates * d_hidden, d_hidden]` and two biases, gates in PyTorch's order (LSTM `i, f, g, o`;
//! GRU `r, z, n`). The input projection of all time steps is one matrix product, each step one
//! more. A PyTorch `state_dict` loads with a key remapping ([`pytorch_key_remapping`]) and no
//! tensor transformation.
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use strata_layers::{CellKind, RecurrentConfig};
//! let device = Device::flex();
//! let lstm = RecurrentConfig::new(CellKind::Lstm, 3, 8)
//!     .with_n_layers(2)
//!     .with_bidirectional(true)
//!     .init(&device);
//! let x = Tensor::<3>::zeros([4, 5, 3], &device); // [batch, time, features]
//! let (y, state) = lstm.forward(x, None, None);
//! assert_eq!(y.dims(), [4, 5, 16]); // both directions, concatenated
//! assert_eq!(state.hidden.dims(), [4, 4, 8]); // [layers * directions, batch, hidden]
//! ```

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, Initializer};
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use strata_kernels::RecurrentInput;

/// The recurrent cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CellKind {
    /// Elman RNN with tanh, `h' = tanh(W_ih x + b_ih + W_hh h + b_hh)` (PyTorch `nn.RNN`).
    RnnTanh,
    /// Elman RNN with ReLU (`nn.RNN(nonlinearity="relu")`).
    RnnRelu,
    /// Long short-term memory (`nn.LSTM`), gates `i, f, g, o`.
    Lstm,
    /// Gated recurrent unit (`nn.GRU`), gates `r, z, n`.
    Gru,
}

impl From<CellKind> for strata_kernels::RecurrentCell {
    fn from(cell: CellKind) -> Self {
        match cell {
            CellKind::RnnTanh => Self::RnnTanh,
            CellKind::RnnRelu => Self::RnnRelu,
            CellKind::Lstm => Self::Lstm,
            CellKind::Gru => Self::Gru,
        }
    }
}

impl CellKind {
    /// Number of gate blocks in the fused weights: 1, 4 or 3.
    pub fn n_gates(self) -> usize {
        match self {
            CellKind::RnnTanh | CellKind::RnnRelu => 1,
            CellKind::Lstm => 4,
            CellKind::Gru => 3,
        }
    }

    /// Whether the state has a cell tensor besides the hidden one (LSTM).
    pub fn has_cell(self) -> bool {
        self == CellKind::Lstm
    }
}

/// Configuration of a [`Recurrent`] layer stack.
#[derive(Config, Debug)]
pub struct RecurrentConfig {
    /// The cell.
    pub cell: CellKind,
    /// Input features per time step.
    pub d_input: usize,
    /// Hidden units per direction.
    pub d_hidden: usize,
    /// Stacked layers, default 1.
    #[config(default = 1)]
    pub n_layers: usize,
    /// Run a second, time-reversed direction in each layer and concatenate, default false.
    #[config(default = false)]
    pub bidirectional: bool,
    /// Dropout on each layer's output except the last (as PyTorch), default 0.
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Biases `bias_ih` and `bias_hh`, default true.
    #[config(default = true)]
    pub bias: bool,
}

/// One direction of one layer: PyTorch's fused weights.
#[derive(Module, Debug)]
pub struct Direction {
    /// `[gates * d_hidden, d_input]`.
    pub weight_ih: Param<Tensor<2>>,
    /// `[gates * d_hidden, d_hidden]`.
    pub weight_hh: Param<Tensor<2>>,
    /// `[gates * d_hidden]`.
    pub bias_ih: Option<Param<Tensor<1>>>,
    /// `[gates * d_hidden]`.
    pub bias_hh: Option<Param<Tensor<1>>>,
}

/// One layer: a forward direction and, when bidirectional, a reverse one.
#[derive(Module, Debug)]
pub struct RecurrentLayer {
    /// Reads the sequence first to last.
    pub forward: Direction,
    /// Reads the sequence last to first.
    pub reverse: Option<Direction>,
}

/// Hidden (and, for LSTM, cell) state of a [`Recurrent`] stack, in PyTorch's layout:
/// `[n_layers * directions, batch, d_hidden]`, index `layer * directions + direction`.
#[derive(Debug, Clone)]
pub struct RecurrentState {
    /// `h`, `[n_layers * directions, batch, d_hidden]`.
    pub hidden: Tensor<3>,
    /// `c` for LSTM, same shape; `None` for RNN and GRU.
    pub cell: Option<Tensor<3>>,
}

impl RecurrentState {
    /// The state cut from the autodiff graph (truncated back-propagation through time).
    pub fn detach(self) -> Self {
        Self {
            hidden: self.hidden.detach(),
            cell: self.cell.map(Tensor::detach),
        }
    }
}

/// A stack of recurrent layers, batch first. Build it with [`RecurrentConfig::init`].
#[derive(Module, Debug)]
pub struct Recurrent {
    /// The layers, first to last.
    pub layers: Vec<RecurrentLayer>,
    /// Dropout between layers.
    pub dropout: Dropout,
    /// The cell (not a parameter).
    #[module(skip)]
    pub cell: CellKind,
    /// Hidden units per direction.
    pub d_hidden: usize,
}

impl RecurrentConfig {
    /// Builds the stack with PyTorch's initialisation: every weight and bias uniform in
    /// `[-1/sqrt(d_hidden), 1/sqrt(d_hidden)]`.
    ///
    /// # Panics
    /// When a size is zero; [`Recurrent`] users validate their config first (the
    /// architectures in `strata-arch` do).
    pub fn init(&self, device: &Device) -> Recurrent {
        assert!(
            self.d_input > 0 && self.d_hidden > 0 && self.n_layers > 0,
            "recurrent sizes must be >= 1"
        );
        let k = 1.0 / (self.d_hidden as f64).sqrt();
        let init = Initializer::Uniform { min: -k, max: k };
        let g = self.cell.n_gates() * self.d_hidden;
        let dirs = if self.bidirectional { 2 } else { 1 };
        let direction = |d_in: usize| Direction {
            weight_ih: init.init([g, d_in], device),
            weight_hh: init.init([g, self.d_hidden], device),
            bias_ih: self.bias.then(|| init.init([g], device)),
            bias_hh: self.bias.then(|| init.init([g], device)),
        };
        let layers = (0..self.n_layers)
            .map(|l| {
                let d_in = if l == 0 {
                    self.d_input
                } else {
                    self.d_hidden * dirs
                };
                RecurrentLayer {
                    forward: direction(d_in),
                    reverse: self.bidirectional.then(|| direction(d_in)),
                }
            })
            .collect();
        Recurrent {
            layers,
            dropout: DropoutConfig::new(self.dropout).init(),
            cell: self.cell,
            d_hidden: self.d_hidden,
        }
    }
}

/// A `[batch, time]` mask with 1 where `t < lengths[b]` and 0 after.
///
/// # Panics
/// When a length exceeds `time` (callers check lengths against their batch).
pub fn length_mask(lengths: &[usize], time: usize, device: &Device) -> Tensor<2> {
    let mut m = Vec::with_capacity(lengths.len() * time);
    for &len in lengths {
        assert!(len <= time, "length {len} exceeds the {time} time steps");
        m.extend((0..time).map(|t| if t < len { 1.0f32 } else { 0.0 }));
    }
    Tensor::from_data(TensorData::new(m, [lengths.len(), time]), device)
}

/// The key remapping that loads a PyTorch `nn.RNN`/`nn.LSTM`/`nn.GRU` `state_dict` into a
/// [`Recurrent`] stored at `path` in a model (empty for the stack itself), as
/// `(pattern, replacement)` pairs for burn-store's `with_key_remapping`; `prefix` is the module's
/// name in the PyTorch model (`"lstm."`, or `""` for a bare `nn.LSTM`).
pub fn pytorch_key_remapping(prefix: &str, path: &str) -> [(String, String); 2] {
    let to = if path.is_empty() {
        String::new()
    } else {
        format!("{path}.")
    };
    let p = regex_escape(prefix);
    [
        (
            format!(r"^{p}(weight|bias)_(ih|hh)_l(\d+)_reverse$"),
            format!("{to}layers.$3.reverse.${{1}}_$2"),
        ),
        (
            format!(r"^{p}(weight|bias)_(ih|hh)_l(\d+)$"),
            format!("{to}layers.$3.forward.${{1}}_$2"),
        ),
    ]
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A layer's input in the whole-sequence path: features, or (first layer only) tokens to
/// embed with a table, whose products with the input weights are taken once per row.
#[allow(clippy::large_enum_variant)] // one value per forward pass, moved, never stored
enum LayerInput {
    /// `[batch, time, d_input]`.
    Features(Tensor<3>),
    /// `tokens` `[batch, time]` into `table` `[vocab, d_input]`.
    Tokens {
        tokens: Tensor<2, Int>,
        table: Tensor<2>,
    },
}

impl Direction {
    /// Runs this direction over its input as one kernel (`strata_kernels::recurrent`), or
    /// `None` where the backend has none.
    fn run_fused(
        &self,
        cell: CellKind,
        input: &LayerInput,
        mask: Option<Tensor<2>>,
        h0: Tensor<2>,
        c0: Option<Tensor<2>>,
        reverse: bool,
    ) -> Option<strata_kernels::RecurrentOutput> {
        let (x, projected) = match input {
            LayerInput::Features(x) => (RecurrentInput::Features(x.clone()), false),
            // The table's products `[vocab, G]`, whose rows the kernel reads by token; its
            // backward pass sums the gate gradients per token into the products' gradient,
            // which the product takes on to the table's and `w_ih`'s.
            LayerInput::Tokens { tokens, table } => {
                let products = table.clone().matmul(self.weight_ih.val().transpose());
                let rows = RecurrentInput::Rows {
                    table: products,
                    tokens: tokens.clone(),
                };
                (rows, true)
            }
        };
        let spec = strata_kernels::RecurrentSpec {
            cell: cell.into(),
            reverse,
            projected,
        };
        strata_kernels::recurrent(
            spec,
            x,
            (!projected).then(|| self.weight_ih.val()),
            self.weight_hh.val(),
            self.bias_ih.as_ref().map(|b| b.val()),
            self.bias_hh.as_ref().map(|b| b.val()),
            h0,
            c0,
            mask,
        )
    }

    /// Runs this direction over the steps `xs` (each `[batch, d_input]`), from `h0` (and
    /// `c0`), reading them in reverse when `reverse`. Masked steps (`mask[b, t] = 0`) leave the
    /// state unchanged and output zeros. Returns one output per step, in time order.
    ///
    /// The steps are separate tensors rather than slices of one `[batch, time, _]` tensor: the
    /// gradient of a slice is a zero tensor of the whole input, so slicing every step would
    /// cost time squared in the backward pass.
    fn run(
        &self,
        cell: CellKind,
        xs: &[Tensor<2>],
        mask: Option<&[Tensor<2>]>,
        h0: Tensor<2>,
        c0: Option<Tensor<2>>,
        reverse: bool,
    ) -> (Vec<Tensor<2>>, Tensor<2>, Option<Tensor<2>>) {
        let time = xs.len();
        let d_hidden = self.weight_hh.dims()[1];
        let w_ih = self.weight_ih.val().transpose();
        let w_hh = self.weight_hh.val().transpose();
        let b_ih = self.bias_ih.as_ref().map(|b| b.val().unsqueeze_dim::<2>(0));
        let b_hh = self.bias_hh.as_ref().map(|b| b.val().unsqueeze_dim::<2>(0));
        // Outside the GRU's candidate gate the two biases always appear summed: add them once.
        let gru = cell == CellKind::Gru;
        let (b_x, b_h) = match (b_ih, b_hh) {
            (Some(i), Some(h)) if !gru => (Some(i + h), None),
            (i, h) => (i, h),
        };
        let mut h = h0;
        let mut c = c0;
        let mut outputs: Vec<Option<Tensor<2>>> = vec![None; time];
        let steps: Box<dyn Iterator<Item = usize>> = if reverse {
            Box::new((0..time).rev())
        } else {
            Box::new(0..time)
        };
        for t in steps {
            let mut gx = xs[t].clone().matmul(w_ih.clone());
            if let Some(b) = &b_x {
                gx = gx + b.clone();
            }
            let mut gh = h.clone().matmul(w_hh.clone());
            if let Some(b) = &b_h {
                gh = gh + b.clone();
            }
            let (h_new, c_new) = match cell {
                CellKind::RnnTanh => ((gx + gh).tanh(), None),
                CellKind::RnnRelu => (relu(gx + gh), None),
                CellKind::Lstm => {
                    let pre = gx + gh;
                    // One sigmoid over all four blocks; i, f and o are read from it.
                    let act = sigmoid(pre.clone());
                    let i = act.clone().narrow(1, 0, d_hidden);
                    let f = act.clone().narrow(1, d_hidden, d_hidden);
                    let o = act.narrow(1, 3 * d_hidden, d_hidden);
                    let g = pre.narrow(1, 2 * d_hidden, d_hidden).tanh();
                    let c_prev = c.clone().expect("an LSTM state has a cell");
                    let c_new = f * c_prev + i * g;
                    (o * c_new.clone().tanh(), Some(c_new))
                }
                CellKind::Gru => {
                    let two = 2 * d_hidden;
                    let rz = sigmoid(gx.clone().narrow(1, 0, two) + gh.clone().narrow(1, 0, two));
                    let r = rz.clone().narrow(1, 0, d_hidden);
                    let z = rz.narrow(1, d_hidden, d_hidden);
                    let n = (gx.narrow(1, two, d_hidden) + r * gh.narrow(1, two, d_hidden)).tanh();
                    (n.clone() + z * (h.clone() - n), None)
                }
            };
            let (h_next, c_next, out) = match mask {
                None => (h_new.clone(), c_new, h_new),
                Some(m) => {
                    let mt = m[t].clone(); // [batch, 1]
                    let keep = mt.clone().neg() + 1.0;
                    let h_next = h_new.clone() * mt.clone() + h.clone() * keep.clone();
                    let c_next = match (c_new, c.take()) {
                        (Some(cn), Some(cp)) => Some(cn * mt.clone() + cp * keep),
                        _ => None,
                    };
                    (h_next, c_next, h_new * mt)
                }
            };
            outputs[t] = Some(out);
            h = h_next;
            c = c_next;
        }
        (outputs.into_iter().flatten().collect(), h, c)
    }
}

impl Recurrent {
    /// The cell of this stack.
    pub fn cell_kind(&self) -> CellKind {
        self.cell
    }

    /// Directions per layer (1 or 2).
    pub fn directions(&self) -> usize {
        if self.layers.first().is_some_and(|l| l.reverse.is_some()) {
            2
        } else {
            1
        }
    }

    /// Features of each output step: `d_hidden * directions`.
    pub fn d_output(&self) -> usize {
        self.d_hidden * self.directions()
    }

    /// A zero state for `batch` sequences.
    pub fn zero_state(&self, batch: usize, device: &Device) -> RecurrentState {
        let n = self.layers.len() * self.directions();
        let zeros = || Tensor::<3>::zeros([n, batch, self.d_hidden], device);
        RecurrentState {
            hidden: zeros(),
            cell: self.cell.has_cell().then(zeros),
        }
    }

    /// Runs the stack over a batch of sequences.
    ///
    /// `mask` (`[batch, time]`, 1 for real steps and 0 for padding, e.g. from
    /// [`length_mask`]) makes padded steps leave every state unchanged and output zeros, as
    /// PyTorch's packed sequences do; padding must come after the real steps.
    ///
    /// # Shapes
    /// - `x`: `[batch, time, d_input]`
    /// - `state`: [`RecurrentState`] of `[n_layers * directions, batch, d_hidden]`, zeros when
    ///   `None`
    /// - returns the last layer's outputs `[batch, time, d_hidden * directions]` (directions
    ///   concatenated, forward first) and the final state.
    ///
    /// # Panics
    /// When `x`, `mask` or `state` disagree in shape with each other or with the config.
    pub fn forward(
        &self,
        x: Tensor<3>,
        mask: Option<Tensor<2>>,
        state: Option<RecurrentState>,
    ) -> (Tensor<3>, RecurrentState) {
        if self.runs_fused(&x.device())
            && let Some(out) =
                self.forward_fused(LayerInput::Features(x.clone()), mask.clone(), state.clone())
        {
            return out;
        }
        let [batch, time, d_in] = x.dims();
        let steps: Vec<Tensor<2>> = (0..time)
            .map(|t| x.clone().narrow(1, t, 1).reshape([batch, d_in]))
            .collect();
        let (ys, state) = self.forward_steps(steps, mask, state);
        let ys: Vec<Tensor<3>> = ys.into_iter().map(|y| y.unsqueeze_dim(1)).collect();
        (Tensor::cat(ys, 1), state)
    }

    /// Whether [`forward`](Self::forward) runs each layer and direction as one whole-sequence
    /// kernel on `device` (flex): then one `[batch, time, _]` tensor is the cheap input, and
    /// [`forward_steps`](Self::forward_steps) the dearer one.
    pub fn runs_fused(&self, device: &Device) -> bool {
        strata_kernels::runs_kernels(device)
    }

    /// [`forward`](Self::forward) over `table.select(0, tokens)`, embedded tokens, where the
    /// whole-sequence kernels run ([`runs_fused`](Self::runs_fused)) and the vocabulary is no
    /// larger than `batch * time`; `None` otherwise (then embed and call `forward`).
    ///
    /// The first layer multiplies each table row by its input weights once, `[vocab, G]`,
    /// and its kernel reads each step's row of those products by token, rather than
    /// multiplying every step's embedding: a character model's 84 rows instead of
    /// `batch * time` (1,600 in the benchmark), and its backward pass sums the gate gradients
    /// per token instead of two products over all steps. The same function, the same
    /// gradients up to rounding.
    ///
    /// # Shapes
    /// - `tokens`: `[batch, time]` row indices into `table` (`[vocab, d_input]`)
    /// - `mask`, `state` and the result: as [`forward`](Self::forward)
    ///
    /// `None` (the caller then embeds the tokens itself) where the kernels do not run, the
    /// table has more rows than the batch has steps, or a token is outside the table.
    ///
    /// # Panics
    /// As [`forward`](Self::forward).
    pub fn forward_tokens(
        &self,
        tokens: Tensor<2, Int>,
        table: Tensor<2>,
        mask: Option<Tensor<2>>,
        state: Option<RecurrentState>,
    ) -> Option<(Tensor<3>, RecurrentState)> {
        let [batch, time] = tokens.dims();
        if !self.runs_fused(&tokens.device()) || table.dims()[0] > batch * time {
            return None;
        }
        self.forward_fused(LayerInput::Tokens { tokens, table }, mask, state)
    }

    /// The stack as whole-sequence kernels, or `None` where a direction's kernel is missing.
    fn forward_fused(
        &self,
        x: LayerInput,
        mask: Option<Tensor<2>>,
        state: Option<RecurrentState>,
    ) -> Option<(Tensor<3>, RecurrentState)> {
        let (batch, device) = match &x {
            LayerInput::Features(x) => (x.dims()[0], x.device()),
            LayerInput::Tokens { tokens, .. } => (tokens.dims()[0], tokens.device()),
        };
        let dirs = self.directions();
        let state = state.unwrap_or_else(|| self.zero_state(batch, &device));
        let pick =
            |t: &Tensor<3>, i: usize| t.clone().narrow(0, i, 1).reshape([batch, self.d_hidden]);
        let mut h_out = Vec::with_capacity(self.layers.len() * dirs);
        let mut c_out = Vec::new();
        let mut input = x;
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            let directions = std::iter::once((&layer.forward, false))
                .chain(layer.reverse.as_ref().map(|d| (d, true)));
            let mut outs = Vec::with_capacity(dirs);
            for (d, (dir, reverse)) in directions.enumerate() {
                let i = l * dirs + d;
                let h0 = pick(&state.hidden, i);
                let c0 = state.cell.as_ref().map(|c| pick(c, i));
                let out = dir.run_fused(self.cell, &input, mask.clone(), h0, c0, reverse)?;
                outs.push(out.output);
                h_out.push(out.hidden);
                c_out.extend(out.cell);
            }
            let y = if outs.len() == 1 {
                outs.pop().expect("one direction")
            } else {
                Tensor::cat(outs, 2)
            };
            input = LayerInput::Features(if l < last {
                strata_kernels::dropout_layer(&self.dropout, y)
            } else {
                y
            });
        }
        let state = RecurrentState {
            hidden: Tensor::stack(h_out, 0),
            cell: (!c_out.is_empty()).then(|| Tensor::stack(c_out, 0)),
        };
        let LayerInput::Features(y) = input else {
            unreachable!("every layer's output is features")
        };
        Some((y, state))
    }

    /// [`forward`](Self::forward) over steps given as separate tensors, returning one output
    /// per step. Cheaper to differentiate when the steps are made one by one (e.g. embedded
    /// token by token), since no step is a slice of a larger tensor.
    ///
    /// # Shapes
    /// - `steps`: `time` tensors of `[batch, d_input]`
    /// - `mask`, `state`: as [`forward`](Self::forward)
    /// - returns `time` tensors of `[batch, d_hidden * directions]` and the final state
    ///
    /// # Panics
    /// As [`forward`](Self::forward), and for an empty `steps`.
    pub fn forward_steps(
        &self,
        steps: Vec<Tensor<2>>,
        mask: Option<Tensor<2>>,
        state: Option<RecurrentState>,
    ) -> (Vec<Tensor<2>>, RecurrentState) {
        let [batch, _] = steps.first().expect("at least one time step").dims();
        let time = steps.len();
        let device = steps[0].device();
        let cell = self.cell;
        let dirs = self.directions();
        let state = state.unwrap_or_else(|| self.zero_state(batch, &device));
        let mask: Option<Vec<Tensor<2>>> =
            mask.map(|m| (0..time).map(|t| m.clone().narrow(1, t, 1)).collect());
        let mut h_out = Vec::with_capacity(self.layers.len() * dirs);
        let mut c_out = Vec::new();
        let pick =
            |t: &Tensor<3>, i: usize| t.clone().narrow(0, i, 1).reshape([batch, self.d_hidden]);
        let mut input = steps;
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            let mut outs = Vec::with_capacity(dirs);
            let directions = std::iter::once((&layer.forward, false))
                .chain(layer.reverse.as_ref().map(|d| (d, true)));
            for (d, (dir, reverse)) in directions.enumerate() {
                let i = l * dirs + d;
                let h0 = pick(&state.hidden, i);
                let c0 = state.cell.as_ref().map(|c| pick(c, i));
                let (ys, h, c) = dir.run(cell, &input, mask.as_deref(), h0, c0, reverse);
                outs.push(ys);
                h_out.push(h);
                if let Some(c) = c {
                    c_out.push(c);
                }
            }
            let ys: Vec<Tensor<2>> = if outs.len() == 1 {
                outs.pop().expect("one direction")
            } else {
                let back = outs.pop().expect("two directions");
                let front = outs.pop().expect("two directions");
                front
                    .into_iter()
                    .zip(back)
                    .map(|(a, b)| Tensor::cat(vec![a, b], 1))
                    .collect()
            };
            input = if l < last {
                ys.into_iter()
                    .map(|y| strata_kernels::dropout_layer(&self.dropout, y))
                    .collect()
            } else {
                ys
            };
        }
        let state = RecurrentState {
            hidden: Tensor::stack(h_out, 0),
            cell: (!c_out.is_empty()).then(|| Tensor::stack(c_out, 0)),
        };
        (input, state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    fn close(a: Tensor<3>, b: Tensor<3>) -> f32 {
        let d = (a - b).abs().max().into_data();
        d.iter::<f32>().next().unwrap_or(f32::NAN)
    }

    #[test]
    fn shapes_for_every_cell() {
        let device = Device::flex();
        for cell in [
            CellKind::RnnTanh,
            CellKind::RnnRelu,
            CellKind::Lstm,
            CellKind::Gru,
        ] {
            for bi in [false, true] {
                let m = RecurrentConfig::new(cell, 3, 4)
                    .with_n_layers(2)
                    .with_bidirectional(bi)
                    .init(&device);
                let x = Tensor::<3>::random([2, 6, 3], Distribution::Default, &device);
                let (y, s) = m.forward(x, None, None);
                let dirs = if bi { 2 } else { 1 };
                assert_eq!(y.dims(), [2, 6, 4 * dirs]);
                assert_eq!(s.hidden.dims(), [2 * dirs, 2, 4]);
                assert_eq!(s.cell.is_some(), cell == CellKind::Lstm);
            }
        }
    }

    #[test]
    fn the_final_forward_state_is_the_last_output() {
        let device = Device::flex();
        let m = RecurrentConfig::new(CellKind::Gru, 2, 5).init(&device);
        let x = Tensor::<3>::random([3, 4, 2], Distribution::Default, &device);
        let (y, s) = m.forward(x, None, None);
        let last = y.narrow(1, 3, 1).swap_dims(0, 1);
        assert!(close(last, s.hidden) < 1e-6);
    }

    #[test]
    fn remapping_names_pytorch_keys() {
        let [(rev, rev_to), (fwd, fwd_to)] = pytorch_key_remapping("lstm.", "rnn");
        assert_eq!(rev, r"^lstm\.(weight|bias)_(ih|hh)_l(\d+)_reverse$");
        assert_eq!(rev_to, "rnn.layers.$3.reverse.${1}_$2");
        assert_eq!(fwd_to, "rnn.layers.$3.forward.${1}_$2");
        assert!(fwd.ends_with(r"_l(\d+)$"));
    }

    mod fused {
        use super::*;
        use proptest::prelude::*;

        fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
            let (a, b) = (a.into_data(), b.into_data());
            let (a, b): (Vec<f32>, Vec<f32>) = (a.iter().collect(), b.iter().collect());
            assert_eq!(a.len(), b.len(), "lengths differ");
            a.iter()
                .zip(&b)
                .map(|(x, y)| {
                    if x.is_nan() || y.is_nan() {
                        f32::INFINITY
                    } else {
                        (x - y).abs()
                    }
                })
                .fold(0.0, f32::max)
        }

        /// Both paths of one stack on one autodiff flex device: outputs, final states and the
        /// gradients of a weighted sum of them for the input, the initial state and every
        /// parameter.
        fn compare(
            cell: CellKind,
            bidirectional: bool,
            n_layers: usize,
            bias: bool,
            lengths: &[usize],
            sizes: (usize, usize),
            seed: u64,
        ) -> Result<(), TestCaseError> {
            let device = Device::flex().autodiff();
            device.seed(seed);
            let (d_in, d_hidden) = sizes;
            let m = RecurrentConfig::new(cell, d_in, d_hidden)
                .with_n_layers(n_layers)
                .with_bidirectional(bidirectional)
                .with_bias(bias)
                .init(&device);
            prop_assert!(m.runs_fused(&device));
            let (batch, time) = (lengths.len(), *lengths.iter().max().unwrap_or(&1));
            let x = Tensor::<3>::random([batch, time, d_in], Distribution::Default, &device);
            let full = lengths.iter().all(|&l| l == time);
            let mask = (!full).then(|| length_mask(lengths, time, &device));
            let n = n_layers * m.directions();
            let h0 = Tensor::<3>::random([n, batch, d_hidden], Distribution::Default, &device);
            let c0 = Tensor::<3>::random([n, batch, d_hidden], Distribution::Default, &device);
            let weights_y =
                Tensor::<3>::random([batch, time, m.d_output()], Distribution::Default, &device);
            let weights_h =
                Tensor::<3>::random([n, batch, d_hidden], Distribution::Default, &device);
            let run = |fused: bool| {
                let x = x.clone().detach().require_grad();
                let h0 = h0.clone().detach().require_grad();
                let c0 = c0.clone().detach().require_grad();
                let state = RecurrentState {
                    hidden: h0.clone(),
                    cell: cell.has_cell().then(|| c0.clone()),
                };
                let (y, s) = if fused {
                    m.forward(x.clone(), mask.clone(), Some(state))
                } else {
                    let steps = (0..time)
                        .map(|t| x.clone().narrow(1, t, 1).reshape([batch, d_in]))
                        .collect();
                    let (ys, s) = m.forward_steps(steps, mask.clone(), Some(state));
                    let ys = ys.into_iter().map(|y| y.unsqueeze_dim(1)).collect();
                    (Tensor::cat(ys, 1), s)
                };
                let mut loss = (y.clone() * weights_y.clone()).sum()
                    + (s.hidden.clone() * weights_h.clone()).sum();
                if let Some(c) = &s.cell {
                    loss = loss + (c.clone() * weights_h.clone()).sum();
                }
                let grads = loss.backward();
                let mut gs: Vec<Vec<f32>> = vec![
                    x.grad(&grads).expect("x grad").into_data().iter().collect(),
                    h0.grad(&grads)
                        .expect("h0 grad")
                        .into_data()
                        .iter()
                        .collect(),
                ];
                if cell.has_cell() {
                    gs.push(
                        c0.grad(&grads)
                            .expect("c0 grad")
                            .into_data()
                            .iter()
                            .collect(),
                    );
                }
                gs.extend(parameter_grads(&m, &grads));
                (y.inner(), s.hidden.inner(), s.cell.map(|c| c.inner()), gs)
            };
            let (y1, h1, c1, g1) = run(true);
            let (y2, h2, c2, g2) = run(false);
            prop_assert!(max_diff(y1, y2) < 1e-5, "outputs");
            prop_assert!(max_diff(h1, h2) < 1e-5, "hidden");
            if let (Some(a), Some(b)) = (c1, c2) {
                prop_assert!(max_diff(a, b) < 1e-5, "cell");
            }
            gradients_agree(&g1, &g2)
        }

        /// Every weight's and bias's gradient, layer by layer and direction by direction.
        fn parameter_grads(m: &Recurrent, grads: &burn::tensor::Gradients) -> Vec<Vec<f32>> {
            let mut gs = Vec::new();
            for layer in &m.layers {
                for dir in std::iter::once(&layer.forward).chain(layer.reverse.as_ref()) {
                    for w in [&dir.weight_ih, &dir.weight_hh] {
                        let g = w.val().grad(grads).expect("weight grad");
                        gs.push(g.into_data().iter().collect());
                    }
                    for b in [&dir.bias_ih, &dir.bias_hh].into_iter().flatten() {
                        let g = b.val().grad(grads).expect("bias grad");
                        gs.push(g.into_data().iter().collect());
                    }
                }
            }
            gs
        }

        /// Each gradient within 1e-4 of its scale of the other's (the same count and lengths;
        /// a NaN fails).
        fn gradients_agree(g1: &[Vec<f32>], g2: &[Vec<f32>]) -> Result<(), TestCaseError> {
            prop_assert_eq!(g1.len(), g2.len());
            for (k, (a, b)) in g1.iter().zip(g2).enumerate() {
                prop_assert_eq!(a.len(), b.len());
                let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
                let worst = a
                    .iter()
                    .zip(b)
                    .map(|(x, y)| {
                        if x.is_finite() {
                            (x - y).abs()
                        } else {
                            f32::INFINITY
                        }
                    })
                    .fold(0.0, f32::max);
                prop_assert!(
                    worst < 1e-4 * scale,
                    "gradient {} differs by {} (scale {})",
                    k,
                    worst,
                    scale
                );
            }
            Ok(())
        }

        /// [`Recurrent::forward_tokens`] against embedding the tokens and running
        /// [`Recurrent::forward`]: outputs, final states, and the gradients of a weighted sum
        /// of them for the table, the initial state and every parameter.
        fn compare_tokens(
            cell: CellKind,
            bidirectional: bool,
            n_layers: usize,
            lengths: &[usize],
            sizes: (usize, usize, usize),
            seed: u64,
        ) -> Result<(), TestCaseError> {
            let device = Device::flex().autodiff();
            device.seed(seed);
            let (vocab, d_in, d_hidden) = sizes;
            let m = RecurrentConfig::new(cell, d_in, d_hidden)
                .with_n_layers(n_layers)
                .with_bidirectional(bidirectional)
                .init(&device);
            let (batch, time) = (lengths.len(), *lengths.iter().max().unwrap_or(&1));
            let tokens = Tensor::<2, Int>::random(
                [batch, time],
                Distribution::Uniform(0.0, vocab as f64),
                &device,
            );
            let table = Tensor::<2>::random([vocab, d_in], Distribution::Default, &device);
            let full = lengths.iter().all(|&l| l == time);
            let mask = (!full).then(|| length_mask(lengths, time, &device));
            let n = n_layers * m.directions();
            let h0 = Tensor::<3>::random([n, batch, d_hidden], Distribution::Default, &device);
            let weights_y =
                Tensor::<3>::random([batch, time, m.d_output()], Distribution::Default, &device);
            let weights_h =
                Tensor::<3>::random([n, batch, d_hidden], Distribution::Default, &device);
            let run = |by_token: bool| {
                let table = table.clone().detach().require_grad();
                let h0 = h0.clone().detach().require_grad();
                let state = RecurrentState {
                    hidden: h0.clone(),
                    cell: cell.has_cell().then(|| h0.clone() * 0.5),
                };
                let (y, s) = if by_token {
                    m.forward_tokens(tokens.clone(), table.clone(), mask.clone(), Some(state))
                        .expect("flex runs the kernels and the vocabulary fits")
                } else {
                    let x = table
                        .clone()
                        .select(0, tokens.clone().reshape([batch * time]))
                        .reshape([batch, time, d_in]);
                    m.forward(x, mask.clone(), Some(state))
                };
                let mut loss = (y.clone() * weights_y.clone()).sum()
                    + (s.hidden.clone() * weights_h.clone()).sum();
                if let Some(c) = &s.cell {
                    loss = loss + (c.clone() * weights_h.clone()).sum();
                }
                let grads = loss.backward();
                let mut gs: Vec<Vec<f32>> = vec![
                    table
                        .grad(&grads)
                        .expect("table grad")
                        .into_data()
                        .iter()
                        .collect(),
                    h0.grad(&grads)
                        .expect("h0 grad")
                        .into_data()
                        .iter()
                        .collect(),
                ];
                gs.extend(parameter_grads(&m, &grads));
                (y.inner(), s.hidden.inner(), s.cell.map(|c| c.inner()), gs)
            };
            let (y1, h1, c1, g1) = run(true);
            let (y2, h2, c2, g2) = run(false);
            prop_assert!(max_diff(y1, y2) < 1e-5, "outputs");
            prop_assert!(max_diff(h1, h2) < 1e-5, "hidden");
            if let (Some(a), Some(b)) = (c1, c2) {
                prop_assert!(max_diff(a, b) < 1e-5, "cell");
            }
            gradients_agree(&g1, &g2)
        }

        #[test]
        fn every_cell_matches_the_composed_layer() {
            for cell in [
                CellKind::RnnTanh,
                CellKind::RnnRelu,
                CellKind::Lstm,
                CellKind::Gru,
            ] {
                compare(cell, true, 2, true, &[9, 2, 4], (3, 6), 7).expect("fused = composed");
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(32))]
            /// The whole-sequence kernels agree with burn's composed steps, forward (1e-5) and
            /// every gradient (1e-4 of the gradient's scale), over cells, directions, depths,
            /// biases, lengths (masks), batch, input and hidden sizes.
            #[test]
            fn the_kernels_match_the_composed_steps(
                cell in prop::sample::select(vec![
                    CellKind::RnnTanh, CellKind::RnnRelu, CellKind::Lstm, CellKind::Gru,
                ]),
                bidirectional in any::<bool>(),
                n_layers in 1usize..3,
                bias in any::<bool>(),
                lengths in prop::collection::vec(1usize..11, 1..5),
                d_in in 1usize..6,
                d_hidden in 1usize..9,
                seed in any::<u64>(),
            ) {
                compare(cell, bidirectional, n_layers, bias, &lengths, (d_in, d_hidden), seed)?;
            }

            /// The stack over tokens, the first layer's products taken per table row, agrees
            /// with embedding the tokens first: forward (1e-5) and every gradient, the table's
            /// included (1e-4 of its scale), over cells, directions, depths, lengths (masks),
            /// batch, vocabulary, input and hidden sizes.
            #[test]
            fn tokens_match_their_embeddings(
                cell in prop::sample::select(vec![
                    CellKind::RnnTanh, CellKind::RnnRelu, CellKind::Lstm, CellKind::Gru,
                ]),
                bidirectional in any::<bool>(),
                n_layers in 1usize..3,
                lengths in prop::collection::vec(4usize..11, 1..5),
                vocab in 1usize..5,
                d_in in 1usize..6,
                d_hidden in 1usize..9,
                seed in any::<u64>(),
            ) {
                let sizes = (vocab, d_in, d_hidden);
                compare_tokens(cell, bidirectional, n_layers, &lengths, sizes, seed)?;
            }
        }

        #[test]
        #[allow(deprecated)] // ndarray: a CPU backend without the kernels
        fn tokens_need_the_kernels_and_a_small_vocabulary() {
            let device = Device::flex();
            let m = RecurrentConfig::new(CellKind::Lstm, 3, 4).init(&device);
            let tokens = Tensor::<2, Int>::zeros([2, 3], &device);
            let small = Tensor::<2>::ones([6, 3], &device);
            assert!(
                m.forward_tokens(tokens.clone(), small, None, None)
                    .is_some()
            );
            let large = Tensor::<2>::ones([7, 3], &device);
            assert!(m.forward_tokens(tokens, large, None, None).is_none());
            // A token past the table: the kernel refuses it, and the caller embeds.
            let past = Tensor::<2, Int>::full([2, 3], 6, &device);
            let six = Tensor::<2>::ones([6, 3], &device);
            assert!(m.forward_tokens(past, six, None, None).is_none());
            let nd = Device::ndarray();
            let m = RecurrentConfig::new(CellKind::Lstm, 3, 4).init(&nd);
            let tokens = Tensor::<2, Int>::zeros([2, 3], &nd);
            assert!(
                m.forward_tokens(tokens, Tensor::ones([2, 3], &nd), None, None)
                    .is_none()
            );
        }
    }

    mod padding {
        use super::*;
        use proptest::prelude::*;

        fn cells() -> impl Strategy<Value = CellKind> {
            prop::sample::select(vec![
                CellKind::RnnTanh,
                CellKind::RnnRelu,
                CellKind::Lstm,
                CellKind::Gru,
            ])
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(24))]
            /// Running a padded batch with its mask gives, for every sequence, the outputs and
            /// final state of running that sequence alone, unpadded, whatever the padding holds.
            #[test]
            fn padding_changes_no_output_and_no_state(
                cell in cells(),
                bidirectional in any::<bool>(),
                lengths in prop::collection::vec(1usize..6, 1..4),
                garbage in -50.0f32..50.0,
                seed in any::<u64>(),
            ) {
                let device = Device::flex();
                device.seed(seed);
                let m = RecurrentConfig::new(cell, 2, 3)
                    .with_n_layers(2)
                    .with_bidirectional(bidirectional)
                    .init(&device);
                let time = *lengths.iter().max().unwrap_or(&1);
                let batch = lengths.len();
                let x = Tensor::<3>::random([batch, time, 2], Distribution::Default, &device);
                // Fill the padding with a large value: it must not leak.
                let m2 = length_mask(&lengths, time, &device).unsqueeze_dim::<3>(2);
                let padded = x.clone() * m2.clone() + (m2.neg() + 1.0) * garbage;
                let mask = length_mask(&lengths, time, &device);
                let (y, s) = m.forward(padded, Some(mask), None);
                for (b, &len) in lengths.iter().enumerate() {
                    let alone = x.clone().narrow(0, b, 1).narrow(1, 0, len);
                    let (ya, sa) = m.forward(alone, None, None);
                    let yb = y.clone().narrow(0, b, 1);
                    prop_assert!(close(yb.clone().narrow(1, 0, len), ya) < 1e-5);
                    if len < time {
                        // Padded steps output zeros.
                        let rest = yb.narrow(1, len, time - len);
                        prop_assert!(close(rest.clone(), rest.zeros_like()) == 0.0);
                    }
                    prop_assert!(close(s.hidden.clone().narrow(1, b, 1), sa.hidden) < 1e-5);
                    if let (Some(c), Some(ca)) = (&s.cell, sa.cell) {
                        prop_assert!(close(c.clone().narrow(1, b, 1), ca) < 1e-5);
                    }
                }
            }
        }
    }
}
