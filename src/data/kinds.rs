//! What a column means: the type a careful data scientist would give it (numeric,
//! categorical, yes/no, a date, an identifier, free text, empty), the format its text is
//! written in when it is not plain numbers (currency, thousands, percentages, accounting
//! negatives, dates: read into numbers here, once, at upload), and the reason in words that
//! the dataset record, the profile and the dashboard show.
//!
//! A text column is first offered to the value formats ([`values::infer_date`], then
//! [`values::infer_number`]) over its distinct texts; a column that reads is rewritten as
//! numbers (days since 1970 for dates) and keeps its format in its schema, which the model's
//! encoder carries so predict reads raw cells the same way.

use std::collections::HashSet;

use rayon::prelude::*;

use super::table::{NumberStats, ReadOptions};
use super::{DataError, quoted};
use crate::nn::portable::tabular::{
    CATEGORY_LIMIT, ColumnSchema, ColumnType, RawColumn, Storage, boolean_value, check_type,
};
use crate::nn::portable::values::{self, DateFormat, ValueFormat};
use crate::nn::portable::vocab::Vocab;

/// A column as read (values or vocabulary codes in `segments`, `NaN` missing) → its schema,
/// with its type, format and reason; a text column in a value format is rewritten as numbers
/// (then `stats` are taken and returned). The user's type (`opts.columns`) wins, and is
/// checked: a cell it cannot read is named.
pub(super) fn decide(
    name: &str,
    segments: &mut [Vec<f32>],
    vocab: Vocab,
    rows: usize,
    mut stats: Option<NumberStats>,
    opts: &ReadOptions,
) -> Result<(RawColumn, Option<NumberStats>), DataError> {
    let forced = opts.forced(name);
    let mut format = None;
    let mut vocab = vocab;
    if stats.is_none() && !vocab.is_empty() {
        let wants = |k: ColumnType| forced.is_none() || forced == Some(k);
        let hint = opts.decimal;
        let date = if wants(ColumnType::Date) {
            match opts.date_order(name) {
                Some(order) => vocab
                    .iter()
                    .all(|t| values::parse_date(t, &DateFormat::new(order)).is_some())
                    .then(|| {
                        let mut f = values::infer_date(vocab.iter(), hint)
                            .unwrap_or(DateFormat::new(order));
                        f.order = order;
                        f.ambiguous = false;
                        f
                    }),
                None => values::infer_date(vocab.iter(), hint),
            }
        } else {
            None
        };
        let date = date.map(|mut f| {
            if let Some(&w) = opts.date_weekdays.get(name) {
                f.weekday = w;
            }
            f
        });
        let number = if date.is_none() && wants(ColumnType::Numeric) {
            values::infer_number(vocab.iter(), hint, opts.thousands)
        } else {
            None
        };
        let table: Option<Vec<f32>> = match (&date, &number) {
            (Some(f), _) => Some(
                vocab
                    .iter()
                    .map(|t| values::parse_date(t, f).unwrap_or(f64::NAN) as f32)
                    .collect(),
            ),
            (None, Some(f)) => Some(
                vocab
                    .iter()
                    .map(|t| values::parse_number(t, f).unwrap_or(f64::NAN) as f32)
                    .collect(),
            ),
            _ => None,
        };
        if let Some(table) = table {
            segments.par_iter_mut().for_each(|s| {
                for v in s.iter_mut() {
                    if !v.is_nan() {
                        *v = table[*v as usize];
                    }
                }
            });
            stats = Some(NumberStats::of_segments(segments));
            vocab = Vocab::new();
            format = date
                .map(ValueFormat::Date)
                .or(number.map(ValueFormat::Number));
        } else if matches!(forced, Some(ColumnType::Date))
            || (forced == Some(ColumnType::Numeric)
                && !vocab.iter().all(|s| s.parse::<f64>().is_ok()))
        {
            return Err(unreadable(name, segments, &vocab, forced, opts));
        }
    }
    // Plain numbers of a decimal-comma file: a model reads their text ("1.234,5") in that
    // locale at predict, as the upload did.
    if format.is_none() && stats.is_some() && opts.decimal == Some(',') {
        format = Some(ValueFormat::Number(values::NumberFormat {
            decimal: ',',
            thousands: Some('.'),
            ..Default::default()
        }));
    }
    let mut raw = infer(name, segments, vocab, rows, stats.as_ref(), format);
    if let Some(kind) = forced {
        check_type(&raw.schema, kind).map_err(|e| {
            DataError::new(format!("column {}: {}", quoted(name), e.message)).column(name)
        })?;
        if raw.schema.kind != kind {
            raw.schema.reason = format!(
                "{}: set by the upload's columns (read alone it would be {})",
                kind.name(),
                raw.schema.reason
            );
        } else {
            raw.schema.reason = format!("{} (also set by the upload's columns)", raw.schema.reason);
        }
        raw.schema.kind = kind;
    }
    if raw.schema.missing as usize == rows {
        if forced.is_some_and(|k| k != ColumnType::Ignore) {
            return Err(DataError::new(format!(
                "column {} is entirely empty, so it cannot be {}; type it \"ignore\" or leave it out of columns",
                quoted(name),
                raw.schema.kind.name()
            ))
            .column(name));
        }
        raw.schema.kind = ColumnType::Ignore;
        raw.schema.reason = "ignored: every cell is empty".into();
    }
    Ok((raw, stats))
}

/// The error for a column the user typed numeric or date whose cells do not all read so:
/// the first such cell (in row order) and its row.
fn unreadable(
    name: &str,
    segments: &[Vec<f32>],
    vocab: &Vocab,
    forced: Option<ColumnType>,
    opts: &ReadOptions,
) -> DataError {
    let date = forced == Some(ColumnType::Date);
    // The format the first readable cell suggests, so the cell named is the one that
    // breaks it (not merely the first that needs a format).
    let reads = |t: &str| -> bool {
        if date {
            match opts.date_order(name) {
                Some(order) => values::parse_date(t, &DateFormat::new(order)).is_some(),
                None => values::infer_date(std::iter::once(t), opts.decimal).is_some(),
            }
        } else {
            t.parse::<f64>().is_ok()
                || values::infer_number(std::iter::once(t), opts.decimal, opts.thousands).is_some()
        }
    };
    let bad: Vec<bool> = vocab.iter().map(|t| !reads(t)).collect();
    let any_bad = bad.iter().any(|&b| b);
    let mut row = 0usize;
    let mut first = None;
    'rows: for s in segments {
        for &v in s {
            row += 1;
            if !v.is_nan() && (!any_bad || bad[v as usize]) {
                first = Some((row, &vocab[v as usize]));
                break 'rows;
            }
        }
    }
    let what = if date {
        "a date (ISO 8601, MM/DD/YYYY, DD.MM.YYYY, with or without a time)"
    } else {
        "a number (currency, thousands separators, % and (1,200) are read)"
    };
    let pointer = format!(
        "/columns/{}",
        crate::nn::portable::tabular::pointer_token(name)
    );
    let msg = match first {
        Some((r, t)) if any_bad => format!(
            "column {} is typed {}, but data row {r}'s cell {} does not read as {what}",
            quoted(name),
            if date { "\"date\"" } else { "\"numeric\"" },
            quoted(t)
        ),
        Some((r, t)) => format!(
            "column {} is typed {}, but its cells are not all in one format (data row {r}: {}); say the file's ?decimal= or type it \"categorical\"",
            quoted(name),
            if date { "\"date\"" } else { "\"numeric\"" },
            quoted(t)
        ),
        None => format!("column {} cannot be read as {what}", quoted(name)),
    };
    DataError::new(msg).column(name).pointer(pointer)
}

/// The type a careful reader would give a column, its schema and the reason: a column of
/// numbers comes with its stats (`stats`), a column of text without.
fn infer(
    name: &str,
    segments: &[Vec<f32>],
    vocab: Vocab,
    rows: usize,
    stats: Option<&NumberStats>,
    format: Option<ValueFormat>,
) -> RawColumn {
    let missing;
    let storage = if stats.is_some() {
        Storage::Number
    } else {
        Storage::Text
    };
    let (kind, distinct, numeric_text, boolean_like, reason) = match stats {
        Some(st) => {
            let (lo, hi, integers, seen) = (st.lo, st.hi, st.integers, &st.distinct);
            missing = st.missing;
            let present = rows as u64 - missing;
            let distinct = seen.len as u64;
            let boolean_like = distinct <= 2 && seen.values().all(|v| v == 0.0 || v == 1.0);
            let shown_distinct = if distinct > super::table::DISTINCT_CAP {
                format!("more than {}", super::table::DISTINCT_CAP)
            } else {
                distinct.to_string()
            };
            match &format {
                Some(ValueFormat::Date(f)) => (
                    ColumnType::Date,
                    distinct,
                    false,
                    false,
                    format!("date: {}", values::describe_date(f)),
                ),
                Some(ValueFormat::Number(f))
                    if !(values::is_locale_only(f)
                        && integers
                        && present >= 2
                        && looks_like_id(name, segments, lo, hi, present)) =>
                {
                    (
                        ColumnType::Numeric,
                    distinct,
                    false,
                    false,
                        format!("numeric: {}", values::describe_number(f)),
                    )
                }
                _ if integers && present >= 2 && looks_like_id(name, segments, lo, hi, present) =>
                {
                    (
                        ColumnType::Ignore,
                        distinct,
                        false,
                        boolean_like,
                        "ignored: whole numbers distinct in every row, named like an id or counting up without gaps — an identifier".into(),
                    )
                }
                _ => (
                    ColumnType::Numeric,
                    distinct,
                    false,
                    boolean_like,
                    if boolean_like {
                        "numeric: numbers (only 0 and 1: it may be typed boolean)".into()
                    } else if integers && distinct <= 20 && present > 0 {
                        format!("numeric: {shown_distinct} distinct whole numbers (it may be typed categorical)")
                    } else {
                        format!("numeric: numbers, {shown_distinct} distinct")
                    },
                ),
            }
        }
        None => {
            missing = segments.iter().flatten().filter(|v| v.is_nan()).count() as u64;
            let present = rows as u64 - missing;
            let distinct = vocab.len() as u64;
            let numeric_text = vocab
                .iter()
                .all(|s| s.parse::<f64>().is_ok_and(|f| super::finite_f32(f).is_ok()));
            let boolean_like = vocab.iter().all(|s| boolean_value(s).is_some());
            // (Lower-cased only when every text is yes/no-like: a handful.)
            let (kind, reason) = if boolean_like
                && vocab
                    .iter()
                    .map(|s| s.to_lowercase())
                    .collect::<HashSet<_>>()
                    .len()
                    <= 2
                && distinct >= 1
            {
                (
                    ColumnType::Boolean,
                    format!(
                        "boolean: yes/no values ({})",
                        vocab
                            .iter()
                            .take(4)
                            .map(quoted)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            } else if present >= 2 && distinct == present {
                (
                    ColumnType::Ignore,
                    if free_text(&vocab) {
                        "ignored: free text, distinct in every row".into()
                    } else {
                        "ignored: distinct in every row — an identifier".into()
                    },
                )
            } else if present >= 2 && distinct > 20 && distinct * 2 > present {
                (
                    ColumnType::Ignore,
                    if free_text(&vocab) {
                        format!("ignored: free text ({distinct} distinct values in {present} rows)")
                    } else {
                        format!(
                            "ignored: mostly distinct ({distinct} values in {present} rows) — names or codes, not categories"
                        )
                    },
                )
            } else if distinct > CATEGORY_LIMIT {
                (
                    ColumnType::Ignore,
                    format!(
                        "ignored: {distinct} distinct values, more categories than {CATEGORY_LIMIT}; type it categorical and set max_categories to keep the most frequent"
                    ),
                )
            } else {
                (
                    ColumnType::Categorical,
                    format!(
                        "categorical: {distinct} distinct {}",
                        if distinct == 1 { "text" } else { "texts" }
                    ),
                )
            };
            (kind, distinct, numeric_text, boolean_like, reason)
        }
    };
    RawColumn {
        schema: ColumnSchema {
            name: name.to_owned(),
            kind,
            storage,
            missing,
            distinct,
            numeric_text,
            boolean_like,
            format,
            reason,
        },
        vocab,
    }
}

/// Text written as sentences: most values hold several words, and they are long.
fn free_text(vocab: &Vocab) -> bool {
    let n = vocab.len().min(1000);
    if n == 0 {
        return false;
    }
    let (mut words, mut chars) = (0usize, 0usize);
    for t in vocab.iter().take(n) {
        words += usize::from(t.split_whitespace().count() >= 3);
        chars += t.chars().count();
    }
    words * 2 > n && chars / n >= 20
}

/// A whole-number column, unique per row, that is named like an id or counts up without gaps.
fn looks_like_id(name: &str, segments: &[Vec<f32>], lo: f32, hi: f32, present: u64) -> bool {
    let lname = name.to_ascii_lowercase();
    let named = lname == "id"
        || lname.ends_with("_id")
        || lname.ends_with(" id")
        || lname.starts_with("id_")
        || name.ends_with("Id")
        || name.ends_with("ID");
    let consecutive = (hi as f64 - lo as f64 + 1.0) == present as f64 && present >= 20;
    if !(named || consecutive) {
        return false;
    }
    let mut v: Vec<f32> = segments
        .iter()
        .flatten()
        .copied()
        .filter(|v| !v.is_nan())
        .collect();
    v.par_sort_unstable_by(f32::total_cmp);
    v.windows(2).all(|w| w[0] != w[1])
}
