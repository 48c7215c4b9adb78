//! The engine: dense networks, activations, losses, optimizers, schedules and the training
//! loop. Pure computation on `ndarray` and a caller-provided `rayon` pool: nothing here knows
//! about HTTP, databases or the async runtime.

pub mod activation;
pub mod alloc;
pub mod batch;
pub mod cost;
pub mod evaluate;
pub mod loss;
pub mod lr_find;
pub mod metric;
pub mod model;
pub mod network;
pub mod onnx;
pub mod optim;
pub mod preprocess;
pub mod rng;
pub mod schedule;
pub mod spec;
pub mod tabular;
pub mod train;
pub mod warm;

pub use activation::Activation;
pub use loss::Loss;
pub use model::{Model, ModelDocument, Prediction};
pub use network::Network;
pub use preprocess::{ClassLabel, Samples, Targets};
pub use spec::{SpecError, TrainSpec};
pub use train::{Control, EpochRecord, Outcome, Session, StopReason, TrainError, TrainState};

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
