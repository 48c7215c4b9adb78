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

use ndarray::linalg::general_mat_mul;
use ndarray::parallel::prelude::*;
use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut2, Axis, Zip, s};

use super::loss::Loss;
use super::network::{Layer, Network, Params, Workspace};
use super::rng::Rng;

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

/// The buffers of one batch, allocated once per training run.
pub struct BatchStep {
    ws: Workspace<f32>,
    x: Array2<f32>,
    y: Array2<f32>,
    /// The pass's row weights, when the run weighs rows (class or sample weights).
    w: Vec<f32>,
    /// One dropout stream per chunk of the pass.
    rngs: Vec<Rng>,
    sums: Vec<ChunkSums>,
    /// Summed over the last batch, in chunk order.
    pub loss: f64,
    pub correct: f64,
    pub abs_err: f64,
}

impl BatchStep {
    /// Buffers for batches of up to `batch` rows of `d` features and `k` targets.
    pub fn new(net: &Network<f32>, batch: usize, d: usize, k: usize) -> Self {
        let rows = batch.clamp(1, PASS_ROWS);
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
        net: &Network<f32>,
        x: &Array2<f32>,
        y: &Array2<f32>,
        weights: Option<&[f32]>,
        rows: &[usize],
        loss: Loss,
        grads: &mut Params<f32>,
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
            self.backward(net, n, if p == 0 { 0.0 } else { 1.0 }, grads);
        }
    }

    /// Copies the pass's rows of `x` and `y` into the contiguous buffers.
    fn gather(&mut self, x: &Array2<f32>, y: &Array2<f32>, pass: &[usize]) {
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

    fn forward(&mut self, net: &Network<f32>, n: usize) {
        let ws = &mut self.ws;
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
                Layer::Dense(d) => {
                    // z = x·W + b ; a = g(z)
                    par_gemm(input, d.w.view(), 0.0, z.view_mut());
                    z.axis_chunks_iter_mut(Axis(0), CHUNK_ROWS)
                        .into_par_iter()
                        .zip(a.axis_chunks_iter_mut(Axis(0), CHUNK_ROWS))
                        .for_each(|(mut z, a)| {
                            z += &d.b;
                            d.activation.forward(d.alpha, z.view(), a);
                        });
                }
                Layer::Dropout(rate) => {
                    let rate = *rate;
                    let keep = 1.0 - rate;
                    let scale = 1.0 / keep;
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
                                    if rng.uniform_f32() < keep { scale } else { 0.0 }
                                });
                                Zip::from(&mut a)
                                    .and(&input)
                                    .and(&mask)
                                    .for_each(|a, &x, &m| *a = x * m);
                            } else {
                                mask.fill(1.0);
                                a.assign(&input);
                            }
                        });
                }
            }
        }
    }

    /// The output layer's dL/dz into its `delta`, with the loss and metrics per chunk.
    fn output_delta(&mut self, net: &Network<f32>, n: usize, loss: Loss, batch_rows: usize) {
        let ws = &mut self.ws;
        let last = net.layers.len() - 1;
        let Layer::Dense(out) = &net.layers[last] else {
            unreachable!("validated: the last layer is dense")
        };
        let (z, a) = (ws.z[last].slice(s![..n, ..]), ws.a[last].slice(s![..n, ..]));
        let y = self.y.slice(s![..n, ..]);
        let weights = &self.w;
        let mut delta = ws.delta[last].slice_mut(s![..n, ..]);
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
                let (correct, abs_err) = super::train::score(a, y, loss);
                let l = if weights.is_empty() {
                    loss.gradient(out.activation, out.alpha, z, a, y, d, batch_rows)
                } else {
                    weighted_gradient(loss, out, (z, a, y), d, &weights[r], batch_rows)
                };
                ChunkSums {
                    loss: l as f64,
                    correct,
                    abs_err,
                }
            })
            .collect_into_vec(&mut self.sums);
    }

    /// Back from the output layer's `delta`: weight gradients (β = `beta` onto `grads`),
    /// bias gradients and each earlier layer's delta.
    fn backward(&mut self, net: &Network<f32>, n: usize, beta: f32, grads: &mut Params<f32>) {
        let ws = &mut self.ws;
        let last = net.layers.len() - 1;
        let mut k = grads.w.len();
        for l in (0..=last).rev() {
            let (dbefore, dafter) = ws.delta.split_at_mut(l);
            let mut delta = dafter[0].slice_mut(s![..n, ..]);
            match &net.layers[l] {
                Layer::Dense(d) => {
                    k -= 1;
                    if l != last {
                        let (z, a) = (ws.z[l].slice(s![..n, ..]), ws.a[l].slice(s![..n, ..]));
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
                        ws.a[l - 1].slice(s![..n, ..])
                    };
                    // dW = xᵀ·dz ; db = Σ_rows dz
                    par_gemm(input.t(), delta.view(), beta, grads.w[k].view_mut());
                    bias_sum(delta.view(), beta, &mut grads.b[k]);
                    // dx = dz·Wᵀ
                    if l > 0 {
                        let prev = dbefore[l - 1].slice_mut(s![..n, ..]);
                        par_gemm(delta.view(), d.w.t(), 0.0, prev);
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
fn weighted_gradient(
    loss: Loss,
    out: &super::network::Dense<f32>,
    (z, a, y): (ArrayView2<f32>, ArrayView2<f32>, ArrayView2<f32>),
    mut d: ArrayViewMut2<f32>,
    w: &[f32],
    batch_rows: usize,
) -> f32 {
    let mut total = 0.0;
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
        total += wi * l;
    }
    total
}

/// `out ← β·out + Σ_rows dz`, row by row in order.
fn bias_sum(dz: ArrayView2<f32>, beta: f32, out: &mut Array1<f32>) {
    if beta == 0.0 {
        out.fill(0.0);
    }
    for row in dz.rows() {
        Zip::from(&mut *out).and(&row).for_each(|g, &v| *g += v);
    }
}

/// `c ← a·b + β·c` on the current rayon pool, split along the rows or the columns of `c`
/// (never along the summed dimension), so every element of `c` gets the same bits whatever the
/// number of threads.
pub fn par_gemm(a: ArrayView2<f32>, b: ArrayView2<f32>, beta: f32, mut c: ArrayViewMut2<f32>) {
    let threads = rayon::current_num_threads();
    let (m, k, n) = (a.nrows(), a.ncols(), b.ncols());
    if threads < 2 || m * n * k < MIN_SPLIT_WORK {
        return general_mat_mul(1.0, &a, &b, beta, &mut c);
    }
    // Each part packs its share of one operand and all of the other: split the dimension
    // whose operand is the bigger one, so the smaller one is the one packed twice.
    if n >= m {
        let part = n.div_ceil(threads).next_multiple_of(16);
        c.axis_chunks_iter_mut(Axis(1), part)
            .into_par_iter()
            .zip(b.axis_chunks_iter(Axis(1), part))
            .for_each(|(mut c, b)| general_mat_mul(1.0, &a, &b, beta, &mut c));
    } else {
        let part = m.div_ceil(threads).next_multiple_of(16);
        c.axis_chunks_iter_mut(Axis(0), part)
            .into_par_iter()
            .zip(a.axis_chunks_iter(Axis(0), part))
            .for_each(|(mut c, a)| general_mat_mul(1.0, &a, &b, beta, &mut c));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::rng::Stream;

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
}
