//! Backprop: train and serve small dense neural networks over HTTP.
//!
//! `nn` is the engine, `data` reads datasets, `store` persists, `jobs` runs the queue,
//! `api` is the HTTP face; `run` wires them together for `main.rs` and the tests. `fuzzing`
//! holds the parsers' fuzz entry points, shared by `fuzz/` and the corpus replay test.

pub mod api;
pub mod auth;
pub mod config;
pub mod crash;
pub mod data;
pub mod fuzzing;
pub mod jobs;
pub mod nn;
pub mod probe;
pub mod run;
pub mod store;
