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
    let out = req.send().await.map_err(db::internal)?;
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

// ---------------------------------------------------------------- claims

/// The cells of a booking, as (UTC date, cell names).
pub type Cells = BTreeMap<Date, BTreeSet<String>>;

pub fn cells(start: Timestamp, minutes: i64) -> Cells {
    claim_buckets(start, minutes)
        .into_iter()
        .map(|(d, c)| (d, c.into_iter().collect()))
        .collect()
}

fn claims_key(clinic: &ClinicId, doctor: &UserId, date: Date) -> (String, String) {
    (
        keys::claims_pk(clinic, doctor, &date.to_string()),
        keys::CLAIMS_SK.to_string(),
    )
}

fn claims_ttl(date: Date) -> i64 {
    date.to_zoned(jiff::tz::TimeZone::UTC)
        .map(|z| z.timestamp().as_second())
        .unwrap_or(0)
        + CLAIMS_TTL_DAYS * 24 * 60 * 60
}

/// Moves a doctor's claims for `appointment` from `old` cells to `new` cells: cells in both are
/// kept, new cells must be free, old cells are released. One update per UTC date touched, so
/// even a 480-minute booking moved across midnight stays within a handful of actions.
/// Releasing needs no per-cell condition: the same transaction updates the appointment under its
/// version, and an appointment holds exactly its cells.
pub fn move_claims(
    table: &Table,
    clinic: &ClinicId,
    doctor: &UserId,
    appointment: &AppointmentId,
    old: &Cells,
    new: &Cells,
) -> Result<Vec<TransactWriteItem>, ApiError> {
    let dates: BTreeSet<Date> = old.keys().chain(new.keys()).copied().collect();
    let empty = BTreeSet::new();
    let mut out = Vec::new();
    for date in dates {
        let before = old.get(&date).unwrap_or(&empty);
        let after = new.get(&date).unwrap_or(&empty);
        let take: Vec<&String> = after.difference(before).collect();
        let free: Vec<&String> = before.difference(after).collect();
        if take.is_empty() && free.is_empty() {
            continue;
        }
        let (pk, sk) = claims_key(clinic, doctor, date);
        let mut u = Update::builder()
            .table_name(&table.name)
            .key(keys::PK, s(pk))
            .key(keys::SK, s(sk));
        let mut sets = Vec::new();
        let mut conditions = Vec::new();
        for (i, cell) in take.iter().enumerate() {
            u = u.expression_attribute_names(format!("#t{i}"), cell.as_str());
            sets.push(format!("#t{i} = :a"));
            conditions.push(format!("attribute_not_exists(#t{i})"));
        }
        let mut expr = String::new();
        if !take.is_empty() {
            sets.push("#ttl = :ttl".into());
            u = u
                .expression_attribute_names("#ttl", keys::TTL)
                .expression_attribute_values(":a", s(appointment.as_str()))
                .expression_attribute_values(":ttl", n(claims_ttl(date)));
            expr.push_str(&format!("SET {}", sets.join(", ")));
        }
        if !free.is_empty() {
            let removes: Vec<String> = (0..free.len()).map(|i| format!("#f{i}")).collect();
            for (i, cell) in free.iter().enumerate() {
                u = u.expression_attribute_names(format!("#f{i}"), cell.as_str());
            }
            if !expr.is_empty() {
                expr.push(' ');
            }
            expr.push_str(&format!("REMOVE {}", removes.join(", ")));
        }
        u = u.update_expression(expr);
        if !conditions.is_empty() {
            u = u.condition_expression(conditions.join(" AND "));
        }
        out.push(tx_update(u)?);
    }
    Ok(out)
}

/// Conditions that every cell of `cells` is still claimed by `appointment` (confirming checks
/// the appointment still holds its time).
pub fn claims_held(
    table: &Table,
    clinic: &ClinicId,
    doctor: &UserId,
    appointment: &AppointmentId,
    cells: &Cells,
) -> Result<Vec<TransactWriteItem>, ApiError> {
    let mut out = Vec::new();
    for (date, names) in cells {
        let (pk, sk) = claims_key(clinic, doctor, *date);
        let mut c = ConditionCheck::builder()
            .table_name(&table.name)
            .key(keys::PK, s(pk))
            .key(keys::SK, s(sk))
            .expression_attribute_values(":a", s(appointment.as_str()));
        let mut conditions = Vec::new();
        for (i, cell) in names.iter().enumerate() {
            c = c.expression_attribute_names(format!("#c{i}"), cell.as_str());
            conditions.push(format!("#c{i} = :a"));
        }
        let check = c
            .condition_expression(conditions.join(" AND "))
            .build()
            .map_err(ApiError::internal)?;
        out.push(TransactWriteItem::builder().condition_check(check).build());
    }
    Ok(out)
}

/// The busy periods of a doctor on the given UTC dates: every claimed cell.
pub async fn busy_cells(
    table: &Table,
    clinic: &ClinicId,
    doctor: &UserId,
    dates: &[Date],
) -> Result<Vec<(Timestamp, Timestamp)>, ApiError> {
    let mut busy = Vec::new();
    for date in dates {
        let (pk, sk) = claims_key(clinic, doctor, *date);
        let Some(item) = table.get(pk, sk).await? else {
            continue;
        };
        for name in item.keys() {
            if let Some(t) = crate::rules::cell_instant(*date, name) {
                busy.push((
                    t,
                    t + jiff::SignedDuration::from_mins(crate::rules::GRID_MINUTES),
                ));
            }
        }
    }
    Ok(busy)
}

// ---------------------------------------------------------------- care relation

/// Counts the non-cancelled appointments between a clinician and a patient: the "assigned"
/// relation of the policy table.
pub fn care_add(
    table: &Table,
    clinic: &ClinicId,
    clinician: &UserId,
    patient: &UserId,
    delta: i64,
    until: Option<i64>,
) -> Result<TransactWriteItem, ApiError> {
    let mut u = Update::builder()
        .table_name(&table.name)
        .key(keys::PK, s(keys::clinic_pk(clinic)))
        .key(keys::SK, s(keys::care_sk(clinician, patient)))
        .expression_attribute_values(":d", n(delta))
        .expression_attribute_values(":c", s(clinician.as_str()))
        .expression_attribute_values(":p", s(patient.as_str()));
    u = match until {
        Some(until) => u
            .update_expression("ADD active :d SET clinicianId = :c, patientId = :p, #until = :u")
            .expression_attribute_names("#until", "until")
            .expression_attribute_values(":u", n(until)),
        None => u.update_expression("ADD active :d SET clinicianId = :c, patientId = :p"),
    };
    tx_update(u)
}

/// A patient's count of open holds (their own unconfirmed bookings) moves by `delta`; taking
/// one fails once `max` are open.
pub fn holds_add(
    table: &Table,
    clinic: &ClinicId,
    patient: &UserId,
    delta: i64,
    max: Option<i64>,
) -> Result<TransactWriteItem, ApiError> {
    let mut u = Update::builder()
        .table_name(&table.name)
        .key(keys::PK, s(keys::clinic_pk(clinic)))
        .key(keys::SK, s(keys::holds_sk(patient)))
        .update_expression("ADD #open :d SET patientId = :p")
        .expression_attribute_names("#open", "open")
        .expression_attribute_values(":d", n(delta))
        .expression_attribute_values(":p", s(patient.as_str()));
    if let Some(max) = max {
        u = u
            .condition_expression("attribute_not_exists(#open) OR #open < :max")
            .expression_attribute_values(":max", n(max));
    }
    tx_update(u)
}

/// The hold item of a patient's unconfirmed booking (written with it; removed when it leaves
/// PENDING).
pub fn hold_put(
    table: &Table,
    a: &AppointmentRecord,
    until: i64,
) -> Result<TransactWriteItem, ApiError> {
    tx_put(
        Put::builder()
            .table_name(&table.name)
            .item(keys::PK, s(keys::clinic_pk(&a.clinic)))
            .item(keys::SK, s(keys::hold_sk(until, &a.id)))
            .item(keys::ENTITY, s("HOLD"))
            .item("appointmentId", s(a.id.as_str()))
            .item("heldUntil", n(until)),
    )
}

pub fn hold_delete(
    table: &Table,
    a: &AppointmentRecord,
    until: i64,
) -> Result<TransactWriteItem, ApiError> {
    tx_delete(
        Delete::builder()
            .table_name(&table.name)
            .key(keys::PK, s(keys::clinic_pk(&a.clinic)))
            .key(keys::SK, s(keys::hold_sk(until, &a.id))),
    )
}

/// The appointments whose holds ran out by `now`, oldest first, a page at a time: the sweep's
/// second work list (only holds, never the clinic's other appointments).
pub async fn holds_over(
    table: &Table,
    clinic: &ClinicId,
    now: Timestamp,
    start: Option<Item>,
) -> Result<(Vec<AppointmentId>, Option<Item>), ApiError> {
    let out = table
        .client
        .query()
        .table_name(&table.name)
        .key_condition_expression("pk = :p AND sk BETWEEN :from AND :to")
        .expression_attribute_values(":p", s(keys::clinic_pk(clinic)))
        .expression_attribute_values(":from", s(keys::HOLD_PREFIX))
        .expression_attribute_values(
            ":to",
            s(format!("{}{:012}~", keys::HOLD_PREFIX, now.as_second())),
        )
        .set_exclusive_start_key(start)
        .limit(100)
        .send()
        .await
        .map_err(db::internal)?;
    let ids = out
        .items()
        .iter()
        .filter_map(|i| get_opt_s(i, "appointmentId").and_then(AppointmentId::parse))
        .collect();
    Ok((ids, out.last_evaluated_key.filter(|k| !k.is_empty())))
}

/// Whether the clinician is in a care relation with the patient now: an appointment of theirs
/// that counts (see [`AppointmentRecord::counts_as_care`]) and a relation not past its end.
pub async fn is_assigned(
    table: &Table,
    clinic: &ClinicId,
    clinician: &UserId,
    patient: &UserId,
    now: i64,
) -> Result<bool, ApiError> {
    Ok(table
        .get(keys::clinic_pk(clinic), keys::care_sk(clinician, patient))
        .await?
        .is_some_and(|i| {
            get_opt_n(&i, "active").is_some_and(|a| a > 0)
                && get_opt_n(&i, "until").is_some_and(|u| u > now)
        }))
}

/// How long after an appointment's end its care relation lasts (results, questions, a
/// follow-up), unless another appointment extends it.
pub const CARE_DAYS: i64 = 90;

// ---------------------------------------------------------------- availability

#[derive(Debug, Clone)]
pub struct ScheduleRecord {
    pub availability: Availability,
    pub version: i64,
    pub updated_at: i64,
}

pub async fn get_schedule(
    table: &Table,
    clinic: &ClinicId,
    doctor: &UserId,
) -> Result<Option<ScheduleRecord>, ApiError> {
    let Some(item) = table
        .get(keys::clinic_pk(clinic), keys::schedule_sk(doctor))
        .await?
    else {
        return Ok(None);
    };
    let availability =
        serde_json::from_str(get_s(&item, "availability")?).map_err(ApiError::internal)?;
    Ok(Some(ScheduleRecord {
        availability,
        version: get_n(&item, "version")?,
        updated_at: get_opt_n(&item, "updatedAt").unwrap_or(0),
    }))
}

/// How long a container trusts a doctor's availability it read (the seed's L1 cache).
pub const SCHEDULE_CACHE_SECONDS: i64 = 30;

/// Doctors' availability as this container last read it, for booking and free slots: a
/// schedule changed elsewhere shows here within [`SCHEDULE_CACHE_SECONDS`]. Slot claims, not
/// the schedule, are what make double booking impossible, so a stale schedule cannot break
/// that invariant. Changing a schedule (and showing it to its editors) reads it fresh.
pub struct Schedules(shared::cache::TtlCache<(ClinicId, UserId), Option<ScheduleRecord>>);

impl Default for Schedules {
    fn default() -> Self {
        Self(shared::cache::TtlCache::new(SCHEDULE_CACHE_SECONDS, 10_000))
    }
}

impl Schedules {
    /// The doctor's schedule, from the cache when read recently.
    pub async fn get(
        &self,
        table: &Table,
        clinic: &ClinicId,
        doctor: &UserId,
        now: i64,
    ) -> Result<Option<ScheduleRecord>, ApiError> {
        let key = (clinic.clone(), doctor.clone());
        if let Some(s) = self.0.get(&key, now) {
            return Ok(s);
        }
        let s = get_schedule(table, clinic, doctor).await?;
        self.0.put(key, s.clone(), now);
        Ok(s)
    }

    /// Drops what this container read of the doctor's schedule (it just changed it).
    pub fn forget(&self, clinic: &ClinicId, doctor: &UserId) {
        self.0.forget(&(clinic.clone(), doctor.clone()));
    }
}

/// Replaces a doctor's availability if it is still at `expected` (0: none yet).
pub fn put_schedule(
    table: &Table,
    clinic: &ClinicId,
    doctor: &UserId,
    availability: &Availability,
    expected: i64,
    now: i64,
) -> Result<TransactWriteItem, ApiError> {
    let json = serde_json::to_string(availability).map_err(ApiError::internal)?;
    let mut p = Put::builder()
        .table_name(&table.name)
        .item(keys::PK, s(keys::clinic_pk(clinic)))
        .item(keys::SK, s(keys::schedule_sk(doctor)))
        .item(keys::ENTITY, s("SCHEDULE"))
        .item("doctorId", s(doctor.as_str()))
        .item("availability", s(json))
        .item("version", n(expected + 1))
        .item("updatedAt", n(now));
    p = if expected == 0 {
        p.condition_expression("attribute_not_exists(pk)")
    } else {
        p.condition_expression("version = :v")
            .expression_attribute_values(":v", n(expected))
    };
    tx_put(p)
}

// ---------------------------------------------------------------- queue

/// One checked-in appointment in a day's queue.
#[derive(Debug, Clone)]
pub struct QueueEntry {
    pub appointment: AppointmentId,
    pub doctor: UserId,
    pub patient: UserId,
    pub location: Option<LocationId>,
    pub rank: i64,
    /// The appointment's start: orders check-ins made at the same instant.
    pub starts_at: i64,
    pub expected_minutes: i64,
    pub checked_in_at: i64,
    pub started_at: Option<i64>,
}

impl QueueEntry {
    fn from_item(i: &Item) -> Result<Self, ApiError> {
        Ok(Self {
            appointment: AppointmentId::parse(get_s(i, "appointmentId")?)
                .ok_or_else(|| bad("appointmentId"))?,
            doctor: UserId::parse(get_s(i, "doctorId")?).ok_or_else(|| bad("doctorId"))?,
            patient: UserId::parse(get_s(i, "patientId")?).ok_or_else(|| bad("patientId"))?,
            location: get_opt_s(i, "locationId").and_then(LocationId::parse),
            rank: get_n(i, "rank")?,
            starts_at: get_opt_n(i, "startsAt").unwrap_or(0),
            expected_minutes: get_n(i, "expectedMinutes")?,
            checked_in_at: get_n(i, "checkedInAt")?,
            started_at: get_opt_n(i, "startedAt"),
        })
    }
}

pub fn queue_put(
    table: &Table,
    clinic: &ClinicId,
    local_date: Date,
    a: &AppointmentRecord,
    now: i64,
) -> Result<TransactWriteItem, ApiError> {
    let mut p = Put::builder()
        .table_name(&table.name)
        .item(keys::PK, s(keys::queue_pk(clinic, &local_date.to_string())))
        .item(keys::SK, s(keys::appointment_sk(&a.id)))
        .item(keys::ENTITY, s("QUEUE_ENTRY"))
        .item("appointmentId", s(a.id.as_str()))
        .item("doctorId", s(a.doctor.as_str()))
        .item("patientId", s(a.patient.as_str()))
        // Check-in order, in milliseconds: reordering rewrites ranks.
        .item("rank", n(now * 1000))
        .item("startsAt", n(a.starts_at.as_second()))
        .item("expectedMinutes", n(a.minutes))
        .item("checkedInAt", n(now))
        .item(keys::TTL, n(now + QUEUE_TTL_SECONDS))
        .condition_expression("attribute_not_exists(pk)");
    if let Some(l) = &a.location {
        p = p.item("locationId", s(l.as_str()));
    }
    tx_put(p)
}

pub fn queue_started(
    table: &Table,
    clinic: &ClinicId,
    local_date: Date,
    a: &AppointmentId,
    now: i64,
) -> Result<TransactWriteItem, ApiError> {
    tx_update(
        Update::builder()
            .table_name(&table.name)
            .key(keys::PK, s(keys::queue_pk(clinic, &local_date.to_string())))
            .key(keys::SK, s(keys::appointment_sk(a)))
            .update_expression("SET startedAt = :now")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":now", n(now)),
    )
}

pub fn queue_remove(
    table: &Table,
    clinic: &ClinicId,
    local_date: Date,
    a: &AppointmentId,
) -> Result<TransactWriteItem, ApiError> {
    tx_delete(
        Delete::builder()
            .table_name(&table.name)
            .key(keys::PK, s(keys::queue_pk(clinic, &local_date.to_string())))
            .key(keys::SK, s(keys::appointment_sk(a))),
    )
}

/// Sets an entry's rank if it is still `expected` (reordering under concurrent changes).
pub fn queue_rank(
    table: &Table,
    clinic: &ClinicId,
    local_date: Date,
    a: &AppointmentId,
    expected: i64,
    rank: i64,
) -> Result<TransactWriteItem, ApiError> {
    tx_update(
        Update::builder()
            .table_name(&table.name)
            .key(keys::PK, s(keys::queue_pk(clinic, &local_date.to_string())))
            .key(keys::SK, s(keys::appointment_sk(a)))
            .update_expression("SET #rank = :r")
            .condition_expression("#rank = :e")
            .expression_attribute_names("#rank", "rank")
            .expression_attribute_values(":r", n(rank))
            .expression_attribute_values(":e", n(expected)),
    )
}

/// A day's queue in the clinic, every doctor and location, in rank order.
pub async fn queue(
    table: &Table,
    clinic: &ClinicId,
    local_date: Date,
) -> Result<Vec<QueueEntry>, ApiError> {
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let page = table
            .client
            .query()
            .table_name(&table.name)
            .key_condition_expression("pk = :q")
            .expression_attribute_values(":q", s(keys::queue_pk(clinic, &local_date.to_string())))
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(db::internal)?;
        for i in page.items() {
            out.push(QueueEntry::from_item(i)?);
        }
        start = page.last_evaluated_key.filter(|k| !k.is_empty());
        if start.is_none() {
            break;
        }
    }
    out.sort_by(|a, b| {
        (a.rank, a.starts_at, a.appointment.as_str()).cmp(&(
            b.rank,
            b.starts_at,
            b.appointment.as_str(),
        ))
    });
    Ok(out)
}
