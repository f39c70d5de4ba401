//! Plans, subscriptions and coverage routes.

use std::collections::BTreeMap;

use axum::{
    extract::{Path, State},
    response::Response,
};
use http::StatusCode;
use jiff::{Timestamp, tz::TimeZone};
use serde::{Deserialize, Deserializer, Serialize};
use shared::{
    ApiError,
    authn::ClinicAccess,
    db::{CHANGED_MEANWHILE, Tx, VersionedUpdate, b, n, s},
    error::{FieldError, Guard},
    http::{Json, OptionalJson, Query, json_response},
    ids::{LocationId, PlanId, SubscriptionId},
    keys,
    platform::Platform,
    policy::{Action, Resource, Role, Subject, may_ever},
};

use crate::{
    AppState, Who, clinic_settings, event,
    invoices::{self, Draft, known_location, known_patient, retry_numbering},
    iso,
    rules::{self, APPOINTMENT_TYPES, Cadence, Decision, Interval, Line, SubStatus},
    store::{self, PlanRecord, Record, SubscriptionRecord},
};

fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

fn created(value: &impl Serialize, location: String) -> Response {
    let mut resp = json_response(StatusCode::CREATED, value);
    if let Ok(loc) = http::HeaderValue::from_str(&location) {
        resp.headers_mut().insert(http::header::LOCATION, loc);
    }
    resp
}

fn errors(v: Vec<FieldError>) -> Result<(), ApiError> {
    if v.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(v))
    }
}

// ---------------------------------------------------------------- plans

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanView {
    id: String,
    clinic_id: String,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    price: i64,
    currency: String,
    interval: &'static str,
    interval_count: i64,
    trial_days: i64,
    /// `null` is unlimited.
    appointments_included: Option<i64>,
    covered_types: Vec<String>,
    visit_prices: BTreeMap<String, i64>,
    active: bool,
    live_subscriptions: i64,
    created_at: String,
    updated_at: String,
    version: i64,
}

fn plan_view(p: &PlanRecord) -> PlanView {
    PlanView {
        id: p.id.to_string(),
        clinic_id: p.clinic.to_string(),
        name: p.name.clone(),
        description: p.description.clone(),
        price: p.price,
        currency: p.currency.clone(),
        interval: p.cadence.unit.as_str(),
        interval_count: p.cadence.count,
        trial_days: p.trial_days,
        appointments_included: p.included,
        covered_types: p.covered_types.clone(),
        visit_prices: p.visit_prices.clone(),
        active: p.active,
        live_subscriptions: p.live_subscriptions,
        created_at: iso(p.created_at),
        updated_at: iso(p.updated_at),
        version: p.version,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PlanBody {
    name: String,
    description: Option<String>,
    price: i64,
    currency: Option<String>,
    interval: String,
    #[serde(default = "one")]
    interval_count: i64,
    #[serde(default)]
    trial_days: i64,
    /// Absent or `null`: unlimited.
    appointments_included: Option<i64>,
    covered_types: Vec<String>,
    visit_prices: BTreeMap<String, i64>,
}

fn one() -> i64 {
    1
}

fn check_name(name: &str, e: &mut Vec<FieldError>) {
    let len = name.trim().chars().count();
    if !(1..=100).contains(&len) {
        e.push(FieldError::new(
            "name",
            "invalid_length",
            "Use 1 to 100 characters.",
        ));
    }
}

fn check_description(d: Option<&str>, e: &mut Vec<FieldError>) {
    if d.is_some_and(|d| d.chars().count() > 1000) {
        e.push(FieldError::new(
            "description",
            "invalid_length",
            "Use at most 1000 characters.",
        ));
    }
}

fn check_amount(field: &'static str, v: i64, e: &mut Vec<FieldError>) {
    if !(0..=rules::MAX_AMOUNT).contains(&v) {
        e.push(FieldError::new(
            field,
            "invalid_amount",
            "Use whole minor units, 0 or more.",
        ));
    }
}

fn check_trial(v: i64, e: &mut Vec<FieldError>) {
    if !(0..=rules::MAX_TRIAL_DAYS).contains(&v) {
        e.push(FieldError::new(
            "trialDays",
            "out_of_range",
            "Use 0 to 365 days.",
        ));
    }
}

fn check_included(v: Option<i64>, e: &mut Vec<FieldError>) {
    if v.is_some_and(|x| !(0..=rules::MAX_INCLUDED).contains(&x)) {
        e.push(FieldError::new(
            "appointmentsIncluded",
            "out_of_range",
            "Use 0 to 10000, or null for unlimited.",
        ));
    }
}

fn check_covered(v: &[String], e: &mut Vec<FieldError>) {
    let mut seen = std::collections::BTreeSet::new();
    for t in v {
        if !APPOINTMENT_TYPES.contains(&t.as_str()) || !seen.insert(t) {
            e.push(FieldError::new(
                "coveredTypes",
                "invalid_type",
                "Use distinct appointment types: IN_PERSON, VIDEO_CALL, HOME_VISIT.",
            ));
            return;
        }
    }
}

fn check_prices(v: &BTreeMap<String, i64>, e: &mut Vec<FieldError>) {
    let complete =
        v.len() == APPOINTMENT_TYPES.len() && APPOINTMENT_TYPES.iter().all(|t| v.contains_key(*t));
    if !complete {
        e.push(FieldError::new(
            "visitPrices",
            "incomplete",
            "Give the pay-per-visit price of IN_PERSON, VIDEO_CALL and HOME_VISIT.",
        ));
    }
    if v.values().any(|p| !(0..=rules::MAX_AMOUNT).contains(p)) {
        e.push(FieldError::new(
            "visitPrices",
            "invalid_amount",
            "Use whole minor units, 0 or more.",
        ));
    }
}

pub async fn create_plan(
    State(state): State<AppState>,
    access: ClinicAccess,
    Json(body): Json<PlanBody>,
) -> Result<Response, ApiError> {
    access.require(Resource::Plan, Action::Create, &Subject::default())?;
    let mut e = Vec::new();
    check_name(&body.name, &mut e);
    check_description(body.description.as_deref(), &mut e);
    check_amount("price", body.price, &mut e);
    let unit = Interval::parse(&body.interval);
    if unit.is_none() {
        e.push(FieldError::new(
            "interval",
            "invalid_interval",
            "Use DAY, WEEK, MONTH, QUARTER or YEAR.",
        ));
    }
    if !(1..=rules::MAX_INTERVAL_COUNT).contains(&body.interval_count) {
        e.push(FieldError::new(
            "intervalCount",
            "out_of_range",
            "Use 1 to 36.",
        ));
    }
    check_trial(body.trial_days, &mut e);
    check_included(body.appointments_included, &mut e);
    check_covered(&body.covered_types, &mut e);
    check_prices(&body.visit_prices, &mut e);
    if body
        .currency
        .as_deref()
        .is_some_and(|c| !rules::currency_ok(c))
    {
        e.push(FieldError::new(
            "currency",
            "invalid_currency",
            "Use a three-letter ISO 4217 code.",
        ));
    }
    errors(e)?;
    let Some(unit) = unit else {
        return Err(ApiError::internal("validated interval missing"));
    };
    let (_, clinic_currency) = clinic_settings(&state, &access.clinic).await?;
    let now = state.clock.now();
    let now_s = now.as_second();
    let plan = PlanRecord {
        id: PlanId::generate(),
        clinic: access.clinic.clone(),
        name: body.name.trim().to_string(),
        description: body.description.clone(),
        price: body.price,
        currency: body.currency.clone().unwrap_or(clinic_currency),
        cadence: Cadence {
            unit,
            count: body.interval_count,
        },
        trial_days: body.trial_days,
        included: body.appointments_included,
        covered_types: body.covered_types.clone(),
        visit_prices: body.visit_prices.clone(),
        active: true,
        live_subscriptions: 0,
        version: 1,
        created_at: now_s,
        updated_at: now_s,
    };
    let who = Who::member(&access.caller.user_id, access.role);
    let mut tx = Tx::default();
    tx.push(plan.put(&state.table)?);
    tx.push(outbox(
        &state,
        plan_ev("billing.plan.created", &plan, &who, now),
        now,
    )?);
    tx.commit(&state.table).await?;
    Ok(created(
        &plan_view(&plan),
        format!("/v1/clinics/{}/plans/{}", plan.clinic, plan.id),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PlanListQuery {
    active: Option<bool>,
    limit: Option<u32>,
    cursor: Option<String>,
}

pub async fn list_plans(
    State(state): State<AppState>,
    access: ClinicAccess,
    Query(q): Query<PlanListQuery>,
) -> Result<Response, ApiError> {
    access.require(Resource::Plan, Action::Read, &Subject::default())?;
    let mut plans: Vec<PlanRecord> =
        store::all(&state.table, &access.clinic, keys::PLAN_PREFIX).await?;
    plans.retain(|p| q.active.is_none_or(|a| p.active == a));
    crate::page(
        &state,
        &access.clinic,
        format!("plans?active={:?}", q.active),
        plans,
        |p| format!("{}\u{1f}{}", p.name, p.id),
        q.limit,
        q.cursor.as_deref(),
        plan_view,
    )
}

async fn load_plan(
    state: &AppState,
    access: &ClinicAccess,
    id: &str,
) -> Result<PlanRecord, ApiError> {
    access.require(Resource::Plan, Action::Read, &Subject::default())?;
    let id = PlanId::parse(id).ok_or(ApiError::NotFound)?;
    store::get_plan(&state.table, &access.clinic, &id)
        .await?
        .ok_or(ApiError::NotFound)
}

pub async fn get_plan(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let p = load_plan(&state, &access, &id).await?;
    Ok(json_response(StatusCode::OK, &plan_view(&p)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PlanPatch {
    name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    description: Option<Option<String>>,
    active: Option<bool>,
    price: Option<i64>,
    trial_days: Option<i64>,
    #[serde(default, deserialize_with = "present")]
    appointments_included: Option<Option<i64>>,
    covered_types: Option<Vec<String>>,
    visit_prices: Option<BTreeMap<String, i64>>,
    version: Option<i64>,
}

/// Changes a plan. Terms changed here apply to subscriptions taken out afterwards; existing
/// subscriptions keep the terms they were sold.
pub async fn update_plan(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, id)): Path<(String, String)>,
    Json(body): Json<PlanPatch>,
) -> Result<Response, ApiError> {
    let p = load_plan(&state, &access, &id).await?;
    access.require(Resource::Plan, Action::Update, &Subject::default())?;
    let mut e = Vec::new();
    let mut u = VersionedUpdate::new();
    let mut after = p.clone();
    if let Some(v) = &body.name {
        check_name(v, &mut e);
        u.set("name", s(v.trim()));
        after.name = v.trim().to_string();
    }
    if let Some(d) = &body.description {
        check_description(d.as_deref(), &mut e);
        match d {
            Some(d) => u.set("description", s(d)),
            None => u.remove("description"),
        };
        after.description = d.clone();
    }
    if let Some(a) = body.active {
        u.set("active", b(a));
        after.active = a;
    }
    if let Some(v) = body.price {
        check_amount("price", v, &mut e);
        u.set("price", n(v));
        after.price = v;
    }
    if let Some(v) = body.trial_days {
        check_trial(v, &mut e);
        u.set("trialDays", n(v));
        after.trial_days = v;
    }
    if let Some(v) = body.appointments_included {
        check_included(v, &mut e);
        match v {
            Some(x) => u.set("appointmentsIncluded", n(x)),
            None => u.remove("appointmentsIncluded"),
        };
        after.included = v;
    }
    if let Some(v) = &body.covered_types {
        check_covered(v, &mut e);
        u.set(
            "coveredTypes",
            s(serde_json::to_string(v).map_err(ApiError::internal)?),
        );
        after.covered_types = v.clone();
    }
    if let Some(v) = &body.visit_prices {
        check_prices(v, &mut e);
        u.set(
            "visitPrices",
            s(serde_json::to_string(v).map_err(ApiError::internal)?),
        );
        after.visit_prices = v.clone();
    }
    errors(e)?;
    if body.version.is_some_and(|v| v != p.version) {
        return Err(ApiError::from(CHANGED_MEANWHILE));
    }
    if u.is_empty() {
        return Ok(json_response(StatusCode::OK, &plan_view(&p)));
    }
    let now = state.clock.now();
    let now_s = now.as_second();
    after.version += 1;
    after.updated_at = now_s;
    let who = Who::member(&access.caller.user_id, access.role);
    let mut tx = Tx::default();
    tx.guard(
        u.build(
            &state.table,
            keys::clinic_pk(&p.clinic),
            keys::plan_sk(&p.id),
            p.version,
            now_s,
        )?,
        CHANGED_MEANWHILE,
    );
    tx.push(outbox(
        &state,
        plan_ev("billing.plan.updated", &after, &who, now),
        now,
    )?);
    tx.commit(&state.table).await?;
    Ok(json_response(StatusCode::OK, &plan_view(&after)))
}

fn plan_ev(kind: &str, p: &PlanRecord, who: &Who, now: Timestamp) -> shared::outbox::EventEnvelope {
    event(
        kind,
        &p.clinic,
        who,
        ("plan", p.id.as_str()),
        serde_json::json!({
            "planId": p.id,
            "name": p.name,
            "price": p.price,
            "currency": p.currency,
            "active": p.active,
        }),
        now,
    )
}

fn outbox(
    state: &Platform,
    e: shared::outbox::EventEnvelope,
    now: Timestamp,
) -> Result<aws_sdk_dynamodb::types::TransactWriteItem, ApiError> {
    e.outbox_write(&state.table.name, now.as_second())
}

/// Deletes a plan nobody is subscribed to; a plan with live subscriptions answers 409 (set
/// `active: false` instead, so nobody new can subscribe).
pub async fn delete_plan(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let p = load_plan(&state, &access, &id).await?;
    access.require(Resource::Plan, Action::Delete, &Subject::default())?;
    if p.live_subscriptions > 0 {
        return Err(ApiError::conflict(
            "plan_in_use",
            "The plan has live subscriptions; deactivate it instead.",
        ));
    }
    let now = state.clock.now();
    let who = Who::member(&access.caller.user_id, access.role);
    let mut tx = Tx::default();
    tx.guard(
        store::plan_delete(&state.table, &p)?,
        Guard::new(
            "plan_in_use",
            "The plan changed or gained subscriptions meanwhile; deactivate it instead.",
        ),
    );
    tx.push(outbox(
        &state,
        plan_ev("billing.plan.deleted", &p, &who, now),
        now,
    )?);
    tx.commit(&state.table).await?;
    Ok(axum::response::IntoResponse::into_response(
        StatusCode::NO_CONTENT,
    ))
}

// ---------------------------------------------------------------- subscriptions

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QuotaView {
    /// `null` is unlimited.
    included: Option<i64>,
    used: i64,
    /// `null` is unlimited.
    remaining: Option<i64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionView {
    id: String,
    clinic_id: String,
    patient_id: String,
    plan_id: String,
    plan_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    location_id: Option<String>,
    status: &'static str,
    price: i64,
    currency: String,
    interval: &'static str,
    interval_count: i64,
    covered_types: Vec<String>,
    visit_prices: BTreeMap<String, i64>,
    quota: QuotaView,
    current_period_start: String,
    current_period_end: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    trial_end: Option<String>,
    cancel_at_period_end: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    cancelled_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latest_invoice_id: Option<String>,
    created_at: String,
    version: i64,
}

pub fn subscription_view(x: &SubscriptionRecord) -> SubscriptionView {
    SubscriptionView {
        id: x.id.to_string(),
        clinic_id: x.clinic.to_string(),
        patient_id: x.patient.to_string(),
        plan_id: x.plan.to_string(),
        plan_name: x.plan_name.clone(),
        location_id: x.location.as_ref().map(ToString::to_string),
        status: x.status.as_str(),
        price: x.price,
        currency: x.terms.currency.clone(),
        interval: x.cadence.unit.as_str(),
        interval_count: x.cadence.count,
        covered_types: x.terms.covered_types.clone(),
        visit_prices: x.terms.visit_prices.clone(),
        quota: QuotaView {
            included: x.terms.included,
            used: x.quota_used,
            remaining: rules::remaining(&x.terms, x.quota_used),
        },
        current_period_start: iso(x.period_start),
        current_period_end: iso(x.period_end),
        trial_end: x.trial_end.map(iso),
        cancel_at_period_end: x.cancel_at_period_end,
        cancelled_at: x.cancelled_at.map(iso),
        latest_invoice_id: x.latest_invoice.as_ref().map(ToString::to_string),
        created_at: iso(x.created_at),
        version: x.version,
    }
}

pub fn subscription_subject(x: &SubscriptionRecord) -> Subject<'_> {
    Subject {
        owner: Some(x.patient.as_str()),
        location: x.location.as_ref().map(LocationId::as_str),
        ..Default::default()
    }
}

async fn load_subscription(
    state: &AppState,
    access: &ClinicAccess,
    id: &str,
) -> Result<SubscriptionRecord, ApiError> {
    let id = SubscriptionId::parse(id).ok_or(ApiError::NotFound)?;
    let x = store::get_subscription(&state.table, &access.clinic, &id)
        .await?
        .ok_or(ApiError::NotFound)?;
    if !access.allows(
        Resource::Subscription,
        Action::Read,
        &subscription_subject(&x),
    ) {
        return Err(ApiError::NotFound);
    }
    Ok(x)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SubscribeBody {
    plan_id: String,
    patient_id: Option<String>,
    location_id: Option<String>,
}

const UNKNOWN_PLAN: Guard = Guard::on_field(
    "planId",
    "unknown_plan",
    "No such active plan in this clinic.",
);

fn unknown_plan() -> ApiError {
    UNKNOWN_PLAN.into()
}

/// The invoice for one period of a subscription.
fn period_draft(x: &SubscriptionRecord, start: i64, end: i64) -> Draft {
    Draft {
        clinic: x.clinic.clone(),
        patient: x.patient.clone(),
        subscription: Some(x.id.clone()),
        appointment: None,
        location: x.location.clone(),
        currency: x.terms.currency.clone(),
        lines: vec![Line {
            description: format!(
                "{} ({} to {})",
                x.plan_name,
                &iso(start)[..10],
                &iso(end)[..10]
            ),
            quantity: 1,
            unit_amount: x.price,
        }],
        tax: 0,
        discount: 0,
    }
}

pub(crate) fn subscription_event(
    state: &Platform,
    kind: &str,
    x: &SubscriptionRecord,
    who: &Who,
    now: Timestamp,
    extra: serde_json::Value,
) -> Result<aws_sdk_dynamodb::types::TransactWriteItem, ApiError> {
    let data = crate::merged(
        serde_json::json!({
            "subscriptionId": x.id,
            "patientId": x.patient,
            "planId": x.plan,
            "status": x.status.as_str(),
            "currentPeriodStart": iso(x.period_start),
            "currentPeriodEnd": iso(x.period_end),
        }),
        extra,
    );
    event(
        kind,
        &x.clinic,
        who,
        ("subscription", x.id.as_str()),
        data,
        now,
    )
    .outbox_write(&state.table.name, now.as_second())
}

/// Takes out a subscription: TRIALING when the plan has a trial, otherwise INCOMPLETE with the
/// first period's invoice until it is paid (ACTIVE at once for a free plan). One live
/// subscription per patient and plan.
pub async fn subscribe(
    State(state): State<AppState>,
    access: ClinicAccess,
    Json(body): Json<SubscribeBody>,
) -> Result<Response, ApiError> {
    let patient_id = match &body.patient_id {
        Some(p) => p.clone(),
        None if access.role == Role::Patient => access.caller.user_id.to_string(),
        None => {
            return Err(ApiError::invalid_field(
                "patientId",
                "required",
                "Name the patient.",
            ));
        }
    };
    let pre = Subject {
        owner: Some(patient_id.as_str()),
        location: body.location_id.as_deref(),
        ..Default::default()
    };
    access.require(Resource::Subscription, Action::Create, &pre)?;
    let plan = PlanId::parse(&body.plan_id).ok_or_else(unknown_plan)?;
    let plan = store::get_plan(&state.table, &access.clinic, &plan)
        .await?
        .filter(|p| p.active)
        .ok_or_else(unknown_plan)?;
    let patient = known_patient(&state, &access.clinic, &patient_id).await?;
    let location = known_location(&state, &access.clinic, body.location_id.as_deref()).await?;
    let (tz, _) = clinic_settings(&state, &access.clinic).await?;
    let who = Who::member(&access.caller.user_id, access.role);
    let x = retry_numbering(|| {
        let (state, plan, patient, location, tz, who) =
            (&state, &plan, &patient, &location, &tz, &who);
        async move {
            let now = state.clock.now();
            let x = new_subscription(plan, patient, location.clone(), tz, now)?;
            let mut tx = Tx::default();
            let x = add_subscription(state, &mut tx, x, plan, tz, who, now).await?;
            tx.commit(&state.table).await?;
            Ok(x)
        }
    })
    .await?;
    Ok(created(
        &subscription_view(&x),
        format!("/v1/clinics/{}/subscriptions/{}", x.clinic, x.id),
    ))
}

fn new_subscription(
    plan: &PlanRecord,
    patient: &shared::ids::UserId,
    location: Option<LocationId>,
    tz: &TimeZone,
    now: Timestamp,
) -> Result<SubscriptionRecord, ApiError> {
    let now_s = now.as_second();
    let start = now.to_zoned(tz.clone());
    let mut status = rules::initial_status(plan.trial_days);
    if status == SubStatus::Incomplete && plan.price == 0 {
        status = SubStatus::Active;
    }
    let bad = || ApiError::internal("period out of range");
    let (anchor, index, period_start, period_end, trial_end) = if plan.trial_days > 0 {
        let end = rules::trial_end(&start, plan.trial_days).ok_or_else(bad)?;
        (
            end.as_second(),
            -1,
            now_s,
            end.as_second(),
            Some(end.as_second()),
        )
    } else {
        let (s0, e0) = rules::period(&start, plan.cadence, 0).ok_or_else(bad)?;
        (now_s, 0, s0.as_second(), e0.as_second(), None)
    };
    Ok(SubscriptionRecord {
        id: SubscriptionId::generate(),
        clinic: plan.clinic.clone(),
        patient: patient.clone(),
        plan: plan.id.clone(),
        plan_name: plan.name.clone(),
        location,
        status,
        price: plan.price,
        cadence: plan.cadence,
        terms: plan.terms(),
        anchor,
        zone: tz.iana_name().unwrap_or("UTC").to_string(),
        period_index: index,
        period_start,
        period_end,
        trial_end,
        quota_used: 0,
        cancel_at_period_end: false,
        cancelled_at: None,
        latest_invoice: None,
        version: 1,
        created_at: now_s,
        updated_at: now_s,
    })
}

async fn add_subscription(
    state: &Platform,
    tx: &mut Tx,
    mut x: SubscriptionRecord,
    plan: &PlanRecord,
    tz: &TimeZone,
    who: &Who,
    now: Timestamp,
) -> Result<SubscriptionRecord, ApiError> {
    let mut invoice = None;
    if x.status == SubStatus::Incomplete {
        let inv = invoices::issue(
            state,
            tx,
            &period_draft(&x, x.period_start, x.period_end),
            tz,
            who,
            now,
        )
        .await?;
        x.latest_invoice = Some(inv.id.clone());
        invoice = Some(inv.id);
    }
    tx.push(x.put(&state.table)?);
    tx.guard(
        store::live_guard_put(&state.table, &x)?,
        Guard::new(
            "already_subscribed",
            "The patient already has a live subscription to this plan.",
        ),
    );
    tx.guard(
        store::plan_live_count(&state.table, &plan.clinic, &plan.id, 1)?,
        UNKNOWN_PLAN,
    );
    tx.push(subscription_event(
        state,
        "billing.subscription.created",
        &x,
        who,
        now,
        serde_json::json!({ "invoiceId": invoice }),
    )?);
    Ok(x)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SubscriptionListQuery {
    patient_id: Option<String>,
    plan_id: Option<String>,
    status: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

pub async fn list_subscriptions(
    State(state): State<AppState>,
    access: ClinicAccess,
    Query(q): Query<SubscriptionListQuery>,
) -> Result<Response, ApiError> {
    let status = crate::status_filter(
        q.status.as_deref(),
        SubStatus::parse,
        "Unknown subscription status.",
    )?;
    if !may_ever(access.role, Resource::Subscription, Action::Read) {
        return Err(ApiError::Forbidden);
    }
    let mut out = Vec::new();
    for x in
        store::all::<SubscriptionRecord>(&state.table, &access.clinic, keys::SUBSCRIPTION_PREFIX)
            .await?
    {
        let keep = access.allows(
            Resource::Subscription,
            Action::Read,
            &subscription_subject(&x),
        ) && q
            .patient_id
            .as_deref()
            .is_none_or(|p| x.patient.as_str() == p)
            && q.plan_id.as_deref().is_none_or(|p| x.plan.as_str() == p)
            && status.is_none_or(|st| x.status == st);
        if keep {
            out.push(x);
        }
    }
    crate::page(
        &state,
        &access.clinic,
        format!(
            "subscriptions?patient={:?}&plan={:?}&status={:?}",
            q.patient_id, q.plan_id, q.status
        ),
        out,
        |x| format!("{}{}", crate::newest_first(x.created_at), x.id),
        q.limit,
        q.cursor.as_deref(),
        subscription_view,
    )
}

pub async fn get_subscription(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let x = load_subscription(&state, &access, &id).await?;
    Ok(json_response(StatusCode::OK, &subscription_view(&x)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ActionBody {
    /// For `cancel`: end at the end of the current period (the default) or now.
    at_period_end: Option<bool>,
    version: Option<i64>,
}

fn illegal(x: &SubscriptionRecord, action: &'static str, to: Option<&'static str>) -> ApiError {
    ApiError::IllegalTransition {
        current: x.status.as_str(),
        action,
        requested: to,
    }
}

pub async fn subscription_action(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, id, action)): Path<(String, String, String)>,
    OptionalJson(body): OptionalJson<ActionBody>,
) -> Result<Response, ApiError> {
    let x = load_subscription(&state, &access, &id).await?;
    let who = Who::member(&access.caller.user_id, access.role);
    let now = state.clock.now();
    let after = match action.as_str() {
        "cancel" => {
            access.require(
                Resource::Subscription,
                Action::Delete,
                &subscription_subject(&x),
            )?;
            if body.version.is_some_and(|v| v != x.version) {
                return Err(ApiError::from(CHANGED_MEANWHILE));
            }
            // An unpaid first period has nothing to run out: it ends at once.
            let at_end = body.at_period_end.unwrap_or(true) && x.status != SubStatus::Incomplete;
            cancel(&state, &x, at_end, &who, now).await?
        }
        "renew" => {
            access.require(
                Resource::Subscription,
                Action::Update,
                &subscription_subject(&x),
            )?;
            if body.at_period_end.is_some() {
                return Err(ApiError::invalid_field(
                    "atPeriodEnd",
                    "unknown_field",
                    "Only cancel takes atPeriodEnd.",
                ));
            }
            if body.version.is_some_and(|v| v != x.version) {
                return Err(ApiError::from(CHANGED_MEANWHILE));
            }
            renew(&state, &x, &who, now).await?
        }
        _ => return Err(ApiError::NotFound),
    };
    Ok(json_response(StatusCode::OK, &subscription_view(&after)))
}

/// Cancels now (CANCELLED, the plan slot freed) or at the end of the current period.
pub async fn cancel(
    state: &Platform,
    x: &SubscriptionRecord,
    at_period_end: bool,
    who: &Who,
    now: Timestamp,
) -> Result<SubscriptionRecord, ApiError> {
    if x.status == SubStatus::Cancelled {
        return Err(illegal(x, "cancel", Some("CANCELLED")));
    }
    let now_s = now.as_second();
    let mut after = x.clone();
    after.version += 1;
    after.updated_at = now_s;
    let mut u = VersionedUpdate::new();
    let mut tx = Tx::default();
    if at_period_end {
        if x.cancel_at_period_end {
            return Ok(x.clone());
        }
        u.set("cancelAtPeriodEnd", b(true));
        after.cancel_at_period_end = true;
    } else {
        end_now(state, &mut tx, &mut u, x, &mut after, now_s)?;
    }
    tx.guard(x.update(&state.table, u, now_s)?, CHANGED_MEANWHILE);
    tx.push(subscription_event(
        state,
        "billing.subscription.cancelled",
        &after,
        who,
        now,
        serde_json::json!({ "atPeriodEnd": at_period_end }),
    )?);
    tx.commit(&state.table).await?;
    Ok(after)
}

/// Ends `x` now: CANCELLED, its one-live-per-plan guard and its count on the plan released.
pub(crate) fn end_now(
    state: &Platform,
    tx: &mut Tx,
    u: &mut VersionedUpdate,
    x: &SubscriptionRecord,
    after: &mut SubscriptionRecord,
    now_s: i64,
) -> Result<(), ApiError> {
    u.set("status", s(SubStatus::Cancelled.as_str()))
        .set("cancelledAt", n(now_s));
    after.status = SubStatus::Cancelled;
    after.cancelled_at = Some(now_s);
    tx.push(store::live_guard_delete(&state.table, x)?);
    tx.push(store::plan_live_count(
        &state.table,
        &x.clinic,
        &x.plan,
        -1,
    )?);
    Ok(())
}

/// Renewing undoes a pending cancel-at-period-end; on a subscription whose period has ended, it
/// moves to the current period at once (as the scheduled job would).
pub async fn renew(
    state: &Platform,
    x: &SubscriptionRecord,
    who: &Who,
    now: Timestamp,
) -> Result<SubscriptionRecord, ApiError> {
    if x.status == SubStatus::Cancelled {
        return Err(illegal(x, "renew", None));
    }
    let now_s = now.as_second();
    if x.cancel_at_period_end {
        let mut u = VersionedUpdate::new();
        u.set("cancelAtPeriodEnd", b(false));
        let mut after = x.clone();
        after.cancel_at_period_end = false;
        after.version += 1;
        after.updated_at = now_s;
        let mut tx = Tx::default();
        tx.guard(x.update(&state.table, u, now_s)?, CHANGED_MEANWHILE);
        tx.push(subscription_event(
            state,
            "billing.subscription.renewed",
            &after,
            who,
            now,
            serde_json::json!({ "resumed": true }),
        )?);
        tx.commit(&state.table).await?;
        return Ok(after);
    }
    if now_s < x.period_end {
        return Err(ApiError::conflict(
            "not_due",
            "The current period has not ended yet; nothing to renew.",
        ));
    }
    advance(state, x, who, now).await
}

/// Moves a subscription whose period has ended on: cancel-at-period-end is applied, a trial
/// ends, or the next period starts with its quota reset and its invoice issued (the current
/// period is the one containing `now`, so a long-idle subscription does not replay old ones).
pub async fn advance(
    state: &Platform,
    x: &SubscriptionRecord,
    who: &Who,
    now: Timestamp,
) -> Result<SubscriptionRecord, ApiError> {
    let now_s = now.as_second();
    let mut after = x.clone();
    after.version += 1;
    after.updated_at = now_s;
    let mut u = VersionedUpdate::new();
    let mut tx = Tx::default();
    if x.cancel_at_period_end {
        end_now(state, &mut tx, &mut u, x, &mut after, now_s)?;
        tx.guard(x.update(&state.table, u, now_s)?, CHANGED_MEANWHILE);
        tx.push(subscription_event(
            state,
            "billing.subscription.ended",
            &after,
            who,
            now,
            serde_json::json!({}),
        )?);
        tx.commit(&state.table).await?;
        return Ok(after);
    }
    let anchor = x.anchor_zoned()?;
    let mut index = x.period_index + 1;
    let bad = || ApiError::internal("period out of range");
    let (mut start, mut end) = rules::period(&anchor, x.cadence, index).ok_or_else(bad)?;
    while end <= now {
        index += 1;
        (start, end) = rules::period(&anchor, x.cadence, index).ok_or_else(bad)?;
    }
    after.period_index = index;
    after.period_start = start.as_second();
    after.period_end = end.as_second();
    after.quota_used = 0;
    u.set("periodIndex", n(index))
        .set("periodStart", n(after.period_start))
        .set("periodEnd", n(after.period_end))
        .set("quotaUsed", n(0));
    if x.status == SubStatus::Trialing {
        after.status = SubStatus::Active;
        u.set("status", s(SubStatus::Active.as_str()));
    }
    let mut invoice = None;
    if x.price > 0 {
        let tz = anchor.time_zone().clone();
        let inv = invoices::issue(
            state,
            &mut tx,
            &period_draft(&after, after.period_start, after.period_end),
            &tz,
            who,
            now,
        )
        .await?;
        u.set("latestInvoiceId", s(inv.id.as_str()));
        after.latest_invoice = Some(inv.id.clone());
        invoice = Some(inv.id);
    }
    tx.guard(x.update(&state.table, u, now_s)?, CHANGED_MEANWHILE);
    tx.push(subscription_event(
        state,
        "billing.subscription.renewed",
        &after,
        who,
        now,
        serde_json::json!({ "invoiceId": invoice, "trialEnded": x.status == SubStatus::Trialing }),
    )?);
    tx.commit(&state.table).await?;
    Ok(after)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CoverageQuery {
    appointment_type: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CoverageView {
    subscription_id: String,
    appointment_type: String,
    covered: bool,
    /// Why not covered: `subscription_not_live`, `type_not_covered` or `quota_used_up`.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    /// Units left in the period before this booking (`null` is unlimited).
    remaining: Option<i64>,
    /// What the patient pays for this visit: 0 when covered.
    amount_due: i64,
    currency: String,
    status: &'static str,
    current_period_start: String,
    current_period_end: String,
}

pub async fn get_coverage(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, id)): Path<(String, String)>,
    Query(q): Query<CoverageQuery>,
) -> Result<Response, ApiError> {
    let kind = q
        .appointment_type
        .filter(|t| APPOINTMENT_TYPES.contains(&t.as_str()))
        .ok_or_else(|| {
            ApiError::invalid_field(
                "appointmentType",
                "invalid_type",
                "Use IN_PERSON, VIDEO_CALL or HOME_VISIT.",
            )
        })?;
    let x = load_subscription(&state, &access, &id).await?;
    let now = state.clock.now();
    let d = rules::decide(x.status, &x.terms, x.period(), x.quota_used, &kind, now);
    let (covered, reason, amount) = match d {
        Decision::Covered { .. } => (true, None, 0),
        Decision::Pay { reason, amount } => (false, Some(reason.as_str()), amount),
    };
    let live = x.status.covers() && now.as_second() < x.period_end;
    Ok(json_response(
        StatusCode::OK,
        &CoverageView {
            subscription_id: x.id.to_string(),
            appointment_type: kind,
            covered,
            reason,
            remaining: if live {
                rules::remaining(&x.terms, x.quota_used)
            } else {
                Some(0)
            },
            amount_due: amount,
            currency: x.terms.currency.clone(),
            status: x.status.as_str(),
            current_period_start: iso(x.period_start),
            current_period_end: iso(x.period_end),
        },
    ))
}
