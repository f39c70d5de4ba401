//! The payment provider's webhook: public, authenticated by the signature alone.

use axum::{
    Router,
    extract::{Path, State},
    response::Response,
    routing::post,
};
use http::HeaderMap;
use shared::{ApiError, http::RawBody};

use crate::{AppState, payments};

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/webhooks/payments/{provider}", post(receive))
}

/// `POST /v1/webhooks/payments/{provider}`. Redeliveries are harmless: a payment completes
/// once, and later deliveries answer 200.
async fn receive(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let provider = state.ext().named(&provider).ok_or(ApiError::NotFound)?;
    let now = state.clock.now();
    // The signature covers the raw body, so the provider reads it before anything else does.
    let w = provider.notification(&headers, &body, now)?;
    let applied = payments::apply_notification(&state, provider.name(), &w, now).await?;
    Ok(shared::http::present(
        &serde_json::json!({ "received": true, "applied": applied }),
    ))
}
