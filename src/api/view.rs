//! How records look in answers: the JSON of a job, a dataset, a model and a prediction.
//! Shared by the resource handlers and the event stream, so none of them imports another.

use serde_json::{Value, json};
use uuid::Uuid;

use super::{ApiError, AppState};
use crate::clock::rfc3339;
use crate::data::DISTINCT_CAP;
use crate::nn::Prediction;
use crate::store::{DatasetRecord, JobRecord, JobStatus, ModelRecord};

/// The job resource, with its place in the queue.
pub async fn job(s: &AppState, j: &JobRecord) -> Result<Value, ApiError> {
    let queue_position = s.service.queue_position(j).await?;
    let per_epoch_ms = j
        .latest
        .as_ref()
        .and_then(|l| l.get("elapsed_ms"))
        .and_then(|v| v.as_f64());
    let eta = match (j.status, per_epoch_ms) {
        (JobStatus::Running, Some(ms)) => {
            Some(((j.epochs - j.epoch).max(0) as f64 * ms / 1000.0 * 10.0).round() / 10.0)
        }
        _ => None,
    };
    let mut v = json!({
        "id": j.id,
        "status": j.status,
        "dataset_id": j.dataset_id,
        "priority": j.priority,
        "epoch": j.epoch,
        "epochs": j.epochs,
        "metrics": j.latest,
        "created_at": rfc3339(j.created_at),
        "started_at": j.started_at.map(rfc3339),
        "finished_at": j.finished_at.map(rfc3339),
        "queue_position": queue_position,
        "eta_seconds": eta,
        "model_id": j.model_id,
        "error": j.error.as_ref().map(super::error::failure_problem),
        "stop_reason": j.stop_reason,
        "cancel_requested": j.cancel_requested,
        "stop_requested": j.stop_requested,
        "attempt": j.attempt,
        "sweep": sweep_link(j.sweep.as_ref()),
        "spec": j.spec,
    });
    if j.spec.auto_learning_rate {
        v["lr_range_test"] = s.service.job_range_test(j).await?.unwrap_or(Value::Null);
    }
    Ok(v)
}

/// The dataset as an upload answers and lists show it: its size, names, target, and columns
/// (type, storage, missing and distinct counts).
pub fn dataset(d: &DatasetRecord) -> Value {
    let mut v = dataset_full(d);
    if let Some(o) = v.as_object_mut() {
        o.remove("profile");
    }
    v
}

/// [`dataset`] and the profile, as `GET /v1/datasets/{id}` shows it.
pub fn dataset_full(d: &DatasetRecord) -> Value {
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
                if let Some(c) = val.get("columns").and_then(Value::as_array) {
                    o.insert("columns".into(), columns_view(c));
                    // The inputs a model gets: the feature columns not typed `ignore`.
                    let used = c
                        .iter()
                        .filter(|c| c.get("type").and_then(Value::as_str) != Some("ignore"))
                        .count();
                    o.insert("inputs".into(), json!(used));
                }
                continue;
            }
            o.insert(k.clone(), val.clone());
        }
    }
    v
}

/// A stored schema's columns as answers show them: numbers' distinct counts stop at
/// [`DISTINCT_CAP`] with `distinct_more`, as the profile says (the schema counts one past it).
fn columns_view(columns: &[Value]) -> Value {
    let cap = DISTINCT_CAP;
    Value::Array(
        columns
            .iter()
            .map(|c| {
                let mut c = c.clone();
                if c.get("distinct")
                    .and_then(Value::as_u64)
                    .is_some_and(|d| d > cap)
                {
                    c["distinct"] = json!(cap);
                    c["distinct_more"] = json!(true);
                }
                c
            })
            .collect(),
    )
}

pub fn model(m: &ModelRecord) -> Value {
    let doc = &m.document;
    let architecture: Vec<Value> = doc
        .get("layers")
        .and_then(|l| l.as_array())
        .map(|layers| {
            layers
                .iter()
                .map(|l| match (l.get("dropout"), l.get("ensemble"), l.get("periodic")) {
                    // A parametric activation: its units and the activation it mixes in.
                    _ if l.get("parametric").is_some() => json!({
                        "parametric": l["parametric"].as_array().map_or(0, Vec::len),
                        "activation": l.get("activation").cloned().unwrap_or(json!("linear")),
                    }),
                    (Some(r), _, _) => json!({"dropout": r}),
                    // TabM's adapters: how many members share the layers after them.
                    (_, Some(e), _) => json!({"ensemble": e.as_array().map_or(0, Vec::len)}),
                    // A periodic embedding: how many inputs, how many frequencies each.
                    (_, _, Some(p)) => json!({"periodic": {
                        "inputs": p["columns"].as_array().map_or(0, Vec::len),
                        "frequencies": p["frequencies"][0].as_array().map_or(0, Vec::len),
                    }}),
                    _ => json!({"units": l.get("units"), "activation": l.get("activation").cloned().unwrap_or(json!("linear"))}),
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
                .map(|c| {
                    let mut v = json!({"name": c.get("name"), "type": c.get("type")});
                    // The choices a form offers (a value outside them reads as "other").
                    if let Some(cats) = c.get("categories") {
                        v["categories"] = cats.clone();
                    }
                    v
                })
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
        "sweep": sweep_link(m.sweep.as_ref()),
        "scored_on": crate::service::leaderboard::scored_on(m),
        "metrics": m.metrics,
    })
}

/// What a job or model is to the sweep that made it (null: no sweep did).
fn sweep_link(l: Option<&crate::store::SweepLink>) -> Value {
    l.map_or(Value::Null, |l| {
        json!({"id": l.sweep_id, "role": l.role, "trial": l.trial, "rung": l.rung, "fold": l.fold})
    })
}

/// The predict response of model `id`. Non-finite outputs are refused (422 at `/inputs/i`;
/// see `service::predict::check_finite`) rather than answered with `null`s.
pub fn prediction_body(id: Uuid, pred: Prediction) -> Result<Value, ApiError> {
    crate::service::predict::check_finite(&pred)?;
    let mut body = json!({"model_id": id});
    add_prediction(&mut body, pred);
    Ok(body)
}

/// Adds `outputs` (and `labels` for a classifier) to `body`.
pub fn add_prediction(body: &mut Value, pred: Prediction) {
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
}

/// A named deployment: where it points now (and, for `GET /v1/deployments/{name}`, its
/// newest versions, newest first).
pub fn deployment(
    d: &crate::store::DeploymentRecord,
    versions: Option<&[crate::store::DeploymentVersion]>,
) -> Value {
    let mut v = json!({
        "name": d.name,
        "version": d.version,
        "model_id": d.model_id,
        "created_at": rfc3339(d.created_at),
        "updated_at": rfc3339(d.updated_at),
    });
    if let Some(versions) = versions {
        v["versions"] = json!(
            versions
                .iter()
                .map(|x| json!({
                    "version": x.version,
                    "model_id": x.model_id,
                    "created_at": rfc3339(x.created_at),
                }))
                .collect::<Vec<_>>()
        );
    }
    v
}

/// A batch prediction: its progress, and where its result is once it has succeeded.
pub fn batch(b: &crate::store::BatchRecord) -> Value {
    let progress = if b.rows_total > 0 {
        b.rows_done as f64 / b.rows_total as f64
    } else {
        1.0
    };
    json!({
        "id": b.id,
        "model_id": b.model_id,
        "dataset_id": b.dataset_id,
        "status": b.status,
        "rows_total": b.rows_total,
        "rows_done": b.rows_done,
        "progress": progress,
        "error": b.error,
        "created_at": rfc3339(b.created_at),
        "finished_at": b.finished_at.map(rfc3339),
        "result": (b.status == "succeeded")
            .then(|| format!("/v1/models/{}/predictions/{}/result", b.model_id, b.id)),
    })
}
/// A sweep as lists show it: its state and best trial, without the trials.
pub fn sweep_summary(s: &crate::store::SweepRecord) -> Value {
    json!({
        "id": s.id,
        "status": s.status,
        "dataset_id": s.dataset_id,
        "created_at": rfc3339(s.created_at),
        "finished_at": s.finished_at.map(rfc3339),
        "cancel_requested": s.cancel_requested,
        "best": s.best,
        "spec": s.spec,
    })
}

/// A sweep with every trial: its jobs, parameters, status, metric, and whether successive
/// halving stopped it early.
pub fn sweep(v: &crate::service::sweeps::SweepView) -> Value {
    let mut body = sweep_summary(&v.sweep);
    body["metric"] = json!(v.spec.metric);
    body["rungs"] = json!(v.spec.rungs());
    body["progress"] = json!(v.progress());
    body["refit_job_id"] = json!(v.refit.as_ref().map(|j| j.id));
    body["trials"] = json!(
        v.trials
            .iter()
            .map(|t| {
                let last = t.jobs.last();
                json!({
                    "trial": t.trial,
                    "params": t.params,
                    "job_id": last.map(|j| j.id),
                    "jobs": t.jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
                    "status": last.map_or(json!("failed"), |j| json!(j.status)),
                    "epochs": last.map(|j| j.epoch),
                    "model_id": last.and_then(|j| j.model_id),
                    "metric": t.metric,
                    "metric_epoch": t.metric_epoch,
                    "stopped_early": t.stopped_early,
                    "fold_jobs": t.fold_jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
                })
            })
            .collect::<Vec<_>>()
    );
    body
}
