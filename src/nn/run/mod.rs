//! A training run, in dependency order (each file imports only those before it, `portable`
//! and `math`): the spec and its validation against a dataset, the session (training loop,
//! checkpoints, cancellation), the learning-rate range test, warm starts and continuations,
//! and the cost model (time and memory estimates).
//!
//! Each file imports only files before it here (tests/architecture.rs checks it):
//! Order: spec, train, lr_find, warm, cost.

pub mod cost;
pub mod lr_find;
pub mod spec;
pub mod train;
pub mod warm;
