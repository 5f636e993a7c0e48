//! Graph layers: message passing on burn's tensor ops (burn has no sparse tensors and no
//! graph layers), the four classic convolutions and graph readouts.
//!
//! A graph's edges go to the device once as [`Edges`]; every layer reads them. Each layer
//! matches PyTorch Geometric's of the same name with its defaults, output and gradients
//! (tested against it in `tests/tests/parity_gnn.rs`).
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use strata_layers::{Edges, GatConvConfig, GcnConvConfig, GinConvConfig, SageConvConfig};
//! let d = Device::flex();
//! // A triangle, both ways round.
//! let edges = Edges::new(3, &[0, 1, 1, 2, 2, 0], &[1, 0, 2, 1, 0, 2], None, &d)?;
//! let x = Tensor::<2>::ones([3, 4], &d);
//! assert_eq!(GcnConvConfig::new(4, 8).init(&d).forward(x.clone(), &edges).dims(), [3, 8]);
//! assert_eq!(SageConvConfig::new(4, 8).init(&d).forward(x.clone(), &edges).dims(), [3, 8]);
//! let gat = GatConvConfig::new(4, 8).with_n_heads(2).init(&d);
//! assert_eq!(gat.forward(x.clone(), &edges).dims(), [3, 16]);
//! assert_eq!(GinConvConfig::new(4, 8, 8).init(&d).forward(x, &edges).dims(), [3, 8]);
//! # Ok::<(), strata_layers::Error>(())
//! ```

mod edges;
mod gat;
mod gcn;
mod gin;
mod message;
mod pool;
mod sage;

pub use edges::Edges;
pub use gat::{GatConv, GatConvConfig};
pub use gcn::{GcnConv, GcnConvConfig};
pub use gin::{GinConv, GinConvConfig};
pub use message::{gather, scatter_max, scatter_mean, scatter_sum, segment_softmax};
pub use pool::{GraphIndex, Readout};
pub use sage::{Aggregator, SageConv, SageConvConfig};
