//! Audit completeness. The OpenAPI document marks every operation that returns or changes
//! protected health information with `x-phi` and the audit action it records; this walk takes
//! each marked operation from the document the gateway serves, runs its recipe, and checks
//! that the request left exactly one audit record, with that action, naming the resources
//! involved. A PHI operation added without a recipe fails the walk.

use blackbox::{
    Api, Reply, account,
    audit::{attr, audited, ids_of},
    call, demo_slots, person,
};
use http::{Method, StatusCode};
use local_stack::{DEMO_CLINIC_ID, DEMO_PASSWORD, DEMO_SUPER_ADMIN_TOTP, Stack, demo_user_id};
use serde_json::{Value, json};
use shared::{db::Item, ids::ClinicId, policy::Role};

fn id(r: &Reply, pointer: &str) -> String {
    r.body
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{pointer} in {}", r.body))
        .to_string()
}

/// What the walk sets up once: people, an appointment with text and a note, two records.
struct World<'a> {
    api: &'a Api,
    stack: &'a Stack,
    admin: String,
    doctor: String,
    reception: String,
    super_admin: String,
    patient: String,
    patient_token: String,
    appointment: String,
    to_confirm: String,
    slot: String,
    note: String,
    record: String,
    removable: String,
    member: String,
}

const CLINIC: &str = DEMO_CLINIC_ID;

fn condition(name: &str) -> Value {
    json!({"data": {"name": name, "condition": {"system": "icd-10", "code": "E11.9"}, "clinicalStatus": "active"}})
}

impl<'a> World<'a> {
    async fn new(api: &'a Api) -> World<'a> {
        let stack = api.stack.as_ref().expect("in-process stack");
        let demo = ClinicId::parse(CLINIC).expect("clinic");
        let (patient, email) = person(stack, Some(&demo), Role::Patient, None, true).await;
        let patient_token = api.token(&email, DEMO_PASSWORD).await;
        let admin = api.token("admin@demo.clinic", DEMO_PASSWORD).await;
        let doctor = api.token("doctor@demo.clinic", DEMO_PASSWORD).await;
        let reception = api.token("reception@demo.clinic", DEMO_PASSWORD).await;
        let super_admin = api.token("super@demo.clinic", DEMO_PASSWORD).await;
        let slots = demo_slots(api, &patient_token, 3).await;
        assert!(slots.len() >= 3, "free slots: {slots:?}");
        let appointments = format!("/v1/clinics/{CLINIC}/appointments");
        let book = |at: &str| json!({"doctorId": demo_user_id(3), "kind": "VIDEO_CALL", "startsAt": at, "reason": "knee pain"});
        let booked = |r: Reply| {
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
            id(&r, "/id")
        };
        let appointment = booked(
            call(
                api,
                Method::POST,
                &appointments,
                Some(book(&slots[0])),
                &patient_token,
            )
            .await,
        );
        let to_confirm = booked(
            call(
                api,
                Method::POST,
                &appointments,
                Some(book(&slots[1])),
                &patient_token,
            )
            .await,
        );
        let note = call(
            api,
            Method::POST,
            &format!("{appointments}/{appointment}/clinical-notes"),
            Some(json!({"text": "Rest for a week"})),
            &doctor,
        )
        .await;
        assert_eq!(note.status, StatusCode::CREATED, "{}", note.body);
        let ehr = format!("/v1/clinics/{CLINIC}/patients/{patient}/ehr/medical-history");
        let mut records = Vec::new();
        for name in ["Diabetes", "Entered by mistake"] {
            let r = call(api, Method::POST, &ehr, Some(condition(name)), &doctor).await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
            records.push(id(&r, "/id"));
        }
        let (member, _) = account(stack, Some(&demo), Role::Nurse, None, true).await;
        World {
            api,
            stack,
            admin,
            doctor,
            reception,
            super_admin,
            patient: patient.to_string(),
            patient_token,
            appointment,
            to_confirm,
            slot: slots[2].clone(),
            note: id(&note, "/id"),
            removable: records.pop().expect("record"),
            record: records.pop().expect("record"),
            member: member.to_string(),
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> (Reply, Vec<Item>) {
        audited(self.api, method, path, body, token).await
    }

    /// Runs the recipe of one marked operation: its reply, its audit records, and the ids
    /// the record must name. `None` when the operation has no recipe.
    async fn exercise(&self, method: &str, path: &str) -> Option<(Reply, Vec<Item>, Vec<String>)> {
        let c = CLINIC;
        let (p, a, rec) = (&self.patient, &self.appointment, &self.record);
        let one = format!("/v1/clinics/{c}/appointments/{a}");
        let ehr = format!("/v1/clinics/{c}/patients/{p}/ehr");
        let kind = format!("{ehr}/medical-history");
        let fresh = || format!("{}@people.test", &uuid::Uuid::new_v4().to_string()[..12]);
        let doctor = demo_user_id(3).to_string();
        let (r, records, ids) = match (method, path) {
            ("POST", "/v1/auth/register") => {
                let body = json!({"clinicId": c, "email": fresh(), "password": DEMO_PASSWORD, "givenName": "Jo", "familyName": "Example"});
                let (r, records) = self.send(Method::POST, path, Some(body), None).await;
                let ids = vec![id(&r, "/user/id")];
                (r, records, ids)
            }
            ("POST", "/v1/auth/login") => {
                let demo = ClinicId::parse(c).expect("clinic");
                let (user, email) =
                    person(self.stack, Some(&demo), Role::Patient, None, true).await;
                let body = json!({"email": email, "password": DEMO_PASSWORD});
                let (r, records) = self.send(Method::POST, path, Some(body), None).await;
                (r, records, vec![user.to_string()])
            }
            ("POST", "/v1/auth/login/mfa") => {
                let (user, email) = person(self.stack, None, Role::SuperAdmin, None, true).await;
                let login = self
                    .api
                    .post(
                        "/v1/auth/login",
                        json!({"email": email, "password": DEMO_PASSWORD}),
                        None,
                    )
                    .await;
                let code =
                    local_stack::totp_code(DEMO_SUPER_ADMIN_TOTP, self.api.now()).expect("code");
                let body = json!({"challenge": id(&login, "/challenge"), "code": code});
                let (r, records) = self.send(Method::POST, path, Some(body), None).await;
                (r, records, vec![user.to_string()])
            }
            ("GET", "/v1/users/me") => {
                let (r, records) = self
                    .send(Method::GET, path, None, Some(&self.patient_token))
                    .await;
                (r, records, vec![p.clone()])
            }
            ("PATCH", "/v1/users/me") => {
                let body = json!({"givenName": "Renamed"});
                let (r, records) = self
                    .send(Method::PATCH, path, Some(body), Some(&self.patient_token))
                    .await;
                (r, records, vec![p.clone()])
            }
            ("POST", "/v1/clinics") => {
                let body = json!({"name": "Audited Clinic", "timeZone": "Europe/Berlin", "currency": "EUR",
                    "admin": {"email": fresh(), "givenName": "Ann", "familyName": "Admin"}});
                let (r, records) = self
                    .send(Method::POST, path, Some(body), Some(&self.super_admin))
                    .await;
                let ids = vec![id(&r, "/admin/userId")];
                (r, records, ids)
            }
            ("GET", "/v1/clinics/{clinicId}/members") => {
                let path = format!("/v1/clinics/{c}/members");
                let (r, records) = self.send(Method::GET, &path, None, Some(&self.admin)).await;
                (r, records, vec![doctor])
            }
            ("POST", "/v1/clinics/{clinicId}/members") => {
                let path = format!("/v1/clinics/{c}/members");
                let body = json!({"email": fresh(), "givenName": "Nel", "familyName": "New", "role": "NURSE"});
                let (r, records) = self
                    .send(Method::POST, &path, Some(body), Some(&self.admin))
                    .await;
                let ids = vec![id(&r, "/userId")];
                (r, records, ids)
            }
            ("POST", "/v1/clinics/{clinicId}/members/search") => {
                let path = format!("/v1/clinics/{c}/members/search");
                let body = json!({"email": "doctor@demo.clinic"});
                let (r, records) = self
                    .send(Method::POST, &path, Some(body), Some(&self.admin))
                    .await;
                (r, records, vec![doctor])
            }
            ("GET", "/v1/clinics/{clinicId}/members/{userId}") => {
                let path = format!("/v1/clinics/{c}/members/{}", self.member);
                let (r, records) = self.send(Method::GET, &path, None, Some(&self.admin)).await;
                (r, records, vec![self.member.clone()])
            }
            ("PATCH", "/v1/clinics/{clinicId}/members/{userId}") => {
                let path = format!("/v1/clinics/{c}/members/{}", self.member);
                let body = json!({"role": "RECEPTIONIST"});
                let (r, records) = self
                    .send(Method::PATCH, &path, Some(body), Some(&self.admin))
                    .await;
                (r, records, vec![self.member.clone()])
            }
            ("POST", "/v1/clinics/{clinicId}/appointments") => {
                let path = format!("/v1/clinics/{c}/appointments");
                let body = json!({"doctorId": doctor, "kind": "VIDEO_CALL", "startsAt": self.slot, "reason": "headache"});
                let (r, records) = self
                    .send(Method::POST, &path, Some(body), Some(&self.patient_token))
                    .await;
                let ids = vec![id(&r, "/id")];
                (r, records, ids)
            }
            ("GET", "/v1/clinics/{clinicId}/appointments/{appointmentId}") => {
                let (r, records) = self.send(Method::GET, &one, None, Some(&self.doctor)).await;
                (r, records, vec![a.clone()])
            }
            ("PATCH", "/v1/clinics/{clinicId}/appointments/{appointmentId}") => {
                let body = json!({"reason": "knee pain, worse"});
                let (r, records) = self
                    .send(Method::PATCH, &one, Some(body), Some(&self.reception))
                    .await;
                (r, records, vec![a.clone()])
            }
            ("POST", "/v1/clinics/{clinicId}/appointments/{appointmentId}/{action}") => {
                let path = format!("/v1/clinics/{c}/appointments/{}/confirm", self.to_confirm);
                let (r, records) = self
                    .send(Method::POST, &path, None, Some(&self.reception))
                    .await;
                (r, records, vec![self.to_confirm.clone()])
            }
            ("GET", "/v1/clinics/{clinicId}/appointments/{appointmentId}/clinical-notes") => {
                let path = format!("{one}/clinical-notes");
                let (r, records) = self
                    .send(Method::GET, &path, None, Some(&self.patient_token))
                    .await;
                (r, records, vec![self.note.clone()])
            }
            ("POST", "/v1/clinics/{clinicId}/appointments/{appointmentId}/clinical-notes") => {
                let path = format!("{one}/clinical-notes");
                let body = json!({"text": "Ice twice a day"});
                let (r, records) = self
                    .send(Method::POST, &path, Some(body), Some(&self.doctor))
                    .await;
                let ids = vec![id(&r, "/id")];
                (r, records, ids)
            }
            ("GET", "/v1/users/me/notifications") => {
                let (r, records) = self
                    .send(Method::GET, path, None, Some(&self.patient_token))
                    .await;
                (r, records, Vec::new())
            }
            ("GET", "/v1/clinics/{clinicId}/patients/{patientId}/ehr") => {
                let (r, records) = self.send(Method::GET, &ehr, None, Some(&self.doctor)).await;
                (r, records, vec![rec.clone()])
            }
            ("GET", "/v1/clinics/{clinicId}/patients/{patientId}/ehr/{kind}") => {
                let (r, records) = self
                    .send(Method::GET, &kind, None, Some(&self.doctor))
                    .await;
                (r, records, vec![rec.clone()])
            }
            ("POST", "/v1/clinics/{clinicId}/patients/{patientId}/ehr/{kind}") => {
                let (r, records) = self
                    .send(
                        Method::POST,
                        &kind,
                        Some(condition("Gout")),
                        Some(&self.doctor),
                    )
                    .await;
                let ids = vec![id(&r, "/id")];
                (r, records, ids)
            }
            ("GET", "/v1/clinics/{clinicId}/patients/{patientId}/ehr/{kind}/{recordId}") => {
                let path = format!("{kind}/{rec}");
                let (r, records) = self
                    .send(Method::GET, &path, None, Some(&self.doctor))
                    .await;
                (r, records, vec![rec.clone()])
            }
            ("PATCH", "/v1/clinics/{clinicId}/patients/{patientId}/ehr/{kind}/{recordId}") => {
                let path = format!("{kind}/{rec}");
                let body = json!({"version": 1, "data": {"clinicalStatus": "remission"}});
                let (r, records) = self
                    .send(Method::PATCH, &path, Some(body), Some(&self.doctor))
                    .await;
                (r, records, vec![rec.clone()])
            }
            ("DELETE", "/v1/clinics/{clinicId}/patients/{patientId}/ehr/{kind}/{recordId}") => {
                let path = format!("{kind}/{}", self.removable);
                let body = json!({"reason": "Wrong patient chart"});
                let (r, records) = self
                    .send(Method::DELETE, &path, Some(body), Some(&self.doctor))
                    .await;
                (r, records, vec![self.removable.clone()])
            }
            (
                "GET",
                "/v1/clinics/{clinicId}/patients/{patientId}/ehr/{kind}/{recordId}/history",
            ) => {
                let path = format!("{kind}/{rec}/history");
                let (r, records) = self
                    .send(Method::GET, &path, None, Some(&self.doctor))
                    .await;
                (r, records, vec![rec.clone()])
            }
            ("POST", "/v1/clinics/{clinicId}/patients/{patientId}/break-glass") => {
                let demo = ClinicId::parse(c).expect("clinic");
                let (_, email) = account(self.stack, Some(&demo), Role::Doctor, None, true).await;
                let er = self.api.token(&email, DEMO_PASSWORD).await;
                let path = format!("/v1/clinics/{c}/patients/{p}/break-glass");
                let body = json!({"reason": "Unconscious in the emergency room"});
                let (r, records) = self.send(Method::POST, &path, Some(body), Some(&er)).await;
                (r, records, Vec::new())
            }
            ("GET", "/v1/clinics/{clinicId}/audit") => {
                let path = format!("/v1/clinics/{c}/audit?patientId={p}");
                let (r, records) = self.send(Method::GET, &path, None, Some(&self.admin)).await;
                let ids = r.body["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|i| i["id"].as_str().map(str::to_string))
                    .collect();
                (r, records, ids)
            }
            ("GET", "/v1/users/me/access-log") => {
                let (r, records) = self
                    .send(Method::GET, path, None, Some(&self.patient_token))
                    .await;
                (r, records, Vec::new())
            }
            ("GET", "/v1/users/me/health-record") => {
                let (r, records) = self
                    .send(Method::GET, path, None, Some(&self.patient_token))
                    .await;
                (r, records, vec![rec.clone()])
            }
            _ => return None,
        };
        Some((r, records, ids))
    }
}

#[tokio::test]
async fn every_operation_marked_phi_in_the_contract_leaves_exactly_one_audit_record() {
    let api = &Api::start().await;
    let doc = api.get("/v1/openapi.json", None).await;
    assert_eq!(doc.status, StatusCode::OK);
    let mut marked = Vec::new();
    for (path, ops) in doc.body["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().expect("operations") {
            if let Some(action) = op.get("x-phi").and_then(Value::as_str) {
                marked.push((method.to_uppercase(), path.clone(), action.to_string()));
            }
        }
    }
    assert!(marked.len() >= 25, "{} operations marked", marked.len());
    let known = [
        "read",
        "create",
        "update",
        "delete",
        "search",
        "break-glass",
    ];
    let world = World::new(api).await;
    let mut missing = Vec::new();
    for (method, path, action) in &marked {
        assert!(
            known.contains(&action.as_str()),
            "{method} {path}: {action}"
        );
        let Some((r, records, ids)) = world.exercise(method, path).await else {
            missing.push(format!("{method} {path}"));
            continue;
        };
        assert!(
            r.status.is_success(),
            "{method} {path}: {} {}",
            r.status,
            r.body
        );
        assert_eq!(
            records.len(),
            1,
            "{method} {path}: one audit record per request, got {records:?}"
        );
        let record = &records[0];
        assert_eq!(attr(record, "action"), action, "{method} {path}");
        assert_eq!(attr(record, "outcome"), "success", "{method} {path}");
        let named = ids_of(record);
        for id in &ids {
            assert!(
                named.contains(id),
                "{method} {path}: {id} not among {named:?}"
            );
        }
    }
    assert!(
        missing.is_empty(),
        "PHI operations without a recipe in this walk: {missing:?}"
    );
}

#[tokio::test]
async fn an_unmarked_operation_leaves_no_audit_record() {
    // The converse, on routes that carry no PHI: they are not recorded as if they did.
    let api = &Api::start().await;
    let patient = api.token("patient@demo.clinic", DEMO_PASSWORD).await;
    let admin = api.token("admin@demo.clinic", DEMO_PASSWORD).await;
    let c = CLINIC;
    for (path, token) in [
        (format!("/v1/clinics/{c}/appointments"), &patient),
        ("/v1/users/me/memberships".to_string(), &patient),
        (format!("/v1/clinics/{c}/locations"), &admin),
        (format!("/v1/clinics/{c}/plans"), &admin),
        (
            format!("/v1/clinics/{c}/patients/{}/care-team", demo_user_id(7)),
            &admin,
        ),
    ] {
        let (r, records) = audited(api, Method::GET, &path, None, Some(token)).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
        assert!(records.is_empty(), "{path}: {records:?}");
    }
}
