//! Predictions: the cache of loaded models (and of running jobs' checkpoint snapshots), the
//! bounded streaming reader of `{"inputs": …}` bodies, and running a model on them. The
//! forward pass runs on the caller's task for small requests and on a blocking thread for
//! large ones, so a prediction never waits behind training.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use ndarray::Array2;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use uuid::Uuid;

use super::read::parse_json_seed;
use super::{Error, Service};

type Result<T, E = Error> = std::result::Result<T, E>;
use crate::nn::portable::tabular::Cell;
use crate::nn::{Model, ModelDocument, Prediction};

/// A job's checkpoint as a model: (tenant, epoch, model).
type Snapshot = (String, i64, Arc<Model>);

/// Loaded models for predictions, bounded.
pub struct ModelCache {
    /// id → (tenant, model)
    models: RwLock<HashMap<Uuid, (String, Arc<Model>)>>,
    /// job id → (tenant, checkpoint epoch, model): running jobs' latest checkpoints, so a
    /// dashboard redrawing a decision boundary does not rebuild one per request.
    snapshots: RwLock<HashMap<Uuid, Snapshot>>,
    capacity: usize,
}

impl ModelCache {
    pub fn new(capacity: usize) -> Self {
        ModelCache {
            models: RwLock::new(HashMap::new()),
            snapshots: RwLock::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// The cached model `id` when it belongs to `tenant`.
    pub fn get(&self, tenant: &str, id: Uuid) -> Option<Arc<Model>> {
        let g = self.models.read().ok()?;
        let (t, m) = g.get(&id)?;
        (t == tenant).then(|| m.clone())
    }

    pub fn put(&self, tenant: &str, id: Uuid, m: Arc<Model>) {
        if let Ok(mut g) = self.models.write() {
            if g.len() >= self.capacity
                && let Some(k) = g.keys().next().copied()
            {
                g.remove(&k);
            }
            g.insert(id, (tenant.to_string(), m));
        }
    }

    pub fn evict(&self, id: Uuid) {
        if let Ok(mut g) = self.models.write() {
            g.remove(&id);
        }
        if let Ok(mut g) = self.snapshots.write() {
            g.remove(&id);
        }
    }

    /// The model of job `job`'s checkpoint after `epoch`, when cached for `tenant`.
    pub fn snapshot(&self, tenant: &str, job: Uuid, epoch: i64) -> Option<Arc<Model>> {
        let g = self.snapshots.read().ok()?;
        let (t, e, m) = g.get(&job)?;
        (t == tenant && *e == epoch).then(|| m.clone())
    }

    /// Keeps one snapshot per job (the newest replaces the older).
    pub fn put_snapshot(&self, tenant: &str, job: Uuid, epoch: i64, m: Arc<Model>) {
        if let Ok(mut g) = self.snapshots.write() {
            if !g.contains_key(&job)
                && g.len() >= self.capacity
                && let Some(k) = g.keys().next().copied()
            {
                g.remove(&k);
            }
            g.insert(job, (tenant.to_string(), epoch, m));
        }
    }
}

impl Service {
    /// The loaded model `id` of `tenant`, from the cache or the store.
    pub async fn model(&self, tenant: &str, id: Uuid) -> Result<Arc<Model>> {
        if let Some(m) = self.models.get(tenant, id) {
            metrics::counter!("backprop_model_cache_total", "result" => "hit").increment(1);
            return Ok(m);
        }
        metrics::counter!("backprop_model_cache_total", "result" => "miss").increment(1);
        let rec = self.model_record(tenant, id).await?;
        let doc: ModelDocument =
            serde_json::from_value(rec.document).map_err(|e| Error::Internal(e.to_string()))?;
        let m = Arc::new(
            Model::from_document(&doc)
                .map_err(|e| Error::Internal(format!("stored model {id}: {e:?}")))?,
        );
        self.models.put(tenant, id, m.clone());
        Ok(m)
    }

    /// Runs `m` on the rows of a `{"inputs": [[…], …]}` body; see [`read_inputs`] for what is
    /// refused, and [`check_finite`] for the outputs that are.
    pub async fn predict(&self, m: &Arc<Model>, request: &[u8]) -> Result<Prediction> {
        let started = std::time::Instant::now();
        let x = read_inputs(request, m, self.limits.max_predict_rows)?;
        self.predict_matrix(m, x, started).await
    }

    /// Runs `m` on rows already read into the network's inputs (`started`: when the
    /// request's reading began, for the duration metric).
    pub async fn predict_matrix(
        &self,
        m: &Arc<Model>,
        x: Array2<f32>,
        started: std::time::Instant,
    ) -> Result<Prediction> {
        let rows = x.nrows();
        let pred = if rows * m.network.parameter_count() > 2_000_000 {
            let m = m.clone();
            tokio::task::spawn_blocking(move || m.predict(x.view())).await?
        } else {
            m.predict(x.view())
        };
        check_finite(&pred)?;
        metrics::histogram!("backprop_predict_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        metrics::histogram!("backprop_predict_rows").record(rows as f64);
        Ok(pred)
    }
}

/// Finite weights can still overflow 32-bit floats on large inputs; such a row is refused
/// (invalid at `/inputs/i`) rather than answered with `null` outputs, which JSON would
/// otherwise carry for infinities and NaN.
pub fn check_finite(pred: &Prediction) -> Result<()> {
    if let Some((i, _)) = pred
        .outputs
        .rows()
        .into_iter()
        .enumerate()
        .find(|(_, r)| r.iter().any(|v| !v.is_finite()))
    {
        return Err(Error::invalid(
            format!("/inputs/{i}"),
            "the model's outputs for this row overflow 32-bit floats (they are not finite); \
             the inputs are too large for its weights",
        ));
    }
    Ok(())
}

/// Reads `{"inputs": [...]}` straight into a `rows × inputs` matrix of the network's inputs,
/// checking as it goes. A row is an array in the model's column order or an object keyed by
/// column name (a key left out is a missing cell; an unknown key is refused, naming it). For a
/// model trained on plain numbers every value must be a finite 32-bit float (`/inputs/i/j`);
/// a tabular model (with an encoder) also takes strings, booleans and `null`. Every array row
/// is the model's width (`/inputs/i`); at most `max_rows` rows (413). A body of a million
/// one-number rows thus never becomes a million small vectors, and the reading stops at the
/// first row past the limit.
pub fn read_inputs(body: &[u8], model: &Model, max_rows: usize) -> Result<Array2<f32>, Error> {
    read_rows(body, model, max_rows, "inputs", &[])
}

/// [`read_inputs`] with the rows under `key` (TF Serving's `instances`), and the fields of
/// `ignored` allowed beside it and not read (TF Serving's `signature_name`).
pub fn read_rows(
    body: &[u8],
    model: &Model,
    max_rows: usize,
    key: &'static str,
    ignored: &'static [&'static str],
) -> Result<Array2<f32>, Error> {
    let too_many = std::cell::Cell::new(false);
    let names: Option<HashMap<String, usize>> = model
        .raw_names()
        .map(|n| n.into_iter().enumerate().map(|(j, n)| (n, j)).collect());
    let seed = PredictBody {
        model,
        names: names.as_ref(),
        max_rows,
        too_many: &too_many,
        key,
        ignored,
    };
    let width = model.input_dim();
    let values = parse_json_seed(body, seed).map_err(|e| {
        if too_many.get() {
            Error::TooLarge {
                detail: format!(
                    "more than {max_rows} rows in one request (--max-predict-rows); send them in smaller batches"
                ),
                pointer: Some(format!("/{key}")),
            }
        } else {
            e
        }
    })?;
    let rows = values.len() / width.max(1);
    if rows == 0 {
        return Err(Error::invalid(format!("/{key}"), "needs at least one row"));
    }
    Array2::from_shape_vec((rows, width), values)
        .map_err(|e| Error::Internal(format!("predict inputs: {e}")))
}

/// The request object: the rows under `key` (`inputs`), and nothing else but the `ignored`.
struct PredictBody<'a> {
    model: &'a Model,
    names: Option<&'a HashMap<String, usize>>,
    max_rows: usize,
    too_many: &'a std::cell::Cell<bool>,
    key: &'static str,
    ignored: &'static [&'static str],
}

impl<'de> DeserializeSeed<'de> for PredictBody<'_> {
    type Value = Vec<f32>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Vec<f32>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PredictBody<'_> {
    type Value = Vec<f32>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, r#"an object {{"{}": [[values], ...]}}"#, self.key)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<f32>, A::Error> {
        let mut inputs = None;
        while let Some(key) = map.next_key::<String>()? {
            if self.ignored.contains(&key.as_str()) {
                map.next_value::<de::IgnoredAny>()?;
                continue;
            }
            if key != self.key {
                return Err(de::Error::custom(format_args!(
                    "unknown field `{key}`, expected `{}`",
                    self.key
                )));
            }
            if inputs.is_some() {
                return Err(de::Error::duplicate_field(self.key));
            }
            inputs = Some(map.next_value_seed(Rows {
                model: self.model,
                names: self.names,
                max_rows: self.max_rows,
                too_many: self.too_many,
            })?);
        }
        inputs.ok_or_else(|| de::Error::missing_field(self.key))
    }
}

/// `inputs`: rows, encoded and flattened.
struct Rows<'a> {
    model: &'a Model,
    names: Option<&'a HashMap<String, usize>>,
    max_rows: usize,
    too_many: &'a std::cell::Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for Rows<'_> {
    type Value = Vec<f32>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Vec<f32>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Rows<'_> {
    type Value = Vec<f32>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "an array of rows of {} values", self.model.raw_width())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<f32>, A::Error> {
        let width = self.model.input_dim();
        let hint = seq.size_hint().unwrap_or(0).min(self.max_rows);
        let mut values = Vec::with_capacity(hint.saturating_mul(width).min(1 << 20));
        let mut rows = 0;
        loop {
            let row = Row {
                model: self.model,
                names: self.names,
                values: &mut values,
            };
            if seq.next_element_seed(row)?.is_none() {
                return Ok(values);
            }
            rows += 1;
            if rows > self.max_rows {
                self.too_many.set(true);
                return Err(de::Error::custom("too many rows"));
            }
        }
    }
}

/// One row (an array or a record), encoded and appended to the flat buffer.
struct Row<'a> {
    model: &'a Model,
    names: Option<&'a HashMap<String, usize>>,
    values: &'a mut Vec<f32>,
}

impl Row<'_> {
    /// Encodes one row of raw cells onto the buffer.
    fn push<E: de::Error>(self, cells: &[RawCell]) -> Result<(), E> {
        let cells: Vec<Cell> = cells.iter().map(RawCell::cell).collect();
        let x = self
            .model
            .encode_rows(&[cells])
            .map_err(|(_, e)| E::custom(e.to_string()))?;
        self.values.extend(x.iter());
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Row<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Row<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "a row of {} values, or an object keyed by column name",
            self.model.raw_width()
        )
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let width = self.model.raw_width();
        let tabular = self.model.encoder.is_some();
        if !tabular {
            // Plain numbers straight into the buffer, as models without an encoder always took.
            let start = self.values.len();
            let mut n = 0;
            while let Some(v) = seq.next_element_seed(Finite)? {
                n += 1;
                if n <= width {
                    self.values.push(v);
                }
            }
            if n != width {
                self.values.truncate(start);
                return Err(de::Error::custom(format!(
                    "has {n} values, the model takes {width} inputs"
                )));
            }
            return Ok(());
        }
        // Counted whole, kept only up to the width (a row of a million cells holds no more).
        let mut cells = Vec::with_capacity(width);
        let mut n = 0usize;
        while let Some(c) = seq.next_element::<RawCell>()? {
            n += 1;
            if cells.len() < width {
                cells.push(c);
            }
        }
        if n != width {
            return Err(de::Error::custom(format!(
                "has {n} values, the model takes {width} columns"
            )));
        }
        self.push(&cells)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some(names) = self.names else {
            return Err(de::Error::custom(
                "this model has no column names; send each row as an array of values",
            ));
        };
        let width = self.model.raw_width();
        let mut cells = vec![RawCell::Missing; width];
        let mut seen = vec![false; width];
        let tabular = self.model.encoder.is_some();
        while let Some(key) = map.next_key::<String>()? {
            // The target, when the record is a row of the training file: not an input.
            if !names.contains_key(&key)
                && self
                    .model
                    .target_names
                    .as_ref()
                    .is_some_and(|t| t.contains(&key))
            {
                map.next_value::<de::IgnoredAny>()?;
                continue;
            }
            let Some(&j) = names.get(&key) else {
                let mut known: Vec<&String> = names.keys().collect();
                known.sort_by_key(|k| names[*k]);
                let listed: Vec<String> = known.iter().take(20).map(|k| format!("{k:?}")).collect();
                return Err(de::Error::custom(format!(
                    "unknown column {key:?}; the model's columns are {}{}",
                    listed.join(", "),
                    if known.len() > 20 { ", …" } else { "" }
                )));
            };
            if std::mem::replace(&mut seen[j], true) {
                return Err(de::Error::custom(format!("column {key:?} appears twice")));
            }
            cells[j] = if tabular {
                map.next_value::<RawCell>()?
            } else {
                RawCell::Number(map.next_value_seed(Finite)? as f64)
            };
        }
        self.push(&cells)
    }
}

/// A predict cell as sent: a number, text, a boolean (yes/no) or null (missing).
#[derive(Clone, Debug)]
enum RawCell {
    Number(f64),
    Text(String),
    Missing,
}

impl RawCell {
    fn cell(&self) -> Cell<'_> {
        match self {
            RawCell::Number(n) => Cell::Number(*n),
            RawCell::Text(t) => Cell::Text(t),
            RawCell::Missing => Cell::Missing,
        }
    }
}

impl<'de> Deserialize<'de> for RawCell {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawCell;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number, a string, a boolean or null")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawCell, E> {
                if (v as f32).is_finite() {
                    Ok(RawCell::Number(v))
                } else {
                    Err(E::custom(format!("{v} is out of range for a 32-bit float")))
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawCell, E> {
                Ok(RawCell::Number(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawCell, E> {
                Ok(RawCell::Number(v as f64))
            }
            fn visit_str<E>(self, v: &str) -> Result<RawCell, E> {
                Ok(RawCell::Text(v.to_owned()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<RawCell, E> {
                Ok(RawCell::Text(v.to_string()))
            }
            fn visit_unit<E>(self) -> Result<RawCell, E> {
                Ok(RawCell::Missing)
            }
            fn visit_none<E>(self) -> Result<RawCell, E> {
                Ok(RawCell::Missing)
            }
        }
        d.deserialize_any(V)
    }
}

/// A number that fits a finite 32-bit float.
struct Finite;

impl<'de> DeserializeSeed<'de> for Finite {
    type Value = f32;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<f32, D::Error> {
        let v = f64::deserialize(d)?;
        let f = v as f32;
        if f.is_finite() {
            Ok(f)
        } else {
            Err(de::Error::custom(format!(
                "{v} is out of range for a 32-bit float"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain model taking `width` numbers.
    fn plain(width: usize) -> Model {
        let doc: ModelDocument = serde_json::from_value(serde_json::json!({
            "input_dim": width,
            "layers": [{"units": 1, "activation": "linear", "weights": vec![vec![0.5]; width]}],
        }))
        .expect("a model document");
        Model::from_document(&doc).expect("a model")
    }

    #[test]
    fn the_row_reader_stops_at_the_row_limit_and_checks_every_row() {
        let m = plain(2);
        let x = read_inputs(br#"{"inputs": [[1, 2], [3, 4]]}"#, &m, 2).unwrap();
        assert_eq!(x, ndarray::array![[1.0f32, 2.0], [3.0, 4.0]]);
        match read_inputs(br#"{"inputs": [[1, 2], [3, 4], [5, 6]]}"#, &m, 2) {
            Err(Error::TooLarge { pointer, detail }) => {
                assert_eq!(pointer.as_deref(), Some("/inputs"));
                assert!(detail.contains("--max-predict-rows"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        match read_inputs(br#"{"inputs": [[1, 2], [3]]}"#, &m, 10) {
            Err(Error::Invalid(errs)) => assert_eq!(errs[0].pointer, "/inputs/1"),
            other => panic!("{other:?}"),
        }
    }

    /// Issue 23, item 14: a tabular row of 9, 15 or 30 cells for a 2-column model said "has
    /// 3 values" (the count stopped one past the width).
    #[test]
    fn a_row_of_the_wrong_width_is_told_its_own_width() {
        let doc: ModelDocument = serde_json::from_value(serde_json::json!({
            "input_dim": 3,
            "encoder": {"columns": [
                {"type": "numeric", "name": "size", "fill": 2.0},
                {"type": "categorical", "name": "color", "categories": ["blue", "red"]}
            ]},
            "layers": [{"units": 1, "activation": "linear",
                        "weights": [[1.0], [0.5], [0.2]], "bias": [0.0]}],
        }))
        .expect("a model document");
        let m = Model::from_document(&doc).expect("a model");
        for n in [1usize, 9, 15, 30] {
            let row: Vec<serde_json::Value> = (0..n).map(|_| serde_json::json!(1)).collect();
            let body = serde_json::json!({"inputs": [row]}).to_string();
            match read_inputs(body.as_bytes(), &m, 10) {
                Err(Error::Invalid(errs)) => assert!(
                    errs[0]
                        .message
                        .contains(&format!("has {n} values, the model takes 2 columns")),
                    "{n}: {}",
                    errs[0].message
                ),
                other => panic!("{n}: {other:?}"),
            }
        }
    }
}
