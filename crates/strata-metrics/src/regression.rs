//! Regression metrics: MSE, MAE, RMSE and R².

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, same_len};

fn check(y_true: &[f32], y_pred: &[f32], name: &'static str) -> Result<()> {
    same_len("y_pred", y_pred.len(), y_true.len())?;
    if y_true.is_empty() {
        return Err(Error::Empty(name));
    }
    Ok(())
}

/// Mean squared error.
///
/// # Errors
/// On empty or unequal-length inputs.
pub fn mse(y_true: &[f32], y_pred: &[f32]) -> Result<f64> {
    check(y_true, y_pred, "mse")?;
    Ok(y_true
        .iter()
        .zip(y_pred)
        .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
        .sum::<f64>()
        / y_true.len() as f64)
}

/// Root mean squared error.
///
/// # Errors
/// On empty or unequal-length inputs.
pub fn rmse(y_true: &[f32], y_pred: &[f32]) -> Result<f64> {
    mse(y_true, y_pred).map(f64::sqrt)
}

/// Mean absolute error.
///
/// # Errors
/// On empty or unequal-length inputs.
pub fn mae(y_true: &[f32], y_pred: &[f32]) -> Result<f64> {
    check(y_true, y_pred, "mae")?;
    Ok(y_true
        .iter()
        .zip(y_pred)
        .map(|(&a, &b)| (a as f64 - b as f64).abs())
        .sum::<f64>()
        / y_true.len() as f64)
}

/// Coefficient of determination, `1 - SS_res / SS_tot`. As scikit-learn, a constant target
/// gives 1.0 for a perfect prediction and 0.0 otherwise.
///
/// # Errors
/// On empty or unequal-length inputs.
pub fn r2(y_true: &[f32], y_pred: &[f32]) -> Result<f64> {
    check(y_true, y_pred, "r2")?;
    let mean = y_true.iter().map(|&v| v as f64).sum::<f64>() / y_true.len() as f64;
    let ss_tot: f64 = y_true.iter().map(|&v| (v as f64 - mean).powi(2)).sum();
    let ss_res: f64 = y_true
        .iter()
        .zip(y_pred)
        .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
        .sum();
    if ss_tot == 0.0 {
        return Ok(if ss_res == 0.0 { 1.0 } else { 0.0 });
    }
    Ok(1.0 - ss_res / ss_tot)
}

/// Everything `metrics.json` reports for a regressor.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RegressionReport {
    /// Root mean squared error.
    pub rmse: f64,
    /// Mean absolute error.
    pub mae: f64,
    /// Coefficient of determination.
    pub r2: f64,
    /// Mean squared error.
    pub mse: f64,
}

impl RegressionReport {
    /// Computes the report.
    ///
    /// # Errors
    /// On empty or unequal-length inputs.
    pub fn new(y_true: &[f32], y_pred: &[f32]) -> Result<Self> {
        Ok(Self {
            rmse: rmse(y_true, y_pred)?,
            mae: mae(y_true, y_pred)?,
            r2: r2(y_true, y_pred)?,
            mse: mse(y_true, y_pred)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // scikit-learn 1.2: y_true = [3, -0.5, 2, 7]; y_pred = [2.5, 0.0, 2, 8]
    // mean_squared_error -> 0.375 ; mean_absolute_error -> 0.5 ; r2_score -> 0.9486081
    #[test]
    fn matches_scikit_learn() {
        let t = [3.0, -0.5, 2.0, 7.0];
        let p = [2.5, 0.0, 2.0, 8.0];
        assert!((mse(&t, &p).unwrap() - 0.375).abs() < 1e-12);
        assert!((mae(&t, &p).unwrap() - 0.5).abs() < 1e-12);
        assert!((rmse(&t, &p).unwrap() - 0.375f64.sqrt()).abs() < 1e-12);
        assert!((r2(&t, &p).unwrap() - 0.948_608_137).abs() < 1e-8);
    }

    #[test]
    fn constant_target_and_errors() {
        assert_eq!(r2(&[1.0, 1.0], &[1.0, 1.0]).unwrap(), 1.0);
        assert_eq!(r2(&[1.0, 1.0], &[1.0, 2.0]).unwrap(), 0.0);
        assert!(mse(&[], &[]).is_err());
        assert!(mae(&[1.0], &[]).is_err());
    }
}
