//! Tabular inputs: the columns of a raw table as a dataset holds them (numbers, text
//! categories, yes/no columns, missing cells) and the [`Encoder`] that turns raw rows into the
//! network's inputs. The encoder is fitted on the training split only and travels inside the
//! model document, so predictions take raw rows: numbers, strings and missing cells.
//!
//! A raw table is an `f32` matrix plus one [`RawColumn`] per column. A column stored as
//! numbers holds its values; a column stored as text holds the index of each cell's text in
//! the column's `vocab`. `NaN` is a missing cell in both. Pure computation: nothing here knows
//! about files, HTTP or databases.
//!
//! Here the columns and their schemas (what a dataset says of each column, and what a spec
//! may ask of it); `encoder` fits and applies the encoding.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::values::{DateFormat, NumberFormat, ValueFormat};
use super::vocab::Vocab;
use crate::nn::SpecError;

mod encoder;
pub use encoder::*;

/// What a column means to training: inferred at upload, overridable at upload and per job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    /// A number: imputed when missing, then standardised.
    Numeric,
    /// A category: one-hot, with missing as a category of its own and rare ones in "other".
    Categorical,
    /// Yes/no: one input, 1 for `true`/`yes`/`y`/`t`/`1`, 0 for `false`/`no`/`n`/`f`/`0`.
    Boolean,
    /// Not an input (an id, free text, or a column the user leaves out).
    Ignore,
    /// A date or timestamp: days since 1970 and the year (standardised), and the month, day
    /// of week, day of year and (with times) hour as cycles ([`super::values::date_features`]).
    Date,
}

impl ColumnType {
    pub const ALL: [&'static str; 5] = ["numeric", "categorical", "boolean", "ignore", "date"];

    pub fn name(self) -> &'static str {
        Self::ALL[self as usize]
    }

    pub fn parse(s: &str) -> Option<ColumnType> {
        match s {
            "numeric" => Some(ColumnType::Numeric),
            "categorical" => Some(ColumnType::Categorical),
            "boolean" => Some(ColumnType::Boolean),
            "ignore" => Some(ColumnType::Ignore),
            "date" => Some(ColumnType::Date),
            _ => None,
        }
    }
}

/// How a column's cells are held in the raw matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Storage {
    /// The values themselves.
    Number,
    /// Indexes into the column's vocabulary.
    Text,
}

/// What is known of a column without reading its cells: kept in a dataset's metadata, so a job
/// spec can be checked against it without decoding the stored data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColumnSchema {
    pub name: String,
    /// The type training uses unless a job says otherwise.
    #[serde(rename = "type")]
    pub kind: ColumnType,
    pub storage: Storage,
    /// Missing cells in the whole column.
    pub missing: u64,
    /// Distinct present values.
    pub distinct: u64,
    /// A text column whose every value reads as a number (it may be forced numeric).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub numeric_text: bool,
    /// A column whose every value reads as yes/no (it may be typed boolean).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub boolean_like: bool,
    /// How the column's text was read when it was not plain numbers (currency, percentages,
    /// dates…): its stored values are then the numbers (days since 1970 for dates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<ValueFormat>,
    /// Why the column has its type, in words ("numeric: currency, `$` and `,` removed").
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// One column of a raw table: its schema and, for text storage, its vocabulary (sorted).
#[derive(Clone, Debug, PartialEq)]
pub struct RawColumn {
    pub schema: ColumnSchema,
    pub vocab: Vocab,
}

impl RawColumn {
    /// A complete numeric column (the only kind a dataset had before tabular uploads).
    pub fn numeric(name: &str, distinct: u64) -> Self {
        RawColumn {
            schema: ColumnSchema {
                name: name.to_owned(),
                kind: ColumnType::Numeric,
                storage: Storage::Number,
                missing: 0,
                distinct,
                numeric_text: false,
                boolean_like: false,
                format: None,
                reason: String::new(),
            },
            vocab: Vocab::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.schema.name
    }

    /// The cell at raw value `v` (a value or a vocabulary index), as a predict request would
    /// send it.
    pub fn cell(&self, v: f32) -> Cell<'_> {
        if v.is_nan() {
            return Cell::Missing;
        }
        match self.schema.storage {
            Storage::Number => Cell::Number(v as f64),
            Storage::Text => match self.vocab.get(v as usize) {
                Some(s) => Cell::Text(s),
                None => Cell::Missing,
            },
        }
    }
}

/// One raw cell of a predict request (or of a table, through [`RawColumn::cell`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Cell<'a> {
    Missing,
    Number(f64),
    Text(&'a str),
}

/// The text yes/no reads as, or `None`.
pub fn boolean_value(s: &str) -> Option<f32> {
    const TRUE: [&str; 5] = ["true", "t", "yes", "y", "1"];
    const FALSE: [&str; 5] = ["false", "f", "no", "n", "0"];
    let l = s.trim().to_ascii_lowercase();
    if TRUE.contains(&l.as_str()) {
        Some(1.0)
    } else if FALSE.contains(&l.as_str()) {
        Some(0.0)
    } else {
        None
    }
}

/// A number as a category's name: its shortest form (`415`, `0.5`).
pub fn number_key(v: f64) -> String {
    let f = v as f32;
    if f == 0.0 { "0".into() } else { f.to_string() }
}

/// Why an encoder cannot be fitted or a column setting cannot apply.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("column \"{column}\": {message}")]
pub struct ColumnError {
    pub column: String,
    pub message: String,
}

impl ColumnError {
    fn new(column: &str, message: impl Into<String>) -> Self {
        ColumnError {
            column: column.to_owned(),
            message: message.into(),
        }
    }

    /// As a spec problem at `/columns/<name>`.
    pub fn to_spec_error(&self) -> SpecError {
        SpecError::new(
            format!("/columns/{}", pointer_token(&self.column)),
            format!("column \"{}\": {}", self.column, self.message),
        )
    }
}

/// A JSON pointer token (RFC 6901: `~` → `~0`, `/` → `~1`).
pub fn pointer_token(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// Checks that `kind` can apply to a column described by `schema`, before any data is read.
pub fn check_type(schema: &ColumnSchema, kind: ColumnType) -> Result<(), ColumnError> {
    let name = &schema.name;
    match (kind, schema.storage) {
        (ColumnType::Numeric, Storage::Text) if !schema.numeric_text => Err(ColumnError::new(
            name,
            "holds text, so it cannot be numeric; type it \"categorical\" or \"ignore\"",
        )),
        // Numbers are yes/no by being 0 or not; text must read as yes/no.
        (ColumnType::Boolean, Storage::Text) if !schema.boolean_like => Err(ColumnError::new(
            name,
            "holds values other than yes/no, true/false or 0/1, so it cannot be boolean; type it \"categorical\"",
        )),
        (ColumnType::Date, _) if !matches!(schema.format, Some(ValueFormat::Date(_))) => {
            Err(ColumnError::new(
                name,
                "was not read as dates, so it cannot be a date; type it \"date\" when uploading the file (columns) to have its cells read as dates",
            ))
        }
        (ColumnType::Numeric | ColumnType::Boolean | ColumnType::Categorical, _)
            if matches!(schema.format, Some(ValueFormat::Date(_))) =>
        {
            Err(ColumnError::new(
                name,
                "holds dates; type it \"date\" or \"ignore\"",
            ))
        }
        _ => Ok(()),
    }
}

/// Class weights as a job gives them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ClassWeight {
    /// `"balanced"`: n_rows / (n_classes · rows of the class), over the training split.
    Mode(BalancedMode),
    /// Label (as text) → weight; classes left out weigh 1.
    Map(BTreeMap<String, f32>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BalancedMode {
    Balanced,
}
