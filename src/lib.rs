pub mod nn;
pub mod store;
