//! `strata explain`: [`strata::run::explain`], printed.

use strata::run::{Error, ExplainMethod, Result, explain};

use crate::args::ExplainArgs;

/// Runs `strata explain`.
///
/// # Errors
/// An unknown method or class, a directory that is not a finished classifier run, an
/// unreadable input, a row out of range.
pub fn run(args: &ExplainArgs) -> Result<()> {
    let method = match (ExplainMethod::parse(&args.method)?, &args.layer) {
        (ExplainMethod::GradCam { .. }, layer) => ExplainMethod::GradCam {
            layer: layer.clone(),
        },
        (_, Some(_)) => {
            return Err(Error::Usage(
                "--layer chooses Grad-CAM's layer: give --method gradcam".into(),
            ));
        }
        (m, None) => m,
    };
    let class = match &args.class {
        None => None,
        Some(c) => Some(class_index(args, c)?),
    };
    let e = explain(
        &args.run,
        args.backend.as_deref(),
        &args.input,
        args.row,
        class,
        method,
        &args.out,
    )?;
    println!("{}", e.summary);
    for path in &e.written {
        println!("written: {}", path.display());
    }
    Ok(())
}

/// A class given by name (as the run's data names them) or by index.
fn class_index(args: &ExplainArgs, class: &str) -> Result<usize> {
    let names = strata::run::Preprocess::load(&args.run)
        .ok()
        .and_then(|p| p.class_names)
        .unwrap_or_default();
    if let Some(i) = names.iter().position(|n| n == class) {
        return Ok(i);
    }
    class.parse::<usize>().map_err(|_| {
        Error::Usage(format!(
            "--class `{class}` is neither an index nor one of the classes {names:?}"
        ))
    })
}
