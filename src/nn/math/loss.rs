//! Loss functions and the gradient they send into the output layer.
//!
//! Sigmoid + binary cross-entropy and softmax + categorical cross-entropy are fused: the loss
//! is computed from the logits `z` (log-sum-exp, softplus), so `log(0)` never happens, and the
//! gradient is the well-known `dL/dz = p − y`.

use ndarray::{ArrayView2, ArrayViewMut2, Zip};
use serde::{Deserialize, Serialize};

use super::activation::{Activation, softplus};
use crate::nn::{Real, cst};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// Mean over outputs of `−y ln p − (1−y) ln(1−p)`; needs a sigmoid output.
    BinaryCrossentropy,
    /// `−Σ_k y_k ln p_k` with one-hot (or probability) targets; needs a softmax output.
    CategoricalCrossentropy,
    /// Categorical cross-entropy with integer class labels as targets.
    SparseCategoricalCrossentropy,
    /// Mean squared error.
    #[serde(alias = "mean_squared_error")]
    Mse,
    /// Mean absolute error.
    #[serde(alias = "mean_absolute_error")]
    Mae,
    /// Huber loss with δ = 1: quadratic near zero, linear beyond.
    Huber,
}

impl Loss {
    pub const ALL: [&'static str; 6] = [
        "binary_crossentropy",
        "categorical_crossentropy",
        "sparse_categorical_crossentropy",
        "mse",
        "mae",
        "huber",
    ];

    pub fn name(self) -> &'static str {
        Self::ALL[self as usize]
    }

    /// Classification losses predict classes (accuracy is their metric); the others regress.
    pub fn is_classification(self) -> bool {
        matches!(
            self,
            Loss::BinaryCrossentropy
                | Loss::CategoricalCrossentropy
                | Loss::SparseCategoricalCrossentropy
        )
    }

    /// Cross-entropies that use argmax over a softmax (as opposed to a threshold on sigmoids).
    pub fn is_categorical(self) -> bool {
        matches!(
            self,
            Loss::CategoricalCrossentropy | Loss::SparseCategoricalCrossentropy
        )
    }

    /// Refuses a final activation this loss is not defined for.
    pub fn check_output_activation(self, act: Activation) -> Result<(), String> {
        match (self, act) {
            (Loss::BinaryCrossentropy, Activation::Sigmoid) => Ok(()),
            (Loss::BinaryCrossentropy, other) => Err(format!(
                "binary_crossentropy needs a sigmoid output layer, the last dense layer has {}",
                other.name()
            )),
            (
                Loss::CategoricalCrossentropy | Loss::SparseCategoricalCrossentropy,
                Activation::Softmax,
            ) => Ok(()),
            (l, other) if l.is_categorical() => Err(format!(
                "{} needs a softmax output layer, the last dense layer has {}",
                l.name(),
                other.name()
            )),
            _ => Ok(()),
        }
    }

    /// Sum over the rows of the per-sample loss. `z` are the output layer's logits, `a = g(z)`.
    pub fn value<F: Real>(self, z: ArrayView2<F>, a: ArrayView2<F>, y: ArrayView2<F>) -> F {
        self.compute(z, a, y, None, Activation::Linear, F::zero(), 1)
    }

    /// Sum over the rows of the per-sample loss, and `d ← dL/dz` of the batch-mean loss, where
    /// the batch has `batch_rows` rows (a chunk of it may be fewer).
    #[allow(clippy::too_many_arguments)]
    pub fn gradient<F: Real>(
        self,
        act: Activation,
        alpha: F,
        z: ArrayView2<F>,
        a: ArrayView2<F>,
        y: ArrayView2<F>,
        d: ArrayViewMut2<F>,
        batch_rows: usize,
    ) -> F {
        self.compute(z, a, y, Some(d), act, alpha, batch_rows)
    }

    #[allow(clippy::too_many_arguments)]
    fn compute<F: Real>(
        self,
        z: ArrayView2<F>,
        a: ArrayView2<F>,
        y: ArrayView2<F>,
        d: Option<ArrayViewMut2<F>>,
        act: Activation,
        alpha: F,
        batch_rows: usize,
    ) -> F {
        let k = a.ncols().max(1);
        let zero = F::zero();
        let one = F::one();
        let inv_n: F = cst(1.0 / batch_rows as f64);
        let inv_nk: F = cst(1.0 / (batch_rows * k) as f64);
        let inv_k: F = cst(1.0 / k as f64);
        let mut total = zero;
        match self {
            Loss::BinaryCrossentropy => {
                // ℓ = max(z,0) − z·y + ln(1 + e^{−|z|}) ; dℓ/dz = σ(z) − y
                Zip::from(&z)
                    .and(&y)
                    .for_each(|&z, &y| total = total + softplus(z) - z * y);
                total = total * inv_k;
                if let Some(mut d) = d {
                    Zip::from(&mut d)
                        .and(&a)
                        .and(&y)
                        .for_each(|d, &p, &y| *d = (p - y) * inv_nk);
                }
            }
            Loss::CategoricalCrossentropy | Loss::SparseCategoricalCrossentropy => {
                // ℓ = Σ_k y_k (lse(z) − z_k) ; dℓ/dz = p·Σy − y
                Zip::from(z.rows()).and(y.rows()).for_each(|z, y| {
                    let m = z.fold(F::neg_infinity(), |m, &v| m.max(v));
                    let lse = m + z.fold(zero, |s, &v| s + (v - m).exp()).ln();
                    Zip::from(&z)
                        .and(&y)
                        .for_each(|&z, &y| total = total + y * (lse - z));
                });
                if let Some(mut d) = d {
                    Zip::from(d.rows_mut())
                        .and(a.rows())
                        .and(y.rows())
                        .for_each(|mut d, p, y| {
                            let sy = y.sum();
                            Zip::from(&mut d)
                                .and(&p)
                                .and(&y)
                                .for_each(|d, &p, &y| *d = (p * sy - y) * inv_n);
                        });
                }
            }
            Loss::Mse => {
                Zip::from(&a)
                    .and(&y)
                    .for_each(|&p, &y| total = total + (p - y) * (p - y));
                total = total * inv_k;
                if let Some(mut d) = d {
                    let two = one + one;
                    Zip::from(&mut d)
                        .and(&a)
                        .and(&y)
                        .for_each(|d, &p, &y| *d = two * (p - y) * inv_nk);
                    act.backward(alpha, z, a, d);
                }
            }
            Loss::Mae => {
                Zip::from(&a)
                    .and(&y)
                    .for_each(|&p, &y| total = total + (p - y).abs());
                total = total * inv_k;
                if let Some(mut d) = d {
                    Zip::from(&mut d).and(&a).and(&y).for_each(|d, &p, &y| {
                        let e = p - y;
                        *d = if e > zero {
                            inv_nk
                        } else if e < zero {
                            -inv_nk
                        } else {
                            zero
                        };
                    });
                    act.backward(alpha, z, a, d);
                }
            }
            Loss::Huber => {
                let half: F = cst(0.5);
                Zip::from(&a).and(&y).for_each(|&p, &y| {
                    let e = (p - y).abs();
                    total = total + if e <= one { half * e * e } else { e - half };
                });
                total = total * inv_k;
                if let Some(mut d) = d {
                    Zip::from(&mut d)
                        .and(&a)
                        .and(&y)
                        .for_each(|d, &p, &y| *d = (p - y).max(-one).min(one) * inv_nk);
                    act.backward(alpha, z, a, d);
                }
            }
        }
        total
    }
}

/// Label smoothing: class targets mixed with the uniform distribution, `eps` of it. With
/// `binary` (sigmoid outputs: each column a yes/no) every column becomes `(1 − ε)·y + ε/2`;
/// otherwise each row is one distribution over its `k` columns (softmax) and becomes
/// `(1 − ε)·y + ε/k`. The fused softmax / sigmoid gradients (`p − y`) hold for such soft
/// targets as they are.
pub fn smooth_labels(y: &mut ndarray::Array2<f32>, eps: f32, binary: bool) {
    if eps <= 0.0 {
        return;
    }
    let k = if binary { 2.0 } else { y.ncols() as f32 };
    y.mapv_inplace(|v| (1.0 - eps) * v + eps / k);
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, array};

    #[test]
    fn label_smoothing_mixes_in_the_uniform_distribution() {
        let mut y = ndarray::array![[1.0f32, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]];
        smooth_labels(&mut y, 0.2, false);
        let near = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(a, b)| (a - b).abs() < 1e-6);
        assert!(near(&y.row(0).to_vec(), &[0.85, 0.05, 0.05, 0.05]), "{y}");
        assert!((y.sum() - 2.0).abs() < 1e-6);
        let mut b = ndarray::array![[1.0f32], [0.0]];
        smooth_labels(&mut b, 0.2, true);
        assert!(near(&b.column(0).to_vec(), &[0.9, 0.1]), "{b}");
        let mut same = ndarray::array![[1.0f32, 0.0]];
        smooth_labels(&mut same, 0.0, false);
        assert_eq!(same.row(0).to_vec(), vec![1.0, 0.0]);
    }

    fn forward(act: Activation, z: &Array2<f64>) -> Array2<f64> {
        let mut a = Array2::zeros(z.raw_dim());
        act.forward(act.default_alpha() as f64, z.view(), a.view_mut());
        a
    }

    #[test]
    fn bce_matches_the_textbook_formula_and_never_logs_zero() {
        let z = array![[-6.0], [0.5], [800.0]];
        let y = array![[0.0], [1.0], [0.0]];
        let a = forward(Activation::Sigmoid, &z);
        let l = Loss::BinaryCrossentropy.value(z.view(), a.view(), y.view());
        let p0: f64 = 0.0024726231566347743;
        let p1 = 1.0 / (1.0 + (-0.5f64).exp());
        let expected = -(1.0 - p0).ln() - p1.ln() + 800.0; // the last term saturates at z
        assert!((l - expected).abs() < 1e-9, "{l} vs {expected}");
        assert!(l.is_finite());
    }

    #[test]
    fn cce_is_log_sum_exp_minus_the_true_logit() {
        let z = array![[1.0, 2.0, 3.0], [1000.0, 0.0, -1000.0]];
        let y = array![[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]];
        let a = forward(Activation::Softmax, &z);
        let l = Loss::CategoricalCrossentropy.value(z.view(), a.view(), y.view());
        // numpy: -np.log(np.exp(3)/np.exp([1,2,3]).sum()) = 0.40760596444437
        let expected = 0.4076059644443803 + 1000.0;
        assert!((l - expected).abs() < 1e-9, "{l}");
    }

    #[test]
    fn regression_losses_by_hand() {
        let z: Array2<f64> = array![[1.0, 3.0], [0.0, -2.0]];
        let y = array![[0.0, 0.5], [0.25, -2.0]];
        let a = z.clone();
        // per-element errors 1, 2.5, -0.25, 0
        let mse = Loss::Mse.value(z.view(), a.view(), y.view());
        assert!((mse - (1.0 + 6.25 + 0.0625) / 2.0).abs() < 1e-12);
        let mae = Loss::Mae.value(z.view(), a.view(), y.view());
        assert!((mae - (1.0 + 2.5 + 0.25) / 2.0).abs() < 1e-12);
        let huber = Loss::Huber.value(z.view(), a.view(), y.view());
        assert!((huber - (0.5 + 2.0 + 0.03125) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn mismatched_pairs_are_refused() {
        assert!(
            Loss::BinaryCrossentropy
                .check_output_activation(Activation::Softmax)
                .is_err()
        );
        assert!(
            Loss::CategoricalCrossentropy
                .check_output_activation(Activation::Sigmoid)
                .is_err()
        );
        assert!(
            Loss::SparseCategoricalCrossentropy
                .check_output_activation(Activation::Relu)
                .is_err()
        );
        assert!(
            Loss::Mse
                .check_output_activation(Activation::Softmax)
                .is_ok()
        );
        assert!(
            Loss::BinaryCrossentropy
                .check_output_activation(Activation::Sigmoid)
                .is_ok()
        );
    }
}
