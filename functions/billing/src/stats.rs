//! Billing analytics counters, kept from the table's stream so the analytics read is a few
//! items whatever the clinic's size, and no write path pays for them.
//!
//! Each payment or subscription write arrives as a [`Change`] with the item before and after.
//! What a record contributes to the counters is a pure function of the record
//! ([`payment_counts`], [`subscription_counts`]); a change adds `after - before`. Counters are
//! kept for the whole clinic and for the record's location: one item per local day (revenue by
//! method and plan, subscriptions cancelled that day) and one of subscription totals (by status,
//! live, quota included and used). The change's counters move in one transaction with a marker
//! of the change (conditional put), so a redelivered change counts nothing twice.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};
use jiff::{Timestamp, tz::TimeZone};
use shared::{
    ApiError,
    db::{Item, Table, Tx, n, s, tx_put, tx_update},
    error::Guard,
    ids::{ClinicId, LocationId},
    keys,
    platform::Platform,
    record::Record,
    stream::{Change, ChangeSink},
};

use crate::{
    common::clinic_settings,
    rules::PaymentStatus,
    store::{self, PaymentRecord, SubscriptionRecord},
};

/// Counter item (pk, sk) → attribute → amount.
pub type Counts = BTreeMap<(String, String), BTreeMap<String, i64>>;

/// A change already counted (its marker exists): nothing to do.
const COUNTED: Guard = Guard::new("already_counted", "This change was counted before.");

/// Markers outlive any redelivery of their change (stream records live 24 hours).
const MARKER_TTL_SECONDS: i64 = 2 * 24 * 60 * 60;

fn add(
    c: &mut Counts,
    clinic: &ClinicId,
    location: Option<&LocationId>,
    sk: &str,
    attr: String,
    v: i64,
) {
    let scopes = [
        Some(keys::stats_pk(clinic, None)),
        location.map(|l| keys::stats_pk(clinic, Some(l))),
    ];
    for pk in scopes.into_iter().flatten() {
        *c.entry((pk, sk.to_string()))
            .or_default()
            .entry(attr.clone())
            .or_default() += v;
    }
}

/// The counter item of the local date of `at` in `tz`.
pub fn day_sk(at: i64, tz: &TimeZone) -> String {
    let date = Timestamp::from_second(at)
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_zoned(tz.clone())
        .date();
    format!("{}{date}", keys::STATS_DAY_PREFIX)
}

/// The attribute of a plan's revenue (`plan_none` outside subscriptions).
pub fn plan_attr(plan: Option<&str>) -> String {
    format!("plan_{}", plan.unwrap_or("none"))
}

/// What a payment contributes: once completed (a refund: once it went out), its amount on the
/// day it completed, as collected (or refunded), by method and by plan. A payment later refunded
/// still counts as collected; the refund is its own record.
pub fn payment_counts(p: &PaymentRecord, plan: Option<&str>, tz: &TimeZone) -> Counts {
    let mut c = Counts::new();
    let completed = matches!(p.status, PaymentStatus::Completed | PaymentStatus::Refunded);
    let Some(at) = p.completed_at.filter(|_| completed) else {
        return c;
    };
    let day = day_sk(at, tz);
    let loc = p.location.as_ref();
    let signed = if p.refund_of.is_some() {
        add(&mut c, &p.clinic, loc, &day, "refunded".into(), p.amount);
        -p.amount
    } else {
        add(&mut c, &p.clinic, loc, &day, "collected".into(), p.amount);
        p.amount
    };
    add(
        &mut c,
        &p.clinic,
        loc,
        &day,
        format!("method_{}", p.method.as_str()),
        signed,
    );
    add(&mut c, &p.clinic, loc, &day, plan_attr(plan), signed);
    c
}

/// What a subscription contributes: one in its status; while live, its quota (included and
/// used, or used without a limit); once cancelled, one on the day it was.
pub fn subscription_counts(x: &SubscriptionRecord, tz: &TimeZone) -> Counts {
    let mut c = Counts::new();
    let loc = x.location.as_ref();
    let totals = keys::STATS_TOTALS_SK;
    add(
        &mut c,
        &x.clinic,
        loc,
        totals,
        format!("status_{}", x.status.as_str()),
        1,
    );
    if x.status.is_live() {
        add(&mut c, &x.clinic, loc, totals, "live".into(), 1);
        match x.terms.included {
            Some(included) => {
                add(&mut c, &x.clinic, loc, totals, "included".into(), included);
                add(&mut c, &x.clinic, loc, totals, "used".into(), x.quota_used);
            }
            None => {
                add(&mut c, &x.clinic, loc, totals, "unlimited".into(), 1);
                add(
                    &mut c,
                    &x.clinic,
                    loc,
                    totals,
                    "usedUnlimited".into(),
                    x.quota_used,
                );
            }
        }
    }
    if let Some(at) = x.cancelled_at {
        add(
            &mut c,
            &x.clinic,
            loc,
            &day_sk(at, tz),
            "cancelled".into(),
            1,
        );
    }
    c
}

/// `after - before`, without the counters that do not move.
pub fn delta(before: Counts, after: Counts) -> Counts {
    let mut d = after;
    for (key, attrs) in before {
        let entry = d.entry(key).or_default();
        for (attr, v) in attrs {
            *entry.entry(attr).or_default() -= v;
        }
    }
    for attrs in d.values_mut() {
        attrs.retain(|_, v| *v != 0);
    }
    d.retain(|_, attrs| !attrs.is_empty());
    d
}

fn counter_update(
    table: &Table,
    (pk, sk): &(String, String),
    attrs: &BTreeMap<String, i64>,
) -> Result<TransactWriteItem, ApiError> {
    let mut adds = Vec::new();
    let mut u = Update::builder()
        .table_name(&table.name)
        .key(keys::PK, s(pk))
        .key(keys::SK, s(sk))
        .expression_attribute_names("#entity", keys::ENTITY)
        .expression_attribute_values(":entity", s("STATS"));
    for (i, (attr, v)) in attrs.iter().enumerate() {
        adds.push(format!("#a{i} :v{i}"));
        u = u
            .expression_attribute_names(format!("#a{i}"), attr)
            .expression_attribute_values(format!(":v{i}"), n(*v));
    }
    tx_update(u.update_expression(format!("SET #entity = :entity ADD {}", adds.join(", "))))
}

/// Moves the counters by `d` for the change `id` of `clinic`, once: a redelivered change finds
/// its marker and changes nothing.
pub async fn apply(p: &Platform, clinic: &ClinicId, id: &str, d: &Counts) -> Result<(), ApiError> {
    if d.is_empty() {
        return Ok(());
    }
    let now = p.clock.epoch();
    let mut tx = Tx::default();
    let marker: TransactWriteItem = tx_put(
        Put::builder()
            .table_name(&p.table.name)
            .item(keys::PK, s(keys::stats_applied_pk(clinic, id)))
            .item(keys::SK, s(keys::STATS_APPLIED_SK))
            .item(keys::ENTITY, s("STATS_APPLIED"))
            .item(keys::TTL, n(now + MARKER_TTL_SECONDS))
            .condition_expression("attribute_not_exists(pk)"),
    )?;
    tx.guard(marker, COUNTED);
    for (key, attrs) in d {
        tx.push(counter_update(&p.table, key, attrs)?);
    }
    match tx.commit(&p.table).await {
        Ok(()) | Err(ApiError::Guarded(COUNTED)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The counters of a range of local days (`DAY#from` to `DAY#to`) and the subscription totals,
/// of the clinic (`location` = `None`) or one location: at most 367 small items and one more,
/// read together, whatever the clinic's size.
pub async fn read(
    table: &Table,
    clinic: &ClinicId,
    location: Option<&LocationId>,
    (from, to): (jiff::civil::Date, jiff::civil::Date),
) -> Result<(Vec<(String, Item)>, Option<Item>), ApiError> {
    let pk = keys::stats_pk(clinic, location);
    let days = async {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = table
                .client
                .query()
                .table_name(&table.name)
                .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
                .expression_attribute_values(":pk", s(&pk))
                .expression_attribute_values(
                    ":from",
                    s(format!("{}{from}", keys::STATS_DAY_PREFIX)),
                )
                .expression_attribute_values(":to", s(format!("{}{to}", keys::STATS_DAY_PREFIX)))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(shared::db::fault)?;
            for item in page.items() {
                if let Ok(sk) = shared::db::get_s(item, keys::SK) {
                    let day = sk.trim_start_matches(keys::STATS_DAY_PREFIX).to_string();
                    out.push((day, item.clone()));
                }
            }
            start = page.last_evaluated_key.filter(|k| !k.is_empty());
            if start.is_none() {
                return Ok::<_, ApiError>(out);
            }
        }
    };
    let totals = table.get(pk.clone(), keys::STATS_TOTALS_SK);
    let (days, totals) = tokio::join!(days, totals);
    Ok((days?, totals?))
}

/// The plan a payment's revenue belongs to: its invoice's subscription's plan, if any.
async fn plan_of(p: &Platform, pay: &PaymentRecord) -> Result<Option<String>, ApiError> {
    let Some(inv) = store::get_invoice(&p.table, &pay.clinic, &pay.invoice).await? else {
        return Ok(None);
    };
    let Some(sub) = inv.subscription else {
        return Ok(None);
    };
    Ok(store::get_subscription(&p.table, &pay.clinic, &sub)
        .await?
        .map(|x| x.plan.to_string()))
}

fn parse<R: Record>(image: Option<&Item>) -> Result<Option<R>, ApiError> {
    image.map(R::parse).transpose()
}

/// Counts one change, if it is a payment's or a subscription's.
pub async fn count(p: &Platform, change: &Change) -> Result<(), ApiError> {
    match change.entity() {
        Some("PAYMENT" | "REFUND") => {
            let before: Option<PaymentRecord> = parse(change.old.as_ref())?;
            let after: Option<PaymentRecord> = parse(change.new.as_ref())?;
            let Some(any) = after.as_ref().or(before.as_ref()) else {
                return Ok(());
            };
            let (tz, _) = clinic_settings(p, &any.clinic).await?;
            // The plan is read only when the change moves money.
            let none = |r: &Option<PaymentRecord>| {
                r.as_ref()
                    .map(|x| payment_counts(x, None, &tz))
                    .unwrap_or_default()
            };
            if delta(none(&before), none(&after)).is_empty() {
                return Ok(());
            }
            let plan = plan_of(p, any).await?;
            let counts = |r: &Option<PaymentRecord>| {
                r.as_ref()
                    .map(|x| payment_counts(x, plan.as_deref(), &tz))
                    .unwrap_or_default()
            };
            let clinic = any.clinic.clone();
            apply(
                p,
                &clinic,
                &change.id,
                &delta(counts(&before), counts(&after)),
            )
            .await
        }
        Some("SUBSCRIPTION") => {
            let before: Option<SubscriptionRecord> = parse(change.old.as_ref())?;
            let after: Option<SubscriptionRecord> = parse(change.new.as_ref())?;
            let Some(any) = after.as_ref().or(before.as_ref()) else {
                return Ok(());
            };
            let (tz, _) = clinic_settings(p, &any.clinic).await?;
            let counts = |r: &Option<SubscriptionRecord>| {
                r.as_ref()
                    .map(|x| subscription_counts(x, &tz))
                    .unwrap_or_default()
            };
            let clinic = any.clinic.clone();
            apply(
                p,
                &clinic,
                &change.id,
                &delta(counts(&before), counts(&after)),
            )
            .await
        }
        _ => Ok(()),
    }
}

/// The stream consumer of billing's counters (`billing-stats` on AWS, a poller locally).
#[derive(Clone)]
pub struct Counters<S>(pub S);

impl<S> ChangeSink for Counters<S>
where
    S: std::ops::Deref<Target = Platform> + Send + Sync + 'static,
{
    /// Counts the changes in order; from the first that fails, the rest come again (counted
    /// ones find their markers).
    async fn handle(&self, changes: Vec<Change>) -> Vec<Change> {
        let mut rest = changes.into_iter();
        while let Some(change) = rest.next() {
            if let Err(e) = count(&self.0, &change).await {
                tracing::error!(change_id = %change.id, error = %e, "change not counted; it will be retried");
                let mut failed = vec![change];
                failed.extend(rest);
                return failed;
            }
        }
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(entries: &[(&str, &str, i64)]) -> Counts {
        let mut c = Counts::new();
        for (sk, attr, v) in entries {
            *c.entry(("P".into(), (*sk).into()))
                .or_default()
                .entry((*attr).into())
                .or_default() += v;
        }
        c
    }

    #[test]
    fn a_change_moves_only_what_differs() {
        // GIVEN a subscription that was active with 2 of 4 units used and is now cancelled
        let before = counts(&[
            ("S", "status_ACTIVE", 1),
            ("S", "live", 1),
            ("S", "used", 2),
        ]);
        let after = counts(&[("S", "status_CANCELLED", 1), ("D#1", "cancelled", 1)]);
        // THEN the counters leave ACTIVE and live, give back the used units, and count the day
        let d = delta(before, after);
        assert_eq!(
            d,
            counts(&[
                ("S", "status_ACTIVE", -1),
                ("S", "live", -1),
                ("S", "used", -2),
                ("S", "status_CANCELLED", 1),
                ("D#1", "cancelled", 1),
            ])
        );
        // AND a write that changes nothing counted moves nothing (no item is written)
        let same = counts(&[("D#1", "collected", 4900), ("D#1", "method_CASH", 4900)]);
        assert!(delta(same.clone(), same).is_empty());
    }

    #[test]
    fn days_are_local_to_the_clinic() {
        // 23:30 UTC on 30 November is already 1 December in Berlin
        let at = Timestamp::from_second(1_796_081_400)
            .map(|t| t.as_second())
            .unwrap_or(0);
        let berlin = TimeZone::get("Europe/Berlin").unwrap_or(TimeZone::UTC);
        assert_eq!(day_sk(at, &TimeZone::UTC), "DAY#2026-11-30");
        assert_eq!(day_sk(at, &berlin), "DAY#2026-12-01");
    }
}
