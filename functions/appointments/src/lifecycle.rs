//! Writing appointments: a new booking, and every status change, each as one transaction that
//! carries the appointment (under its version), its slot claims, the care relation, the queue
//! entry, coverage and the outbox event together. Booking, the actions, the paid-invoice
//! consumer and the sweep all write through here.

use jiff::{Timestamp, civil::Date, tz::TimeZone};
use shared::record::Record;
use shared::{
    ApiError,
    crypto::Phi,
    db::{CHANGED_MEANWHILE, Tx, VersionedUpdate, n, s},
    ids::{AppointmentId, LocationId, SubscriptionId},
    keys,
    outbox::Who,
};

use crate::{
    AppState,
    common::{CLAIMS_LOST, SLOT_TAKEN, appointment_event, seal},
    rules::{self, Kind, RescheduleRefusal, Status, Transition},
    store::{self, AppointmentRecord, Cells},
};

/// What an action brings besides itself.
#[derive(Clone)]
pub enum Input {
    None,
    Cancel {
        reason: Phi<String>,
    },
    Reschedule {
        starts_at: Timestamp,
        minutes: i64,
        kind: Kind,
        location: Option<LocationId>,
    },
    Complete {
        notes: Option<Phi<String>>,
        follow_up: Option<(Timestamp, i64)>,
    },
}

pub fn illegal(from: Status, action: Transition) -> ApiError {
    ApiError::IllegalTransition {
        current: from.as_str(),
        action: action.as_str(),
        requested: action.target().map(Status::as_str),
    }
}

/// The local calendar date of an appointment (its queue day).
pub fn local_date(a: &AppointmentRecord, tz: &TimeZone) -> Date {
    a.starts_at.to_zoned(tz.clone()).date()
}

fn no_cells() -> Cells {
    Cells::new()
}

/// Adds a new appointment to `tx`: the record, its claims (each refused if taken), the care
/// relation and the `appointment.created` event. Coverage by a subscription, if any, is added
/// to the same transaction by the caller (see `billing::coverage`).
pub async fn add_booking(
    state: &AppState,
    tx: &mut Tx,
    a: &AppointmentRecord,
    who: &Who,
    now: Timestamp,
) -> Result<(), ApiError> {
    let table = &state.table;
    tx.push(a.put(table)?);
    for item in store::move_claims(
        table,
        &a.clinic,
        &a.doctor,
        &a.id,
        &no_cells(),
        &store::cells(a.starts_at, a.minutes),
    )? {
        tx.guard(item, SLOT_TAKEN);
    }
    if a.counts_as_care() {
        tx.push(a.care_change(table, 1, Some(a.care_until()))?);
    }
    let extra = match &a.follow_up_of {
        Some(f) => serde_json::json!({ "followUpOf": f }),
        None => serde_json::json!({}),
    };
    tx.push(
        appointment_event("appointment.created", a, who, now, extra)
            .outbox_write(&table.name, now.as_second())?,
    );
    Ok(())
}

/// Adds the subscription's coverage of `a` to the booking transaction.
pub async fn cover(
    state: &AppState,
    tx: &mut Tx,
    a: &AppointmentRecord,
    subscription: &SubscriptionId,
    tz: &TimeZone,
    who: &Who,
    now: Timestamp,
) -> Result<store::Billing, ApiError> {
    use billing::coverage::{Booking, Outcome};
    let booking = Booking {
        clinic: &a.clinic,
        subscription,
        patient: &a.patient,
        appointment: &a.id,
        location: a.location.as_ref(),
        kind: store::kind_str(a.kind),
        tz,
    };
    let outcome = billing::coverage::for_booking(state, tx, &booking, who, now).await?;
    Ok(match outcome {
        Outcome::Covered { currency, .. } => store::Billing {
            subscription_id: subscription.to_string(),
            covered: true,
            reason: None,
            amount_due: 0,
            currency,
            invoice_id: None,
            invoice_number: None,
        },
        Outcome::Uncovered {
            reason,
            amount,
            currency,
            invoice,
        } => store::Billing {
            subscription_id: subscription.to_string(),
            covered: false,
            reason: Some(reason.as_str().to_string()),
            amount_due: amount,
            currency,
            invoice_id: invoice.as_ref().map(|(id, _)| id.to_string()),
            invoice_number: invoice.map(|(_, n)| n),
        },
    })
}

/// Applies `action` to `a` (already authorised and validated) and returns the appointment as
/// it now is, with the follow-up it created, if any.
pub async fn apply(
    state: &AppState,
    who: &Who,
    a: &AppointmentRecord,
    action: Transition,
    input: Input,
    tz: &TimeZone,
) -> Result<(AppointmentRecord, Option<AppointmentRecord>), ApiError> {
    let table = &state.table;
    let now = state.clock.now();
    let now_s = now.as_second();
    let to = rules::next(a.status, action).map_err(|e| illegal(e.from, e.action))?;
    if !rules::due(action, a.starts_at, a.held_until, now) {
        return Err(ApiError::conflict(
            "not_due",
            "This can only happen once the appointment's start time has passed.",
        ));
    }
    let mut b = a.clone();
    b.status = to;
    b.version += 1;
    b.updated_at = now_s;
    let mut u = VersionedUpdate::new();
    u.set("status", s(to.as_str())).set(
        keys::GSI5PK,
        s(keys::status_appointments_pk(&a.clinic, to.as_str())),
    );
    let mut tx = Tx::default();
    let mut extra = serde_json::json!({});
    let mut follow_up = None;
    let day = local_date(a, tz);
    let held = store::cells(a.starts_at, a.minutes);
    match (action, input) {
        (Transition::Confirm, _) => {
            for item in store::claims_held(table, &a.clinic, &a.doctor, &a.id, &held)? {
                tx.guard(item, CLAIMS_LOST);
            }
        }
        (
            Transition::Reschedule,
            Input::Reschedule {
                starts_at,
                minutes,
                kind,
                location,
            },
        ) => {
            rules::can_reschedule(a.status, a.reschedules, a.starts_at, now).map_err(
                |r| match r {
                    RescheduleRefusal::Limit => ApiError::conflict(
                        "reschedule_limit",
                        "This appointment has been rescheduled the maximum number of times.",
                    ),
                    RescheduleRefusal::Started => ApiError::conflict(
                        "already_started",
                        "An appointment cannot be moved once its start time has passed.",
                    ),
                    RescheduleRefusal::Illegal(e) => illegal(e.from, e.action),
                },
            )?;
            // Checked again here, under the version the transaction guards.
            billed_terms_kept(a, kind, minutes)?;
            let new = store::cells(starts_at, minutes);
            for item in store::move_claims(table, &a.clinic, &a.doctor, &a.id, &held, &new)? {
                tx.guard(item, SLOT_TAKEN);
            }
            b.starts_at = starts_at;
            b.minutes = minutes;
            b.kind = kind;
            b.location = location;
            b.reschedules += 1;
            if a.counts_as_care() {
                // The relation lasts from the new time on.
                tx.push(a.care_change(table, 0, Some(b.care_until()))?);
            }
            let sk = keys::appointment_time_sk(&store::iso(starts_at), &a.id);
            u.set("startsAt", n(starts_at.as_second()))
                .set("durationMinutes", n(minutes))
                .set("kind", s(store::kind_str(kind)))
                .set("reschedules", n(i64::from(b.reschedules)))
                .set(keys::GSI1SK, s(&sk))
                .set(keys::GSI2SK, s(&sk))
                .set(keys::GSI3SK, s(&sk))
                .set(keys::GSI5SK, s(&sk));
            match &b.location {
                Some(l) => u
                    .set("locationId", s(l.as_str()))
                    .set(
                        keys::GSI4PK,
                        s(keys::location_appointments_pk(&a.clinic, l)),
                    )
                    .set(keys::GSI4SK, s(&sk)),
                None => u
                    .remove("locationId")
                    .remove(keys::GSI4PK)
                    .remove(keys::GSI4SK),
            };
            extra = serde_json::json!({
                "previousStartsAt": store::iso(a.starts_at),
                "previousEndsAt": store::iso(a.ends_at()),
                "reschedules": b.reschedules,
            });
        }
        (Transition::Cancel, Input::Cancel { reason }) => {
            for item in store::move_claims(table, &a.clinic, &a.doctor, &a.id, &held, &no_cells())?
            {
                tx.push(item);
            }
            if a.counts_as_care() {
                tx.push(a.care_change(table, -1, None)?);
            }
            if a.status == Status::CheckedIn {
                tx.push(store::queue_remove(table, &a.clinic, day, &a.id)?);
            }
            let sealed = seal(state, &a.clinic, &a.id, "cancellationReason", &reason).await?;
            u.set("cancellationReason", s(&sealed))
                .set("cancelledAt", n(now_s));
            b.sealed.insert("cancellationReason", sealed);
            b.cancelled_at = Some(now_s);
        }
        (Transition::CheckIn, _) => {
            if now.to_zoned(tz.clone()).date() != day {
                return Err(ApiError::conflict(
                    "not_today",
                    "Patients check in on the day of their appointment.",
                ));
            }
            tx.push(store::queue_put(table, &a.clinic, day, a, now_s)?);
            u.set("checkedInAt", n(now_s));
            b.checked_in_at = Some(now_s);
            if !a.counts_as_care() {
                // The patient is here: the doctor's own booking is a real visit now.
                tx.push(a.care_change(table, 1, Some(b.care_until()))?);
            }
        }
        (Transition::Start, _) => {
            tx.push(store::queue_started(table, &a.clinic, day, &a.id, now_s)?);
            u.set("startedAt", n(now_s));
            b.started_at = Some(now_s);
        }
        (
            Transition::Complete,
            Input::Complete {
                notes,
                follow_up: f,
            },
        ) => {
            tx.push(store::queue_remove(table, &a.clinic, day, &a.id)?);
            u.set("completedAt", n(now_s));
            b.completed_at = Some(now_s);
            if let Some(notes) = notes {
                // The treating clinician's note joins the appointment's clinical notes; what
                // the patient wrote when booking is left as it is.
                let author = who
                    .user
                    .as_ref()
                    .ok_or_else(|| ApiError::internal("a note without an author"))?;
                let (note_id, note) =
                    crate::clinical_notes::put(state, a, author, &notes, now_s).await?;
                tx.push(note);
                // The note's audit record commits with it.
                let role = shared::policy::Role::parse(who.role)
                    .ok_or_else(|| ApiError::internal("a note by no role"))?;
                tx.push(
                    state
                        .audit
                        .put(&shared::audit::AuditEntry {
                            clinic: a.clinic.clone(),
                            actor: author.clone(),
                            role: Some(role),
                            patient: Some(a.patient.clone()),
                            action: shared::audit::AuditAction::Create,
                            resource: "appointment.clinical-note".into(),
                            ids: vec![note_id],
                            purpose: shared::audit::purpose_of(role, false, false),
                            reason: None,
                            outcome: shared::audit::Outcome::Success,
                        })
                        .await?,
                );
            }
            if let Some((starts_at, minutes)) = f {
                let next = AppointmentRecord {
                    id: AppointmentId::generate(),
                    status: Status::Pending,
                    starts_at,
                    minutes,
                    reschedules: 0,
                    version: 1,
                    created_at: now_s,
                    updated_at: now_s,
                    created_by: who.user.as_ref().map(ToString::to_string),
                    follow_up_of: Some(a.id.clone()),
                    follow_up_id: None,
                    checked_in_at: None,
                    started_at: None,
                    completed_at: None,
                    cancelled_at: None,
                    held_until: None,
                    sealed: Default::default(),
                    billing: None,
                    ..a.clone()
                };
                // A follow-up of a visit booked with a subscription is booked with it too:
                // covered if the period has a unit left, otherwise PENDING with its invoice,
                // so completing never fails for want of quota.
                let mut next = next;
                let subscription = a
                    .billing
                    .as_ref()
                    .and_then(|x| SubscriptionId::parse(&x.subscription_id));
                if let Some(sub) = subscription {
                    next.billing = Some(cover(state, &mut tx, &next, &sub, tz, who, now).await?);
                }
                add_booking(state, &mut tx, &next, who, now).await?;
                u.set("followUpId", s(next.id.as_str()));
                b.follow_up_id = Some(next.id.clone());
                extra = serde_json::json!({ "followUpId": next.id });
                follow_up = Some(next);
            }
        }
        (Transition::NoShow | Transition::Expire, _) => {
            // Whatever is left of the time becomes free again (a no-show at 9:10 frees 9:10-10:00).
            for item in store::move_claims(table, &a.clinic, &a.doctor, &a.id, &held, &no_cells())?
            {
                tx.push(item);
            }
            // A visit that did not happen is no care relation.
            if a.counts_as_care() {
                tx.push(a.care_change(table, -1, None)?);
            }
        }
        _ => return Err(ApiError::internal("action input does not match the action")),
    }
    if let Some(until) = a
        .held_until
        .filter(|_| a.status == Status::Pending && to != Status::Pending)
    {
        // The patient's hold is over (confirmed, cancelled or expired): it no longer counts.
        tx.push(store::holds_add(table, &a.clinic, &a.patient, -1, None)?);
        tx.push(store::hold_delete(table, a, until)?);
    }
    tx.guard(a.update(table, u, now_s)?, CHANGED_MEANWHILE);
    let event_type = match action {
        Transition::Confirm => "appointment.confirmed",
        Transition::Reschedule => "appointment.rescheduled",
        Transition::Cancel => "appointment.cancelled",
        Transition::CheckIn => "appointment.checked_in",
        Transition::Start => "appointment.started",
        Transition::Complete => "appointment.completed",
        Transition::NoShow => "appointment.no_show",
        Transition::Expire => "appointment.expired",
    };
    tx.push(appointment_event(event_type, &b, who, now, extra).outbox_write(&table.name, now_s)?);
    tx.commit(table).await?;
    Ok((b, follow_up))
}

/// The default length of a booking when neither a duration nor an end is given.
pub const DEFAULT_MINUTES: i64 = 30;

/// A billed appointment (covered by a subscription, or priced per visit) was billed for its
/// kind and length: moving it in time is free, but changing what it is would keep the old
/// coverage or price for a different visit (a covered video call becoming a free home visit).
pub fn billed_terms_kept(a: &AppointmentRecord, kind: Kind, minutes: i64) -> Result<(), ApiError> {
    if a.billing.is_some() && (kind != a.kind || minutes != a.minutes) {
        return Err(ApiError::conflict(
            "billed_terms_fixed",
            "This appointment is billed for its kind and length; move it in time, or cancel it \
             and book the visit you need.",
        ));
    }
    Ok(())
}
