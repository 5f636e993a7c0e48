//! `strata list`.

use strata::arch::ActivationKind;
use strata::data::{DATASETS, GRAPH_DATASETS};
use strata::run::FAMILIES;
use strata::tensor::backends;

/// Prints models (by family), data sets, backends (usable or not, and why) and activations.
pub fn run() {
    println!("models:");
    for (name, what) in FAMILIES.iter().flat_map(|f| f.models()) {
        println!("  {name:<22} {what}");
    }
    println!("data sets:");
    for (name, what) in DATASETS.iter().chain(&GRAPH_DATASETS) {
        println!("  {name:<22} {what}");
    }
    println!("backends:");
    for status in backends() {
        let usable = match &status.usable {
            Ok(()) => "usable".to_string(),
            Err(why) => format!("NOT usable here: {why}"),
        };
        println!(
            "  {:<22} {usable}; {}",
            status.backend.name(),
            status.backend.description()
        );
    }
    let names: Vec<&str> = ActivationKind::ALL.iter().map(|a| a.name()).collect();
    println!("activations: {}", names.join(", "));
    println!("optimizers: sgd, adam, adamw, rmsprop; schedules: constant, step, cosine, plateau");
    println!("losses: cross-entropy, focal, mse, bce");
}
