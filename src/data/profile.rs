//! A dataset's profile: what a user looks at before training. Per column its type, missing and
//! distinct counts, the most common categories, and min / max / mean / std for numbers; the
//! target's class balance (or its numbers' summary). Computed once at upload and kept with
//! the dataset's metadata.

use std::collections::{BTreeMap, HashMap};

use rayon::prelude::*;
use serde::Serialize;

use super::Columns;
use super::table::{DISTINCT_CAP, NumberStats};
use crate::nn::portable::tabular::{ColumnType, Storage};
use crate::nn::portable::values::{self, ValueFormat};
use crate::nn::portable::vocab::Vocab;
use crate::nn::{ClassLabel, Targets};

/// Categories listed per column.
const TOP: usize = 10;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Profile {
    pub rows: usize,
    /// Rows left out at upload because their target was missing.
    pub dropped_rows: u64,
    pub columns: Vec<ColumnProfile>,
    pub target: TargetProfile,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ColumnProfile {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ColumnType,
    /// `number` or `text`: how the cells read.
    pub storage: Storage,
    pub missing: u64,
    /// Distinct present values; for numbers counted up to 1000 (then `distinct_more`).
    pub distinct: u64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub distinct_more: bool,
    /// The most common values of a text column, most common first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub top: Vec<Count>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<Stats>,
    /// How the column's text was read, when not as plain numbers (currency, dates…).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<ValueFormat>,
    /// A date column's first and last dates (ISO 8601).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dates: Option<[String; 2]>,
    /// Why the column has its type.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Count {
    pub value: String,
    pub count: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stats {
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    /// Population standard deviation.
    pub std: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TargetProfile {
    pub names: Vec<String>,
    /// Rows per class, most common first, when the target is labels or a few whole numbers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<Count>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<Stats>,
}

/// The missing (NaN) values counted, and min / max / mean / std of the others, of the values
/// `each` hands over.
fn stats(each: impl FnOnce(&mut dyn FnMut(f32))) -> (u64, Option<Stats>) {
    let (mut n, mut missing, mut sum, mut sq) = (0u64, 0u64, 0f64, 0f64);
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    each(&mut |v| {
        if v.is_nan() {
            missing += 1;
            return;
        }
        let v = v as f64;
        n += 1;
        sum += v;
        sq += v * v;
        lo = if v < lo { v } else { lo };
        hi = if v > hi { v } else { hi };
    });
    let stats = (n > 0).then(|| {
        let mean = sum / n as f64;
        Stats::shortest(lo, hi, mean, (sq / n as f64 - mean * mean).max(0.0).sqrt())
    });
    (missing, stats)
}

/// `v`, read as the f32 the data is stored in, in the shortest decimal that reads back as
/// that f32: 59.6, not 59.599998474121094.
fn shortest(v: f64) -> f64 {
    let f = v as f32;
    if f.is_finite() {
        f.to_string().parse().unwrap_or(v)
    } else {
        v
    }
}

impl Stats {
    fn shortest(min: f64, max: f64, mean: f64, std: f64) -> Stats {
        Stats {
            min: shortest(min),
            max: shortest(max),
            mean: shortest(mean),
            std: shortest(std),
        }
    }
}

/// min / max / mean / std from a column's stats taken as it was read (the same sums as
/// [`stats`] makes).
fn summary_of(st: &NumberStats) -> Option<Stats> {
    let n = st.rows - st.missing;
    (n > 0).then(|| {
        let mean = st.sum / n as f64;
        Stats::shortest(
            st.lo as f64,
            st.hi as f64,
            mean,
            (st.sq / n as f64 - mean * mean).max(0.0).sqrt(),
        )
    })
}

fn ranked(counts: impl Iterator<Item = (String, u64)>) -> Vec<Count> {
    let mut v: Vec<Count> = counts
        .filter(|(_, c)| *c > 0)
        .map(|(value, count)| Count { value, count })
        .collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
    v
}

/// The [`TOP`] most frequent texts of a vocabulary by their counts, as [`ranked`] orders
/// them: only those few become strings, whatever the column's size.
fn top_texts(vocab: &Vocab, counts: &[u64]) -> Vec<Count> {
    let mut codes: Vec<u32> = (0..counts.len() as u32)
        .filter(|&c| counts[c as usize] > 0)
        .collect();
    let order = |a: &u32, b: &u32| {
        (counts[*b as usize].cmp(&counts[*a as usize]))
            .then_with(|| vocab[*a as usize].cmp(&vocab[*b as usize]))
    };
    if codes.len() > TOP {
        codes.select_nth_unstable_by(TOP - 1, order);
        codes.truncate(TOP);
    }
    codes.sort_unstable_by(order);
    codes
        .into_iter()
        .map(|c| Count {
            value: vocab[c as usize].to_owned(),
            count: counts[c as usize],
        })
        .collect()
}

impl Profile {
    /// The profile of an upload, column by column (in parallel).
    pub fn of(d: &Columns) -> Profile {
        let columns = d
            .raw_columns()
            .collect::<Vec<_>>()
            .into_par_iter()
            .enumerate()
            .map(|(j, c)| match c.schema.storage {
                Storage::Number => {
                    let (missing, stats) = match d.stats(j) {
                        // Taken as the column was read, over every row: all are kept.
                        Some(st) => (st.missing, summary_of(st)),
                        None => stats(|f| d.for_each_kept(j, f)),
                    };
                    ColumnProfile {
                        name: c.name().to_owned(),
                        kind: c.schema.kind,
                        storage: Storage::Number,
                        missing,
                        distinct: c.schema.distinct.min(DISTINCT_CAP),
                        distinct_more: c.schema.distinct > DISTINCT_CAP,
                        top: vec![],
                        dates: match (&c.schema.format, &stats) {
                            (Some(ValueFormat::Date(f)), Some(st)) => Some([
                                values::format_days(st.min, f),
                                values::format_days(st.max, f),
                            ]),
                            _ => None,
                        },
                        stats,
                        format: c.schema.format.clone(),
                        reason: c.schema.reason.clone(),
                    }
                }
                Storage::Text => {
                    let mut counts = vec![0u64; c.vocab.len()];
                    let mut missing = 0;
                    d.for_each_kept(j, |v| {
                        if v.is_nan() {
                            missing += 1;
                        } else if let Some(k) = counts.get_mut(v as usize) {
                            *k += 1;
                        }
                    });
                    let distinct = counts.iter().filter(|&&k| k > 0).count() as u64;
                    let top = top_texts(&c.vocab, &counts);
                    ColumnProfile {
                        name: c.name().to_owned(),
                        kind: c.schema.kind,
                        storage: Storage::Text,
                        missing,
                        distinct,
                        distinct_more: false,
                        top,
                        stats: None,
                        format: None,
                        dates: None,
                        reason: c.schema.reason.clone(),
                    }
                }
            })
            .collect();
        let target = match &d.targets {
            Targets::Labels(l) => {
                // Counted per label, then per label as shown (a label made a string per
                // class, not per row).
                let mut by_label: HashMap<&ClassLabel, u64> = HashMap::new();
                for label in l {
                    *by_label.entry(label).or_default() += 1;
                }
                let mut counts: BTreeMap<String, u64> = BTreeMap::new();
                for (label, n) in by_label {
                    *counts.entry(label.to_string()).or_default() += n;
                }
                TargetProfile {
                    names: d.target_names.clone(),
                    classes: Some(ranked(counts.into_iter())),
                    stats: None,
                }
            }
            Targets::Values(v) => {
                let classes = (v.ncols() == 1)
                    .then(|| super::integer_classes(v.iter().copied()))
                    .flatten()
                    .map(|counts| ranked(counts.into_iter().map(|(k, c)| (k.to_string(), c))));
                TargetProfile {
                    names: d.target_names.clone(),
                    stats: if classes.is_none() && v.ncols() == 1 {
                        stats(|f| v.iter().for_each(|&t| f(t))).1
                    } else {
                        None
                    },
                    classes,
                }
            }
        };
        Profile {
            rows: d.rows(),
            dropped_rows: d.dropped_rows,
            columns,
            target,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Limits, from_csv};

    /// Issue 23, item 14: a profile printed f32 noise (59.599998474121094 for 59.6).
    #[test]
    fn profile_numbers_are_the_shortest_that_read_back() {
        let s = Stats::shortest(59.6f32 as f64, 1e-3f32 as f64, 0.1f32 as f64, 2.0);
        assert_eq!((s.min, s.max, s.mean, s.std), (59.6, 0.001, 0.1, 2.0));
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"min":59.6,"max":0.001,"mean":0.1,"std":2.0}"#
        );
    }

    /// The stats taken chunk by chunk as a file is read give the profile the one pass over
    /// the whole columns gives: the same counts, bounds and distinct counts (below and past
    /// the cap), the mean and spread to rounding; with no row dropped, and with some.
    #[test]
    fn stats_taken_while_reading_profile_as_the_whole_columns_do() {
        use crate::data::{CsvStream, ReadOptions};
        for drop_some in [false, true] {
            let mut csv = String::from("few,many,whole,y\n");
            for i in 0..200_000u64 {
                let few = if i % 9 == 0 {
                    "NA".to_owned()
                } else {
                    format!("{}.5", i % 40)
                };
                let many = format!("{}.{}", (i * 7919) % 100_003, i % 10);
                let y = if drop_some && i % 23 == 0 {
                    "".to_owned()
                } else {
                    (i % 3).to_string()
                };
                csv.push_str(&format!("{few},-{many},{},{y}\n", i % 5000));
            }
            let mut s = CsvStream::new(Some("y"), Limits::default(), ReadOptions::default());
            for piece in csv.as_bytes().chunks(300 << 10) {
                s.push(piece).unwrap();
            }
            let read = s.finish_columns().unwrap();
            let n = read.features[0].segments.len();
            assert!(n > 2, "read in {n} pieces of {} bytes", csv.len());
            assert_eq!(read.stats(0).is_some(), !drop_some);
            let taken = Profile::of(&read);
            let whole = Profile::of(&Columns::from(read.assemble().unwrap()));
            assert_eq!(taken.columns.len(), whole.columns.len());
            for (t, w) in taken.columns.iter().zip(&whole.columns) {
                let (ts, ws) = (t.stats.clone().unwrap(), w.stats.clone().unwrap());
                assert_eq!((ts.min, ts.max), (ws.min, ws.max), "{}", t.name);
                assert!((ts.mean - ws.mean).abs() <= 1e-9 * ws.mean.abs().max(1.0));
                assert!((ts.std - ws.std).abs() <= 1e-6 * ws.std.max(1.0));
                let (mut t, mut w) = (t.clone(), w.clone());
                (t.stats, w.stats) = (None, None);
                assert_eq!(t, w);
            }
            let few = &taken.columns[0];
            assert_eq!((few.distinct, few.distinct_more), (40, false));
            assert!(taken.columns[1].distinct_more);
        }
    }

    #[test]
    fn profile_of_a_small_table() {
        let csv = "island,mass,sex,species\nBiscoe,3000,male,a\nDream,NA,female,b\nBiscoe,5000,NA,a\nBiscoe,4000,male,a\n,,,\n";
        let d = from_csv(csv.as_bytes(), None, &Limits::default()).expect("reads");
        assert_eq!(d.dropped_rows, 1);
        let p = Profile::of(&Columns::from(d));
        assert_eq!(p.rows, 4);
        let island = &p.columns[0];
        assert_eq!(
            (island.kind, island.missing, island.distinct),
            (ColumnType::Categorical, 0, 2)
        );
        assert_eq!(
            island.top,
            [
                Count {
                    value: "Biscoe".into(),
                    count: 3
                },
                Count {
                    value: "Dream".into(),
                    count: 1
                }
            ]
        );
        let mass = &p.columns[1];
        assert_eq!((mass.kind, mass.missing), (ColumnType::Numeric, 1));
        let s = mass.stats.clone().expect("numbers have stats");
        assert_eq!((s.min, s.max, s.mean), (3000.0, 5000.0, 4000.0));
        // To the f32 the data is kept in (issue 23: no float32 noise in the digits shown).
        assert!((s.std - (2e6f64 / 3.0).sqrt()).abs() < 1e-3);
        assert_eq!(p.columns[2].missing, 1);
        assert_eq!(
            p.target.classes,
            Some(vec![
                Count {
                    value: "a".into(),
                    count: 3
                },
                Count {
                    value: "b".into(),
                    count: 1
                }
            ])
        );
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["columns"][0]["type"], "categorical");
        assert_eq!(json["columns"][1]["storage"], "number");
    }
}
