//! Issue 14's routes that are not about one existing resource: the learning-rate range test
//! (`POST /v1/lr-range-tests`) and sweeps (`/v1/sweeps`). Each handler parses, calls one use
//! case and answers. Every route is a trainer's; another tenant's sweep is not found.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::{Principal, Role};
use super::extract::{Body, Idempotency, PageQuery, parse_id, parse_query};
use super::{ApiError, AppState, view};
use crate::store::{SweepRecord, to_json};

pub fn router() -> axum::Router<AppState> {
    Router::new()
        .route("/v1/lr-range-tests", post(range_test))
        .route("/v1/sweeps", get(list).post(create))
        .route("/v1/sweeps/{id}", get(read).delete(remove))
        .route("/v1/sweeps/{id}/cancel", post(cancel))
        .route("/v1/sweeps/{id}/events", get(events))
}

/// Runs the range test on a job spec and its dataset and answers the curve and the
/// suggested rates (trains, so a trainer's key; nothing is stored).
async fn range_test(
    State(s): State<AppState>,
    p: Principal,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    p.require(Role::Trainer)?;
    let t = s.service.lr_range_test(&p.tenant, &body).await?;
    Ok(Json(to_json(&t)))
}

/// `POST /v1/sweeps?dry_run=true`: check it and say what it would run, creating nothing.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateQuery {
    #[serde(default)]
    dry_run: bool,
}

async fn create(
    State(s): State<AppState>,
    p: Principal,
    headers: axum::http::HeaderMap,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
    Body(body): Body,
) -> Result<impl IntoResponse, ApiError> {
    p.require(Role::Trainer)?;
    let query: CreateQuery = super::extract::parse_query(q.as_deref())?;
    if query.dry_run {
        // Nothing is created: no Idempotency-Key is reserved or remembered.
        let e = s.service.sweep_dry_run(&p.tenant, &body).await?;
        return Ok((
            axum::http::StatusCode::OK,
            Json(json!({
                "valid": true,
                "trials": e.spec.max_trials,
                "rungs": e.spec.rungs(),
                "trials_per_rung": e.spec.trials_per_rung(),
                "folds": e.spec.fold_count(),
                "refit": e.spec.refit,
                "jobs": e.jobs,
                "epochs": e.epochs,
                "estimated_memory_bytes_per_job": e.memory_bytes,
                "estimated_seconds_per_epoch": e.seconds_per_epoch,
                "estimated_seconds": (e.seconds * 10.0).round() / 10.0,
                "spec": e.spec,
            })),
        )
            .into_response());
    }
    let idem = Idempotency::new(&headers, "POST /v1/sweeps", None, &body)?;
    if let Some(r) = idem.replay(&s, &p.tenant).await? {
        return Ok(r);
    }
    let created = s
        .service
        .create_sweep(&p.tenant, &idem.key, &body)
        .await
        .map_err(ApiError::from);
    let created = idem.settle(&s, &p.tenant, created).await?;
    let answer = sweep_body(&s, created).await?;
    let location = format!("/v1/sweeps/{}", answer["id"].as_str().unwrap_or_default());
    idem.answer(&s, &p.tenant, 202, Some(location), answer)
        .await
}

/// The caller's sweep `id`; another tenant's is "not found" too.
async fn load(s: &AppState, p: &Principal, id: &str) -> Result<SweepRecord, ApiError> {
    p.require(Role::Trainer)?;
    let id = parse_id(id, "sweep")?;
    Ok(s.service.sweep(&p.tenant, id).await?)
}

async fn sweep_body(s: &AppState, rec: SweepRecord) -> Result<Value, ApiError> {
    Ok(view::sweep(&s.service.sweep_view(rec).await?))
}

async fn read(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let rec = load(&s, &p, &id).await?;
    Ok(Json(sweep_body(&s, rec).await?))
}

async fn list(
    State(s): State<AppState>,
    p: Principal,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    p.require(Role::Trainer)?;
    let q: PageQuery = parse_query(q.as_deref())?;
    if q.status.is_some() {
        return Err(ApiError::invalid("/status", "sweeps have no status filter"));
    }
    let page = s
        .service
        .list_sweeps(&p.tenant, q.cursor()?, q.limit()?)
        .await?;
    Ok(Json(json!({
        "items": page.items.iter().map(view::sweep_summary).collect::<Vec<_>>(),
        "next_cursor": page.next.map(|c| c.encode()),
        "total": page.total,
    })))
}

async fn cancel(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let rec = load(&s, &p, &id).await?;
    let after = s.service.cancel_sweep(rec).await?;
    Ok((StatusCode::ACCEPTED, Json(sweep_body(&s, after).await?)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DeleteQuery {
    #[serde(default, deserialize_with = "super::extract::query_bool")]
    keep_trials: Option<bool>,
}

async fn remove(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<StatusCode, ApiError> {
    let q: DeleteQuery = parse_query(q.as_deref())?;
    let rec = load(&s, &p, &id).await?;
    s.service
        .delete_sweep(rec, q.keep_trials.unwrap_or(false))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    /// An event id: only the events after it (as `Last-Event-ID`).
    since: Option<String>,
}

/// `GET /v1/sweeps/{id}/events`: Server-Sent Events of the sweep's jobs queued, promoted,
/// started and ended, its trials' results, a `progress` event whenever its progress changes,
/// and `end` with the sweep's record. Replays those after `Last-Event-ID` (or `?since=`)
/// first.
async fn events(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<
    axum::response::sse::Sse<
        impl futures::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
    >,
    ApiError,
> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let q: EventsQuery = parse_query(q.as_deref())?;
    let rec = load(&s, &p, &id).await?;
    let mut last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string())
        .or(q.since)
        .unwrap_or_default();
    let (place, permit) =
        super::events::open_stream(&s, &p, &format!("GET /v1/sweeps/{}", rec.id))?;
    let (tx, out) = tokio::sync::mpsc::channel::<Event>(64);
    tokio::spawn(async move {
        let (_place, _permit) = (place, permit);
        let mut cache = crate::service::sweeps::MetricCache::new();
        let mut progress = Value::Null;
        let mut rec = rec;
        loop {
            let Ok(events) = s.service.sweep_events(&rec, &mut cache).await else {
                return;
            };
            // While it runs, only events old enough that none earlier can still appear.
            let settled = crate::clock::now_ms() - crate::service::sweeps::SETTLE_MS;
            for e in events {
                if e.id <= last || (!rec.status.is_terminal() && e.at > settled) {
                    continue;
                }
                last = e.id.clone();
                let ev = Event::default()
                    .event(e.kind)
                    .id(e.id)
                    .json_data(e.data)
                    .unwrap_or_default();
                if tx.send(ev).await.is_err() {
                    return;
                }
            }
            if rec.status.is_terminal() {
                if let Ok(v) = sweep_body(&s, rec).await {
                    let _ = tx
                        .send(
                            Event::default()
                                .event("status")
                                .json_data(v)
                                .unwrap_or_default(),
                        )
                        .await;
                }
                return;
            }
            if let Ok(view) = s.service.sweep_view(rec.clone()).await {
                let now = to_json(&view.progress());
                if now != progress {
                    progress = now.clone();
                    let ev = Event::default()
                        .event("progress")
                        .json_data(now)
                        .unwrap_or_default();
                    if tx.send(ev).await.is_err() {
                        return;
                    }
                }
            }
            tokio::select! {
                () = s.service.jobs.job_ended() => {}
                () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            }
            if tx.is_closed() {
                return;
            }
            match s.service.store.get_sweep(rec.id).await {
                Ok(Some(r)) => rec = r,
                _ => return,
            }
        }
    });
    Ok(Sse::new(futures::StreamExt::map(
        tokio_stream::wrappers::ReceiverStream::new(out),
        Ok,
    ))
    .keep_alive(KeepAlive::default()))
}
