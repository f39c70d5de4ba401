//! Payment routes: list, take a payment against an invoice, read, and refund.

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
    http::{Json, OptionalJson, Query, page as page_of},
    ids::{InvoiceId, LocationId, UserId, query_id},
    policy::{Action, Resource, Role, Subject, may_ever},
};

use super::{created, idempotent_post, invoices::readable, listed_patient, status_filter, who};
use crate::{
    AppState,
    common::iso,
    payments::{self, Filter},
    rules::PaymentStatus,
    store::PaymentRecord,
};

pub fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .route(
            "/v1/clinics/{clinicId}/payments",
            get(list).merge(idempotent_post(state, create)),
        )
        .route("/v1/clinics/{clinicId}/payments/{paymentId}", get(show))
        .route(
            "/v1/clinics/{clinicId}/payments/{paymentId}/refund",
            post(refund),
        )
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PaymentView {
    id: String,
    clinic_id: String,
    invoice_id: String,
    patient_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    location_id: Option<String>,
    method: &'static str,
    provider: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider_reference: Option<String>,
    status: &'static str,
    amount: i64,
    refunded: i64,
    currency: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    refund_of: Option<String>,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    completed_at: Option<String>,
    version: i64,
}

fn view(p: &PaymentRecord) -> PaymentView {
    PaymentView {
        id: p.id.to_string(),
        clinic_id: p.clinic.to_string(),
        invoice_id: p.invoice.to_string(),
        patient_id: p.patient.to_string(),
        location_id: p.location.as_ref().map(ToString::to_string),
        method: p.method.as_str(),
        provider: p.provider.clone(),
        provider_reference: p.provider_ref.clone(),
        status: p.status.as_str(),
        amount: p.amount,
        refunded: p.refunded,
        currency: p.currency.clone(),
        refund_of: p.refund_of.as_ref().map(ToString::to_string),
        created_at: iso(p.created_at),
        completed_at: p.completed_at.map(iso),
        version: p.version,
    }
}

fn subject(p: &PaymentRecord) -> Subject<'_> {
    Subject {
        owner: Some(p.patient.as_str()),
        location: p.location.as_ref().map(LocationId::as_str),
        ..Default::default()
    }
}

/// The payment if the caller may read it; 404 otherwise (indistinguishable from missing).
async fn load(
    state: &AppState,
    access: &ClinicAccess,
    id: &str,
) -> Result<PaymentRecord, ApiError> {
    let p = payments::find(state, &access.clinic, id).await?;
    if !access.allows(Resource::Payment, Action::Read, &subject(&p)) {
        return Err(ApiError::NotFound);
    }
    Ok(p)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateBody {
    invoice_id: String,
    method: String,
    /// A part payment; defaults to everything the invoice still owes.
    amount: Option<i64>,
}

async fn create(
    State(state): State<AppState>,
    access: ClinicAccess,
    Json(body): Json<CreateBody>,
) -> Result<Response, ApiError> {
    let method = payments::method(&body.method)?;
    let inv = payments::invoice_to_pay(&state, &access.clinic, &body.invoice_id).await?;
    if !readable(&access, &inv) {
        return Err(payments::unknown_invoice());
    }
    let pre = Subject {
        owner: Some(inv.patient.as_str()),
        location: inv.location.as_ref().map(LocationId::as_str),
        ..Default::default()
    };
    access.require(Resource::Payment, Action::Create, &pre)?;
    if access.role == Role::Patient && !method.via_provider() {
        return Err(ApiError::invalid_field(
            "method",
            "desk_only",
            "Cash and insurance payments are recorded at the clinic's desk.",
        ));
    }
    let p = payments::take(
        &state,
        state.ext(),
        &inv,
        method,
        body.amount,
        &who(&access),
    )
    .await?;
    Ok(created(
        &view(&p),
        format!("/v1/clinics/{}/payments/{}", p.clinic, p.id),
    ))
}

async fn show(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let p = load(&state, &access, &id).await?;
    Ok(shared::http::present(&view(&p)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ListQuery {
    invoice_id: Option<String>,
    patient_id: Option<String>,
    status: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    access: ClinicAccess,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    query_id(q.invoice_id.as_deref(), "invoiceId", InvoiceId::parse)?;
    query_id(q.patient_id.as_deref(), "patientId", UserId::parse)?;
    let status = status_filter(
        q.status.as_deref(),
        PaymentStatus::parse,
        "Unknown payment status.",
    )?;
    if !may_ever(access.role, Resource::Payment, Action::Read) {
        return Err(ApiError::Forbidden);
    }
    // A caller who may read only their own lists their own: the patient's index, never the
    // clinic's filtered down.
    let own = access.caller.user_id.to_string();
    let Some(patient) = listed_patient(&access, Resource::Payment, q.patient_id.as_deref(), &own)
    else {
        return Ok(page_of::<PaymentView>(&[], None));
    };
    let filter = Filter {
        invoice: q.invoice_id.as_deref(),
        patient,
        status,
    };
    let (mut out, next) =
        payments::list(&state, &access.clinic, filter, q.limit, q.cursor.as_deref()).await?;
    out.retain(|p| access.allows(Resource::Payment, Action::Read, &subject(p)));
    let views: Vec<PaymentView> = out.iter().map(view).collect();
    Ok(page_of(&views, next))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RefundBody {
    /// Defaults to everything not yet refunded.
    amount: Option<i64>,
}

async fn refund(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, id)): Path<(String, String)>,
    OptionalJson(body): OptionalJson<RefundBody>,
) -> Result<Response, ApiError> {
    let p = load(&state, &access, &id).await?;
    access.require(Resource::Payment, Action::Manage, &subject(&p))?;
    let r = payments::refund(&state, &p, body.amount, &who(&access)).await?;
    Ok(created(
        &view(&r),
        format!("/v1/clinics/{}/payments/{}", r.clinic, r.id),
    ))
}
