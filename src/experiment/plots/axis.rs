//! Plot axes: linear or logarithmic, with ticks at round values (log axes:
//! 1-2-5 or 1..9 per decade, so a narrow range still gets labels) and tick
//! labels without trailing zeros.

/// A linear or logarithmic axis over [lo, hi] (data units).
#[derive(Debug, Clone, Copy)]
pub(super) struct Axis {
    pub(super) lo: f64,
    pub(super) hi: f64,
    pub(super) log: bool,
    pub(super) integer: bool,
}

impl Axis {
    pub(super) fn to(&self, v: f64) -> f64 {
        if self.log {
            v.max(f64::MIN_POSITIVE).ln()
        } else {
            v
        }
    }
    /// Round tick values inside [lo, hi].
    pub(super) fn ticks(&self) -> Vec<f64> {
        if self.log {
            let (a, b) = (
                self.lo.log10().floor() as i32,
                self.hi.log10().ceil() as i32,
            );
            for mantissas in [
                &[1.0][..],
                &[1.0, 2.0, 5.0],
                &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
            ] {
                let mut t: Vec<f64> = (a..=b)
                    .flat_map(|e| mantissas.iter().map(move |m| m * 10f64.powi(e)))
                    .filter(|v| *v >= self.lo * (1.0 - 1e-9) && *v <= self.hi * (1.0 + 1e-9))
                    .collect();
                if t.len() >= 3 || mantissas.len() == 9 {
                    if t.len() > 12 {
                        let k = t.len().div_ceil(10);
                        t = t.into_iter().step_by(k).collect();
                    }
                    return t;
                }
            }
            Vec::new()
        } else {
            let step = self.step();
            let first = (self.lo / step).ceil() as i64;
            let last = (self.hi / step).floor() as i64;
            (first..=last).map(|k| k as f64 * step).collect()
        }
    }
    fn step(&self) -> f64 {
        let raw = ((self.hi - self.lo) / 6.0).max(1e-12);
        let mag = 10f64.powf(raw.log10().floor());
        let mut step = [1.0, 2.0, 5.0, 10.0]
            .iter()
            .map(|m| m * mag)
            .find(|s| *s >= raw)
            .unwrap_or(10.0 * mag);
        if self.integer {
            step = step.max(1.0).round();
        }
        step
    }
    pub(super) fn label(&self, v: f64) -> String {
        if self.log {
            return tick_text(v);
        }
        let decimals = if self.integer {
            0
        } else {
            (-self.step().log10().floor()).max(0.0) as usize
        };
        let s = format!("{v:.decimals$}");
        if s.starts_with('-') && s.trim_start_matches(['-', '0', '.']).is_empty() {
            s[1..].to_string()
        } else {
            s
        }
    }
}

/// A tick value without trailing zeros: 2, 0.05, 1e-6, 1e5.
fn tick_text(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) {
        let e = a.log10().floor() as i32;
        let m = v / 10f64.powi(e);
        return if (m.round() - m).abs() < 1e-9 {
            format!("{}e{e}", m.round())
        } else {
            format!("{m:.1}e{e}")
        };
    }
    let s = format!("{v:.6}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}
