//! Turning samples into burn tensors on the chosen device.

use burn::tensor::{Device, Tensor};
use strata_tensor::TargetBatch;
use strata_tensor::convert::{classes, matrix};

use crate::dataset::{Dataset, Targets};

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
        let d = data.n_features;
        let mut x = Vec::with_capacity(indices.len() * d);
        for &i in indices {
            x.extend_from_slice(data.row(i));
        }
        let inputs = matrix(x, indices.len(), d, &self.device);
        let targets = match &data.targets {
            Targets::Classes { labels, .. } => {
                let l: Vec<usize> = indices.iter().map(|&i| labels[i]).collect();
                TargetBatch::Classes(classes(&l, &self.device))
            }
            Targets::Values(v) => {
                let y: Vec<f32> = indices.iter().map(|&i| v[i]).collect();
                TargetBatch::Values(matrix(y, indices.len(), 1, &self.device))
            }
        };
        Batch { inputs, targets }
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
