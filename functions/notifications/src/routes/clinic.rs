//! A clinic's notification settings: its own wording of the messages
//! (`/v1/clinics/{clinicId}/notification-templates`) and its delivery log
//! (`/v1/clinics/{clinicId}/notifications/deliveries`). Admins word and read; a location head
//! reads the wording (the log is kept per clinic, not per location, so it is the admins').

use axum::{Router, extract::State, response::Response, routing::get};
use serde::Deserialize;
use shared::{
    ApiError,
    authn::ClinicAccess,
    http::{Json, Query, page, present},
    policy::{Action, Resource, Subject},
};

use crate::{AppState, store, wording};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/clinics/{clinicId}/notification-templates",
            get(templates).put(save_template),
        )
        .route(
            "/v1/clinics/{clinicId}/notifications/deliveries",
            get(deliveries),
        )
}

/// The wording is the clinic's: any location's head may read it.
fn at_own_location(access: &ClinicAccess) -> Subject<'_> {
    Subject {
        location: access.location.as_deref(),
        ..Default::default()
    }
}

async fn templates(
    State(state): State<AppState>,
    access: ClinicAccess,
) -> Result<Response, ApiError> {
    access.require(
        Resource::NotificationTemplates,
        Action::Read,
        &at_own_location(&access),
    )?;
    let items = wording::list(&state.table, &access.clinic).await?;
    Ok(present(&serde_json::json!({ "items": items })))
}

async fn save_template(
    State(state): State<AppState>,
    access: ClinicAccess,
    Json(body): Json<wording::WordingInput>,
) -> Result<Response, ApiError> {
    access.require(
        Resource::NotificationTemplates,
        Action::Update,
        &Subject::default(),
    )?;
    wording::save(
        &state.table,
        &access.clinic,
        &body,
        &access.caller.user_id,
        state.clock.epoch(),
    )
    .await?;
    let view = wording::list(&state.table, &access.clinic)
        .await?
        .into_iter()
        .find(|v| v.template == body.template)
        .ok_or(ApiError::NotFound)?;
    Ok(present(&view))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct LogQuery {
    template: Option<String>,
    channel: Option<String>,
    status: Option<String>,
    recipient_id: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

async fn deliveries(
    State(state): State<AppState>,
    access: ClinicAccess,
    Query(q): Query<LogQuery>,
) -> Result<Response, ApiError> {
    access.require(
        Resource::NotificationTemplates,
        Action::Read,
        &Subject::default(),
    )?;
    let filter = store::LogFilter {
        template: q.template.as_deref(),
        channel: q.channel.as_deref(),
        status: q.status.as_deref(),
        recipient: q.recipient_id.as_deref(),
    };
    let (entries, next) = store::log(
        &state,
        &access.clinic,
        &filter,
        q.limit,
        q.cursor.as_deref(),
    )
    .await?;
    Ok(page(&entries, next))
}
