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
    let visible = |loc: Option<&LocationId>| {
        access.allows(
            Resource::Analytics,
            Action::Read,
            &billing_facet(loc.map(LocationId::as_str)),
        )
    };
    let report = analytics::report(&state, &access.clinic, &q, visible).await?;
    Ok(shared::http::present(&report))
}
