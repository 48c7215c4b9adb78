//! `/v1/datasets`: upload (JSON or CSV), list, read, read rows, delete.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::auth::{Principal, Role};
use super::error::parse_json;
use super::{
    ApiError, AppState, Body, Idempotency, PageQuery, check_bytes_quota, parse_id, parse_query,
    rfc3339,
};
use std::collections::BTreeMap;

use crate::data::profile::Profile;
use crate::data::{self, Dataset, JsonDataset, ReadOptions, Summary};
use crate::nn::tabular::ColumnType;
use crate::store::{DatasetRecord, now_ms};

pub fn router() -> axum::Router<AppState> {
    Router::new()
        .route("/v1/datasets", get(list).post(create))
        .route("/v1/datasets/{id}", get(read).delete(remove))
        .route("/v1/datasets/{id}/rows", get(rows))
}

/// Most rows one `GET /v1/datasets/{id}/rows` answers.
const MAX_ROWS_PER_PAGE: usize = 10_000;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RowsQuery {
    offset: Option<i64>,
    limit: Option<i64>,
}

/// The stored rows `offset..offset + limit`, as they were uploaded (raw features; class
/// labels as in the data): a preview, or the points a dashboard draws.
async fn rows(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    p.require(Role::Trainer)?;
    let q: RowsQuery = parse_query(q.as_deref())?;
    let offset = match q.offset {
        None => 0,
        Some(o) if o >= 0 => o as usize,
        Some(o) => {
            return Err(ApiError::invalid(
                "/offset",
                format!("must be 0 or more, got {o}"),
            ));
        }
    };
    let limit = match q.limit {
        None => 20,
        Some(l) if (1..=MAX_ROWS_PER_PAGE as i64).contains(&l) => l as usize,
        Some(l) => {
            return Err(ApiError::invalid(
                "/limit",
                format!("must be between 1 and {MAX_ROWS_PER_PAGE}, got {l}"),
            ));
        }
    };
    let d = load(&s, &p, &id).await?;
    let blob = s
        .store
        .dataset_data(d.id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no dataset {}", d.id)))?;
    let ds = tokio::task::spawn_blocking(move || Dataset::from_bytes(&blob))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(ApiError::Internal)?;
    Ok(Json(json!({
        "dataset_id": d.id,
        "total": ds.rows(),
        "offset": offset,
        "feature_names": ds.feature_names,
        "target_names": ds.target_names,
        "rows": ds.slice(offset, limit),
    })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct UploadQuery {
    name: Option<String>,
    target: Option<String>,
    /// CSV only: `area_code:categorical,customer_id:ignore`.
    columns: Option<String>,
    /// CSV only: the cells read as missing, comma-separated (replaces the default list).
    na_values: Option<String>,
}

/// Reads `?columns=name:type,name:type` (or a JSON object) into column types.
fn parse_column_types(q: &str) -> Result<BTreeMap<String, ColumnType>, ApiError> {
    let bad = |m: String| ApiError::invalid("/columns", m);
    let q = q.trim();
    if q.starts_with('{') {
        let raw: BTreeMap<String, String> = serde_json::from_str(q)
            .map_err(|e| bad(format!("must be name:type pairs or a JSON object: {e}")))?;
        return raw
            .into_iter()
            .map(|(n, t)| column_type(&n, &t).map(|t| (n, t)))
            .collect();
    }
    let mut out = BTreeMap::new();
    for pair in q.split(',').filter(|p| !p.trim().is_empty()) {
        let Some((name, kind)) = pair.rsplit_once(':') else {
            return Err(bad(format!(
                "{pair:?} is not name:type; for example area_code:categorical,customer_id:ignore"
            )));
        };
        out.insert(
            name.trim().to_owned(),
            column_type(name.trim(), kind.trim())?,
        );
    }
    Ok(out)
}

fn column_type(name: &str, kind: &str) -> Result<ColumnType, ApiError> {
    ColumnType::parse(kind).ok_or_else(|| {
        ApiError::invalid(
            format!("/columns/{}", crate::nn::tabular::pointer_token(name)),
            format!(
                "unknown column type {kind:?} for {name:?}; expected one of {}",
                ColumnType::ALL.join(", ")
            ),
        )
    })
}

/// The dataset as an upload answers and lists show it: its size, names, target, and columns
/// (type, storage, missing and distinct counts).
pub fn view(d: &DatasetRecord) -> Value {
    let mut v = view_full(d);
    if let Some(o) = v.as_object_mut() {
        o.remove("profile");
    }
    v
}

/// [`view`] and the profile, as `GET /v1/datasets/{id}` shows it.
pub fn view_full(d: &DatasetRecord) -> Value {
    let mut v = json!({
        "id": d.id,
        "name": d.name,
        "created_at": rfc3339(d.created_at),
        "rows": d.rows,
        "inputs": d.inputs,
        "outputs": d.outputs,
        "size_bytes": d.size_bytes,
    });
    if let (Some(o), Some(m)) = (v.as_object_mut(), d.meta.as_object()) {
        for (k, val) in m {
            if k == "schema" {
                // What validation reads; users see its columns.
                if let Some(c) = val.get("columns") {
                    o.insert("columns".into(), c.clone());
                }
                continue;
            }
            o.insert(k.clone(), val.clone());
        }
    }
    v
}

/// What validation needs of a stored dataset: from its metadata, or (datasets stored before
/// tabular uploads kept it there) by decoding it once.
pub async fn summary(s: &AppState, d: &DatasetRecord) -> Result<Summary, ApiError> {
    if let Some(schema) = d.meta.get("schema")
        && let Ok(summary) = serde_json::from_value::<Summary>(schema.clone())
    {
        return Ok(summary);
    }
    let blob = s
        .store
        .dataset_data(d.id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no dataset {}", d.id)))?;
    tokio::task::spawn_blocking(move || Dataset::from_bytes(&blob).map(|ds| Summary::of(&ds)))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(ApiError::Internal)
}

/// Stores a parsed dataset under `id` and returns its record.
pub async fn store_dataset(
    s: &AppState,
    tenant: &str,
    id: Uuid,
    name: String,
    ds: Dataset,
) -> Result<DatasetRecord, ApiError> {
    // The profile, the schema and the stored form are made on a blocking thread; the dataset
    // is dropped before the insert, so a large upload is not held twice while it is written.
    let started = std::time::Instant::now();
    let (ds, blob, profile, summary) = tokio::task::spawn_blocking(move || {
        let blob = ds.to_bytes();
        let profile = Profile::of(&ds);
        let summary = Summary::of(&ds);
        (ds, blob, profile, summary)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let target_kind = match ds.targets {
        crate::nn::Targets::Labels(_) => "labels",
        crate::nn::Targets::Values(_) => "values",
    };
    check_bytes_quota(s, tenant, blob.len()).await?;
    let rec = DatasetRecord {
        id,
        tenant: tenant.to_string(),
        name,
        created_at: now_ms(),
        rows: ds.rows() as i64,
        inputs: ds.inputs() as i64,
        outputs: ds.outputs() as i64,
        meta: json!({
            "feature_names": ds.feature_names,
            "target_names": ds.target_names,
            "target_kind": target_kind,
            "classes": ds.classes(),
            "dropped_rows": ds.dropped_rows,
            "schema": summary,
            "profile": profile,
        }),
        size_bytes: blob.len() as i64,
    };
    drop(ds);
    crate::data::release_memory();
    let prepared = started.elapsed();
    s.store.insert_dataset(&rec, blob).await?;
    tracing::info!(
        dataset_id = %rec.id,
        bytes = rec.size_bytes,
        prepared_ms = prepared.as_millis() as u64,
        stored_ms = started.elapsed().as_millis() as u64,
        "dataset stored"
    );
    // The upload's buffers are free again: give the memory back rather than keep it.
    crate::data::release_memory();
    Ok(rec)
}

async fn create(
    State(s): State<AppState>,
    p: Principal,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    req: axum::extract::Request,
) -> Result<impl IntoResponse, ApiError> {
    p.require(Role::Trainer)?;
    let query: UploadQuery = parse_query(q.as_deref())?;
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let essence = ctype
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let is_csv = matches!(
        essence.as_str(),
        "text/csv" | "application/csv" | "text/plain"
    );
    let types = match &query.columns {
        Some(c) => parse_column_types(c)?,
        None => BTreeMap::new(),
    };
    let na: Option<Vec<String>> = query
        .na_values
        .as_ref()
        .map(|v| v.split(',').map(str::to_owned).collect());
    // A CSV is parsed as it arrives (its text is never held whole); other bodies are read.
    let (idem, payload) = if is_csv {
        let opts = ReadOptions::new(na.as_deref(), types.clone());
        let (hash, parsed) = stream_csv(&s, req, query.target.clone(), opts).await?;
        let idem = Idempotency::with_body_hash(&headers, "POST /v1/datasets", q.as_deref(), hash)?;
        (idem, Payload::Csv(Box::new(parsed)))
    } else {
        use axum::extract::FromRequest;
        let Body(body) = Body::from_request(req, &s).await?;
        let idem = Idempotency::new(&headers, "POST /v1/datasets", q.as_deref(), &body)?;
        (idem, Payload::Other(body))
    };
    if let Some(r) = idem.replay(&s, &p.tenant).await? {
        return Ok(r);
    }
    let id = match s
        .store
        .get_dataset(idem.record_id(&p.tenant, "dataset"))
        .await?
    {
        // Stored by this key's first request, which died before answering.
        Some(d) if idem.is_retry_of(d.created_at) => {
            let location = format!("/v1/datasets/{}", d.id);
            return idem
                .answer(&s, &p.tenant, 201, Some(location), view(&d))
                .await;
        }
        Some(_) => Uuid::new_v4(),
        None => idem.record_id(&p.tenant, "dataset"),
    };
    let limits = s.limits.data;
    let (name, ds) = match payload {
        Payload::Csv(parsed) => {
            let ds = (*parsed).map_err(|e| {
                // A `?target=` that names no column is the query's fault, not the file's:
                // 422 at the parameter, as for JSON uploads.
                if e.row.is_none() && e.column.is_some() && e.column == query.target {
                    ApiError::invalid("/target", e.message)
                } else if e.row.is_none() && e.column.is_some() && !e.too_large {
                    // About a whole column (empty, a type that cannot apply): 422 at it.
                    let column = e.column.clone().unwrap_or_default();
                    ApiError::invalid(
                        format!("/columns/{}", crate::nn::tabular::pointer_token(&column)),
                        e.message,
                    )
                } else {
                    e.into()
                }
            })?;
            (query.name.unwrap_or_else(|| "dataset".into()), ds)
        }
        Payload::Other(body) if matches!(essence.as_str(), "application/json" | "") => {
            if query.target.is_some() {
                return Err(ApiError::invalid(
                    "/target",
                    "the target query parameter is for CSV uploads",
                ));
            }
            for (param, given) in [
                ("/columns", query.columns.is_some()),
                ("/na_values", query.na_values.is_some()),
            ] {
                if given {
                    return Err(ApiError::invalid(
                        param,
                        "this query parameter is for CSV uploads; a JSON body gives it as a field",
                    ));
                }
            }
            let body: JsonDataset = parse_json(&body)?;
            let name = query
                .name
                .or(body.name.clone())
                .unwrap_or_else(|| "dataset".into());
            let ds = tokio::task::spawn_blocking(move || data::from_json(&body, &limits))
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))??;
            (name, ds)
        }
        Payload::Other(_) => {
            return Err(ApiError::bad(format!(
                "unsupported content type \"{essence}\"; send application/json or text/csv"
            )));
        }
    };
    if name.trim().is_empty() || name.len() > 200 {
        return Err(ApiError::invalid("/name", "must be 1 to 200 characters"));
    }
    let rec = store_dataset(&s, &p.tenant, id, name, ds).await?;
    crate::crash::point("dataset_ack");
    let location = format!("/v1/datasets/{}", rec.id);
    idem.answer(&s, &p.tenant, 201, Some(location), view(&rec))
        .await
}

/// An upload's body: a CSV already parsed as it streamed in, or any other body's bytes.
enum Payload {
    Csv(Box<Result<Dataset, data::DataError>>),
    Other(axum::body::Bytes),
}

/// Reads a CSV body as it arrives, parsing it on a blocking thread a piece at a time: the SHA-256
/// of its bytes (for `Idempotency-Key`) and the dataset or the file's first problem. The body
/// limit is checked as for any other body (413).
async fn stream_csv(
    s: &AppState,
    req: axum::extract::Request,
    target: Option<String>,
    opts: ReadOptions,
) -> Result<([u8; 32], Result<Dataset, data::DataError>), ApiError> {
    use futures::StreamExt;
    use sha2::Digest;
    let limit = s.limits.max_body_bytes;
    let too_large = || {
        ApiError::TooLarge(format!(
            "the request body is larger than the server's limit of {limit} bytes (--max-body-bytes)"
        ))
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let limits = s.limits.data;
    let started = std::time::Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<axum::body::Bytes>(16);
    let parser = tokio::task::spawn_blocking(move || {
        let mut csv = data::CsvStream::new(target.as_deref(), limits, opts);
        let mut failed = None;
        while let Some(piece) = rx.blocking_recv() {
            if failed.is_none()
                && let Err(e) = csv.push(&piece)
            {
                failed = Some(e);
            }
        }
        match failed {
            Some(e) => Err(e),
            None => csv.finish(),
        }
    });
    // The body's hash is only a fingerprint for Idempotency-Key; without one it is not needed.
    let keyed = req.headers().contains_key("idempotency-key");
    let mut hash = sha2::Sha256::new();
    let mut total = 0usize;
    let mut pending = bytes::BytesMut::new();
    let mut stream = req.into_body().into_data_stream();
    while let Some(frame) = stream.next().await {
        let frame = frame.map_err(|e| ApiError::bad(format!("unreadable request body: {e}")))?;
        total += frame.len();
        if total > limit {
            return Err(too_large());
        }
        if keyed {
            hash.update(&frame);
        }
        pending.extend_from_slice(&frame);
        // Hand over in pieces of about a megabyte: fewer wake-ups of the parser.
        if pending.len() >= 1 << 20 && tx.send(pending.split().freeze()).await.is_err() {
            break;
        }
    }
    if !pending.is_empty() {
        let _ = tx.send(pending.freeze()).await;
    }
    drop(tx);
    let received = started.elapsed();
    let parsed = parser
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    tracing::info!(
        bytes = total,
        received_ms = received.as_millis() as u64,
        parsed_ms = started.elapsed().as_millis() as u64,
        "CSV upload read"
    );
    Ok((hash.finalize().into(), parsed))
}

async fn list(
    State(s): State<AppState>,
    p: Principal,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let q: PageQuery = parse_query(q.as_deref())?;
    p.require(Role::Trainer)?;
    let page = s
        .store
        .list_datasets(&p.tenant, q.cursor()?, q.limit()?)
        .await?;
    Ok(Json(json!({
        "items": page.items.iter().map(view).collect::<Vec<_>>(),
        "next_cursor": page.next.map(|n| n.to_string()),
    })))
}

/// The caller's dataset `id`; another tenant's is "not found" too.
pub async fn load(s: &AppState, p: &Principal, id: &str) -> Result<DatasetRecord, ApiError> {
    let id = parse_id(id, "dataset")?;
    match s.store.get_dataset(id).await? {
        Some(d) if d.tenant == p.tenant => Ok(d),
        _ => Err(ApiError::NotFound(format!("no dataset {id}"))),
    }
}

async fn read(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    p.require(Role::Trainer)?;
    Ok(Json(view_full(&load(&s, &p, &id).await?)))
}

async fn remove(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    p.require(Role::Trainer)?;
    let d = load(&s, &p, &id).await?;
    if s.store.delete_dataset(d.id).await? {
        crate::crash::point("delete_ack");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("no dataset {}", d.id)))
    }
}
