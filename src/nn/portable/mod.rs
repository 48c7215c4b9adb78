//! The model as a portable thing and its input stage, in dependency order (each file imports
//! only those before it, and `math`): standardisation and labels, the tabular encoder (raw
//! rows → inputs, over each text column's vocabulary; where numeric embeddings and date features go), the model and its
//! document, evaluation on raw rows, ONNX export.
//!
//! Each file imports only files before it here (tests/architecture.rs checks it):
//! Order: vocab, preprocess, tabular, model, evaluate, onnx.

pub mod evaluate;
pub mod model;
pub mod onnx;
pub mod preprocess;
pub mod tabular;
pub mod vocab;
