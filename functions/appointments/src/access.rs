//! What the policy table needs to know: the care relation behind "assigned", the facts about
//! an appointment or a doctor's schedule, and which of them the caller may see or change.
//! Anything the caller may not read answers 404, exactly like something that does not exist.

use shared::{
    ApiError,
    authn::ClinicAccess,
    ids::{AppointmentId, LocationId, UserId},
    policy::{Action, Facet, Limit, Resource, Subject, has_facet, reaches_assigned},
    tenancy::MemberRecord,
};

use crate::{
    AppState,
    common::clinician,
    rules::Transition,
    store::{self, AppointmentRecord},
};

/// Whether the caller sees the appointment's reason, symptoms and notes.
pub fn sees_phi(access: &ClinicAccess, a: &AppointmentRecord) -> bool {
    a.patient == access.caller.user_id || has_facet(access.role, Facet::ReadsAppointmentText)
}

/// What the policy needs to know about an appointment.
pub struct Facts {
    pub patient: String,
    pub location: Option<String>,
    pub assigned: bool,
}

impl Facts {
    pub fn subject(&self, facet: Option<Limit>) -> Subject<'_> {
        Subject {
            owner: Some(&self.patient),
            location: self.location.as_deref(),
            assigned: self.assigned,
            member_role: None,
            facet,
            break_glass: false,
        }
    }
}

/// A clinician is assigned to an appointment when they are its doctor or have a non-cancelled
/// appointment with its patient.
pub async fn assigned(
    state: &AppState,
    access: &ClinicAccess,
    doctor: &UserId,
    patient: &UserId,
) -> Result<bool, ApiError> {
    if access.caller.user_id == *doctor {
        return Ok(true);
    }
    if !reaches_assigned(access.role, Resource::Appointment) {
        return Ok(false);
    }
    shared::tenancy::is_assigned(
        &state.table,
        &access.clinic,
        &access.caller.user_id,
        patient,
        state.clock.epoch(),
    )
    .await
}

async fn facts(
    state: &AppState,
    access: &ClinicAccess,
    a: &AppointmentRecord,
) -> Result<Facts, ApiError> {
    Ok(Facts {
        patient: a.patient.to_string(),
        location: a.location.as_ref().map(ToString::to_string),
        assigned: assigned(state, access, &a.doctor, &a.patient).await?,
    })
}

/// The appointment, if it exists in this clinic and the caller may read it; else 404.
pub async fn load_visible(
    state: &AppState,
    access: &ClinicAccess,
    id: &str,
) -> Result<(AppointmentRecord, Facts), ApiError> {
    let id = AppointmentId::parse(id).ok_or(ApiError::NotFound)?;
    let a = store::get_appointment(&state.table, &access.clinic, &id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let f = facts(state, access, &a).await?;
    if !access.allows(Resource::Appointment, Action::Read, &f.subject(None)) {
        return Err(ApiError::NotFound);
    }
    Ok((a, f))
}

/// Whether the caller may take `action` on an appointment with these facts.
pub fn may_act(access: &ClinicAccess, f: &Facts, action: Transition) -> bool {
    let can = |act: Action, facet: Option<Limit>| {
        access.allows(Resource::Appointment, act, &f.subject(facet))
    };
    match action {
        Transition::Confirm | Transition::Start | Transition::Complete | Transition::NoShow => {
            can(Action::Manage, None)
        }
        Transition::CheckIn => can(Action::Manage, Some(Limit::CheckInOnly)),
        Transition::Cancel => can(Action::Delete, None),
        // Moving is changing the booking; a patient, who may cancel and book their own
        // appointments, may also move them.
        Transition::Reschedule => {
            can(Action::Update, None) || (can(Action::Create, None) && can(Action::Delete, None))
        }
        Transition::Expire => false,
    }
}

/// The doctor in the path, or 404.
async fn path_doctor(
    state: &AppState,
    access: &ClinicAccess,
    doctor: &str,
) -> Result<(UserId, MemberRecord), ApiError> {
    let id = UserId::parse(doctor).ok_or(ApiError::NotFound)?;
    let m = clinician(state, &access.clinic, &id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok((id, m))
}

/// The doctor in the path, if the caller may `action` their schedule (404 for no such doctor,
/// 403 for a schedule the caller may not touch).
pub async fn schedule_access(
    state: &AppState,
    access: &ClinicAccess,
    doctor: &str,
    action: Action,
) -> Result<UserId, ApiError> {
    let (id, m) = path_doctor(state, access, doctor).await?;
    access.require(
        Resource::Schedule,
        action,
        &schedule_subject(id.as_str(), &m),
    )?;
    Ok(id)
}

fn schedule_subject<'a>(doctor: &'a str, m: &'a MemberRecord) -> Subject<'a> {
    Subject {
        owner: Some(doctor),
        location: m.location.as_ref().map(LocationId::as_str),
        assigned: false,
        member_role: Some(m.role),
        facet: None,
        break_glass: false,
    }
}
