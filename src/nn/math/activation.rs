//! Activation functions `g` and their derivatives, applied row-wise to a batch.

use ndarray::{ArrayView2, ArrayViewMut2, Axis, Zip};
use serde::{Deserialize, Serialize};

use crate::nn::{Real, cst};

/// The non-linearity of a dense layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `g(z) = z`
    #[default]
    Linear,
    /// `g(z) = 1 / (1 + e^-z)`
    Sigmoid,
    /// `g(z) = tanh z`
    Tanh,
    /// `g(z) = max(0, z)`
    Relu,
    /// `g(z) = z` for z > 0, `alpha·z` otherwise (alpha defaults to 0.2).
    LeakyRelu,
    /// `g(z) = z` for z > 0, `alpha·(e^z − 1)` otherwise (alpha defaults to 1).
    Elu,
    /// `g(z) = ln(1 + e^z)`
    Softplus,
    /// `g(z) = z·Φ(z)` with the exact Gaussian CDF (Keras's default).
    Gelu,
    /// `g(z)_i = e^{z_i} / Σ_j e^{z_j}` over the units of one row.
    Softmax,
}

impl Activation {
    pub const ALL: [&'static str; 9] = [
        "linear",
        "sigmoid",
        "tanh",
        "relu",
        "leaky_relu",
        "elu",
        "softplus",
        "gelu",
        "softmax",
    ];

    pub fn name(self) -> &'static str {
        Self::ALL[self as usize]
    }

    /// The default `alpha` for the activations that take one.
    pub fn default_alpha(self) -> f32 {
        match self {
            Activation::LeakyRelu => 0.2,
            Activation::Elu => 1.0,
            _ => 0.0,
        }
    }

    /// `a = g(z)`.
    pub fn forward<F: Real>(self, alpha: F, z: ArrayView2<F>, mut a: ArrayViewMut2<F>) {
        let zero = F::zero();
        let one = F::one();
        match self {
            Activation::Linear => a.assign(&z),
            Activation::Sigmoid => Zip::from(&mut a).and(&z).for_each(|a, &z| *a = sigmoid(z)),
            Activation::Tanh => Zip::from(&mut a).and(&z).for_each(|a, &z| *a = z.tanh()),
            Activation::Relu => Zip::from(&mut a).and(&z).for_each(|a, &z| *a = z.max(zero)),
            Activation::LeakyRelu => Zip::from(&mut a)
                .and(&z)
                .for_each(|a, &z| *a = if z > zero { z } else { alpha * z }),
            Activation::Elu => Zip::from(&mut a)
                .and(&z)
                .for_each(|a, &z| *a = if z > zero { z } else { alpha * z.exp_m1() }),
            Activation::Softplus => Zip::from(&mut a).and(&z).for_each(|a, &z| *a = softplus(z)),
            Activation::Gelu => Zip::from(&mut a).and(&z).for_each(|a, &z| {
                let x = z.to_f64().unwrap_or(0.0);
                *a = cst(0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2)));
            }),
            Activation::Softmax => Zip::from(a.rows_mut()).and(z.rows()).for_each(|mut a, z| {
                let m = z.fold(F::neg_infinity(), |m, &v| m.max(v));
                let mut s = zero;
                Zip::from(&mut a).and(&z).for_each(|a, &z| {
                    *a = (z - m).exp();
                    s = s + *a;
                });
                let inv = one / s;
                a.mapv_inplace(|v| v * inv);
            }),
        }
    }

    /// Turns `d` from dL/da into dL/dz in place, given `z` and `a = g(z)`.
    pub fn backward<F: Real>(
        self,
        alpha: F,
        z: ArrayView2<F>,
        a: ArrayView2<F>,
        mut d: ArrayViewMut2<F>,
    ) {
        let zero = F::zero();
        let one = F::one();
        match self {
            Activation::Linear => {}
            // σ' = σ(1 − σ)
            Activation::Sigmoid => Zip::from(&mut d)
                .and(&a)
                .for_each(|d, &a| *d = *d * a * (one - a)),
            // tanh' = 1 − tanh²
            Activation::Tanh => Zip::from(&mut d)
                .and(&a)
                .for_each(|d, &a| *d = *d * (one - a * a)),
            // A select rather than a conditional store, so the loop vectorises.
            Activation::Relu => Zip::from(&mut d)
                .and(&z)
                .for_each(|d, &z| *d = if z <= zero { zero } else { *d }),
            Activation::LeakyRelu => Zip::from(&mut d).and(&z).for_each(|d, &z| {
                if z <= zero {
                    *d = *d * alpha
                }
            }),
            // elu' = 1 for z > 0, a + alpha otherwise
            Activation::Elu => Zip::from(&mut d).and(&z).and(&a).for_each(|d, &z, &a| {
                if z <= zero {
                    *d = *d * (a + alpha)
                }
            }),
            // softplus' = σ(z)
            Activation::Softplus => Zip::from(&mut d)
                .and(&z)
                .for_each(|d, &z| *d = *d * sigmoid(z)),
            // gelu' = Φ(z) + z·φ(z)
            Activation::Gelu => Zip::from(&mut d).and(&z).for_each(|d, &z| {
                let x = z.to_f64().unwrap_or(0.0);
                let cdf = 0.5 * (1.0 + libm::erf(x / std::f64::consts::SQRT_2));
                let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
                *d = *d * cst(cdf + x * pdf);
            }),
            // dz_i = a_i (d_i − Σ_j d_j a_j)
            Activation::Softmax => Zip::from(d.rows_mut()).and(a.rows()).for_each(|mut d, a| {
                let dot = d.dot(&a);
                Zip::from(&mut d)
                    .and(&a)
                    .for_each(|d, &a| *d = a * (*d - dot));
            }),
        }
    }
}

/// Numerically stable logistic function.
pub fn sigmoid<F: Real>(z: F) -> F {
    let one = F::one();
    if z >= F::zero() {
        one / (one + (-z).exp())
    } else {
        let e = z.exp();
        e / (one + e)
    }
}

/// `ln(1 + e^z)` without overflow.
pub fn softplus<F: Real>(z: F) -> F {
    z.max(F::zero()) + (-z.abs()).exp().ln_1p()
}

/// Index of the largest value of each row.
pub fn argmax_rows<F: Real>(a: ArrayView2<F>) -> Vec<usize> {
    a.axis_iter(Axis(0))
        .map(|row| {
            let mut best = 0;
            for (i, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = i;
                }
            }
            best
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, array};

    fn apply(act: Activation, z: &Array2<f64>) -> Array2<f64> {
        let mut a = Array2::zeros(z.raw_dim());
        act.forward(act.default_alpha() as f64, z.view(), a.view_mut());
        a
    }

    #[test]
    fn hand_computed_values() {
        let z = array![[-6.0, 0.0, 2.0]];
        let s = apply(Activation::Sigmoid, &z);
        assert!((s[[0, 0]] - 0.0024726231566347743).abs() < 1e-15);
        assert_eq!(s[[0, 1]], 0.5);
        assert_eq!(apply(Activation::Relu, &z), array![[0.0, 0.0, 2.0]]);
        let lr = apply(Activation::LeakyRelu, &z);
        assert!((lr[[0, 0]] + 1.2).abs() < 1e-6 && lr[[0, 2]] == 2.0);
        let e = apply(Activation::Elu, &z);
        assert!((e[[0, 0]] - ((-6.0f64).exp() - 1.0)).abs() < 1e-15);
        let sp = apply(Activation::Softplus, &z);
        assert!((sp[[0, 2]] - (1.0 + 2.0f64.exp()).ln()).abs() < 1e-12);
        // gelu(1) = 0.8413447460685429 (scipy: 1 * norm.cdf(1))
        let g = apply(Activation::Gelu, &array![[1.0]]);
        assert!((g[[0, 0]] - 0.8413447460685429).abs() < 1e-12);
    }

    #[test]
    fn softmax_rows_sum_to_one_even_for_huge_logits() {
        let z = array![[1000.0, 1000.0, -1000.0], [1.0, 2.0, 3.0]];
        let a = apply(Activation::Softmax, &z);
        for row in a.rows() {
            assert!((row.sum() - 1.0).abs() < 1e-12);
        }
        assert!((a[[0, 0]] - 0.5).abs() < 1e-12);
        // numpy: np.exp([1,2,3]) / np.exp([1,2,3]).sum() -> 0.66524096 for the last
        assert!((a[[1, 2]] - 0.6652409557748219).abs() < 1e-12);
    }

    #[test]
    fn derivatives_match_finite_differences() {
        let z = array![[-1.7, -0.3, 0.4, 2.2], [0.9, -2.5, 1.3, -0.05]];
        let upstream = array![[0.3, -1.1, 0.7, 0.2], [-0.4, 0.9, 0.1, 1.5]];
        for name in Activation::ALL {
            let act: Activation = serde_json::from_str(&format!("\"{name}\"")).unwrap();
            let alpha = act.default_alpha() as f64;
            let a = apply(act, &z);
            let mut d = upstream.clone();
            act.backward(alpha, z.view(), a.view(), d.view_mut());
            let h = 1e-6;
            for i in 0..z.nrows() {
                for j in 0..z.ncols() {
                    let (mut zp, mut zm) = (z.clone(), z.clone());
                    zp[[i, j]] += h;
                    zm[[i, j]] -= h;
                    let lp = (&apply(act, &zp) * &upstream).sum();
                    let lm = (&apply(act, &zm) * &upstream).sum();
                    let numeric = (lp - lm) / (2.0 * h);
                    assert!(
                        (numeric - d[[i, j]]).abs() < 1e-6,
                        "{name} at ({i},{j}): numeric {numeric} analytic {}",
                        d[[i, j]]
                    );
                }
            }
        }
    }
}
