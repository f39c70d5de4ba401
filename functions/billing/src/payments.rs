//! Payments: recorded at the cash desk (cash, insurance) or started through the payment
//! provider port (card, UPI, net banking, wallet) and completed by the provider's signed
//! webhook. A payment may pay part of what an invoice owes; the one that settles it marks the
//! invoice PAID and activates what it pays for.

use axum::{
    body::Bytes,
    extract::{Path, State},
    response::Response,
};
use http::{HeaderMap, StatusCode};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use shared::{
    ApiError,
    authn::ClinicAccess,
    db::{CHANGED_MEANWHILE, MOVED_MEANWHILE, Tx, VersionedUpdate, n, s},
    http::{Json, OptionalJson, Query, json_response},
    ids::{InvoiceId, LocationId, PaymentId},
    keys,
    platform::Platform,
    policy::{Action, Resource, Role, Subject, may_ever},
};

use crate::{
    AppState, Who, event,
    invoices::{self, invoice_event},
    iso,
    providers::{Charge, Started},
    rules::{self, InvoiceStatus, Method, PaymentStatus, RefundProblem, SubStatus},
    store::{self, PaymentRecord, Record},
};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentView {
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

pub fn view(p: &PaymentRecord) -> PaymentView {
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateBody {
    invoice_id: String,
    method: String,
    /// A part payment; defaults to everything the invoice still owes.
    amount: Option<i64>,
}

fn not_payable() -> ApiError {
    ApiError::conflict(
        "invoice_not_payable",
        "The invoice is paid, void or still a draft; it cannot be paid.",
    )
}

/// Takes a payment against an invoice. Desk methods complete at once; card-like methods start
/// a PENDING payment with the provider and complete when its signed webhook arrives.
pub async fn create(
    State(state): State<AppState>,
    access: ClinicAccess,
    Json(body): Json<CreateBody>,
) -> Result<Response, ApiError> {
    let method = Method::parse(&body.method).ok_or_else(|| {
        ApiError::invalid_field(
            "method",
            "invalid_method",
            "Use CASH, CARD, UPI, NET_BANKING, WALLET or INSURANCE.",
        )
    })?;
    let unknown = || ApiError::invalid_field("invoiceId", "unknown_invoice", "No such invoice.");
    let id = InvoiceId::parse(&body.invoice_id).ok_or_else(unknown)?;
    let inv = store::get_invoice(&state.table, &access.clinic, &id)
        .await?
        .ok_or_else(unknown)?;
    if !invoices::readable(&access, &inv) {
        return Err(unknown());
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
    if !inv.status.payable() {
        return Err(not_payable());
    }
    let amount = rules::payment_amount(inv.totals.total - inv.amount_paid, body.amount).map_err(
        |p| match p {
            rules::PaymentAmountProblem::NotPositive => ApiError::invalid_field(
                "amount",
                "invalid_amount",
                "Pay a positive amount in minor units.",
            ),
            rules::PaymentAmountProblem::ExceedsDue => ApiError::invalid_field(
                "amount",
                "exceeds_due",
                "A payment cannot exceed what the invoice still owes.",
            ),
        },
    )?;
    let provider = state
        .ext()
        .for_method(method)
        .ok_or_else(|| ApiError::internal("no provider takes this method"))?;
    let id = PaymentId::generate();
    let started = provider
        .start(Charge {
            payment: &id,
            method,
            amount,
            currency: &inv.currency,
        })
        .await?;
    let reference = match &started {
        Started::Pending { reference } => Some(reference.clone()),
        Started::Settled => None,
    };
    let now = state.clock.now();
    let now_s = now.as_second();
    let p = PaymentRecord {
        id,
        clinic: inv.clinic.clone(),
        invoice: inv.id.clone(),
        patient: inv.patient.clone(),
        location: inv.location.clone(),
        method,
        provider: provider.name().into(),
        provider_ref: reference.clone(),
        status: PaymentStatus::Pending,
        amount,
        refunded: 0,
        currency: inv.currency.clone(),
        refund_of: None,
        version: 1,
        created_at: now_s,
        updated_at: now_s,
        completed_at: None,
    };
    let who = Who::member(&access.caller.user_id, access.role);
    let mut tx = Tx::default();
    tx.push(p.put(&state.table)?);
    if let Some(r) = &reference {
        tx.push(store::provider_ref_put(
            &state.table,
            provider.name(),
            r,
            &p,
        )?);
    }
    tx.push(payment_event(
        &state,
        "billing.payment.created",
        &p,
        &who,
        now,
        serde_json::json!({}),
    )?);
    tx.commit(&state.table).await?;
    let p = match started {
        Started::Pending { .. } => p,
        Started::Settled => complete(&state, &p, &who, now).await?.unwrap_or(p),
    };
    let mut resp = json_response(StatusCode::CREATED, &view(&p));
    if let Ok(loc) =
        http::HeaderValue::from_str(&format!("/v1/clinics/{}/payments/{}", p.clinic, p.id))
    {
        resp.headers_mut().insert(http::header::LOCATION, loc);
    }
    Ok(resp)
}

fn payment_event(
    state: &Platform,
    kind: &str,
    p: &PaymentRecord,
    who: &Who,
    now: Timestamp,
    extra: serde_json::Value,
) -> Result<aws_sdk_dynamodb::types::TransactWriteItem, ApiError> {
    event(
        kind,
        &p.clinic,
        who,
        ("payment", p.id.as_str()),
        crate::merged(
            serde_json::json!({
                "paymentId": p.id,
                "invoiceId": p.invoice,
                "patientId": p.patient,
                "method": p.method.as_str(),
                "status": p.status.as_str(),
                "amount": p.amount,
                "currency": p.currency,
            }),
            extra,
        ),
        now,
    )
    .outbox_write(&state.table.name, now.as_second())
}

/// Completes a PENDING payment: the payment, its invoice (PAID) and the subscription it pays
/// for (ACTIVE) change in one transaction, each under the version read. Returns the completed
/// payment, or `None` when it was no longer pending (a redelivered webhook): completing twice
/// is impossible because the payment's version moves on the first time.
pub async fn complete(
    state: &Platform,
    p: &PaymentRecord,
    who: &Who,
    now: Timestamp,
) -> Result<Option<PaymentRecord>, ApiError> {
    let mut p = p.clone();
    for _ in 0..5 {
        if p.status != PaymentStatus::Pending {
            return Ok(None);
        }
        let inv = store::get_invoice(&state.table, &p.clinic, &p.invoice)
            .await?
            .ok_or_else(|| ApiError::internal("payment without invoice"))?;
        let now_s = now.as_second();
        let mut tx = Tx::default();
        let mut u = VersionedUpdate::new();
        u.set("status", s(PaymentStatus::Completed.as_str()))
            .set("completedAt", n(now_s));
        tx.guard(p.update(&state.table, u, now_s)?, MOVED_MEANWHILE);
        let mut done = p.clone();
        done.status = PaymentStatus::Completed;
        done.completed_at = Some(now_s);
        done.version += 1;
        tx.push(payment_event(
            state,
            "billing.payment.completed",
            &done,
            who,
            now,
            serde_json::json!({}),
        )?);
        let (paid, settled) = rules::after_payment(inv.totals.total, inv.amount_paid, p.amount);
        // Money the invoice did not need (two payments racing for what it owed, or one
        // completing after it was settled or voided) is recorded and announced for a refund.
        let excess = if inv.status.payable() {
            (paid - inv.totals.total).max(0)
        } else {
            p.amount
        };
        if excess > 0 {
            tx.push(payment_event(
                state,
                "billing.payment.overpaid",
                &done,
                who,
                now,
                serde_json::json!({ "excess": excess, "invoiceStatus": inv.status.as_str() }),
            )?);
        }
        if inv.status.payable() && !settled {
            // A part payment: the invoice owes less and stays as it is.
            let mut iu = VersionedUpdate::new();
            iu.set("amountPaid", n(paid));
            tx.guard(inv.update(&state.table, iu, now_s)?, MOVED_MEANWHILE);
            tx.push(
                invoice_event(state, "billing.invoice.partially_paid", &inv, who, now, serde_json::json!({ "paymentId": p.id, "amountPaid": paid, "amountDue": inv.totals.total - paid }))?,
            );
        } else if inv.status.payable() {
            let mut iu = VersionedUpdate::new();
            iu.set("status", s(InvoiceStatus::Paid.as_str()))
                .set("amountPaid", n(paid))
                .set("paidAt", n(now_s));
            tx.guard(inv.update(&state.table, iu, now_s)?, MOVED_MEANWHILE);
            tx.push(invoice_event(
                state,
                "billing.invoice.paid",
                &inv,
                who,
                now,
                serde_json::json!({ "paymentId": p.id }),
            )?);
            if let Some(sub) = &inv.subscription {
                if let Some(x) = store::get_subscription(&state.table, &inv.clinic, sub).await? {
                    if matches!(x.status, SubStatus::Incomplete | SubStatus::PastDue) {
                        let mut su = VersionedUpdate::new();
                        su.set("status", s(SubStatus::Active.as_str()));
                        tx.guard(x.update(&state.table, su, now_s)?, MOVED_MEANWHILE);
                        let mut active = x.clone();
                        active.status = SubStatus::Active;
                        tx.push(crate::api::subscription_event(
                            state,
                            "billing.subscription.activated",
                            &active,
                            who,
                            now,
                            serde_json::json!({
                                "previousStatus": x.status.as_str(),
                                "invoiceId": inv.id,
                            }),
                        )?);
                    }
                }
            }
        }
        match tx.commit(&state.table).await {
            Ok(()) => return Ok(Some(done)),
            Err(ApiError::Guarded(MOVED_MEANWHILE)) => {
                p = store::get_payment(&state.table, &p.clinic, &p.id)
                    .await?
                    .ok_or_else(|| ApiError::internal("payment vanished"))?;
            }
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::conflict(
        "concurrent_request",
        "The invoice kept changing; try again.",
    ))
}

async fn load_visible(
    state: &AppState,
    access: &ClinicAccess,
    id: &str,
) -> Result<PaymentRecord, ApiError> {
    let id = PaymentId::parse(id).ok_or(ApiError::NotFound)?;
    let p = store::get_payment(&state.table, &access.clinic, &id)
        .await?
        .ok_or(ApiError::NotFound)?;
    if !access.allows(Resource::Payment, Action::Read, &subject(&p)) {
        return Err(ApiError::NotFound);
    }
    Ok(p)
}

pub async fn get(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let p = load_visible(&state, &access, &id).await?;
    Ok(json_response(StatusCode::OK, &view(&p)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListQuery {
    invoice_id: Option<String>,
    patient_id: Option<String>,
    status: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    access: ClinicAccess,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let status = crate::status_filter(
        q.status.as_deref(),
        PaymentStatus::parse,
        "Unknown payment status.",
    )?;
    if !may_ever(access.role, Resource::Payment, Action::Read) {
        return Err(ApiError::Forbidden);
    }
    let mut out = Vec::new();
    for p in store::all::<PaymentRecord>(&state.table, &access.clinic, keys::PAYMENT_PREFIX).await?
    {
        let keep = access.allows(Resource::Payment, Action::Read, &subject(&p))
            && q.invoice_id
                .as_deref()
                .is_none_or(|x| p.invoice.as_str() == x)
            && q.patient_id
                .as_deref()
                .is_none_or(|x| p.patient.as_str() == x)
            && status.is_none_or(|st| p.status == st);
        if keep {
            out.push(p);
        }
    }
    crate::page(
        &state,
        &access.clinic,
        format!(
            "payments?invoice={:?}&patient={:?}&status={:?}",
            q.invoice_id, q.patient_id, q.status
        ),
        out,
        |p| format!("{}{}", crate::newest_first(p.created_at), p.id),
        q.limit,
        q.cursor.as_deref(),
        view,
    )
}

// ---------------------------------------------------------------- refunds

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RefundBody {
    /// Defaults to everything not yet refunded.
    amount: Option<i64>,
}

/// Gives money back from a completed payment: partial or full, never more than was paid. The
/// refund is its own record (`refundOf`); the payment counts what was refunded and becomes
/// REFUNDED when all of it was. Both change in one transaction under the payment's version.
pub async fn refund(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, id)): Path<(String, String)>,
    OptionalJson(body): OptionalJson<RefundBody>,
) -> Result<Response, ApiError> {
    let p = load_visible(&state, &access, &id).await?;
    access.require(Resource::Payment, Action::Manage, &subject(&p))?;
    if p.refund_of.is_some() {
        return Err(ApiError::conflict(
            "not_refundable",
            "A refund cannot itself be refunded.",
        ));
    }
    let amount = body.amount.unwrap_or(p.amount - p.refunded);
    let full = rules::refund(p.status, p.amount, p.refunded, amount).map_err(|e| match e {
        RefundProblem::NotCompleted => ApiError::conflict(
            "not_refundable",
            "Only a completed payment with money left on it can be refunded.",
        ),
        RefundProblem::BadAmount => ApiError::invalid_field(
            "amount",
            "invalid_amount",
            "Refund a positive amount in minor units.",
        ),
        RefundProblem::MoreThanPaid => ApiError::invalid_field(
            "amount",
            "exceeds_paid",
            "A refund cannot exceed what was paid and not yet refunded.",
        ),
    })?;
    let now = state.clock.now();
    let now_s = now.as_second();
    let r = PaymentRecord {
        id: PaymentId::generate(),
        refund_of: Some(p.id.clone()),
        status: PaymentStatus::Completed,
        amount,
        refunded: 0,
        provider_ref: None,
        version: 1,
        created_at: now_s,
        updated_at: now_s,
        completed_at: Some(now_s),
        ..p.clone()
    };
    let mut u = VersionedUpdate::new();
    u.set("refunded", n(p.refunded + amount));
    if full {
        u.set("status", s(PaymentStatus::Refunded.as_str()));
    }
    let who = Who::member(&access.caller.user_id, access.role);
    let mut tx = Tx::default();
    tx.guard(p.update(&state.table, u, now_s)?, CHANGED_MEANWHILE);
    tx.push(r.put(&state.table)?);
    tx.push(payment_event(
        &state,
        "billing.payment.refunded",
        &r,
        &who,
        now,
        serde_json::json!({}),
    )?);
    tx.commit(&state.table).await?;
    let mut resp = json_response(StatusCode::CREATED, &view(&r));
    if let Ok(loc) =
        http::HeaderValue::from_str(&format!("/v1/clinics/{}/payments/{}", r.clinic, r.id))
    {
        resp.headers_mut().insert(http::header::LOCATION, loc);
    }
    Ok(resp)
}

// ---------------------------------------------------------------- provider webhook

/// `POST /v1/webhooks/payments/{provider}`: public, authenticated by the signature alone.
/// Redeliveries are harmless: a payment completes once, and later deliveries answer 200.
pub async fn webhook(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let provider = state.ext().named(&provider).ok_or(ApiError::NotFound)?;
    let now = state.clock.now();
    let w = provider.notification(&headers, &body, now)?;
    let Some((clinic, id)) =
        store::resolve_provider_ref(&state.table, provider.name(), &w.reference).await?
    else {
        return Err(ApiError::NotFound);
    };
    let p = store::get_payment(&state.table, &clinic, &id)
        .await?
        .ok_or(ApiError::NotFound)?;
    if w.amount != p.amount || w.currency != p.currency {
        tracing::warn!(payment = %p.id, "webhook amount or currency differs from the payment");
        return Err(ApiError::unprocessable(
            "amount_mismatch",
            "The notified amount differs from the payment.",
        ));
    }
    let who = Who::system();
    let outcome = if w.succeeded {
        complete(&state, &p, &who, now).await?.is_some()
    } else {
        fail(&state, &p, &who, now).await?
    };
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "received": true, "applied": outcome }),
    ))
}

/// Marks a PENDING payment FAILED (the invoice stays open). Returns whether it changed.
async fn fail(
    state: &Platform,
    p: &PaymentRecord,
    who: &Who,
    now: Timestamp,
) -> Result<bool, ApiError> {
    if p.status != PaymentStatus::Pending {
        return Ok(false);
    }
    let now_s = now.as_second();
    let mut u = VersionedUpdate::new();
    u.set("status", s(PaymentStatus::Failed.as_str()));
    let mut tx = Tx::default();
    tx.guard(p.update(&state.table, u, now_s)?, MOVED_MEANWHILE);
    let mut f = p.clone();
    f.status = PaymentStatus::Failed;
    tx.push(payment_event(
        state,
        "billing.payment.failed",
        &f,
        who,
        now,
        serde_json::json!({}),
    )?);
    match tx.commit(&state.table).await {
        Ok(()) => Ok(true),
        Err(ApiError::Guarded(MOVED_MEANWHILE)) => Ok(false),
        Err(e) => Err(e),
    }
}
