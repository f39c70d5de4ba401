//! Platform routes every client needs before it has a token: health, readiness, the signing
//! keys. (The OpenAPI document is the docs function's.)

use axum::{Router, extract::State, response::Response, routing::get};
use http::{HeaderValue, header};
use shared::{ApiError, http::present};

use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/health/ready", get(ready))
        .route("/.well-known/jwks.json", get(jwks))
}

async fn health() -> Response {
    present(&serde_json::json!({ "status": "ok" }))
}

/// Whether the table, the audit table, the PHI key and the notification queue answer.
async fn ready(State(state): State<AppState>) -> Result<Response, ApiError> {
    let queues = [(
        "notificationsQueue",
        state.ext().notifications_queue_url.as_str(),
    )];
    let answer = shared::health::ready(state.platform(), &queues).await?;
    let mut resp = present(&answer);
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

async fn jwks(State(state): State<AppState>) -> Response {
    let mut resp = present(&state.keys.jwks());
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    resp
}
