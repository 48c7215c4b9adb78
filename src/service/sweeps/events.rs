//! A sweep's events, as `GET /v1/sweeps/{id}/events` streams them: each of its jobs queued
//! (a trial's first rung, a promotion to the next, the refit), started and ended; each
//! trial's result at a rung once every fold has ended; and the end. They are read off the
//! sweep's jobs (linked to it by `sweep_*`), so every node tells the same story with nothing
//! more stored. Each has an id of its time and what it is about, and they are ordered by
//! it, so a client that reconnects with `Last-Event-ID` gets those after it. An event is
//! sent once it is [`SETTLE_MS`] old (or the sweep has ended): a job's times are taken just
//! before they are written, so a younger event may still be on its way, and one seen later
//! with an earlier time would fall behind the ids already sent.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};
use uuid::Uuid;

use super::request::stored_spec;
use super::{SweepRecord, TrialScore};
use crate::clock::rfc3339;
use crate::service::{Result, Service};
use crate::store::{Cursor, JobRecord, JobStatus, ListFilter, SweepRole};

/// One event of a sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepEvent {
    /// `{time in ms}-{order}-{what}`: sorts as the events happened.
    pub id: String,
    pub kind: &'static str,
    pub data: Value,
    /// When it happened (Unix ms).
    pub at: i64,
}

/// How old an event must be before it is sent while the sweep runs: longer than a write
/// takes to land after its time was taken (and than the nodes' clocks differ).
pub const SETTLE_MS: i64 = 1500;

/// The jobs read from the store at a time.
const PAGE: i64 = 500;

/// A trial's score at a rung once its folds' jobs have all ended (they do not change), by
/// its fold-0 job.
pub type MetricCache = HashMap<Uuid, Option<TrialScore>>;

impl Service {
    /// Every job of sweep `s` (trials at every rung and fold, and the refit).
    pub async fn sweep_jobs(&self, s: &SweepRecord) -> Result<Vec<JobRecord>> {
        let filter = ListFilter {
            sweep_id: Some(s.id),
            include_trials: true,
            status: None,
        };
        let mut out = vec![];
        let mut cursor: Option<Cursor> = None;
        loop {
            let page = self
                .store
                .list_jobs(&s.tenant, &filter, cursor, PAGE)
                .await?;
            out.extend(page.items);
            match page.next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        out.reverse();
        Ok(out)
    }

    /// The sweep's events so far, in order. `cache` keeps the ended jobs' metrics between
    /// calls.
    pub async fn sweep_events(
        &self,
        s: &SweepRecord,
        cache: &mut MetricCache,
    ) -> Result<Vec<SweepEvent>> {
        let spec = stored_spec(s)?;
        let folds = spec.fold_count() as usize;
        let jobs = self.sweep_jobs(s).await?;
        let mut events = vec![];
        let id = |ms: i64, order: u8, what: &str| format!("{ms:013}-{order}-{what}");
        // A trial's jobs at a rung, by fold.
        let mut rungs: BTreeMap<(i64, i64), Vec<&JobRecord>> = BTreeMap::new();
        for j in &jobs {
            let Some(l) = &j.sweep else { continue };
            let (what, about) = match l.role {
                SweepRole::Trial => (
                    format!(
                        "t{}r{}f{}",
                        l.trial,
                        l.rung.unwrap_or(0),
                        l.fold.unwrap_or(0)
                    ),
                    json!({"role": "trial", "trial": l.trial, "rung": l.rung, "fold": l.fold,
                           "job_id": j.id}),
                ),
                SweepRole::Refit => (
                    format!("refit{}", l.trial),
                    json!({"role": "refit", "trial": l.trial, "job_id": j.id}),
                ),
            };
            if l.role == SweepRole::Trial {
                rungs
                    .entry((l.trial, l.rung.unwrap_or(0)))
                    .or_default()
                    .push(j);
            }
            let promoted = l.role == SweepRole::Trial && l.rung.unwrap_or(0) > 0;
            let mut queued = about.clone();
            queued["epochs"] = json!(j.epochs);
            queued["at"] = json!(rfc3339(j.created_at));
            events.push(SweepEvent {
                at: j.created_at,
                id: id(j.created_at, 0, &what),
                kind: if promoted { "promoted" } else { "queued" },
                data: queued,
            });
            if let Some(t) = j.started_at {
                let mut d = about.clone();
                d["at"] = json!(rfc3339(t));
                events.push(SweepEvent {
                    at: t,
                    id: id(t, 1, &what),
                    kind: "started",
                    data: d,
                });
            }
            if let (Some(t), true) = (j.finished_at, j.status.is_terminal()) {
                let mut d = about.clone();
                d["at"] = json!(rfc3339(t));
                d["status"] = json!(j.status);
                d["epochs"] = json!(j.epoch);
                d["stop_reason"] = json!(j.stop_reason);
                d["model_id"] = json!(j.model_id);
                events.push(SweepEvent {
                    at: t,
                    id: id(t, 2, &what),
                    kind: "ended",
                    data: d,
                });
            }
        }
        // A trial's result at a rung: every fold's job has ended; scored as the sweep's view
        // scores it (folds in order).
        for ((trial, rung), mut js) in rungs {
            if js.len() != folds || js.iter().any(|j| !j.status.is_terminal()) {
                continue;
            }
            js.sort_by_key(|j| j.sweep.as_ref().and_then(|l| l.fold).unwrap_or(0));
            let score = match cache.get(&js[0].id) {
                Some(m) => *m,
                None => {
                    let m = self.trial_score(&spec, &js).await?;
                    cache.insert(js[0].id, m);
                    m
                }
            };
            let at = js.iter().filter_map(|j| j.finished_at).max().unwrap_or(0);
            let succeeded = js.iter().all(|j| j.status == JobStatus::Succeeded);
            events.push(SweepEvent {
                at,
                id: id(at, 3, &format!("t{trial}r{rung}")),
                kind: "trial_result",
                data: json!({
                    "trial": trial,
                    "rung": rung,
                    "metric_name": spec.metric,
                    "metric": score.map(|s| s.metric),
                    "status": if succeeded { "succeeded" } else { "failed" },
                    "epochs": js.iter().map(|j| j.epoch).max(),
                    "at": rfc3339(at),
                }),
            });
            if let Some(e) = score.and_then(|s| s.epoch)
                && let Some(last) = events.last_mut()
            {
                last.data["metric_epoch"] = json!(e);
            }
        }
        if let Some(t) = s.finished_at.filter(|_| s.status.is_terminal()) {
            events.push(SweepEvent {
                at: t,
                id: id(t, 9, "end"),
                kind: "end",
                data: json!({"status": s.status, "best": s.best, "at": rfc3339(t)}),
            });
        }
        events.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(events)
    }
}
