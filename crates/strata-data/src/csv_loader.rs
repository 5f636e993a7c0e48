//! A loader for any numeric CSV file, gzipped or not, with or without a header.
//!
//! Every column but the label must be numeric: an empty cell, `NA`, `?` or any text there is an
//! error naming the line and column. The label column may be numeric or text; integer or text
//! labels make a classification set (classes sorted by value), real labels a regression set,
//! unless [`CsvOptions::task`] says otherwise.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::dataset::{Dataset, Targets};
use crate::error::{Error, Result};

/// Which column holds the label.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LabelColumn {
    /// The last column (default).
    #[default]
    Last,
    /// A 0-based column index.
    Index(usize),
    /// A header name.
    Name(String),
}

impl LabelColumn {
    /// Parses a user's `--label`: a number is an index, anything else a name.
    pub fn parse(s: &str) -> Self {
        match s.trim().parse::<usize>() {
            Ok(i) => LabelColumn::Index(i),
            Err(_) if s.trim().eq_ignore_ascii_case("last") => LabelColumn::Last,
            Err(_) => LabelColumn::Name(s.trim().to_string()),
        }
    }
}

/// Whether the label is a class or a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskHint {
    /// Integer or text labels with at most 100 distinct values: classification; else regression.
    #[default]
    Auto,
    /// Always classification.
    Classification,
    /// Always regression (the label must be numeric).
    Regression,
}

/// Whether the first line is a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Header {
    /// A header when any cell of the first line outside the label column is not a number.
    #[default]
    Auto,
    /// The first line is a header.
    Yes,
    /// There is no header.
    No,
}

/// How to read a CSV file.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CsvOptions {
    /// The label column (default: last).
    #[serde(default)]
    pub label: LabelColumn,
    /// Header handling (default: detect).
    #[serde(default)]
    pub header: Header,
    /// Classification or regression (default: detect).
    #[serde(default)]
    pub task: TaskHint,
}

/// Reads the file, decompressing it if it starts with the gzip magic bytes.
pub(crate) fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| Error::io(path, e))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Loads a CSV file from disk.
///
/// # Errors
/// A missing or unreadable file, a malformed or non-numeric cell, a missing label column, or an
/// empty file.
pub fn load_csv(path: impl AsRef<Path>, options: &CsvOptions) -> Result<Dataset> {
    let path = path.as_ref();
    let bytes = read_maybe_gz(path)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "csv".into());
    parse_csv(&bytes, &name, options)
}

/// The records of CSV text with their line numbers, read by the one reader setup that every
/// CSV entry point (`csv:`, `table:`, `series:`) shares: quoted cells (a quoted comma stays in
/// its cell), no header handling (the callers detect or skip it), ragged rows let through (the
/// callers report them with their line), cells trimmed, blank lines skipped; with `comment`,
/// lines starting with that byte are skipped too.
///
/// # Errors
/// [`Error::Csv`] naming `source` and the line for malformed CSV (such as invalid UTF-8).
pub(crate) fn csv_rows(
    bytes: &[u8],
    source: &str,
    comment: Option<u8>,
) -> Result<Vec<(usize, Vec<String>)>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(comment)
        .from_reader(bytes);
    // Line numbers come from byte offsets: the csv crate's own line count skips blank lines.
    let mut counted = (0usize, 1usize); // (bytes scanned, line at that byte)
    // A record's position is where the reader began it, before the blank and comment lines
    // it skipped: step over those first.
    let start_of = |mut byte: usize| {
        while byte < bytes.len() {
            match bytes[byte] {
                b'\n' | b'\r' => byte += 1,
                b if Some(b) == comment => {
                    byte += bytes[byte..]
                        .iter()
                        .position(|&c| c == b'\n')
                        .map_or(bytes.len() - byte, |p| p + 1);
                }
                _ => break,
            }
        }
        byte
    };
    let mut line_at = |byte: usize| {
        let byte = start_of(byte).min(bytes.len());
        if byte >= counted.0 {
            counted.1 += bytes[counted.0..byte]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            counted.0 = byte;
        }
        counted.1
    };
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| line_at(p.byte() as usize));
                return Err(Error::Csv {
                    path: source.into(),
                    line,
                    message: e.to_string(),
                });
            }
        };
        let line = record.position().map_or(0, |p| line_at(p.byte() as usize));
        if record.iter().all(|c| c.is_empty()) {
            continue;
        }
        rows.push((line, record.iter().map(str::to_string).collect()));
    }
    Ok(rows)
}

/// A cell as a finite `f32`; `None` for text, empty cells, `NA`, `nan` and infinities.
pub(crate) fn finite_f32(cell: &str) -> Option<f32> {
    cell.parse::<f32>().ok().filter(|v| v.is_finite())
}

fn is_number(cell: &str) -> bool {
    let t = cell.trim();
    !t.is_empty() && t.parse::<f64>().map(|v| v.is_finite()).unwrap_or(false)
}

/// Parses CSV text already in memory (`source` names it in errors).
///
/// # Errors
/// As [`load_csv`].
pub fn parse_csv(bytes: &[u8], source: &str, options: &CsvOptions) -> Result<Dataset> {
    let rows = csv_rows(bytes, source, None)?;
    if rows.is_empty() {
        return Err(Error::Csv {
            path: source.into(),
            line: 1,
            message: "the file has no rows".into(),
        });
    }
    let n_cols = rows[0].1.len();
    if n_cols < 2 {
        return Err(Error::Csv {
            path: source.into(),
            line: rows[0].0,
            message: format!("need at least 2 columns (features and a label), found {n_cols}"),
        });
    }

    // Header: explicit, or detected from non-numeric cells on the first line.
    let first = &rows[0].1;
    let header_names: Option<Vec<String>> = match options.header {
        Header::Yes => Some(first.clone()),
        Header::No => None,
        Header::Auto => {
            // The label column may be text; judge on the other cells when we can name it.
            let label_guess = match &options.label {
                LabelColumn::Index(i) => Some(*i),
                LabelColumn::Last => Some(n_cols - 1),
                LabelColumn::Name(_) => None,
            };
            let non_numeric = first
                .iter()
                .enumerate()
                .filter(|(i, _)| Some(*i) != label_guess)
                .any(|(_, c)| !is_number(c));
            let named = matches!(options.label, LabelColumn::Name(_));
            (non_numeric || named).then(|| first.clone())
        }
    };
    let data_rows = if header_names.is_some() {
        &rows[1..]
    } else {
        &rows[..]
    };
    if data_rows.is_empty() {
        return Err(Error::Csv {
            path: source.into(),
            line: rows[0].0,
            message: "the file has a header but no data rows".into(),
        });
    }
    let describe = || match &header_names {
        Some(h) => h.join(", "),
        None => format!("{n_cols} unnamed columns (0..{})", n_cols - 1),
    };
    let label_col = match &options.label {
        LabelColumn::Last => n_cols - 1,
        LabelColumn::Index(i) if *i < n_cols => *i,
        LabelColumn::Index(i) => return Err(Error::NoSuchColumn(format!("index {i}"), describe())),
        LabelColumn::Name(name) => match &header_names {
            Some(h) => h
                .iter()
                .position(|c| c == name)
                .ok_or_else(|| Error::NoSuchColumn(format!("`{name}`"), describe()))?,
            None => {
                return Err(Error::NoSuchColumn(
                    format!("`{name}` (the file has no header)"),
                    describe(),
                ));
            }
        },
    };

    let n_features = n_cols - 1;
    let mut features = Vec::with_capacity(data_rows.len() * n_features);
    let mut raw_labels = Vec::with_capacity(data_rows.len());
    for (line, cells) in data_rows {
        if cells.len() != n_cols {
            return Err(Error::Csv {
                path: source.into(),
                line: *line,
                message: format!("expected {n_cols} fields, found {}", cells.len()),
            });
        }
        for (j, cell) in cells.iter().enumerate() {
            if j == label_col {
                continue;
            }
            let col_name = header_names
                .as_ref()
                .map(|h| format!("`{}`", h[j]))
                .unwrap_or_else(|| format!("{j}"));
            let value: f32 = finite_f32(cell).ok_or_else(|| {
                Error::Csv {
                    path: source.into(),
                    line: *line,
                    message: format!(
                        "column {col_name}: `{cell}` is not a number (missing values and text are not allowed in feature columns)"
                    ),
                }
            })?;
            features.push(value);
        }
        if cells[label_col].is_empty() {
            return Err(Error::Csv {
                path: source.into(),
                line: *line,
                message: "empty label".into(),
            });
        }
        raw_labels.push((*line, cells[label_col].clone()));
    }

    let targets = make_targets(&raw_labels, source, options.task)?;
    let mut ds = Dataset::new(source, features, n_features, targets, None)?;
    if let Some(h) = header_names {
        ds.feature_names = h
            .into_iter()
            .enumerate()
            .filter(|(j, _)| *j != label_col)
            .map(|(_, n)| n)
            .collect();
    }
    Ok(ds)
}

fn make_targets(raw: &[(usize, String)], source: &str, hint: TaskHint) -> Result<Targets> {
    let numeric: Option<Vec<f64>> = raw.iter().map(|(_, s)| s.parse::<f64>().ok()).collect();
    let integral = numeric
        .as_ref()
        .map(|v| v.iter().all(|x| x.fract() == 0.0 && x.is_finite()))
        .unwrap_or(false);
    let distinct: BTreeSet<&str> = raw.iter().map(|(_, s)| s.as_str()).collect();
    let classification = match hint {
        TaskHint::Classification => true,
        TaskHint::Regression => false,
        TaskHint::Auto => numeric.is_none() || (integral && distinct.len() <= 100),
    };
    if classification {
        // Order classes numerically when the labels are numbers, else by text.
        let mut names: Vec<String> = distinct.iter().map(|s| s.to_string()).collect();
        if let Some(v) = &numeric {
            let mut pairs: Vec<(f64, String)> = Vec::new();
            for (x, (_, s)) in v.iter().zip(raw) {
                if !pairs.iter().any(|(_, n)| n == s) {
                    pairs.push((*x, s.clone()));
                }
            }
            pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
            names = pairs.into_iter().map(|(_, s)| s).collect();
        }
        let labels = raw
            .iter()
            .map(|(_, s)| names.iter().position(|n| n == s).unwrap_or(0))
            .collect();
        Ok(Targets::Classes { labels, names })
    } else {
        let mut values = Vec::with_capacity(raw.len());
        for (line, s) in raw {
            let v = finite_f32(s).ok_or_else(|| Error::Csv {
                path: source.into(),
                line: *line,
                message: format!("label `{s}` is not a number (regression needs numeric labels)"),
            })?;
            values.push(v);
        }
        Ok(Targets::Values(values))
    }
}

/// Reads feature rows for prediction: a CSV (gzipped or not, header detected) with either
/// exactly `n_features` columns, or `n_features + 1` columns of which `label` is dropped.
/// Returns the row-major features and the number of rows.
///
/// # Errors
/// A missing file, a row of another width, or a non-numeric feature.
pub fn read_feature_rows(
    path: impl AsRef<Path>,
    n_features: usize,
    label: &LabelColumn,
) -> Result<(Vec<f32>, usize)> {
    let path = path.as_ref();
    let bytes = read_maybe_gz(path)?;
    let source = path.display().to_string();
    let mut features = Vec::new();
    let mut rows = 0usize;
    let mut header: Option<Vec<String>> = None;
    for (line, cells) in csv_rows(&bytes, &source, None)? {
        if rows == 0 && header.is_none() && cells.iter().any(|c| !is_number(c)) {
            header = Some(cells);
            continue;
        }
        let drop = if cells.len() == n_features {
            None
        } else if cells.len() == n_features + 1 {
            Some(match label {
                LabelColumn::Last => n_features,
                LabelColumn::Index(j) if *j <= n_features => *j,
                LabelColumn::Index(j) => {
                    return Err(Error::NoSuchColumn(
                        format!("index {j}"),
                        format!("rows have {} columns", n_features + 1),
                    ));
                }
                LabelColumn::Name(name) => header
                    .as_ref()
                    .and_then(|h| h.iter().position(|c| c == name))
                    .ok_or_else(|| Error::NoSuchColumn(format!("`{name}`"), "no header".into()))?,
            })
        } else {
            return Err(Error::Csv {
                path: source.clone(),
                line,
                message: format!(
                    "expected {n_features} feature columns (or {} with the label), found {}",
                    n_features + 1,
                    cells.len()
                ),
            });
        };
        for (j, cell) in cells.iter().enumerate() {
            if Some(j) == drop {
                continue;
            }
            let v = finite_f32(cell).ok_or_else(|| Error::Csv {
                path: source.clone(),
                line,
                message: format!("column {j}: `{cell}` is not a number"),
            })?;
            features.push(v);
        }
        rows += 1;
    }
    if rows == 0 {
        return Err(Error::Csv {
            path: source,
            line: 1,
            message: "no rows to predict".into(),
        });
    }
    Ok((features, rows))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Task;

    fn parse(text: &str, options: &CsvOptions) -> Result<Dataset> {
        parse_csv(text.as_bytes(), "t.csv", options)
    }

    #[test]
    fn header_detected_and_label_by_name() {
        let o = CsvOptions {
            label: LabelColumn::Name("y".into()),
            ..Default::default()
        };
        let d = parse("a,y,b\n1,0,2\n3,1,4\n5,1,6\n", &o).unwrap();
        assert_eq!(d.features, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(d.labels().unwrap(), &[0, 1, 1]);
        assert_eq!(d.feature_names, vec!["a", "b"]);
    }

    #[test]
    fn no_header_label_last_and_text_labels() {
        let d = parse("1,2,cat\n3,4,dog\n5,6,cat\n", &CsvOptions::default()).unwrap();
        assert_eq!(d.class_names().unwrap(), &["cat", "dog"]);
        assert_eq!(d.labels().unwrap(), &[0, 1, 0]);
        assert_eq!(d.task(), Task::Classification(2));
    }

    #[test]
    fn real_labels_make_regression() {
        let d = parse("x,y\n1,0.5\n2,1.5\n", &CsvOptions::default()).unwrap();
        assert_eq!(d.targets, Targets::Values(vec![0.5, 1.5]));
        let o = CsvOptions {
            label: LabelColumn::Index(0),
            header: Header::No,
            task: TaskHint::Regression,
        };
        let d = parse("1,2\n3,4\n", &o).unwrap();
        assert_eq!(d.targets, Targets::Values(vec![1.0, 3.0]));
        assert_eq!(d.features, vec![2.0, 4.0]);
    }

    #[test]
    fn numeric_classes_sorted_numerically() {
        let d = parse("1,10\n2,9\n3,10\n", &CsvOptions::default()).unwrap();
        assert_eq!(d.class_names().unwrap(), &["9", "10"]);
        assert_eq!(d.labels().unwrap(), &[1, 0, 1]);
    }

    #[test]
    fn na_and_text_in_features_are_errors() {
        let e = parse("a,b,y\n1,2,0\n3,NA,1\n", &CsvOptions::default()).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("line 3") && msg.contains("`b`") && msg.contains("NA"),
            "{msg}"
        );
        let e = parse("1,2,0\n3,x,1\n", &CsvOptions::default()).unwrap_err();
        assert!(e.to_string().contains("`x` is not a number"));
        let e = parse("1,2,0\n3,,1\n", &CsvOptions::default()).unwrap_err();
        assert!(matches!(e, Error::Csv { line: 2, .. }));
    }

    #[test]
    fn missing_label_column_is_an_error() {
        let o = CsvOptions {
            label: LabelColumn::Name("nope".into()),
            ..Default::default()
        };
        let e = parse("a,b\n1,2\n", &o).unwrap_err();
        assert!(matches!(e, Error::NoSuchColumn(..)));
        assert!(e.to_string().contains("a, b"));
        let o = CsvOptions {
            label: LabelColumn::Index(5),
            ..Default::default()
        };
        assert!(matches!(parse("1,2\n", &o), Err(Error::NoSuchColumn(..))));
    }

    #[test]
    fn ragged_and_empty_files_are_errors() {
        assert!(parse("1,2,3\n4,5\n", &CsvOptions::default()).is_err());
        assert!(parse("", &CsvOptions::default()).is_err());
        assert!(parse("a,b\n", &CsvOptions::default()).is_err());
        assert!(parse("1\n2\n", &CsvOptions::default()).is_err());
    }

    #[test]
    fn gzip_is_detected() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.csv.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(b"1,2,0\n3,4,1\n").unwrap();
        std::fs::write(&path, enc.finish().unwrap()).unwrap();
        let d = load_csv(&path, &CsvOptions::default()).unwrap();
        assert_eq!(d.len(), 2);
        assert!(matches!(
            load_csv(dir.path().join("missing.csv"), &CsvOptions::default()),
            Err(Error::Io { .. })
        ));
    }
}
