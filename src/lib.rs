//! Backprop: train and serve small dense neural networks over HTTP.
//!
//! `nn` is the engine, `data` reads datasets, `store` persists, `jobs` runs the queue,
//! `service` holds the use cases, `api` is the HTTP face; `run` wires them together for
//! `main.rs` and the tests. `clock` and `digest` are small shared helpers. `fuzzing`
//! holds the parsers' fuzz entry points, shared by `fuzz/` and the corpus replay test.

pub mod api;
pub mod auth;
pub mod clock;
pub mod config;
pub mod crash;
pub mod data;
pub mod digest;
pub mod fuzzing;
pub mod jobs;
pub mod memory;
pub mod nn;
pub mod probe;
pub mod run;
pub mod service;
pub mod store;
