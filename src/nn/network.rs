//! A network: a sequence of dense and dropout layers, its forward pass and exact backprop.
//!
//! A dense layer computes `a = g(x·W + b)` with `W: input_dim × units` and `b: units`
//! (the Keras/TensorFlow layout). All per-batch buffers live in a [`Workspace`] that is
//! allocated once per chunk of rows and reused, so the hot loop does not allocate.

use ndarray::linalg::general_mat_mul;
use ndarray::{Array1, Array2, ArrayView2, Axis, Zip, s};
use serde::{Deserialize, Serialize};

use super::activation::Activation;
use super::loss::Loss;
use super::rng::Rng;
use super::{Real, cst};

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

    /// Backward pass after [`Network::forward`] on the same rows: writes this chunk's share of
    /// the batch-mean gradient into `grads` and returns the chunk's summed loss.
    pub fn backward(
        &self,
        ws: &mut Workspace<F>,
        x: ArrayView2<F>,
        y: ArrayView2<F>,
        loss: Loss,
        batch_rows: usize,
        grads: &mut Params<F>,
    ) -> F {
        let n = x.nrows();
        let total = self.backward_deltas(ws, y, loss, batch_rows);
        let dense = self
            .layers
            .iter()
            .enumerate()
            .filter_map(|(l, layer)| match layer {
                Layer::Dense(_) => Some(l),
                Layer::Dropout(_) => None,
            });
        for (k, l) in dense.enumerate() {
            let rows = grads.w[k].nrows();
            self.weight_gradient(ws, x, l, 0..rows, F::zero(), grads.w[k].view_mut());
            ws.bias_gradient(l, n, grads.b[k].view_mut());
        }
        total
    }

    /// The first half of [`Network::backward`]: turns the workspace's `delta` of every dense
    /// layer into dL/dz for the `y.nrows()` rows of the last forward pass, without forming the
    /// weight gradients, and returns the rows' summed loss.
    pub fn backward_deltas(
        &self,
        ws: &mut Workspace<F>,
        y: ArrayView2<F>,
        loss: Loss,
        batch_rows: usize,
    ) -> F {
        let n = y.nrows();
        let last = self.layers.len() - 1;
        let Layer::Dense(out) = &self.layers[last] else {
            unreachable!("validated: the last layer is dense")
        };
        let total = loss.gradient(
            out.activation,
            out.alpha,
            ws.z[last].slice(s![..n, ..]),
            ws.a[last].slice(s![..n, ..]),
            y,
            ws.delta[last].slice_mut(s![..n, ..]),
            batch_rows,
        );
        for l in (0..=last).rev() {
            let (dbefore, dafter) = ws.delta.split_at_mut(l);
            let mut delta = dafter[0].slice_mut(s![..n, ..]);
            match &self.layers[l] {
                Layer::Dense(d) => {
                    if l != last {
                        d.activation.backward(
                            d.alpha,
                            ws.z[l].slice(s![..n, ..]),
                            ws.a[l].slice(s![..n, ..]),
                            delta.view_mut(),
                        );
                    }
                    // dx = dz·Wᵀ
                    if l > 0 {
                        let mut prev = dbefore[l - 1].slice_mut(s![..n, ..]);
                        general_mat_mul(F::one(), &delta, &d.w.t(), F::zero(), &mut prev);
                    }
                }
                Layer::Dropout(_) => {
                    if l > 0 {
                        let mask = ws.z[l].slice(s![..n, ..]);
                        let mut prev = dbefore[l - 1].slice_mut(s![..n, ..]);
                        Zip::from(&mut prev)
                            .and(&delta)
                            .and(&mask)
                            .for_each(|p, &d, &m| *p = d * m);
                    }
                }
            }
        }
        total
    }

    /// After [`Network::backward_deltas`]: `out ← beta·out + xᵀ·dz` for the input rows `rows`
    /// of dense layer `l`'s weight gradient (`out` is those rows), where `x` is the layer's
    /// input (the network input `x` for `l = 0`) over the workspace's rows.
    pub fn weight_gradient(
        &self,
        ws: &Workspace<F>,
        x: ArrayView2<F>,
        l: usize,
        rows: std::ops::Range<usize>,
        beta: F,
        mut out: ndarray::ArrayViewMut2<F>,
    ) {
        let n = x.nrows();
        let input = if l == 0 {
            x
        } else {
            ws.a[l - 1].slice(s![..n, ..])
        };
        let delta = ws.delta[l].slice(s![..n, ..]);
        // dW = xᵀ·dz
        general_mat_mul(
            F::one(),
            &input.slice(s![.., rows]).t(),
            &delta,
            beta,
            &mut out,
        );
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

    /// After [`Network::backward_deltas`]: `out ← Σ_rows dz` of dense layer `l` over the
    /// first `n` rows, summed row by row in order.
    pub fn bias_gradient(&self, l: usize, n: usize, mut out: ndarray::ArrayViewMut1<F>) {
        out.fill(F::zero());
        for row in self.delta[l].slice(s![..n, ..]).rows() {
            Zip::from(&mut out).and(&row).for_each(|g, &v| *g = *g + v);
        }
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
    use crate::nn::rng::Stream;
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

    fn random_net(sizes: &[usize], hidden: Activation, out: Activation, seed: u64) -> Network<f64> {
        let mut rng = Rng::derive(seed, Stream::Init, &[]);
        let mut layers = vec![];
        for i in 1..sizes.len() {
            let act = if i + 1 == sizes.len() { out } else { hidden };
            let mut w = Array2::zeros((sizes[i - 1], sizes[i]));
            Init::GlorotNormal.fill(w.as_slice_mut().unwrap(), sizes[i - 1], sizes[i], &mut rng);
            let mut b = Array1::zeros(sizes[i]);
            for v in b.iter_mut() {
                *v = 0.3 * rng.normal();
            }
            // Stay off the kinks of relu-like functions for finite differences.
            w.mapv_inplace(|v: f64| v * 1.5);
            layers.push(dense(w, b, act));
        }
        Network {
            input_dim: sizes[0],
            layers,
        }
    }

    fn targets(loss: Loss, n: usize, k: usize, rng: &mut Rng) -> Array2<f64> {
        let mut y = Array2::zeros((n, k));
        for mut row in y.rows_mut() {
            match loss {
                Loss::BinaryCrossentropy => {
                    row.mapv_inplace(|_| (rng.uniform() < 0.5) as u8 as f64)
                }
                l if l.is_categorical() => row[rng.below(k)] = 1.0,
                _ => row.mapv_inplace(|_| rng.normal()),
            }
        }
        y
    }

    fn mean_loss(net: &Network<f64>, x: &Array2<f64>, y: &Array2<f64>, loss: Loss) -> f64 {
        let mut ws = Workspace::new(net, x.nrows());
        net.forward(&mut ws, x.view(), None);
        loss.value(ws.logits(x.nrows()), ws.output(x.nrows()), y.view()) / x.nrows() as f64
    }

    /// Analytic gradients against central finite differences, in f64, for every output
    /// activation × loss pairing the engine accepts and every hidden activation.
    #[test]
    fn gradients_match_finite_differences() {
        let losses = [
            Loss::BinaryCrossentropy,
            Loss::CategoricalCrossentropy,
            Loss::SparseCategoricalCrossentropy,
            Loss::Mse,
            Loss::Mae,
            Loss::Huber,
        ];
        let acts: Vec<Activation> = Activation::ALL
            .iter()
            .map(|n| serde_json::from_str(&format!("\"{n}\"")).unwrap())
            .collect();
        let mut checked = 0;
        for (li, &loss) in losses.iter().enumerate() {
            for (ai, &out) in acts.iter().enumerate() {
                if loss.check_output_activation(out).is_err() {
                    continue;
                }
                let hidden = acts[(ai + li) % acts.len()];
                let seed = (li * 100 + ai) as u64;
                let mut net = random_net(&[3, 5, 4, 3], hidden, out, seed);
                let mut rng = Rng::derive(seed, Stream::Split, &[]);
                let x = Array2::from_shape_fn((6, 3), |_| rng.normal());
                let y = targets(loss, 6, 3, &mut rng);
                let mut ws = Workspace::new(&net, 6);
                let mut grads = Params::zeros_like(&net);
                net.forward(&mut ws, x.view(), None);
                net.backward(&mut ws, x.view(), y.view(), loss, 6, &mut grads);
                let analytic = grads.slices().concat();
                let mut params = net.params();
                let h = 1e-6;
                let mut idx = 0;
                let n_tensors = params.w.len() * 2;
                for ti in 0..n_tensors {
                    let len = params.slices()[ti].len();
                    for j in 0..len {
                        let orig = params.slices()[ti][j];
                        params.slices_mut()[ti][j] = orig + h;
                        net.set_params(&params);
                        let lp = mean_loss(&net, &x, &y, loss);
                        params.slices_mut()[ti][j] = orig - h;
                        net.set_params(&params);
                        let lm = mean_loss(&net, &x, &y, loss);
                        params.slices_mut()[ti][j] = orig;
                        net.set_params(&params);
                        let numeric = (lp - lm) / (2.0 * h);
                        let a = analytic[idx];
                        let rel = (numeric - a).abs() / (numeric.abs() + a.abs()).max(1e-8);
                        assert!(
                            rel < 1e-4 || (numeric - a).abs() < 1e-9,
                            "{} + {} (hidden {}): param {idx}: numeric {numeric} analytic {a}",
                            loss.name(),
                            out.name(),
                            hidden.name()
                        );
                        idx += 1;
                    }
                }
                checked += 1;
            }
        }
        // bce: sigmoid; cce, sparse: softmax; mse/mae/huber: all 9 each
        assert_eq!(checked, 1 + 1 + 1 + 27);
    }

    #[test]
    fn dropout_gradient_uses_the_same_mask() {
        let mut net = random_net(&[3, 6, 2], Activation::Tanh, Activation::Linear, 5);
        net.layers.insert(1, Layer::Dropout(0.5));
        let x = array![[0.1, -0.2, 0.3], [0.5, 0.4, -0.9]];
        let y = array![[1.0, 0.0], [0.0, 1.0]];
        let mut ws = Workspace::new(&net, 2);
        let mut g = Params::zeros_like(&net);
        let mut rng = Rng::derive(1, Stream::Dropout, &[0]);
        net.forward(&mut ws, x.view(), Some(&mut rng));
        net.backward(&mut ws, x.view(), y.view(), Loss::Mse, 2, &mut g);
        // Same mask replayed as a fixed multiplier: finite differences on the first weight.
        let mask = ws.z[1].clone();
        let loss_with_mask = |net: &Network<f64>| {
            let mut ws2 = Workspace::new(net, 2);
            net.forward(&mut ws2, x.view(), None);
            let Layer::Dense(d) = &net.layers[2] else {
                unreachable!()
            };
            let h = &ws2.a[0] * &mask;
            let out = h.dot(&d.w) + &d.b;
            Loss::Mse.value(out.view(), out.view(), y.view()) / 2.0
        };
        let eps = 1e-6;
        let Layer::Dense(d0) = &mut net.layers[0] else {
            unreachable!()
        };
        d0.w[[0, 0]] += eps;
        let lp = loss_with_mask(&net);
        let Layer::Dense(d0) = &mut net.layers[0] else {
            unreachable!()
        };
        d0.w[[0, 0]] -= 2.0 * eps;
        let lm = loss_with_mask(&net);
        let numeric = (lp - lm) / (2.0 * eps);
        assert!(
            (numeric - g.w[0][[0, 0]]).abs() < 1e-7,
            "{numeric} vs {}",
            g.w[0][[0, 0]]
        );
        // Kept units are scaled by 1/(1−p) = 2, dropped ones are 0.
        assert!(mask.iter().all(|&m| m == 0.0 || m == 2.0));
    }
}
