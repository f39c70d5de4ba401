//! Proof of address and consent to memberships: the links' landing routes and their in-app
//! counterparts.

use axum::{
    Router,
    extract::{Path, State},
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
    ids::ClinicId,
};

use crate::{AppState, Auth, rules::limits};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/auth/email/verify", post(verify))
        .route("/v1/auth/email/verify/resend", post(resend))
        .route("/v1/auth/memberships/accept", post(accept_by_link))
        .route(
            "/v1/users/me/memberships/{clinicId}/accept",
            post(accept_signed_in),
        )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyRequest {
    token: Phi<String>,
}

async fn verify(
    State(state): State<AppState>,
    source: SourceAddress,
    Json(req): Json<VerifyRequest>,
) -> Result<Response, ApiError> {
    state
        .throttles
        .take(&limits::LINKS_PER_SOURCE, &source.0, state.clock.epoch())
        .await?;
    Auth(&state).verify_email(&req.token).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn resend(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    state
        .throttles
        .take(
            &limits::RESEND_PER_ACCOUNT,
            caller.user_id.as_str(),
            state.clock.epoch(),
        )
        .await?;
    Auth(&state).resend_verification(&caller.user_id).await?;
    Ok(json_response(
        StatusCode::ACCEPTED,
        &serde_json::json!({ "status": "accepted", "detail": "A new verification link is on its way." }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AcceptRequest {
    token: Phi<String>,
    #[serde(default)]
    password: Option<Phi<String>>,
}

async fn accept_by_link(
    State(state): State<AppState>,
    source: SourceAddress,
    Json(req): Json<AcceptRequest>,
) -> Result<Response, ApiError> {
    state
        .throttles
        .take(&limits::LINKS_PER_SOURCE, &source.0, state.clock.epoch())
        .await?;
    let accepted = Auth(&state)
        .accept_by_link(&req.token, req.password.as_ref())
        .await?;
    Ok(shared::http::present(&accepted))
}

async fn accept_signed_in(
    State(state): State<AppState>,
    caller: Caller,
    Path(clinic): Path<String>,
) -> Result<Response, ApiError> {
    let clinic = ClinicId::parse(&clinic).ok_or(ApiError::NotFound)?;
    let accepted = Auth(&state)
        .accept_signed_in(&caller.user_id, caller.email_verified, &clinic)
        .await?;
    Ok(shared::http::present(&accepted))
}
