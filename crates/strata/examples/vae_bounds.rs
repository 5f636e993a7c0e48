//! A VAE's negative log-likelihood bounds as the number of importance samples grows: the ELBO
//! (k = 1) and the importance-weighted bounds of Burda et al. (2016), each an upper bound on
//! `-log p(x)` in nats per image that tightens with k.
//!
//! ```text
//! cargo run --release --example vae_bounds -- [RUN_DIR [IMAGES [K,K,...]]]
//! ```
//!
//! Without a run directory it first trains a VAE on the digits with its recipe (seconds). The
//! bounds are on the first IMAGES test images (default 100) for each k (default 1, 10, 100,
//! 1000, 5000), with the run's seed.

use strata::run::{AutoencoderRun, RunConfig, iw_bound, split_source};
use strata::tensor::seed_device;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = match args.first() {
        Some(dir) => dir.clone(),
        None => {
            let dir = "runs/example-vae".to_string();
            let mut config = RunConfig::defaults_for("vae", "digits");
            config.fit.progress = false;
            println!("trained: {}", strata::run::train(&config, &dir)?.summary);
            dir
        }
    };
    let images: usize = args.get(1).map_or(Ok(100), |s| s.parse())?;
    let ks: Vec<usize> = match args.get(2) {
        Some(list) => list.split(',').map(str::parse).collect::<Result<_, _>>()?,
        None => vec![1, 10, 100, 1000, 5000],
    };

    let run = AutoencoderRun::open(&dir, None)?;
    let config = &run.config;
    let source = strata::data::load_source(
        &config.dataset,
        &config.label,
        strata::data::Encoding::OneHot,
    )?;
    let (_, _, mut test, _) = split_source(source, config)?;
    run.preprocess.apply(&mut test)?;
    println!("| k | -IW bound (nats/image) | -ELBO, same samples | images |");
    println!("|---|---|---|---|");
    for k in ks {
        seed_device(&run.device, config.fit.seed);
        let b = iw_bound(&run.model, &test, k, images, &run.device)?;
        println!(
            "| {k} | {:.3} | {:.3} | {} |",
            b.iw_nats, b.neg_elbo_nats, b.n
        );
    }
    Ok(())
}
