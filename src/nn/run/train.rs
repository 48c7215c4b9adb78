//! The training loop: epochs of shuffled mini-batches, each one forward and backward pass of
//! `batch::BatchStep` on the caller's rayon pool (its products split along their outputs, its
//! sums in a fixed order), so the loss history is bit-identical on 1 or N threads. Validation,
//! schedules, early stopping, divergence detection, cancellation and checkpoints live here;
//! the metric names and scores are `metric`'s.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use ndarray::{Array1, Array2, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use super::spec::{NumericScaling, Plan, PlannedLayer, TargetShape, TrainSpec};
use crate::nn::SpecError;
use crate::nn::math::activation::{Activation, argmax_rows};
use crate::nn::math::alloc;
use crate::nn::math::batch::BatchStep;
use crate::nn::math::loss::Loss;
use crate::nn::math::metric::score;
use crate::nn::math::network::{Dense, Layer, Network, Parametric, Params, Periodic, Workspace};
use crate::nn::math::optim::Optimizer;
use crate::nn::math::rng::{Rng, Stream};
use crate::nn::math::schedule::{Schedule, ScheduleState};
use crate::nn::portable::model::Model;
use crate::nn::portable::preprocess::{OutputEncoding, Samples, Standardizer, Targets};
use crate::nn::portable::tabular::{self, ClassWeight, Encoder, RawColumn, TransformError};

pub use crate::nn::math::batch::CHUNK_ROWS;

pub use crate::nn::math::metric::{MONITORS, check_monitor};

/// One finished epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based.
    pub epoch: u32,
    pub loss: f64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub val_loss: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub accuracy: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub val_accuracy: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub mae: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub val_mae: Option<f64>,
    /// The validation split's log loss without the L1/L2 penalty (classification): what a
    /// sweep's `val_log_loss` compares, epoch by epoch. Absent from earlier releases' records.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub val_log_loss: Option<f64>,
    /// The validation split's RMSE in the target's own units (regression; per output, then
    /// averaged): what a sweep's `val_rmse` compares. Absent from earlier releases' records.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub val_rmse: Option<f64>,
    pub learning_rate: f32,
    /// Wall time of this epoch, milliseconds.
    pub elapsed_ms: f64,
    pub samples_per_second: f64,
}

impl EpochRecord {
    pub fn metric(&self, name: &str) -> Option<f64> {
        match name {
            "loss" => Some(self.loss),
            "val_loss" => self.val_loss,
            "accuracy" => self.accuracy,
            "val_accuracy" => self.val_accuracy,
            "mae" => self.mae,
            "val_mae" => self.val_mae,
            "val_log_loss" => self.val_log_loss,
            "val_rmse" => self.val_rmse,
            _ => None,
        }
    }
}

/// Early stopping's memory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct EarlyState {
    pub best: Option<f64>,
    pub best_epoch: u32,
    pub wait: u32,
    pub best_params: Option<Params<f32>>,
}

/// Everything needed to continue a run exactly: a checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Epochs completed.
    pub epoch: u32,
    pub network: Network<f32>,
    pub optimizer: Optimizer,
    pub schedule: ScheduleState,
    pub early: EarlyState,
    pub finished: bool,
}

impl TrainState {
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("serialising plain data cannot fail")
    }

    pub fn from_bytes(b: &[u8]) -> Result<Self, String> {
        postcard::from_bytes(b).map_err(|e| format!("unreadable checkpoint: {e}"))
    }
}

/// Flags another thread sets to end a run: `cancel` abandons it, `stop` ends it after the
/// current batch and keeps the model.
#[derive(Debug, Default)]
pub struct Control {
    pub cancel: AtomicBool,
    pub stop: AtomicBool,
    /// Asked to give its place up: the caller checkpoints at the next epoch's end and
    /// cancels (the engine itself only reads `cancel` and `stop`).
    pub yield_slot: AtomicBool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    Completed,
    EarlyStopping,
    StoppedByUser,
}

pub struct Outcome {
    pub model: Model,
    /// The model evaluated on the validation rows (none without validation data, or when
    /// they cannot be scored).
    pub evaluation: Option<crate::nn::portable::evaluate::Evaluation>,
    pub epochs_run: u32,
    pub reason: StopReason,
    /// The epoch whose weights the model holds when best weights were restored.
    pub best_epoch: Option<u32>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TrainError {
    #[error("invalid spec: {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Spec(Vec<SpecError>),
    #[error("cancelled")]
    Cancelled,
    #[error("training diverged at epoch {epoch}: the {what} became {value}; {advice}")]
    Diverged {
        epoch: u32,
        what: &'static str,
        value: String,
        learning_rate: f32,
        suggestion: f32,
        /// The field most likely at fault and what to try instead.
        advice: String,
    },
    #[error("{0}")]
    Checkpoint(String),
    /// A buffer the data asks for could not be reserved.
    #[error(transparent)]
    Memory(#[from] crate::nn::math::alloc::AllocError),
}

/// What the data looks like to validation.
pub fn target_shape(t: &Targets) -> TargetShape {
    match t {
        Targets::Labels(_) => TargetShape::Labels {
            classes: t.classes().unwrap_or_default(),
        },
        Targets::Values(v) => {
            let unit_interval = v.iter().all(|&x| (0.0..=1.0).contains(&x));
            // A column of many distinct whole numbers is a regression target, not classes:
            // distinct values are gathered up to one past that many (not every row sorted).
            let integer_classes = if v.ncols() == 1 {
                whole_number_counts(v.iter().copied(), 1000)
                    .map(|counts| counts.into_iter().map(|(k, _)| k).collect())
            } else {
                None
            };
            TargetShape::Values {
                width: v.ncols(),
                integer_classes,
                unit_interval,
            }
        }
    }
}

/// The whole numbers `values` holds and the rows of each, by value: `None` when one is not
/// whole (or too large to tell from its neighbours in an f32, past 1e9; a NaN is neither), or
/// when there are more than `most` distinct. One pass: class labels are mostly small and few,
/// so 0 to 63 are counted in place; any other value is tried against the last one seen, then a
/// short list, then (past 16 of them) an index.
pub fn whole_number_counts(
    values: impl Iterator<Item = f32>,
    most: usize,
) -> Option<Vec<(i64, u64)>> {
    const SMALL: usize = 64;
    const LISTED: usize = 16;
    let mut small = [0u64; SMALL];
    let mut counts: Vec<(i64, u64)> = Vec::new();
    let mut index: std::collections::HashMap<i64, usize, BuildMul> = Default::default();
    let mut distinct = 0;
    let mut last = 0;
    for t in values {
        if !(t.abs() < 1e9 && (t as i64) as f32 == t) {
            return None;
        }
        let k = t as i64;
        if let Some(c) = usize::try_from(k).ok().and_then(|k| small.get_mut(k)) {
            if *c == 0 {
                if distinct >= most {
                    return None;
                }
                distinct += 1;
            }
            *c += 1;
            continue;
        }
        if let Some(c) = counts.get_mut(last)
            && c.0 == k
        {
            c.1 += 1;
            continue;
        }
        let found = if counts.len() <= LISTED {
            counts.iter().position(|c| c.0 == k)
        } else {
            index.get(&k).copied()
        };
        match found {
            Some(i) => {
                counts[i].1 += 1;
                last = i;
            }
            None if distinct >= most => return None,
            None => {
                distinct += 1;
                counts.push((k, 1));
                last = counts.len() - 1;
                if counts.len() > LISTED {
                    if index.is_empty() {
                        index.extend(counts.iter().enumerate().map(|(i, c)| (c.0, i)));
                    } else {
                        index.insert(k, last);
                    }
                }
            }
        }
    }
    counts.extend((0..SMALL as i64).zip(small).filter(|&(_, n)| n > 0));
    counts.sort_unstable();
    Some(counts)
}

/// A multiplicative hash for [`whole_number_counts`]' index of whole numbers (SipHash, the
/// default, cost more than the rest of a million-row pass).
type BuildMul = std::hash::BuildHasherDefault<MulHasher>;

#[derive(Default)]
struct MulHasher(u64);

impl std::hash::Hasher for MulHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b) ^ self.0.rotate_left(8));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn write_i64(&mut self, n: i64) {
        self.write_u64(n as u64);
    }
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 32)
    }
}

/// A prepared run: validated plan, split and standardised data, initial weights.
pub struct Session {
    pub spec: TrainSpec,
    pub plan: Plan,
    pub standardizer: Option<Standardizer>,
    /// The training split's target mean and deviation when `standardize_target` (regression):
    /// the loop trains on `(y - mean) / std`, and [`model`](Self::model) folds it back.
    pub target_scaler: Option<Standardizer>,
    /// Raw rows → inputs, fitted on the training split; `None` when it would change nothing
    /// (every column numeric and complete), so such models stay as they always were.
    pub encoder: Option<Encoder>,
    pub(super) x_train: Array2<f32>,
    pub(super) y_train: Array2<f32>,
    /// One loss weight per training row (class and sample weights multiplied).
    pub(super) weights: Option<Vec<f32>>,
    x_val: Option<Array2<f32>>,
    y_val: Option<Array2<f32>>,
    /// The validation rows as raw table rows, for the evaluation at the end of a run.
    val_raw: Option<RawTable>,
    /// The dataset's target columns, for the model (predict skips them in a record).
    pub target_names: Vec<String>,
}

/// Rows of a raw table with their columns and targets: what a model is evaluated on.
pub struct RawTable {
    pub x: Array2<f32>,
    pub columns: Vec<RawColumn>,
    pub targets: crate::nn::portable::preprocess::Targets,
}

/// A separate validation set for [`Session::with_columns`]: its samples and raw columns.
pub type Validation<'a> = (&'a Samples, &'a [RawColumn]);

impl Session {
    /// Validates `spec` against `data` (and an optional separate validation set) and prepares
    /// the matrices the loop trains on. Every column of `data.x` is a complete number.
    pub fn new(
        spec: &TrainSpec,
        data: &Samples,
        validation: Option<&Samples>,
    ) -> Result<Self, TrainError> {
        let numeric = |x: &Array2<f32>| -> Vec<RawColumn> {
            (0..x.ncols())
                .map(|j| RawColumn::numeric(&format!("x{j}"), 0))
                .collect()
        };
        let cols = numeric(&data.x);
        let val_cols = validation.map(|v| numeric(&v.x));
        Self::with_columns(spec, data, &cols, validation.zip(val_cols.as_deref()))
    }

    /// As [`new`](Self::new) for a raw table: `columns` describe `data.x`'s columns (values or
    /// vocabulary indexes, `NaN` for missing). The encoder is fitted on the training split.
    pub fn with_columns(
        spec: &TrainSpec,
        data: &Samples,
        columns: &[RawColumn],
        validation: Option<Validation<'_>>,
    ) -> Result<Self, TrainError> {
        let spec_err = |p: &str, m: String| TrainError::Spec(vec![SpecError::new(p, m)]);
        let mut spec = spec.clone();
        if validation.is_some() {
            spec.validation_split = 0.0;
            spec.validation_fold = 0;
        }
        if columns.len() != data.x.ncols() {
            return Err(spec_err(
                "/dataset",
                format!(
                    "{} column descriptions for {} columns",
                    columns.len(),
                    data.x.ncols()
                ),
            ));
        }
        let (cols, weight_col) = resolve_columns(&spec, columns)?;
        let schemas: Vec<_> = cols.iter().map(|c| c.schema.clone()).collect();
        let rows = data.x.nrows();
        let width = tabular::max_width(&schemas, rows as u64, &spec.encoder_options())
            .map_err(|e| TrainError::Spec(vec![e.to_spec_error()]))?;
        let shape = target_shape(&data.targets);
        // A first plan for the output encoding (the split is stratified by class); the input
        // width is known once the encoder is fitted on the training split.
        let plan = if validation.is_some() {
            spec.plan_with_validation_set(width, rows, &shape)
        } else {
            spec.plan(width, rows, &shape)
        }
        .map_err(TrainError::Spec)?;
        if let Some((v, vcols)) = validation {
            let names = |c: &[RawColumn]| c.iter().map(|c| c.name().to_owned()).collect::<Vec<_>>();
            if v.x.ncols() != data.x.ncols()
                || vcols.len() != v.x.ncols()
                || names(vcols) != names(columns)
            {
                return Err(spec_err(
                    "/validation_data",
                    format!(
                        "has columns {:?}, the training data {:?}; they must be the same",
                        names(vcols),
                        names(columns)
                    ),
                ));
            }
            // Validation with an explicit set behaves like a split for the monitors.
            spec.validation_split = f32::MIN_POSITIVE;
        }
        let y_all = encode(&plan.encoding, &data.targets, "/dataset/targets")?;
        let class_of_row = match &plan.encoding {
            OutputEncoding::Categorical { .. } => Some(argmax_rows(y_all.view())),
            OutputEncoding::Binary { .. } => {
                Some(y_all.column(0).iter().map(|&v| v as usize).collect())
            }
            OutputEncoding::Values => None,
        };
        let (train_idx, val_idx) = split(
            data.x.nrows(),
            spec.validation_split,
            spec.validation_fold as usize,
            spec.seed,
            class_of_row.as_deref(),
        );
        let raw_train = alloc::select_rows(data.x.view(), &train_idx, "the training rows")?;
        let encoder = Encoder::fit(raw_train.view(), &cols, &spec.encoder_options())
            .map_err(|e| TrainError::Spec(vec![e.to_spec_error()]))?;
        // Complete numeric columns encode to themselves: skip the copy, and keep such models
        // exactly as they were before tabular data.
        let plain = encoder.is_identity() && data.x.iter().all(|v| !v.is_nan());
        let tf_raw = |x: Array2<f32>, c: &[RawColumn]| -> Result<Array2<f32>, TrainError> {
            if plain && x.iter().all(|v| !v.is_nan()) {
                Ok(x)
            } else {
                encoder.transform_table(x.view(), c).map_err(|e| match e {
                    TransformError::Column(e) => TrainError::Spec(vec![e.to_spec_error()]),
                    TransformError::Memory(e) => TrainError::Memory(e),
                })
            }
        };
        let x_train = tf_raw(raw_train, &cols)?;
        let mut y_train = y_all.select(Axis(0), &train_idx);
        // Training targets only: the validation loss and the metrics see the true labels.
        if spec.loss.is_classification() {
            let binary = spec.loss == crate::nn::Loss::BinaryCrossentropy;
            crate::nn::math::loss::smooth_labels(&mut y_train, spec.label_smoothing, binary);
        }
        let mut val_raw = match val_idx.is_empty() {
            true => None,
            false => Some(RawTable {
                x: alloc::select_rows(data.x.view(), &val_idx, "the validation rows")?,
                columns: cols.clone(),
                targets: data.targets.select(&val_idx),
            }),
        };
        let (mut x_val, mut y_val) = match &val_raw {
            None => (None, None),
            Some(v) => (
                Some(tf_raw(v.x.clone(), &cols)?),
                Some(y_all.select(Axis(0), &val_idx)),
            ),
        };
        if let Some((v, vcols)) = validation {
            // The training columns' final types, with the validation set's own vocabularies.
            let vcols: Vec<RawColumn> = vcols
                .iter()
                .zip(&cols)
                .map(|(v, t)| {
                    let mut v = v.clone();
                    v.schema.kind = t.schema.kind;
                    v
                })
                .collect();
            x_val = Some(tf_raw(v.x.clone(), &vcols)?);
            y_val = Some(encode(
                &plan.encoding,
                &v.targets,
                "/validation_data/targets",
            )?);
            val_raw = Some(RawTable {
                x: v.x.clone(),
                columns: vcols,
                targets: v.targets.clone(),
            });
        }
        let weights = row_weights(
            &spec,
            &plan.encoding,
            data,
            weight_col,
            &train_idx,
            class_of_row.as_deref(),
        )?;
        let keep_encoder = !encoder.is_identity();
        let mut standardizer = spec.standardize.then(|| match spec.numeric_scaling {
            NumericScaling::Standard => Standardizer::fit(x_train.view()),
            NumericScaling::Robust if keep_encoder => {
                Standardizer::fit_robust(x_train.view(), &encoder.continuous())
            }
            NumericScaling::Robust => {
                Standardizer::fit_robust(x_train.view(), &vec![true; x_train.ncols()])
            }
        });
        if let (Some(s), true) = (&mut standardizer, keep_encoder) {
            // One-hot and missing indicators stay 0/1; only values are standardised.
            for (j, continuous) in encoder.continuous().into_iter().enumerate() {
                if !continuous {
                    s.mean[j] = 0.0;
                    s.std[j] = 1.0;
                }
            }
        }
        // In place: a copy would hold the table twice at the peak.
        let tf = |mut x: Array2<f32>| {
            if let Some(s) = &standardizer {
                s.transform_in_place(&mut x);
            }
            x
        };
        // Regression targets on the standardised scale: y' = (y - mean) / std.
        let target_scaler = (spec.standardize_target
            && matches!(plan.encoding, OutputEncoding::Values))
        .then(|| Standardizer::fit(y_train.view()));
        let (y_train, y_val) = match &target_scaler {
            Some(t) => (
                t.transform(y_train.view()),
                y_val.map(|y| t.transform(y.view())),
            ),
            None => (y_train, y_val),
        };
        let inputs = x_train.ncols();
        let continuous = encoder.continuous();
        debug_assert_eq!(continuous.len(), inputs);
        let mut plan = if validation.is_some() {
            // (the split stood in for the separate set above; it is no split to check)
            let mut as_given = spec.clone();
            as_given.validation_split = 0.0;
            as_given.plan_encoded(&continuous, rows, &shape, true)
        } else {
            spec.plan_encoded(&continuous, rows, &shape, false)
        }
        .map_err(TrainError::Spec)?;
        plan.input_dim = inputs;
        Ok(Session {
            spec,
            plan,
            x_train: tf(x_train),
            y_train,
            weights,
            x_val: x_val.map(tf),
            y_val,
            standardizer,
            target_scaler,
            encoder: keep_encoder.then_some(encoder),
            val_raw,
            target_names: vec![],
        })
    }

    /// Each dense layer's (l1, l2) penalty.
    pub(super) fn penalties(&self) -> Vec<(f32, f32)> {
        self.plan
            .layers
            .iter()
            .filter_map(|l| match l {
                PlannedLayer::Dense { l1, l2, .. } => Some((*l1, *l2)),
                PlannedLayer::Dropout(_) => None,
            })
            .collect()
    }

    /// The validation rows as a raw table (none without validation data).
    pub fn validation_table(&self) -> Option<&RawTable> {
        self.val_raw.as_ref()
    }

    pub fn train_rows(&self) -> usize {
        self.x_train.nrows()
    }

    pub fn validation_rows(&self) -> usize {
        self.x_val.as_ref().map_or(0, |x| x.nrows())
    }

    /// The freshly initialised network (seeded).
    pub fn initial_network(&self) -> Network<f32> {
        build_network(&self.plan, self.spec.seed)
    }

    pub fn initial_state(&self) -> TrainState {
        let network = self.initial_network();
        let optimizer = Optimizer::new(&self.spec.optimizer, &network);
        TrainState {
            epoch: 0,
            network,
            optimizer,
            schedule: ScheduleState::new(),
            early: EarlyState::default(),
            finished: false,
        }
    }

    /// The model `network` makes with this session's preprocessing (standardisation fitted on
    /// the training split, output encoding): what a checkpoint's network predicts like.
    pub fn model(&self, network: Network<f32>) -> Model {
        let mut network = network;
        if let Some(t) = &self.target_scaler {
            fold_target_scale(&mut network, t);
        }
        Model {
            network,
            standardizer: self.standardizer.clone(),
            encoding: self.plan.encoding.clone(),
            feature_names: self.encoder.as_ref().map(Encoder::feature_names),
            loss: Some(self.spec.loss),
            encoder: self.encoder.clone(),
            target_names: (!self.target_names.is_empty()).then(|| self.target_names.clone()),
        }
    }

    /// The validation rows as they are before encoding (the split's, or the separate set's).
    pub fn into_validation_table(self) -> Option<RawTable> {
        self.val_raw
    }

    /// Runs the remaining epochs from `resume` (or from the start) on `pool`. `on_epoch` sees
    /// every finished epoch and the state after it (serialise it to checkpoint).
    pub fn run(
        &self,
        pool: &rayon::ThreadPool,
        resume: Option<TrainState>,
        control: &Control,
        on_epoch: &mut dyn FnMut(&EpochRecord, &TrainState),
    ) -> Result<Outcome, TrainError> {
        let spec = &self.spec;
        let mut state = resume.unwrap_or_else(|| self.initial_state());
        if state.network.input_dim != self.plan.input_dim
            || state.network.members() != self.plan.members.max(1)
            || state.network.layers.len()
                - state.network.dense_offset()
                - state.network.parametric_count()
                != self.plan.layers.len()
            || state.network.parametric_count() != self.plan.parametric_count()
            || state
                .network
                .periodic()
                .map(|p| (p.columns.as_slice(), p.omega.ncols()))
                != self
                    .plan
                    .periodic
                    .as_ref()
                    .map(|p| (p.columns.as_slice(), p.frequencies))
        {
            return Err(TrainError::Checkpoint(
                "the checkpoint does not match this spec's network".into(),
            ));
        }
        let n = self.x_train.nrows();
        let batch = spec.batch_size.clamp(1, n.max(1));
        let (d, k) = (self.x_train.ncols(), self.y_train.ncols());
        let mut step = BatchStep::new(&state.network, batch, d, k);
        let mut grads = Params::zeros_like(&state.network);
        let mut eval_ws = Workspace::new(&state.network, 256);
        let base_lr = spec.optimizer.learning_rate();
        let penalties = self.penalties();
        let has_penalty = penalties.iter().any(|&(a, b)| a > 0.0 || b > 0.0);
        let es = spec.early_stopping.as_ref();
        let has_val = self.x_val.is_some();
        let default_monitor = if has_val { "val_loss" } else { "loss" };
        let es_monitor = es
            .and_then(|e| e.monitor.as_deref())
            .unwrap_or(default_monitor);
        let plateau_monitor = match &spec.lr_schedule {
            Schedule::ReduceOnPlateau { monitor, .. } => {
                monitor.as_deref().unwrap_or(default_monitor)
            }
            _ => default_monitor,
        };
        let mut perm: Vec<usize> = (0..n).collect();
        let mut reason = StopReason::Completed;
        while state.epoch < spec.epochs && !state.finished {
            let epoch = state.epoch;
            let started = Instant::now();
            let lr = spec
                .lr_schedule
                .rate(base_lr, epoch, spec.epochs, &state.schedule);
            for (i, p) in perm.iter_mut().enumerate() {
                *p = i;
            }
            if spec.shuffle {
                Rng::derive(spec.seed, Stream::Shuffle, &[epoch as u64]).shuffle(&mut perm);
            }
            let (mut loss_sum, mut correct, mut abs_err, mut seen) = (0f64, 0f64, 0f64, 0usize);
            // The whole epoch runs on the pool: one hand-over to it instead of several per batch.
            let stopped = pool.install(|| -> Result<bool, TrainError> {
                for (bi, rows) in perm.chunks(batch).enumerate() {
                    if control.cancel.load(Ordering::Relaxed) {
                        return Err(TrainError::Cancelled);
                    }
                    if control.stop.load(Ordering::Relaxed) {
                        return Ok(true);
                    }
                    let dropout = |c: usize| {
                        Rng::derive(
                            spec.seed,
                            Stream::Dropout,
                            &[epoch as u64, bi as u64, c as u64],
                        )
                    };
                    let (x, y) = (&self.x_train, &self.y_train);
                    step.run(
                        &state.network,
                        x,
                        y,
                        self.weights.as_deref(),
                        rows,
                        spec.loss,
                        &mut grads,
                        &dropout,
                    );
                    let batch_rows = rows.len();
                    // Fixed summation order: batch by batch (the step sums its chunks in order).
                    loss_sum += step.loss;
                    correct += step.correct;
                    abs_err += step.abs_err;
                    seen += batch_rows;
                    if !loss_sum.is_finite() {
                        return Err(diverged(spec, epoch + 1, "loss", loss_sum, lr));
                    }
                    if has_penalty {
                        add_penalty_gradient(&state.network, &penalties, &mut grads);
                    }
                    state.optimizer.step(&mut state.network, &mut grads, lr);
                }
                Ok(false)
            })?;
            if seen == 0 {
                // stopped before the first batch of this epoch: nothing to record
                reason = StopReason::StoppedByUser;
                break;
            }
            let penalty = if has_penalty {
                penalty_value(&state.network, &penalties)
            } else {
                0.0
            };
            let is_class = spec.loss.is_classification();
            let mut rec = EpochRecord {
                epoch: epoch + 1,
                loss: loss_sum / seen as f64 + penalty,
                val_loss: None,
                accuracy: is_class.then(|| correct / (seen * accuracy_width(spec.loss, k)) as f64),
                val_accuracy: None,
                mae: (!is_class).then(|| abs_err / (seen * k) as f64),
                val_mae: None,
                val_log_loss: None,
                val_rmse: None,
                learning_rate: lr,
                elapsed_ms: 0.0,
                samples_per_second: 0.0,
            };
            if !rec.loss.is_finite() {
                return Err(diverged(spec, epoch + 1, "loss", rec.loss, lr));
            }
            if !state.network.is_finite() {
                return Err(diverged(spec, epoch + 1, "weights", f64::NAN, lr));
            }
            if let (Some(xv), Some(yv)) = (&self.x_val, &self.y_val) {
                let ev = evaluate(
                    &state.network,
                    &mut eval_ws,
                    xv.view(),
                    yv.view(),
                    spec.loss,
                );
                rec.val_loss = Some(ev.loss + penalty);
                rec.val_accuracy = is_class.then_some(ev.accuracy);
                rec.val_mae = (!is_class).then_some(ev.mae);
                rec.val_log_loss = is_class.then_some(ev.loss);
                rec.val_rmse = (!is_class).then(|| ev.rmse(self.target_scaler.as_ref()));
                if !ev.loss.is_finite() {
                    return Err(diverged(spec, epoch + 1, "validation loss", ev.loss, lr));
                }
            }
            let secs = started.elapsed().as_secs_f64();
            rec.elapsed_ms = secs * 1e3;
            rec.samples_per_second = if secs > 0.0 { seen as f64 / secs } else { 0.0 };

            let maximise = |m: &str| m.ends_with("accuracy");
            spec.lr_schedule.observe(
                base_lr,
                rec.metric(plateau_monitor),
                maximise(plateau_monitor),
                &mut state.schedule,
            );
            if let Some(es) = es
                && let Some(v) = rec.metric(es_monitor)
            {
                let v = if maximise(es_monitor) { -v } else { v };
                let improved = match state.early.best {
                    None => true,
                    Some(b) => v < b - es.min_delta as f64,
                };
                if epoch < es.start_from_epoch {
                    // not judged yet
                } else if improved {
                    state.early.best = Some(v);
                    state.early.best_epoch = epoch + 1;
                    state.early.wait = 0;
                    if es.restore_best_weights {
                        match &mut state.early.best_params {
                            Some(p) => {
                                for (dst, src) in p
                                    .slices_mut()
                                    .into_iter()
                                    .zip(state.network.params().slices())
                                {
                                    dst.copy_from_slice(src);
                                }
                            }
                            None => state.early.best_params = Some(state.network.params()),
                        }
                    }
                } else {
                    state.early.wait += 1;
                    if state.early.wait >= es.patience.max(1) {
                        state.finished = true;
                        reason = StopReason::EarlyStopping;
                    }
                }
            }
            if stopped {
                state.finished = true;
                reason = StopReason::StoppedByUser;
            }
            state.epoch = epoch + 1;
            on_epoch(&rec, &state);
        }
        if control.stop.load(Ordering::Relaxed)
            && reason == StopReason::Completed
            && state.epoch < spec.epochs
        {
            reason = StopReason::StoppedByUser;
        }
        let mut network = state.network;
        let mut best_epoch = None;
        if let (Some(es), Some(p)) = (es, state.early.best_params)
            && es.restore_best_weights
        {
            network.set_params(&p);
            best_epoch = Some(state.early.best_epoch);
        }
        let model = self.model(network);
        let evaluation = self.val_raw.as_ref().and_then(|v| {
            crate::nn::portable::evaluate::evaluate_model(
                &model,
                v.x.view(),
                &v.columns,
                &v.targets,
                spec.seed,
            )
            .ok()
        });
        Ok(Outcome {
            model,
            evaluation,
            epochs_run: state.epoch,
            reason,
            best_epoch,
        })
    }
}

/// Folds a target standardisation into the (linear) output layer, so the network predicts
/// in the targets' own units: y = std·(hW + b) + mean, i.e. W' = W·diag(std),
/// b' = std·b + mean.
fn fold_target_scale(network: &mut Network<f32>, t: &Standardizer) {
    // An ensemble's heads: output j of every member.
    let o = network.output_dim().max(1);
    if let Some(out) = network.dense_mut().last() {
        for (j, mut col) in out.w.columns_mut().into_iter().enumerate() {
            col *= t.std[j % o];
        }
        for (j, b) in out.b.iter_mut().enumerate() {
            *b = *b * t.std[j % o] + t.mean[j % o];
        }
    }
}

/// The inverse of [`fold_target_scale`]: a model's output layer on the standardised scale
/// (a warm start of a job that standardises its targets).
pub(super) fn unfold_target_scale(network: &mut Network<f32>, t: &Standardizer) {
    let o = network.output_dim().max(1);
    if let Some(out) = network.dense_mut().last() {
        for (j, mut col) in out.w.columns_mut().into_iter().enumerate() {
            col /= t.std[j % o];
        }
        for (j, b) in out.b.iter_mut().enumerate() {
            *b = (*b - t.mean[j % o]) / t.std[j % o];
        }
    }
}

/// The dataset's columns with the job's types applied (and the sample-weight column taken out
/// of the inputs), and the sample-weight column's index.
fn resolve_columns(
    spec: &TrainSpec,
    columns: &[RawColumn],
) -> Result<(Vec<RawColumn>, Option<usize>), TrainError> {
    let schemas: Vec<_> = columns.iter().map(|c| c.schema.clone()).collect();
    let (schemas, weight_col) = spec.resolve_columns(&schemas).map_err(TrainError::Spec)?;
    let cols = columns
        .iter()
        .zip(schemas)
        .map(|(c, schema)| RawColumn {
            schema,
            vocab: c.vocab.clone(),
        })
        .collect();
    Ok((cols, weight_col))
}

/// Each training row's loss weight: its sample weight times its class weight; `None` when
/// the spec asks for neither.
fn row_weights(
    spec: &TrainSpec,
    encoding: &OutputEncoding,
    data: &Samples,
    weight_col: Option<usize>,
    train_idx: &[usize],
    class_of_row: Option<&[usize]>,
) -> Result<Option<Vec<f32>>, TrainError> {
    if weight_col.is_none() && spec.class_weight.is_none() {
        return Ok(None);
    }
    let mut w = vec![1f32; train_idx.len()];
    if let Some(j) = weight_col {
        for (k, &i) in train_idx.iter().enumerate() {
            let v = data.x[[i, j]];
            if !(v.is_finite() && v >= 0.0) {
                return Err(TrainError::Spec(vec![SpecError::new(
                    "/sample_weight",
                    format!(
                        "row {} has weight {v}; weights must be finite numbers ≥ 0",
                        i + 1
                    ),
                )]));
            }
            w[k] = v;
        }
    }
    if let (Some(cw), Some(class_of_row), Some(classes)) =
        (&spec.class_weight, class_of_row, encoding.classes())
    {
        let per_class: Vec<f32> = match cw {
            ClassWeight::Mode(_) => {
                // sklearn's "balanced": n / (k · n_c), over the training rows.
                let mut counts = vec![0usize; classes.len()];
                for &i in train_idx {
                    counts[class_of_row[i]] += 1;
                }
                let present = counts.iter().filter(|&&c| c > 0).count().max(1);
                counts
                    .iter()
                    .map(|&c| {
                        if c == 0 {
                            1.0
                        } else {
                            (train_idx.len() as f64 / (present * c) as f64) as f32
                        }
                    })
                    .collect()
            }
            ClassWeight::Map(m) => classes
                .iter()
                .map(|c| m.get(&c.to_string()).copied().unwrap_or(1.0))
                .collect(),
        };
        for (k, &i) in train_idx.iter().enumerate() {
            w[k] *= per_class[class_of_row[i]];
        }
    }
    Ok(Some(w))
}

fn accuracy_width(loss: Loss, k: usize) -> usize {
    if loss.is_categorical() { 1 } else { k }
}

fn diverged(spec: &TrainSpec, epoch: u32, what: &'static str, value: f64, lr: f32) -> TrainError {
    TrainError::Diverged {
        epoch,
        what,
        value: format!("{value}"),
        learning_rate: lr,
        suggestion: lr / 10.0,
        advice: divergence_advice(spec, lr),
    }
}

/// Penalties above this are far outside any useful range (Keras's examples use 1e-4 to 1e-2):
/// a loss that blows up under one is the penalty's doing, not the learning rate's.
const SUSPECT_PENALTY: f32 = 10.0;
/// An `alpha` above this scales leaky_relu/elu outputs out of any useful range (0.01 to 1).
const SUSPECT_ALPHA: f32 = 1e3;

/// Names the field that most likely made training diverge: an absurd weight penalty or
/// activation `alpha` before the learning rate, which is otherwise the usual cause.
fn divergence_advice(spec: &TrainSpec, lr: f32) -> String {
    let mut suspects = vec![];
    for (name, v) in [("l1", spec.l1), ("l2", spec.l2)] {
        if v.abs() > SUSPECT_PENALTY {
            suspects.push(format!(
                "/{name} is {v:e}, which makes the penalty dominate and overflow; try 1e-4 to 1e-2"
            ));
        }
    }
    for (i, l) in spec.layers.iter().enumerate() {
        for (name, v) in [("l1", l.l1), ("l2", l.l2)] {
            if let Some(v) = v.filter(|v| v.abs() > SUSPECT_PENALTY) {
                suspects.push(format!(
                    "/layers/{i}/{name} is {v:e}, which makes the penalty dominate and overflow; try 1e-4 to 1e-2"
                ));
            }
        }
        if let Some(a) = l.alpha.filter(|a| a.abs() > SUSPECT_ALPHA) {
            suspects.push(format!(
                "/layers/{i}/alpha is {a:e}, which scales the activation out of range; try 0.01 to 1"
            ));
        }
    }
    if suspects.is_empty() {
        format!(
            "with learning rate {lr} the updates overshoot: the learning rate is too large for \
             this problem, try {} or smaller",
            lr / 10.0
        )
    } else {
        suspects.join("; ")
    }
}

fn encode(enc: &OutputEncoding, t: &Targets, pointer: &str) -> Result<Array2<f32>, TrainError> {
    let labels;
    let list = match (enc, t) {
        (OutputEncoding::Values, Targets::Values(v)) => return Ok(v.clone()),
        (OutputEncoding::Categorical { classes }, Targets::Values(v))
            if v.ncols() == classes.len() && v.ncols() > 1 =>
        {
            return Ok(v.clone());
        }
        (_, Targets::Labels(l)) => l,
        (_, Targets::Values(v)) => {
            labels = v
                .iter()
                .map(|&x| crate::nn::portable::preprocess::ClassLabel::Integer(x as i64))
                .collect::<Vec<_>>();
            &labels
        }
    };
    enc.encode(list)
        .map_err(|m| TrainError::Spec(vec![SpecError::new(pointer, m)]))
}

/// Seeded split into (train, validation) row indices; stratified when `classes` is given.
/// The seeded (and, with `classes`, stratified) split of `n` rows: each class's rows are
/// shuffled and its `frac` share from block `fold` on is held out, so folds 0…⌊1/frac⌋-1 of
/// the same seed hold out disjoint rows (the last block of a class shifted back to fit).
fn split(
    n: usize,
    frac: f32,
    fold: usize,
    seed: u64,
    classes: Option<&[usize]>,
) -> (Vec<usize>, Vec<usize>) {
    if frac <= 0.0 || n < 2 {
        return ((0..n).collect(), vec![]);
    }
    let mut rng = Rng::derive(seed, Stream::Split, &[]);
    let mut val = vec![];
    let groups: Vec<Vec<usize>> = match classes {
        Some(c) => {
            let k = c.iter().max().map_or(0, |m| m + 1);
            let mut g = vec![vec![]; k];
            for (i, &ci) in c.iter().enumerate() {
                g[ci].push(i);
            }
            g
        }
        None => vec![(0..n).collect()],
    };
    let target = ((n as f64) * frac as f64)
        .round()
        .clamp(1.0, (n - 1) as f64) as usize;
    // Largest-remainder allocation so the per-class counts add up to the target exactly.
    let exact: Vec<f64> = groups
        .iter()
        .map(|g| g.len() as f64 * target as f64 / n as f64)
        .collect();
    let mut take: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.sort_by(|&a, &b| {
        (exact[b] - exact[b].floor())
            .total_cmp(&(exact[a] - exact[a].floor()))
            .then(a.cmp(&b))
    });
    let mut left = target - take.iter().sum::<usize>();
    for &g in &order {
        if left == 0 {
            break;
        }
        if take[g] < groups[g].len() {
            take[g] += 1;
            left -= 1;
        }
    }
    for (g, idx) in groups.into_iter().enumerate() {
        let mut idx = idx;
        rng.shuffle(&mut idx);
        let start = (fold * take[g]).min(idx.len() - take[g]);
        val.extend_from_slice(&idx[start..start + take[g]]);
    }
    val.sort_unstable();
    let mut is_val = vec![false; n];
    for &v in &val {
        is_val[v] = true;
    }
    ((0..n).filter(|&i| !is_val[i]).collect(), val)
}

fn build_network(plan: &Plan, seed: u64) -> Network<f32> {
    let mut width = plan.input_dim;
    let mut layers = vec![];
    if let Some(p) = &plan.periodic {
        // ω ~ N(0, (2π·σ)²): σ cycles per standardised unit.
        let mut rng = Rng::derive(seed, Stream::Init, &[u64::MAX - 1]);
        let scale = std::f64::consts::TAU * f64::from(p.sigma);
        let omega = Array2::from_shape_fn((p.columns.len(), p.frequencies), |_| {
            (scale * rng.normal()) as f32
        });
        let layer = Periodic {
            columns: p.columns.clone(),
            omega,
        };
        width = layer.width(width);
        layers.push(Layer::Periodic(layer));
    }
    let k = plan.members.max(1);
    if k > 1 {
        // TabM-mini's adapters start as random signs: members differ from the first step.
        let mut rng = Rng::derive(seed, Stream::Init, &[u64::MAX]);
        let r = Array2::from_shape_fn((k, width), |_| if rng.uniform() < 0.5 { -1.0 } else { 1.0 });
        layers.push(Layer::Ensemble(r));
    }
    let last = plan.layers.len().saturating_sub(1);
    for (i, l) in plan.layers.iter().enumerate() {
        match *l {
            PlannedLayer::Dense {
                units,
                activation,
                alpha,
                kernel,
                bias,
                parametric,
                ..
            } => {
                let mut rng = Rng::derive(seed, Stream::Init, &[i as u64]);
                // An ensemble's last layer: one head per member, each initialised as one.
                let heads = if i == last { k } else { 1 };
                let mut w = Array2::zeros((width, units * heads));
                kernel.fill(
                    w.as_slice_mut().expect("standard layout"),
                    width,
                    units,
                    &mut rng,
                );
                let mut b = Array1::zeros(units * heads);
                bias.fill(
                    b.as_slice_mut().expect("standard layout"),
                    width,
                    units,
                    &mut rng,
                );
                if parametric {
                    // The activation moves to the parametric layer, its weights starting at
                    // 1: the network starts as the plain one.
                    layers.push(Layer::Dense(Dense {
                        w,
                        b,
                        activation: Activation::Linear,
                        alpha: Activation::Linear.default_alpha(),
                    }));
                    layers.push(Layer::Parametric(Parametric {
                        activation,
                        alpha,
                        weight: Array2::ones((1, units)),
                    }));
                } else {
                    layers.push(Layer::Dense(Dense {
                        w,
                        b,
                        activation,
                        alpha,
                    }));
                }
                width = units;
            }
            PlannedLayer::Dropout(r) => layers.push(Layer::Dropout(r)),
        }
    }
    Network {
        input_dim: plan.input_dim,
        layers,
    }
}

/// dL/dW += l1·sign(W) + 2·l2·W
pub(super) fn add_penalty_gradient(
    net: &Network<f32>,
    pen: &[(f32, f32)],
    grads: &mut Params<f32>,
) {
    for (i, (t, d)) in net.dense_tensors().enumerate() {
        let (l1, l2) = pen[i];
        if l1 == 0.0 && l2 == 0.0 {
            continue;
        }
        ndarray::Zip::from(&mut grads.w[t])
            .and(&d.w)
            .for_each(|g, &w| {
                *g += l1 * w.signum() * f32::from(w != 0.0) + 2.0 * l2 * w;
            });
    }
}

fn penalty_value(net: &Network<f32>, pen: &[(f32, f32)]) -> f64 {
    net.dense()
        .enumerate()
        .map(|(i, d)| {
            let (l1, l2) = pen[i];
            d.w.iter()
                .map(|&w| l1 as f64 * (w as f64).abs() + l2 as f64 * (w as f64).powi(2))
                .sum::<f64>()
        })
        .sum()
}

pub struct Evaluation {
    pub loss: f64,
    pub accuracy: f64,
    pub mae: f64,
    /// Per output, the squared errors' mean (regression; empty for classification).
    pub mse: Vec<f64>,
}

impl Evaluation {
    /// The RMSE in the target's own units, per output and averaged, as the model's evaluation
    /// reports it: each output's error scaled back by `target`'s deviation.
    pub fn rmse(&self, target: Option<&Standardizer>) -> f64 {
        let k = self.mse.len().max(1) as f64;
        self.mse
            .iter()
            .enumerate()
            .map(|(c, m)| m.sqrt() * target.map_or(1.0, |t| f64::from(t.std[c])))
            .sum::<f64>()
            / k
    }
}

/// Loss and metrics of `net` (dropout off) on `x`, `y`.
pub fn evaluate(
    net: &Network<f32>,
    ws: &mut Workspace<f32>,
    x: ArrayView2<f32>,
    y: ArrayView2<f32>,
    loss: Loss,
) -> Evaluation {
    let (mut l, mut c, mut e) = (0f64, 0f64, 0f64);
    // Each output's squared errors (regression only).
    let outputs = if loss.is_classification() {
        0
    } else {
        y.ncols()
    };
    let mut sq = vec![0f64; outputs];
    let cap = ws.capacity();
    for (xc, yc) in x
        .axis_chunks_iter(Axis(0), cap)
        .zip(y.axis_chunks_iter(Axis(0), cap))
    {
        let n = xc.nrows();
        net.forward(ws, xc, None);
        l += loss.value(ws.logits(n), ws.output(n), yc) as f64;
        let (ci, ei) = score(ws.output(n), yc, loss);
        c += ci;
        e += ei;
        if !sq.is_empty() {
            for (row, truth) in ws.output(n).rows().into_iter().zip(yc.rows()) {
                for ((s, &p), &t) in sq.iter_mut().zip(row).zip(truth) {
                    *s += f64::from(p - t).powi(2);
                }
            }
        }
    }
    let n = x.nrows().max(1) as f64;
    let k = y.ncols().max(1);
    Evaluation {
        loss: l / n,
        accuracy: c / (n * accuracy_width(loss, k) as f64),
        mae: e / (n * k as f64),
        mse: sq.into_iter().map(|s| s / n).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counted as a sorted map of every value would count them, below and past the short
    /// list, at the limit and one past it; a fraction, a NaN or a huge value is no class.
    #[test]
    fn whole_number_counts_as_a_map_counts_them() {
        let by_map = |values: &[f32]| {
            let mut m = std::collections::BTreeMap::<i64, u64>::new();
            for &v in values {
                *m.entry(v as i64).or_default() += 1;
            }
            m.into_iter().collect::<Vec<_>>()
        };
        for distinct in [1usize, 2, 16, 17, 40, 63, 64, 65, 200, 999] {
            // Runs, repeats far apart, negatives, small values (counted in place) and larger
            // ones (in the list and the index).
            for spread in [0, 1, 40, 1000] {
                let values: Vec<f32> = (0..5000)
                    .map(|i| {
                        let v = ((i * 7919 + i / 13) % distinct) as f32 - 3.0;
                        v + (i % 3 * spread) as f32
                    })
                    .collect();
                let want = by_map(&values);
                let n = want.len();
                assert_eq!(
                    whole_number_counts(values.iter().copied(), n),
                    Some(want),
                    "{distinct} values, spread {spread}"
                );
                assert_eq!(
                    whole_number_counts(values.iter().copied(), n - 1),
                    None,
                    "{n} values, one past the limit"
                );
            }
        }
        for bad in [0.5f32, f32::NAN, 2e9, -1e9] {
            assert_eq!(whole_number_counts([1.0, bad, 2.0].into_iter(), 20), None);
        }
        assert_eq!(whole_number_counts(std::iter::empty(), 20), Some(vec![]));
    }

    #[test]
    fn stratified_split_keeps_class_proportions() {
        let classes: Vec<usize> = (0..100).map(|i| usize::from(i >= 80)).collect();
        let (tr, va) = split(100, 0.2, 0, 1, Some(&classes));
        assert_eq!(va.len(), 20);
        assert_eq!(tr.len(), 80);
        assert_eq!(va.iter().filter(|&&i| classes[i] == 1).count(), 4);
        let (_, va2) = split(100, 0.2, 0, 1, Some(&classes));
        assert_eq!(va, va2);
        let (_, va3) = split(100, 0.2, 0, 2, Some(&classes));
        assert_ne!(va, va3);
    }

    #[test]
    fn the_folds_of_one_seed_hold_out_every_row_once() {
        let classes: Vec<usize> = (0..100).map(|i| usize::from(i % 10 < 3)).collect();
        let mut seen = vec![0; 100];
        for fold in 0..5 {
            let (tr, va) = split(100, 0.2, fold, 7, Some(&classes));
            assert_eq!((tr.len(), va.len()), (80, 20));
            assert_eq!(va.iter().filter(|&&i| classes[i] == 1).count(), 6);
            for i in va {
                seen[i] += 1;
            }
        }
        assert!(seen.iter().all(|&c| c == 1), "{seen:?}");
        // Fold 0 is the plain split of that seed.
        assert_eq!(split(100, 0.2, 0, 7, Some(&classes)).1.len(), 20);
    }

    /// y = 1000 + 50·x on x ∈ [-1, 1]: far from the scale an initialised network starts at.
    /// With the targets standardised the loop sees y' = (y - mean)/std, a unit-scale line
    /// that 30 epochs fit; the model folds the scaling back and predicts in the targets' units.
    #[test]
    fn standardised_targets_train_on_the_unit_scale_and_predict_in_their_own() {
        use crate::nn::portable::preprocess::{Samples, Targets};
        let x = Array2::from_shape_fn((64, 1), |(i, _)| i as f32 / 31.5 - 1.0);
        let y = x.mapv(|v| 1000.0 + 50.0 * v);
        let data = Samples {
            x: x.clone(),
            targets: Targets::Values(y.clone()),
        };
        let spec: TrainSpec = serde_json::from_str(
            r#"{"layers": [{}], "loss": "mse", "epochs": 30, "batch_size": 8, "seed": 1,
                "optimizer": {"type": "adam", "learning_rate": 0.05},
                "standardize_target": true}"#,
        )
        .unwrap();
        let session = Session::new(&spec, &data, None).unwrap();
        let t = session.target_scaler.clone().unwrap();
        assert!((t.mean[0] - 1000.0).abs() < 1e-3, "{t:?}");
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let out = session
            .run(&pool, None, &Control::default(), &mut |_, _| {})
            .unwrap();
        let p = out.model.predict(x.view()).outputs;
        let worst = p
            .iter()
            .zip(&y)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1.0, "worst error {worst}");
        // Folding and unfolding are inverses.
        let mut net = out.model.network.clone();
        unfold_target_scale(&mut net, &t);
        fold_target_scale(&mut net, &t);
        let again = net.predict(
            session
                .standardizer
                .as_ref()
                .unwrap()
                .transform(x.view())
                .view(),
        );
        assert!(again.iter().zip(&p).all(|(a, b)| (a - b).abs() < 1e-2));
        // Without it, the same 30 epochs are nowhere near 1000.
        let plain = TrainSpec {
            standardize_target: false,
            ..spec
        };
        let out = Session::new(&plain, &data, None)
            .unwrap()
            .run(&pool, None, &Control::default(), &mut |_, _| {})
            .unwrap();
        let p = out.model.predict(x.view()).outputs;
        assert!((p[[0, 0]] - 950.0).abs() > 100.0, "{p}");
        // A classifier has no targets to standardise.
        let bad: TrainSpec = serde_json::from_str(
            r#"{"layers": [{}], "loss": "binary_crossentropy", "standardize_target": true}"#,
        )
        .unwrap();
        let labels = Samples {
            x,
            targets: Targets::Values(Array2::from_shape_fn((64, 1), |(i, _)| (i % 2) as f32)),
        };
        assert!(Session::new(&bad, &labels, None).is_err());
    }
}
