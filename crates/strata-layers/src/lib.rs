//! # strata-layers
//!
//! Building blocks that burn lacks as single modules: a dense block
//! (`Linear -> [BatchNorm] -> activation -> [Dropout]`), a convolutional stage
//! (`Conv2d -> [BatchNorm] -> activation -> [pool]`), activation names as users write them, and
//! stacked, bidirectional, maskable recurrent layers (RNN, LSTM, GRU) in PyTorch's layout,
//! learned or sinusoidal position codes for transformers, batch norm with PyTorch's running
//! statistics, torchvision-named residual blocks (basic and bottleneck), loaders of PyTorch attention and
//! transformer weights into burn's modules, and graph layers (message passing, GCN, GraphSAGE,
//! GAT, GIN, readouts), spectral normalisation of linear and convolutional layers, and capsule
//! layers (squash, primary capsules, routing-by-agreement).
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use strata_layers::{ConvBlockConfig, DenseBlockConfig, Pooling};
//! let device = Device::flex();
//! let stage = ConvBlockConfig::new(1, 8).with_pooling(Pooling::Max).init(&device);
//! let x = stage.forward(Tensor::<4>::zeros([2, 1, 8, 8], &device));
//! assert_eq!(x.dims(), [2, 8, 4, 4]);
//! let hidden = DenseBlockConfig::new(128, 16).init(&device);
//! assert_eq!(hidden.forward(x.reshape([2, 128])).dims(), [2, 16]);
//! ```

mod activation;
mod batch_norm;
mod capsule;
mod conv_block;
mod dense_block;
mod error;
mod graph;
mod positions;
mod recurrent;
mod resample;
mod residual;
mod spectral_norm;
#[cfg(test)]
mod testing;
mod torch_import;

pub use activation::ActivationKind;
pub use batch_norm::{BatchNorm2d, BatchNorm2dConfig};
pub use capsule::{
    CapsuleLayer, CapsuleLayerConfig, PrimaryCaps, PrimaryCapsConfig, Routed, SQUASH_EPS,
    capsule_lengths, route, squash,
};
pub use conv_block::{ConvBlock, ConvBlockConfig, Pooling};
pub use dense_block::{DenseBlock, DenseBlockConfig};
pub use error::{Error, Result};
pub use graph::{
    Aggregator, Edges, GatConv, GatConvConfig, GcnConv, GcnConvConfig, GinConv, GinConvConfig,
    GraphIndex, Readout, SageConv, SageConvConfig, gather, scatter_max, scatter_mean, scatter_sum,
    segment_softmax,
};
pub use positions::{Positional, Positions, PositionsConfig};
pub use recurrent::{
    CellKind, Direction, Recurrent, RecurrentConfig, RecurrentLayer, RecurrentState, length_mask,
    pytorch_key_remapping,
};
pub use resample::{Downsample, DownsampleConfig, Upsample, UpsampleConfig};
pub use residual::{Residual, ResidualConfig, ResidualInt8, conv, conv_norm};
pub use spectral_norm::{
    SnConv2d, SnConv2dConfig, SnLinear, SnLinearConfig, SpectralNorm, SpectralNormConfig, trains,
};
pub use torch_import::{
    StateDict, load_decoder_layer, load_encoder_layer, load_layer_norm, load_linear, load_mha,
};
