//! `/v1/models`: import, read, export, delete, and predict (from an in-memory cache of
//! loaded models, so a predict never waits for training).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use ndarray::Array2;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Value, json};
use uuid::Uuid;

use super::auth::{Principal, Role};
use super::error::{parse_json, parse_json_seed};
use super::{
    ApiError, AppState, Body, Idempotency, PageQuery, check_bytes_quota, parse_id, parse_query,
    rfc3339,
};
use crate::nn::tabular::Cell;
use crate::nn::{Model, ModelDocument, Prediction};
use crate::store::{ModelRecord, now_ms, to_json};

pub fn router() -> axum::Router<AppState> {
    Router::new()
        .route("/v1/models", get(list).post(import))
        .route("/v1/models/{id}", get(read).delete(remove))
        .route("/v1/models/{id}/export", get(export))
        .route("/v1/models/{id}/predict", post(predict))
}

fn view(m: &ModelRecord) -> Value {
    let doc = &m.document;
    let architecture: Vec<Value> = doc
        .get("layers")
        .and_then(|l| l.as_array())
        .map(|layers| {
            layers
                .iter()
                .map(|l| match l.get("dropout") {
                    Some(r) => json!({"dropout": r}),
                    None => json!({"units": l.get("units"), "activation": l.get("activation").cloned().unwrap_or(json!("linear"))}),
                })
                .collect()
        })
        .unwrap_or_default();
    // A tabular model's raw columns: what a predict record is keyed by.
    let columns: Option<Vec<Value>> = doc
        .get("encoder")
        .and_then(|e| e.get("columns"))
        .and_then(|c| c.as_array())
        .map(|cols| {
            cols.iter()
                .map(|c| json!({"name": c.get("name"), "type": c.get("type")}))
                .collect()
        });
    json!({
        "id": m.id,
        "name": m.name,
        "columns": columns,
        "created_at": rfc3339(m.created_at),
        "job_id": m.job_id,
        "dataset_id": m.dataset_id,
        "input_dim": m.input_dim,
        "output_dim": m.output_dim,
        "parameter_count": m.parameter_count,
        "architecture": architecture,
        "classes": doc.get("classes"),
        "feature_names": doc.get("feature_names"),
        "loss": doc.get("loss"),
        "standardized": doc.get("standardization").is_some(),
        "metrics": m.metrics,
    })
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ImportQuery {
    name: Option<String>,
}

/// Reads a model document and checks it, and its size against `max_parameters`: the whole
/// check `POST /v1/models` makes before storing (shared with the fuzz target `model_import`).
pub fn read_import(body: &[u8], max_parameters: usize) -> Result<Model, ApiError> {
    let doc: ModelDocument = parse_json(body)?;
    let model = Model::from_document(&doc).map_err(ApiError::Invalid)?;
    if model.network.parameter_count() > max_parameters {
        return Err(ApiError::invalid(
            "/layers",
            format!("more than {max_parameters} parameters (--max-parameters)"),
        ));
    }
    Ok(model)
}

async fn import(
    State(s): State<AppState>,
    p: Principal,
    headers: axum::http::HeaderMap,
    RawQuery(q): RawQuery,
    Body(body): Body,
) -> Result<impl IntoResponse, ApiError> {
    p.require(Role::Trainer)?;
    let idem = Idempotency::new(&headers, "POST /v1/models", q.as_deref(), &body)?;
    if let Some(r) = idem.replay(&s, &p.tenant).await? {
        return Ok(r);
    }
    let id = match s
        .store
        .get_model(idem.record_id(&p.tenant, "model"))
        .await?
    {
        // Stored by this key's first request, which died before answering.
        Some(m) if idem.is_retry_of(m.created_at) => {
            let location = format!("/v1/models/{}", m.id);
            return idem
                .answer(&s, &p.tenant, 201, Some(location), view(&m))
                .await;
        }
        Some(_) => Uuid::new_v4(),
        None => idem.record_id(&p.tenant, "model"),
    };
    let q: ImportQuery = parse_query(q.as_deref())?;
    let model = read_import(&body, s.limits.max_parameters)?;
    if model.network.layers.len() > s.limits.max_layers {
        return Err(ApiError::invalid(
            "/layers",
            format!(
                "{} layers is more than this server's limit of {} (--max-layers)",
                model.network.layers.len(),
                s.limits.max_layers
            ),
        ));
    }
    let document = to_json(&model.to_document());
    check_bytes_quota(&s, &p.tenant, document.to_string().len()).await?;
    let rec = ModelRecord {
        id,
        tenant: p.tenant.clone(),
        name: q.name,
        created_at: now_ms(),
        job_id: None,
        dataset_id: None,
        input_dim: model.input_dim() as i64,
        output_dim: model.network.output_dim() as i64,
        parameter_count: model.network.parameter_count() as i64,
        metrics: json!({}),
        document,
    };
    s.store.insert_model(&rec).await?;
    crate::crash::point("model_ack");
    s.models.put(&p.tenant, rec.id, Arc::new(model));
    idem.answer(
        &s,
        &p.tenant,
        201,
        Some(format!("/v1/models/{}", rec.id)),
        view(&rec),
    )
    .await
}

/// The caller's model `id`; another tenant's is "not found" too.
async fn load(s: &AppState, p: &Principal, id: &str) -> Result<ModelRecord, ApiError> {
    let id = parse_id(id, "model")?;
    match s.store.get_model(id).await? {
        Some(m) if m.tenant == p.tenant => Ok(m),
        _ => Err(ApiError::NotFound(format!("no model {id}"))),
    }
}

async fn read(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(view(&load(&s, &p, &id).await?)))
}

async fn export(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let m = load(&s, &p, &id).await?;
    let disposition = format!("attachment; filename=\"model-{}.json\"", m.id);
    Ok((
        [(header::CONTENT_DISPOSITION, disposition)],
        Json(m.document),
    ))
}

async fn list(
    State(s): State<AppState>,
    p: Principal,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let q: PageQuery = parse_query(q.as_deref())?;
    if q.status.is_some() {
        return Err(ApiError::invalid("/status", "models have no status filter"));
    }
    let page = s
        .store
        .list_models(&p.tenant, q.cursor()?, q.limit()?)
        .await?;
    Ok(Json(json!({
        "items": page.items.iter().map(view).collect::<Vec<_>>(),
        "next_cursor": page.next.map(|n| n.to_string()),
    })))
}

async fn remove(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    p.require(Role::Trainer)?;
    let id = load(&s, &p, &id).await?.id;
    s.models.evict(id);
    if s.store.delete_model(id).await? {
        crate::crash::point("delete_ack");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("no model {id}")))
    }
}

/// The predict response. Finite weights can still overflow 32-bit floats on large inputs; such
/// a row is refused (422 at `/inputs/i`) rather than answered with `null` outputs, which JSON
/// would otherwise carry for infinities and NaN.
pub fn prediction_body(id: Uuid, pred: Prediction) -> Result<Value, ApiError> {
    let mut body = json!({"model_id": id});
    add_prediction(&mut body, pred)?;
    Ok(body)
}

/// Adds `outputs` (and `labels` for a classifier) to `body`, refusing non-finite outputs as
/// [`prediction_body`] says.
fn add_prediction(body: &mut Value, pred: Prediction) -> Result<(), ApiError> {
    if let Some((i, _)) = pred
        .outputs
        .rows()
        .into_iter()
        .enumerate()
        .find(|(_, r)| r.iter().any(|v| !v.is_finite()))
    {
        return Err(ApiError::invalid(
            format!("/inputs/{i}"),
            "the model's outputs for this row overflow 32-bit floats (they are not finite); \
             the inputs are too large for its weights",
        ));
    }
    let outputs: Vec<Vec<f32>> = pred
        .outputs
        .rows()
        .into_iter()
        .map(|r| r.to_vec())
        .collect();
    body["outputs"] = json!(outputs);
    if let Some(labels) = pred.labels {
        body["labels"] = json!(labels);
    }
    Ok(())
}

/// The loaded model for `id`, from the cache or the store.
pub async fn model(s: &AppState, p: &Principal, id: Uuid) -> Result<Arc<Model>, ApiError> {
    if let Some(m) = s.models.get(&p.tenant, id) {
        metrics::counter!("backprop_model_cache_total", "result" => "hit").increment(1);
        return Ok(m);
    }
    metrics::counter!("backprop_model_cache_total", "result" => "miss").increment(1);
    let rec = load(s, p, &id.to_string()).await?;
    let doc: ModelDocument =
        serde_json::from_value(rec.document).map_err(|e| ApiError::Internal(e.to_string()))?;
    let m = Arc::new(
        Model::from_document(&doc)
            .map_err(|e| ApiError::Internal(format!("stored model {id}: {e:?}")))?,
    );
    s.models.put(&p.tenant, id, m.clone());
    Ok(m)
}

async fn predict(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id, "model")?;
    let m = model(&s, &p, id).await?;
    let mut answer = json!({"model_id": id});
    predict_rows(&s, &m, &body, &mut answer).await?;
    Ok(Json(answer))
}

/// Runs `m` on the rows of a `{"inputs": [[…], …]}` body and adds `outputs` (and `labels` for
/// a classifier) to `body`; see [`read_inputs`] for what is refused.
pub async fn predict_rows(
    s: &AppState,
    m: &Arc<Model>,
    request: &[u8],
    body: &mut Value,
) -> Result<(), ApiError> {
    let started = std::time::Instant::now();
    let x = read_inputs(request, m, s.limits.max_predict_rows)?;
    let rows = x.nrows();
    let pred = if rows * m.network.parameter_count() > 2_000_000 {
        let m = m.clone();
        tokio::task::spawn_blocking(move || m.predict(x.view()))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
    } else {
        m.predict(x.view())
    };
    add_prediction(body, pred)?;
    metrics::histogram!("backprop_predict_duration_seconds")
        .record(started.elapsed().as_secs_f64());
    metrics::histogram!("backprop_predict_rows").record(rows as f64);
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
pub fn read_inputs(body: &[u8], model: &Model, max_rows: usize) -> Result<Array2<f32>, ApiError> {
    let too_many = std::cell::Cell::new(false);
    let names: Option<HashMap<String, usize>> = model
        .raw_names()
        .map(|n| n.into_iter().enumerate().map(|(j, n)| (n, j)).collect());
    let seed = PredictBody {
        model,
        names: names.as_ref(),
        max_rows,
        too_many: &too_many,
    };
    let width = model.input_dim();
    let values = parse_json_seed(body, seed).map_err(|e| {
        if too_many.get() {
            ApiError::TooLargeAt {
                detail: format!(
                    "more than {max_rows} rows in one request (--max-predict-rows); send them in smaller batches"
                ),
                pointer: "/inputs".into(),
            }
        } else {
            e
        }
    })?;
    let rows = values.len() / width.max(1);
    if rows == 0 {
        return Err(ApiError::invalid("/inputs", "needs at least one row"));
    }
    Array2::from_shape_vec((rows, width), values)
        .map_err(|e| ApiError::Internal(format!("predict inputs: {e}")))
}

/// The request object; only `inputs` is allowed.
struct PredictBody<'a> {
    model: &'a Model,
    names: Option<&'a HashMap<String, usize>>,
    max_rows: usize,
    too_many: &'a std::cell::Cell<bool>,
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
        f.write_str(r#"an object {"inputs": [[values], ...]}"#)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<f32>, A::Error> {
        let mut inputs = None;
        while let Some(key) = map.next_key::<String>()? {
            if key != "inputs" {
                return Err(de::Error::unknown_field(&key, &["inputs"]));
            }
            if inputs.is_some() {
                return Err(de::Error::duplicate_field("inputs"));
            }
            inputs = Some(map.next_value_seed(Rows {
                model: self.model,
                names: self.names,
                max_rows: self.max_rows,
                too_many: self.too_many,
            })?);
        }
        inputs.ok_or_else(|| de::Error::missing_field("inputs"))
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
        let mut cells = Vec::with_capacity(width);
        while let Some(c) = seq.next_element::<RawCell>()? {
            if cells.len() <= width {
                cells.push(c);
            }
        }
        if cells.len() != width {
            return Err(de::Error::custom(format!(
                "has {} values, the model takes {width} columns",
                cells.len()
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
