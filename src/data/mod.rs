//! Datasets: turns uploaded CSV and JSON into the engine's inputs, with errors that name the
//! row and column (or JSON pointer) of the first problem, and stores them in a compact binary
//! form. Pure data handling: no HTTP, no SQL, no async runtime; the `api` layer maps a
//! [`DataError`] to problem+json (413 when [`DataError::too_large`] is set, else 422) and the
//! `store` layer keeps [`Dataset::to_bytes`].
//!
//! Every [`Dataset`] this module hands out has at least one row and one feature column,
//! finite features (`NaN` only for a missing cell), finite numeric targets and exactly one
//! target per row.

mod columns;
mod csv;
pub mod json;
mod jsonl;
mod kinds;
mod parquet;
pub mod profile;
mod storage;
pub(crate) mod table;
pub mod warnings;

use ndarray::Array2;
use serde_json::Value;

use crate::nn::{ClassLabel, Samples, Targets};

pub use self::columns::Columns;
pub use self::csv::{
    CsvStream, Dialect, DialectOptions, Encoding, PIECE as CSV_PIECE, from_csv, from_csv_owned,
    from_csv_with,
};
pub use self::json::{JsonDataset, from_json, from_json_with, json_columns};
pub use self::jsonl::jsonl_columns;
pub use self::parquet::{is_parquet, parquet_columns};
pub use self::storage::ColumnParts;
pub use self::table::{DISTINCT_CAP, ReadOptions};

use crate::nn::portable::tabular::{ColumnSchema, ColumnType, RawColumn, Storage};

/// Size bounds for an uploaded dataset; exceeding one is a [`DataError`] with `too_large` set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Data rows (the CSV header does not count). Default 1 000 000.
    pub max_rows: usize,
    /// Columns including the target: the CSV's columns, or features plus target width for
    /// JSON. Default 10 000.
    pub max_columns: usize,
    /// Rows × columns, as counted above. Default 100 000 000 (400 MB of f32).
    pub max_cells: usize,
}

impl Limits {
    /// The server's defaults: `config.rs` takes its `--max-rows`, `--max-columns` and
    /// `--max-cells` defaults from here, so there is one source for them.
    pub const DEFAULT: Limits = Limits {
        max_rows: 1_000_000,
        max_columns: 10_000,
        max_cells: 100_000_000,
    };

    /// No bound at all (what a reader checks outside [`json::read_within`]).
    pub const NONE: Limits = Limits {
        max_rows: usize::MAX,
        max_columns: usize::MAX,
        max_cells: usize::MAX,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// Where an input problem is, for the HTTP layer's problem+json.
///
/// `row` is 1-based. For CSV it is the line of the file on which the record starts (the
/// header is line 1, so the first data row is usually row 2), which is what an editor shows;
/// errors about the whole file (empty, no data rows) or about the `target` parameter have no
/// row. For JSON it is the index in `features`/`targets` plus one, next to a 0-based
/// `pointer` (`row: Some(5)` goes with `/features/4/2`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct DataError {
    /// A full sentence naming row and column, e.g. `row 3, column "b": "x" is not a number`.
    pub message: String,
    /// JSON pointer into the request body (`/features/4/2`, `/targets`); `None` for CSV.
    pub pointer: Option<String>,
    /// 1-based row, see the type's documentation.
    pub row: Option<usize>,
    /// The column's name: the CSV header, or the feature name for a JSON feature value.
    pub column: Option<String>,
    /// A [`Limits`] bound was exceeded (the HTTP layer answers 413).
    pub too_large: bool,
}

impl DataError {
    fn new(message: impl Into<String>) -> Self {
        DataError {
            message: message.into(),
            pointer: None,
            row: None,
            column: None,
            too_large: false,
        }
    }

    fn row(mut self, row: usize) -> Self {
        self.row = Some(row);
        self
    }

    fn column(mut self, column: &str) -> Self {
        self.column = Some(column.to_owned());
        self
    }

    fn pointer(mut self, pointer: impl Into<String>) -> Self {
        self.pointer = Some(pointer.into());
        self
    }

    fn too_large(mut self) -> Self {
        self.too_large = true;
        self
    }
}

/// Features and targets of one uploaded dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub feature_names: Vec<String>,
    /// One name per target column: the CSV target column's header; for JSON `["target"]`, or
    /// `["target_0", …]` when each target is an array.
    pub target_names: Vec<String>,
    /// rows × features: for a number column its values, for a text column the index of each
    /// cell in the column's vocabulary; `NaN` for a missing cell.
    pub x: Array2<f32>,
    pub targets: Targets,
    /// One per feature column, in `x`'s order.
    pub columns: Vec<RawColumn>,
    /// Rows of the upload left out because their target was missing.
    pub dropped_rows: u64,
}

/// What validation needs to know of a stored dataset, kept in its metadata (`schema`) so a job
/// spec is checked without decoding the data.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    pub rows: usize,
    pub columns: Vec<ColumnSchema>,
    pub target: crate::nn::run::spec::TargetShape,
    #[serde(default)]
    pub dropped_rows: u64,
}

impl Summary {
    pub fn of(d: &Dataset) -> Summary {
        Summary::new(d.rows(), d.schema(), &d.targets, d.dropped_rows)
    }

    /// What training `spec` on this dataset (and on `validation`, a separate validation
    /// dataset) holds in memory at its peak, and the input columns that cost the most.
    pub fn job_memory(
        &self,
        spec: &crate::nn::TrainSpec,
        validation: Option<&Summary>,
    ) -> Result<JobMemory, Vec<crate::nn::SpecError>> {
        let (cols, _) = spec.resolve_columns(&self.columns)?;
        let widths = crate::nn::portable::tabular::max_widths(
            &cols,
            self.rows as u64,
            &spec.encoder_options(),
        )
        .map_err(|e| vec![e.to_spec_error()])?;
        let width = widths.iter().sum();
        let plan = match validation {
            Some(_) => spec.plan_with_validation_set(width, self.rows, &self.target),
            None => spec.plan(width, self.rows, &self.target),
        }?;
        let val_rows = validation.map_or(0, |v| v.rows);
        let (rows, train_rows) = match validation {
            Some(_) => (self.rows + val_rows, self.rows),
            None => (
                self.rows,
                self.rows - ((self.rows as f64) * spec.validation_split as f64).round() as usize,
            ),
        };
        let batch = spec.batch_size.min(train_rows.max(1));
        let bytes = crate::nn::run::cost::training_memory(
            &plan,
            self.columns.len(),
            rows,
            train_rows,
            batch,
        );
        let mut widest: Vec<(String, usize)> = cols
            .iter()
            .zip(widths)
            .filter(|(_, w)| *w > 1)
            .map(|(c, w)| (c.name.clone(), w))
            .collect();
        widest.sort_by_key(|c| std::cmp::Reverse(c.1));
        widest.truncate(3);
        Ok(JobMemory {
            bytes,
            rows,
            inputs: width,
            parameters: plan.parameter_count,
            widest,
        })
    }

    fn new(rows: usize, columns: Vec<ColumnSchema>, targets: &Targets, dropped_rows: u64) -> Self {
        Summary {
            rows,
            columns,
            target: crate::nn::run::train::target_shape(targets),
            dropped_rows,
        }
    }
}

/// What a job on a dataset holds in memory at its peak ([`Summary::job_memory`]).
#[derive(Clone, Debug, PartialEq)]
pub struct JobMemory {
    pub bytes: usize,
    /// Rows it holds (training and validation).
    pub rows: usize,
    /// Inputs after encoding (one-hot columns count one per category).
    pub inputs: usize,
    pub parameters: usize,
    /// Up to three input columns that encode widest, widest first, with their widths.
    pub widest: Vec<(String, usize)>,
}

impl JobMemory {
    /// Why a job over `limit` bytes is refused, and what to change.
    pub fn refusal(&self, limit: u64) -> String {
        use crate::memory::human;
        let mut why = format!(
            "training this job needs about {} of memory, more than the {} one job may use on this server (--max-job-memory): {} rows × {} inputs",
            human(self.bytes as u64),
            human(limit),
            self.rows,
            self.inputs
        );
        if !self.widest.is_empty() {
            let cols: Vec<String> = self
                .widest
                .iter()
                .map(|(n, w)| format!("{n:?} ({w} inputs)"))
                .collect();
            why.push_str(&format!(
                "; the widest columns are {}: set \"max_categories\" (say 100) to keep only the most frequent categories, or type such columns \"ignore\" in \"columns\"",
                cols.join(", ")
            ));
        }
        why.push_str("; or train on fewer rows, with fewer units or a smaller batch_size");
        why
    }
}

/// Up to this many distinct whole numbers in one target column read as class labels.
const MAX_INTEGER_CLASSES: usize = 20;

impl Dataset {
    /// A dataset of complete numeric features (as every dataset was before tabular uploads).
    pub fn numeric(
        feature_names: Vec<String>,
        target_names: Vec<String>,
        x: Array2<f32>,
        targets: Targets,
    ) -> Dataset {
        let columns = feature_names
            .iter()
            .map(|n| RawColumn::numeric(n, 0))
            .collect();
        Dataset {
            feature_names,
            target_names,
            x,
            targets,
            columns,
            dropped_rows: 0,
        }
    }

    /// Every column numeric, stored as numbers, with no missing cell: the dataset encodes to
    /// itself and stores in the original format.
    pub fn is_plain(&self) -> bool {
        self.dropped_rows == 0
            && self.columns.iter().all(|c| {
                c.schema.kind == ColumnType::Numeric
                    && c.schema.storage == Storage::Number
                    && c.schema.missing == 0
            })
    }

    /// The columns' schemas, for the dataset's metadata.
    pub fn schema(&self) -> Vec<ColumnSchema> {
        self.columns.iter().map(|c| c.schema.clone()).collect()
    }

    pub fn rows(&self) -> usize {
        self.x.nrows()
    }

    pub fn inputs(&self) -> usize {
        self.x.ncols()
    }

    /// Target columns: 1 for labels.
    pub fn outputs(&self) -> usize {
        outputs_of(&self.targets)
    }

    /// The classes the targets can stand for (see `classes_of`).
    pub fn classes(&self) -> Option<Vec<ClassLabel>> {
        classes_of(&self.targets)
    }

    pub fn samples(&self) -> Samples {
        Samples {
            x: self.x.clone(),
            targets: self.targets.clone(),
        }
    }

    /// Compact binary form for storage (postcard, versioned); read back with
    /// [`Dataset::from_bytes`].
    pub fn to_bytes(&self) -> Vec<u8> {
        storage::to_bytes(self)
    }

    /// Reads [`Dataset::to_bytes`] output, checking that the shapes agree; the error is for
    /// logs, since stored bytes are not user input.
    pub fn from_bytes(b: &[u8]) -> Result<Dataset, String> {
        storage::from_bytes(b)
    }

    /// The first `n` rows as `[{"features": [..], "target": ..}]`; `target` is a label (number
    /// or string), a number, or an array of numbers when there are several target columns.
    pub fn preview(&self, n: usize) -> Value {
        self.slice(0, n)
    }

    /// Rows `offset..offset + n` (fewer at the end) in [`Dataset::preview`]'s form.
    pub fn slice(&self, offset: usize, n: usize) -> Value {
        // The fields are public, so do not trust that targets and features agree in length.
        let end = offset
            .saturating_add(n)
            .min(self.rows())
            .min(self.targets.len());
        let rows = (offset.min(end)..end)
            .map(|i| {
                let features = self
                    .x
                    .row(i)
                    .iter()
                    .enumerate()
                    .map(|(j, &v)| {
                        let col = self.columns.get(j);
                        match col.map(|c| c.cell(v)) {
                            Some(crate::nn::portable::tabular::Cell::Text(t)) => Value::from(t),
                            Some(crate::nn::portable::tabular::Cell::Missing) => Value::Null,
                            // A date as ISO 8601 text, which predict reads back.
                            _ => match col.and_then(|c| c.schema.format.as_ref()) {
                                Some(crate::nn::portable::values::ValueFormat::Date(f)) => {
                                    Value::from(crate::nn::portable::values::format_days(
                                        v as f64, f,
                                    ))
                                }
                                _ => json_number(v),
                            },
                        }
                    })
                    .collect();
                let target = match &self.targets {
                    Targets::Labels(l) => match l.get(i) {
                        Some(ClassLabel::Integer(k)) => Value::from(*k),
                        Some(ClassLabel::Text(s)) => Value::from(s.as_str()),
                        None => Value::Null,
                    },
                    Targets::Values(v) if v.ncols() == 1 => json_number(v.row(i)[0]),
                    // A dataset without a target (`?labels=none`).
                    Targets::Values(v) if v.ncols() == 0 => Value::Null,
                    Targets::Values(v) => {
                        Value::Array(v.row(i).iter().map(|&t| json_number(t)).collect())
                    }
                };
                serde_json::json!({ "features": Value::Array(features), "target": target })
            })
            .collect();
        Value::Array(rows)
    }
}

/// Target columns: 1 for labels.
fn outputs_of(targets: &Targets) -> usize {
    match targets {
        Targets::Labels(_) => 1,
        Targets::Values(v) => v.ncols(),
    }
}

/// The classes the targets can stand for: the sorted distinct labels; for a single column
/// of whole numbers with at most 20 distinct values, those values; otherwise `None`.
fn classes_of(targets: &Targets) -> Option<Vec<ClassLabel>> {
    match targets {
        Targets::Labels(_) => targets.classes(),
        Targets::Values(v) if v.ncols() == 1 => Some(
            integer_classes(v.iter().copied())?
                .into_iter()
                .map(|(k, _)| ClassLabel::Integer(k))
                .collect(),
        ),
        Targets::Values(_) => None,
    }
}

/// The whole numbers a numeric target holds and the rows of each, by value: `None` when one is
/// not whole (or too large to tell from its neighbours in an f32, past 1e9), or when there are
/// more than [`MAX_INTEGER_CLASSES`]. One pass over a few counters (a target has many rows and
/// few classes).
pub(crate) fn integer_classes(values: impl Iterator<Item = f32>) -> Option<Vec<(i64, u64)>> {
    crate::nn::run::train::whole_number_counts(values, MAX_INTEGER_CLASSES)
}

/// Returns freed heap memory to the system. A large upload is parsed into many small buffers
/// that are freed in turn; without this the process keeps their pages, and each stage of an
/// upload adds to its resident memory instead of reusing it.
pub fn release_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory of the allocator's arenas to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// An f32 as the shortest decimal that reads back to it (1.4, not 1.399999976158142).
fn json_number(v: f32) -> Value {
    v.to_string()
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

/// Why a number cannot be a feature or numeric target.
pub(crate) enum BadNumber {
    NotFinite,
    TooLarge,
}

impl BadNumber {
    fn describe(&self, shown: &str) -> String {
        match self {
            BadNumber::NotFinite => format!("{shown} must be a finite number"),
            BadNumber::TooLarge => format!(
                "{shown} is too large for a 32-bit float (the largest magnitude is about 3.4e38)"
            ),
        }
    }
}

/// The f32 the engine computes with, or why `v` has none.
fn finite_f32(v: f64) -> Result<f32, BadNumber> {
    if !v.is_finite() {
        Err(BadNumber::NotFinite)
    } else if v.abs() > f32::MAX as f64 {
        Err(BadNumber::TooLarge)
    } else {
        Ok(v as f32)
    }
}

/// A user's text quoted for an error message, cut short so a huge cell cannot bloat it.
fn quoted(s: &str) -> String {
    const MAX: usize = 40;
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{:?}…", &s[..cut]),
        None => format!("{s:?}"),
    }
}

/// Names for an error message, at most 20 of them.
fn name_list<'a>(names: impl ExactSizeIterator<Item = &'a str>) -> String {
    const MAX: usize = 20;
    let total = names.len();
    let mut listed: Vec<String> = names.take(MAX).map(quoted).collect();
    if total > MAX {
        listed.push(format!("… and {} more", total - MAX));
    }
    listed.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn text(s: &str) -> ClassLabel {
        ClassLabel::Text(s.to_owned())
    }

    fn with_values(v: Array2<f32>) -> Dataset {
        Dataset {
            feature_names: vec!["a".into()],
            target_names: (0..v.ncols()).map(|j| format!("target_{j}")).collect(),
            x: Array2::zeros((v.nrows(), 1)),
            targets: Targets::Values(v),
            columns: vec![],
            dropped_rows: 0,
        }
    }

    #[test]
    fn limits_default_to_documented_bounds() {
        let l = Limits::default();
        assert_eq!(
            (l.max_rows, l.max_columns, l.max_cells),
            (1_000_000, 10_000, 100_000_000)
        );
    }

    #[test]
    fn shape_accessors() {
        let d = Dataset {
            feature_names: vec!["a".into(), "b".into()],
            target_names: vec!["y0".into(), "y1".into(), "y2".into()],
            x: array![[1.0, 2.0], [3.0, 4.0]],
            targets: Targets::Values(array![[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]),
            columns: vec![],
            dropped_rows: 0,
        };
        assert_eq!((d.rows(), d.inputs(), d.outputs()), (2, 2, 3));
        let s = d.samples();
        assert_eq!(s.x, d.x);
        assert_eq!(s.targets, d.targets);
        let labels = Dataset {
            targets: Targets::Labels(vec![text("a"), text("b")]),
            target_names: vec!["y".into()],
            ..d
        };
        assert_eq!(labels.outputs(), 1);
    }

    #[test]
    fn classes_of_labels_are_sorted_and_distinct() {
        let d = Dataset {
            feature_names: vec!["a".into()],
            target_names: vec!["y".into()],
            x: array![[0.0], [0.0], [0.0]],
            targets: Targets::Labels(vec![text("b"), text("a"), text("b")]),
            columns: vec![],
            dropped_rows: 0,
        };
        assert_eq!(d.classes(), Some(vec![text("a"), text("b")]));
    }

    #[test]
    fn classes_of_a_whole_number_column() {
        let d = with_values(array![[2.0], [0.0], [1.0], [2.0], [-1.0]]);
        assert_eq!(
            d.classes(),
            Some(vec![
                ClassLabel::Integer(-1),
                ClassLabel::Integer(0),
                ClassLabel::Integer(1),
                ClassLabel::Integer(2)
            ])
        );
        // exactly 20 distinct values still count as classes, 21 do not
        let twenty = Array2::from_shape_fn((40, 1), |(i, _)| (i % 20) as f32);
        assert_eq!(with_values(twenty).classes().map(|c| c.len()), Some(20));
        let twenty_one = Array2::from_shape_fn((21, 1), |(i, _)| i as f32);
        assert_eq!(with_values(twenty_one).classes(), None);
    }

    #[test]
    fn no_classes_for_fractions_or_several_columns() {
        assert_eq!(with_values(array![[1.0], [1.5]]).classes(), None);
        assert_eq!(with_values(array![[1.0, 0.0], [0.0, 1.0]]).classes(), None);
        assert_eq!(with_values(array![[1e10], [0.0]]).classes(), None);
    }

    #[test]
    fn preview_shows_shortest_numbers_and_labels() {
        let d = Dataset {
            feature_names: vec!["a".into(), "b".into()],
            target_names: vec!["y".into()],
            x: array![[1.4, -2.0], [0.1, 3.5], [9.0, 9.0]],
            targets: Targets::Labels(vec![text("cat"), ClassLabel::Integer(3), text("x")]),
            columns: vec![],
            dropped_rows: 0,
        };
        assert_eq!(
            d.preview(2),
            serde_json::json!([
                {"features": [1.4, -2.0], "target": "cat"},
                {"features": [0.1, 3.5], "target": 3},
            ])
        );
        assert_eq!(d.preview(10).as_array().map(Vec::len), Some(3));
        assert_eq!(d.preview(0), serde_json::json!([]));
    }

    #[test]
    fn preview_of_values() {
        let one = with_values(array![[0.25]]);
        assert_eq!(
            one.preview(1),
            serde_json::json!([{"features": [0.0], "target": 0.25}])
        );
        let two = with_values(array![[1.0, 0.0]]);
        assert_eq!(
            two.preview(1),
            serde_json::json!([{"features": [0.0], "target": [1.0, 0.0]}])
        );
    }

    #[test]
    fn preview_of_a_hand_built_mismatch_stops_at_the_shorter() {
        let d = Dataset {
            feature_names: vec!["a".into()],
            target_names: vec!["y".into()],
            x: array![[1.0], [2.0], [3.0]],
            targets: Targets::Labels(vec![text("only")]),
            columns: vec![],
            dropped_rows: 0,
        };
        assert_eq!(
            d.preview(5),
            serde_json::json!([{"features": [1.0], "target": "only"}])
        );
    }

    #[test]
    fn quoted_cuts_long_text_on_a_char_boundary() {
        assert_eq!(quoted("x"), "\"x\"");
        let long = "é".repeat(100);
        assert_eq!(quoted(&long), format!("{:?}…", "é".repeat(40)));
    }

    #[test]
    fn name_list_stops_after_twenty() {
        let names: Vec<String> = (0..25).map(|i| format!("c{i}")).collect();
        let listed = name_list(names.iter().map(String::as_str));
        assert!(listed.starts_with("\"c0\", \"c1\""), "{listed}");
        assert!(listed.ends_with("\"c19\", … and 5 more"), "{listed}");
    }
}
