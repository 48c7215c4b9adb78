//! Exporting a model in a format other runtimes read: ONNX (`nn::onnx`), with the class labels
//! and feature names in its metadata properties as JSON lists.

use uuid::Uuid;

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
        crate::nn::onnx::to_onnx(&m, &meta).map_err(|e| Error::invalid("/format", e))
    }
}
