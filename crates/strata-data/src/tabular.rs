//! Tables with categorical columns: a text CSV read as cells, a [`TableSchema`] fitted on the
//! training table (which columns are numeric, the categories of the others, the classes), and
//! the encoding of any table with that schema into a [`Dataset`], either as category indices
//! (for embeddings: FT-Transformer) or one-hot (for linear models and MLPs).
//!
//! Missing values (`?`, empty, `NA`) in a categorical column are a category of their own,
//! `?`; in a numeric column they are an error naming the line. A category the schema has not
//! seen is an error naming the column, the value and the line, never a silent zero.
//!
//! The UCI Adult census data is embedded: [`adult`].
//!
//! ```
//! use strata_data::{Encoding, LabelColumn, Table, TableSchema};
//! let train = Table::parse(b"age,job,y\n30,clerk,no\n41,smith,yes\n25,?,no\n", "t", None)?;
//! let schema = TableSchema::fit(&train, &LabelColumn::Last, Encoding::Indices)?;
//! assert_eq!((schema.n_numeric(), schema.cardinalities()), (1, vec![3]));
//! let data = schema.encode(&train)?;
//! assert_eq!(data.row(1), &[41.0, 2.0]); // age, then the index of `smith` in [?, clerk, smith]
//! let test = Table::parse(b"age,job,y\n50,baker,no\n", "test", None)?;
//! assert!(schema.encode(&test).unwrap_err().to_string().contains("baker"));
//! # Ok::<(), strata_data::Error>(())
//! ```

use std::collections::BTreeSet;
use std::io::Read;

use serde::{Deserialize, Serialize};

use crate::csv_loader::LabelColumn;
use crate::dataset::{Dataset, Targets};
use crate::error::{Error, Result};

static ADULT_DATA_GZ: &[u8] = include_bytes!("../data/adult.data.gz");
static ADULT_TEST_GZ: &[u8] = include_bytes!("../data/adult.test.gz");

/// The column names of the Adult files (from `adult.names`), label last.
pub const ADULT_COLUMNS: [&str; 15] = [
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education-num",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital-gain",
    "capital-loss",
    "hours-per-week",
    "native-country",
    "income",
];

/// The name a missing categorical value gets.
pub const MISSING: &str = "?";

fn is_missing(cell: &str) -> bool {
    matches!(cell, "" | "?" | "NA" | "na" | "N/A")
}

/// A CSV table as text cells, with its header.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// The file name (for errors).
    pub source: String,
    /// Column names.
    pub header: Vec<String>,
    /// `(line, cells)` of each data row, 1-based lines.
    pub rows: Vec<(usize, Vec<String>)>,
}

impl Table {
    /// Parses CSV text. With `header` given, every line is data; otherwise the first line is
    /// the header. Empty lines and lines starting with `|` (comments, as in the UCI files) are
    /// skipped; cells are trimmed.
    ///
    /// # Errors
    /// [`Error::Csv`] for a row with another number of cells than the header, or no rows.
    pub fn parse(bytes: &[u8], source: &str, header: Option<&[&str]>) -> Result<Self> {
        let csv_error = |line: usize, message: String| Error::Csv {
            path: source.into(),
            line,
            message,
        };
        let mut lines = crate::csv_loader::csv_rows(bytes, source, Some(b'|'))?.into_iter();
        let header: Vec<String> = match header {
            Some(h) => h.iter().map(|s| s.to_string()).collect(),
            None => match lines.next() {
                Some((_, cells)) => cells,
                None => return Err(csv_error(1, "the file has no rows".into())),
            },
        };
        let mut rows = Vec::new();
        for (line, cells) in lines {
            if cells.len() != header.len() {
                return Err(csv_error(
                    line,
                    format!("{} cells, the header has {}", cells.len(), header.len()),
                ));
            }
            rows.push((line, cells));
        }
        if rows.is_empty() {
            return Err(csv_error(1, "the file has no data rows".into()));
        }
        Ok(Self {
            source: source.into(),
            header,
            rows,
        })
    }

    /// Reads a CSV file from disk, gzipped or not, the first line being the header.
    ///
    /// # Errors
    /// An unreadable file, or as [`parse`](Self::parse).
    pub fn load(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = crate::csv_loader::read_maybe_gz(path)?;
        let name = path
            .file_name()
            .map_or_else(|| "csv".into(), |n| n.to_string_lossy().to_string());
        Self::parse(&bytes, &name, None)
    }

    fn column(&self, label: &LabelColumn) -> Result<usize> {
        let n = self.header.len();
        let found = match label {
            LabelColumn::Last => Some(n - 1),
            LabelColumn::Index(i) => (*i < n).then_some(*i),
            LabelColumn::Name(name) => self.header.iter().position(|h| h == name),
        };
        found.ok_or_else(|| {
            Error::NoSuchColumn(
                match label {
                    LabelColumn::Name(s) => s.clone(),
                    LabelColumn::Index(i) => i.to_string(),
                    LabelColumn::Last => "last".into(),
                },
                self.header.join(", "),
            )
        })
    }
}

/// How categorical columns become numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// One value per categorical column: the category's index (for embeddings).
    #[default]
    Indices,
    /// One 0/1 value per category.
    OneHot,
}

/// A feature column: numeric, or categorical with its categories.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Column {
    /// The header name.
    pub name: String,
    /// The categories in index order (sorted, `?` for missing), or `None` for a numeric
    /// column.
    pub categories: Option<Vec<String>>,
}

/// What the columns of a table mean, fitted on the training table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableSchema {
    /// The feature columns in file order (the label excluded).
    pub columns: Vec<Column>,
    /// The label column's name.
    pub label: String,
    /// The classes, sorted.
    pub classes: Vec<String>,
    /// How categories are encoded.
    pub encoding: Encoding,
}

impl TableSchema {
    /// Fits the schema: a column is numeric when every cell that is not missing is a number,
    /// categorical otherwise; categories and classes are sorted.
    ///
    /// # Errors
    /// A missing label column, a label missing on some row, fewer than 2 classes.
    pub fn fit(table: &Table, label: &LabelColumn, encoding: Encoding) -> Result<Self> {
        let li = table.column(label)?;
        let mut columns = Vec::new();
        for (j, name) in table.header.iter().enumerate() {
            if j == li {
                continue;
            }
            let numeric = table
                .rows
                .iter()
                .map(|(_, r)| r[j].as_str())
                .filter(|c| !is_missing(c))
                .all(|c| c.parse::<f64>().is_ok_and(f64::is_finite));
            let categories = (!numeric).then(|| {
                table
                    .rows
                    .iter()
                    .map(|(_, r)| category(&r[j]).to_string())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect()
            });
            columns.push(Column {
                name: name.clone(),
                categories,
            });
        }
        let mut classes = BTreeSet::new();
        for (line, r) in &table.rows {
            if is_missing(&r[li]) {
                return Err(Error::Csv {
                    path: table.source.clone(),
                    line: *line,
                    message: format!("the label `{}` is missing", table.header[li]),
                });
            }
            classes.insert(r[li].clone());
        }
        if classes.len() < 2 {
            return Err(Error::TooSmall(format!(
                "the label `{}` has {} class(es); classification needs 2",
                table.header[li],
                classes.len()
            )));
        }
        Ok(Self {
            columns,
            label: table.header[li].clone(),
            classes: classes.into_iter().collect(),
            encoding,
        })
    }

    /// Numeric features (first in an encoded row).
    pub fn n_numeric(&self) -> usize {
        self.columns
            .iter()
            .filter(|c| c.categories.is_none())
            .count()
    }

    /// Categories of each categorical column, in file order.
    pub fn cardinalities(&self) -> Vec<usize> {
        self.columns
            .iter()
            .filter_map(|c| c.categories.as_ref().map(Vec::len))
            .collect()
    }

    /// Values per encoded row.
    pub fn n_features(&self) -> usize {
        let cats = self.cardinalities();
        self.n_numeric()
            + match self.encoding {
                Encoding::Indices => cats.len(),
                Encoding::OneHot => cats.iter().sum(),
            }
    }

    /// The names of the encoded features: numeric columns, then a name per categorical column
    /// (indices) or per category (`column=category`, one-hot).
    pub fn feature_names(&self) -> Vec<String> {
        let numeric = self.columns.iter().filter(|c| c.categories.is_none());
        let mut names: Vec<String> = numeric.map(|c| c.name.clone()).collect();
        for c in &self.columns {
            if let Some(cats) = &c.categories {
                match self.encoding {
                    Encoding::Indices => names.push(c.name.clone()),
                    Encoding::OneHot => {
                        names.extend(cats.iter().map(|k| format!("{}={k}", c.name)));
                    }
                }
            }
        }
        names
    }

    /// The categorical column `name`'s categories, and each row's category (an index into
    /// them) read back from `features`: rows encoded by this schema, row-major, raw or
    /// standardised alike (a one-hot row's category is its largest value, a category index is
    /// rounded). What fairness measures by group read.
    ///
    /// # Errors
    /// A column the schema lacks or a numeric one (the message lists the categorical
    /// columns), or features that are not whole rows of this schema.
    pub fn categories_of(&self, features: &[f32], name: &str) -> Result<(Vec<String>, Vec<usize>)> {
        let categorical: Vec<&str> = self
            .columns
            .iter()
            .filter(|c| c.categories.is_some())
            .map(|c| c.name.as_str())
            .collect();
        let listed = || categorical.join(", ");
        let Some(column) = self.columns.iter().find(|c| c.name == name) else {
            return Err(Error::Invalid(format!(
                "no column `{name}`; the categorical columns are {}",
                listed()
            )));
        };
        let Some(cats) = &column.categories else {
            return Err(Error::Invalid(format!(
                "column `{name}` is numeric; groups come from a categorical column: {}",
                listed()
            )));
        };
        let d = self.n_features();
        if d == 0 || !features.len().is_multiple_of(d) {
            return Err(Error::Invalid(format!(
                "{} values are not rows of {d} features",
                features.len()
            )));
        }
        // The column's first encoded value: numeric columns first, then the categorical ones
        // in file order, one value (indices) or one per category (one-hot) each.
        let mut start = self.n_numeric();
        for c in self.columns.iter().take_while(|c| c.name != name) {
            if let Some(k) = &c.categories {
                start += match self.encoding {
                    Encoding::Indices => 1,
                    Encoding::OneHot => k.len(),
                };
            }
        }
        let index = features
            .chunks(d)
            .map(|row| match self.encoding {
                Encoding::Indices => (row[start].round().max(0.0) as usize).min(cats.len() - 1),
                Encoding::OneHot => {
                    row[start..start + cats.len()]
                        .iter()
                        .enumerate()
                        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
                            if v > best.1 { (i, v) } else { best }
                        })
                        .0
                }
            })
            .collect();
        Ok((cats.clone(), index))
    }

    /// Encodes the feature cells of one row (label excluded, file order).
    fn encode_row(
        &self,
        cells: &[&str],
        source: &str,
        line: usize,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        let fail = |message: String| Error::Csv {
            path: source.into(),
            line,
            message,
        };
        for (c, cell) in self.columns.iter().zip(cells) {
            if c.categories.is_none() {
                let v = cell.parse::<f32>().ok().filter(|v| v.is_finite()).ok_or_else(|| {
                    fail(format!(
                        "column `{}` is numeric, got `{cell}` (missing numeric values are not imputed)",
                        c.name
                    ))
                })?;
                out.push(v);
            }
        }
        for (c, cell) in self.columns.iter().zip(cells) {
            if let Some(cats) = &c.categories {
                let k = category(cell);
                let i = cats.binary_search_by(|x| x.as_str().cmp(k)).map_err(|_| {
                    fail(format!(
                        "unknown category `{k}` in column `{}`; the training data has {} categories: {}",
                        c.name,
                        cats.len(),
                        preview(cats)
                    ))
                })?;
                match self.encoding {
                    Encoding::Indices => out.push(i as f32),
                    Encoding::OneHot => {
                        out.extend((0..cats.len()).map(|j| if j == i { 1.0 } else { 0.0 }));
                    }
                }
            }
        }
        Ok(())
    }

    /// Encodes a table with the label column into a classification [`Dataset`] whose
    /// `table` is this schema.
    ///
    /// # Errors
    /// Missing columns, a non-numeric value in a numeric column, an unknown category or class.
    pub fn encode(&self, table: &Table) -> Result<Dataset> {
        let li = table.column(&LabelColumn::Name(self.label.clone()))?;
        let (features, labels) = self.encode_cells(table, Some(li))?;
        self.dataset(table, features, labels)
    }

    /// Encodes the features of a table that may lack the label column (for prediction); each
    /// feature column is found by name.
    ///
    /// # Errors
    /// As [`encode`](Self::encode).
    pub fn encode_features(&self, table: &Table) -> Result<Vec<f32>> {
        let li = table.header.iter().position(|h| *h == self.label);
        Ok(self.encode_cells(table, li)?.0)
    }

    fn encode_cells(&self, table: &Table, label: Option<usize>) -> Result<(Vec<f32>, Vec<usize>)> {
        let idx: Vec<usize> = self
            .columns
            .iter()
            .map(|c| {
                table
                    .header
                    .iter()
                    .position(|h| *h == c.name)
                    .ok_or_else(|| Error::NoSuchColumn(c.name.clone(), table.header.join(", ")))
            })
            .collect::<Result<_>>()?;
        let mut features = Vec::with_capacity(table.rows.len() * self.n_features());
        let mut labels = Vec::with_capacity(table.rows.len());
        for (line, r) in &table.rows {
            let cells: Vec<&str> = idx.iter().map(|&j| r[j].as_str()).collect();
            self.encode_row(&cells, &table.source, *line, &mut features)?;
            if let Some(li) = label {
                let class = self.classes.binary_search(&r[li]).map_err(|_| Error::Csv {
                    path: table.source.clone(),
                    line: *line,
                    message: format!(
                        "unknown class `{}` in `{}`; the training data has {:?}",
                        r[li], self.label, self.classes
                    ),
                })?;
                labels.push(class);
            }
        }
        Ok((features, labels))
    }

    fn dataset(&self, table: &Table, features: Vec<f32>, labels: Vec<usize>) -> Result<Dataset> {
        let mut d = Dataset::new(
            table.source.clone(),
            features,
            self.n_features(),
            Targets::Classes {
                labels,
                names: self.classes.clone(),
            },
            None,
        )?;
        d.feature_names = self.feature_names();
        d.table = Some(self.clone());
        Ok(d)
    }
}

fn category(cell: &str) -> &str {
    if is_missing(cell) { MISSING } else { cell }
}

fn preview(cats: &[String]) -> String {
    let shown: Vec<&str> = cats.iter().take(8).map(String::as_str).collect();
    let more = if cats.len() > 8 { ", ..." } else { "" };
    format!("{}{more}", shown.join(", "))
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("embedded Adult data decompress");
    out
}

/// The embedded UCI Adult (census income) data as tables: 32,561 training and 16,281 test
/// rows, 14 features (6 numeric, 8 categorical with missing values `?`) and the label
/// `income` (`<=50K` or `>50K`). The test file's comment line is skipped and the dots its
/// labels end with are removed.
pub fn adult_tables() -> (Table, Table) {
    let train = Table::parse(&gunzip(ADULT_DATA_GZ), "adult.data", Some(&ADULT_COLUMNS))
        .expect("embedded Adult training data parse");
    let mut test = Table::parse(&gunzip(ADULT_TEST_GZ), "adult.test", Some(&ADULT_COLUMNS))
        .expect("embedded Adult test data parse");
    for (_, r) in &mut test.rows {
        if let Some(label) = r.last_mut()
            && let Some(stripped) = label.strip_suffix('.')
        {
            *label = stripped.to_string();
        }
    }
    (train, test)
}

static GERMAN_DATA: &str = include_str!("../data/german.data");

/// The columns of [`german_credit_table`], in order: the 20 attributes of the Statlog German
/// credit data (`german.doc`) with their codes decoded, then the derived `sex` (from the
/// personal status) and `age-group` (`<= 25` or `> 25`, the split of Kamiran & Calders), then
/// the label `credit` (`good` or `bad`).
pub const GERMAN_COLUMNS: [&str; 23] = [
    "checking-account",
    "duration-months",
    "credit-history",
    "purpose",
    "amount",
    "savings",
    "employed-since",
    "installment-rate",
    "personal-status",
    "other-debtors",
    "residence-since",
    "property",
    "age",
    "other-installments",
    "housing",
    "existing-credits",
    "job",
    "dependents",
    "telephone",
    "foreign-worker",
    "sex",
    "age-group",
    "credit",
];

/// `german.doc`'s meaning of an attribute code (`A11` ...), or `None` for a numeric cell.
fn german_code(code: &str) -> Option<&'static str> {
    Some(match code {
        "A11" => "< 0 DM",
        "A12" => "0 to 200 DM",
        "A13" => ">= 200 DM or salary assigned",
        "A14" => "no checking account",
        "A30" => "no credits or all paid back duly",
        "A31" => "all credits at this bank paid back duly",
        "A32" => "existing credits paid back duly till now",
        "A33" => "delay in paying off in the past",
        "A34" => "critical account or credits elsewhere",
        "A40" => "car (new)",
        "A41" => "car (used)",
        "A42" => "furniture or equipment",
        "A43" => "radio or television",
        "A44" => "domestic appliances",
        "A45" => "repairs",
        "A46" => "education",
        "A47" => "vacation",
        "A48" => "retraining",
        "A49" => "business",
        "A410" => "others",
        "A61" => "< 100 DM",
        "A62" => "100 to 500 DM",
        "A63" => "500 to 1000 DM",
        "A64" => ">= 1000 DM",
        "A65" => "unknown or none",
        "A71" => "unemployed",
        "A72" => "< 1 year",
        "A73" => "1 to 4 years",
        "A74" => "4 to 7 years",
        "A75" => ">= 7 years",
        "A91" => "male, divorced or separated",
        "A92" => "female, divorced, separated or married",
        "A93" => "male, single",
        "A94" => "male, married or widowed",
        "A95" => "female, single",
        "A101" => "none",
        "A102" => "co-applicant",
        "A103" => "guarantor",
        "A121" => "real estate",
        "A122" => "savings agreement or life insurance",
        "A123" => "car or other",
        "A124" => "unknown or none",
        "A141" => "bank",
        "A142" => "stores",
        "A143" => "none",
        "A151" => "rent",
        "A152" => "own",
        "A153" => "for free",
        "A171" => "unemployed or unskilled, non-resident",
        "A172" => "unskilled, resident",
        "A173" => "skilled employee or official",
        "A174" => "management, self-employed or highly qualified",
        "A191" => "none",
        "A192" => "yes, registered",
        "A201" => "yes",
        "A202" => "no",
        _ => return None,
    })
}

/// The embedded UCI Statlog German credit data as a table: 1,000 applicants, 20 attributes
/// (7 numeric, 13 categorical, codes decoded as `german.doc` gives them), the derived `sex`
/// and `age-group` columns ([`GERMAN_COLUMNS`]) and the label `credit`: 700 `good`, 300 `bad`.
///
/// # Panics
/// Never for the embedded file (a test reads every row).
pub fn german_credit_table() -> Table {
    let rows = GERMAN_DATA
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            let cells: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(cells.len(), 21, "german.data line {}", i + 1);
            let mut row: Vec<String> = cells[..20]
                .iter()
                .map(|c| german_code(c).map_or_else(|| (*c).to_string(), str::to_string))
                .collect();
            let sex = if cells[8] == "A92" || cells[8] == "A95" {
                "female"
            } else {
                "male"
            };
            let age: u32 = cells[12]
                .parse()
                .expect("german.data ages are whole numbers");
            row.push(sex.into());
            row.push(if age <= 25 { "<= 25" } else { "> 25" }.into());
            row.push(if cells[20] == "1" { "good" } else { "bad" }.into());
            (i + 1, row)
        })
        .collect();
    Table {
        source: "german.data".into(),
        header: GERMAN_COLUMNS.iter().map(|c| (*c).to_string()).collect(),
        rows,
    }
}

/// German credit encoded for training: one data set of 1,000 rows (label `credit`, classes
/// `bad`, `good`) for the pipeline to split, and its schema.
///
/// # Errors
/// None for the embedded data in practice.
pub fn german_credit(encoding: Encoding) -> Result<(Dataset, TableSchema)> {
    let table = german_credit_table();
    let schema = TableSchema::fit(&table, &LabelColumn::Last, encoding)?;
    let mut d = schema.encode(&table)?;
    d.name = "german-credit".into();
    Ok((d, schema))
}

/// UCI Adult encoded for training: the schema fitted on the training file, the training and
/// test sets (label `income`, classes `<=50K`, `>50K`).
///
/// # Errors
/// None for the embedded data in practice; the signature allows a category of the test file
/// that the training file lacks.
pub fn adult(encoding: Encoding) -> Result<(Dataset, Dataset, TableSchema)> {
    let (train, test) = adult_tables();
    let schema = TableSchema::fit(&train, &LabelColumn::Last, encoding)?;
    let mut a = schema.encode(&train)?;
    let mut b = schema.encode(&test)?;
    a.name = "adult".into();
    b.name = "adult".into();
    Ok((a, b, schema))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adult_has_its_documented_shape() {
        let (train, test, schema) = adult(Encoding::Indices).unwrap();
        assert_eq!((train.len(), test.len()), (32561, 16281));
        assert_eq!(schema.n_numeric(), 6);
        assert_eq!(schema.cardinalities().len(), 8);
        assert_eq!(schema.classes, vec!["<=50K", ">50K"]);
        // workclass, occupation and native-country have missing values: a `?` category.
        for name in ["workclass", "occupation", "native-country"] {
            let c = schema.columns.iter().find(|c| c.name == name).unwrap();
            assert_eq!(c.categories.as_ref().unwrap()[0], "?", "{name}");
        }
        let positives = |d: &Dataset| d.labels().unwrap().iter().filter(|&&l| l == 1).count();
        // 7841 of 32561 and 3846 of 16281 earn more than 50K (adult.names).
        assert_eq!((positives(&train), positives(&test)), (7841, 3846));
        assert_eq!(train.row(0)[..6], [39.0, 77516.0, 13.0, 2174.0, 0.0, 40.0]);
        let (one_hot, _, s) = adult(Encoding::OneHot).unwrap();
        assert_eq!(one_hot.n_features, s.n_features());
        assert_eq!(
            one_hot.n_features,
            6 + s.cardinalities().iter().sum::<usize>()
        );
        let hot: f32 = one_hot.row(0)[6..].iter().sum();
        assert_eq!(hot, 8.0);
    }

    #[test]
    fn categories_read_back_from_either_encoding() {
        let (tables, _) = adult_tables();
        for encoding in [Encoding::Indices, Encoding::OneHot] {
            let (train, _, schema) = adult(encoding).unwrap();
            let (cats, index) = schema.categories_of(&train.features, "sex").unwrap();
            assert_eq!(cats, ["Female", "Male"]);
            assert_eq!(index.len(), train.len());
            // The file's own cells, row by row.
            let j = tables.header.iter().position(|h| h == "sex").unwrap();
            for (i, (_, cells)) in tables.rows.iter().enumerate().take(500) {
                assert_eq!(cats[index[i]], cells[j], "row {i}");
            }
            let (race, _) = schema.categories_of(&train.features, "race").unwrap();
            assert_eq!(race.len(), 5);
            let e = schema.categories_of(&train.features, "gender").unwrap_err();
            assert!(e.to_string().contains("no column `gender`"), "{e}");
            assert!(e.to_string().contains("sex"), "{e}");
            let e = schema.categories_of(&train.features, "age").unwrap_err();
            assert!(e.to_string().contains("numeric"), "{e}");
            assert!(schema.categories_of(&train.features[1..], "sex").is_err());
        }
    }

    #[test]
    fn german_credit_has_its_documented_shape() {
        let t = german_credit_table();
        assert_eq!(t.rows.len(), 1000);
        assert!(t.rows.iter().all(|(_, r)| r.len() == GERMAN_COLUMNS.len()));
        // The first applicant: A11 6 A34 A43 1169 A65 A75 4 A93 ... age 67, good.
        let first = &t.rows[0].1;
        assert_eq!(first[0], "< 0 DM");
        assert_eq!(first[1], "6");
        assert_eq!(first[3], "radio or television");
        assert_eq!(first[8], "male, single");
        assert_eq!(&first[20..], ["male", "> 25", "good"]);
        // No code is left undecoded.
        assert!(
            t.rows
                .iter()
                .all(|(_, r)| r.iter().all(|c| !c.starts_with('A')))
        );
        let (d, schema) = german_credit(Encoding::OneHot).unwrap();
        assert_eq!(schema.classes, ["bad", "good"]);
        let good = d.labels().unwrap().iter().filter(|&&l| l == 1).count();
        assert_eq!(good, 700, "german.doc: 700 good, 300 bad");
        assert_eq!(schema.n_numeric(), 7);
        let (sexes, index) = schema.categories_of(&d.features, "sex").unwrap();
        assert_eq!(sexes, ["female", "male"]);
        // german.doc: A92 and A95 (female) hold 310 applicants.
        assert_eq!(index.iter().filter(|&&i| i == 0).count(), 310);
        let (ages, _) = schema.categories_of(&d.features, "age-group").unwrap();
        assert_eq!(ages, ["<= 25", "> 25"]);
    }

    #[test]
    fn bad_tables_are_errors() {
        let t = Table::parse(b"a,b,y\n1,x,p\n2,z,q\n", "t", None).unwrap();
        let s = TableSchema::fit(&t, &LabelColumn::Last, Encoding::OneHot).unwrap();
        let bad = Table::parse(b"a,b,y\n1,w,p\n", "u", None).unwrap();
        let e = s.encode(&bad).unwrap_err().to_string();
        assert!(
            e.contains("u: line 2") && e.contains("unknown category `w` in column `b`"),
            "{e}"
        );
        let bad = Table::parse(b"a,b,y\n?,x,p\n", "u", None).unwrap();
        assert!(
            s.encode(&bad)
                .unwrap_err()
                .to_string()
                .contains("column `a` is numeric")
        );
        let bad = Table::parse(b"a,b,y\n1,x,r\n", "u", None).unwrap();
        assert!(
            s.encode(&bad)
                .unwrap_err()
                .to_string()
                .contains("unknown class `r`")
        );
        let e = Table::parse(b"a,b,y\n1,x\n", "u", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("2 cells"), "{e}");
        let missing = Table::parse(b"b,y\nx,p\n", "u", None).unwrap();
        assert!(s.encode(&missing).is_err());
        let features = Table::parse(b"b,a\nz,3\n", "u", None).unwrap();
        assert_eq!(s.encode_features(&features).unwrap(), vec![3.0, 0.0, 1.0]);
        // A quoted comma stays in its cell, and `|` lines are comments.
        let quoted = Table::parse(b"| note\na,b,y\n1,\"x, y\",p\n", "q", None).unwrap();
        assert_eq!(
            quoted.rows[0],
            (3, vec!["1".into(), "x, y".into(), "p".into()])
        );
        let one_class = Table::parse(b"a,y\n1,p\n2,p\n", "t", None).unwrap();
        assert!(TableSchema::fit(&one_class, &LabelColumn::Last, Encoding::Indices).is_err());
    }
}
