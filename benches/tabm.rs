//! Training throughput of a TabM ensemble (`ensemble`, issue 25) against its single
//! backbone, in one sitting: a tabular workload of 20,000 rows × 40 standardised inputs,
//! 2 classes, 40-256-256-2 relu/relu/softmax (TabM's default backbone width), Adam 1e-3,
//! batch 256, on the machine's threads; the backbone alone, then with 4, 8 and 32 members,
//! then with a periodic embedding of its 40 inputs (`periodic_embedding`, 8 frequencies:
//! 680 inputs to the first layer) alone and with 4 members, then with parametric
//! activations (`parametric_activation`) alone and with 4 members. Prints each one's median
//! training samples per second over its epochs (every member sees every row: a row counts
//! once however many members train on it) and its ratio to the backbone's.
//!
//!     cargo bench --bench tabm
//!     BENCH_ROWS=5000 BENCH_EPOCHS=2 BENCH_REPS=1 cargo bench --bench tabm

mod common;

use backprop::nn::{ClassLabel, Control, Samples, Session, Targets, TrainSpec};
use common::{env_or, median};
use ndarray::Array2;

/// A deterministic table: 40 numbers per row from a small linear-congruential stream, the
/// class from a fixed nonlinear rule of them.
fn table(rows: usize) -> Samples {
    let mut s: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        s = s
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    };
    let x = Array2::from_shape_fn((rows, 40), |_| next());
    let labels = x
        .rows()
        .into_iter()
        .map(|r| {
            let v = r[0] * r[1] + (3.0 * r[2]).sin() - r[3].abs() + 0.1 * r.sum();
            ClassLabel::Integer(i64::from(v > 0.0))
        })
        .collect();
    Samples {
        x,
        targets: Targets::Labels(labels),
    }
}

fn main() {
    let rows = env_or("BENCH_ROWS", 20_000);
    let epochs = env_or("BENCH_EPOCHS", 3) as u32;
    let reps = env_or("BENCH_REPS", 3);
    let data = table(rows);
    let pool = rayon::ThreadPoolBuilder::new()
        .build()
        .expect("a thread pool");
    println!(
        "tabm: {rows} × 40, 40-256-256-2, adam 1e-3, batch 256, {epochs} epochs, {reps} reps, {} threads",
        pool.current_num_threads()
    );
    let mut backbone = f64::NAN;
    for (members, periodic, parametric) in [
        (1u32, false, false),
        (4, false, false),
        (8, false, false),
        (32, false, false),
        (1, true, false),
        (4, true, false),
        (1, false, true),
        (4, false, true),
    ] {
        let mut spec: TrainSpec = serde_json::from_value(serde_json::json!({
            "layers": [{"units": 256, "activation": "relu"}, {"units": 256, "activation": "relu"},
                       {"units": 2, "activation": "softmax"}],
            "loss": "categorical_crossentropy",
            "optimizer": {"type": "adam", "learning_rate": 0.001},
            "batch_size": 256, "validation_split": 0.0, "seed": 0,
        }))
        .expect("the spec parses");
        spec.epochs = epochs;
        spec.ensemble = (members > 1).then_some(members);
        if periodic {
            spec.periodic_embedding = Some(Default::default());
        }
        spec.parametric_activation = parametric;
        let session = Session::new(&spec, &data, None).expect("the spec fits the data");
        let mut all = vec![];
        for _ in 0..reps {
            session
                .run(&pool, None, &Control::default(), &mut |rec, _| {
                    all.push(rec.samples_per_second)
                })
                .expect("training runs");
        }
        let m = median(&mut all);
        if members == 1 && !periodic && !parametric {
            backbone = m;
        }
        println!(
            "members {members:>2}{}{}: median {m:.0} samples/s, {:.2} of the backbone's",
            if periodic { ", periodic 8" } else { "" },
            if parametric { ", parametric" } else { "" },
            m / backbone
        );
    }
}
