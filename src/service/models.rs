//! Models: importing a portable document (checked like the fuzz target `model_import` checks
//! it), reading, listing and deleting a tenant's models.

use std::sync::Arc;

use uuid::Uuid;

use super::read::parse_json;
use super::{Error, IdempotencyKey, Limits, Result, Service};
use crate::clock::now_ms;
use crate::nn::{Model, ModelDocument};
use crate::store::{Cursor, ModelRecord, Page, StoreError, to_json};

/// Reads a model document and checks it, and its size against the limits (parameters, then
/// layers): the whole check an import makes before storing (shared with the fuzz target
/// `model_import`).
pub fn read_import(body: &[u8], limits: &Limits) -> Result<Model> {
    if let Some(n) = super::read::count_layers(body) {
        check_layers(n, limits)?;
    }
    let doc: ModelDocument = parse_json(body)?;
    // Two outputs with one label would make predictions ambiguous.
    if let Some(classes) = &doc.classes {
        let mut seen = std::collections::HashSet::new();
        for (i, c) in classes.iter().enumerate() {
            if !seen.insert(serde_json::to_string(c).unwrap_or_default()) {
                return Err(Error::invalid(
                    format!("/classes/{i}"),
                    format!(
                        "class {} is listed twice; each output needs its own label",
                        serde_json::to_string(c).unwrap_or_default()
                    ),
                ));
            }
        }
    }
    let model = Model::from_document(&doc).map_err(Error::Invalid)?;
    let max_parameters = limits.max_parameters;
    if model.network.parameter_count() > max_parameters {
        return Err(Error::invalid(
            "/layers",
            format!("more than {max_parameters} parameters (--max-parameters)"),
        ));
    }
    check_layers(model.network.layers.len(), limits)?;
    Ok(model)
}

/// Refuses more layers than `--max-layers` (a job's spec or an imported model).
pub fn check_layers(layers: usize, limits: &Limits) -> Result<()> {
    if layers > limits.max_layers {
        return Err(Error::invalid(
            "/layers",
            format!(
                "{layers} layers is more than this server's limit of {} (--max-layers)",
                limits.max_layers
            ),
        ));
    }
    Ok(())
}

impl Service {
    /// Imports the model document `body` for `tenant` under `name`. A keyed request whose
    /// first attempt stored the model but died before answering gets that model back.
    pub async fn import_model(
        &self,
        tenant: &str,
        key: &IdempotencyKey,
        name: impl FnOnce() -> Result<Option<String>>,
        body: &[u8],
    ) -> Result<ModelRecord> {
        let id = match self.store.get_model(key.record_id(tenant, "model")).await? {
            // Stored by this key's first request, which died before answering.
            Some(m) if key.is_retry_of(m.created_at) => return Ok(m),
            Some(_) => Uuid::new_v4(),
            None => key.record_id(tenant, "model"),
        };
        let name = name()?;
        if let Some(n) = &name
            && (n.trim().is_empty() || n.len() > 200)
        {
            return Err(Error::invalid("/name", "must be 1 to 200 characters"));
        }
        let model = read_import(body, &self.limits)?;
        let document = to_json(&model.to_document());
        self.check_bytes_quota(tenant, document.to_string().len())
            .await?;
        let rec = ModelRecord {
            id,
            tenant: tenant.to_string(),
            name,
            created_at: now_ms(),
            job_id: None,
            dataset_id: None,
            input_dim: model.input_dim() as i64,
            output_dim: model.network.output_dim() as i64,
            parameter_count: model.network.parameter_count() as i64,
            metrics: serde_json::json!({}),
            document,
            sweep: None,
        };
        match self.store.insert_model(&rec).await {
            Ok(()) => {}
            // The same request under the same Idempotency-Key stored it a moment earlier.
            Err(StoreError::Duplicate(_)) => {
                return match self.store.get_model(id).await? {
                    Some(m) if m.tenant == tenant => Ok(m),
                    _ => Err(StoreError::Duplicate(String::new()).into()),
                };
            }
            Err(e) => return Err(e.into()),
        }
        crate::crash::point("model_ack");
        self.models.put(tenant, rec.id, Arc::new(model));
        Ok(rec)
    }

    /// The tenant's model `id`; another tenant's is "not found" too.
    pub async fn model_record(&self, tenant: &str, id: Uuid) -> Result<ModelRecord> {
        match self.store.get_model(id).await? {
            Some(m) if m.tenant == tenant => Ok(m),
            _ => Err(Error::NotFound(format!("no model {id}"))),
        }
    }

    /// The tenant's models: sweeps' trial models only when `filter` asks for them.
    pub async fn list_models(
        &self,
        tenant: &str,
        filter: &crate::store::ListFilter,
        cursor: Option<Cursor>,
        limit: i64,
    ) -> Result<Page<ModelRecord>> {
        Ok(self
            .store
            .list_models(tenant, filter, cursor, limit)
            .await?)
    }

    /// Deletes the tenant's model `id` (and drops it from the cache), unless a deployment
    /// points at it or queued or running jobs start from it (`init_model_id`): a conflict
    /// naming them.
    pub async fn delete_model(&self, tenant: &str, id: Uuid) -> Result<()> {
        let id = self.model_record(tenant, id).await?.id;
        let deployed = |names: Vec<String>| {
            Error::Conflict(format!(
                "model {id} is deployed as {}; point the deployment at another model (PUT /v1/deployments/{{name}}) or delete the deployment first",
                names
                    .iter()
                    .map(|n| format!("{n:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        };
        let names = self.deployments_of_model(id).await?;
        if !names.is_empty() {
            return Err(deployed(names));
        }
        // A deploy that raced the check above: the deployment's foreign key refuses the
        // delete, and the names are read again.
        let deleted = match self.store.delete_model(id).await {
            Ok(d) => d,
            Err(e) => {
                let names = self.deployments_of_model(id).await?;
                return Err(if !names.is_empty() {
                    deployed(names)
                } else {
                    // Deployed and moved away again meanwhile: a conflict, not our fault.
                    e.into()
                });
            }
        };
        self.models.evict(id);
        if deleted {
            crate::crash::point("delete_ack");
            return Ok(());
        }
        match self.model_in_use(id).await? {
            Some(jobs) => Err(Error::Conflict(format!(
                "model {id} is the starting point of queued or running jobs ({jobs}); cancel them or wait until they end, then delete it"
            ))),
            None if self.store.get_model(id).await?.is_some() => Err(Error::Conflict(format!(
                "model {id} is in use by a job; retry when it has ended"
            ))),
            None => Err(Error::NotFound(format!("no model {id}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_import_with_more_layers_than_the_limit_is_refused() {
        let layer = serde_json::json!({"units": 1, "weights": [[1.0]], "bias": [0.0]});
        let doc = |n: usize| {
            serde_json::to_vec(
                &serde_json::json!({"input_dim": 1, "layers": vec![layer.clone(); n]}),
            )
            .unwrap()
        };
        let limits = Limits {
            max_layers: 2,
            ..Limits::DEFAULT
        };
        assert_eq!(
            read_import(&doc(2), &limits).unwrap().network.layers.len(),
            2
        );
        match read_import(&doc(3), &limits) {
            Err(Error::Invalid(errs)) => {
                assert_eq!(errs[0].pointer, "/layers");
                assert!(
                    errs[0].message.starts_with("3 layers"),
                    "{}",
                    errs[0].message
                );
            }
            other => panic!("{:?}", other.map(|m| m.input_dim())),
        }
    }
}
