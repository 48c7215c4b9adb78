//! `/v1/datasets`: upload (JSON or CSV), list, read, read rows, delete.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::{Principal, Role};
use super::extract::{Body, Idempotency, PageQuery, parse_id, parse_query};
use super::{ApiError, AppState, view};
use crate::data::{self, Columns, ReadOptions};
use crate::service::datasets::{
    RowSink, Upload, UploadBody, csv_options, dialect_options, is_csv, is_jsonl,
};

pub fn router() -> axum::Router<AppState> {
    Router::new()
        .route("/v1/datasets", get(list).post(create))
        .route("/v1/datasets/{id}", get(read).delete(remove))
        .route("/v1/datasets/{id}/rows", get(rows))
        .route("/v1/datasets/{id}/leaderboard", get(leaderboard))
}

/// Most rows one `GET /v1/datasets/{id}/rows` answers.
const MAX_ROWS_PER_PAGE: usize = 10_000;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RowsQuery {
    offset: Option<i64>,
    limit: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LeaderboardQuery {
    metric: Option<String>,
}

/// `GET /v1/datasets/{id}/leaderboard?metric=`: every model trained on the dataset, ranked.
async fn leaderboard(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    p.require(Role::Trainer)?;
    let q: LeaderboardQuery = parse_query(q.as_deref())?;
    let id = parse_id(&id, "dataset")?;
    let board = s
        .service
        .leaderboard(&p.tenant, id, q.metric.as_deref())
        .await?;
    let entries: Vec<Value> = board
        .entries
        .iter()
        .map(|e| {
            let mut v = crate::store::to_json(e);
            v["created_at"] = json!(crate::clock::rfc3339(e.created_at));
            v
        })
        .collect();
    Ok(Json(json!({
        "dataset_id": id,
        "metric": board.metric,
        "higher_is_better": board.higher_is_better,
        "truncated": board.truncated,
        "entries": entries,
    })))
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
    let id = parse_id(&id, "dataset")?;
    let (d, ds) = s.service.dataset(&p.tenant, id).await?;
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
    /// CSV only: the file's dialect (each sniffed when not given).
    delimiter: Option<String>,
    decimal: Option<String>,
    quote: Option<String>,
    encoding: Option<String>,
    /// CSV only: the thousands separator of formatted numbers (`,` `.` `'` or `space`).
    thousands: Option<String>,
    /// `classification` or `regression`: what the target is for, over the inferred task.
    task: Option<crate::service::sweeps::Task>,
    /// `none`: the file has no target column (a dataset to score, not to train on).
    labels: Option<String>,
}

/// A CSV's dialect parameters on a body that has none (JSON Lines, Parquet): 422 at the
/// first one given.
fn csv_only_dialect(q: &UploadQuery) -> Result<(), ApiError> {
    for (pointer, given) in [
        ("/delimiter", q.delimiter.is_some()),
        ("/decimal", q.decimal.is_some()),
        ("/quote", q.quote.is_some()),
        ("/encoding", q.encoding.is_some()),
        ("/thousands", q.thousands.is_some()),
    ] {
        if given {
            return Err(ApiError::invalid(
                pointer,
                "this query parameter is for CSV uploads; this body's format has no dialect",
            ));
        }
    }
    Ok(())
}

/// `?labels=`: only `none` (a dataset without a target) is a value.
fn no_target(labels: Option<&str>) -> Result<bool, ApiError> {
    match labels {
        None => Ok(false),
        Some("none") => Ok(true),
        Some(other) => Err(ApiError::invalid(
            "/labels",
            format!(
                "unknown value {other:?}; labels=none uploads a dataset without a target (for scoring); leave it out otherwise"
            ),
        )),
    }
}

/// `?thousands=`: one of `,` `.` `'` or a space (`space`), not the decimal mark.
fn thousands_option(
    thousands: Option<&str>,
    decimal: Option<&str>,
) -> Result<Option<char>, ApiError> {
    let Some(t) = thousands else {
        return Ok(None);
    };
    let c = match t {
        "," | "." | "'" => t.chars().next(),
        " " | "space" => Some(' '),
        _ => None,
    };
    let Some(c) = c else {
        return Err(crate::service::Error::invalid(
            "/thousands",
            format!("unknown thousands separator {t:?}; give , . ' or space"),
        )
        .into());
    };
    if decimal.is_some_and(|d| d.starts_with(c)) {
        return Err(crate::service::Error::invalid(
            "/thousands",
            "the thousands separator cannot be the decimal mark",
        )
        .into());
    }
    Ok(Some(c))
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
    let no_target = no_target(query.labels.as_deref())?;
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let media_type = ctype
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    // A CSV is parsed as it arrives (its text is never held whole); other bodies are read.
    let (idem, body) = if is_csv(&media_type) {
        let mut opts = csv_options(query.columns.as_deref(), query.na_values.as_deref())?;
        opts.no_target = no_target;
        opts.thousands = thousands_option(query.thousands.as_deref(), query.decimal.as_deref())?;
        let dialect = dialect_options(
            &media_type,
            query.delimiter.as_deref(),
            query.decimal.as_deref(),
            query.quote.as_deref(),
            query.encoding.as_deref(),
        )?;
        // Without an Idempotency-Key the record's id is free to choose now, so the rows are
        // written while the file still arrives (see `DatasetStream`).
        let (sink, stream) = if headers.contains_key("idempotency-key") {
            (None, None)
        } else {
            let (sink, stream) = s.service.stream_dataset(&p.tenant);
            (Some(sink), Some(stream))
        };
        let (hash, parsed) = stream_csv(&s, req, query.target.clone(), opts, dialect, sink).await?;
        let idem = Idempotency::with_body_hash(&headers, "POST /v1/datasets", q.as_deref(), hash)?;
        (idem, UploadBody::Csv(Box::new(parsed), stream))
    } else if is_jsonl(&media_type) || data::is_parquet(&media_type) {
        // JSON Lines (its keys' union is the header, then read as a CSV is) and Parquet (its
        // index is at its end, then column by column): read whole, then parsed off the
        // async threads.
        use axum::extract::FromRequest;
        csv_only_dialect(&query)?;
        let mut opts = csv_options(query.columns.as_deref(), query.na_values.as_deref())?;
        opts.no_target = no_target;
        let Body(body) = Body::from_request(req, &s).await?;
        let idem = Idempotency::new(&headers, "POST /v1/datasets", q.as_deref(), &body)?;
        let (target, limits) = (query.target.clone(), s.service.limits.data);
        let (parquet, max_bytes, bytes) = (
            data::is_parquet(&media_type),
            s.limits.max_body_bytes,
            body.len(),
        );
        let started = std::time::Instant::now();
        let parsed = tokio::task::spawn_blocking(move || {
            if parquet {
                data::parquet_columns(body, target.as_deref(), &limits, &opts, max_bytes)
            } else {
                data::jsonl_columns(&body, target.as_deref(), &limits, opts)
            }
        })
        .await
        .map_err(|e| ApiError::Internal(format!("reading {media_type}: {e}")))?;
        tracing::info!(
            bytes,
            parsed_ms = started.elapsed().as_millis() as u64,
            media_type,
            "upload read"
        );
        (idem, UploadBody::Csv(Box::new(parsed), None))
    } else {
        use axum::extract::FromRequest;
        let Body(body) = Body::from_request(req, &s).await?;
        let idem = Idempotency::new(&headers, "POST /v1/datasets", q.as_deref(), &body)?;
        (idem, UploadBody::Bytes(body))
    };
    if let Some(r) = idem.replay(&s, &p.tenant).await? {
        return Ok(r);
    }
    let upload = Upload {
        media_type,
        name: query.name,
        target: query.target,
        columns_given: query.columns.is_some(),
        na_values_given: query.na_values.is_some(),
        task: query.task,
        no_target,
        body,
    };
    let rec = s
        .service
        .upload_dataset(&p.tenant, &idem.key, upload)
        .await
        .map_err(ApiError::from);
    let rec = idem.settle(&s, &p.tenant, rec).await?;
    let location = format!("/v1/datasets/{}", rec.id);
    idem.answer(&s, &p.tenant, 201, Some(location), view::dataset(&rec))
        .await
}

/// Reads a CSV body as it arrives, parsing it on a blocking thread a piece at a time: the SHA-256
/// of its bytes (for `Idempotency-Key`) and the dataset or the file's first problem. The body
/// limit is checked as for any other body (413, before a byte is read when `Content-Length`
/// says so). With a `sink`, each piece's stored rows go to it as the piece is read.
async fn stream_csv(
    s: &AppState,
    req: axum::extract::Request,
    target: Option<String>,
    opts: ReadOptions,
    dialect: data::DialectOptions,
    sink: Option<RowSink>,
) -> Result<([u8; 32], Result<Columns, data::DataError>), ApiError> {
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
    let limits = s.service.limits.data;
    let started = std::time::Instant::now();
    // Pieces of whole lines (`data::CSV_PIECE` bytes or so), each parsed where it lies; the
    // parser hands the spent ones back to be filled again (fresh memory costs a page fault
    // per 4 KiB).
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(1);
    let (spent, spent_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let parser = tokio::task::spawn_blocking(move || {
        let mut csv = data::CsvStream::new(target.as_deref(), limits, opts).with_dialect(dialect);
        let mut sink = sink;
        if sink.is_some() {
            csv.stream_rows();
        }
        // The rows read so far to the sink; once it refuses them (or the file stops
        // streaming), it is let go.
        let forward = |csv: &mut data::CsvStream, sink: &mut Option<RowSink>| {
            for rows in csv.take_rows() {
                if !sink.as_ref().is_some_and(|s| s.send(rows)) {
                    csv.stop_streaming();
                }
            }
            if !csv.streaming() {
                *sink = None;
            }
        };
        let mut failed = None;
        while let Some(piece) = rx.blocking_recv() {
            if failed.is_none() {
                match csv.push(&piece) {
                    Ok(()) => forward(&mut csv, &mut sink),
                    Err(e) => failed = Some(e),
                }
            }
            let _ = spent.send(piece);
        }
        if let Some(e) = failed {
            return Err(e);
        }
        if csv.end().is_ok() {
            forward(&mut csv, &mut sink);
        }
        drop(sink);
        csv.finish_columns()
    });
    // The body's hash is only a fingerprint for Idempotency-Key; without one it is not needed.
    let keyed = req.headers().contains_key("idempotency-key");
    let mut hash = sha2::Sha256::new();
    let mut total = 0usize;
    let piece = data::CSV_PIECE;
    let fresh = || Vec::with_capacity(piece + (1 << 20));
    let mut pending = fresh();
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
        // The first piece goes at a quarter of the size: the parser starts sooner.
        if pending.len() >= piece || (pending.len() >= piece / 4 && total == pending.len()) {
            // The lines end at the last line end; the partial line after it starts the next
            // piece (a piece without a line end goes whole: the parser keeps what it needs).
            let cut = memchr::memrchr(b'\n', &pending).map_or(pending.len(), |i| i + 1);
            let partial = pending[cut..].to_vec();
            pending.truncate(cut);
            if tx.send(std::mem::take(&mut pending)).await.is_err() {
                break;
            }
            // Sent once the parser took the piece before it, so it has handed back the one
            // it parsed before that.
            pending = spent_rx.try_recv().unwrap_or_else(|_| fresh());
            pending.clear();
            pending.extend_from_slice(&partial);
        }
    }
    if !pending.is_empty() {
        let _ = tx.send(pending).await;
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
        .service
        .list_datasets(&p.tenant, q.cursor()?, q.limit()?)
        .await?;
    Ok(Json(json!({
        "items": page.items.iter().map(view::dataset).collect::<Vec<_>>(),
        "next_cursor": page.next.map(|c| c.encode()),
        "total": page.total,
    })))
}

async fn read(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    p.require(Role::Trainer)?;
    let id = parse_id(&id, "dataset")?;
    Ok(Json(view::dataset_full(
        &s.service.dataset_record(&p.tenant, id).await?,
    )))
}

async fn remove(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    p.require(Role::Trainer)?;
    let id = parse_id(&id, "dataset")?;
    s.service.delete_dataset(&p.tenant, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
