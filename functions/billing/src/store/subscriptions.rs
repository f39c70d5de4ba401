//! Subscriptions: the record and its lists, the one-live-per-plan guard, the quota counter
//! and coverage links.

use super::*;

shared::record!(SubscriptionRecord, keys::subscription_sk, "subscriptionId");

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
        if let Some((pk, sk)) = self.due_key() {
            p = p.item(keys::GSI5PK, s(pk)).item(keys::GSI5SK, s(sk));
        }
        tx_put(p)
    }

    /// Its entry in the billing job's work list: while trialing, active or past due, at its
    /// period's end (when the job moves it on).
    pub fn due_key(&self) -> Option<(String, String)> {
        matches!(
            self.status,
            SubStatus::Trialing | SubStatus::Active | SubStatus::PastDue
        )
        .then(|| {
            (
                keys::due_subscriptions_pk(&self.clinic),
                keys::due_sk(self.period_end, self.id.as_str()),
            )
        })
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

/// Which subscription list a page is cut from.
#[derive(Debug, Clone, Copy)]
pub enum SubscriptionList<'a> {
    Clinic,
    Patient(&'a UserId),
    Plan(&'a PlanId),
}

impl SubscriptionList<'_> {
    /// The index query of this list in `clinic`, narrowed to a patient and a status.
    pub fn query(
        self,
        clinic: &ClinicId,
        patient: Option<&UserId>,
        status: Option<&'static str>,
    ) -> shared::db::IndexQuery<'static> {
        let partition = match self {
            Self::Clinic => (
                keys::GSI1,
                keys::GSI1PK,
                keys::clinic_subscriptions_pk(clinic),
            ),
            Self::Patient(p) => (
                keys::GSI2,
                keys::GSI2PK,
                keys::patient_subscriptions_pk(clinic, p),
            ),
            Self::Plan(x) => (
                keys::GSI3,
                keys::GSI3PK,
                keys::plan_subscriptions_pk(clinic, x),
            ),
        };
        list_query(partition, patient, status)
    }
}
