//! The `/v1/clinics/{clinicId}/members` resource: a clinic's members and their roles.

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
    http::{Json, Query, json_response},
    ids::{LocationId, UserId},
    policy::{Action, Resource, Subject as Target},
    tenancy::MemberRecord,
};

use super::{found, post_once};
use crate::{
    AppState,
    members::{self, AddMember, MemberChange, MemberQuery, MemberSearch, UpdateMember, target},
};

pub(crate) fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .route(
            "/v1/clinics/{clinicId}/members",
            get(list_members).merge(post_once(state, add_member)),
        )
        .route(
            "/v1/clinics/{clinicId}/members/search",
            axum::routing::post(search_members),
        )
        .route(
            "/v1/clinics/{clinicId}/members/{userId}",
            get(get_member).patch(update_member).delete(remove_member),
        )
}

/// Members the caller may see, found by exact email or phone given in the body.
async fn search_members(
    State(state): State<AppState>,
    access: ClinicAccess,
    Json(q): Json<MemberSearch>,
) -> Result<Response, ApiError> {
    if !shared::policy::may_ever(access.role, Resource::Member, Action::Read) {
        return Err(ApiError::Forbidden);
    }
    let items = members::search(&state, &access, q).await?;
    Ok(shared::http::present(
        &serde_json::json!({ "items": items }),
    ))
}

/// Members the caller may see, filtered by role.
async fn list_members(
    State(state): State<AppState>,
    access: ClinicAccess,
    Query(q): Query<MemberQuery>,
) -> Result<Response, ApiError> {
    // Which members the caller may read depends on each member; the rest is filtered out.
    if !shared::policy::may_ever(access.role, Resource::Member, Action::Read) {
        return Err(ApiError::Forbidden);
    }
    let (items, next) = members::list(&state, &access, q).await?;
    Ok(shared::http::present(
        &serde_json::json!({ "items": items, "nextCursor": next }),
    ))
}

/// Invites a person into the clinic with a role: the membership is pending until they accept
/// through the link sent to the address, and the answer is the same whether or not they have
/// an account. An invalid body is 422 before the policy is asked.
async fn add_member(
    State(state): State<AppState>,
    access: ClinicAccess,
    Json(req): Json<AddMember>,
) -> Result<Response, ApiError> {
    let new = req.validate()?;
    access.require(Resource::Member, Action::Create, &new.target())?;
    let member = members::add(&state, &access, new).await?;
    Ok(json_response(StatusCode::CREATED, &member))
}

async fn get_member(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, user)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let m = members::visible(&state, &access, &found(UserId::parse(&user))?).await?;
    Ok(shared::http::present(
        &members::read(&state, &access, &m).await?,
    ))
}

async fn update_member(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, user)): Path<(String, String)>,
    Json(req): Json<UpdateMember>,
) -> Result<Response, ApiError> {
    let m = members::visible(&state, &access, &found(UserId::parse(&user))?).await?;
    members::refuse_own_membership(&access, &m)?;
    let change = req.validate()?;
    authorize_change(&access, &m, &change)?;
    let member = members::update(&state, &access, m, change).await?;
    Ok(shared::http::present(&member))
}

/// Role changes are updates (never to or from an admin role unless super admin); status and
/// location changes are management (a location head: staff of their own location only). Both
/// the member as they are and as they would be must be allowed.
fn authorize_change(
    access: &ClinicAccess,
    m: &MemberRecord,
    change: &MemberChange,
) -> Result<(), ApiError> {
    let before = target(m);
    if let Some(r) = change.role {
        access.require(Resource::Member, Action::Update, &before)?;
        access.require(
            Resource::Member,
            Action::Update,
            &Target {
                member_role: Some(r),
                ..before
            },
        )?;
    }
    if change.location.is_some() || change.status.is_some() {
        access.require(Resource::Member, Action::Manage, &before)?;
        if let Some(l) = &change.location {
            access.require(
                Resource::Member,
                Action::Manage,
                &Target {
                    location: l.as_ref().map(LocationId::as_str),
                    ..before
                },
            )?;
        }
    }
    Ok(())
}

async fn remove_member(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, user)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let m = members::visible(&state, &access, &found(UserId::parse(&user))?).await?;
    members::refuse_own_membership(&access, &m)?;
    access.require(Resource::Member, Action::Delete, &target(&m))?;
    members::remove(&state, &access, m).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
