//! Patient self-registration into a clinic (idempotent by `Idempotency-Key`).

use axum::{Router, extract::State, response::Response};
use shared::{
    ApiError,
    http::{Json, SourceAddress, created},
    idempotency::idempotent_post,
    policy::Role,
};

use crate::{AppState, Auth, rules::limits::REGISTER_PER_SOURCE, service::RegisterRequest};

pub fn router(state: &AppState) -> Router<AppState> {
    Router::new().route(
        "/v1/auth/register",
        idempotent_post(&state.idempotency, register),
    )
}

async fn register(
    State(state): State<AppState>,
    source: SourceAddress,
    Json(req): Json<RegisterRequest>,
) -> Result<Response, ApiError> {
    state
        .throttles
        .take(&REGISTER_PER_SOURCE, &source.0, state.clock.epoch())
        .await?;
    let user = Auth(&state).register(req, Role::Patient).await?;
    Ok(created(&serde_json::json!({ "user": user }), None))
}
