//! The game [`fit_players`](strata_train::fit_players) plays for a GAN: the discriminator
//! (player 0) steps on every batch, the generator (player 1) on every `n_critic`-th; a WGAN's
//! critic is clipped after each of its steps. Real rows are scaled to the generator's range
//! (images from `[0, 1]` to `[-1, 1]`); noise comes from the device's generator, which the
//! runner seeds per epoch, so a resumed run draws the same noise.
//!
//! Validation scores the validation rows against samples from fixed noise (the discriminator's
//! loss), measures their diversity against the real rows', warns when it collapses, and draws
//! the fixed-noise samples into `samples/epoch-NNN.png` for images.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;

use burn::optim::GradientsParams;
use burn::tensor::{Device, Distribution, Gradients, Int, Tensor, TensorData};
use strata_arch::Gan;
use strata_data::Dataset;
use strata_tensor::convert::{scalar, to_vec};
use strata_train::Players;

use super::Kind;
use crate::pictures::{ImageGrid, save_png};

/// Below this ratio of generated to real diversity, validation warns of mode collapse.
pub(crate) const COLLAPSE: f64 = 0.25;

/// The mean over features of the standard deviation across rows (`width` values per row).
pub(crate) fn diversity(rows: &[f32], width: usize) -> f64 {
    let n = rows.len() / width.max(1);
    if n < 2 {
        return 0.0;
    }
    let mut total = 0.0;
    for j in 0..width {
        let col = rows.iter().skip(j).step_by(width).map(|&v| v as f64);
        let mean = col.clone().sum::<f64>() / n as f64;
        let var = col.map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        total += var.sqrt();
    }
    total / width as f64
}

/// Rows `indices` of `data` scaled to the generator's range, and their classes.
pub(crate) fn batch(
    data: &Dataset,
    indices: &[usize],
    images: bool,
    device: &Device,
) -> (Tensor<2>, Option<Vec<usize>>) {
    let width = data.n_features;
    let mut x = Vec::with_capacity(indices.len() * width);
    for &i in indices {
        x.extend(
            data.row(i)
                .iter()
                .map(|&v| if images { 2.0 * v - 1.0 } else { v }),
        );
    }
    let classes = data
        .labels()
        .map(|l| indices.iter().map(|&i| l[i]).collect());
    (
        Tensor::from_data(TensorData::new(x, [indices.len(), width]), device),
        classes,
    )
}

/// A class tensor.
pub(crate) fn class_tensor(classes: &[usize], device: &Device) -> Tensor<1, Int> {
    let v: Vec<i64> = classes.iter().map(|&c| c as i64).collect();
    Tensor::from_data(TensorData::new(v, [classes.len()]), device)
}

/// What a GAN trains on.
pub(crate) struct Game<'a> {
    pub train: &'a Dataset,
    pub valid: &'a Dataset,
    /// The autodiff device.
    pub device: Device,
    /// The plain device, for validation.
    pub plain: Device,
    pub kind: Kind,
    /// Rows are images in `[0, 1]`, scaled to `[-1, 1]`.
    pub images: bool,
    /// Fixed noise (on the plain device) for validation and the per-epoch grids.
    pub fixed_noise: Tensor<2>,
    /// Classes of the fixed noise's samples, when conditional.
    pub fixed_classes: Option<Vec<usize>>,
    /// Where the per-epoch grids go (images only).
    pub grid_dir: Option<PathBuf>,
    /// The real validation rows' diversity.
    pub real_diversity: f64,
    pub epoch: Cell<usize>,
    pub warnings: RefCell<Vec<String>>,
}

impl Game<'_> {
    /// Noise for `n` samples, from the device's generator.
    fn noise(&self, model: &Gan, n: usize) -> Tensor<2> {
        Tensor::random(
            [n, model.d_noise],
            Distribution::Normal(0.0, 1.0),
            &self.device,
        )
    }
}

impl Players<Gan> for Game<'_> {
    fn names(&self) -> Vec<String> {
        vec!["discriminator".into(), "generator".into()]
    }

    fn n_train(&self) -> usize {
        self.train.len()
    }

    fn begin_epoch(&self, epoch: usize) {
        self.epoch.set(epoch);
    }

    fn turns(&self, batch: usize) -> Vec<usize> {
        if (batch + 1).is_multiple_of(self.kind.n_critic) {
            vec![0, 1]
        } else {
            vec![0]
        }
    }

    fn player_loss(
        &self,
        model: &Gan,
        player: usize,
        indices: &[usize],
    ) -> strata_train::Result<Tensor<1>> {
        let (real, classes) = batch(self.train, indices, self.images, &self.device);
        let n = indices.len();
        let z = self.noise(model, n);
        // The generator's samples take the batch's classes: the same mix as the data.
        let y = match (self.kind.conditional, &classes) {
            (true, Some(c)) => Some(class_tensor(c, &self.device)),
            _ => None,
        };
        Ok(match player {
            0 => model.discriminator_loss(self.kind.loss, real, y.clone(), z, y),
            _ => model.generator_loss(self.kind.loss, z, y),
        })
    }

    fn gradients(&self, model: &Gan, player: usize, grads: Gradients) -> GradientsParams {
        match player {
            0 => GradientsParams::from_grads(grads, &model.discriminator),
            _ => GradientsParams::from_grads(grads, &model.generator),
        }
    }

    fn after_step(&self, model: Gan, player: usize) -> Gan {
        match (player, self.kind.clip) {
            (0, Some(c)) => model.clip_discriminator(c),
            _ => model,
        }
    }

    /// The discriminator's loss on the validation rows against the fixed-noise samples, and
    /// those samples' diversity relative to the validation rows' (1: as diverse; near 0:
    /// collapsed).
    fn validate(&self, model: &Gan) -> strata_train::Result<(f64, f64)> {
        let n = self.fixed_noise.dims()[0];
        let y = self
            .fixed_classes
            .as_ref()
            .map(|c| class_tensor(c, &self.plain));
        let fake = model.generate(self.fixed_noise.clone(), y.clone());
        let rows: Vec<usize> = (0..self.valid.len().min(n)).collect();
        let (real, real_classes) = batch(self.valid, &rows, self.images, &self.plain);
        let real_y = match (self.kind.conditional, real_classes) {
            (true, Some(c)) => Some(class_tensor(&c, &self.plain)),
            _ => None,
        };
        let loss = self.kind.loss.discriminator(
            model.discriminate(real, real_y),
            model.discriminate(fake.clone(), y),
        );
        let samples = to_vec(fake);
        let ratio = diversity(&samples, model.d_data) / self.real_diversity.max(1e-12);
        let epoch = self.epoch.get() + 1;
        if ratio < COLLAPSE {
            self.warnings.borrow_mut().push(format!(
                "warning: epoch {epoch}: the generator's samples vary {ratio:.2} times as much as real ones (below {COLLAPSE}): its modes may be collapsing"
            ));
        }
        if let (Some(dir), Some(shape)) = (&self.grid_dir, model.image_shape) {
            let pixels: Vec<f32> = samples.iter().map(|v| (v + 1.0) / 2.0).collect();
            let cols = if model.n_classes > 0 {
                model.n_classes
            } else {
                (n as f64).sqrt().ceil() as usize
            };
            let grid = ImageGrid::new(shape, cols)
                .draw(&pixels)
                .map_err(|e| strata_train::Error::Objective(e.to_string()))?;
            std::fs::create_dir_all(dir)
                .map_err(|e| strata_train::Error::Objective(format!("{}: {e}", dir.display())))?;
            save_png(&grid, &dir.join(format!("epoch-{epoch:03}.png")))
                .map_err(|e| strata_train::Error::Objective(e.to_string()))?;
        }
        Ok((scalar(loss) as f64, ratio))
    }

    fn warnings(&self) -> Vec<String> {
        self.warnings.borrow_mut().drain(..).collect()
    }

    fn metric_name(&self) -> &str {
        "diversity"
    }

    fn lower_metric_is_better(&self) -> bool {
        false
    }
}
