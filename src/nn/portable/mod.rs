//! The model as a portable thing and its input stage, in dependency order (each file imports
//! only those before it, and `math`): the vocabulary of a text column, values as exports
//! write them (currency, percentages, dates), standardisation and labels, the tabular encoder
//! (raw rows → inputs; where numeric embeddings go), the model and its document, evaluation
//! on raw rows, ONNX export.
//!
//! Each file imports only files before it here (tests/architecture.rs checks it):
//! Order: vocab, values, preprocess, tabular, model, evaluate, onnx.

pub mod evaluate;
pub mod model;
pub mod onnx;
pub mod preprocess;
pub mod tabular;
pub mod values;
pub mod vocab;
