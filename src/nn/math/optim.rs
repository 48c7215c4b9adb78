//! Optimizers: how a gradient becomes a weight update. Keras's update rules and default
//! hyper-parameters, so a spec ported from Keras behaves the same.

use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::network::{Network, Params};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    Sgd,
    Rmsprop,
    Adagrad,
    Adadelta,
    Adam,
    Adamw,
}

/// An optimizer as a user writes it: `"adam"` or `{"type": "adam", "learning_rate": 0.01}`.
/// Unset fields take Keras's defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerConfig {
    #[serde(rename = "type")]
    pub kind: OptimizerKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning_rate: Option<f32>,
    /// sgd, rmsprop
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub momentum: Option<f32>,
    /// sgd
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nesterov: Option<bool>,
    /// rmsprop, adadelta: decay of the squared-gradient average
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rho: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta_1: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta_2: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epsilon: Option<f32>,
    /// adagrad
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_accumulator_value: Option<f32>,
    /// adamw: decoupled weight decay
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_decay: Option<f32>,
    /// Rescale the whole gradient when its global L2 norm exceeds this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clipnorm: Option<f32>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(transparent)]
pub struct OptimizerSpec(pub OptimizerConfig);

impl Default for OptimizerSpec {
    fn default() -> Self {
        OptimizerSpec::of(OptimizerKind::Adam)
    }
}

impl OptimizerSpec {
    pub fn of(kind: OptimizerKind) -> Self {
        OptimizerSpec(OptimizerConfig {
            kind,
            learning_rate: None,
            momentum: None,
            nesterov: None,
            rho: None,
            beta_1: None,
            beta_2: None,
            epsilon: None,
            initial_accumulator_value: None,
            weight_decay: None,
            clipnorm: None,
        })
    }

    /// The learning rate in force before any schedule.
    pub fn learning_rate(&self) -> f32 {
        self.0.learning_rate.unwrap_or(match self.0.kind {
            OptimizerKind::Sgd => 0.01,
            _ => 0.001,
        })
    }

    /// This spec with every field the optimizer uses filled in with the value in force (the
    /// defaults `step` applies), so a dry run shows exactly what would run.
    pub fn with_defaults(&self) -> OptimizerSpec {
        let mut c = self.0.clone();
        c.learning_rate = Some(self.learning_rate());
        let keep = |v: Option<f32>, d: f32| Some(v.unwrap_or(d));
        match c.kind {
            OptimizerKind::Sgd => {
                c.momentum = keep(c.momentum, 0.0);
                c.nesterov = Some(c.nesterov.unwrap_or(false));
            }
            OptimizerKind::Rmsprop => {
                c.rho = keep(c.rho, 0.9);
                c.momentum = keep(c.momentum, 0.0);
                c.epsilon = keep(c.epsilon, 1e-7);
            }
            OptimizerKind::Adagrad => {
                c.initial_accumulator_value = keep(c.initial_accumulator_value, 0.1);
                c.epsilon = keep(c.epsilon, 1e-7);
            }
            OptimizerKind::Adadelta => {
                c.rho = keep(c.rho, 0.95);
                c.epsilon = keep(c.epsilon, 1e-7);
            }
            OptimizerKind::Adam => {
                c.beta_1 = keep(c.beta_1, 0.9);
                c.beta_2 = keep(c.beta_2, 0.999);
                c.epsilon = keep(c.epsilon, 1e-7);
            }
            OptimizerKind::Adamw => {
                c.beta_1 = keep(c.beta_1, 0.9);
                c.beta_2 = keep(c.beta_2, 0.999);
                c.epsilon = keep(c.epsilon, 1e-7);
                c.weight_decay = keep(c.weight_decay, 0.004);
            }
        }
        OptimizerSpec(c)
    }

    /// Field-level checks, as (field, message).
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let c = &self.0;
        let positive = |name: &'static str, v: Option<f32>| match v {
            Some(v) if !(v.is_finite() && v > 0.0) => {
                Err((name, format!("must be a positive number, got {v}")))
            }
            _ => Ok(()),
        };
        let unit = |name: &'static str, v: Option<f32>| match v {
            Some(v) if !(v.is_finite() && (0.0..1.0).contains(&v)) => {
                Err((name, format!("must be in [0, 1), got {v}")))
            }
            _ => Ok(()),
        };
        positive("learning_rate", c.learning_rate)?;
        positive("epsilon", c.epsilon)?;
        positive("clipnorm", c.clipnorm)?;
        unit("momentum", c.momentum)?;
        unit("rho", c.rho)?;
        unit("beta_1", c.beta_1)?;
        unit("beta_2", c.beta_2)?;
        match c.initial_accumulator_value {
            Some(v) if !(v.is_finite() && v >= 0.0) => {
                return Err(("initial_accumulator_value", format!("must be ≥ 0, got {v}")));
            }
            _ => {}
        }
        match c.weight_decay {
            Some(v) if !(v.is_finite() && v >= 0.0) => {
                return Err(("weight_decay", format!("must be ≥ 0, got {v}")));
            }
            _ => {}
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for OptimizerSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OptimizerSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an optimizer name such as \"adam\" or an object with a \"type\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                let kind = OptimizerKind::deserialize(de::value::StrDeserializer::<E>::new(v))?;
                Ok(OptimizerSpec::of(kind))
            }
            fn visit_map<M: MapAccess<'de>>(self, m: M) -> Result<Self::Value, M::Error> {
                OptimizerConfig::deserialize(de::value::MapAccessDeserializer::new(m))
                    .map(OptimizerSpec)
            }
        }
        d.deserialize_any(V)
    }
}

/// An optimizer's moving state: one or two slots per parameter tensor and the step count.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Optimizer {
    #[serde(with = "every_field")]
    pub spec: OptimizerConfig,
    pub iterations: u64,
    slots: Vec<Params<f32>>,
}

/// The config as a checkpoint stores it: every field written, absent or not. Checkpoints are
/// postcard, which is not self-describing, so the `skip_serializing_if` that keeps the JSON
/// short would shift every later field and make the checkpoint unreadable.
mod every_field {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{OptimizerConfig, OptimizerKind};

    type Plain = (
        OptimizerKind,
        [Option<f32>; 2],
        Option<bool>,
        [Option<f32>; 7],
    );

    pub fn serialize<S: Serializer>(c: &OptimizerConfig, s: S) -> Result<S::Ok, S::Error> {
        let plain: Plain = (
            c.kind,
            [c.learning_rate, c.momentum],
            c.nesterov,
            [
                c.rho,
                c.beta_1,
                c.beta_2,
                c.epsilon,
                c.initial_accumulator_value,
                c.weight_decay,
                c.clipnorm,
            ],
        );
        plain.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OptimizerConfig, D::Error> {
        let (kind, [learning_rate, momentum], nesterov, rest): Plain = Deserialize::deserialize(d)?;
        let [
            rho,
            beta_1,
            beta_2,
            epsilon,
            initial_accumulator_value,
            weight_decay,
            clipnorm,
        ] = rest;
        Ok(OptimizerConfig {
            kind,
            learning_rate,
            momentum,
            nesterov,
            rho,
            beta_1,
            beta_2,
            epsilon,
            initial_accumulator_value,
            weight_decay,
            clipnorm,
        })
    }
}

impl Optimizer {
    pub fn new(spec: &OptimizerSpec, net: &Network<f32>) -> Self {
        let c = &spec.0;
        let n_slots = match c.kind {
            OptimizerKind::Sgd => usize::from(c.momentum.unwrap_or(0.0) > 0.0),
            OptimizerKind::Rmsprop => 1 + usize::from(c.momentum.unwrap_or(0.0) > 0.0),
            OptimizerKind::Adagrad => 1,
            OptimizerKind::Adadelta | OptimizerKind::Adam | OptimizerKind::Adamw => 2,
        };
        let mut slots: Vec<Params<f32>> = (0..n_slots).map(|_| Params::zeros_like(net)).collect();
        if c.kind == OptimizerKind::Adagrad {
            let init = c.initial_accumulator_value.unwrap_or(0.1);
            for s in slots[0].slices_mut() {
                s.fill(init);
            }
        }
        Optimizer {
            spec: c.clone(),
            iterations: 0,
            slots,
        }
    }

    /// One update `w ← w − step(g)` at learning rate `lr`; `grads` may be rescaled by clipping.
    pub fn step(&mut self, net: &mut Network<f32>, grads: &mut Params<f32>, lr: f32) {
        let c = &self.spec;
        if let Some(max) = c.clipnorm {
            let norm = grads
                .slices()
                .iter()
                .flat_map(|s| s.iter())
                .map(|&g| g as f64 * g as f64)
                .sum::<f64>()
                .sqrt();
            if norm > max as f64 {
                let scale = (max as f64 / norm) as f32;
                for s in grads.slices_mut() {
                    s.iter_mut().for_each(|g| *g *= scale);
                }
            }
        }
        self.iterations += 1;
        let t = self.iterations as i32;
        let eps = c.epsilon.unwrap_or(1e-7);
        let params = net.slices_mut();
        let grads = grads.slices();
        let mut slots: Vec<Vec<&mut [f32]>> =
            self.slots.iter_mut().map(|s| s.slices_mut()).collect();
        for (i, (w, g)) in params.into_iter().zip(grads).enumerate() {
            match c.kind {
                OptimizerKind::Sgd => {
                    let momentum = c.momentum.unwrap_or(0.0);
                    if momentum > 0.0 {
                        // v ← μv − ηg ; w ← w + v (nesterov: w ← w + μv − ηg)
                        let nesterov = c.nesterov.unwrap_or(false);
                        let v = &mut slots[0][i];
                        for ((w, &g), v) in w.iter_mut().zip(g).zip(v.iter_mut()) {
                            *v = momentum * *v - lr * g;
                            *w += if nesterov { momentum * *v - lr * g } else { *v };
                        }
                    } else {
                        for (w, &g) in w.iter_mut().zip(g) {
                            *w -= lr * g;
                        }
                    }
                }
                OptimizerKind::Rmsprop => {
                    // s ← ρs + (1−ρ)g² ; w ← w − ηg/(√s + ε)
                    let rho = c.rho.unwrap_or(0.9);
                    let momentum = c.momentum.unwrap_or(0.0);
                    let (first, rest) = slots.split_at_mut(1);
                    let s = &mut first[0][i];
                    for (j, (w, &g)) in w.iter_mut().zip(g).enumerate() {
                        s[j] = rho * s[j] + (1.0 - rho) * g * g;
                        let step = lr * g / (s[j].sqrt() + eps);
                        if momentum > 0.0 {
                            let m = &mut rest[0][i][j];
                            *m = momentum * *m + step;
                            *w -= *m;
                        } else {
                            *w -= step;
                        }
                    }
                }
                OptimizerKind::Adagrad => {
                    // s ← s + g² ; w ← w − ηg/(√s + ε)
                    let s = &mut slots[0][i];
                    for ((w, &g), s) in w.iter_mut().zip(g).zip(s.iter_mut()) {
                        *s += g * g;
                        *w -= lr * g / (s.sqrt() + eps);
                    }
                }
                OptimizerKind::Adadelta => {
                    // s ← ρs + (1−ρ)g² ; Δ = √(u+ε)/√(s+ε)·g ; u ← ρu + (1−ρ)Δ² ; w ← w − ηΔ
                    let rho = c.rho.unwrap_or(0.95);
                    let (first, rest) = slots.split_at_mut(1);
                    let (s, u) = (&mut first[0][i], &mut rest[0][i]);
                    for (j, (w, &g)) in w.iter_mut().zip(g).enumerate() {
                        s[j] = rho * s[j] + (1.0 - rho) * g * g;
                        let delta = (u[j] + eps).sqrt() / (s[j] + eps).sqrt() * g;
                        u[j] = rho * u[j] + (1.0 - rho) * delta * delta;
                        *w -= lr * delta;
                    }
                }
                OptimizerKind::Adam | OptimizerKind::Adamw => {
                    // m ← β1m + (1−β1)g ; v ← β2v + (1−β2)g² ;
                    // w ← w − η·√(1−β2ᵗ)/(1−β1ᵗ)·m/(√v + ε)   (adamw first: w ← w − ηλw)
                    let b1 = c.beta_1.unwrap_or(0.9);
                    let b2 = c.beta_2.unwrap_or(0.999);
                    let alpha = lr * (1.0 - b2.powi(t)).sqrt() / (1.0 - b1.powi(t));
                    let decay = if c.kind == OptimizerKind::Adamw {
                        lr * c.weight_decay.unwrap_or(0.004)
                    } else {
                        0.0
                    };
                    let (first, rest) = slots.split_at_mut(1);
                    let (m, v) = (&mut first[0][i], &mut rest[0][i]);
                    let h = AdamStep {
                        b1,
                        b2,
                        alpha,
                        eps,
                        decay,
                    };
                    h.apply_parallel(w, g, m, v);
                }
            }
        }
    }
}

/// Elements per parallel piece of an element-wise update: big enough to amortise a rayon task,
/// small enough that a layer's weights split across two or more threads.
const UPDATE_PIECE: usize = 16 * 1024;

/// One Adam/AdamW update's constants.
#[derive(Clone, Copy)]
struct AdamStep {
    b1: f32,
    b2: f32,
    alpha: f32,
    eps: f32,
    decay: f32,
}

impl AdamStep {
    /// The update over whole tensors, in pieces on the current rayon pool. Every element's
    /// arithmetic is independent of the others, so the pieces and threads do not matter.
    fn apply_parallel(self, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        use rayon::prelude::*;
        if w.len() <= UPDATE_PIECE {
            return self.apply(w, g, m, v);
        }
        w.par_chunks_mut(UPDATE_PIECE)
            .zip(g.par_chunks(UPDATE_PIECE))
            .zip(m.par_chunks_mut(UPDATE_PIECE))
            .zip(v.par_chunks_mut(UPDATE_PIECE))
            .for_each(|(((w, g), m), v)| self.apply(w, g, m, v));
    }

    /// With AVX-512 when the CPU has it (detected at run time): sqrt, division, products and
    /// sums are correctly rounded at any vector width, so the results are the same bits.
    fn apply(self, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F, checked just above.
            return unsafe { self.apply_avx512(w, g, m, v) };
        }
        self.apply_portable(w, g, m, v)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn apply_avx512(self, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        self.apply_portable(w, g, m, v)
    }

    #[inline(always)]
    fn apply_portable(self, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        let n = w.len();
        let (g, m, v) = (&g[..n], &mut m[..n], &mut v[..n]);
        let AdamStep {
            b1,
            b2,
            alpha,
            eps,
            decay,
        } = self;
        for j in 0..n {
            let g = g[j];
            let mut wj = w[j];
            if decay != 0.0 {
                wj -= decay * wj;
            }
            let mj = m[j] + (1.0 - b1) * (g - m[j]);
            let vj = v[j] + (1.0 - b2) * (g * g - v[j]);
            m[j] = mj;
            v[j] = vj;
            w[j] = wj - alpha * mj / (vj.sqrt() + eps);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::math::activation::Activation;
    use crate::nn::math::network::{Dense, Layer};
    use ndarray::{Array1, array};

    fn one_weight(w: f32) -> Network<f32> {
        Network {
            input_dim: 1,
            layers: vec![Layer::Dense(Dense {
                w: array![[w]],
                b: Array1::zeros(1),
                activation: Activation::Linear,
                alpha: 0.0,
            })],
        }
    }

    /// Runs three steps with gradients 1.0, 0.5, -0.25 on the weight and returns it.
    fn run(spec: &str) -> f32 {
        let spec: OptimizerSpec = serde_json::from_str(spec).unwrap();
        let mut net = one_weight(1.0);
        let mut opt = Optimizer::new(&spec, &net);
        for g in [1.0, 0.5, -0.25] {
            let mut grads = Params {
                w: vec![array![[g]]],
                b: vec![array![0.0]],
            };
            opt.step(&mut net, &mut grads, spec.learning_rate());
        }
        net.params().w[0][[0, 0]]
    }

    // Reference values from Keras 3.15.1 on TensorFlow 2.21.0:
    //   v = keras.Variable(np.array([1.0], dtype="float32")); opt = keras.optimizers.X()
    //   for g in [1.0, 0.5, -0.25]: opt.apply_gradients([(tf.constant([g]), v)])
    //   print(float(np.asarray(v)[0]))
    #[test]
    fn updates_match_keras() {
        let cases: [(&str, f64); 8] = [
            (r#""sgd""#, 0.987500012),
            (r#"{"type":"sgd","momentum":0.9}"#, 0.965900004),
            (
                r#"{"type":"sgd","momentum":0.9,"nesterov":true}"#,
                0.956809998,
            ),
            (r#""rmsprop""#, 0.996117949),
            (r#""adagrad""#, 0.998826563),
            (r#""adam""#, 0.997504175),
            (r#""adamw""#, 0.997492194),
            (r#""adadelta""#, 0.999998152),
        ];
        for (spec, want) in cases {
            let got = run(spec) as f64;
            assert!((got - want).abs() < 2e-6, "{spec}: got {got}, want {want}");
        }
    }

    #[test]
    fn clipnorm_bounds_the_global_norm() {
        let spec: OptimizerSpec =
            serde_json::from_str(r#"{"type":"sgd","learning_rate":1.0,"clipnorm":1.0}"#).unwrap();
        let mut net = one_weight(0.0);
        let mut opt = Optimizer::new(&spec, &net);
        let mut grads = Params {
            w: vec![array![[3.0]]],
            b: vec![array![4.0]],
        };
        opt.step(&mut net, &mut grads, 1.0);
        assert!((net.params().w[0][[0, 0]] + 0.6).abs() < 1e-6);
        assert!((net.params().b[0][0] + 0.8).abs() < 1e-6);
    }

    #[test]
    fn bad_specs_are_named() {
        let e = serde_json::from_str::<OptimizerSpec>(r#""adamx""#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("adamx") && e.contains("adam"), "{e}");
        let e = serde_json::from_str::<OptimizerSpec>(r#"{"type":"adam","lr":1}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("lr"), "{e}");
        let s: OptimizerSpec = serde_json::from_str(r#"{"type":"adam","beta_1":1.5}"#).unwrap();
        assert_eq!(s.check().unwrap_err().0, "beta_1");
    }
}
