//! The answer of the predict routes (`/v1/models/{id}/predict`, `/v1/deployments/{name}/predict`)
//! in the body's and the caller's formats: a JSON body (`{"inputs": …}`) or a CSV one (a
//! header row of column names); a JSON answer, or CSV when `Accept` asks for `text/csv` (the
//! CSV's own rows with the output columns appended, or the outputs alone after a JSON body).

use std::sync::Arc;

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use uuid::Uuid;

use super::{ApiError, AppState, view};
use crate::nn::{Model, Prediction};
use crate::service::predict_csv::output_columns;

/// The media type's essence (`text/csv` of `text/csv; charset=utf-8`), lower-cased.
fn essence(v: &str) -> String {
    v.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Whether the body is CSV (`observe::media_type` has refused types no predict route takes).
fn is_csv(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| matches!(essence(v).as_str(), "text/csv" | "application/csv"))
}

/// Whether the caller asks for CSV: the first of `text/csv` and JSON its `Accept` names.
fn wants_csv(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(essence)
        .find(|e| matches!(e.as_str(), "text/csv" | "application/json"))
        .is_some_and(|e| e == "text/csv")
}

/// What a predict route's query may say.
#[derive(serde::Deserialize, Default)]
pub struct PredictQuery {
    /// `by_class`: a classifier's answer adds each row's probabilities keyed by class.
    probabilities: Option<String>,
}

impl PredictQuery {
    pub fn read(q: Option<&str>) -> Result<PredictQuery, ApiError> {
        let q: PredictQuery = super::extract::parse_query(q)?;
        match q.probabilities.as_deref() {
            None | Some("by_class") => Ok(q),
            Some(other) => Err(crate::service::Error::invalid(
                "/probabilities",
                format!("unknown value {other:?}; the one value is by_class"),
            )
            .into()),
        }
    }
}

/// Each row's probabilities keyed by class, for a classifier (a binary model's one output is
/// the probability of its second class, `positive_class`).
fn by_class(m: &Model, pred: &Prediction) -> Option<Value> {
    use crate::nn::portable::preprocess::OutputEncoding;
    let rows = pred.outputs.rows().into_iter();
    let keyed = |pairs: Vec<(String, f32)>| {
        Value::Object(
            pairs
                .into_iter()
                .map(|(k, v)| (k, serde_json::json!(v)))
                .collect(),
        )
    };
    match &m.encoding {
        OutputEncoding::Categorical { classes } => Some(Value::Array(
            rows.map(|r| {
                keyed(
                    classes
                        .iter()
                        .map(ToString::to_string)
                        .zip(r.iter().copied())
                        .collect(),
                )
            })
            .collect(),
        )),
        OutputEncoding::Binary { classes } if classes.len() == 2 => Some(Value::Array(
            rows.map(|r| {
                let p = r[0];
                keyed(vec![
                    (classes[0].to_string(), 1.0 - p),
                    (classes[1].to_string(), p),
                ])
            })
            .collect(),
        )),
        _ => None,
    }
}

/// Predicts with `m` (model `id`) on `body` and answers in the format asked for; `extra`
/// fields go into a JSON answer (a deployment's name and version). A binary classifier's
/// answer says which class its one output is the probability of (`positive_class`).
pub async fn answer(
    s: &AppState,
    headers: &HeaderMap,
    query: &PredictQuery,
    m: &Arc<Model>,
    id: Uuid,
    body: &[u8],
    extra: &[(&str, Value)],
) -> Result<Response, ApiError> {
    let (rows, pred) = if is_csv(headers) {
        let p = s.service.predict_csv(m, body).await?;
        (Some((p.header, p.rows)), p.prediction)
    } else {
        (None, s.service.predict(m, body).await?)
    };
    if wants_csv(headers) {
        return csv_answer(m, rows, &pred);
    }
    let keyed = if query.probabilities.is_some() {
        by_class(m, &pred)
    } else {
        None
    };
    let mut v = view::prediction_body(id, pred)?;
    if let crate::nn::portable::preprocess::OutputEncoding::Binary { classes } = &m.encoding
        && let Some(c) = classes.get(1)
    {
        v["positive_class"] = serde_json::json!(c);
    }
    if let Some(k) = keyed {
        v["probabilities"] = k;
    }
    for (k, x) in extra {
        v[*k] = x.clone();
    }
    Ok(Json(v).into_response())
}

/// The CSV answer: the input rows (when the body was CSV) with the output columns appended.
fn csv_answer(
    m: &Model,
    rows: Option<(csv::StringRecord, Vec<csv::StringRecord>)>,
    pred: &Prediction,
) -> Result<Response, ApiError> {
    crate::service::predict::check_finite(pred)?;
    let internal = |e: csv::Error| ApiError::Internal(format!("writing a CSV answer: {e}"));
    let mut w = csv::Writer::from_writer(Vec::new());
    let outputs = output_columns(m);
    let (header, inputs) = match rows {
        Some((h, r)) => (h, r),
        None => (csv::StringRecord::new(), vec![]),
    };
    w.write_record(header.iter().chain(outputs.iter().map(String::as_str)))
        .map_err(internal)?;
    for (i, out) in pred.outputs.rows().into_iter().enumerate() {
        let mut record: Vec<String> = inputs
            .get(i)
            .map(|r| r.iter().map(str::to_owned).collect())
            .unwrap_or_default();
        record.extend(out.iter().map(|v| v.to_string()));
        if let Some(labels) = &pred.labels {
            record.push(labels[i].to_string());
        }
        w.write_record(&record).map_err(internal)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| ApiError::Internal(format!("writing a CSV answer: {e}")))?;
    let mut resp = bytes.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: header::HeaderName, v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn the_first_of_csv_and_json_in_accept_decides() {
        assert!(wants_csv(&with(header::ACCEPT, "text/csv")));
        assert!(wants_csv(&with(
            header::ACCEPT,
            "text/html, text/csv;q=0.9, application/json"
        )));
        assert!(!wants_csv(&with(
            header::ACCEPT,
            "application/json, text/csv"
        )));
        assert!(!wants_csv(&with(header::ACCEPT, "*/*")));
        assert!(!wants_csv(&HeaderMap::new()));
        assert!(is_csv(&with(
            header::CONTENT_TYPE,
            "text/csv; charset=utf-8"
        )));
        assert!(!is_csv(&with(header::CONTENT_TYPE, "application/json")));
    }
}
