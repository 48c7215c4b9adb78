//! A model as an ONNX graph (opset 17, IR version 8) that onnxruntime and other runtimes run
//! on the same raw inputs `predict` takes, giving the same outputs: standardisation
//! (`Sub`, `Mul`), one `Gemm` per dense layer, each activation as its ONNX operator (`alpha`
//! written out for `LeakyRelu` and `Elu`, whose ONNX defaults differ from ours; `gelu` as
//! `x·½·(1 + erf(x/√2))`, since opset 17 has no `Gelu`), dropout left out (it is the identity
//! at inference), a periodic embedding as `Gather`, `Mul`, `Sin`, `Cos` and `Concat`, a TabM
//! ensemble as a broadcast `Mul`, batched `MatMul`s and a `ReduceMean`. Classifiers answer `probabilities` and `label_index` (an index into the
//! classes, which the caller writes into the metadata); other models answer `values`.
//!
//! The protobuf is written by hand: the ONNX subset a dense network needs is seven message
//! types and four wire types, so a small encoder here spares the crate a code generator
//! (`protoc` and a build script) or a protobuf dependency. Field numbers are `onnx.proto`'s.
//!
//! A tabular model (with an encoder) takes one input per raw column instead of `input`, and
//! the graph imputes and one-hot encodes them first (see [`encode_columns`]), with ONNX-ML's
//! `LabelEncoder` for the categories.

use super::model::Model;
use super::preprocess::OutputEncoding;
use crate::nn::math::activation::Activation;
use crate::nn::math::network::Layer;

/// The default domain's operator set the graph uses.
pub const OPSET: i64 = 17;
/// The IR version of opset 17.
const IR_VERSION: i64 = 8;

/// A protobuf message being written: fields appended in any order.
#[derive(Default)]
struct Pb(Vec<u8>);

impl Pb {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, field: u32, wire: u8) {
        self.varint((u64::from(field) << 3) | u64::from(wire));
    }

    /// A varint field (int32, int64, enum); negative numbers as ten-byte two's complement.
    fn int(&mut self, field: u32, v: i64) -> &mut Self {
        self.key(field, 0);
        self.varint(v as u64);
        self
    }

    fn bytes(&mut self, field: u32, b: &[u8]) -> &mut Self {
        self.key(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }

    fn str(&mut self, field: u32, s: &str) -> &mut Self {
        self.bytes(field, s.as_bytes())
    }

    fn msg(&mut self, field: u32, m: Pb) -> &mut Self {
        self.bytes(field, &m.0)
    }

    fn float(&mut self, field: u32, v: f32) -> &mut Self {
        self.key(field, 5);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
}

// onnx.proto's TensorProto.DataType values.
const FLOAT: i64 = 1;
const STRING: i64 = 8;
const DOUBLE: i64 = 11;
const INT64: i64 = 7;

/// The ONNX-ML domain (`LabelEncoder`) and the version of it the graph uses.
const ML: &str = "ai.onnx.ml";
const ML_OPSET: i64 = 2;

/// TensorProto: an initializer of float values.
fn tensor(name: &str, dims: &[i64], values: &[f32]) -> Pb {
    let mut t = Pb::default();
    for &d in dims {
        t.int(1, d);
    }
    t.int(2, FLOAT);
    t.str(8, name);
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    t.bytes(9, &raw);
    t
}

/// TensorProto: an initializer of f64 values.
fn tensor_f64(name: &str, dims: &[i64], values: &[f64]) -> Pb {
    let mut t = Pb::default();
    for &d in dims {
        t.int(1, d);
    }
    t.int(2, DOUBLE);
    t.str(8, name);
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    t.bytes(9, &raw);
    t
}

/// TensorProto: an initializer of int64 values.
fn tensor_i64(name: &str, dims: &[i64], values: &[i64]) -> Pb {
    let mut t = Pb::default();
    for &d in dims {
        t.int(1, d);
    }
    t.int(2, INT64);
    t.str(8, name);
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    t.bytes(9, &raw);
    t
}

/// ValueInfoProto of a tensor of `elem` type with `dims` (`None`: the batch dimension `N`).
fn value_info(name: &str, elem: i64, dims: &[Option<i64>]) -> Pb {
    let mut shape = Pb::default();
    for d in dims {
        let mut dim = Pb::default();
        match d {
            Some(v) => dim.int(1, *v),
            None => dim.str(2, "N"),
        };
        shape.msg(1, dim);
    }
    let mut tensor_type = Pb::default();
    tensor_type.int(1, elem);
    tensor_type.msg(2, shape);
    let mut ty = Pb::default();
    ty.msg(1, tensor_type);
    let mut v = Pb::default();
    v.str(1, name);
    v.msg(2, ty);
    v
}

/// An attribute of a node.
enum Attr<'a> {
    Float(&'a str, f32),
    Int(&'a str, i64),
    Ints(&'a str, Vec<i64>),
    Strings(&'a str, Vec<String>),
}

impl Attr<'_> {
    fn encode(&self) -> Pb {
        // AttributeProto.AttributeType: FLOAT = 1, INT = 2, INTS = 7, STRINGS = 8.
        let mut a = Pb::default();
        match self {
            Attr::Float(name, v) => {
                a.str(1, name).float(2, *v).int(20, 1);
            }
            Attr::Int(name, v) => {
                a.str(1, name).int(3, *v).int(20, 2);
            }
            // INTS = 7, STRINGS = 8.
            Attr::Ints(name, vs) => {
                a.str(1, name);
                for v in vs {
                    a.int(8, *v);
                }
                a.int(20, 7);
            }
            Attr::Strings(name, vs) => {
                a.str(1, name);
                for v in vs {
                    a.str(9, v);
                }
                a.int(20, 8);
            }
        }
        a
    }
}

/// The graph being built: nodes, initializers, and fresh tensor names.
#[derive(Default)]
struct Graph {
    nodes: Vec<Pb>,
    initializers: Vec<Pb>,
    count: usize,
}

impl Graph {
    fn fresh(&mut self, hint: &str) -> String {
        self.count += 1;
        format!("{hint}_{}", self.count)
    }

    /// Adds a node of the default domain; returns its output's name.
    fn node(&mut self, op: &str, inputs: &[&str], attrs: &[Attr], output: Option<&str>) -> String {
        self.node_in("", op, inputs, attrs, output)
    }

    /// Adds a node of operator set `domain` (`ai.onnx.ml`).
    fn node_in(
        &mut self,
        domain: &str,
        op: &str,
        inputs: &[&str],
        attrs: &[Attr],
        output: Option<&str>,
    ) -> String {
        let out = output.map_or_else(|| self.fresh(&op.to_lowercase()), str::to_owned);
        let mut n = Pb::default();
        for i in inputs {
            n.str(1, i);
        }
        n.str(2, &out);
        n.str(3, &format!("{op}_{}", self.nodes.len()));
        n.str(4, op);
        for a in attrs {
            n.msg(5, a.encode());
        }
        if !domain.is_empty() {
            n.str(7, domain);
        }
        self.nodes.push(n);
        out
    }

    fn constant(&mut self, hint: &str, dims: &[i64], values: &[f32]) -> String {
        let name = self.fresh(hint);
        self.initializers.push(tensor(&name, dims, values));
        name
    }

    /// A scalar f64 initializer.
    fn double(&mut self, v: f64) -> String {
        let name = self.fresh("c");
        self.initializers.push(tensor_f64(&name, &[], &[v]));
        name
    }

    /// `op(a, constant b)` on f64 tensors.
    fn with(&mut self, op: &str, a: &str, b: f64) -> String {
        let c = self.double(b);
        self.node(op, &[a, &c], &[], None)
    }

    /// `Floor(a / b)` on f64 tensors.
    fn floor_div(&mut self, a: &str, b: f64) -> String {
        let q = self.with("Div", a, b);
        self.node("Floor", &[&q], &[], None)
    }
}

/// A date column's inputs (the day number, `N×1` doubles, `NaN` missing) as
/// [`values::date_features`](super::values::date_features) computes them: the civil date by
/// Howard Hinnant's algorithm in f64 arithmetic (exact on whole days), the cycles as sine and
/// cosine of the day number's multiples. Returns the blocks to concatenate.
fn encode_date(
    g: &mut Graph,
    name: &str,
    format: &super::values::DateFormat,
    fill: f64,
    missing_indicator: bool,
) -> Vec<String> {
    use std::f64::consts::TAU;
    let nan = g.node("IsNaN", &[name], &[], None);
    let fill = g.double(fill);
    let d = g.node("Where", &[&nan, &fill, name], &[], None);
    let whole = g.node("Floor", &[&d], &[], None);
    // days → (year, month) in the proleptic Gregorian calendar.
    let z = g.with("Add", &whole, 719_468.0);
    let era = g.floor_div(&z, 146_097.0);
    let era_days = g.with("Mul", &era, 146_097.0);
    let doe = g.node("Sub", &[&z, &era_days], &[], None);
    let a = g.floor_div(&doe, 1460.0);
    let b = g.floor_div(&doe, 36_524.0);
    let c = g.floor_div(&doe, 146_096.0);
    let t = g.node("Sub", &[&doe, &a], &[], None);
    let t = g.node("Add", &[&t, &b], &[], None);
    let t = g.node("Sub", &[&t, &c], &[], None);
    let yoe = g.floor_div(&t, 365.0);
    let era_years = g.with("Mul", &era, 400.0);
    let y = g.node("Add", &[&yoe, &era_years], &[], None);
    let y365 = g.with("Mul", &yoe, 365.0);
    let y4 = g.floor_div(&yoe, 4.0);
    let y100 = g.floor_div(&yoe, 100.0);
    let start = g.node("Add", &[&y365, &y4], &[], None);
    let start = g.node("Sub", &[&start, &y100], &[], None);
    let doy = g.node("Sub", &[&doe, &start], &[], None);
    let doy5 = g.with("Mul", &doy, 5.0);
    let doy5 = g.with("Add", &doy5, 2.0);
    let mp = g.floor_div(&doy5, 153.0);
    let ten = g.double(10.0);
    let late = g.node("GreaterOrEqual", &[&mp, &ten], &[], None);
    let late = g.node("Cast", &[&late], &[Attr::Int("to", DOUBLE)], None);
    let year = g.node("Add", &[&y, &late], &[], None);
    let late12 = g.with("Mul", &late, 12.0);
    let month0 = g.with("Add", &mp, 2.0);
    let month0 = g.node("Sub", &[&month0, &late12], &[], None);
    let float = |g: &mut Graph, x: &str| g.node("Cast", &[x], &[Attr::Int("to", FLOAT)], None);
    let mut blocks = vec![float(g, &d), float(g, &year)];
    // The remainder in f64, the angle then as a float (runtimes take the sine of floats).
    let mut cycle = |g: &mut Graph, x: &str, period: f64| {
        let q = g.floor_div(x, period);
        let q = g.with("Mul", &q, period);
        let r = g.node("Sub", &[x, &q], &[], None);
        let a = g.with("Mul", &r, TAU);
        let a = g.with("Div", &a, period);
        let a = float(g, &a);
        for op in ["Sin", "Cos"] {
            blocks.push(g.node(op, &[&a], &[], None));
        }
    };
    cycle(g, &month0, 12.0);
    cycle(g, &whole, super::values::YEAR_DAYS);
    if format.weekday {
        let shifted = g.with("Add", &whole, 3.0);
        cycle(g, &shifted, 7.0);
    }
    if format.time {
        let frac = g.node("Sub", &[&d, &whole], &[], None);
        cycle(g, &frac, 1.0);
    }
    if missing_indicator {
        blocks.push(float(g, &nan));
    }
    blocks
}

/// A tabular model's inputs, encoded as `Encoder::transform_row` encodes a row: one
/// `[N, 1]` input per raw column that is not ignored, named by the column. Numeric and yes/no
/// columns are float (NaN: missing; a yes/no column's 0 is no, anything else yes), imputed
/// with `Where(IsNaN)` and followed by the missing indicator where the model has one (a
/// number written with currency or `%` is sent as the number it reads as); date columns are
/// doubles, days since 1970-01-01 (see [`encode_date`]); categorical columns are strings ("" is missing), one-hot through ONNX-ML's `LabelEncoder`
/// and `OneHot` (an unseen category goes to "other", or to no slot at all). Text is matched
/// as sent: the runtime does not trim spaces as `predict` does. Returns the concatenation.
fn encode_columns(
    g: &mut Graph,
    e: &super::tabular::Encoder,
    inputs: &mut Vec<Pb>,
) -> Result<String, String> {
    use super::tabular::EncodedColumn as C;
    let mut blocks: Vec<String> = vec![];
    for c in &e.columns {
        match c {
            C::Ignore { .. } => {}
            C::Numeric {
                name,
                fill,
                missing_indicator,
                ..
            }
            | C::Boolean {
                name,
                fill,
                missing_indicator,
            } => {
                inputs.push(value_info(name, FLOAT, &[None, Some(1)]));
                let nan = g.node("IsNaN", &[name], &[], None);
                let value = if matches!(c, C::Boolean { .. }) {
                    let zero = g.constant("zero", &[], &[0.0]);
                    let eq = g.node("Equal", &[name, &zero], &[], None);
                    let yes = g.node("Not", &[&eq], &[], None);
                    g.node("Cast", &[&yes], &[Attr::Int("to", FLOAT)], None)
                } else {
                    name.clone()
                };
                let fill = g.constant("fill", &[], &[*fill]);
                let filled = g.node("Where", &[&nan, &fill, &value], &[], None);
                match c {
                    // Piecewise-linear: clamp((x − b_t) / (b_{t+1} − b_t), 0, 1) for every
                    // bin t at once, [N, 1] against [1, T].
                    C::Numeric { bins, .. } if bins.len() >= 2 => {
                        let t = bins.len() - 1;
                        let lo = g.constant("bin_lo", &[1, t as i64], &bins[..t]);
                        let widths: Vec<f32> = bins.windows(2).map(|w| w[1] - w[0]).collect();
                        let width = g.constant("bin_width", &[1, t as i64], &widths);
                        let shifted = g.node("Sub", &[&filled, &lo], &[], None);
                        let scaled = g.node("Div", &[&shifted, &width], &[], None);
                        let zero = g.constant("zero", &[], &[0.0]);
                        let one = g.constant("one", &[], &[1.0]);
                        blocks.push(g.node("Clip", &[&scaled, &zero, &one], &[], None));
                    }
                    _ => blocks.push(filled),
                }
                if *missing_indicator {
                    blocks.push(g.node("Cast", &[&nan], &[Attr::Int("to", FLOAT)], None));
                }
            }
            C::Date {
                name,
                format,
                fill,
                missing_indicator,
            } => {
                inputs.push(value_info(name, DOUBLE, &[None, Some(1)]));
                blocks.extend(encode_date(g, name, format, *fill, *missing_indicator));
            }
            C::Categorical {
                name,
                categories,
                missing,
                other,
            } => {
                inputs.push(value_info(name, STRING, &[None, Some(1)]));
                let k = categories.len() as i64;
                let width = k + i64::from(*missing) + i64::from(*other);
                if width == 0 {
                    continue;
                }
                // Slots: the categories, then missing, then other; `width` is no slot (OneHot
                // turns an index out of range into a row of zeros).
                let other_slot = if *other {
                    k + i64::from(*missing)
                } else {
                    width
                };
                let mut keys = categories.clone();
                let mut values: Vec<i64> = (0..k).collect();
                if !categories.iter().any(String::is_empty) {
                    keys.push(String::new());
                    values.push(if *missing { k } else { other_slot });
                }
                let index = g.node_in(
                    ML,
                    "LabelEncoder",
                    &[name],
                    &[
                        Attr::Strings("keys_strings", keys),
                        Attr::Ints("values_int64s", values),
                        Attr::Int("default_int64", other_slot),
                    ],
                    None,
                );
                let depth = g.fresh("depth");
                g.initializers.push(tensor_i64(&depth, &[], &[width]));
                let on_off = g.constant("on_off", &[2], &[0.0, 1.0]);
                let hot = g.node(
                    "OneHot",
                    &[&index, &depth, &on_off],
                    &[Attr::Int("axis", -1)],
                    None,
                );
                let shape = g.fresh("shape");
                g.initializers.push(tensor_i64(&shape, &[2], &[-1, width]));
                blocks.push(g.node("Reshape", &[&hot, &shape], &[], None));
            }
        }
    }
    if blocks.is_empty() {
        return Err("the model's encoder has no input columns".into());
    }
    let refs: Vec<&str> = blocks.iter().map(String::as_str).collect();
    Ok(g.node("Concat", &refs, &[Attr::Int("axis", 1)], None))
}

/// The nodes of activation `a` (with its `alpha`) on `z`; the result's name.
fn activation(g: &mut Graph, a: Activation, alpha: f32, z: String) -> String {
    match a {
        Activation::Linear => z,
        Activation::Sigmoid => g.node("Sigmoid", &[&z], &[], None),
        Activation::Tanh => g.node("Tanh", &[&z], &[], None),
        Activation::Relu => g.node("Relu", &[&z], &[], None),
        Activation::LeakyRelu => g.node("LeakyRelu", &[&z], &[Attr::Float("alpha", alpha)], None),
        Activation::Elu => g.node("Elu", &[&z], &[Attr::Float("alpha", alpha)], None),
        Activation::Softplus => g.node("Softplus", &[&z], &[], None),
        Activation::Softmax => g.node("Softmax", &[&z], &[Attr::Int("axis", -1)], None),
        Activation::Gelu => {
            // gelu(z) = z · ½ · (1 + erf(z / √2))
            let inv_sqrt2 = g.constant("inv_sqrt2", &[], &[std::f32::consts::FRAC_1_SQRT_2]);
            let one = g.constant("one", &[], &[1.0]);
            let half = g.constant("half", &[], &[0.5]);
            let s = g.node("Mul", &[&z, &inv_sqrt2], &[], None);
            let e = g.node("Erf", &[&s], &[], None);
            let p = g.node("Add", &[&e, &one], &[], None);
            let h = g.node("Mul", &[&z, &half], &[], None);
            g.node("Mul", &[&h, &p], &[], None)
        }
    }
}

/// The ONNX model of `m`, with `metadata` as its metadata properties (the caller writes
/// `classes` there).
pub fn to_onnx(m: &Model, metadata: &[(String, String)]) -> Result<Vec<u8>, String> {
    let mut g = Graph::default();
    let mut inputs = vec![];
    let mut x = match &m.encoder {
        None => {
            inputs.push(value_info(
                "input",
                FLOAT,
                &[None, Some(m.input_dim() as i64)],
            ));
            "input".to_owned()
        }
        Some(e) => encode_columns(&mut g, e, &mut inputs)?,
    };
    if let Some(s) = &m.standardizer {
        let d = s.mean.len() as i64;
        let mean = g.constant("mean", &[d], &s.mean);
        // The same `(x − mean) · (1/std)` as `Standardizer::transform`, in f32.
        let inv: Vec<f32> = s.std.iter().map(|s| 1.0 / s).collect();
        let inv = g.constant("inv_std", &[d], &inv);
        let c = g.node("Sub", &[&x, &mean], &[], None);
        x = g.node("Mul", &[&c, &inv], &[], None);
        if s.clip.iter().any(|&c| c) {
            // Smooth clipping, `x / √(1 + (x·⅓)²)` as `preprocess::smooth_clip` computes it,
            // kept where `clip` holds: `clipped · mask + x · (1 − mask)`.
            let third = g.constant("clip_third", &[d], &vec![1.0f32 / 3.0; d as usize]);
            let one = g.constant("clip_one", &[d], &vec![1.0f32; d as usize]);
            let mask: Vec<f32> = s.clip.iter().map(|&c| f32::from(u8::from(c))).collect();
            let keep: Vec<f32> = mask.iter().map(|m| 1.0 - m).collect();
            let mask = g.constant("clip_mask", &[d], &mask);
            let keep = g.constant("clip_keep", &[d], &keep);
            let t = g.node("Mul", &[&x, &third], &[], None);
            let t2 = g.node("Mul", &[&t, &t], &[], None);
            let a = g.node("Add", &[&one, &t2], &[], None);
            let r = g.node("Sqrt", &[&a], &[], None);
            let clipped = g.node("Div", &[&x, &r], &[], None);
            let on = g.node("Mul", &[&clipped, &mask], &[], None);
            let off = g.node("Mul", &[&x, &keep], &[], None);
            x = g.node("Add", &[&on, &off], &[], None);
        }
    }
    let k = m.network.members();
    let last = m.network.layers.len().saturating_sub(1);
    for (l, layer) in m.network.layers.iter().enumerate() {
        let d = match layer {
            Layer::Dense(d) => d,
            Layer::Dropout(_) => continue, // the identity at inference
            Layer::Periodic(p) => {
                // [x, sin(ω·x_cols), cos(ω·x_cols)]: the embedded inputs as `rows × m × 1`
                // times ω (`m × k`), broadcast; sines beside cosines per input, flattened.
                let (m, kk) = (p.omega.nrows() as i64, p.omega.ncols() as i64);
                let cols = g.fresh("periodic_columns");
                let idx: Vec<i64> = p.columns.iter().map(|&c| c as i64).collect();
                g.initializers.push(tensor_i64(&cols, &[m], &idx));
                let picked = g.node("Gather", &[&x, &cols], &[Attr::Int("axis", 1)], None);
                let col_shape = g.fresh("shape");
                g.initializers
                    .push(tensor_i64(&col_shape, &[3], &[-1, m, 1]));
                let v = g.node("Reshape", &[&picked, &col_shape], &[], None);
                let w: Vec<f32> = p.omega.iter().copied().collect();
                let w = g.constant(&format!("omega{l}"), &[m, kk], &w);
                let angle = g.node("Mul", &[&v, &w], &[], None);
                let sin = g.node("Sin", &[&angle], &[], None);
                let cos = g.node("Cos", &[&angle], &[], None);
                let both = g.node("Concat", &[&sin, &cos], &[Attr::Int("axis", 2)], None);
                let flat_shape = g.fresh("shape");
                g.initializers
                    .push(tensor_i64(&flat_shape, &[2], &[-1, 2 * m * kk]));
                let flat = g.node("Reshape", &[&both, &flat_shape], &[], None);
                x = g.node("Concat", &[&x, &flat], &[Attr::Int("axis", 1)], None);
                continue;
            }
            Layer::Parametric(p) => {
                // z + w·(g(z) − z), w broadcast over the rows (and the members' copies).
                let gz = activation(&mut g, p.activation, p.alpha, x.clone());
                let w: Vec<f32> = p.weight.iter().copied().collect();
                let w = g.constant(&format!("parametric{l}"), &[w.len() as i64], &w);
                let diff = g.node("Sub", &[&gz, &x], &[], None);
                let mixed = g.node("Mul", &[&diff, &w], &[], None);
                x = g.node("Add", &[&x, &mixed], &[], None);
                continue;
            }
            Layer::Ensemble(r) => {
                // The members' copies as a `k × rows × inputs` tensor: x (rows × inputs)
                // times each member's adapter (k × 1 × inputs), broadcast.
                let (kk, dd) = (r.nrows() as i64, r.ncols() as i64);
                let v: Vec<f32> = r.iter().copied().collect();
                let r = g.constant(&format!("ensemble{l}"), &[kk, 1, dd], &v);
                x = g.node("Mul", &[&x, &r], &[], None);
                continue;
            }
        };
        let (rows, cols) = (d.w.nrows() as i64, d.w.ncols() as i64);
        let z = if k > 1 && l == last {
            // The heads, as a batched product: member i's rows times its own `h × o` block.
            let (kk, o) = (k as i64, cols / k as i64);
            let mut w = Vec::with_capacity(d.w.len());
            for i in 0..k {
                for row in d.w.rows() {
                    w.extend(row.iter().skip(i * o as usize).take(o as usize));
                }
            }
            let b: Vec<f32> = d.b.iter().copied().collect();
            let w = g.constant(&format!("w{l}"), &[kk, rows, o], &w);
            let b = g.constant(&format!("b{l}"), &[kk, 1, o], &b);
            let p = g.node("MatMul", &[&x, &w], &[], None);
            g.node("Add", &[&p, &b], &[], None)
        } else if k > 1 {
            // A shared layer on every member's copy: `k × rows × units`.
            let w: Vec<f32> = d.w.iter().copied().collect();
            let b: Vec<f32> = d.b.iter().copied().collect();
            let w = g.constant(&format!("w{l}"), &[rows, cols], &w);
            let b = g.constant(&format!("b{l}"), &[cols], &b);
            let p = g.node("MatMul", &[&x, &w], &[], None);
            g.node("Add", &[&p, &b], &[], None)
        } else {
            let w: Vec<f32> = d.w.iter().copied().collect();
            let b: Vec<f32> = d.b.iter().copied().collect();
            let w = g.constant(&format!("w{l}"), &[rows, cols], &w);
            let b = g.constant(&format!("b{l}"), &[cols], &b);
            // Gemm: Y = A·B + C with B = W (`input_dim × units`), C broadcast over the rows.
            g.node("Gemm", &[&x, &w, &b], &[], None)
        };
        x = activation(&mut g, d.activation, d.alpha, z);
    }
    if k > 1 {
        // The prediction: the members' mean.
        x = g.node(
            "ReduceMean",
            &[&x],
            &[Attr::Ints("axes", vec![0]), Attr::Int("keepdims", 0)],
            None,
        );
    }
    let width = m.network.output_dim() as i64;
    let classifier = !matches!(m.encoding, OutputEncoding::Values);
    let main = if classifier {
        "probabilities"
    } else {
        "values"
    };
    g.node("Identity", &[&x], &[], Some(main));
    let mut outputs = vec![value_info(main, FLOAT, &[None, Some(width)])];
    match &m.encoding {
        OutputEncoding::Categorical { .. } => {
            g.node(
                "ArgMax",
                &[main],
                &[Attr::Int("axis", 1), Attr::Int("keepdims", 0)],
                Some("label_index"),
            );
            outputs.push(value_info("label_index", INT64, &[None]));
        }
        OutputEncoding::Binary { .. } => {
            // The second class when p ≥ 0.5, as `OutputEncoding::labels` decides.
            let half = g.constant("threshold", &[], &[0.5]);
            let ge = g.node("GreaterOrEqual", &[main, &half], &[], None);
            let i = g.node("Cast", &[&ge], &[Attr::Int("to", INT64)], None);
            let shape = g.fresh("flat");
            g.initializers.push(tensor_i64(&shape, &[1], &[-1]));
            g.node("Reshape", &[&i, &shape], &[], Some("label_index"));
            outputs.push(value_info("label_index", INT64, &[None]));
        }
        OutputEncoding::Values => {}
    }

    let mut graph = Pb::default();
    for n in g.nodes {
        graph.msg(1, n);
    }
    graph.str(2, "backprop");
    for t in g.initializers {
        graph.msg(5, t);
    }
    for i in inputs {
        graph.msg(11, i);
    }
    for o in outputs {
        graph.msg(12, o);
    }

    let mut model = Pb::default();
    model.int(1, IR_VERSION);
    model.str(2, "backprop");
    model.str(3, env!("CARGO_PKG_VERSION"));
    model.msg(7, graph);
    let mut opset = Pb::default();
    opset.str(1, "").int(2, OPSET);
    model.msg(8, opset);
    if m.encoder.is_some() {
        let mut ml = Pb::default();
        ml.str(1, ML).int(2, ML_OPSET);
        model.msg(8, ml);
    }
    for (k, v) in metadata {
        let mut e = Pb::default();
        e.str(1, k).str(2, v);
        model.msg(14, e);
    }
    Ok(model.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_protobufs() {
        // Examples from the protobuf encoding guide: 1 → 01, 150 → 96 01, −1 → ten bytes.
        let mut p = Pb::default();
        p.varint(1);
        p.varint(150);
        assert_eq!(p.0, vec![0x01, 0x96, 0x01]);
        let mut p = Pb::default();
        p.int(1, -1);
        assert_eq!(p.0.len(), 11);
        assert_eq!(p.0[0], 0x08);
        // Field 2, length-delimited "testing": 12 07 74 65 73 74 69 6e 67.
        let mut p = Pb::default();
        p.str(2, "testing");
        assert_eq!(p.0, b"\x12\x07testing".to_vec());
    }
}
