//! End-to-end tests for Strata live in `tests/`: learning on real data, every backend,
//! resume, divergence and PyTorch parity. This library holds their shared helpers.

use burn::tensor::Device;
use strata::tensor::{Backend, backends};

/// The devices of every backend usable here. Prints a clear skip line for each one that is
/// not (e.g. wgpu without a Vulkan driver), so a skipped backend is never silent.
pub fn usable_backends() -> Vec<(Backend, Device)> {
    backends()
        .into_iter()
        .filter_map(|s| match s.usable {
            Ok(()) => Some((s.backend, s.backend.device())),
            Err(why) => {
                eprintln!("SKIPPED backend {}: not usable here: {why}", s.backend);
                None
            }
        })
        .collect()
}
