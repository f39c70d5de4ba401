//! The access policy: every cell of the roles table (role × resource × actions × scope, with
//! the few narrowing rules the table names) as data, and the one `authorize` entry point that
//! every handler calls. Data-dependent checks (is this the caller's own record, their location,
//! their assigned patient) are answered by the handler from the returned grants.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A user's role in one clinic (SUPER_ADMIN is platform-wide).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Role {
    SuperAdmin,
    ClinicAdmin,
    ClinicLocationHead,
    Doctor,
    AssistantDoctor,
    Nurse,
    Receptionist,
    Pharmacist,
    Therapist,
    LabTechnician,
    FinanceBilling,
    SupportStaff,
    Counselor,
    Patient,
}

impl Role {
    pub const ALL: [Role; 14] = [
        Role::SuperAdmin,
        Role::ClinicAdmin,
        Role::ClinicLocationHead,
        Role::Doctor,
        Role::AssistantDoctor,
        Role::Nurse,
        Role::Receptionist,
        Role::Pharmacist,
        Role::Therapist,
        Role::LabTechnician,
        Role::FinanceBilling,
        Role::SupportStaff,
        Role::Counselor,
        Role::Patient,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::SuperAdmin => "SUPER_ADMIN",
            Role::ClinicAdmin => "CLINIC_ADMIN",
            Role::ClinicLocationHead => "CLINIC_LOCATION_HEAD",
            Role::Doctor => "DOCTOR",
            Role::AssistantDoctor => "ASSISTANT_DOCTOR",
            Role::Nurse => "NURSE",
            Role::Receptionist => "RECEPTIONIST",
            Role::Pharmacist => "PHARMACIST",
            Role::Therapist => "THERAPIST",
            Role::LabTechnician => "LAB_TECHNICIAN",
            Role::FinanceBilling => "FINANCE_BILLING",
            Role::SupportStaff => "SUPPORT_STAFF",
            Role::Counselor => "COUNSELOR",
            Role::Patient => "PATIENT",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Everyone but patients works for the clinic.
    pub fn is_staff(self) -> bool {
        self != Role::Patient
    }

    /// Roles that only a super admin may grant or take away.
    pub fn is_admin(self) -> bool {
        matches!(self, Role::SuperAdmin | Role::ClinicAdmin)
    }

    pub fn is_doctor(self) -> bool {
        matches!(self, Role::Doctor | Role::AssistantDoctor)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    Clinic,
    Location,
    Member,
    Profile,
    Schedule,
    Appointment,
    Queue,
    Plan,
    Subscription,
    Invoice,
    Payment,
    EhrRecord,
    CriticalAlerts,
    Analytics,
    AuditTrail,
    NotificationTemplates,
    NotificationPreferences,
    Chat,
}

/// R read, C create, U update, D delete/cancel, M manage (status changes, assignments).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Read,
    Create,
    Update,
    Delete,
    Manage,
}

impl Action {
    fn letter(self) -> char {
        match self {
            Action::Read => 'R',
            Action::Create => 'C',
            Action::Update => 'U',
            Action::Delete => 'D',
            Action::Manage => 'M',
        }
    }
}

/// How far a grant reaches, narrowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// The caller's own records.
    Own,
    /// A clinician's patients (non-cancelled appointment or care team); a doctor's own schedule.
    Assigned,
    /// Everything at the caller's clinic location.
    Location,
    /// Everything in a clinic the caller is a member of.
    Clinic,
    /// Every clinic (super admin only).
    Any,
}

/// The narrowing rules the table attaches to some cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    None,
    /// Staff directory: staff members, not patients.
    Directory,
    /// Only patient members.
    PatientsOnly,
    /// Only doctors (a patient's view of the clinic).
    DoctorsOnly,
    /// Only staff (not patients), e.g. a location head managing their staff.
    StaffOnly,
    /// Never CLINIC_ADMIN or SUPER_ADMIN members.
    NotAdmins,
    /// Requires a stated, time-boxed break-glass reason, flagged in the audit trail.
    BreakGlass,
    /// Vital signs only.
    VitalsOnly,
    /// Allergies and medications only.
    AllergiesAndMedications,
    /// Lab reports only.
    LabReportsOnly,
    /// Appointment analytics only.
    Appointments,
    /// Billing analytics only.
    Billing,
    /// Check-in only (a status change).
    CheckInOnly,
    /// The caller's own queue position only.
    OwnPosition,
    /// Every use is audited.
    Audited,
}

/// One cell of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub role: Role,
    pub resource: Resource,
    /// Letters from `CRUDM`.
    pub actions: &'static str,
    pub scope: Scope,
    pub limit: Limit,
}

impl Grant {
    pub fn allows(&self, action: Action) -> bool {
        self.actions.contains(action.letter())
    }
}

const fn g(
    role: Role,
    resource: Resource,
    actions: &'static str,
    scope: Scope,
    limit: Limit,
) -> Grant {
    Grant {
        role,
        resource,
        actions,
        scope,
        limit,
    }
}

use Limit as L;
use Resource as Rs;
use Role::*;
use Scope::*;

/// The roles table, cell by cell. Columns that the table shares (DOCTOR and ASSISTANT_DOCTOR,
/// THERAPIST and COUNSELOR) are written out for each role.
pub static POLICY: &[Grant] = &[
    // clinic
    g(SuperAdmin, Rs::Clinic, "CRUD", Any, L::None),
    g(ClinicAdmin, Rs::Clinic, "RU", Clinic, L::None),
    g(ClinicLocationHead, Rs::Clinic, "R", Clinic, L::None),
    g(Doctor, Rs::Clinic, "R", Clinic, L::None),
    g(AssistantDoctor, Rs::Clinic, "R", Clinic, L::None),
    g(Nurse, Rs::Clinic, "R", Clinic, L::None),
    g(Receptionist, Rs::Clinic, "R", Clinic, L::None),
    g(Patient, Rs::Clinic, "R", Clinic, L::None),
    g(Pharmacist, Rs::Clinic, "R", Clinic, L::None),
    g(Therapist, Rs::Clinic, "R", Clinic, L::None),
    g(Counselor, Rs::Clinic, "R", Clinic, L::None),
    g(LabTechnician, Rs::Clinic, "R", Clinic, L::None),
    g(FinanceBilling, Rs::Clinic, "R", Clinic, L::None),
    g(SupportStaff, Rs::Clinic, "R", Clinic, L::None),
    // location
    g(SuperAdmin, Rs::Location, "CRUD", Any, L::None),
    g(ClinicAdmin, Rs::Location, "CRUD", Clinic, L::None),
    g(ClinicLocationHead, Rs::Location, "RU", Location, L::None),
    g(ClinicLocationHead, Rs::Location, "R", Clinic, L::None),
    g(Doctor, Rs::Location, "R", Clinic, L::None),
    g(AssistantDoctor, Rs::Location, "R", Clinic, L::None),
    g(Nurse, Rs::Location, "R", Clinic, L::None),
    g(Receptionist, Rs::Location, "R", Clinic, L::None),
    g(Patient, Rs::Location, "R", Clinic, L::None),
    g(Pharmacist, Rs::Location, "R", Clinic, L::None),
    g(Therapist, Rs::Location, "R", Clinic, L::None),
    g(Counselor, Rs::Location, "R", Clinic, L::None),
    g(LabTechnician, Rs::Location, "R", Clinic, L::None),
    g(FinanceBilling, Rs::Location, "R", Clinic, L::None),
    g(SupportStaff, Rs::Location, "R", Clinic, L::None),
    // member (user in clinic)
    g(SuperAdmin, Rs::Member, "CRUDM", Any, L::None),
    g(ClinicAdmin, Rs::Member, "CRUDM", Clinic, L::NotAdmins),
    g(ClinicAdmin, Rs::Member, "R", Clinic, L::None),
    g(ClinicLocationHead, Rs::Member, "R", Location, L::None),
    g(ClinicLocationHead, Rs::Member, "M", Location, L::StaffOnly),
    g(Doctor, Rs::Member, "R", Clinic, L::Directory),
    g(AssistantDoctor, Rs::Member, "R", Clinic, L::Directory),
    g(Nurse, Rs::Member, "R", Clinic, L::Directory),
    g(Receptionist, Rs::Member, "C", Clinic, L::PatientsOnly),
    g(Receptionist, Rs::Member, "R", Clinic, L::Directory),
    g(Patient, Rs::Member, "R", Clinic, L::DoctorsOnly),
    g(Pharmacist, Rs::Member, "R", Clinic, L::Directory),
    g(Therapist, Rs::Member, "R", Clinic, L::Directory),
    g(Counselor, Rs::Member, "R", Clinic, L::Directory),
    g(LabTechnician, Rs::Member, "R", Clinic, L::Directory),
    g(FinanceBilling, Rs::Member, "R", Clinic, L::Directory),
    g(SupportStaff, Rs::Member, "R", Clinic, L::Directory),
    // profile
    g(SuperAdmin, Rs::Profile, "RU", Own, L::None),
    g(SuperAdmin, Rs::Profile, "RU", Any, L::None),
    g(ClinicAdmin, Rs::Profile, "RU", Own, L::None),
    g(ClinicLocationHead, Rs::Profile, "RU", Own, L::None),
    g(Doctor, Rs::Profile, "RU", Own, L::None),
    g(AssistantDoctor, Rs::Profile, "RU", Own, L::None),
    g(Nurse, Rs::Profile, "RU", Own, L::None),
    g(Receptionist, Rs::Profile, "RU", Own, L::None),
    g(Patient, Rs::Profile, "RU", Own, L::None),
    g(Pharmacist, Rs::Profile, "RU", Own, L::None),
    g(Therapist, Rs::Profile, "RU", Own, L::None),
    g(Counselor, Rs::Profile, "RU", Own, L::None),
    g(LabTechnician, Rs::Profile, "RU", Own, L::None),
    g(FinanceBilling, Rs::Profile, "RU", Own, L::None),
    g(SupportStaff, Rs::Profile, "RU", Own, L::None),
    // schedule (availability)
    g(SuperAdmin, Rs::Schedule, "CRUD", Any, L::None),
    g(ClinicAdmin, Rs::Schedule, "CRUD", Clinic, L::None),
    g(ClinicLocationHead, Rs::Schedule, "CRUD", Location, L::None),
    g(Doctor, Rs::Schedule, "RU", Own, L::None),
    g(Doctor, Rs::Schedule, "R", Clinic, L::None),
    g(AssistantDoctor, Rs::Schedule, "RU", Own, L::None),
    g(AssistantDoctor, Rs::Schedule, "R", Clinic, L::None),
    g(Nurse, Rs::Schedule, "R", Clinic, L::None),
    g(Receptionist, Rs::Schedule, "RU", Clinic, L::None),
    g(Patient, Rs::Schedule, "R", Clinic, L::None),
    g(Therapist, Rs::Schedule, "RU", Own, L::None),
    g(Counselor, Rs::Schedule, "RU", Own, L::None),
    g(SupportStaff, Rs::Schedule, "R", Clinic, L::None),
    // appointment
    g(SuperAdmin, Rs::Appointment, "CRUDM", Any, L::None),
    g(ClinicAdmin, Rs::Appointment, "CRUDM", Clinic, L::None),
    g(
        ClinicLocationHead,
        Rs::Appointment,
        "CRUDM",
        Location,
        L::None,
    ),
    g(Doctor, Rs::Appointment, "CRUM", Assigned, L::None),
    g(AssistantDoctor, Rs::Appointment, "CRUM", Assigned, L::None),
    g(Nurse, Rs::Appointment, "R", Clinic, L::None),
    g(Nurse, Rs::Appointment, "M", Clinic, L::CheckInOnly),
    g(Receptionist, Rs::Appointment, "CRUDM", Clinic, L::None),
    g(Patient, Rs::Appointment, "CRD", Own, L::None),
    g(Therapist, Rs::Appointment, "RUM", Assigned, L::None),
    g(Counselor, Rs::Appointment, "RUM", Assigned, L::None),
    g(FinanceBilling, Rs::Appointment, "R", Clinic, L::None),
    g(SupportStaff, Rs::Appointment, "R", Clinic, L::None),
    // queue (check-in)
    g(SuperAdmin, Rs::Queue, "RM", Any, L::None),
    g(ClinicAdmin, Rs::Queue, "RM", Clinic, L::None),
    g(ClinicLocationHead, Rs::Queue, "RM", Location, L::None),
    g(Doctor, Rs::Queue, "R", Own, L::None),
    g(AssistantDoctor, Rs::Queue, "R", Own, L::None),
    g(Nurse, Rs::Queue, "RM", Clinic, L::None),
    g(Receptionist, Rs::Queue, "RM", Clinic, L::None),
    g(Patient, Rs::Queue, "R", Own, L::OwnPosition),
    g(Therapist, Rs::Queue, "R", Own, L::None),
    g(Counselor, Rs::Queue, "R", Own, L::None),
    g(SupportStaff, Rs::Queue, "R", Clinic, L::None),
    // plan
    g(SuperAdmin, Rs::Plan, "CRUD", Any, L::None),
    g(ClinicAdmin, Rs::Plan, "CRUD", Clinic, L::None),
    g(ClinicLocationHead, Rs::Plan, "R", Clinic, L::None),
    g(Doctor, Rs::Plan, "R", Clinic, L::None),
    g(AssistantDoctor, Rs::Plan, "R", Clinic, L::None),
    g(Nurse, Rs::Plan, "R", Clinic, L::None),
    g(Receptionist, Rs::Plan, "R", Clinic, L::None),
    g(Patient, Rs::Plan, "R", Clinic, L::None),
    g(Therapist, Rs::Plan, "R", Clinic, L::None),
    g(Counselor, Rs::Plan, "R", Clinic, L::None),
    g(FinanceBilling, Rs::Plan, "CRUD", Clinic, L::None),
    g(SupportStaff, Rs::Plan, "R", Clinic, L::None),
    // subscription
    g(SuperAdmin, Rs::Subscription, "CRUDM", Any, L::None),
    g(ClinicAdmin, Rs::Subscription, "CRUDM", Clinic, L::None),
    g(
        ClinicLocationHead,
        Rs::Subscription,
        "CRUDM",
        Location,
        L::None,
    ),
    g(Receptionist, Rs::Subscription, "CRU", Clinic, L::None),
    g(Patient, Rs::Subscription, "CRD", Own, L::None),
    g(FinanceBilling, Rs::Subscription, "CRUDM", Clinic, L::None),
    // invoice
    g(SuperAdmin, Rs::Invoice, "CRUDM", Any, L::None),
    g(ClinicAdmin, Rs::Invoice, "CRUDM", Clinic, L::None),
    g(ClinicLocationHead, Rs::Invoice, "CRUDM", Location, L::None),
    g(Receptionist, Rs::Invoice, "CR", Clinic, L::None),
    g(Patient, Rs::Invoice, "R", Own, L::None),
    g(FinanceBilling, Rs::Invoice, "CRUDM", Clinic, L::None),
    // payment, refund
    g(SuperAdmin, Rs::Payment, "CRUDM", Any, L::None),
    g(ClinicAdmin, Rs::Payment, "CRUDM", Clinic, L::None),
    g(ClinicLocationHead, Rs::Payment, "CR", Location, L::None),
    g(Receptionist, Rs::Payment, "CR", Clinic, L::None),
    g(Patient, Rs::Payment, "CR", Own, L::None),
    g(FinanceBilling, Rs::Payment, "CRUDM", Clinic, L::None),
    // EHR record (all kinds)
    g(SuperAdmin, Rs::EhrRecord, "R", Any, L::Audited),
    g(ClinicAdmin, Rs::EhrRecord, "R", Clinic, L::None),
    g(Doctor, Rs::EhrRecord, "CRU", Assigned, L::None),
    g(Doctor, Rs::EhrRecord, "R", Clinic, L::BreakGlass),
    g(AssistantDoctor, Rs::EhrRecord, "CRU", Assigned, L::None),
    g(AssistantDoctor, Rs::EhrRecord, "R", Clinic, L::BreakGlass),
    g(Nurse, Rs::EhrRecord, "R", Assigned, L::None),
    g(Nurse, Rs::EhrRecord, "C", Assigned, L::VitalsOnly),
    g(Patient, Rs::EhrRecord, "R", Own, L::None),
    g(
        Pharmacist,
        Rs::EhrRecord,
        "R",
        Assigned,
        L::AllergiesAndMedications,
    ),
    g(Therapist, Rs::EhrRecord, "R", Assigned, L::None),
    g(Counselor, Rs::EhrRecord, "R", Assigned, L::None),
    g(
        LabTechnician,
        Rs::EhrRecord,
        "CRU",
        Clinic,
        L::LabReportsOnly,
    ),
    // critical alerts
    g(SuperAdmin, Rs::CriticalAlerts, "R", Any, L::None),
    g(ClinicAdmin, Rs::CriticalAlerts, "R", Clinic, L::None),
    g(
        ClinicLocationHead,
        Rs::CriticalAlerts,
        "R",
        Location,
        L::None,
    ),
    g(Doctor, Rs::CriticalAlerts, "R", Assigned, L::None),
    g(AssistantDoctor, Rs::CriticalAlerts, "R", Assigned, L::None),
    g(Nurse, Rs::CriticalAlerts, "R", Clinic, L::None),
    // analytics
    g(SuperAdmin, Rs::Analytics, "R", Any, L::None),
    g(ClinicAdmin, Rs::Analytics, "R", Clinic, L::None),
    g(ClinicLocationHead, Rs::Analytics, "R", Location, L::None),
    g(Doctor, Rs::Analytics, "R", Own, L::None),
    g(AssistantDoctor, Rs::Analytics, "R", Own, L::None),
    g(Receptionist, Rs::Analytics, "R", Clinic, L::Appointments),
    g(FinanceBilling, Rs::Analytics, "R", Clinic, L::Billing),
    // audit trail
    g(SuperAdmin, Rs::AuditTrail, "R", Any, L::None),
    g(ClinicAdmin, Rs::AuditTrail, "R", Clinic, L::None),
    g(Patient, Rs::AuditTrail, "R", Own, L::None),
    // notification templates, delivery log
    g(SuperAdmin, Rs::NotificationTemplates, "CRUD", Any, L::None),
    g(
        ClinicAdmin,
        Rs::NotificationTemplates,
        "CRUD",
        Clinic,
        L::None,
    ),
    g(
        ClinicLocationHead,
        Rs::NotificationTemplates,
        "R",
        Location,
        L::None,
    ),
    // notification preferences
    g(SuperAdmin, Rs::NotificationPreferences, "RU", Any, L::None),
    g(
        ClinicAdmin,
        Rs::NotificationPreferences,
        "RU",
        Clinic,
        L::None,
    ),
    g(
        ClinicLocationHead,
        Rs::NotificationPreferences,
        "RU",
        Own,
        L::None,
    ),
    g(Doctor, Rs::NotificationPreferences, "RU", Own, L::None),
    g(
        AssistantDoctor,
        Rs::NotificationPreferences,
        "RU",
        Own,
        L::None,
    ),
    g(Nurse, Rs::NotificationPreferences, "RU", Own, L::None),
    g(
        Receptionist,
        Rs::NotificationPreferences,
        "RU",
        Own,
        L::None,
    ),
    g(Patient, Rs::NotificationPreferences, "RU", Own, L::None),
    g(Pharmacist, Rs::NotificationPreferences, "RU", Own, L::None),
    g(Therapist, Rs::NotificationPreferences, "RU", Own, L::None),
    g(Counselor, Rs::NotificationPreferences, "RU", Own, L::None),
    g(
        LabTechnician,
        Rs::NotificationPreferences,
        "RU",
        Own,
        L::None,
    ),
    g(
        FinanceBilling,
        Rs::NotificationPreferences,
        "RU",
        Own,
        L::None,
    ),
    g(
        SupportStaff,
        Rs::NotificationPreferences,
        "RU",
        Own,
        L::None,
    ),
    // chat
    g(ClinicAdmin, Rs::Chat, "R", Clinic, L::Audited),
    g(Doctor, Rs::Chat, "CR", Assigned, L::None),
    g(AssistantDoctor, Rs::Chat, "CR", Assigned, L::None),
    g(Nurse, Rs::Chat, "CR", Assigned, L::None),
    g(Receptionist, Rs::Chat, "CR", Clinic, L::None),
    g(Patient, Rs::Chat, "CR", Own, L::None),
    g(Therapist, Rs::Chat, "CR", Assigned, L::None),
    g(Counselor, Rs::Chat, "CR", Assigned, L::None),
];

/// Every grant that lets `role` perform `action` on `resource`, widest scope first. Empty:
/// the table says no (403, or 404 where the object is one the caller may not know about).
pub fn authorize(role: Role, resource: Resource, action: Action) -> Vec<&'static Grant> {
    let mut grants: Vec<&'static Grant> = POLICY
        .iter()
        .filter(|g| g.role == role && g.resource == resource && g.allows(action))
        .collect();
    grants.sort_by_key(|g| std::cmp::Reverse(g.scope));
    grants
}

/// The caller, as the policy sees them in one clinic.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    pub role: Role,
    pub user: &'a str,
    /// The location a location-scoped role is attached to.
    pub location: Option<&'a str>,
}

/// The object of a request, as far as the policy needs to know it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Subject<'a> {
    /// The user the object belongs to (a profile, a patient's own record, a member).
    pub owner: Option<&'a str>,
    /// The clinic location the object is at.
    pub location: Option<&'a str>,
    /// The caller is a clinician of the patient concerned (computed by the handler).
    pub assigned: bool,
    /// For members: the role of the member concerned (or being given).
    pub member_role: Option<Role>,
    /// The narrow part of a resource touched (vitals, lab reports, check-in, ...), if any.
    pub facet: Option<Limit>,
    /// The caller holds a break-glass grant for the patient concerned, open now (stated
    /// reason, time-boxed, audited).
    pub break_glass: bool,
}

fn scope_reaches(scope: Scope, actor: &Actor<'_>, subject: &Subject<'_>) -> bool {
    match scope {
        Scope::Any | Scope::Clinic => true,
        Scope::Location => actor.location.is_some() && subject.location == actor.location,
        Scope::Own => subject.owner == Some(actor.user),
        Scope::Assigned => subject.assigned || subject.owner == Some(actor.user),
    }
}

fn limit_admits(limit: Limit, subject: &Subject<'_>) -> bool {
    match limit {
        Limit::None | Limit::Audited => true,
        Limit::Directory => subject.member_role.is_some_and(Role::is_staff),
        // Staff a location head manages: not admins, not other location heads.
        Limit::StaffOnly => subject
            .member_role
            .is_some_and(|r| r.is_staff() && !r.is_admin() && r != Role::ClinicLocationHead),
        Limit::PatientsOnly => subject.member_role == Some(Role::Patient),
        Limit::DoctorsOnly => subject.member_role.is_some_and(Role::is_doctor),
        Limit::NotAdmins => subject.member_role.is_some_and(|r| !r.is_admin()),
        Limit::BreakGlass => subject.break_glass,
        narrow => subject.facet == Some(narrow),
    }
}

/// Whether the table lets `actor` perform `action` on this `subject`.
pub fn allowed(
    actor: &Actor<'_>,
    resource: Resource,
    action: Action,
    subject: &Subject<'_>,
) -> bool {
    authorize(actor.role, resource, action)
        .iter()
        .any(|g| scope_reaches(g.scope, actor, subject) && limit_admits(g.limit, subject))
}

/// What the table knows about roles besides grants: who treats patients, who sees the free
/// text of a record the table lets them read. Handlers ask [`has_facet`]; they keep no role
/// lists of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Facet {
    /// Treats patients: can be booked, holds a care relation ("assigned" patients).
    Clinician,
    /// Sees an appointment's reason, symptoms and notes (besides its patient): the people who
    /// care for the patient or run the front desk. Finance, support staff and platform
    /// operators see times and statuses only.
    ReadsAppointmentText,
    /// Reads the clinical notes of appointments they may read: the people who treat or nurse
    /// the patient. Front desk, finance, support and platform operators never do (the patient
    /// reads their own).
    ReadsClinicalNotes,
}

const FACETS: &[(Facet, &[Role])] = &[
    (
        Facet::Clinician,
        &[
            Role::Doctor,
            Role::AssistantDoctor,
            Role::Therapist,
            Role::Counselor,
        ],
    ),
    (
        Facet::ReadsAppointmentText,
        &[
            Role::ClinicAdmin,
            Role::ClinicLocationHead,
            Role::Doctor,
            Role::AssistantDoctor,
            Role::Therapist,
            Role::Counselor,
            Role::Nurse,
            Role::Receptionist,
        ],
    ),
    (
        Facet::ReadsClinicalNotes,
        &[
            Role::Doctor,
            Role::AssistantDoctor,
            Role::Therapist,
            Role::Counselor,
            Role::Nurse,
            Role::Patient,
        ],
    ),
];

/// Whether `role` has `facet`.
pub fn has_facet(role: Role, facet: Facet) -> bool {
    FACETS
        .iter()
        .any(|(f, roles)| *f == facet && roles.contains(&role))
}

/// The widest scope of a role's grant for `action` on `resource`, if any.
pub fn widest_scope(role: Role, resource: Resource, action: Action) -> Option<Scope> {
    authorize(role, resource, action).first().map(|g| g.scope)
}

/// Whether a role's rights on `resource` reach "assigned" subjects for any action (so the
/// care relation matters to it).
pub fn reaches_assigned(role: Role, resource: Resource) -> bool {
    [
        Action::Read,
        Action::Create,
        Action::Update,
        Action::Delete,
        Action::Manage,
    ]
    .iter()
    .any(|a| {
        authorize(role, resource, *a)
            .iter()
            .any(|g| g.scope == Scope::Assigned)
    })
}

/// Whether the role may do `action` on `resource` at all (some subject could be allowed).
pub fn may_ever(role: Role, resource: Resource, action: Action) -> bool {
    !authorize(role, resource, action).is_empty()
}

#[cfg(test)]
mod tests;
