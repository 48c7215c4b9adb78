//! Evaluating a model on labelled rows: the classification metrics (accuracy, log loss, the
//! confusion matrix, per-class precision/recall/F1, ROC AUC), the regression metrics (R², MAE,
//! RMSE) and seeded permutation importance per raw input column. Definitions follow
//! scikit-learn's `metrics` (tests/interop/evaluate.py checks the numbers against it). Pure
//! computation on a [`Model`] and a raw table: nothing here knows where the rows came from.

use ndarray::{Array2, ArrayView2, Axis};
use serde::Serialize;

use super::model::Model;
use super::preprocess::{ClassLabel, OutputEncoding, Targets};
use super::tabular::{RawColumn, TransformError};
use crate::nn::math::rng::{Rng, Stream};

/// Times each column is shuffled for permutation importance (scikit-learn's default is 5).
pub const IMPORTANCE_REPEATS: usize = 5;
/// Permutation importance scores at most this many rows (a seeded sample of larger sets),
/// so its cost (columns × repeats forward passes) stays bounded.
pub const IMPORTANCE_MAX_ROWS: usize = 10_000;

/// One class's row of the classification report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassReport {
    pub label: ClassLabel,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: u64,
}

/// Rows are true labels, columns predicted labels, both in `labels`' order.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConfusionMatrix {
    pub labels: Vec<ClassLabel>,
    pub matrix: Vec<Vec<u64>>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Classification {
    pub accuracy: f64,
    pub log_loss: f64,
    pub confusion_matrix: ConfusionMatrix,
    pub per_class: Vec<ClassReport>,
    /// Binary: the AUC of the second class's probability; more classes: the macro average of
    /// one-vs-rest AUCs. `None` when a class has no row (the AUC is undefined).
    pub roc_auc: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Regression {
    /// Averaged over outputs (scikit-learn's `uniform_average`).
    pub r2: f64,
    pub mae: f64,
    /// The mean of each output's RMSE.
    pub rmse: f64,
}

/// How much the score falls when one raw column's values are shuffled among the rows.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Importance {
    pub column: String,
    /// Mean over the repeats of (score − score with the column shuffled); the score is
    /// accuracy for a classifier, R² for a regressor.
    pub importance: f64,
    pub std: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "task", rename_all = "snake_case")]
pub enum Report {
    Classification(Classification),
    Regression(Regression),
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Evaluation {
    pub rows: usize,
    #[serde(flatten)]
    pub report: Report,
    pub permutation_importance: Vec<Importance>,
}

/// The truth a model is scored against.
#[derive(Clone)]
enum Truth {
    Classes(Vec<usize>),
    Values(Array2<f32>),
}

/// Evaluates `model` on the raw table `x` (described by `columns`, in the model's raw column
/// order) against `targets`. Errors say what does not fit (a class the model does not know,
/// a missing cell for a model that takes complete numbers).
pub fn evaluate_model(
    model: &Model,
    x: ArrayView2<f32>,
    columns: &[RawColumn],
    targets: &Targets,
    seed: u64,
) -> Result<Evaluation, String> {
    evaluate_parts(
        &[Part {
            model,
            x,
            columns,
            targets,
        }],
        seed,
    )
}

/// One model and rows it did not train on, for [`evaluate_parts`].
pub struct Part<'a> {
    pub model: &'a Model,
    pub x: ArrayView2<'a, f32>,
    pub columns: &'a [RawColumn],
    pub targets: &'a Targets,
}

/// Scores several models, each on its own rows, as one: the out-of-fold evaluation of a
/// cross-validated model (each fold's model on the fold it held out). The report is over
/// every part's rows together; permutation importance shuffles a column within each part
/// (each part's model predicts its own rows) and scores them together. The parts' models
/// must encode their outputs alike (the same classes in the same order). One part is
/// [`evaluate_model`].
pub fn evaluate_parts(parts: &[Part<'_>], seed: u64) -> Result<Evaluation, String> {
    let Some(first) = parts.first() else {
        return Err("nothing to score".into());
    };
    let encoding = &first.model.encoding;
    let width = first.model.network.output_dim();
    if parts
        .iter()
        .any(|p| &p.model.encoding != encoding || p.model.network.output_dim() != width)
    {
        return Err("the folds' models encode their outputs differently (a class missing from one fold's training rows)".into());
    }
    let truths: Vec<Truth> = parts
        .iter()
        .map(|p| truth(encoding, p.targets, width))
        .collect::<Result<_, _>>()?;
    let outputs = |xs: &[ArrayView2<f32>]| -> Result<Array2<f32>, String> {
        let mut outs = Vec::with_capacity(parts.len());
        for (p, x) in parts.iter().zip(xs) {
            outs.push(
                p.model
                    .predict(encode(p.model, *x, p.columns)?.view())
                    .outputs,
            );
        }
        let views: Vec<_> = outs.iter().map(|o| o.view()).collect();
        ndarray::concatenate(Axis(0), &views).map_err(|e| e.to_string())
    };
    let all_x: Vec<ArrayView2<f32>> = parts.iter().map(|p| p.x).collect();
    let all_truth = join_truths(&truths);
    let report = score_report(encoding, outputs(&all_x)?.view(), &all_truth);
    let total: usize = parts.iter().map(|p| p.x.nrows()).sum();
    // Importance on at most IMPORTANCE_MAX_ROWS rows, each part's share of them.
    let samples: Vec<Option<(Array2<f32>, Truth)>> = parts
        .iter()
        .zip(&truths)
        .enumerate()
        .map(|(i, (p, t))| {
            let cap = if parts.len() == 1 {
                IMPORTANCE_MAX_ROWS
            } else {
                (IMPORTANCE_MAX_ROWS * p.x.nrows()).div_ceil(total.max(1))
            };
            (p.x.nrows() > cap).then(|| {
                let mut rows: Vec<usize> = (0..p.x.nrows()).collect();
                let key: &[u64] = if i == 0 {
                    &[u64::MAX]
                } else {
                    &[u64::MAX, i as u64]
                };
                Rng::derive(seed, Stream::Importance, key).shuffle(&mut rows);
                rows.truncate(cap);
                rows.sort_unstable();
                let t = match t {
                    Truth::Classes(c) => Truth::Classes(rows.iter().map(|&i| c[i]).collect()),
                    Truth::Values(v) => Truth::Values(v.select(Axis(0), &rows)),
                };
                (p.x.select(Axis(0), &rows), t)
            })
        })
        .collect();
    let xs: Vec<ArrayView2<f32>> = parts
        .iter()
        .zip(&samples)
        .map(|(p, s)| s.as_ref().map_or(p.x, |(x, _)| x.view()))
        .collect();
    let ts: Vec<Truth> = truths
        .iter()
        .zip(&samples)
        .map(|(t, s)| s.as_ref().map_or_else(|| t.clone(), |(_, t)| t.clone()))
        .collect();
    let truth = join_truths(&ts);
    let base = if samples.iter().all(Option::is_none) {
        headline(&report)
    } else {
        headline(&score_report(encoding, outputs(&xs)?.view(), &truth))
    };
    let columns = first.columns;
    let mut permutation_importance = Vec::with_capacity(columns.len());
    let mut shuffled: Vec<Array2<f32>> = xs.iter().map(|x| x.to_owned()).collect();
    for (j, col) in columns.iter().enumerate() {
        let mut drops = Vec::with_capacity(IMPORTANCE_REPEATS);
        for r in 0..IMPORTANCE_REPEATS {
            for (i, (sh, x)) in shuffled.iter_mut().zip(&xs).enumerate() {
                let mut order: Vec<usize> = (0..x.nrows()).collect();
                let key: &[u64] = if i == 0 {
                    &[j as u64, r as u64]
                } else {
                    &[j as u64, r as u64, i as u64]
                };
                Rng::derive(seed, Stream::Importance, key).shuffle(&mut order);
                for (k, &from) in order.iter().enumerate() {
                    sh[[k, j]] = x[[from, j]];
                }
            }
            let views: Vec<ArrayView2<f32>> = shuffled.iter().map(|s| s.view()).collect();
            drops.push(base - headline(&score_report(encoding, outputs(&views)?.view(), &truth)));
        }
        for (sh, x) in shuffled.iter_mut().zip(&xs) {
            sh.column_mut(j).assign(&x.column(j));
        }
        let mean = drops.iter().sum::<f64>() / drops.len() as f64;
        let var = drops.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / drops.len() as f64;
        permutation_importance.push(Importance {
            column: col.name().to_owned(),
            importance: mean,
            std: var.sqrt(),
        });
    }
    Ok(Evaluation {
        rows: total,
        report,
        permutation_importance,
    })
}

/// The parts' truths one after another.
fn join_truths(truths: &[Truth]) -> Truth {
    match truths.first() {
        Some(Truth::Values(_)) => {
            let views: Vec<_> = truths
                .iter()
                .filter_map(|t| match t {
                    Truth::Values(v) => Some(v.view()),
                    Truth::Classes(_) => None,
                })
                .collect();
            Truth::Values(ndarray::concatenate(Axis(0), &views).expect("same widths"))
        }
        _ => Truth::Classes(
            truths
                .iter()
                .flat_map(|t| match t {
                    Truth::Classes(c) => c.clone(),
                    Truth::Values(_) => vec![],
                })
                .collect(),
        ),
    }
}

/// Raw rows → the network's inputs (before standardisation, which `Model::predict` applies).
fn encode(model: &Model, x: ArrayView2<f32>, columns: &[RawColumn]) -> Result<Array2<f32>, String> {
    match &model.encoder {
        Some(e) => e.transform_table(x, columns).map_err(|e| match e {
            TransformError::Column(e) => format!("column {:?}: {}", e.column, e.message),
            TransformError::Memory(e) => e.to_string(),
        }),
        None => {
            if let Some((i, j)) = x.indexed_iter().find(|(_, v)| v.is_nan()).map(|(ij, _)| ij) {
                return Err(format!(
                    "row {}, column {:?} is missing; this model was trained on complete numeric data",
                    i + 1,
                    columns.get(j).map_or("?", |c| c.name())
                ));
            }
            Ok(x.to_owned())
        }
    }
}

fn truth(encoding: &OutputEncoding, targets: &Targets, width: usize) -> Result<Truth, String> {
    match (encoding.classes(), targets) {
        (Some(classes), Targets::Labels(l)) => l
            .iter()
            .map(|c| class_index(classes, c))
            .collect::<Result<_, _>>()
            .map(Truth::Classes),
        (Some(classes), Targets::Values(v)) if v.ncols() == 1 => v
            .column(0)
            .iter()
            .map(|&t| {
                if t.fract() == 0.0 {
                    class_index(classes, &ClassLabel::Integer(t as i64))
                } else {
                    Err(format!("the target {t} is not a class label"))
                }
            })
            .collect::<Result<_, _>>()
            .map(Truth::Classes),
        (Some(classes), Targets::Values(v)) if v.ncols() == classes.len() => Ok(Truth::Classes(
            crate::nn::math::activation::argmax_rows(v.view()),
        )),
        (Some(classes), Targets::Values(v)) => Err(format!(
            "the targets have {} columns; this classifier has {} classes",
            v.ncols(),
            classes.len()
        )),
        (None, Targets::Labels(_)) => {
            Err("the targets are class labels; this model predicts numbers".into())
        }
        (None, Targets::Values(v)) if v.ncols() != width => Err(format!(
            "the targets have {} columns; this model predicts {width}",
            v.ncols()
        )),
        (None, Targets::Values(v)) => Ok(Truth::Values(v.clone())),
    }
}

fn class_index(classes: &[ClassLabel], c: &ClassLabel) -> Result<usize, String> {
    classes.iter().position(|k| k == c).ok_or_else(|| {
        format!(
            "the targets hold class {c}, which the model does not know; its classes are {}",
            classes
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

fn score_report(encoding: &OutputEncoding, outputs: ArrayView2<f32>, truth: &Truth) -> Report {
    match truth {
        Truth::Classes(y) => {
            let classes = encoding.classes().unwrap_or_default();
            Report::Classification(classification(
                &probabilities(encoding, outputs),
                y,
                classes,
            ))
        }
        Truth::Values(v) => Report::Regression(regression(outputs, v.view())),
    }
}

/// The score permutation importance compares: accuracy or R².
fn headline(r: &Report) -> f64 {
    match r {
        Report::Classification(c) => c.accuracy,
        Report::Regression(r) => r.r2,
    }
}

/// Per-class probabilities (rows × classes): a binary model's one sigmoid unit p becomes
/// (1 − p, p).
fn probabilities(encoding: &OutputEncoding, outputs: ArrayView2<f32>) -> Array2<f64> {
    match encoding {
        OutputEncoding::Binary { .. } => {
            let mut p = Array2::zeros((outputs.nrows(), 2));
            for (i, &v) in outputs.column(0).iter().enumerate() {
                p[[i, 0]] = 1.0 - v as f64;
                p[[i, 1]] = v as f64;
            }
            p
        }
        _ => outputs.mapv(f64::from),
    }
}

/// Classification metrics of probabilities `p` (rows × classes) against true class indexes
/// `y`; the predicted class is each row's most probable (the first on ties).
pub fn classification(p: &Array2<f64>, y: &[usize], labels: &[ClassLabel]) -> Classification {
    let k = p.ncols();
    let n = y.len();
    let mut matrix = vec![vec![0u64; k]; k];
    let mut log_loss = 0.0;
    for (row, &t) in p.axis_iter(Axis(0)).zip(y) {
        let mut best = 0;
        for c in 1..k {
            if row[c] > row[best] {
                best = c;
            }
        }
        matrix[t][best] += 1;
        // scikit-learn: clip to [eps, 1 − eps], renormalise the row, −log p(true class).
        let clip = |v: f64| v.clamp(f64::EPSILON, 1.0 - f64::EPSILON);
        let sum: f64 = row.iter().map(|&v| clip(v)).sum();
        log_loss -= (clip(row[t]) / sum).ln();
    }
    let correct: u64 = (0..k).map(|c| matrix[c][c]).sum();
    let per_class = (0..k)
        .map(|c| {
            let tp = matrix[c][c] as f64;
            let support: u64 = matrix[c].iter().sum();
            let predicted: u64 = matrix.iter().map(|r| r[c]).sum();
            let ratio = |a: f64, b: u64| if b == 0 { 0.0 } else { a / b as f64 };
            let precision = ratio(tp, predicted);
            let recall = ratio(tp, support);
            let f1 = if precision + recall == 0.0 {
                0.0
            } else {
                2.0 * precision * recall / (precision + recall)
            };
            ClassReport {
                label: labels
                    .get(c)
                    .cloned()
                    .unwrap_or(ClassLabel::Integer(c as i64)),
                precision,
                recall,
                f1,
                support,
            }
        })
        .collect();
    let roc_auc = if k == 2 {
        let pos: Vec<bool> = y.iter().map(|&t| t == 1).collect();
        roc_auc(&p.column(1).to_vec(), &pos)
    } else {
        // Macro one-vs-rest: undefined when some class has no row (or every row).
        (0..k)
            .map(|c| {
                let pos: Vec<bool> = y.iter().map(|&t| t == c).collect();
                roc_auc(&p.column(c).to_vec(), &pos)
            })
            .sum::<Option<f64>>()
            .map(|s| s / k as f64)
    };
    Classification {
        accuracy: if n == 0 {
            0.0
        } else {
            correct as f64 / n as f64
        },
        log_loss: if n == 0 { 0.0 } else { log_loss / n as f64 },
        confusion_matrix: ConfusionMatrix {
            labels: labels.to_vec(),
            matrix,
        },
        per_class,
        roc_auc,
    }
}

/// The area under the ROC curve of `scores` for the rows where `positive` holds: the
/// Mann–Whitney U statistic over both classes' counts, ties counting a half (average ranks).
/// `None` when either class is empty.
pub fn roc_auc(scores: &[f64], positive: &[bool]) -> Option<f64> {
    let n_pos = positive.iter().filter(|&&p| p).count();
    let n_neg = positive.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Rank sum of the positives, tied scores sharing their average rank (1-based).
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += avg * order[i..=j].iter().filter(|&&r| positive[r]).count() as f64;
        i = j + 1;
    }
    let u = rank_sum - (n_pos * (n_pos + 1)) as f64 / 2.0;
    Some(u / (n_pos as f64 * n_neg as f64))
}

/// Regression metrics of predictions `p` against targets `y` (rows × outputs), each averaged
/// over the outputs as scikit-learn's `uniform_average` does. An output whose targets are all
/// equal scores R² 1 when predicted exactly, else 0 (scikit-learn's `force_finite`).
pub fn regression(p: ArrayView2<f32>, y: ArrayView2<f32>) -> Regression {
    let (n, k) = (y.nrows().max(1) as f64, y.ncols().max(1));
    let (mut r2, mut mae, mut rmse) = (0.0, 0.0, 0.0);
    for j in 0..y.ncols() {
        let (pj, yj) = (p.column(j), y.column(j));
        let mean = yj.iter().map(|&v| v as f64).sum::<f64>() / n;
        let (mut ss_res, mut ss_tot, mut abs) = (0.0, 0.0, 0.0);
        for (&pv, &yv) in pj.iter().zip(yj.iter()) {
            let e = yv as f64 - pv as f64;
            ss_res += e * e;
            abs += e.abs();
            ss_tot += (yv as f64 - mean).powi(2);
        }
        r2 += if ss_tot > 0.0 {
            1.0 - ss_res / ss_tot
        } else if ss_res == 0.0 {
            1.0
        } else {
            0.0
        };
        mae += abs / n;
        rmse += (ss_res / n).sqrt();
    }
    Regression {
        r2: r2 / k as f64,
        mae: mae / k as f64,
        rmse: rmse / k as f64,
    }
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;
    use crate::nn::math::activation::Activation;
    use crate::nn::math::network::{Dense, Layer, Network};

    fn labels(v: &[&str]) -> Vec<ClassLabel> {
        v.iter().map(|s| ClassLabel::Text(s.to_string())).collect()
    }

    /// Three classes, six rows, by hand:
    /// true  a a b b c c; predicted (argmax) a b b b a c.
    /// confusion [[1,1,0],[0,2,0],[1,0,1]]; precision a 1/2, b 2/3, c 1; recall a 1/2, b 1,
    /// c 1/2; log loss −mean(ln .7, ln .3, ln .6, ln .5, ln .2, ln .9).
    #[test]
    fn a_three_class_report_matches_the_hand_computed_one() {
        let p = array![
            [0.7, 0.2, 0.1],
            [0.3, 0.5, 0.2],
            [0.2, 0.6, 0.2],
            [0.1, 0.5, 0.4],
            [0.5, 0.3, 0.2],
            [0.05, 0.05, 0.9]
        ];
        let y = [0, 0, 1, 1, 2, 2];
        let c = classification(&p, &y, &labels(&["a", "b", "c"]));
        assert_eq!(
            c.confusion_matrix.matrix,
            vec![vec![1, 1, 0], vec![0, 2, 0], vec![1, 0, 1]]
        );
        assert!((c.accuracy - 4.0 / 6.0).abs() < 1e-12);
        let want = [(0.5, 0.5), (2.0 / 3.0, 1.0), (1.0, 0.5)];
        for (r, (p, rc)) in c.per_class.iter().zip(want) {
            assert!((r.precision - p).abs() < 1e-12, "{r:?}");
            assert!((r.recall - rc).abs() < 1e-12, "{r:?}");
            assert!((r.f1 - 2.0 * p * rc / (p + rc)).abs() < 1e-12, "{r:?}");
            assert_eq!(r.support, 2);
        }
        let ll = -[0.7f64, 0.3, 0.6, 0.5, 0.2, 0.9]
            .iter()
            .map(|v| v.ln())
            .sum::<f64>()
            / 6.0;
        assert!((c.log_loss - ll).abs() < 1e-9, "{} vs {ll}", c.log_loss);
        // One-vs-rest AUCs (pairs won, ties ½, of 8): a: .7 beats 4, .3 beats 3 → 7/8;
        // b: .6 beats 4, .5 beats 3 and ties .5 → 7.5/8; c: .2 beats .1 and ties two .2s,
        // .9 beats 4 → 6/8.
        let want = (7.0 + 7.5 + 6.0) / 8.0 / 3.0;
        assert!((c.roc_auc.unwrap() - want).abs() < 1e-12, "{:?}", c.roc_auc);
    }

    #[test]
    fn roc_auc_counts_ties_as_half_and_is_undefined_for_one_class() {
        // positives .8 .4, negatives .4 .1: pairs (.8>.4) (.8>.1) (.4=.4 → ½) (.4>.1) → 3.5/4
        assert_eq!(
            roc_auc(&[0.8, 0.4, 0.4, 0.1], &[true, true, false, false]),
            Some(0.875)
        );
        assert_eq!(roc_auc(&[0.1, 0.2], &[true, true]), None);
    }

    /// y = (1, 2, 3, 4), p = (1.5, 2, 2, 5): residuals .5 0 −1 1 → SS_res 2.25, SS_tot 5,
    /// R² = 0.55, MAE 2.5/4, RMSE √(2.25/4) = 0.75.
    #[test]
    fn regression_metrics_match_the_hand_computed_ones() {
        let y = array![[1.0f32], [2.0], [3.0], [4.0]];
        let p = array![[1.5f32], [2.0], [2.0], [5.0]];
        let r = regression(p.view(), y.view());
        assert!((r.r2 - 0.55).abs() < 1e-12);
        assert!((r.mae - 0.625).abs() < 1e-12);
        assert!((r.rmse - 0.75).abs() < 1e-12);
        // A constant target predicted exactly scores 1, otherwise 0.
        let c = array![[2.0f32], [2.0]];
        assert_eq!(regression(c.view(), c.view()).r2, 1.0);
        assert_eq!(regression(array![[1.0f32], [2.0]].view(), c.view()).r2, 0.0);
    }

    /// y = 2·x0 (x1 unused): shuffling x1 changes nothing (importance exactly 0); shuffling
    /// x0 loses R² (importance > 1, as R² of a shuffled linear fit drops below 0); and the
    /// numbers repeat for the same seed.
    #[test]
    fn permutation_importance_finds_the_column_that_matters() {
        let model = Model {
            network: Network {
                input_dim: 2,
                layers: vec![Layer::Dense(Dense {
                    w: array![[2.0f32], [0.0]],
                    b: array![0.0],
                    activation: Activation::Linear,
                    alpha: 0.0,
                })],
            },
            standardizer: None,
            encoding: OutputEncoding::Values,
            feature_names: None,
            loss: None,
            encoder: None,
            target_names: None,
        };
        let x = Array2::from_shape_fn((40, 2), |(i, j)| (i * (j + 1) % 17) as f32);
        let y = Targets::Values(x.column(0).mapv(|v| 2.0 * v).insert_axis(Axis(1)));
        let cols = [RawColumn::numeric("x0", 0), RawColumn::numeric("x1", 0)];
        let e = evaluate_model(&model, x.view(), &cols, &y, 3).unwrap();
        let Report::Regression(r) = &e.report else {
            panic!("a regression")
        };
        assert_eq!(r.r2, 1.0);
        assert_eq!(e.permutation_importance[1].importance, 0.0);
        assert!(e.permutation_importance[0].importance > 1.0, "{e:?}");
        assert_eq!(e, evaluate_model(&model, x.view(), &cols, &y, 3).unwrap());
        assert_ne!(
            e.permutation_importance[0],
            evaluate_model(&model, x.view(), &cols, &y, 4)
                .unwrap()
                .permutation_importance[0]
        );
    }

    #[test]
    fn a_class_the_model_does_not_know_is_named() {
        let enc = OutputEncoding::Binary {
            classes: labels(&["no", "yes"]),
        };
        let t = Targets::Labels(labels(&["yes", "maybe"]));
        let e = truth(&enc, &t, 1).err().unwrap();
        assert!(e.contains("maybe") && e.contains("no, yes"), "{e}");
    }
}
