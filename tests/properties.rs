//! Property tests of the engine's invariants (proptest, a bounded number of cases each so
//! `cargo test` stays quick; `PROPTEST_CASES=5000 cargo test --test properties` digs deeper):
//!
//! - a model exported to its JSON document and imported back predicts bit for bit the same;
//! - softmax rows are in [0, 1] and sum to 1 for any finite logits, huge ones included;
//! - standardisation round-trips, and constant columns pass through as zeros;
//! - class labels (numbers and strings) map to output units and back;
//! - a job spec `POST /v1/jobs` accepts trains to the end or diverges, never failing later for
//!   a reason validation could have seen (`backprop::fuzzing::job_accepted` runs the handler's
//!   validation, then what the worker does).

use backprop::nn::Activation;
use backprop::nn::math::network::{Dense, Layer, Network};
use backprop::nn::portable::model::Model;
use backprop::nn::portable::preprocess::{OutputEncoding, Standardizer};
use backprop::nn::{ClassLabel, Loss, ModelDocument};
use ndarray::{Array1, Array2, Axis};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(64),
        ..ProptestConfig::default()
    }
}

fn activation() -> impl Strategy<Value = Activation> {
    (0..Activation::ALL.len()).prop_map(|i| {
        serde_json::from_value(json!(Activation::ALL[i])).expect("a listed activation")
    })
}

/// Finite f32s of every kind: ordinary, tiny, subnormal, huge, negative zero.
fn weight() -> impl Strategy<Value = f32> {
    prop_oneof![
        6 => -4.0f32..4.0,
        1 => prop::num::f32::NORMAL | prop::num::f32::SUBNORMAL | prop::num::f32::ZERO,
        1 => Just(-0.0f32),
    ]
}

/// A random network: 1 to 3 dense layers, maybe with dropout between them.
fn network() -> impl Strategy<Value = Network<f32>> {
    (
        1usize..5,
        prop::collection::vec(
            (
                1usize..5,
                activation(),
                0.0f32..2.0,
                prop::option::of(0.0f32..0.9),
            ),
            1..4,
        ),
    )
        .prop_flat_map(|(input_dim, shapes)| {
            let mut width = input_dim;
            let mut layers = vec![];
            for (units, act, alpha, dropout) in shapes {
                let w = prop::collection::vec(weight(), width * units);
                let b = prop::collection::vec(weight(), units);
                layers.push((width, units, act, alpha, dropout, w, b));
                width = units;
            }
            let n = layers.len();
            let layers: Vec<_> = layers
                .into_iter()
                .enumerate()
                .map(|(i, (fan_in, units, act, alpha, dropout, w, b))| {
                    (w, b).prop_map(move |(w, b)| {
                        let dense = Layer::Dense(Dense {
                            w: Array2::from_shape_vec((fan_in, units), w).expect("shape"),
                            b: Array1::from(b),
                            activation: act,
                            // Only leaky_relu and elu keep an alpha in the document.
                            alpha: if matches!(act, Activation::LeakyRelu | Activation::Elu) {
                                alpha
                            } else {
                                act.default_alpha()
                            },
                        });
                        match dropout {
                            Some(r) if i + 1 < n => vec![dense, Layer::Dropout(r)],
                            _ => vec![dense],
                        }
                    })
                })
                .collect();
            (Just(input_dim), layers)
        })
        .prop_map(|(input_dim, layers)| Network {
            input_dim,
            layers: layers.into_iter().flatten().collect(),
        })
}

fn label() -> impl Strategy<Value = ClassLabel> {
    prop_oneof![
        any::<i64>().prop_map(ClassLabel::Integer),
        "[a-z0-9 ]{1,4}"
            .prop_map(|s| ClassLabel::Text(s.trim().to_owned()))
            .prop_filter("a label", |l| l != &ClassLabel::Text(String::new())),
    ]
}

fn model() -> impl Strategy<Value = Model> {
    network().prop_flat_map(|network| {
        let d = network.input_dim;
        let out = network.output_dim();
        let standardizer = prop::option::of(
            (
                prop::collection::vec(weight(), d),
                prop::collection::vec(1e-6f32..1e6, d),
                prop::option::of(prop::collection::vec(any::<bool>(), d)),
            )
                .prop_map(|(mean, std, clip)| Standardizer {
                    mean,
                    std,
                    clip: clip.unwrap_or_default(),
                }),
        );
        let classes = prop::collection::btree_set(label(), if out == 1 { 2 } else { out });
        let encoding = (any::<bool>(), classes).prop_map(move |(numbers, c)| {
            let classes: Vec<ClassLabel> = c.into_iter().collect();
            match (numbers, out) {
                (true, _) => OutputEncoding::Values,
                (false, 1) => OutputEncoding::Binary { classes },
                (false, _) => OutputEncoding::Categorical { classes },
            }
        });
        (Just(network), standardizer, encoding).prop_map(|(network, standardizer, encoding)| {
            Model {
                feature_names: Some((0..network.input_dim).map(|j| format!("f{j}")).collect()),
                network,
                standardizer,
                encoding,
                loss: Some(Loss::Mse),
                encoder: None,
                target_names: Some(vec!["y".into()]),
            }
        })
    })
}

fn bits(a: &Array2<f32>) -> Vec<u32> {
    a.iter().map(|v| v.to_bits()).collect()
}

proptest! {
    #![proptest_config(config())]

    /// Export is the document `GET /v1/models/{id}/export` sends; import what `POST
    /// /v1/models` reads. Every f32 survives JSON, so predictions agree to the bit.
    #[test]
    fn export_then_import_predicts_bit_for_bit(
        m in model(),
        rows in prop::collection::vec(prop::collection::vec(-100.0f32..100.0, 1..5), 1..6),
    ) {
        let json = serde_json::to_string(&m.to_document()).expect("serialises");
        let doc: ModelDocument = serde_json::from_str(&json).expect("reads back");
        let back = Model::from_document(&doc).expect("an exported model imports");
        prop_assert_eq!(&back, &m);
        let d = m.input_dim();
        let x = Array2::from_shape_fn((rows.len(), d), |(i, j)| rows[i][j % rows[i].len()]);
        let (p, q) = (m.predict(x.view()), back.predict(x.view()));
        prop_assert_eq!(bits(&p.outputs), bits(&q.outputs));
        prop_assert_eq!(p.labels, q.labels);
    }

    /// softmax(z)_i = e^(z_i − max z) / Σ e^(z_j − max z): in [0, 1], summing to 1, even when
    /// the logits are ±1e30 or anywhere in f32's range.
    #[test]
    fn softmax_rows_are_distributions(
        z in prop::collection::vec(
            prop::collection::vec(
                prop_oneof![
                    -50.0f32..50.0,
                    Just(1e30f32), Just(-1e30f32), Just(f32::MAX), Just(f32::MIN),
                    prop::num::f32::NORMAL | prop::num::f32::SUBNORMAL | prop::num::f32::ZERO,
                ],
                1..12,
            ),
            1..4,
        ),
    ) {
        let k = z[0].len();
        let z = Array2::from_shape_fn((z.len(), k), |(i, j)| z[i][j % z[i].len()]);
        let mut a = Array2::<f32>::zeros(z.dim());
        Activation::Softmax.forward(0.0, z.view(), a.view_mut());
        let z64 = z.mapv(f64::from);
        let mut a64 = Array2::<f64>::zeros(z.dim());
        Activation::Softmax.forward(0.0, z64.view(), a64.view_mut());
        for row in a.rows() {
            prop_assert!(row.iter().all(|v| (0.0..=1.0).contains(v)), "{row}");
            prop_assert!((row.sum() - 1.0).abs() <= 1e-6 * k as f32, "sum {}", row.sum());
        }
        for row in a64.rows() {
            prop_assert!(row.iter().all(|v| (0.0..=1.0).contains(v)), "{row}");
            prop_assert!((row.sum() - 1.0).abs() <= 1e-14 * k as f64, "sum {}", row.sum());
        }
    }

    /// x → (x − mean) / std → · std + mean gives x back, to f32 rounding; a constant column
    /// gets std 1 and standardises to exactly 0.
    #[test]
    fn standardisation_round_trips(
        cols in prop::collection::vec(
            (any::<bool>(), -1e6f32..1e6, prop::collection::vec(-1e6f32..1e6, 20)),
            1..5,
        ),
        rows in 1usize..20,
    ) {
        let x = Array2::from_shape_fn((rows, cols.len()), |(i, j)| {
            let (constant, c, v) = &cols[j];
            if *constant { *c } else { v[i] }
        });
        let s = Standardizer::fit(x.view());
        prop_assert!(s.std.iter().all(|&v| v.is_finite() && v > 0.0));
        let t = s.transform(x.view());
        let back = s.inverse(t.view());
        for (j, col) in x.axis_iter(Axis(1)).enumerate() {
            let scale = s.mean[j].abs() + s.std[j];
            for (i, &v) in col.iter().enumerate() {
                let err = (back[[i, j]] - v).abs();
                prop_assert!(err <= 1e-6 * (scale + v.abs()) + 1e-30, "row {i} col {j}: {v} → {}", back[[i, j]]);
            }
            if col.iter().all(|&v| v == col[0]) {
                prop_assert_eq!(s.std[j], 1.0);
                prop_assert!(t.column(j).iter().all(|&v| v == 0.0));
            } else if s.std[j] > 1e-2 * (s.mean[j].abs() + 1.0) {
                // (when the spread is tiny next to the mean, f32 cannot centre it exactly)
                let n = rows as f64;
                let m = t.column(j).iter().map(|&v| f64::from(v)).sum::<f64>() / n;
                let var = t.column(j).iter().map(|&v| (f64::from(v) - m).powi(2)).sum::<f64>() / n;
                prop_assert!(m.abs() < 1e-3 && (var - 1.0).abs() < 1e-3, "mean {m} var {var}");
            }
        }
    }

    /// Labels → one-hot (or 0/1) → labels is the identity, for numbers and strings alike,
    /// and the classes survive JSON (`1` and `"1"` stay different labels).
    #[test]
    fn labels_map_to_units_and_back(
        classes in prop::collection::btree_set(label(), 2..6),
        picks in prop::collection::vec(any::<prop::sample::Index>(), 1..20),
        binary in any::<bool>(),
    ) {
        let mut classes: Vec<ClassLabel> = classes.into_iter().collect();
        if binary {
            classes.truncate(2);
        }
        let labels: Vec<ClassLabel> = picks.iter().map(|p| p.get(&classes).clone()).collect();
        let t = backprop::nn::Targets::Labels(labels.clone());
        let found = t.classes().expect("labels have classes");
        prop_assert!(found.windows(2).all(|w| w[0] < w[1]));
        prop_assert!(found.iter().all(|c| classes.contains(c)));
        let encoding = if binary {
            OutputEncoding::Binary { classes: classes.clone() }
        } else {
            OutputEncoding::Categorical { classes: classes.clone() }
        };
        let y = encoding.encode(&labels).expect("known classes encode");
        prop_assert_eq!(y.ncols(), if binary { 1 } else { classes.len() });
        prop_assert_eq!(encoding.labels(y.view()), Some(labels));
        let json = serde_json::to_string(&classes).expect("serialises");
        let back: Vec<ClassLabel> = serde_json::from_str(&json).expect("reads back");
        prop_assert_eq!(back, classes);
    }
}

// ---- any valid spec trains or is refused before queueing ----

fn pick<T: Clone + std::fmt::Debug + 'static>(items: &'static [T]) -> impl Strategy<Value = T> {
    prop::sample::select(items)
}

fn optional(v: impl Strategy<Value = Value>) -> impl Strategy<Value = Value> {
    prop_oneof![Just(Value::Null), v]
}

fn layer(last: bool) -> impl Strategy<Value = Value> {
    let dense = (
        if last {
            optional((1u32..5).prop_map(|u| json!(u))).boxed()
        } else {
            (1u32..9).prop_map(|u| json!(u)).boxed()
        },
        optional(activation().prop_map(|a| json!(a))),
        optional((0.0f32..0.5).prop_map(|a| json!(a))),
        optional(
            pick(&[
                "glorot_uniform",
                "glorot_normal",
                "he_uniform",
                "he_normal",
                "zeros",
                "ones",
            ])
            .prop_map(|i| json!(i)),
        ),
        optional(pick(&["zeros", "ones", "glorot_uniform"]).prop_map(|i| json!(i))),
        optional((0.0f32..0.1).prop_map(|v| json!(v))),
    )
        .prop_map(|(units, activation, alpha, kernel, bias, l2)| {
            let mut l = json!({"units": units});
            // alpha only where it means something, so that more specs pass validation
            let takes_alpha = matches!(activation.as_str(), Some("leaky_relu" | "elu"));
            for (k, v) in [
                ("activation", activation),
                ("kernel_initializer", kernel),
                ("bias_initializer", bias),
                ("l2", l2),
            ] {
                if !v.is_null() {
                    l[k] = v;
                }
            }
            if takes_alpha && !alpha.is_null() {
                l["alpha"] = alpha;
            }
            l
        });
    if last {
        dense.boxed()
    } else {
        prop_oneof![4 => dense, 1 => (0.0f32..0.9).prop_map(|r| json!({"dropout": r}))].boxed()
    }
}

fn optimizer() -> impl Strategy<Value = Value> {
    let lr = prop_oneof![4 => 1e-4f32..0.5, 1 => 1.0f32..1e6];
    prop_oneof![
        pick(&["sgd", "rmsprop", "adagrad", "adadelta", "adam", "adamw"]).prop_map(|o| json!(o)),
        (
            pick(&["sgd", "rmsprop", "adagrad", "adadelta", "adam", "adamw"]),
            lr,
            optional((0.1f32..10.0).prop_map(|c| json!(c)))
        )
            .prop_map(|(t, lr, clip)| {
                let mut o = json!({"type": t, "learning_rate": lr});
                if !clip.is_null() {
                    o["clipnorm"] = clip;
                }
                match t {
                    "sgd" => {
                        o["momentum"] = json!(0.9);
                        o["nesterov"] = json!(true);
                    }
                    "adamw" => o["weight_decay"] = json!(0.01),
                    "adagrad" => o["initial_accumulator_value"] = json!(0.1),
                    "rmsprop" => o["rho"] = json!(0.8),
                    _ => {}
                }
                o
            }),
    ]
}

fn monitor() -> impl Strategy<Value = Value> {
    optional(pick(&backprop::nn::run::train::MONITORS).prop_map(|m| json!(m)))
}

fn schedule() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({"type": "constant"})),
        (0.1f32..0.9, 1u32..4).prop_map(|(d, e)| json!({"type": "step_decay", "drop": d, "every": e})),
        (0.1f32..0.99, 0.5f32..3.0).prop_map(|(r, e)| json!({"type": "exponential_decay", "decay_rate": r, "decay_epochs": e})),
        (optional((1u32..6).prop_map(|e| json!(e))), 0.0f32..0.5, 0u32..3)
            .prop_map(|(d, a, w)| json!({"type": "cosine_decay", "decay_epochs": d, "alpha": a, "warmup_epochs": w})),
        (monitor(), 0.1f32..0.9, 0u32..3, 0u32..2)
            .prop_map(|(m, f, p, c)| json!({"type": "reduce_on_plateau", "monitor": m, "factor": f, "patience": p, "cooldown": c, "min_lr": 1e-6})),
        (0.05f32..0.95, 1.0f32..50.0, 1.0f32..1e5)
            .prop_map(|(p, d, f)| json!({"type": "one_cycle", "pct_start": p, "div_factor": d, "final_div_factor": f})),
    ]
}

/// An inline dataset: one of the target shapes the JSON reader takes.
fn dataset() -> impl Strategy<Value = Value> {
    (1usize..24, 1usize..4, 0usize..6).prop_flat_map(|(rows, width, kind)| {
        let features = prop::collection::vec(prop::collection::vec(-10.0f64..10.0, width), rows);
        let targets = match kind {
            0 => prop::collection::vec(pick(&["a", "b", "c"]).prop_map(|s| json!(s)), rows).boxed(),
            1 => prop::collection::vec((0i64..2).prop_map(|k| json!(k)), rows).boxed(),
            2 => prop::collection::vec((0i64..4).prop_map(|k| json!(k)), rows).boxed(),
            3 => prop::collection::vec(any::<bool>().prop_map(|b| json!(b)), rows).boxed(),
            4 => prop::collection::vec(
                prop::collection::vec(0.0f64..1.0, 2).prop_map(|v| json!(v)),
                rows,
            )
            .boxed(),
            _ => prop::collection::vec((-100.0f64..100.0).prop_map(|v| json!(v)), rows).boxed(),
        };
        (features, targets).prop_map(|(f, t)| json!({"features": f, "targets": t}))
    })
}

fn job() -> impl Strategy<Value = Value> {
    (
        (dataset(), prop::collection::vec(layer(false), 0..3), layer(true)),
        pick(&["binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy", "mse", "mae", "huber"]),
        optimizer(),
        (1u32..4, prop_oneof![1usize..8, 8usize..100]),
        prop_oneof![2 => Just(0.0f32), 1 => 0.05f32..0.6],
        optional((monitor(), 0u32..3, 0.0f32..0.1, any::<bool>(), 0u32..3).prop_map(|(m, p, d, r, s)| {
            json!({"monitor": m, "patience": p, "min_delta": d, "restore_best_weights": r, "start_from_epoch": s})
        })),
        schedule(),
        (prop_oneof![Just(0.0f32), 0.0f32..0.01], any::<bool>(), any::<bool>(), any::<u64>()),
    )
        .prop_map(|((data, mut layers, last), loss, opt, (epochs, batch), split, es, sched, (l1, shuffle, standardize, seed))| {
            layers.push(last);
            let mut j = json!({
                "dataset": data, "layers": layers, "loss": loss, "optimizer": opt,
                "epochs": epochs, "batch_size": batch, "validation_split": split,
                "lr_schedule": sched, "l1": l1, "shuffle": shuffle, "standardize": standardize,
                "seed": seed >> 11,
            });
            if !es.is_null() {
                j["early_stopping"] = es;
            }
            j
        })
}

/// Validation is the gate: an accepted job trains (to the end, or until it diverges), and the
/// model it makes exports and imports again. At least a tenth of the generated jobs must be
/// accepted, or the property says little.
#[test]
fn a_valid_spec_trains_or_is_refused_before_queueing() {
    let cases = config().cases;
    let mut runner = TestRunner::new(Config {
        cases,
        ..Config::default()
    });
    let accepted = std::cell::Cell::new(0u32);
    runner
        .run(&job(), |body| {
            let bytes = serde_json::to_vec(&body).expect("serialises");
            if backprop::fuzzing::job_accepted(&bytes) {
                accepted.set(accepted.get() + 1);
            }
            Ok(())
        })
        .unwrap();
    eprintln!("{} of {cases} generated jobs accepted", accepted.get());
    assert!(
        accepted.get() * 10 >= cases,
        "only {} of {cases} generated jobs were accepted",
        accepted.get()
    );
}
