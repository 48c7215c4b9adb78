//! Preprocessing that travels with a model: feature standardisation (fitted on the training
//! split only) and the mapping between class labels and output units.

use std::collections::BTreeMap;
use std::fmt;

use ndarray::{Array1, Array2, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

/// A class label as the user wrote it: a whole number or a string.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ClassLabel {
    Integer(i64),
    Text(String),
}

impl fmt::Display for ClassLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClassLabel::Integer(i) => write!(f, "{i}"),
            ClassLabel::Text(s) => f.write_str(s),
        }
    }
}

/// The targets of a dataset before a loss gives them meaning.
#[derive(Clone, Debug, PartialEq)]
pub enum Targets {
    /// One label per row (a CSV column of names or whole numbers).
    Labels(Vec<ClassLabel>),
    /// One or more numbers per row: regression values, 0/1 columns, one-hot rows.
    Values(Array2<f32>),
}

impl Targets {
    pub fn len(&self) -> usize {
        match self {
            Targets::Labels(l) => l.len(),
            Targets::Values(v) => v.nrows(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Distinct labels in sorted order (numbers numerically, then strings).
    pub fn classes(&self) -> Option<Vec<ClassLabel>> {
        match self {
            Targets::Labels(l) => {
                // Distinct first (a label cloned per class, not per row), then sorted.
                let mut seen: std::collections::HashSet<&ClassLabel> = Default::default();
                let mut last = None;
                for label in l {
                    if last != Some(label) {
                        seen.insert(label);
                        last = Some(label);
                    }
                }
                let mut c: Vec<ClassLabel> = seen.into_iter().cloned().collect();
                c.sort();
                Some(c)
            }
            Targets::Values(_) => None,
        }
    }

    /// The rows `idx`, in that order.
    pub fn select(&self, idx: &[usize]) -> Targets {
        match self {
            Targets::Labels(l) => Targets::Labels(idx.iter().map(|&i| l[i].clone()).collect()),
            Targets::Values(v) => Targets::Values(v.select(Axis(0), idx)),
        }
    }
}

/// Raw features and targets, as a dataset hands them to the engine.
#[derive(Clone, Debug, PartialEq)]
pub struct Samples {
    pub x: Array2<f32>,
    pub targets: Targets,
}

/// How the output units map to what the user sees.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OutputEncoding {
    /// Softmax units, one per class, in this order.
    Categorical { classes: Vec<ClassLabel> },
    /// One sigmoid unit: below 0.5 is `classes[0]`, otherwise `classes[1]`.
    Binary { classes: Vec<ClassLabel> },
    /// Numbers straight out (regression, multi-label sigmoids, one-hot given by the user).
    Values,
}

impl OutputEncoding {
    pub fn classes(&self) -> Option<&[ClassLabel]> {
        match self {
            OutputEncoding::Categorical { classes } | OutputEncoding::Binary { classes } => {
                Some(classes)
            }
            OutputEncoding::Values => None,
        }
    }

    /// Labels for a batch of outputs, when the outputs stand for classes.
    pub fn labels(&self, outputs: ArrayView2<f32>) -> Option<Vec<ClassLabel>> {
        match self {
            OutputEncoding::Categorical { classes } => Some(
                crate::nn::math::activation::argmax_rows(outputs)
                    .into_iter()
                    .map(|i| classes[i].clone())
                    .collect(),
            ),
            OutputEncoding::Binary { classes } => Some(
                outputs
                    .column(0)
                    .iter()
                    .map(|&p| classes[usize::from(p >= 0.5)].clone())
                    .collect(),
            ),
            OutputEncoding::Values => None,
        }
    }

    /// Target matrix for labels under this encoding.
    pub fn encode(&self, labels: &[ClassLabel]) -> Result<Array2<f32>, String> {
        let classes = self
            .classes()
            .ok_or("this output takes numbers, not labels")?;
        let index: BTreeMap<&ClassLabel, usize> =
            classes.iter().enumerate().map(|(i, c)| (c, i)).collect();
        let width = match self {
            OutputEncoding::Categorical { classes } => classes.len(),
            _ => 1,
        };
        let mut y = Array2::zeros((labels.len(), width));
        for (r, l) in labels.iter().enumerate() {
            let i = *index.get(l).ok_or_else(|| format!("unknown class {l}"))?;
            if width == 1 {
                y[[r, 0]] = i as f32;
            } else {
                y[[r, i]] = 1.0;
            }
        }
        Ok(y)
    }
}

/// `x' = (x − mean) / std` per feature; a constant feature gets std 1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Standardizer {
    pub fn fit(x: ArrayView2<f32>) -> Self {
        let n = x.nrows().max(1) as f64;
        let mut mean = vec![0f32; x.ncols()];
        let mut std = vec![1f32; x.ncols()];
        for (j, col) in x.axis_iter(Axis(1)).enumerate() {
            let m = col.iter().map(|&v| v as f64).sum::<f64>() / n;
            let var = col.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / n;
            mean[j] = m as f32;
            let s = var.sqrt() as f32;
            std[j] = if s > 1e-12 && s.is_finite() { s } else { 1.0 };
        }
        Standardizer { mean, std }
    }

    pub fn transform(&self, x: ArrayView2<f32>) -> Array2<f32> {
        let mut out = x.to_owned();
        self.transform_in_place(&mut out);
        out
    }

    /// [`transform`](Self::transform) on `x` itself: x' = (x - mean) / std.
    pub fn transform_in_place(&self, x: &mut Array2<f32>) {
        let mean = Array1::from(self.mean.clone());
        let inv = Array1::from(self.std.iter().map(|s| 1.0 / s).collect::<Vec<_>>());
        for mut row in x.rows_mut() {
            row -= &mean;
            row *= &inv;
        }
    }

    pub fn inverse(&self, x: ArrayView2<f32>) -> Array2<f32> {
        let mut out = x.to_owned();
        for mut row in out.rows_mut() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = *v * self.std[j] + self.mean[j];
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn standardisation_round_trips_and_centres() {
        let x = array![[1.0f32, 100.0, 5.0], [3.0, 300.0, 5.0], [5.0, 200.0, 5.0]];
        let s = Standardizer::fit(x.view());
        let t = s.transform(x.view());
        for col in t.axis_iter(Axis(1)).take(2) {
            assert!(col.sum().abs() < 1e-5);
            assert!((col.mapv(|v| v * v).sum() / 3.0 - 1.0).abs() < 1e-5);
        }
        assert_eq!(s.std[2], 1.0);
        let back = s.inverse(t.view());
        assert!(back.iter().zip(x.iter()).all(|(a, b)| (a - b).abs() < 1e-4));
    }

    #[test]
    fn labels_sort_and_encode() {
        let t = Targets::Labels(vec![
            ClassLabel::Text("b".into()),
            ClassLabel::Text("a".into()),
            ClassLabel::Text("b".into()),
        ]);
        let classes = t.classes().unwrap();
        assert_eq!(
            classes,
            vec![ClassLabel::Text("a".into()), ClassLabel::Text("b".into())]
        );
        let Targets::Labels(l) = &t else {
            unreachable!()
        };
        let enc = OutputEncoding::Categorical {
            classes: classes.clone(),
        };
        assert_eq!(
            enc.encode(l).unwrap(),
            array![[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]
        );
        let bin = OutputEncoding::Binary { classes };
        assert_eq!(bin.encode(l).unwrap(), array![[1.0], [0.0], [1.0]]);
        let labels = bin.labels(array![[0.2], [0.7]].view()).unwrap();
        assert_eq!(
            labels,
            vec![ClassLabel::Text("a".into()), ClassLabel::Text("b".into())]
        );
        // numbers sort numerically and serialise as numbers
        let mut n = vec![ClassLabel::Integer(10), ClassLabel::Integer(2)];
        n.sort();
        assert_eq!(serde_json::to_string(&n).unwrap(), "[2,10]");
    }
}
