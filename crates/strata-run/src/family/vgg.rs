//! VGG in torchvision's layout (11/13/16/19 layers, with or without batch norm), with
//! torchvision's weights and transfer learning.

use strata_arch::{NetworkConfig, VGGS, VggConfig};

use super::{Family, image_shape};
use crate::config::RunConfig;
use crate::data::Preprocess;
use crate::error::{Error, Result};

/// `vgg11`, `vgg13`, `vgg16`, `vgg19` and their `_bn` variants.
pub struct Vgg;

impl Family for Vgg {
    fn name(&self) -> &'static str {
        "vgg"
    }

    fn models(&self) -> &'static [(&'static str, &'static str)] {
        &[(
            "vgg11|13|16|19[_bn]",
            "VGG in torchvision's layout, optional batch norm; images of at least 32x32 (--resize)",
        )]
    }

    fn has(&self, model: &str) -> bool {
        VGGS.contains(&model)
    }

    fn has_backbone(&self) -> bool {
        true
    }

    fn torchvision_network(
        &self,
        model: &str,
        in_channels: usize,
        n_classes: usize,
        [height, width]: [usize; 2],
    ) -> Result<NetworkConfig> {
        Ok(NetworkConfig::Vgg {
            vgg: VggConfig::by_name(model, in_channels, n_classes)?,
            name: model.to_string(),
            height,
            width,
        })
    }

    /// The ResNets' recipe with torchvision's classifier (4096 wide, dropout 0.5) and a
    /// smaller rate (0.01), as in Simonyan and Zisserman.
    fn recipe(&self, _model: &str, dataset: &str, c: &mut RunConfig) {
        super::resnet::he_recipe(dataset, c);
        c.network.dropout = 0.5;
        c.network.hidden = vec![4096];
        c.optimizer.lr = 0.01;
    }

    fn network(&self, config: &RunConfig, pre: &Preprocess, n_out: usize) -> Result<NetworkConfig> {
        let m = config.model.as_str();
        let n = &config.network;
        let [c, h, w] = image_shape(m, config, pre)?;
        let d_hidden = *n
            .hidden
            .first()
            .ok_or_else(|| Error::Usage("a VGG needs a classifier width (--hidden N)".into()))?;
        // torchvision's 7x7 pool suits 224-pixel images and its weights; on small images it
        // copies a 1x1 map 49 times into a classifier that then trains poorly.
        let pool_size = match n.pool_size {
            0 if h.min(w) >= 224 || config.transfer.init_from.is_some() => 7,
            0 => 1,
            p => p,
        };
        let mut vgg = VggConfig::by_name(m, c, n_out)?;
        if !n.inner.is_empty() {
            // Pruned widths (`compress --prune-channels`), one per convolution in order.
            let convs = vgg.layers.iter().filter(|&&c| c > 0).count();
            if n.inner.len() != convs || n.inner.contains(&0) {
                return Err(Error::Usage(format!(
                    "{m} has {convs} convolutions: network.inner needs {convs} widths above 0, got {:?}",
                    n.inner
                )));
            }
            let mut widths = n.inner.iter();
            for c in vgg.layers.iter_mut().filter(|c| **c > 0) {
                *c = *widths.next().expect("counted above");
            }
        }
        let vgg = vgg
            .with_d_hidden(d_hidden)
            .with_dropout(n.dropout)
            .with_pool_size(pool_size);
        if let Err(e) = vgg.check_input(h, w) {
            return Err(Error::Usage(format!(
                "{e}: resize the images with --resize 32 (or larger)"
            )));
        }
        Ok(NetworkConfig::Vgg {
            vgg,
            name: m.to_string(),
            height: h,
            width: w,
        })
    }
}
