//! What an epoch costs on this machine: a two-term model fitted to the engine's own measured
//! speed, for the dry run's estimate. An epoch takes `batches · per_batch + flops · per_flop`
//! seconds: a fixed cost per mini-batch (scheduling the pool, the optimizer's pass over the
//! weights, shuffling) and the arithmetic (≈ 6 flops per parameter per training row for the
//! forward and backward pass, 2 per validation row for the forward pass alone).

use ndarray::Array2;

use super::spec::{LayerSpec, Plan, PlannedLayer, TrainSpec};
use super::train::{Control, Session};
use crate::nn::math::activation::Activation;
use crate::nn::math::loss::Loss;
use crate::nn::math::optim::OptimizerSpec;
use crate::nn::math::schedule::Schedule;
use crate::nn::portable::preprocess::{ClassLabel, Samples, Targets};

/// The bytes a training run holds at its peak (the dry run's `estimated_memory_bytes`, and
/// what `--max-job-memory` is checked against), from the shapes alone. A worker holds, in f32:
/// the stored table (read in parts and joined: twice), the decoded raw table and the samples
/// the session reads (rows × raw columns each), the training split's raw rows while they are encoded, the encoded table
/// (rows × inputs: one-hot columns are what make it large), the validation split's raw rows
/// (kept for evaluation), the targets (all, and split), the weights with their gradients and
/// two optimizer moments, and each mini-batch's activations forward and backward. Summed, not
/// overlapped: an estimate that errs large (`bench/job_memory.py` measures it against the
/// peak).
pub fn training_memory(
    plan: &Plan,
    raw_columns: usize,
    rows: usize,
    train_rows: usize,
    batch: usize,
) -> usize {
    let outputs = plan
        .layers
        .iter()
        .rev()
        .find_map(|l| match l {
            PlannedLayer::Dense { units, .. } => Some(*units),
            PlannedLayer::Dropout(_) => None,
        })
        .unwrap_or(1);
    let widths: usize = plan
        .layers
        .iter()
        .map(|l| match l {
            // A parametric activation holds its own buffers of the layer's width.
            PlannedLayer::Dense {
                units, parametric, ..
            } => units * (1 + usize::from(*parametric)),
            PlannedLayer::Dropout(_) => 0,
        })
        .sum();
    let cells = rows
        .saturating_mul(4 * raw_columns + plan.input_dim + 2 * outputs)
        .saturating_add(train_rows.saturating_mul(raw_columns))
        .saturating_add(rows.saturating_sub(train_rows).saturating_mul(raw_columns))
        .saturating_add(4 * plan.parameter_count)
        .saturating_add(3usize.saturating_mul(batch).saturating_mul(
            widths.saturating_mul(plan.members.max(1)) + plan.input_dim + input_stage(plan),
        ));
    cells.saturating_mul(4).saturating_add(RUN_OVERHEAD)
}

/// The widths of the layers before the first dense one: a periodic embedding's output and an
/// ensemble's copies of it.
fn input_stage(plan: &Plan) -> usize {
    let embedded = plan.embedded_width();
    let periodic = if plan.periodic.is_some() { embedded } else { 0 };
    let copies = if plan.members > 1 {
        embedded.saturating_mul(plan.members)
    } else {
        0
    };
    periodic.saturating_add(copies)
}

/// What any run holds besides its tables: the training thread's stack, the checkpoint and
/// model documents, the allocator's slack.
const RUN_OVERHEAD: usize = 8 << 20;

/// Seconds per epoch, per dense layer per mini-batch, and per flop, as measured by
/// [`CostModel::measure`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CostModel {
    pub per_epoch: f64,
    pub per_layer_batch: f64,
    pub per_flop: f64,
}

impl CostModel {
    /// Flops of one epoch of a network with `parameters` weights over `train_rows` training
    /// rows and `validation_rows` validation rows.
    pub fn epoch_flops(parameters: usize, train_rows: usize, validation_rows: usize) -> f64 {
        parameters as f64 * (6.0 * train_rows as f64 + 2.0 * validation_rows as f64)
    }

    /// Seconds one epoch of `batches` mini-batches through `layers` dense layers and `flops`
    /// flops takes.
    pub fn seconds_per_epoch(&self, batches: usize, layers: usize, flops: f64) -> f64 {
        self.per_epoch + (batches * layers) as f64 * self.per_layer_batch + flops * self.per_flop
    }

    /// Times three small runs of the real training loop on `pool` — one batch of a tiny
    /// network (the fixed cost of an epoch), many tiny batches (the cost of a batch), a few
    /// wide ones (the arithmetic) — and solves for the three terms. Each run's fastest epoch
    /// counts, so the first epoch's warm-up does not. About 0.1 s in a release build.
    pub fn measure(pool: &rayon::ThreadPool) -> CostModel {
        // (inputs, hidden widths, rows, batch size)
        let runs = [
            time_epoch(pool, 4, &[8], 80, 64),
            time_epoch(pool, 4, &[8], 1280, 8),
            time_epoch(pool, 64, &[256, 256], 2560, 256),
        ];
        // t = E + n·b + f·p for each run: three equations, three unknowns.
        let a: Vec<[f64; 3]> = runs.iter().map(|r| [1.0, r.0, r.1]).collect();
        let t: Vec<f64> = runs.iter().map(|r| r.2).collect();
        let det3 = |m: [[f64; 3]; 3]| {
            m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
                - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
                + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
        };
        let m = [a[0], a[1], a[2]];
        let d = det3(m);
        let solve = |col: usize| {
            let mut mc = m;
            for (row, &ti) in mc.iter_mut().zip(&t) {
                row[col] = ti;
            }
            det3(mc) / d
        };
        CostModel {
            per_epoch: solve(0).max(0.0),
            per_layer_batch: solve(1).max(0.0),
            per_flop: solve(2).max(1e-13),
        }
    }
}

/// One short training run's (dense layers × batches per epoch, flops per epoch, fastest
/// epoch's seconds).
fn time_epoch(
    pool: &rayon::ThreadPool,
    inputs: usize,
    hidden: &[usize],
    rows: usize,
    batch: usize,
) -> (f64, f64, f64) {
    // Any fixed, varied numbers do: the speed does not depend on their values.
    let x = Array2::from_shape_fn((rows, inputs), |(i, j)| {
        ((i * 31 + j * 17) % 97) as f32 / 48.5 - 1.0
    });
    // A typical job: three classes, a dropout layer, a fifth of the rows for validation.
    let labels = (0..rows)
        .map(|i| {
            ClassLabel::Integer((x[[i, 0]] + x[[i, inputs - 1]] > 0.0) as i64 + (i % 2) as i64)
        })
        .collect();
    let data = Samples {
        x,
        targets: Targets::Labels(labels),
    };
    let mut layers: Vec<LayerSpec> = vec![];
    for &u in hidden {
        layers.push(LayerSpec {
            units: Some(u),
            activation: Some(Activation::Relu),
            ..LayerSpec::default()
        });
        layers.push(LayerSpec {
            dropout: Some(0.1),
            ..LayerSpec::default()
        });
    }
    layers.push(LayerSpec::default());
    let spec = TrainSpec {
        layers,
        loss: Loss::CategoricalCrossentropy,
        optimizer: OptimizerSpec::default(),
        epochs: 3,
        batch_size: batch,
        validation_split: 0.2,
        validation_fold: 0,
        early_stopping: None,
        lr_schedule: Schedule::default(),
        seed: 1,
        l1: 0.0,
        l2: 0.0,
        shuffle: true,
        standardize: true,
        standardize_target: false,
        label_smoothing: 0.0,
        numeric_scaling: Default::default(),
        columns: None,
        numeric_bins: None,
        periodic_embedding: None,
        parametric_activation: false,
        ensemble: None,
        imputation: None,
        min_frequency: None,
        max_categories: None,
        class_weight: None,
        sample_weight: None,
    };
    let session = Session::new(&spec, &data, None).expect("the calibration spec fits its data");
    let mut fastest = f64::INFINITY;
    let control = Control::default();
    let _ = session.run(pool, None, &control, &mut |epoch, _| {
        fastest = fastest.min(epoch.elapsed_ms / 1e3);
    });
    let (train, validation) = (session.train_rows(), session.validation_rows());
    let layer_batches = (train.div_ceil(batch) * (hidden.len() + 1)) as f64;
    let flops = CostModel::epoch_flops(session.plan.compute_weights(), train, validation);
    (layer_batches, flops, fastest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_adds_its_two_terms() {
        let m = CostModel {
            per_epoch: 1e-5,
            per_layer_batch: 1e-6,
            per_flop: 1e-10,
        };
        assert_eq!(CostModel::epoch_flops(10, 100, 50), 10.0 * (600.0 + 100.0));
        assert!((m.seconds_per_epoch(8, 2, 1e6) - (1e-5 + 16e-6 + 1e-4)).abs() < 1e-12);
    }

    #[test]
    fn measuring_gives_positive_finite_terms() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let m = CostModel::measure(&pool);
        eprintln!("measured: {m:?}");
        assert!(m.per_epoch.is_finite() && m.per_epoch >= 0.0, "{m:?}");
        assert!(
            m.per_layer_batch.is_finite() && m.per_layer_batch >= 0.0,
            "{m:?}"
        );
        assert!(m.per_flop.is_finite() && m.per_flop > 0.0, "{m:?}");
    }
}
