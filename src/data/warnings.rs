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

/// Rows the leak tests read (the first ones): a column that tells the class in 99% of the
/// rows does so in any five hundred of them, and an upload of 784 columns pays for no more
/// than this per column (with 2,000 rows, a 784-column upload took 15% longer).
const LEAK_SAMPLE: usize = 500;

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
        if let Some(&k) = first_of.get(&hash)
            && same_column(d, k, j)
        {
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
    // Keyed by the label itself (no text made per row).
    let mut names = vec![];
    let mut index = Vec::with_capacity(d.rows());
    match &d.targets {
        Targets::Labels(l) => {
            let mut ids: HashMap<&ClassLabel, u32> = HashMap::new();
            for label in l {
                let n = ids.len() as u32;
                index.push(*ids.entry(label).or_insert_with(|| {
                    names.push(label.to_string());
                    n
                }));
            }
        }
        Targets::Values(v) if v.ncols() == 1 => {
            let mut ids: HashMap<i64, u32> = HashMap::new();
            for &t in v.iter() {
                let n = ids.len() as u32;
                index.push(*ids.entry(t as i64).or_insert_with(|| {
                    names.push((t as i64).to_string());
                    n
                }));
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
    // The first rows: for the leak tests (a leak shows in any), and for a signature that equal
    // columns share (with their counts and, for text, their vocabulary); columns that share one
    // are compared in full.
    let values = d.first_kept(j, LEAK_SAMPLE);
    let mut h: u64 = match col.schema.storage {
        Storage::Number => 0xcbf2_9ce4_8422_2325,
        Storage::Text => col.vocab.iter().fold(0x9e37_79b9_7f4a_7c15, |h, t| {
            (h ^ text_hash(t)).wrapping_mul(0x0100_0000_01b3)
        }),
    };
    for x in [col.schema.missing, col.schema.distinct]
        .into_iter()
        .chain(values.iter().map(|v| {
            if v.is_nan() {
                0x7ff8_0000
            } else {
                v.to_bits() as u64
            }
        }))
    {
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
        // Values with ten rows each or more.
        let few = col.schema.distinct <= super::DISTINCT_CAP
            && col.schema.distinct as usize * 10 <= present;
        let share = if few {
            let mut by_value: HashMap<u32, HashMap<u32, u64>> = HashMap::new();
            for (&v, &k) in values.iter().zip(index) {
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
            let mut pairs: Vec<(f32, u32)> = values
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

/// Whether columns `a` and `b` hold the same values in every row.
fn same_column(d: &Columns, a: usize, b: usize) -> bool {
    let cols: Vec<_> = d.raw_columns().collect();
    let (ca, cb) = (cols[a], cols[b]);
    if ca.schema.storage != cb.schema.storage || ca.vocab != cb.vocab {
        return false;
    }
    let mut va = Vec::with_capacity(d.rows());
    d.for_each_kept(a, |v| va.push(v.to_bits()));
    let mut i = 0;
    let mut same = true;
    d.for_each_kept(b, |v| {
        same &= va.get(i) == Some(&v.to_bits())
            || (v.is_nan() && va.get(i).is_some_and(|&x| f32::from_bits(x).is_nan()));
        i += 1;
    });
    same && i == va.len()
}

fn text_hash(s: &str) -> u64 {
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in s.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    h | 1 << 63
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{CsvStream, Limits, ReadOptions};

    fn columns(csv: &str, target: &str) -> Columns {
        let mut s = CsvStream::new(Some(target), Limits::default(), ReadOptions::default());
        s.push(csv.as_bytes()).unwrap();
        s.finish_columns().unwrap()
    }

    fn codes(w: &[Warning]) -> Vec<(&str, Option<&str>)> {
        w.iter().map(|w| (w.code, w.column.as_deref())).collect()
    }

    #[test]
    fn columns_worth_a_look_are_named() {
        let mut csv = String::from("a,dup,same,gaps,leak,empty,y\n");
        for i in 0..200 {
            let y = ["p", "q", "r"][i % 3];
            let gaps = if i % 4 == 0 {
                format!("{i}")
            } else {
                String::new()
            };
            csv.push_str(&format!(
                "{},{},7,{gaps},{},,{y}\n",
                (i * 37) % 101,
                (i * 37) % 101,
                ["lo", "mid", "hi"][i % 3]
            ));
        }
        let w = of(&columns(&csv, "y"));
        let got = codes(&w);
        for want in [
            ("duplicate_column", Some("dup")),
            ("constant_column", Some("same")),
            ("mostly_missing", Some("gaps")),
            ("likely_leak", Some("leak")),
            ("empty_column", Some("empty")),
        ] {
            assert!(got.contains(&want), "{want:?} not in {got:?}");
        }
        // The plain column draws no warning.
        assert!(!got.iter().any(|(_, c)| *c == Some("a")), "{got:?}");
    }

    #[test]
    fn targets_worth_a_look_are_named() {
        // 2 rows of a rare class among 300: imbalance and a class rarer than the folds.
        let mut csv = String::from("x,y\n");
        for i in 0..300 {
            let y = if i < 2 { "rare" } else { "common" };
            csv.push_str(&format!("{},{y}\n", (i * 13) % 97));
        }
        let got = of(&columns(&csv, "y"));
        assert!(codes(&got).contains(&("rare_classes", None)), "{got:?}");
        assert!(codes(&got).contains(&("class_imbalance", None)), "{got:?}");
        // As many classes as a fifth of the rows: likely no classification.
        let mut csv = String::from("x,y\n");
        for i in 0..100 {
            csv.push_str(&format!("{i},label{}\n", i / 2));
        }
        let got = of(&columns(&csv, "y"));
        assert!(codes(&got).contains(&("too_many_classes", None)), "{got:?}");
        // A regression target followed exactly by a column.
        let mut csv = String::from("x,z,y\n");
        for i in 0..100 {
            csv.push_str(&format!("{},{},{}.5\n", i * 2, (i * 7) % 13, i));
        }
        let got = of(&columns(&csv, "y"));
        assert_eq!(codes(&got), [("likely_leak", Some("x"))], "{got:?}");
    }
}
