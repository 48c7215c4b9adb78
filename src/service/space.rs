//! A sweep's search space: spec fields named by JSON Pointer, each with a distribution
//! (`{"log_uniform": [a, b]}`, `{"uniform": [a, b]}`, `{"choice": [...]}`), and the trials
//! drawn from it — the grid of every combination of choices, or seeded random draws. Pure:
//! the same space, method and seed give the same trials on any node.

use std::collections::BTreeMap;

use serde_json::Value;

use super::Error;
use crate::nn::math::rng::{Rng, Stream};

/// One searched field's values.
#[derive(Clone, Debug, PartialEq)]
pub enum Dimension {
    LogUniform(f64, f64),
    Uniform(f64, f64),
    Choice(Vec<Value>),
}

/// Fields of a submission a sweep sets for all its trials, which a space may not search.
const NOT_SEARCHABLE: [&str; 6] = [
    "dataset_id",
    "dataset",
    "validation_dataset_id",
    "init_model_id",
    "name",
    "priority",
];

/// The space: pointer → dimension, in pointer order (so draws do not depend on the order a
/// client wrote the keys in).
pub type Space = BTreeMap<String, Dimension>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Random,
    Grid,
}

/// Reads the `space` object; problems point into it (`/space/~1l2`).
pub fn read_space(v: &Value) -> Result<Space, Error> {
    let Some(obj) = v.as_object() else {
        return Err(Error::invalid(
            "/space",
            "must be an object of JSON Pointer → distribution",
        ));
    };
    let mut space = Space::new();
    for (pointer, dist) in obj {
        let at = format!(
            "/space/{}",
            crate::nn::portable::tabular::pointer_token(pointer)
        );
        if pointer == "/epochs" {
            return Err(Error::invalid(
                at,
                "a sweep's epochs are its budget (the base spec's epochs, reached through halving's rungs); they are not searched",
            ));
        }
        if !pointer.starts_with('/') {
            return Err(Error::invalid(
                at,
                "the key must be a JSON Pointer into the spec, such as /optimizer/learning_rate",
            ));
        }
        // The sweep's own fields: its dataset and a trial's name, priority and data are
        // the sweep's, set on every trial; a space over them would be silently overridden.
        let top = pointer.split('/').nth(1).unwrap_or("");
        if NOT_SEARCHABLE.contains(&top) {
            return Err(Error::invalid(
                at,
                format!(
                    "/{top} is not searchable: a sweep's trials share its dataset, name and priority; search the model's fields (layers, optimizer, learning rate, batch_size, l2, dropout, …)"
                ),
            ));
        }
        let pair = |v: &Value, name: &str| -> Result<(f64, f64), Error> {
            match v.as_array().map(|a| a.as_slice()) {
                Some([a, b]) if a.is_number() && b.is_number() => {
                    let (a, b) = (
                        a.as_f64().unwrap_or(f64::NAN),
                        b.as_f64().unwrap_or(f64::NAN),
                    );
                    if a.is_finite() && b.is_finite() && a <= b {
                        Ok((a, b))
                    } else {
                        Err(Error::invalid(
                            format!("{at}/{name}"),
                            "must be [low, high] with low ≤ high",
                        ))
                    }
                }
                _ => Err(Error::invalid(
                    format!("{at}/{name}"),
                    "must be [low, high], two numbers",
                )),
            }
        };
        let d = match dist.as_object() {
            Some(o) if o.len() == 1 => {
                let (k, v) = o.iter().next().expect("one entry");
                match k.as_str() {
                    "log_uniform" => {
                        let (a, b) = pair(v, k)?;
                        if a <= 0.0 {
                            return Err(Error::invalid(
                                format!("{at}/log_uniform"),
                                "needs low > 0",
                            ));
                        }
                        Dimension::LogUniform(a, b)
                    }
                    "uniform" => {
                        let (a, b) = pair(v, k)?;
                        Dimension::Uniform(a, b)
                    }
                    "choice" => match v.as_array() {
                        Some(c) if !c.is_empty() => Dimension::Choice(c.clone()),
                        _ => {
                            return Err(Error::invalid(
                                format!("{at}/choice"),
                                "must be a non-empty array of values",
                            ));
                        }
                    },
                    other => {
                        return Err(Error::invalid(
                            at,
                            format!(
                                "unknown distribution {other:?}; expected log_uniform, uniform or choice"
                            ),
                        ));
                    }
                }
            }
            _ => {
                return Err(Error::invalid(
                    at,
                    "must be one of {\"log_uniform\": [a, b]}, {\"uniform\": [a, b]}, {\"choice\": [...]}",
                ));
            }
        };
        space.insert(pointer.clone(), d);
    }
    Ok(space)
}

/// How many trials a grid has (choices only), or the reason there is no grid.
pub fn grid_size(space: &Space) -> Result<usize, String> {
    let mut n = 1usize;
    for (p, d) in space {
        match d {
            Dimension::Choice(c) => n = n.saturating_mul(c.len()),
            _ => return Err(format!("{p} is not a choice; a grid searches choices only")),
        }
    }
    Ok(n)
}

/// Trial `t`'s values: pointer → value.
pub fn draw(space: &Space, method: Method, seed: u64, t: usize) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    match method {
        Method::Grid => {
            // Mixed radix over the choices, the last pointer varying fastest.
            let mut rest = t;
            for (p, d) in space.iter().rev() {
                if let Dimension::Choice(c) = d {
                    out.insert(p.clone(), c[rest % c.len()].clone());
                    rest /= c.len();
                }
            }
        }
        Method::Random => {
            for (i, (p, d)) in space.iter().enumerate() {
                let mut rng = Rng::derive(seed, Stream::Sweep, &[t as u64, i as u64]);
                let v = match d {
                    Dimension::LogUniform(a, b) => {
                        serde_json::json!((a.ln() + rng.uniform() * (b.ln() - a.ln())).exp())
                    }
                    Dimension::Uniform(a, b) => serde_json::json!(a + rng.uniform() * (b - a)),
                    Dimension::Choice(c) => c[rng.below(c.len())].clone(),
                };
                out.insert(p.clone(), v);
            }
        }
    }
    out
}

/// `spec` with the value at `pointer` set (an array index or an object key that exists, or a
/// new key of an existing object).
pub fn set_pointer(spec: &mut Value, pointer: &str, value: Value) -> Result<(), String> {
    let tokens: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect();
    let Some((last, parents)) = tokens.split_last() else {
        return Err("the empty pointer names the whole spec".into());
    };
    let mut at = spec;
    for t in parents {
        at = match at {
            Value::Object(o) => o.get_mut(t),
            Value::Array(a) => t.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| format!("the base spec has nothing at {t:?} of {pointer}"))?;
    }
    match at {
        Value::Object(o) => {
            o.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(a) => match last.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
            Some(slot) => {
                *slot = value;
                Ok(())
            }
            None => Err(format!(
                "the base spec's array has no element {last} ({pointer})"
            )),
        },
        _ => Err(format!(
            "the base spec has no object or array to hold {pointer}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn space() -> Space {
        read_space(&json!({
            "/optimizer/learning_rate": {"log_uniform": [1e-4, 1e-1]},
            "/layers/0/units": {"choice": [16, 64, 256]},
            "/l2": {"uniform": [0, 1e-3]},
        }))
        .unwrap()
    }

    #[test]
    fn random_draws_stay_in_range_and_repeat_for_a_seed() {
        let s = space();
        for t in 0..50 {
            let d = draw(&s, Method::Random, 7, t);
            let lr = d["/optimizer/learning_rate"].as_f64().unwrap();
            assert!((1e-4..=1e-1).contains(&lr), "{lr}");
            assert!([16, 64, 256].contains(&d["/layers/0/units"].as_i64().unwrap()));
            assert!((0.0..=1e-3).contains(&d["/l2"].as_f64().unwrap()));
            assert_eq!(d, draw(&s, Method::Random, 7, t));
        }
        assert_ne!(
            draw(&s, Method::Random, 7, 0),
            draw(&s, Method::Random, 8, 0)
        );
    }

    #[test]
    fn a_grid_visits_every_combination_once() {
        let s = read_space(&json!({"/a": {"choice": [1, 2, 3]}, "/b": {"choice": ["x", "y"]}}))
            .unwrap();
        assert_eq!(grid_size(&s), Ok(6));
        let mut seen: Vec<String> = (0..6)
            .map(|t| format!("{:?}", draw(&s, Method::Grid, 0, t)))
            .collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 6);
        assert!(grid_size(&space()).is_err());
    }

    #[test]
    fn a_space_over_the_sweeps_own_fields_is_refused() {
        for p in ["/dataset_id", "/name", "/priority", "/dataset/features"] {
            match read_space(&json!({p: {"choice": [1, 2]}})) {
                Err(Error::Invalid(errs)) => {
                    assert!(errs[0].message.contains("not searchable"), "{p}: {errs:?}")
                }
                other => panic!("{p}: {:?}", other.map(|s| s.len())),
            }
        }
        assert!(read_space(&json!({"/l2": {"choice": [0, 1e-4]}})).is_ok());
    }

    #[test]
    fn pointers_set_fields_and_refuse_what_is_not_there() {
        let mut spec = json!({"layers": [{"units": 4}, {}], "optimizer": {"type": "adam"}});
        set_pointer(&mut spec, "/optimizer/learning_rate", json!(0.1)).unwrap();
        set_pointer(&mut spec, "/layers/0/units", json!(8)).unwrap();
        set_pointer(&mut spec, "/layers", json!([{}])).unwrap();
        assert_eq!(
            spec,
            json!({"layers": [{}], "optimizer": {"type": "adam", "learning_rate": 0.1}})
        );
        assert!(set_pointer(&mut spec, "/layers/3/units", json!(1)).is_err());
        assert!(set_pointer(&mut spec, "/nothing/here", json!(1)).is_err());
        let e = read_space(&json!({"/l2": {"normal": [0, 1]}}))
            .err()
            .unwrap();
        match e {
            Error::Invalid(errs) => assert_eq!(errs[0].pointer, "/space/~1l2"),
            other => panic!("{other:?}"),
        }
    }
}
