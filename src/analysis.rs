//! Analysis of empirical depth curves: the depth scale ξ_emp fitted from
//! |ĉ^l − c*| ∝ exp(−l/ξ), and agreement scores against the theory.

use crate::error::{Error, Result};

/// A fitted empirical depth scale.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DepthScaleFit {
    /// ξ_emp = −1/slope of ln|ĉ^l − c*| against l.
    pub xi: f64,
    /// Lower end of the 95 % confidence interval (from the slope's standard error).
    pub ci_low: f64,
    /// Upper end of the 95 % confidence interval (∞ when the slope is not
    /// significantly negative).
    pub ci_high: f64,
    /// First layer of the fit window.
    pub first_layer: usize,
    /// Last layer of the fit window.
    pub last_layer: usize,
}

/// One layer of an empirical correlation curve: layer, mean ĉ, its standard error.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CurveSample {
    /// Layer l.
    pub layer: usize,
    /// Mean of ĉ^l over networks.
    pub mean: f64,
    /// Standard error of the mean (`None` with one network).
    pub se: Option<f64>,
}

/// Fits ξ_emp from an empirical correlation curve relaxing to `c_star`.
///
/// **Window rule.** With d_l = |ĉ^l − c*|:
/// * the transient ends at the first layer l ≥ 1 with d_l ≤ d_0/2 (the
///   curve has entered the regime where the map is close to linear about c*);
/// * the noise floor starts at the first layer after that with
///   d_l < 4·SE_l (or d_l ≤ 0): the window ends just before it.
///
/// ln d_l is fitted against l by weighted least squares, weights
/// (d_l/SE_l)² (the variance of ln d is ≈ (SE/d)²), unweighted when no
/// standard errors are available. At least 3 layers are needed.
/// The interval treats layers as independent; they share networks, so it
/// is optimistic.
pub fn fit_depth_scale(curve: &[CurveSample], c_star: f64) -> Result<DepthScaleFit> {
    let d0 = curve
        .first()
        .map(|s| (s.mean - c_star).abs())
        .unwrap_or(0.0);
    let start = curve
        .iter()
        .position(|s| s.layer >= 1 && (s.mean - c_star).abs() <= 0.5 * d0)
        .ok_or_else(|| {
            Error::Numerical(
                "the correlation never came within half its initial distance of c*".into(),
            )
        })?;
    let mut pts = Vec::new();
    for s in &curve[start..] {
        let d = (s.mean - c_star).abs();
        let floor = s.se.map_or(0.0, |se| 4.0 * se);
        if d <= 0.0 || d < floor {
            break;
        }
        let w =
            s.se.map_or(1.0, |se| if se > 0.0 { (d / se).powi(2) } else { 1.0 });
        pts.push((s.layer as f64, d.ln(), w));
    }
    if pts.len() < 3 {
        return Err(Error::Numerical(format!(
            "only {} layer(s) between the transient and the noise floor (from layer {}); a depth-scale fit needs 3: \
             use more samples or pairs, or a larger c0",
            pts.len(),
            curve[start].layer
        )));
    }
    let sw: f64 = pts.iter().map(|p| p.2).sum();
    let xm = pts.iter().map(|p| p.2 * p.0).sum::<f64>() / sw;
    let ym = pts.iter().map(|p| p.2 * p.1).sum::<f64>() / sw;
    let sxx: f64 = pts.iter().map(|p| p.2 * (p.0 - xm).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|p| p.2 * (p.0 - xm) * (p.1 - ym)).sum();
    let slope = sxy / sxx;
    // Weighted LS with known variances: Var(slope) = 1/Σw(x − x̄)²; with
    // unit weights use the residual variance instead.
    let var_slope = if curve.iter().any(|s| s.se.is_some()) {
        1.0 / sxx
    } else {
        let rss: f64 = pts
            .iter()
            .map(|p| (p.1 - ym - slope * (p.0 - xm)).powi(2))
            .sum();
        rss / (pts.len() as f64 - 2.0) / sxx
    };
    let se = var_slope.sqrt();
    if slope.is_nan() || slope >= 0.0 {
        return Err(Error::Numerical(format!(
            "the fitted log-slope is {slope:.3e}: the correlation does not decay in the window"
        )));
    }
    let hi_slope = slope + 1.96 * se;
    Ok(DepthScaleFit {
        xi: -1.0 / slope,
        ci_low: -1.0 / (slope - 1.96 * se),
        ci_high: if hi_slope < 0.0 {
            -1.0 / hi_slope
        } else {
            f64::INFINITY
        },
        first_layer: pts[0].0 as usize,
        last_layer: pts[pts.len() - 1].0 as usize,
    })
}

/// Agreement between an empirical curve and the theory: the largest and
/// the root-mean-square |empirical − theory|/SE over the layers with a
/// standard error.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Agreement {
    /// max over layers of |mean − theory|/SE.
    pub max_z: f64,
    /// √(mean over layers of ((mean − theory)/SE)²); ≈ 1 when the theory holds.
    pub rms_z: f64,
    /// max over layers of |mean − theory|.
    pub max_abs: f64,
}

/// Standard errors below this are rounding, not statistics (exact
/// symmetries, e.g. the circle's antipodal points with an odd φ, make some
/// means exact): they are raised to it before dividing.
pub const SE_FLOOR: f64 = 1e-10;

/// Agreement scores of (mean, SE) samples against theory values.
pub fn agreement(emp: &[(f64, Option<f64>)], theory: &[f64]) -> Agreement {
    let (mut max_z, mut sum_z2, mut k, mut max_abs) = (0f64, 0f64, 0usize, 0f64);
    for (&(m, se), &t) in emp.iter().zip(theory) {
        let d = (m - t).abs();
        max_abs = max_abs.max(d);
        if let Some(se) = se {
            let z = d / se.max(SE_FLOOR);
            max_z = max_z.max(z);
            sum_z2 += z * z;
            k += 1;
        }
    }
    Agreement {
        max_z,
        rms_z: if k > 0 {
            (sum_z2 / k as f64).sqrt()
        } else {
            0.0
        },
        max_abs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_exponential_gives_its_depth_scale() {
        // ĉ^l = 0.9·exp(−l/7) with SE 1e-4: the noise floor is at d < 4e-4.
        let curve: Vec<_> = (0..80)
            .map(|l| CurveSample {
                layer: l,
                mean: 0.9 * (-(l as f64) / 7.0).exp(),
                se: Some(1e-4),
            })
            .collect();
        let f = fit_depth_scale(&curve, 0.0).unwrap();
        assert!((f.xi - 7.0).abs() < 1e-9, "ξ = {}", f.xi);
        assert_eq!(f.first_layer, 5); // 0.9·e^(−5/7) = 0.44 ≤ 0.45
                                      // 0.9·e^(−54/7) = 4.01e-4 ≥ 4e-4, 0.9·e^(−55/7) = 3.5e-4 < 4e-4.
        assert_eq!(f.last_layer, 54);
    }
}
