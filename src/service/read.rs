//! Reading JSON request bodies into typed values, pointing at the field that failed: a
//! syntax error is unreadable, a value of the wrong shape is invalid at its JSON pointer
//! (`/layers/2/activation`). Pure: the handlers and the fuzz targets share these readers.

use super::Error;

/// Parses a JSON body into `T`, pointing at the field that failed.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(Error::unreadable(
            "the request body is empty; send a JSON document",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let pointer = pointer_of(e.path());
        json_problem(e.into_inner(), pointer)
    })
}

/// Parses a JSON body with a `DeserializeSeed` (for readers that check limits as they go),
/// pointing at the field that failed like [`parse_json`].
pub fn parse_json_seed<'de, S: serde::de::DeserializeSeed<'de>>(
    bytes: &'de [u8],
    seed: S,
) -> Result<S::Value, Error> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(Error::unreadable(
            "the request body is empty; send a JSON document",
        ));
    }
    let mut track = serde_path_to_error::Track::new();
    let mut de = serde_json::Deserializer::from_slice(bytes);
    seed.deserialize(serde_path_to_error::Deserializer::new(&mut de, &mut track))
        .map_err(|e| json_problem(e, pointer_of(&track.path())))
}

/// A serde_json error as a problem: 400 for unreadable JSON, else 422 at `pointer`.
fn json_problem(inner: serde_json::Error, pointer: String) -> Error {
    if inner.is_syntax() || inner.is_eof() {
        Error::Unreadable {
            detail: format!("malformed JSON: {inner}"),
            pointer: None,
        }
    } else {
        let msg = strip_position(&inner.to_string());
        // The whole body is wrong (a string where an object belongs): "/", as from_value
        // and the handlers say, not an empty pointer.
        Error::invalid(
            if pointer.is_empty() {
                "/".into()
            } else {
                pointer
            },
            msg,
        )
    }
}

/// Parses a JSON value into `T` under `prefix`.
pub fn from_value<T: serde::de::DeserializeOwned>(
    v: serde_json::Value,
    prefix: &str,
) -> Result<T, Error> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let pointer = format!("{prefix}{}", pointer_of(e.path()));
        Error::invalid(
            if pointer.is_empty() {
                "/".into()
            } else {
                pointer
            },
            e.into_inner().to_string(),
        )
    })
}

fn strip_position(s: &str) -> String {
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s.to_string(),
    }
}

fn pointer_of(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut p = String::new();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => p.push_str(&format!("/{index}")),
            Segment::Map { key } => {
                p.push_str(&format!("/{}", key.replace('~', "~0").replace('/', "~1")))
            }
            Segment::Enum { variant } => p.push_str(&format!("/{variant}")),
            Segment::Unknown => {}
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_of_the_wrong_type_points_at_the_root() {
        // Found by the json_dataset fuzz target: a JSON string as the body gave pointer "".
        let e = parse_json::<crate::data::JsonDataset>(br#""feature_names""#).unwrap_err();
        match e {
            Error::Invalid(errs) => assert_eq!(errs[0].pointer, "/"),
            other => panic!("{other:?}"),
        }
        let e = parse_json::<crate::data::JsonDataset>(br#"{"features": "x"}"#).unwrap_err();
        match e {
            Error::Invalid(errs) => assert_eq!(errs[0].pointer, "/features"),
            other => panic!("{other:?}"),
        }
    }
}
