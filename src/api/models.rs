//! `/v1/models`: import, read, export, delete, and predict (from an in-memory cache of
//! loaded models, so a predict never waits for training).

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use ndarray::Array2;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::auth::{Principal, Role};
use super::error::parse_json;
use super::{
    ApiError, AppState, Body, Idempotency, PageQuery, check_bytes_quota, parse_id, parse_query,
    rfc3339,
};
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
    json!({
        "id": m.id,
        "name": m.name,
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
    let q: ImportQuery = parse_query(q.as_deref())?;
    let model = read_import(&body, s.limits.max_parameters)?;
    let document = to_json(&model.to_document());
    check_bytes_quota(&s, &p.tenant, document.to_string().len()).await?;
    let rec = ModelRecord {
        id: Uuid::new_v4(),
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
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("no model {id}")))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PredictRequest {
    inputs: Vec<Vec<f64>>,
}

/// A predict request's rows as the matrix the model takes: `width` finite 32-bit numbers
/// each, 1 to `max_rows` rows.
pub fn read_inputs(body: &[u8], width: usize, max_rows: usize) -> Result<Array2<f32>, ApiError> {
    let req: PredictRequest = parse_json(body)?;
    if req.inputs.is_empty() {
        return Err(ApiError::invalid("/inputs", "needs at least one row"));
    }
    if req.inputs.len() > max_rows {
        return Err(ApiError::TooLarge(format!(
            "{} rows is more than {max_rows} per request (--max-predict-rows)",
            req.inputs.len(),
        )));
    }
    let mut x = Array2::<f32>::zeros((req.inputs.len(), width));
    for (i, row) in req.inputs.iter().enumerate() {
        if row.len() != width {
            return Err(ApiError::invalid(
                format!("/inputs/{i}"),
                format!("has {} values, the model takes {width} inputs", row.len()),
            ));
        }
        for (j, &v) in row.iter().enumerate() {
            let f = v as f32;
            if !f.is_finite() {
                return Err(ApiError::invalid(
                    format!("/inputs/{i}/{j}"),
                    format!("{v} is out of range for a 32-bit float"),
                ));
            }
            x[[i, j]] = f;
        }
    }
    Ok(x)
}

/// The predict response. Finite weights can still overflow 32-bit floats on large inputs; such
/// a row is refused (422 at `/inputs/i`) rather than answered with `null` outputs, which JSON
/// would otherwise carry for infinities and NaN.
pub fn prediction_body(id: Uuid, pred: Prediction) -> Result<Value, ApiError> {
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
    let mut body = json!({"model_id": id, "outputs": outputs});
    if let Some(labels) = pred.labels {
        body["labels"] = json!(labels);
    }
    Ok(body)
}

/// The loaded model for `id`, from the cache or the store.
async fn model(s: &AppState, p: &Principal, id: Uuid) -> Result<Arc<Model>, ApiError> {
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
    let started = std::time::Instant::now();
    let id = parse_id(&id, "model")?;
    let m = model(&s, &p, id).await?;
    let x = read_inputs(&body, m.input_dim(), s.limits.max_predict_rows)?;
    let rows = x.nrows();
    let pred = if rows * m.network.parameter_count() > 2_000_000 {
        let m = m.clone();
        tokio::task::spawn_blocking(move || m.predict(x.view()))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
    } else {
        m.predict(x.view())
    };
    let body = prediction_body(id, pred)?;
    metrics::histogram!("backprop_predict_duration_seconds")
        .record(started.elapsed().as_secs_f64());
    metrics::histogram!("backprop_predict_rows").record(rows as f64);
    Ok(Json(body))
}
