//! Turning samples into burn tensors on the chosen device.

use burn::tensor::{Device, Tensor};
use strata_tensor::TargetBatch;
use strata_tensor::convert::{classes, matrix};

use crate::augment::Augment;
use crate::dataset::{Dataset, Targets};
use crate::error::{Error, Result};

/// The rows `indices` of `data`, one after another.
fn rows(data: &Dataset, indices: &[usize]) -> Vec<f32> {
    let mut x = Vec::with_capacity(indices.len() * data.n_features);
    for &i in indices {
        x.extend_from_slice(data.row(i));
    }
    x
}

/// A batch ready for a model.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Features, `[batch, n_features]` (models with image inputs reshape).
    pub inputs: Tensor<2>,
    /// Targets.
    pub targets: TargetBatch,
}

/// Makes batches on one device.
#[derive(Debug, Clone)]
pub struct Batcher {
    device: Device,
}

impl Batcher {
    /// A batcher that puts tensors on `device`.
    pub fn new(device: Device) -> Self {
        Self { device }
    }

    /// The samples `indices` of `data` as a batch.
    pub fn batch(&self, data: &Dataset, indices: &[usize]) -> Batch {
        Batch {
            inputs: matrix(
                rows(data, indices),
                indices.len(),
                data.n_features,
                &self.device,
            ),
            targets: self.targets(data, indices),
        }
    }

    fn targets(&self, data: &Dataset, indices: &[usize]) -> TargetBatch {
        match &data.targets {
            Targets::Classes { labels, .. } => {
                let l: Vec<usize> = indices.iter().map(|&i| labels[i]).collect();
                TargetBatch::Classes(classes(&l, &self.device))
            }
            Targets::Values(v) => {
                let y: Vec<f32> = indices.iter().map(|&i| v[i]).collect();
                TargetBatch::Values(matrix(y, indices.len(), 1, &self.device))
            }
        }
    }

    /// The samples `indices` of `data`, their images augmented by `augment`'s steps with
    /// `seed` (mixup is the trainer's business).
    ///
    /// # Errors
    /// [`Error::Invalid`] when there are steps to apply but the data are not images.
    pub fn batch_augmented(
        &self,
        data: &Dataset,
        indices: &[usize],
        augment: &Augment,
        seed: u64,
    ) -> Result<Batch> {
        if augment.steps.is_empty() {
            return Ok(self.batch(data, indices));
        }
        let shape = data.image_shape.ok_or_else(|| {
            Error::Invalid(format!(
                "augmentation works on images; `{}` is not image data",
                data.name
            ))
        })?;
        let mut x = rows(data, indices);
        augment.apply(&mut x, shape, seed)?;
        Ok(Batch {
            inputs: matrix(x, indices.len(), data.n_features, &self.device),
            targets: self.targets(data, indices),
        })
    }

    /// Consecutive batches of `batch_size` over `order` (the last may be smaller).
    pub fn batches<'a>(
        &'a self,
        data: &'a Dataset,
        order: &'a [usize],
        batch_size: usize,
    ) -> impl Iterator<Item = Batch> + 'a {
        order
            .chunks(batch_size.max(1))
            .map(move |chunk| self.batch(data, chunk))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::iris;

    #[test]
    fn batches_cover_the_order() {
        let d = iris();
        let b = Batcher::new(Device::flex());
        let order: Vec<usize> = (0..10).collect();
        let sizes: Vec<usize> = b
            .batches(&d, &order, 4)
            .map(|x| x.inputs.dims()[0])
            .collect();
        assert_eq!(sizes, vec![4, 4, 2]);
        let first = b.batch(&d, &[0]);
        assert_eq!(
            strata_tensor::convert::to_vec(first.inputs),
            d.row(0).to_vec()
        );
        assert_eq!(first.targets.len(), 1);
    }
}
