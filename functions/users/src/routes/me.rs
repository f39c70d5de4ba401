//! The `/v1/users/me` resource: one's own profile and memberships.

use axum::{Router, extract::State, response::Response, routing::get};
use shared::{
    ApiError,
    authn::Caller,
    http::{Json, present},
};

use crate::{AppState, memberships, profile};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/users/me", get(me).patch(update_me))
        .route("/v1/users/me/memberships", get(list_memberships))
        .route(
            "/v1/users/me/notification-preferences",
            get(preferences).put(set_preferences),
        )
}

async fn preferences(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    Ok(present(
        &shared::preferences::load(&state.table, &caller.user_id).await?,
    ))
}

/// Replaces the caller's preferences: what is absent is on again.
async fn set_preferences(
    State(state): State<AppState>,
    caller: Caller,
    Json(prefs): Json<shared::preferences::Preferences>,
) -> Result<Response, ApiError> {
    let errors = prefs.errors();
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    shared::preferences::save(&state.table, &caller.user_id, &prefs, state.clock.epoch()).await?;
    Ok(present(&prefs))
}

async fn me(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    Ok(present(&profile::view(&state, &caller.user_id).await?))
}

async fn update_me(
    State(state): State<AppState>,
    caller: Caller,
    Json(patch): Json<profile::ProfilePatch>,
) -> Result<Response, ApiError> {
    Ok(present(
        &profile::update(&state, &caller.user_id, patch).await?,
    ))
}

async fn list_memberships(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let items = memberships::list(&state, &caller.user_id).await?;
    Ok(present(&serde_json::json!({ "items": items })))
}
