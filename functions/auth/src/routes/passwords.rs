//! Passwords: change (signed in), forgotten (a reset link by notification job) and reset.

use axum::{
    Router,
    extract::State,
    response::{IntoResponse, Response},
    routing::post,
};
use http::StatusCode;
use serde::Deserialize;
use shared::{
    ApiError,
    authn::Caller,
    crypto::Phi,
    http::{Json, SourceAddress, json_response},
};

use crate::{AppState, Auth, rules::limits};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/auth/password/change", post(change_password))
        .route("/v1/auth/password/forgot", post(forgot_password))
        .route("/v1/auth/password/reset", post(reset_password))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ChangePasswordRequest {
    current_password: Phi<String>,
    new_password: Phi<String>,
}

async fn change_password(
    State(state): State<AppState>,
    caller: Caller,
    source: SourceAddress,
    Json(req): Json<ChangePasswordRequest>,
) -> Result<Response, ApiError> {
    Auth(&state)
        .change_password(
            &caller.user_id,
            &caller.session_id,
            &req.current_password,
            &req.new_password,
            &source,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ForgotPasswordRequest {
    email: Phi<String>,
}

async fn forgot_password(
    State(state): State<AppState>,
    source: SourceAddress,
    Json(req): Json<ForgotPasswordRequest>,
) -> Result<Response, ApiError> {
    let now = state.clock.epoch();
    state
        .throttles
        .take(&limits::FORGOT_PER_SOURCE, &source.0, now)
        .await?;
    // Per address given, known or not, so the limit tells nothing about accounts.
    let address = req.email.expose().trim().to_lowercase();
    state
        .throttles
        .take(&limits::FORGOT_PER_ACCOUNT, &address, now)
        .await?;
    Auth(&state).forgot_password(&req.email).await?;
    // The same answer whether or not the address has an account.
    Ok(json_response(
        StatusCode::ACCEPTED,
        &serde_json::json!({ "status": "accepted", "detail": "If the address belongs to an account, a reset link is on its way." }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ResetPasswordRequest {
    token: Phi<String>,
    new_password: Phi<String>,
}

async fn reset_password(
    State(state): State<AppState>,
    source: SourceAddress,
    Json(req): Json<ResetPasswordRequest>,
) -> Result<Response, ApiError> {
    state
        .throttles
        .take(&limits::LINKS_PER_SOURCE, &source.0, state.clock.epoch())
        .await?;
    Auth(&state)
        .reset_password(&req.token, &req.new_password)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
