//! Reading a sweep request: the body's fields checked as far as they can be without the
//! store, and the base spec written out as a job stores it.

use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    #[serde(default)]
    name: Option<String>,
    dataset_id: Uuid,
    #[serde(default)]
    base: Option<Value>,
    #[serde(default)]
    space: Option<Value>,
    #[serde(default)]
    method: Option<Method>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    max_trials: Option<usize>,
    #[serde(default)]
    max_seconds: Option<f64>,
    #[serde(default)]
    metric: Option<String>,
    /// `null` turns successive halving off; absent leaves the mode's default.
    #[serde(default, deserialize_with = "some")]
    halving: Option<Option<Halving>>,
    #[serde(default)]
    refit: Option<bool>,
    #[serde(default)]
    folds: Option<u32>,
    #[serde(default)]
    task: Option<Task>,
}

fn some<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Option<Halving>>, D::Error> {
    Option::<Halving>::deserialize(d).map(Some)
}

/// Reads `POST /v1/sweeps`'s body. Pure.
pub fn read_sweep_request(body: &[u8]) -> Result<SweepRequest> {
    // A sweep is a spec, never data (its dataset is stored): a body larger than any spec
    // would be is refused before it is read as a JSON tree (about fifty times its size).
    if body.len() > MAX_SWEEP_BODY {
        return Err(Error::TooLarge {
            detail: format!(
                "a sweep request is a spec of at most {MAX_SWEEP_BODY} bytes; its data is a stored dataset (dataset_id)"
            ),
            pointer: None,
        });
    }
    let raw: Value = parse_json_seed(body, UniqueValue)?;
    let r: RawRequest = from_value(raw, "")?;
    if let Some(n) = &r.name
        && (n.is_empty() || n.len() > 200)
    {
        return Err(Error::invalid(
            "/name",
            "must be a string of 1 to 200 characters",
        ));
    }
    if let Some(t) = r.max_trials
        && !(1..=MAX_TRIALS).contains(&t)
    {
        return Err(Error::invalid(
            "/max_trials",
            format!("must be from 1 to {MAX_TRIALS}"),
        ));
    }
    if let Some(s) = r.max_seconds
        && !(s.is_finite() && s > 0.0)
    {
        return Err(Error::invalid("/max_seconds", "must be a positive number"));
    }
    if let Some(m) = &r.metric
        && !METRICS.contains(&m.as_str())
    {
        return Err(Error::invalid(
            "/metric",
            format!(
                "unknown metric {m:?}; expected one of {}",
                METRICS.join(", ")
            ),
        ));
    }
    if let Some(f) = r.folds
        && !(1..=MAX_FOLDS).contains(&f)
    {
        return Err(Error::invalid(
            "/folds",
            format!("must be from 1 to {MAX_FOLDS}"),
        ));
    }
    if let Some(Some(h)) = r.halving {
        if h.min_epochs == 0 {
            return Err(Error::invalid("/halving/min_epochs", "must be at least 1"));
        }
        if h.eta < 2 {
            return Err(Error::invalid("/halving/eta", "must be at least 2"));
        }
    }
    match (&r.base, &r.space) {
        (Some(b), _) if !b.is_object() => {
            return Err(Error::invalid("/base", "must be a job spec (an object)"));
        }
        (Some(b), _) if b.get("dataset_id").is_some() || b.get("dataset").is_some() => {
            return Err(Error::invalid(
                "/base/dataset_id",
                "the sweep's dataset_id names the data; the base spec names none",
            ));
        }
        (Some(_), None) => {
            return Err(Error::invalid("/space", "is required with a base spec"));
        }
        (None, Some(_)) => {
            return Err(Error::invalid(
                "/base",
                "is required with a space (leave both out for the automatic mode)",
            ));
        }
        _ => {}
    }
    if let Some(s) = &r.space {
        read_space(s)?;
    }
    Ok(SweepRequest {
        name: r.name,
        dataset_id: r.dataset_id,
        base: r.base,
        space: r.space,
        method: r.method.unwrap_or(Method::Random),
        seed: r.seed.unwrap_or(0),
        max_trials: r.max_trials,
        max_seconds: r.max_seconds,
        metric: r.metric,
        halving: r.halving,
        refit: r.refit,
        folds: r.folds,
        task: r.task,
    })
}

/// The base spec as a job stores it: every default written out (so that a pointer such as
/// `/optimizer/learning_rate` finds its object) and the seed fixed (the sweep's, unless the
/// base gives one), without `dataset_id`. Problems point into `/base`.
pub(super) fn normalize_base(
    base: Value,
    dataset_id: Uuid,
    seed: u64,
    limits: &crate::data::Limits,
) -> Result<Value> {
    let mut b = base;
    b["dataset_id"] = json!(dataset_id);
    if b.get("seed").is_none_or(Value::is_null) {
        b["seed"] = json!(seed);
    }
    let bytes = serde_json::to_vec(&b).map_err(|e| Error::Internal(e.to_string()))?;
    let req = read_request(&bytes, limits).map_err(|e| match e {
        Error::Invalid(errs) => Error::Invalid(
            errs.into_iter()
                .map(|mut e| {
                    e.pointer = format!("/base{}", e.pointer);
                    e
                })
                .collect(),
        ),
        other => other,
    })?;
    let spec = JobSpec {
        train: req.spec,
        dataset_id: None,
        priority: req.priority,
        name: req.name,
        validation_dataset_id: req.validation_dataset,
        init_model_id: req.init_model,
        continues: None,
        auto_learning_rate: req.auto_learning_rate,
    };
    Ok(spec.to_value())
}

pub(super) fn stored_spec(s: &SweepRecord) -> Result<SweepSpec> {
    serde_json::from_value(s.spec.clone())
        .map_err(|e| Error::Internal(format!("sweep {}: stored spec: {e}", s.id)))
}

/// A trial spec's problem, pointed into the base spec (and naming the trial).
pub(super) fn in_base(e: Error, t: usize) -> Error {
    match e {
        Error::Invalid(errs) => Error::Invalid(
            errs.into_iter()
                .map(|mut e| {
                    if !e.pointer.starts_with("/space") {
                        e.pointer = format!("/base{}", e.pointer);
                    }
                    e.message = format!("trial {t}: {}", e.message);
                    e
                })
                .collect(),
        ),
        other => other,
    }
}
