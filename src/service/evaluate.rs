//! Evaluating a model on a stored dataset: reading the request, lining the dataset's columns
//! up with the model's raw columns by name, and scoring on the training pool
//! (`nn::portable::evaluate`), never on the async runtime.

use ndarray::{Array2, Axis};
use serde::Deserialize;
use uuid::Uuid;

use super::read::parse_json;
use super::{Error, Result, Service};
use crate::data::Dataset;
use crate::nn::Model;
use crate::nn::portable::evaluate::{Evaluation, evaluate_model};
use crate::nn::portable::tabular::RawColumn;

/// `POST /v1/models/{id}/evaluate`'s body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluateRequest {
    pub dataset_id: Uuid,
    /// Seeds permutation importance's shuffles (default 0).
    #[serde(default)]
    pub seed: u64,
}

/// Reads an evaluate request. Pure, like every request reader.
pub fn read_evaluate(body: &[u8]) -> Result<EvaluateRequest> {
    parse_json(body)
}

/// The dataset's raw table in the model's raw column order (matched by name when the model
/// knows its columns' names, else by position), or what does not fit, for `/dataset_id`.
pub fn align(
    model: &Model,
    ds: &Dataset,
) -> std::result::Result<(Array2<f32>, Vec<RawColumn>), String> {
    let names: Vec<String> = ds.columns.iter().map(|c| c.name().to_owned()).collect();
    let order: Vec<usize> = match model.raw_names() {
        Some(wanted) => wanted
            .iter()
            .map(|w| {
                names.iter().position(|n| n == w).ok_or_else(|| {
                    format!(
                        "the dataset has no column {w:?}, which the model takes; its columns are {}",
                        names.iter().take(20).map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")
                    )
                })
            })
            .collect::<std::result::Result<_, _>>()?,
        None if names.len() == model.raw_width() => (0..names.len()).collect(),
        None => {
            return Err(format!(
                "the dataset has {} feature columns; the model takes {}",
                names.len(),
                model.raw_width()
            ));
        }
    };
    let x = ds.x.select(Axis(1), &order);
    let columns = order.iter().map(|&j| ds.columns[j].clone()).collect();
    Ok((x, columns))
}

impl Service {
    /// Evaluates the tenant's model `id` on the dataset the body names (the tenant's too).
    pub async fn evaluate_model(&self, tenant: &str, id: Uuid, body: &[u8]) -> Result<Evaluation> {
        let req = read_evaluate(body)?;
        let model = self.model(tenant, id).await?;
        let (_, ds) = match self.dataset(tenant, req.dataset_id).await {
            Err(Error::NotFound(_)) => {
                return Err(Error::invalid(
                    "/dataset_id",
                    format!("no dataset {}", req.dataset_id),
                ));
            }
            other => other?,
        };
        if ds.outputs() == 0 {
            return Err(super::datasets::no_target("/dataset_id"));
        }
        let started = std::time::Instant::now();
        let answer = self
            .jobs
            .on_pool(move |_| {
                let (x, columns) = align(&model, &ds)?;
                evaluate_model(&model, x.view(), &columns, &ds.targets, req.seed)
            })
            .await?
            .map_err(|m| Error::invalid("/dataset_id", m));
        metrics::histogram!("backprop_evaluate_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        answer
    }
}
