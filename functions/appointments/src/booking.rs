//! Booking an appointment: the request validated in the order callers are told about it, the
//! doctor's hours checked, and the appointment written with its claims, coverage and event.

use std::collections::BTreeMap;

use serde::Deserialize;
use shared::{
    ApiError,
    audit::{AuditAction, AuditEntry},
    authn::ClinicAccess,
    crypto::Phi,
    db::{self, Tx},
    ids::{AppointmentId, LocationId, SubscriptionId, UserId},
    policy::{Action, Resource, Role},
};

use crate::{
    AppState,
    access::{Facts, assigned},
    common::{clinic_zone, clinician, location_exists, seal, who},
    input::{booking_errors, err, parse_kind_field, text_ok, timing, validation},
    lifecycle,
    rules::{self, Availability, Status},
    store::{self, AppointmentRecord},
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BookBody {
    doctor_id: String,
    #[serde(default)]
    patient_id: Option<String>,
    #[serde(default)]
    location_id: Option<String>,
    kind: String,
    starts_at: String,
    #[serde(default)]
    duration_minutes: Option<i64>,
    #[serde(default)]
    ends_at: Option<String>,
    #[serde(default)]
    reason: Option<Phi<String>>,
    #[serde(default)]
    symptoms: Option<Phi<String>>,
    #[serde(default)]
    notes: Option<Phi<String>>,
    /// Book under this subscription of the patient: covered (one unit of quota) or, when not
    /// covered, PENDING with a pay-per-visit invoice.
    #[serde(default)]
    subscription_id: Option<String>,
}

/// Books `body` for the caller. Authorisation happens here, between checking the request's
/// shape (422) and looking up the doctor, patient and location it names, because it depends on
/// who the patient is.
pub async fn book(
    state: &AppState,
    access: &ClinicAccess,
    body: BookBody,
) -> Result<AppointmentRecord, ApiError> {
    let mut errors = Vec::new();
    let doctor = UserId::parse(&body.doctor_id);
    if doctor.is_none() {
        errors.push(err(
            "doctorId",
            "unknown_doctor",
            "No such doctor in this clinic.",
        ));
    }
    let patient = match &body.patient_id {
        Some(p) => {
            let id = UserId::parse(p);
            if id.is_none() {
                errors.push(err(
                    "patientId",
                    "unknown_patient",
                    "No such patient in this clinic.",
                ));
            }
            id
        }
        None if access.role == Role::Patient => Some(access.caller.user_id.clone()),
        None => {
            errors.push(err("patientId", "required", "Name the patient."));
            None
        }
    };
    let location = match &body.location_id {
        Some(l) => {
            let id = LocationId::parse(l);
            if id.is_none() {
                errors.push(err(
                    "locationId",
                    "unknown_location",
                    "No such location in this clinic.",
                ));
            }
            id
        }
        None => None,
    };
    let kind = parse_kind_field(&body.kind, "kind", &mut errors);
    let subscription = match &body.subscription_id {
        Some(v) => {
            let id = SubscriptionId::parse(v);
            if id.is_none() {
                errors.push(err(
                    "subscriptionId",
                    "unknown_subscription",
                    "No such subscription for this patient.",
                ));
            }
            id
        }
        None => None,
    };
    for (name, v) in [
        ("reason", &body.reason),
        ("symptoms", &body.symptoms),
        ("notes", &body.notes),
    ] {
        if v.as_ref().is_some_and(|v| !text_ok(v)) {
            errors.push(err(name, "invalid_length", "Use 1 to 4000 characters."));
        }
    }
    validation(std::mem::take(&mut errors))?;
    let (Some(doctor), Some(patient), Some(kind)) = (doctor, patient, kind) else {
        return Err(ApiError::internal("validated fields missing"));
    };
    // Authorise before looking anything up, so a refused caller learns nothing about others.
    let f = Facts {
        patient: patient.to_string(),
        location: location.as_ref().map(ToString::to_string),
        assigned: assigned(state, access, &doctor, &patient).await?,
    };
    access.require(Resource::Appointment, Action::Create, &f.subject(None))?;
    // Whoever registered an address first is not necessarily its owner: an account books for
    // itself only once its address is proven. (Staff may book for a patient they added.)
    if patient == access.caller.user_id && !access.caller.email_verified {
        return Err(ApiError::forbidden(
            "email_unverified",
            "Verify your email address before booking: follow the link sent to it.",
        ));
    }
    // Everything else the booking needs is read together, in one round trip.
    let location_check = async {
        match &location {
            Some(l) => location_exists(state, &access.clinic, l).await,
            None => Ok(true),
        }
    };
    // The free texts' encryption needs only the new id, so it goes along too.
    let id = AppointmentId::generate();
    let seal_texts = async {
        let mut sealed = BTreeMap::new();
        for (name, v) in [
            ("reason", &body.reason),
            ("symptoms", &body.symptoms),
            ("notes", &body.notes),
        ] {
            if let Some(v) = v {
                sealed.insert(name, seal(state, &access.clinic, &id, name, v).await?);
            }
        }
        Ok::<_, ApiError>(sealed)
    };
    let (doctor_member, patient_member, location_ok, tz, schedule, sealed) = tokio::join!(
        clinician(state, &access.clinic, &doctor),
        shared::tenancy::get_member(&state.table, &access.clinic, &patient),
        location_check,
        clinic_zone(state, &access.clinic),
        state
            .ext()
            .get(&state.table, &access.clinic, &doctor, state.clock.epoch()),
        seal_texts,
    );
    if doctor_member?.is_none() {
        errors.push(err(
            "doctorId",
            "unknown_doctor",
            "No such doctor in this clinic.",
        ));
    }
    let patient_ok =
        patient_member?.is_some_and(|m| m.role == Role::Patient && m.status == "ACTIVE");
    if !patient_ok {
        errors.push(err(
            "patientId",
            "unknown_patient",
            "No such patient in this clinic.",
        ));
    }
    if !location_ok? {
        errors.push(err(
            "locationId",
            "unknown_location",
            "No such location in this clinic.",
        ));
    }
    validation(std::mem::take(&mut errors))?;
    let (tz, schedule) = (tz?, schedule?);
    let av = schedule.map(|s| s.availability);
    let default_minutes = av
        .as_ref()
        .map(|a| a.slot_minutes)
        .unwrap_or(lifecycle::DEFAULT_MINUTES);
    let Some((starts_at, minutes)) = timing(
        "",
        &body.starts_at,
        body.duration_minutes,
        body.ends_at.as_deref(),
        default_minutes,
        &mut errors,
    ) else {
        return Err(ApiError::Validation(errors));
    };
    validation(std::mem::take(&mut errors))?;
    let now = state.clock.now();
    let closed = Availability::closed(default_minutes);
    let problems = rules::check_booking(
        kind,
        location.as_ref().map(LocationId::as_str),
        starts_at,
        minutes,
        now,
        av.as_ref().unwrap_or(&closed),
        &tz,
    );
    // A patient booking for themselves books one slot, not too far ahead, and holds its time
    // only for a while and only a few at once (staff are not limited).
    let own = patient == access.caller.user_id;
    let limits = crate::common::booking_limits(state, &access.clinic).await?;
    let mut problems = problems;
    if own {
        problems.extend(rules::patient_limits(
            starts_at,
            minutes,
            default_minutes,
            now,
            limits.max_days_ahead,
        ));
    }
    validation(booking_errors("", &problems))?;
    let sealed = sealed?;
    let a = AppointmentRecord {
        id,
        clinic: access.clinic.clone(),
        doctor,
        patient,
        location,
        kind,
        status: Status::Pending,
        starts_at,
        minutes,
        reschedules: 0,
        version: 1,
        created_at: now.as_second(),
        updated_at: now.as_second(),
        created_by: Some(access.caller.user_id.to_string()),
        follow_up_of: None,
        follow_up_id: None,
        checked_in_at: None,
        started_at: None,
        completed_at: None,
        cancelled_at: None,
        held_until: None,
        sealed,
        billing: None,
    };
    let who = who(access);
    // Losing the period's last unit to a concurrent booking books the visit as paid instead:
    // the next attempt reads the subscription again and issues the visit's invoice.
    let mut tries = 0;
    loop {
        let attempt = db::retrying(billing::coverage::NUMBERING_RETRIES, || {
            let (who, subscription, tz, mut a) = (&who, &subscription, &tz, a.clone());
            async move {
                let mut tx = Tx::default();
                if let Some(sub) = subscription {
                    a.billing =
                        Some(lifecycle::cover(state, &mut tx, &a, sub, tz, who, now).await?);
                }
                if own {
                    // A visit waiting for its invoice to be paid holds its time until it
                    // starts; any other hold for the clinic's hold time.
                    let awaiting_payment = a.billing.as_ref().is_some_and(|b| !b.covered);
                    let until = if awaiting_payment {
                        starts_at.as_second()
                    } else {
                        (now.as_second() + limits.hold_minutes * 60).min(starts_at.as_second())
                    };
                    a.held_until = Some(until);
                    tx.guard(
                        store::holds_add(
                            &state.table,
                            &a.clinic,
                            &a.patient,
                            1,
                            Some(limits.max_open_holds),
                        )?,
                        TOO_MANY_HOLDS,
                    );
                    tx.push(store::hold_put(&state.table, &a, until)?);
                }
                lifecycle::add_booking(state, &mut tx, &a, who, now).await?;
                if !a.sealed.is_empty() {
                    // The reason, symptoms or notes written: the audit record commits with them.
                    tx.push(
                        state
                            .audit
                            .put(&audit_of(access, &a, AuditAction::Create))
                            .await?,
                    );
                }
                tx.commit(&state.table).await?;
                shared::metrics::count(shared::metrics::Metric::BookingsCreated);
                if a.billing.as_ref().is_some_and(|b| b.covered) {
                    shared::metrics::count(shared::metrics::Metric::CoveredBookings);
                }
                Ok(a)
            }
        })
        .await;
        match attempt {
            Err(ApiError::Guarded(billing::coverage::QUOTA_EXHAUSTED)) if tries < 5 => tries += 1,
            other => break other,
        }
    }
}

/// The audit record of an access to an appointment's free text (reason, symptoms, notes).
pub fn audit_of(access: &ClinicAccess, a: &AppointmentRecord, action: AuditAction) -> AuditEntry {
    AuditEntry::by(
        access,
        &a.patient,
        action,
        "appointment",
        vec![a.id.to_string()],
    )
}

/// The patient's count of open holds is at the clinic's limit.
const TOO_MANY_HOLDS: shared::error::Guard = shared::error::Guard::new(
    "too_many_pending",
    "You have as many unconfirmed bookings as the clinic allows; wait for one to be confirmed or cancel one first.",
);
