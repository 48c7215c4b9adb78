//! A dataset's leaderboard: every finished model trained on it (plain jobs, sweeps' trials
//! and refits alike) ranked by one metric of its evaluation, as H2O's AutoML leaderboard
//! ranks its models. A cross-validated trial is one entry (its folds' models scored on their
//! own validation folds, the metric their mean), as the sweep compares it; a model with no
//! evaluation (trained on every row, with nothing held out) is listed after the ranked ones.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Error, Result, Service};
use crate::store::{ModelRecord, SweepRole};

/// The metrics a leaderboard ranks by, and whether higher is better.
pub const METRICS: [(&str, bool); 6] = [
    ("log_loss", false),
    ("accuracy", true),
    ("roc_auc", true),
    ("rmse", false),
    ("mae", false),
    ("r2", true),
];

/// The most models one leaderboard reads.
pub const MAX_MODELS: i64 = 2000;

#[derive(Debug, Serialize)]
pub struct Entry {
    /// 1 for the best; `None` for an entry without the metric.
    pub rank: Option<usize>,
    pub model_id: Uuid,
    pub name: Option<String>,
    pub job_id: Option<Uuid>,
    pub created_at: i64,
    /// The metric, and the evaluation's other headline scores (the folds' means for a
    /// cross-validated trial).
    pub value: Option<f64>,
    pub scores: BTreeMap<String, f64>,
    /// Where the scores come from (`validation`, `cross_validation`, `out_of_fold`) and
    /// on how many rows; `none` with why when there are none.
    pub scored_on: Value,
    pub sweep: Option<Value>,
    /// A cross-validated trial's models, fold 0 first (`model_id` is fold 0's).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fold_models: Vec<Uuid>,
    pub parameter_count: i64,
    pub epochs_run: Option<i64>,
}

pub struct Leaderboard {
    pub metric: String,
    pub higher_is_better: bool,
    pub entries: Vec<Entry>,
    /// More models than [`MAX_MODELS`] were trained on the dataset: the oldest are left out.
    pub truncated: bool,
}

/// The headline scores of a model's evaluation.
fn scores(m: &ModelRecord) -> BTreeMap<String, f64> {
    let ev = m.metrics.get("evaluation");
    METRICS
        .iter()
        .filter_map(|(k, _)| {
            let v = ev?.get(*k)?.as_f64()?;
            v.is_finite().then(|| (k.to_string(), v))
        })
        .collect()
}

/// Where a model's evaluation comes from, as its record says it.
pub fn scored_on(m: &ModelRecord) -> Value {
    match m.metrics.get("evaluation").filter(|e| !e.is_null()) {
        Some(ev) => match m.metrics.get("evaluation_source") {
            Some(s) if !s.is_null() => s.clone(),
            _ => json!({"kind": "validation", "rows": ev.get("rows"),
                        "detail": "the rows the job held out for validation"}),
        },
        None if m.job_id.is_none() => json!({"kind": "none",
            "detail": "imported: scored by no job (POST /v1/models/{id}/evaluate scores it)"}),
        None => json!({"kind": "none",
                       "detail": "trained on every row, nothing held out to score it on"}),
    }
}

impl Service {
    /// The tenant's models of dataset `dataset_id` ranked by `metric` (default: log loss for
    /// classifiers, RMSE for regressors, by the newest evaluated model).
    pub async fn leaderboard(
        &self,
        tenant: &str,
        dataset_id: Uuid,
        metric: Option<&str>,
    ) -> Result<Leaderboard> {
        let d = self.store.get_dataset(dataset_id).await?;
        if d.is_none_or(|d| d.tenant != tenant) {
            return Err(Error::NotFound(format!("no dataset {dataset_id}")));
        }
        let models = self
            .store
            .models_of_dataset(tenant, dataset_id, MAX_MODELS + 1)
            .await?;
        let truncated = models.len() as i64 > MAX_MODELS;
        let models = &models[..models.len().min(MAX_MODELS as usize)];
        let metric = match metric {
            Some(m) => m.to_string(),
            None => {
                let classifier = models
                    .iter()
                    .find_map(|m| m.metrics.get("evaluation")?.get("task")?.as_str())
                    .is_none_or(|t| t == "classification");
                if classifier { "log_loss" } else { "rmse" }.to_string()
            }
        };
        let Some(&(_, higher)) = METRICS.iter().find(|(k, _)| *k == metric) else {
            return Err(Error::invalid(
                "/metric",
                format!(
                    "unknown metric \"{metric}\"; expected one of {}",
                    METRICS.map(|(k, _)| k).join(", ")
                ),
            ));
        };
        // A cross-validated trial's fold models are one entry: (sweep, trial, rung).
        let mut groups: Vec<Vec<&ModelRecord>> = vec![];
        let mut trial_group: BTreeMap<(Uuid, i64, Option<i64>), usize> = BTreeMap::new();
        for m in models.iter().rev() {
            match &m.sweep {
                Some(l) if l.role == SweepRole::Trial => {
                    let key = (l.sweep_id, l.trial, l.rung);
                    match trial_group.get(&key) {
                        Some(&g) => groups[g].push(m),
                        None => {
                            trial_group.insert(key, groups.len());
                            groups.push(vec![m]);
                        }
                    }
                }
                _ => groups.push(vec![m]),
            }
        }
        let mut entries: Vec<Entry> = groups
            .into_iter()
            .map(|mut g| {
                g.sort_by_key(|m| m.sweep.as_ref().and_then(|l| l.fold).unwrap_or(0));
                let first = g[0];
                let per: Vec<BTreeMap<String, f64>> = g.iter().map(|m| scores(m)).collect();
                // A score every fold has, averaged in fold order.
                let mut mean = BTreeMap::new();
                for (k, _) in METRICS {
                    let vals: Vec<f64> = per.iter().filter_map(|s| s.get(k).copied()).collect();
                    if !vals.is_empty() && vals.len() == per.len() {
                        mean.insert(k.to_string(), vals.iter().sum::<f64>() / vals.len() as f64);
                    }
                }
                let scored_on = if g.len() > 1 {
                    let rows: u64 = g
                        .iter()
                        .filter_map(|m| m.metrics.get("evaluation")?.get("rows")?.as_u64())
                        .sum();
                    json!({"kind": "cross_validation", "folds": g.len(), "rows": rows,
                           "detail": "each fold's model on the rows it held out; the folds' mean"})
                } else {
                    scored_on(first)
                };
                Entry {
                    rank: None,
                    model_id: first.id,
                    name: first.name.clone(),
                    job_id: first.job_id,
                    created_at: g.iter().map(|m| m.created_at).max().unwrap_or(0),
                    value: mean.get(&metric).copied(),
                    scores: mean,
                    scored_on,
                    sweep: first.sweep.as_ref().map(|l| {
                        json!({"id": l.sweep_id, "role": l.role, "trial": l.trial, "rung": l.rung})
                    }),
                    fold_models: if g.len() > 1 {
                        g.iter().map(|m| m.id).collect()
                    } else {
                        vec![]
                    },
                    parameter_count: first.parameter_count,
                    epochs_run: first.metrics.get("epochs_run").and_then(Value::as_i64),
                }
            })
            .collect();
        // Best first; ties to the older entry; those without the metric last, newest first.
        entries.sort_by(|a, b| match (a.value, b.value) {
            (Some(x), Some(y)) => {
                let ord = x.total_cmp(&y);
                (if higher { ord.reverse() } else { ord }).then(a.created_at.cmp(&b.created_at))
            }
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => b.created_at.cmp(&a.created_at),
        });
        for (i, e) in entries.iter_mut().enumerate() {
            if e.value.is_some() {
                e.rank = Some(i + 1);
            }
        }
        Ok(Leaderboard {
            metric,
            higher_is_better: higher,
            entries,
            truncated,
        })
    }
}
