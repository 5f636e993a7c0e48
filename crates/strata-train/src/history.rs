//! Per-epoch history: the CSV file and the loss / metric curve (SVG).

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::atomic::write_atomic;
use crate::error::Result;

/// One epoch of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss over the epoch's batches.
    pub train_loss: f64,
    /// Loss on the validation set.
    pub valid_loss: f64,
    /// The monitored validation metric (accuracy, or RMSE for regression).
    pub valid_metric: f64,
    /// Learning rate used in the epoch.
    pub lr: f64,
    /// Wall seconds the epoch took (training and validation).
    pub seconds: f64,
    /// Each player's mean training loss, by name, in a run of several optimizers
    /// ([`fit_players`](crate::fit_players)); empty in a run of one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub losses: Vec<(String, f64)>,
    /// Figures of the model in evaluation mode that the objective tracks besides its metric,
    /// by name ([`Objective::tracked`](crate::Objective::tracked): an adversarially trained
    /// model's robust validation accuracy); empty for most runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tracked: Vec<(String, f64)>,
}

/// Writes `history.csv` with a header naming the metric, a `loss_NAME` column per player
/// of a run of several ([`EpochRecord::losses`]), and a `valid_NAME` column per tracked figure
/// ([`EpochRecord::tracked`]).
///
/// # Errors
/// I/O errors.
pub fn write_csv(path: &Path, metric: &str, records: &[EpochRecord]) -> Result<()> {
    let mut s = format!("epoch,train_loss,valid_loss,valid_{metric},lr,seconds");
    let players = named_series(records, |r| &r.losses);
    let tracked = named_series(records, |r| &r.tracked);
    for (name, _) in &players {
        let _ = write!(s, ",loss_{name}");
    }
    for (name, _) in &tracked {
        let _ = write!(s, ",valid_{name}");
    }
    s.push('\n');
    for (e, r) in records.iter().enumerate() {
        let _ = write!(
            s,
            "{},{:.6},{:.6},{:.6},{:.6e},{:.3}",
            r.epoch, r.train_loss, r.valid_loss, r.valid_metric, r.lr, r.seconds
        );
        for (_, v) in players.iter().chain(&tracked) {
            let _ = write!(s, ",{:.6}", v[e]);
        }
        s.push('\n');
    }
    write_atomic(path, s.as_bytes())
}

/// The named figures `field` gives each record (a player's loss, a tracked figure), as one
/// series per name of the first record, NaN where a record lacks the name.
fn named_series(
    records: &[EpochRecord],
    field: impl Fn(&EpochRecord) -> &[(String, f64)],
) -> Vec<(&str, Vec<f64>)> {
    let Some(first) = records.first() else {
        return Vec::new();
    };
    field(first)
        .iter()
        .map(|(name, _)| {
            let v = records
                .iter()
                .map(|r| {
                    field(r)
                        .iter()
                        .find(|(n, _)| n == name)
                        .map_or(f64::NAN, |x| x.1)
                })
                .collect();
            (name.as_str(), v)
        })
        .collect()
}

/// Draws the training and validation loss (left; each player's training loss in a run of
/// several) and the validation metric with any tracked figures (right) against the epoch, as a
/// self-contained SVG file.
///
/// # Errors
/// I/O errors.
pub fn write_curves_svg(
    path: &Path,
    title: &str,
    metric: &str,
    records: &[EpochRecord],
) -> Result<()> {
    let (w, h) = (900.0, 380.0);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="20" text-anchor="middle" font-size="15">{}</text>
"#,
        w / 2.0,
        escape(title)
    );
    let epochs: Vec<f64> = records.iter().map(|r| r.epoch as f64).collect();
    let train: Vec<f64> = records.iter().map(|r| r.train_loss).collect();
    let valid: Vec<f64> = records.iter().map(|r| r.valid_loss).collect();
    let metric_v: Vec<f64> = records.iter().map(|r| r.valid_metric).collect();
    let players: Vec<(String, Vec<f64>)> = named_series(records, |r| &r.losses)
        .into_iter()
        .map(|(n, v)| (format!("{n} loss"), v))
        .collect();
    const MORE: [&str; 4] = ["#9467bd", "#8c564b", "#e377c2", "#17becf"];
    let mut lines: Vec<(&str, &str, &Vec<f64>)> = if players.is_empty() {
        vec![("train loss", "#1f77b4", &train)]
    } else {
        players
            .iter()
            .enumerate()
            .map(|(i, (n, v))| (n.as_str(), MORE[i % MORE.len()], v))
            .collect()
    };
    lines.push(("validation loss", "#ff7f0e", &valid));
    panel(&mut s, (60.0, 60.0, 370.0, 270.0), "loss", &epochs, &lines);
    let label = format!("validation {metric}");
    let tracked: Vec<(String, Vec<f64>)> = named_series(records, |r| &r.tracked)
        .into_iter()
        .map(|(n, v)| (format!("validation {}", n.replace('_', " ")), v))
        .collect();
    let mut right: Vec<(&str, &str, &Vec<f64>)> = vec![(&label, "#2ca02c", &metric_v)];
    for (i, (name, v)) in tracked.iter().enumerate() {
        right.push((name, MORE[i % MORE.len()], v));
    }
    panel(&mut s, (510.0, 60.0, 370.0, 270.0), metric, &epochs, &right);
    s.push_str("</svg>\n");
    write_atomic(path, s.as_bytes())
}

fn escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn panel(
    s: &mut String,
    (x0, y0, pw, ph): (f64, f64, f64, f64),
    y_label: &str,
    xs: &[f64],
    series: &[(&str, &str, &Vec<f64>)],
) {
    let finite = || {
        series
            .iter()
            .flat_map(|(_, _, v)| v.iter().copied())
            .filter(|v| v.is_finite())
    };
    let (mut lo, mut hi) = (
        finite().fold(f64::INFINITY, f64::min),
        finite().fold(f64::NEG_INFINITY, f64::max),
    );
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        lo -= 0.5;
        hi += 0.5;
    }
    let pad = (hi - lo) * 0.05;
    // Losses and accuracies are not negative: do not pad below zero.
    let (lo, hi) = (
        if lo >= 0.0 {
            (lo - pad).max(0.0)
        } else {
            lo - pad
        },
        hi + pad,
    );
    let (x_lo, x_hi) = (
        xs.first().copied().unwrap_or(0.0),
        xs.last()
            .copied()
            .unwrap_or(1.0)
            .max(xs.first().copied().unwrap_or(0.0) + 1.0),
    );
    let px = |x: f64| x0 + (x - x_lo) / (x_hi - x_lo) * pw;
    let py = |y: f64| y0 + ph - (y - lo) / (hi - lo) * ph;
    let _ = writeln!(
        s,
        r##"<rect x="{x0}" y="{y0}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>"##
    );
    for i in 0..=4 {
        let v = lo + (hi - lo) * i as f64 / 4.0;
        let y = py(v);
        let _ = writeln!(
            s,
            r##"<line x1="{x0}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            x0 + pw,
            x0 - 4.0,
            y + 4.0,
            format_tick(v)
        );
    }
    let n_ticks = (x_hi - x_lo).clamp(1.0, 8.0) as usize;
    for i in 0..=n_ticks {
        let e = x_lo + (x_hi - x_lo) * i as f64 / n_ticks as f64;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            px(e),
            y0 + ph + 16.0,
            e.round()
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">epoch</text><text x="{}" y="{}" text-anchor="middle" transform="rotate(-90 {} {})">{}</text>"#,
        x0 + pw / 2.0,
        y0 + ph + 32.0,
        x0 - 45.0,
        y0 + ph / 2.0,
        x0 - 45.0,
        y0 + ph / 2.0,
        escape(y_label)
    );
    for (k, (name, colour, ys)) in series.iter().enumerate() {
        let points: Vec<String> = xs
            .iter()
            .zip(ys.iter())
            .filter(|(_, y)| y.is_finite())
            .map(|(&x, &y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
        // Legend above the panel, right-aligned, so it never hides a curve.
        let ly = y0 - 8.0 - 15.0 * (series.len() - 1 - k) as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{}" x2="{}" y1="{ly}" y2="{ly}" stroke="{colour}" stroke-width="2"/><text x="{}" y="{}">{}</text>"#,
            x0 + pw - 150.0,
            x0 + pw - 130.0,
            x0 + pw - 125.0,
            ly + 4.0,
            escape(name)
        );
    }
}

fn format_tick(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records() -> Vec<EpochRecord> {
        (1..=3)
            .map(|e| EpochRecord {
                epoch: e,
                train_loss: 1.0 / e as f64,
                valid_loss: 1.2 / e as f64,
                valid_metric: 0.5 + 0.1 * e as f64,
                lr: 1e-3,
                seconds: 0.5,
                losses: Vec::new(),
                tracked: Vec::new(),
            })
            .collect()
    }

    #[test]
    fn players_losses_get_a_column_and_a_curve_each() {
        let dir = tempfile::tempdir().unwrap();
        let mut records = records();
        for r in &mut records {
            r.losses = vec![("discriminator".into(), 1.3), ("generator".into(), 0.7)];
        }
        let p = dir.path().join("history.csv");
        write_csv(&p, "diversity", &records).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "epoch,train_loss,valid_loss,valid_diversity,lr,seconds,loss_discriminator,loss_generator"
        );
        assert!(lines[1].ends_with(",1.300000,0.700000"), "{}", lines[1]);
        let svg = dir.path().join("curves.svg");
        write_curves_svg(&svg, "gan", "diversity", &records).unwrap();
        let text = std::fs::read_to_string(&svg).unwrap();
        assert_eq!(text.matches("<polyline").count(), 4);
        assert!(text.contains("generator loss"));
    }

    #[test]
    fn tracked_figures_get_a_column_and_a_curve_each() {
        let dir = tempfile::tempdir().unwrap();
        let mut records = records();
        for r in &mut records {
            r.tracked = vec![("robust_acc".into(), 0.25 * r.epoch as f64)];
        }
        let p = dir.path().join("history.csv");
        write_csv(&p, "accuracy", &records).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "epoch,train_loss,valid_loss,valid_accuracy,lr,seconds,valid_robust_acc"
        );
        assert!(lines[2].ends_with(",0.500000"), "{}", lines[2]);
        let svg = dir.path().join("curves.svg");
        write_curves_svg(&svg, "cnn", "accuracy", &records).unwrap();
        let text = std::fs::read_to_string(&svg).unwrap();
        assert_eq!(text.matches("<polyline").count(), 4);
        assert!(text.contains("validation robust acc"));
        // A checkpoint's history from before tracking reads back with none.
        let old = r#"{"epoch":1,"train_loss":1.0,"valid_loss":1.0,"valid_metric":0.5,"lr":0.1,"seconds":1.0}"#;
        let r: EpochRecord = serde_json::from_str(old).unwrap();
        assert!(r.tracked.is_empty() && r.losses.is_empty());
    }

    #[test]
    fn csv_has_header_and_rows() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("history.csv");
        write_csv(&p, "accuracy", &records()).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "epoch,train_loss,valid_loss,valid_accuracy,lr,seconds"
        );
        assert_eq!(lines.len(), 4);
        assert!(lines[1].starts_with("1,1.000000,1.200000,0.600000,"));
    }

    #[test]
    fn svg_is_well_formed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("curves.svg");
        write_curves_svg(&p, "cnn <digits>", "accuracy", &records()).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"));
        assert_eq!(text.matches("<polyline").count(), 3);
        assert!(text.contains("cnn &lt;digits&gt;"));
    }
}
