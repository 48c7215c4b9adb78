//! A network: a sequence of dense and dropout layers, and its forward pass for inference and
//! evaluation. Training's forward and backward pass is `batch::BatchStep`, which shares the
//! layers and the [`Workspace`] buffers defined here.
//!
//! A dense layer computes `a = g(x·W + b)` with `W: input_dim × units` and `b: units`
//! (the Keras/TensorFlow layout). All per-batch buffers live in a [`Workspace`] that is
//! allocated once per run and reused, so the hot loop does not allocate.

use ndarray::linalg::general_mat_mul;
use ndarray::{Array1, Array2, ArrayView2, Axis, Zip, s};
use serde::{Deserialize, Serialize};

use super::activation::Activation;
use super::rng::Rng;
use crate::nn::{Real, cst};

/// How a weight tensor starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Init {
    /// U(−l, l) with l = √(6 / (fan_in + fan_out)); the default for weights.
    GlorotUniform,
    /// Truncated N(0, 2 / (fan_in + fan_out)).
    GlorotNormal,
    /// U(−l, l) with l = √(6 / fan_in); suits ReLU.
    HeUniform,
    /// Truncated N(0, 2 / fan_in).
    HeNormal,
    /// All zeros; the default for biases.
    Zeros,
    Ones,
}

impl Init {
    pub fn fill<F: Real>(self, out: &mut [F], fan_in: usize, fan_out: usize, rng: &mut Rng) {
        // Keras scales a normal truncated at 2σ by this so the result has the intended σ.
        const TRUNC: f64 = 0.879_625_661_034_239_8;
        let (fi, fo) = (fan_in.max(1) as f64, fan_out.max(1) as f64);
        for v in out.iter_mut() {
            *v = cst(match self {
                Init::GlorotUniform => (2.0 * rng.uniform() - 1.0) * (6.0 / (fi + fo)).sqrt(),
                Init::GlorotNormal => rng.truncated_normal() * (2.0 / (fi + fo)).sqrt() / TRUNC,
                Init::HeUniform => (2.0 * rng.uniform() - 1.0) * (6.0 / fi).sqrt(),
                Init::HeNormal => rng.truncated_normal() * (2.0 / fi).sqrt() / TRUNC,
                Init::Zeros => 0.0,
                Init::Ones => 1.0,
            });
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dense<F> {
    /// `input_dim × units`
    pub w: Array2<F>,
    /// `units`
    pub b: Array1<F>,
    pub activation: Activation,
    /// Slope or scale for `leaky_relu` and `elu`.
    pub alpha: F,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Layer<F> {
    Dense(Dense<F>),
    /// Inverted dropout with this drop rate; identity at inference.
    Dropout(f32),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Network<F> {
    pub input_dim: usize,
    pub layers: Vec<Layer<F>>,
}

/// Gradients (or any per-parameter tensor set) in the order of the dense layers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Params<F> {
    pub w: Vec<Array2<F>>,
    pub b: Vec<Array1<F>>,
}

impl<F: Real> Params<F> {
    pub fn zeros_like(net: &Network<F>) -> Self {
        let mut p = Params {
            w: vec![],
            b: vec![],
        };
        for d in net.dense() {
            p.w.push(Array2::zeros(d.w.raw_dim()));
            p.b.push(Array1::zeros(d.b.raw_dim()));
        }
        p
    }

    /// All tensors as flat slices, weights and biases interleaved per layer.
    pub fn slices(&self) -> Vec<&[F]> {
        let mut v = Vec::with_capacity(self.w.len() * 2);
        for (w, b) in self.w.iter().zip(&self.b) {
            v.push(w.as_slice().expect("standard layout"));
            v.push(b.as_slice().expect("standard layout"));
        }
        v
    }

    pub fn slices_mut(&mut self) -> Vec<&mut [F]> {
        let mut v = Vec::with_capacity(self.w.len() * 2);
        for (w, b) in self.w.iter_mut().zip(self.b.iter_mut()) {
            v.push(w.as_slice_mut().expect("standard layout"));
            v.push(b.as_slice_mut().expect("standard layout"));
        }
        v
    }

    pub fn fill_zero(&mut self) {
        for s in self.slices_mut() {
            s.fill(F::zero());
        }
    }

    /// `self += other`, element by element (a fixed order whatever the threads).
    pub fn add_assign(&mut self, other: &Params<F>) {
        for (a, b) in self.slices_mut().into_iter().zip(other.slices()) {
            for (x, y) in a.iter_mut().zip(b) {
                *x = *x + *y;
            }
        }
    }
}

impl<F: Real> Network<F> {
    /// The dense layers, in order.
    pub fn dense(&self) -> impl Iterator<Item = &Dense<F>> {
        self.layers.iter().filter_map(|l| match l {
            Layer::Dense(d) => Some(d),
            Layer::Dropout(_) => None,
        })
    }

    pub fn dense_mut(&mut self) -> impl Iterator<Item = &mut Dense<F>> {
        self.layers.iter_mut().filter_map(|l| match l {
            Layer::Dense(d) => Some(d),
            Layer::Dropout(_) => None,
        })
    }

    pub fn output_dim(&self) -> usize {
        self.dense().last().map_or(self.input_dim, |d| d.b.len())
    }

    pub fn output_activation(&self) -> Activation {
        self.dense()
            .last()
            .map_or(Activation::Linear, |d| d.activation)
    }

    pub fn parameter_count(&self) -> usize {
        self.dense().map(|d| d.w.len() + d.b.len()).sum()
    }

    /// Copies the weights out (for early stopping's best weights and checkpoints).
    pub fn params(&self) -> Params<F> {
        Params {
            w: self.dense().map(|d| d.w.clone()).collect(),
            b: self.dense().map(|d| d.b.clone()).collect(),
        }
    }

    pub fn set_params(&mut self, p: &Params<F>) {
        for (i, d) in self.dense_mut().enumerate() {
            d.w.assign(&p.w[i]);
            d.b.assign(&p.b[i]);
        }
    }

    /// All weights finite?
    pub fn is_finite(&self) -> bool {
        self.dense()
            .all(|d| d.w.iter().chain(d.b.iter()).all(|v| v.is_finite()))
    }

    /// Inference on any number of rows (dropout off), in chunks of `chunk` rows.
    pub fn predict(&self, x: ArrayView2<F>) -> Array2<F> {
        const CHUNK: usize = 256;
        let mut out = Array2::zeros((x.nrows(), self.output_dim()));
        let mut ws = Workspace::new(self, CHUNK.min(x.nrows()).max(1));
        for (xi, mut oi) in x
            .axis_chunks_iter(Axis(0), CHUNK)
            .zip(out.axis_chunks_iter_mut(Axis(0), CHUNK))
        {
            self.forward(&mut ws, xi, None);
            oi.assign(&ws.output(xi.nrows()));
        }
        out
    }

    /// Forward pass over the rows of `x` (at most the workspace's capacity). With `dropout`
    /// set the dropout layers draw their masks from it; without, they are the identity.
    pub fn forward(&self, ws: &mut Workspace<F>, x: ArrayView2<F>, mut dropout: Option<&mut Rng>) {
        let n = x.nrows();
        debug_assert!(n <= ws.rows);
        for (l, layer) in self.layers.iter().enumerate() {
            let (before, after) = ws.a.split_at_mut(l);
            let input = if l == 0 {
                x
            } else {
                before[l - 1].slice(s![..n, ..])
            };
            let mut a = after[0].slice_mut(s![..n, ..]);
            match layer {
                Layer::Dense(d) => {
                    let mut z = ws.z[l].slice_mut(s![..n, ..]);
                    z.assign(&d.b.broadcast((n, d.b.len())).expect("bias width"));
                    general_mat_mul(F::one(), &input, &d.w, F::one(), &mut z);
                    d.activation.forward(d.alpha, z.view(), a);
                }
                Layer::Dropout(rate) => match dropout.as_deref_mut() {
                    Some(rng) if *rate > 0.0 => {
                        let keep = 1.0 - rate;
                        let scale: F = cst(1.0 / keep as f64);
                        let mut mask = ws.z[l].slice_mut(s![..n, ..]);
                        mask.mapv_inplace(|_| {
                            if rng.uniform_f32() < keep {
                                scale
                            } else {
                                F::zero()
                            }
                        });
                        Zip::from(&mut a)
                            .and(&input)
                            .and(&mask)
                            .for_each(|a, &x, &m| *a = x * m);
                    }
                    _ => {
                        ws.z[l].slice_mut(s![..n, ..]).fill(F::one());
                        a.assign(&input);
                    }
                },
            }
        }
    }
}

/// Reusable buffers for forward and backward passes over up to `rows` rows.
pub struct Workspace<F> {
    rows: usize,
    /// Pre-activations of dense layers; the mask of dropout layers.
    pub(super) z: Vec<Array2<F>>,
    /// Layer outputs.
    pub(super) a: Vec<Array2<F>>,
    /// dL/d(layer output), turned into dL/dz in place for dense layers.
    pub(super) delta: Vec<Array2<F>>,
}

impl<F: Real> Workspace<F> {
    pub fn new(net: &Network<F>, rows: usize) -> Self {
        let mut width = net.input_dim;
        let (mut z, mut a, mut delta) = (vec![], vec![], vec![]);
        for layer in &net.layers {
            if let Layer::Dense(d) = layer {
                width = d.b.len();
            }
            z.push(Array2::zeros((rows, width)));
            a.push(Array2::zeros((rows, width)));
            delta.push(Array2::zeros((rows, width)));
        }
        Workspace { rows, z, a, delta }
    }

    pub fn capacity(&self) -> usize {
        self.rows
    }

    /// The network's output for the first `n` rows of the last forward pass.
    pub fn output(&self, n: usize) -> ArrayView2<'_, F> {
        self.a
            .last()
            .expect("at least one layer")
            .slice(s![..n, ..])
    }

    /// The output layer's logits for the first `n` rows.
    pub fn logits(&self, n: usize) -> ArrayView2<'_, F> {
        self.z
            .last()
            .expect("at least one layer")
            .slice(s![..n, ..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn dense(w: Array2<f64>, b: Array1<f64>, activation: Activation) -> Layer<f64> {
        Layer::Dense(Dense {
            w,
            b,
            activation,
            alpha: activation.default_alpha() as f64,
        })
    }

    #[test]
    fn the_course_perceptron() {
        // w0 = 1, W = [3, -2], x = [-1, 2]: z = 1 − 3 − 4 = −6, sigmoid(−6) = 0.0024726…
        let net = Network {
            input_dim: 2,
            layers: vec![dense(
                array![[3.0], [-2.0]],
                array![1.0],
                Activation::Sigmoid,
            )],
        };
        let y = net.predict(array![[-1.0, 2.0]].view());
        assert!((y[[0, 0]] - 0.0024726231566347743).abs() < 1e-15);
    }

    #[test]
    fn dense_layer_with_constant_weights() {
        // burn's linear test: inputs 2, weights 1, bias 2 → 2·1 + 2·1 + 2 = 6 per unit
        let net = Network {
            input_dim: 2,
            layers: vec![dense(
                Array2::ones((2, 3)),
                Array1::from_elem(3, 2.0),
                Activation::Linear,
            )],
        };
        assert_eq!(
            net.predict(array![[2.0, 2.0]].view()),
            array![[6.0, 6.0, 6.0]]
        );
    }
}
