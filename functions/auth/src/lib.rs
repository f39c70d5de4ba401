//! The `auth` function: registration, login, sessions, refresh-token rotation and passwords,
//! plus the platform routes (health, JWKS, OpenAPI). `router` serves the full public paths,
//! on Lambda and unchanged inside the local gateway.

pub mod rules;
pub mod service;
pub mod store;

pub use service::Auth;

use axum::{
    Router,
    extract::{Path, State},
    middleware,
    response::{IntoResponse, Response},
    routing::{delete, get, post},
};
use http::{HeaderValue, StatusCode, header};
use serde::Deserialize;
use shared::{
    ApiError,
    authn::Caller,
    crypto::Phi,
    http::{Json, OptionalJson, json_response},
    idempotency::idempotent,
    ids::SessionId,
    policy::Role,
};

use shared::identity::{LinksConfig, PasswordLinks};

/// The OpenAPI document of the whole API, served at `/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("../../../docs/openapi.json");

/// Every route this function serves: (method, path). Checked against the OpenAPI document.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/health"),
    ("GET", "/.well-known/jwks.json"),
    ("GET", "/v1/openapi.json"),
    ("POST", "/v1/auth/register"),
    ("POST", "/v1/auth/login"),
    ("POST", "/v1/auth/refresh"),
    ("POST", "/v1/auth/logout"),
    ("GET", "/v1/auth/sessions"),
    ("DELETE", "/v1/auth/sessions/{sessionId}"),
    ("POST", "/v1/auth/password/change"),
    ("POST", "/v1/auth/password/forgot"),
    ("POST", "/v1/auth/password/reset"),
];

/// Handlers' state: the platform and the set-password links.
pub type AppState = shared::app::AppState<PasswordLinks>;

/// Settings of this function beyond the platform's: where password-reset jobs go and the web
/// app that shows the reset-password page.
pub type AuthConfig = LinksConfig;

pub fn router(state: AppState) -> Router {
    shared::http::platform(routes(state))
}

/// The bare routes, for a gateway that merges several functions under one set of layers.
pub fn routes(state: AppState) -> Router {
    let register = post(register).layer(middleware::from_fn_with_state(
        state.idempotency.clone(),
        idempotent,
    ));
    Router::new()
        .route("/v1/health", get(health))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/auth/register", register)
        .route("/v1/auth/login", post(login))
        .route("/v1/auth/refresh", post(refresh))
        .route("/v1/auth/logout", post(logout))
        .route("/v1/auth/sessions", get(sessions))
        .route("/v1/auth/sessions/{sessionId}", delete(revoke_session))
        .route("/v1/auth/password/change", post(change_password))
        .route("/v1/auth/password/forgot", post(forgot_password))
        .route("/v1/auth/password/reset", post(reset_password))
        .with_state(state)
}

async fn health() -> Response {
    json_response(StatusCode::OK, &serde_json::json!({ "status": "ok" }))
}

async fn jwks(State(state): State<AppState>) -> Response {
    let mut resp = json_response(StatusCode::OK, &state.keys.jwks());
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    resp
}

async fn openapi() -> Response {
    let mut resp = (StatusCode::OK, OPENAPI).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

async fn register(
    State(state): State<AppState>,
    Json(req): Json<service::RegisterRequest>,
) -> Result<Response, ApiError> {
    let user = Auth(&state).register(req, Role::Patient).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &serde_json::json!({ "user": user }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    email: Phi<String>,
    password: Phi<String>,
}

async fn login(
    State(state): State<AppState>,
    Json(req): Json<LoginRequest>,
) -> Result<Response, ApiError> {
    let pair = Auth(&state).login(&req.email, &req.password).await?;
    Ok(no_store(json_response(StatusCode::OK, &pair)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RefreshRequest {
    refresh_token: Phi<String>,
}

async fn refresh(
    State(state): State<AppState>,
    Json(req): Json<RefreshRequest>,
) -> Result<Response, ApiError> {
    let pair = Auth(&state).refresh(&req.refresh_token).await?;
    Ok(no_store(json_response(StatusCode::OK, &pair)))
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
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "items": items }),
    ))
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ChangePasswordRequest {
    current_password: Phi<String>,
    new_password: Phi<String>,
}

async fn change_password(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<ChangePasswordRequest>,
) -> Result<Response, ApiError> {
    Auth(&state)
        .change_password(
            &caller.user_id,
            &caller.session_id,
            &req.current_password,
            &req.new_password,
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
    Json(req): Json<ForgotPasswordRequest>,
) -> Result<Response, ApiError> {
    Auth(&state).forgot_password(&req.email).await?;
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
    Json(req): Json<ResetPasswordRequest>,
) -> Result<Response, ApiError> {
    Auth(&state)
        .reset_password(&req.token, &req.new_password)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Token responses must not be cached by any intermediary.
fn no_store(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_document_describes_every_auth_route() {
        // The two-way check over every function's routes lives in the black-box tests.
        let doc: serde_json::Value =
            serde_json::from_str(OPENAPI).expect("docs/openapi.json is JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        for (method, path) in ROUTES {
            assert!(
                doc["paths"][path][method.to_lowercase()].is_object(),
                "{method} {path}"
            );
        }
    }
}
