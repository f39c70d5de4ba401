//! Platform code shared by every function: configuration, errors, HTTP plumbing, tokens,
//! storage helpers, envelope encryption, the outbox and idempotency. No business rules.

pub mod app;
pub mod audit;
pub mod authn;
pub mod aws;
pub mod cache;
pub mod clinical;
pub mod clock;
pub mod config;
pub mod contracts;
pub mod correlation;
pub mod crypto;
pub mod db;
pub mod error;
pub mod health;
pub mod http;
pub mod idempotency;
pub mod identity;
pub mod ids;
pub mod jobs;
pub mod jwt;
pub mod keys;
pub mod lambda;
pub mod metrics;
pub mod openapi;
pub mod outbox;
pub mod platform;
pub mod policy;
pub mod preferences;
pub mod record;
pub mod secrets;
pub mod stream;
pub mod telemetry;
pub mod tenancy;
pub mod throttle;
pub mod types;

#[cfg(feature = "provision")]
pub mod provision;

pub use error::{ApiError, FieldError};
