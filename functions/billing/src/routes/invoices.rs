//! Invoice routes: list, create, read, and finalize, void or write off an invoice.

use axum::{
    Router,
    extract::{Path, State},
    response::Response,
    routing::{get, post},
};
use serde::{Deserialize, Serialize};
use shared::{
    ApiError,
    authn::ClinicAccess,
    http::page as page_of,
    http::{Json, OptionalJson, Query},
    ids::{LocationId, SubscriptionId, UserId, query_id},
    policy::{Action, Resource, Role, Subject, may_ever},
};

use super::{created, idempotent_post, listed_patient, status_filter, who};
use crate::{
    AppState,
    common::iso,
    invoices::{self, Filter, NewInvoice},
    rules::{InvoiceAction, InvoiceStatus},
    store::{InvoiceRecord, StoredLine},
};

pub fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .route(
            "/v1/clinics/{clinicId}/invoices",
            get(list).merge(idempotent_post(state, create)),
        )
        .route("/v1/clinics/{clinicId}/invoices/{invoiceId}", get(show))
        .route(
            "/v1/clinics/{clinicId}/invoices/{invoiceId}/{action}",
            post(act),
        )
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct InvoiceView {
    id: String,
    clinic_id: String,
    /// Absent while the invoice is a DRAFT.
    #[serde(skip_serializing_if = "Option::is_none")]
    number: Option<String>,
    patient_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    subscription_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    appointment_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    location_id: Option<String>,
    status: &'static str,
    currency: String,
    lines: Vec<StoredLine>,
    subtotal: i64,
    tax: i64,
    discount: i64,
    total: i64,
    amount_paid: i64,
    amount_due: i64,
    created_at: String,
    /// Absent while the invoice is a DRAFT (it is neither issued nor due yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    issued_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    due_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    paid_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    voided_at: Option<String>,
    version: i64,
}

fn view(i: &InvoiceRecord) -> InvoiceView {
    let issued = i.status != InvoiceStatus::Draft;
    let due = if matches!(i.status, InvoiceStatus::Paid | InvoiceStatus::Void) {
        0
    } else {
        (i.totals.total - i.amount_paid).max(0)
    };
    InvoiceView {
        id: i.id.to_string(),
        clinic_id: i.clinic.to_string(),
        number: i.number.clone(),
        patient_id: i.patient.to_string(),
        subscription_id: i.subscription.as_ref().map(ToString::to_string),
        appointment_id: i.appointment.as_ref().map(ToString::to_string),
        location_id: i.location.as_ref().map(ToString::to_string),
        status: i.status.as_str(),
        currency: i.currency.clone(),
        lines: i.lines.clone(),
        subtotal: i.totals.subtotal,
        tax: i.totals.tax,
        discount: i.totals.discount,
        total: i.totals.total,
        amount_paid: i.amount_paid,
        amount_due: due,
        created_at: iso(i.created_at),
        issued_at: issued.then(|| iso(i.issued_at)),
        due_at: issued.then(|| iso(i.due_at)),
        paid_at: i.paid_at.map(iso),
        voided_at: i.voided_at.map(iso),
        version: i.version,
    }
}

fn subject(i: &InvoiceRecord) -> Subject<'_> {
    Subject {
        owner: Some(i.patient.as_str()),
        location: i.location.as_ref().map(LocationId::as_str),
        ..Default::default()
    }
}

/// Whether the caller may read `inv`: the policy, and a patient sees their invoices once they
/// are issued (a DRAFT is the clinic's work in progress).
pub(super) fn readable(access: &ClinicAccess, inv: &InvoiceRecord) -> bool {
    access.allows(Resource::Invoice, Action::Read, &subject(inv))
        && !(inv.status == InvoiceStatus::Draft && access.role == Role::Patient)
}

/// The invoice if the caller may read it; 404 otherwise (indistinguishable from missing).
async fn load(
    state: &AppState,
    access: &ClinicAccess,
    id: &str,
) -> Result<InvoiceRecord, ApiError> {
    let inv = invoices::find(state, &access.clinic, id).await?;
    if !readable(access, &inv) {
        return Err(ApiError::NotFound);
    }
    Ok(inv)
}

async fn create(
    State(state): State<AppState>,
    access: ClinicAccess,
    Json(body): Json<NewInvoice>,
) -> Result<Response, ApiError> {
    // Authorise on what the request names before looking anything up.
    let pre = Subject {
        owner: Some(body.patient_id.as_str()),
        location: body.location_id.as_deref(),
        ..Default::default()
    };
    access.require(Resource::Invoice, Action::Create, &pre)?;
    let inv = invoices::create(&state, &access.clinic, &body, &who(&access)).await?;
    Ok(created(
        &view(&inv),
        format!("/v1/clinics/{}/invoices/{}", inv.clinic, inv.id),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ListQuery {
    patient_id: Option<String>,
    status: Option<String>,
    subscription_id: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    access: ClinicAccess,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    query_id(q.patient_id.as_deref(), "patientId", UserId::parse)?;
    let status = status_filter(
        q.status.as_deref(),
        InvoiceStatus::parse,
        "Unknown invoice status.",
    )?;
    query_id(
        q.subscription_id.as_deref(),
        "subscriptionId",
        SubscriptionId::parse,
    )?;
    if !may_ever(access.role, Resource::Invoice, Action::Read) {
        return Err(ApiError::Forbidden);
    }
    // A caller who may read only their own lists their own: the patient's index, never the
    // clinic's filtered down.
    let own = access.caller.user_id.to_string();
    let Some(patient) = listed_patient(&access, Resource::Invoice, q.patient_id.as_deref(), &own)
    else {
        return Ok(page_of::<InvoiceView>(&[], None));
    };
    let filter = Filter {
        patient,
        status,
        subscription: q.subscription_id.as_deref(),
    };
    let (mut out, next) =
        invoices::list(&state, &access.clinic, filter, q.limit, q.cursor.as_deref()).await?;
    out.retain(|inv| readable(&access, inv));
    let views: Vec<InvoiceView> = out.iter().map(view).collect();
    Ok(page_of(&views, next))
}

async fn show(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let inv = load(&state, &access, &id).await?;
    Ok(shared::http::present(&view(&inv)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ActionBody {
    version: Option<i64>,
}

/// `POST .../invoices/{invoiceId}/{action}`: `finalize`, `void` or `mark-uncollectible`, all
/// needing Manage on the invoice.
async fn act(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, id, action)): Path<(String, String, String)>,
    OptionalJson(body): OptionalJson<ActionBody>,
) -> Result<Response, ApiError> {
    let action = InvoiceAction::parse(&action).ok_or(ApiError::NotFound)?;
    let inv = load(&state, &access, &id).await?;
    access.require(Resource::Invoice, Action::Manage, &subject(&inv))?;
    let after = invoices::act(&state, &inv, action, body.version, &who(&access)).await?;
    Ok(shared::http::present(&view(&after)))
}
