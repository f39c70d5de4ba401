//! The auth function's resources, each owning its part of the router.

pub mod consent;
pub mod mfa;
pub mod passwords;
pub mod platform;
pub mod registration;
pub mod sessions;
