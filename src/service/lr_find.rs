//! The learning-rate range test as a request: a job submission's spec and dataset (stored or
//! inline), checked as a submission is, then the test (`nn::run::lr_find`) on the training pool
//! for at most [`RANGE_TEST_SECONDS`]. Nothing is stored.

use serde_json::Value;

use super::jobs::{DatasetSource, plan_job_on, read_request_with};
use super::read::from_value;
use super::{Error, Result, Service};
use crate::data::Summary;
use crate::nn::Control;
use crate::nn::run::lr_find::{RangeSettings, RangeTest};

/// How long one range test request may compute.
pub const RANGE_TEST_SECONDS: f64 = 10.0;

/// Reads a range-test request: a job submission (see `jobs::read_request`) and an optional
/// `"range_test": {"start", "end", "steps"}`.
pub fn read_range_request(
    body: &[u8],
    limits: &crate::data::Limits,
) -> Result<(super::jobs::JobRequest, RangeSettings)> {
    // Read as a submission is (its inline dataset packed as it is read, never a JSON value
    // tree: that, and its copy, took 32 times the body).
    let (req, mut extra) = read_request_with(body, limits, &["range_test"])?;
    let settings = match extra.remove("range_test") {
        None | Some(Value::Null) => RangeSettings::default(),
        Some(v) => from_value(v, "/range_test")?,
    };
    if let Err((f, m)) = settings.check() {
        return Err(Error::invalid(format!("/range_test/{f}"), m));
    }
    Ok((req, settings))
}

impl Service {
    /// The range test a job with `"learning_rate": "auto"` ran, and the rate it chose.
    pub async fn job_range_test(&self, j: &crate::store::JobRecord) -> Result<Option<Value>> {
        Ok(self.store.lr_range_test(j.id).await?)
    }

    /// Runs the range test on the spec and dataset of `body` for `tenant`.
    pub async fn lr_range_test(&self, tenant: &str, body: &[u8]) -> Result<RangeTest> {
        let (req, settings) = read_range_request(body, &self.limits.data)?;
        let dataset = match req.dataset {
            DatasetSource::Stored(id) => match self.dataset(tenant, id).await {
                Ok((_, d)) => d,
                Err(Error::NotFound(_)) => {
                    return Err(Error::invalid("/dataset_id", format!("no dataset {id}")));
                }
                Err(e) => return Err(e),
            },
            DatasetSource::Inline(inline) => inline.1,
        };
        if req.init_model.is_some() {
            return Err(Error::invalid(
                "/init_model_id",
                "the range test starts from fresh weights; it takes no init_model_id",
            ));
        }
        if req.validation_dataset.is_some() {
            return Err(Error::invalid(
                "/validation_dataset_id",
                "the range test trains only; it takes no validation data",
            ));
        }
        let mut spec = req.spec;
        // The test needs no validation rows and never stops early.
        spec.validation_split = 0.0;
        spec.validation_fold = 0;
        spec.early_stopping = None;
        spec.lr_schedule = Default::default();
        let summary = Summary::of(&dataset);
        super::datasets::require_target(&summary.target, "/dataset_id")?;
        plan_job_on(&spec, &summary, None, &self.limits)?;
        self.jobs
            .on_pool(move |pool| {
                let session = crate::jobs::session(&spec, &dataset, None)?;
                session.lr_range_test(pool, &settings, &Control::default(), RANGE_TEST_SECONDS)
            })
            .await?
            .map_err(|e| match e {
                crate::nn::TrainError::Spec(errs) => Error::Invalid(errs),
                other => Error::Internal(other.to_string()),
            })
    }
}
