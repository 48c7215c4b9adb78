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
    require_object(bytes)?;
    // Most bodies are valid: read them at full speed, and only a body that fails is read
    // again with the path tracked, for the pointer its error carries.
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Ok(value);
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let pointer = pointer_of(e.path());
        json_problem(e.into_inner(), pointer)
    })?;
    de.end().map_err(trailing)?;
    Ok(value)
}

/// A limit a dataset reader hit while reading (`data::json::read_within`) as the 413 it is;
/// other errors as they are.
pub fn over_limit_as_too_large(e: Error) -> Error {
    match e {
        Error::Invalid(errs) => match errs
            .iter()
            .find(|e| e.message.contains(crate::data::json::OVER_LIMIT))
        {
            Some(hit) => Error::TooLarge {
                detail: hit.message.clone(),
                pointer: Some(hit.pointer.clone()),
            },
            None => Error::Invalid(errs),
        },
        other => other,
    }
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
    require_object(bytes)?;
    let mut track = serde_path_to_error::Track::new();
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = seed
        .deserialize(serde_path_to_error::Deserializer::new(&mut de, &mut track))
        .map_err(|e| json_problem(e, pointer_of(&track.path())))?;
    de.end().map_err(trailing)?;
    Ok(value)
}

/// Refuses a body that is not one JSON object: another JSON type at the top level (an array
/// would otherwise fill a struct's fields by position) is invalid at "/".
fn require_object(bytes: &[u8]) -> Result<(), Error> {
    if bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b != b'{')
        && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
    {
        return Err(Error::invalid(
            "/",
            "the body must be one JSON object ({...})",
        ));
    }
    Ok(())
}

/// After the document only whitespace may follow: a second document or stray bytes would
/// otherwise be ignored without a word.
fn trailing(e: serde_json::Error) -> Error {
    Error::Unreadable {
        detail: format!(
            "malformed JSON: only one JSON document may be sent, found more after it ({})",
            strip_position(&e.to_string())
        ),
        pointer: None,
    }
}

/// A JSON value in which no object repeats a key (`serde_json::Value` keeps the last one
/// without a word, so a spec with two `loss` fields would train with whichever came last).
pub struct UniqueValue;

impl<'de> serde::de::DeserializeSeed<'de> for UniqueValue {
    type Value = serde_json::Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(UniqueVisitor)
    }
}

struct UniqueVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueVisitor {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(v) = seq.next_element_seed(UniqueValue)? {
            items.push(v);
        }
        Ok(serde_json::Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut m = serde_json::Map::new();
        while let Some(k) = map.next_key::<String>()? {
            if m.contains_key(&k) {
                return Err(serde::de::Error::custom(format!(
                    "duplicate field `{k}`; give each field once"
                )));
            }
            let v = map.next_value_seed(UniqueValue)?;
            m.insert(k, v);
        }
        Ok(serde_json::Value::Object(m))
    }
}

/// How many items the body's top-level `layers` array holds, counted without keeping them
/// (`None` when the body is not an object with such an array; the full reader reports that).
/// A spec or model document of a million empty layers is then refused by `--max-layers`
/// before any per-layer work or per-layer error is made.
pub fn count_layers(bytes: &[u8]) -> Option<usize> {
    #[derive(serde::Deserialize)]
    struct Probe {
        layers: Option<Count>,
    }
    struct Count(usize);
    impl<'de> serde::Deserialize<'de> for Count {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
            struct Items;
            impl<'de> serde::de::Visitor<'de> for Items {
                type Value = Count;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("an array")
                }
                fn visit_seq<A: serde::de::SeqAccess<'de>>(
                    self,
                    mut seq: A,
                ) -> std::result::Result<Count, A::Error> {
                    let mut n = 0;
                    while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                        n += 1;
                    }
                    Ok(Count(n))
                }
            }
            d.deserialize_seq(Items)
        }
    }
    serde_json::from_slice::<Probe>(bytes)
        .ok()
        .and_then(|p| p.layers)
        .map(|c| c.0)
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
    fn layers_are_counted_without_reading_them() {
        let many = format!(
            r#"{{"input_dim": 1, "layers": [{}]}}"#,
            vec!["{}"; 5000].join(",")
        );
        assert_eq!(count_layers(many.as_bytes()), Some(5000));
        assert_eq!(count_layers(br#"{"loss": "mse"}"#), None);
        assert_eq!(count_layers(br#"{"layers": 3}"#), None);
        assert_eq!(count_layers(b"not json"), None);
    }

    #[test]
    fn data_after_the_document_is_refused() {
        for body in [
            &br#"{"features":[[1],[2]],"targets":[0,1]} }}}garbage"#[..],
            br#"{"features":[[1],[2]],"targets":[0,1]}{"features":[[3]],"targets":[1]}"#,
        ] {
            match parse_json::<crate::data::JsonDataset>(body).unwrap_err() {
                Error::Unreadable { detail, .. } => {
                    assert!(detail.contains("only one JSON document"), "{detail}")
                }
                other => panic!("{other:?}"),
            }
        }
        // Whitespace after the document is fine.
        parse_json::<crate::data::JsonDataset>(b"{\"features\":[[1]],\"targets\":[0]}\n\n")
            .unwrap();
    }

    #[test]
    fn an_array_is_not_an_object_even_when_its_items_fit_the_fields() {
        match parse_json::<crate::data::JsonDataset>(br#"["n",[[1],[2]],[0,1],null]"#).unwrap_err()
        {
            Error::Invalid(errs) => {
                assert_eq!(errs[0].pointer, "/");
                assert!(errs[0].message.contains("one JSON object"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_repeated_key_is_refused_where_it_stands() {
        let body = br#"{"layers": [{"units": 1, "units": 2}], "loss": "mse"}"#;
        match parse_json_seed(body, UniqueValue).unwrap_err() {
            Error::Invalid(errs) => {
                assert_eq!(errs[0].pointer, "/layers/0");
                assert!(
                    errs[0].message.contains("duplicate field `units`"),
                    "{}",
                    errs[0].message
                );
            }
            other => panic!("{other:?}"),
        }
        let v =
            parse_json_seed(br#"{"a": {"b": [1, {"c": null}]}, "d": 1.5}"#, UniqueValue).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"a": {"b": [1, {"c": null}]}, "d": 1.5})
        );
    }

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
