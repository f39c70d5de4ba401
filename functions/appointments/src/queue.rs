//! The day's check-in queue: who is waiting for which doctor where, their positions and
//! estimated waits, and moving a waiting patient within their doctor's queue.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp, civil::Date};
use serde::Deserialize;
use shared::{
    ApiError,
    authn::ClinicAccess,
    db::Tx,
    error::Guard,
    ids::{LocationId, UserId},
    policy::{Action, Limit, Resource, Subject},
};

use crate::{
    AppState,
    common::clinic_zone,
    input::{opt_id, parse_date},
    lifecycle,
    rules::{self, Status},
    store::{self, AppointmentRecord, QueueEntry},
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct QueueQuery {
    doctor_id: Option<String>,
    location_id: Option<String>,
    date: Option<String>,
}

/// One entry of the queue as the caller may see it; waiting entries have a position and a wait.
pub struct Line {
    pub entry: QueueEntry,
    pub position: Option<usize>,
    pub estimated_wait_minutes: Option<i64>,
}

/// The queue of the queried day (default: today in the clinic's zone), filtered by doctor and
/// location, holding only the entries the caller may read: their own position, or a doctor's
/// queue they may see.
pub async fn of_day(
    state: &AppState,
    access: &ClinicAccess,
    q: &QueueQuery,
) -> Result<(Date, Vec<Line>), ApiError> {
    let doctor = opt_id(q.doctor_id.as_deref(), "doctorId", UserId::parse)?;
    let location = opt_id(q.location_id.as_deref(), "locationId", LocationId::parse)?;
    let tz = clinic_zone(state, &access.clinic).await?;
    let now = state.clock.now();
    let day = match q.date.as_deref() {
        Some(d) => parse_date(d)
            .ok_or_else(|| ApiError::invalid_field("date", "invalid_date", "Use YYYY-MM-DD."))?,
        None => now.to_zoned(tz.clone()).date(),
    };
    let entries = store::queue(&state.table, &access.clinic, day).await?;
    // Positions and waits per doctor and location, in rank order.
    let mut groups: BTreeMap<(String, Option<String>), Vec<&QueueEntry>> = BTreeMap::new();
    for e in &entries {
        groups
            .entry((
                e.doctor.to_string(),
                e.location.as_ref().map(ToString::to_string),
            ))
            .or_default()
            .push(e);
    }
    let mut out = Vec::new();
    for group in groups.values() {
        let busy_until = group
            .iter()
            .filter_map(|e| {
                e.started_at.map(|s| {
                    Timestamp::from_second(s).unwrap_or(now)
                        + SignedDuration::from_mins(e.expected_minutes)
                })
            })
            .max()
            .unwrap_or(now);
        let waiting: Vec<&&QueueEntry> = group.iter().filter(|e| e.started_at.is_none()).collect();
        let waits = rules::estimated_waits(
            &waiting
                .iter()
                .map(|e| e.expected_minutes)
                .collect::<Vec<_>>(),
            busy_until,
            now,
        );
        let mut positions = BTreeMap::new();
        for (i, e) in waiting.iter().enumerate() {
            positions.insert(e.appointment.clone(), (i + 1, waits[i]));
        }
        for e in group {
            if doctor.as_ref().is_some_and(|d| *d != e.doctor)
                || location
                    .as_ref()
                    .is_some_and(|l| Some(l) != e.location.as_ref())
            {
                continue;
            }
            let loc = e.location.as_ref().map(ToString::to_string);
            let own_position = Subject {
                owner: Some(e.patient.as_str()),
                location: loc.as_deref(),
                facet: Some(Limit::OwnPosition),
                ..Subject::default()
            };
            let as_doctor = Subject {
                owner: Some(e.doctor.as_str()),
                location: loc.as_deref(),
                ..Subject::default()
            };
            if !access.allows(Resource::Queue, Action::Read, &own_position)
                && !access.allows(Resource::Queue, Action::Read, &as_doctor)
            {
                continue;
            }
            let (position, wait) = match positions.get(&e.appointment) {
                Some((p, w)) => (Some(*p), Some(*w)),
                None => (None, None),
            };
            out.push(Line {
                entry: (*e).clone(),
                position,
                estimated_wait_minutes: wait,
            });
        }
    }
    Ok((day, out))
}

/// Moves a waiting appointment to `position` in its doctor's queue at its location, rewriting
/// the ranks of that queue under conditions on the ranks read.
pub async fn reorder(
    state: &AppState,
    access: &ClinicAccess,
    a: &AppointmentRecord,
    position: u32,
) -> Result<(), ApiError> {
    if a.status != Status::CheckedIn {
        return Err(not_waiting());
    }
    let tz = clinic_zone(state, &access.clinic).await?;
    let day = lifecycle::local_date(a, &tz);
    let entries = store::queue(&state.table, &access.clinic, day).await?;
    let mut waiting: Vec<&QueueEntry> = entries
        .iter()
        .filter(|e| e.doctor == a.doctor && e.location == a.location && e.started_at.is_none())
        .collect();
    let Some(from) = waiting.iter().position(|e| e.appointment == a.id) else {
        return Err(not_waiting());
    };
    let me = waiting.remove(from);
    let to = (position as usize - 1).min(waiting.len());
    waiting.insert(to, me);
    let mut tx = Tx::default();
    for (i, e) in waiting.iter().enumerate() {
        let rank = (i as i64 + 1) * 1000;
        if e.rank != rank {
            tx.guard(
                store::queue_rank(
                    &state.table,
                    &access.clinic,
                    day,
                    &e.appointment,
                    e.rank,
                    rank,
                )?,
                Guard::new(
                    "queue_changed",
                    "The queue changed meanwhile; read it again.",
                ),
            );
        }
    }
    if !tx.is_empty() {
        tx.commit(&state.table).await?;
    }
    Ok(())
}

/// Only checked-in (waiting) appointments have a queue position.
fn not_waiting() -> ApiError {
    ApiError::conflict(
        "not_waiting",
        "Only patients waiting in the queue have a position.",
    )
}
