pub mod data;
pub mod nn;
