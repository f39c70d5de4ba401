//! What several billing operations share, kept below all of them.
//!
//! The event envelope, the clinic's settings, the parties a document names, the optimistic
//! version check and times as text.

use jiff::{Timestamp, tz::TimeZone};
use shared::{
    ApiError,
    db::CHANGED_MEANWHILE,
    ids::{ClinicId, LocationId, UserId},
    keys,
    outbox::{EventEnvelope, Subject, Who},
    platform::Platform,
    policy::Role,
};

/// A list filter that is not an id: it names nothing, so the list is empty (like any unknown
/// id).
#[derive(Debug)]
pub struct NamesNothing;

/// A list's id filter: absent, an id, or [`NamesNothing`].
pub fn id_filter<T>(
    raw: Option<&str>,
    parse: fn(&str) -> Option<T>,
) -> Result<Option<T>, NamesNothing> {
    raw.map(|r| parse(r).ok_or(NamesNothing)).transpose()
}

/// A billing event: ids, codes, amounts and times only.
pub fn event(
    kind: &str,
    clinic: &ClinicId,
    who: &Who,
    subject: (&str, &str),
    data: serde_json::Value,
    now: Timestamp,
) -> EventEnvelope {
    EventEnvelope::new(
        kind,
        Some(clinic),
        who.actor(),
        Subject {
            kind: subject.0.into(),
            id: subject.1.into(),
        },
        data,
        now,
    )
}

/// `base` with the members of `extra` added (both JSON objects).
pub fn merged(mut base: serde_json::Value, extra: serde_json::Value) -> serde_json::Value {
    if let (Some(d), serde_json::Value::Object(m)) = (base.as_object_mut(), extra) {
        d.extend(m);
    }
    base
}

/// The clinic's time zone and currency.
pub async fn clinic_settings(
    state: &Platform,
    clinic: &ClinicId,
) -> Result<(TimeZone, String), ApiError> {
    let c = state.clinics.get(clinic).await?.ok_or(ApiError::NotFound)?;
    let tz = TimeZone::get(&c.time_zone).map_err(ApiError::internal)?;
    Ok((tz, c.currency))
}

/// Checks a patient id names an active patient of the clinic (422 otherwise).
pub async fn known_patient(
    state: &Platform,
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
    state: &Platform,
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

/// 409 `version_conflict` when the client names a version other than the one read; naming
/// none skips the check.
pub fn expect_version(current: i64, given: Option<i64>) -> Result<(), ApiError> {
    if given.is_some_and(|v| v != current) {
        return Err(ApiError::from(CHANGED_MEANWHILE));
    }
    Ok(())
}

/// RFC 3339 in UTC with seconds.
pub fn iso(t: i64) -> String {
    shared::clock::rfc3339(t)
}
