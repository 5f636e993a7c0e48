//! Residual networks: CIFAR-style (20/32/56 layers) and torchvision's (18/34/50/101), with
//! torchvision's weights and transfer learning.

use strata_arch::{NetworkConfig, RESNETS, ResNetConfig};
use strata_optim::{ScheduleConfig, ScheduleKind};

use super::{Family, image_shape};
use crate::config::RunConfig;
use crate::data::Preprocess;
use crate::error::Result;

/// `resnet20`, `resnet32`, `resnet56`, `resnet18`, `resnet34`, `resnet50`, `resnet101`.
pub struct ResNet;

impl Family for ResNet {
    fn name(&self) -> &'static str {
        "resnet"
    }

    fn models(&self) -> &'static [(&'static str, &'static str)] {
        &[(
            "resnet20|32|56|18|34|50|101",
            "ResNet: CIFAR-style (20/32/56) or torchvision's (18/34/50/101), batch norm; image data",
        )]
    }

    fn has(&self, model: &str) -> bool {
        RESNETS.contains(&model)
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
        Ok(NetworkConfig::ResNet {
            resnet: ResNetConfig::by_name(model, in_channels, n_classes)?,
            name: model.to_string(),
            height,
            width,
        })
    }

    fn recipe(&self, _model: &str, dataset: &str, c: &mut RunConfig) {
        he_recipe(dataset, c);
    }

    fn network(&self, config: &RunConfig, pre: &Preprocess, n_out: usize) -> Result<NetworkConfig> {
        let m = config.model.as_str();
        let [c, h, w] = image_shape(m, config, pre)?;
        Ok(NetworkConfig::ResNet {
            resnet: ResNetConfig::by_name(m, c, n_out)?.with_inner(config.network.inner.clone()),
            name: m.to_string(),
            height: h,
            width: w,
        })
    }
}

/// He et al.'s recipe: SGD with momentum 0.9, learning rate 0.05, weight decay 5e-4, cosine
/// decay after a warm-up epoch; batch norm throughout, no dropout; 15 epochs of batches of 128
/// (32 on the 1,797 digits).
pub(crate) fn he_recipe(dataset: &str, c: &mut RunConfig) {
    c.network.dropout = 0.0;
    c.network.batch_norm = true;
    c.optimizer.kind = strata_optim::OptimizerKind::by_name("sgd").expect("sgd is an optimizer");
    c.optimizer.lr = 0.05;
    c.optimizer.weight_decay = 5e-4;
    c.schedule = ScheduleConfig {
        kind: ScheduleKind::Cosine { min_lr: 0.0 },
        warmup_epochs: 1,
    };
    c.fit.batch_size = if dataset == "digits" { 32 } else { 128 };
    c.fit.epochs = 15;
    c.fit.early_stopping = None;
}
