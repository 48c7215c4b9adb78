//! Predictions on a CSV body: a header row naming the model's columns, then one row per
//! prediction. The rows are kept as sent so that a CSV answer can echo them with the outputs
//! appended. Bounded like the JSON reader: the body limit bounds the bytes, and reading stops
//! at the first row past `--max-predict-rows` (413).
//!
//! Cells: empty is missing; a cell that reads as a number is that number; anything else is
//! text (a category, or yes/no). A model trained on plain numbers needs every cell a number.
//! The header's names are the model's columns, in any order; a tabular model's column left
//! out is missing in every row. A model with no column names reads the columns in order.

use crate::data::table::DEFAULT_NA_VALUES;
use std::collections::HashMap;
use std::sync::Arc;

use csv::StringRecord;

use super::{Error, Result, Service};
use crate::nn::portable::tabular::Cell;
use crate::nn::{Model, Prediction};

/// A CSV prediction: the header and rows as sent, and the outputs.
pub struct CsvPrediction {
    pub header: StringRecord,
    pub rows: Vec<StringRecord>,
    pub prediction: Prediction,
}

/// Reads a CSV predict body for `m`: the header, the rows, and the network's inputs.
pub fn read_csv(
    body: &[u8],
    m: &Model,
    max_rows: usize,
) -> Result<(StringRecord, Vec<StringRecord>, ndarray::Array2<f32>)> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(body);
    let header = reader
        .headers()
        .map_err(|e| Error::unreadable(format!("CSV header: {e}")))?
        .clone();
    let width = m.raw_width();
    // Where each CSV column goes in the model's raw row.
    let slots: Vec<usize> = match m.raw_names() {
        Some(names) => {
            let index: HashMap<&str, usize> = names
                .iter()
                .enumerate()
                .map(|(j, n)| (n.as_str(), j))
                .collect();
            let mut seen = vec![false; width];
            let mut slots = Vec::with_capacity(header.len());
            for name in header.iter() {
                let target = m
                    .target_names
                    .as_ref()
                    .is_some_and(|t| t.iter().any(|t| t == name.trim()));
                if target && !index.contains_key(name.trim()) {
                    // The training file's target column: not an input.
                    slots.push(usize::MAX);
                    continue;
                }
                let Some(&j) = index.get(name.trim()) else {
                    let listed: Vec<String> =
                        names.iter().take(20).map(|n| format!("{n:?}")).collect();
                    return Err(Error::unreadable(format!(
                        "CSV header: unknown column {name:?}; the model's columns are {}{}",
                        listed.join(", "),
                        if names.len() > 20 { ", …" } else { "" }
                    )));
                };
                if std::mem::replace(&mut seen[j], true) {
                    return Err(Error::unreadable(format!(
                        "CSV header: column {name:?} appears twice"
                    )));
                }
                slots.push(j);
            }
            slots
        }
        None if header.len() == width => (0..width).collect(),
        None => {
            return Err(Error::unreadable(format!(
                "CSV header: {} columns; this model has no column names and takes {width}, in order",
                header.len()
            )));
        }
    };
    let mut rows = vec![];
    let mut table: Vec<Vec<Cell>> = vec![];
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            Error::unreadable(format!("CSV line {line}: {e}"))
        })?;
        if rows.len() == max_rows {
            return Err(Error::TooLarge {
                detail: format!(
                    "more than {max_rows} rows in one request (--max-predict-rows); send them in smaller batches"
                ),
                pointer: None,
            });
        }
        rows.push(record);
    }
    if rows.is_empty() {
        return Err(Error::unreadable(
            "the CSV has a header but no rows to predict",
        ));
    }
    for record in &rows {
        let mut cells = vec![Cell::Missing; width];
        for (v, &j) in record.iter().zip(&slots) {
            if j == usize::MAX {
                continue;
            }
            let v = v.trim();
            // Missing as an upload reads it: empty, or one of the default NA markers (a file
            // exported with `NA` cells, as the penguins file is, predicts as it trains).
            cells[j] = if v.is_empty()
                || DEFAULT_NA_VALUES
                    .iter()
                    .any(|na| na.eq_ignore_ascii_case(v))
            {
                Cell::Missing
            } else {
                match v.parse::<f64>() {
                    Ok(n) if n.is_finite() => Cell::Number(n),
                    _ => Cell::Text(v),
                }
            };
        }
        table.push(cells);
    }
    let x = m.encode_rows(&table).map_err(|(i, e)| {
        Error::unreadable(format!(
            "CSV line {}, column {:?}: {}",
            i + 2,
            e.column,
            e.message
        ))
    })?;
    Ok((header, rows, x))
}

/// The names of the output columns a CSV answer appends: a classifier's probability per
/// output unit (`probability_<class>`; a binary classifier's one unit is the second class's)
/// and `label`; any other model's `output_<k>`.
pub fn output_columns(m: &Model) -> Vec<String> {
    use crate::nn::portable::preprocess::OutputEncoding;
    match &m.encoding {
        OutputEncoding::Categorical { classes } => classes
            .iter()
            .map(|c| format!("probability_{c}"))
            .chain(["label".to_owned()])
            .collect(),
        OutputEncoding::Binary { classes } => classes
            .get(1)
            .map(|c| format!("probability_{c}"))
            .into_iter()
            .chain(["label".to_owned()])
            .collect(),
        OutputEncoding::Values => (0..m.network.output_dim())
            .map(|k| format!("output_{k}"))
            .collect(),
    }
}

impl Service {
    /// Runs `m` on a CSV body (see the module's description).
    pub async fn predict_csv(&self, m: &Arc<Model>, body: &[u8]) -> Result<CsvPrediction> {
        let started = std::time::Instant::now();
        let (header, rows, x) = read_csv(body, m, self.limits.max_predict_rows)?;
        let prediction = self.predict_matrix(m, x, started).await?;
        Ok(CsvPrediction {
            header,
            rows,
            prediction,
        })
    }
}
