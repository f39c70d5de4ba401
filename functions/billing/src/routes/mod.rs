//! The HTTP edge: one router per resource, and what their handlers share.

pub mod analytics;
pub mod invoices;
pub mod payments;
pub mod plans;
pub mod subscriptions;
pub mod webhooks;

use axum::{
    handler::Handler,
    middleware,
    response::Response,
    routing::{MethodRouter, post},
};
use serde::Serialize;
use shared::{
    ApiError, authn::ClinicAccess, idempotency::idempotent, ids::ClinicId, outbox::Who,
    platform::Platform,
};

use crate::AppState;

/// `POST` to `handler`, answered from the idempotency store when a client retries with the
/// same `Idempotency-Key` (creating twice would bill twice).
pub fn idempotent_post<H, T>(state: &AppState, handler: H) -> MethodRouter<AppState>
where
    H: Handler<T, AppState>,
    T: 'static,
{
    post(handler).layer(middleware::from_fn_with_state(
        state.idempotency.clone(),
        idempotent,
    ))
}

/// The patient a list of `resource` is narrowed to. A caller whose grant reaches only their
/// own records lists their own partition whatever they ask; asking for someone else's is
/// `None`: an empty list.
pub fn listed_patient<'a>(
    access: &ClinicAccess,
    resource: shared::policy::Resource,
    asked: Option<&'a str>,
    own: &'a str,
) -> Option<Option<&'a str>> {
    use shared::policy::{Action, Scope, widest_scope};
    match widest_scope(access.role, resource, Action::Read) {
        Some(Scope::Own) if asked.is_some_and(|p| p != own) => None,
        Some(Scope::Own) => Some(Some(own)),
        _ => Some(asked),
    }
}

/// The caller, as events record them.
pub fn who(access: &ClinicAccess) -> Who {
    Who::member(&access.caller.user_id, access.role)
}

/// 201 with the new resource and its `Location`.
pub fn created(value: &impl Serialize, location: String) -> Response {
    shared::http::created(value, Some(&location))
}

/// A list's `status` filter read with `parse`: 422 `invalid_status` when it names no status.
pub fn status_filter<T>(
    raw: Option<&str>,
    parse: impl Fn(&str) -> Option<T>,
    message: &'static str,
) -> Result<Option<T>, ApiError> {
    raw.map(|v| {
        parse(v).ok_or_else(|| ApiError::invalid_field("status", "invalid_status", message))
    })
    .transpose()
}

/// One page of a clinic's list, in the ascending order of `key` (unique per item), answered
/// as `{items, nextCursor}`. `filters` names the query, so a cursor only continues the
/// list and filters it was made for.
#[allow(clippy::too_many_arguments)]
pub fn page<T, V: Serialize>(
    state: &Platform,
    clinic: &ClinicId,
    filters: String,
    mut items: Vec<T>,
    key: impl Fn(&T) -> String,
    limit: Option<u32>,
    cursor: Option<&str>,
    view: impl Fn(&T) -> V,
) -> Result<Response, ApiError> {
    let limit = shared::db::page_limit(limit)?;
    items.sort_by_cached_key(&key);
    let (items, next) = shared::db::sorted_page(
        &state.cursors,
        clinic.as_str(),
        &filters,
        items,
        key,
        limit,
        cursor,
    )?;
    let views: Vec<V> = items.iter().map(view).collect();
    Ok(shared::http::page(&views, next))
}
