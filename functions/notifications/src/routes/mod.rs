//! The notifications context's HTTP routes: a person's inbox and push devices, and a clinic's
//! wording and delivery log.

pub mod clinic;
pub mod me;
