//! The clinics function's resources, each owning its part of the router, and the little their
//! handlers share: idempotent creation and ids taken from the path.

pub(crate) mod clinics;
pub(crate) mod locations;
pub(crate) mod members;

use axum::{
    handler::Handler,
    middleware,
    routing::{MethodRouter, post},
};
use shared::{ApiError, idempotency::idempotent};

use crate::AppState;

/// A `POST` that a client may retry with the same `Idempotency-Key` without creating twice.
fn post_once<H, T>(state: &AppState, handler: H) -> MethodRouter<AppState>
where
    H: Handler<T, AppState>,
    T: 'static,
{
    post(handler).layer(middleware::from_fn_with_state(
        state.idempotency.clone(),
        idempotent,
    ))
}

/// An id from the path. A string that cannot be an id names nothing: 404, like an absent one.
fn found<T>(id: Option<T>) -> Result<T, ApiError> {
    id.ok_or(ApiError::NotFound)
}
