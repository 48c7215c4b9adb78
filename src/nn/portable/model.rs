//! A trained (or imported) model: the network plus the preprocessing that travels with it,
//! and its portable JSON document.

use ndarray::{Array1, Array2, ArrayView2};
use serde::{Deserialize, Serialize};

use super::preprocess::{ClassLabel, OutputEncoding, Standardizer};
use super::tabular::{Cell, ColumnError, Encoder};
use crate::nn::SpecError;
use crate::nn::math::activation::Activation;
use crate::nn::math::loss::Loss;
use crate::nn::math::network::{Dense, Layer, Network, Parametric, Periodic};

#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub network: Network<f32>,
    pub standardizer: Option<Standardizer>,
    pub encoding: OutputEncoding,
    pub feature_names: Option<Vec<String>>,
    pub loss: Option<Loss>,
    /// Raw rows → inputs, for models trained on tabular data; predictions then take raw rows
    /// (numbers, text, missing cells) and `standardizer` applies to the encoded inputs.
    pub encoder: Option<Encoder>,
    /// The dataset's target columns, when known: a predict record or CSV that carries them
    /// (the training file itself) has them skipped.
    pub target_names: Option<Vec<String>>,
}

/// Outputs for a batch of raw rows, with labels when the model is a classifier.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    pub outputs: Array2<f32>,
    pub labels: Option<Vec<ClassLabel>>,
}

impl Model {
    pub fn input_dim(&self) -> usize {
        self.network.input_dim
    }

    /// Predicts raw (unstandardised) rows.
    pub fn predict(&self, x: ArrayView2<f32>) -> Prediction {
        let outputs = match &self.standardizer {
            Some(s) => self.network.predict(s.transform(x).view()),
            None => self.network.predict(x),
        };
        let labels = self.encoding.labels(outputs.view());
        Prediction { outputs, labels }
    }

    /// The raw columns a predict row has: the encoder's, else the network's inputs.
    pub fn raw_width(&self) -> usize {
        self.encoder
            .as_ref()
            .map_or(self.network.input_dim, Encoder::raw_width)
    }

    /// Names of the raw columns, when known: what a predict record is keyed by.
    pub fn raw_names(&self) -> Option<Vec<String>> {
        match &self.encoder {
            Some(e) => Some(e.columns.iter().map(|c| c.name().to_owned()).collect()),
            None => self.feature_names.clone(),
        }
    }

    /// Encodes raw rows of cells (each [`raw_width`](Self::raw_width) long) into the network's
    /// inputs; without an encoder every cell must be a number. Errors name the row and column.
    pub fn encode_rows(&self, rows: &[Vec<Cell<'_>>]) -> Result<Array2<f32>, (usize, ColumnError)> {
        let width = self.network.input_dim;
        let mut x = Array2::zeros((rows.len(), width));
        for (i, (cells, mut out)) in rows.iter().zip(x.rows_mut()).enumerate() {
            let out = out.as_slice_mut().unwrap_or(&mut []);
            match &self.encoder {
                Some(e) => e.transform_row(cells, out).map_err(|e| (i, e))?,
                None => {
                    for (j, (c, o)) in cells.iter().zip(out.iter_mut()).enumerate() {
                        let name = || {
                            self.feature_names
                                .as_ref()
                                .and_then(|n| n.get(j).cloned())
                                .unwrap_or_else(|| format!("x{j}"))
                        };
                        *o = match c {
                            Cell::Number(n) => *n as f32,
                            Cell::Missing => {
                                return Err((i, ColumnError {
                                    column: name(),
                                    message: "is missing; this model was trained on complete numeric data and needs a number".into(),
                                }));
                            }
                            Cell::Text(t) => {
                                return Err((
                                    i,
                                    ColumnError {
                                        column: name(),
                                        message: format!(
                                            "{t:?} is not a number; this model takes numbers"
                                        ),
                                    },
                                ));
                            }
                        };
                    }
                }
            }
        }
        Ok(x)
    }

    pub fn to_document(&self) -> ModelDocument {
        ModelDocument {
            format: Some(FORMAT.to_string()),
            input_dim: self.network.input_dim,
            layers: self
                .network
                .layers
                .iter()
                .map(|l| match l {
                    Layer::Dense(d) => LayerDocument {
                        units: Some(d.b.len()),
                        activation: Some(d.activation),
                        alpha: matches!(d.activation, Activation::LeakyRelu | Activation::Elu)
                            .then_some(d.alpha),
                        weights: Some(d.w.rows().into_iter().map(|r| r.to_vec()).collect()),
                        bias: Some(d.b.to_vec()),
                        ..Default::default()
                    },
                    Layer::Dropout(r) => LayerDocument {
                        dropout: Some(*r),
                        ..Default::default()
                    },
                    Layer::Ensemble(r) => LayerDocument {
                        ensemble: Some(r.rows().into_iter().map(|r| r.to_vec()).collect()),
                        ..Default::default()
                    },
                    Layer::Parametric(p) => LayerDocument {
                        activation: Some(p.activation),
                        alpha: matches!(p.activation, Activation::LeakyRelu | Activation::Elu)
                            .then_some(p.alpha),
                        parametric: Some(p.weight.iter().copied().collect()),
                        ..Default::default()
                    },
                    Layer::Periodic(p) => LayerDocument {
                        periodic: Some(PeriodicDocument {
                            columns: p.columns.clone(),
                            frequencies: p.omega.rows().into_iter().map(|r| r.to_vec()).collect(),
                        }),
                        ..Default::default()
                    },
                })
                .collect(),
            standardization: self.standardizer.clone(),
            classes: self.encoding.classes().map(|c| c.to_vec()),
            class_encoding: match self.encoding {
                OutputEncoding::Categorical { .. } => Some(ClassEncoding::Categorical),
                OutputEncoding::Binary { .. } => Some(ClassEncoding::Binary),
                OutputEncoding::Values => None,
            },
            feature_names: self.feature_names.clone(),
            loss: self.loss,
            encoder: self.encoder.clone(),
            target_names: self.target_names.clone(),
        }
    }

    /// Builds a model from a document, checking every shape; errors carry JSON pointers.
    pub fn from_document(doc: &ModelDocument) -> Result<Model, Vec<SpecError>> {
        let mut errs = vec![];
        if let Some(f) = &doc.format
            && f != FORMAT
        {
            errs.push(SpecError::new(
                "/format",
                format!("unknown format \"{f}\"; this server reads \"{FORMAT}\""),
            ));
        }
        if doc.input_dim == 0 {
            errs.push(SpecError::new("/input_dim", "must be at least 1"));
        }
        if doc.layers.is_empty() {
            errs.push(SpecError::new("/layers", "needs at least one dense layer"));
        }
        let mut width = doc.input_dim;
        let mut layers = vec![];
        let mut members = 1;
        for (i, l) in doc.layers.iter().enumerate() {
            let p = |f: &str| format!("/layers/{i}/{f}");
            if let Some(pd) = &l.periodic {
                match periodic_layer(pd, doc.input_dim) {
                    Err((field, m)) => errs.push(SpecError::new(p(&field), m)),
                    Ok(_) if i != 0 => errs.push(SpecError::new(
                        p("periodic"),
                        "a periodic embedding is the first layer",
                    )),
                    Ok(_)
                        if l.has_dense_fields()
                            || l.dropout.is_some()
                            || l.ensemble.is_some()
                            || l.parametric.is_some() =>
                    {
                        errs.push(SpecError::new(
                            format!("/layers/{i}"),
                            "a periodic layer has only its columns and frequencies",
                        ))
                    }
                    Ok(layer) => {
                        width = layer.width(width);
                        layers.push(Layer::Periodic(layer));
                    }
                }
                continue;
            }
            if let Some(r) = &l.ensemble {
                let k = r.len();
                let first = usize::from(matches!(layers.first(), Some(Layer::Periodic(_))));
                if i != first {
                    errs.push(SpecError::new(
                        p("ensemble"),
                        "an ensemble's adapters are the first layer (after a periodic embedding)",
                    ));
                } else if !(2..=crate::nn::math::network::MAX_MEMBERS as usize).contains(&k) {
                    errs.push(SpecError::new(
                        p("ensemble"),
                        format!(
                            "needs 2 to {} members (rows), got {k}",
                            crate::nn::math::network::MAX_MEMBERS
                        ),
                    ));
                } else if let Some((m, row)) = r.iter().enumerate().find(|(_, r)| r.len() != width)
                {
                    errs.push(SpecError::new(
                        format!("/layers/{i}/ensemble/{m}"),
                        format!(
                            "has {} numbers, expected {width} (the layer's input width)",
                            row.len()
                        ),
                    ));
                } else if r.iter().flatten().any(|v| !v.is_finite()) {
                    errs.push(SpecError::new(p("ensemble"), "must be finite numbers"));
                } else if l.has_dense_fields() || l.dropout.is_some() || l.parametric.is_some() {
                    errs.push(SpecError::new(
                        format!("/layers/{i}"),
                        "an ensemble layer has only its adapters",
                    ));
                } else {
                    members = k;
                    layers.push(Layer::Ensemble(
                        Array2::from_shape_vec((k, width), r.iter().flatten().copied().collect())
                            .expect("checked shape"),
                    ));
                }
                continue;
            }
            if let Some(w) = &l.parametric {
                match parametric_layer(l, w, width) {
                    Err((field, m)) if field.is_empty() => {
                        errs.push(SpecError::new(format!("/layers/{i}"), m))
                    }
                    Err((field, m)) => errs.push(SpecError::new(p(&field), m)),
                    Ok(_) if !matches!(layers.last(), Some(Layer::Dense(_))) => {
                        errs.push(SpecError::new(
                            p("parametric"),
                            "a parametric activation follows a dense layer",
                        ))
                    }
                    Ok(layer) => layers.push(Layer::Parametric(layer)),
                }
                continue;
            }
            if let Some(r) = l.dropout {
                if !(r.is_finite() && (0.0..1.0).contains(&r)) {
                    errs.push(SpecError::new(
                        p("dropout"),
                        format!("must be in [0, 1), got {r}"),
                    ));
                }
                if l.weights.is_some() || l.units.is_some() || l.parametric.is_some() {
                    errs.push(SpecError::new(
                        format!("/layers/{i}"),
                        "a dropout layer has no units or weights",
                    ));
                }
                layers.push(Layer::Dropout(r));
                continue;
            }
            let Some(rows) = &l.weights else {
                errs.push(SpecError::new(
                    p("weights"),
                    format!(
                        "is required: {width} rows of {} numbers",
                        l.units.map_or("units".into(), |u| u.to_string())
                    ),
                ));
                continue;
            };
            let units = l.units.or(rows.first().map(|r| r.len())).unwrap_or(0);
            if units == 0 {
                errs.push(SpecError::new(p("units"), "must be at least 1"));
                continue;
            }
            if rows.len() != width {
                errs.push(SpecError::new(
                    p("weights"),
                    format!(
                        "has {} rows, expected {width} (the layer's input width)",
                        rows.len()
                    ),
                ));
                continue;
            }
            if let Some((r, row)) = rows.iter().enumerate().find(|(_, r)| r.len() != units) {
                errs.push(SpecError::new(
                    format!("/layers/{i}/weights/{r}"),
                    format!("has {} numbers, expected {units} (units)", row.len()),
                ));
                continue;
            }
            let bias = l.bias.clone().unwrap_or_else(|| vec![0.0; units]);
            if bias.len() != units {
                errs.push(SpecError::new(
                    p("bias"),
                    format!("has {} numbers, expected {units} (units)", bias.len()),
                ));
                continue;
            }
            if rows
                .iter()
                .flatten()
                .chain(bias.iter())
                .any(|v| !v.is_finite())
            {
                errs.push(SpecError::new(
                    format!("/layers/{i}"),
                    "weights and bias must be finite numbers",
                ));
                continue;
            }
            let activation = l.activation.unwrap_or_default();
            // As for a spec: an infinite or negative alpha would make outputs non-finite, and
            // export (JSON has no infinity) would not give it back.
            if let Some(a) = l.alpha
                && !(a.is_finite() && a >= 0.0)
            {
                errs.push(SpecError::new(
                    p("alpha"),
                    format!("must be a number ≥ 0, got {a}"),
                ));
                continue;
            }
            let w =
                Array2::from_shape_vec((width, units), rows.iter().flatten().copied().collect())
                    .expect("checked shape");
            layers.push(Layer::Dense(Dense {
                w,
                b: Array1::from(bias),
                activation,
                alpha: l.alpha.unwrap_or(activation.default_alpha()),
            }));
            width = units;
        }
        if matches!(
            layers.last(),
            Some(
                Layer::Dropout(_) | Layer::Ensemble(_) | Layer::Periodic(_) | Layer::Parametric(_)
            )
        ) {
            errs.push(SpecError::new(
                format!("/layers/{}", layers.len() - 1),
                "the last layer must be a dense layer",
            ));
        }
        if let Some(s) = &doc.standardization {
            if s.mean.len() != doc.input_dim || s.std.len() != doc.input_dim {
                errs.push(SpecError::new(
                    "/standardization",
                    format!("mean and std need {} numbers each", doc.input_dim),
                ));
            } else if !s.clip.is_empty() && s.clip.len() != doc.input_dim {
                errs.push(SpecError::new(
                    "/standardization/clip",
                    format!("needs {} booleans (one per input) or none", doc.input_dim),
                ));
            } else if s.std.iter().any(|&v| !(v.is_finite() && v > 0.0))
                || s.mean.iter().any(|v| !v.is_finite())
            {
                errs.push(SpecError::new(
                    "/standardization/std",
                    "must be finite, std positive",
                ));
            }
        }
        if let Some(names) = &doc.feature_names
            && names.len() != doc.input_dim
        {
            errs.push(SpecError::new(
                "/feature_names",
                format!("has {} names for {} inputs", names.len(), doc.input_dim),
            ));
        }
        if let Some(e) = &doc.encoder
            && let Err(mut e) = e.check(doc.input_dim)
        {
            errs.append(&mut e);
        }
        // An ensemble's last layer holds one head per member, side by side.
        if members > 1 && !width.is_multiple_of(members) {
            errs.push(SpecError::new(
                format!("/layers/{}/units", doc.layers.len().saturating_sub(1)),
                format!("an ensemble of {members} members needs a multiple of {members} output units (one head each), got {width}"),
            ));
        }
        let out = width / members;
        let encoding = match (&doc.classes, doc.class_encoding) {
            (None, _) => OutputEncoding::Values,
            (Some(c), Some(ClassEncoding::Binary)) | (Some(c), None)
                if out == 1 && c.len() == 2 =>
            {
                OutputEncoding::Binary { classes: c.clone() }
            }
            (Some(c), _) if c.len() == out && out >= 2 => {
                OutputEncoding::Categorical { classes: c.clone() }
            }
            (Some(c), _) => {
                errs.push(SpecError::new(
                    "/classes",
                    format!("{} classes do not fit an output of {out} units (one unit for two classes, else one per class)", c.len()),
                ));
                OutputEncoding::Values
            }
        };
        if !errs.is_empty() {
            return Err(errs);
        }
        Ok(Model {
            network: Network {
                input_dim: doc.input_dim,
                layers,
            },
            standardizer: doc.standardization.clone(),
            encoding,
            feature_names: doc.feature_names.clone(),
            loss: doc.loss,
            encoder: doc.encoder.clone(),
            target_names: doc.target_names.clone(),
        })
    }
}

pub const FORMAT: &str = "backprop.model/v1";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassEncoding {
    Categorical,
    Binary,
}

/// The portable form of a model: what export gives and import takes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelDocument {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    pub input_dim: usize,
    pub layers: Vec<LayerDocument>,
    /// Applied to raw inputs before the first layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standardization: Option<Standardizer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<ClassLabel>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_encoding: Option<ClassEncoding>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_names: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<Loss>,
    /// How raw rows become inputs (tabular models); absent for models on plain numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder: Option<Encoder>,
    /// The target columns of the data it was trained on (skipped when a record carries them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_names: Option<Vec<String>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LayerDocument {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub units: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation: Option<Activation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f32>,
    /// `input_width` rows of `units` numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<Vec<Vec<f32>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bias: Option<Vec<f32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropout: Option<f32>,
    /// TabM's adapters (the first layer only, or the second after a periodic embedding):
    /// one row per member of as many numbers as the layer's input width.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ensemble: Option<Vec<Vec<f32>>>,
    /// A periodic embedding of numeric inputs (the first layer only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub periodic: Option<PeriodicDocument>,
    /// A parametric activation (after a dense layer, with `activation` and `alpha`): one
    /// mixing weight per unit, `z + w·(g(z) − z)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parametric: Option<Vec<f32>>,
}

impl LayerDocument {
    /// Whether it sets any of a dense layer's fields.
    fn has_dense_fields(&self) -> bool {
        self.units.is_some()
            || self.activation.is_some()
            || self.alpha.is_some()
            || self.weights.is_some()
            || self.bias.is_some()
    }
}

/// A periodic embedding in a model document: see [`Periodic`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodicDocument {
    /// The embedded inputs (0-based, ascending).
    pub columns: Vec<usize>,
    /// One row per embedded input: its angular frequencies ω (features sin(ω·x), cos(ω·x)).
    pub frequencies: Vec<Vec<f32>>,
}

/// The parametric activation a layer document with mixing weights `w` describes after a
/// layer of `width` units, or the field that is wrong and why.
fn parametric_layer(
    l: &LayerDocument,
    w: &[f32],
    width: usize,
) -> Result<Parametric<f32>, (String, String)> {
    if l.units.is_some() || l.weights.is_some() || l.bias.is_some() {
        return Err((
            String::new(),
            "a parametric activation has only its activation, alpha and weights".into(),
        ));
    }
    if w.len() != width {
        return Err((
            "parametric".into(),
            format!(
                "has {} numbers, expected {width} (the layer's units)",
                w.len()
            ),
        ));
    }
    if w.iter().any(|v| !v.is_finite()) {
        return Err(("parametric".into(), "must be finite numbers".into()));
    }
    let activation = l.activation.unwrap_or_default();
    let alpha = match l.alpha {
        Some(_) if !matches!(activation, Activation::LeakyRelu | Activation::Elu) => {
            return Err((
                "alpha".into(),
                format!(
                    "only leaky_relu and elu take alpha, this layer is {}",
                    activation.name()
                ),
            ));
        }
        Some(a) if !(a.is_finite() && a >= 0.0) => {
            return Err(("alpha".into(), format!("must be a number ≥ 0, got {a}")));
        }
        Some(a) => a,
        None => activation.default_alpha(),
    };
    Ok(Parametric {
        activation,
        alpha,
        weight: Array2::from_shape_vec((1, width), w.to_vec()).expect("checked length"),
    })
}

/// The layer a periodic document describes, or the field (under `periodic`) that is wrong
/// and why.
fn periodic_layer(
    pd: &PeriodicDocument,
    input_dim: usize,
) -> Result<Periodic<f32>, (String, String)> {
    let bad = |f: &str, m: String| Err((format!("periodic/{f}"), m));
    if pd.columns.is_empty() {
        return bad("columns", "needs at least one input".into());
    }
    if let Some(c) = pd.columns.iter().find(|&&c| c >= input_dim) {
        return bad(
            "columns",
            format!("input {c} is past the last input ({input_dim} inputs)"),
        );
    }
    if pd.columns.windows(2).any(|w| w[0] >= w[1]) {
        return bad("columns", "must be ascending, each input once".into());
    }
    if pd.frequencies.len() != pd.columns.len() {
        return bad(
            "frequencies",
            format!(
                "has {} rows for {} columns (one row each)",
                pd.frequencies.len(),
                pd.columns.len()
            ),
        );
    }
    let k = pd.frequencies[0].len();
    if !(1..=crate::nn::math::network::MAX_FREQUENCIES).contains(&k) {
        return bad(
            "frequencies/0",
            format!(
                "needs 1 to {} frequencies, got {k}",
                crate::nn::math::network::MAX_FREQUENCIES
            ),
        );
    }
    if let Some((t, r)) = pd
        .frequencies
        .iter()
        .enumerate()
        .find(|(_, r)| r.len() != k)
    {
        return bad(
            &format!("frequencies/{t}"),
            format!("has {} numbers, expected {k} (as row 0)", r.len()),
        );
    }
    if pd.frequencies.iter().flatten().any(|v| !v.is_finite()) {
        return bad("frequencies", "must be finite numbers".into());
    }
    Ok(Periodic {
        columns: pd.columns.clone(),
        omega: Array2::from_shape_vec(
            (pd.columns.len(), k),
            pd.frequencies.iter().flatten().copied().collect(),
        )
        .expect("checked shape"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn the_course_perceptron_imports_and_predicts() {
        let doc: ModelDocument = serde_json::from_str(
            r#"{"input_dim": 2, "layers": [{"units": 1, "activation": "sigmoid", "weights": [[3], [-2]], "bias": [1]}]}"#,
        )
        .unwrap();
        let m = Model::from_document(&doc).unwrap();
        let p = m.predict(array![[-1.0, 2.0]].view());
        assert!((p.outputs[[0, 0]] - 0.002_472_623).abs() < 1e-7);
        assert!(p.labels.is_none());
    }

    #[test]
    fn export_then_import_predicts_bit_for_bit() {
        let m = Model {
            network: Network {
                input_dim: 2,
                layers: vec![
                    Layer::Dense(Dense {
                        w: array![[0.1f32, -0.7], [1.0 / 3.0, 2.5e-8]],
                        b: array![0.3, -0.1],
                        activation: Activation::Elu,
                        alpha: 0.7,
                    }),
                    Layer::Dropout(0.5),
                    Layer::Dense(Dense {
                        w: array![[1.1f32, -0.2, 0.3], [0.7, 0.6, -2.0]],
                        b: array![0.0, 0.1, 0.2],
                        activation: Activation::Softmax,
                        alpha: 0.0,
                    }),
                ],
            },
            standardizer: Some(Standardizer {
                mean: vec![1.5, -2.0],
                std: vec![0.3, 7.0],
                clip: vec![],
            }),
            encoding: OutputEncoding::Categorical {
                classes: vec![
                    ClassLabel::Text("a".into()),
                    ClassLabel::Integer(3),
                    ClassLabel::Text("c".into()),
                ],
            },
            feature_names: Some(vec!["x".into(), "y".into()]),
            loss: Some(Loss::CategoricalCrossentropy),
            encoder: None,
            target_names: None,
        };
        let json = serde_json::to_string(&m.to_document()).unwrap();
        let back = Model::from_document(&serde_json::from_str(&json).unwrap()).unwrap();
        assert_eq!(back, m);
        let x = array![[0.3f32, 0.9], [-4.0, 1e3]];
        assert_eq!(m.predict(x.view()), back.predict(x.view()));
    }

    #[test]
    fn an_alpha_too_large_for_f32_is_refused() {
        // 1e39 reads as an f32 infinity; leaky_relu(-1) would then be -inf, and the export
        // (alpha: null) would import with the default 0.2 instead.
        for alpha in ["1e39", "-0.5"] {
            let doc: ModelDocument = serde_json::from_str(&format!(
                r#"{{"input_dim": 1, "layers": [{{"units": 1, "activation": "leaky_relu", "alpha": {alpha}, "weights": [[1]]}}]}}"#
            ))
            .unwrap();
            let e = Model::from_document(&doc).unwrap_err();
            assert_eq!(e[0].pointer, "/layers/0/alpha", "{alpha}");
        }
    }

    #[test]
    fn shape_errors_point_at_the_field() {
        let doc: ModelDocument = serde_json::from_str(
            r#"{"input_dim": 2, "layers": [{"units": 2, "weights": [[3, 1], [-2]], "bias": [1, 0]}]}"#,
        )
        .unwrap();
        let e = Model::from_document(&doc).unwrap_err();
        assert_eq!(e[0].pointer, "/layers/0/weights/1");
    }
}
