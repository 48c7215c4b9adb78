//! The [`Encoder`]: fitted on the training split's raw columns, it turns raw rows into the
//! network's inputs (numbers standardised by the model, optionally binned; categories
//! one-hot with an "other" slot; yes/no columns; dates as numbers; missing cells imputed with
//! an indicator), and travels inside the model document.

use std::collections::{BTreeMap, HashMap};

use ndarray::{Array2, ArrayView1, ArrayView2};
use serde::{Deserialize, Serialize};

use super::super::values;
use super::*;

/// How a numeric column's missing cells are filled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Imputation {
    /// The training split's median.
    #[default]
    Median,
    /// The training split's mean.
    Mean,
    Zero,
}

/// Category limits for one-hot encoding; see [`TabularOptions`] for their defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct EncoderOptions {
    pub imputation: Imputation,
    /// Numeric columns as piecewise-linear encodings over this many quantile bins of the
    /// training split (0: the value itself). See [`EncodedColumn::Numeric`]'s `bins`.
    pub numeric_bins: u32,
    /// Categories seen fewer times than this in the training split go to "other".
    pub min_frequency: u64,
    /// At most this many one-hot inputs per column, "other" included; the rarest fold.
    pub max_categories: Option<u64>,
}

impl Default for EncoderOptions {
    fn default() -> Self {
        EncoderOptions {
            imputation: Imputation::Median,
            numeric_bins: 0,
            min_frequency: 1,
            max_categories: None,
        }
    }
}

/// Without `max_categories`, a categorical column with more distinct values than this is an
/// error (it is more likely an id or free text than a category).
pub const CATEGORY_LIMIT: u64 = 200;

/// A column as the encoder maps it, in the model document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum EncodedColumn {
    /// One input, the value (or `fill` when missing); a second input, 1 when missing, if the
    /// training split had missing values.
    Numeric {
        name: String,
        fill: f32,
        #[serde(default)]
        missing_indicator: bool,
        /// How a text cell is read (currency, thousands, percent); plain numbers when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        format: Option<NumberFormat>,
        /// Piecewise-linear encoding (Gorishniy, Rubachev & Babenko, NeurIPS 2022): with
        /// edges `b₀ < … < b_T` (quantiles of the training split) the value becomes `T` inputs
        /// instead of one, input `t` being `clamp((x − b_t) / (b_{t+1} − b_t), 0, 1)`: 1 for
        /// the bins below the value, its position inside its own bin, 0 above. Empty: the
        /// value itself.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        bins: Vec<f32>,
    },
    /// A date: its inputs ([`values::date_width`]) from the day number (`fill`, the training
    /// split's median, when missing), then 1 when missing if the training split had missing
    /// cells. Text cells are read in `format`; numbers are taken as days since 1970-01-01.
    Date {
        name: String,
        format: DateFormat,
        fill: f64,
        #[serde(default)]
        missing_indicator: bool,
    },
    /// As numeric, from yes/no text (see [`boolean_value`]) or numbers (0 is no).
    Boolean {
        name: String,
        fill: f32,
        #[serde(default)]
        missing_indicator: bool,
    },
    /// One input per category, then one for missing (if the training split had missing
    /// cells), then one for "other" (if categories were folded). A category never seen in
    /// training goes to "other", or to no input at all when there is no "other".
    Categorical {
        name: String,
        categories: Vec<String>,
        #[serde(default)]
        missing: bool,
        #[serde(default)]
        other: bool,
    },
    /// No input.
    Ignore { name: String },
}

impl EncodedColumn {
    pub fn name(&self) -> &str {
        match self {
            EncodedColumn::Numeric { name, .. }
            | EncodedColumn::Date { name, .. }
            | EncodedColumn::Boolean { name, .. }
            | EncodedColumn::Categorical { name, .. }
            | EncodedColumn::Ignore { name } => name,
        }
    }

    fn width(&self) -> usize {
        match self {
            EncodedColumn::Numeric {
                missing_indicator,
                bins,
                ..
            } => bins.len().saturating_sub(1).max(1) + usize::from(*missing_indicator),
            EncodedColumn::Boolean {
                missing_indicator, ..
            } => 1 + usize::from(*missing_indicator),
            EncodedColumn::Date {
                format,
                missing_indicator,
                ..
            } => values::date_width(format) + usize::from(*missing_indicator),
            EncodedColumn::Categorical {
                categories,
                missing,
                other,
                ..
            } => categories.len() + usize::from(*missing) + usize::from(*other),
            EncodedColumn::Ignore { .. } => 0,
        }
    }
}

/// Raw rows → network inputs: one [`EncodedColumn`] per raw column, in the raw order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Encoder {
    pub columns: Vec<EncodedColumn>,
}

/// Why a table cannot be encoded: a cell its column cannot read, or no memory for the result.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum TransformError {
    #[error(transparent)]
    Column(#[from] ColumnError),
    #[error(transparent)]
    Memory(#[from] crate::nn::math::alloc::AllocError),
}

/// The widest encoding `columns` (with their final types) can have, from their schemas alone:
/// what validation counts parameters with before any data is read. Also checks the settings
/// the schema can decide (an empty column, too many categories).
pub fn max_width(
    columns: &[ColumnSchema],
    rows: u64,
    opts: &EncoderOptions,
) -> Result<usize, ColumnError> {
    Ok(max_widths(columns, rows, opts)?.iter().sum())
}

/// [`max_width`] column by column: the most inputs each column can encode to.
pub fn max_widths(
    columns: &[ColumnSchema],
    rows: u64,
    opts: &EncoderOptions,
) -> Result<Vec<usize>, ColumnError> {
    let mut widths = Vec::with_capacity(columns.len());
    for c in columns {
        if c.kind != ColumnType::Ignore && c.missing >= rows {
            return Err(ColumnError::new(
                &c.name,
                "is entirely empty; remove it from the file or type it \"ignore\"",
            ));
        }
        check_type(c, c.kind)?;
        let has_missing = usize::from(c.missing > 0);
        widths.push(match c.kind {
            ColumnType::Numeric if opts.numeric_bins >= 2 => {
                opts.numeric_bins as usize + has_missing
            }
            ColumnType::Numeric | ColumnType::Boolean => 1 + has_missing,
            ColumnType::Date => {
                let w = match &c.format {
                    Some(ValueFormat::Date(f)) => values::date_width(f),
                    // (check_type refuses a date column without one: the widest date.)
                    _ => 10,
                };
                w + has_missing
            }
            ColumnType::Ignore => 0,
            ColumnType::Categorical => {
                let kept = category_count(&c.name, c.distinct, opts)?;
                kept as usize + has_missing
            }
        });
    }
    Ok(widths)
}

/// One-hot inputs (kept categories plus a possible "other") for `distinct` categories.
fn category_count(name: &str, distinct: u64, opts: &EncoderOptions) -> Result<u64, ColumnError> {
    match opts.max_categories {
        Some(m) => Ok(distinct.min(m)),
        None if distinct > CATEGORY_LIMIT => Err(ColumnError::new(
            name,
            format!(
                "has {distinct} distinct values, more than {CATEGORY_LIMIT} categories; set \"max_categories\" to keep the most frequent and fold the rest into \"other\", or type it \"ignore\""
            ),
        )),
        None => Ok(distinct),
    }
}

/// Per-row key of a categorical cell: the vocabulary text, or a number's shortest form.
fn category_of(col: &RawColumn, v: f32) -> Option<std::borrow::Cow<'_, str>> {
    match col.cell(v) {
        Cell::Missing => None,
        Cell::Number(n) => Some(number_key(n).into()),
        Cell::Text(s) => Some(s.into()),
    }
}

/// A numeric reading of a raw value: the number itself, or the text read as a number
/// (a column forced numeric) or as yes/no (a boolean column).
fn numeric_of(col: &RawColumn, kind: ColumnType, v: f32) -> Result<Option<f32>, ColumnError> {
    match (col.cell(v), kind) {
        (Cell::Missing, _) => Ok(None),
        (Cell::Number(n), ColumnType::Boolean) => Ok(Some(if n == 0.0 { 0.0 } else { 1.0 })),
        (Cell::Number(n), _) => Ok(Some(n as f32)),
        (Cell::Text(s), ColumnType::Boolean) => boolean_value(s).map(Some).ok_or_else(|| {
            ColumnError::new(
                col.name(),
                format!("{s:?} is not yes/no, true/false or 0/1"),
            )
        }),
        (Cell::Text(s), _) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite() && f.abs() <= f32::MAX as f64)
            .map(|f| Some(f as f32))
            .ok_or_else(|| {
                ColumnError::new(
                    col.name(),
                    format!("{s:?} is not a number; a column typed \"numeric\" holds only numbers"),
                )
            }),
    }
}

impl Encoder {
    /// Fits on the training rows `x` (raw) of `columns`, each with its final type.
    pub fn fit(
        x: ArrayView2<f32>,
        columns: &[RawColumn],
        opts: &EncoderOptions,
    ) -> Result<Encoder, ColumnError> {
        let mut out = Vec::with_capacity(columns.len());
        for (j, col) in columns.iter().enumerate() {
            let values = x.column(j);
            let name = col.name().to_owned();
            let kind = col.schema.kind;
            check_type(&col.schema, kind)?;
            if kind == ColumnType::Ignore {
                out.push(EncodedColumn::Ignore { name });
                continue;
            }
            let missing = values.iter().filter(|v| v.is_nan()).count();
            if missing == values.len() {
                return Err(ColumnError::new(
                    &name,
                    "has no values in the training rows; remove it or type it \"ignore\"",
                ));
            }
            out.push(match kind {
                ColumnType::Numeric | ColumnType::Boolean => {
                    let mut present = Vec::with_capacity(values.len() - missing);
                    for &v in values {
                        if let Some(n) = numeric_of(col, kind, v)? {
                            present.push(n);
                        }
                    }
                    let fill = impute(&mut present, opts.imputation);
                    let missing_indicator = missing > 0;
                    if kind == ColumnType::Numeric {
                        EncodedColumn::Numeric {
                            name,
                            fill,
                            missing_indicator,
                            format: match &col.schema.format {
                                Some(ValueFormat::Number(f)) => Some(f.clone()),
                                _ => None,
                            },
                            bins: quantile_edges(&mut present, opts.numeric_bins),
                        }
                    } else {
                        EncodedColumn::Boolean {
                            name,
                            fill,
                            missing_indicator,
                        }
                    }
                }
                ColumnType::Categorical => fit_categories(col, values, missing > 0, opts)?,
                ColumnType::Date => {
                    let Some(ValueFormat::Date(format)) = &col.schema.format else {
                        unreachable!("check_type refuses a date column without a date format")
                    };
                    let mut present: Vec<f32> =
                        values.iter().copied().filter(|v| !v.is_nan()).collect();
                    let fill = impute(&mut present, Imputation::Median) as f64;
                    EncodedColumn::Date {
                        name,
                        format: format.clone(),
                        fill,
                        missing_indicator: missing > 0,
                    }
                }
                ColumnType::Ignore => unreachable!("handled above"),
            });
        }
        Ok(Encoder { columns: out })
    }

    /// Network inputs per row.
    pub fn width(&self) -> usize {
        self.columns.iter().map(EncodedColumn::width).sum()
    }

    /// Whether encoding changes nothing: every column numeric, without a missing indicator.
    pub fn is_identity(&self) -> bool {
        self.columns.iter().all(|c| {
            matches!(
                c,
                EncodedColumn::Numeric {
                    missing_indicator: false,
                    format: None,
                    bins,
                    ..
                } if bins.is_empty()
            )
        })
    }

    /// Raw columns a predict row has.
    pub fn raw_width(&self) -> usize {
        self.columns.len()
    }

    /// Names of the inputs: `bill_length_mm`, `bill_length_mm (missing)`, `island=Biscoe`,
    /// `island (missing)`, `island (other)`.
    pub fn feature_names(&self) -> Vec<String> {
        let mut names = Vec::with_capacity(self.width());
        for c in &self.columns {
            match c {
                EncodedColumn::Numeric {
                    name,
                    missing_indicator,
                    bins,
                    ..
                } if bins.len() >= 2 => {
                    names.extend((1..bins.len()).map(|t| format!("{name} (bin {t})")));
                    if *missing_indicator {
                        names.push(format!("{name} (missing)"));
                    }
                }
                EncodedColumn::Numeric {
                    name,
                    missing_indicator,
                    ..
                }
                | EncodedColumn::Boolean {
                    name,
                    missing_indicator,
                    ..
                } => {
                    names.push(name.clone());
                    if *missing_indicator {
                        names.push(format!("{name} (missing)"));
                    }
                }
                EncodedColumn::Date {
                    name,
                    format,
                    missing_indicator,
                    ..
                } => {
                    names.extend(values::date_feature_names(name, format));
                    if *missing_indicator {
                        names.push(format!("{name} (missing)"));
                    }
                }
                EncodedColumn::Categorical {
                    name,
                    categories,
                    missing,
                    other,
                } => {
                    names.extend(categories.iter().map(|k| format!("{name}={k}")));
                    if *missing {
                        names.push(format!("{name} (missing)"));
                    }
                    if *other {
                        names.push(format!("{name} (other)"));
                    }
                }
                EncodedColumn::Ignore { .. } => {}
            }
        }
        names
    }

    /// Which inputs carry a continuous value (the rest are 0/1 indicators, which
    /// standardisation leaves alone).
    pub fn continuous(&self) -> Vec<bool> {
        let mut c = Vec::with_capacity(self.width());
        for col in &self.columns {
            match col {
                // A piecewise-linear encoding's inputs are already in [0, 1].
                EncodedColumn::Numeric { bins, .. } if bins.len() >= 2 => {
                    c.extend(std::iter::repeat_n(false, col.width()));
                }
                EncodedColumn::Numeric {
                    missing_indicator, ..
                } => {
                    c.push(true);
                    if *missing_indicator {
                        c.push(false);
                    }
                }
                EncodedColumn::Date {
                    format,
                    missing_indicator,
                    ..
                } => {
                    c.extend(values::date_continuous(format));
                    if *missing_indicator {
                        c.push(false);
                    }
                }
                other => c.extend(std::iter::repeat_n(false, other.width())),
            }
        }
        c
    }

    /// Encodes raw table rows (`x` holds `columns`' values or vocabulary indexes).
    pub fn transform_table(
        &self,
        x: ArrayView2<f32>,
        columns: &[RawColumn],
    ) -> Result<Array2<f32>, TransformError> {
        let mut out = crate::nn::math::alloc::zeros(x.nrows(), self.width(), "the encoded table")?;
        let mut at = 0;
        for (j, (enc, col)) in self.columns.iter().zip(columns).enumerate() {
            let w = enc.width();
            let values = x.column(j);
            match enc {
                EncodedColumn::Ignore { .. } => {}
                EncodedColumn::Numeric { .. } | EncodedColumn::Boolean { .. } => {
                    let kind = if matches!(enc, EncodedColumn::Boolean { .. }) {
                        ColumnType::Boolean
                    } else {
                        ColumnType::Numeric
                    };
                    for (i, &v) in values.iter().enumerate() {
                        let n = numeric_of(col, kind, v)?;
                        write_numeric(enc, n, out.row_mut(i).as_slice_mut().unwrap_or(&mut []), at);
                    }
                }
                EncodedColumn::Date { .. } => {
                    for (i, &v) in values.iter().enumerate() {
                        let d = (!v.is_nan()).then_some(v as f64);
                        write_date(enc, d, out.row_mut(i).as_slice_mut().unwrap_or(&mut []), at);
                    }
                }
                EncodedColumn::Categorical { .. } => {
                    // One lookup per vocabulary entry, not per row, for text columns.
                    let slots: Option<Vec<Option<usize>>> = (col.schema.storage == Storage::Text)
                        .then(|| col.vocab.iter().map(|k| enc_slot(enc, Some(k))).collect());
                    let missing_slot = enc_slot(enc, None);
                    for (i, &v) in values.iter().enumerate() {
                        let slot = if v.is_nan() {
                            missing_slot
                        } else if let Some(s) = &slots {
                            s.get(v as usize).copied().flatten()
                        } else {
                            enc_slot(enc, category_of(col, v).as_deref())
                        };
                        if let Some(s) = slot {
                            out[[i, at + s]] = 1.0;
                        }
                    }
                }
            }
            at += w;
        }
        Ok(out)
    }

    /// Encodes the cells of one predict row (as many cells as raw columns). A cell that cannot
    /// be read for its column (text in a numeric column) is an error naming the column.
    pub fn transform_row(&self, cells: &[Cell<'_>], out: &mut [f32]) -> Result<(), ColumnError> {
        let mut at = 0;
        for (enc, cell) in self.columns.iter().zip(cells) {
            let w = enc.width();
            match enc {
                EncodedColumn::Ignore { .. } => {}
                EncodedColumn::Numeric { name, format, .. } => {
                    let n = match cell {
                        Cell::Missing => None,
                        Cell::Number(n) => Some(*n as f32),
                        // Text in a decimal-comma column reads in its locale only ("1.250" is
                        // 1250 there); otherwise as a plain number first.
                        Cell::Text(s) => match match format {
                            Some(f) if f.decimal == ',' => values::parse_number(s, f),
                            _ => s.trim().parse::<f64>().ok().or_else(|| {
                                format.as_ref().and_then(|f| values::parse_number(s, f))
                            }),
                        } {
                            Some(n) => Some(n as f32),
                            None => {
                                let how = match format {
                                    Some(f) => format!(
                                        "; this column is numeric, written as {}",
                                        values::describe_number(f)
                                    ),
                                    None => "; this column is numeric".into(),
                                };
                                return Err(ColumnError::new(
                                    name,
                                    format!("{s:?} is not a number{how}"),
                                ));
                            }
                        },
                    };
                    if n.is_some_and(|n| !n.is_finite()) {
                        return Err(ColumnError::new(
                            name,
                            "the value must be a finite 32-bit number",
                        ));
                    }
                    write_numeric(enc, n, out, at);
                }
                EncodedColumn::Date { name, format, .. } => {
                    let d = match cell {
                        Cell::Missing => None,
                        // Days since 1970-01-01, within the years 1 to 9999.
                        Cell::Number(n) if (-719_162.0..=2_932_896.0).contains(n) => Some(*n),
                        Cell::Number(_) => {
                            return Err(ColumnError::new(
                                name,
                                "a date as a number is days since 1970-01-01, within the years 1 to 9999",
                            ));
                        }
                        Cell::Text(s) => Some(values::parse_date(s, format).ok_or_else(|| {
                            ColumnError::new(
                                name,
                                format!(
                                    "{s:?} is not a date; this column holds {}",
                                    values::describe_date(format)
                                ),
                            )
                        })?),
                    };
                    write_date(enc, d, out, at);
                }
                EncodedColumn::Boolean { name, .. } => {
                    let n = match cell {
                        Cell::Missing => None,
                        Cell::Number(n) => Some(if *n == 0.0 { 0.0 } else { 1.0 }),
                        Cell::Text(s) => Some(boolean_value(s).ok_or_else(|| {
                            ColumnError::new(
                                name,
                                format!(
                                    "{s:?} is not yes/no, true/false or 0/1; this column is boolean"
                                ),
                            )
                        })?),
                    };
                    write_numeric(enc, n, out, at);
                }
                EncodedColumn::Categorical { .. } => {
                    let key = match cell {
                        Cell::Missing => None,
                        Cell::Number(n) => Some(std::borrow::Cow::Owned(number_key(*n))),
                        Cell::Text(s) => Some(std::borrow::Cow::Borrowed(s.trim())),
                    };
                    if let Some(s) = enc_slot(enc, key.as_deref()) {
                        out[at + s] = 1.0;
                    }
                }
            }
            at += w;
        }
        Ok(())
    }

    /// Checks a document's encoder against the network's input width; problems point into
    /// `/encoder`.
    pub fn check(&self, input_dim: usize) -> Result<(), Vec<SpecError>> {
        let mut errs = vec![];
        if self.columns.is_empty() {
            errs.push(SpecError::new(
                "/encoder/columns",
                "needs at least one column",
            ));
        }
        let mut seen = HashMap::new();
        for (i, c) in self.columns.iter().enumerate() {
            if let Some(first) = seen.insert(c.name(), i) {
                errs.push(SpecError::new(
                    format!("/encoder/columns/{i}/name"),
                    format!(
                        "\"{}\" is also column {first}; names must be unique",
                        c.name()
                    ),
                ));
            }
            match c {
                EncodedColumn::Date { fill, .. } if !fill.is_finite() => {
                    errs.push(SpecError::new(
                        format!("/encoder/columns/{i}/fill"),
                        "must be a finite number",
                    ));
                }
                EncodedColumn::Numeric { fill, .. } | EncodedColumn::Boolean { fill, .. }
                    if !fill.is_finite() =>
                {
                    errs.push(SpecError::new(
                        format!("/encoder/columns/{i}/fill"),
                        "must be a finite number",
                    ));
                }
                EncodedColumn::Numeric { bins, .. }
                    if !bins.is_empty()
                        && (bins.len() < 3
                            || bins.len() > MAX_NUMERIC_BINS as usize + 1
                            || bins.iter().any(|b| !b.is_finite())
                            || bins.windows(2).any(|w| w[0] >= w[1])) =>
                {
                    errs.push(SpecError::new(
                        format!("/encoder/columns/{i}/bins"),
                        format!(
                            "must be 3 to {} finite, strictly increasing edges (or left out)",
                            MAX_NUMERIC_BINS + 1
                        ),
                    ));
                }
                EncodedColumn::Categorical { categories, .. } => {
                    let mut sorted = categories.clone();
                    sorted.sort();
                    sorted.dedup();
                    if sorted.len() != categories.len() {
                        errs.push(SpecError::new(
                            format!("/encoder/columns/{i}/categories"),
                            "categories must be distinct",
                        ));
                    }
                }
                _ => {}
            }
        }
        if errs.is_empty() && self.width() != input_dim {
            errs.push(SpecError::new(
                "/encoder",
                format!(
                    "encodes {} inputs, the network takes {input_dim}",
                    self.width()
                ),
            ));
        }
        if errs.is_empty() { Ok(()) } else { Err(errs) }
    }
}

/// Writes a numeric or boolean column's inputs for one value at `out[at..]`.
fn write_numeric(enc: &EncodedColumn, n: Option<f32>, out: &mut [f32], at: usize) {
    if let EncodedColumn::Numeric {
        fill,
        missing_indicator,
        bins,
        ..
    } = enc
        && bins.len() >= 2
    {
        let pieces = bins.len() - 1;
        if out.len() < at + pieces + usize::from(*missing_indicator) {
            return;
        }
        piecewise_linear(n.unwrap_or(*fill), bins, &mut out[at..at + pieces]);
        if *missing_indicator {
            out[at + pieces] = if n.is_none() { 1.0 } else { 0.0 };
        }
        return;
    }
    let (EncodedColumn::Numeric {
        fill,
        missing_indicator,
        ..
    }
    | EncodedColumn::Boolean {
        fill,
        missing_indicator,
        ..
    }) = enc
    else {
        return;
    };
    if out.len() < at + 1 + usize::from(*missing_indicator) {
        return;
    }
    out[at] = n.unwrap_or(*fill);
    if *missing_indicator {
        out[at + 1] = if n.is_none() { 1.0 } else { 0.0 };
    }
}

/// The piecewise-linear encoding of `x` over the bin edges `bins` (at least two, increasing)
/// into `out` (one input per bin): `clamp((x − b_t) / (b_{t+1} − b_t), 0, 1)`.
pub fn piecewise_linear(x: f32, bins: &[f32], out: &mut [f32]) {
    for (t, o) in out
        .iter_mut()
        .enumerate()
        .take(bins.len().saturating_sub(1))
    {
        let (lo, hi) = (bins[t], bins[t + 1]);
        *o = ((x - lo) / (hi - lo)).clamp(0.0, 1.0);
    }
}

/// Most bins a piecewise-linear encoding takes (`numeric_bins`).
pub const MAX_NUMERIC_BINS: u32 = 256;

/// The edges of `bins` quantile bins of `values` (the training split's present values;
/// sorted here), without repeats: empty when `bins` is below 2 or the values hold fewer than
/// two distinct edges (the column then stays its value).
fn quantile_edges(values: &mut [f32], bins: u32) -> Vec<f32> {
    if bins < 2 || values.is_empty() {
        return vec![];
    }
    values.sort_unstable_by(f32::total_cmp);
    let n = values.len();
    let mut edges: Vec<f32> = (0..=bins as usize)
        .map(|q| values[(q * (n - 1)) / bins as usize])
        .collect();
    edges.dedup();
    if edges.len() < 3 {
        return vec![];
    }
    edges
}

/// Writes a date column's inputs for one day number (`None`: missing) at `out[at..]`.
fn write_date(enc: &EncodedColumn, d: Option<f64>, out: &mut [f32], at: usize) {
    let EncodedColumn::Date {
        format,
        fill,
        missing_indicator,
        ..
    } = enc
    else {
        return;
    };
    let w = values::date_width(format);
    if out.len() < at + w + usize::from(*missing_indicator) {
        return;
    }
    values::date_features(d.unwrap_or(*fill), format, &mut out[at..at + w]);
    if *missing_indicator {
        out[at + w] = if d.is_none() { 1.0 } else { 0.0 };
    }
}

/// The one-hot slot of a category (`None` = missing) in a categorical column, if any.
fn enc_slot(enc: &EncodedColumn, key: Option<&str>) -> Option<usize> {
    let EncodedColumn::Categorical {
        categories,
        missing,
        other,
        ..
    } = enc
    else {
        return None;
    };
    let other_slot = other.then(|| categories.len() + usize::from(*missing));
    match key {
        None if *missing => Some(categories.len()),
        // No missing cell in training: a missing one is as unseen as a new category.
        None => other_slot,
        Some(k) => match categories.binary_search_by(|c| c.as_str().cmp(k)) {
            Ok(i) => Some(i),
            Err(_) => other_slot,
        },
    }
}

fn fit_categories(
    col: &RawColumn,
    values: ArrayView1<f32>,
    has_missing: bool,
    opts: &EncoderOptions,
) -> Result<EncodedColumn, ColumnError> {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    if col.schema.storage == Storage::Text {
        let mut by_code = vec![0u64; col.vocab.len()];
        for &v in values {
            if !v.is_nan()
                && let Some(c) = by_code.get_mut(v as usize)
            {
                *c += 1;
            }
        }
        for (k, &c) in col.vocab.iter().zip(&by_code) {
            if c > 0 {
                counts.insert(k.to_owned(), c);
            }
        }
    } else {
        for &v in values {
            if !v.is_nan() {
                *counts.entry(number_key(v as f64)).or_default() += 1;
            }
        }
    }
    let distinct = counts.len() as u64;
    category_count(col.name(), distinct, opts)?;
    // Most frequent first (ties by name), so folding keeps the common ones.
    let mut ranked: Vec<(String, u64)> = counts.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let frequent = ranked
        .iter()
        .take_while(|(_, c)| *c >= opts.min_frequency.max(1))
        .count();
    let mut keep = frequent;
    if let Some(m) = opts.max_categories {
        let m = m.max(1) as usize;
        if ranked.len() > m {
            // m inputs in all: m − 1 categories and "other".
            keep = keep.min(m - 1);
        }
    }
    let other = keep < ranked.len();
    let mut categories: Vec<String> = ranked.into_iter().take(keep).map(|(k, _)| k).collect();
    categories.sort();
    Ok(EncodedColumn::Categorical {
        name: col.name().to_owned(),
        categories,
        missing: has_missing,
        other,
    })
}

/// The fill value for a column's present values (sorted in place for the median).
fn impute(present: &mut [f32], how: Imputation) -> f32 {
    if present.is_empty() {
        return 0.0;
    }
    match how {
        Imputation::Zero => 0.0,
        Imputation::Mean => {
            (present.iter().map(|&v| v as f64).sum::<f64>() / present.len() as f64) as f32
        }
        Imputation::Median => {
            present.sort_by(f32::total_cmp);
            let n = present.len();
            if n % 2 == 1 {
                present[n / 2]
            } else {
                ((present[n / 2 - 1] as f64 + present[n / 2] as f64) / 2.0) as f32
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    const NA: f32 = f32::NAN;

    fn text(name: &str, vocab: &[&str], missing: u64) -> RawColumn {
        RawColumn {
            schema: ColumnSchema {
                name: name.into(),
                kind: ColumnType::Categorical,
                storage: Storage::Text,
                missing,
                distinct: vocab.len() as u64,
                numeric_text: vocab.iter().all(|v| v.parse::<f64>().is_ok()),
                boolean_like: vocab.iter().all(|v| boolean_value(v).is_some()),
                format: None,
                reason: String::new(),
            },
            vocab: vocab.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn numeric(name: &str, missing: u64) -> RawColumn {
        let mut c = RawColumn::numeric(name, 3);
        c.schema.missing = missing;
        c
    }

    fn typed(mut c: RawColumn, kind: ColumnType) -> RawColumn {
        c.schema.kind = kind;
        c
    }

    #[test]
    fn median_imputation_with_an_indicator_only_where_training_had_missing_cells() {
        let cols = [numeric("a", 1), numeric("b", 0)];
        let x = array![[1.0, 5.0], [NA, 6.0], [3.0, 7.0], [10.0, 8.0]];
        let enc = Encoder::fit(x.view(), &cols, &EncoderOptions::default()).unwrap();
        assert_eq!(
            enc.columns[0],
            EncodedColumn::Numeric {
                name: "a".into(),
                fill: 3.0, // median of 1, 3, 10
                missing_indicator: true,
                format: None,
                bins: vec![],
            }
        );
        assert_eq!(enc.width(), 3);
        assert_eq!(enc.feature_names(), ["a", "a (missing)", "b"]);
        assert_eq!(enc.continuous(), [true, false, true]);
        let t = enc.transform_table(x.view(), &cols).unwrap();
        assert_eq!(
            t,
            array![
                [1.0, 0.0, 5.0],
                [3.0, 1.0, 6.0],
                [3.0, 0.0, 7.0],
                [10.0, 0.0, 8.0]
            ]
        );
        // mean and zero
        for (how, fill) in [(Imputation::Mean, 14.0 / 3.0), (Imputation::Zero, 0.0)] {
            let opts = EncoderOptions {
                imputation: how,
                ..EncoderOptions::default()
            };
            let enc = Encoder::fit(x.view(), &cols, &opts).unwrap();
            let EncodedColumn::Numeric { fill: f, .. } = enc.columns[0] else {
                panic!()
            };
            assert_eq!(f, fill as f32, "{how:?}");
        }
        // even count: the mean of the middle two
        let enc = Encoder::fit(
            array![[1.0], [2.0], [4.0], [9.0]].view(),
            &[numeric("a", 0)],
            &EncoderOptions::default(),
        )
        .unwrap();
        assert_eq!(
            enc.columns[0],
            EncodedColumn::Numeric {
                name: "a".into(),
                fill: 3.0,
                missing_indicator: false,
                format: None,
                bins: vec![],
            }
        );
        assert!(enc.is_identity());
    }

    /// Piecewise-linear encoding: edges at the training split's quantiles, each value 1 for
    /// the bins below it, its place inside its own bin, 0 above; a missing cell is the fill's
    /// encoding and its indicator; constant columns stay values; the edges survive a document.
    #[test]
    fn piecewise_linear_encoding_over_quantile_bins() {
        let cols = [numeric("a", 1), numeric("k", 0)];
        let x = array![
            [0.0, 5.0],
            [1.0, 5.0],
            [2.0, 5.0],
            [NA, 5.0],
            [3.0, 5.0],
            [4.0, 5.0]
        ];
        let opts = EncoderOptions {
            numeric_bins: 4,
            ..EncoderOptions::default()
        };
        let enc = Encoder::fit(x.view(), &cols, &opts).unwrap();
        let EncodedColumn::Numeric { bins, fill, .. } = &enc.columns[0] else {
            panic!()
        };
        assert_eq!(
            (bins.as_slice(), *fill),
            (&[0.0, 1.0, 2.0, 3.0, 4.0][..], 2.0)
        );
        // The constant column has one edge: it stays its value.
        assert!(matches!(&enc.columns[1], EncodedColumn::Numeric { bins, .. } if bins.is_empty()));
        assert_eq!(enc.width(), 4 + 1 + 1);
        assert!(!enc.is_identity());
        assert_eq!(
            enc.feature_names(),
            [
                "a (bin 1)",
                "a (bin 2)",
                "a (bin 3)",
                "a (bin 4)",
                "a (missing)",
                "k"
            ]
        );
        assert_eq!(enc.continuous(), [false, false, false, false, false, true]);
        let t = enc.transform_table(x.view(), &cols).unwrap();
        assert_eq!(t.row(0).to_vec(), [0.0, 0.0, 0.0, 0.0, 0.0, 5.0]);
        assert_eq!(t.row(3).to_vec(), [1.0, 1.0, 0.0, 0.0, 1.0, 5.0]);
        assert_eq!(t.row(5).to_vec(), [1.0, 1.0, 1.0, 1.0, 0.0, 5.0]);
        let mut out = [0.0; 4];
        piecewise_linear(2.5, bins, &mut out);
        assert_eq!(out, [1.0, 1.0, 0.5, 0.0]);
        piecewise_linear(-7.0, bins, &mut out);
        assert_eq!(out, [0.0; 4]);
        piecewise_linear(99.0, bins, &mut out);
        assert_eq!(out, [1.0; 4]);
        // A row encodes as the table does.
        let mut row = [0.0; 6];
        enc.transform_row(&[Cell::Number(2.5), Cell::Number(5.0)], &mut row)
            .unwrap();
        assert_eq!(row, [1.0, 1.0, 0.5, 0.0, 0.0, 5.0]);
        let json = serde_json::to_string(&enc).unwrap();
        assert!(json.contains("\"bins\":[0.0,1.0,2.0,3.0,4.0]"), "{json}");
        assert_eq!(serde_json::from_str::<Encoder>(&json).unwrap(), enc);
        // Edges a document may not hold.
        let mut bad = enc.clone();
        if let EncodedColumn::Numeric { bins, .. } = &mut bad.columns[0] {
            *bins = vec![0.0, 2.0, 1.0];
        }
        assert!(bad.check(6).is_err());
    }

    #[test]
    fn one_hot_with_missing_as_a_category_and_unseen_to_other() {
        // vocab sorted: Biscoe=0, Dream=1, Torgersen=2, Zed=3 (Zed only outside training)
        let col = text("island", &["Biscoe", "Dream", "Torgersen", "Zed"], 1);
        let x = array![[0.0], [1.0], [1.0], [NA], [2.0], [0.0]];
        let opts = EncoderOptions {
            min_frequency: 2,
            ..EncoderOptions::default()
        };
        let enc = Encoder::fit(x.view(), std::slice::from_ref(&col), &opts).unwrap();
        assert_eq!(
            enc.columns[0],
            EncodedColumn::Categorical {
                name: "island".into(),
                categories: vec!["Biscoe".into(), "Dream".into()],
                missing: true,
                other: true, // Torgersen seen once < min_frequency 2
            }
        );
        assert_eq!(
            enc.feature_names(),
            [
                "island=Biscoe",
                "island=Dream",
                "island (missing)",
                "island (other)"
            ]
        );
        let t = enc
            .transform_table(array![[0.0], [NA], [2.0], [3.0]].view(), &[col])
            .unwrap();
        assert_eq!(
            t,
            array![
                [1.0, 0.0, 0.0, 0.0],
                [0.0, 0.0, 1.0, 0.0],
                [0.0, 0.0, 0.0, 1.0],
                [0.0, 0.0, 0.0, 1.0]
            ]
        );
        // predict-time cells: a category never seen goes to other, never an error
        let mut out = [0.0; 4];
        enc.transform_row(&[Cell::Text("Atlantis")], &mut out)
            .unwrap();
        assert_eq!(out, [0.0, 0.0, 0.0, 1.0]);
        let mut out = [0.0; 4];
        enc.transform_row(&[Cell::Text(" Dream ")], &mut out)
            .unwrap();
        assert_eq!(out, [0.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn without_other_an_unseen_category_is_all_zeros() {
        let col = text("c", &["a", "b"], 0);
        let enc = Encoder::fit(
            array![[0.0], [1.0]].view(),
            std::slice::from_ref(&col),
            &EncoderOptions::default(),
        )
        .unwrap();
        assert_eq!(enc.width(), 2);
        let mut out = [9.0; 2];
        out.fill(0.0);
        enc.transform_row(&[Cell::Text("zzz")], &mut out).unwrap();
        assert_eq!(out, [0.0, 0.0]);
        enc.transform_row(&[Cell::Missing], &mut out).unwrap();
        assert_eq!(out, [0.0, 0.0]);
    }

    #[test]
    fn max_categories_keeps_the_most_frequent_and_counts_other() {
        let col = text("c", &["a", "b", "c", "d"], 0);
        let x = array![[0.0], [0.0], [0.0], [1.0], [1.0], [2.0], [3.0]];
        let opts = EncoderOptions {
            max_categories: Some(3),
            ..EncoderOptions::default()
        };
        let enc = Encoder::fit(x.view(), &[col], &opts).unwrap();
        assert_eq!(
            enc.columns[0],
            EncodedColumn::Categorical {
                name: "c".into(),
                categories: vec!["a".into(), "b".into()],
                missing: false,
                other: true
            }
        );
        assert_eq!(enc.width(), 3);
    }

    #[test]
    fn too_many_categories_is_an_error_that_says_what_to_do() {
        let vocab: Vec<String> = (0..=CATEGORY_LIMIT).map(|i| format!("k{i:04}")).collect();
        let refs: Vec<&str> = vocab.iter().map(String::as_str).collect();
        let col = text("zip", &refs, 0);
        let x = Array2::from_shape_fn((vocab.len(), 1), |(i, _)| i as f32);
        let e = Encoder::fit(
            x.view(),
            std::slice::from_ref(&col),
            &EncoderOptions::default(),
        )
        .unwrap_err();
        assert_eq!(e.column, "zip");
        assert!(e.message.contains("max_categories"), "{}", e.message);
        assert!(e.message.contains("\"ignore\""), "{}", e.message);
        assert_eq!(e.to_spec_error().pointer, "/columns/zip");
        // the schema check says the same before any data is read
        let e = max_width(
            std::slice::from_ref(&col.schema),
            300,
            &EncoderOptions::default(),
        )
        .unwrap_err();
        assert_eq!(e.column, "zip");
        let opts = EncoderOptions {
            max_categories: Some(10),
            ..EncoderOptions::default()
        };
        assert_eq!(max_width(&[col.schema], 300, &opts), Ok(10));
    }

    #[test]
    fn an_empty_column_and_text_forced_numeric_are_errors_naming_the_column() {
        let e = Encoder::fit(
            array![[NA], [NA]].view(),
            &[numeric("empty", 2)],
            &EncoderOptions::default(),
        )
        .unwrap_err();
        assert_eq!(e.column, "empty");
        assert!(e.message.contains("\"ignore\""), "{}", e.message);
        let e =
            max_width(&[numeric("empty", 2).schema], 2, &EncoderOptions::default()).unwrap_err();
        assert!(e.message.contains("entirely empty"), "{}", e.message);

        let col = typed(text("state", &["LA", "OH"], 0), ColumnType::Numeric);
        let e = check_type(&col.schema, ColumnType::Numeric).unwrap_err();
        assert_eq!(e.column, "state");
        assert!(e.message.contains("holds text"), "{}", e.message);
        assert!(Encoder::fit(array![[0.0]].view(), &[col], &EncoderOptions::default()).is_err());
        // text that reads as numbers may be forced numeric
        let col = typed(text("code", &["408", "415"], 0), ColumnType::Numeric);
        let enc = Encoder::fit(
            array![[0.0], [1.0]].view(),
            std::slice::from_ref(&col),
            &EncoderOptions::default(),
        )
        .unwrap();
        let t = enc.transform_table(array![[1.0]].view(), &[col]).unwrap();
        assert_eq!(t, array![[415.0]]);
    }

    #[test]
    fn boolean_columns_are_one_input() {
        let col = typed(text("plan", &["no", "yes"], 1), ColumnType::Boolean);
        let x = array![[1.0], [0.0], [NA], [1.0]];
        let enc = Encoder::fit(
            x.view(),
            std::slice::from_ref(&col),
            &EncoderOptions::default(),
        )
        .unwrap();
        assert_eq!(enc.feature_names(), ["plan", "plan (missing)"]);
        let t = enc.transform_table(x.view(), &[col]).unwrap();
        assert_eq!(t, array![[1.0, 0.0], [0.0, 0.0], [1.0, 1.0], [1.0, 0.0]]);
        let mut out = [0.0; 2];
        enc.transform_row(&[Cell::Text("TRUE")], &mut out).unwrap();
        assert_eq!(out, [1.0, 0.0]);
        let e = enc
            .transform_row(&[Cell::Text("maybe")], &mut out)
            .unwrap_err();
        assert_eq!(e.column, "plan");
        assert!(check_type(&numeric("n", 0).schema, ColumnType::Boolean).is_ok());
        let e = check_type(&text("c", &["x", "y"], 0).schema, ColumnType::Boolean).unwrap_err();
        assert!(e.message.contains("cannot be boolean"), "{}", e.message);
    }

    #[test]
    fn numbers_typed_categorical_use_their_shortest_form() {
        let col = typed(numeric("area_code", 0), ColumnType::Categorical);
        let x = array![[408.0], [415.0], [415.0], [510.0]];
        let enc = Encoder::fit(
            x.view(),
            std::slice::from_ref(&col),
            &EncoderOptions::default(),
        )
        .unwrap();
        assert_eq!(
            enc.feature_names(),
            ["area_code=408", "area_code=415", "area_code=510"]
        );
        let mut out = [0.0; 3];
        enc.transform_row(&[Cell::Number(415.0)], &mut out).unwrap();
        assert_eq!(out, [0.0, 1.0, 0.0]);
        let mut out = [0.0; 3];
        enc.transform_row(&[Cell::Text("510")], &mut out).unwrap();
        assert_eq!(out, [0.0, 0.0, 1.0]);
        assert_eq!(number_key(-0.0), "0");
        assert_eq!(number_key(0.1), "0.1");
    }

    #[test]
    fn ignored_columns_have_no_inputs_and_the_document_round_trips() {
        let cols = [
            typed(numeric("id", 0), ColumnType::Ignore),
            text("c", &["a", "b"], 1),
            numeric("v", 1),
        ];
        let x = array![[1.0, 0.0, 2.5], [2.0, NA, NA], [3.0, 1.0, 1.0]];
        let enc = Encoder::fit(x.view(), &cols, &EncoderOptions::default()).unwrap();
        assert_eq!(
            enc.feature_names(),
            ["c=a", "c=b", "c (missing)", "v", "v (missing)"]
        );
        let json = serde_json::to_string(&enc).unwrap();
        let back: Encoder = serde_json::from_str(&json).unwrap();
        assert_eq!(back, enc);
        assert_eq!(back.check(5), Ok(()));
        assert_eq!(back.check(4).unwrap_err()[0].pointer, "/encoder");
        // a predict row and a table row encode the same
        let table = enc.transform_table(x.view(), &cols).unwrap();
        for (i, row) in x.rows().into_iter().enumerate() {
            let cells: Vec<Cell> = cols.iter().zip(row).map(|(c, &v)| c.cell(v)).collect();
            let mut out = vec![0.0; enc.width()];
            enc.transform_row(&cells, &mut out).unwrap();
            assert_eq!(out, table.row(i).to_vec(), "row {i}");
        }
    }

    #[test]
    fn class_weight_reads_balanced_or_a_map() {
        let b: ClassWeight = serde_json::from_str("\"balanced\"").unwrap();
        assert_eq!(b, ClassWeight::Mode(BalancedMode::Balanced));
        let m: ClassWeight = serde_json::from_str(r#"{"yes": 3, "no": 1}"#).unwrap();
        let ClassWeight::Map(m) = m else { panic!() };
        assert_eq!(m["yes"], 3.0);
        assert!(serde_json::from_str::<ClassWeight>("\"heavy\"").is_err());
    }
}
