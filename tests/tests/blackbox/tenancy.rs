//! Tenancy and the policy table over HTTP: every clinics route walked by a member of every
//! role (expectations computed from the table), cross-clinic ids, mass assignment, the
//! 60-second rule for removed members, PHI at rest in profiles, and tenant-bound cursors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use blackbox::{Api, call, job_for, link_for, person};
use http::{Method, StatusCode};
use jiff::SignedDuration;
use local_stack::{DEMO_PASSWORD, Stack};
use serde_json::{Value, json};
use shared::{
    clock::ManualClock,
    ids::{ClinicId, LocationId, UserId},
    policy::{Action, Actor, Resource, Role, Subject, allowed},
    provision::{provision, put_clinic, put_location, test_clients, unique_prefix},
};
use std::sync::Arc;

struct Person {
    role: Role,
    user: UserId,
    token: String,
    location: Option<LocationId>,
}

struct World {
    api: Api,
    clock: Arc<ManualClock>,
    a: ClinicId,
    b: ClinicId,
    l1: LocationId,
    l2: LocationId,
    people: Vec<Person>,
    /// The clinic admin of B: a stranger to everything in A.
    outsider: String,
    nurse_l1: UserId,
    nurse_l2: UserId,
    doctor: UserId,
    patient: UserId,
}

fn stack(api: &Api) -> &Stack {
    api.stack.as_ref().unwrap()
}

async fn world() -> World {
    let clients = test_clients().await;
    let resources = provision(&clients, &unique_prefix("ten")).await.unwrap();
    let clock = Arc::new(ManualClock::starting_now());
    let stack = Stack::with_clock(clients.clone(), resources, clock.clone())
        .await
        .unwrap();
    let (a, b, l1, l2) = (
        ClinicId::generate(),
        ClinicId::generate(),
        LocationId::generate(),
        LocationId::generate(),
    );
    let table = stack.resources.table.clone();
    put_clinic(
        &clients,
        &table,
        &a,
        ("Clinic A", "Europe/Berlin", "EUR"),
        true,
    )
    .await
    .unwrap();
    put_clinic(
        &clients,
        &table,
        &b,
        ("Clinic B", "Asia/Tokyo", "JPY"),
        true,
    )
    .await
    .unwrap();
    put_location(&clients, &table, &a, &l1, "North", 0)
        .await
        .unwrap();
    put_location(&clients, &table, &a, &l2, "South", 0)
        .await
        .unwrap();
    let mut accounts = Vec::new();
    for role in Role::ALL {
        let (clinic, location) = match role {
            Role::SuperAdmin => (None, None),
            Role::ClinicLocationHead => (Some(&a), Some(&l1)),
            _ => (Some(&a), None),
        };
        let (user, email) = person(&stack, clinic, role, location, true).await;
        accounts.push((role, user, email, location.cloned()));
    }
    let (_, outsider_email) = person(&stack, Some(&b), Role::ClinicAdmin, None, true).await;
    let (nurse_l1, _) = person(&stack, Some(&a), Role::Nurse, Some(&l1), false).await;
    let (nurse_l2, _) = person(&stack, Some(&a), Role::Nurse, Some(&l2), false).await;
    let (doctor, _) = person(&stack, Some(&a), Role::Doctor, None, false).await;
    let (patient, _) = person(&stack, Some(&a), Role::Patient, None, false).await;
    let api = Api::serve(stack).await;
    let mut people = Vec::new();
    for (role, user, email, location) in accounts {
        let token = api.token(&email, DEMO_PASSWORD).await;
        people.push(Person {
            role,
            user,
            token,
            location,
        });
    }
    let outsider = api.token(&outsider_email, DEMO_PASSWORD).await;
    World {
        api,
        clock,
        a,
        b,
        l1,
        l2,
        people,
        outsider,
        nurse_l1,
        nurse_l2,
        doctor,
        patient,
    }
}

/// One clinics route exercised the way the table describes it.
#[derive(Debug, Clone, Copy)]
enum Case {
    GetClinic,
    PatchClinic,
    ListLocations,
    CreateLocation,
    GetLocation,
    PatchOwnLocation,
    PatchOtherLocation,
    DeleteLocation,
    ListMembers,
    AddPatient,
    AddDoctor,
    AddClinicAdmin,
    GetDoctor,
    GetPatient,
    ManageNurseHere,
    ManageNurseThere,
    ChangeDoctorToNurse,
    RemovePatient,
    RemoveClinicAdmin,
}

const CASES: [Case; 19] = [
    Case::GetClinic,
    Case::PatchClinic,
    Case::ListLocations,
    Case::CreateLocation,
    Case::GetLocation,
    Case::PatchOwnLocation,
    Case::PatchOtherLocation,
    Case::DeleteLocation,
    Case::ListMembers,
    Case::AddPatient,
    Case::AddDoctor,
    Case::AddClinicAdmin,
    Case::GetDoctor,
    Case::GetPatient,
    Case::ManageNurseHere,
    Case::ManageNurseThere,
    Case::ChangeDoctorToNurse,
    Case::RemovePatient,
    Case::RemoveClinicAdmin,
];

fn member_subject(role: Role, location: Option<&LocationId>) -> Subject<'_> {
    Subject {
        member_role: Some(role),
        location: location.map(LocationId::as_str),
        ..Default::default()
    }
}

/// The request for `case`, with fresh targets for anything the request would consume, and the
/// status the policy table predicts for `actor`.
async fn plan(
    w: &World,
    case: Case,
    actor: &Actor<'_>,
) -> (Method, String, Option<Value>, StatusCode) {
    let a = &w.a;
    let st = stack(&w.api);
    let ok = |resource, action, subject: &Subject<'_>, success| {
        if allowed(actor, resource, action, subject) {
            success
        } else {
            StatusCode::FORBIDDEN
        }
    };
    // For routes about one member: invisible members are 404, visible but forbidden 403.
    let on_member = |subject: &Subject<'_>, checks: &[(Action, Subject<'_>)], success| {
        if !allowed(actor, Resource::Member, Action::Read, subject) {
            StatusCode::NOT_FOUND
        } else if checks
            .iter()
            .all(|(act, s)| allowed(actor, Resource::Member, *act, s))
        {
            success
        } else {
            StatusCode::FORBIDDEN
        }
    };
    let none = Subject::default();
    let fresh_email = || format!("new-{}@tenancy.test", uuid::Uuid::new_v4().simple());
    match case {
        Case::GetClinic => (
            Method::GET,
            format!("/v1/clinics/{a}"),
            None,
            ok(Resource::Clinic, Action::Read, &none, StatusCode::OK),
        ),
        Case::PatchClinic => (
            Method::PATCH,
            format!("/v1/clinics/{a}"),
            Some(json!({"locale": "de-DE"})),
            ok(Resource::Clinic, Action::Update, &none, StatusCode::OK),
        ),
        Case::ListLocations => (
            Method::GET,
            format!("/v1/clinics/{a}/locations"),
            None,
            ok(Resource::Location, Action::Read, &none, StatusCode::OK),
        ),
        Case::CreateLocation => (
            Method::POST,
            format!("/v1/clinics/{a}/locations"),
            Some(json!({"name": "East"})),
            ok(
                Resource::Location,
                Action::Create,
                &none,
                StatusCode::CREATED,
            ),
        ),
        Case::GetLocation => (
            Method::GET,
            format!("/v1/clinics/{a}/locations/{}", w.l1),
            None,
            ok(Resource::Location, Action::Read, &none, StatusCode::OK),
        ),
        Case::PatchOwnLocation => {
            let s = Subject {
                location: Some(w.l1.as_str()),
                ..Default::default()
            };
            (
                Method::PATCH,
                format!("/v1/clinics/{a}/locations/{}", w.l1),
                Some(json!({"name": "North"})),
                ok(Resource::Location, Action::Update, &s, StatusCode::OK),
            )
        }
        Case::PatchOtherLocation => {
            let s = Subject {
                location: Some(w.l2.as_str()),
                ..Default::default()
            };
            (
                Method::PATCH,
                format!("/v1/clinics/{a}/locations/{}", w.l2),
                Some(json!({"name": "South"})),
                ok(Resource::Location, Action::Update, &s, StatusCode::OK),
            )
        }
        Case::DeleteLocation => {
            let l = LocationId::generate();
            put_location(&st.clients, &st.resources.table, a, &l, "Temporary", 0)
                .await
                .unwrap();
            let s = Subject {
                location: Some(l.as_str()),
                ..Default::default()
            };
            let expected = ok(
                Resource::Location,
                Action::Delete,
                &s,
                StatusCode::NO_CONTENT,
            );
            (
                Method::DELETE,
                format!("/v1/clinics/{a}/locations/{l}"),
                None,
                expected,
            )
        }
        Case::ListMembers => (
            Method::GET,
            format!("/v1/clinics/{a}/members"),
            None,
            StatusCode::OK,
        ),
        Case::AddPatient | Case::AddDoctor | Case::AddClinicAdmin => {
            let role = match case {
                Case::AddPatient => Role::Patient,
                Case::AddDoctor => Role::Doctor,
                _ => Role::ClinicAdmin,
            };
            let body = json!({"email": fresh_email(), "givenName": "New", "familyName": "Person", "role": role});
            (
                Method::POST,
                format!("/v1/clinics/{a}/members"),
                Some(body),
                ok(
                    Resource::Member,
                    Action::Create,
                    &member_subject(role, None),
                    StatusCode::CREATED,
                ),
            )
        }
        Case::GetDoctor => (
            Method::GET,
            format!("/v1/clinics/{a}/members/{}", w.doctor),
            None,
            on_member(&member_subject(Role::Doctor, None), &[], StatusCode::OK),
        ),
        Case::GetPatient => (
            Method::GET,
            format!("/v1/clinics/{a}/members/{}", w.patient),
            None,
            on_member(&member_subject(Role::Patient, None), &[], StatusCode::OK),
        ),
        Case::ManageNurseHere => {
            let s = member_subject(Role::Nurse, Some(&w.l1));
            (
                Method::PATCH,
                format!("/v1/clinics/{a}/members/{}", w.nurse_l1),
                Some(json!({"status": "ACTIVE"})),
                on_member(&s, &[(Action::Manage, s)], StatusCode::OK),
            )
        }
        Case::ManageNurseThere => {
            let s = member_subject(Role::Nurse, Some(&w.l2));
            (
                Method::PATCH,
                format!("/v1/clinics/{a}/members/{}", w.nurse_l2),
                Some(json!({"status": "ACTIVE"})),
                on_member(&s, &[(Action::Manage, s)], StatusCode::OK),
            )
        }
        Case::ChangeDoctorToNurse => {
            let (doc, _) = person(st, Some(a), Role::Doctor, None, false).await;
            let before = member_subject(Role::Doctor, None);
            let after = member_subject(Role::Nurse, None);
            let expected = on_member(
                &before,
                &[(Action::Update, before), (Action::Update, after)],
                StatusCode::OK,
            );
            (
                Method::PATCH,
                format!("/v1/clinics/{a}/members/{doc}"),
                Some(json!({"role": "NURSE"})),
                expected,
            )
        }
        Case::RemovePatient | Case::RemoveClinicAdmin => {
            let role = if matches!(case, Case::RemovePatient) {
                Role::Patient
            } else {
                Role::ClinicAdmin
            };
            let (target, _) = person(st, Some(a), role, None, false).await;
            let s = member_subject(role, None);
            (
                Method::DELETE,
                format!("/v1/clinics/{a}/members/{target}"),
                None,
                on_member(&s, &[(Action::Delete, s)], StatusCode::NO_CONTENT),
            )
        }
    }
}

#[tokio::test]
async fn every_role_on_every_clinics_route_gets_what_the_table_says() {
    let w = world().await;
    let mut mismatches = Vec::new();
    let mut cells = 0;
    for p in &w.people {
        let actor = Actor {
            role: p.role,
            user: p.user.as_str(),
            location: p.location.as_ref().map(LocationId::as_str),
        };
        for case in CASES {
            let (method, path, body, expected) = plan(&w, case, &actor).await;
            let got = call(&w.api, method.clone(), &path, body, &p.token).await;
            cells += 1;
            if got.status != expected {
                mismatches.push(format!(
                    "{} {case:?}: expected {expected}, got {} {}",
                    p.role, got.status, got.body
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {cells} cells differ from the table:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    assert_eq!(cells, 14 * CASES.len());
}

#[tokio::test]
async fn another_clinics_ids_are_indistinguishable_from_missing_ones() {
    let w = world().await;
    let st = stack(&w.api);
    let count_a = || async {
        let out = st
            .clients
            .dynamodb
            .query()
            .table_name(&st.resources.table)
            .key_condition_expression("pk = :p")
            .expression_attribute_values(":p", shared::db::s(shared::keys::clinic_pk(&w.a)))
            .send()
            .await
            .unwrap();
        // Canonical form: HashMap order is random, so sort attributes and items.
        let mut items: Vec<String> = out
            .items()
            .iter()
            .map(|i| {
                let mut kv: Vec<String> = i.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
                kv.sort();
                kv.join(",")
            })
            .collect();
        items.sort();
        items
    };
    let before = count_a().await;
    let missing_clinic = ClinicId::generate();
    let a = &w.a;
    // Every route of clinic A, as the admin of clinic B
    for case in CASES {
        let actor = Actor {
            role: Role::ClinicAdmin,
            user: "outsider",
            location: None,
        };
        let (method, path, body, _) = plan(&w, case, &actor).await;
        let before_case = count_a().await;
        let theirs = call(&w.api, method.clone(), &path, body.clone(), &w.outsider).await;
        let missing = call(
            &w.api,
            method,
            &path.replace(a.as_str(), missing_clinic.as_str()),
            body,
            &w.outsider,
        )
        .await;
        assert_eq!(theirs.status, StatusCode::NOT_FOUND, "{case:?}");
        assert_eq!(
            (
                &theirs.body["code"],
                &theirs.body["detail"],
                &theirs.body["title"]
            ),
            (
                &missing.body["code"],
                &missing.body["detail"],
                &missing.body["title"]
            ),
            "{case:?}"
        );
        assert_eq!(count_a().await, before_case, "{case:?} wrote into clinic A");
    }
    // Clinic A's location and member ids inside clinic B are unknown there too
    let b = &w.b;
    let admin_b = &w.outsider;
    for path in [
        format!("/v1/clinics/{b}/locations/{}", w.l1),
        format!("/v1/clinics/{b}/members/{}", w.doctor),
    ] {
        let r = call(&w.api, Method::GET, &path, None, admin_b).await;
        assert_eq!(
            (r.status, r.body["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("not_found")),
            "{path}"
        );
    }
    let r = call(
        &w.api,
        Method::DELETE,
        &format!("/v1/clinics/{b}/members/{}", w.doctor),
        None,
        admin_b,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Setup writes aside (fresh targets per case), nothing the outsider sent landed in A:
    // every item present before is unchanged.
    let after = count_a().await;
    assert!(before.iter().all(|i| after.contains(i)));
}

#[tokio::test]
async fn bodies_cannot_set_roles_ids_versions_or_audit_fields() {
    let w = world().await;
    let admin = &w
        .people
        .iter()
        .find(|p| p.role == Role::ClinicAdmin)
        .unwrap()
        .token;
    let patient = &w
        .people
        .iter()
        .find(|p| p.role == Role::Patient)
        .unwrap()
        .token;
    let a = &w.a;
    let cases: Vec<(Method, String, Value, &String)> = vec![
        (
            Method::PATCH,
            "/v1/users/me".into(),
            json!({"role": "SUPER_ADMIN"}),
            patient,
        ),
        (
            Method::PATCH,
            "/v1/users/me".into(),
            json!({"id": UserId::generate()}),
            patient,
        ),
        (
            Method::PATCH,
            "/v1/users/me".into(),
            json!({"version": 9}),
            patient,
        ),
        (
            Method::PATCH,
            "/v1/users/me".into(),
            json!({"email": "other@tenancy.test"}),
            patient,
        ),
        (
            Method::PATCH,
            "/v1/users/me".into(),
            json!({"clinicId": a}),
            patient,
        ),
        (
            Method::PATCH,
            format!("/v1/clinics/{a}"),
            json!({"id": ClinicId::generate()}),
            admin,
        ),
        (
            Method::PATCH,
            format!("/v1/clinics/{a}"),
            json!({"version": 1}),
            admin,
        ),
        (
            Method::PATCH,
            format!("/v1/clinics/{a}"),
            json!({"createdAt": "2020-01-01T00:00:00Z"}),
            admin,
        ),
        (
            Method::PATCH,
            format!("/v1/clinics/{a}"),
            json!({"status": "SUSPENDED"}),
            admin,
        ),
        (
            Method::POST,
            format!("/v1/clinics/{a}/members"),
            json!({"email": "x@tenancy.test", "givenName": "X", "familyName": "Y", "role": "NURSE", "clinicId": w.b}),
            admin,
        ),
        (
            Method::POST,
            format!("/v1/clinics/{a}/members"),
            json!({"email": "x@tenancy.test", "givenName": "X", "familyName": "Y", "role": "NURSE", "userId": UserId::generate()}),
            admin,
        ),
        (
            Method::PATCH,
            format!("/v1/clinics/{a}/members/{}", w.doctor),
            json!({"clinicId": w.b}),
            admin,
        ),
        (
            Method::PATCH,
            format!("/v1/clinics/{a}/members/{}", w.doctor),
            json!({"version": 3}),
            admin,
        ),
        (
            Method::POST,
            format!("/v1/clinics/{a}/locations"),
            json!({"name": "Z", "memberCount": 0}),
            admin,
        ),
    ];
    for (method, path, body, token) in cases {
        let r = call(&w.api, method.clone(), &path, Some(body.clone()), token).await;
        assert_eq!(
            (r.status, r.body["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_body")),
            "{method} {path} {body}"
        );
    }
    // A role outside the clinic's roles is refused too
    let r = call(&w.api, Method::POST, &format!("/v1/clinics/{a}/members"), Some(json!({"email": "y@tenancy.test", "givenName": "Y", "familyName": "Z", "role": "SUPER_ADMIN"})), admin).await;
    assert_eq!(r.body["errors"][0]["code"], "invalid_role");
}

#[tokio::test]
async fn removed_and_deactivated_members_lose_access_within_a_minute() {
    let w = world().await;
    let st = stack(&w.api);
    let admin = &w
        .people
        .iter()
        .find(|p| p.role == Role::ClinicAdmin)
        .unwrap()
        .token;
    let a = &w.a;
    for change in ["remove", "deactivate"] {
        let (user, email) = person(st, Some(a), Role::Nurse, None, true).await;
        let token = w.api.token(&email, DEMO_PASSWORD).await;
        // A second container whose cache has seen the membership
        let other = Stack::with_clock(st.clients.clone(), st.resources.clone(), w.clock.clone())
            .await
            .unwrap();
        let other = Api::serve(other).await;
        assert_eq!(
            call(
                &other,
                Method::GET,
                &format!("/v1/clinics/{a}"),
                None,
                &token
            )
            .await
            .status,
            StatusCode::OK
        );
        let r = match change {
            "remove" => {
                call(
                    &w.api,
                    Method::DELETE,
                    &format!("/v1/clinics/{a}/members/{user}"),
                    None,
                    admin,
                )
                .await
            }
            _ => {
                call(
                    &w.api,
                    Method::PATCH,
                    &format!("/v1/clinics/{a}/members/{user}"),
                    Some(json!({"status": "INACTIVE"})),
                    admin,
                )
                .await
            }
        };
        assert!(r.status.is_success(), "{change}: {}", r.body);
        // The container that made the change knows at once; the other within its cache period
        assert_eq!(
            call(
                &w.api,
                Method::GET,
                &format!("/v1/clinics/{a}"),
                None,
                &token
            )
            .await
            .status,
            StatusCode::NOT_FOUND,
            "{change}"
        );
        w.clock.advance(SignedDuration::from_secs(31));
        assert_eq!(
            call(
                &other,
                Method::GET,
                &format!("/v1/clinics/{a}"),
                None,
                &token
            )
            .await
            .status,
            StatusCode::NOT_FOUND,
            "{change}"
        );
    }
}

#[tokio::test]
async fn role_rules_hold() {
    let w = world().await;
    let token = |r: Role| w.people.iter().find(|p| p.role == r).unwrap().token.clone();
    let a = &w.a;
    let add = |role: &str| json!({"email": format!("r-{}@tenancy.test", uuid::Uuid::new_v4().simple()), "givenName": "R", "familyName": "S", "role": role});
    let members = format!("/v1/clinics/{a}/members");
    // A receptionist creates patients only
    assert_eq!(
        call(
            &w.api,
            Method::POST,
            &members,
            Some(add("PATIENT")),
            &token(Role::Receptionist)
        )
        .await
        .status,
        StatusCode::CREATED
    );
    assert_eq!(
        call(
            &w.api,
            Method::POST,
            &members,
            Some(add("NURSE")),
            &token(Role::Receptionist)
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    // A clinic admin creates staff but never a clinic admin
    assert_eq!(
        call(
            &w.api,
            Method::POST,
            &members,
            Some(add("DOCTOR")),
            &token(Role::ClinicAdmin)
        )
        .await
        .status,
        StatusCode::CREATED
    );
    assert_eq!(
        call(
            &w.api,
            Method::POST,
            &members,
            Some(add("CLINIC_ADMIN")),
            &token(Role::ClinicAdmin)
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    // ... nor promotes anyone to one
    let r = call(
        &w.api,
        Method::PATCH,
        &format!("{members}/{}", w.nurse_l1),
        Some(json!({"role": "CLINIC_ADMIN"})),
        &token(Role::ClinicAdmin),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // A location head manages staff of their own location only, and cannot move them away
    let head = token(Role::ClinicLocationHead);
    assert_eq!(
        call(
            &w.api,
            Method::PATCH,
            &format!("{members}/{}", w.nurse_l1),
            Some(json!({"status": "ACTIVE"})),
            &head
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(
        call(
            &w.api,
            Method::PATCH,
            &format!("{members}/{}", w.nurse_l2),
            Some(json!({"status": "INACTIVE"})),
            &head
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(
            &w.api,
            Method::PATCH,
            &format!("{members}/{}", w.nurse_l1),
            Some(json!({"locationId": w.l2})),
            &head
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    // Patients see doctors only
    let r = call(&w.api, Method::GET, &members, None, &token(Role::Patient)).await;
    let roles: Vec<&str> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert!(
        !roles.is_empty()
            && roles
                .iter()
                .all(|r| *r == "DOCTOR" || *r == "ASSISTANT_DOCTOR"),
        "{roles:?}"
    );
    // Staff see the directory without patients and without contact details
    let r = call(&w.api, Method::GET, &members, None, &token(Role::Nurse)).await;
    let items = r.body["items"].as_array().unwrap();
    assert!(items.iter().all(|m| m["role"] != "PATIENT"));
    assert!(items.iter().all(|m| m.get("email").is_none()
        || m["userId"] == json!(w.people.iter().find(|p| p.role == Role::Nurse).unwrap().user)));
}

#[tokio::test]
async fn locations_with_members_cannot_be_deleted_and_settings_are_validated() {
    let w = world().await;
    let admin = &w
        .people
        .iter()
        .find(|p| p.role == Role::ClinicAdmin)
        .unwrap()
        .token;
    let a = &w.a;
    let r = call(
        &w.api,
        Method::DELETE,
        &format!("/v1/clinics/{a}/locations/{}", w.l1),
        None,
        admin,
    )
    .await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (StatusCode::CONFLICT, Some("location_in_use"))
    );
    let r = call(
        &w.api,
        Method::PATCH,
        &format!("/v1/clinics/{a}"),
        Some(json!({"timeZone": "Mars/Base", "currency": "EURO", "name": ""})),
        admin,
    )
    .await;
    let fields: Vec<&str> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, vec!["name", "timeZone", "currency"]);
    let r = call(
        &w.api,
        Method::PATCH,
        &format!("/v1/clinics/{a}"),
        Some(json!({"timeZone": "America/Sao_Paulo", "currency": "BRL"})),
        admin,
    )
    .await;
    assert_eq!(
        (r.status, r.body["timeZone"].as_str()),
        (StatusCode::OK, Some("America/Sao_Paulo"))
    );
    // A member assigned to a location of another clinic is refused
    let r = call(&w.api, Method::POST, &format!("/v1/clinics/{a}/members"), Some(json!({"email": "loc@tenancy.test", "givenName": "L", "familyName": "M", "role": "NURSE", "locationId": LocationId::generate()})), admin).await;
    assert_eq!(r.body["errors"][0]["code"], "unknown_location");
}

#[tokio::test]
async fn super_admin_creates_a_clinic_with_its_first_admin() {
    let w = world().await;
    let sup = &w
        .people
        .iter()
        .find(|p| p.role == Role::SuperAdmin)
        .unwrap()
        .token;
    let admin = &w
        .people
        .iter()
        .find(|p| p.role == Role::ClinicAdmin)
        .unwrap()
        .token;
    let body = json!({"name": "Third", "timeZone": "Europe/Paris", "currency": "EUR", "admin": {"email": "third.admin@tenancy.test", "givenName": "T", "familyName": "A"}});
    assert_eq!(
        call(
            &w.api,
            Method::POST,
            "/v1/clinics",
            Some(body.clone()),
            admin
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    let r = call(&w.api, Method::POST, "/v1/clinics", Some(body), sup).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["admin"]["status"], "PENDING");
    assert_eq!(r.body["clinic"]["selfRegistration"], false);
    assert_eq!(
        r.body["clinic"]["staffMfaRequired"], true,
        "a new clinic's staff sign in in two steps"
    );
    let id = r.body["clinic"]["id"].as_str().unwrap();
    let admin_id = UserId::parse(r.body["admin"]["userId"].as_str().unwrap()).unwrap();
    // The invitation went to the queue as a job naming its link: no address, no token
    let st = stack(&w.api);
    let (token, job) = link_for(st, &admin_id, "membership_invitation").await;
    let job = job.to_string();
    assert!(!job.contains("third.admin@tenancy.test") && !job.contains(&token));
    // The invited admin cannot log in before accepting (no password yet), then chooses one by
    // accepting, and runs the clinic
    let r = w
        .api
        .post(
            "/v1/auth/login",
            json!({"email": "third.admin@tenancy.test", "password": "anything at all"}),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = w
        .api
        .post("/v1/auth/memberships/accept", json!({"token": token}), None)
        .await;
    assert_eq!(
        (r.status, r.body["errors"][0]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("required")),
        "a new account must choose a password"
    );
    let r = w
        .api
        .post(
            "/v1/auth/memberships/accept",
            json!({"token": token, "password": "third clinic passphrase"}),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        (r.body["status"].as_str(), r.body["passwordSet"].as_bool()),
        (Some("ACTIVE"), Some(true))
    );
    // The password alone does not let the new admin act in the clinic: two-step sign-in is
    // required of its staff. They set up an authenticator and sign in again with a code.
    let password_only = w
        .api
        .token("third.admin@tenancy.test", "third clinic passphrase")
        .await;
    let r = call(
        &w.api,
        Method::GET,
        &format!("/v1/clinics/{id}"),
        None,
        &password_only,
    )
    .await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("mfa_required")),
        "{}",
        r.body
    );
    let (secret, _) =
        blackbox::enrol_authenticator(&w.api, &password_only, "third clinic passphrase").await;
    w.clock.advance(SignedDuration::from_secs(30));
    let third = w
        .api
        .token_with(
            "third.admin@tenancy.test",
            "third clinic passphrase",
            &secret,
        )
        .await;
    assert_eq!(
        call(
            &w.api,
            Method::GET,
            &format!("/v1/clinics/{id}"),
            None,
            &third
        )
        .await
        .status,
        StatusCode::OK
    );
    // The new clinic takes no self-registration until its admin opens it
    let reg = json!({"clinicId": id, "email": format!("walk-in.{}@tenancy.test", &id[..8]),
                     "password": "walk-in passphrase", "givenName": "Walk", "familyName": "In"});
    let r = w.api.post("/v1/auth/register", reg.clone(), None).await;
    assert_eq!(
        (r.status, r.body["errors"][0]["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("registration_closed")
        )
    );
    let unknown = json!({"clinicId": ClinicId::generate(), "email": "x@tenancy.test",
                         "password": "walk-in passphrase", "givenName": "Walk", "familyName": "In"});
    let r = w.api.post("/v1/auth/register", unknown, None).await;
    assert_eq!(
        r.body["errors"][0]["code"], "registration_closed",
        "one answer for both"
    );
    let r = call(
        &w.api,
        Method::PATCH,
        &format!("/v1/clinics/{id}"),
        Some(json!({"selfRegistration": true})),
        &third,
    )
    .await;
    assert_eq!(r.body["selfRegistration"], true, "{}", r.body);
    let r = w.api.post("/v1/auth/register", reg, None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    // Super admins list every clinic; others only theirs
    let all = call(&w.api, Method::GET, "/v1/clinics", None, sup).await;
    assert!(all.body["items"].as_array().unwrap().len() >= 3);
    let mine = call(&w.api, Method::GET, "/v1/clinics", None, &third).await;
    assert_eq!(mine.body["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn profiles_are_encrypted_at_rest_and_cursors_are_bound_to_their_clinic() {
    let w = world().await;
    let st = stack(&w.api);
    let patient = &w
        .people
        .iter()
        .find(|p| p.role == Role::Patient)
        .unwrap()
        .token;
    let canary = json!({
        "givenName": "ProfileCanaryGiven", "familyName": "ProfileCanaryFamily", "phone": "+4915112345678",
        "birthDate": "1961-06-16", "gender": "undisclosed",
        "address": {"line1": "CanaryStreet 9", "city": "CanaryCity", "country": "DE"},
        "emergencyContact": {"name": "CanaryContact", "phone": "+4915187654321"}
    });
    let r = w
        .api
        .with_body(Method::PATCH, "/v1/users/me", canary, Some(patient))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["address"]["city"], "CanaryCity");
    let me = w.api.get("/v1/users/me", Some(patient)).await;
    assert_eq!(me.body["emergencyContact"]["name"], "CanaryContact");
    let raw = format!(
        "{:?}",
        st.clients
            .dynamodb
            .scan()
            .table_name(&st.resources.table)
            .send()
            .await
            .unwrap()
            .items()
    );
    for plain in [
        "Canary",
        "4915112345678",
        "4915187654321",
        "1961-06-16",
        "undisclosed",
    ] {
        assert!(!raw.contains(plain), "{plain} stored in plaintext");
    }
    // Patient lookup by exact phone uses the blind index (an admin may see patients)
    let admin = &w
        .people
        .iter()
        .find(|p| p.role == Role::ClinicAdmin)
        .unwrap()
        .token;
    let found = call(
        &w.api,
        Method::POST,
        &format!("/v1/clinics/{}/members/search", w.a),
        Some(json!({"phone": "+4915112345678"})),
        admin,
    )
    .await;
    assert_eq!(
        found.body["items"].as_array().unwrap().len(),
        1,
        "{}",
        found.body
    );
    // Clearing a field removes it
    let r = w
        .api
        .with_body(
            Method::PATCH,
            "/v1/users/me",
            json!({"phone": null}),
            Some(patient),
        )
        .await;
    assert!(r.body.get("phone").is_none());
    let gone = call(
        &w.api,
        Method::POST,
        &format!("/v1/clinics/{}/members/search", w.a),
        Some(json!({"phone": "+4915112345678"})),
        admin,
    )
    .await;
    assert!(gone.body["items"].as_array().unwrap().is_empty());
    // A cursor from clinic A is refused in clinic B (the super admin may read both)
    let sup = &w
        .people
        .iter()
        .find(|p| p.role == Role::SuperAdmin)
        .unwrap()
        .token;
    let page = w
        .api
        .get(&format!("/v1/clinics/{}/members?limit=2", w.a), Some(sup))
        .await;
    let cursor = page.body["nextCursor"]
        .as_str()
        .expect("a next page")
        .to_string();
    let next = w
        .api
        .get(
            &format!("/v1/clinics/{}/members?limit=2&cursor={cursor}", w.a),
            Some(sup),
        )
        .await;
    assert_eq!(next.status, StatusCode::OK);
    let elsewhere = w
        .api
        .get(
            &format!("/v1/clinics/{}/members?limit=2&cursor={cursor}", w.b),
            Some(sup),
        )
        .await;
    assert_eq!(
        (elsewhere.status, elsewhere.body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_cursor"))
    );
    let other_filter = w
        .api
        .get(
            &format!(
                "/v1/clinics/{}/members?limit=2&role=NURSE&cursor={cursor}",
                w.a
            ),
            Some(sup),
        )
        .await;
    assert_eq!(other_filter.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn one_person_can_hold_different_roles_in_different_clinics() {
    let w = world().await;
    let st = stack(&w.api);
    // GIVEN a nurse of clinic A, added to clinic B as a doctor by B's admin (found by email)
    let (nurse, email) = person(st, Some(&w.a), Role::Nurse, None, true).await;
    let body = json!({"email": email.to_uppercase(), "givenName": "Ignored", "familyName": "Ignored", "role": "DOCTOR"});
    let r = call(
        &w.api,
        Method::POST,
        &format!("/v1/clinics/{}/members", w.b),
        Some(body.clone()),
        &w.outsider,
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(
        (r.body["userId"].as_str(), r.body["status"].as_str()),
        (Some(nurse.as_str()), Some("PENDING"))
    );
    let again = call(
        &w.api,
        Method::POST,
        &format!("/v1/clinics/{}/members", w.b),
        Some(body),
        &w.outsider,
    )
    .await;
    assert_eq!(
        (again.status, again.body["code"].as_str()),
        (StatusCode::CONFLICT, Some("already_member"))
    );
    // WHEN they accept in the app (their address is proven)
    let token = w.api.token(&email, DEMO_PASSWORD).await;
    let accepted = call(
        &w.api,
        Method::POST,
        &format!("/v1/users/me/memberships/{}/accept", w.b),
        None,
        &token,
    )
    .await;
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.body);
    // they are told of the membership they gained
    let notice = job_for(st, &nurse, "membership-granted").await;
    assert_eq!(notice["params"]["role"], "DOCTOR");
    // THEN their memberships list both, each with its own role
    let r = w.api.get("/v1/users/me/memberships", Some(&token)).await;
    let mut got: Vec<(String, String)> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["clinicId"].as_str().unwrap().to_string(),
                m["role"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort();
    let mut want = vec![
        (w.a.to_string(), "NURSE".to_string()),
        (w.b.to_string(), "DOCTOR".to_string()),
    ];
    want.sort();
    assert_eq!(got, want);
    // AND each clinic sees them with that clinic's role only
    let in_b = call(
        &w.api,
        Method::GET,
        &format!("/v1/clinics/{}/members/{nurse}", w.b),
        None,
        &w.outsider,
    )
    .await;
    assert_eq!(in_b.body["role"], "DOCTOR");
}

#[tokio::test]
async fn profile_updates_are_validated_field_by_field() {
    let w = world().await;
    let patient = &w
        .people
        .iter()
        .find(|p| p.role == Role::Patient)
        .unwrap()
        .token;
    let r = w
        .api
        .with_body(
            Method::PATCH,
            "/v1/users/me",
            json!({"givenName": "", "phone": "12", "birthDate": "2999-01-01", "gender": "robot",
                   "address": {"line1": "x", "city": "y", "country": "Germany"},
                   "emergencyContact": {"name": "z", "phone": "nope"}}),
            Some(patient),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<&str> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        vec![
            "givenName",
            "phone",
            "birthDate",
            "gender",
            "address",
            "emergencyContact"
        ]
    );
    let r = w
        .api
        .with_body(Method::PATCH, "/v1/users/me", json!({}), Some(patient))
        .await;
    assert_eq!(r.body["code"], "empty_update");
    let r = w
        .api
        .with_body(
            Method::PATCH,
            "/v1/users/me",
            json!({"address": {"line1": "a", "city": "b", "country": "DE", "planet": "Earth"}}),
            Some(patient),
        )
        .await;
    assert_eq!(r.body["code"], "invalid_body");
    // Setting the same phone twice keeps one lookup entry (no duplicate operations)
    for _ in 0..2 {
        let r = w
            .api
            .with_body(
                Method::PATCH,
                "/v1/users/me",
                json!({"phone": "+4930555111"}),
                Some(patient),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let ok = w
        .api
        .with_body(
            Method::PATCH,
            "/v1/users/me",
            json!({"givenName": "  Paula "}),
            Some(patient),
        )
        .await;
    assert_eq!(
        (ok.status, ok.body["givenName"].as_str()),
        (StatusCode::OK, Some("Paula"))
    );
    // The change is announced with field names only
    let st = stack(&w.api);
    let raw = format!(
        "{:?}",
        st.clients
            .dynamodb
            .scan()
            .table_name(&st.resources.table)
            .send()
            .await
            .unwrap()
            .items()
    );
    assert!(raw.contains("user.updated") && !raw.contains("Paula"));
}

#[tokio::test]
async fn review_fixes_hold() {
    let w = world().await;
    let token = |r: Role| w.people.iter().find(|p| p.role == r).unwrap().token.clone();
    let a = &w.a;
    let members = format!("/v1/clinics/{a}/members");
    // An Idempotency-Key replays only to the user who used it
    let body = json!({"email": "idem.member@tenancy.test", "givenName": "I", "familyName": "M", "role": "NURSE"}).to_string().into_bytes();
    let admin = format!("Bearer {}", token(Role::ClinicAdmin));
    let sup = format!("Bearer {}", token(Role::SuperAdmin));
    let first = w
        .api
        .send(
            Method::POST,
            &members,
            Some(body.clone()),
            &[("authorization", &admin), ("idempotency-key", "k-1")],
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    let replay = w
        .api
        .send(
            Method::POST,
            &members,
            Some(body.clone()),
            &[("authorization", &admin), ("idempotency-key", "k-1")],
        )
        .await;
    assert_eq!(
        (
            replay.status,
            replay.headers.contains_key("idempotent-replayed")
        ),
        (StatusCode::CREATED, true)
    );
    let other_user = w
        .api
        .send(
            Method::POST,
            &members,
            Some(body.clone()),
            &[("authorization", &sup), ("idempotency-key", "k-1")],
        )
        .await;
    assert_eq!(
        (other_user.status, other_user.body["code"].as_str()),
        (StatusCode::CONFLICT, Some("already_member"))
    );
    let anonymous = w
        .api
        .send(
            Method::POST,
            &members,
            Some(body),
            &[("idempotency-key", "k-1")],
        )
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert!(!anonymous.headers.contains_key("idempotent-replayed"));
    // Query parameters are checked with problem answers
    let r = w
        .api
        .get(
            &format!("{members}?bogus=1"),
            Some(&token(Role::ClinicAdmin)),
        )
        .await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_query"))
    );
    let r = w
        .api
        .get(
            &format!("{members}?limit=abc"),
            Some(&token(Role::ClinicAdmin)),
        )
        .await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_query"))
    );
    // A super admin reaches only clinics that exist
    let ghost = ClinicId::generate();
    let r = w
        .api
        .get(
            &format!("/v1/clinics/{ghost}/members"),
            Some(&token(Role::SuperAdmin)),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Nobody changes their own membership; a location head manages no admin or head
    let head = w
        .people
        .iter()
        .find(|p| p.role == Role::ClinicLocationHead)
        .unwrap();
    let r = w
        .api
        .with_body(
            Method::PATCH,
            &format!("{members}/{}", head.user),
            json!({"status": "INACTIVE"}),
            Some(&head.token),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let adm = w
        .people
        .iter()
        .find(|p| p.role == Role::ClinicAdmin)
        .unwrap();
    let r = w
        .api
        .send(
            Method::DELETE,
            &format!("{members}/{}", adm.user),
            None,
            &[("authorization", &admin)],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Names cannot be removed
    let r = w
        .api
        .with_body(
            Method::PATCH,
            "/v1/users/me",
            json!({"givenName": null}),
            Some(&token(Role::Patient)),
        )
        .await;
    assert_eq!(r.body["errors"][0]["code"], "required");
}

#[tokio::test]
async fn racing_clinic_creations_never_leave_a_clinic_without_its_admin() {
    let w = Arc::new(world().await);
    let sup = w
        .people
        .iter()
        .find(|p| p.role == Role::SuperAdmin)
        .unwrap()
        .token
        .clone();
    // GIVEN eight concurrent creations naming the same brand-new admin
    let mut tasks = Vec::new();
    for i in 0..8 {
        let w = w.clone();
        let sup = sup.clone();
        tasks.push(tokio::spawn(async move {
            let body = json!({"name": format!("Race {i}"), "timeZone": "Europe/Rome", "currency": "EUR",
                              "admin": {"email": "race.admin@tenancy.test", "givenName": "R", "familyName": "A"}});
            call(&w.api, Method::POST, "/v1/clinics", Some(body), &sup).await.status
        }));
    }
    for t in tasks {
        let status = t.await.unwrap();
        assert!(
            matches!(status, StatusCode::CREATED | StatusCode::CONFLICT),
            "{status}"
        );
    }
    // THEN every clinic that exists has that admin as an active member: a creation that lost
    // the race for the new identity rolled back whole
    let all = call(&w.api, Method::GET, "/v1/clinics?limit=100", None, &sup).await;
    let races: Vec<&str> = all.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"].as_str().unwrap().starts_with("Race"))
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert!(!races.is_empty());
    for id in races {
        let members = call(
            &w.api,
            Method::GET,
            &format!("/v1/clinics/{id}/members?role=CLINIC_ADMIN"),
            None,
            &sup,
        )
        .await;
        assert_eq!(
            members.body["items"].as_array().unwrap().len(),
            1,
            "clinic {id} has no admin"
        );
    }
}

#[tokio::test]
async fn concurrent_updates_are_guarded_by_the_version() {
    let w = Arc::new(world().await);
    let admin = w
        .people
        .iter()
        .find(|p| p.role == Role::ClinicAdmin)
        .unwrap()
        .token
        .clone();
    let path = format!("/v1/clinics/{}", w.a);
    let before = call(&w.api, Method::GET, &path, None, &admin).await.body["version"]
        .as_i64()
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..6 {
        let (w, admin, path) = (w.clone(), admin.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            let r = call(
                &w.api,
                Method::PATCH,
                &path,
                Some(json!({"name": format!("Clinic A{i}")})),
                &admin,
            )
            .await;
            (r.status, r.body["code"].as_str().map(str::to_string))
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            (StatusCode::OK, _) => ok += 1,
            (StatusCode::CONFLICT, Some(code)) => assert_eq!(code, "version_conflict"),
            other => panic!("unexpected {other:?}"),
        }
    }
    // Every success bumped the version once; no lost update went unnoticed.
    assert!(ok >= 1);
    let after = call(&w.api, Method::GET, &path, None, &admin).await.body["version"]
        .as_i64()
        .unwrap();
    assert_eq!(after, before + ok);
}

/// Every member of one role, read page by page with `limit`, and the number of pages.
async fn members_by_role(w: &World, token: &str, role: &str, limit: u32) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut pages = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/clinics/{}/members?role={role}&limit={limit}", w.a);
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let r = call(&w.api, Method::GET, &path, None, token).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        pages += 1;
        for m in r.body["items"].as_array().unwrap() {
            assert_eq!(m["role"], role, "{m}");
            ids.push(m["userId"].as_str().unwrap().to_string());
        }
        match r.body["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
        assert!(pages < 20, "paging does not end");
    }
    (ids, pages)
}

#[tokio::test]
async fn lists_by_role_read_only_that_role_and_follow_role_changes() {
    let w = world().await;
    let admin = &w
        .people
        .iter()
        .find(|p| p.role == Role::ClinicAdmin)
        .unwrap()
        .token;
    // GIVEN a clinic whose patients outnumber its nurses
    for _ in 0..6 {
        person(stack(&w.api), Some(&w.a), Role::Patient, None, false).await;
    }
    // WHEN the admin lists nurses one at a time
    let (nurses, pages) = members_by_role(&w, admin, "NURSE", 1).await;
    // THEN each page holds a nurse (no empty pages from filtering other roles after the
    // limit), and the last page may only be the empty end of the list
    assert_eq!(nurses.len(), 3, "{nurses:?}");
    assert!(pages <= nurses.len() + 1, "{pages} pages for {nurses:?}");
    assert!(nurses.contains(&w.nurse_l1.to_string()));
    // WHEN the doctor becomes a nurse
    let path = format!("/v1/clinics/{}/members/{}", w.a, w.doctor);
    let r = call(
        &w.api,
        Method::PATCH,
        &path,
        Some(json!({"role": "NURSE"})),
        admin,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // THEN the lists follow: one more nurse, and the doctors' list no longer has them
    let (nurses, _) = members_by_role(&w, admin, "NURSE", 2).await;
    assert_eq!(nurses.len(), 4, "{nurses:?}");
    assert!(nurses.contains(&w.doctor.to_string()));
    let (doctors, _) = members_by_role(&w, admin, "DOCTOR", 10).await;
    assert!(!doctors.contains(&w.doctor.to_string()), "{doctors:?}");
}

#[tokio::test]
async fn cells_written_out_by_hand_for_every_role() {
    // The role walk above derives its expectations from the policy table; these are read off
    // ROLES.md by hand, so a wrong row in the table cannot make both agree.
    use StatusCode as S;
    let w = world().await;
    let a = &w.a;
    // (role, list locations, create a location, patch the clinic, list doctors, billing analytics)
    #[rustfmt::skip]
    let cells: [(Role, [StatusCode; 5]); 14] = [
        (Role::SuperAdmin,         [S::OK, S::CREATED,   S::OK,        S::OK, S::OK]),
        (Role::ClinicAdmin,        [S::OK, S::CREATED,   S::OK,        S::OK, S::OK]),
        (Role::ClinicLocationHead, [S::OK, S::FORBIDDEN, S::FORBIDDEN, S::OK, S::OK]),
        (Role::Doctor,             [S::OK, S::FORBIDDEN, S::FORBIDDEN, S::OK, S::FORBIDDEN]),
        (Role::AssistantDoctor,    [S::OK, S::FORBIDDEN, S::FORBIDDEN, S::OK, S::FORBIDDEN]),
        (Role::Nurse,              [S::OK, S::FORBIDDEN, S::FORBIDDEN, S::OK, S::FORBIDDEN]),
        (Role::Receptionist,       [S::OK, S::FORBIDDEN, S::FORBIDDEN, S::OK, S::FORBIDDEN]),
        (Role::Pharmacist,         [S::OK, S::FORBIDDEN, S::FORBIDDEN, S::OK, S::FORBIDDEN]),
        (Role::Therapist,          [S::OK, S::FORBIDDEN, S::FORBIDDEN, S::OK, S::FORBIDDEN]),
        (Role::LabTechnician,      [S::OK, S::FORBIDDEN, S::FORBIDDEN, S::OK, S::FORBIDDEN]),
        (Role::FinanceBilling,     [S::OK, S::FORBIDDEN, S::FORBIDDEN, S::OK, S::OK]),
        (Role::SupportStaff,       [S::OK, S::FORBIDDEN, S::FORBIDDEN, S::OK, S::FORBIDDEN]),
        (Role::Counselor,          [S::OK, S::FORBIDDEN, S::FORBIDDEN, S::OK, S::FORBIDDEN]),
        (Role::Patient,            [S::OK, S::FORBIDDEN, S::FORBIDDEN, S::OK, S::FORBIDDEN]),
    ];
    for (role, expected) in cells {
        let token = &w.people.iter().find(|p| p.role == role).unwrap().token;
        let requests = [
            (Method::GET, format!("/v1/clinics/{a}/locations"), None),
            (
                Method::POST,
                format!("/v1/clinics/{a}/locations"),
                Some(json!({"name": format!("By {role:?}")})),
            ),
            (
                Method::PATCH,
                format!("/v1/clinics/{a}"),
                Some(json!({"locale": "de-DE"})),
            ),
            (
                Method::GET,
                format!("/v1/clinics/{a}/members?role=DOCTOR"),
                None,
            ),
            (
                Method::GET,
                format!("/v1/clinics/{a}/billing/analytics"),
                None,
            ),
        ];
        for ((method, path, body), want) in requests.into_iter().zip(expected) {
            let r = call(&w.api, method.clone(), &path, body, token).await;
            assert_eq!(r.status, want, "{role:?} {method} {path}: {}", r.body);
        }
    }
}

#[tokio::test]
async fn a_demoted_super_admin_loses_the_role_within_the_cache_period() {
    // GIVEN a super admin signed in, who can open any clinic
    let w = world().await;
    let sa = w
        .people
        .iter()
        .find(|p| p.role == Role::SuperAdmin)
        .unwrap();
    let path = format!("/v1/clinics/{}", w.b);
    let r = call(&w.api, Method::GET, &path, None, &sa.token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // WHEN an operator takes the platform role away (on the user, where it lives)
    let stack = stack(&w.api);
    stack
        .clients
        .dynamodb
        .update_item()
        .table_name(&stack.resources.table)
        .key("pk", shared::db::s(shared::keys::user_pk(&sa.user)))
        .key("sk", shared::db::s(shared::keys::PROFILE_SK))
        .update_expression("REMOVE platformRole")
        .send()
        .await
        .unwrap();
    // THEN once the session check's cache period has passed, the same token is only a
    // stranger to the clinic: the role was never copied into the session
    w.clock.advance(SignedDuration::from_secs(31));
    let r = call(&w.api, Method::GET, &path, None, &sa.token).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
}

fn admin_of_a(w: &World) -> &str {
    &w.people
        .iter()
        .find(|p| p.role == Role::ClinicAdmin)
        .unwrap()
        .token
}

#[tokio::test]
async fn an_address_registered_in_advance_does_not_make_its_registrant_the_clinics_doctor() {
    let w = world().await;
    let st = stack(&w.api);
    let bob = format!(
        "dr.bob.{}@hospital.example",
        &UserId::generate().as_str()[..8]
    );
    // GIVEN an attacker who registered the doctor's address as a patient of clinic B
    let r = w
        .api
        .post(
            "/v1/auth/register",
            json!({"clinicId": w.b, "email": bob, "password": "attacker passphrase",
                   "givenName": "Not", "familyName": "Bob"}),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["user"]["emailVerified"], false);
    let account = UserId::parse(r.body["user"]["id"].as_str().unwrap()).unwrap();
    let attacker = w.api.token(&bob, "attacker passphrase").await;
    // WHEN clinic A's admin adds that address as a doctor
    let r = call(
        &w.api,
        Method::POST,
        &format!("/v1/clinics/{}/members", w.a),
        Some(json!({"email": bob, "givenName": "Bob", "familyName": "Doctor", "role": "DOCTOR"})),
        admin_of_a(&w),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["status"], "PENDING");
    // THEN the attacker's account is not the clinic's doctor, and cannot accept in the app
    assert_eq!(
        call(
            &w.api,
            Method::GET,
            &format!("/v1/clinics/{}", w.a),
            None,
            &attacker
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    let r = call(
        &w.api,
        Method::POST,
        &format!("/v1/users/me/memberships/{}/accept", w.a),
        None,
        &attacker,
    )
    .await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("email_unverified"))
    );
    // AND the address's owner accepts through the link sent to it, choosing the password
    let (token, job) = link_for(st, &account, "membership_invitation").await;
    assert!(!job.to_string().contains(&token), "no token in the queue");
    let r = w
        .api
        .post("/v1/auth/memberships/accept", json!({"token": token}), None)
        .await;
    assert_eq!(r.body["errors"][0]["code"], "required", "{}", r.body);
    let r = w
        .api
        .post(
            "/v1/auth/memberships/accept",
            json!({"token": token, "password": "bob's own passphrase"}),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["passwordSet"], true);
    // so the attacker's session and password are gone, and the link is spent
    assert_eq!(
        w.api.get("/v1/auth/sessions", Some(&attacker)).await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = w
        .api
        .post(
            "/v1/auth/login",
            json!({"email": bob, "password": "attacker passphrase"}),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = w
        .api
        .post(
            "/v1/auth/memberships/accept",
            json!({"token": token, "password": "bob's own passphrase"}),
            None,
        )
        .await;
    assert_eq!(r.body["code"], "invalid_invitation");
    let doctor = w.api.token(&bob, "bob's own passphrase").await;
    let me = call(
        &w.api,
        Method::GET,
        &format!("/v1/clinics/{}/members/{account}", w.a),
        None,
        &doctor,
    )
    .await;
    assert_eq!(
        (
            me.status,
            me.body["role"].as_str(),
            me.body["status"].as_str()
        ),
        (StatusCode::OK, Some("DOCTOR"), Some("ACTIVE"))
    );
    let notice = job_for(st, &account, "membership-granted").await;
    assert_eq!(notice["params"]["clinicId"], w.a.as_str());
}

#[tokio::test]
async fn adding_a_member_answers_alike_whether_or_not_the_address_has_an_account() {
    let w = world().await;
    let st = stack(&w.api);
    // One address has an account in clinic B (with its own names), the other none
    let (_, known) = person(st, Some(&w.b), Role::Patient, None, true).await;
    let unknown = format!("nobody.{}@tenancy.test", &UserId::generate().as_str()[..8]);
    let add = |email: &str| json!({"email": email, "givenName": "Sent", "familyName": "Name", "role": "PATIENT"});
    let path = format!("/v1/clinics/{}/members", w.a);
    let a = call(
        &w.api,
        Method::POST,
        &path,
        Some(add(&known)),
        admin_of_a(&w),
    )
    .await;
    let b = call(
        &w.api,
        Method::POST,
        &path,
        Some(add(&unknown)),
        admin_of_a(&w),
    )
    .await;
    let shape = |v: &Value| {
        let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(
        (a.status, b.status),
        (StatusCode::CREATED, StatusCode::CREATED)
    );
    assert_eq!(shape(&a.body), shape(&b.body));
    for r in [&a, &b] {
        assert_eq!(
            (r.body["status"].as_str(), r.body["givenName"].as_str()),
            (Some("PENDING"), Some("Sent"))
        );
        assert!(r.body.get("invited").is_none());
    }
}

#[tokio::test]
async fn members_are_searched_by_a_body_and_unproven_addresses_are_never_found() {
    let w = world().await;
    let st = stack(&w.api);
    let admin = admin_of_a(&w);
    let (member, email) = person(st, Some(&w.a), Role::Patient, None, true).await;
    // Addresses never sit in a URL
    let r = w
        .api
        .get(
            &format!("/v1/clinics/{}/members?email={email}", w.a),
            Some(admin),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let search = format!("/v1/clinics/{}/members/search", w.a);
    let r = call(
        &w.api,
        Method::POST,
        &search,
        Some(json!({"email": email.to_uppercase()})),
        admin,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["items"][0]["userId"], member.as_str());
    let r = call(&w.api, Method::POST, &search, Some(json!({})), admin).await;
    assert_eq!(r.body["code"], "empty_search");
    let r = call(
        &w.api,
        Method::POST,
        &search,
        Some(json!({"phone": "0301234"})),
        admin,
    )
    .await;
    assert_eq!(r.body["errors"][0]["code"], "invalid_phone");
    // A patient who registered but has not proven the address is not found until they do
    let fresh = format!("fresh.{}@tenancy.test", &UserId::generate().as_str()[..8]);
    let r = w
        .api
        .post(
            "/v1/auth/register",
            json!({"clinicId": w.a, "email": fresh, "password": "fresh patient passphrase",
                   "givenName": "Fresh", "familyName": "Patient"}),
            None,
        )
        .await;
    let fresh_id = UserId::parse(r.body["user"]["id"].as_str().unwrap()).unwrap();
    let found = |r: &blackbox::Reply| r.body["items"].as_array().unwrap().len();
    let r = call(
        &w.api,
        Method::POST,
        &search,
        Some(json!({"email": fresh})),
        admin,
    )
    .await;
    assert_eq!(found(&r), 0);
    let (token, job) = link_for(st, &fresh_id, "email_verification").await;
    assert!(!job.to_string().contains(&fresh));
    let v = w
        .api
        .post("/v1/auth/email/verify", json!({"token": token}), None)
        .await;
    assert_eq!(v.status, StatusCode::NO_CONTENT, "{}", v.body);
    let r = call(
        &w.api,
        Method::POST,
        &search,
        Some(json!({"email": fresh})),
        admin,
    )
    .await;
    assert_eq!(found(&r), 1);
}

#[tokio::test]
async fn a_changed_role_is_told_to_its_member() {
    let w = world().await;
    let st = stack(&w.api);
    let r = call(
        &w.api,
        Method::PATCH,
        &format!("/v1/clinics/{}/members/{}", w.a, w.nurse_l2),
        Some(json!({"role": "DOCTOR"})),
        admin_of_a(&w),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let notice = job_for(st, &w.nurse_l2, "role-changed").await;
    assert_eq!(
        (
            notice["params"]["role"].as_str(),
            notice["params"]["clinicId"].as_str()
        ),
        (Some("DOCTOR"), Some(w.a.as_str()))
    );
}
