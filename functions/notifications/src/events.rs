//! Domain events to notification jobs, through one catalogue: which event tells whom, with
//! which template. A job's id is derived from the event, the template and the recipient, so a
//! redelivered event queues the same jobs again and their delivery records send them once.

use shared::{
    ApiError,
    contracts::{AppointmentData, NotificationJob},
    crypto::token_hash,
    ids::UserId,
    outbox::EventEnvelope,
    tenancy::ClinicRecord,
};
use std::collections::BTreeMap;

use crate::{AppState, catalogue};

/// Who an event's notification goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipient {
    /// The appointment's patient.
    Patient,
}

/// One catalogue entry: an event type and what it sends.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub event: &'static str,
    pub template: &'static str,
    pub recipients: &'static [Recipient],
}

/// Every event that notifies someone (`docs/events.md` lists the same).
pub const RULES: &[Rule] = &[
    Rule {
        event: "appointment.created",
        template: "appointment-booked",
        recipients: &[Recipient::Patient],
    },
    Rule {
        event: "appointment.confirmed",
        template: "appointment-confirmed",
        recipients: &[Recipient::Patient],
    },
    Rule {
        event: "appointment.rescheduled",
        template: "appointment-rescheduled",
        recipients: &[Recipient::Patient],
    },
    Rule {
        event: "appointment.cancelled",
        template: "appointment-cancelled",
        recipients: &[Recipient::Patient],
    },
    Rule {
        event: "appointment.no_show",
        template: "appointment-missed",
        recipients: &[Recipient::Patient],
    },
];

pub fn rule(event: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.event == event)
}

/// A moment as the clinic's patients read it: in the clinic's time zone.
pub fn local_time(rfc3339: &str, time_zone: &str) -> Option<String> {
    let at: jiff::Timestamp = rfc3339.parse().ok()?;
    let tz = jiff::tz::TimeZone::get(time_zone).ok()?;
    Some(
        at.to_zoned(tz)
            .strftime("%A %Y-%m-%d, %H:%M (%Z)")
            .to_string(),
    )
}

/// The jobs an event makes (none for an event the catalogue does not name). Params hold the
/// clinic's name, the local time and a link into the app: never the reason, never a code.
pub fn plan(
    e: &EventEnvelope,
    clinic: &ClinicRecord,
    app_url: &str,
) -> Result<Vec<NotificationJob>, ApiError> {
    let Some(rule) = rule(&e.event_type) else {
        return Ok(Vec::new());
    };
    let data: AppointmentData = e.data_as().map_err(ApiError::internal)?;
    let starts = local_time(&data.starts_at, &clinic.time_zone)
        .ok_or_else(|| ApiError::internal("appointment event with a bad time"))?;
    let mut params = BTreeMap::from([
        ("clinicName".to_string(), clinic.name.clone()),
        ("startsAt".to_string(), starts),
        (
            "appointmentUrl".to_string(),
            format!(
                "{}/clinics/{}/appointments/{}",
                app_url.trim_end_matches('/'),
                clinic.id,
                data.appointment_id
            ),
        ),
    ]);
    if let Some(previous) = data
        .extra
        .get("previousStartsAt")
        .and_then(|v| v.as_str())
        .and_then(|p| local_time(p, &clinic.time_zone))
    {
        params.insert("previousStartsAt".into(), previous);
    }
    let recipients: Vec<&UserId> = rule
        .recipients
        .iter()
        .map(|r| match r {
            Recipient::Patient => &data.patient_id,
        })
        .collect();
    Ok(recipients
        .into_iter()
        .map(|user| NotificationJob {
            job_id: token_hash(&format!("{}|{}|{user}", e.event_id, rule.template)),
            kind: e.event_type.clone(),
            channel: "email".into(),
            user_id: user.clone(),
            template: rule.template.into(),
            params: params.clone(),
            correlation_id: e.correlation_id.clone(),
            created_at: e.occurred_at.clone(),
        })
        .collect())
}

/// Queues the jobs one bus event makes, each on its template's priority queue.
pub async fn handle(state: &AppState, e: &EventEnvelope) -> Result<(), ApiError> {
    if rule(&e.event_type).is_none() {
        return Ok(());
    }
    let clinic = e
        .clinic()
        .ok_or_else(|| ApiError::internal("appointment event without a clinic"))?;
    let Some(record) = state.clinics.get(&clinic).await? else {
        tracing::warn!(event_id = %e.event_id, "event of a clinic that does not exist: ignored");
        return Ok(());
    };
    for job in plan(e, &record, &state.ext().links.app_url)? {
        let priority = catalogue::template(&job.template)
            .map(|t| t.priority)
            .unwrap_or(catalogue::Priority::Normal);
        job.send(&state.sqs, state.ext().queue_for(priority))
            .await?;
    }
    tracing::info!(event_id = %e.event_id, event = e.event_type, "notifications queued");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::ids::ClinicId;

    fn clinic() -> ClinicRecord {
        ClinicRecord {
            id: ClinicId::generate(),
            name: "Demo Clinic".into(),
            time_zone: "Europe/Berlin".into(),
            currency: "EUR".into(),
            locale: "en".into(),
            status: "ACTIVE".into(),
            self_registration: true,
            staff_mfa_required: false,
            booking: Default::default(),
            version: 1,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn event(kind: &str, clinic: &ClinicId) -> EventEnvelope {
        EventEnvelope::new(
            kind,
            Some(clinic),
            shared::outbox::Actor::default(),
            shared::outbox::Subject {
                kind: "appointment".into(),
                id: "a".into(),
            },
            serde_json::json!({
                "appointmentId": shared::ids::AppointmentId::generate(),
                "doctorId": UserId::generate(),
                "patientId": UserId::generate(),
                "locationId": null,
                "kind": "IN_PERSON",
                "status": "PENDING",
                "startsAt": "2026-12-01T18:30:00Z",
                "endsAt": "2026-12-01T19:00:00Z",
                "reason": "CANARY-REASON",
            }),
            jiff::Timestamp::now(),
        )
    }

    #[test]
    fn every_rule_has_a_template_that_renders_what_the_event_gives() {
        let c = clinic();
        for r in RULES {
            let jobs = plan(&event(r.event, &c.id), &c, "https://app.example").unwrap();
            assert_eq!(jobs.len(), r.recipients.len(), "{}", r.event);
            for job in jobs {
                let t = catalogue::template(&job.template).expect("template exists");
                let m = catalogue::render(t, &job.params).unwrap();
                assert!(
                    m.text.contains("https://app.example/clinics/"),
                    "{}",
                    r.event
                );
                assert!(!serde_json::to_string(&job).unwrap().contains("CANARY"));
            }
        }
        assert!(
            plan(&event("appointment.started", &c.id), &c, "x")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn the_same_event_makes_the_same_jobs_and_times_read_locally() {
        let c = clinic();
        let e = event("appointment.created", &c.id);
        let a = plan(&e, &c, "x").unwrap();
        let b = plan(&e, &c, "x").unwrap();
        assert_eq!(a, b);
        assert_eq!(a[0].params["startsAt"], "Tuesday 2026-12-01, 19:30 (CET)");
        let other = plan(&event("appointment.created", &c.id), &c, "x").unwrap();
        assert_ne!(a[0].job_id, other[0].job_id);
    }
}
