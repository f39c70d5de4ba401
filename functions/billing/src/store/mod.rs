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

mod invoices;
mod payments;
mod plans;
mod subscriptions;

pub use invoices::*;
pub use payments::*;
pub use plans::*;
pub use subscriptions::*;

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
            .map_err(shared::db::fault)?;
        out.extend(resp.items.unwrap_or_default());
        match resp.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => return Ok(out),
        }
    }
}

pub use shared::record::{Record, get};

/// A list's index partition, narrowed to a patient and a status when given.
fn list_query(
    (index, pk_attr, pk): (&'static str, &'static str, String),
    patient: Option<&UserId>,
    status: Option<&'static str>,
) -> shared::db::IndexQuery<'static> {
    let mut equal = Vec::new();
    if let Some(st) = status {
        equal.push(("status", s(st)));
    }
    if let Some(p) = patient {
        equal.push(("patientId", s(p.as_str())));
    }
    shared::db::IndexQuery {
        index,
        pk_attr,
        pk,
        equal,
    }
}

/// Sets or removes an item's entry in the billing job's work list (gsi5) to match `key`, the
/// record's [`due_key`](SubscriptionRecord::due_key) after the update.
pub fn index_due(u: &mut shared::db::VersionedUpdate, key: Option<(String, String)>) {
    match key {
        Some((pk, sk)) => u.set(keys::GSI5PK, s(pk)).set(keys::GSI5SK, s(sk)),
        None => u.remove(keys::GSI5PK).remove(keys::GSI5SK),
    };
}

/// One page of a work list (`pk` in gsi5) due at or before `until`, oldest first, and the key
/// to go on from. It holds only what the job must act on, so it does not grow with history.
pub async fn due_page<R: Record>(
    table: &Table,
    pk: String,
    until: i64,
    start: Option<Item>,
) -> Result<(Vec<R>, Option<Item>), ApiError> {
    let out = table
        .client
        .query()
        .table_name(&table.name)
        .index_name(keys::GSI5)
        .key_condition_expression("gsi5pk = :pk AND gsi5sk <= :until")
        .expression_attribute_values(":pk", s(pk))
        .expression_attribute_values(":until", s(keys::due_sk(until, "~")))
        .limit(100)
        .set_exclusive_start_key(start)
        .send()
        .await
        .map_err(shared::db::fault)?;
    let records = out.items().iter().map(R::parse).collect::<Result<_, _>>()?;
    Ok((records, out.last_evaluated_key.filter(|k| !k.is_empty())))
}

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
