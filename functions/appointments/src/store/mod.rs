//! DynamoDB adapter for scheduling: availability documents, appointments (with their three index
//! entries), slot claims, the clinician-patient care relation and the check-in queue.
//!
//! Slot claims are what make double booking impossible: a doctor has one claims item per UTC
//! date, with one attribute per claimed 5-minute cell holding the appointment id. Booking,
//! rescheduling and follow-ups set their cells under `attribute_not_exists` conditions in the same
//! transaction as the appointment itself; two overlapping bookings share a cell, so at most one
//! of them can commit.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_dynamodb::types::{ConditionCheck, Delete, Put, TransactWriteItem, Update};
use jiff::{Timestamp, civil::Date};
use shared::{
    ApiError,
    db::{self, Item, Table, get_n, get_opt_n, get_opt_s, get_s, n, s},
    ids::{AppointmentId, ClinicId, LocationId, UserId},
    keys,
};

use crate::rules::{Availability, Kind, Status, claim_buckets};

pub use shared::db::{tx_delete, tx_put, tx_update};
pub use shared::record::Record;

/// Encrypted appointment fields (PHI). Never logged, never in events.
pub const PHI_FIELDS: [&str; 4] = ["reason", "symptoms", "notes", "cancellationReason"];

/// Claims items outlive their date by a week, then DynamoDB removes them.
const CLAIMS_TTL_DAYS: i64 = 8;
/// Queue items outlive their day by two days.
const QUEUE_TTL_SECONDS: i64 = 3 * 24 * 60 * 60;

/// A stored appointment. PHI fields are held as ciphertexts, decrypted only for a view.
#[derive(Debug, Clone)]
pub struct AppointmentRecord {
    pub id: AppointmentId,
    pub clinic: ClinicId,
    pub doctor: UserId,
    pub patient: UserId,
    pub location: Option<LocationId>,
    pub kind: Kind,
    pub status: Status,
    pub starts_at: Timestamp,
    pub minutes: i64,
    pub reschedules: u32,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub created_by: Option<String>,
    pub follow_up_of: Option<AppointmentId>,
    pub follow_up_id: Option<AppointmentId>,
    pub checked_in_at: Option<i64>,
    pub started_at: Option<i64>,
    pub completed_at: Option<i64>,
    pub cancelled_at: Option<i64>,
    /// A patient's own unconfirmed booking holds its time until then (epoch seconds); it
    /// counts against the patient's open holds while PENDING.
    pub held_until: Option<i64>,
    /// Ciphertexts by field name (see [`PHI_FIELDS`]).
    pub sealed: BTreeMap<&'static str, String>,
    /// How the appointment is paid for, when it was booked with a subscription.
    pub billing: Option<Billing>,
}

/// A booking's coverage by a subscription: covered (one unit of quota taken), or paid per
/// visit with the invoice issued for it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Billing {
    pub subscription_id: String,
    pub covered: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub amount_due: i64,
    pub currency: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invoice_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invoice_number: Option<String>,
}

pub fn kind_str(k: Kind) -> &'static str {
    match k {
        Kind::InPerson => "IN_PERSON",
        Kind::VideoCall => "VIDEO_CALL",
        Kind::HomeVisit => "HOME_VISIT",
    }
}

pub fn parse_kind(s: &str) -> Option<Kind> {
    [Kind::InPerson, Kind::VideoCall, Kind::HomeVisit]
        .into_iter()
        .find(|k| kind_str(*k) == s)
}

/// RFC 3339 in UTC with seconds: sorts like time, used in index sort keys and views.
pub fn iso(t: Timestamp) -> String {
    shared::clock::rfc3339(t.as_second())
}

fn bad(field: &'static str) -> ApiError {
    ApiError::internal(db::AttributeError(field))
}

impl AppointmentRecord {
    /// Whether this appointment makes its doctor the patient's clinician: one the doctor booked
    /// themselves counts only once the patient has checked in, so no clinician can make
    /// themselves assigned to a patient with a booking of their own.
    pub fn counts_as_care(&self) -> bool {
        self.created_by.as_deref() != Some(self.doctor.as_str()) || self.checked_in_at.is_some()
    }

    /// The write that moves this appointment's care relation by `delta` (and sets its end).
    pub fn care_change(
        &self,
        table: &Table,
        delta: i64,
        until: Option<i64>,
    ) -> Result<TransactWriteItem, ApiError> {
        care_add(
            table,
            &self.clinic,
            &self.doctor,
            &self.patient,
            delta,
            until,
        )
    }

    /// The end of the care relation this appointment grants.
    pub fn care_until(&self) -> i64 {
        self.ends_at().as_second() + CARE_DAYS * 24 * 60 * 60
    }

    pub fn ends_at(&self) -> Timestamp {
        self.starts_at + jiff::SignedDuration::from_mins(self.minutes)
    }

    pub fn from_item(i: &Item) -> Result<Self, ApiError> {
        let id = |name: &'static str| -> Result<Option<AppointmentId>, ApiError> {
            get_opt_s(i, name)
                .map(|v| AppointmentId::parse(v).ok_or_else(|| bad(name)))
                .transpose()
        };
        let sealed = PHI_FIELDS
            .iter()
            .filter_map(|f| get_opt_s(i, f).map(|v| (*f, v.to_string())))
            .collect();
        Ok(Self {
            id: AppointmentId::parse(get_s(i, "appointmentId")?)
                .ok_or_else(|| bad("appointmentId"))?,
            clinic: ClinicId::parse(get_s(i, "clinicId")?).ok_or_else(|| bad("clinicId"))?,
            doctor: UserId::parse(get_s(i, "doctorId")?).ok_or_else(|| bad("doctorId"))?,
            patient: UserId::parse(get_s(i, "patientId")?).ok_or_else(|| bad("patientId"))?,
            location: get_opt_s(i, "locationId")
                .map(|v| LocationId::parse(v).ok_or_else(|| bad("locationId")))
                .transpose()?,
            kind: parse_kind(get_s(i, "kind")?).ok_or_else(|| bad("kind"))?,
            status: Status::parse(get_s(i, "status")?).ok_or_else(|| bad("status"))?,
            starts_at: Timestamp::from_second(get_n(i, "startsAt")?)
                .map_err(|_| bad("startsAt"))?,
            minutes: get_n(i, "durationMinutes")?,
            reschedules: u32::try_from(get_opt_n(i, "reschedules").unwrap_or(0))
                .map_err(|_| bad("reschedules"))?,
            version: get_n(i, "version")?,
            created_at: get_n(i, "createdAt")?,
            updated_at: get_opt_n(i, "updatedAt").unwrap_or(0),
            created_by: get_opt_s(i, "createdBy").map(str::to_string),
            held_until: get_opt_n(i, "heldUntil"),
            follow_up_of: id("followUpOf")?,
            follow_up_id: id("followUpId")?,
            checked_in_at: get_opt_n(i, "checkedInAt"),
            started_at: get_opt_n(i, "startedAt"),
            completed_at: get_opt_n(i, "completedAt"),
            cancelled_at: get_opt_n(i, "cancelledAt"),
            sealed,
            billing: get_opt_s(i, "billing")
                .map(|v| serde_json::from_str(v).map_err(|_| bad("billing")))
                .transpose()?,
        })
    }

    /// Writes a new appointment with its three index entries; fails if the id exists.
    pub fn put(&self, table: &Table) -> Result<TransactWriteItem, ApiError> {
        let sk = keys::appointment_time_sk(&iso(self.starts_at), &self.id);
        let mut p = self
            .new_put(table, "APPOINTMENT")
            .item(
                keys::GSI1PK,
                s(keys::doctor_appointments_pk(&self.clinic, &self.doctor)),
            )
            .item(keys::GSI1SK, s(&sk))
            .item(
                keys::GSI2PK,
                s(keys::patient_appointments_pk(&self.clinic, &self.patient)),
            )
            .item(keys::GSI2SK, s(&sk))
            .item(keys::GSI3PK, s(keys::clinic_appointments_pk(&self.clinic)))
            .item(keys::GSI3SK, s(&sk))
            .item(
                keys::GSI5PK,
                s(keys::status_appointments_pk(
                    &self.clinic,
                    self.status.as_str(),
                )),
            )
            .item(keys::GSI5SK, s(&sk))
            .item("doctorId", s(self.doctor.as_str()))
            .item("patientId", s(self.patient.as_str()))
            .item("kind", s(kind_str(self.kind)))
            .item("status", s(self.status.as_str()))
            .item("startsAt", n(self.starts_at.as_second()))
            .item("durationMinutes", n(self.minutes))
            .item("reschedules", n(i64::from(self.reschedules)));
        if let Some(l) = &self.location {
            p = p
                .item("locationId", s(l.as_str()))
                .item(
                    keys::GSI4PK,
                    s(keys::location_appointments_pk(&self.clinic, l)),
                )
                .item(keys::GSI4SK, s(&sk));
        }
        if let Some(c) = &self.created_by {
            p = p.item("createdBy", s(c));
        }
        if let Some(h) = self.held_until {
            p = p.item("heldUntil", n(h));
        }
        if let Some(f) = &self.follow_up_of {
            p = p.item("followUpOf", s(f.as_str()));
        }
        for (field, blob) in &self.sealed {
            p = p.item(*field, s(blob));
        }
        if let Some(b) = &self.billing {
            p = p.item(
                "billing",
                s(serde_json::to_string(b).map_err(ApiError::internal)?),
            );
        }
        tx_put(p)
    }
}

/// What a list of appointments is narrowed to. The narrowest given (patient, then doctor,
/// then location, then status) picks the index partition read; the rest are filters on it.
#[derive(Debug, Default, Clone, Copy)]
pub struct Narrowing<'a> {
    pub patient: Option<&'a UserId>,
    pub doctor: Option<&'a UserId>,
    pub location: Option<&'a LocationId>,
    pub status: Option<Status>,
}

/// One page (at most `limit` items read) of the clinic's appointments starting in
/// `[lo, hi]` (sort-key bounds), narrowed as asked, and the key to continue after it.
pub async fn appointment_page(
    table: &Table,
    clinic: &ClinicId,
    by: Narrowing<'_>,
    (lo, hi): (String, String),
    limit: i32,
    start: Option<Item>,
) -> Result<(Vec<AppointmentRecord>, Option<Item>), ApiError> {
    let (index, pk_name, sk_name, pk) = match by {
        Narrowing {
            patient: Some(p), ..
        } => (
            keys::GSI2,
            keys::GSI2PK,
            keys::GSI2SK,
            keys::patient_appointments_pk(clinic, p),
        ),
        Narrowing {
            doctor: Some(d), ..
        } => (
            keys::GSI1,
            keys::GSI1PK,
            keys::GSI1SK,
            keys::doctor_appointments_pk(clinic, d),
        ),
        Narrowing {
            location: Some(l), ..
        } => (
            keys::GSI4,
            keys::GSI4PK,
            keys::GSI4SK,
            keys::location_appointments_pk(clinic, l),
        ),
        Narrowing {
            status: Some(st), ..
        } => (
            keys::GSI5,
            keys::GSI5PK,
            keys::GSI5SK,
            keys::status_appointments_pk(clinic, st.as_str()),
        ),
        _ => (
            keys::GSI3,
            keys::GSI3PK,
            keys::GSI3SK,
            keys::clinic_appointments_pk(clinic),
        ),
    };
    let mut req = table
        .client
        .query()
        .table_name(&table.name)
        .index_name(index)
        .key_condition_expression("#pk = :pk AND #sk BETWEEN :lo AND :hi")
        .expression_attribute_names("#pk", pk_name)
        .expression_attribute_names("#sk", sk_name)
        .expression_attribute_values(":pk", s(pk))
        .expression_attribute_values(":lo", s(lo))
        .expression_attribute_values(":hi", s(hi))
        .limit(limit)
        .set_exclusive_start_key(start);
    // Whatever the partition does not imply is filtered within it.
    let mut filters = Vec::new();
    if let (Some(d), Some(_)) = (by.doctor, by.patient) {
        filters.push("doctorId = :d");
        req = req.expression_attribute_values(":d", s(d.as_str()));
    }
    if let Some(l) = by.location.filter(|_| index != keys::GSI4) {
        filters.push("locationId = :l");
        req = req.expression_attribute_values(":l", s(l.as_str()));
    }
    if let Some(st) = by.status.filter(|_| index != keys::GSI5) {
        filters.push("#status = :s");
        req = req
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":s", s(st.as_str()));
    }
    if !filters.is_empty() {
        req = req.filter_expression(filters.join(" AND "));
    }
    let out = req.send().await.map_err(db::fault)?;
    let items = out
        .items()
        .iter()
        .map(AppointmentRecord::from_item)
        .collect::<Result<_, _>>()?;
    Ok((items, out.last_evaluated_key.filter(|k| !k.is_empty())))
}

/// The clinic's appointments in `status` that started at or before `until`, oldest first:
/// the sweep's work list, which does not grow with the clinic's history (an appointment
/// leaves it when its status changes).
pub async fn started_in_status(
    table: &Table,
    clinic: &ClinicId,
    status: Status,
    until: Timestamp,
    start: Option<Item>,
) -> Result<(Vec<AppointmentRecord>, Option<Item>), ApiError> {
    appointment_page(
        table,
        clinic,
        Narrowing {
            status: Some(status),
            ..Narrowing::default()
        },
        ("0".into(), iso(until) + "~"),
        100,
        start,
    )
    .await
}

// Reads by key, the new-item put and versioned updates (which fail if anyone changed the
// appointment since it was read) come from the one record abstraction.
shared::record!(AppointmentRecord, keys::appointment_sk, "appointmentId");

pub async fn get_appointment(
    table: &Table,
    clinic: &ClinicId,
    id: &AppointmentId,
) -> Result<Option<AppointmentRecord>, ApiError> {
    shared::record::get(table, clinic, keys::appointment_sk(id)).await
}

mod care;
mod claims;
mod queue;
mod schedules;

pub use care::*;
pub use claims::*;
pub use queue::*;
pub use schedules::*;
