//! Batch predictions of a stored dataset: started by a request, run as a background task
//! (each chunk of rows encoded and predicted on a blocking thread, never on the async
//! threads), its progress and CSV result written to the store chunk by chunk, and the result
//! read back one chunk at a time, so neither side holds the whole CSV. Knows no HTTP.
//!
//! The result is the dataset's feature columns as uploaded with the model's output columns
//! appended (as a CSV predict answers). A batch whose node stops stops too: a running batch
//! whose heartbeat (`updated_at`, moved by every chunk) is older than [`STALE_MS`] is failed
//! when it is read, and can be started again.

use std::sync::Arc;

use serde::Deserialize;
use uuid::Uuid;

use super::predict_csv::output_columns;
use super::read::parse_json;
use super::{Error, Result, Service};
use crate::clock::now_ms;
use crate::data::Dataset;
use crate::nn::Model;
use crate::nn::portable::tabular::Cell;
use crate::store::BatchRecord;

/// Rows per chunk: one blocking task and one stored piece of the result each.
pub const CHUNK_ROWS: usize = 1000;

/// A running batch not heard of for this long died with its node.
pub const STALE_MS: i64 = 60_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchRequest {
    dataset_id: Uuid,
}

impl Service {
    /// Starts predicting the tenant's dataset (named in the body) with model `model_id`, in
    /// the background; answers the batch, running.
    pub async fn start_batch(
        &self,
        tenant: &str,
        model_id: Uuid,
        body: &[u8],
    ) -> Result<BatchRecord> {
        let req: BatchRequest = parse_json(body)?;
        let model = self.model(tenant, model_id).await?;
        let (dataset, ds) = match self.dataset(tenant, req.dataset_id).await {
            Err(Error::NotFound(_)) => {
                return Err(Error::invalid(
                    "/dataset_id",
                    format!("no dataset {} (of this tenant)", req.dataset_id),
                ));
            }
            other => other?,
        };
        let slots = column_slots(&model, &ds)?;
        // Its result is stored: it counts against the tenant's storage quota like a dataset
        // (its CSV holds the dataset's cells and the outputs; the dataset's size is a floor).
        self.check_bytes_quota(tenant, dataset.size_bytes.max(0) as usize)
            .await?;
        let now = now_ms();
        let rec = BatchRecord {
            id: Uuid::new_v4(),
            tenant: tenant.to_owned(),
            model_id,
            dataset_id: req.dataset_id,
            status: "running".into(),
            rows_total: ds.rows() as i64,
            rows_done: 0,
            error: None,
            created_at: now,
            updated_at: now,
            finished_at: None,
        };
        self.store.insert_batch(&rec).await?;
        let (svc, id, tenant) = (self.clone(), rec.id, tenant.to_owned());
        tokio::spawn(async move {
            let outcome = svc
                .run_batch(&tenant, id, model, Arc::new(ds), Arc::new(slots))
                .await;
            let (status, error) = match &outcome {
                Ok(()) => ("succeeded", None),
                Err(e) => ("failed", Some(describe(e))),
            };
            if let Err(e) = svc
                .store
                .finish_batch(id, status, error.as_deref(), now_ms())
                .await
            {
                tracing::warn!(batch = %id, error = %e, "could not record the end of a batch");
            }
        });
        Ok(rec)
    }

    /// Computes and stores the chunks: the header (chunk 0), then the rows.
    async fn run_batch(
        &self,
        tenant: &str,
        id: Uuid,
        model: Arc<Model>,
        ds: Arc<Dataset>,
        slots: Arc<Vec<usize>>,
    ) -> Result<()> {
        let mut header = csv::Writer::from_writer(Vec::new());
        header
            .write_record(
                ds.feature_names
                    .iter()
                    .map(String::as_str)
                    .chain(output_columns(&model).iter().map(String::as_str)),
            )
            .map_err(|e| Error::Internal(e.to_string()))?;
        let header = String::from_utf8(
            header
                .into_inner()
                .map_err(|e| Error::Internal(e.to_string()))?,
        )
        .map_err(|e| Error::Internal(e.to_string()))?;
        if !self
            .store
            .append_batch_chunk(id, 0, &header, 0, now_ms())
            .await?
        {
            return Ok(());
        }
        let rows = ds.rows();
        let mut start = 0;
        let mut seq = 1;
        while start < rows {
            let end = (start + CHUNK_ROWS).min(rows);
            let (m, d, s) = (model.clone(), ds.clone(), slots.clone());
            let csv =
                tokio::task::spawn_blocking(move || chunk_csv(&m, &d, &s, start, end)).await??;
            // The estimate at the start may be short: a chunk that would pass the quota ends
            // the batch (failed, its error says why) instead of being stored.
            self.check_bytes_quota(tenant, csv.len()).await?;
            if !self
                .store
                .append_batch_chunk(id, seq, &csv, end as i64, now_ms())
                .await?
            {
                return Ok(());
            }
            start = end;
            seq += 1;
        }
        Ok(())
    }

    /// The tenant's batch `id` of model `model_id`; a running batch that stopped being heard
    /// of is failed first.
    pub async fn batch(&self, tenant: &str, model_id: Uuid, id: Uuid) -> Result<BatchRecord> {
        let b = match self.store.get_batch(id).await? {
            Some(b) if b.tenant == tenant && b.model_id == model_id => b,
            _ => return Err(Error::NotFound(format!("no batch prediction {id}"))),
        };
        if b.status == "running" && now_ms() - b.updated_at > STALE_MS {
            self.store
                .finish_batch(
                    id,
                    "failed",
                    Some("interrupted: its node stopped; start it again"),
                    now_ms(),
                )
                .await?;
            return Box::pin(self.batch(tenant, model_id, id)).await;
        }
        Ok(b)
    }

    /// Chunk `seq` of a finished batch's CSV (0 is the header), or `None` past the last.
    pub async fn batch_chunk(&self, id: Uuid, seq: i64) -> Result<Option<String>> {
        Ok(self.store.batch_chunk(id, seq).await?)
    }

    /// Checks that batch `id` has succeeded (its result can be read).
    pub async fn finished_batch(
        &self,
        tenant: &str,
        model_id: Uuid,
        id: Uuid,
    ) -> Result<BatchRecord> {
        let b = self.batch(tenant, model_id, id).await?;
        match b.status.as_str() {
            "succeeded" => Ok(b),
            "running" => Err(Error::Conflict(format!(
                "batch prediction {id} is still running ({} of {} rows); its result is ready when its status is succeeded",
                b.rows_done, b.rows_total
            ))),
            _ => Err(Error::Conflict(format!(
                "batch prediction {id} failed: {}",
                b.error.as_deref().unwrap_or("no reason recorded")
            ))),
        }
    }
}

/// What a batch's failure says: a validation problem's pointers and messages, else the
/// error's kind (an internal cause stays in the log).
fn describe(e: &Error) -> String {
    match e {
        Error::Invalid(errs) => errs
            .iter()
            .map(|e| e.message.clone())
            .collect::<Vec<_>>()
            .join("; "),
        Error::Internal(cause) => {
            tracing::error!(cause = %cause, "a batch prediction failed");
            "the server failed to finish it; the cause is in its log".into()
        }
        Error::OverQuota { detail, .. } | Error::TooLarge { detail, .. } => detail.clone(),
        other => format!("{other:?}"),
    }
}

/// For each of the model's raw columns, the dataset column it reads (by name; in order for a
/// model without names). A column the model takes that the dataset lacks is refused.
fn column_slots(m: &Model, ds: &Dataset) -> Result<Vec<usize>> {
    match m.raw_names() {
        Some(names) => names
            .iter()
            .map(|n| {
                ds.feature_names.iter().position(|f| f == n).ok_or_else(|| {
                    Error::invalid(
                        "/dataset_id",
                        format!("the dataset has no column {n:?}, which the model takes"),
                    )
                })
            })
            .collect(),
        None if ds.feature_names.len() == m.raw_width() => Ok((0..m.raw_width()).collect()),
        None => Err(Error::invalid(
            "/dataset_id",
            format!(
                "the dataset has {} feature columns; the model takes {}",
                ds.feature_names.len(),
                m.raw_width()
            ),
        )),
    }
}

/// Rows `start..end` of the dataset with the model's outputs, as CSV lines.
fn chunk_csv(m: &Model, ds: &Dataset, slots: &[usize], start: usize, end: usize) -> Result<String> {
    let table: Vec<Vec<Cell>> = (start..end)
        .map(|i| {
            slots
                .iter()
                .map(|&j| ds.columns[j].cell(ds.x[[i, j]]))
                .collect()
        })
        .collect();
    let x = m.encode_rows(&table).map_err(|(i, e)| {
        Error::invalid(
            "/dataset_id",
            format!(
                "row {}: column {:?}: {}",
                start + i + 1,
                e.column,
                e.message
            ),
        )
    })?;
    let pred = m.predict(x.view());
    super::predict::check_finite(&pred)?;
    let internal = |e: csv::Error| Error::Internal(e.to_string());
    let mut w = csv::Writer::from_writer(Vec::new());
    for (k, i) in (start..end).enumerate() {
        let mut record: Vec<String> = (0..ds.columns.len())
            .map(|j| match ds.columns[j].cell(ds.x[[i, j]]) {
                Cell::Missing => String::new(),
                // A date as ISO 8601, as the dataset's rows show it (and predict reads it).
                Cell::Number(n) => match &ds.columns[j].schema.format {
                    Some(crate::nn::portable::values::ValueFormat::Date(f)) => {
                        crate::nn::portable::values::format_days(n, f)
                    }
                    _ => (n as f32).to_string(),
                },
                Cell::Text(t) => t.to_owned(),
            })
            .collect();
        record.extend(pred.outputs.row(k).iter().map(|v| v.to_string()));
        if let Some(labels) = &pred.labels {
            record.push(labels[k].to_string());
        }
        w.write_record(&record).map_err(internal)?;
    }
    let bytes = w.into_inner().map_err(|e| Error::Internal(e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| Error::Internal(e.to_string()))
}
