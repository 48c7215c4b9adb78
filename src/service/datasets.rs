//! Datasets: reading an upload (CSV or JSON, on a blocking thread), storing it within the
//! tenant's quota, and reading, listing and deleting a tenant's datasets.

use bytes::Bytes;
use uuid::Uuid;

use super::read::parse_json;
use super::{Error, IdempotencyKey, Result, Service};
use crate::clock::now_ms;
use crate::data::{self, Dataset, JsonDataset};
use crate::store::{DatasetRecord, Page};

/// An upload as the client sent it.
pub struct Upload {
    /// The media type's essence (`text/csv`, `application/json`; lower case).
    pub media_type: String,
    /// `?name=`, over a JSON body's own name.
    pub name: Option<String>,
    /// `?target=`: the target column of a CSV file.
    pub target: Option<String>,
    pub body: Bytes,
}

impl Service {
    /// Reads and stores an upload for `tenant`. A keyed request whose first attempt stored the
    /// dataset but died before answering gets that dataset back.
    pub async fn upload_dataset(
        &self,
        tenant: &str,
        key: &IdempotencyKey,
        upload: Upload,
    ) -> Result<DatasetRecord> {
        let id = match self
            .store
            .get_dataset(key.record_id(tenant, "dataset"))
            .await?
        {
            // Stored by this key's first request, which died before answering.
            Some(d) if key.is_retry_of(d.created_at) => return Ok(d),
            Some(_) => Uuid::new_v4(),
            None => key.record_id(tenant, "dataset"),
        };
        let Upload {
            media_type,
            name,
            target,
            body,
        } = upload;
        let limits = self.limits.data;
        let (name, ds) = match media_type.as_str() {
            "text/csv" | "application/csv" | "text/plain" => {
                let column = target.clone();
                let ds = tokio::task::spawn_blocking(move || {
                    data::from_csv(&body, column.as_deref(), &limits)
                })
                .await?
                .map_err(|e| {
                    // A `?target=` that names no column is the query's fault, not the file's:
                    // invalid at the parameter, as for JSON uploads.
                    if e.row.is_none() && e.column.is_some() && e.column == target {
                        Error::invalid("/target", e.message)
                    } else {
                        e.into()
                    }
                })?;
                (name.unwrap_or_else(|| "dataset".into()), ds)
            }
            "application/json" | "" => {
                if target.is_some() {
                    return Err(Error::invalid(
                        "/target",
                        "the target query parameter is for CSV uploads",
                    ));
                }
                let body: JsonDataset = parse_json(&body)?;
                let name = name
                    .or(body.name.clone())
                    .unwrap_or_else(|| "dataset".into());
                let ds =
                    tokio::task::spawn_blocking(move || data::from_json(&body, &limits)).await??;
                (name, ds)
            }
            other => {
                return Err(Error::unreadable(format!(
                    "unsupported content type \"{other}\"; send application/json or text/csv"
                )));
            }
        };
        if name.trim().is_empty() || name.len() > 200 {
            return Err(Error::invalid("/name", "must be 1 to 200 characters"));
        }
        let rec = self.store_dataset(tenant, id, name, &ds).await?;
        crate::crash::point("dataset_ack");
        Ok(rec)
    }

    /// Stores a parsed dataset under `id`, within the tenant's quota, and returns its record.
    pub async fn store_dataset(
        &self,
        tenant: &str,
        id: Uuid,
        name: String,
        ds: &Dataset,
    ) -> Result<DatasetRecord> {
        let blob = ds.to_bytes();
        let target_kind = match ds.targets {
            crate::nn::Targets::Labels(_) => "labels",
            crate::nn::Targets::Values(_) => "values",
        };
        self.check_bytes_quota(tenant, blob.len()).await?;
        let rec = DatasetRecord {
            id,
            tenant: tenant.to_string(),
            name,
            created_at: now_ms(),
            rows: ds.rows() as i64,
            inputs: ds.inputs() as i64,
            outputs: ds.outputs() as i64,
            meta: serde_json::json!({
                "feature_names": ds.feature_names,
                "target_names": ds.target_names,
                "target_kind": target_kind,
                "classes": ds.classes(),
            }),
            size_bytes: blob.len() as i64,
        };
        self.store.insert_dataset(&rec, &blob).await?;
        Ok(rec)
    }

    /// The tenant's dataset `id`; another tenant's is "not found" too.
    pub async fn dataset_record(&self, tenant: &str, id: Uuid) -> Result<DatasetRecord> {
        match self.store.get_dataset(id).await? {
            Some(d) if d.tenant == tenant => Ok(d),
            _ => Err(Error::NotFound(format!("no dataset {id}"))),
        }
    }

    /// The tenant's dataset `id` with its data, decoded on a blocking thread.
    pub async fn dataset(&self, tenant: &str, id: Uuid) -> Result<(DatasetRecord, Dataset)> {
        let d = self.dataset_record(tenant, id).await?;
        let blob = self
            .store
            .dataset_data(d.id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no dataset {}", d.id)))?;
        let ds = tokio::task::spawn_blocking(move || Dataset::from_bytes(&blob))
            .await?
            .map_err(Error::Internal)?;
        Ok((d, ds))
    }

    pub async fn list_datasets(
        &self,
        tenant: &str,
        cursor: Option<i64>,
        limit: i64,
    ) -> Result<Page<DatasetRecord>> {
        Ok(self.store.list_datasets(tenant, cursor, limit).await?)
    }

    pub async fn delete_dataset(&self, tenant: &str, id: Uuid) -> Result<()> {
        let d = self.dataset_record(tenant, id).await?;
        if self.store.delete_dataset(d.id).await? {
            crate::crash::point("delete_ack");
            Ok(())
        } else {
            Err(Error::NotFound(format!("no dataset {}", d.id)))
        }
    }
}
