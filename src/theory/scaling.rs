//! Scaling of the optimum with N: least-squares fits in log-log space and
//! local exponents (THEORY.md §6).

use crate::error::{Error, Result};
use crate::theory::optimal::UniformOptimum;

/// An ordinary least-squares line y = slope·x + intercept.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LinearFit {
    /// Fitted slope.
    pub slope: f64,
    /// Fitted intercept.
    pub intercept: f64,
    /// Standard error of the slope, s/√Sxx with s² = RSS/(n − 2).
    pub stderr: f64,
    /// Standard error of the intercept, s·√(1/n + x̄²/Sxx).
    pub intercept_stderr: f64,
    /// Coefficient of determination 1 − RSS/TSS.
    pub r2: f64,
    /// Number of points.
    pub points: usize,
}

/// Least-squares fit of `ys` against `xs` (at least 3 points, x not all equal).
pub fn linear_fit(xs: &[f64], ys: &[f64]) -> Result<LinearFit> {
    let n = xs.len();
    if n != ys.len() || n < 3 {
        return Err(Error::invalid(
            "number of points",
            n,
            "a fit with standard errors needs at least 3 points",
        ));
    }
    let nf = n as f64;
    let xm = xs.iter().sum::<f64>() / nf;
    let ym = ys.iter().sum::<f64>() / nf;
    let sxx: f64 = xs.iter().map(|x| (x - xm).powi(2)).sum();
    let sxy: f64 = xs.iter().zip(ys).map(|(x, y)| (x - xm) * (y - ym)).sum();
    let syy: f64 = ys.iter().map(|y| (y - ym).powi(2)).sum();
    if sxx == 0.0 {
        return Err(Error::invalid(
            "x values",
            "all equal",
            "a fit needs at least two distinct x",
        ));
    }
    let slope = sxy / sxx;
    let intercept = ym - slope * xm;
    let rss: f64 = xs
        .iter()
        .zip(ys)
        .map(|(x, y)| (y - intercept - slope * x).powi(2))
        .sum();
    let s2 = rss / (nf - 2.0);
    Ok(LinearFit {
        slope,
        intercept,
        stderr: (s2 / sxx).sqrt(),
        intercept_stderr: (s2 * (1.0 / nf + xm * xm / sxx)).sqrt(),
        r2: if syy > 0.0 { 1.0 - rss / syy } else { 1.0 },
        points: n,
    })
}

/// The local exponent of ξ_max between two consecutive N of a scan.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LocalExponent {
    /// Lower N of the pair.
    pub n_lo: usize,
    /// Upper N of the pair.
    pub n_hi: usize,
    /// Δ ln ξ_max / Δ ln(N + 1) between them.
    pub exponent: f64,
}

/// The three fits against ln(N + 1) and the local exponents.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Scaling {
    /// Fit of ln(1 − χ_max).
    pub one_minus_chi_max: LinearFit,
    /// Fit of ln ξ_max.
    pub xi_max: LinearFit,
    /// Fit of ln D̃_opt (N = 2 excluded: no optimum).
    pub d_opt: LinearFit,
    /// d ln ξ_max / d ln(N + 1) between consecutive N.
    pub local_exponents: Vec<LocalExponent>,
}

/// Fits ln(1 − χ_max), ln ξ_max and ln D̃_opt against ln(N + 1) over the
/// given optima (sorted by N), with local exponents of ξ_max.
pub fn scaling(optima: &[UniformOptimum]) -> Result<Scaling> {
    let x: Vec<f64> = optima
        .iter()
        .map(|o| ((o.states + 1) as f64).ln())
        .collect();
    let y1: Vec<f64> = optima.iter().map(|o| o.one_minus_chi_max.ln()).collect();
    let y2: Vec<f64> = optima.iter().map(|o| o.xi_max.ln()).collect();
    let (xd, yd): (Vec<f64>, Vec<f64>) = optima
        .iter()
        .filter_map(|o| o.d_opt.map(|d| (((o.states + 1) as f64).ln(), d.ln())))
        .unzip();
    let local_exponents = optima
        .windows(2)
        .map(|w| LocalExponent {
            n_lo: w[0].states,
            n_hi: w[1].states,
            exponent: (w[1].xi_max.ln() - w[0].xi_max.ln())
                / (((w[1].states + 1) as f64).ln() - ((w[0].states + 1) as f64).ln()),
        })
        .collect();
    Ok(Scaling {
        one_minus_chi_max: linear_fit(&x, &y1)?,
        xi_max: linear_fit(&x, &y2)?,
        d_opt: linear_fit(&xd, &yd)?,
        local_exponents,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_line_has_zero_stderr_and_unit_r2() {
        let xs = [0.0, 1.0, 2.0, 3.0];
        let ys = [1.0, 3.0, 5.0, 7.0];
        let f = linear_fit(&xs, &ys).unwrap();
        assert!((f.slope - 2.0).abs() < 1e-15 && (f.intercept - 1.0).abs() < 1e-15);
        assert!(f.stderr < 1e-15 && (f.r2 - 1.0).abs() < 1e-15);
    }

    #[test]
    fn stderr_matches_hand_computation() {
        // xs 0..4, ys [0, 2, 2, 4, 4]: x̄ = 2, ȳ = 2.4, Sxx = 10, Sxy = 10, so
        // slope 1, intercept 0.4; residuals −0.4, 0.6, −0.4, 0.6, −0.4 give
        // RSS = 1.2, s² = 0.4 and stderr = √(0.4/10) = 0.2.
        let f = linear_fit(&[0.0, 1.0, 2.0, 3.0, 4.0], &[0.0, 2.0, 2.0, 4.0, 4.0]).unwrap();
        assert!((f.slope - 1.0).abs() < 1e-14);
        assert!((f.intercept - 0.4).abs() < 1e-14);
        assert!((f.stderr - 0.2).abs() < 1e-14);
    }
}
