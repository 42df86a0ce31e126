//! Analysis of empirical depth curves: the depth scale ξ_emp fitted from
//! |ĉ^l − c*| ∝ exp(−l/ξ), and agreement scores against the theory.

use crate::error::{Error, Result};

pub mod predicted;

/// A fitted empirical depth scale.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DepthScaleFit {
    /// ξ_emp = −1/slope of ln|ĉ^l − c*| against l.
    pub xi: f64,
    /// Lower end of the 95 % confidence interval.
    pub ci_low: f64,
    /// Upper end of the 95 % confidence interval (∞ when the slope is not
    /// significantly negative).
    pub ci_high: f64,
    /// Standard error of ξ_emp (delta method: SE(slope)/slope²).
    pub xi_se: f64,
    /// Where the interval comes from.
    pub interval: IntervalMethod,
    /// First layer of the fit window.
    pub first_layer: usize,
    /// Last layer of the fit window.
    pub last_layer: usize,
}

/// How a depth-scale interval was obtained.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntervalMethod {
    /// Delete-one-network jackknife of the slope, Student t quantile with
    /// E − 1 degrees of freedom: the variation between networks.
    JackknifeNetworks {
        /// Networks E.
        networks: usize,
    },
    /// The weighted fit's own slope error, which treats layers as
    /// independent (they share networks, so this is optimistic); used only
    /// when per-network curves are not available.
    LayersIndependent,
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
/// standard errors are available. At least 3 layers are needed. The fit is
/// then refined until its window stops changing: the weights use the
/// fitted d̂_l = exp(a + b·l) instead of d_l, and the window ends before the
/// first layer with d̂_l < 4·SE_l (or d_l ≤ 0) — so that neither the end
/// nor the weights select upward fluctuations of the noisy tail.
/// The interval treats layers as independent; they share networks, so it
/// is optimistic: [`fit_depth_scale_networks`] gives one from the variation
/// between networks.
pub fn fit_depth_scale(curve: &[CurveSample], c_star: f64) -> Result<DepthScaleFit> {
    fit_with_window(curve, c_star).map(|f| f.0)
}

/// The fit and its window: (layer, weight) of every layer in it.
fn fit_with_window(curve: &[CurveSample], c_star: f64) -> Result<(DepthScaleFit, Vec<(f64, f64)>)> {
    let d0 = curve
        .first()
        .map(|s| (s.mean - c_star).abs())
        .unwrap_or(0.0);
    let start = curve
        .iter()
        .position(|s| s.layer >= 1 && (s.mean - c_star).abs() <= 0.5 * d0)
        .ok_or_else(|| {
            Error::Numerical(format!(
                "the correlation never came within half its initial distance of c* in {} layer(s): \
                 the network is too shallow for its depth scale; use more layers (a few ξ)",
                curve.last().map_or(0, |s| s.layer)
            ))
        })?;
    // Initial window: up to the first layer under the noise floor.
    let d_at = |s: &CurveSample| (s.mean - c_star).abs();
    let floor = |s: &CurveSample| s.se.map_or(0.0, |se| 4.0 * se);
    let mut end = start;
    while end < curve.len() && d_at(&curve[end]) > 0.0 && d_at(&curve[end]) >= floor(&curve[end]) {
        end += 1;
    }
    if end - start < 3 {
        let remedy = if end == curve.len() {
            "the curve ends first: use more layers (a few ξ)"
        } else {
            "use more samples or pairs, or a larger c0"
        };
        return Err(Error::Numerical(format!(
            "only {} layer(s) between the transient and the noise floor (from layer {}); a depth-scale fit needs 3: {remedy}",
            end - start,
            curve[start].layer
        )));
    }
    // Refine: weights and the window's end from the fitted line d̂_l rather
    // than from the noisy d_l themselves. Ending at the first layer whose own
    // d_l dips under 4 SE, and weighting by the observed (d_l/SE)², both
    // favour upward fluctuations, which flattens the slope (ξ_emp ≈ 10 % too
    // large at 8 networks); the fitted line does not select on the noise.
    let mut line: Option<(f64, f64)> = None;
    let mut fit = (0.0, 0.0, 0.0, Vec::new());
    for _ in 0..20 {
        let weights: Vec<(f64, f64, f64)> = curve[start..end]
            .iter()
            .map(|s| {
                let d = d_at(s);
                let dh = line.map_or(d, |(a, b)| (a + b * s.layer as f64).exp());
                let w =
                    s.se.map_or(1.0, |se| if se > 0.0 { (dh / se).powi(2) } else { 1.0 });
                (s.layer as f64, d.ln(), w)
            })
            .collect();
        let (slope, icpt, sxx) = weighted_line(&weights);
        fit = (slope, icpt, sxx, weights);
        if slope.is_nan() || slope >= 0.0 {
            break;
        }
        line = Some((icpt, slope));
        let mut new_end = start;
        while new_end < curve.len() {
            let s = &curve[new_end];
            let dh = (icpt + slope * s.layer as f64).exp();
            if d_at(s) <= 0.0 || dh < floor(s) {
                break;
            }
            new_end += 1;
        }
        if new_end - start < 3 || new_end == end {
            break;
        }
        end = new_end;
    }
    let (slope, icpt, sxx, pts) = fit;
    // Weighted LS with known variances: Var(slope) = 1/Σw(x − x̄)²; with
    // unit weights use the residual variance instead.
    let var_slope = if curve.iter().any(|s| s.se.is_some()) {
        1.0 / sxx
    } else {
        let rss: f64 = pts.iter().map(|p| (p.1 - icpt - slope * p.0).powi(2)).sum();
        rss / (pts.len() as f64 - 2.0) / sxx
    };
    let se = var_slope.sqrt();
    if slope.is_nan() || slope >= 0.0 {
        return Err(Error::Numerical(format!(
            "the fitted log-slope is {slope:.3e}: the correlation does not decay in the window"
        )));
    }
    let window = pts.iter().map(|p| (p.0, p.2)).collect();
    Ok((
        interval_from_slope(
            slope,
            se,
            1.959963984540054,
            IntervalMethod::LayersIndependent,
            pts[0].0 as usize,
            pts[pts.len() - 1].0 as usize,
        ),
        window,
    ))
}

/// Weighted least-squares line through (x, y, w): (slope, intercept, Σw(x − x̄)²).
fn weighted_line(pts: &[(f64, f64, f64)]) -> (f64, f64, f64) {
    let sw: f64 = pts.iter().map(|p| p.2).sum();
    let xm = pts.iter().map(|p| p.2 * p.0).sum::<f64>() / sw;
    let ym = pts.iter().map(|p| p.2 * p.1).sum::<f64>() / sw;
    let sxx: f64 = pts.iter().map(|p| p.2 * (p.0 - xm).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|p| p.2 * (p.0 - xm) * (p.1 - ym)).sum();
    let slope = sxy / sxx;
    (slope, ym - slope * xm, sxx)
}

/// ξ = −1/slope with the 95 % interval slope ± quantile·SE mapped through −1/slope.
fn interval_from_slope(
    slope: f64,
    se: f64,
    quantile: f64,
    interval: IntervalMethod,
    first_layer: usize,
    last_layer: usize,
) -> DepthScaleFit {
    let hi_slope = slope + quantile * se;
    DepthScaleFit {
        xi: -1.0 / slope,
        ci_low: -1.0 / (slope - quantile * se),
        ci_high: if hi_slope < 0.0 {
            -1.0 / hi_slope
        } else {
            f64::INFINITY
        },
        xi_se: se / (slope * slope),
        interval,
        first_layer,
        last_layer,
    }
}

/// Per-layer mean and sum of squared deviations over networks of
/// `per_network` (`[network][layer]`), from which the mean curve and every
/// leave-one-out mean curve follow in O(layers) each — the jackknife costs
/// O(E·L), not O(E²·L) (E = 3000 networks took a minute per fit).
struct CurveMoments {
    mean: Vec<f64>,
    m2: Vec<f64>,
    networks: usize,
}

impl CurveMoments {
    fn new(per_network: &[Vec<f64>]) -> Self {
        let layers = per_network.first().map_or(0, Vec::len);
        let e = per_network.len() as f64;
        let mean: Vec<f64> = (0..layers)
            .map(|l| per_network.iter().map(|r| r[l]).sum::<f64>() / e)
            .collect();
        let m2 = (0..layers)
            .map(|l| {
                per_network
                    .iter()
                    .map(|r| (r[l] - mean[l]).powi(2))
                    .sum::<f64>()
            })
            .collect();
        Self {
            mean,
            m2,
            networks: per_network.len(),
        }
    }

    /// Mean and standard error of each layer over all networks.
    fn curve(&self) -> Vec<CurveSample> {
        let e = self.networks as f64;
        (0..self.mean.len())
            .map(|l| CurveSample {
                layer: l,
                mean: self.mean[l],
                se: (self.networks >= 2).then(|| (self.m2[l] / (e - 1.0) / e).sqrt()),
            })
            .collect()
    }

    /// The same with network `row` (its curve) left out: removing x from
    /// mean m and M2 over E gives m' = m − (x − m)/(E − 1) and
    /// M2' = M2 − (x − m)(x − m') (Welford's update run backwards),
    /// clamped at 0 against rounding.
    fn without(&self, row: &[f64]) -> Vec<CurveSample> {
        let k = self.networks - 1;
        let e = k as f64;
        (0..self.mean.len())
            .map(|l| {
                let d = row[l] - self.mean[l];
                let mean = self.mean[l] - d / e;
                let m2 = (self.m2[l] - d * (row[l] - mean)).max(0.0);
                CurveSample {
                    layer: l,
                    mean,
                    se: (k >= 2).then(|| (m2 / (e - 1.0) / e).sqrt()),
                }
            })
            .collect()
    }
}

/// Fits ξ_emp from the correlation curves of E individual networks
/// (`per_network[network][layer]`, layers 0..=L) relaxing to `c_star`, with
/// a 95 % interval from the variation between networks.
///
/// ξ_emp and its window are [`fit_depth_scale`]'s on the mean curve. The
/// interval: the slope is refitted E times, each time leaving one network
/// out (window and weights chosen again, so that their variation is in the
/// interval too), and the delete-one jackknife standard error
/// SE_J = √((E − 1)/E · Σᵢ (bᵢ − b̄)²) (Efron & Stein 1981; Efron 1982,
/// ch. 3) gives slope ± t_{0.975, E−1}·SE_J — Student's t with E − 1
/// degrees of freedom, since SE_J is itself estimated from E networks.
/// With fewer than 3 networks it falls back to [`fit_depth_scale`]'s
/// interval, marked [`IntervalMethod::LayersIndependent`].
pub fn fit_depth_scale_networks(per_network: &[Vec<f64>], c_star: f64) -> Result<DepthScaleFit> {
    let e = per_network.len();
    if e == 0 {
        return Err(Error::Numerical("no network finished".into()));
    }
    if e < 3 {
        // Too few networks for a jackknife: the fit's own interval, marked
        // as treating layers as independent (optimistic).
        return fit_depth_scale(&CurveMoments::new(per_network).curve(), c_star);
    }
    let layers = per_network[0].len();
    if per_network.iter().any(|r| r.len() != layers) {
        return Err(Error::Numerical(
            "per-network curves of different lengths".into(),
        ));
    }
    let moments = CurveMoments::new(per_network);
    let full = moments.curve();
    let (fit, w) = fit_with_window(&full, c_star)?;
    let window = fit.first_layer..=fit.last_layer;
    let slope_of = |curve: &[CurveSample]| -> f64 {
        let pts: Vec<(f64, f64, f64)> = w
            .iter()
            .zip(&curve[window.clone()])
            .map(|(&(x, w), s)| (x, (s.mean - c_star).abs().max(f64::MIN_POSITIVE).ln(), w))
            .collect();
        weighted_line(&pts).0
    };
    let slope = slope_of(&full);
    // Each replicate is refitted from scratch (its own window and weights),
    // so the interval also carries the variation of the window choice; a
    // replicate whose refit fails keeps the full fit's window.
    let reps: Vec<f64> = per_network
        .iter()
        .map(|row| {
            let loo = moments.without(row);
            fit_with_window(&loo, c_star).map_or_else(|_| slope_of(&loo), |(f, _)| -1.0 / f.xi)
        })
        .collect();
    let rbar = reps.iter().sum::<f64>() / e as f64;
    let se =
        ((e as f64 - 1.0) / e as f64 * reps.iter().map(|b| (b - rbar).powi(2)).sum::<f64>()).sqrt();
    if !se.is_finite() {
        return Err(Error::Numerical(
            "the jackknife of the log-slope is not finite (a network's curve reaches c*)".into(),
        ));
    }
    Ok(interval_from_slope(
        slope,
        se,
        student_t_quantile(0.975, (e - 1) as f64),
        IntervalMethod::JackknifeNetworks { networks: e },
        fit.first_layer,
        fit.last_layer,
    ))
}

/// The p-quantile (p in (0.5, 1)) of Student's t with `df` degrees of
/// freedom, from the inverse regularized incomplete beta function:
/// P(|T| > t) = I_{ν/(ν+t²)}(ν/2, 1/2).
pub fn student_t_quantile(p: f64, df: f64) -> f64 {
    let x = puruspe::invbetai(2.0 * (1.0 - p), 0.5 * df, 0.5);
    (df * (1.0 - x) / x).sqrt()
}

/// The normal deviate with the same two-sided tail probability as `t`
/// under Student's t with `df` degrees of freedom, sign kept:
/// |z| = Φ⁻¹(1 − p/2), p = I_{ν/(ν+t²)}(ν/2, 1/2). With a standard error
/// estimated from E networks, (mean − theory)/SE is t-distributed with
/// E − 1 degrees of freedom; this maps it to a score that is standard
/// normal when the theory holds, whatever E.
pub fn t_to_z(t: f64, df: f64) -> f64 {
    if !t.is_finite() || df.is_infinite() {
        return t;
    }
    let p = puruspe::betai(0.5 * df, 0.5, df / (df + t * t)).max(1e-300);
    // Φ⁻¹(1 − p/2) = √2·erfc⁻¹(p).
    t.signum() * std::f64::consts::SQRT_2 * puruspe::inverfc(p)
}

/// Agreement between an empirical curve and the theory: the largest and
/// the root-mean-square score over the layers with a standard error.
///
/// Each layer's t = (mean − theory)/SE has Student's t distribution with
/// E − 1 degrees of freedom when the theory holds (the SE is estimated from
/// E networks): with 4 networks its rms is √3 ≈ 1.73, not 1. The scores are
/// therefore the normal deviates with the same tail probability
/// ([`t_to_z`]), so that rms z ≈ 1 and max z follows the normal tables
/// whatever E.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Agreement {
    /// max over layers of |z|.
    pub max_z: f64,
    /// √(mean over layers of z²); ≈ 1 when the theory holds.
    pub rms_z: f64,
    /// max over layers of |mean − theory|.
    pub max_abs: f64,
    /// Networks behind each SE (E); the t → z map uses E − 1 degrees of freedom.
    pub samples: usize,
}

/// Standard errors below this are rounding, not statistics (exact
/// symmetries, e.g. the circle's antipodal points with an odd φ, make some
/// means exact): they are raised to it before dividing.
pub const SE_FLOOR: f64 = 1e-10;

/// Agreement scores of (mean, SE) samples, each SE over `samples`
/// networks, against theory values.
pub fn agreement(emp: &[(f64, Option<f64>)], theory: &[f64], samples: usize) -> Agreement {
    let df = samples.saturating_sub(1).max(1) as f64;
    let (mut max_z, mut sum_z2, mut k, mut max_abs) = (0f64, 0f64, 0usize, 0f64);
    for (&(m, se), &t) in emp.iter().zip(theory) {
        let d = (m - t).abs();
        max_abs = max_abs.max(d);
        if let Some(se) = se {
            let z = t_to_z(d / se.max(SE_FLOOR), df);
            max_z = max_z.max(z);
            sum_z2 += z * z;
            k += 1;
        }
    }
    // No layer with a standard error (one network): no score is defined,
    // and NaN (null in JSON) says so where 0 would read as perfect agreement.
    Agreement {
        max_z: if k > 0 { max_z } else { f64::NAN },
        rms_z: if k > 0 {
            (sum_z2 / k as f64).sqrt()
        } else {
            f64::NAN
        },
        max_abs,
        samples,
    }
}

/// Agreement scores that cannot read as perfect: when any mean, SE or
/// theory value is NaN or ∞, every score is NaN (null in JSON) and the
/// point is flagged in `non_finite`.
pub fn checked_agreement(emp: &[(f64, Option<f64>)], theory: &[f64], samples: usize) -> Agreement {
    let finite = emp
        .iter()
        .all(|(m, se)| m.is_finite() && se.is_none_or(f64::is_finite))
        && theory.iter().all(|t| t.is_finite());
    if finite {
        agreement(emp, theory, samples)
    } else {
        Agreement {
            max_z: f64::NAN,
            rms_z: f64::NAN,
            max_abs: f64::NAN,
            samples,
        }
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

    #[test]
    fn leave_one_out_moments_equal_the_direct_sums() {
        // 7 networks × 5 layers of values near 0.9 (the regime where
        // cancellation would show): every leave-one-out mean and SE from
        // the O(L) update equals the two-pass sums over the other 6 rows
        // to 1e-12 relative.
        let rows: Vec<Vec<f64>> = (0..7)
            .map(|i| {
                (0..5)
                    .map(|l| 0.9 + 1e-3 * ((i * 7 + l * 3) % 11) as f64 - 1e-4 * l as f64)
                    .collect()
            })
            .collect();
        let m = CurveMoments::new(&rows);
        for (skip, row) in rows.iter().enumerate() {
            let got = m.without(row);
            let rest: Vec<&Vec<f64>> = rows
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, r)| r)
                .collect();
            for l in 0..5 {
                let mean = rest.iter().map(|r| r[l]).sum::<f64>() / 6.0;
                let var = rest.iter().map(|r| (r[l] - mean).powi(2)).sum::<f64>() / 5.0;
                let se = (var / 6.0).sqrt();
                assert!((got[l].mean - mean).abs() <= 1e-12 * mean.abs());
                let gse = got[l].se.unwrap();
                assert!((gse - se).abs() <= 1e-9 * se, "layer {l}: {gse} vs {se}");
            }
        }
    }

    #[test]
    fn student_t_quantiles_match_the_tables() {
        // t_{0.975, ν} from standard tables (Abramowitz & Stegun 26.10).
        for (df, t) in [
            (1.0, 12.706204736),
            (3.0, 3.182446305),
            (7.0, 2.364624252),
            (15.0, 2.131449546),
        ] {
            let q = student_t_quantile(0.975, df);
            assert!((q - t).abs() < 1e-6 * t, "t_0.975,{df} = {q}, table {t}");
        }
    }

    #[test]
    fn t_to_z_keeps_the_tail_probability() {
        // t = t_{0.975, 3} has two-sided tail 0.05, like z = 1.959964.
        assert!((t_to_z(3.182446305, 3.0) - 1.959963985).abs() < 1e-6);
        assert!((t_to_z(-3.182446305, 3.0) + 1.959963985).abs() < 1e-6);
        // Many degrees of freedom: t ≈ z.
        assert!((t_to_z(1.0, 1e6) - 1.0).abs() < 1e-5);
        // An extreme t stays finite: t_3's tail falls as t⁻³, so P(|T| > 10⁶)
        // ≈ 4e-18 and z ≈ 8.7.
        let z = t_to_z(1e6, 3.0);
        assert!(z.is_finite() && (8.0..9.5).contains(&z), "{z}");
    }

    #[test]
    fn jackknife_interval_of_identical_networks_is_a_point() {
        // Every network the same exact exponential (no noise between
        // networks): the mean curve is that curve, the jackknife replicates
        // agree, and the interval collapses onto ξ = 7.
        let net: Vec<f64> = (0..60).map(|l| 0.9 * (-(l as f64) / 7.0).exp()).collect();
        // A tiny per-network wiggle so that SEs are positive.
        let nets: Vec<Vec<f64>> = (0..5)
            .map(|k| {
                net.iter()
                    .map(|v| v * (1.0 + 1e-6 * (k as f64 - 2.0)))
                    .collect()
            })
            .collect();
        let f = fit_depth_scale_networks(&nets, 0.0).unwrap();
        assert!((f.xi - 7.0).abs() < 1e-6, "ξ = {}", f.xi);
        assert!(f.ci_high - f.ci_low < 1e-3, "[{}, {}]", f.ci_low, f.ci_high);
        assert_eq!(
            f.interval,
            IntervalMethod::JackknifeNetworks { networks: 5 }
        );
    }

    #[test]
    fn two_networks_fall_back_to_the_marked_layer_interval() {
        let nets: Vec<Vec<f64>> = (0..2)
            .map(|k| {
                (0..40)
                    .map(|l| 0.9 * (-(l as f64) / 5.0).exp() * (1.0 + 0.01 * k as f64))
                    .collect()
            })
            .collect();
        let f = fit_depth_scale_networks(&nets, 0.0).unwrap();
        assert_eq!(f.interval, IntervalMethod::LayersIndependent);
        assert!((f.xi - 5.0).abs() < 1e-6, "ξ = {}", f.xi);
    }
}
