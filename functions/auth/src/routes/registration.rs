//! Patient self-registration into a clinic (idempotent by `Idempotency-Key`).

use axum::{Router, extract::State, middleware, response::Response, routing::post};
use shared::{
    ApiError,
    http::{Json, created},
    idempotency::idempotent,
    policy::Role,
};

use crate::{AppState, Auth, service::RegisterRequest};

pub fn router(state: &AppState) -> Router<AppState> {
    let register = post(register).layer(middleware::from_fn_with_state(
        state.idempotency.clone(),
        idempotent,
    ));
    Router::new().route("/v1/auth/register", register)
}

async fn register(
    State(state): State<AppState>,
    Json(req): Json<RegisterRequest>,
) -> Result<Response, ApiError> {
    let user = Auth(&state).register(req, Role::Patient).await?;
    Ok(created(&serde_json::json!({ "user": user }), None))
}
