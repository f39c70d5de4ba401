//! Sessions: login, refresh-token rotation, logout, listing and revoking sessions.

use axum::{
    Router,
    extract::{Path, State},
    response::{IntoResponse, Response},
    routing::{delete, get, post},
};
use http::StatusCode;
use serde::Deserialize;
use shared::{
    ApiError,
    authn::Caller,
    crypto::Phi,
    http::{Json, OptionalJson, SourceAddress, no_store, present},
    ids::SessionId,
};

use crate::{AppState, Auth, mfa::LoginOutcome, rules::limits::REFRESH_PER_SOURCE};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/auth/login", post(login))
        .route("/v1/auth/refresh", post(refresh))
        .route("/v1/auth/logout", post(logout))
        .route("/v1/auth/sessions", get(sessions))
        .route("/v1/auth/sessions/{sessionId}", delete(revoke_session))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    email: Phi<String>,
    password: Phi<String>,
}

async fn login(
    State(state): State<AppState>,
    source: SourceAddress,
    Json(req): Json<LoginRequest>,
) -> Result<Response, ApiError> {
    let outcome = Auth(&state)
        .login(&req.email, &req.password, &source)
        .await?;
    // Token responses must not be cached by any intermediary.
    Ok(no_store(match outcome {
        LoginOutcome::Session(pair) => present(&pair),
        LoginOutcome::Challenge(challenge) => present(&challenge),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RefreshRequest {
    refresh_token: Phi<String>,
}

async fn refresh(
    State(state): State<AppState>,
    source: SourceAddress,
    Json(req): Json<RefreshRequest>,
) -> Result<Response, ApiError> {
    state
        .throttles
        .take(&REFRESH_PER_SOURCE, &source.0, state.clock.epoch())
        .await?;
    let pair = Auth(&state).refresh(&req.refresh_token).await?;
    Ok(no_store(present(&pair)))
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct LogoutRequest {
    #[serde(default)]
    all_devices: bool,
}

async fn logout(
    State(state): State<AppState>,
    caller: Caller,
    OptionalJson(req): OptionalJson<LogoutRequest>,
) -> Result<Response, ApiError> {
    Auth(&state)
        .logout(&caller.user_id, &caller.session_id, req.all_devices)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn sessions(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let items = Auth(&state)
        .sessions(&caller.user_id, &caller.session_id)
        .await?;
    Ok(present(&serde_json::json!({ "items": items })))
}

async fn revoke_session(
    State(state): State<AppState>,
    caller: Caller,
    Path(session): Path<String>,
) -> Result<Response, ApiError> {
    let session = SessionId::parse(&session).ok_or(ApiError::NotFound)?;
    Auth(&state)
        .revoke_session(&caller.user_id, &session)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
