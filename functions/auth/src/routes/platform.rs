//! Platform routes every client needs before it has a token: health, the signing keys, the
//! OpenAPI document.

use axum::{
    Router,
    extract::State,
    response::{IntoResponse, Response},
    routing::get,
};
use http::{HeaderValue, StatusCode, header};
use shared::{ApiError, http::present};

use crate::{AppState, OPENAPI};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/health/ready", get(ready))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/v1/openapi.json", get(openapi))
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

async fn openapi() -> Response {
    let mut resp = (StatusCode::OK, OPENAPI).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
