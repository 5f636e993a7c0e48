//! Time series: the embedded airline passengers, sunspots and Mauna Loa CO2 series, a split by
//! time, scaling fitted on the training period, sliding windows and the seasonal-naive baseline.
//!
//! ```
//! use strata_data::{airline, TimeSplit};
//! let series = airline();
//! assert_eq!(series.values.len(), 144);
//! // Last 24 months for test, the 12 before them for validation.
//! let split = TimeSplit::last(series.values.len(), 12, 24)?;
//! let scaler = series.scaler(&split)?;
//! let windows = series.windows(&split, 13, &scaler)?;
//! assert_eq!(windows.test.len(), 24);
//! assert_eq!(windows.train.n_features, 13);
//! # Ok::<(), strata_data::Error>(())
//! ```

use serde::{Deserialize, Serialize};

use crate::dataset::{Dataset, Targets};
use crate::error::{Error, Result};

static AIRLINE_CSV: &str = include_str!("../data/airline_passengers.csv");
static SUNSPOTS_CSV: &str = include_str!("../data/sunspots.csv");
static CO2_CSV: &str = include_str!("../data/co2.csv");

/// A univariate series with its time labels and season length.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Short name (`airline`, `sunspots`, `co2`).
    pub name: String,
    /// What is measured, in which unit.
    pub unit: String,
    /// The time of each value (`1949-01`, `1700`, ...).
    pub times: Vec<String>,
    /// The values, oldest first, without gaps.
    pub values: Vec<f32>,
    /// Steps per season, for the seasonal-naive baseline (12 for monthly data, 11 for the
    /// sunspot cycle).
    pub season: usize,
}

/// Which steps are training, validation and test: `[0, train_end)`, `[train_end, valid_end)`,
/// `[valid_end, len)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeSplit {
    /// First validation step.
    pub train_end: usize,
    /// First test step.
    pub valid_end: usize,
    /// Length of the series.
    pub len: usize,
}

impl TimeSplit {
    /// The last `test` steps for test and the `valid` before them for validation.
    ///
    /// # Errors
    /// [`Error::TooSmall`] when fewer than two training steps would remain.
    pub fn last(len: usize, valid: usize, test: usize) -> Result<Self> {
        if len < valid + test + 2 {
            return Err(Error::TooSmall(format!(
                "a series of {len} values cannot hold {valid} validation and {test} test steps and still train"
            )));
        }
        Ok(Self {
            train_end: len - valid - test,
            valid_end: len - test,
            len,
        })
    }
}

/// Standard scaling of a series with the mean and deviation of its training period.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SeriesScaler {
    /// Training mean.
    pub mean: f32,
    /// Training standard deviation (1 when the training period is constant).
    pub std: f32,
}

impl SeriesScaler {
    /// Scales a value.
    pub fn scale(&self, v: f32) -> f32 {
        (v - self.mean) / self.std
    }

    /// Back to the series' units.
    pub fn unscale(&self, v: f32) -> f32 {
        v * self.std + self.mean
    }
}

/// Training, validation and test windows: each sample is `window` scaled values and its target
/// the next (scaled) value. A sample belongs to the part that holds its target, so training
/// targets all precede the validation period and no future value is in training.
#[derive(Debug, Clone)]
pub struct Windows {
    /// Targets in the training period.
    pub train: Dataset,
    /// Targets in the validation period.
    pub valid: Dataset,
    /// Targets in the test period.
    pub test: Dataset,
    /// The series index of each test target.
    pub test_steps: Vec<usize>,
}

impl Series {
    /// Builds a series, checking it has at least two values, all finite.
    ///
    /// # Errors
    /// [`Error::TooSmall`] for fewer than two values, [`Error::Invalid`] for a non-finite one.
    pub fn new(
        name: impl Into<String>,
        unit: impl Into<String>,
        times: Vec<String>,
        values: Vec<f32>,
        season: usize,
    ) -> Result<Self> {
        let name = name.into();
        if values.len() < 2 {
            return Err(Error::TooSmall(format!(
                "series {name} has {} value(s); forecasting needs at least two",
                values.len()
            )));
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(Error::Invalid(format!(
                "series {name}: value {i} is not finite"
            )));
        }
        if times.len() != values.len() {
            return Err(Error::Mismatch(format!(
                "{} times for {} values",
                times.len(),
                values.len()
            )));
        }
        Ok(Self {
            name,
            unit: unit.into(),
            times,
            values,
            season: season.max(1),
        })
    }

    /// The scaler of the training period `[0, split.train_end)`.
    ///
    /// # Errors
    /// [`Error::Mismatch`] when the split is for another length.
    pub fn scaler(&self, split: &TimeSplit) -> Result<SeriesScaler> {
        self.check(split)?;
        let train = &self.values[..split.train_end];
        let n = train.len() as f64;
        let mean = train.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = train
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        let std = if var > 0.0 { var.sqrt() } else { 1.0 };
        Ok(SeriesScaler {
            mean: mean as f32,
            std: std as f32,
        })
    }

    fn check(&self, split: &TimeSplit) -> Result<()> {
        if split.len != self.values.len()
            || split.train_end > split.valid_end
            || split.valid_end > split.len
        {
            return Err(Error::Mismatch(format!(
                "split {split:?} does not fit series {} of {} values",
                self.name,
                self.values.len()
            )));
        }
        Ok(())
    }

    /// Sliding windows of `window` scaled values, each with the next value as target.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a zero window, [`Error::TooSmall`] when the window leaves no
    /// training sample (it must be shorter than the training period).
    pub fn windows(
        &self,
        split: &TimeSplit,
        window: usize,
        scaler: &SeriesScaler,
    ) -> Result<Windows> {
        self.check(split)?;
        if window == 0 {
            return Err(Error::Invalid("the window must be >= 1 step".into()));
        }
        if window >= split.train_end {
            return Err(Error::TooSmall(format!(
                "a window of {window} steps is not shorter than the {} training steps of {} ({} values in all)",
                split.train_end,
                self.name,
                self.values.len()
            )));
        }
        let scaled: Vec<f32> = self.values.iter().map(|&v| scaler.scale(v)).collect();
        let part = |from: usize, to: usize| -> Result<Dataset> {
            let from = from.max(window);
            let mut features = Vec::with_capacity((to - from) * window);
            let mut targets = Vec::with_capacity(to - from);
            for t in from..to {
                features.extend_from_slice(&scaled[t - window..t]);
                targets.push(scaled[t]);
            }
            let mut d = Dataset::new(
                self.name.clone(),
                features,
                window,
                Targets::Values(targets),
                None,
            )?;
            d.feature_names = (0..window).map(|i| format!("t-{}", window - i)).collect();
            Ok(d)
        };
        Ok(Windows {
            train: part(0, split.train_end)?,
            valid: part(split.train_end, split.valid_end)?,
            test: part(split.valid_end, split.len)?,
            test_steps: (split.valid_end.max(window)..split.len).collect(),
        })
    }

    /// The seasonal-naive forecast of each step in `steps`: the value one season earlier.
    ///
    /// # Errors
    /// [`Error::TooSmall`] when a step has no value a season before it.
    pub fn seasonal_naive(&self, steps: &[usize]) -> Result<Vec<f32>> {
        steps
            .iter()
            .map(|&t| {
                t.checked_sub(self.season)
                    .and_then(|s| self.values.get(s).copied())
                    .ok_or_else(|| {
                        Error::TooSmall(format!(
                            "step {t} of {} has no value one season ({}) earlier",
                            self.name, self.season
                        ))
                    })
            })
            .collect()
    }
}

impl Series {
    /// The seasonal-naive forecast of steps `origin..origin + horizon` made at `origin` (with
    /// values up to `origin - 1` known): each step takes the value of the same season in the
    /// last observed season, `y[t - season * ceil((t - origin + 1) / season)]`.
    ///
    /// # Errors
    /// [`Error::TooSmall`] when fewer than a season of values precede `origin`.
    pub fn seasonal_naive_from(&self, origin: usize, horizon: usize) -> Result<Vec<f32>> {
        let m = self.season;
        if origin < m || origin > self.values.len() {
            return Err(Error::TooSmall(format!(
                "a forecast from step {origin} of {} needs a season ({m}) of values before it",
                self.name
            )));
        }
        Ok((origin..origin + horizon)
            .map(|t| self.values[t - m * (t - origin + 1).div_ceil(m)])
            .collect())
    }
}

/// Parses a two-column `time,value` CSV with a header line (read by the CSV reader that every
/// loader shares, so quoted cells work). Empty values are gaps.
/// Each row with its line number.
fn parse_two_columns(text: &str, name: &str) -> Result<Vec<(usize, String, Option<f32>)>> {
    let mut rows = Vec::new();
    for (line, cells) in crate::csv_loader::csv_rows(text.as_bytes(), name, None)?
        .into_iter()
        .skip(1)
    {
        let [time, value] = cells.as_slice() else {
            return Err(Error::Csv {
                path: name.into(),
                line,
                message: format!(
                    "expected two columns, time and value; found {}",
                    cells.len()
                ),
            });
        };
        let value = if value.is_empty() {
            None
        } else {
            Some(
                crate::csv_loader::finite_f32(value).ok_or_else(|| Error::Csv {
                    path: name.into(),
                    line,
                    message: format!("value {value:?} is not a finite number"),
                })?,
            )
        };
        rows.push((line, time.clone(), value));
    }
    Ok(rows)
}

/// Parses a `time,value` CSV (header line first) into a series; any gap is an error (use a
/// resampling such as [`co2`]'s for gappy data).
///
/// # Errors
/// Malformed lines, gaps, and the errors of [`Series::new`].
pub fn parse_series(text: &str, name: &str, unit: &str, season: usize) -> Result<Series> {
    let rows = parse_two_columns(text, name)?;
    let mut times = Vec::with_capacity(rows.len());
    let mut values = Vec::with_capacity(rows.len());
    for (line, t, v) in rows {
        let v = v.ok_or_else(|| Error::Csv {
            path: name.into(),
            line,
            message: format!("missing value at {t}"),
        })?;
        times.push(t);
        values.push(v);
    }
    Series::new(name, unit, times, values, season)
}

/// Monthly international airline passengers (thousands), January 1949 to December 1960:
/// 144 values, season 12 (Box, Jenkins & Reinsel, series G).
pub fn airline() -> Series {
    parse_series(AIRLINE_CSV, "airline", "thousand passengers", 12)
        .expect("embedded airline series is valid")
}

/// Yearly mean sunspot numbers, 1700 to 2008: 309 values. The season is the 11-year solar
/// cycle.
pub fn sunspots() -> Series {
    parse_series(SUNSPOTS_CSV, "sunspots", "sunspot number", 11)
        .expect("embedded sunspot series is valid")
}

/// Monthly mean atmospheric CO2 at Mauna Loa (ppm), March 1958 to December 2001: 526 values,
/// season 12.
///
/// The source is weekly with 59 missing weeks. Each month is the mean of its recorded weeks;
/// the 5 months with no recorded week (1958-06, 1958-10, 1964-02..04) are interpolated linearly
/// between the nearest recorded months.
pub fn co2() -> Series {
    co2_monthly(CO2_CSV).expect("embedded CO2 series is valid")
}

/// Monthly means of a weekly `YYYYMMDD,value` series with gaps, gap months interpolated.
fn co2_monthly(text: &str) -> Result<Series> {
    let rows = parse_two_columns(text, "co2")?;
    let mut months: Vec<(String, f64, usize)> = Vec::new();
    for (_, date, v) in rows {
        if date.len() != 8 {
            return Err(Error::Invalid(format!(
                "co2: date {date:?} is not YYYYMMDD"
            )));
        }
        let month = format!("{}-{}", &date[..4], &date[4..6]);
        if months.last().is_none_or(|m| m.0 != month) {
            months.push((month, 0.0, 0));
        }
        if let (Some(v), Some(last)) = (v, months.last_mut()) {
            last.1 += v as f64;
            last.2 += 1;
        }
    }
    let known: Vec<Option<f32>> = months
        .iter()
        .map(|&(_, sum, n)| (n > 0).then(|| (sum / n as f64) as f32))
        .collect();
    let values = interpolate_gaps(&known)?;
    Series::new(
        "co2",
        "ppm",
        months.into_iter().map(|m| m.0).collect(),
        values,
        12,
    )
}

/// Fills `None`s linearly between the nearest known values (and with the nearest known value
/// at either end).
///
/// # Errors
/// [`Error::TooSmall`] when no value is known.
pub fn interpolate_gaps(values: &[Option<f32>]) -> Result<Vec<f32>> {
    let known: Vec<(usize, f32)> = values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.map(|v| (i, v)))
        .collect();
    if known.is_empty() {
        return Err(Error::TooSmall("a series with no known value".into()));
    }
    let mut out = Vec::with_capacity(values.len());
    let mut k = 0; // index into `known` of the last known value at or before i
    for i in 0..values.len() {
        while k + 1 < known.len() && known[k + 1].0 <= i {
            k += 1;
        }
        let (i0, v0) = known[k];
        let v = if i0 == i || i < i0 {
            v0
        } else if let Some(&(i1, v1)) = known.get(k + 1) {
            v0 + (v1 - v0) * (i - i0) as f32 / (i1 - i0) as f32
        } else {
            v0
        };
        out.push(v);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_series_have_their_documented_shape() {
        let a = airline();
        assert_eq!(
            (a.values.len(), a.values[0], a.values[143]),
            (144, 112.0, 432.0)
        );
        assert_eq!(a.times[0], "1949-01");
        let s = sunspots();
        assert_eq!((s.values.len(), s.times[0].as_str()), (309, "1700"));
        let c = co2();
        assert_eq!(c.values.len(), 526);
        assert_eq!(
            (c.times[0].as_str(), c.times[525].as_str()),
            ("1958-03", "2001-12")
        );
    }

    #[test]
    fn co2_gap_months_are_interpolated_between_neighbours() {
        let c = co2();
        // 1964-02..04 have no recorded week: they lie on the line from 1964-01 to 1964-05.
        let i = c.times.iter().position(|t| t == "1964-01").unwrap();
        let (a, b) = (c.values[i], c.values[i + 4]);
        for k in 1..4 {
            let want = a + (b - a) * k as f32 / 4.0;
            assert!((c.values[i + k] - want).abs() < 1e-4, "{}", c.times[i + k]);
        }
        // A month with recorded weeks is their mean: 1958-03 has one week, 316.1.
        assert!((c.values[0] - 316.1).abs() < 1e-4);
        assert!(c.values.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn interpolation_fills_ends_and_middles() {
        let v = interpolate_gaps(&[None, Some(1.0), None, None, Some(4.0), None]).unwrap();
        assert_eq!(v, vec![1.0, 1.0, 2.0, 3.0, 4.0, 4.0]);
        assert!(interpolate_gaps(&[None, None]).is_err());
    }

    #[test]
    fn windows_never_train_on_the_future() {
        let a = airline();
        let split = TimeSplit::last(144, 12, 24).unwrap();
        let sc = a.scaler(&split).unwrap();
        let w = a.windows(&split, 12, &sc).unwrap();
        assert_eq!(w.train.len(), 108 - 12);
        assert_eq!(w.valid.len(), 12);
        assert_eq!(w.test.len(), 24);
        assert_eq!(w.test_steps[0], 120);
        // The last training target is step 107 and its window steps 95..107.
        let Targets::Values(y) = &w.train.targets else {
            panic!()
        };
        assert!((sc.unscale(y[y.len() - 1]) - a.values[107]).abs() < 1e-3);
        // The scaler saw the training period only.
        let train_mean = a.values[..108].iter().sum::<f32>() / 108.0;
        assert!((sc.mean - train_mean).abs() < 1e-3);
        // First test window ends right before step 120.
        assert!((sc.unscale(w.test.row(0)[11]) - a.values[119]).abs() < 1e-3);
    }

    #[test]
    fn seasonal_naive_is_one_season_back() {
        let a = airline();
        assert_eq!(
            a.seasonal_naive(&[12, 143]).unwrap(),
            vec![a.values[0], a.values[131]]
        );
        assert!(a.seasonal_naive(&[5]).is_err());
    }

    #[test]
    fn multi_step_seasonal_naive_repeats_the_last_season() {
        let a = airline();
        let f = a.seasonal_naive_from(120, 24).unwrap();
        assert_eq!(f[..12], a.values[108..120]);
        assert_eq!(f[12..], a.values[108..120]);
        assert!(a.seasonal_naive_from(5, 3).is_err());
    }

    #[test]
    fn bad_series_are_clear_errors() {
        let one = parse_series("t,v\n2000,1\n", "one", "u", 1).unwrap_err();
        assert!(one.to_string().contains("at least two"), "{one}");
        let empty = parse_series("t,v\n", "empty", "u", 1).unwrap_err();
        assert!(empty.to_string().contains("0 value"), "{empty}");
        let gap = parse_series("t,v\n1,1\n2,\n3,4\n", "gap", "u", 1).unwrap_err();
        assert!(gap.to_string().contains("missing value"), "{gap}");
        let text = parse_series("t,v\n1,1\n2,x\n", "bad", "u", 1).unwrap_err();
        assert!(text.to_string().contains("line 3"), "{text}");
        let gap = parse_series("t,v\n\n1,1\n\n2,\n", "gap", "u", 1).unwrap_err();
        assert!(gap.to_string().contains("line 5"), "{gap}");
        let three = parse_series("t,v\n1,1,1\n", "three", "u", 1).unwrap_err();
        assert!(three.to_string().contains("found 3"), "{three}");
        // A quoted time with a comma stays one cell.
        let q = parse_series("t,v\n\"Jan, 1949\",112\n\"Feb, 1949\",118\n", "q", "u", 1).unwrap();
        assert_eq!(q.times, ["Jan, 1949", "Feb, 1949"]);
        let a = airline();
        let split = TimeSplit::last(144, 12, 24).unwrap();
        let sc = a.scaler(&split).unwrap();
        let long = a.windows(&split, 200, &sc).unwrap_err();
        assert!(long.to_string().contains("window of 200"), "{long}");
        assert!(TimeSplit::last(10, 5, 5).is_err());
    }
}
