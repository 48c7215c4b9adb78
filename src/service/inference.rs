//! The serving protocols other services speak, as far as they are not HTTP: a model's
//! tensor signature (the Open Inference Protocol v2's metadata: names, datatypes, shapes),
//! and the readers of a v2 `infer` body and of TF Serving's `predict` bodies into the
//! network's inputs. Pure: they take bytes and a model and return a matrix or an [`Error`]
//! pointing at the failing field; `api::inference` shapes the answers.
//!
//! A model without an encoder takes one input, `input`: a `[rows, inputs]` tensor of numbers.
//! A tabular model (with an encoder) takes one input per raw column, named by the column,
//! each `[rows]` or `[rows, 1]`: numbers for numeric columns, `BYTES` (text) for
//! categorical ones; any column may be left out (all its cells missing) and `null` elements
//! are missing cells. One tensor per column keeps each column's own datatype, which one
//! mixed tensor could not.

use std::collections::HashMap;

use ndarray::Array2;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};

use super::Error;
use super::read::parse_json;
use crate::nn::Model;
use crate::nn::portable::preprocess::OutputEncoding;
use crate::nn::portable::tabular::{Cell, EncodedColumn};

/// One tensor of a signature: its name, v2 datatype and shape (`-1`: any number of rows).
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub datatype: &'static str,
    pub shape: Vec<i64>,
}

/// The name of a plain model's one input.
pub const INPUT: &str = "input";
/// Output names: a classifier answers `probabilities` (per class; one column, the second
/// class's probability, for a binary classifier) and `label`; any other model `values`.
pub const PROBABILITIES: &str = "probabilities";
pub const LABEL: &str = "label";
pub const VALUES: &str = "values";

/// What the model takes and answers, as v2 metadata describes it.
pub fn signature(m: &Model) -> (Vec<TensorSpec>, Vec<TensorSpec>) {
    let inputs = match &m.encoder {
        None => vec![TensorSpec {
            name: INPUT.into(),
            datatype: "FP32",
            shape: vec![-1, m.input_dim() as i64],
        }],
        Some(e) => e
            .columns
            .iter()
            .map(|c| TensorSpec {
                name: c.name().to_owned(),
                datatype: match c {
                    EncodedColumn::Numeric { .. } => "FP64",
                    EncodedColumn::Boolean { .. } => "BOOL",
                    EncodedColumn::Categorical { .. }
                    | EncodedColumn::Date { .. }
                    | EncodedColumn::Ignore { .. } => "BYTES",
                },
                shape: vec![-1, 1],
            })
            .collect(),
    };
    let width = m.network.output_dim() as i64;
    let outputs = if is_classifier(m) {
        vec![
            TensorSpec {
                name: PROBABILITIES.into(),
                datatype: "FP32",
                shape: vec![-1, width],
            },
            TensorSpec {
                name: LABEL.into(),
                datatype: "BYTES",
                shape: vec![-1],
            },
        ]
    } else {
        vec![TensorSpec {
            name: VALUES.into(),
            datatype: "FP32",
            shape: vec![-1, width],
        }]
    };
    (inputs, outputs)
}

pub fn is_classifier(m: &Model) -> bool {
    !matches!(m.encoding, OutputEncoding::Values)
}

/// The output names the model answers.
pub fn output_names(m: &Model) -> Vec<&'static str> {
    if is_classifier(m) {
        vec![PROBABILITIES, LABEL]
    } else {
        vec![VALUES]
    }
}

/// One element of a tensor's `data`, nested arrays flattened row-major. 16 bytes: text is
/// boxed (a thin pointer), so a body of numbers costs 16 bytes an element, not 32.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    Number(f64),
    Text(Box<String>),
    Bool(bool),
    Null,
}

impl Scalar {
    fn cell(&self) -> Cell<'_> {
        match self {
            Scalar::Number(n) => Cell::Number(*n),
            Scalar::Text(t) => Cell::Text(t),
            // As the JSON predict reads a boolean: yes/no text.
            Scalar::Bool(b) => Cell::Text(if *b { "true" } else { "false" }),
            Scalar::Null => Cell::Missing,
        }
    }
}

/// A tensor's `data`: a scalar or arrays nested to any depth, flattened.
#[derive(Debug, Default)]
pub struct Flat(pub Vec<Scalar>);

impl<'de> Deserialize<'de> for Flat {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut out = vec![];
        Append(&mut out).deserialize(d)?;
        Ok(Flat(out))
    }
}

thread_local! {
    /// Elements the tensors of the request being read may still hold (see [`with_budget`]):
    /// the limit is checked as each element is read, so a body of 100 million zeros (a few
    /// hundred kilobytes gzip-compressed) is refused at the first element past it, never
    /// decoded whole.
    static ELEMENTS_LEFT: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
}

/// Runs `read` with a budget of `elements` tensor elements for every [`Flat`] it reads (on
/// this thread); past it the reader stops with an error that says so.
fn with_budget<T>(elements: usize, read: impl FnOnce() -> T) -> T {
    ELEMENTS_LEFT.with(|b| b.set(elements));
    let out = read();
    ELEMENTS_LEFT.with(|b| b.set(usize::MAX));
    out
}

/// The elements a request to `m` may hold while it is read: twice `max_rows` rows of its
/// inputs (and a little), so a body a little over the limit is still read far enough to be
/// told exactly which field is over it, and one far over it stops at the budget.
fn element_budget(m: &Model, max_rows: usize) -> usize {
    let width = m
        .raw_names()
        .map_or(m.input_dim(), |n| n.len())
        .max(m.input_dim());
    max_rows
        .saturating_mul(width.max(1))
        .saturating_mul(2)
        .saturating_add(1024)
}

/// The error of a request past its element budget (its words include
/// `data::json::OVER_LIMIT`, so `read::over_limit_as_too_large` makes it the 413 it is).
const OVER_BUDGET: &str = "the tensors hold more than the limit of elements one request may hold (twice --max-predict-rows rows of the model's inputs); send the rows in smaller batches";

/// Appends the elements it reads to its vector.
struct Append<'a>(&'a mut Vec<Scalar>);

impl<'de> DeserializeSeed<'de> for Append<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Append<'_> {
    fn push<E: de::Error>(self, v: Scalar) -> Result<(), E> {
        let left = ELEMENTS_LEFT.with(|b| b.get());
        if left == 0 {
            return Err(E::custom(OVER_BUDGET));
        }
        ELEMENTS_LEFT.with(|b| b.set(left - 1));
        self.0.push(v);
        Ok(())
    }
}

impl<'de> Visitor<'de> for Append<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("numbers, strings or booleans, in arrays nested to the tensor's shape")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Append(&mut *self.0))?.is_some() {}
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.push(Scalar::Number(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.push(Scalar::Number(v as f64))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.push(Scalar::Number(v as f64))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.push(Scalar::Text(Box::new(v.to_owned())))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.push(Scalar::Bool(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.push(Scalar::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.push(Scalar::Null)
    }
}

/// A v2 `infer` request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InferBody {
    id: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    parameters: Option<serde_json::Map<String, serde_json::Value>>,
    inputs: Vec<InferInput>,
    outputs: Option<Vec<RequestedOutput>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InferInput {
    name: String,
    shape: Vec<u64>,
    datatype: String,
    #[serde(default)]
    parameters: Option<serde_json::Map<String, serde_json::Value>>,
    data: Flat,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestedOutput {
    name: String,
    #[serde(default)]
    #[allow(dead_code)]
    parameters: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A read `infer` request: the network's inputs, the `id` to echo, and the outputs asked
/// for (all, when the request names none).
#[derive(Debug)]
pub struct Infer {
    pub id: Option<String>,
    pub x: Array2<f32>,
    pub outputs: Vec<&'static str>,
}

/// The v2 datatypes a number may come in.
const NUMERIC: [&str; 10] = [
    "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64",
];

/// Reads a v2 `infer` body for model `m` (see the module's description of the inputs);
/// at most `max_rows` rows.
pub fn read_infer(body: &[u8], m: &Model, max_rows: usize) -> Result<Infer, Error> {
    let req: InferBody = with_budget(element_budget(m, max_rows), || parse_json(body))
        .map_err(super::read::over_limit_as_too_large)?;
    let known = output_names(m);
    let outputs = match &req.outputs {
        None => known.clone(),
        Some(asked) => {
            let mut out = vec![];
            for (i, o) in asked.iter().enumerate() {
                let Some(&name) = known.iter().find(|k| **k == o.name) else {
                    return Err(Error::invalid(
                        format!("/outputs/{i}/name"),
                        format!(
                            "this model has no output {:?}; its outputs are {}",
                            o.name,
                            known.join(", ")
                        ),
                    ));
                };
                if !out.contains(&name) {
                    out.push(name);
                }
            }
            out
        }
    };
    if req.inputs.is_empty() {
        return Err(Error::invalid("/inputs", "needs at least one input tensor"));
    }
    let mut rows = None;
    for (i, t) in req.inputs.iter().enumerate() {
        let at = |f: &str| format!("/inputs/{i}/{f}");
        if let Some(p) = &t.parameters
            && p.contains_key("binary_data_size")
        {
            return Err(Error::invalid(
                at("parameters"),
                "binary tensor data is not supported; send the data as JSON (tritonclient: binary_data=False)",
            ));
        }
        let dt = t.datatype.as_str();
        if !(NUMERIC.contains(&dt) || dt == "BYTES" || dt == "BOOL") {
            return Err(Error::invalid(
                at("datatype"),
                format!(
                    "datatype {dt:?} is not supported; use FP32, FP64, an INT or UINT type, BOOL or BYTES"
                ),
            ));
        }
        let count = t
            .shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= usize::MAX as u64)
            .ok_or_else(|| Error::invalid(at("shape"), "the shape's product is too large"))?;
        if count != t.data.0.len() as u64 {
            return Err(Error::invalid(
                at("data"),
                format!(
                    "has {} elements; shape {:?} needs {count}",
                    t.data.0.len(),
                    t.shape
                ),
            ));
        }
        for (k, v) in t.data.0.iter().enumerate() {
            check_element(dt, v).map_err(|e| Error::invalid(format!("/inputs/{i}/data/{k}"), e))?;
        }
        let n = t.shape.first().copied().unwrap_or(0);
        if n as usize > max_rows {
            return Err(Error::TooLarge {
                detail: format!(
                    "more than {max_rows} rows in one request (--max-predict-rows); send them in smaller batches"
                ),
                pointer: Some(at("shape")),
            });
        }
        match rows {
            None => rows = Some(n),
            Some(r) if r != n => {
                return Err(Error::invalid(
                    at("shape"),
                    format!(
                        "has {n} rows; the first input has {r} (every input has one row per batch item)"
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    let rows = rows.unwrap_or(0) as usize;
    if rows == 0 {
        return Err(Error::invalid("/inputs/0/shape", "needs at least one row"));
    }
    let x = match &m.encoder {
        None => plain_inputs(m, &req.inputs, rows)?,
        Some(_) => {
            let cols = req
                .inputs
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    if t.shape.len() > 2 || (t.shape.len() == 2 && t.shape[1] != 1) {
                        return Err(Error::invalid(
                            format!("/inputs/{i}/shape"),
                            format!(
                                "a column's tensor is [rows] or [rows, 1], not {:?}",
                                t.shape
                            ),
                        ));
                    }
                    Ok((t.name.as_str(), &t.data.0[..], format!("/inputs/{i}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            column_inputs(m, &cols, rows)?
        }
    };
    Ok(Infer {
        id: req.id,
        x,
        outputs,
    })
}

/// The values an integer datatype holds (INT64 and UINT64 as far as f64 counts exactly
/// enough for a range check).
fn int_range(dt: &str) -> (f64, f64) {
    match dt {
        "INT8" => (i8::MIN as f64, i8::MAX as f64),
        "INT16" => (i16::MIN as f64, i16::MAX as f64),
        "INT32" => (i32::MIN as f64, i32::MAX as f64),
        "INT64" => (i64::MIN as f64, i64::MAX as f64),
        "UINT8" => (0.0, u8::MAX as f64),
        "UINT16" => (0.0, u16::MAX as f64),
        "UINT32" => (0.0, u32::MAX as f64),
        _ => (0.0, u64::MAX as f64),
    }
}

/// Whether element `v` fits datatype `dt`.
fn check_element(dt: &str, v: &Scalar) -> Result<(), String> {
    match (dt, v) {
        (_, Scalar::Null) => Ok(()),
        ("BYTES", Scalar::Text(_)) | ("BOOL", Scalar::Bool(_)) => Ok(()),
        ("FP32" | "FP64", Scalar::Number(n)) => {
            if (*n as f32).is_finite() {
                Ok(())
            } else {
                Err(format!("{n} is out of range for a 32-bit float"))
            }
        }
        (int, Scalar::Number(n)) if NUMERIC.contains(&int) => {
            let (lo, hi) = int_range(int);
            if n.fract() == 0.0 && (lo..=hi).contains(n) {
                Ok(())
            } else {
                Err(format!(
                    "{n} is not a value of datatype {int} (whole numbers from {lo} to {hi})"
                ))
            }
        }
        (dt, v) => Err(format!("{v:?} is not a value of datatype {dt}")),
    }
}

/// A plain model's one input: `[rows, inputs]` numbers.
fn plain_inputs(m: &Model, inputs: &[InferInput], rows: usize) -> Result<Array2<f32>, Error> {
    let width = m.input_dim();
    if inputs.len() != 1 {
        return Err(Error::invalid(
            "/inputs",
            format!(
                "this model takes one input tensor ({INPUT:?}, [rows, {width}]), not {}",
                inputs.len()
            ),
        ));
    }
    let t = &inputs[0];
    if t.name != INPUT {
        return Err(Error::invalid(
            "/inputs/0/name",
            format!(
                "this model has no input {:?}; its one input is {INPUT:?} (GET /v2/models/{{name}} lists it)",
                t.name
            ),
        ));
    }
    if t.shape.len() != 2 || t.shape[1] as usize != width {
        return Err(Error::invalid(
            "/inputs/0/shape",
            format!("must be [rows, {width}], not {:?}", t.shape),
        ));
    }
    let mut values = Vec::with_capacity(rows * width);
    for (k, v) in t.data.0.iter().enumerate() {
        values.push(match v {
            Scalar::Number(n) => *n as f32,
            Scalar::Bool(b) => f32::from(u8::from(*b)),
            other => {
                return Err(Error::invalid(
                    format!("/inputs/0/data/{k}"),
                    format!("{other:?}: this model takes numbers"),
                ));
            }
        });
    }
    Array2::from_shape_vec((rows, width), values)
        .map_err(|e| Error::Internal(format!("infer inputs: {e}")))
}

/// A tabular model's inputs from one tensor (or TF Serving column) per raw column:
/// (name, elements, pointer). A column left out is missing in every row.
pub fn column_inputs(
    m: &Model,
    cols: &[(&str, &[Scalar], String)],
    rows: usize,
) -> Result<Array2<f32>, Error> {
    let names = m.raw_names().unwrap_or_default();
    let index: HashMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(j, n)| (n.as_str(), j))
        .collect();
    let mut by_column: Vec<Option<&[Scalar]>> = vec![None; names.len()];
    for (name, data, at) in cols {
        let Some(&j) = index.get(name) else {
            let listed: Vec<String> = names.iter().take(20).map(|n| format!("{n:?}")).collect();
            return Err(Error::invalid(
                format!("{at}/name"),
                format!(
                    "unknown input {name:?}; this model's inputs are its columns: {}{}",
                    listed.join(", "),
                    if names.len() > 20 { ", …" } else { "" }
                ),
            ));
        };
        if by_column[j].replace(data).is_some() {
            return Err(Error::invalid(
                format!("{at}/name"),
                format!("input {name:?} is sent twice"),
            ));
        }
        if data.len() != rows {
            return Err(Error::invalid(
                at.clone(),
                format!("has {} values; the batch has {rows} rows", data.len()),
            ));
        }
    }
    let table: Vec<Vec<Cell>> = (0..rows)
        .map(|i| {
            by_column
                .iter()
                .map(|c| c.map_or(Cell::Missing, |d| d[i].cell()))
                .collect()
        })
        .collect();
    m.encode_rows(&table).map_err(|(i, e)| {
        let at = cols
            .iter()
            .find(|(n, _, _)| *n == e.column)
            .map_or_else(|| "/inputs".to_owned(), |(_, _, at)| at.clone());
        Error::invalid(
            format!("{at}/data/{i}"),
            format!("column {:?}: {}", e.column, e.message),
        )
    })
}

/// Which form a TF Serving `predict` body has.
#[derive(Debug)]
pub enum TfForm {
    /// `{"instances": [...]}`: rows; answered as `{"predictions": [...]}`.
    Rows,
    /// `{"inputs": ...}`: columns; answered as `{"outputs": ...}`.
    Columns,
}

/// Reads a TF Serving `predict` body: `instances` (rows: arrays in the model's column order,
/// or objects keyed by column) or `inputs` (the same rows as a list, or an object of columns:
/// `{"column": [values…], …}`), and `signature_name` (ignored: a model has one signature).
pub fn read_tf_predict(
    body: &[u8],
    m: &Model,
    max_rows: usize,
) -> Result<(TfForm, Array2<f32>), Error> {
    #[derive(Deserialize)]
    struct Probe {
        instances: Option<de::IgnoredAny>,
        inputs: Option<Kind>,
    }
    // The probe reads only which keys are there and what `inputs` is; the readers below
    // read the body again, each into its own form. A body the probe cannot read is read
    // as rows, whose reader says what is wrong with it.
    let probe: Probe = serde_json::from_slice(body).unwrap_or(Probe {
        instances: None,
        inputs: None,
    });
    match (probe.instances.is_some(), probe.inputs) {
        (true, Some(_)) => Err(Error::invalid(
            "/inputs",
            "send either \"instances\" (rows) or \"inputs\" (columns), not both",
        )),
        (_, Some(Kind::Object)) => {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Columns {
                #[allow(dead_code)]
                signature_name: Option<String>,
                inputs: std::collections::BTreeMap<String, Flat>,
            }
            let c: Columns = with_budget(element_budget(m, max_rows), || parse_json(body))
                .map_err(super::read::over_limit_as_too_large)?;
            let rows = c.inputs.values().next().map_or(0, |d| d.0.len());
            if rows == 0 {
                return Err(Error::invalid("/inputs", "needs at least one row"));
            }
            if rows > max_rows {
                return Err(Error::TooLarge {
                    detail: format!(
                        "more than {max_rows} rows in one request (--max-predict-rows); send them in smaller batches"
                    ),
                    pointer: Some("/inputs".into()),
                });
            }
            let cols: Vec<(&str, &[Scalar], String)> = c
                .inputs
                .iter()
                .map(|(n, d)| {
                    (
                        n.as_str(),
                        &d.0[..],
                        format!("/inputs/{}", crate::nn::portable::tabular::pointer_token(n)),
                    )
                })
                .collect();
            if m.raw_names().is_none() {
                return Err(Error::invalid(
                    "/inputs",
                    "this model has no column names; send \"inputs\" as a list of rows",
                ));
            }
            Ok((TfForm::Columns, column_inputs(m, &cols, rows)?))
        }
        (_, Some(Kind::Other)) => Ok((
            TfForm::Columns,
            super::predict::read_rows(body, m, max_rows, "inputs", &["signature_name"])?,
        )),
        (true, None) | (false, None) => Ok((
            TfForm::Rows,
            super::predict::read_rows(body, m, max_rows, "instances", &["signature_name"])?,
        )),
    }
}

/// What a JSON value is, read without keeping it: an object or anything else.
enum Kind {
    Object,
    Other,
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Kind;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
                while map
                    .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Kind::Object)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
                while seq.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(Kind::Other)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Kind, E> {
                Ok(Kind::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Kind, E> {
                Ok(Kind::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Kind, E> {
                Ok(Kind::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Kind, E> {
                Ok(Kind::Other)
            }
            fn visit_str<E>(self, _: &str) -> Result<Kind, E> {
                Ok(Kind::Other)
            }
            fn visit_unit<E>(self) -> Result<Kind, E> {
                Ok(Kind::Other)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::ModelDocument;

    fn model(doc: serde_json::Value) -> Model {
        let doc: ModelDocument = serde_json::from_value(doc).expect("a model document");
        Model::from_document(&doc).expect("a model")
    }

    #[test]
    fn an_element_takes_16_bytes() {
        assert_eq!(std::mem::size_of::<Scalar>(), 16);
    }

    fn plain() -> Model {
        model(serde_json::json!({
            "input_dim": 2,
            "layers": [{"units": 1, "activation": "linear", "weights": [[1.0], [10.0]]}],
        }))
    }

    #[test]
    fn a_v2_tensor_is_read_flat_or_nested_in_row_major_order() {
        let m = plain();
        for data in [
            serde_json::json!([1, 2, 3, 4]),
            serde_json::json!([[1, 2], [3, 4]]),
        ] {
            let body = serde_json::json!({"id": "r1", "inputs": [
                {"name": "input", "shape": [2, 2], "datatype": "INT32", "data": data}]});
            let r = read_infer(body.to_string().as_bytes(), &m, 10).unwrap();
            assert_eq!(r.x, ndarray::array![[1.0f32, 2.0], [3.0, 4.0]]);
            assert_eq!(r.id.as_deref(), Some("r1"));
            assert_eq!(r.outputs, vec![VALUES]);
        }
    }

    /// Issue 23: a tensor of far more elements than the request may hold is refused as it is
    /// read (the reader stops at the budget), as a 413; the budget is gone afterwards.
    #[test]
    fn a_tensor_past_the_element_budget_is_refused_while_it_is_read() {
        let m = plain();
        let data: Vec<f64> = vec![0.0; 5000];
        let body = serde_json::json!({"inputs": [{"name": "input", "shape": [2500, 2],
                                                  "datatype": "FP32", "data": data}]});
        match read_infer(body.to_string().as_bytes(), &m, 10) {
            Err(Error::TooLarge { detail, .. }) => {
                assert!(detail.contains("--max-predict-rows"), "{detail}")
            }
            other => panic!("{:?}", other.map(|i| i.x.dim())),
        }
        assert_eq!(ELEMENTS_LEFT.with(|b| b.get()), usize::MAX);
        let tf = serde_json::json!({"inputs": {"x": vec![0.0; 2000], "y": vec![0.0; 2000]}});
        let named = model(
            serde_json::json!({"input_dim": 2, "feature_names": ["x", "y"],
            "layers": [{"units": 1, "activation": "linear", "weights": [[1.0], [1.0]], "bias": [0.0]}]}),
        );
        assert!(matches!(
            read_tf_predict(tf.to_string().as_bytes(), &named, 10),
            Err(Error::TooLarge { .. })
        ));
    }

    #[test]
    fn a_v2_tensor_that_does_not_fit_is_refused_at_its_field() {
        let m = plain();
        let case = |t: serde_json::Value| {
            let body = serde_json::json!({"inputs": [t]}).to_string();
            match read_infer(body.as_bytes(), &m, 10) {
                Err(Error::Invalid(e)) => e[0].pointer.clone(),
                Err(Error::TooLarge { pointer, .. }) => pointer.unwrap_or_default(),
                other => panic!("{other:?}"),
            }
        };
        let t = |shape: serde_json::Value, dt: &str, data: serde_json::Value| serde_json::json!({"name": "input", "shape": shape, "datatype": dt, "data": data});
        assert_eq!(
            case(t(serde_json::json!([1, 2]), "FP32", serde_json::json!([1]))),
            "/inputs/0/data"
        );
        assert_eq!(
            case(t(
                serde_json::json!([1, 3]),
                "FP32",
                serde_json::json!([1, 2, 3])
            )),
            "/inputs/0/shape"
        );
        assert_eq!(
            case(t(
                serde_json::json!([1, 2]),
                "FP16",
                serde_json::json!([1, 2])
            )),
            "/inputs/0/datatype"
        );
        assert_eq!(
            case(t(
                serde_json::json!([1, 2]),
                "INT8",
                serde_json::json!([1, 2.5])
            )),
            "/inputs/0/data/1"
        );
        assert_eq!(
            case(t(
                serde_json::json!([1, 2]),
                "FP32",
                serde_json::json!([1, "a"])
            )),
            "/inputs/0/data/1"
        );
        assert_eq!(
            case(t(
                serde_json::json!([11, 2]),
                "FP32",
                serde_json::json!(vec![1; 22])
            )),
            "/inputs/0/shape"
        );
    }
}
