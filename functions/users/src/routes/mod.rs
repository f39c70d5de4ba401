//! The users function's resources, each owning its part of the router.

pub mod me;
