//! Transfer learning in a run: the starting weights of `init_from` (PyTorch, torchvision's
//! names) and `init_from_run` (a Strata run), and the fine-tuning settings `freeze`,
//! `unfreeze_at_epoch` and `backbone_lr_factor` turned into a [`FineTune`].

use std::path::{Path, PathBuf};

use strata_arch::Network;
use strata_train::{FineTune, Layout, LoadReport, Pretrained, load_pretrained};

use crate::config::{Freeze, RunConfig};
use crate::error::{Error, Result};

/// The weights file of a Strata run: its `model.safetensors`, or the best checkpoint of a run
/// still going.
///
/// # Errors
/// A directory with neither.
pub fn run_weights(dir: &Path) -> Result<PathBuf> {
    let finished = dir.join("model.safetensors");
    if finished.is_file() {
        return Ok(finished);
    }
    let best = dir.join("checkpoints").join("best.bpk");
    if best.is_file() {
        return Ok(best);
    }
    Err(Error::Usage(format!(
        "{} has neither model.safetensors nor checkpoints/best.bpk: not a Strata run to start from",
        dir.display()
    )))
}

/// Checks, before a run writes anything, what its transfer settings need: parts of `model`
/// to freeze or tune, and the starting weights' file.
///
/// # Errors
/// As [`fine_tune`] and [`run_weights`], and an `--init-from` file that does not exist.
pub fn check_transfer(model: &Network, config: &RunConfig) -> Result<()> {
    fine_tune(model, config)?;
    let t = &config.transfer;
    if let Some(p) = &t.init_from
        && !p.is_file()
    {
        return Err(Error::Usage(format!(
            "--init-from {}: no such file",
            p.display()
        )));
    }
    if let Some(dir) = &t.init_from_run {
        run_weights(dir)?;
    }
    Ok(())
}

/// Loads the starting weights `config` asks for into `model`; `None` when it asks for none.
///
/// # Errors
/// An unreadable file, or weights that do not fit the backbone (the error lists the keys).
pub fn init_weights(model: Network, config: &RunConfig) -> Result<(Network, Option<LoadReport>)> {
    let t = &config.transfer;
    if let Some(path) = &t.init_from {
        let (model, report) = load_torch(model, path, t.new_head)?;
        return Ok((model, Some(report)));
    }
    if let Some(dir) = &t.init_from_run {
        let path = run_weights(dir)?;
        let head = model.transfer_parts().map(|p| p.head).unwrap_or_default();
        let (model, report) = load_pretrained(
            model,
            &Pretrained {
                path: &path,
                layout: Layout::Strata,
                head: &head,
                new_head: t.new_head,
                remap: &[],
            },
        )?;
        return Ok((model, Some(report)));
    }
    Ok((model, None))
}

/// Loads PyTorch weights with torchvision's names into a ResNet or a VGG.
///
/// # Errors
/// Another architecture, an unreadable file, or weights that do not fit.
pub fn load_torch(model: Network, path: &Path, new_head: bool) -> Result<(Network, LoadReport)> {
    Ok(match model {
        Network::ResNet(mut m) => {
            let head = m.resnet.transfer_parts().head;
            let (resnet, report) = load_pretrained(
                m.resnet,
                &Pretrained {
                    path,
                    layout: Layout::Torch,
                    head: &head,
                    new_head,
                    remap: &[],
                },
            )?;
            m.resnet = resnet;
            (Network::ResNet(m), report)
        }
        Network::Vgg(mut m) => {
            let head = m.vgg.transfer_parts().head;
            let remap = m.vgg.pytorch_key_remapping();
            let (vgg, report) = load_pretrained(
                m.vgg,
                &Pretrained {
                    path,
                    layout: Layout::Torch,
                    head: &head,
                    new_head,
                    remap: &remap,
                },
            )?;
            m.vgg = vgg;
            (Network::Vgg(m), report)
        }
        _ => {
            return Err(Error::Usage(
                "PyTorch weights load into resnet* and vgg* models".into(),
            ));
        }
    })
}

/// The fine-tuning settings `config` asks for on `model`; `None` when it asks for none.
///
/// # Errors
/// A model without a backbone and a head, or more stages than it has.
pub fn fine_tune(model: &Network, config: &RunConfig) -> Result<Option<FineTune>> {
    let t = &config.transfer;
    if !t.tunes() {
        return Ok(None);
    }
    let parts = model.transfer_parts().ok_or_else(|| {
        Error::Usage(format!(
            "{} has no backbone and head to freeze or tune apart",
            config.model
        ))
    })?;
    let frozen = match t.freeze {
        None => Vec::new(),
        Some(Freeze::Backbone) => parts.backbone(),
        Some(Freeze::Stages(n)) => parts
            .first_stages(n)
            .map_err(|e| Error::Usage(e.to_string()))?,
    };
    Ok(Some(FineTune {
        frozen,
        unfreeze_at_epoch: t.unfreeze_at_epoch,
        backbone: parts.backbone(),
        backbone_lr_factor: t.backbone_lr_factor,
    }))
}
