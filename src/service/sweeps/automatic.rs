//! The automatic mode's choices for a dataset: the loss from its target, the base spec, the
//! search space, successive halving's first rung and the metric trials are compared on.

use super::*;

pub use crate::nn::run::spec::{Task, task_of};

/// What the automatic mode chooses for a dataset: the base spec, the space, successive
/// halving's first rung, and the metric trials are compared on.
pub struct Automatic {
    pub base: Value,
    pub space: Value,
    pub halving: Halving,
    pub metric: &'static str,
    pub folds: u32,
}

/// The automatic mode for a dataset of `rows` rows whose targets look like `target`: the
/// loss from the target (regression targets standardised), numeric inputs robustly scaled
/// and smooth-clipped, a TabM ensemble of 4 members, a search over 0 to 2 hidden layers of
/// 16 to 256 units (some with dropout), the learning rate, the batch size, L2 and
/// piecewise-linear numeric bins, with early stopping on the validation loss and the best
/// weights restored.
///
/// On small data one validation split of a few dozen rows ranks trials mostly by chance,
/// so trials are cross-validated there (5 folds up to 2,000 training rows, 3 up to 10,000)
/// and the chosen one refitted on every row.
///
/// Sized to the data: small sets get many epochs (their epochs are cheap and their
/// gradients few), large ones fewer; batch sizes leave at least 8 steps an epoch. Trials are
/// compared on the validation split's unpenalised log loss (RMSE for regression): the
/// epoch history's `val_loss` includes the L2 penalty, which would favour the unregularised.
pub fn automatic_spec(
    target: &TargetShape,
    rows: usize,
    seed: u64,
    task: Option<Task>,
) -> Result<Automatic> {
    let task = task.unwrap_or_else(|| task_of(target, rows));
    let loss = match (task, target) {
        (Task::Classification, TargetShape::Labels { classes }) if classes.len() == 2 => {
            "binary_crossentropy"
        }
        (Task::Classification, TargetShape::Labels { .. }) => "categorical_crossentropy",
        (
            Task::Classification,
            TargetShape::Values {
                width: 1,
                integer_classes: Some(c),
                ..
            },
        ) => {
            if c.len() <= 2 {
                "binary_crossentropy"
            } else {
                "categorical_crossentropy"
            }
        }
        (Task::Classification, TargetShape::Values { .. }) => {
            return Err(Error::invalid(
                "/task",
                "classification needs a target of classes: text labels, or one column of at \
                 most 1000 distinct whole numbers",
            ));
        }
        (Task::Regression, TargetShape::Labels { .. }) => {
            return Err(Error::invalid(
                "/task",
                "regression needs a target of numbers; this one holds text labels",
            ));
        }
        (Task::Regression, TargetShape::Values { .. }) => "mse",
    };
    let regression = loss == "mse";
    // The 80 % the trials train on.
    let train_rows = rows * 4 / 5;
    let epochs: u32 = match train_rows {
        0..=1_000 => 180,
        1_001..=10_000 => 90,
        _ => 45,
    };
    let batch_sizes: Vec<usize> = {
        let fits: Vec<usize> = [16, 32, 64, 128, 256]
            .into_iter()
            .filter(|&b| b <= (train_rows / 8).max(32))
            .collect();
        fits[fits.len().saturating_sub(4)..].to_vec()
    };
    let dense = |units: usize| json!({"units": units, "activation": "relu"});
    let dropout = |rate: f64| json!({"dropout": rate});
    let mut base = json!({
        "layers": [dense(64), {}],
        "loss": loss,
        "optimizer": {"type": "adam", "learning_rate": 0.001},
        "epochs": epochs,
        "batch_size": batch_sizes[0],
        "validation_split": 0.2,
        "early_stopping": {"monitor": "val_loss", "patience": epochs / 9,
                           "restore_best_weights": true},
        "seed": seed,
    });
    if regression {
        base["standardize_target"] = json!(true);
    }
    // Robust scaling with smooth clipping (RealMLP), and piecewise-linear bins searched:
    // chosen on the tabular suite's tuning tables (bench/tabular_suite.py --tuning, seeds
    // 0–2), where together they beat the plain standardised inputs on 7 of 7 tables (mean
    // +0.027 of R² or accuracy; +0.06 on OFP's counts, +0.10 on Star's scores).
    base["numeric_scaling"] = json!("robust");
    // A TabM ensemble of 4 members on one backbone (Gorishniy et al., 2025): on the same
    // tuning tables and seeds, against these defaults with one network, better on 5 of 7
    // tables (mean +0.005; +0.013 on Wages, +0.010 on Car; −0.006 on RetSchool) for about
    // twice the sweep's time (Car: 30 → 63 s).
    base["ensemble"] = json!(4);
    let space = json!({
        "/layers": {"choice": [
            [{}],
            [dense(32), {}],
            [dense(64), {}],
            [dense(128), {}],
            [dense(256), {}],
            [dense(256), dropout(0.3), {}],
            [dense(32), dense(16), {}],
            [dense(64), dense(32), {}],
            [dense(128), dense(64), {}],
            [dense(256), dropout(0.2), dense(128), dropout(0.2), {}],
        ]},
        "/optimizer/learning_rate": {"log_uniform": [3e-4, 3e-2]},
        "/batch_size": {"choice": batch_sizes},
        // Up to strong: on small data a wide network with a heavy penalty trained long
        // generalises better than a light one stopped early.
        "/l2": {"choice": [0, 1e-4, 1e-3, 3e-3, 1e-2, 3e-2]},
        // Each numeric column as itself (robustly scaled) or as 8 to 32 quantile bins.
        "/numeric_bins": {"choice": [null, 8, 16, 32]},
    });
    Ok(Automatic {
        base,
        space,
        // Rungs at 1/9, 1/3 and all of the epochs.
        halving: Halving {
            min_epochs: epochs / 9,
            eta: 3,
        },
        metric: if regression {
            "val_rmse"
        } else {
            "val_log_loss"
        },
        folds: match train_rows {
            0..=2_000 => 5,
            2_001..=10_000 => 3,
            _ => 1,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbers(classes: Option<Vec<i64>>) -> TargetShape {
        TargetShape::Values {
            width: 1,
            integer_classes: classes,
            unit_interval: false,
        }
    }

    #[test]
    fn few_whole_numbers_are_classes_and_many_are_numbers() {
        let digits = numbers(Some((0..10).collect()));
        assert_eq!(task_of(&digits, 1797), Task::Classification);
        assert_eq!(
            task_of(&numbers(Some(vec![0, 1, 2])), 178),
            Task::Classification
        );
        assert_eq!(
            task_of(&numbers(Some(vec![1, 2])), 10),
            Task::Classification
        );
        // An age in years: 70 values over 300 rows.
        assert_eq!(
            task_of(&numbers(Some((18..88).collect())), 300),
            Task::Regression
        );
        assert_eq!(
            task_of(&numbers(Some((0..150).collect())), 100_000),
            Task::Regression
        );
        assert_eq!(task_of(&numbers(None), 20_000), Task::Regression);
        assert_eq!(task_of(&digits, 60), Task::Regression);
    }

    #[test]
    fn the_task_picks_the_loss_and_a_wrong_one_is_refused_at_task() {
        let loss = |t: &TargetShape, task| {
            automatic_spec(t, 1797, 1, task).map(|a| a.base["loss"].as_str().unwrap().to_owned())
        };
        let digits = numbers(Some((0..10).collect()));
        assert_eq!(loss(&digits, None).unwrap(), "categorical_crossentropy");
        assert_eq!(loss(&digits, Some(Task::Regression)).unwrap(), "mse");
        assert_eq!(
            loss(&numbers(Some(vec![3, 7])), None).unwrap(),
            "binary_crossentropy"
        );
        let Err(Error::Invalid(e)) = loss(&numbers(None), Some(Task::Classification)) else {
            panic!("refused")
        };
        assert_eq!(e[0].pointer, "/task");
        let labels = TargetShape::Labels {
            classes: vec![crate::nn::ClassLabel::Text("a".into())],
        };
        assert!(loss(&labels, Some(Task::Regression)).is_err());
    }
}
