//! The serving protocols other services already speak, by deployment name: the Open
//! Inference Protocol v2 (KServe / Triton REST: `/v2/…`) and TensorFlow Serving's REST
//! predict (`POST /v1/models/{name}:predict`). Their errors are `{"error": "…"}` with the
//! status the rest of the API would answer (see [`protocol_errors`]), since their clients
//! read that field. `/v2/health/*` and `GET /v2` are open like `/healthz`; everything about
//! a model needs a key of its tenant, of any role.

use std::time::Instant;

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::auth::Principal;
use super::extract::Body;
use super::{ApiError, AppState};
use crate::nn::Prediction;
use crate::service::deployments::Resolved;
use crate::service::inference::{self, LABEL, PROBABILITIES, TfForm};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2/models/{name}", get(model_metadata))
        .route("/v2/models/{name}/ready", get(model_ready))
        .route("/v2/models/{name}/infer", post(infer))
        .route(
            "/v2/models/{name}/versions/{version}",
            get(version_metadata),
        )
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(version_ready),
        )
        .route(
            "/v2/models/{name}/versions/{version}/infer",
            post(version_infer),
        )
        .route(
            "/v1/models/{id}/versions/{version}",
            post(tf_version_predict),
        )
}

async fn server_metadata() -> Json<Value> {
    Json(json!({
        "name": "backprop",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": [],
    }))
}

async fn live() -> Json<Value> {
    Json(json!({"live": true}))
}

async fn ready(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    s.service.store.ping().await?;
    Ok(Json(json!({"ready": true})))
}

/// A path's version: a deployment version number (1, 2, …); anything else names no version.
fn parse_version(name: &str, v: &str) -> Result<i64, ApiError> {
    v.parse::<i64>()
        .ok()
        .filter(|v| *v >= 1)
        .ok_or_else(|| ApiError::NotFound(format!("deployment {name:?} has no version {v:?}")))
}

async fn model_metadata(
    State(s): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    metadata(&s, &p, &name, None).await
}

async fn version_metadata(
    State(s): State<AppState>,
    p: Principal,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let v = parse_version(&name, &version)?;
    metadata(&s, &p, &name, Some(v)).await
}

async fn metadata(
    s: &AppState,
    p: &Principal,
    name: &str,
    version: Option<i64>,
) -> Result<Json<Value>, ApiError> {
    let r = s.service.resolve(&p.tenant, name, version).await?;
    let (_, versions) = s.service.deployment(&p.tenant, name).await?;
    let (inputs, outputs) = inference::signature(&r.model);
    let tensors = |t: Vec<inference::TensorSpec>| -> Vec<Value> {
        t.into_iter()
            .map(|t| json!({"name": t.name, "datatype": t.datatype, "shape": t.shape}))
            .collect()
    };
    Ok(Json(json!({
        "name": name,
        "versions": versions.iter().map(|v| v.version.to_string()).collect::<Vec<_>>(),
        "platform": "backprop",
        "inputs": tensors(inputs),
        "outputs": tensors(outputs),
        "parameters": {"model_id": r.model_id, "version": r.version.to_string()},
    })))
}

async fn model_ready(
    State(s): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let r = s.service.resolve(&p.tenant, &name, None).await?;
    Ok(Json(
        json!({"name": name, "version": r.version.to_string(), "ready": true}),
    ))
}

async fn version_ready(
    State(s): State<AppState>,
    p: Principal,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let v = parse_version(&name, &version)?;
    let r = s.service.resolve(&p.tenant, &name, Some(v)).await?;
    Ok(Json(
        json!({"name": name, "version": r.version.to_string(), "ready": true}),
    ))
}

async fn infer(
    State(s): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    json_only(&headers)?;
    run_infer(&s, &p, &name, None, &body).await
}

async fn version_infer(
    State(s): State<AppState>,
    p: Principal,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    json_only(&headers)?;
    let v = parse_version(&name, &version)?;
    run_infer(&s, &p, &name, Some(v), &body).await
}

/// The binary tensor extension (a JSON header, then raw tensors) is not served: such a
/// body is refused before it is misread as JSON.
fn json_only(headers: &HeaderMap) -> Result<(), ApiError> {
    if headers.contains_key("inference-header-content-length") {
        return Err(ApiError::bad(
            "binary tensor data is not supported; send tensors as JSON (tritonclient: binary_data=False on inputs and outputs)",
        ));
    }
    Ok(())
}

/// A v2 infer answer, serialised straight from the prediction (no JSON value tree per
/// number: this is the hot path of a service calling by name).
#[derive(serde::Serialize)]
struct InferAnswer<'a> {
    model_name: &'a str,
    model_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    outputs: Vec<OutputTensor<'a>>,
}

#[derive(serde::Serialize)]
struct OutputTensor<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: Vec<usize>,
    data: TensorData<'a>,
}

#[derive(serde::Serialize)]
#[serde(untagged)]
enum TensorData<'a> {
    Labels(Vec<String>),
    Numbers(Widened<'a>),
}

/// FP32 outputs written as `/v1/…/predict` writes them (each widened to f64), so the two
/// protocols answer the same numbers digit for digit.
struct Widened<'a>(&'a [f32]);

impl serde::Serialize for Widened<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|&x| x as f64))
    }
}

async fn run_infer(
    s: &AppState,
    p: &Principal,
    name: &str,
    version: Option<i64>,
    body: &[u8],
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let r = s.service.resolve(&p.tenant, name, version).await?;
    let req = inference::read_infer(body, &r.model, s.service.limits.max_predict_rows)?;
    let pred = s.service.predict_matrix(&r.model, req.x, started).await?;
    let rows = pred.outputs.nrows();
    let width = pred.outputs.ncols();
    let numbers = pred
        .outputs
        .as_slice()
        .map(std::borrow::Cow::Borrowed)
        .unwrap_or_else(|| {
            std::borrow::Cow::Owned(pred.outputs.iter().copied().collect::<Vec<f32>>())
        });
    let outputs = req
        .outputs
        .iter()
        .map(|&name| match name {
            LABEL => OutputTensor {
                name: LABEL,
                datatype: "BYTES",
                shape: vec![rows],
                data: TensorData::Labels(
                    pred.labels
                        .iter()
                        .flatten()
                        .map(|l| l.to_string())
                        .collect(),
                ),
            },
            other => OutputTensor {
                name: other,
                datatype: "FP32",
                shape: vec![rows, width],
                data: TensorData::Numbers(Widened(&numbers)),
            },
        })
        .collect();
    let answer = InferAnswer {
        model_name: name,
        model_version: r.version.to_string(),
        id: req.id,
        outputs,
    };
    Ok(Json(answer).into_response())
}

/// `POST /v1/models/{name}:predict` (TF Serving). axum cannot route a segment ending in
/// `:predict`, so `POST /v1/models/{id}` lands here and the suffix is taken off.
pub async fn tf_predict(
    State(s): State<AppState>,
    p: Principal,
    Path(segment): Path<String>,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    let name = tf_verb(&segment)?;
    tf_run(&s, &p, name, None, &body).await
}

async fn tf_version_predict(
    State(s): State<AppState>,
    p: Principal,
    Path((name, segment)): Path<(String, String)>,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    let version = tf_verb(&segment)?;
    let v = parse_version(&name, version)?;
    tf_run(&s, &p, &name, Some(v), &body).await
}

/// The part of `segment` before `:predict`; TF Serving's other verbs are not served.
fn tf_verb(segment: &str) -> Result<&str, ApiError> {
    match segment.rsplit_once(':') {
        Some((name, "predict")) => Ok(name),
        Some((_, verb @ ("classify" | "regress"))) => Err(ApiError::bad(format!(
            "TF Serving's :{verb} is not served; use :predict"
        ))),
        _ => Err(ApiError::NotFound(format!(
            "no route POST /v1/models/{segment}; TF Serving's predict is POST /v1/models/{{name}}:predict"
        ))),
    }
}

async fn tf_run(
    s: &AppState,
    p: &Principal,
    name: &str,
    version: Option<i64>,
    body: &[u8],
) -> Result<Json<Value>, ApiError> {
    let started = Instant::now();
    let r: Resolved = s.service.resolve(&p.tenant, name, version).await?;
    let (form, x) = inference::read_tf_predict(body, &r.model, s.service.limits.max_predict_rows)?;
    let pred = s.service.predict_matrix(&r.model, x, started).await?;
    Ok(Json(match form {
        TfForm::Rows => json!({"predictions": tf_rows(pred)}),
        TfForm::Columns => json!({"outputs": tf_columns(pred)}),
    }))
}

/// One entry per row: a classifier's `{"probabilities": […], "label": …}`, else the values.
fn tf_rows(pred: Prediction) -> Value {
    let rows = pred.outputs.rows().into_iter().map(|r| r.to_vec());
    match pred.labels {
        Some(labels) => json!(
            rows.zip(labels)
                .map(|(p, l)| json!({PROBABILITIES: p, LABEL: l}))
                .collect::<Vec<_>>()
        ),
        None => json!(rows.collect::<Vec<_>>()),
    }
}

/// Columns: a classifier's `{"probabilities": [[…]…], "label": […]}`, else the values.
fn tf_columns(pred: Prediction) -> Value {
    let rows: Vec<Vec<f32>> = pred
        .outputs
        .rows()
        .into_iter()
        .map(|r| r.to_vec())
        .collect();
    match pred.labels {
        Some(labels) => json!({PROBABILITIES: rows, LABEL: labels}),
        None => json!(rows),
    }
}

/// Whether a request is one of these protocols' (its errors are then `{"error": …}`): any
/// `/v2` path, and TF Serving's predict (`POST /v1/models/{x}` and `…/{x}/versions/{y}`).
fn is_protocol(method: &Method, path: &str) -> bool {
    if path == "/v2" || path.starts_with("/v2/") {
        return true;
    }
    if *method != Method::POST {
        return false;
    }
    let Some(rest) = path.strip_prefix("/v1/models/") else {
        return false;
    };
    let segments: Vec<&str> = rest.split('/').collect();
    match segments.as_slice() {
        // `POST /v1/models/{x}` is only ever TF Serving's predict (import is `POST /v1/models`).
        [one] => !one.is_empty(),
        [_, "versions", _] => true,
        _ => false,
    }
}

/// Rewrites the problem document of an error on these protocols' routes into the
/// `{"error": "…"}` their clients read, keeping the status and headers (`Retry-After`,
/// `WWW-Authenticate`). Runs outside `observe::problems`, so plain-text errors from below the
/// handlers are problems by then.
pub async fn protocol_errors(req: Request, next: Next) -> Response {
    if !is_protocol(req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let problem: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let message = problem
        .get("detail")
        .or_else(|| problem.get("title"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
    let message = match problem.get("pointer").and_then(Value::as_str) {
        Some(p) if !message.starts_with(p) => format!("{p}: {message}"),
        _ => message,
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_ENCODING);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let body = json!({"error": message}).to_string();
    Response::from_parts(parts, axum::body::Body::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_paths_are_v2_and_tf_serving_predicts_only() {
        for (m, p) in [
            (Method::GET, "/v2"),
            (Method::GET, "/v2/health/live"),
            (Method::POST, "/v2/models/x/infer"),
            (Method::POST, "/v1/models/iris:predict"),
            (Method::POST, "/v1/models/iris/versions/2:predict"),
            (Method::POST, "/v1/models/iris%3Apredict"),
        ] {
            assert!(is_protocol(&m, p), "{m} {p}");
        }
        for (m, p) in [
            (
                Method::GET,
                "/v1/models/6f1c3f8e-7a4e-4c36-9f7e-2d1d2b9e8c11",
            ),
            (Method::DELETE, "/v1/models/iris:predict"),
            (Method::POST, "/v1/models"),
            (Method::POST, "/v1/models/x/predict"),
            (Method::GET, "/v2x"),
            (Method::POST, "/v1/deployments/x/predict"),
        ] {
            assert!(!is_protocol(&m, p), "{m} {p}");
        }
    }

    #[test]
    fn only_predict_is_a_tf_serving_verb() {
        assert_eq!(tf_verb("iris:predict").unwrap(), "iris");
        assert!(matches!(
            tf_verb("iris:classify"),
            Err(ApiError::BadRequest { .. })
        ));
        assert!(matches!(tf_verb("iris"), Err(ApiError::NotFound(_))));
    }
}
