//! The stored form of a [`Dataset`]: postcard with a format number, f32 data as flat
//! row-major vectors. `ClassLabel` is `#[serde(untagged)]`, which postcard (not
//! self-describing) cannot read back, so labels get their own tagged mirror here.

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::Dataset;
use crate::nn::{ClassLabel, Targets};

/// Bumped whenever `Stored` changes shape, so old bytes fail loudly instead of misreading.
const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Stored {
    format: u32,
    feature_names: Vec<String>,
    target_names: Vec<String>,
    rows: u64,
    /// rows × feature_names.len(), row-major.
    x: Vec<f32>,
    targets: StoredTargets,
}

#[derive(Serialize, Deserialize)]
enum StoredTargets {
    Labels(Vec<StoredLabel>),
    /// rows × width, row-major.
    Values {
        width: u64,
        data: Vec<f32>,
    },
}

#[derive(Serialize, Deserialize)]
enum StoredLabel {
    Integer(i64),
    Text(String),
}

pub(super) fn to_bytes(d: &Dataset) -> Vec<u8> {
    let targets = match &d.targets {
        Targets::Labels(l) => StoredTargets::Labels(
            l.iter()
                .map(|c| match c {
                    ClassLabel::Integer(i) => StoredLabel::Integer(*i),
                    ClassLabel::Text(s) => StoredLabel::Text(s.clone()),
                })
                .collect(),
        ),
        Targets::Values(v) => StoredTargets::Values {
            width: v.ncols() as u64,
            data: v.iter().copied().collect(),
        },
    };
    let stored = Stored {
        format: FORMAT,
        feature_names: d.feature_names.clone(),
        target_names: d.target_names.clone(),
        rows: d.rows() as u64,
        x: d.x.iter().copied().collect(),
        targets,
    };
    // Serialising plain strings, integers and floats into a Vec cannot fail.
    postcard::to_stdvec(&stored).unwrap_or_default()
}

pub(super) fn from_bytes(b: &[u8]) -> Result<Dataset, String> {
    let s: Stored = postcard::from_bytes(b).map_err(|e| format!("unreadable dataset: {e}"))?;
    if s.format != FORMAT {
        return Err(format!(
            "dataset stored in format {}, this build reads format {FORMAT}",
            s.format
        ));
    }
    let rows = usize::try_from(s.rows).map_err(|_| "row count does not fit in memory")?;
    let x = Array2::from_shape_vec((rows, s.feature_names.len()), s.x)
        .map_err(|e| format!("features do not match {rows} rows: {e}"))?;
    let (targets, width) = match s.targets {
        StoredTargets::Labels(l) => {
            if l.len() != rows {
                return Err(format!("{} labels for {rows} rows", l.len()));
            }
            let labels = l
                .into_iter()
                .map(|c| match c {
                    StoredLabel::Integer(i) => ClassLabel::Integer(i),
                    StoredLabel::Text(s) => ClassLabel::Text(s),
                })
                .collect();
            (Targets::Labels(labels), 1)
        }
        StoredTargets::Values { width, data } => {
            let width = usize::try_from(width).map_err(|_| "target width does not fit")?;
            let v = Array2::from_shape_vec((rows, width), data)
                .map_err(|e| format!("targets do not match {rows}×{width}: {e}"))?;
            (Targets::Values(v), width)
        }
    };
    if s.target_names.len() != width {
        return Err(format!(
            "{} target names for {width} target columns",
            s.target_names.len()
        ));
    }
    Ok(Dataset {
        feature_names: s.feature_names,
        target_names: s.target_names,
        x,
        targets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn labelled() -> Dataset {
        Dataset {
            feature_names: vec!["a".into(), "b".into()],
            target_names: vec!["species".into()],
            x: array![[1.5, -2.0], [0.1, 3e30]],
            targets: Targets::Labels(vec![
                ClassLabel::Text("setosa".into()),
                ClassLabel::Integer(-7),
            ]),
        }
    }

    #[test]
    fn labels_round_trip() {
        let d = labelled();
        assert_eq!(Dataset::from_bytes(&d.to_bytes()), Ok(d));
    }

    #[test]
    fn values_round_trip() {
        let d = Dataset {
            feature_names: vec!["a".into()],
            target_names: vec!["target_0".into(), "target_1".into()],
            x: array![[1.0], [2.0], [3.0]],
            targets: Targets::Values(array![[1.0, 0.0], [0.0, 1.0], [0.5, 0.25]]),
        };
        assert_eq!(Dataset::from_bytes(&d.to_bytes()), Ok(d));
    }

    #[test]
    fn storage_is_compact() {
        // 2×2 f32 features are 16 bytes; names, labels and framing add a few dozen.
        assert!(labelled().to_bytes().len() < 60);
    }

    #[test]
    fn wrong_format_and_truncation_are_errors() {
        let mut b = labelled().to_bytes();
        b[0] = 9; // varint format number
        assert_eq!(
            Dataset::from_bytes(&b),
            Err("dataset stored in format 9, this build reads format 1".into())
        );
        let b = labelled().to_bytes();
        for cut in 0..b.len() {
            assert!(Dataset::from_bytes(&b[..cut]).is_err(), "cut at {cut}");
        }
        assert!(Dataset::from_bytes(&[0xff; 64]).is_err());
    }

    #[test]
    fn inconsistent_shapes_are_errors() {
        let stored = Stored {
            format: FORMAT,
            feature_names: vec!["a".into(), "b".into()],
            target_names: vec!["y".into()],
            rows: 2,
            x: vec![1.0, 2.0, 3.0],
            targets: StoredTargets::Values {
                width: 1,
                data: vec![0.0, 1.0],
            },
        };
        let b = postcard::to_stdvec(&stored).unwrap_or_default();
        let err = Dataset::from_bytes(&b).err().unwrap_or_default();
        assert!(err.starts_with("features do not match 2 rows"), "{err}");

        let stored = Stored {
            x: vec![1.0, 2.0, 3.0, 4.0],
            target_names: vec![],
            ..stored
        };
        let b = postcard::to_stdvec(&stored).unwrap_or_default();
        assert_eq!(
            Dataset::from_bytes(&b),
            Err("0 target names for 1 target columns".into())
        );
    }
}
