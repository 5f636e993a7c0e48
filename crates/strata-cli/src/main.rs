//! The `strata` command line: `train`, `evaluate`, `predict`, `generate`, `encode`, `list`. A thin shell:
//! clap arguments to a [`strata::run::RunConfig`], calls into [`strata::run`], printing.
//!
//! `strata` with no arguments trains the CNN on the embedded UCI digits on the default CPU
//! backend and prints its test metrics.

mod args;
mod commands;

use clap::Parser;

use crate::args::{Cli, Command, TrainArgs};

fn main() {
    // Freed tensors are kept for the next step, not handed back and faulted in again.
    strata::kernels::keep_freed_memory();
    // Failures are reported as one line; a panic (a bug) also ends in one line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let msg = strata::tensor::panic_message(info.payload());
        let first = msg.lines().next().unwrap_or("");
        eprintln!("strata: internal error: {first}");
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            // One line, as for every other error; `strata help` shows the usage.
            let text = e.to_string();
            let first = text
                .lines()
                .next()
                .unwrap_or("")
                .trim_start_matches("error: ");
            eprintln!("strata: error: {first} (see `strata --help`)");
            std::process::exit(2);
        }
    };
    // The command drives the kernels from one of rayon's threads (see `drive`).
    let result = strata::kernels::drive(move || {
        match cli.command.unwrap_or(Command::Train(Box::default())) {
            Command::Train(args) => commands::train::run(&TrainArgs { ..*args }),
            Command::Evaluate(args) => commands::evaluate::run(&args),
            Command::Attack(args) => commands::attack::run(&args),
            Command::Compress(args) => commands::compress::run(&args),
            Command::Explain(args) => commands::explain::run(&args),
            Command::Predict(args) => commands::predict::run(&args),
            Command::Generate(args) => commands::generate::run(&args),
            Command::Encode(args) => commands::encode::run(&args),
            Command::List => {
                commands::list::run();
                Ok(())
            }
        }
    });
    if let Err(e) = result {
        // One line whatever the error's text (a parser's message may span several).
        let text = e.to_string();
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        eprintln!("strata: error: {}", lines.join(" "));
        std::process::exit(1);
    }
}
