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

/// `x' = (x − mean) / std` per feature; a constant feature gets std 1. Features marked in
/// `clip` are then smooth-clipped: `x' ← x' / √(1 + (x'/3)²)`, close to the identity near 0
/// and bounded by ±3 (RealMLP's robust scaling: [`Standardizer::fit_robust`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// Which features are smooth-clipped after scaling (empty: none; models written before
    /// robust scaling have none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clip: Vec<bool>,
}

/// The smooth clipping of RealMLP (Holzmüller et al., 2024): `x / √(1 + (x/3)²)`.
#[inline]
pub fn smooth_clip(x: f32) -> f32 {
    let t = x * (1.0 / 3.0);
    x / (1.0 + t * t).sqrt()
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
        Standardizer {
            mean,
            std,
            clip: vec![],
        }
    }

    /// Robust scaling with smooth clipping (RealMLP, Holzmüller et al., NeurIPS 2024) of the
    /// features marked `continuous`: centred on the training median and divided by the
    /// interquartile range (half the range where the quartiles meet; 1 for a constant
    /// feature), then smooth-clipped, so a few extreme values (a price, a count) no longer
    /// squeeze every other row into a sliver around 0. Other features pass unchanged.
    pub fn fit_robust(x: ArrayView2<f32>, continuous: &[bool]) -> Self {
        let d = x.ncols();
        let mut mean = vec![0f32; d];
        let mut std = vec![1f32; d];
        let mut clip = vec![false; d];
        let mut sorted = Vec::with_capacity(x.nrows());
        for (j, col) in x.axis_iter(Axis(1)).enumerate() {
            if !continuous.get(j).copied().unwrap_or(true) || col.is_empty() {
                continue;
            }
            sorted.clear();
            sorted.extend(col.iter().copied().filter(|v| v.is_finite()));
            if sorted.is_empty() {
                continue;
            }
            sorted.sort_unstable_by(f32::total_cmp);
            let q = |p: f64| {
                let at = p * (sorted.len() - 1) as f64;
                let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
                let w = (at - lo as f64) as f32;
                sorted[lo] * (1.0 - w) + sorted[hi] * w
            };
            let iqr = q(0.75) - q(0.25);
            let half_range = 0.5 * (sorted[sorted.len() - 1] - sorted[0]);
            let s = if iqr > 0.0 { iqr } else { half_range };
            mean[j] = q(0.5);
            std[j] = if s > 1e-12 && s.is_finite() { s } else { 1.0 };
            clip[j] = true;
        }
        Standardizer { mean, std, clip }
    }

    pub fn transform(&self, x: ArrayView2<f32>) -> Array2<f32> {
        let mut out = x.to_owned();
        self.transform_in_place(&mut out);
        out
    }

    /// [`transform`](Self::transform) on `x` itself: x' = (x - mean) / std, then the smooth
    /// clipping of the features in `clip`.
    pub fn transform_in_place(&self, x: &mut Array2<f32>) {
        let mean = Array1::from(self.mean.clone());
        let inv = Array1::from(self.std.iter().map(|s| 1.0 / s).collect::<Vec<_>>());
        let clipped: Vec<usize> = (0..self.clip.len()).filter(|&j| self.clip[j]).collect();
        for mut row in x.rows_mut() {
            row -= &mean;
            row *= &inv;
            for &j in &clipped {
                if let Some(v) = row.get_mut(j) {
                    *v = smooth_clip(*v);
                }
            }
        }
    }

    /// The inverse of the scaling (not of the clipping: for targets, which are never
    /// clipped).
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
    fn robust_scaling_centres_on_the_median_and_bounds_outliers() {
        // One column with an outlier, one indicator, one constant.
        let x = array![
            [1.0f32, 0.0, 7.0],
            [2.0, 1.0, 7.0],
            [3.0, 0.0, 7.0],
            [4.0, 1.0, 7.0],
            [1000.0, 0.0, 7.0]
        ];
        let s = Standardizer::fit_robust(x.view(), &[true, false, true]);
        assert_eq!((s.mean[0], s.std[0]), (3.0, 2.0)); // median 3, quartiles 2 and 4
        assert_eq!((s.mean[1], s.std[1]), (0.0, 1.0));
        assert_eq!(s.clip, vec![true, false, true]);
        assert_eq!(s.std[2], 1.0);
        let t = s.transform(x.view());
        assert_eq!(t[[2, 0]], 0.0);
        assert!((t[[3, 0]] - smooth_clip(0.5)).abs() < 1e-7);
        assert!(t[[4, 0]] < 3.0 && t[[4, 0]] > 2.99, "{}", t[[4, 0]]);
        assert_eq!(t.column(1), x.column(1));
        assert!(t.column(2).iter().all(|&v| v == 0.0));
        // Smooth clipping is odd, increasing, near the identity at 0 and bounded by 3.
        assert_eq!(smooth_clip(0.0), 0.0);
        assert_eq!(smooth_clip(-2.0), -smooth_clip(2.0));
        assert!((smooth_clip(0.01) - 0.01).abs() < 1e-6);
        assert!(smooth_clip(1e30) <= 3.0);
        // Quartiles meeting fall back to half the range.
        let x = array![[0.0f32], [0.0], [0.0], [0.0], [10.0]];
        assert_eq!(Standardizer::fit_robust(x.view(), &[true]).std[0], 5.0);
        // The document of a model without clipping has no `clip`; one with it round-trips.
        let plain = Standardizer::fit(x.view());
        assert!(!serde_json::to_string(&plain).unwrap().contains("clip"));
        let back: Standardizer = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
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
