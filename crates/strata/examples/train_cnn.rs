//! Train the LeNet-style CNN on the embedded UCI digits with `strata::run`, as `strata train`
//! does, and print its test metrics.
//!
//! ```text
//! cargo run --release --example train_cnn -- [--epochs N] [--out DIR]
//! ```

use strata::run::{RunConfig, train};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let epochs: usize = flag("--epochs").map_or(Ok(30), |v| v.parse())?;
    let out = flag("--out").unwrap_or_else(|| "runs/example-cnn".into());

    // The CNN family's recipe for the digits, with fewer epochs if asked.
    let mut config = RunConfig::defaults_for("cnn", "digits");
    config.fit.epochs = epochs;
    let result = train(&config, &out)?;

    println!("{}", result.summary);
    let accuracy = result.test_metric("accuracy").unwrap_or(f64::NAN);
    println!("test accuracy {accuracy:.4}; run written to {out}");
    Ok(())
}

/// The value after `name` on the command line.
fn flag(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}
