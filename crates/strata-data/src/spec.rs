//! Data-set specs: the names a run gives its data (`digits`, `fashion-mnist:DIR`, `csv:PATH`,
//! `series:PATH`, `reverse`, ...) and loading them into a [`Source`] before any split.
//!
//! ```
//! use strata_data::{Encoding, LabelColumn, Source, load_source};
//! let Source::Single(iris) = load_source("iris", &LabelColumn::Last, Encoding::OneHot)? else {
//!     unreachable!("iris is one table of samples")
//! };
//! assert_eq!((iris.len(), iris.n_features), (150, 4));
//! assert!(load_source("no-such-set", &LabelColumn::Last, Encoding::OneHot).is_err());
//! # Ok::<(), strata_data::Error>(())
//! ```

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::{
    CsvOptions, Dataset, Encoding, LabelColumn, Series, Table, TableSchema, TransductionTask,
    adult, airline, co2, embedded, fashion_mnist, german_credit, load_csv, parse_series,
    shakespeare, sunspots,
};

/// The data-set specs [`load_source`] reads, with what each is (what `strata list` shows).
pub const DATASETS: [(&str, &str); 16] = [
    (
        "digits",
        "UCI handwritten digits, 1797 8x8 images, 10 classes (embedded)",
    ),
    (
        "iris",
        "Fisher's iris, 150 x 4 measurements, 3 species (embedded)",
    ),
    (
        "fashion-mnist[:DIR]",
        "Fashion-MNIST, 60k/10k 28x28 images, 10 classes (Debian dataset-fashion-mnist)",
    ),
    (
        "fashion-mnist-rows[:DIR]",
        "Fashion-MNIST for recurrent models: each image is 28 steps of 28 pixels",
    ),
    (
        "ring8",
        "ring of 8 Gaussians (std 0.02, radius 2), 4000 2-D points, for GANs' mode coverage (generated, fixed seed)",
    ),
    (
        "csv:PATH",
        "any numeric CSV (gzipped or not); --label picks the label column",
    ),
    (
        "adult",
        "UCI Adult census income, 32561/16281 rows, 6 numeric + 8 categorical columns, 2 classes (embedded)",
    ),
    (
        "german-credit",
        "UCI Statlog German credit, 1000 applicants, 7 numeric + 13 categorical columns (codes decoded) and derived sex and age-group, 2 classes (embedded)",
    ),
    (
        "table:PATH",
        "a CSV with a header and categorical columns (`?`, empty, NA: missing); --label picks the label",
    ),
    (
        "airline",
        "monthly airline passengers 1949-1960, 144 values; forecast the last 24 months (embedded)",
    ),
    (
        "sunspots",
        "yearly sunspot numbers 1700-2008, 309 values; forecast the last 30 years (embedded)",
    ),
    (
        "co2",
        "Mauna Loa CO2, weekly 1958-2001 averaged to 526 months; forecast the last 60 (embedded)",
    ),
    (
        "shakespeare",
        "Shakespeare's works, 5.0M characters; character language model (embedded)",
    ),
    (
        "reverse|sort|copy",
        "built-in transduction task for seq2seq: 10 symbols, lengths 4-12, 20k/1k/2k distinct sources",
    ),
    (
        "series:PATH",
        "a `time,value` CSV series to forecast; last 10% test, 10% before it validation",
    ),
    (
        "text:PATH",
        "any UTF-8 text for a character language model; last 2% test, 2% before it validation",
    ),
];

/// A time series and its fixed split: validation and test periods at the end.
pub struct SeriesSource {
    /// The series.
    pub series: Series,
    /// Steps of validation before the test period.
    pub valid: usize,
    /// Steps of test at the end.
    pub test: usize,
}

/// A data set as named, before splitting.
// Made once per run and never moved in a loop: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub enum Source {
    /// One set, to split three ways.
    Single(Dataset),
    /// A set with its own test set.
    TrainTest(Dataset, Dataset),
    /// A series to forecast.
    Series(SeriesSource),
    /// Text for a character language model.
    Text {
        /// The text.
        text: String,
    },
    /// A built-in sequence transduction task for a seq2seq model.
    Transduction(TransductionTask),
    /// A graph with labelled nodes, or labelled graphs.
    Graph(crate::GraphSource),
}

/// The embedded series `load_series` knows by name.
pub const SERIES: [&str; 3] = ["airline", "sunspots", "co2"];

/// Loads a named series (or `series:PATH`, a `time,value` CSV with a header, whose last 10%
/// is the test period and the 10% before it validation; its season is 1, so the baseline is
/// the last value) with its validation and test periods.
///
/// # Errors
/// An unknown name, an unreadable or malformed file, a series too short to split.
pub fn load_series(spec: &str) -> Result<SeriesSource> {
    if let Some(path) = spec.strip_prefix("series:") {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let name = Path::new(path)
            .file_stem()
            .map_or_else(|| path.to_string(), |s| s.to_string_lossy().to_string());
        let series = parse_series(&text, &name, "", 1)?;
        let part = (series.values.len() / 10).max(1);
        return Ok(SeriesSource {
            series,
            valid: part,
            test: part,
        });
    }
    let (series, valid, test) = match spec {
        "airline" => (airline(), 12, 24),
        "sunspots" => (sunspots(), 30, 30),
        "co2" => (co2(), 24, 60),
        other => {
            return Err(Error::Spec(format!(
                "unknown series `{other}`: expected airline, sunspots or co2"
            )));
        }
    };
    Ok(SeriesSource {
        series,
        valid,
        test,
    })
}

/// Loads the data set `spec` names; a table's categorical columns are encoded as `encoding`
/// says (category indices for embeddings, one-hot for every other model).
///
/// # Errors
/// Unknown names, missing files, malformed files.
pub fn load_source(spec: &str, label: &LabelColumn, encoding: Encoding) -> Result<Source> {
    if let Some(graph) = crate::load_graph(spec)? {
        return Ok(Source::Graph(graph));
    }
    if spec == "adult" {
        let (train, test, _) = adult(encoding)?;
        return Ok(Source::TrainTest(train, test));
    }
    if spec == "german-credit" {
        return Ok(Source::Single(german_credit(encoding)?.0));
    }
    if let Some(path) = spec.strip_prefix("table:") {
        let table = Table::load(path)?;
        let schema = TableSchema::fit(&table, label, encoding)?;
        return Ok(Source::Single(schema.encode(&table)?));
    }
    if let Some(path) = spec.strip_prefix("csv:") {
        let options = CsvOptions {
            label: label.clone(),
            ..Default::default()
        };
        return Ok(Source::Single(load_csv(path, &options)?));
    }
    if let Some(path) = spec.strip_prefix("text:") {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        return Ok(Source::Text { text });
    }
    let fm = ["fashion-mnist-rows", "fashion-mnist"]
        .into_iter()
        .find(|p| spec == *p || spec.starts_with(&format!("{p}:")));
    if let Some(prefix) = fm {
        let dir = spec
            .strip_prefix(prefix)
            .and_then(|r| r.strip_prefix(':'))
            .map(PathBuf::from);
        let (train, test) = fashion_mnist(dir.as_deref())?;
        return Ok(Source::TrainTest(train, test));
    }
    match spec {
        "digits" | "iris" => Ok(Source::Single(embedded(spec)?)),
        "ring8" => Ok(Source::Single(crate::ring_of_gaussians(4000, 8))),
        s if SERIES.contains(&s) || s.starts_with("series:") => {
            Ok(Source::Series(load_series(spec)?))
        }
        "shakespeare" => Ok(Source::Text {
            text: shakespeare(),
        }),
        "reverse" | "sort" | "copy" => Ok(Source::Transduction(TransductionTask::by_name(spec)?)),
        other => Err(Error::Spec(format!(
            "unknown data set `{other}`: expected digits, iris, ring8, adult, german-credit, fashion-mnist[-rows][:DIR], table:PATH, airline, sunspots, co2, shakespeare, reverse, sort, copy, karate, cora, mutag, csv:PATH, text:PATH, graph:DIR or tu:DIR (see `strata list`)"
        ))),
    }
}
