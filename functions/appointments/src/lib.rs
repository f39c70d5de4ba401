//! The `appointments` context. Its scheduling rules come first, as plain functions with no I/O;
//! routes, storage and the sweep build on them.

pub mod rules;
