//! `/v1/jobs/{id}/events`: Server-Sent Events. Replays the epochs a client missed (after
//! `Last-Event-ID` or `?since=`), then streams live ones, then a final `status` event.
//! Live epochs come from this node's broadcast; a slow poll of the store covers jobs that
//! train on another node and any gap.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use futures::Stream;
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::auth::{Principal, Role};
use super::extract::{parse_id, parse_query};
use super::{ApiError, AppState};
use crate::jobs::JobEvent;

/// Epochs read from the store at a time when a stream replays a job's history.
const HISTORY_PAGE: i64 = 1000;

pub fn router() -> axum::Router<AppState> {
    Router::new().route("/v1/jobs/{id}/events", get(events))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    since: Option<i64>,
}

async fn events(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let q: EventsQuery = parse_query(q.as_deref())?;
    p.require(Role::Trainer)?;
    let id = parse_id(&id, "job")?;
    let id = s.service.job(&p.tenant, id).await?.id;
    let last_event = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    let mut last = last_event.or(q.since).unwrap_or(0).max(0);
    let (place, permit) = open_stream(&s, &p, &format!("GET /v1/jobs/{id}"))?;
    // Subscribe before reading the store so nothing between the two is missed.
    let rx = s.service.jobs.subscribe(id);
    let job = match s.service.store.get_job(id).await {
        Ok(Some(j)) => j,
        other => {
            drop(rx);
            s.service.jobs.release_channel(id);
            return Err(match other {
                Err(e) => e.into(),
                _ => ApiError::NotFound(format!("no job {id}")),
            });
        }
    };
    let (tx, out) = mpsc::channel::<Event>(64);
    tokio::spawn(async move {
        let _permit = permit;
        let _place = place;
        // However the stream ends (the client leaving included), drop the job's channel if
        // nobody else listens: declared before `rx`, so it runs after `rx` is dropped.
        let _release = ReleaseChannel(s.service.jobs.clone(), id);
        let mut rx = rx;
        let send_history = |last: i64| {
            let s = s.clone();
            let tx = tx.clone();
            async move {
                let mut last = last;
                // In pages, so a long history is never held whole for a slow reader.
                loop {
                    let page = s
                        .service
                        .store
                        .history(id, last, HISTORY_PAGE)
                        .await
                        .unwrap_or_default();
                    let full = page.len() as i64 == HISTORY_PAGE;
                    for rec in page {
                        let epoch = rec
                            .get("epoch")
                            .and_then(|e| e.as_i64())
                            .unwrap_or(last + 1);
                        if epoch > last {
                            last = epoch;
                            if tx.send(epoch_event(epoch, &rec)).await.is_err() {
                                return None;
                            }
                        }
                    }
                    if !full {
                        break;
                    }
                }
                Some(last)
            }
        };
        let Some(l) = send_history(last).await else {
            return;
        };
        last = l;
        let mut status = job.status;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        while !status.is_terminal() {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Ok(JobEvent::Epoch(epoch, rec)) if epoch > last => {
                        last = epoch;
                        if tx.send(epoch_event(epoch, &rec)).await.is_err() { return; }
                    }
                    Ok(JobEvent::Epoch(..)) => {}
                    Ok(JobEvent::Status) | Err(broadcast::error::RecvError::Closed) => {
                        // Re-read below; after a close keep polling.
                        if matches!(ev, Err(broadcast::error::RecvError::Closed)) {
                            rx = s.service.jobs.subscribe(id);
                        }
                        match send_history(last).await { Some(l) => last = l, None => return }
                        match s.service.store.get_job(id).await { Ok(Some(j)) => status = j.status, _ => return }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        match send_history(last).await { Some(l) => last = l, None => return }
                    }
                },
                _ = tick.tick() => {
                    if tx.is_closed() { return; }
                    match s.service.store.get_job(id).await {
                        Ok(Some(j)) => {
                            status = j.status;
                            if j.epoch > last {
                                match send_history(last).await { Some(l) => last = l, None => return }
                            }
                        }
                        _ => return,
                    }
                }
            }
        }
        drop(rx);
        s.service.jobs.release_channel(id);
        if let Ok(Some(j)) = s.service.store.get_job(id).await
            && let Ok(v) = super::view::job(&s, &j).await
        {
            let _ = tx
                .send(
                    Event::default()
                        .event("status")
                        .json_data(v)
                        .unwrap_or_default(),
                )
                .await;
        }
    });
    Ok(
        Sse::new(futures::StreamExt::map(ReceiverStream::new(out), Ok))
            .keep_alive(KeepAlive::default()),
    )
}

/// A stream's place: a tenant's share of the streams first (429), then the node's limit
/// (503). Each stream holds a task and polls the store; their number is bounded. Both live
/// as long as the stream's task. `poll` names what to poll instead.
pub fn open_stream(
    s: &AppState,
    p: &Principal,
    poll: &str,
) -> Result<(super::fair::StreamPlace, tokio::sync::OwnedSemaphorePermit), ApiError> {
    let place = s.fair.open_stream(&p.tenant)?;
    let permit = s.event_streams.clone().try_acquire_owned().map_err(|_| {
        metrics::counter!("backprop_event_streams_refused_total").increment(1);
        ApiError::Unavailable(format!(
            "{} event streams are open, this server's limit (--max-sse-clients); poll {poll} or retry later",
            s.limits.max_sse_clients
        ))
    })?;
    Ok((place, permit))
}

fn epoch_event(epoch: i64, rec: &serde_json::Value) -> Event {
    Event::default()
        .event("epoch")
        .id(epoch.to_string())
        .json_data(rec)
        .unwrap_or_default()
}

/// Releases a job's broadcast channel when dropped (see `Jobs::release_channel`).
struct ReleaseChannel(crate::jobs::Jobs, uuid::Uuid);

impl Drop for ReleaseChannel {
    fn drop(&mut self) {
        self.0.release_channel(self.1);
    }
}
