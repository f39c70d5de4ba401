//! Health records: coded, versioned, sealed, under the policy table, and every access in the
//! audit trail. Each scenario reads what the emulator really stored (table items, audit
//! records, bus events).

use blackbox::{
    Api, Reply,
    audit::{attr, audited, ids_of},
    book_demo_doctor, call, demo_slots, person,
};
use http::{Method, StatusCode};
use local_stack::{DEMO_CLINIC_ID, DEMO_PASSWORD, demo_user_id};
use serde_json::{Value, json};
use shared::{ids::ClinicId, policy::Role};

const CANARY: &str = "CANARY-ehr-5f1c";

fn demo() -> ClinicId {
    ClinicId::parse(DEMO_CLINIC_ID).expect("clinic")
}

fn ehr(patient: &str, rest: &str) -> String {
    format!("/v1/clinics/{DEMO_CLINIC_ID}/patients/{patient}/ehr{rest}")
}

/// Every audit record of the demo clinic, oldest first, as stored.
async fn audit_items(api: &Api) -> Vec<shared::db::Item> {
    let stack = api.stack.as_ref().expect("in-process stack");
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let page = stack
            .clients
            .dynamodb
            .query()
            .table_name(&stack.resources.audit_table)
            .key_condition_expression("pk = :p")
            .expression_attribute_values(":p", shared::db::s(shared::keys::audit_pk(&demo())))
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("audit");
        out.extend(page.items().iter().cloned());
        match page.last_evaluated_key.filter(|k| !k.is_empty()) {
            Some(k) => start = Some(k),
            None => break,
        }
    }
    out
}

/// A new patient of the demo clinic who booked the demo doctor (so the doctor treats them).
async fn treated_patient(api: &Api) -> (String, String) {
    let stack = api.stack.as_ref().expect("in-process stack");
    let (patient, email) = person(stack, Some(&demo()), Role::Patient, None, true).await;
    let token = api.token(&email, DEMO_PASSWORD).await;
    let slots = demo_slots(api, &token, 2).await;
    book_demo_doctor(api, &token, &slots[0], None).await;
    (patient.to_string(), token)
}

fn condition(name: &str) -> Value {
    json!({"data": {
        "name": name,
        "condition": {"system": "icd-10", "code": "E11.9", "display": "Type 2 diabetes"},
        "clinicalStatus": "active",
        "onsetDate": "2019-04-01",
        "notes": format!("{CANARY} family aware")
    }})
}

#[tokio::test]
async fn a_treating_doctor_keeps_a_versioned_record_and_every_access_is_audited_once() {
    let api = &Api::start().await;
    let doctor = api.token("doctor@demo.clinic", DEMO_PASSWORD).await;
    let (patient, patient_token) = treated_patient(api).await;

    // GIVEN the doctor records a coded condition for a patient they treat
    let made = call(
        api,
        Method::POST,
        &ehr(&patient, "/medical-history"),
        Some(condition("Diabetes")),
        &doctor,
    )
    .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let id = made.body["id"].as_str().expect("id").to_string();
    assert_eq!(made.body["version"], 1);
    assert_eq!(made.body["status"], "active");
    assert_eq!(made.body["data"]["condition"]["code"], "E11.9");
    let one = ehr(&patient, &format!("/medical-history/{id}"));

    // WHEN they change it, a new version is written and the old one stays readable
    let changed = call(
        api,
        Method::PATCH,
        &one,
        Some(json!({"version": 1, "data": {"clinicalStatus": "remission", "notes": null}})),
        &doctor,
    )
    .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    assert_eq!(changed.body["version"], 2);
    assert_eq!(changed.body["data"]["clinicalStatus"], "remission");
    assert!(changed.body["data"].get("notes").is_none());
    let stale = call(
        api,
        Method::PATCH,
        &one,
        Some(json!({"version": 1, "data": {"clinicalStatus": "active"}})),
        &doctor,
    )
    .await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    assert_eq!(stale.body["code"], "version_conflict");
    let bad = call(
        api,
        Method::PATCH,
        &one,
        Some(
            json!({"version": 2, "data": {"condition": {"system": "icd-10", "code": "diabetes"}}}),
        ),
        &doctor,
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.body["errors"][0]["field"], "condition.code");

    // AND two changes of the same version race: exactly one wins
    let racing = |status: &'static str| {
        let one = one.clone();
        let api = &api;
        let doctor = doctor.clone();
        async move {
            call(
                api,
                Method::PATCH,
                &one,
                Some(json!({"version": 2, "data": {"clinicalStatus": status}})),
                &doctor,
            )
            .await
        }
    };
    let (a, b) = tokio::join!(racing("inactive"), racing("resolved"));
    let mut statuses = [a.status.as_u16(), b.status.as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409], "{} / {}", a.body, b.body);

    // AND removing it marks it entered in error with a reason, and it stays in history
    let removed = call(
        api,
        Method::DELETE,
        &one,
        Some(json!({"reason": "Wrong patient chart"})),
        &doctor,
    )
    .await;
    assert_eq!(removed.status, StatusCode::OK, "{}", removed.body);
    assert_eq!(removed.body["status"], "entered-in-error");
    assert_eq!(removed.body["version"], 4);
    let again = call(
        api,
        Method::PATCH,
        &one,
        Some(json!({"version": 4, "data": {}})),
        &doctor,
    )
    .await;
    assert_eq!(again.body["code"], "entered_in_error");
    let history = call(api, Method::GET, &format!("{one}/history"), None, &doctor).await;
    assert_eq!(history.status, StatusCode::OK);
    let versions: Vec<_> = history.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_i64().unwrap(),
                v["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(versions.len(), 4);
    assert_eq!(versions[0], (1, "active".into()));
    assert_eq!(versions[3], (4, "entered-in-error".into()));
    assert_eq!(
        history.body["items"][0]["data"]["notes"],
        format!("{CANARY} family aware")
    );
    assert_eq!(
        history.body["items"][3]["enteredInErrorReason"],
        "Wrong patient chart"
    );
    let read = call(api, Method::GET, &one, None, &doctor).await;
    assert_eq!(read.body["status"], "entered-in-error");

    // AND lists and the summary leave it out; the patient reads their own record
    let vitals = call(api, Method::POST, &ehr(&patient, "/vitals"), Some(json!({"data": {"takenAt": "2026-01-05T09:30:00Z", "measurements": [{"type": "heart-rate", "value": 64, "unit": "/min"}]}})), &doctor).await;
    assert_eq!(vitals.status, StatusCode::CREATED, "{}", vitals.body);
    assert_eq!(vitals.body["data"]["measurements"][0]["loinc"], "8867-4");
    let listed = call(
        api,
        Method::GET,
        &ehr(&patient, "/medical-history"),
        None,
        &doctor,
    )
    .await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 0);
    let summary = call(api, Method::GET, &ehr(&patient, ""), None, &patient_token).await;
    assert_eq!(summary.status, StatusCode::OK, "{}", summary.body);
    let kinds: Vec<_> = summary.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["vitals"]);

    // THEN each request left exactly one audit record naming what it touched
    let audit = audit_items(api).await;
    let of = |action: &str, resource: &str| -> Vec<Vec<String>> {
        audit
            .iter()
            .filter(|i| {
                attr(i, "action") == action
                    && attr(i, "resource") == resource
                    && attr(i, "outcome") == "success"
            })
            .map(ids_of)
            .collect()
    };
    assert_eq!(of("create", "ehr.medical-history"), [vec![id.clone()]]);
    assert_eq!(
        of("update", "ehr.medical-history").len(),
        2,
        "two successful changes"
    );
    assert_eq!(of("delete", "ehr.medical-history"), [vec![id.clone()]]);
    assert_eq!(
        of("read", "ehr.medical-history.history"),
        [vec![id.clone()]]
    );
    assert_eq!(
        of("read", "ehr.medical-history"),
        [vec![id.clone()], vec![]],
        "the read, then the empty list"
    );
    let vid = vitals.body["id"].as_str().unwrap().to_string();
    assert_eq!(of("read", "ehr.summary"), [vec![vid]]);
    let own = audit
        .iter()
        .find(|i| attr(i, "resource") == "ehr.summary")
        .unwrap();
    assert_eq!(attr(own, "role"), "PATIENT");
    assert_eq!(attr(own, "purpose"), "own-record");
    assert_eq!(attr(own, "patientId"), patient);
    assert!(!attr(own, "correlationId").is_empty());

    // AND no clinical value is stored in plain text, in the records or the trail
    let stack = api.stack.as_ref().unwrap();
    let raw = stack
        .clients
        .dynamodb
        .scan()
        .table_name(&stack.resources.table)
        .send()
        .await
        .unwrap();
    let raw = format!("{:?}", raw.items());
    assert!(raw.contains("EHRV#"), "versions are stored");
    for plain in [
        CANARY,
        "E11.9",
        "Diabetes",
        "Wrong patient chart",
        "remission",
    ] {
        assert!(!raw.contains(plain), "{plain} is stored in plain text");
    }
    assert!(!format!("{audit:?}").contains(CANARY));
    // AND the events name ids and the kind only
    let events = api
        .bus_events(&[
            "ehr.medical_history.created",
            "ehr.medical_history.updated",
            "ehr.medical_history.entered_in_error",
            "ehr.vitals.created",
        ])
        .await;
    let ehr_events: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e["detail-type"]
                .as_str()
                .is_some_and(|t| t.starts_with("ehr."))
        })
        .collect();
    assert_eq!(ehr_events.len(), 5, "{ehr_events:?}");
    for e in &ehr_events {
        let text = e.to_string();
        assert!(
            !text.contains(CANARY) && !text.contains("E11.9") && !text.contains("8867-4"),
            "{text}"
        );
        assert_eq!(e["source"], "clinic.ehr");
    }
}

/// (who, their token, method, path after `/ehr`, body, the answer).
type Cell<'a> = (&'a str, &'a str, Method, &'a str, Option<Value>, u16);

fn status(r: &Reply) -> u16 {
    r.status.as_u16()
}

#[tokio::test]
async fn every_role_meets_the_record_as_the_policy_table_says() {
    let api = &Api::start().await;
    let stack = api.stack.as_ref().expect("in-process stack");
    let (patient, patient_token) = treated_patient(api).await;
    let doctor = api.token("doctor@demo.clinic", DEMO_PASSWORD).await;
    let login = |role: Role| async move {
        let (id, email) = person(stack, Some(&demo()), role, None, true).await;
        (id.to_string(), api.token(&email, DEMO_PASSWORD).await)
    };
    let admin = api.token("admin@demo.clinic", DEMO_PASSWORD).await;
    let head = api.token("head@demo.clinic", DEMO_PASSWORD).await;
    let nurse = api.token("nurse@demo.clinic", DEMO_PASSWORD).await;
    let reception = api.token("reception@demo.clinic", DEMO_PASSWORD).await;
    let finance = api.token("finance@demo.clinic", DEMO_PASSWORD).await;
    let (_, lab) = login(Role::LabTechnician).await;
    let (pharmacist_id, pharmacist) = login(Role::Pharmacist).await;
    let (_, other_doctor) = login(Role::Doctor).await;
    let (_, other_patient) = treated_patient(api).await;
    let second_admin = api.token("admin@second.clinic", DEMO_PASSWORD).await;

    let allergy = json!({"data": {"name": "Penicillin", "substance": {"system": "snomed-ct", "code": "91936005"}, "type": "allergy", "category": "medication", "criticality": "high", "reactions": [{"manifestation": "Hives"}]}});
    let made = call(
        api,
        Method::POST,
        &ehr(&patient, "/allergies"),
        Some(allergy.clone()),
        &doctor,
    )
    .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let lab_report = json!({"data": {"name": "Hemoglobin A1c", "status": "final", "results": [{"name": "HbA1c", "code": {"system": "loinc", "code": "4548-4"}, "value": 6.1, "unit": "%"}]}});
    let vitals = json!({"data": {"takenAt": "2026-01-05T09:30:00Z", "measurements": [{"type": "spo2", "value": 97, "unit": "%"}]}});

    // (who, what they do, the answer)
    let cells: Vec<Cell> = vec![
        ("admin", &admin, Method::GET, "", None, 200),
        (
            "admin",
            &admin,
            Method::POST,
            "/allergies",
            Some(allergy.clone()),
            403,
        ),
        ("head", &head, Method::GET, "", None, 403),
        (
            "reception",
            &reception,
            Method::GET,
            "/allergies",
            None,
            403,
        ),
        ("finance", &finance, Method::GET, "", None, 403),
        (
            "doctor of another patient",
            &other_doctor,
            Method::GET,
            "",
            None,
            404,
        ),
        (
            "doctor of another patient",
            &other_doctor,
            Method::POST,
            "/allergies",
            Some(allergy.clone()),
            404,
        ),
        (
            "nurse off the care team",
            &nurse,
            Method::GET,
            "/allergies",
            None,
            404,
        ),
        (
            "pharmacist off the care team",
            &pharmacist,
            Method::GET,
            "/allergies",
            None,
            404,
        ),
        (
            "lab technician",
            &lab,
            Method::POST,
            "/lab-reports",
            Some(lab_report.clone()),
            201,
        ),
        (
            "lab technician",
            &lab,
            Method::GET,
            "/lab-reports",
            None,
            200,
        ),
        ("lab technician", &lab, Method::GET, "/allergies", None, 403),
        (
            "lab technician",
            &lab,
            Method::POST,
            "/vitals",
            Some(vitals.clone()),
            403,
        ),
        (
            "patient",
            &patient_token,
            Method::GET,
            "/allergies",
            None,
            200,
        ),
        (
            "patient",
            &patient_token,
            Method::POST,
            "/allergies",
            Some(allergy.clone()),
            403,
        ),
        (
            "another patient",
            &other_patient,
            Method::GET,
            "",
            None,
            404,
        ),
        (
            "another clinic's admin",
            &second_admin,
            Method::GET,
            "",
            None,
            404,
        ),
        ("doctor", &doctor, Method::GET, "/nonsense-kind", None, 404),
    ];
    for (who, token, method, rest, body, want) in cells {
        let r = call(api, method.clone(), &ehr(&patient, rest), body, token).await;
        assert_eq!(status(&r), want, "{who} {method} {rest}: {}", r.body);
        assert!(
            !r.body.to_string().contains("Penicillin") || want == 200,
            "{who} saw the record"
        );
    }

    // WHEN an admin puts the nurse and the pharmacist on the patient's care team
    let team = |member: String| {
        format!("/v1/clinics/{DEMO_CLINIC_ID}/patients/{patient}/care-team/{member}")
    };
    let nurse_id = demo_user_id(4).to_string();
    assert_eq!(
        status(&call(api, Method::PUT, &team(nurse_id.clone()), None, &head).await),
        403
    );
    let put = call(api, Method::PUT, &team(nurse_id.clone()), None, &admin).await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    let finance_id = demo_user_id(6).to_string();
    assert_eq!(
        call(api, Method::PUT, &team(finance_id), None, &admin)
            .await
            .body["code"],
        "not_a_carer"
    );
    assert_eq!(
        status(&call(api, Method::PUT, &team(pharmacist_id.clone()), None, &admin).await),
        200
    );
    let listed = call(
        api,
        Method::GET,
        &format!("/v1/clinics/{DEMO_CLINIC_ID}/patients/{patient}/care-team"),
        None,
        &admin,
    )
    .await;
    assert_eq!(
        listed.body["items"].as_array().unwrap().len(),
        2,
        "{}",
        listed.body
    );

    // THEN they reach what the table gives them, and no more
    let cells: Vec<Cell> = vec![
        ("nurse", &nurse, Method::GET, "/allergies", None, 200),
        (
            "nurse",
            &nurse,
            Method::POST,
            "/vitals",
            Some(vitals.clone()),
            201,
        ),
        (
            "nurse",
            &nurse,
            Method::POST,
            "/allergies",
            Some(allergy.clone()),
            403,
        ),
        (
            "pharmacist",
            &pharmacist,
            Method::GET,
            "/allergies",
            None,
            200,
        ),
        (
            "pharmacist",
            &pharmacist,
            Method::GET,
            "/medications",
            None,
            200,
        ),
        (
            "pharmacist",
            &pharmacist,
            Method::GET,
            "/lab-reports",
            None,
            403,
        ),
        (
            "pharmacist",
            &pharmacist,
            Method::POST,
            "/medications",
            Some(
                json!({"data": {"name": "Metformin", "dosage": "500 mg twice daily", "status": "active"}}),
            ),
            403,
        ),
    ];
    for (who, token, method, rest, body, want) in cells {
        let r = call(api, method.clone(), &ehr(&patient, rest), body, token).await;
        assert_eq!(status(&r), want, "{who} {method} {rest}: {}", r.body);
    }
    // The pharmacist's summary holds only allergies and medications.
    let summary = call(api, Method::GET, &ehr(&patient, ""), None, &pharmacist).await;
    let kinds: Vec<_> = summary.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["allergies"], "{}", summary.body);
    // Off the team again, the nurse no longer finds the patient.
    assert_eq!(
        status(&call(api, Method::DELETE, &team(nurse_id.clone()), None, &admin).await),
        204
    );
    assert_eq!(
        status(&call(api, Method::DELETE, &team(nurse_id), None, &admin).await),
        404
    );
    assert_eq!(
        status(&call(api, Method::GET, &ehr(&patient, "/allergies"), None, &nurse).await),
        404
    );
    // Refusals are in the trail too.
    let denied = audit_items(api)
        .await
        .into_iter()
        .filter(|i| attr(i, "outcome") == "denied")
        .count();
    assert!(denied >= 10, "{denied} refusals recorded");
}

#[tokio::test]
async fn a_read_whose_audit_record_cannot_be_written_returns_no_phi() {
    let api = &Api::start().await;
    let doctor = api.token("doctor@demo.clinic", DEMO_PASSWORD).await;
    let (patient, _) = treated_patient(api).await;
    let made = call(
        api,
        Method::POST,
        &ehr(&patient, "/medical-history"),
        Some(condition("Asthma")),
        &doctor,
    )
    .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let id = made.body["id"].as_str().unwrap();

    // WHEN the audit trail is gone
    let stack = api.stack.as_ref().unwrap();
    stack
        .clients
        .dynamodb
        .delete_table()
        .table_name(&stack.resources.audit_table)
        .send()
        .await
        .expect("drop");

    // THEN every read answers 503 with Retry-After and nothing clinical
    for path in [
        ehr(&patient, ""),
        ehr(&patient, "/medical-history"),
        ehr(&patient, &format!("/medical-history/{id}")),
        ehr(&patient, &format!("/medical-history/{id}/history")),
    ] {
        let r = call(api, Method::GET, &path, None, &doctor).await;
        assert_eq!(
            r.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{path}: {}",
            r.body
        );
        assert_eq!(r.body["code"], "audit_unavailable");
        assert_eq!(r.headers["content-type"], "application/problem+json");
        assert!(r.headers.contains_key("retry-after"));
        let text = r.body.to_string();
        assert!(
            !text.contains(CANARY) && !text.contains("Asthma") && !text.contains("E11.9"),
            "{text}"
        );
    }
    // AND a change cannot happen without its record: nothing is written
    let records = || async {
        stack
            .clients
            .dynamodb
            .query()
            .table_name(&stack.resources.table)
            .key_condition_expression("pk = :p AND begins_with(sk, :s)")
            .expression_attribute_values(":p", shared::db::s(shared::keys::clinic_pk(&demo())))
            .expression_attribute_values(":s", shared::db::s("EHR"))
            .send()
            .await
            .unwrap()
            .count()
    };
    let before = records().await;
    assert_eq!(before, 2, "the record and its first version");
    let r = call(
        api,
        Method::POST,
        &ehr(&patient, "/medical-history"),
        Some(condition("Gout")),
        &doctor,
    )
    .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert!(r.headers.contains_key("retry-after"));
    assert_eq!(r.headers["content-type"], "application/problem+json");
    assert_eq!(records().await, before, "nothing written");
}

#[tokio::test]
async fn a_doctor_who_does_not_treat_the_patient_reads_only_through_break_glass_and_the_patient_sees_it()
 {
    let api = &Api::start().await;
    let stack = api.stack.as_ref().expect("in-process stack");
    let _notifications = stack.spawn_notifications(std::time::Duration::from_millis(100));
    let doctor = api.token("doctor@demo.clinic", DEMO_PASSWORD).await;
    let admin = api.token("admin@demo.clinic", DEMO_PASSWORD).await;
    let nurse = api.token("nurse@demo.clinic", DEMO_PASSWORD).await;
    let (patient, patient_token) = treated_patient(api).await;
    let (er_id, er_email) = person(stack, Some(&demo()), Role::Doctor, None, true).await;
    let er = api.token(&er_email, DEMO_PASSWORD).await;
    let allergy = json!({"data": {"name": "Latex", "type": "allergy", "category": "environment", "criticality": "high"}});
    let made = call(
        api,
        Method::POST,
        &ehr(&patient, "/allergies"),
        Some(allergy),
        &doctor,
    )
    .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let allergy_id = made.body["id"].as_str().unwrap().to_string();

    // GIVEN a doctor who does not treat the patient: the patient does not exist for them
    assert_eq!(
        status(&call(api, Method::GET, &ehr(&patient, ""), None, &er).await),
        404
    );
    let glass = format!("/v1/clinics/{DEMO_CLINIC_ID}/patients/{patient}/break-glass");
    let reason = "Unconscious in the emergency room, allergies needed";
    // Only doctors may break the glass, with a stated reason, and not for their own patients.
    assert_eq!(
        status(
            &call(
                api,
                Method::POST,
                &glass,
                Some(json!({"reason": reason})),
                &nurse
            )
            .await
        ),
        403
    );
    let short = call(
        api,
        Method::POST,
        &glass,
        Some(json!({"reason": "urgent", "minutes": 600})),
        &er,
    )
    .await;
    assert_eq!(short.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(short.body["errors"].as_array().unwrap().len(), 2);
    assert_eq!(
        call(
            api,
            Method::POST,
            &glass,
            Some(json!({"reason": reason})),
            &doctor
        )
        .await
        .body["code"],
        "not_needed"
    );

    // WHEN they break the glass
    let opened = call(
        api,
        Method::POST,
        &glass,
        Some(json!({"reason": reason})),
        &er,
    )
    .await;
    assert_eq!(opened.status, StatusCode::CREATED, "{}", opened.body);
    let expires: jiff::Timestamp = opened.body["expiresAt"].as_str().unwrap().parse().unwrap();
    let minutes = (expires.as_second() - jiff::Timestamp::now().as_second()) / 60;
    assert!((58..=60).contains(&minutes), "{minutes} minutes");

    // THEN they read the record (not change it) for the hour
    let read = call(api, Method::GET, &ehr(&patient, ""), None, &er).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    assert_eq!(read.body["items"][0]["data"]["name"], "Latex");
    let change = call(
        api,
        Method::PATCH,
        &ehr(&patient, &format!("/allergies/{allergy_id}")),
        Some(json!({"version": 1, "data": {"criticality": "low"}})),
        &er,
    )
    .await;
    assert!(!change.status.is_success(), "{}", change.body);

    // AND the clinic's admins are told, with a link to the trail and nothing about the patient
    let message = {
        let mut found = None;
        for _ in 0..100 {
            let inbox = call(api, Method::GET, "/v1/users/me/notifications", None, &admin).await;
            found = inbox.body["items"].as_array().and_then(|i| {
                i.iter()
                    .find(|m| m["template"] == "break-glass-opened")
                    .cloned()
            });
            if found.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        found.expect("the admins' message")
    };
    let text = message.to_string();
    assert!(text.contains("audit?action=break-glass"), "{text}");
    assert!(
        !text.contains(reason) && !text.contains(&patient) && !text.contains("Latex"),
        "{text}"
    );

    // AND the override is in the clinic's trail, with its reason, for admins only
    let trail = |q: &str| format!("/v1/clinics/{DEMO_CLINIC_ID}/audit{q}");
    let overrides = call(
        api,
        Method::GET,
        &trail("?action=break-glass"),
        None,
        &admin,
    )
    .await;
    assert_eq!(overrides.status, StatusCode::OK, "{}", overrides.body);
    let items = overrides.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{}", overrides.body);
    assert_eq!(items[0]["actorId"], er_id.to_string());
    assert_eq!(items[0]["purpose"], "emergency");
    assert_eq!(items[0]["reason"], reason);
    assert_eq!(items[0]["patientId"], patient);
    let by_er = call(
        api,
        Method::GET,
        &trail(&format!("?actorId={er_id}&action=read")),
        None,
        &admin,
    )
    .await;
    let reads = by_er.body["items"].as_array().unwrap();
    // Newest first: the read under the grant, then the refused one before it.
    assert_eq!(reads.len(), 2, "{}", by_er.body);
    assert_eq!(reads[0]["outcome"], "success");
    assert_eq!(reads[0]["purpose"], "emergency");
    assert_eq!(reads[0]["resourceIds"], json!([allergy_id]));
    assert_eq!(reads[1]["outcome"], "denied");
    let of_patient = call(
        api,
        Method::GET,
        &trail(&format!("?patientId={patient}&limit=2")),
        None,
        &admin,
    )
    .await;
    assert_eq!(of_patient.body["items"].as_array().unwrap().len(), 2);
    let cursor = of_patient.body["nextCursor"]
        .as_str()
        .expect("more")
        .to_string();
    let next = call(
        api,
        Method::GET,
        &trail(&format!("?patientId={patient}&limit=2&cursor={cursor}")),
        None,
        &admin,
    )
    .await;
    assert_eq!(next.status, StatusCode::OK);
    assert_ne!(
        next.body["items"][0]["id"],
        of_patient.body["items"][0]["id"]
    );
    // The cursor continues only the query it was made for.
    assert_eq!(
        status(
            &call(
                api,
                Method::GET,
                &trail(&format!("?cursor={cursor}")),
                None,
                &admin
            )
            .await
        ),
        400
    );
    let past = call(
        api,
        Method::GET,
        &trail("?to=2020-01-01T00:00:00Z"),
        None,
        &admin,
    )
    .await;
    assert_eq!(past.body["items"].as_array().unwrap().len(), 0);
    for token in [&doctor, &er, &patient_token] {
        assert_eq!(
            status(&call(api, Method::GET, &trail(""), None, token).await),
            403
        );
    }
    let second = api.token("admin@second.clinic", DEMO_PASSWORD).await;
    assert_eq!(
        status(&call(api, Method::GET, &trail(""), None, &second).await),
        404
    );

    // AND the patient sees who accessed their record, in which role, when and why
    let log = call(
        api,
        Method::GET,
        "/v1/users/me/access-log",
        None,
        &patient_token,
    )
    .await;
    assert_eq!(log.status, StatusCode::OK, "{}", log.body);
    let entries = log.body["items"].as_array().unwrap();
    let glass_entry = entries
        .iter()
        .find(|e| e["action"] == "break-glass")
        .expect("the override");
    assert_eq!(glass_entry["actor"]["role"], "DOCTOR");
    assert_eq!(glass_entry["actor"]["name"], "Given Family");
    assert_eq!(glass_entry["reason"], reason);
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "read" && e["purpose"] == "emergency")
    );
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "create" && e["actor"]["name"] == "Dana Doctor")
    );
    assert!(
        entries
            .iter()
            .any(|e| e["resource"] == "audit" && e["actor"]["role"] == "CLINIC_ADMIN"),
        "the admins' reading of the trail"
    );
    assert!(
        entries.iter().all(|e| e["actor"]["id"] != json!(patient)),
        "not their own reads"
    );

    // AND their own record across clinics holds the allergy
    let own = call(
        api,
        Method::GET,
        "/v1/users/me/health-record",
        None,
        &patient_token,
    )
    .await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.body);
    assert_eq!(own.body["clinics"][0]["clinicId"], DEMO_CLINIC_ID);
    assert_eq!(own.body["clinics"][0]["items"][0]["id"], allergy_id);
}

#[tokio::test]
async fn an_appointments_free_text_and_clinical_notes_are_audited_once_per_request() {
    let api = &Api::start().await;
    let patient = api.token("patient@demo.clinic", DEMO_PASSWORD).await;
    let doctor = api.token("doctor@demo.clinic", DEMO_PASSWORD).await;
    let reception = api.token("reception@demo.clinic", DEMO_PASSWORD).await;
    let finance = api.token("finance@demo.clinic", DEMO_PASSWORD).await;
    let pat = demo_user_id(7).to_string();
    let slots = demo_slots(api, &patient, 2).await;
    let appointments = format!("/v1/clinics/{DEMO_CLINIC_ID}/appointments");
    let one_of = |records: &[shared::db::Item], action: &str, resource: &str| {
        assert_eq!(records.len(), 1, "one record per request: {records:?}");
        assert_eq!(attr(&records[0], "action"), action);
        assert_eq!(attr(&records[0], "resource"), resource);
        assert_eq!(attr(&records[0], "patientId"), pat);
        ids_of(&records[0])
    };

    // A booking with a reason: its record commits with it
    let (booked, records) = audited(api, Method::POST, &appointments, Some(json!({"doctorId": demo_user_id(3), "kind": "VIDEO_CALL", "startsAt": slots[0], "reason": CANARY})), Some(&patient)).await;
    assert_eq!(booked.status, StatusCode::CREATED, "{}", booked.body);
    let id = booked.body["id"].as_str().unwrap().to_string();
    assert_eq!(
        one_of(&records, "create", "appointment"),
        std::slice::from_ref(&id)
    );
    assert_eq!(attr(&records[0], "purpose"), "own-record");
    let one = format!("{appointments}/{id}");
    // Reading it, changing its text, and an action that shows it: one record each
    let (_, records) = audited(api, Method::GET, &one, None, Some(&doctor)).await;
    assert_eq!(
        one_of(&records, "read", "appointment"),
        std::slice::from_ref(&id)
    );
    let (changed, records) = audited(
        api,
        Method::PATCH,
        &one,
        Some(json!({"reason": "knee pain"})),
        Some(&reception),
    )
    .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    assert_eq!(
        one_of(&records, "update", "appointment"),
        std::slice::from_ref(&id)
    );
    let (confirmed, records) = audited(
        api,
        Method::POST,
        &format!("{one}/confirm"),
        None,
        Some(&reception),
    )
    .await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.body);
    assert_eq!(
        one_of(&records, "read", "appointment"),
        std::slice::from_ref(&id)
    );
    // Finance sees no text, so nothing of it is recorded as read
    let (seen, records) = audited(api, Method::GET, &one, None, Some(&finance)).await;
    assert_eq!(seen.status, StatusCode::OK);
    assert!(
        seen.body.get("reason").is_none() && records.is_empty(),
        "{records:?}"
    );
    // A clinical note: written with its record; the notes read with one
    let notes = format!("{one}/clinical-notes");
    let (added, records) = audited(
        api,
        Method::POST,
        &notes,
        Some(json!({"text": "Rest for a week"})),
        Some(&doctor),
    )
    .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.body);
    let note = added.body["id"].as_str().unwrap().to_string();
    assert_eq!(
        one_of(&records, "create", "appointment.clinical-note"),
        std::slice::from_ref(&note)
    );
    let (_, records) = audited(api, Method::GET, &notes, None, Some(&patient)).await;
    assert_eq!(
        one_of(&records, "read", "appointment.clinical-note"),
        [note]
    );
    // The patient sees the doctor's and reception's readings in their access log
    let log = call(api, Method::GET, "/v1/users/me/access-log", None, &patient).await;
    let resources: Vec<_> = log.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["actor"]["role"].as_str().unwrap().to_string(),
                e["resource"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        resources.contains(&("DOCTOR".into(), "appointment".into())),
        "{resources:?}"
    );
    assert!(
        resources.contains(&("RECEPTIONIST".into(), "appointment".into())),
        "{resources:?}"
    );
    assert!(!format!("{:?}", audit_items(api).await).contains(CANARY));
}
