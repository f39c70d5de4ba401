//! Domain events to notification jobs, through one catalogue: which event tells whom, with
//! which template. A job's id is derived from the event, the template and the recipient, so a
//! redelivered event queues the same jobs again and their delivery records send them once.

use shared::{
    ApiError,
    contracts::{AppointmentData, NotificationJob},
    crypto::token_hash,
    ids::{AppointmentId, ClinicId, UserId},
    outbox::EventEnvelope,
    tenancy::ClinicRecord,
};
use std::collections::BTreeMap;

use crate::{AppState, catalogue};

/// Who an event's notification goes to: the person its data names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipient {
    /// The appointment's, subscription's, invoice's or payment's patient (`patientId`).
    Patient,
    /// The appointment's doctor (`doctorId`).
    Doctor,
    /// Every active admin of the event's clinic.
    ClinicAdmins,
}

impl Recipient {
    fn field(self) -> &'static str {
        match self {
            Recipient::Patient => "patientId",
            Recipient::Doctor => "doctorId",
            Recipient::ClinicAdmins => "clinicId",
        }
    }
}

/// At most this many admins are told of one event.
const MAX_ADMINS: i32 = 50;

/// One catalogue entry: an event type and what it sends to whom.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub event: &'static str,
    pub sends: &'static [(Recipient, &'static str)],
}

const fn rule_of(event: &'static str, sends: &'static [(Recipient, &'static str)]) -> Rule {
    Rule { event, sends }
}

use Recipient::{ClinicAdmins, Doctor, Patient};

/// Every event that notifies someone (`docs/events.md` lists the same).
pub const RULES: &[Rule] = &[
    rule_of(
        "appointment.created",
        &[(Patient, "appointment-booked"), (Doctor, "schedule-booked")],
    ),
    rule_of(
        "appointment.confirmed",
        &[(Patient, "appointment-confirmed")],
    ),
    rule_of(
        "appointment.rescheduled",
        &[(Patient, "appointment-rescheduled")],
    ),
    rule_of(
        "appointment.cancelled",
        &[
            (Patient, "appointment-cancelled"),
            (Doctor, "schedule-cancelled"),
        ],
    ),
    rule_of("appointment.no_show", &[(Patient, "appointment-missed")]),
    rule_of(
        "billing.subscription.created",
        &[(Patient, "subscription-started")],
    ),
    rule_of("billing.invoice.issued", &[(Patient, "invoice-issued")]),
    rule_of(
        "billing.payment.completed",
        &[(Patient, "payment-completed")],
    ),
    rule_of("billing.payment.failed", &[(Patient, "payment-failed")]),
    rule_of("billing.payment.refunded", &[(Patient, "payment-refunded")]),
    rule_of(
        "ehr.break_glass.opened",
        &[(ClinicAdmins, "break-glass-opened")],
    ),
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

/// A link into the app under the clinic.
fn app_link(app_url: &str, clinic: &ClinicId, path: &str) -> String {
    format!("{}/clinics/{clinic}/{path}", app_url.trim_end_matches('/'))
}

/// An appointment's template variables: the clinic's name, the local time (and the previous
/// one, for a move) and the link (never the reason, never a code).
pub fn appointment_params(
    appointment: &AppointmentId,
    starts_at: &str,
    previous_starts_at: Option<&str>,
    clinic: &ClinicRecord,
    app_url: &str,
) -> Result<BTreeMap<String, String>, ApiError> {
    let starts = local_time(starts_at, &clinic.time_zone)
        .ok_or_else(|| ApiError::internal("appointment event with a bad time"))?;
    let mut params = BTreeMap::from([
        ("clinicName".to_string(), clinic.name.clone()),
        ("startsAt".to_string(), starts),
        (
            "appointmentUrl".to_string(),
            app_link(app_url, &clinic.id, &format!("appointments/{appointment}")),
        ),
    ]);
    if let Some(previous) = previous_starts_at.and_then(|p| local_time(p, &clinic.time_zone)) {
        params.insert("previousStartsAt".into(), previous);
    }
    Ok(params)
}

/// A billing event's variables: the clinic's name and a link to what it is about (no amount).
fn billing_params(
    e: &EventEnvelope,
    clinic: &ClinicRecord,
    app_url: &str,
) -> BTreeMap<String, String> {
    let id = |f: &str| e.data.get(f).and_then(|v| v.as_str()).map(str::to_string);
    // What the event is about: a subscription's page, else the invoice (a payment's too).
    let path = match (
        e.subject.kind.as_str(),
        id("subscriptionId"),
        id("invoiceId"),
    ) {
        ("subscription", Some(sub), _) => format!("subscriptions/{sub}"),
        (_, _, Some(invoice)) => format!("invoices/{invoice}"),
        (_, Some(sub), None) => format!("subscriptions/{sub}"),
        _ => "billing".to_string(),
    };
    BTreeMap::from([
        ("clinicName".to_string(), clinic.name.clone()),
        (
            "billingUrl".to_string(),
            app_link(app_url, &clinic.id, &path),
        ),
    ])
}

/// One job per channel the template offers, all with the same id (a delivery is a job and a
/// channel): the recipient's preferences choose among them when each is sent.
pub fn jobs_for(
    job_id: &str,
    kind: &str,
    template: &catalogue::Template,
    user: &UserId,
    clinic: &ClinicId,
    params: &BTreeMap<String, String>,
    (correlation_id, created_at): (&str, &str),
) -> Vec<NotificationJob> {
    template
        .channels
        .iter()
        .map(|channel| NotificationJob {
            job_id: job_id.to_string(),
            kind: kind.to_string(),
            channel: (*channel).to_string(),
            user_id: user.clone(),
            clinic_id: Some(clinic.clone()),
            template: template.name.to_string(),
            params: params.clone(),
            correlation_id: correlation_id.to_string(),
            trace_id: shared::correlation::current_trace_id(),
            created_at: created_at.to_string(),
            slot_ms: None,
        })
        .collect()
}

/// An emergency access's variables: the clinic, when the grant ends in the clinic's time, and
/// a link to the clinic's audit trail (never the patient's name, never the reason).
fn break_glass_params(
    e: &EventEnvelope,
    clinic: &ClinicRecord,
    app_url: &str,
) -> BTreeMap<String, String> {
    let expires = e
        .data
        .get("expiresAt")
        .and_then(|v| v.as_str())
        .and_then(|at| local_time(at, &clinic.time_zone))
        .unwrap_or_default();
    BTreeMap::from([
        ("clinicName".to_string(), clinic.name.clone()),
        ("expiresAt".to_string(), expires),
        (
            "auditUrl".to_string(),
            app_link(app_url, &clinic.id, "audit?action=break-glass"),
        ),
    ])
}

/// Whether an event's notifications go to the clinic's admins (who must be looked up).
pub fn tells_admins(event: &str) -> bool {
    rule(event).is_some_and(|r| r.sends.iter().any(|(to, _)| *to == ClinicAdmins))
}

/// The jobs an event makes (none for an event the catalogue does not name); `admins` are the
/// clinic's admins, for the events that tell them.
pub fn plan(
    e: &EventEnvelope,
    clinic: &ClinicRecord,
    app_url: &str,
    admins: &[UserId],
) -> Result<Vec<NotificationJob>, ApiError> {
    let Some(rule) = rule(&e.event_type) else {
        return Ok(Vec::new());
    };
    let params = if e.event_type.starts_with("appointment.") {
        let data: AppointmentData = e.data_as().map_err(ApiError::internal)?;
        let previous = data.extra.get("previousStartsAt").and_then(|v| v.as_str());
        appointment_params(
            &data.appointment_id,
            &data.starts_at,
            previous,
            clinic,
            app_url,
        )?
    } else if e.event_type.starts_with("ehr.") {
        break_glass_params(e, clinic, app_url)
    } else {
        billing_params(e, clinic, app_url)
    };
    let mut jobs = Vec::new();
    for (recipient, name) in rule.sends {
        let template = catalogue::template(name)
            .ok_or_else(|| ApiError::internal(format!("no template {name}")))?;
        let users = match recipient {
            ClinicAdmins => admins.to_vec(),
            _ => match e
                .data
                .get(recipient.field())
                .and_then(|v| v.as_str())
                .and_then(UserId::parse)
            {
                Some(user) => vec![user],
                None => {
                    tracing::warn!(event_id = %e.event_id, field = recipient.field(), "event without its recipient");
                    continue;
                }
            },
        };
        for user in users {
            let job_id = token_hash(&format!("{}|{name}|{user}", e.event_id));
            jobs.extend(jobs_for(
                &job_id,
                &e.event_type,
                template,
                &user,
                &clinic.id,
                &params,
                (&e.correlation_id, &e.occurred_at),
            ));
        }
    }
    Ok(jobs)
}

/// Queues jobs, each on its template's priority queue, ten to a request, each recorded as
/// queued first.
pub async fn queue(state: &AppState, jobs: &[NotificationJob]) -> Result<(), ApiError> {
    for priority in catalogue::Priority::ALL {
        let of: Vec<NotificationJob> = jobs
            .iter()
            .filter(|j| {
                catalogue::template(&j.template).map_or(catalogue::Priority::Normal, |t| t.priority)
                    == priority
            })
            .cloned()
            .collect();
        if !of.is_empty() {
            // Each is in the delivery log as queued before it is on its queue.
            let now = state.clock.epoch();
            for done in shared::app::join_all(
                of.iter()
                    .map(|j| j.record_queued(&state.table, now))
                    .collect(),
            )
            .await
            {
                done?;
            }
            NotificationJob::send_all(&of, &state.sqs, state.ext().queue_for(priority)).await?;
        }
    }
    Ok(())
}

/// Queues the jobs one bus event makes.
pub async fn handle(state: &AppState, e: &EventEnvelope) -> Result<(), ApiError> {
    if e.event_type == shared::contracts::NOTIFICATION_REQUESTED {
        return requested(state, e).await;
    }
    if rule(&e.event_type).is_none() {
        return Ok(());
    }
    let clinic = e
        .clinic()
        .ok_or_else(|| ApiError::internal("notifying event without a clinic"))?;
    let Some(record) = state.clinics.get(&clinic).await? else {
        tracing::warn!(event_id = %e.event_id, "event of a clinic that does not exist: ignored");
        return Ok(());
    };
    let admins = if tells_admins(&e.event_type) {
        shared::tenancy::members_with_role(
            &state.table,
            &clinic,
            shared::policy::Role::ClinicAdmin,
            MAX_ADMINS,
        )
        .await?
    } else {
        Vec::new()
    };
    let jobs = plan(e, &record, &state.ext().links.app_url, &admins)?;
    queue(state, &jobs).await?;
    tracing::info!(event_id = %e.event_id, event = e.event_type, jobs = jobs.len(), "notifications queued");
    Ok(())
}

/// A job an API call asked for: queued again unless its delivery already went (the call's
/// own send usually got there first; a second copy would be a no-op for the worker anyway).
async fn requested(state: &AppState, e: &EventEnvelope) -> Result<(), ApiError> {
    let job: NotificationJob = e.data_as().map_err(ApiError::internal)?;
    let delivered = crate::store::get(&state.table, &job.job_id, &job.channel)
        .await?
        .is_some_and(|d| d.status != shared::contracts::QUEUED);
    if delivered {
        return Ok(());
    }
    queue(state, std::slice::from_ref(&job)).await?;
    tracing::info!(event_id = %e.event_id, job_id = %job.job_id, "requested job queued from its event");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
                "invoiceId": shared::ids::InvoiceId::generate(),
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
            let jobs = plan(
                &event(r.event, &c.id),
                &c,
                "https://app.example",
                &[UserId::generate()],
            )
            .unwrap();
            assert_eq!(jobs.len(), r.sends.len() * 4, "{}: every channel", r.event);
            for job in jobs {
                let t = catalogue::template(&job.template).expect("template exists");
                let m = catalogue::render(t, &job.params).unwrap();
                for text in [&m.text, &m.short] {
                    assert!(text.contains("https://app.example/clinics/"), "{}", r.event);
                }
                assert!(!serde_json::to_string(&job).unwrap().contains("CANARY"));
                assert_eq!(job.clinic_id.as_ref(), Some(&c.id));
            }
        }
        assert!(
            plan(&event("appointment.started", &c.id), &c, "x", &[])
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_billing_message_links_to_what_it_is_about() {
        let c = clinic();
        let (sub, inv) = (
            shared::ids::SubscriptionId::generate(),
            shared::ids::InvoiceId::generate(),
        );
        let billing = |kind: &str, subject: &str| {
            EventEnvelope::new(
                kind,
                Some(&c.id),
                shared::outbox::Actor::default(),
                shared::outbox::Subject {
                    kind: subject.into(),
                    id: "x".into(),
                },
                serde_json::json!({"patientId": UserId::generate(), "subscriptionId": sub, "invoiceId": inv, "amount": 4900}),
                jiff::Timestamp::now(),
            )
        };
        let url = |e: &EventEnvelope| {
            plan(e, &c, "https://app", &[]).unwrap()[0].params["billingUrl"].clone()
        };
        assert!(
            url(&billing("billing.subscription.created", "subscription"))
                .ends_with(&format!("subscriptions/{sub}"))
        );
        assert!(
            url(&billing("billing.invoice.issued", "invoice"))
                .ends_with(&format!("invoices/{inv}"))
        );
        assert!(
            url(&billing("billing.payment.completed", "payment"))
                .ends_with(&format!("invoices/{inv}"))
        );
        let job = &plan(
            &billing("billing.payment.completed", "payment"),
            &c,
            "x",
            &[],
        )
        .unwrap()[0];
        assert!(
            !serde_json::to_string(job).unwrap().contains("4900"),
            "no amount"
        );
    }

    #[test]
    fn the_same_event_makes_the_same_jobs_and_times_read_locally() {
        let c = clinic();
        let e = event("appointment.created", &c.id);
        let a = plan(&e, &c, "x", &[]).unwrap();
        let b = plan(&e, &c, "x", &[]).unwrap();
        assert_eq!(a, b);
        assert_eq!(a[0].params["startsAt"], "Tuesday 2026-12-01, 19:30 (CET)");
        let other = plan(&event("appointment.created", &c.id), &c, "x", &[]).unwrap();
        assert_ne!(a[0].job_id, other[0].job_id);
    }
}
