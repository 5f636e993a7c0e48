//! The ring of 8 Gaussians, the toy data set of GAN papers on mode collapse (Metz et al. 2017,
//! Srivastava et al. 2017): 2-D points from 8 isotropic Gaussians of standard deviation 0.02
//! whose means sit evenly on a circle of radius 2. A GAN that covers every mode produces points
//! near all 8 means; one that collapses keeps to a few. The points are drawn from a fixed seed,
//! so the data set is the same everywhere; each point's class is its mode.
//!
//! ```
//! use strata_data::{RING_MODES, ring_of_gaussians};
//! let ring = ring_of_gaussians(800, 7);
//! assert_eq!((ring.len(), ring.n_features), (800, 2));
//! let m = RING_MODES.centres();
//! assert!((m[2][1] - 2.0).abs() < 1e-12); // mode 2 is at the top
//! ```

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::dataset::{Dataset, Targets};

/// The mixture behind [`ring_of_gaussians`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RingModes {
    /// Number of modes.
    pub modes: usize,
    /// Radius of the circle of means.
    pub radius: f64,
    /// Standard deviation of each Gaussian.
    pub std: f64,
}

/// The ring's mixture: 8 modes on a circle of radius 2, standard deviation 0.02.
pub const RING_MODES: RingModes = RingModes {
    modes: 8,
    radius: 2.0,
    std: 0.02,
};

impl RingModes {
    /// The means, mode `k` at angle `2 pi k / modes`.
    pub fn centres(&self) -> Vec<[f64; 2]> {
        (0..self.modes)
            .map(|k| {
                let a = std::f64::consts::TAU * k as f64 / self.modes as f64;
                [self.radius * a.cos(), self.radius * a.sin()]
            })
            .collect()
    }
}

/// `n` points of the ring of 8 Gaussians drawn from `seed`, mode `i % 8` for point `i`.
pub fn ring_of_gaussians(n: usize, seed: u64) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // Box-Muller: two uniforms give two independent standard normals.
    let mut pair = move || {
        let (u, v): (f64, f64) = (1.0 - rng.random::<f64>(), rng.random::<f64>());
        let r = (-2.0 * u.ln()).sqrt() * RING_MODES.std;
        let a = std::f64::consts::TAU * v;
        (r * a.cos(), r * a.sin())
    };
    let centres = RING_MODES.centres();
    let mut features = Vec::with_capacity(2 * n);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let k = i % RING_MODES.modes;
        let (dx, dy) = pair();
        features.push((centres[k][0] + dx) as f32);
        features.push((centres[k][1] + dy) as f32);
        labels.push(k);
    }
    let names = (0..RING_MODES.modes).map(|k| format!("mode{k}")).collect();
    Dataset::new(
        "ring8",
        features,
        2,
        Targets::Classes { labels, names },
        None,
    )
    .expect("ring rows are consistent")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_sit_near_their_modes() {
        let ring = ring_of_gaussians(4000, 1);
        let centres = RING_MODES.centres();
        let labels = ring.labels().unwrap();
        for (i, p) in ring.features.chunks(2).enumerate() {
            let c = centres[labels[i]];
            let d = ((p[0] as f64 - c[0]).powi(2) + (p[1] as f64 - c[1]).powi(2)).sqrt();
            assert!(d < 6.0 * RING_MODES.std, "point {i} is {d} from its mode");
        }
        assert_eq!(
            ring_of_gaussians(10, 1).features,
            ring_of_gaussians(10, 1).features
        );
    }
}
