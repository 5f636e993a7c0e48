//! `strata train`: flags onto a run config (the model's recipe, then `--config` or the resumed
//! run's `config.toml`, then each flag given), then [`strata::run::train_with`], then printing.

use std::path::{Path, PathBuf};

use strata::data::{Augment, Corruption, LabelColumn, Sampling};
use strata::loss::LossConfig;
use strata::optim::{Clipping, OptimizerKind, ScheduleConfig};
use strata::run::{Engine, Error, MAX_SIDE, Result, RunConfig, TrainOptions, train_with};
use strata::tensor::Backend;
use strata::train::{EarlyStopping, Monitor};

use crate::args::TrainArgs;

/// Builds the run config: the model's defaults, then `--config` (or the resumed run's
/// config.toml), then each flag given.
///
/// # Errors
/// Unreadable configs, unknown names, values of the wrong kind.
pub fn resolve(args: &TrainArgs, out: &Path) -> Result<RunConfig> {
    let resumed_config = out.join("config.toml");
    let mut c = if let Some(path) = &args.config {
        RunConfig::load(path)?
    } else if args.resume && resumed_config.exists() {
        RunConfig::load(&resumed_config)?
    } else {
        let model = args.model.as_deref().unwrap_or("cnn");
        let dataset = args
            .dataset
            .as_deref()
            .unwrap_or(RunConfig::default_dataset(model));
        let mut c = RunConfig::defaults_for(model, dataset);
        if let Some(b) = Backend::from_env()? {
            c.backend = b;
        }
        c
    };
    if let Some(m) = &args.model {
        if *m != c.model {
            // Switching model keeps the file's other settings but takes the model's network
            // defaults.
            c.network = RunConfig::defaults_for(m, &c.dataset).network;
        }
        c.model = m.clone();
    }
    // Flags that name a setting of their own kind: parsed, with their own messages.
    if let Some(a) = &args.augment {
        c.augment = match a.trim() {
            "none" => Augment::default(),
            a => Augment::parse(a)?,
        };
    }
    if let Some(a) = &args.adversarial {
        c.adversarial = match a.trim() {
            "none" => None,
            a => Some(strata::train::Attack::parse(a)?),
        };
    }
    if let Some(s) = &args.sensitive {
        c.sensitive = match s.trim() {
            "none" => Vec::new(),
            s => s.split(',').map(|c| c.trim().to_string()).collect(),
        };
    }
    if let Some(r) = &args.reweigh {
        c.reweigh = match r.trim() {
            "none" => None,
            r => Some(r.to_string()),
        };
    }
    if let Some(d) = &args.debias {
        c.debias = match d.trim() {
            "none" => None,
            d => Some(strata::run::Debias::parse(d)?),
        };
    }
    if let Some(from) = &args.distill_from {
        c.distill = (from.as_os_str() != "none").then(|| strata::run::Distill::new(from));
    }
    if args.temperature.is_some() || args.distill_weight.is_some() {
        let Some(d) = c.distill.as_mut() else {
            return Err(strata::run::Error::Usage(
                "--temperature and --distill-weight set distillation: give --distill-from RUN"
                    .into(),
            ));
        };
        d.temperature = args.temperature.unwrap_or(d.temperature);
        d.weight = args.distill_weight.unwrap_or(d.weight);
    }
    if let Some(n) = &args.noise {
        c.autoencoder.noise = match n.trim() {
            "none" => None,
            n => Some(Corruption::parse(n)?),
        };
    }
    if let Some(shape) = &args.image_shape {
        c.image_shape = Some(parse_image_shape(shape)?);
    }
    if let Some(r) = &args.resize {
        c.resize = Some(parse_size(r)?);
    }
    if let Some(l) = &args.label {
        c.label = LabelColumn::parse(l);
    }
    if let Some(b) = &args.backend {
        c.backend = b.parse()?;
    }
    if let Some(o) = &args.optimizer {
        c.optimizer.kind = OptimizerKind::by_name(o)?;
    }
    if let Some(s) = &args.schedule {
        let warmup = c.schedule.warmup_epochs;
        c.schedule = ScheduleConfig::by_name(s)?;
        c.schedule.warmup_epochs = warmup;
    }
    if let Some(l) = &args.loss {
        c.loss = parse_loss(l)?;
    }
    if let Some(a) = &args.activation {
        c.network.activation = a.parse().map_err(Error::Usage)?;
    }
    if let Some(p) = &args.pooling {
        c.network.sequence_pooling = p.parse().map_err(Error::Usage)?;
    }
    if let Some(p) = &args.positional {
        c.network.positional = p.parse().map_err(Error::Usage)?;
    }
    if let Some(v) = args.clip_norm {
        c.optimizer.clip = Some(Clipping::Norm(v));
    }
    if let Some(v) = args.clip_value {
        c.optimizer.clip = Some(Clipping::Value(v));
    }
    if let Some(p) = args.patience {
        c.fit.early_stopping = (p > 0).then_some(EarlyStopping {
            monitor: Monitor::ValidLoss,
            patience: p,
            min_delta: 0.0,
        });
    }
    c.network.bidirectional |= args.bidirectional;
    c.transfer.new_head |= args.new_head;
    c.class_weights |= args.class_weights;
    if args.balanced {
        c.fit.sampling = Sampling::Balanced;
    }
    let mut c = overlay(c, args)?;
    if let Some(m) = args.momentum {
        match &mut c.optimizer.kind {
            OptimizerKind::Sgd { momentum, .. } => *momentum = m,
            OptimizerKind::RmsProp { momentum, .. } => *momentum = m as f32,
            _ => {
                return Err(Error::Usage(format!(
                    "--momentum applies to sgd and rmsprop, not {}",
                    c.optimizer.kind.name()
                )));
            }
        }
    }
    if let Some(s) = args.label_smoothing {
        match &mut c.loss {
            LossConfig::CrossEntropy { smoothing, .. } => *smoothing = s,
            _ => {
                return Err(Error::Usage(
                    "--label-smoothing applies to cross-entropy".into(),
                ));
            }
        }
    }
    Ok(c)
}

/// The flags that set one field of the config each, put in place by serde through the
/// config's TOML form (which, unlike JSON, keeps NaN and infinities for validation to refuse),
/// each value's kind checked and the flag named when it does not fit.
fn overlay(c: RunConfig, args: &TrainArgs) -> Result<RunConfig> {
    let mut v = toml::Value::try_from(&c).expect("a run config serialises");
    macro_rules! put {
        ($($flag:ident => $path:literal),* $(,)?) => {
            $(if let Some(x) = &args.$flag {
                let flag = stringify!($flag).replace('_', "-");
                let x = toml::Value::try_from(x)
                    .map_err(|e| Error::Usage(format!("--{flag}: {e}")))?;
                put(&mut v, $path, x);
                v.clone()
                    .try_into::<RunConfig>()
                    .map_err(|e| Error::Usage(format!("--{flag}: {}", e.message())))?;
            })*
        };
    }
    put!(
        dataset => "dataset",
        epochs => "fit/epochs",
        batch_size => "fit/batch_size",
        seed => "fit/seed",
        max_seconds => "fit/max_seconds",
        lr => "optimizer/lr",
        weight_decay => "optimizer/weight_decay",
        warmup => "schedule/warmup_epochs",
        hidden => "network/hidden",
        channels => "network/channels",
        kernel_size => "network/kernel_size",
        dropout => "network/dropout",
        batch_norm => "network/batch_norm",
        layers => "network/layers",
        seq_len => "network/seq_len",
        embed => "network/embed",
        heads => "network/heads",
        aggregator => "network/aggregator",
        patch_size => "network/patch_size",
        head => "network/d_hidden",
        pool_size => "network/pool_size",
        train_fraction => "train_fraction",
        steps_per_epoch => "steps_per_epoch",
        valid_fraction => "valid_fraction",
        test_fraction => "test_fraction",
        kfold => "kfold",
        init_from => "transfer/init_from",
        init_from_run => "transfer/init_from_run",
        freeze => "transfer/freeze",
        unfreeze_at_epoch => "transfer/unfreeze_at_epoch",
        backbone_lr_factor => "transfer/backbone_lr_factor",
        sparsity => "autoencoder/sparsity",
        beta => "autoencoder/beta",
        kl_warmup => "autoencoder/kl_warmup_epochs",
        normal_class => "autoencoder/normal_class",
        gan_loss => "gan/loss",
        n_critic => "gan/n_critic",
        clip => "gan/clip",
        pack => "gan/pack",
        evaluator => "gan/evaluator",
        compare => "gan/compare",
        capsnet_size => "capsnet/size",
        routing => "capsnet/routing",
        reconstruction => "capsnet/reconstruction",
    );
    let mut c: RunConfig = v
        .try_into()
        .map_err(|e: toml::de::Error| Error::Usage(e.message().to_string()))?;
    // `progress` is not saved with a config, so it does not travel through serde.
    c.fit.progress = !args.quiet;
    Ok(c)
}

/// Sets the field at `path` (`/`-separated) of a TOML table, making the tables on the way.
fn put(v: &mut toml::Value, path: &str, x: toml::Value) {
    let mut at = v;
    for key in path.split('/') {
        if !at.is_table() {
            *at = toml::Value::Table(toml::Table::new());
        }
        at = at
            .as_table_mut()
            .expect("a table")
            .entry(key)
            .or_insert(toml::Value::Boolean(false));
    }
    *at = x;
}

/// `--loss`.
fn parse_loss(name: &str) -> Result<LossConfig> {
    Ok(match name.to_ascii_lowercase().replace('_', "-").as_str() {
        "cross-entropy" | "ce" => LossConfig::CrossEntropy {
            weights: None,
            smoothing: 0.0,
        },
        "focal" => LossConfig::Focal {
            gamma: 2.0,
            alpha: None,
        },
        "mse" => LossConfig::Mse,
        "bce" => LossConfig::Bce,
        other => {
            return Err(Error::Usage(format!(
                "unknown loss `{other}`: expected cross-entropy, focal, mse or bce"
            )));
        }
    })
}

/// Sizes written `AxBxC`; `None` when `s` is not that.
fn parse_dims(s: &str) -> Option<Vec<usize>> {
    s.split(['x', 'X'])
        .map(|v| v.trim().parse::<usize>().ok())
        .collect()
}

/// `CxHxW`.
fn parse_image_shape(s: &str) -> Result<[usize; 3]> {
    match parse_dims(s).as_deref() {
        Some(&[c, h, w]) if [c, h, w].iter().all(|d| (1..=MAX_SIDE).contains(d)) => Ok([c, h, w]),
        _ => Err(Error::Usage(format!(
            "--image-shape `{s}`: expected CxHxW with sizes in 1..={MAX_SIDE}, e.g. 1x28x28"
        ))),
    }
}

/// `HxW` or one side for both.
fn parse_size(s: &str) -> Result<[usize; 2]> {
    let [h, w] = match parse_dims(s).as_deref() {
        Some(&[h, w]) => [h, w],
        Some(&[n]) => [n, n],
        _ => {
            return Err(Error::Usage(format!(
                "--resize `{s}`: expected HxW (28x28) or one side (28)"
            )));
        }
    };
    if !(1..=MAX_SIDE).contains(&h) || !(1..=MAX_SIDE).contains(&w) {
        return Err(Error::Usage(format!(
            "--resize `{s}`: each side must be in 1..={MAX_SIDE}"
        )));
    }
    Ok([h, w])
}

fn default_out() -> PathBuf {
    PathBuf::from("runs").join(chrono::Utc::now().format("%Y%m%d-%H%M%S").to_string())
}

/// Runs `strata train`.
///
/// # Errors
/// Any invalid input, and training or I/O failures.
pub fn run(args: &TrainArgs) -> Result<()> {
    if args.resume && args.out.is_none() {
        return Err(Error::Usage(
            "--resume needs --out DIR (the run to resume)".into(),
        ));
    }
    let engine: Option<Engine> = args.distributed.as_deref().map(str::parse).transpose()?;
    let out = args.out.clone().unwrap_or_else(default_out);
    let config = resolve(args, &out)?;
    if let Some(devices) = &args.devices {
        strata::run::check_devices(config.backend, devices)?;
    }
    let ranks = engine.map(Engine::connect).transpose()?;
    let options = TrainOptions {
        resume: args.resume,
        pause_after: args.pause_after,
        progress: None,
        collective: ranks.as_deref(),
    };
    let result = train_with(&config, &out, &options)?;
    if ranks.as_ref().is_some_and(|r| !r.is_root()) {
        // Rank 0 reports and writes the run.
        return Ok(());
    }
    if !result.finished {
        eprintln!(
            "paused after epoch {}; continue with: strata train --out {} --resume",
            result.epochs_run,
            out.display()
        );
        return Ok(());
    }
    println!("{}", result.summary);
    println!("run written to {}", out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// `--pooling`, `--positional` and `--loss` take any text: a value or a one-line error.
        #[test]
        fn named_flags_never_panic(s in ".{0,24}") {
            for e in [
                s.parse::<strata::arch::SequencePooling>().err(),
                s.parse::<strata::arch::Positional>().err(),
                parse_loss(&s).err().map(|e| e.to_string()),
                s.parse::<Engine>().err().map(|e| e.to_string()),
            ]
            .into_iter()
            .flatten()
            {
                prop_assert!(!e.contains('\n') && !e.is_empty(), "{e:?}");
            }
        }

        /// `--image-shape` and `--resize` take any text: a bounded size or an error.
        #[test]
        fn size_flags_never_panic(s in prop_oneof![".{0,30}", "[0-9]{0,22}(x[0-9]{0,22}){0,3}"]) {
            if let Ok(shape) = parse_image_shape(&s) {
                prop_assert!(shape.iter().all(|d| (1..=MAX_SIDE).contains(d)));
            }
            if let Ok(size) = parse_size(&s) {
                prop_assert!(size.iter().all(|d| (1..=MAX_SIDE).contains(d)));
            }
        }
    }

    #[test]
    fn sizes_that_overflowed_are_errors() {
        // 2^32 x 2^32 x 1 wrapped to 0, and 2^63 x 2 x 1 wrapped to 0 too.
        assert!(parse_image_shape("4294967296x4294967296x1").is_err());
        assert!(parse_image_shape("9223372036854775808x2x1").is_err());
        assert!(parse_size("100000000").is_err());
        assert_eq!(parse_size("28").unwrap(), [28, 28]);
        assert_eq!(parse_image_shape("1x28x28").unwrap(), [1, 28, 28]);
    }
}
