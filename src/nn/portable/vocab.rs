//! A text column's vocabulary: its texts in one buffer, each found by where it ends. A
//! million short texts cost their bytes and eight bytes each, where a `String` each would
//! cost 24 bytes and a heap block (32 bytes or more): what keeps a column of distinct strings
//! (identifiers, free text) near its size in the file while it is read and held.

use std::fmt;

use serde::de::{SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Texts by index, in the order they were pushed. Serialised as a sequence of strings, as a
/// `Vec<String>` is (stored datasets keep their bytes).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Vocab {
    bytes: String,
    ends: Vec<usize>,
}

impl Vocab {
    pub fn new() -> Self {
        Self::default()
    }

    /// Room for `texts` texts of `bytes` bytes in all.
    pub fn with_capacity(texts: usize, bytes: usize) -> Self {
        Vocab {
            bytes: String::with_capacity(bytes),
            ends: Vec::with_capacity(texts),
        }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The bytes of all the texts.
    pub fn text_bytes(&self) -> usize {
        self.bytes.len()
    }

    pub fn get(&self, i: usize) -> Option<&str> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        Some(&self.bytes[start..end])
    }

    pub fn last(&self) -> Option<&str> {
        self.len().checked_sub(1).and_then(|i| self.get(i))
    }

    pub fn push(&mut self, s: &str) {
        self.bytes.push_str(s);
        self.ends.push(self.bytes.len());
    }

    pub fn iter(&self) -> Iter<'_> {
        Iter {
            vocab: self,
            next: 0,
            end: self.len(),
        }
    }

    pub fn shrink_to_fit(&mut self) {
        self.bytes.shrink_to_fit();
        self.ends.shrink_to_fit();
    }
}

impl std::ops::Index<usize> for Vocab {
    type Output = str;
    fn index(&self, i: usize) -> &str {
        self.get(i).expect("a vocabulary index in range")
    }
}

impl<S: AsRef<str>> FromIterator<S> for Vocab {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        let mut v = Vocab::new();
        v.extend(iter);
        v
    }
}

impl<S: AsRef<str>> Extend<S> for Vocab {
    fn extend<I: IntoIterator<Item = S>>(&mut self, iter: I) {
        for s in iter {
            self.push(s.as_ref());
        }
    }
}

impl<'a> IntoIterator for &'a Vocab {
    type Item = &'a str;
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// The texts of a [`Vocab`], in order.
#[derive(Clone)]
pub struct Iter<'a> {
    vocab: &'a Vocab,
    next: usize,
    end: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        if self.next == self.end {
            return None;
        }
        self.next += 1;
        self.vocab.get(self.next - 1)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.end - self.next;
        (n, Some(n))
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.next == self.end {
            return None;
        }
        self.end -= 1;
        self.vocab.get(self.end)
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl fmt::Debug for Vocab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<const N: usize> PartialEq<[&str; N]> for Vocab {
    fn eq(&self, other: &[&str; N]) -> bool {
        self.iter().eq(other.iter().copied())
    }
}

impl Serialize for Vocab {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.len()))?;
        for t in self {
            seq.serialize_element(t)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Vocab {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Texts;
        impl<'de> Visitor<'de> for Texts {
            type Value = Vocab;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sequence of strings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vocab, A::Error> {
                // The hint is the sender's word: bounded, so a forged length allocates little.
                let mut v = Vocab::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16), 0);
                while let Some(s) = seq.next_element::<std::borrow::Cow<'de, str>>()? {
                    v.push(&s);
                }
                Ok(v)
            }
        }
        d.deserialize_seq(Texts)
    }
}

#[cfg(test)]
mod tests {
    use super::Vocab;

    #[test]
    fn texts_come_back_by_index_in_order() {
        let v: Vocab = ["", "b", "ça", ""].into_iter().collect();
        assert_eq!(v.len(), 4);
        assert_eq!(&v[0], "");
        assert_eq!(&v[2], "ça");
        assert_eq!(v.get(4), None);
        assert_eq!(v.last(), Some(""));
        assert_eq!(v, ["", "b", "ça", ""]);
        assert_eq!(v.iter().rev().collect::<Vec<_>>(), ["", "ça", "b", ""]);
        assert_eq!(format!("{v:?}"), r#"["", "b", "ça", ""]"#);
        assert!(Vocab::new().is_empty());
    }

    #[test]
    fn serialises_as_a_vec_of_strings_does() {
        let texts = vec!["Biscoe".to_string(), "Dream".into(), "".into()];
        let v: Vocab = texts.iter().collect();
        let bytes = postcard::to_stdvec(&v).unwrap();
        assert_eq!(bytes, postcard::to_stdvec(&texts).unwrap());
        let back: Vocab = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, v);
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"["Biscoe","Dream",""]"#
        );
        let from_json: Vocab = serde_json::from_str(r#"["a","\u00e9"]"#).unwrap();
        assert_eq!(from_json, ["a", "é"]);
    }
}
