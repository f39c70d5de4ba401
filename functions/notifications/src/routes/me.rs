//! `/v1/users/me/notifications` (the in-app inbox) and `/v1/users/me/devices` (push tokens):
//! every signed-in person's own, whatever their role.

use axum::{
    Router,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;
use shared::{
    ApiError,
    authn::Caller,
    http::{Json, Query, created, page},
};

use crate::{AppState, devices, inbox};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/users/me/notifications", get(list))
        .route(
            "/v1/users/me/notifications/{notificationId}/read",
            post(read),
        )
        .route(
            "/v1/users/me/devices",
            post(register_device).delete(remove_device),
        )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct InboxQuery {
    limit: Option<u32>,
    cursor: Option<String>,
    unread: Option<bool>,
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<InboxQuery>,
) -> Result<Response, ApiError> {
    let (entries, next) = inbox::page(
        &state,
        &caller.user_id,
        q.unread.unwrap_or(false),
        q.limit,
        q.cursor.as_deref(),
    )
    .await?;
    Ok(page(&entries, next))
}

async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    inbox::mark_read(&state.table, &caller.user_id, &id, state.clock.epoch()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn register_device(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<devices::DeviceToken>,
) -> Result<Response, ApiError> {
    let device = devices::register(&state, &caller.user_id, &body).await?;
    Ok(created(&device, None))
}

async fn remove_device(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<devices::DeviceToken>,
) -> Result<Response, ApiError> {
    devices::remove(&state, &caller.user_id, &body).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
