//! Tests of the policy table.

use super::*;

fn actor(role: Role) -> Actor<'static> {
    Actor {
        role,
        user: "me",
        location: Some("loc-1"),
    }
}

#[test]
fn roles_round_trip_and_only_super_admin_reaches_any() {
    for r in Role::ALL {
        assert_eq!(Role::parse(r.as_str()), Some(r));
    }
    for g in POLICY {
        assert!(g.scope != Scope::Any || g.role == Role::SuperAdmin, "{g:?}");
        assert!(
            !g.actions.is_empty() && g.actions.chars().all(|c| "CRUDM".contains(c)),
            "{g:?}"
        );
    }
}

#[test]
fn every_role_appears_for_the_resources_everyone_has() {
    for r in Role::ALL {
        assert!(may_ever(r, Resource::Clinic, Action::Read), "{r}");
        assert!(may_ever(r, Resource::Profile, Action::Update), "{r}");
        assert!(
            may_ever(r, Resource::NotificationPreferences, Action::Read),
            "{r}"
        );
    }
}

#[test]
fn member_rules_from_the_table() {
    let patient = Subject {
        member_role: Some(Role::Patient),
        ..Default::default()
    };
    let doctor = Subject {
        member_role: Some(Role::Doctor),
        ..Default::default()
    };
    let admin = Subject {
        member_role: Some(Role::ClinicAdmin),
        ..Default::default()
    };
    // A receptionist creates patients only
    assert!(allowed(
        &actor(Role::Receptionist),
        Resource::Member,
        Action::Create,
        &patient
    ));
    assert!(!allowed(
        &actor(Role::Receptionist),
        Resource::Member,
        Action::Create,
        &doctor
    ));
    // A clinic admin never creates another clinic admin; a super admin may
    assert!(allowed(
        &actor(Role::ClinicAdmin),
        Resource::Member,
        Action::Create,
        &doctor
    ));
    assert!(!allowed(
        &actor(Role::ClinicAdmin),
        Resource::Member,
        Action::Create,
        &admin
    ));
    assert!(allowed(
        &actor(Role::SuperAdmin),
        Resource::Member,
        Action::Create,
        &admin
    ));
    // Patients see doctors, never other patients; staff see the staff directory
    assert!(allowed(
        &actor(Role::Patient),
        Resource::Member,
        Action::Read,
        &doctor
    ));
    assert!(!allowed(
        &actor(Role::Patient),
        Resource::Member,
        Action::Read,
        &patient
    ));
    assert!(allowed(
        &actor(Role::Nurse),
        Resource::Member,
        Action::Read,
        &doctor
    ));
    assert!(!allowed(
        &actor(Role::Nurse),
        Resource::Member,
        Action::Read,
        &patient
    ));
    // A location head manages staff of their own location only
    let here = Subject {
        member_role: Some(Role::Nurse),
        location: Some("loc-1"),
        ..Default::default()
    };
    let there = Subject {
        location: Some("loc-2"),
        ..here
    };
    assert!(allowed(
        &actor(Role::ClinicLocationHead),
        Resource::Member,
        Action::Manage,
        &here
    ));
    assert!(!allowed(
        &actor(Role::ClinicLocationHead),
        Resource::Member,
        Action::Manage,
        &there
    ));
    assert!(!allowed(
        &actor(Role::ClinicLocationHead),
        Resource::Member,
        Action::Create,
        &here
    ));

    // ... but never admins or other location heads, even at their location
    for role in [Role::ClinicAdmin, Role::ClinicLocationHead] {
        let s = Subject {
            member_role: Some(role),
            ..here
        };
        assert!(!allowed(
            &actor(Role::ClinicLocationHead),
            Resource::Member,
            Action::Manage,
            &s
        ));
    }
}

#[test]
fn scopes_and_facets() {
    let own = Subject {
        owner: Some("me"),
        ..Default::default()
    };
    let other = Subject {
        owner: Some("someone"),
        ..Default::default()
    };
    assert!(allowed(
        &actor(Role::Patient),
        Resource::Appointment,
        Action::Read,
        &own
    ));
    assert!(!allowed(
        &actor(Role::Patient),
        Resource::Appointment,
        Action::Read,
        &other
    ));
    assert!(!allowed(
        &actor(Role::Patient),
        Resource::Appointment,
        Action::Update,
        &own
    ));
    let vitals = Subject {
        assigned: true,
        facet: Some(Limit::VitalsOnly),
        ..Default::default()
    };
    let labs = Subject {
        assigned: true,
        facet: Some(Limit::LabReportsOnly),
        ..Default::default()
    };
    assert!(allowed(
        &actor(Role::Nurse),
        Resource::EhrRecord,
        Action::Create,
        &vitals
    ));
    assert!(!allowed(
        &actor(Role::Nurse),
        Resource::EhrRecord,
        Action::Create,
        &labs
    ));
    assert!(allowed(
        &actor(Role::LabTechnician),
        Resource::EhrRecord,
        Action::Create,
        &labs
    ));
    // A doctor reads a patient they do not treat only through an open break-glass grant,
    // and only reads.
    assert!(!allowed(
        &actor(Role::Doctor),
        Resource::EhrRecord,
        Action::Read,
        &Subject::default()
    ));
    let glass = Subject {
        break_glass: true,
        ..Default::default()
    };
    assert!(allowed(
        &actor(Role::Doctor),
        Resource::EhrRecord,
        Action::Read,
        &glass
    ));
    assert!(!allowed(
        &actor(Role::Doctor),
        Resource::EhrRecord,
        Action::Update,
        &glass
    ));
    assert!(!allowed(
        &actor(Role::Nurse),
        Resource::EhrRecord,
        Action::Read,
        &glass
    ));
    assert!(!may_ever(
        Role::Pharmacist,
        Resource::Schedule,
        Action::Read
    ));
    assert!(!may_ever(Role::SuperAdmin, Resource::Chat, Action::Read));
}
