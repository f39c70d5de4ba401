//! The billing analytics route, for admins, finance and location heads.

use axum::{Router, extract::State, response::Response, routing::get};
use shared::{
    ApiError,
    authn::ClinicAccess,
    http::Query,
    ids::LocationId,
    policy::{Action, Limit, Resource, Subject},
};

use crate::{
    AppState,
    analytics::{self, AnalyticsQuery},
};

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/clinics/{clinicId}/billing/analytics", get(show))
}

fn billing_facet(location: Option<&str>) -> Subject<'_> {
    Subject {
        location,
        facet: Some(Limit::Billing),
        ..Default::default()
    }
}

async fn show(
    State(state): State<AppState>,
    access: ClinicAccess,
    Query(q): Query<AnalyticsQuery>,
) -> Result<Response, ApiError> {
    // Admins and finance see the clinic, a location head their location.
    access.require(
        Resource::Analytics,
        Action::Read,
        &billing_facet(access.location.as_deref()),
    )?;
    // Whoever may read what has no location reads the clinic's counters; a location head
    // reads their own location's.
    let clinic_wide = access.allows(Resource::Analytics, Action::Read, &billing_facet(None));
    let location = if clinic_wide {
        None
    } else {
        Some(
            access
                .location
                .as_deref()
                .and_then(LocationId::parse)
                .ok_or(ApiError::Forbidden)?,
        )
    };
    let report = analytics::report(&state, &access.clinic, &q, location.as_ref()).await?;
    Ok(shared::http::present(&report))
}
