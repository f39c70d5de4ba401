//! Invoices: issuing with gapless numbers, listing, reading and voiding.
//!
//! A clinic's invoice numbers come from one counter item per calendar year. Issuing an invoice
//! moves the counter from the value read to the next one, under a condition on the value read,
//! in the same transaction that writes the invoice with that number: a number is used exactly
//! when its invoice exists, so numbers have neither gaps nor duplicates. Two issuers that read
//! the same value cannot both commit; the loser reads again and retries.

use axum::{
    extract::{Path, State},
    response::Response,
};
use http::StatusCode;
use jiff::{Timestamp, tz::TimeZone};
use serde::{Deserialize, Serialize};
use shared::{
    ApiError,
    authn::ClinicAccess,
    contracts::InvoiceData,
    db::{self, CHANGED_MEANWHILE, Tx, VersionedUpdate, n, s},
    error::{FieldError, Guard},
    http::{Json, OptionalJson, Query, json_response},
    ids::{AppointmentId, ClinicId, InvoiceId, LocationId, SubscriptionId, UserId},
    keys,
    platform::Platform,
    policy::{Action, Resource, Role, Subject, may_ever},
};

use crate::{
    AppState, Who, clinic_settings, event, iso,
    rules::{self, InvoiceAction, InvoiceStatus, Line, SubStatus, TotalsProblem},
    store::{self, InvoiceRecord, Record, StoredLine},
};

/// How many times issuing re-reads the counter before giving up (each try is one read and one
/// transaction; a hundred concurrent issuers in one clinic settle well within this).
pub(crate) const NUMBERING_ATTEMPTS: u32 = 200;

/// Another invoice took the number the counter read: read it again and retry.
const NUMBER_TAKEN: Guard = Guard::retryable(
    "invoice_number_taken",
    "Another invoice took this number; try again.",
);

/// Runs `attempt` until it does not fail because another invoice took the number it read
/// (or another retryable guard failed), backing off with jitter in between.
pub async fn retry_numbering<T, F, Fut>(attempt: F) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    db::retrying(NUMBERING_ATTEMPTS, attempt).await
}

/// What an invoice is for, before it has a number.
#[derive(Debug, Clone)]
pub struct Draft {
    pub clinic: ClinicId,
    pub patient: UserId,
    pub subscription: Option<SubscriptionId>,
    pub appointment: Option<AppointmentId>,
    pub location: Option<LocationId>,
    pub currency: String,
    pub lines: Vec<Line>,
    pub tax: i64,
    pub discount: i64,
}

/// Adds an OPEN invoice for `draft` to `tx`: the counter move (guarded), the invoice and its
/// `billing.invoice.issued` event. Returns the invoice as it will be stored.
pub async fn issue(
    state: &Platform,
    tx: &mut Tx,
    draft: &Draft,
    tz: &TimeZone,
    who: &Who,
    now: Timestamp,
) -> Result<InvoiceRecord, ApiError> {
    let mut inv = record(draft, now)?;
    let number = take_number(state, tx, &draft.clinic, tz, now).await?;
    inv.status = InvoiceStatus::Open;
    inv.number = Some(number);
    tx.push(inv.put(&state.table)?);
    tx.push(issued_event(state, &inv, who, now)?);
    Ok(inv)
}

/// The invoice `draft` describes, as a DRAFT without a number; issuing numbers it and opens it.
fn record(draft: &Draft, now: Timestamp) -> Result<InvoiceRecord, ApiError> {
    let totals = rules::totals(&draft.lines, draft.tax, draft.discount)
        .map_err(|p| ApiError::Validation(vec![totals_error(p)]))?;
    let now_s = now.as_second();
    Ok(InvoiceRecord {
        id: InvoiceId::generate(),
        clinic: draft.clinic.clone(),
        number: None,
        patient: draft.patient.clone(),
        subscription: draft.subscription.clone(),
        appointment: draft.appointment.clone(),
        location: draft.location.clone(),
        status: InvoiceStatus::Draft,
        currency: draft.currency.clone(),
        lines: draft.lines.iter().map(StoredLine::from).collect(),
        totals,
        amount_paid: 0,
        due_at: due_after(now),
        issued_at: now_s,
        paid_at: None,
        voided_at: None,
        version: 1,
        created_at: now_s,
        updated_at: now_s,
    })
}

/// Due a fixed number of days after issue (exact days: due times are instants).
fn due_after(issued: Timestamp) -> i64 {
    issued.as_second() + rules::DUE_DAYS * 86_400
}

/// Takes the clinic's next number for the year of `now` in `tz`: adds the guarded counter move
/// to `tx` and returns the number it stands for.
async fn take_number(
    state: &Platform,
    tx: &mut Tx,
    clinic: &ClinicId,
    tz: &TimeZone,
    now: Timestamp,
) -> Result<String, ApiError> {
    let year = rules::local_year(now, tz);
    let last = store::invoice_counter(&state.table, clinic, year).await?;
    tx.guard(
        store::invoice_counter_next(&state.table, clinic, year, last)?,
        NUMBER_TAKEN,
    );
    Ok(rules::invoice_number(year, last + 1))
}

fn issued_event(
    state: &Platform,
    inv: &InvoiceRecord,
    who: &Who,
    now: Timestamp,
) -> Result<aws_sdk_dynamodb::types::TransactWriteItem, ApiError> {
    invoice_event(
        state,
        "billing.invoice.issued",
        inv,
        who,
        now,
        serde_json::json!({ "dueAt": iso(inv.due_at) }),
    )
}

/// A `billing.invoice.*` event: the invoice's ids, number, total and currency, and `extra`.
pub(crate) fn invoice_event(
    state: &Platform,
    kind: &str,
    inv: &InvoiceRecord,
    who: &Who,
    now: Timestamp,
    extra: serde_json::Value,
) -> Result<aws_sdk_dynamodb::types::TransactWriteItem, ApiError> {
    let data = InvoiceData {
        invoice_id: inv.id.clone(),
        number: inv.number.clone(),
        patient_id: inv.patient.clone(),
        subscription_id: inv.subscription.clone(),
        appointment_id: inv.appointment.clone(),
        total: inv.totals.total,
        currency: inv.currency.clone(),
        extra: match extra {
            serde_json::Value::Object(x) => x,
            _ => serde_json::Map::new(),
        },
    };
    event(
        kind,
        &inv.clinic,
        who,
        ("invoice", inv.id.as_str()),
        serde_json::to_value(data).map_err(ApiError::internal)?,
        now,
    )
    .outbox_write(&state.table.name, now.as_second())
}

fn totals_error(p: TotalsProblem) -> FieldError {
    let (field, code, msg) = match p {
        TotalsProblem::NoLines => ("lines", "required", "Add at least one line."),
        TotalsProblem::TooManyLines => ("lines", "too_many", "At most 100 lines."),
        TotalsProblem::BadQuantity => ("lines", "invalid_quantity", "Quantities are 1 to 1000."),
        TotalsProblem::BadUnitAmount => (
            "lines",
            "invalid_amount",
            "Unit amounts are whole minor units, 0 or more.",
        ),
        TotalsProblem::BadTax => (
            "tax",
            "invalid_amount",
            "Tax is whole minor units, 0 or more.",
        ),
        TotalsProblem::BadDiscount => (
            "discount",
            "invalid_amount",
            "The discount is whole minor units, 0 or more.",
        ),
        TotalsProblem::DiscountExceedsAmount => (
            "discount",
            "exceeds_amount",
            "The discount cannot exceed the lines plus tax.",
        ),
        TotalsProblem::TooLarge => ("lines", "too_large", "The amounts are too large."),
    };
    FieldError::new(field, code, msg)
}

// ---------------------------------------------------------------- views

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceView {
    pub id: String,
    pub clinic_id: String,
    /// Absent while the invoice is a DRAFT.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    pub patient_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub appointment_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location_id: Option<String>,
    pub status: &'static str,
    pub currency: String,
    pub lines: Vec<StoredLine>,
    pub subtotal: i64,
    pub tax: i64,
    pub discount: i64,
    pub total: i64,
    pub amount_paid: i64,
    pub amount_due: i64,
    pub created_at: String,
    /// Absent while the invoice is a DRAFT (it is neither issued nor due yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paid_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voided_at: Option<String>,
    pub version: i64,
}

pub fn view(i: &InvoiceRecord) -> InvoiceView {
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

pub fn subject(i: &InvoiceRecord) -> Subject<'_> {
    Subject {
        owner: Some(i.patient.as_str()),
        location: i.location.as_ref().map(LocationId::as_str),
        ..Default::default()
    }
}

/// Whether the caller may read `inv`: the policy, and a patient sees their invoices once they
/// are issued (a DRAFT is the clinic's work in progress).
pub fn readable(access: &ClinicAccess, inv: &InvoiceRecord) -> bool {
    access.allows(Resource::Invoice, Action::Read, &subject(inv))
        && !(inv.status == InvoiceStatus::Draft && access.role == Role::Patient)
}

/// The invoice if the caller may read it; 404 otherwise (indistinguishable from missing).
pub async fn load_visible(
    state: &AppState,
    access: &ClinicAccess,
    id: &str,
) -> Result<InvoiceRecord, ApiError> {
    let id = InvoiceId::parse(id).ok_or(ApiError::NotFound)?;
    let inv = store::get_invoice(&state.table, &access.clinic, &id)
        .await?
        .ok_or(ApiError::NotFound)?;
    if !readable(access, &inv) {
        return Err(ApiError::NotFound);
    }
    Ok(inv)
}

// ---------------------------------------------------------------- routes

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LineBody {
    description: String,
    #[serde(default = "one")]
    quantity: i64,
    unit_amount: i64,
}

fn one() -> i64 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateBody {
    patient_id: String,
    location_id: Option<String>,
    currency: Option<String>,
    lines: Vec<LineBody>,
    #[serde(default)]
    tax: i64,
    #[serde(default)]
    discount: i64,
    /// Keep the invoice as an unnumbered DRAFT until it is finalized.
    #[serde(default)]
    draft: bool,
}

/// Checks a patient id names an active patient of the clinic (422 otherwise).
pub async fn known_patient(
    state: &AppState,
    clinic: &ClinicId,
    id: &str,
) -> Result<UserId, ApiError> {
    let unknown = || {
        ApiError::invalid_field(
            "patientId",
            "unknown_patient",
            "No such patient in this clinic.",
        )
    };
    let user = UserId::parse(id).ok_or_else(unknown)?;
    let ok = shared::tenancy::get_member(&state.table, clinic, &user)
        .await?
        .is_some_and(|m| m.role == Role::Patient && m.status == "ACTIVE");
    if ok { Ok(user) } else { Err(unknown()) }
}

/// Checks an optional location id names a location of the clinic (422 otherwise).
pub async fn known_location(
    state: &AppState,
    clinic: &ClinicId,
    id: Option<&str>,
) -> Result<Option<LocationId>, ApiError> {
    let Some(id) = id else { return Ok(None) };
    let unknown = || {
        ApiError::invalid_field(
            "locationId",
            "unknown_location",
            "No such location in this clinic.",
        )
    };
    let l = LocationId::parse(id).ok_or_else(unknown)?;
    let exists = state
        .table
        .get(keys::clinic_pk(clinic), keys::location_sk(&l))
        .await?
        .is_some();
    if exists { Ok(Some(l)) } else { Err(unknown()) }
}

pub async fn create(
    State(state): State<AppState>,
    access: ClinicAccess,
    Json(body): Json<CreateBody>,
) -> Result<Response, ApiError> {
    // Authorise on what the request names before looking anything up.
    let pre = Subject {
        owner: Some(body.patient_id.as_str()),
        location: body.location_id.as_deref(),
        ..Default::default()
    };
    access.require(Resource::Invoice, Action::Create, &pre)?;
    let mut errors = Vec::new();
    for (i, l) in body.lines.iter().enumerate() {
        if l.description.trim().is_empty() || l.description.chars().count() > 200 {
            errors.push(FieldError::new(
                format!("lines[{i}].description"),
                "invalid_length",
                "Use 1 to 200 characters.",
            ));
        }
    }
    if let Some(c) = &body.currency {
        if !rules::currency_ok(c) {
            errors.push(FieldError::new(
                "currency",
                "invalid_currency",
                "Use a three-letter ISO 4217 code.",
            ));
        }
    }
    let lines: Vec<Line> = body
        .lines
        .iter()
        .map(|l| Line {
            description: l.description.trim().to_string(),
            quantity: l.quantity,
            unit_amount: l.unit_amount,
        })
        .collect();
    if let Err(p) = rules::totals(&lines, body.tax, body.discount) {
        errors.push(totals_error(p));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let patient = known_patient(&state, &access.clinic, &body.patient_id).await?;
    let location = known_location(&state, &access.clinic, body.location_id.as_deref()).await?;
    let (tz, clinic_currency) = clinic_settings(&state, &access.clinic).await?;
    let draft = Draft {
        clinic: access.clinic.clone(),
        patient,
        subscription: None,
        appointment: None,
        location,
        currency: body.currency.clone().unwrap_or(clinic_currency),
        lines,
        tax: body.tax,
        discount: body.discount,
    };
    let who = Who::member(&access.caller.user_id, access.role);
    let inv = if body.draft {
        let now = state.clock.now();
        let inv = record(&draft, now)?;
        let mut tx = Tx::default();
        tx.push(inv.put(&state.table)?);
        tx.push(invoice_event(
            &state,
            "billing.invoice.drafted",
            &inv,
            &who,
            now,
            serde_json::json!({}),
        )?);
        tx.commit(&state.table).await?;
        inv
    } else {
        retry_numbering(|| async {
            let mut tx = Tx::default();
            let inv = issue(&state, &mut tx, &draft, &tz, &who, state.clock.now()).await?;
            tx.commit(&state.table).await?;
            Ok(inv)
        })
        .await?
    };
    let mut resp = json_response(StatusCode::CREATED, &view(&inv));
    if let Ok(loc) =
        http::HeaderValue::from_str(&format!("/v1/clinics/{}/invoices/{}", inv.clinic, inv.id))
    {
        resp.headers_mut().insert(http::header::LOCATION, loc);
    }
    Ok(resp)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListQuery {
    patient_id: Option<String>,
    status: Option<String>,
    subscription_id: Option<String>,
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
        InvoiceStatus::parse,
        "Unknown invoice status.",
    )?;
    if !may_ever(access.role, Resource::Invoice, Action::Read) {
        return Err(ApiError::Forbidden);
    }
    let mut out = Vec::new();
    for inv in
        store::all::<InvoiceRecord>(&state.table, &access.clinic, keys::INVOICE_PREFIX).await?
    {
        let keep = readable(&access, &inv)
            && q.patient_id
                .as_deref()
                .is_none_or(|p| inv.patient.as_str() == p)
            && q.subscription_id
                .as_deref()
                .is_none_or(|p| inv.subscription.as_ref().is_some_and(|x| x.as_str() == p))
            && status.is_none_or(|st| inv.status == st);
        if keep {
            out.push(inv);
        }
    }
    // Drafts first (newest first), then issued invoices by number, highest first.
    let key = |i: &InvoiceRecord| match &i.number {
        None => format!("0{}{}", crate::newest_first(i.created_at), i.id),
        Some(number) => format!("1{}{}", descending(number), i.id),
    };
    crate::page(
        &state,
        &access.clinic,
        format!(
            "invoices?patient={:?}&status={:?}&subscription={:?}",
            q.patient_id, q.status, q.subscription_id
        ),
        out,
        key,
        q.limit,
        q.cursor.as_deref(),
        view,
    )
}

pub async fn get(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let inv = load_visible(&state, &access, &id).await?;
    Ok(json_response(StatusCode::OK, &view(&inv)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ActionBody {
    version: Option<i64>,
}

/// `POST .../invoices/{invoiceId}/{action}`: `finalize` numbers a DRAFT and opens it, `void`
/// voids an unpaid invoice, `mark-uncollectible` writes an unpaid issued one off. All need
/// Manage on the invoice; each moves it under the version read.
pub async fn act(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, id, action)): Path<(String, String, String)>,
    OptionalJson(body): OptionalJson<ActionBody>,
) -> Result<Response, ApiError> {
    let action = InvoiceAction::parse(&action).ok_or(ApiError::NotFound)?;
    let inv = load_visible(&state, &access, &id).await?;
    access.require(Resource::Invoice, Action::Manage, &subject(&inv))?;
    if body.version.is_some_and(|v| v != inv.version) {
        return Err(ApiError::from(CHANGED_MEANWHILE));
    }
    let to = inv
        .status
        .after(action)
        .ok_or(ApiError::IllegalTransition {
            current: inv.status.as_str(),
            action: action.as_str(),
            requested: None,
        })?;
    if to == InvoiceStatus::Void && inv.amount_paid > 0 {
        return Err(ApiError::conflict(
            "invoice_partly_paid",
            "Part of this invoice was paid; refund the payments before voiding it.",
        ));
    }
    let who = Who::member(&access.caller.user_id, access.role);
    let after = if action == InvoiceAction::Finalize {
        let (tz, _) = clinic_settings(&state, &access.clinic).await?;
        retry_numbering(|| finalize(&state, &inv, &tz, &who)).await?
    } else {
        let now = state.clock.now();
        let now_s = now.as_second();
        let mut u = VersionedUpdate::new();
        u.set("status", s(to.as_str()));
        let mut after = inv.clone();
        after.status = to;
        after.version += 1;
        after.updated_at = now_s;
        let kind = if to == InvoiceStatus::Void {
            u.set("voidedAt", n(now_s));
            after.voided_at = Some(now_s);
            "billing.invoice.voided"
        } else {
            "billing.invoice.uncollectible"
        };
        let mut tx = Tx::default();
        tx.guard(inv.update(&state.table, u, now_s)?, CHANGED_MEANWHILE);
        tx.push(invoice_event(
            &state,
            kind,
            &inv,
            &who,
            now,
            serde_json::json!({ "previousStatus": inv.status.as_str() }),
        )?);
        // Voiding the first invoice of a subscription that never started ends it too, so the
        // patient is free to take the plan out again.
        if to == InvoiceStatus::Void {
            if let Some(sub) = &inv.subscription {
                let unstarted = store::get_subscription(&state.table, &inv.clinic, sub)
                    .await?
                    .filter(|x| {
                        x.status == SubStatus::Incomplete
                            && x.latest_invoice.as_ref() == Some(&inv.id)
                    });
                if let Some(x) = unstarted {
                    crate::sweep::end_unstarted(
                        &state,
                        &mut tx,
                        &x,
                        &inv,
                        "first_invoice_voided",
                        &who,
                        now,
                    )?;
                }
            }
        }
        tx.commit(&state.table).await?;
        after
    };
    Ok(json_response(StatusCode::OK, &view(&after)))
}

/// Numbers a DRAFT and opens it, due [`rules::DUE_DAYS`] from now: the counter move and the
/// invoice update (under the version read) commit together.
async fn finalize(
    state: &Platform,
    inv: &InvoiceRecord,
    tz: &TimeZone,
    who: &Who,
) -> Result<InvoiceRecord, ApiError> {
    let now = state.clock.now();
    let now_s = now.as_second();
    let mut tx = Tx::default();
    let number = take_number(state, &mut tx, &inv.clinic, tz, now).await?;
    let mut u = VersionedUpdate::new();
    u.set("status", s(InvoiceStatus::Open.as_str()))
        .set("number", s(&number))
        .set("issuedAt", n(now_s))
        .set("dueAt", n(due_after(now)));
    tx.guard(inv.update(&state.table, u, now_s)?, CHANGED_MEANWHILE);
    let mut after = inv.clone();
    after.status = InvoiceStatus::Open;
    after.number = Some(number);
    after.issued_at = now_s;
    after.due_at = due_after(now);
    after.version += 1;
    after.updated_at = now_s;
    tx.push(issued_event(state, &after, who, now)?);
    tx.commit(&state.table).await?;
    Ok(after)
}

/// A string that sorts in the reverse order of `number` (`INV-<year>-<sequence>`, fixed width):
/// every digit d becomes 9 - d.
fn descending(number: &str) -> String {
    number
        .chars()
        .map(|c| match c.to_digit(10) {
            Some(d) => char::from_digit(9 - d, 10).unwrap_or(c),
            None => c,
        })
        .collect()
}
