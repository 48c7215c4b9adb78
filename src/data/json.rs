//! JSON uploads: `{"features": [[..], ..], "targets": [..]}`. Feature rows hold numbers,
//! strings and `null`, or are objects keyed by column name. Errors carry a JSON pointer into
//! the body (0-based, as pointers are) and the 1-based row next to it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ndarray::Array2;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::table::{CellError, Part, ReadOptions, finish_column};
use super::{Columns, DataError, Dataset, Limits, finite_f32, quoted};
use crate::nn::portable::tabular::{ColumnType, pointer_token};
use crate::nn::{ClassLabel, Targets};

/// A dataset as a JSON request body. serde's own errors (wrong types, unknown fields) are the
/// HTTP layer's to report.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonDataset {
    pub name: Option<String>,
    /// One row per sample: an array of cells, all the same width, or an object keyed by
    /// column name (a key left out is a missing cell).
    pub features: JsonFeatures,
    /// One entry per row; see [`from_json`] for the shapes accepted. Absent only for a
    /// dataset without a target (`?labels=none`).
    #[serde(default)]
    pub targets: Option<JsonTargets>,
    /// Defaults to `x0, x1, …` for array rows, the keys (sorted) for object rows.
    pub feature_names: Option<Vec<String>>,
    /// Column types, overriding the inferred ones: `{"zip": "categorical"}`.
    #[serde(default)]
    pub columns: Option<BTreeMap<String, ColumnType>>,
    /// Strings read as missing (default `NA`, `N/A`, `NaN`, `null`, `?`, ignoring case).
    #[serde(default)]
    pub na_values: Option<Vec<String>>,
}

/// The targets of a JSON body. Numbers (and `null`s) — the common case — are kept as 8-byte
/// floats while they are read (`NaN` marks a `null`); the first entry of another kind turns
/// the list into JSON values, entry by entry, as written.
#[derive(Clone, Debug, PartialEq)]
pub enum JsonTargets {
    Numbers(Vec<f64>),
    Values(Vec<Value>),
}

impl JsonTargets {
    pub fn len(&self) -> usize {
        match self {
            JsonTargets::Numbers(v) => v.len(),
            JsonTargets::Values(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<Vec<Value>> for JsonTargets {
    fn from(v: Vec<Value>) -> Self {
        JsonTargets::Values(v)
    }
}

impl<'de> serde::Deserialize<'de> for JsonTargets {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = JsonTargets;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array of targets")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JsonTargets, A::Error> {
                // Whole numbers beyond 2^53 lose nothing as values (they may be class labels).
                const EXACT: f64 = 9_007_199_254_740_992.0;
                let mut numbers = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                let max = read_limits().max_rows;
                let over = || {
                    de::Error::custom(format!("targets has {OVER_LIMIT} {max} rows (--max-rows)"))
                };
                while let Some(v) = seq.next_element::<Value>()? {
                    if numbers.len() >= max {
                        return Err(over());
                    }
                    let n = match &v {
                        Value::Null => Some(f64::NAN),
                        Value::Number(n) => n.as_f64().filter(|f| f.abs() < EXACT || n.is_f64()),
                        _ => None,
                    };
                    match n {
                        Some(n) => numbers.push(n),
                        None => {
                            let mut values: Vec<Value> = numbers
                                .into_iter()
                                .map(|n| if n.is_nan() { Value::Null } else { n.into() })
                                .collect();
                            values.push(v);
                            while let Some(v) = seq.next_element::<Value>()? {
                                if values.len() >= max {
                                    return Err(over());
                                }
                                values.push(v);
                            }
                            return Ok(JsonTargets::Values(values));
                        }
                    }
                }
                Ok(JsonTargets::Numbers(numbers))
            }
        }
        d.deserialize_seq(V)
    }
}

/// One feature cell as read.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum JsonCell<'a> {
    Number(f64),
    Text(&'a str),
    Bool(bool),
    Null,
}

/// The feature rows of a JSON body, packed as they are read: each cell is 8 bytes (a number's
/// bits, or a NaN-boxed tag for null, a boolean, or a text kept once in `texts`), each row an
/// end offset, so rows take about as much memory as their JSON text (a vector of enums per
/// row took ten to forty times as much). Object rows also keep each cell's key, interned.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JsonFeatures {
    cells: Vec<u64>,
    ends: Vec<usize>,
    /// Which rows were objects.
    record_rows: Vec<bool>,
    /// The key of every cell, when row 1 is an object (`u32::MAX` in an array row).
    keys: Vec<u32>,
    key_names: Vec<Box<str>>,
    key_index: HashMap<Box<str>, u32>,
    texts: Vec<Box<str>>,
    text_index: HashMap<Box<str>, u32>,
    /// For each key, 1 + the last row that used it: a repeat within a row is found at once.
    key_last_row: Vec<usize>,
}

/// Tagged cells are NaNs no arithmetic or parser makes: sign 0, exponent all ones, the two top
/// fraction bits set. The low 48 bits say which: 0 null, 1 false, 2 true, 2³² + i text `i`.
const TAG: u64 = 0x7FFC_0000_0000_0000;
const TAG_MASK: u64 = 0xFFFF_0000_0000_0000;
const TEXT: u64 = 1 << 32;

impl JsonFeatures {
    /// Rows.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn span(&self, i: usize) -> std::ops::Range<usize> {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        start..self.ends[i]
    }

    /// Cells in row `i`.
    pub fn row_len(&self, i: usize) -> usize {
        self.span(i).len()
    }

    /// Whether row `i` is an object keyed by column name.
    pub fn is_record(&self, i: usize) -> bool {
        self.record_rows[i]
    }

    fn cell(&self, bits: u64) -> JsonCell<'_> {
        if bits & TAG_MASK != TAG {
            return JsonCell::Number(f64::from_bits(bits));
        }
        match bits & !TAG_MASK {
            0 => JsonCell::Null,
            1 => JsonCell::Bool(false),
            2 => JsonCell::Bool(true),
            t => JsonCell::Text(&self.texts[(t - TEXT) as usize]),
        }
    }

    /// Row `i`'s cells, in the order written.
    pub fn cells(&self, i: usize) -> impl ExactSizeIterator<Item = JsonCell<'_>> + '_ {
        self.cells[self.span(i)].iter().map(|&b| self.cell(b))
    }

    /// Row `i`'s cells with their keys, for an object row when row 1 is an object too.
    pub fn entries(&self, i: usize) -> impl Iterator<Item = (&str, JsonCell<'_>)> + '_ {
        let span = self.span(i);
        let keys = self.keys.get(span.clone()).unwrap_or(&[]);
        keys.iter()
            .zip(&self.cells[span])
            .filter(|(k, _)| **k != u32::MAX)
            .map(|(&k, &b)| (&*self.key_names[k as usize], self.cell(b)))
    }

    /// Every key the object rows used, sorted.
    pub fn key_names(&self) -> BTreeSet<&str> {
        self.key_names.iter().map(|k| &**k).collect()
    }

    fn push_number(&mut self, v: f64) {
        // A NaN (only a body built in code has one) keeps the canonical NaN's bits, not a tag.
        self.cells.push(if v.is_nan() {
            f64::NAN.to_bits()
        } else {
            v.to_bits()
        });
    }

    fn push_text(&mut self, t: &str) {
        let i = match self.text_index.get(t) {
            Some(&i) => i,
            None => {
                let i = self.texts.len() as u32;
                self.texts.push(t.into());
                self.text_index.insert(t.into(), i);
                i
            }
        };
        self.cells.push(TAG | TEXT | i as u64);
    }

    fn key(&mut self, k: &str) -> u32 {
        match self.key_index.get(k) {
            Some(&i) => i,
            None => {
                let i = self.key_names.len() as u32;
                self.key_names.push(k.into());
                self.key_index.insert(k.into(), i);
                self.key_last_row.push(0);
                i
            }
        }
    }

    fn end_row(&mut self, record: bool) {
        self.ends.push(self.cells.len());
        self.record_rows.push(record);
        if self.record_rows[0] {
            // Row 1 is an object: every cell has a key slot.
            self.keys.resize(self.cells.len(), u32::MAX);
        }
    }
}

impl From<Vec<Vec<f64>>> for JsonFeatures {
    fn from(rows: Vec<Vec<f64>>) -> Self {
        let mut f = JsonFeatures::default();
        for row in rows {
            for v in row {
                f.push_number(v);
            }
            f.end_row(false);
        }
        f
    }
}

impl<'de> serde::Deserialize<'de> for JsonFeatures {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Rows;
        impl<'de> Visitor<'de> for Rows {
            type Value = JsonFeatures;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array of rows")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JsonFeatures, A::Error> {
                let mut out = JsonFeatures::default();
                while seq.next_element_seed(RowSeed(&mut out))?.is_some() {}
                Ok(out)
            }
        }
        d.deserialize_seq(Rows)
    }
}

thread_local! {
    /// The limits of the body being read on this thread (see [`read_within`]): rows, columns
    /// and cells are counted as they are read, so a body past a limit — a few hundred
    /// kilobytes of gzip can hold a hundred million cells — is refused at the first cell past
    /// it, never read whole first.
    static READ_LIMITS: std::cell::Cell<Limits> = const { std::cell::Cell::new(Limits::NONE) };
}

/// The words every limit a reader hits while reading says (how a caller knows a 413).
pub const OVER_LIMIT: &str = "more than the limit of";

/// Runs `read` (which parses a JSON body holding a dataset) with `limits` checked while the
/// features and targets are read.
pub fn read_within<T>(limits: &Limits, read: impl FnOnce() -> T) -> T {
    READ_LIMITS.with(|l| l.set(*limits));
    let out = read();
    READ_LIMITS.with(|l| l.set(Limits::NONE));
    out
}

fn read_limits() -> Limits {
    READ_LIMITS.with(|l| l.get())
}

/// Reads one row into the packed features.
struct RowSeed<'a>(&'a mut JsonFeatures);

impl<'de> de::DeserializeSeed<'de> for RowSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        let max = read_limits().max_rows;
        if self.0.ends.len() >= max {
            return Err(de::Error::custom(format!(
                "features has {OVER_LIMIT} {max} rows (--max-rows)"
            )));
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a row: an array of cells or an object keyed by column name")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let out = self.0;
        while seq.next_element_seed(CellSeed(&mut *out))?.is_some() {}
        out.end_row(false);
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let out = self.0;
        let row = out.ends.len();
        let keyed = row == 0 || out.record_rows[0];
        while let Some(key) = map.next_key_seed(KeySeed(&mut *out))? {
            if std::mem::replace(&mut out.key_last_row[key as usize], row + 1) == row + 1 {
                let k = &out.key_names[key as usize];
                return Err(de::Error::custom(format!("column {k:?} appears twice")));
            }
            map.next_value_seed(CellSeed(&mut *out))?;
            if keyed {
                out.keys.push(key);
            }
        }
        out.end_row(true);
        Ok(())
    }
}

/// Reads an object row's key, interned.
struct KeySeed<'a>(&'a mut JsonFeatures);

impl<'de> de::DeserializeSeed<'de> for KeySeed<'_> {
    type Value = u32;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<u32, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = u32;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a column name")
    }
    fn visit_str<E>(self, v: &str) -> Result<u32, E> {
        Ok(self.0.key(v))
    }
}

/// Reads one cell into the packed features.
struct CellSeed<'a>(&'a mut JsonFeatures);

impl<'de> de::DeserializeSeed<'de> for CellSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        let limits = read_limits();
        let cells = self.0.cells.len();
        let in_row = cells - self.0.ends.last().copied().unwrap_or(0);
        if in_row >= limits.max_columns {
            return Err(de::Error::custom(format!(
                "a row has {OVER_LIMIT} {} columns (--max-columns)",
                limits.max_columns
            )));
        }
        if cells >= limits.max_cells {
            return Err(de::Error::custom(format!(
                "features has {OVER_LIMIT} {} cells (--max-cells)",
                limits.max_cells
            )));
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for CellSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a number, a string, a boolean or null")
    }
    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        self.0.push_number(v);
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.0.push_number(v as f64);
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.0.push_number(v as f64);
        Ok(())
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.0.push_text(v);
        Ok(())
    }
    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.0.cells.push(TAG | if v { 2 } else { 1 });
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        self.0.cells.push(TAG);
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        self.0.cells.push(TAG);
        Ok(())
    }
}

/// Checks a JSON dataset and converts it, with the body's own `columns` and `na_values`.
/// See [`from_json_with`].
pub fn from_json(body: &JsonDataset, limits: &Limits) -> Result<Dataset, DataError> {
    let opts = ReadOptions::new(
        body.na_values.as_deref(),
        body.columns.clone().unwrap_or_default(),
    );
    from_json_with(body, limits, &opts)
}

/// As [`from_json`], the dataset left in its columns (what an upload stores); `no_target`:
/// the body has no targets (`?labels=none`).
pub fn json_columns(
    body: &JsonDataset,
    limits: &Limits,
    no_target: bool,
) -> Result<Columns, DataError> {
    let mut opts = ReadOptions::new(
        body.na_values.as_deref(),
        body.columns.clone().unwrap_or_default(),
    );
    opts.no_target = no_target;
    json_columns_with(body, limits, &opts)
}

/// Checks a JSON dataset and converts it. Feature cells are numbers, strings (text; a string
/// in `opts`' missing markers is missing), booleans (yes/no) or `null` (missing); each
/// column's type is inferred as for CSV. Targets, one per row, are one of:
/// - all numbers → `Values` (n×1), target name `"target"`;
/// - strings, or strings mixed with whole numbers → `Labels` (strings trimmed to `Text`, whole
///   numbers to `Integer`; `"1"` and `1` are different labels), target name `"target"`;
/// - all booleans → `Values` of 0 and 1 (n×1), exactly as if the body said 0 and 1, so a
///   binary target reads the same from JSON and CSV; target name `"target"`;
/// - all arrays of numbers of one width w → `Values` (n×w, one-hot or multi-output), target
///   names `"target_0"` … `"target_{w-1}"`.
///
/// A `null` target leaves its row out (counted in [`Dataset::dropped_rows`]); objects, and any
/// other mixture, are errors at `/targets/i`.
pub fn from_json_with(
    body: &JsonDataset,
    limits: &Limits,
    opts: &ReadOptions,
) -> Result<Dataset, DataError> {
    json_columns_with(body, limits, opts)?.assemble()
}

fn json_columns_with(
    body: &JsonDataset,
    limits: &Limits,
    opts: &ReadOptions,
) -> Result<Columns, DataError> {
    let f = &body.features;
    let rows = f.len();
    if rows == 0 {
        return Err(
            DataError::new("features is empty; at least one row is required").pointer("/features"),
        );
    }
    if rows > limits.max_rows {
        return Err(DataError::new(format!(
            "features has {rows} rows, more than the limit of {}",
            limits.max_rows
        ))
        .pointer("/features")
        .too_large());
    }
    let records = f.is_record(0);
    let first_len = f.row_len(0);
    // The column names: given, the keys of object rows, or x0, x1, …
    let names: Vec<String> = match (&body.feature_names, records) {
        (Some(n), _) => n.clone(),
        (None, true) => f.key_names().into_iter().map(str::to_owned).collect(),
        (None, false) => (0..first_len).map(|j| format!("x{j}")).collect(),
    };
    let width = names.len();
    if let (Some(given), false) = (&body.feature_names, records)
        && given.len() != first_len
        && first_len != 0
    {
        return Err(DataError::new(format!(
            "feature_names has {} names for {} features; give one name per feature",
            given.len(),
            first_len
        ))
        .pointer("/feature_names"));
    }
    if width == 0 || (!records && first_len == 0) {
        return Err(
            DataError::new("row 1 has no features; each row needs at least one number")
                .pointer("/features/0")
                .row(1),
        );
    }
    // The target adds at least one column; its real width is checked once it is known.
    check_size(rows, width, 1, limits)?;
    for i in 0..rows {
        let message = match (f.is_record(i), records) {
            (false, true) => format!(
                "row {} is an array but row 1 is an object; rows must be all arrays or all objects",
                i + 1
            ),
            (true, false) => format!(
                "row {} is an object but row 1 is an array; rows must be all arrays or all objects",
                i + 1
            ),
            (false, false) if f.row_len(i) != width => format!(
                "row {} has {} features, expected {width} like row 1",
                i + 1,
                f.row_len(i)
            ),
            _ => continue,
        };
        return Err(DataError::new(message)
            .pointer(format!("/features/{i}"))
            .row(i + 1));
    }
    let body_targets = match (&body.targets, opts.no_target) {
        (Some(_), true) => {
            return Err(DataError::new(
                "labels=none says the dataset has no target, but the body gives targets; leave one out",
            )
            .pointer("/targets"));
        }
        (None, false) => {
            return Err(DataError::new(
                "targets is missing: give one target per row (or upload with ?labels=none for a dataset to score, without a target)",
            )
            .pointer("/targets"));
        }
        (None, true) => None,
        (Some(t), false) => Some(t),
    };
    if let Some(t) = body_targets
        && t.len() != rows
    {
        return Err(DataError::new(format!(
            "targets has {} entries for {rows} rows of features; give one target per row",
            t.len()
        ))
        .pointer("/targets"));
    }
    let feature_names = feature_names(Some(&names), width)?;
    let index: HashMap<&str, usize> = feature_names
        .iter()
        .enumerate()
        .map(|(j, n)| (n.as_str(), j))
        .collect();
    for name in opts.columns.keys() {
        if !index.contains_key(name.as_str()) {
            return Err(DataError::new(format!(
                "columns names {}, but there is no such feature column",
                quoted(name)
            ))
            .pointer(format!("/columns/{}", pointer_token(name)))
            .column(name));
        }
    }
    let forced: Vec<Option<ColumnType>> = feature_names
        .iter()
        .map(|n| opts.columns.get(n).copied())
        .collect();
    let mut parts: Vec<Part> = forced.iter().map(|f| Part::new(*f)).collect();
    let mut row_cells: Vec<JsonCell> = Vec::with_capacity(width);
    for i in 0..rows {
        row_cells.clear();
        if records {
            row_cells.resize(width, JsonCell::Null);
            for (k, v) in f.entries(i) {
                match index.get(k) {
                    Some(&j) => row_cells[j] = v,
                    None => {
                        return Err(DataError::new(format!(
                            "row {}: there is no column {}; the columns are feature_names",
                            i + 1,
                            quoted(k)
                        ))
                        .pointer(format!("/features/{i}/{}", pointer_token(k)))
                        .row(i + 1)
                        .column(k));
                    }
                }
            }
        } else {
            row_cells.extend(f.cells(i));
        }
        for (j, cell) in row_cells.iter().enumerate() {
            let part = &mut parts[j];
            let numeric = forced[j] == Some(ColumnType::Numeric);
            let pushed = match *cell {
                JsonCell::Null => {
                    part.push_missing();
                    Ok(())
                }
                JsonCell::Number(n) => part.push_number(n, &show(n)),
                JsonCell::Bool(b) => {
                    part.push_cell(if b { "true" } else { "false" }, numeric, true)
                }
                JsonCell::Text(t) => {
                    let t = t.trim();
                    if opts.is_na(t) {
                        part.push_missing();
                        Ok(())
                    } else {
                        part.push_cell(t, numeric, true)
                    }
                }
            };
            if let Err(e) = pushed {
                let name = &feature_names[j];
                let key = if records {
                    pointer_token(name)
                } else {
                    j.to_string()
                };
                let what = match &e {
                    CellError::BadNumber(b, _) => b.describe(&match cell {
                        JsonCell::Number(n) => show(*n),
                        _ => String::new(),
                    }),
                    other => other.describe(),
                };
                return Err(DataError::new(format!(
                    "row {}, column {}: {what}",
                    i + 1,
                    quoted(name)
                ))
                .pointer(format!("/features/{i}/{key}"))
                .row(i + 1)
                .column(name));
            }
        }
    }
    // Numbers read before a column's first string get their text as written.
    for (j, part) in parts.iter_mut().enumerate() {
        if part.pending() > 0 {
            let cells: Vec<Option<String>> = (0..rows)
                .map(|i| {
                    let cell = if records {
                        f.entries(i)
                            .find(|(k, _)| *k == feature_names[j])
                            .map(|(_, c)| c)
                    } else {
                        f.cells(i).nth(j)
                    };
                    match cell {
                        Some(JsonCell::Number(n)) => Some(show(n)),
                        Some(JsonCell::Text(t)) if !opts.is_na(t.trim()) => {
                            Some(t.trim().to_owned())
                        }
                        Some(JsonCell::Bool(b)) => Some(b.to_string()),
                        _ => None,
                    }
                })
                .collect();
            part.fill_pending(cells.iter().map(|c| c.as_deref()));
        }
    }
    let mut features = Vec::with_capacity(width);
    for (j, p) in parts.into_iter().enumerate() {
        features.push(
            finish_column(&feature_names[j], vec![p], opts).map_err(|mut e| {
                e.pointer = Some(format!("/features/0/{j}"));
                e
            })?,
        );
    }

    let Some(body_targets) = body_targets else {
        return Columns::without_target(features, rows);
    };
    let (keep, targets, arrays) = match body_targets {
        JsonTargets::Numbers(v) => {
            let keep: Vec<bool> = v.iter().map(|t| !t.is_nan()).collect();
            let mut y = Vec::with_capacity(v.len());
            for (i, &t) in v.iter().enumerate().filter(|(_, t)| !t.is_nan()) {
                y.push(finite_f32(t).map_err(|bad| {
                    target_error(i, format!("the target {}", bad.describe(&show(t))))
                })?);
            }
            let n = y.len();
            (keep, values(y, n, 1)?, false)
        }
        JsonTargets::Values(v) => {
            let keep: Vec<bool> = v.iter().map(|t| !t.is_null()).collect();
            let present: Vec<&Value> = v.iter().filter(|t| !t.is_null()).collect();
            let positions: Vec<usize> = (0..rows).filter(|&i| keep[i]).collect();
            let targets = read_targets(&present).map_err(|mut e| {
                // Point at the row in the body, not in the rows kept.
                if let Some(r) = e.row {
                    let i = positions.get(r - 1).copied().unwrap_or(r - 1);
                    e.message =
                        e.message
                            .replacen(&format!("row {r}"), &format!("row {}", i + 1), 1);
                    e.row = Some(i + 1);
                    if let Some(p) = &e.pointer {
                        e.pointer = Some(p.replacen(
                            &format!("/targets/{}", r - 1),
                            &format!("/targets/{i}"),
                            1,
                        ));
                    }
                }
                e
            })?;
            let arrays = matches!(present.first(), Some(Value::Array(_)));
            (keep, targets, arrays)
        }
    };
    let target_names = match &targets {
        Targets::Values(v) if arrays => (0..v.ncols()).map(|j| format!("target_{j}")).collect(),
        _ => vec!["target".to_owned()],
    };
    check_size(rows, width, target_names.len(), limits)?;
    let all = keep.iter().all(|&k| k);
    Columns::new(
        features,
        targets,
        (!all).then_some(keep),
        rows,
        target_names,
    )
    .map_err(|e| e.pointer("/targets"))
}

fn check_size(
    rows: usize,
    features: usize,
    target_width: usize,
    limits: &Limits,
) -> Result<(), DataError> {
    let columns = features.saturating_add(target_width);
    if columns > limits.max_columns {
        return Err(DataError::new(format!(
            "the dataset has {columns} columns ({features} features and {target_width} target), more than the limit of {}",
            limits.max_columns
        ))
        .pointer("/features/0")
        .row(1)
        .too_large());
    }
    let cells = rows.saturating_mul(columns);
    if cells > limits.max_cells {
        return Err(DataError::new(format!(
            "the dataset has {cells} cells ({rows} rows × {columns} columns), more than the limit of {}",
            limits.max_cells
        ))
        .pointer("/features")
        .too_large());
    }
    Ok(())
}

fn feature_names(given: Option<&Vec<String>>, width: usize) -> Result<Vec<String>, DataError> {
    let Some(given) = given else {
        return Ok((0..width).map(|j| format!("x{j}")).collect());
    };
    if given.len() != width {
        return Err(DataError::new(format!(
            "feature_names has {} names for {width} features; give one name per feature",
            given.len()
        ))
        .pointer("/feature_names"));
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (j, name) in given.iter().enumerate() {
        if name.trim().is_empty() {
            return Err(DataError::new(format!(
                "feature name {j} is empty; every feature needs a name"
            ))
            .pointer(format!("/feature_names/{j}")));
        }
        if let Some(first) = seen.insert(name, j) {
            return Err(DataError::new(format!(
                "feature name {} appears twice (at {first} and {j}); names must be unique",
                quoted(name)
            ))
            .pointer(format!("/feature_names/{j}"))
            .column(name));
        }
    }
    Ok(given.clone())
}

/// The shape families a target can belong to; one body uses one family.
#[derive(Clone, Copy, PartialEq)]
enum Family {
    /// numbers, or labels (strings and whole numbers)
    Scalar,
    Boolean,
    Array,
}

fn family(v: &Value) -> Option<Family> {
    match v {
        Value::Number(_) | Value::String(_) => Some(Family::Scalar),
        Value::Bool(_) => Some(Family::Boolean),
        Value::Array(_) => Some(Family::Array),
        Value::Null | Value::Object(_) => None,
    }
}

fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn target_error(i: usize, message: String) -> DataError {
    DataError::new(format!("row {}: {message}", i + 1))
        .pointer(format!("/targets/{i}"))
        .row(i + 1)
}

fn read_targets(targets: &[&Value]) -> Result<Targets, DataError> {
    let mut first: Option<(Family, &Value)> = None;
    let mut any_string = false;
    for (i, t) in targets.iter().enumerate() {
        let Some(f) = family(t) else {
            return Err(target_error(
                i,
                format!(
                    "the target is {}; expected a number, a string, a boolean or an array of numbers",
                    describe(t)
                ),
            ));
        };
        match first {
            None => first = Some((f, t)),
            Some((f0, t0)) if f0 != f => {
                return Err(target_error(
                    i,
                    format!(
                        "the target is {} but row 1's is {}; targets must be all numbers and labels, all booleans, or all arrays of numbers",
                        describe(t),
                        describe(t0)
                    ),
                ));
            }
            Some(_) => {}
        }
        any_string |= t.is_string();
    }
    let n = targets.len();
    match first.map(|(f, _)| f) {
        Some(Family::Scalar) if any_string => read_labels(targets).map(Targets::Labels),
        Some(Family::Scalar) => {
            let mut y = Vec::with_capacity(n);
            for (i, t) in targets.iter().enumerate() {
                y.push(target_number(t, &format!("/targets/{i}"), i, "the target")?);
            }
            values(y, n, 1)
        }
        Some(Family::Boolean) => {
            let y = targets
                .iter()
                .map(|t| if t.as_bool() == Some(true) { 1.0 } else { 0.0 })
                .collect();
            values(y, n, 1)
        }
        Some(Family::Array) => read_arrays(targets),
        None => values(Vec::new(), 0, 1),
    }
}

fn values(y: Vec<f32>, rows: usize, width: usize) -> Result<Targets, DataError> {
    Array2::from_shape_vec((rows, width), y)
        .map(Targets::Values)
        .map_err(|e| DataError::new(format!("internal: target shape: {e}")))
}

/// A JSON number as a finite f32; `what` begins the message ("the target", "target value 2").
fn target_number(v: &Value, pointer: &str, i: usize, what: &str) -> Result<f32, DataError> {
    let Some(f) = v.as_f64() else {
        return Err(DataError::new(format!(
            "row {}: {what} is {}; expected a number",
            i + 1,
            describe(v)
        ))
        .pointer(pointer)
        .row(i + 1));
    };
    finite_f32(f).map_err(|bad| {
        DataError::new(format!("row {}: {what} {}", i + 1, bad.describe(&show(f))))
            .pointer(pointer)
            .row(i + 1)
    })
}

fn read_labels(targets: &[&Value]) -> Result<Vec<ClassLabel>, DataError> {
    let mut labels = Vec::with_capacity(targets.len());
    for (i, t) in targets.iter().enumerate() {
        let label = match t {
            Value::String(s) if s.trim().is_empty() => {
                return Err(target_error(
                    i,
                    "the label is empty; every row needs a target".into(),
                ));
            }
            Value::String(s) => ClassLabel::Text(s.trim().to_owned()),
            Value::Number(n) => match n.as_i64() {
                Some(k) => ClassLabel::Integer(k),
                None => ClassLabel::Integer(whole(n.as_f64()).ok_or_else(|| {
                    target_error(
                        i,
                        format!(
                            "{n} is not a whole number; when targets mix labels and numbers, the numbers must be whole class labels"
                        ),
                    )
                })?),
            },
            // read_targets only sends strings and numbers here.
            other => {
                return Err(target_error(
                    i,
                    format!("the target is {}; expected a label", describe(other)),
                ));
            }
        };
        labels.push(label);
    }
    Ok(labels)
}

/// `2.0` → 2; fractions and numbers beyond i64 → None.
fn whole(f: Option<f64>) -> Option<i64> {
    // 2^63: every f64 below it in magnitude with no fraction converts exactly.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    f.filter(|f| f.fract() == 0.0 && (-LIMIT..LIMIT).contains(f))
        .map(|f| f as i64)
}

fn read_arrays(targets: &[&Value]) -> Result<Targets, DataError> {
    let n = targets.len();
    let mut width = 0;
    let mut y = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let Value::Array(items) = t else {
            return Err(target_error(
                i,
                format!("the target is {}; expected an array", describe(t)),
            ));
        };
        if i == 0 {
            width = items.len();
            if width == 0 {
                return Err(target_error(
                    0,
                    "the target array is empty; it needs at least one number".into(),
                ));
            }
            y.reserve(n.saturating_mul(width));
        } else if items.len() != width {
            return Err(target_error(
                i,
                format!(
                    "the target has {} values, expected {width} like row 1",
                    items.len()
                ),
            ));
        }
        for (j, v) in items.iter().enumerate() {
            y.push(target_number(
                v,
                &format!("/targets/{i}/{j}"),
                i,
                &format!("target value {j}"),
            )?);
        }
    }
    values(y, n, width)
}

/// A number for a message: scientific when plain notation would be long.
fn show(v: f64) -> String {
    if v.is_finite() && v != 0.0 && !(1e-6..1e16).contains(&v.abs()) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;
    use serde_json::json;

    fn body(v: Value) -> JsonDataset {
        serde_json::from_value(v).expect("test body deserialises")
    }

    fn read(v: Value) -> Result<Dataset, DataError> {
        from_json(&body(v), &Limits::default())
    }

    fn read_err(v: Value) -> DataError {
        match read(v) {
            Ok(d) => panic!("expected an error, read {d:?}"),
            Err(e) => e,
        }
    }

    /// (message, pointer, row, too_large)
    fn parts(e: DataError) -> (String, Option<String>, Option<usize>, bool) {
        (e.message, e.pointer, e.row, e.too_large)
    }

    fn p(s: &str) -> Option<String> {
        Some(s.to_owned())
    }

    fn text(s: &str) -> ClassLabel {
        ClassLabel::Text(s.to_owned())
    }

    #[test]
    fn numbers_are_values_with_default_names() {
        let d = read(json!({"features": [[1, 2.5], [3, 4]], "targets": [0.5, -1]})).expect("reads");
        assert_eq!(d.feature_names, ["x0", "x1"]);
        assert_eq!(d.target_names, ["target"]);
        assert_eq!(d.x, array![[1.0, 2.5], [3.0, 4.0]]);
        assert_eq!(d.targets, Targets::Values(array![[0.5], [-1.0]]));
    }

    #[test]
    fn given_feature_names_and_name_field() {
        let d = read(json!({
            "name": "tiny", "features": [[1, 2]], "targets": [1], "feature_names": ["a", "b"]
        }))
        .expect("reads");
        assert_eq!(d.feature_names, ["a", "b"]);
    }

    #[test]
    fn unknown_fields_are_rejected_by_serde() {
        let r: Result<JsonDataset, _> =
            serde_json::from_value(json!({"features": [[1]], "targets": [1], "extra": 1}));
        assert!(r.is_err());
    }

    #[test]
    fn strings_are_trimmed_labels() {
        let d = read(json!({"features": [[1], [2], [3]], "targets": ["b", " a ", "b"]}))
            .expect("reads");
        assert_eq!(
            d.targets,
            Targets::Labels(vec![text("b"), text("a"), text("b")])
        );
        assert_eq!(d.target_names, ["target"]);
        assert_eq!(d.classes(), Some(vec![text("a"), text("b")]));
    }

    #[test]
    fn whole_numbers_mixed_with_strings_are_integer_labels() {
        let d =
            read(json!({"features": [[1], [2], [3]], "targets": [3, "cat", 2.0]})).expect("reads");
        assert_eq!(
            d.targets,
            Targets::Labels(vec![
                ClassLabel::Integer(3),
                text("cat"),
                ClassLabel::Integer(2)
            ])
        );
    }

    #[test]
    fn fraction_mixed_with_strings() {
        let e = read_err(json!({"features": [[1], [2]], "targets": ["cat", 1.5]}));
        assert_eq!(
            parts(e),
            (
                "row 2: 1.5 is not a whole number; when targets mix labels and numbers, the numbers must be whole class labels".into(),
                p("/targets/1"),
                Some(2),
                false
            )
        );
    }

    #[test]
    fn empty_label() {
        let e = read_err(json!({"features": [[1], [2]], "targets": ["cat", "  "]}));
        assert_eq!(
            parts(e),
            (
                "row 2: the label is empty; every row needs a target".into(),
                p("/targets/1"),
                Some(2),
                false
            )
        );
    }

    #[test]
    fn arrays_are_multi_column_values() {
        let d = read(json!({"features": [[1], [2]], "targets": [[1, 0, 0], [0, 0.5, 1]]}))
            .expect("reads");
        assert_eq!(
            d.targets,
            Targets::Values(array![[1.0, 0.0, 0.0], [0.0, 0.5, 1.0]])
        );
        assert_eq!(d.target_names, ["target_0", "target_1", "target_2"]);
        assert_eq!(d.outputs(), 3);
        let d = read(json!({"features": [[1]], "targets": [[7]]})).expect("reads");
        assert_eq!(d.target_names, ["target_0"]);
    }

    #[test]
    fn arrays_of_unequal_width() {
        let e = read_err(json!({"features": [[1], [2]], "targets": [[1, 0], [0, 1, 0]]}));
        assert_eq!(
            parts(e),
            (
                "row 2: the target has 3 values, expected 2 like row 1".into(),
                p("/targets/1"),
                Some(2),
                false
            )
        );
        let e = read_err(json!({"features": [[1]], "targets": [[]]}));
        assert_eq!(e.pointer, p("/targets/0"));
    }

    #[test]
    fn non_number_inside_a_target_array() {
        let e = read_err(json!({"features": [[1], [2]], "targets": [[1, 0], [0, "x"]]}));
        assert_eq!(
            parts(e),
            (
                "row 2: target value 1 is a string; expected a number".into(),
                p("/targets/1/1"),
                Some(2),
                false
            )
        );
        let e = read_err(json!({"features": [[1]], "targets": [[1e300]]}));
        assert_eq!(
            parts(e),
            (
                "row 1: target value 0 1e300 is too large for a 32-bit float (the largest magnitude is about 3.4e38)".into(),
                p("/targets/0/0"),
                Some(1),
                false
            )
        );
    }

    #[test]
    fn booleans_are_zero_one_values() {
        let d = read(json!({"features": [[1], [2], [3]], "targets": [true, false, true]}))
            .expect("reads");
        assert_eq!(d.targets, Targets::Values(array![[1.0], [0.0], [1.0]]));
        assert_eq!(d.target_names, ["target"]);
        assert_eq!(
            d.classes(),
            Some(vec![ClassLabel::Integer(0), ClassLabel::Integer(1)])
        );
    }

    #[test]
    fn mixed_families_are_errors_at_the_first_odd_one() {
        let e = read_err(json!({"features": [[1], [2], [3]], "targets": [1, 2, true]}));
        assert_eq!(
            parts(e),
            (
                "row 3: the target is a boolean but row 1's is a number; targets must be all numbers and labels, all booleans, or all arrays of numbers".into(),
                p("/targets/2"),
                Some(3),
                false
            )
        );
        let e = read_err(json!({"features": [[1], [2]], "targets": [[1], 1]}));
        assert_eq!((e.pointer, e.row), (p("/targets/1"), Some(2)));
    }

    #[test]
    fn null_targets_leave_their_row_out() {
        let d = read(json!({"features": [[1], [2], [3]], "targets": [1, null, 0]})).expect("reads");
        assert_eq!((d.rows(), d.dropped_rows), (2, 1));
        assert_eq!(d.x, array![[1.0], [3.0]]);
        // an error in a later target still points at its row in the body
        let e = read_err(json!({"features": [[1], [2], [3]], "targets": [1, null, {"y": 1}]}));
        assert_eq!((e.pointer.as_deref(), e.row), (Some("/targets/2"), Some(3)));
    }

    #[test]
    fn mixed_cells_and_records() {
        let d = read(json!({
            "features": [{"state": "OH", "minutes": 265.1}, {"state": null, "minutes": "NA"}, {"minutes": 3}],
            "targets": ["yes", "no", "no"]
        }))
        .expect("reads");
        assert_eq!(d.feature_names, ["minutes", "state"]);
        assert_eq!(d.columns[1].vocab, ["OH"]);
        assert_eq!(d.columns[1].schema.missing, 2);
        assert_eq!(d.columns[0].schema.missing, 1);
        let e = read_err(
            json!({"features": [{"a": 1}, {"b": 2}], "targets": [1, 2], "feature_names": ["a"]}),
        );
        assert_eq!(e.pointer.as_deref(), Some("/features/1/b"));
        let e = read_err(
            json!({"features": [[1, "x"], [2, "y"]], "targets": [1, 2], "columns": {"x1": "numeric"}}),
        );
        assert_eq!(e.pointer.as_deref(), Some("/features/0/1"));
    }

    #[test]
    fn objects_are_not_targets() {
        let (t, what) = (json!({"y": 1}), "an object");
        let e = read_err(json!({"features": [[1], [2]], "targets": [1, t]}));
        assert_eq!(
            parts(e),
            (
                format!(
                    "row 2: the target is {what}; expected a number, a string, a boolean or an array of numbers"
                ),
                p("/targets/1"),
                Some(2),
                false
            )
        );
    }

    #[test]
    fn numeric_target_too_large() {
        let e = read_err(json!({"features": [[1], [2]], "targets": [1, 1e39]}));
        assert_eq!(
            parts(e),
            (
                "row 2: the target 1e39 is too large for a 32-bit float (the largest magnitude is about 3.4e38)".into(),
                p("/targets/1"),
                Some(2),
                false
            )
        );
    }

    #[test]
    fn target_count_must_match_rows() {
        let e = read_err(json!({"features": [[1], [2]], "targets": [1]}));
        assert_eq!(
            parts(e),
            (
                "targets has 1 entries for 2 rows of features; give one target per row".into(),
                p("/targets"),
                None,
                false
            )
        );
    }

    #[test]
    fn empty_features() {
        let e = read_err(json!({"features": [], "targets": []}));
        assert_eq!(
            parts(e),
            (
                "features is empty; at least one row is required".into(),
                p("/features"),
                None,
                false
            )
        );
        let e = read_err(json!({"features": [[]], "targets": [1]}));
        assert_eq!(
            parts(e),
            (
                "row 1 has no features; each row needs at least one number".into(),
                p("/features/0"),
                Some(1),
                false
            )
        );
    }

    #[test]
    fn rows_of_different_width() {
        let e = read_err(json!({"features": [[1, 2], [3, 4], [5]], "targets": [1, 2, 3]}));
        assert_eq!(
            parts(e),
            (
                "row 3 has 1 features, expected 2 like row 1".into(),
                p("/features/2"),
                Some(3),
                false
            )
        );
    }

    #[test]
    fn features_must_be_finite_and_fit_f32() {
        let e = read_err(json!({
            "features": [[1, 2, 3], [4, 5, 6], [7, 8, 9], [1, 1, 1], [0, 0, 1e300]],
            "targets": [1, 2, 3, 4, 5],
            "feature_names": ["a", "b", "c"]
        }));
        assert_eq!(
            parts(e.clone()),
            (
                "row 5, column \"c\": 1e300 is too large for a 32-bit float (the largest magnitude is about 3.4e38)".into(),
                p("/features/4/2"),
                Some(5),
                false
            )
        );
        assert_eq!(e.column, p("c"));
        // JSON text cannot hold NaN, but a body built in code can
        let b = JsonDataset {
            name: None,
            features: vec![vec![1.0], vec![f64::NAN]].into(),
            targets: Some(vec![json!(1), json!(2)].into()),
            feature_names: None,
            columns: None,
            na_values: None,
        };
        let e = from_json(&b, &Limits::default()).expect_err("fails");
        assert_eq!(
            parts(e),
            (
                "row 2, column \"x0\": NaN must be a finite number".into(),
                p("/features/1/0"),
                Some(2),
                false
            )
        );
    }

    #[test]
    fn feature_names_must_fit_and_be_unique() {
        let e = read_err(json!({"features": [[1, 2]], "targets": [1], "feature_names": ["a"]}));
        assert_eq!(
            parts(e),
            (
                "feature_names has 1 names for 2 features; give one name per feature".into(),
                p("/feature_names"),
                None,
                false
            )
        );
        let e = read_err(
            json!({"features": [[1, 2, 3]], "targets": [1], "feature_names": ["a", "b", "a"]}),
        );
        assert_eq!(
            parts(e),
            (
                "feature name \"a\" appears twice (at 0 and 2); names must be unique".into(),
                p("/feature_names/2"),
                None,
                false
            )
        );
        let e =
            read_err(json!({"features": [[1, 2]], "targets": [1], "feature_names": ["a", " "]}));
        assert_eq!(e.pointer, p("/feature_names/1"));
    }

    #[test]
    fn limits() {
        let two_rows = json!({"features": [[1, 2], [3, 4]], "targets": [[1, 0], [0, 1]]});
        let rows = Limits {
            max_rows: 1,
            ..Limits::default()
        };
        let e = from_json(&body(two_rows.clone()), &rows).expect_err("fails");
        assert_eq!(
            parts(e),
            (
                "features has 2 rows, more than the limit of 1".into(),
                p("/features"),
                None,
                true
            )
        );
        // 2 features + 2 target columns = 4
        let columns = Limits {
            max_columns: 3,
            ..Limits::default()
        };
        let e = from_json(&body(two_rows.clone()), &columns).expect_err("fails");
        assert_eq!(
            parts(e),
            (
                "the dataset has 4 columns (2 features and 2 target), more than the limit of 3"
                    .into(),
                p("/features/0"),
                Some(1),
                true
            )
        );
        let cells = Limits {
            max_cells: 7,
            ..Limits::default()
        };
        let e = from_json(&body(two_rows.clone()), &cells).expect_err("fails");
        assert_eq!(
            parts(e),
            (
                "the dataset has 8 cells (2 rows × 4 columns), more than the limit of 7".into(),
                p("/features"),
                None,
                true
            )
        );
        let exact = Limits {
            max_rows: 2,
            max_columns: 4,
            max_cells: 8,
        };
        assert!(from_json(&body(two_rows), &exact).is_ok());
    }

    #[test]
    fn json_and_csv_agree_on_a_binary_target() {
        let from_bools = read(json!({"features": [[1.5], [2]], "targets": [false, true],
            "feature_names": ["a"]}))
        .expect("reads");
        let from_csv = super::super::from_csv(b"a,target\n1.5,0\n2,1\n", None, &Limits::default())
            .expect("reads");
        assert_eq!(from_bools, from_csv);
    }

    #[test]
    fn show_keeps_messages_short() {
        assert_eq!(show(1.5), "1.5");
        assert_eq!(show(1e300), "1e300");
        assert_eq!(show(f64::INFINITY), "inf");
        assert_eq!(show(-1e-7), "-1e-7");
    }
}
