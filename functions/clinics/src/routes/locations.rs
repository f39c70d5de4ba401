//! The `/v1/clinics/{clinicId}/locations` resource: a clinic's locations (branches).

use axum::{
    Router,
    extract::{Path, State},
    response::{IntoResponse, Response},
    routing::get,
};
use http::StatusCode;
use shared::{
    ApiError,
    authn::ClinicAccess,
    http::{Json, json_response},
    ids::LocationId,
    policy::{Action, Resource, Subject as Target},
};

use super::{found, post_once};
use crate::{
    AppState,
    locations::{self, LocationInput},
};

pub(crate) fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .route(
            "/v1/clinics/{clinicId}/locations",
            get(list_locations).merge(post_once(state, create_location)),
        )
        .route(
            "/v1/clinics/{clinicId}/locations/{locationId}",
            get(get_location)
                .patch(update_location)
                .delete(delete_location),
        )
}

/// The location as the policy sees it.
fn at(id: &LocationId) -> Target<'_> {
    Target {
        location: Some(id.as_str()),
        ..Default::default()
    }
}

async fn list_locations(
    State(state): State<AppState>,
    access: ClinicAccess,
) -> Result<Response, ApiError> {
    access.require(Resource::Location, Action::Read, &Target::default())?;
    let items = locations::list(&state, &access.clinic).await?;
    Ok(shared::http::present(
        &serde_json::json!({ "items": items }),
    ))
}

async fn create_location(
    State(state): State<AppState>,
    access: ClinicAccess,
    Json(req): Json<LocationInput>,
) -> Result<Response, ApiError> {
    access.require(Resource::Location, Action::Create, &Target::default())?;
    let location = locations::create(&state, &access, req).await?;
    Ok(json_response(StatusCode::CREATED, &location))
}

async fn get_location(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, location)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    access.require(Resource::Location, Action::Read, &Target::default())?;
    let id = found(LocationId::parse(&location))?;
    let location = locations::get(&state, &access.clinic, &id).await?;
    Ok(shared::http::present(&location))
}

/// An unknown location is 404 before the policy is asked about it.
async fn update_location(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, location)): Path<(String, String)>,
    Json(req): Json<LocationInput>,
) -> Result<Response, ApiError> {
    let id = found(LocationId::parse(&location))?;
    let current = locations::load(&state, &access.clinic, &id).await?;
    access.require(Resource::Location, Action::Update, &at(&id))?;
    let location = locations::update(&state, &access, current, req).await?;
    Ok(shared::http::present(&location))
}

/// Refused while members are assigned to the location (a condition on its member count).
async fn delete_location(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, location)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = found(LocationId::parse(&location))?;
    locations::load(&state, &access.clinic, &id).await?;
    access.require(Resource::Location, Action::Delete, &at(&id))?;
    locations::delete(&state, &access, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
