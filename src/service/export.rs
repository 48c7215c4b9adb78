//! Exporting a model in a format other runtimes read: ONNX (`nn::portable::onnx`), with the class labels
//! and feature names in its metadata properties as JSON lists.
//!
//! An export builds the whole document in memory (a few times the model's weights at its
//! peak), off the async runtime's threads, and one at a time per node: concurrent exports
//! wait their turn instead of each holding a copy (four exports of a 9M-parameter model used
//! to cost 840 MB at once).

use tokio::sync::Semaphore;
use uuid::Uuid;

/// One export builds at a time on this node.
static EXPORTS: Semaphore = Semaphore::const_new(1);

use super::{Error, Result, Service};

impl Service {
    /// The tenant's model `id` as an ONNX model; a model the export cannot express is
    /// invalid at `/format`, saying why.
    pub async fn model_onnx(&self, tenant: &str, id: Uuid) -> Result<Vec<u8>> {
        let m = self.model(tenant, id).await?;
        let mut meta = vec![("backprop_model_id".to_owned(), id.to_string())];
        if let Some(classes) = m.encoding.classes() {
            meta.push((
                "classes".into(),
                serde_json::to_string(classes).map_err(|e| Error::Internal(e.to_string()))?,
            ));
        }
        if let Some(names) = &m.feature_names {
            meta.push((
                "feature_names".into(),
                serde_json::to_string(names).map_err(|e| Error::Internal(e.to_string()))?,
            ));
        }
        let _turn = EXPORTS
            .acquire()
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        tokio::task::spawn_blocking(move || crate::nn::portable::onnx::to_onnx(&m, &meta))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
            .map_err(|e| Error::invalid("/format", e))
    }
}
