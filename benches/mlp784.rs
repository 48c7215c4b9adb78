//! Training throughput of the engine on the peers' `mlp784` workload (shared bench/README.md):
//! 60,000 × 784 inputs in [0, 1], 10 classes, 784-256-128-10 relu/relu/softmax, categorical
//! cross-entropy, Adam 1e-3, batch 128, 2 epochs, no standardisation, no validation; at 1 and
//! at 2 threads, 3 repetitions each. Prints the median training samples per second, after the
//! first (warm-up) epoch and over all epochs.
//!
//!     cargo bench --bench mlp784
//!     BENCH_ROWS=10000 BENCH_EPOCHS=2 BENCH_REPS=1 cargo bench --bench mlp784
//!
//! The data imitates the peers' `make_data.py` (class prototypes made of Gaussian strokes,
//! shifted, blended with another class, noised, clipped, quantised to k/255) with our own
//! generator, so it has the same shape and sparsity but not the same numbers; throughput does
//! not depend on them.

mod common;

use std::time::Instant;

use backprop::nn::{ClassLabel, Control, Samples, Session, Targets, TrainSpec};
use common::{env_or, median};
use ndarray::Array2;

const SPEC: &str = r#"{
    "layers": [{"units": 256, "activation": "relu"}, {"units": 128, "activation": "relu"},
               {"units": 10, "activation": "softmax"}],
    "loss": "categorical_crossentropy", "optimizer": {"type": "adam", "learning_rate": 0.001},
    "batch_size": 128, "standardize": false, "validation_split": 0.0, "seed": 0}"#;

/// SplitMix64: small, deterministic, good enough for synthetic pixels.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Standard normal, Box–Muller.
    fn normal(&mut self) -> f32 {
        let u = 1.0 - self.uniform();
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    }
}

const SIDE: usize = 28;

/// Ten 28×28 prototypes of a few Gaussian strokes each, half shared ink, half their own.
fn prototypes(rng: &mut SplitMix) -> Vec<[f32; SIDE * SIDE]> {
    let mut protos = vec![[0f32; SIDE * SIDE]; 10];
    for img in &mut protos {
        for _ in 0..4 + rng.below(4) {
            let (x0, y0) = (6.0 + 16.0 * rng.uniform(), 6.0 + 16.0 * rng.uniform());
            let (dx, dy) = (3.0 * rng.uniform() - 1.5, 3.0 * rng.uniform() - 1.5);
            for t in 0..6 {
                let (cx, cy) = (x0 + t as f32 * dx, y0 + t as f32 * dy);
                for (i, p) in img.iter_mut().enumerate() {
                    let (x, y) = ((i % SIDE) as f32, (i / SIDE) as f32);
                    *p += (-((x - cx).powi(2) + (y - cy).powi(2)) / (2.0 * 1.3f32.powi(2))).exp();
                }
            }
        }
        let max = img.iter().copied().fold(f32::MIN, f32::max);
        for p in img.iter_mut() {
            *p = (*p / max * 1.6).clamp(0.0, 1.0);
            if *p < 0.15 {
                *p = 0.0;
            }
        }
    }
    let mut mean = [0f32; SIDE * SIDE];
    for img in &protos {
        for (m, p) in mean.iter_mut().zip(img) {
            *m += p / 10.0;
        }
    }
    for img in &mut protos {
        for (p, m) in img.iter_mut().zip(&mean) {
            *p = 0.5 * *p + 0.5 * m;
        }
    }
    protos
}

fn mnist_like(rows: usize, seed: u64) -> Samples {
    let mut rng = SplitMix(seed);
    let protos = prototypes(&mut rng);
    let mut x = Array2::<f32>::zeros((rows, SIDE * SIDE));
    let mut labels = Vec::with_capacity(rows);
    for mut row in x.rows_mut() {
        let class = rng.below(10) as usize;
        let other = (class + 1 + rng.below(9) as usize) % 10;
        let (sx, sy) = (rng.below(7) as isize - 3, rng.below(7) as isize - 3);
        let intensity = 0.6 + 0.4 * rng.uniform();
        let mix = 0.6 * rng.uniform();
        for (i, px) in row.iter_mut().enumerate() {
            let (c, r) = ((i % SIDE) as isize, (i / SIDE) as isize);
            // np.roll: the pixel shifted into (r, c) comes from (r − sy, c − sx), wrapping
            let src = (r - sy).rem_euclid(SIDE as isize) as usize * SIDE
                + (c - sx).rem_euclid(SIDE as isize) as usize;
            let v = intensity * protos[class][src] + mix * protos[other][i] + 0.3 * rng.normal();
            *px = (v.clamp(0.0, 1.0) * 255.0).round() / 255.0;
        }
        labels.push(ClassLabel::Integer(class as i64));
    }
    Samples {
        x,
        targets: Targets::Labels(labels),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken from the command line.
    let rows = env_or("BENCH_ROWS", 60_000);
    let epochs = env_or("BENCH_EPOCHS", 2) as u32;
    let reps = env_or("BENCH_REPS", 3);
    let threads: Vec<usize> = vec![1, 2];

    let started = Instant::now();
    let data = mnist_like(rows, 0);
    println!(
        "mlp784: {rows} × 784 synthetic rows, 10 classes, generated in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut spec: TrainSpec = serde_json::from_str(SPEC).expect("the spec parses");
    spec.epochs = epochs;
    let session = Session::new(&spec, &data, None).expect("the spec fits the data");
    drop(data);
    println!(
        "784-256-128-10 relu/relu/softmax, adam 1e-3, batch 128, {epochs} epochs, {reps} reps"
    );

    for &n in &threads {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .expect("a thread pool");
        let (mut warm, mut all) = (vec![], vec![]);
        for rep in 1..=reps {
            let mut line = vec![];
            let mut last = None;
            let outcome = session
                .run(&pool, None, &Control::default(), &mut |rec, _| {
                    line.push(format!("{:.0}", rec.samples_per_second));
                    all.push(rec.samples_per_second);
                    if rec.epoch > 1 {
                        warm.push(rec.samples_per_second);
                    }
                    last = Some((rec.loss, rec.accuracy.unwrap_or(f64::NAN)));
                })
                .expect("training runs");
            let (loss, acc) = last.expect("at least one epoch");
            println!(
                "  {n} thread(s), rep {rep}: samples/s per epoch [{}], {} epochs, final loss {loss:.4}, accuracy {acc:.4}",
                line.join(", "),
                outcome.epochs_run
            );
        }
        println!(
            "{n} thread(s): median {:.0} samples/s after epoch 1, {:.0} over all epochs",
            median(&mut warm),
            median(&mut all)
        );
    }
}
