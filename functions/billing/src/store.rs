//! DynamoDB adapter for billing: plans, subscriptions (with the one-live-per-plan guard and
//! the quota counter), coverage links, invoices (with the per-clinic, per-year counter) and
//! payments. Every item lives in the clinic's partition except the provider-reference lookup.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem, Update};
use jiff::{Timestamp, Zoned, tz::TimeZone};
use shared::{
    ApiError,
    db::{Item, Table, get_n, get_opt_n, get_opt_s, get_s, n, s},
    ids::{
        AppointmentId, ClinicId, InvoiceId, LocationId, PaymentId, PlanId, SubscriptionId, UserId,
    },
    keys,
};

use crate::rules::{
    Cadence, Interval, InvoiceStatus, Line, Method, PaymentStatus, SubStatus, Terms, Totals,
};

pub use shared::db::{tx_delete, tx_put, tx_update};

fn bad(what: &'static str) -> ApiError {
    ApiError::internal(shared::db::AttributeError(what))
}

fn json_attr<T: serde::de::DeserializeOwned>(i: &Item, name: &'static str) -> Result<T, ApiError> {
    serde_json::from_str(get_s(i, name)?).map_err(|_| bad(name))
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, ApiError> {
    serde_json::to_string(v).map_err(ApiError::internal)
}

/// Queries one kind of item in a clinic's partition (by sort-key prefix), all pages.
pub async fn query_prefix(
    table: &Table,
    clinic: &ClinicId,
    prefix: &str,
) -> Result<Vec<Item>, ApiError> {
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let resp = table
            .client
            .query()
            .table_name(&table.name)
            .key_condition_expression("pk = :pk AND begins_with(sk, :p)")
            .expression_attribute_values(":pk", s(keys::clinic_pk(clinic)))
            .expression_attribute_values(":p", s(prefix))
            .set_exclusive_start_key(start)
            .consistent_read(true)
            .send()
            .await
            .map_err(shared::db::internal)?;
        out.extend(resp.items.unwrap_or_default());
        match resp.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => return Ok(out),
        }
    }
}

pub use shared::record::{Record, get};

/// Every record of one kind in a clinic (by sort-key prefix).
pub async fn all<R: Record>(
    table: &Table,
    clinic: &ClinicId,
    prefix: &str,
) -> Result<Vec<R>, ApiError> {
    query_prefix(table, clinic, prefix)
        .await?
        .iter()
        .map(R::parse)
        .collect()
}

shared::record!(PlanRecord, keys::plan_sk, "planId");
shared::record!(SubscriptionRecord, keys::subscription_sk, "subscriptionId");
shared::record!(InvoiceRecord, keys::invoice_sk, "invoiceId");
shared::record!(PaymentRecord, keys::payment_sk, "paymentId");

// ---------------------------------------------------------------- plans

#[derive(Debug, Clone)]
pub struct PlanRecord {
    pub id: PlanId,
    pub clinic: ClinicId,
    pub name: String,
    pub description: Option<String>,
    pub price: i64,
    pub currency: String,
    pub cadence: Cadence,
    pub trial_days: i64,
    pub included: Option<i64>,
    pub covered_types: Vec<String>,
    pub visit_prices: BTreeMap<String, i64>,
    pub active: bool,
    pub live_subscriptions: i64,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl PlanRecord {
    pub fn from_item(i: &Item) -> Result<Self, ApiError> {
        Ok(Self {
            id: PlanId::parse(get_s(i, "planId")?).ok_or_else(|| bad("planId"))?,
            clinic: ClinicId::parse(get_s(i, "clinicId")?).ok_or_else(|| bad("clinicId"))?,
            name: get_s(i, "name")?.to_string(),
            description: get_opt_s(i, "description").map(str::to_string),
            price: get_n(i, "price")?,
            currency: get_s(i, "currency")?.to_string(),
            cadence: Cadence {
                unit: Interval::parse(get_s(i, "interval")?).ok_or_else(|| bad("interval"))?,
                count: get_n(i, "intervalCount")?,
            },
            trial_days: get_n(i, "trialDays")?,
            included: get_opt_n(i, "appointmentsIncluded"),
            covered_types: json_attr(i, "coveredTypes")?,
            visit_prices: json_attr(i, "visitPrices")?,
            active: matches!(
                i.get("active"),
                Some(aws_sdk_dynamodb::types::AttributeValue::Bool(true))
            ),
            live_subscriptions: get_opt_n(i, "liveSubscriptions").unwrap_or(0),
            version: get_n(i, "version")?,
            created_at: get_n(i, "createdAt")?,
            updated_at: get_n(i, "updatedAt")?,
        })
    }

    pub fn put(&self, table: &Table) -> Result<TransactWriteItem, ApiError> {
        let mut p = self
            .new_put(table, "PLAN")
            .item("name", s(&self.name))
            .item("price", n(self.price))
            .item("currency", s(&self.currency))
            .item("interval", s(self.cadence.unit.as_str()))
            .item("intervalCount", n(self.cadence.count))
            .item("trialDays", n(self.trial_days))
            .item("coveredTypes", s(to_json(&self.covered_types)?))
            .item("visitPrices", s(to_json(&self.visit_prices)?))
            .item("active", shared::db::b(self.active))
            .item("liveSubscriptions", n(0));
        if let Some(d) = &self.description {
            p = p.item("description", s(d));
        }
        if let Some(x) = self.included {
            p = p.item("appointmentsIncluded", n(x));
        }
        tx_put(p)
    }

    pub fn terms(&self) -> Terms {
        Terms {
            included: self.included,
            covered_types: self.covered_types.clone(),
            visit_prices: self.visit_prices.clone(),
            currency: self.currency.clone(),
        }
    }
}

pub async fn get_plan(
    table: &Table,
    clinic: &ClinicId,
    plan: &PlanId,
) -> Result<Option<PlanRecord>, ApiError> {
    get(table, clinic, keys::plan_sk(plan)).await
}

/// Counts a plan's live subscriptions up or down; taking one out requires the plan active.
pub fn plan_live_count(
    table: &Table,
    clinic: &ClinicId,
    plan: &PlanId,
    delta: i64,
) -> Result<TransactWriteItem, ApiError> {
    let mut u = Update::builder()
        .table_name(&table.name)
        .key(keys::PK, s(keys::clinic_pk(clinic)))
        .key(keys::SK, s(keys::plan_sk(plan)))
        .update_expression("ADD liveSubscriptions :d")
        .expression_attribute_values(":d", n(delta));
    if delta > 0 {
        u = u
            .condition_expression("attribute_exists(pk) AND active = :t")
            .expression_attribute_values(":t", shared::db::b(true));
    }
    tx_update(u)
}

/// Deletes a plan under its version, only while no live subscription uses it.
pub fn plan_delete(table: &Table, p: &PlanRecord) -> Result<TransactWriteItem, ApiError> {
    tx_delete(
        Delete::builder()
            .table_name(&table.name)
            .key(keys::PK, s(keys::clinic_pk(&p.clinic)))
            .key(keys::SK, s(keys::plan_sk(&p.id)))
            .condition_expression(
                "version = :v AND (attribute_not_exists(liveSubscriptions) OR liveSubscriptions = :z)",
            )
            .expression_attribute_values(":v", n(p.version))
            .expression_attribute_values(":z", n(0)),
    )
}

// ---------------------------------------------------------------- subscriptions

#[derive(Debug, Clone)]
pub struct SubscriptionRecord {
    pub id: SubscriptionId,
    pub clinic: ClinicId,
    pub patient: UserId,
    pub plan: PlanId,
    pub plan_name: String,
    pub location: Option<LocationId>,
    pub status: SubStatus,
    pub price: i64,
    pub cadence: Cadence,
    pub terms: Terms,
    /// Where period 0 starts (the end of the trial, if any), and the zone periods are kept in.
    pub anchor: i64,
    pub zone: String,
    /// -1 during a trial, then 0, 1, ...
    pub period_index: i64,
    pub period_start: i64,
    pub period_end: i64,
    pub trial_end: Option<i64>,
    pub quota_used: i64,
    pub cancel_at_period_end: bool,
    pub cancelled_at: Option<i64>,
    pub latest_invoice: Option<InvoiceId>,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl SubscriptionRecord {
    pub fn from_item(i: &Item) -> Result<Self, ApiError> {
        Ok(Self {
            id: SubscriptionId::parse(get_s(i, "subscriptionId")?)
                .ok_or_else(|| bad("subscriptionId"))?,
            clinic: ClinicId::parse(get_s(i, "clinicId")?).ok_or_else(|| bad("clinicId"))?,
            patient: UserId::parse(get_s(i, "patientId")?).ok_or_else(|| bad("patientId"))?,
            plan: PlanId::parse(get_s(i, "planId")?).ok_or_else(|| bad("planId"))?,
            plan_name: get_s(i, "planName")?.to_string(),
            location: get_opt_s(i, "locationId").and_then(LocationId::parse),
            status: SubStatus::parse(get_s(i, "status")?).ok_or_else(|| bad("status"))?,
            price: get_n(i, "price")?,
            cadence: Cadence {
                unit: Interval::parse(get_s(i, "interval")?).ok_or_else(|| bad("interval"))?,
                count: get_n(i, "intervalCount")?,
            },
            terms: Terms {
                included: get_opt_n(i, "appointmentsIncluded"),
                covered_types: json_attr(i, "coveredTypes")?,
                visit_prices: json_attr(i, "visitPrices")?,
                currency: get_s(i, "currency")?.to_string(),
            },
            anchor: get_n(i, "anchor")?,
            zone: get_s(i, "zone")?.to_string(),
            period_index: get_n(i, "periodIndex")?,
            period_start: get_n(i, "periodStart")?,
            period_end: get_n(i, "periodEnd")?,
            trial_end: get_opt_n(i, "trialEnd"),
            quota_used: get_n(i, "quotaUsed")?,
            cancel_at_period_end: matches!(
                i.get("cancelAtPeriodEnd"),
                Some(aws_sdk_dynamodb::types::AttributeValue::Bool(true))
            ),
            cancelled_at: get_opt_n(i, "cancelledAt"),
            latest_invoice: get_opt_s(i, "latestInvoiceId").and_then(InvoiceId::parse),
            version: get_n(i, "version")?,
            created_at: get_n(i, "createdAt")?,
            updated_at: get_n(i, "updatedAt")?,
        })
    }

    pub fn put(&self, table: &Table) -> Result<TransactWriteItem, ApiError> {
        // Newest first in the clinic's, the patient's and the plan's lists (A34d).
        let key = format!("{}{}", shared::db::newest_first(self.created_at), self.id);
        let mut p = self
            .new_put(table, "SUBSCRIPTION")
            .item(keys::GSI1PK, s(keys::clinic_subscriptions_pk(&self.clinic)))
            .item(keys::GSI1SK, s(&key))
            .item(
                keys::GSI2PK,
                s(keys::patient_subscriptions_pk(&self.clinic, &self.patient)),
            )
            .item(keys::GSI2SK, s(&key))
            .item(
                keys::GSI3PK,
                s(keys::plan_subscriptions_pk(&self.clinic, &self.plan)),
            )
            .item(keys::GSI3SK, s(&key))
            .item("patientId", s(self.patient.as_str()))
            .item("planId", s(self.plan.as_str()))
            .item("planName", s(&self.plan_name))
            .item("status", s(self.status.as_str()))
            .item("price", n(self.price))
            .item("currency", s(&self.terms.currency))
            .item("interval", s(self.cadence.unit.as_str()))
            .item("intervalCount", n(self.cadence.count))
            .item("coveredTypes", s(to_json(&self.terms.covered_types)?))
            .item("visitPrices", s(to_json(&self.terms.visit_prices)?))
            .item("anchor", n(self.anchor))
            .item("zone", s(&self.zone))
            .item("periodIndex", n(self.period_index))
            .item("periodStart", n(self.period_start))
            .item("periodEnd", n(self.period_end))
            .item("quotaUsed", n(self.quota_used))
            .item(
                "cancelAtPeriodEnd",
                shared::db::b(self.cancel_at_period_end),
            );
        if let Some(x) = self.terms.included {
            p = p.item("appointmentsIncluded", n(x));
        }
        if let Some(l) = &self.location {
            p = p.item("locationId", s(l.as_str()));
        }
        if let Some(t) = self.trial_end {
            p = p.item("trialEnd", n(t));
        }
        if let Some(inv) = &self.latest_invoice {
            p = p.item("latestInvoiceId", s(inv.as_str()));
        }
        tx_put(p)
    }

    /// The anchor in the subscription's zone.
    pub fn anchor_zoned(&self) -> Result<Zoned, ApiError> {
        let tz = TimeZone::get(&self.zone).map_err(ApiError::internal)?;
        Ok(Timestamp::from_second(self.anchor)
            .map_err(ApiError::internal)?
            .to_zoned(tz))
    }

    pub fn period(&self) -> (Timestamp, Timestamp) {
        let t = |x| Timestamp::from_second(x).unwrap_or(Timestamp::UNIX_EPOCH);
        (t(self.period_start), t(self.period_end))
    }
}

pub async fn get_subscription(
    table: &Table,
    clinic: &ClinicId,
    id: &SubscriptionId,
) -> Result<Option<SubscriptionRecord>, ApiError> {
    get(table, clinic, keys::subscription_sk(id)).await
}

/// The one-live-subscription-per-patient-and-plan guard.
pub fn live_guard_put(
    table: &Table,
    sub: &SubscriptionRecord,
) -> Result<TransactWriteItem, ApiError> {
    tx_put(
        Put::builder()
            .table_name(&table.name)
            .item(keys::PK, s(keys::clinic_pk(&sub.clinic)))
            .item(
                keys::SK,
                s(keys::live_subscription_sk(&sub.patient, &sub.plan)),
            )
            .item(keys::ENTITY, s("SUBSCRIPTION_LIVE"))
            .item("subscriptionId", s(sub.id.as_str()))
            .condition_expression("attribute_not_exists(pk)"),
    )
}

pub fn live_guard_delete(
    table: &Table,
    sub: &SubscriptionRecord,
) -> Result<TransactWriteItem, ApiError> {
    tx_delete(
        Delete::builder()
            .table_name(&table.name)
            .key(keys::PK, s(keys::clinic_pk(&sub.clinic)))
            .key(
                keys::SK,
                s(keys::live_subscription_sk(&sub.patient, &sub.plan)),
            ),
    )
}

/// Uses one unit of quota: only while the subscription covers, in the period read, and (for a
/// limited plan) while units remain. This condition is what keeps the quota from going negative.
pub fn quota_take(table: &Table, sub: &SubscriptionRecord) -> Result<TransactWriteItem, ApiError> {
    let mut u = Update::builder()
        .table_name(&table.name)
        .key(keys::PK, s(keys::clinic_pk(&sub.clinic)))
        .key(keys::SK, s(keys::subscription_sk(&sub.id)))
        .update_expression("SET quotaUsed = quotaUsed + :one")
        .expression_attribute_names("#st", "status")
        .expression_attribute_values(":one", n(1))
        .expression_attribute_values(":ps", n(sub.period_start))
        .expression_attribute_values(":active", s(SubStatus::Active.as_str()))
        .expression_attribute_values(":trial", s(SubStatus::Trialing.as_str()));
    let live = "(#st = :active OR #st = :trial) AND periodStart = :ps";
    u = match sub.terms.included {
        Some(limit) => u
            .condition_expression(format!("{live} AND quotaUsed < :limit"))
            .expression_attribute_values(":limit", n(limit)),
        None => u.condition_expression(live),
    };
    tx_update(u)
}

/// Gives one unit back to the period it was taken from (never below zero).
pub fn quota_give_back(
    table: &Table,
    clinic: &ClinicId,
    sub: &SubscriptionId,
    period_start: i64,
) -> Result<TransactWriteItem, ApiError> {
    tx_update(
        Update::builder()
            .table_name(&table.name)
            .key(keys::PK, s(keys::clinic_pk(clinic)))
            .key(keys::SK, s(keys::subscription_sk(sub)))
            .update_expression("SET quotaUsed = quotaUsed - :one")
            .condition_expression("periodStart = :ps AND quotaUsed > :zero")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":ps", n(period_start)),
    )
}

/// The link between a covered appointment and the quota unit it took.
#[derive(Debug, Clone)]
pub struct CoverageLink {
    pub appointment: AppointmentId,
    pub subscription: SubscriptionId,
    pub period_start: i64,
}

pub fn link_put(
    table: &Table,
    clinic: &ClinicId,
    link: &CoverageLink,
    now: i64,
) -> Result<TransactWriteItem, ApiError> {
    tx_put(
        Put::builder()
            .table_name(&table.name)
            .item(keys::PK, s(keys::clinic_pk(clinic)))
            .item(keys::SK, s(keys::coverage_link_sk(&link.appointment)))
            .item(keys::ENTITY, s("COVERAGE_LINK"))
            .item("appointmentId", s(link.appointment.as_str()))
            .item("subscriptionId", s(link.subscription.as_str()))
            .item("periodStart", n(link.period_start))
            .item("createdAt", n(now))
            .condition_expression("attribute_not_exists(pk)"),
    )
}

/// Removes the link, only if it is still there: whoever removes it gives the unit back, so
/// the unit is given back once however often the cancellation is delivered.
pub fn link_take(
    table: &Table,
    clinic: &ClinicId,
    appointment: &AppointmentId,
) -> Result<TransactWriteItem, ApiError> {
    tx_delete(
        Delete::builder()
            .table_name(&table.name)
            .key(keys::PK, s(keys::clinic_pk(clinic)))
            .key(keys::SK, s(keys::coverage_link_sk(appointment)))
            .condition_expression("attribute_exists(pk)"),
    )
}

pub async fn get_link(
    table: &Table,
    clinic: &ClinicId,
    appointment: &AppointmentId,
) -> Result<Option<CoverageLink>, ApiError> {
    let Some(i) = table
        .get(keys::clinic_pk(clinic), keys::coverage_link_sk(appointment))
        .await?
    else {
        return Ok(None);
    };
    Ok(Some(CoverageLink {
        appointment: appointment.clone(),
        subscription: SubscriptionId::parse(get_s(&i, "subscriptionId")?)
            .ok_or_else(|| bad("subscriptionId"))?,
        period_start: get_n(&i, "periodStart")?,
    }))
}

// ---------------------------------------------------------------- invoices

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredLine {
    pub description: String,
    pub quantity: i64,
    pub unit_amount: i64,
}

impl From<&Line> for StoredLine {
    fn from(l: &Line) -> Self {
        Self {
            description: l.description.clone(),
            quantity: l.quantity,
            unit_amount: l.unit_amount,
        }
    }
}

#[derive(Debug, Clone)]
pub struct InvoiceRecord {
    pub id: InvoiceId,
    pub clinic: ClinicId,
    /// `INV-<year>-<sequence>`; a DRAFT has none until it is finalized.
    pub number: Option<String>,
    pub patient: UserId,
    pub subscription: Option<SubscriptionId>,
    pub appointment: Option<AppointmentId>,
    pub location: Option<LocationId>,
    pub status: InvoiceStatus,
    pub currency: String,
    pub lines: Vec<StoredLine>,
    pub totals: Totals,
    pub amount_paid: i64,
    pub due_at: i64,
    pub issued_at: i64,
    pub paid_at: Option<i64>,
    pub voided_at: Option<i64>,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl InvoiceRecord {
    pub fn from_item(i: &Item) -> Result<Self, ApiError> {
        Ok(Self {
            id: InvoiceId::parse(get_s(i, "invoiceId")?).ok_or_else(|| bad("invoiceId"))?,
            clinic: ClinicId::parse(get_s(i, "clinicId")?).ok_or_else(|| bad("clinicId"))?,
            number: get_opt_s(i, "number").map(str::to_string),
            patient: UserId::parse(get_s(i, "patientId")?).ok_or_else(|| bad("patientId"))?,
            subscription: get_opt_s(i, "subscriptionId").and_then(SubscriptionId::parse),
            appointment: get_opt_s(i, "appointmentId").and_then(AppointmentId::parse),
            location: get_opt_s(i, "locationId").and_then(LocationId::parse),
            status: InvoiceStatus::parse(get_s(i, "status")?).ok_or_else(|| bad("status"))?,
            currency: get_s(i, "currency")?.to_string(),
            lines: json_attr(i, "lines")?,
            totals: Totals {
                subtotal: get_n(i, "subtotal")?,
                tax: get_n(i, "tax")?,
                discount: get_n(i, "discount")?,
                total: get_n(i, "total")?,
            },
            amount_paid: get_n(i, "amountPaid")?,
            due_at: get_n(i, "dueAt")?,
            issued_at: get_n(i, "issuedAt")?,
            paid_at: get_opt_n(i, "paidAt"),
            voided_at: get_opt_n(i, "voidedAt"),
            version: get_n(i, "version")?,
            created_at: get_n(i, "createdAt")?,
            updated_at: get_n(i, "updatedAt")?,
        })
    }

    /// Where the invoice sorts in its lists: drafts first (newest first), then issued invoices
    /// by number, highest first; the id makes the key unique.
    pub fn list_key(&self) -> String {
        match &self.number {
            None => format!("0{}{}", shared::db::newest_first(self.created_at), self.id),
            Some(number) => format!("1{}{}", descending(number), self.id),
        }
    }

    /// The list indexes the invoice is in: the clinic's (gsi1), its patient's (gsi2) and its
    /// subscription's (gsi3), each sorted by [`Self::list_key`].
    fn list_index(&self) -> Vec<(&'static str, String)> {
        let key = self.list_key();
        let mut out = vec![
            (keys::GSI1PK, keys::clinic_invoices_pk(&self.clinic)),
            (keys::GSI1SK, key.clone()),
            (
                keys::GSI2PK,
                keys::patient_invoices_pk(&self.clinic, &self.patient),
            ),
            (keys::GSI2SK, key.clone()),
        ];
        if let Some(sub) = &self.subscription {
            out.push((
                keys::GSI3PK,
                keys::subscription_invoices_pk(&self.clinic, sub),
            ));
            out.push((keys::GSI3SK, key));
        }
        out
    }

    /// Moves the invoice within its lists after a change of `list_key` (a draft numbered).
    pub fn reindex(&self, u: &mut shared::db::VersionedUpdate) {
        for (name, value) in self.list_index() {
            if name == keys::GSI1SK || name == keys::GSI2SK || name == keys::GSI3SK {
                u.set(name, s(value));
            }
        }
    }

    pub fn put(&self, table: &Table) -> Result<TransactWriteItem, ApiError> {
        let mut p = self
            .new_put(table, "INVOICE")
            .item("patientId", s(self.patient.as_str()))
            .item("status", s(self.status.as_str()))
            .item("currency", s(&self.currency))
            .item("lines", s(to_json(&self.lines)?))
            .item("subtotal", n(self.totals.subtotal))
            .item("tax", n(self.totals.tax))
            .item("discount", n(self.totals.discount))
            .item("total", n(self.totals.total))
            .item("amountPaid", n(self.amount_paid))
            .item("dueAt", n(self.due_at))
            .item("issuedAt", n(self.issued_at));
        if let Some(x) = &self.number {
            p = p.item("number", s(x));
        }
        if let Some(x) = &self.subscription {
            p = p.item("subscriptionId", s(x.as_str()));
        }
        if let Some(x) = &self.appointment {
            p = p.item("appointmentId", s(x.as_str()));
        }
        if let Some(x) = &self.location {
            p = p.item("locationId", s(x.as_str()));
        }
        for (name, value) in self.list_index() {
            p = p.item(name, s(value));
        }
        tx_put(p)
    }
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

/// Which invoice list a page is cut from.
#[derive(Debug, Clone, Copy)]
pub enum InvoiceList<'a> {
    Clinic,
    Patient(&'a UserId),
    Subscription(&'a SubscriptionId),
}

/// One page of an invoice list from its index, in list order (see
/// [`shared::db::index_page`]), optionally narrowed to a patient and a status.
pub async fn invoice_page(
    table: &Table,
    clinic: &ClinicId,
    list: InvoiceList<'_>,
    patient: Option<&UserId>,
    status: Option<InvoiceStatus>,
    limit: i32,
    start: Option<Item>,
) -> Result<(Vec<InvoiceRecord>, Option<Item>), ApiError> {
    let (index, pk_attr, pk) = match list {
        InvoiceList::Clinic => (keys::GSI1, keys::GSI1PK, keys::clinic_invoices_pk(clinic)),
        InvoiceList::Patient(p) => (
            keys::GSI2,
            keys::GSI2PK,
            keys::patient_invoices_pk(clinic, p),
        ),
        InvoiceList::Subscription(x) => (
            keys::GSI3,
            keys::GSI3PK,
            keys::subscription_invoices_pk(clinic, x),
        ),
    };
    let mut equal = Vec::new();
    if let Some(st) = status {
        equal.push(("status", s(st.as_str())));
    }
    if let Some(p) = patient {
        equal.push(("patientId", s(p.as_str())));
    }
    let q = shared::db::IndexQuery {
        index,
        pk_attr,
        pk,
        equal,
    };
    let (items, last) = shared::db::index_page(table, q, limit, start).await?;
    let items = items
        .iter()
        .map(InvoiceRecord::from_item)
        .collect::<Result<_, _>>()?;
    Ok((items, last))
}

/// Which subscription list a page is cut from.
#[derive(Debug, Clone, Copy)]
pub enum SubscriptionList<'a> {
    Clinic,
    Patient(&'a UserId),
    Plan(&'a PlanId),
}

/// One page of a subscription list from its index, newest first, optionally narrowed to a
/// patient and a status.
pub async fn subscription_page(
    table: &Table,
    clinic: &ClinicId,
    list: SubscriptionList<'_>,
    patient: Option<&UserId>,
    status: Option<SubStatus>,
    limit: i32,
    start: Option<Item>,
) -> Result<(Vec<SubscriptionRecord>, Option<Item>), ApiError> {
    let (index, pk_attr, pk) = match list {
        SubscriptionList::Clinic => (
            keys::GSI1,
            keys::GSI1PK,
            keys::clinic_subscriptions_pk(clinic),
        ),
        SubscriptionList::Patient(p) => (
            keys::GSI2,
            keys::GSI2PK,
            keys::patient_subscriptions_pk(clinic, p),
        ),
        SubscriptionList::Plan(x) => (
            keys::GSI3,
            keys::GSI3PK,
            keys::plan_subscriptions_pk(clinic, x),
        ),
    };
    let mut equal = Vec::new();
    if let Some(st) = status {
        equal.push(("status", s(st.as_str())));
    }
    if let Some(p) = patient {
        equal.push(("patientId", s(p.as_str())));
    }
    let q = shared::db::IndexQuery {
        index,
        pk_attr,
        pk,
        equal,
    };
    let (items, last) = shared::db::index_page(table, q, limit, start).await?;
    let items = items
        .iter()
        .map(SubscriptionRecord::from_item)
        .collect::<Result<_, _>>()?;
    Ok((items, last))
}

/// Which payment list a page is cut from.
#[derive(Debug, Clone, Copy)]
pub enum PaymentList<'a> {
    Clinic,
    Patient(&'a UserId),
    Invoice(&'a InvoiceId),
}

/// One page of a payment list from its index, newest first, optionally narrowed to a patient
/// and a status.
pub async fn payment_page(
    table: &Table,
    clinic: &ClinicId,
    list: PaymentList<'_>,
    patient: Option<&UserId>,
    status: Option<PaymentStatus>,
    limit: i32,
    start: Option<Item>,
) -> Result<(Vec<PaymentRecord>, Option<Item>), ApiError> {
    let (index, pk_attr, pk) = match list {
        PaymentList::Clinic => (keys::GSI1, keys::GSI1PK, keys::clinic_payments_pk(clinic)),
        PaymentList::Patient(p) => (
            keys::GSI2,
            keys::GSI2PK,
            keys::patient_payments_pk(clinic, p),
        ),
        PaymentList::Invoice(i) => (
            keys::GSI3,
            keys::GSI3PK,
            keys::invoice_payments_pk(clinic, i),
        ),
    };
    let mut equal = Vec::new();
    if let Some(st) = status {
        equal.push(("status", s(st.as_str())));
    }
    if let Some(p) = patient {
        equal.push(("patientId", s(p.as_str())));
    }
    let q = shared::db::IndexQuery {
        index,
        pk_attr,
        pk,
        equal,
    };
    let (items, last) = shared::db::index_page(table, q, limit, start).await?;
    let items = items
        .iter()
        .map(PaymentRecord::from_item)
        .collect::<Result<_, _>>()?;
    Ok((items, last))
}

pub async fn get_invoice(
    table: &Table,
    clinic: &ClinicId,
    id: &InvoiceId,
) -> Result<Option<InvoiceRecord>, ApiError> {
    get(table, clinic, keys::invoice_sk(id)).await
}

/// The last invoice number a clinic issued in `year` (0 before the first).
pub async fn invoice_counter(table: &Table, clinic: &ClinicId, year: i16) -> Result<i64, ApiError> {
    Ok(table
        .get(keys::clinic_pk(clinic), keys::invoice_counter_sk(year))
        .await?
        .and_then(|i| get_opt_n(&i, "last"))
        .unwrap_or(0))
}

/// Moves the counter from `last` to `last + 1`, only if nobody moved it meanwhile. In the same
/// transaction as the invoice carrying number `last + 1`, this makes numbers gapless and unique.
pub fn invoice_counter_next(
    table: &Table,
    clinic: &ClinicId,
    year: i16,
    last: i64,
) -> Result<TransactWriteItem, ApiError> {
    let u = Update::builder()
        .table_name(&table.name)
        .key(keys::PK, s(keys::clinic_pk(clinic)))
        .key(keys::SK, s(keys::invoice_counter_sk(year)))
        .update_expression("SET #last = :next, #entity = :entity")
        .expression_attribute_names("#last", "last")
        .expression_attribute_names("#entity", keys::ENTITY)
        .expression_attribute_values(":next", n(last + 1))
        .expression_attribute_values(":entity", s("INVOICE_COUNTER"));
    let u = if last == 0 {
        u.condition_expression("attribute_not_exists(#last)")
    } else {
        u.condition_expression("#last = :last")
            .expression_attribute_values(":last", n(last))
    };
    tx_update(u)
}

// ---------------------------------------------------------------- payments

#[derive(Debug, Clone)]
pub struct PaymentRecord {
    pub id: PaymentId,
    pub clinic: ClinicId,
    pub invoice: InvoiceId,
    pub patient: UserId,
    pub location: Option<LocationId>,
    pub method: Method,
    pub provider: String,
    pub provider_ref: Option<String>,
    pub status: PaymentStatus,
    pub amount: i64,
    pub refunded: i64,
    pub currency: String,
    /// For a refund: the payment it gives money back from.
    pub refund_of: Option<PaymentId>,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub completed_at: Option<i64>,
}

impl PaymentRecord {
    pub fn from_item(i: &Item) -> Result<Self, ApiError> {
        Ok(Self {
            id: PaymentId::parse(get_s(i, "paymentId")?).ok_or_else(|| bad("paymentId"))?,
            clinic: ClinicId::parse(get_s(i, "clinicId")?).ok_or_else(|| bad("clinicId"))?,
            invoice: InvoiceId::parse(get_s(i, "invoiceId")?).ok_or_else(|| bad("invoiceId"))?,
            patient: UserId::parse(get_s(i, "patientId")?).ok_or_else(|| bad("patientId"))?,
            location: get_opt_s(i, "locationId").and_then(LocationId::parse),
            method: Method::parse(get_s(i, "method")?).ok_or_else(|| bad("method"))?,
            provider: get_s(i, "provider")?.to_string(),
            provider_ref: get_opt_s(i, "providerRef").map(str::to_string),
            status: PaymentStatus::parse(get_s(i, "status")?).ok_or_else(|| bad("status"))?,
            amount: get_n(i, "amount")?,
            refunded: get_opt_n(i, "refunded").unwrap_or(0),
            currency: get_s(i, "currency")?.to_string(),
            refund_of: get_opt_s(i, "refundOf").and_then(PaymentId::parse),
            version: get_n(i, "version")?,
            created_at: get_n(i, "createdAt")?,
            updated_at: get_n(i, "updatedAt")?,
            completed_at: get_opt_n(i, "completedAt"),
        })
    }

    /// Where the payment sorts in its lists: newest first, the id making the key unique.
    pub fn list_key(&self) -> String {
        format!("{}{}", shared::db::newest_first(self.created_at), self.id)
    }

    pub fn put(&self, table: &Table) -> Result<TransactWriteItem, ApiError> {
        let key = self.list_key();
        let entity = if self.refund_of.is_some() {
            "REFUND"
        } else {
            "PAYMENT"
        };
        let mut p = self
            .new_put(table, entity)
            .item("invoiceId", s(self.invoice.as_str()))
            .item("patientId", s(self.patient.as_str()))
            .item("method", s(self.method.as_str()))
            .item("provider", s(&self.provider))
            .item("status", s(self.status.as_str()))
            .item("amount", n(self.amount))
            .item("refunded", n(self.refunded))
            .item("currency", s(&self.currency))
            // The lists: the clinic's, the patient's and the invoice's (data model A34c).
            .item(keys::GSI1PK, s(keys::clinic_payments_pk(&self.clinic)))
            .item(keys::GSI1SK, s(&key))
            .item(
                keys::GSI2PK,
                s(keys::patient_payments_pk(&self.clinic, &self.patient)),
            )
            .item(keys::GSI2SK, s(&key))
            .item(
                keys::GSI3PK,
                s(keys::invoice_payments_pk(&self.clinic, &self.invoice)),
            )
            .item(keys::GSI3SK, s(&key));
        if let Some(x) = &self.location {
            p = p.item("locationId", s(x.as_str()));
        }
        if let Some(x) = &self.provider_ref {
            p = p.item("providerRef", s(x));
        }
        if let Some(x) = &self.refund_of {
            p = p.item("refundOf", s(x.as_str()));
        }
        if let Some(x) = self.completed_at {
            p = p.item("completedAt", n(x));
        }
        tx_put(p)
    }
}

pub async fn get_payment(
    table: &Table,
    clinic: &ClinicId,
    id: &PaymentId,
) -> Result<Option<PaymentRecord>, ApiError> {
    get(table, clinic, keys::payment_sk(id)).await
}

/// The lookup from a provider's reference to the payment it settles.
pub fn provider_ref_put(
    table: &Table,
    provider: &str,
    reference: &str,
    p: &PaymentRecord,
) -> Result<TransactWriteItem, ApiError> {
    tx_put(
        Put::builder()
            .table_name(&table.name)
            .item(keys::PK, s(keys::provider_ref_pk(provider, reference)))
            .item(keys::SK, s(keys::PROVIDER_REF_SK))
            .item(keys::ENTITY, s("PROVIDER_REF"))
            .item("clinicId", s(p.clinic.as_str()))
            .item("paymentId", s(p.id.as_str()))
            .condition_expression("attribute_not_exists(pk)"),
    )
}

pub async fn resolve_provider_ref(
    table: &Table,
    provider: &str,
    reference: &str,
) -> Result<Option<(ClinicId, PaymentId)>, ApiError> {
    let Some(i) = table
        .get(
            keys::provider_ref_pk(provider, reference),
            keys::PROVIDER_REF_SK,
        )
        .await?
    else {
        return Ok(None);
    };
    Ok(ClinicId::parse(get_s(&i, "clinicId")?).zip(PaymentId::parse(get_s(&i, "paymentId")?)))
}
