//! The aggregate files of a simulation folder, rebuilt from its point
//! records: `curves.csv`, `curves.json`, `backward.csv`, `summary.json`, and
//! the ξ scaling fits across points.

use crate::error::Result;
use crate::experiment::folder::{self, write_atomic, write_json};
use crate::experiment::records::{PointRecord, PointSummary, XiScaling};
use crate::theory::scaling::linear_fit;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// An optional number as a CSV field (empty when absent).
pub(crate) fn opt(x: Option<f64>) -> String {
    x.map_or(String::new(), |v| format!("{v}"))
}

/// curves.csv: one row per point, curve and layer.
pub(crate) fn curves_csv(points: &[PointSummary]) -> String {
    let mut s = String::from(
        "point,states,sigma_w,sigma_b,width,depth,input,c0,angle,layer,q_mean,q_se,q_theory,c_mean,c_se,c_theory,cov_mean,cov_se,cov_theory\n",
    );
    for p in points {
        for c in &p.curves {
            for l in &c.layers {
                let _ = writeln!(
                    s,
                    "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                    p.index,
                    p.network.states.map_or(String::new(), |n| n.to_string()),
                    p.network.sigma_w,
                    p.network.sigma_b,
                    p.width,
                    p.depth,
                    c.input,
                    c.c0,
                    opt(c.angle),
                    l.layer,
                    l.q_mean,
                    opt(l.q_se),
                    l.q_theory,
                    l.c_mean,
                    opt(l.c_se),
                    l.c_theory,
                    opt(l.cov_mean),
                    opt(l.cov_se),
                    opt(l.cov_theory)
                );
            }
        }
    }
    s
}

/// The header of backward.csv.
const BACKWARD_CSV_HEADER: &str = "point,m_target,ste_slope,ste_threshold,c0,layer,norm_cumulative_mean,norm_cumulative_se,norm_cumulative_theory,\
     norm_ratio_mean,norm_ratio_se,norm_ratio_theory,grad_corr_mean,grad_corr_se,grad_corr_theory\n";

/// The backward.csv rows of one point (its backward curves are not kept in
/// the point's record, so the rows are rendered once, when it finishes).
pub(crate) fn backward_rows(p: &PointSummary) -> String {
    let mut s = String::new();
    for b in &p.backward {
        for (cv, th) in &b.curves {
            for (e, t) in cv.layers.iter().zip(th) {
                let next = th
                    .get(e.layer + 1)
                    .map(|n| t.grad_norm_ratio / n.grad_norm_ratio);
                let _ = writeln!(
                    s,
                    "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                    p.index,
                    b.m_target,
                    b.ste.slope,
                    b.ste.threshold,
                    cv.c0,
                    e.layer,
                    e.norm_cumulative.mean,
                    opt(e.norm_cumulative.se),
                    t.grad_norm_ratio,
                    opt(e.norm_ratio.map(|x| x.mean)),
                    opt(e.norm_ratio.and_then(|x| x.se)),
                    opt(next),
                    e.grad_corr.mean,
                    opt(e.grad_corr.se),
                    t.grad_corr
                );
            }
        }
    }
    s
}

/// ξ_emp and ξ_theory against ln(N + 1) for each group of points that
/// differ only in N (at least 3 values of N with a ξ_emp).
pub(crate) fn xi_scaling(points: &[PointSummary]) -> Vec<XiScaling> {
    let mut groups: BTreeMap<String, Vec<&PointSummary>> = BTreeMap::new();
    for p in points
        .iter()
        .filter(|p| p.network.states.is_some() && p.xi_emp.is_some())
    {
        let key = format!(
            "σw={} σb={} n={}",
            p.sigma_w_spec, p.network.sigma_b, p.width
        );
        groups.entry(key).or_default().push(p);
    }
    groups
        .into_iter()
        .filter_map(|(group, mut ps)| {
            ps.sort_by_key(|p| p.network.states);
            ps.dedup_by_key(|p| p.network.states);
            if ps.len() < 3 {
                return None;
            }
            let states: Vec<usize> = ps.iter().filter_map(|p| p.network.states).collect();
            let x: Vec<f64> = states.iter().map(|n| ((n + 1) as f64).ln()).collect();
            let xi_emp: Vec<f64> = ps.iter().filter_map(|p| p.xi_emp.map(|f| f.xi)).collect();
            let xi_theory: Vec<f64> = ps.iter().map(|p| p.xi_theory).collect();
            let fit_emp =
                linear_fit(&x, &xi_emp.iter().map(|v| v.ln()).collect::<Vec<_>>()).ok()?;
            let fit_theory =
                linear_fit(&x, &xi_theory.iter().map(|v| v.ln()).collect::<Vec<_>>()).ok()?;
            Some(XiScaling {
                group,
                states,
                xi_emp,
                xi_theory,
                fit_emp,
                fit_theory,
            })
        })
        .collect()
}

/// Writes the aggregates of exactly the points in `records` (index order)
/// into `folder`; returns the points and their ξ scaling.
pub(crate) fn write_aggregates(
    folder: &Path,
    records: &BTreeMap<usize, PointRecord>,
) -> Result<(Vec<PointSummary>, Vec<XiScaling>)> {
    let points: Vec<PointSummary> = records.values().map(PointRecord::point).collect();
    let sc = xi_scaling(&points);
    write_atomic(&folder.join("curves.csv"), curves_csv(&points).as_bytes())?;
    let curves: Vec<_> = points
        .iter()
        .map(|p| serde_json::json!({"point": p.index, "label": p.label, "curves": p.curves}))
        .collect();
    write_json(&folder.join("curves.json"), &curves)?;
    if points.iter().any(|p| !p.backward.is_empty()) {
        let mut csv = BACKWARD_CSV_HEADER.to_string();
        for r in records.values() {
            csv.push_str(&r.backward_rows);
        }
        write_atomic(&folder.join("backward.csv"), csv.as_bytes())?;
    }
    let summary = serde_json::json!({"points": points, "xi_scaling": sc});
    write_json(&folder.join("summary.json"), &summary)?;
    Ok((points, sc))
}

/// The record of a finished point of the run with config hash `config_hash`.
pub(crate) fn point_record(summary: &PointSummary, config_hash: &str) -> PointRecord {
    PointRecord {
        format: folder::FORMAT,
        config_hash: config_hash.to_string(),
        summary: summary.clone(),
        curves: summary.curves.clone(),
        backward_rows: backward_rows(summary),
    }
}
