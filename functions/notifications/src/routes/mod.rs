//! The notifications context's HTTP routes: a person's inbox and push devices.

pub mod me;
