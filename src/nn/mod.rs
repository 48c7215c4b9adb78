//! The engine: dense networks and their training, and the model as a portable thing. Pure
//! computation on `ndarray` and a caller-provided `rayon` pool: nothing here knows about
//! HTTP, databases or the async runtime.
//!
//! Three rooms, each importing only the ones before it (and this file's shared types):
//!
//! - [`math`]: the arithmetic of a network: layers, activations, losses, metrics,
//!   optimizers, schedules, `BatchStep` (the one backward pass), the RNG and fallible
//!   buffers. What `burn-core`'s `nn/` and `optim/` hold.
//! - [`portable`]: the model as a portable thing and its input stage: the encoder of raw
//!   tabular rows (where numeric embeddings and date features go), standardisation and
//!   labels, the model document, ONNX export, evaluation on raw rows.
//! - [`run`]: a training run: the spec and its validation, the session with its
//!   checkpoints, the learning-rate range test, warm starts and continuations, the cost
//!   model. What `burn-train` holds.
//!
//! Inside a room each file imports only the files before it in the room's `//! Order` line.

pub mod math;
pub mod portable;
pub mod run;

pub use math::activation::Activation;
pub use math::loss::Loss;
pub use math::network::Network;
pub use portable::model::{Model, ModelDocument, Prediction};
pub use portable::preprocess::{ClassLabel, Samples, Targets};
pub use run::spec::TrainSpec;
pub use run::train::{Control, EpochRecord, Outcome, Session, StopReason, TrainError, TrainState};

use serde::Serialize;

/// The element types the engine computes in: f32 for training and serving, f64 for
/// gradient checks.
pub trait Real:
    ndarray::LinalgScalar
    + ndarray::ScalarOperand
    + num_traits::Float
    + Send
    + Sync
    + std::fmt::Debug
    + std::fmt::Display
    + std::iter::Sum
    + 'static
{
}

impl Real for f32 {}
impl Real for f64 {}

/// A constant in the engine's element type.
#[inline]
pub(crate) fn cst<F: Real>(v: f64) -> F {
    F::from(v).unwrap_or_else(F::nan)
}

/// A field that is wrong, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SpecError {
    /// JSON pointer into the spec, e.g. `/layers/2/units`.
    pub pointer: String,
    pub message: String,
}

impl SpecError {
    pub fn new(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        SpecError {
            pointer: pointer.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for SpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.pointer, self.message)
    }
}
