//! Data-parallel training across processes: each process (a *rank*) holds the whole model,
//! trains on its share of every batch, and the ranks average their gradients before each
//! optimizer step, so every rank takes the same step (the approach of Horovod).
//!
//! A [`Collective`] is the engine that connects the ranks. [`Mpi`] (cargo feature `mpi`) is
//! MPI's, through the `mpi` crate over the system's MPI library (Open MPI): start the
//! processes with `mpirun -np N`. Give it to a run as [`Run::collective`](crate::Run::collective):
//!
//! - the global batch is the sum of the ranks' batches: each batch of `batch_size x ranks`
//!   examples of the epoch's order (from `(seed, epoch)`, as in one process) is cut into one
//!   contiguous share per rank ([`shard`]), so the ranks together see what one process with
//!   the global batch would;
//! - the gradients are averaged by an all-reduce, weighted by each rank's share, so after
//!   each step the weights equal those of one process on the global batch (up to rounding);
//! - validation is sharded: each rank evaluates its part and the figures are reduced;
//! - rank 0 alone reports progress and writes checkpoints; every rank reads the checkpoint
//!   when resuming, so the run directory must be visible to all (one machine, or a shared
//!   file system), and a run may resume with another number of ranks;
//! - batch-norm statistics stay per rank (each rank normalises its own share).

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};
use strata_tensor::convert::to_vec;

/// The operations between the ranks of a data-parallel run that training needs. Every rank
/// must call each operation in the same order with buffers of the same length.
pub trait Collective {
    /// This process's rank, from 0.
    fn rank(&self) -> usize;

    /// The number of ranks.
    fn size(&self) -> usize;

    /// Replaces `values` with their element-wise sum over the ranks.
    fn sum(&self, values: &mut [f32]);

    /// Replaces `values` with their element-wise sum over the ranks, in double precision.
    fn sum_f64(&self, values: &mut [f64]);

    /// Every rank's `values`, concatenated in rank order (ranks may give different lengths).
    fn gather(&self, values: &[f32]) -> Vec<f32>;

    /// What connects the ranks, for the run's first line (`MPI (Open MPI v4.1.4), 2 ranks`).
    fn describe(&self) -> String;

    /// Whether this is rank 0, the rank that reports and writes.
    fn is_root(&self) -> bool {
        self.rank() == 0
    }
}

/// This rank's share of `batch`: the `rank`-th of `size` contiguous parts whose lengths
/// differ by at most one (the first parts are the shorter ones). Full global batches of
/// `batch_size x size` examples give every rank exactly `batch_size`.
#[must_use]
pub fn shard(batch: &[usize], rank: usize, size: usize) -> &[usize] {
    &batch[shard_range(batch.len(), rank, size)]
}

/// The share of `n` items (`0..n`) that rank `rank` of `size` evaluates, as [`shard`] cuts it.
#[must_use]
pub fn shard_range(n: usize, rank: usize, size: usize) -> std::ops::Range<usize> {
    let size = size.max(1);
    (rank * n / size).min(n)..((rank + 1) * n / size).min(n)
}

/// What [`all_reduce_gradients`] gives back.
pub struct Reduced {
    /// The gradients averaged over every rank's examples.
    pub grads: GradientsParams,
    /// The mean loss over every rank's examples.
    pub loss: f32,
    /// The number of examples of the global batch.
    pub examples: usize,
}

/// Averages the gradients of `model`'s parameters over the ranks of `collective`: `grads` is
/// this rank's mean gradient over its `examples` examples (their mean loss `loss`; with no
/// examples, empty gradients and any loss), and the result is the mean over the global batch,
/// the same on every rank. A parameter gets a gradient when any rank has one for it.
pub fn all_reduce_gradients<M: Module>(
    model: &M,
    grads: GradientsParams,
    loss: f32,
    examples: usize,
    collective: &dyn Collective,
) -> Reduced {
    // Per float parameter, in the model's order: whether this rank has its gradient, then
    // the gradient times this rank's examples. Then the loss times the examples, and them.
    let mut pack = Pack {
        grads,
        buffer: Vec::new(),
        weight: examples as f32,
    };
    model.visit(&mut pack);
    let Pack {
        mut grads,
        mut buffer,
        ..
    } = pack;
    let local_loss = if examples == 0 {
        0.0
    } else {
        loss * examples as f32
    };
    buffer.push(local_loss);
    buffer.push(examples as f32);
    collective.sum(&mut buffer);
    let total = buffer[buffer.len() - 1];
    let mean_loss = buffer[buffer.len() - 2] / total.max(1.0);
    let mut unpack = Unpack {
        grads: &mut grads,
        buffer: &buffer,
        at: 0,
        scale: 1.0 / total.max(1.0),
    };
    model.visit(&mut unpack);
    Reduced {
        grads,
        loss: mean_loss,
        examples: total as usize,
    }
}

struct Pack {
    grads: GradientsParams,
    buffer: Vec<f32>,
    weight: f32,
}

impl ModuleVisitor for Pack {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let n = param.val().shape().num_elements();
        match self.grads.get::<D>(param.id) {
            Some(g) => {
                self.buffer.push(1.0);
                let w = self.weight;
                self.buffer.extend(to_vec(g).into_iter().map(|v| v * w));
            }
            None => {
                self.buffer.push(0.0);
                self.buffer.extend(std::iter::repeat_n(0.0, n));
            }
        }
    }
}

struct Unpack<'a> {
    grads: &'a mut GradientsParams,
    buffer: &'a [f32],
    at: usize,
    scale: f32,
}

impl ModuleVisitor for Unpack<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        let shape = value.shape();
        let n = shape.num_elements();
        let present = self.buffer[self.at] > 0.0;
        let values = &self.buffer[self.at + 1..self.at + 1 + n];
        self.at += 1 + n;
        if !present {
            return;
        }
        // The gradient lives on the inner (non-autodiff) device, as `from_grads` leaves it.
        let device = match self.grads.get::<D>(param.id) {
            Some(g) => g.device(),
            None => value.inner().device(),
        };
        let scaled: Vec<f32> = values.iter().map(|v| v * self.scale).collect();
        let g = Tensor::<D>::from_data(TensorData::new(scaled, shape), &device);
        self.grads.register(param.id, g);
    }
}

/// A checksum of `model`'s parameters (the sum of their absolute values and of their values
/// weighted by position), so that ranks can check they start from the same weights.
pub(crate) fn checksum<M: Module>(model: &M) -> [f64; 2] {
    struct Sum([f64; 2], f64);
    impl ModuleVisitor for Sum {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            for v in to_vec(param.val()) {
                self.1 += 1.0;
                self.0[0] += (v as f64).abs();
                self.0[1] += v as f64 * (self.1 % 97.0 + 1.0);
            }
        }
    }
    let mut s = Sum([0.0; 2], 0.0);
    model.visit(&mut s);
    s.0
}

/// Whether any rank says `flag`.
pub(crate) fn any(collective: Option<&dyn Collective>, flag: bool) -> bool {
    match collective {
        Some(c) => {
            let mut v = [f64::from(u8::from(flag))];
            c.sum_f64(&mut v);
            v[0] > 0.0
        }
        None => flag,
    }
}

/// Rank 0's `value`, on every rank.
pub(crate) fn root_value(collective: Option<&dyn Collective>, value: f64) -> f64 {
    match collective {
        Some(c) => {
            let mut v = [if c.is_root() { value } else { 0.0 }];
            c.sum_f64(&mut v);
            v[0]
        }
        None => value,
    }
}

#[cfg(feature = "mpi")]
pub use self::mpi_engine::Mpi;

#[cfg(feature = "mpi")]
mod mpi_engine {
    use mpi::collective::SystemOperation;
    use mpi::datatype::PartitionMut;
    use mpi::environment::Universe;
    use mpi::topology::SimpleCommunicator;
    use mpi::traits::{Communicator, CommunicatorCollectives};

    use super::Collective;
    use crate::error::{Error, Result};

    /// MPI's ranks (cargo feature `mpi`): the processes `mpirun -np N` started, through the
    /// `mpi` crate over the system's MPI library. Initialise it once per process; MPI is
    /// finalised when it is dropped. Started without `mpirun`, it is one rank.
    ///
    /// ```no_run
    /// use strata_train::{Collective, Mpi};
    /// let mpi = Mpi::init()?;
    /// println!("rank {} of {}", mpi.rank(), mpi.size());
    /// # Ok::<(), strata_train::Error>(())
    /// ```
    pub struct Mpi {
        world: SimpleCommunicator,
        // Dropped after `world`: finalises MPI.
        _universe: Universe,
    }

    impl Mpi {
        /// Initialises MPI for this process.
        ///
        /// # Errors
        /// When MPI was already initialised in this process.
        pub fn init() -> Result<Self> {
            let universe = mpi::initialize().ok_or_else(|| {
                Error::Invalid("MPI is already initialised in this process".into())
            })?;
            Ok(Self {
                world: universe.world(),
                _universe: universe,
            })
        }
    }

    impl Collective for Mpi {
        fn rank(&self) -> usize {
            usize::try_from(self.world.rank()).unwrap_or(0)
        }

        fn size(&self) -> usize {
            usize::try_from(self.world.size()).unwrap_or(1)
        }

        fn sum(&self, values: &mut [f32]) {
            let send = values.to_vec();
            self.world
                .all_reduce_into(&send[..], values, SystemOperation::sum());
        }

        fn sum_f64(&self, values: &mut [f64]) {
            let send = values.to_vec();
            self.world
                .all_reduce_into(&send[..], values, SystemOperation::sum());
        }

        fn gather(&self, values: &[f32]) -> Vec<f32> {
            let n = self.size();
            let mut counts = vec![0i32; n];
            let mine = i32::try_from(values.len()).unwrap_or(i32::MAX);
            self.world.all_gather_into(&mine, &mut counts[..]);
            let displs: Vec<i32> = counts
                .iter()
                .scan(0i32, |at, &c| {
                    let d = *at;
                    *at += c;
                    Some(d)
                })
                .collect();
            let total: usize = counts.iter().map(|&c| c.max(0) as usize).sum();
            let mut all = vec![0.0f32; total];
            let mut partition = PartitionMut::new(&mut all[..], &counts[..], &displs[..]);
            self.world.all_gather_varcount_into(values, &mut partition);
            all
        }

        fn describe(&self) -> String {
            // "Open MPI v4.1.4, package: Debian OpenMPI, ...": the name and version.
            let version = mpi::environment::library_version()
                .ok()
                .and_then(|v| v.split([',', '\n']).next().map(|s| s.trim().to_string()))
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "version unknown".into());
            let n = self.size();
            format!("MPI ({version}), {n} rank{}", if n == 1 { "" } else { "s" })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::Device;
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// The shares of a batch are contiguous, cover it in order, and differ in length by at
        /// most one; a full global batch gives every rank the same share.
        #[test]
        fn shards_cover_the_batch(n in 0usize..200, size in 1usize..9) {
            let batch: Vec<usize> = (100..100 + n).collect();
            let parts: Vec<&[usize]> = (0..size).map(|r| shard(&batch, r, size)).collect();
            let joined: Vec<usize> = parts.concat();
            prop_assert_eq!(&joined, &batch);
            let lens: Vec<usize> = parts.iter().map(|p| p.len()).collect();
            let (lo, hi) = (lens.iter().min().unwrap(), lens.iter().max().unwrap());
            prop_assert!(hi - lo <= 1, "{:?}", lens);
            for (r, &len) in lens.iter().enumerate() {
                prop_assert_eq!(shard_range(n, r, size).len(), len);
            }
            if n % size == 0 {
                prop_assert!(lens.iter().all(|&l| l == n / size));
            }
        }
    }

    /// Two ranks in one process: the other rank's buffer is given, and the sum is this rank's
    /// plus it.
    struct Pair {
        other: RefCell<Vec<f32>>,
    }

    impl Collective for Pair {
        fn rank(&self) -> usize {
            0
        }
        fn size(&self) -> usize {
            2
        }
        fn sum(&self, values: &mut [f32]) {
            let other = self.other.borrow();
            assert_eq!(
                other.len(),
                values.len(),
                "the ranks' buffers differ in length"
            );
            for (v, o) in values.iter_mut().zip(other.iter()) {
                *v += o;
            }
        }
        fn sum_f64(&self, values: &mut [f64]) {
            for v in values.iter_mut() {
                *v *= 2.0;
            }
        }
        fn gather(&self, values: &[f32]) -> Vec<f32> {
            [values, values].concat()
        }
        fn describe(&self) -> String {
            "two in one".into()
        }
    }

    fn grads_of(layer: &Linear, x: &[f32], device: &Device) -> (GradientsParams, f32) {
        let x = Tensor::<2>::from_data(TensorData::new(x.to_vec(), [x.len() / 3, 3]), device);
        let loss = layer.forward(x).powf_scalar(2.0).mean();
        let value = strata_tensor::convert::scalar(loss.clone());
        (GradientsParams::from_grads(loss.backward(), layer), value)
    }

    /// The other rank of a [`Pair`], holding `grads` of its `examples` examples (mean loss
    /// `loss`), packed as its own `all_reduce_gradients` packs them.
    fn other_rank(layer: &Linear, grads: GradientsParams, loss: f32, examples: usize) -> Pair {
        let weight = examples as f32;
        let mut pack = Pack {
            grads,
            buffer: Vec::new(),
            weight,
        };
        layer.visit(&mut pack);
        let mut buffer = pack.buffer;
        buffer.extend([loss * weight, weight]);
        Pair {
            other: RefCell::new(buffer),
        }
    }

    #[test]
    fn gradients_are_averaged_weighted_by_each_ranks_examples() {
        let device = Device::flex().autodiff();
        device.seed(3);
        let layer = LinearConfig::new(3, 2).init(&device);
        // This rank: 1 example; the other: 3; the whole: 4. The mean over the whole is
        // (1 * g_mine + 3 * g_other) / 4, which is the gradient of the 4 examples' mean loss.
        let mine = [0.5, -1.0, 2.0];
        let other = [1.0, 0.0, -1.0, 0.3, 0.2, 0.1, -2.0, 1.5, 0.7];
        let all: Vec<f32> = [&mine[..], &other[..]].concat();
        let (g_all, loss_all) = grads_of(&layer, &all, &device);
        let (g_mine, loss_mine) = grads_of(&layer, &mine, &device);
        let (g_other, loss_other) = grads_of(&layer, &other, &device);
        let pair = other_rank(&layer, g_other, loss_other, 3);
        let r = all_reduce_gradients(&layer, g_mine, loss_mine, 1, &pair);
        assert_eq!(r.examples, 4);
        assert!(
            (r.loss - loss_all).abs() < 1e-6,
            "{} against {}",
            r.loss,
            loss_all
        );
        let w = layer.weight.id;
        let b = layer.bias.as_ref().unwrap().id;
        for (got, want) in [
            (
                to_vec(r.grads.get::<2>(w).unwrap()),
                to_vec(g_all.get::<2>(w).unwrap()),
            ),
            (
                to_vec(r.grads.get::<1>(b).unwrap()),
                to_vec(g_all.get::<1>(b).unwrap()),
            ),
        ] {
            assert_eq!(got.len(), want.len());
            for (g, e) in got.iter().zip(&want) {
                assert!((g - e).abs() < 1e-6, "{got:?} against {want:?}");
            }
        }
    }

    #[test]
    fn a_rank_without_examples_takes_the_others_gradients() {
        let device = Device::flex().autodiff();
        device.seed(4);
        let layer = LinearConfig::new(3, 2).init(&device);
        let other = [1.0, 0.0, -1.0, 0.3, 0.2, 0.1];
        let (g_other, loss_other) = grads_of(&layer, &other, &device);
        let want = to_vec(g_other.get::<2>(layer.weight.id).unwrap());
        let pair = other_rank(&layer, g_other, loss_other, 2);
        let r = all_reduce_gradients(&layer, GradientsParams::new(), f32::NAN, 0, &pair);
        assert_eq!(r.examples, 2);
        assert!((r.loss - loss_other).abs() < 1e-6);
        let got = to_vec(r.grads.get::<2>(layer.weight.id).unwrap());
        for (g, e) in got.iter().zip(&want) {
            assert!((g - e).abs() < 1e-6, "{got:?} against {want:?}");
        }
        assert_eq!(got.len(), want.len());
    }

    #[test]
    fn a_parameter_no_rank_has_gets_no_gradient() {
        let device = Device::flex().autodiff();
        let layer = LinearConfig::new(3, 2).init(&device);
        // The other rank had examples but no gradient for this layer (it was not used).
        let pair = other_rank(&layer, GradientsParams::new(), 0.0, 5);
        let r = all_reduce_gradients(&layer, GradientsParams::new(), 0.0, 0, &pair);
        assert!(r.grads.is_empty(), "{} gradients", r.grads.len());
    }
}
