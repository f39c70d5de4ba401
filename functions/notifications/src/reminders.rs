//! Appointment reminders, 24 hours and 2 hours ahead, from a scheduled sweep (EventBridge
//! Scheduler does not fire in the local emulator, and one schedule per appointment would have
//! to be moved with every reschedule). Every five minutes each clinic's confirmed appointments
//! of the next 24 hours are read from the status index; a reminder that is due and not yet
//! marked is queued, then marked. A reminder names the start it is for, so a rescheduled
//! appointment is reminded of its new time, and the worker checks at send time that the
//! appointment is still confirmed at that time: a cancelled or moved one gets no stale reminder.

use serde::Serialize;
use shared::{
    ApiError,
    crypto::token_hash,
    db::{self, Item, get_opt_n, get_opt_s, n, s},
    ids::{AppointmentId, ClinicId, UserId},
    keys,
};

use crate::{AppState, catalogue, events};

/// The scheduled job's name (its work queue carries only its messages).
pub const JOB: &str = "notification-reminders";
pub const DAY_AHEAD_SECONDS: i64 = 24 * 60 * 60;
pub const SOON_SECONDS: i64 = 2 * 60 * 60;

/// Which reminder an appointment is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reminder {
    DayAhead,
    Soon,
}

impl Reminder {
    pub fn template(self) -> &'static str {
        match self {
            Reminder::DayAhead => "appointment-reminder-24h",
            Reminder::Soon => "appointment-reminder-2h",
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Reminder::DayAhead => "24h",
            Reminder::Soon => "2h",
        }
    }
}

/// The reminder due at `now` for an appointment starting at `starts_at`: the 2-hour one
/// within two hours of the start, the 24-hour one before that (never both: a booking made an
/// hour ahead gets the 2-hour one only), none once it started or more than a day ahead.
pub fn due(starts_at: i64, now: i64) -> Option<Reminder> {
    match starts_at - now {
        left if left <= 0 => None,
        left if left <= SOON_SECONDS => Some(Reminder::Soon),
        left if left <= DAY_AHEAD_SECONDS => Some(Reminder::DayAhead),
        _ => None,
    }
}

/// The params a reminder job carries besides its template's variables: what the worker checks
/// before sending.
pub const APPOINTMENT_ID: &str = "appointmentId";
pub const STARTS_AT_UNIX: &str = "startsAtUnix";

/// What one clinic's sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReminderReport {
    /// Confirmed appointments of the next 24 hours.
    pub upcoming: usize,
    /// Reminders queued now.
    pub queued: usize,
}

fn iso(t: i64) -> String {
    jiff::Timestamp::from_second(t).map_or_else(|_| String::new(), |t| t.to_string())
}

/// One upcoming confirmed appointment, as the index holds it.
struct Upcoming {
    id: AppointmentId,
    patient: UserId,
    starts_at: i64,
}

fn upcoming(item: &Item) -> Option<Upcoming> {
    Some(Upcoming {
        id: AppointmentId::parse(get_opt_s(item, "appointmentId")?)?,
        patient: UserId::parse(get_opt_s(item, "patientId")?)?,
        starts_at: get_opt_n(item, "startsAt")?,
    })
}

/// Queues the reminders due in one clinic.
pub async fn sweep_clinic(state: &AppState, clinic: &ClinicId) -> Result<ReminderReport, ApiError> {
    let now = state.clock.epoch();
    let mut report = ReminderReport::default();
    let Some(record) = state.clinics.get(clinic).await? else {
        return Ok(report);
    };
    let mut start = None;
    loop {
        let out = state
            .table
            .client
            .query()
            .table_name(&state.table.name)
            .index_name(keys::GSI5)
            .key_condition_expression("#pk = :pk AND #sk BETWEEN :from AND :to")
            .expression_attribute_names("#pk", keys::GSI5PK)
            .expression_attribute_names("#sk", keys::GSI5SK)
            .expression_attribute_values(
                ":pk",
                s(keys::status_appointments_pk(clinic, "CONFIRMED")),
            )
            .expression_attribute_values(":from", s(iso(now)))
            .expression_attribute_values(":to", s(iso(now + DAY_AHEAD_SECONDS) + "~"))
            .limit(100)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(db::fault)?;
        let page: Vec<(Upcoming, Reminder)> = out
            .items()
            .iter()
            .filter_map(upcoming)
            .filter_map(|a| due(a.starts_at, now).map(|r| (a, r)))
            .collect();
        report.upcoming += out.items().len();
        report.queued += remind(state, &record, page, now).await?;
        match out.last_evaluated_key.filter(|k| !k.is_empty()) {
            Some(k) => start = Some(k),
            None => break,
        }
    }
    tracing::info!(clinic_id = %clinic, upcoming = report.upcoming, queued = report.queued, "reminders swept");
    Ok(report)
}

/// Queues the reminders of `due` not marked yet, then marks them. A crash between the two
/// queues them again on the next sweep, which their delivery records make harmless.
async fn remind(
    state: &AppState,
    clinic: &shared::tenancy::ClinicRecord,
    due: Vec<(Upcoming, Reminder)>,
    now: i64,
) -> Result<usize, ApiError> {
    if due.is_empty() {
        return Ok(0);
    }
    let marker = |a: &Upcoming, r: Reminder| keys::reminder_sk(&a.id, r.tag(), a.starts_at);
    let keys_: Vec<Item> = due
        .iter()
        .map(|(a, r)| db::key(keys::clinic_pk(&clinic.id), marker(a, *r)))
        .collect();
    let marked: Vec<String> = state
        .table
        .batch_get(keys_)
        .await?
        .iter()
        .filter_map(|i| get_opt_s(i, keys::SK).map(str::to_string))
        .collect();
    let app_url = &state.ext().links.app_url;
    let mut queued = 0;
    for (a, r) in due.iter().filter(|(a, r)| !marked.contains(&marker(a, *r))) {
        let mut params =
            events::appointment_params(&a.id, &iso(a.starts_at), None, clinic, app_url)?;
        params.insert(APPOINTMENT_ID.into(), a.id.to_string());
        params.insert(STARTS_AT_UNIX.into(), a.starts_at.to_string());
        let template = catalogue::template(r.template())
            .ok_or_else(|| ApiError::internal("reminder template"))?;
        let job_id = token_hash(&format!("reminder|{}|{}|{}", a.id, r.tag(), a.starts_at));
        let jobs = events::jobs_for(
            &job_id,
            "appointment.reminder",
            template,
            &a.patient,
            &clinic.id,
            &params,
            (&job_id, &iso(now)),
        );
        events::queue(state, &jobs).await?;
        state
            .table
            .client
            .put_item()
            .table_name(&state.table.name)
            .item(keys::PK, s(keys::clinic_pk(&clinic.id)))
            .item(keys::SK, s(marker(a, *r)))
            .item(keys::ENTITY, s("REMINDER"))
            .item("queuedAt", n(now))
            .item(keys::TTL, n(a.starts_at + DAY_AHEAD_SECONDS))
            .send()
            .await
            .map_err(db::fault)?;
        queued += 1;
    }
    Ok(queued)
}

/// Whether a reminder job still holds: its appointment is confirmed and starts when the
/// reminder says. `None` for a job that is not a reminder.
pub async fn still_due(
    state: &AppState,
    job: &shared::contracts::NotificationJob,
) -> Result<Option<bool>, ApiError> {
    let (Some(id), Some(at), Some(clinic)) = (
        job.params.get(APPOINTMENT_ID),
        job.params.get(STARTS_AT_UNIX),
        job.clinic_id.as_ref(),
    ) else {
        return Ok(None);
    };
    let Some(id) = AppointmentId::parse(id) else {
        return Ok(Some(false));
    };
    let item = state
        .table
        .get(keys::clinic_pk(clinic), keys::appointment_sk(&id))
        .await?;
    Ok(Some(item.is_some_and(|i| {
        get_opt_s(&i, "status") == Some("CONFIRMED")
            && get_opt_n(&i, "startsAt").map(|t| t.to_string()).as_deref() == Some(at.as_str())
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_reminder_is_due_a_day_ahead_and_one_two_hours_ahead() {
        let start = 1_000_000;
        assert_eq!(due(start, start - DAY_AHEAD_SECONDS - 1), None);
        assert_eq!(
            due(start, start - DAY_AHEAD_SECONDS),
            Some(Reminder::DayAhead)
        );
        assert_eq!(
            due(start, start - SOON_SECONDS - 1),
            Some(Reminder::DayAhead)
        );
        assert_eq!(due(start, start - SOON_SECONDS), Some(Reminder::Soon));
        assert_eq!(due(start, start - 1), Some(Reminder::Soon));
        assert_eq!(due(start, start), None);
        for r in [Reminder::DayAhead, Reminder::Soon] {
            assert!(catalogue::template(r.template()).is_some());
        }
    }
}
