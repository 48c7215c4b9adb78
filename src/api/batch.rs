//! `/v1/models/{id}/predictions`: batch predictions of a stored dataset, run in the
//! background (`service::batch`); their status and progress; their CSV result, streamed from
//! the store a chunk at a time. Any key of the tenant may start and read them.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::Value;

use super::auth::Principal;
use super::extract::{Body, parse_id};
use super::{ApiError, AppState, view};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/models/{id}/predictions", post(start))
        .route("/v1/models/{id}/predictions/{batch}", get(read))
        .route("/v1/models/{id}/predictions/{batch}/result", get(result))
}

async fn start(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "model")?;
    let b = s.service.start_batch(&p.tenant, id, &body).await?;
    let location = format!("/v1/models/{id}/predictions/{}", b.id);
    let mut resp = (StatusCode::ACCEPTED, Json(view::batch(&b))).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

async fn read(
    State(s): State<AppState>,
    p: Principal,
    Path((id, batch)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id, "model")?;
    let batch = parse_id(&batch, "batch prediction")?;
    Ok(Json(view::batch(
        &s.service.batch(&p.tenant, id, batch).await?,
    )))
}

/// The result CSV, read from the store a chunk at a time as the client takes it.
async fn result(
    State(s): State<AppState>,
    p: Principal,
    Path((id, batch)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "model")?;
    let batch = parse_id(&batch, "batch prediction")?;
    s.service.finished_batch(&p.tenant, id, batch).await?;
    let service = s.service.clone();
    let chunks = futures::stream::unfold(Some(0i64), move |seq| {
        let service = service.clone();
        async move {
            let seq = seq?;
            match service.batch_chunk(batch, seq).await {
                Ok(Some(csv)) => Some((Ok(bytes::Bytes::from(csv)), Some(seq + 1))),
                Ok(None) => None,
                // The answer has begun: all that can be done is to cut it short.
                Err(e) => Some((Err(std::io::Error::other(format!("{e:?}"))), None)),
            }
        }
    });
    let disposition = format!("attachment; filename=\"predictions-{batch}.csv\"");
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        // Fused: a compressing layer polls the body once more after its end, which a bare
        // `unfold` answers with a panic (and the client with a truncated file).
        axum::body::Body::from_stream(futures::StreamExt::fuse(chunks)),
    )
        .into_response())
}
