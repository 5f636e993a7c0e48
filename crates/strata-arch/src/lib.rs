//! # strata-arch
//!
//! Complete architectures for Strata, each a serde `Config` + burn `Module` + documented
//! `forward`: a feed-forward [`Mlp`], a LeNet-style [`Cnn`], recurrent [`SequenceModel`]s
//! (classifier or forecaster over RNN/LSTM/GRU layers), a character-level [`CharLm`] with
//! sampling, transformers (a GPT-style [`TransformerLm`], a [`TransformerClassifier`] over
//! tokens, image patches (ViT) or table features (FT-Transformer), an encoder-decoder
//! [`Seq2Seq`] with greedy and beam-search decoding), GANs ([`Gan`]: DCGAN, conditional,
//! spectrally normalised or clipped critics, dense players), a capsule network ([`CapsNet`],
//! routing-by-agreement), and [`Network`], which holds the row
//! classifiers so that a model can be picked by name at run time.
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use strata_arch::{CnnConfig, MlpConfig};
//! let device = Device::flex();
//! let cnn = CnnConfig::new(1, 8, 8, 10).init(&device)?;
//! let logits = cnn.forward(Tensor::<4>::zeros([2, 1, 8, 8], &device));
//! assert_eq!(logits.dims(), [2, 10]);
//! let mlp = MlpConfig::new(4, 3).with_d_hidden(vec![16]).init(&device)?;
//! assert_eq!(mlp.forward(Tensor::<2>::zeros([5, 4], &device)).dims(), [5, 3]);
//! # Ok::<(), strata_arch::Error>(())
//! ```

pub mod autoencoder;
pub mod capsnet;
pub mod char_lm;
pub mod cnn;
mod error;
pub mod gan;
pub mod gnn;
pub mod mlp;
mod network;
pub mod recurrent;
pub mod resnet;
pub mod seq2seq;
pub mod transformer;
pub mod transformer_lm;
pub mod vgg;

pub use autoencoder::{Autoencoder, AutoencoderConfig, Likelihood};
pub use capsnet::{CapsLoss, CapsNet, CapsNetConfig};
pub use char_lm::{CharLm, CharLmConfig, Sampling};
pub use cnn::{Cnn, CnnConfig};
pub use error::{Error, Result};
pub use gan::{
    ConvDiscriminator, ConvGenerator, DenseDiscriminator, DenseGenerator, Discriminator, DownStage,
    Gan, GanConfig, Generator, UpStage,
};
pub use gnn::{Gnn, GnnConfig, GnnKind, GraphConv};
pub use mlp::{Mlp, MlpConfig};
pub use network::{
    ImageResNet, ImageVgg, Network, NetworkConfig, TransferParts, cell_name, check_input,
};
pub use recurrent::{SequenceHead, SequenceModel, SequenceModelConfig, SequencePooling};
pub use resnet::{RESNETS, ResNet, ResNetConfig, Stem};
pub use seq2seq::{BeamSearch, Hypothesis, Seq2Seq, Seq2SeqConfig};
pub use strata_layers::{
    ActivationKind, CellKind, Pooling, Positional, RecurrentConfig, RecurrentState,
};
pub use transformer::{TokenInput, TransformerClassifier, TransformerClassifierConfig};
pub use transformer_lm::{TransformerLm, TransformerLmConfig};
pub use vgg::{VGGS, Vgg, VggConfig, VggSlot};
