//! The arithmetic of a network, in dependency order (each file imports only those before
//! it): fallible buffers, the RNG, activations, losses, metrics, layers and networks,
//! optimizers, schedules, and `BatchStep`, the one forward-and-backward pass of a mini-batch.
//!
//! Each file imports only files before it here (tests/architecture.rs checks it):
//! Order: alloc, rng, activation, loss, metric, network, optim, schedule, batch.

pub mod activation;
pub mod alloc;
pub mod batch;
pub mod loss;
pub mod metric;
pub mod network;
pub mod optim;
pub mod rng;
pub mod schedule;
