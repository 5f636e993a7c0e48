//! Load a finished run and predict: `Run::open` reads its config, preprocessing and weights;
//! `predict` takes raw rows (standardised as in training) and gives class probabilities.
//!
//! ```text
//! cargo run --release --example predict_run -- [RUN_DIR [FEATURES.csv]]
//! ```
//!
//! Without a run directory it first trains an MLP on the iris data (a few seconds).

use strata::run::{Predictions, Run, RunConfig, train};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = match args.first() {
        Some(dir) => dir.clone(),
        None => {
            let dir = "runs/example-iris".to_string();
            let mut config = RunConfig::defaults_for("mlp", "iris");
            config.fit.progress = false;
            println!("trained: {}", train(&config, &dir)?.summary);
            dir
        }
    };

    let run = Run::open(&dir)?;
    let predictions = match args.get(1) {
        Some(csv) => run.predict_file(csv)?,
        // Two flowers, four measurements each (cm): a setosa and a virginica.
        None => run.predict(vec![5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3])?,
    };
    if let Predictions::Classes { names, .. } = &predictions {
        println!("classes: {}", names.join(", "));
    }
    print!("{}", predictions.to_csv());
    println!("predicted: {:?}", predictions.classes());
    Ok(())
}
