//! What a user asks for: the training spec, and its validation against a dataset's shape.
//! Every problem is reported with a JSON pointer to the offending field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::nn::SpecError;

use crate::nn::math::activation::Activation;
use crate::nn::math::loss::Loss;
use crate::nn::math::network::{Init, MAX_FREQUENCIES, MAX_MEMBERS};
use crate::nn::math::optim::OptimizerSpec;
use crate::nn::math::schedule::{EarlyStopping, Schedule};
use crate::nn::portable::preprocess::{ClassLabel, OutputEncoding};
use crate::nn::portable::tabular::{
    ClassWeight, ColumnSchema, ColumnType, EncoderOptions, Imputation, Storage,
};

/// One layer as written: `{"units": 64, "activation": "relu"}` or `{"dropout": 0.2}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LayerSpec {
    /// `dense` or `dropout`; inferred from the other fields when absent.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<LayerKind>,
    /// Width of a dense layer; may be left out (or null) on the last layer to take the
    /// dataset's output width.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub units: Option<usize>,
    /// Defaults to `linear`, except on the last layer, where it follows the loss
    /// (sigmoid for binary, softmax for categorical cross-entropy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation: Option<Activation>,
    /// Slope of `leaky_relu` (0.2) or scale of `elu` (1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f32>,
    /// Drop rate of a dropout layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropout: Option<f32>,
    /// Synonym of `dropout` for `{"type": "dropout", "rate": 0.2}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_initializer: Option<Init>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bias_initializer: Option<Init>,
    /// L1 penalty on this layer's weights (overrides the spec-wide `l1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l1: Option<f32>,
    /// L2 penalty on this layer's weights (overrides the spec-wide `l2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l2: Option<f32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerKind {
    Dense,
    Dropout,
}

/// How numeric inputs are scaled when `standardize` is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NumericScaling {
    /// The training split's mean and standard deviation.
    #[default]
    Standard,
    /// The training split's median and interquartile range, then smooth clipping to ±3
    /// (`x / √(1 + (x/3)²)`): RealMLP's robust scaling, for skewed columns and outliers.
    Robust,
}

impl NumericScaling {
    fn is_standard(&self) -> bool {
        *self == NumericScaling::Standard
    }
}

fn default_epochs() -> u32 {
    10
}
fn default_batch() -> usize {
    32
}
fn yes() -> bool {
    true
}
fn is_false(b: &bool) -> bool {
    !*b
}
fn is_zero_f32(v: &f32) -> bool {
    *v == 0.0
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// How many disjoint validation folds a split of `frac` has: ⌊1/frac⌋ (0 without a split).
pub fn folds(frac: f32) -> u32 {
    if frac > 0.0 && frac.is_finite() {
        // (a little slack so that 0.2 has 5 folds, not 4.999…)
        ((1.0 / frac as f64) + 1e-6).floor() as u32
    } else {
        0
    }
}

/// Everything about a training run except where the data comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSpec {
    pub layers: Vec<LayerSpec>,
    pub loss: Loss,
    #[serde(default)]
    pub optimizer: OptimizerSpec,
    #[serde(default = "default_epochs")]
    pub epochs: u32,
    /// Rows per gradient step; larger than the training split means full-batch.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Fraction of rows held out for validation (seeded, stratified for classifiers).
    #[serde(default)]
    pub validation_split: f32,
    /// Which of the ⌊1/validation_split⌋ disjoint validation folds the split holds out
    /// (k-fold cross-validation: the same seed and split with folds 0…k-1). Fold 0 is the
    /// plain split.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub validation_fold: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stopping: Option<EarlyStopping>,
    #[serde(default)]
    pub lr_schedule: Schedule,
    #[serde(default)]
    pub seed: u64,
    /// Spec-wide L1 / L2 penalties on dense weights.
    #[serde(default)]
    pub l1: f32,
    #[serde(default)]
    pub l2: f32,
    /// Reshuffle the training rows every epoch.
    #[serde(default = "yes")]
    pub shuffle: bool,
    /// Standardise features with the training split's mean and deviation.
    #[serde(default = "yes")]
    pub standardize: bool,
    /// Regression only: train on the targets standardised with the training split's mean and
    /// deviation (faster and scale-free learning rates); the model folds the scaling back
    /// into its output layer, so it predicts in the targets' own units. Losses and MAE in
    /// the epoch history are then on the standardised scale.
    #[serde(default, skip_serializing_if = "is_false")]
    pub standardize_target: bool,
    /// How `standardize` scales numeric inputs: `standard` (default) or `robust` (median,
    /// interquartile range and smooth clipping). Indicators and binned inputs are left alone.
    #[serde(default, skip_serializing_if = "NumericScaling::is_standard")]
    pub numeric_scaling: NumericScaling,
    /// Classification only: train on targets mixed with the uniform distribution, `ε` of it
    /// (a one-hot row becomes `1 − ε + ε/K` and `ε/K`; a binary target `1 − ε/2` or `ε/2`).
    /// The validation loss and every metric are still on the true labels. Default 0.
    #[serde(default, skip_serializing_if = "is_zero_f32")]
    pub label_smoothing: f32,
    /// Column types for this job, overriding the dataset's: `{"area_code": "categorical"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<BTreeMap<String, ColumnType>>,
    /// How numeric columns' missing cells are filled (default `median` of the training split).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imputation: Option<Imputation>,
    /// Numeric columns as piecewise-linear encodings over this many quantile bins of the
    /// training split (2 to 256; absent: each column is its value, standardised).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numeric_bins: Option<u32>,
    /// TabM (Gorishniy et al., ICLR 2025) in its "mini" form: this many members (2 to 64)
    /// share the hidden layers, each with its own multiplicative adapter on the inputs and
    /// its own output head; they train together on their mean loss and predict their mean.
    /// Absent: one network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ensemble: Option<u32>,
    /// Periodic embeddings of the numeric inputs (Gorishniy, Rubachev, Babenko, NeurIPS
    /// 2022): each standardised numeric input `x` adds `sin(ω·x)` and `cos(ω·x)` for
    /// `frequencies` trained angular frequencies ω, drawn at the start from N(0, (2π·σ)²).
    /// Indicators, one-hot and binned inputs are not embedded. Absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub periodic_embedding: Option<PeriodicSpec>,
    /// Parametric activations (RealMLP, Holzmüller et al., NeurIPS 2024): each hidden dense
    /// layer's activation `g` becomes `z + w·(g(z) − z)` with one trained weight `w` per unit,
    /// starting at 1 (`g` itself). Hidden layers with a linear activation are left as they
    /// are. Default false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub parametric_activation: bool,
    /// Categories seen fewer times than this in training fold into "other" (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_frequency: Option<u64>,
    /// At most this many one-hot inputs per column, "other" included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_categories: Option<u64>,
    /// `"balanced"` or label → weight, multiplying each training row's loss (Keras's meaning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_weight: Option<ClassWeight>,
    /// A numeric dataset column whose values weigh each training row's loss; it is not an
    /// input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_weight: Option<String>,
}

/// A periodic embedding as written: `{"frequencies": 8, "sigma": 0.1}` (both optional).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PeriodicSpec {
    /// Frequencies per numeric input, 1 to 64 (default 8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequencies: Option<u32>,
    /// The initial frequencies' spread, in cycles per standard deviation of the input
    /// (default 0.1: smooth functions at first; larger values start with finer detail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigma: Option<f32>,
}

impl PeriodicSpec {
    pub const DEFAULT_FREQUENCIES: u32 = 8;
    pub const DEFAULT_SIGMA: f32 = 0.1;

    pub fn frequencies(&self) -> usize {
        self.frequencies.unwrap_or(Self::DEFAULT_FREQUENCIES) as usize
    }

    pub fn sigma(&self) -> f32 {
        self.sigma.unwrap_or(Self::DEFAULT_SIGMA)
    }
}

/// What the targets of a dataset look like, for validation (kept in a dataset's metadata).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TargetShape {
    /// A column of class labels; `integers` when they are whole numbers only.
    Labels { classes: Vec<ClassLabel> },
    /// `width` numbers per row; `integer_classes` holds the distinct values when there is one
    /// column of whole numbers (so it can also serve as class labels); `unit_interval` when all
    /// values are in [0, 1].
    Values {
        width: usize,
        integer_classes: Option<Vec<i64>>,
        unit_interval: bool,
    },
}

/// What a model of a target learns: its classes, or its numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    Classification,
    Regression,
}

/// The most classes whole numbers are taken for (more is a regression target).
const MAX_NUMBER_CLASSES: usize = 100;

/// The task a target of `rows` rows is taken for when the request does not say. Text labels
/// are classes. Whole numbers are classes when there are two of them, or when they are few
/// for the rows: at most [`MAX_NUMBER_CLASSES`] distinct values, and at most 10 % as many as
/// rows (5 % past 1,000 rows) — AutoGluon's rule for integer targets, where scikit-learn's
/// `type_of_target` takes any whole numbers for classes (a price in whole dollars too).
/// Digits (10 values over 1,797 rows) and wine (3 over 178) are classes; an age in years
/// over 300 rows, or house prices, are numbers.
pub fn task_of(target: &TargetShape, rows: usize) -> Task {
    match target {
        TargetShape::Labels { .. } => Task::Classification,
        TargetShape::Values {
            width: 1,
            integer_classes: Some(c),
            ..
        } => {
            let share = if rows > 1000 { 0.05 } else { 0.1 };
            let few = c.len() <= MAX_NUMBER_CLASSES && c.len() as f64 <= share * rows as f64;
            if c.len() <= 2 || few {
                Task::Classification
            } else {
                Task::Regression
            }
        }
        TargetShape::Values { .. } => Task::Regression,
    }
}

/// A validated layer, ready to build.
#[derive(Clone, Debug, PartialEq)]
pub enum PlannedLayer {
    Dense {
        units: usize,
        activation: Activation,
        alpha: f32,
        kernel: Init,
        bias: Init,
        l1: f32,
        l2: f32,
        /// Followed by a parametric activation of `activation` (`parametric_activation`):
        /// the dense layer itself is then linear.
        parametric: bool,
    },
    Dropout(f32),
}

/// A validated periodic embedding: which inputs, how many frequencies, their spread.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedPeriodic {
    pub columns: Vec<usize>,
    pub frequencies: usize,
    pub sigma: f32,
}

/// The outcome of validation: the concrete network and how outputs map to targets.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub input_dim: usize,
    pub layers: Vec<PlannedLayer>,
    pub encoding: OutputEncoding,
    pub parameter_count: usize,
    /// TabM members (`ensemble`; 1: one network).
    pub members: usize,
    /// The periodic embedding (`periodic_embedding`), when it has inputs to embed.
    pub periodic: Option<PlannedPeriodic>,
}

impl Plan {
    /// The weights one training row's arithmetic goes through: every weight once per
    /// member for an ensemble (its members share the hidden layers but each runs them), so
    /// cost estimates scale with it. Errs large by the heads.
    pub fn compute_weights(&self) -> usize {
        self.parameter_count.saturating_mul(self.members.max(1))
    }

    /// How many parametric activations the network has (`parametric_activation`).
    pub fn parametric_count(&self) -> usize {
        self.layers
            .iter()
            .filter(|l| {
                matches!(
                    l,
                    PlannedLayer::Dense {
                        parametric: true,
                        ..
                    }
                )
            })
            .count()
    }

    /// The first dense layer's input width: the inputs, and their periodic features.
    pub fn embedded_width(&self) -> usize {
        self.input_dim
            + self
                .periodic
                .as_ref()
                .map_or(0, |p| 2 * p.frequencies * p.columns.len())
    }
}

impl TrainSpec {
    /// The encoder settings this spec asks for.
    pub fn encoder_options(&self) -> EncoderOptions {
        EncoderOptions {
            imputation: self.imputation.unwrap_or_default(),
            numeric_bins: self.numeric_bins.unwrap_or(0),
            min_frequency: self.min_frequency.unwrap_or(1),
            max_categories: self.max_categories,
        }
    }

    /// The dataset's column schemas with this spec's `columns` types applied and the
    /// `sample_weight` column taken out of the inputs (typed `ignore`), and that column's
    /// index. Every problem is listed at its pointer.
    pub fn resolve_columns(
        &self,
        columns: &[ColumnSchema],
    ) -> Result<(Vec<ColumnSchema>, Option<usize>), Vec<SpecError>> {
        let mut cols = columns.to_vec();
        let mut errs = vec![];
        if let Some(types) = &self.columns {
            for (name, &kind) in types {
                let p = format!(
                    "/columns/{}",
                    crate::nn::portable::tabular::pointer_token(name)
                );
                match cols.iter_mut().find(|c| &c.name == name) {
                    None => errs.push(SpecError::new(
                        p,
                        format!(
                            "there is no feature column named {name:?}; the columns are {}",
                            columns
                                .iter()
                                .take(20)
                                .map(|c| format!("{:?}", c.name))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )),
                    Some(c) => match crate::nn::portable::tabular::check_type(c, kind) {
                        Ok(()) => c.kind = kind,
                        Err(e) => errs.push(SpecError::new(p, e.to_string())),
                    },
                }
            }
        }
        let mut weight_col = None;
        if let Some(name) = &self.sample_weight {
            match cols.iter().position(|c| &c.name == name) {
                None => errs.push(SpecError::new(
                    "/sample_weight",
                    format!("there is no feature column named {name:?}"),
                )),
                Some(j) if cols[j].storage != Storage::Number => errs.push(SpecError::new(
                    "/sample_weight",
                    format!("column {name:?} holds text; sample weights must be numbers"),
                )),
                Some(j) if cols[j].missing > 0 => errs.push(SpecError::new(
                    "/sample_weight",
                    format!(
                        "column {name:?} has {} missing cells; every row needs a weight",
                        cols[j].missing
                    ),
                )),
                Some(j) => {
                    cols[j].kind = ColumnType::Ignore;
                    weight_col = Some(j);
                }
            }
        }
        if errs.is_empty() {
            Ok((cols, weight_col))
        } else {
            Err(errs)
        }
    }

    /// The most inputs `columns` can encode to under this spec (the encoder, fitted on the
    /// training split, may need fewer), and the columns as the spec types them.
    pub fn input_width(
        &self,
        columns: &[ColumnSchema],
        rows: usize,
    ) -> Result<(usize, Vec<ColumnSchema>), Vec<SpecError>> {
        let (cols, _) = self.resolve_columns(columns)?;
        let width =
            crate::nn::portable::tabular::max_width(&cols, rows as u64, &self.encoder_options())
                .map_err(|e| vec![e.to_spec_error()])?;
        Ok((width, cols))
    }

    /// This spec as `plan` resolved it: every layer's type, width, activation (and `alpha`
    /// where the activation takes one) and initializers, and the optimizer's settings, written
    /// out. Submitting it trains exactly what this spec trains.
    pub fn with_defaults(&self, plan: &Plan) -> TrainSpec {
        let mut spec = self.clone();
        for (l, planned) in spec.layers.iter_mut().zip(&plan.layers) {
            match *planned {
                PlannedLayer::Dense {
                    units,
                    activation,
                    alpha,
                    kernel,
                    bias,
                    ..
                } => {
                    l.kind = Some(LayerKind::Dense);
                    l.units = Some(units);
                    l.activation = Some(activation);
                    if matches!(activation, Activation::LeakyRelu | Activation::Elu) {
                        l.alpha = Some(alpha);
                    }
                    l.kernel_initializer = Some(kernel);
                    l.bias_initializer = Some(bias);
                }
                PlannedLayer::Dropout(rate) => {
                    l.kind = Some(LayerKind::Dropout);
                    l.dropout = Some(rate);
                    l.rate = None;
                }
            }
        }
        if let Some(p) = &mut spec.periodic_embedding {
            p.frequencies = Some(p.frequencies() as u32);
            p.sigma = Some(p.sigma());
        }
        spec.optimizer = self.optimizer.with_defaults();
        spec
    }

    /// Whether this spec asks for anything only a tabular dataset has.
    pub fn has_column_settings(&self) -> bool {
        self.columns.is_some() || self.sample_weight.is_some()
    }

    /// Checks the spec on its own and against data with `inputs` features, `rows` rows and
    /// targets shaped `targets`. Lists every problem found, not only the first.
    pub fn plan(
        &self,
        inputs: usize,
        rows: usize,
        targets: &TargetShape,
    ) -> Result<Plan, Vec<SpecError>> {
        self.plan_inner(inputs, None, rows, targets, false)
    }

    /// As [`plan`](Self::plan) for inputs as the fitted encoder gives them: `continuous`
    /// says which inputs carry a value (the ones a periodic embedding embeds). `plan` takes
    /// every input for one, so its sizes err large.
    pub fn plan_encoded(
        &self,
        continuous: &[bool],
        rows: usize,
        targets: &TargetShape,
        validation_set: bool,
    ) -> Result<Plan, Vec<SpecError>> {
        self.plan_inner(
            continuous.len(),
            Some(continuous),
            rows,
            targets,
            validation_set,
        )
    }

    /// As [`plan`](Self::plan), for a run given a separate validation set: the `val_*`
    /// monitors are then available without a `validation_split`.
    pub fn plan_with_validation_set(
        &self,
        inputs: usize,
        rows: usize,
        targets: &TargetShape,
    ) -> Result<Plan, Vec<SpecError>> {
        self.plan_inner(inputs, None, rows, targets, true)
    }

    fn plan_inner(
        &self,
        inputs: usize,
        continuous: Option<&[bool]>,
        rows: usize,
        targets: &TargetShape,
        validation_set: bool,
    ) -> Result<Plan, Vec<SpecError>> {
        let mut errs = vec![];
        let periodic = self.periodic_embedding.as_ref().and_then(|p| {
            let k = p.frequencies();
            if !(1..=MAX_FREQUENCIES).contains(&k) {
                errs.push(SpecError::new(
                    "/periodic_embedding/frequencies",
                    format!("must be 1 to {MAX_FREQUENCIES}, got {k}"),
                ));
            }
            let sigma = p.sigma();
            if !(sigma.is_finite() && sigma > 0.0 && sigma <= 100.0) {
                errs.push(SpecError::new(
                    "/periodic_embedding/sigma",
                    format!("must be a number in (0, 100], got {sigma}"),
                ));
            }
            let columns: Vec<usize> = match continuous {
                Some(c) => (0..inputs).filter(|&j| c[j]).collect(),
                None => (0..inputs).collect(),
            };
            (!columns.is_empty()).then_some(PlannedPeriodic {
                columns,
                frequencies: k.clamp(1, MAX_FREQUENCIES),
                sigma,
            })
        });
        let embedded = inputs
            + periodic
                .as_ref()
                .map_or(0, |p| 2 * p.frequencies * p.columns.len());
        let (encoding, out_width) = match self.output_encoding(targets) {
            Ok(v) => (Some(v.0), Some(v.1)),
            Err(e) => {
                errs.push(e);
                (None, None)
            }
        };
        if self.layers.is_empty() {
            errs.push(SpecError::new("/layers", "needs at least one dense layer"));
        }
        if self.numeric_scaling == NumericScaling::Robust && !self.standardize {
            errs.push(SpecError::new(
                "/numeric_scaling",
                "robust scaling is a way to standardize; it needs \"standardize\": true",
            ));
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            errs.push(SpecError::new(
                "/label_smoothing",
                format!("must be in [0, 1), got {}", self.label_smoothing),
            ));
        } else if self.label_smoothing > 0.0 && !self.loss.is_classification() {
            errs.push(SpecError::new(
                "/label_smoothing",
                format!(
                    "smooths class labels; the loss {} is a regression's",
                    self.loss.name()
                ),
            ));
        }
        if self.standardize_target && self.loss.is_classification() {
            errs.push(SpecError::new(
                "/standardize_target",
                format!(
                    "only regression targets are standardised, the loss is {}",
                    self.loss.name()
                ),
            ));
        }
        let mut layers = vec![];
        let last = self.layers.len().saturating_sub(1);
        let mut width = embedded;
        let mut params = periodic
            .as_ref()
            .map_or(0, |p| p.frequencies * p.columns.len());
        for (i, l) in self.layers.iter().enumerate() {
            let p = |f: &str| format!("/layers/{i}/{f}");
            let rate = l.dropout.or(l.rate);
            let kind = l.kind.unwrap_or(if rate.is_some() && l.units.is_none() {
                LayerKind::Dropout
            } else {
                LayerKind::Dense
            });
            match kind {
                LayerKind::Dropout => {
                    let r = rate.unwrap_or(f32::NAN);
                    if !(r.is_finite() && (0.0..1.0).contains(&r)) {
                        errs.push(SpecError::new(
                            p(if l.rate.is_some() { "rate" } else { "dropout" }),
                            format!("a dropout rate must be in [0, 1), got {}", fmt_opt(rate)),
                        ));
                    }
                    // Dense-only fields on a dropout layer would be ignored (and stored as
                    // given, non-finite numbers included, which the stored spec cannot hold).
                    if l.units.is_some()
                        || l.activation.is_some()
                        || l.alpha.is_some()
                        || l.kernel_initializer.is_some()
                        || l.bias_initializer.is_some()
                        || l.l1.is_some()
                        || l.l2.is_some()
                    {
                        errs.push(SpecError::new(
                            format!("/layers/{i}"),
                            "a layer is either dense (units, activation, alpha, initializers, l1, l2) or dropout (dropout), not both",
                        ));
                    }
                    if l.dropout.is_some() && l.rate.is_some() {
                        errs.push(SpecError::new(
                            p("rate"),
                            "rate is another name for dropout; give one of them",
                        ));
                    }
                    if i == last {
                        errs.push(SpecError::new(
                            format!("/layers/{i}"),
                            "the last layer must be a dense layer",
                        ));
                    }
                    layers.push(PlannedLayer::Dropout(r));
                }
                LayerKind::Dense => {
                    if rate.is_some() {
                        errs.push(SpecError::new(p("dropout"), "a dense layer has no dropout rate; add a separate {\"dropout\": rate} layer"));
                    }
                    let units = match (l.units, i == last, out_width) {
                        (Some(0), _, _) => {
                            errs.push(SpecError::new(p("units"), "must be at least 1"));
                            1
                        }
                        (Some(u), true, Some(w)) if u != w => {
                            errs.push(SpecError::new(p("units"), format!("the output layer has {u} units but the targets need {w} for {}", self.loss.name())));
                            u
                        }
                        (Some(u), _, _) => u,
                        (None, true, Some(w)) => w,
                        (None, true, None) => 1,
                        (None, false, _) => {
                            errs.push(SpecError::new(
                                p("units"),
                                "is required on every dense layer but the last",
                            ));
                            1
                        }
                    };
                    let activation = l.activation.unwrap_or(if i == last {
                        match self.loss {
                            Loss::BinaryCrossentropy => Activation::Sigmoid,
                            Loss::CategoricalCrossentropy | Loss::SparseCategoricalCrossentropy => {
                                Activation::Softmax
                            }
                            _ => Activation::Linear,
                        }
                    } else {
                        Activation::Linear
                    });
                    if i == last {
                        if let Err(m) = self.loss.check_output_activation(activation) {
                            errs.push(SpecError::new(p("activation"), m));
                        }
                        if self.standardize_target && activation != Activation::Linear {
                            // The scaling folds into the output layer only through a
                            // linear activation.
                            errs.push(SpecError::new(
                                p("activation"),
                                format!(
                                    "standardize_target needs a linear output layer, the last dense layer has {}",
                                    activation.name()
                                ),
                            ));
                        }
                    } else if activation == Activation::Softmax {
                        // allowed, if unusual; nothing to check
                    }
                    let alpha = match l.alpha {
                        Some(a)
                            if !matches!(activation, Activation::LeakyRelu | Activation::Elu) =>
                        {
                            errs.push(SpecError::new(
                                p("alpha"),
                                format!(
                                    "only leaky_relu and elu take alpha, this layer is {}",
                                    activation.name()
                                ),
                            ));
                            a
                        }
                        Some(a) if !a.is_finite() || a < 0.0 => {
                            errs.push(SpecError::new(
                                p("alpha"),
                                format!("must be a number ≥ 0, got {a}"),
                            ));
                            a
                        }
                        Some(a) => a,
                        None => activation.default_alpha(),
                    };
                    let l1 = l.l1.unwrap_or(self.l1);
                    let l2 = l.l2.unwrap_or(self.l2);
                    for (name, v) in [("l1", l.l1), ("l2", l.l2)] {
                        if let Some(v) = v
                            && !(v.is_finite() && v >= 0.0)
                        {
                            errs.push(SpecError::new(
                                p(name),
                                format!("must be a number ≥ 0, got {v}"),
                            ));
                        }
                    }
                    let parametric =
                        self.parametric_activation && i != last && activation != Activation::Linear;
                    params = params
                        .saturating_add(width.saturating_mul(units).saturating_add(units))
                        .saturating_add(if parametric { units } else { 0 });
                    width = units;
                    layers.push(PlannedLayer::Dense {
                        units,
                        activation,
                        alpha,
                        kernel: l.kernel_initializer.unwrap_or(Init::GlorotUniform),
                        bias: l.bias_initializer.unwrap_or(Init::Zeros),
                        l1,
                        l2,
                        parametric,
                    });
                }
            }
        }
        if self.epochs == 0 {
            errs.push(SpecError::new("/epochs", "must be at least 1"));
        }
        if self.batch_size == 0 {
            errs.push(SpecError::new("/batch_size", "must be at least 1"));
        }
        let vs = self.validation_split;
        if !(vs.is_finite() && (0.0..1.0).contains(&vs)) {
            errs.push(SpecError::new(
                "/validation_split",
                format!("must be in [0, 1), got {vs}"),
            ));
        } else if self.validation_fold > 0 && self.validation_fold >= folds(vs) {
            errs.push(SpecError::new(
                "/validation_fold",
                format!(
                    "a validation_split of {vs} has {} folds (0 to {}), got {}",
                    folds(vs),
                    folds(vs).saturating_sub(1),
                    self.validation_fold
                ),
            ));
        } else if vs > 0.0 {
            let held = ((rows as f64) * vs as f64).round() as usize;
            if held == 0 || held >= rows {
                errs.push(SpecError::new(
                    "/validation_split",
                    format!(
                        "{vs} of {rows} rows leaves no rows for {}",
                        if held == 0 { "validation" } else { "training" }
                    ),
                ));
            }
        }
        if rows == 0 {
            errs.push(SpecError::new("/dataset", "the dataset has no rows"));
        }
        for (name, v) in [("/l1", self.l1), ("/l2", self.l2)] {
            if !(v.is_finite() && v >= 0.0) {
                errs.push(SpecError::new(
                    name,
                    format!("must be a number ≥ 0, got {v}"),
                ));
            }
        }
        if let Some(b) = self.numeric_bins
            && !(2..=crate::nn::portable::tabular::MAX_NUMERIC_BINS).contains(&b)
        {
            errs.push(SpecError::new(
                "/numeric_bins",
                format!(
                    "must be 2 to {} (or left out), got {b}",
                    crate::nn::portable::tabular::MAX_NUMERIC_BINS
                ),
            ));
        }
        if self.min_frequency == Some(0) {
            errs.push(SpecError::new("/min_frequency", "must be at least 1"));
        }
        if let Some(m) = self.max_categories
            && m < 2
        {
            errs.push(SpecError::new(
                "/max_categories",
                format!("must be at least 2 (one category and \"other\"), got {m}"),
            ));
        }
        if let Some(cw) = &self.class_weight {
            match (&encoding, cw) {
                (Some(OutputEncoding::Values), _) => errs.push(SpecError::new(
                    "/class_weight",
                    format!(
                        "weighs classes, but {} on these targets predicts numbers",
                        self.loss.name()
                    ),
                )),
                (Some(enc), ClassWeight::Map(m)) => {
                    let classes: Vec<String> = enc
                        .classes()
                        .unwrap_or_default()
                        .iter()
                        .map(|c| c.to_string())
                        .collect();
                    for (label, w) in m {
                        let p = format!(
                            "/class_weight/{}",
                            crate::nn::portable::tabular::pointer_token(label)
                        );
                        if !classes.contains(label) {
                            errs.push(SpecError::new(
                                p,
                                format!(
                                    "{label:?} is not a class of the targets; the classes are {}",
                                    classes.join(", ")
                                ),
                            ));
                        } else if !(w.is_finite() && *w >= 0.0) {
                            errs.push(SpecError::new(p, format!("must be a number ≥ 0, got {w}")));
                        }
                    }
                }
                _ => {}
            }
        }
        if let Err((f, m)) = self.optimizer.check() {
            errs.push(SpecError::new(format!("/optimizer/{f}"), m));
        }
        if let Err((f, m)) = self.lr_schedule.check() {
            errs.push(SpecError::new(format!("/lr_schedule/{f}"), m));
        }
        let has_val = vs > 0.0 || validation_set;
        if let Some(es) = &self.early_stopping {
            if let Some(m) = &es.monitor {
                if let Err(e) = crate::nn::math::metric::check_monitor(m) {
                    errs.push(SpecError::new("/early_stopping/monitor", e));
                } else if m.starts_with("val_") && !has_val {
                    errs.push(SpecError::new(
                        "/early_stopping/monitor",
                        format!("{m} needs validation data: set validation_split"),
                    ));
                }
            }
            if !(es.min_delta.is_finite() && es.min_delta >= 0.0) {
                errs.push(SpecError::new(
                    "/early_stopping/min_delta",
                    "must be a number ≥ 0",
                ));
            }
        }
        if let Schedule::ReduceOnPlateau {
            monitor: Some(m), ..
        } = &self.lr_schedule
            && m.starts_with("val_")
            && !has_val
        {
            errs.push(SpecError::new(
                "/lr_schedule/monitor",
                format!("{m} needs validation data: set validation_split"),
            ));
        }
        for m in [
            self.early_stopping.as_ref().and_then(|e| e.monitor.clone()),
            match &self.lr_schedule {
                Schedule::ReduceOnPlateau { monitor, .. } => monitor.clone(),
                _ => None,
            },
        ]
        .into_iter()
        .flatten()
        {
            let wants_acc = m.ends_with("accuracy") || m == "val_log_loss";
            let wants_mae = m.ends_with("mae") || m == "val_rmse";
            if (wants_acc && !self.loss.is_classification())
                || (wants_mae && self.loss.is_classification())
            {
                errs.push(SpecError::new(
                    "/early_stopping/monitor",
                    format!("{m} is not reported for {}", self.loss.name()),
                ));
            }
        }
        let members = self.ensemble.map_or(1, |k| k as usize);
        if let Some(k) = self.ensemble
            && !(2..=MAX_MEMBERS).contains(&k)
        {
            errs.push(SpecError::new(
                "/ensemble",
                format!(
                    "must be 2 to {MAX_MEMBERS} members (or left out for one network), got {k}"
                ),
            ));
        }
        if members > 1 {
            // The adapters, and the heads past the first.
            let out = out_width.unwrap_or(1);
            let units: Vec<usize> = layers
                .iter()
                .filter_map(|l| match l {
                    PlannedLayer::Dense { units, .. } => Some(*units),
                    PlannedLayer::Dropout(_) => None,
                })
                .collect();
            let h = match units.len() {
                0 | 1 => embedded,
                n => units[n - 2],
            };
            params = params
                .saturating_add(members.saturating_mul(embedded))
                .saturating_add((members - 1).saturating_mul(h.saturating_mul(out) + out));
        }
        if errs.is_empty() {
            Ok(Plan {
                input_dim: inputs,
                layers,
                encoding: encoding.expect("no error"),
                parameter_count: params,
                members,
                periodic,
            })
        } else {
            Err(errs)
        }
    }

    /// How the loss reads the targets: the output encoding and the output width it needs.
    fn output_encoding(&self, targets: &TargetShape) -> Result<(OutputEncoding, usize), SpecError> {
        let loss = self.loss;
        let name = loss.name();
        let ints = |v: &[i64]| {
            v.iter()
                .map(|&i| ClassLabel::Integer(i))
                .collect::<Vec<_>>()
        };
        match (loss, targets) {
            (Loss::BinaryCrossentropy, TargetShape::Labels { classes }) if classes.len() == 2 => {
                Ok((
                    OutputEncoding::Binary {
                        classes: classes.clone(),
                    },
                    1,
                ))
            }
            (
                Loss::BinaryCrossentropy,
                TargetShape::Values {
                    width: 1,
                    integer_classes: Some(c),
                    ..
                },
            ) if c.len() <= 2 => {
                let mut c = c.clone();
                if c.len() == 1 {
                    // a single class still needs a second label for the other side
                    let other = if c[0] == 0 { 1 } else { 0 };
                    c.push(other);
                    c.sort();
                }
                Ok((OutputEncoding::Binary { classes: ints(&c) }, 1))
            }
            (Loss::BinaryCrossentropy, TargetShape::Labels { classes }) => Err(SpecError::new(
                "/loss",
                format!(
                    "binary_crossentropy needs two classes, the targets have {}; use categorical_crossentropy for more",
                    classes.len()
                ),
            )),
            (
                Loss::BinaryCrossentropy,
                TargetShape::Values {
                    width,
                    unit_interval: true,
                    ..
                },
            ) => Ok((OutputEncoding::Values, *width)),
            (Loss::BinaryCrossentropy, TargetShape::Values { .. }) => Err(SpecError::new(
                "/loss",
                "binary_crossentropy needs targets that are two classes or numbers in [0, 1]",
            )),
            (l, TargetShape::Labels { classes }) if l.is_categorical() => {
                if classes.len() < 2 {
                    Err(SpecError::new(
                        "/loss",
                        format!(
                            "{name} needs at least two classes, the targets have {}",
                            classes.len()
                        ),
                    ))
                } else {
                    Ok((
                        OutputEncoding::Categorical {
                            classes: classes.clone(),
                        },
                        classes.len(),
                    ))
                }
            }
            (
                l,
                TargetShape::Values {
                    width: 1,
                    integer_classes: Some(c),
                    ..
                },
            ) if l.is_categorical() => {
                if c.len() < 2 {
                    Err(SpecError::new(
                        "/loss",
                        format!(
                            "{name} needs at least two classes, the targets have {}",
                            c.len()
                        ),
                    ))
                } else {
                    Ok((OutputEncoding::Categorical { classes: ints(c) }, c.len()))
                }
            }
            (
                Loss::CategoricalCrossentropy,
                TargetShape::Values {
                    width,
                    unit_interval: true,
                    ..
                },
            ) if *width >= 2 => {
                let classes = (0..*width as i64).map(ClassLabel::Integer).collect();
                Ok((OutputEncoding::Categorical { classes }, *width))
            }
            (l, TargetShape::Values { .. }) if l.is_categorical() => Err(SpecError::new(
                "/loss",
                format!("{name} needs class labels or one-hot rows as targets"),
            )),
            (_, TargetShape::Labels { .. }) => Err(SpecError::new(
                "/loss",
                format!(
                    "{name} is a regression loss but the targets are class labels; use a cross-entropy"
                ),
            )),
            (_, TargetShape::Values { width, .. }) => Ok((OutputEncoding::Values, *width)),
        }
    }
}

fn fmt_opt(v: Option<f32>) -> String {
    v.map_or("nothing".into(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> TrainSpec {
        serde_json::from_str(json).unwrap()
    }

    fn iris() -> TargetShape {
        TargetShape::Labels {
            classes: ["setosa", "versicolor", "virginica"]
                .iter()
                .map(|s| ClassLabel::Text(s.to_string()))
                .collect(),
        }
    }

    #[test]
    fn the_output_width_is_inferred_and_checked() {
        let s = spec(
            r#"{"layers":[{"units":8,"activation":"relu"},{"units":null}],"loss":"categorical_crossentropy"}"#,
        );
        let plan = s.plan(4, 120, &iris()).unwrap();
        assert_eq!(plan.parameter_count, 4 * 8 + 8 + 8 * 3 + 3);
        assert!(matches!(
            plan.layers[1],
            PlannedLayer::Dense {
                units: 3,
                activation: Activation::Softmax,
                ..
            }
        ));
        let s = spec(
            r#"{"layers":[{"units":8,"activation":"relu"},{"units":2,"activation":"softmax"}],"loss":"categorical_crossentropy"}"#,
        );
        let e = s.plan(4, 120, &iris()).unwrap_err();
        assert_eq!(e[0].pointer, "/layers/1/units");
        assert!(e[0].message.contains("need 3"), "{}", e[0].message);
    }

    #[test]
    fn every_problem_is_listed_with_its_pointer() {
        let s = spec(
            r#"{"layers":[{"units":0},{"dropout":1.5},{"units":3,"activation":"sigmoid","alpha":0.1}],
                "loss":"categorical_crossentropy","epochs":0,"batch_size":0,"validation_split":1.0,
                "optimizer":{"type":"adam","learning_rate":-1}}"#,
        );
        let e = s.plan(4, 120, &iris()).unwrap_err();
        let pointers: Vec<&str> = e.iter().map(|e| e.pointer.as_str()).collect();
        for p in [
            "/layers/0/units",
            "/layers/1/dropout",
            "/layers/2/activation",
            "/layers/2/alpha",
            "/epochs",
            "/batch_size",
            "/validation_split",
            "/optimizer/learning_rate",
        ] {
            assert!(pointers.contains(&p), "{p} missing from {pointers:?}");
        }
    }

    #[test]
    fn a_dropout_layer_takes_no_dense_fields() {
        // The job_spec fuzz target checks that a stored spec reads back: `l1` on a dropout
        // layer was ignored, so 1e39 (an f32 infinity) passed validation and the stored spec
        // said `"l1": null`.
        for layer in [
            r#"{"dropout": 0.2, "l1": 1e39}"#,
            r#"{"dropout": 0.2, "kernel_initializer": "zeros"}"#,
            r#"{"dropout": 0.2, "alpha": 0.1}"#,
        ] {
            let s = spec(&format!(
                r#"{{"layers":[{{"units":4}},{layer},{{"units":3}}],"loss":"categorical_crossentropy"}}"#
            ));
            let e = s.plan(4, 120, &iris()).unwrap_err();
            assert_eq!(e[0].pointer, "/layers/1", "{layer}");
        }
        let s = spec(
            r#"{"layers":[{"units":4},{"dropout":0.2,"rate":1e39},{"units":3}],"loss":"categorical_crossentropy"}"#,
        );
        assert_eq!(
            s.plan(4, 120, &iris()).unwrap_err()[0].pointer,
            "/layers/1/rate"
        );
    }

    #[test]
    fn losses_read_targets_sensibly() {
        let s = spec(r#"{"layers":[{"units":1}],"loss":"mse"}"#);
        assert!(
            s.plan(4, 10, &iris()).unwrap_err()[0]
                .message
                .contains("regression loss")
        );
        let bin = TargetShape::Values {
            width: 1,
            integer_classes: Some(vec![0, 1]),
            unit_interval: true,
        };
        let s = spec(r#"{"layers":[{"units":1}],"loss":"binary_crossentropy"}"#);
        let plan = s.plan(30, 10, &bin).unwrap();
        assert_eq!(
            plan.encoding,
            OutputEncoding::Binary {
                classes: vec![ClassLabel::Integer(0), ClassLabel::Integer(1)]
            }
        );
        let s = spec(r#"{"layers":[{"units":3}],"loss":"binary_crossentropy"}"#);
        assert!(
            s.plan(4, 10, &iris()).unwrap_err()[0]
                .message
                .contains("two classes")
        );
    }
}
