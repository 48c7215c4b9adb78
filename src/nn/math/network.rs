//! A network: a sequence of dense and dropout layers, and its forward pass for inference and
//! evaluation. Training's forward and backward pass is `batch::BatchStep`, which shares the
//! layers and the [`Workspace`] buffers defined here.
//!
//! A dense layer computes `a = g(x·W + b)` with `W: input_dim × units` and `b: units`
//! (the Keras/TensorFlow layout). All per-batch buffers live in a [`Workspace`] that is
//! allocated once per run and reused, so the hot loop does not allocate.

use ndarray::linalg::general_mat_mul;
use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut2, Axis, Zip, s};
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

/// The most members a TabM ensemble ([`Layer::Ensemble`], a spec's `ensemble`) may have.
pub const MAX_MEMBERS: u32 = 64;

/// The most frequencies a periodic embedding ([`Layer::Periodic`]) gives each input.
pub const MAX_FREQUENCIES: usize = 64;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Layer<F> {
    Dense(Dense<F>),
    /// Inverted dropout with this drop rate; identity at inference.
    Dropout(f32),
    /// TabM's ensemble in its "mini" form (Gorishniy et al., ICLR 2025), always the first
    /// layer: `k × input_dim`, member i's multiplicative adapter. It turns each row into `k`
    /// copies side by side (member i's copy: the row times row i), the layers after it are
    /// shared by the members (each works on every copy alike), the last dense layer holds
    /// one head per member (`k · outputs` units, member i's in block i), and the network's
    /// prediction is the members' mean. Training minimises the members' mean loss.
    Ensemble(Array2<F>),
    /// Periodic embeddings of numeric inputs (Gorishniy, Rubachev, Babenko, NeurIPS 2022),
    /// always the first layer: see [`Periodic`].
    Periodic(Periodic<F>),
    /// A parametric activation after a hidden dense layer (whose own activation is then
    /// linear): see [`Parametric`].
    Parametric(Parametric<F>),
}

/// A parametric activation (RealMLP, Holzmüller et al., NeurIPS 2024): unit `j` of its input
/// `z` becomes `z_j + w_j·(g(z_j) − z_j)`, a trained mix of the activation `g` and the identity
/// per unit. `w` starts at 1 (`g` itself); at 0 the unit is linear. Widths unchanged; in an
/// ensemble the members share `w`, as they share the layers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Parametric<F> {
    pub activation: Activation,
    /// The activation's own `alpha` (`leaky_relu`, `elu`).
    pub alpha: F,
    /// `1 × units`: the mixing weights.
    pub weight: Array2<F>,
}

impl<F: Real> Parametric<F> {
    /// `g ← g(z)` and `a ← z + w·(g − z)` over rows of one copy each.
    pub(crate) fn forward(
        &self,
        z: ArrayView2<F>,
        mut g: ArrayViewMut2<F>,
        mut a: ArrayViewMut2<F>,
    ) {
        self.activation.forward(self.alpha, z, g.view_mut());
        let w = self.weight.as_slice().expect("standard layout");
        // Row by row over contiguous slices, so the loop vectorises.
        for ((zr, gr), mut ar) in z.rows().into_iter().zip(g.rows()).zip(a.rows_mut()) {
            let (zr, gr) = (zr.to_slice().expect("rows"), gr.to_slice().expect("rows"));
            let ar = ar.as_slice_mut().expect("rows");
            for (((a, &z), &g), &w) in ar.iter_mut().zip(zr).zip(gr).zip(w) {
                *a = z + w * (g - z);
            }
        }
    }

    /// From `z`, `g = g(z)` and `delta = ∂L/∂a`: `prev ← ∂L/∂z = (1 − w)·δ + g'(z)·w·δ`.
    pub(crate) fn backward(
        &self,
        z: ArrayView2<F>,
        g: ArrayView2<F>,
        delta: ArrayView2<F>,
        mut prev: ArrayViewMut2<F>,
    ) {
        let w = self.weight.as_slice().expect("standard layout");
        for (dr, mut pr) in delta.rows().into_iter().zip(prev.rows_mut()) {
            let pr = pr.as_slice_mut().expect("rows");
            for ((p, &d), &w) in pr.iter_mut().zip(dr.to_slice().expect("rows")).zip(w) {
                *p = d * w;
            }
        }
        self.activation.backward(self.alpha, z, g, prev.view_mut());
        for (dr, mut pr) in delta.rows().into_iter().zip(prev.rows_mut()) {
            let pr = pr.as_slice_mut().expect("rows");
            for ((p, &d), &w) in pr.iter_mut().zip(dr.to_slice().expect("rows")).zip(w) {
                *p = *p + (F::one() - w) * d;
            }
        }
    }

    /// `grad += ∂L/∂w`: `Σ_rows δ·(g − z)`, rows in order.
    pub(crate) fn gradient(
        z: ArrayView2<F>,
        g: ArrayView2<F>,
        delta: ArrayView2<F>,
        grad: &mut Array2<F>,
    ) {
        let gw = grad.as_slice_mut().expect("standard layout");
        for ((zr, gr), dr) in z.rows().into_iter().zip(g.rows()).zip(delta.rows()) {
            let (zr, gr, dr) = (
                zr.to_slice().expect("rows"),
                gr.to_slice().expect("rows"),
                dr.to_slice().expect("rows"),
            );
            for (((s, &z), &g), &d) in gw.iter_mut().zip(zr).zip(gr).zip(dr) {
                *s = *s + d * (g - z);
            }
        }
    }
}

/// A periodic embedding: the inputs pass through unchanged and each embedded input `x_j`
/// (the `t`-th of `columns`) adds `sin(ω_t1·x_j) … sin(ω_tk·x_j), cos(ω_t1·x_j) … cos(ω_tk·x_j)`
/// after them, `2k` features whose angular frequencies `ω` (row `t` of `omega`) are trained.
/// Output width: `input_dim + 2k · columns.len()`. The layers after it see both the value
/// and its periodic features (RealMLP's PBLD keeps the value beside its embedding too).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Periodic<F> {
    /// The embedded inputs, ascending.
    pub columns: Vec<usize>,
    /// `columns.len() × k` angular frequencies.
    pub omega: Array2<F>,
}

impl<F: Real> Periodic<F> {
    /// The layer's output width for `input_dim` inputs.
    pub fn width(&self, input_dim: usize) -> usize {
        input_dim + 2 * self.omega.len()
    }

    /// `out` (rows × [`width`](Self::width)) from `x`.
    pub(crate) fn forward(&self, x: ArrayView2<F>, mut out: ArrayViewMut2<F>) {
        let (d, k) = (x.ncols(), self.omega.ncols());
        out.slice_mut(s![.., ..d]).assign(&x);
        for (xr, mut or) in x.rows().into_iter().zip(out.rows_mut()) {
            for (t, (&j, w)) in self.columns.iter().zip(self.omega.rows()).enumerate() {
                let base = d + 2 * k * t;
                let v = xr[j];
                for (l, &w) in w.iter().enumerate() {
                    let (sin, cos) = (w * v).sin_cos();
                    or[base + l] = sin;
                    or[base + k + l] = cos;
                }
            }
        }
    }

    /// `g += ∂L/∂ω` from the layer's input `x`, its output `a` (which holds the sines and
    /// cosines) and `∂L/∂a`, rows in order.
    pub(crate) fn gradient(
        &self,
        x: ArrayView2<F>,
        a: ArrayView2<F>,
        delta: ArrayView2<F>,
        g: &mut Array2<F>,
    ) {
        let (d, k) = (x.ncols(), self.omega.ncols());
        for ((xr, ar), dr) in x.rows().into_iter().zip(a.rows()).zip(delta.rows()) {
            for (t, (&j, mut gt)) in self.columns.iter().zip(g.rows_mut()).enumerate() {
                let base = d + 2 * k * t;
                let v = xr[j];
                for (l, g) in gt.iter_mut().enumerate() {
                    // d sin(ωv)/dω = v·cos(ωv) ; d cos(ωv)/dω = −v·sin(ωv)
                    let (sin, cos) = (ar[base + l], ar[base + k + l]);
                    *g = *g + v * (cos * dr[base + l] - sin * dr[base + k + l]);
                }
            }
        }
    }
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
        for (w, b) in net.tensors() {
            p.w.push(Array2::zeros(w.raw_dim()));
            p.b.push(Array1::zeros(b.map_or(0, |b| b.len())));
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
    /// The ensemble's member count (1: one network); see [`Layer::Ensemble`].
    pub fn members(&self) -> usize {
        self.layers
            .iter()
            .take(2)
            .find_map(|l| match l {
                Layer::Ensemble(r) => Some(r.nrows().max(1)),
                _ => None,
            })
            .unwrap_or(1)
    }

    /// Where the dense layers' tensors start in [`Params`]: after the input stage's tensors
    /// (a periodic embedding's frequencies, an ensemble's adapters).
    pub fn dense_offset(&self) -> usize {
        self.layers
            .iter()
            .take_while(|l| matches!(l, Layer::Ensemble(_) | Layer::Periodic(_)))
            .count()
    }

    /// The periodic embedding, when the network starts with one.
    pub fn periodic(&self) -> Option<&Periodic<F>> {
        match self.layers.first() {
            Some(Layer::Periodic(p)) => Some(p),
            _ => None,
        }
    }

    /// The trained tensors, in [`Params`]' order: each weight matrix with its bias (an
    /// ensemble's adapter has none).
    pub fn tensors(&self) -> impl Iterator<Item = (&Array2<F>, Option<&Array1<F>>)> {
        self.layers.iter().filter_map(|l| match l {
            Layer::Dense(d) => Some((&d.w, Some(&d.b))),
            Layer::Ensemble(r) => Some((r, None)),
            Layer::Periodic(p) => Some((&p.omega, None)),
            Layer::Parametric(p) => Some((&p.weight, None)),
            Layer::Dropout(_) => None,
        })
    }

    /// [`tensors`](Self::tensors) as flat mutable slices, weights and biases interleaved
    /// (an adapter's bias an empty slice), the order of [`Params::slices`].
    pub fn slices_mut(&mut self) -> Vec<&mut [F]> {
        let mut v = Vec::with_capacity(self.layers.len() * 2);
        for l in &mut self.layers {
            match l {
                Layer::Dense(d) => {
                    v.push(d.w.as_slice_mut().expect("standard layout"));
                    v.push(d.b.as_slice_mut().expect("standard layout"));
                }
                Layer::Ensemble(r) => {
                    v.push(r.as_slice_mut().expect("standard layout"));
                    v.push(&mut []);
                }
                Layer::Periodic(p) => {
                    v.push(p.omega.as_slice_mut().expect("standard layout"));
                    v.push(&mut []);
                }
                Layer::Parametric(p) => {
                    v.push(p.weight.as_slice_mut().expect("standard layout"));
                    v.push(&mut []);
                }
                Layer::Dropout(_) => {}
            }
        }
        v
    }

    /// The dense layers with their place in [`Params`] (parametric activations' and the
    /// input stage's tensors lie between and before them).
    pub fn dense_tensors(&self) -> impl Iterator<Item = (usize, &Dense<F>)> {
        self.layers
            .iter()
            .filter(|l| !matches!(l, Layer::Dropout(_)))
            .enumerate()
            .filter_map(|(t, l)| match l {
                Layer::Dense(d) => Some((t, d)),
                _ => None,
            })
    }

    /// How many parametric activations it has.
    pub fn parametric_count(&self) -> usize {
        self.layers
            .iter()
            .filter(|l| matches!(l, Layer::Parametric(_)))
            .count()
    }

    /// The dense layers, in order.
    pub fn dense(&self) -> impl Iterator<Item = &Dense<F>> {
        self.layers.iter().filter_map(|l| match l {
            Layer::Dense(d) => Some(d),
            _ => None,
        })
    }

    pub fn dense_mut(&mut self) -> impl Iterator<Item = &mut Dense<F>> {
        self.layers.iter_mut().filter_map(|l| match l {
            Layer::Dense(d) => Some(d),
            _ => None,
        })
    }

    /// The prediction's width (an ensemble's heads hold `members` times as many units).
    pub fn output_dim(&self) -> usize {
        self.dense()
            .last()
            .map_or(self.input_dim, |d| d.b.len() / self.members())
    }

    pub fn output_activation(&self) -> Activation {
        self.dense()
            .last()
            .map_or(Activation::Linear, |d| d.activation)
    }

    pub fn parameter_count(&self) -> usize {
        self.tensors()
            .map(|(w, b)| w.len() + b.map_or(0, |b| b.len()))
            .sum()
    }

    /// Copies the weights out (for early stopping's best weights and checkpoints).
    pub fn params(&self) -> Params<F> {
        Params {
            w: self.tensors().map(|(w, _)| w.clone()).collect(),
            b: self
                .tensors()
                .map(|(_, b)| b.cloned().unwrap_or_else(|| Array1::zeros(0)))
                .collect(),
        }
    }

    pub fn set_params(&mut self, p: &Params<F>) {
        for (i, s) in self.slices_mut().into_iter().enumerate() {
            let from = if i % 2 == 0 {
                p.w[i / 2].as_slice()
            } else {
                p.b[i / 2].as_slice()
            };
            s.copy_from_slice(from.expect("standard layout"));
        }
    }

    /// All weights finite?
    pub fn is_finite(&self) -> bool {
        self.tensors().all(|(w, b)| {
            w.iter()
                .chain(b.into_iter().flatten())
                .all(|v| v.is_finite())
        })
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

    /// The members' mean output (and logits whose output it is) into the workspace, after
    /// an ensemble's forward pass over `n` rows.
    fn average_members(&self, ws: &mut Workspace<F>, n: usize) {
        let k = self.members();
        let Some(Layer::Dense(head)) = self.layers.last() else {
            return;
        };
        let o = head.b.len() / k;
        let last = self.layers.len() - 1;
        let (a, z) = (ws.a[last].slice(s![..n, ..]), ws.z[last].slice(s![..n, ..]));
        let mut mean = ws.mean_a.slice_mut(s![..n, ..]);
        let mut logits = ws.mean_z.slice_mut(s![..n, ..]);
        let inv: F = cst(1.0 / k as f64);
        mean.fill(F::zero());
        logits.fill(F::zero());
        for i in 0..k {
            mean.zip_mut_with(&a.slice(s![.., i * o..(i + 1) * o]), |m, &v| {
                *m = *m + v * inv
            });
            logits.zip_mut_with(&z.slice(s![.., i * o..(i + 1) * o]), |m, &v| {
                *m = *m + v * inv
            });
        }
        // Logits of the mean, for the losses that read logits: log-probabilities for a
        // softmax, log-odds for a sigmoid (clipped as Keras clips probabilities).
        let eps: F = cst(1e-7);
        match head.activation {
            Activation::Softmax => Zip::from(&mut logits)
                .and(&mean)
                .for_each(|z, &p| *z = p.max(eps).ln()),
            Activation::Sigmoid => Zip::from(&mut logits).and(&mean).for_each(|z, &p| {
                let p = p.max(eps).min(F::one() - eps);
                *z = p.ln() - (F::one() - p).ln();
            }),
            _ => {}
        }
    }

    /// Forward pass over the rows of `x` (at most the workspace's capacity). With `dropout`
    /// set the dropout layers draw their masks from it; without, they are the identity.
    pub fn forward(&self, ws: &mut Workspace<F>, x: ArrayView2<F>, mut dropout: Option<&mut Rng>) {
        let n = x.nrows();
        debug_assert!(n <= ws.rows);
        let k = self.members();
        let last = self.layers.len().saturating_sub(1);
        for (l, layer) in self.layers.iter().enumerate() {
            let (before, after) = ws.a.split_at_mut(l);
            let input = if l == 0 {
                x
            } else {
                before[l - 1].slice(s![..n, ..])
            };
            let mut a = after[0].slice_mut(s![..n, ..]);
            match layer {
                Layer::Ensemble(r) => spread(r.view(), input, a),
                Layer::Periodic(p) => p.forward(input, a),
                Layer::Parametric(p) => p.forward(
                    as_rows(input, k),
                    as_rows_mut(ws.z[l].slice_mut(s![..n, ..]), k),
                    as_rows_mut(a, k),
                ),
                Layer::Dense(d) if k > 1 && l == last => {
                    let mut z = ws.z[l].slice_mut(s![..n, ..]);
                    z.assign(&d.b.broadcast((n, d.b.len())).expect("bias width"));
                    heads_forward(d, k, input, z.view_mut(), F::one());
                    let o = d.b.len() / k;
                    for i in 0..k {
                        let c = s![.., i * o..(i + 1) * o];
                        d.activation.forward(d.alpha, z.slice(c), a.slice_mut(c));
                    }
                }
                Layer::Dense(d) => {
                    let input = as_rows(input, k);
                    let mut z = as_rows_mut(ws.z[l].slice_mut(s![..n, ..]), k);
                    let rows = z.nrows();
                    z.assign(&d.b.broadcast((rows, d.b.len())).expect("bias width"));
                    general_mat_mul(F::one(), &input, &d.w, F::one(), &mut z);
                    d.activation.forward(d.alpha, z.view(), as_rows_mut(a, k));
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
        if k > 1 {
            self.average_members(ws, n);
        }
    }
}

/// An ensemble's first layer: `out[b, i·d + j] = x[b, j] · r[i, j]` (member i's copy).
pub(crate) fn spread<F: Real>(r: ArrayView2<F>, x: ArrayView2<F>, mut out: ArrayViewMut2<F>) {
    let d = r.ncols();
    for (xr, mut or) in x.rows().into_iter().zip(out.rows_mut()) {
        for (i, ri) in r.rows().into_iter().enumerate() {
            Zip::from(or.slice_mut(s![i * d..(i + 1) * d]))
                .and(&xr)
                .and(&ri)
                .for_each(|o, &x, &r| *o = x * r);
        }
    }
}

/// Rows of `k` members' copies side by side (`n × k·w`) as `n·k` rows of one copy each
/// (`n·k × w`): the same memory, which a shared layer multiplies in one product.
pub(crate) fn as_rows<F>(m: ArrayView2<'_, F>, k: usize) -> ArrayView2<'_, F> {
    if k <= 1 {
        return m;
    }
    let (n, w) = (m.nrows(), m.ncols() / k);
    m.into_shape_with_order((n * k, w))
        .expect("a slice of whole rows is contiguous")
}

/// [`as_rows`], mutable.
pub(crate) fn as_rows_mut<F>(m: ArrayViewMut2<'_, F>, k: usize) -> ArrayViewMut2<'_, F> {
    if k <= 1 {
        return m;
    }
    let (n, w) = (m.nrows(), m.ncols() / k);
    m.into_shape_with_order((n * k, w))
        .expect("a slice of whole rows is contiguous")
}

/// The heads of an ensemble's last layer: `z_i ← x_i·W_i + β·z_i` for each member's blocks.
pub(crate) fn heads_forward<F: Real>(
    d: &Dense<F>,
    k: usize,
    x: ArrayView2<F>,
    mut z: ArrayViewMut2<F>,
    beta: F,
) {
    let (h, o) = (x.ncols() / k, d.w.ncols() / k);
    for i in 0..k {
        let xi = x.slice(s![.., i * h..(i + 1) * h]);
        let wi = d.w.slice(s![.., i * o..(i + 1) * o]);
        let mut zi = z.slice_mut(s![.., i * o..(i + 1) * o]);
        general_mat_mul(F::one(), &xi, &wi, beta, &mut zi);
    }
}

/// Reusable buffers for forward and backward passes over up to `rows` rows.
pub struct Workspace<F> {
    rows: usize,
    /// Pre-activations of dense layers; the mask of dropout layers; `g(z)` of parametric
    /// activations.
    pub(super) z: Vec<Array2<F>>,
    /// Layer outputs.
    pub(super) a: Vec<Array2<F>>,
    /// dL/d(layer output), turned into dL/dz in place for dense layers.
    pub(super) delta: Vec<Array2<F>>,
    /// An ensemble's mean output and the logits of that mean (empty for one network).
    mean_a: Array2<F>,
    mean_z: Array2<F>,
}

impl<F: Real> Workspace<F> {
    pub fn new(net: &Network<F>, rows: usize) -> Self {
        let k = net.members();
        let mut width = net.input_dim;
        let last = net.layers.len().saturating_sub(1);
        let (mut z, mut a, mut delta) = (vec![], vec![], vec![]);
        for (l, layer) in net.layers.iter().enumerate() {
            match layer {
                // The heads hold every member's units already.
                Layer::Dense(d) if l == last => width = d.b.len(),
                Layer::Dense(d) => width = d.b.len() * k,
                Layer::Ensemble(r) => width = r.len(),
                Layer::Periodic(p) => width = p.width(width),
                Layer::Dropout(_) | Layer::Parametric(_) => {}
            }
            z.push(Array2::zeros((rows, width)));
            a.push(Array2::zeros((rows, width)));
            delta.push(Array2::zeros((rows, width)));
        }
        let mean = if k > 1 {
            (rows, net.output_dim())
        } else {
            (0, 0)
        };
        Workspace {
            rows,
            z,
            a,
            delta,
            mean_a: Array2::zeros(mean),
            mean_z: Array2::zeros(mean),
        }
    }

    pub fn capacity(&self) -> usize {
        self.rows
    }

    /// The network's output for the first `n` rows of the last forward pass (an ensemble's:
    /// its members' mean).
    pub fn output(&self, n: usize) -> ArrayView2<'_, F> {
        if self.mean_a.nrows() > 0 {
            return self.mean_a.slice(s![..n, ..]);
        }
        self.a
            .last()
            .expect("at least one layer")
            .slice(s![..n, ..])
    }

    /// The output layer's logits for the first `n` rows (an ensemble's: logits of its mean).
    pub fn logits(&self, n: usize) -> ArrayView2<'_, F> {
        if self.mean_z.nrows() > 0 {
            return self.mean_z.slice(s![..n, ..]);
        }
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
