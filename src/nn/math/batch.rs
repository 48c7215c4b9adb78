//! One mini-batch's forward and backward pass, parallel inside each operation.
//!
//! Every matrix product runs once per batch, split over the threads of the current rayon pool
//! along the rows or columns of its result and never along the summed dimension. Each element
//! of a product is then computed by the same arithmetic whatever the thread count
//! (matrixmultiply blocks the summed dimension by a constant of its kernel, not by the shape of
//! the result), so a run is bit-identical on 1 or N threads. Element-wise work runs over fixed
//! chunks of [`CHUNK_ROWS`] rows, and sums over rows (the loss, the metrics, bias gradients)
//! run in a fixed order.
//!
//! Compared with running whole chunks of rows on separate threads, one product per batch packs
//! each weight matrix once instead of once per chunk, and the weight gradient sums the whole
//! batch in one product instead of one per chunk.
//!
//! This is the engine's only backward pass. Training runs it in f32; the gradient checks below
//! run the very same code in f64 against central finite differences of the forward pass.

use ndarray::linalg::general_mat_mul;
use ndarray::parallel::prelude::*;
use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut2, Axis, Zip, s};

use super::loss::Loss;
use super::metric::score;
use super::network::{
    Layer, Network, Parametric, Params, Workspace, as_rows, as_rows_mut, heads_forward, spread,
};
use super::rng::Rng;
use crate::nn::{Real, cst};

/// Rows per chunk of element-wise work, per dropout stream and per partial loss sum. Fixed
/// (never derived from the thread count) so results do not depend on how many threads run.
pub const CHUNK_ROWS: usize = 64;

/// Most rows one pass holds. A bigger batch runs in passes of this many rows whose gradients
/// are summed in pass order, so memory stays bounded for full-batch training.
pub const PASS_ROWS: usize = 1024;

/// Below this many multiply-adds a product runs on one thread: splitting costs more than it
/// saves.
const MIN_SPLIT_WORK: usize = 1 << 18;

/// Per-chunk sums of one pass: loss, correct predictions, absolute error.
#[derive(Clone, Copy, Default)]
struct ChunkSums {
    loss: f64,
    correct: f64,
    abs_err: f64,
}

/// The buffers of one batch, allocated once per training run. `F` is f32 in training; the
/// gradient checks run it in f64.
pub struct BatchStep<F = f32> {
    ws: Workspace<F>,
    x: Array2<F>,
    y: Array2<F>,
    /// The pass's row weights, when the run weighs rows (class or sample weights).
    w: Vec<F>,
    /// One dropout stream per chunk of the pass.
    rngs: Vec<Rng>,
    sums: Vec<ChunkSums>,
    /// Summed over the last batch, in chunk order.
    pub loss: f64,
    pub correct: f64,
    pub abs_err: f64,
}

impl<F: Real> BatchStep<F> {
    /// Buffers for batches of up to `batch` rows of `d` features and `k` targets.
    pub fn new(net: &Network<F>, batch: usize, d: usize, k: usize) -> Self {
        Self::with_pass_rows(net, batch, d, k, PASS_ROWS)
    }

    /// [`BatchStep::new`] with passes of at most `pass_rows` rows (tests use small passes to
    /// reach the summing of passes).
    fn with_pass_rows(
        net: &Network<F>,
        batch: usize,
        d: usize,
        k: usize,
        pass_rows: usize,
    ) -> Self {
        let rows = batch.clamp(1, pass_rows.max(1));
        BatchStep {
            ws: Workspace::new(net, rows),
            x: Array2::zeros((rows, d)),
            y: Array2::zeros((rows, k)),
            w: Vec::new(),
            rngs: Vec::with_capacity(rows.div_ceil(CHUNK_ROWS)),
            sums: Vec::with_capacity(rows.div_ceil(CHUNK_ROWS)),
            loss: 0.0,
            correct: 0.0,
            abs_err: 0.0,
        }
    }

    /// Forward and backward over the rows `rows` of `x`, `y`: `grads` ← the batch-mean
    /// gradient, and the loss and metric sums in `self`. `dropout(c)` is the dropout stream of
    /// the batch's chunk `c` (chunks of [`CHUNK_ROWS`] rows). With `weights` (one per row of
    /// `x`), each row's loss and gradient are multiplied by its weight, and the batch loss
    /// stays a mean over rows (Keras's `sample_weight`: Σ wᵢℓᵢ / n).
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &mut self,
        net: &Network<F>,
        x: &Array2<F>,
        y: &Array2<F>,
        weights: Option<&[F]>,
        rows: &[usize],
        loss: Loss,
        grads: &mut Params<F>,
        dropout: &(dyn Fn(usize) -> Rng + Sync),
    ) {
        let batch_rows = rows.len();
        (self.loss, self.correct, self.abs_err) = (0.0, 0.0, 0.0);
        let cap = self.ws.capacity();
        for (p, pass) in rows.chunks(cap).enumerate() {
            let n = pass.len();
            let first_chunk = p * cap / CHUNK_ROWS;
            self.gather(x, y, pass);
            self.w.clear();
            if let Some(w) = weights {
                self.w.extend(pass.iter().map(|&i| w[i]));
            }
            self.rngs.clear();
            self.rngs
                .extend((0..n.div_ceil(CHUNK_ROWS)).map(|c| dropout(first_chunk + c)));
            self.forward(net, n);
            self.output_delta(net, n, loss, batch_rows);
            for s in &self.sums {
                self.loss += s.loss;
                self.correct += s.correct;
                self.abs_err += s.abs_err;
            }
            let beta = if p == 0 { F::zero() } else { F::one() };
            self.backward(net, n, beta, grads);
        }
    }

    /// Copies the pass's rows of `x` and `y` into the contiguous buffers.
    fn gather(&mut self, x: &Array2<F>, y: &Array2<F>, pass: &[usize]) {
        let n = pass.len();
        let mut xs = self.x.slice_mut(s![..n, ..]);
        let mut ys = self.y.slice_mut(s![..n, ..]);
        xs.axis_chunks_iter_mut(Axis(0), CHUNK_ROWS)
            .into_par_iter()
            .zip(ys.axis_chunks_iter_mut(Axis(0), CHUNK_ROWS))
            .enumerate()
            .for_each(|(c, (mut xc, mut yc))| {
                let mine = &pass[c * CHUNK_ROWS..c * CHUNK_ROWS + xc.nrows()];
                for (r, &i) in mine.iter().enumerate() {
                    xc.row_mut(r).assign(&x.row(i));
                    yc.row_mut(r).assign(&y.row(i));
                }
            });
    }

    fn forward(&mut self, net: &Network<F>, n: usize) {
        let ws = &mut self.ws;
        let k = net.members();
        let last = net.layers.len() - 1;
        for (l, layer) in net.layers.iter().enumerate() {
            let (before, after) = ws.a.split_at_mut(l);
            let input = if l == 0 {
                self.x.slice(s![..n, ..])
            } else {
                before[l - 1].slice(s![..n, ..])
            };
            let mut a = after[0].slice_mut(s![..n, ..]);
            let mut z = ws.z[l].slice_mut(s![..n, ..]);
            match layer {
                Layer::Ensemble(r) => {
                    a.axis_chunks_iter_mut(Axis(0), CHUNK_ROWS)
                        .into_par_iter()
                        .zip(input.axis_chunks_iter(Axis(0), CHUNK_ROWS))
                        .for_each(|(a, x)| spread(r.view(), x, a));
                }
                Layer::Periodic(p) => {
                    a.axis_chunks_iter_mut(Axis(0), CHUNK_ROWS)
                        .into_par_iter()
                        .zip(input.axis_chunks_iter(Axis(0), CHUNK_ROWS))
                        .for_each(|(a, x)| p.forward(x, a));
                }
                Layer::Parametric(p) => {
                    // g = g(z) ; a = z + w·(g − z) (an ensemble's members as rows)
                    let (input, mut z, mut a) =
                        (as_rows(input, k), as_rows_mut(z, k), as_rows_mut(a, k));
                    z.axis_chunks_iter_mut(Axis(0), CHUNK_ROWS)
                        .into_par_iter()
                        .zip(a.axis_chunks_iter_mut(Axis(0), CHUNK_ROWS))
                        .zip(input.axis_chunks_iter(Axis(0), CHUNK_ROWS))
                        .for_each(|((g, a), x)| p.forward(x, g, a));
                }
                Layer::Dense(d) if k > 1 && l == last => {
                    // Each member's head on its own block: z_i = x_i·W_i + b_i ; a_i = g(z_i)
                    heads_forward(d, k, input, z.view_mut(), F::zero());
                    z.axis_chunks_iter_mut(Axis(0), CHUNK_ROWS)
                        .into_par_iter()
                        .zip(a.axis_chunks_iter_mut(Axis(0), CHUNK_ROWS))
                        .for_each(|(mut z, mut a)| {
                            z.zip_mut_with(&d.b, |z, &b| *z = *z + b);
                            let o = d.b.len() / k;
                            for i in 0..k {
                                let c = s![.., i * o..(i + 1) * o];
                                d.activation.forward(d.alpha, z.slice(c), a.slice_mut(c));
                            }
                        });
                }
                Layer::Dense(d) => {
                    // z = x·W + b ; a = g(z) (an ensemble's members as rows of their own)
                    let (input, mut z, mut a) =
                        (as_rows(input, k), as_rows_mut(z, k), as_rows_mut(a, k));
                    par_gemm(input, d.w.view(), F::zero(), z.view_mut());
                    z.axis_chunks_iter_mut(Axis(0), CHUNK_ROWS)
                        .into_par_iter()
                        .zip(a.axis_chunks_iter_mut(Axis(0), CHUNK_ROWS))
                        .for_each(|(mut z, a)| {
                            z.zip_mut_with(&d.b, |z, &b| *z = *z + b);
                            d.activation.forward(d.alpha, z.view(), a);
                        });
                }
                Layer::Dropout(rate) => {
                    let rate = *rate;
                    let keep = 1.0 - rate;
                    let scale: F = cst((1.0 / keep) as f64);
                    z.axis_chunks_iter_mut(Axis(0), CHUNK_ROWS)
                        .into_par_iter()
                        .zip(a.axis_chunks_iter_mut(Axis(0), CHUNK_ROWS))
                        .zip(self.rngs.par_iter_mut())
                        .enumerate()
                        .for_each(|(c, ((mut mask, mut a), rng))| {
                            let r = c * CHUNK_ROWS..c * CHUNK_ROWS + mask.nrows();
                            let input = input.slice(s![r, ..]);
                            if rate > 0.0 {
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
                            } else {
                                mask.fill(F::one());
                                a.assign(&input);
                            }
                        });
                }
            }
        }
    }

    /// The output layer's dL/dz into its `delta`, with the loss and metrics per chunk.
    fn output_delta(&mut self, net: &Network<F>, n: usize, loss: Loss, batch_rows: usize) {
        let ws = &mut self.ws;
        let last = net.layers.len() - 1;
        let Layer::Dense(out) = &net.layers[last] else {
            unreachable!("validated: the last layer is dense")
        };
        let (z, a) = (ws.z[last].slice(s![..n, ..]), ws.a[last].slice(s![..n, ..]));
        let y = self.y.slice(s![..n, ..]);
        let weights = &self.w;
        let mut delta = ws.delta[last].slice_mut(s![..n, ..]);
        let k = net.members();
        if k > 1 {
            // Each member's loss against the same targets, their mean the objective; the
            // metrics score the members' mean prediction, as the model predicts.
            let o = out.b.len() / k;
            delta
                .axis_chunks_iter_mut(Axis(0), CHUNK_ROWS)
                .into_par_iter()
                .enumerate()
                .map(|(c, mut d)| {
                    let r = c * CHUNK_ROWS..c * CHUNK_ROWS + d.nrows();
                    let (z, a, y) = (
                        z.slice(s![r.clone(), ..]),
                        a.slice(s![r.clone(), ..]),
                        y.slice(s![r.clone(), ..]),
                    );
                    let mut l = F::zero();
                    let mut mean = Array2::<F>::zeros((y.nrows(), o));
                    let inv: F = cst(1.0 / k as f64);
                    for i in 0..k {
                        let b = s![.., i * o..(i + 1) * o];
                        let (zi, ai, di) = (z.slice(b), a.slice(b), d.slice_mut(b));
                        mean.zip_mut_with(&ai, |m, &v| *m = *m + v * inv);
                        // (the gradient takes the 1/k through its row count; the summed
                        // loss takes it here)
                        l = l + inv
                            * if weights.is_empty() {
                                loss.gradient(
                                    out.activation,
                                    out.alpha,
                                    zi,
                                    ai,
                                    y,
                                    di,
                                    batch_rows * k,
                                )
                            } else {
                                weighted_gradient(
                                    loss,
                                    out,
                                    (zi, ai, y),
                                    di,
                                    &weights[r.clone()],
                                    batch_rows * k,
                                )
                            };
                    }
                    let (correct, abs_err) = score(mean.view(), y, loss);
                    ChunkSums {
                        loss: l.to_f64().unwrap_or(f64::NAN),
                        correct,
                        abs_err,
                    }
                })
                .collect_into_vec(&mut self.sums);
            return;
        }
        delta
            .axis_chunks_iter_mut(Axis(0), CHUNK_ROWS)
            .into_par_iter()
            .enumerate()
            .map(|(c, d)| {
                let r = c * CHUNK_ROWS..c * CHUNK_ROWS + d.nrows();
                let (z, a, y) = (
                    z.slice(s![r.clone(), ..]),
                    a.slice(s![r.clone(), ..]),
                    y.slice(s![r.clone(), ..]),
                );
                let (correct, abs_err) = score(a, y, loss);
                let l = if weights.is_empty() {
                    loss.gradient(out.activation, out.alpha, z, a, y, d, batch_rows)
                } else {
                    weighted_gradient(loss, out, (z, a, y), d, &weights[r], batch_rows)
                };
                ChunkSums {
                    loss: l.to_f64().unwrap_or(f64::NAN),
                    correct,
                    abs_err,
                }
            })
            .collect_into_vec(&mut self.sums);
    }

    /// Back from the output layer's `delta`: weight gradients (β = `beta` onto `grads`),
    /// bias gradients and each earlier layer's delta.
    fn backward(&mut self, net: &Network<F>, n: usize, beta: F, grads: &mut Params<F>) {
        let ws = &mut self.ws;
        let last = net.layers.len() - 1;
        let mut k = grads.w.len();
        let members = net.members();
        for l in (0..=last).rev() {
            let (dbefore, dafter) = ws.delta.split_at_mut(l);
            let delta = dafter[0].slice_mut(s![..n, ..]);
            match &net.layers[l] {
                Layer::Ensemble(r) => {
                    // dr[i, j] = Σ_rows d(copy)[·, i·d + j] · x[·, j], rows in order.
                    k -= 1;
                    let x = if l == 0 {
                        self.x.slice(s![..n, ..])
                    } else {
                        ws.a[l - 1].slice(s![..n, ..])
                    };
                    let g = &mut grads.w[k];
                    if beta == F::zero() {
                        g.fill(F::zero());
                    }
                    let d = g.ncols();
                    for (xr, dr) in x.rows().into_iter().zip(delta.rows()) {
                        for (i, mut gi) in g.rows_mut().into_iter().enumerate() {
                            Zip::from(&mut gi)
                                .and(&xr)
                                .and(&dr.slice(s![i * d..(i + 1) * d]))
                                .for_each(|g, &x, &dc| *g = *g + x * dc);
                        }
                    }
                    if l > 0 {
                        // dx[·, j] = Σ_i d(copy)[·, i·d + j] · r[i, j]
                        let mut prev = dbefore[l - 1].slice_mut(s![..n, ..]);
                        prev.axis_chunks_iter_mut(Axis(0), CHUNK_ROWS)
                            .into_par_iter()
                            .zip(delta.axis_chunks_iter(Axis(0), CHUNK_ROWS))
                            .for_each(|(mut p, dc)| {
                                p.fill(F::zero());
                                for (i, ri) in r.rows().into_iter().enumerate() {
                                    Zip::from(&mut p)
                                        .and(&dc.slice(s![.., i * d..(i + 1) * d]))
                                        .and_broadcast(&ri)
                                        .for_each(|p, &dc, &r| *p = *p + dc * r);
                                }
                            });
                    }
                }
                Layer::Periodic(p) => {
                    // Always the first layer: its input is the batch.
                    k -= 1;
                    let g = &mut grads.w[k];
                    if beta == F::zero() {
                        g.fill(F::zero());
                    }
                    p.gradient(
                        self.x.slice(s![..n, ..]),
                        ws.a[l].slice(s![..n, ..]),
                        delta.view(),
                        g,
                    );
                }
                Layer::Parametric(p) => {
                    // dw = Σ_rows δ·(g − z) ; dz = (1 − w)·δ + g'(z)·w·δ
                    k -= 1;
                    let z = as_rows(ws.a[l - 1].slice(s![..n, ..]), members);
                    let g = as_rows(ws.z[l].slice(s![..n, ..]), members);
                    let delta = as_rows(delta.view(), members);
                    if beta == F::zero() {
                        grads.w[k].fill(F::zero());
                    }
                    Parametric::gradient(z, g, delta, &mut grads.w[k]);
                    let mut prev = as_rows_mut(dbefore[l - 1].slice_mut(s![..n, ..]), members);
                    prev.axis_chunks_iter_mut(Axis(0), CHUNK_ROWS)
                        .into_par_iter()
                        .enumerate()
                        .for_each(|(c, pc)| {
                            let r = c * CHUNK_ROWS..c * CHUNK_ROWS + pc.nrows();
                            p.backward(
                                z.slice(s![r.clone(), ..]),
                                g.slice(s![r.clone(), ..]),
                                delta.slice(s![r, ..]),
                                pc,
                            );
                        });
                }
                Layer::Dense(d) if members > 1 && l == last => {
                    // The heads: each member's weight gradient from its own blocks.
                    k -= 1;
                    let input = ws.a[l - 1].slice(s![..n, ..]);
                    let (h, o) = (input.ncols() / members, d.w.ncols() / members);
                    for i in 0..members {
                        par_gemm(
                            input.slice(s![.., i * h..(i + 1) * h]).t(),
                            delta.slice(s![.., i * o..(i + 1) * o]),
                            beta,
                            grads.w[k].slice_mut(s![.., i * o..(i + 1) * o]),
                        );
                    }
                    bias_sum(delta.view(), beta, &mut grads.b[k]);
                    let mut prev = dbefore[l - 1].slice_mut(s![..n, ..]);
                    for i in 0..members {
                        par_gemm(
                            delta.slice(s![.., i * o..(i + 1) * o]),
                            d.w.slice(s![.., i * o..(i + 1) * o]).t(),
                            F::zero(),
                            prev.slice_mut(s![.., i * h..(i + 1) * h]),
                        );
                    }
                }
                Layer::Dense(d) => {
                    k -= 1;
                    let mut delta = as_rows_mut(delta, members);
                    if l != last {
                        let (z, a) = (
                            as_rows(ws.z[l].slice(s![..n, ..]), members),
                            as_rows(ws.a[l].slice(s![..n, ..]), members),
                        );
                        delta
                            .axis_chunks_iter_mut(Axis(0), CHUNK_ROWS)
                            .into_par_iter()
                            .enumerate()
                            .for_each(|(c, dc)| {
                                let r = c * CHUNK_ROWS..c * CHUNK_ROWS + dc.nrows();
                                let (z, a) = (z.slice(s![r.clone(), ..]), a.slice(s![r, ..]));
                                d.activation.backward(d.alpha, z, a, dc);
                            });
                    }
                    let input = if l == 0 {
                        self.x.slice(s![..n, ..])
                    } else {
                        as_rows(ws.a[l - 1].slice(s![..n, ..]), members)
                    };
                    // dW = xᵀ·dz ; db = Σ_rows dz
                    par_gemm(input.t(), delta.view(), beta, grads.w[k].view_mut());
                    bias_sum(delta.view(), beta, &mut grads.b[k]);
                    // dx = dz·Wᵀ
                    if l > 0 {
                        let prev = as_rows_mut(dbefore[l - 1].slice_mut(s![..n, ..]), members);
                        par_gemm(delta.view(), d.w.t(), F::zero(), prev);
                    }
                }
                Layer::Dropout(_) => {
                    if l > 0 {
                        let mask = ws.z[l].slice(s![..n, ..]);
                        let mut prev = dbefore[l - 1].slice_mut(s![..n, ..]);
                        Zip::from(&mut prev)
                            .and(&delta)
                            .and(&mask)
                            .par_for_each(|p, &d, &m| *p = d * m);
                    }
                }
            }
        }
    }
}

/// As [`Loss::gradient`], row by row, each row's loss and dL/dz multiplied by its weight.
fn weighted_gradient<F: Real>(
    loss: Loss,
    out: &super::network::Dense<F>,
    (z, a, y): (ArrayView2<F>, ArrayView2<F>, ArrayView2<F>),
    mut d: ArrayViewMut2<F>,
    w: &[F],
    batch_rows: usize,
) -> F {
    let mut total = F::zero();
    for (i, &wi) in w.iter().enumerate() {
        let r = s![i..i + 1, ..];
        let mut dr = d.slice_mut(r);
        let l = loss.gradient(
            out.activation,
            out.alpha,
            z.slice(r),
            a.slice(r),
            y.slice(r),
            dr.view_mut(),
            batch_rows,
        );
        dr.mapv_inplace(|v| v * wi);
        total = total + wi * l;
    }
    total
}

/// `out ← β·out + Σ_rows dz`, row by row in order.
fn bias_sum<F: Real>(dz: ArrayView2<F>, beta: F, out: &mut Array1<F>) {
    if beta == F::zero() {
        out.fill(F::zero());
    }
    for row in dz.rows() {
        Zip::from(&mut *out).and(&row).for_each(|g, &v| *g = *g + v);
    }
}

/// `c ← a·b + β·c` on the current rayon pool, split along the rows or the columns of `c`
/// (never along the summed dimension), so every element of `c` gets the same bits whatever the
/// number of threads.
pub fn par_gemm<F: Real>(a: ArrayView2<F>, b: ArrayView2<F>, beta: F, mut c: ArrayViewMut2<F>) {
    let threads = rayon::current_num_threads();
    let (m, k, n) = (a.nrows(), a.ncols(), b.ncols());
    if threads < 2 || m * n * k < MIN_SPLIT_WORK {
        return general_mat_mul(F::one(), &a, &b, beta, &mut c);
    }
    // Each part packs its share of one operand and all of the other: split the dimension
    // whose operand is the bigger one, so the smaller one is the one packed twice.
    if n >= m {
        let part = n.div_ceil(threads).next_multiple_of(16);
        c.axis_chunks_iter_mut(Axis(1), part)
            .into_par_iter()
            .zip(b.axis_chunks_iter(Axis(1), part))
            .for_each(|(mut c, b)| general_mat_mul(F::one(), &a, &b, beta, &mut c));
    } else {
        let part = m.div_ceil(threads).next_multiple_of(16);
        c.axis_chunks_iter_mut(Axis(0), part)
            .into_par_iter()
            .zip(a.axis_chunks_iter(Axis(0), part))
            .for_each(|(mut c, a)| general_mat_mul(F::one(), &a, &b, beta, &mut c));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::Activation;
    use crate::nn::math::network::{Dense, Init};
    use crate::nn::math::rng::Stream;
    use ndarray::array;

    fn random(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
        let mut rng = Rng::derive(seed, Stream::Init, &[]);
        Array2::from_shape_fn((rows, cols), |_| rng.normal() as f32)
    }

    /// The promise the whole module rests on: a product split over threads gives the same bits
    /// as the product in one piece, for the shapes and layouts training uses.
    #[test]
    fn split_products_are_bit_identical_to_whole_ones() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        // (rows, depth, cols): forward, input gradient and weight gradient shapes of mlp784
        for (i, &(m, k, n)) in [
            (128, 784, 256),
            (128, 256, 128),
            (784, 128, 256),
            (61, 999, 77),
        ]
        .iter()
        .enumerate()
        {
            let a = random(m, k, i as u64);
            let at = random(k, m, 10 + i as u64);
            let b = random(k, n, 20 + i as u64);
            let c0 = random(m, n, 30 + i as u64);
            for (a, beta) in [(a.view(), 0.0), (at.t(), 1.0)] {
                let mut whole = c0.clone();
                general_mat_mul(1.0, &a, &b, beta, &mut whole);
                let mut split = c0.clone();
                pool.install(|| par_gemm(a, b.view(), beta, split.view_mut()));
                let same = whole
                    .iter()
                    .zip(&split)
                    .all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "{m}×{k}×{n}, β = {beta}");
            }
        }
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
            layers.push(Layer::Dense(Dense {
                w,
                b,
                activation: act,
                alpha: act.default_alpha() as f64,
            }));
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

    /// The reference: the batch-mean loss from the inference forward pass (`Network::forward`),
    /// which shares no code with `BatchStep` beyond the activations and the loss.
    fn mean_loss(net: &Network<f64>, x: &Array2<f64>, y: &Array2<f64>, loss: Loss) -> f64 {
        let mut ws = Workspace::new(net, x.nrows());
        net.forward(&mut ws, x.view(), None);
        loss.value(ws.logits(x.nrows()), ws.output(x.nrows()), y.view()) / x.nrows() as f64
    }

    /// Every parameter's entry of `grads` (the step's analytic gradient) against central
    /// finite differences of `objective` (h = 1e-6): relative error below 1e-4 or absolute
    /// below 1e-9. Returns how many parameters it checked.
    fn assert_finite_differences(
        net: &mut Network<f64>,
        grads: &Params<f64>,
        label: &str,
        objective: impl Fn(&Network<f64>) -> f64,
    ) -> usize {
        let analytic = grads.slices().concat();
        let mut params = net.params();
        let h = 1e-6;
        let mut idx = 0;
        for ti in 0..params.w.len() * 2 {
            for j in 0..params.slices()[ti].len() {
                let orig = params.slices()[ti][j];
                params.slices_mut()[ti][j] = orig + h;
                net.set_params(&params);
                let lp = objective(net);
                params.slices_mut()[ti][j] = orig - h;
                net.set_params(&params);
                let lm = objective(net);
                params.slices_mut()[ti][j] = orig;
                net.set_params(&params);
                let numeric = (lp - lm) / (2.0 * h);
                let a = analytic[idx];
                let rel = (numeric - a).abs() / (numeric.abs() + a.abs()).max(1e-8);
                assert!(
                    rel < 1e-4 || (numeric - a).abs() < 1e-9,
                    "{label}: tensor {ti} param {j}: numeric {numeric} analytic {a}"
                );
                idx += 1;
            }
        }
        idx
    }

    fn no_dropout(_: usize) -> Rng {
        Rng::derive(0, Stream::Dropout, &[])
    }

    /// The step's gradients over `rows` of `x`, `y` in passes of 3 rows, after checking its
    /// loss against `objective` (the reference mean loss).
    fn step_gradients(
        net: &Network<f64>,
        (x, y): (&Array2<f64>, &Array2<f64>),
        rows: &[usize],
        loss: Loss,
        objective: &dyn Fn(&Network<f64>) -> f64,
    ) -> Params<f64> {
        let mut step = BatchStep::with_pass_rows(net, rows.len(), x.ncols(), y.ncols(), 3);
        let mut grads = Params::zeros_like(net);
        step.run(net, x, y, None, rows, loss, &mut grads, &no_dropout);
        let reference = objective(net);
        assert!(
            (step.loss / rows.len() as f64 - reference).abs() < 1e-12,
            "{}: the step's loss {} vs {reference}",
            loss.name(),
            step.loss / rows.len() as f64
        );
        grads
    }

    /// Makes `net` a TabM ensemble of `k` members: its output layer widened to one random
    /// head per member (`width` outputs each), random adapters first.
    fn into_ensemble(net: &mut Network<f64>, k: usize, width: usize, rng: &mut Rng) {
        let inputs = net.dense().next().expect("a dense layer").w.nrows();
        let Some(Layer::Dense(head)) = net.layers.last_mut() else {
            unreachable!()
        };
        head.w = Array2::from_shape_fn((head.w.nrows(), k * width), |_| 0.8 * rng.normal());
        head.b = Array1::from_shape_fn(k * width, |_| 0.3 * rng.normal());
        let r = Array2::from_shape_fn((k, inputs), |_| 1.0 + 0.5 * rng.normal());
        net.layers.insert(0, Layer::Ensemble(r));
    }

    /// The ensemble's objective from the inference forward pass: each of the `k` members'
    /// mean loss from its own head (`width` outputs), averaged.
    fn members_loss(
        net: &Network<f64>,
        x: &Array2<f64>,
        y: &Array2<f64>,
        loss: Loss,
        k: usize,
    ) -> f64 {
        let (n, width) = (x.nrows(), y.ncols());
        let mut ws = Workspace::new(net, n);
        net.forward(&mut ws, x.view(), None);
        let last = net.layers.len() - 1;
        (0..k)
            .map(|i| {
                let b = s![.., i * width..(i + 1) * width];
                loss.value(ws.z[last].slice(b), ws.a[last].slice(b), y.view())
            })
            .sum::<f64>()
            / (n * k) as f64
    }

    /// The training step's gradients against central finite differences, in f64, for every
    /// output activation × loss pairing the engine accepts and every hidden activation. The
    /// batch of 7 rows (in a shuffled order) runs in passes of 3 rows, so the summing of
    /// passes is checked too.
    #[test]
    fn training_gradients_match_finite_differences() {
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
        let rows = [4, 0, 6, 2, 5, 1, 3];
        let mut checked = 0;
        for (li, &loss) in losses.iter().enumerate() {
            for (ai, &out) in acts.iter().enumerate() {
                if loss.check_output_activation(out).is_err() {
                    continue;
                }
                // Class targets also as label smoothing trains on them (soft rows).
                let smoothing: &[f32] = if loss.is_classification() {
                    &[0.0, 0.2]
                } else {
                    &[0.0]
                };
                for &eps in smoothing {
                    let hidden = acts[(ai + li) % acts.len()];
                    let seed = (li * 100 + ai) as u64;
                    let mut net = random_net(&[3, 5, 4, 3], hidden, out, seed);
                    let mut rng = Rng::derive(seed, Stream::Split, &[]);
                    let x = Array2::from_shape_fn((7, 3), |_| rng.normal());
                    let mut y = targets(loss, 7, 3, &mut rng);
                    if eps > 0.0 {
                        let mut y32 = y.mapv(|v| v as f32);
                        let binary = loss == Loss::BinaryCrossentropy;
                        super::super::loss::smooth_labels(&mut y32, eps, binary);
                        y = y32.mapv(f64::from);
                    }
                    let mut step = BatchStep::with_pass_rows(&net, rows.len(), 3, 3, 3);
                    let mut grads = Params::zeros_like(&net);
                    step.run(&net, &x, &y, None, &rows, loss, &mut grads, &no_dropout);
                    let reference = mean_loss(&net, &x, &y, loss);
                    assert!(
                        (step.loss / rows.len() as f64 - reference).abs() < 1e-12,
                        "{}: the step's loss {} vs {reference}",
                        loss.name(),
                        step.loss / rows.len() as f64
                    );
                    let label = format!(
                        "{} + {} (hidden {})",
                        loss.name(),
                        out.name(),
                        hidden.name()
                    );
                    assert_finite_differences(&mut net, &grads, &label, |net| {
                        mean_loss(net, &x, &y, loss)
                    });
                    checked += 1;
                }
            }
        }
        // bce: sigmoid; cce, sparse: softmax (each plain and smoothed); mse/mae/huber: all 9
        assert_eq!(checked, 2 * (1 + 1 + 1) + 27);
    }

    /// A TabM ensemble (adapters, shared hidden layers, one head per member): the step's loss
    /// is the members' mean loss and its gradient, the adapters' included, that loss's —
    /// checked against central finite differences of the members' losses from the inference
    /// forward pass, in f64, in passes of 3 rows; and the network predicts the members' mean.
    #[test]
    fn ensemble_gradients_match_finite_differences() {
        let rows = [4, 0, 6, 2, 5, 1, 3];
        let k = 3;
        for (seed, loss, out, width, hidden) in [
            (
                21,
                Loss::CategoricalCrossentropy,
                Activation::Softmax,
                3,
                Activation::Tanh,
            ),
            (
                22,
                Loss::BinaryCrossentropy,
                Activation::Sigmoid,
                1,
                Activation::Gelu,
            ),
            (23, Loss::Mse, Activation::Linear, 2, Activation::Sigmoid),
            (24, Loss::Huber, Activation::Tanh, 2, Activation::Elu),
        ] {
            let mut net = random_net(&[3, 5, 4, width], hidden, out, seed);
            let mut rng = Rng::derive(seed, Stream::Init, &[1]);
            into_ensemble(&mut net, k, width, &mut rng);
            assert_eq!((net.members(), net.output_dim()), (k, width));
            let mut rng = Rng::derive(seed, Stream::Split, &[]);
            let x = Array2::from_shape_fn((7, 3), |_| rng.normal());
            let y = targets(loss, 7, width, &mut rng);
            let members_loss = |net: &Network<f64>| members_loss(net, &x, &y, loss, k);
            // The prediction is the members' mean.
            let mut ws = Workspace::new(&net, 7);
            net.forward(&mut ws, x.view(), None);
            let last = net.layers.len() - 1;
            let p = net.predict(x.view());
            for c in 0..width {
                for r in 0..7 {
                    let mean =
                        (0..k).map(|i| ws.a[last][[r, i * width + c]]).sum::<f64>() / k as f64;
                    assert!((p[[r, c]] - mean).abs() < 1e-12, "{}", loss.name());
                }
            }
            let mut step = BatchStep::with_pass_rows(&net, rows.len(), 3, width, 3);
            let mut grads = Params::zeros_like(&net);
            step.run(&net, &x, &y, None, &rows, loss, &mut grads, &no_dropout);
            let reference = members_loss(&net);
            assert!(
                (step.loss / rows.len() as f64 - reference).abs() < 1e-12,
                "{}: the step's loss {} vs {reference}",
                loss.name(),
                step.loss / rows.len() as f64
            );
            assert_eq!(grads.w[0].dim(), (k, 3), "the adapters come first");
            let label = format!("{} + {} (ensemble)", loss.name(), out.name());
            let checked = assert_finite_differences(&mut net, &grads, &label, members_loss);
            assert_eq!(checked, net.parameter_count());
        }
    }

    /// A periodic embedding first (of inputs 0 and 2, two frequencies each), alone and
    /// before a TabM ensemble: the step's gradient, the frequencies' included, against
    /// central finite differences of the inference forward pass, in f64, in passes of 3 rows;
    /// and the embedding's features are the value, then sines and cosines of ω·x.
    #[test]
    fn periodic_gradients_match_finite_differences() {
        use super::super::network::Periodic;
        let rows = [4, 0, 6, 2, 5, 1, 3];
        let (freqs, cols) = (2, vec![0, 2]);
        let width_in = 3 + 2 * freqs * cols.len();
        for (seed, loss, out, width, hidden, members) in [
            (31, Loss::Mse, Activation::Linear, 2, Activation::Tanh, 1),
            (
                32,
                Loss::CategoricalCrossentropy,
                Activation::Softmax,
                3,
                Activation::Gelu,
                1,
            ),
            (
                33,
                Loss::BinaryCrossentropy,
                Activation::Sigmoid,
                1,
                Activation::Elu,
                3,
            ),
            (
                34,
                Loss::Huber,
                Activation::Linear,
                2,
                Activation::Sigmoid,
                2,
            ),
        ] {
            let mut net = random_net(&[width_in, 5, 4, width], hidden, out, seed);
            let mut rng = Rng::derive(seed, Stream::Init, &[1]);
            if members > 1 {
                into_ensemble(&mut net, members, width, &mut rng);
            }
            let omega = Array2::from_shape_fn((cols.len(), freqs), |_| 1.5 * rng.normal());
            net.layers.insert(
                0,
                Layer::Periodic(Periodic {
                    columns: cols.clone(),
                    omega,
                }),
            );
            net.input_dim = 3;
            assert_eq!(net.members(), members);
            let mut rng = Rng::derive(seed, Stream::Split, &[]);
            let x = Array2::from_shape_fn((7, 3), |_| rng.normal());
            let y = targets(loss, 7, width, &mut rng);
            // The features: [x, sin(ω₀₀x₀), sin(ω₀₁x₀), cos(ω₀₀x₀), cos(ω₀₁x₀), … for x₂].
            let mut ws = Workspace::new(&net, 7);
            net.forward(&mut ws, x.view(), None);
            let Layer::Periodic(p) = &net.layers[0] else {
                unreachable!()
            };
            let (v, w) = (x[[5, 2]], p.omega[[1, 1]]);
            assert_eq!(ws.a[0][[5, 2]], v);
            assert_eq!(ws.a[0][[5, 3 + 4 + 1]], (w * v).sin());
            assert_eq!(ws.a[0][[5, 3 + 4 + 3]], (w * v).cos());
            let objective = |net: &Network<f64>| members_loss(net, &x, &y, loss, members);
            let grads = step_gradients(&net, (&x, &y), &rows, loss, &objective);
            assert_eq!(grads.w[0].dim(), (2, freqs), "the frequencies come first");
            let label = format!(
                "{} + {} (periodic, {members} members)",
                loss.name(),
                out.name()
            );
            let checked = assert_finite_differences(&mut net, &grads, &label, objective);
            assert_eq!(checked, net.parameter_count());
        }
    }

    /// Makes every hidden dense layer of `net` linear, followed by a parametric activation of
    /// its former activation with random mixing weights (not 1, so both terms count).
    fn into_parametric(net: &mut Network<f64>, rng: &mut Rng) {
        use super::super::network::Parametric;
        let mut l = 0;
        while l + 1 < net.layers.len() {
            if let Layer::Dense(d) = &mut net.layers[l] {
                let (activation, alpha) = (d.activation, d.alpha);
                d.activation = Activation::Linear;
                let weight = Array2::from_shape_fn((1, d.b.len()), |_| 0.6 + 0.5 * rng.normal());
                net.layers.insert(
                    l + 1,
                    Layer::Parametric(Parametric {
                        activation,
                        alpha,
                        weight,
                    }),
                );
            }
            l += 1;
        }
    }

    /// The parametric activations' backward pass (`z + w·(g(z) − z)` per unit) against
    /// central differences in f64, for every parameter, the mixing weights included: the
    /// activations that take one, alone, after a periodic embedding and in an ensemble
    /// (whose members share the weights), in passes of 3 rows.
    #[test]
    fn parametric_gradients_match_finite_differences() {
        use super::super::network::Periodic;
        let rows = [4, 0, 6, 2, 5, 1, 3];
        for (seed, loss, out, width, hidden, members, periodic) in [
            (
                41,
                Loss::Mse,
                Activation::Linear,
                2,
                Activation::Tanh,
                1,
                false,
            ),
            (
                42,
                Loss::CategoricalCrossentropy,
                Activation::Softmax,
                3,
                Activation::Gelu,
                1,
                true,
            ),
            (
                43,
                Loss::BinaryCrossentropy,
                Activation::Sigmoid,
                1,
                Activation::Elu,
                3,
                false,
            ),
            (
                44,
                Loss::Huber,
                Activation::Linear,
                2,
                Activation::LeakyRelu,
                2,
                true,
            ),
            (
                45,
                Loss::Mse,
                Activation::Linear,
                1,
                Activation::Softplus,
                1,
                false,
            ),
            (
                46,
                Loss::Mse,
                Activation::Linear,
                1,
                Activation::Sigmoid,
                2,
                false,
            ),
            (
                47,
                Loss::Mse,
                Activation::Linear,
                1,
                Activation::Relu,
                1,
                false,
            ),
        ] {
            let width_in = if periodic { 3 + 2 * 2 } else { 3 };
            let mut net = random_net(&[width_in, 5, 4, width], hidden, out, seed);
            let mut rng = Rng::derive(seed, Stream::Init, &[1]);
            into_parametric(&mut net, &mut rng);
            assert_eq!(net.parametric_count(), 2);
            if members > 1 {
                into_ensemble(&mut net, members, width, &mut rng);
            }
            if periodic {
                let omega = Array2::from_shape_fn((1, 2), |_| 1.5 * rng.normal());
                net.layers.insert(
                    0,
                    Layer::Periodic(Periodic {
                        columns: vec![1],
                        omega,
                    }),
                );
                net.input_dim = 3;
            }
            let mut rng = Rng::derive(seed, Stream::Split, &[]);
            let x = Array2::from_shape_fn((7, 3), |_| rng.normal());
            let y = targets(loss, 7, width, &mut rng);
            let objective = |net: &Network<f64>| members_loss(net, &x, &y, loss, members);
            let grads = step_gradients(&net, (&x, &y), &rows, loss, &objective);
            let label = format!(
                "{} + {} (parametric {}, {members} members, periodic {periodic})",
                loss.name(),
                out.name(),
                hidden.name()
            );
            let checked = assert_finite_differences(&mut net, &grads, &label, objective);
            assert_eq!(checked, net.parameter_count());
        }
    }

    /// With weights 1 a parametric activation is its activation; with 0, the identity.
    #[test]
    fn a_parametric_activation_mixes_its_activation_and_the_identity() {
        use super::super::network::Parametric;
        let z = ndarray::array![[-1.5, 0.5], [2.0, -0.25]];
        for (w, want) in [
            (1.0, z.mapv(|v: f64| v.tanh())),
            (0.0, z.clone()),
            (0.5, z.mapv(|v: f64| 0.5 * v + 0.5 * v.tanh())),
        ] {
            let p = Parametric {
                activation: Activation::Tanh,
                alpha: 0.0,
                weight: Array2::from_elem((1, 2), w),
            };
            let (mut g, mut a) = (Array2::zeros((2, 2)), Array2::zeros((2, 2)));
            p.forward(z.view(), g.view_mut(), a.view_mut());
            assert!(
                a.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-15),
                "w = {w}"
            );
        }
    }

    /// With row weights, the step's loss is Σ wᵢℓᵢ / n and its gradient that loss's: checked
    /// against central finite differences of the weighted mean of the rows' losses, in f64.
    #[test]
    fn weighted_gradients_match_finite_differences() {
        let rows = [4, 0, 6, 2, 5, 1, 3];
        let w = [0.5, 2.0, 1.0, 0.0, 3.0, 1.5, 0.25];
        for (seed, loss, out) in [
            (11, Loss::Mse, Activation::Linear),
            (12, Loss::CategoricalCrossentropy, Activation::Softmax),
            (13, Loss::BinaryCrossentropy, Activation::Sigmoid),
        ] {
            let mut net = random_net(&[3, 4, 3], Activation::Tanh, out, seed);
            let mut rng = Rng::derive(seed, Stream::Split, &[]);
            let x = Array2::from_shape_fn((7, 3), |_| rng.normal());
            let y = targets(loss, 7, 3, &mut rng);
            let weighted = |net: &Network<f64>| -> f64 {
                (0..7)
                    .map(|i| {
                        let xi = x.slice(s![i..i + 1, ..]).to_owned();
                        let yi = y.slice(s![i..i + 1, ..]).to_owned();
                        w[i] * mean_loss(net, &xi, &yi, loss)
                    })
                    .sum::<f64>()
                    / 7.0
            };
            let mut step = BatchStep::with_pass_rows(&net, rows.len(), 3, 3, 3);
            let mut grads = Params::zeros_like(&net);
            step.run(&net, &x, &y, Some(&w), &rows, loss, &mut grads, &no_dropout);
            let reference = weighted(&net);
            assert!(
                (step.loss / 7.0 - reference).abs() < 1e-12,
                "{}: the step's loss {} vs {reference}",
                loss.name(),
                step.loss / 7.0
            );
            let checked = assert_finite_differences(&mut net, &grads, loss.name(), weighted);
            assert_eq!(checked, net.parameter_count());
        }
    }

    /// With dropout on, the step's gradient is the gradient of the loss with the mask it drew
    /// held fixed: replay the mask as a constant multiplier and difference the first weight.
    #[test]
    fn dropout_gradient_uses_the_same_mask() {
        let mut net = random_net(&[3, 6, 2], Activation::Tanh, Activation::Linear, 5);
        net.layers.insert(1, Layer::Dropout(0.5));
        let x = array![[0.1, -0.2, 0.3], [0.5, 0.4, -0.9]];
        let y = array![[1.0, 0.0], [0.0, 1.0]];
        let mut step = BatchStep::new(&net, 2, 3, 2);
        let mut g = Params::zeros_like(&net);
        let dropout = |c: usize| Rng::derive(1, Stream::Dropout, &[c as u64]);
        step.run(&net, &x, &y, None, &[0, 1], Loss::Mse, &mut g, &dropout);
        let mask = step.ws.z[1].clone();
        // Kept units are scaled by 1/(1−p) = 2, dropped ones are 0; some of each here.
        assert!(mask.iter().all(|&m| m == 0.0 || m == 2.0));
        assert!(mask.iter().any(|&m| m == 0.0) && mask.iter().any(|&m| m == 2.0));
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
        for (i, j) in [(0, 0), (1, 3), (2, 5)] {
            let Layer::Dense(d0) = &mut net.layers[0] else {
                unreachable!()
            };
            let orig = d0.w[[i, j]];
            d0.w[[i, j]] = orig + eps;
            let lp = loss_with_mask(&net);
            let Layer::Dense(d0) = &mut net.layers[0] else {
                unreachable!()
            };
            d0.w[[i, j]] = orig - eps;
            let lm = loss_with_mask(&net);
            let Layer::Dense(d0) = &mut net.layers[0] else {
                unreachable!()
            };
            d0.w[[i, j]] = orig;
            let numeric = (lp - lm) / (2.0 * eps);
            assert!(
                (numeric - g.w[0][[i, j]]).abs() < 1e-7,
                "w[{i}][{j}]: {numeric} vs {}",
                g.w[0][[i, j]]
            );
        }
    }
}
