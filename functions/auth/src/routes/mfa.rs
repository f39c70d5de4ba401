//! Two-step sign-in: enrolling an authenticator app, confirming it, turning it off, and the
//! login's second step.

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
    http::{Json, SourceAddress, json_response, no_store, present},
};

use crate::{AppState, Auth, mfa::Factor};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/auth/mfa/totp", post(start).delete(remove))
        .route("/v1/auth/mfa/totp/confirm", post(confirm))
        .route("/v1/auth/login/mfa", post(answer))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartRequest {
    password: Phi<String>,
}

async fn start(
    State(state): State<AppState>,
    caller: Caller,
    source: SourceAddress,
    Json(req): Json<StartRequest>,
) -> Result<Response, ApiError> {
    let view = Auth(&state)
        .start_totp(&caller.user_id, &req.password, &source)
        .await?;
    Ok(no_store(json_response(StatusCode::CREATED, &view)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfirmRequest {
    code: Phi<String>,
}

async fn confirm(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<ConfirmRequest>,
) -> Result<Response, ApiError> {
    let view = Auth(&state)
        .confirm_totp(&caller.user_id, &req.code)
        .await?;
    Ok(no_store(present(&view)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RemoveRequest {
    password: Phi<String>,
    #[serde(default)]
    code: Option<Phi<String>>,
    #[serde(default)]
    recovery_code: Option<Phi<String>>,
}

async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    source: SourceAddress,
    Json(req): Json<RemoveRequest>,
) -> Result<Response, ApiError> {
    let factor = Factor::from_fields(req.code, req.recovery_code)?;
    Auth(&state)
        .remove_totp(&caller, &req.password, &factor, &source)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AnswerRequest {
    challenge: Phi<String>,
    #[serde(default)]
    code: Option<Phi<String>>,
    #[serde(default)]
    recovery_code: Option<Phi<String>>,
}

async fn answer(
    State(state): State<AppState>,
    source: SourceAddress,
    Json(req): Json<AnswerRequest>,
) -> Result<Response, ApiError> {
    let factor = Factor::from_fields(req.code, req.recovery_code)?;
    let pair = Auth(&state)
        .answer_challenge(&req.challenge, &factor, &source)
        .await?;
    Ok(no_store(present(&pair)))
}
