//! What a careful reader of an upload would point out before anyone trains on it: columns
//! that are empty, mostly missing, constant or duplicates of another; a column that alone
//! predicts the target almost perfectly (a likely leak); rare classes, heavy imbalance, and a
//! classification target with more classes than its rows can teach. Kept in the dataset's
//! record (`warnings`) and shown on its page; nothing is refused for them.

use std::collections::HashMap;

use rayon::prelude::*;
use serde::Serialize;

use super::Columns;
use crate::nn::portable::tabular::{ColumnType, Storage};
use crate::nn::run::spec::{Task, task_of};
use crate::nn::{ClassLabel, Targets};

/// Rows the leak test reads (the first ones).
const LEAK_SAMPLE: usize = 100_000;

/// Cross-validation folds the automatic mode uses on small data: a class with fewer rows
/// cannot appear in every fold.
const FOLDS: u64 = 5;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Warning {
    /// A stable name: `empty_column`, `mostly_missing`, `constant_column`,
    /// `duplicate_column`, `likely_leak`, `rare_classes`, `class_imbalance`, `too_many_classes`.
    pub code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    pub message: String,
}

fn warn(code: &'static str, column: Option<&str>, message: String) -> Warning {
    Warning {
        code,
        column: column.map(str::to_owned),
        message,
    }
}

/// Every warning about an upload, columns in their order, then the target's.
pub fn of(d: &Columns) -> Vec<Warning> {
    let rows = d.rows() as u64;
    let cols: Vec<_> = d.raw_columns().collect();
    let classes = class_index(d);
    // Per column: one pass over its values (hash for duplicates, leak test).
    let per: Vec<(u64, Option<f64>, Option<f64>)> = (0..cols.len())
        .into_par_iter()
        .map(|j| column_pass(d, j, classes.as_ref()))
        .collect();
    let mut out = vec![];
    let mut first_of: HashMap<u64, usize> = HashMap::new();
    for (j, c) in cols.iter().enumerate() {
        let s = &c.schema;
        let name = s.name.as_str();
        let present = rows.saturating_sub(s.missing);
        if present == 0 {
            out.push(warn(
                "empty_column",
                Some(name),
                format!("column {name:?} is empty in every row; it is ignored"),
            ));
            continue;
        }
        if s.missing * 2 > rows {
            out.push(warn(
                "mostly_missing",
                Some(name),
                format!(
                    "column {name:?} is missing in {:.0}% of the rows",
                    100.0 * s.missing as f64 / rows as f64
                ),
            ));
        }
        if s.distinct == 1 && rows > 1 {
            out.push(warn(
                "constant_column",
                Some(name),
                format!("column {name:?} has one value in every row that has one; it carries no information"),
            ));
        }
        let (hash, purity, corr) = per[j];
        if let Some(&k) = first_of.get(&hash) {
            out.push(warn(
                "duplicate_column",
                Some(name),
                format!(
                    "column {name:?} holds the same values as column {:?}",
                    cols[k].schema.name
                ),
            ));
        } else {
            first_of.insert(hash, j);
        }
        if s.kind != ColumnType::Ignore
            && let Some(p) = purity
        {
            out.push(warn(
                "likely_leak",
                Some(name),
                format!(
                    "column {name:?} alone tells the target's class in {:.1}% of the rows: it may be written after the outcome (a leak); check it, or type it \"ignore\"",
                    100.0 * p
                ),
            ));
        } else if s.kind != ColumnType::Ignore
            && let Some(r) = corr
        {
            out.push(warn(
                "likely_leak",
                Some(name),
                format!(
                    "column {name:?} alone follows the target almost exactly (correlation {r:.4}): it may be computed from the outcome (a leak); check it, or type it \"ignore\""
                ),
            ));
        }
    }
    if let Some((index, names)) = &classes {
        let mut counts = vec![0u64; names.len()];
        for &k in index {
            counts[k as usize] += 1;
        }
        let k = counts.len() as u64;
        let target = d.target_names.join(", ");
        if k > 2 && k * 5 > rows {
            out.push(warn(
                "too_many_classes",
                None,
                format!(
                    "the target {target:?} has {k} classes for {rows} rows (fewer than 5 rows each): it may be a number to predict (say task \"regression\"), or an identifier"
                ),
            ));
        } else {
            let rare: Vec<String> = names
                .iter()
                .zip(&counts)
                .filter(|&(_, &c)| c < FOLDS)
                .map(|(n, c)| format!("{n:?} ({c})"))
                .collect();
            if !rare.is_empty() {
                out.push(warn(
                    "rare_classes",
                    None,
                    format!(
                        "{} of the target {target:?} {} fewer rows than the {FOLDS} cross-validation folds: {}",
                        if rare.len() == 1 { "a class" } else { "classes" },
                        if rare.len() == 1 { "has" } else { "have" },
                        rare.iter().take(10).cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
            let (lo, hi) = (
                counts.iter().copied().min().unwrap_or(0),
                counts.iter().copied().max().unwrap_or(0),
            );
            if k >= 2 && lo > 0 && (lo as f64) < 0.05 * rows as f64 && hi >= 10 * lo {
                out.push(warn(
                    "class_imbalance",
                    None,
                    format!(
                        "the target {target:?} is imbalanced: its rarest class has {lo} rows ({:.1}%), its most common {hi}; accuracy says little here (read the log loss or balanced accuracy, or set class_weight \"balanced\")",
                        100.0 * lo as f64 / rows as f64
                    ),
                ));
            }
        }
    }
    out
}

/// The class of every kept row and the classes' names, when the target is classes (labels,
/// or whole numbers the task rule takes for classes).
fn class_index(d: &Columns) -> Option<(Vec<u32>, Vec<String>)> {
    let summary_target = d.summary().target;
    let task = d.task.unwrap_or_else(|| task_of(&summary_target, d.rows()));
    if task != Task::Classification {
        return None;
    }
    let mut ids: HashMap<String, u32> = HashMap::new();
    let mut names = vec![];
    let mut index = Vec::with_capacity(d.rows());
    let mut push = |key: String| {
        let n = ids.len() as u32;
        let id = *ids.entry(key.clone()).or_insert_with(|| {
            names.push(key);
            n
        });
        index.push(id);
    };
    match &d.targets {
        Targets::Labels(l) => {
            let mut last: Option<(&ClassLabel, String)> = None;
            for label in l {
                let key = match &last {
                    Some((prev, k)) if *prev == label => k.clone(),
                    _ => label.to_string(),
                };
                last = Some((label, key.clone()));
                push(key);
            }
        }
        Targets::Values(v) if v.ncols() == 1 => {
            for &t in v.iter() {
                push((t as i64).to_string());
            }
        }
        Targets::Values(_) => return None,
    }
    Some((index, names))
}

/// One column's hash of its values (equal columns hash equal), and whether it alone predicts
/// the target: the share of rows its value's majority class gets (classes; only when it is
/// at least 99% and the most common class alone gets less than 95%), or the correlation with
/// a numeric target (at least 0.995 in size).
fn column_pass(
    d: &Columns,
    j: usize,
    classes: Option<&(Vec<u32>, Vec<String>)>,
) -> (u64, Option<f64>, Option<f64>) {
    let col = d.raw_columns().nth(j).expect("column j");
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut values: Vec<f32> = Vec::with_capacity(d.rows());
    d.for_each_kept(j, |v| values.push(v));
    for &v in &values {
        let x = match (v.is_nan(), col.schema.storage) {
            (true, _) => 0x7ff8_0000,
            (false, Storage::Number) => v.to_bits() as u64,
            (false, Storage::Text) => text_hash(&col.vocab[v as usize]),
        };
        h = (h ^ x).wrapping_mul(0x0100_0000_01b3).rotate_left(7);
    }
    let present = values.iter().filter(|v| !v.is_nan()).count();
    if present * 10 < values.len() * 9 || present < 20 {
        return (h, None, None);
    }
    let purity = classes.and_then(|(index, names)| {
        // Majority class per value; a continuous column is cut in order instead: the share of
        // neighbours (by value) that share a class.
        let mut majority = vec![0u64; names.len()];
        for &k in index {
            majority[k as usize] += 1;
        }
        let base = *majority.iter().max()? as f64 / index.len() as f64;
        if base >= 0.95 {
            return None;
        }
        // Values with ten rows each or more; the first rows only (a leak shows in any).
        let few = col.schema.distinct as usize * 10 <= present;
        let sample = values.len().min(LEAK_SAMPLE);
        let present = values[..sample].iter().filter(|v| !v.is_nan()).count();
        let share = if few {
            let mut by_value: HashMap<u32, HashMap<u32, u64>> = HashMap::new();
            for (&v, &k) in values[..sample].iter().zip(index) {
                if !v.is_nan() {
                    *by_value
                        .entry(v.to_bits())
                        .or_default()
                        .entry(k)
                        .or_default() += 1;
                }
            }
            let right: u64 = by_value
                .values()
                .map(|m| m.values().copied().max().unwrap_or(0))
                .sum();
            right as f64 / present as f64
        } else if col.schema.storage == Storage::Number {
            let mut pairs: Vec<(f32, u32)> = values[..sample]
                .iter()
                .zip(index)
                .filter(|(v, _)| !v.is_nan())
                .map(|(&v, &k)| (v, k))
                .collect();
            pairs.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
            let changes = pairs.windows(2).filter(|w| w[0].1 != w[1].1).count();
            1.0 - changes.saturating_sub(names.len() - 1) as f64 / present as f64
        } else {
            return None;
        };
        (share >= 0.99).then_some(share)
    });
    let corr = match (&d.targets, classes, col.schema.storage) {
        (Targets::Values(t), None, Storage::Number) if t.ncols() == 1 => {
            let (mut n, mut sx, mut sy, mut sxx, mut syy, mut sxy) =
                (0f64, 0f64, 0f64, 0f64, 0f64, 0f64);
            for (&v, &y) in values.iter().zip(t.iter()) {
                if !v.is_nan() {
                    let (x, y) = (v as f64, y as f64);
                    n += 1.0;
                    sx += x;
                    sy += y;
                    sxx += x * x;
                    syy += y * y;
                    sxy += x * y;
                }
            }
            let cov = sxy / n - sx / n * sy / n;
            let (vx, vy) = (sxx / n - (sx / n).powi(2), syy / n - (sy / n).powi(2));
            let r = cov / (vx * vy).sqrt();
            (r.is_finite() && r.abs() >= 0.995).then_some(r)
        }
        _ => None,
    };
    (h, purity, corr)
}

fn text_hash(s: &str) -> u64 {
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in s.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    h | 1 << 63
}
