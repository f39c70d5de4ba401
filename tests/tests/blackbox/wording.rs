//! A clinic's own wording of its messages and its delivery log: admins word (only with the
//! variables a message offers), heads read, other roles are refused, strangers find nothing;
//! the worker sends the clinic's wording; the log shows every delivery without an address.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use blackbox::{Api, book_demo_doctor, call, demo_slots, mail_to, person};
use http::{Method, StatusCode};
use local_stack::{DEMO_CLINIC_ID, DEMO_PASSWORD, SECOND_CLINIC_ID};
use serde_json::{Value, json};
use shared::{ids::ClinicId, policy::Role};
use std::time::Duration;

const CANARY: &str = "CANARY-REASON-WORDING-93af";

#[tokio::test]
async fn a_clinic_words_its_messages_and_reads_its_delivery_log() {
    let api = Api::start().await;
    let stack = api.stack.as_ref().unwrap();
    let _worker = stack.spawn_notifications(Duration::from_millis(100));
    let clinic = ClinicId::parse(DEMO_CLINIC_ID).unwrap();
    let templates = format!("/v1/clinics/{clinic}/notification-templates");
    let log = format!("/v1/clinics/{clinic}/notifications/deliveries");
    let admin = api.token("admin@demo.clinic", DEMO_PASSWORD).await;
    let head = api.token("head@demo.clinic", DEMO_PASSWORD).await;
    let doctor = api.token("doctor@demo.clinic", DEMO_PASSWORD).await;
    let stranger = api.token("admin@second.clinic", DEMO_PASSWORD).await;
    let (patient, email) = person(stack, Some(&clinic), Role::Patient, None, true).await;
    let patient_token = api.token(&email, DEMO_PASSWORD).await;

    // The catalogue as the admin sees it: no account mail, each entry with its variables
    let r = call(&api, Method::GET, &templates, None, &admin).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let items = r.body["items"].as_array().unwrap();
    assert!(items.iter().all(|t| t["template"] != "password-reset"));
    let booked = items
        .iter()
        .find(|t| t["template"] == "appointment-booked")
        .unwrap();
    assert_eq!(
        booked["variables"],
        json!(["clinicName", "startsAt", "appointmentUrl"])
    );
    assert_eq!(booked["clinic"], json!([]));

    // Wording that names what the message does not offer, or account mail, is refused
    let wording = |template: &str, text: &str| {
        json!({
            "template": template,
            "locale": "en",
            "subject": "Booked at {{ clinicName }}: {{ startsAt }}",
            "short": "{{ clinicName }} booked you for {{ startsAt }}. {{ appointmentUrl }}",
            "text": text,
        })
    };
    let leaky = wording("appointment-booked", "Because of {{ reason }}");
    let r = call(&api, Method::PUT, &templates, Some(leaky), &admin).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(r.body["errors"][0]["code"], "invalid_template");
    let account = wording("password-reset", "{{ url }}");
    let r = call(&api, Method::PUT, &templates, Some(account), &admin).await;
    assert_eq!(
        r.body["errors"][0]["code"], "unknown_template",
        "{}",
        r.body
    );
    // Who may: the admin words, the head reads, others are refused, strangers find nothing
    let ours = wording(
        "appointment-booked",
        "We look forward to seeing you on {{ startsAt }}.\n\n{{ appointmentUrl }}\n",
    );
    let r = call(&api, Method::PUT, &templates, Some(ours.clone()), &head).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = call(&api, Method::PUT, &templates, Some(ours.clone()), &admin).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["clinic"][0]["locale"], "en");
    let r = call(&api, Method::GET, &templates, None, &head).await;
    assert_eq!(r.status, StatusCode::OK);
    for (who, status) in [
        (&doctor, StatusCode::FORBIDDEN),
        (&patient_token, StatusCode::FORBIDDEN),
        (&stranger, StatusCode::NOT_FOUND),
    ] {
        assert_eq!(
            call(&api, Method::GET, &templates, None, who).await.status,
            status
        );
        assert_eq!(
            call(&api, Method::GET, &log, None, who).await.status,
            status
        );
    }
    assert_eq!(
        call(&api, Method::GET, &log, None, &head).await.status,
        StatusCode::FORBIDDEN
    );
    let second = format!("/v1/clinics/{SECOND_CLINIC_ID}/notification-templates");
    assert_eq!(
        call(&api, Method::GET, &second, None, &admin).await.status,
        StatusCode::NOT_FOUND
    );

    // WHEN the patient books, THEN the mail is in the clinic's words
    let at = demo_slots(&api, &patient_token, 1).await.remove(0);
    book_demo_doctor(&api, &patient_token, &at, Some(CANARY)).await;
    let mut mail = Vec::new();
    for _ in 0..100 {
        mail = mail_to(&email)
            .await
            .into_iter()
            .filter(|m| {
                m["subject"]
                    .as_str()
                    .unwrap()
                    .starts_with("Booked at Demo Clinic")
            })
            .collect::<Vec<Value>>();
        if !mail.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(mail.len(), 1, "the clinic's wording was sent");
    assert!(
        mail[0]["body"]
            .as_str()
            .unwrap()
            .starts_with("We look forward to seeing you on")
    );

    // The log shows the booking on every channel, with why a channel had nothing to do
    let mine = format!("{log}?recipientId={patient}&template=appointment-booked");
    let mut entries = Vec::new();
    for _ in 0..100 {
        let r = call(&api, Method::GET, &mine, None, &admin).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        entries = r.body["items"].as_array().cloned().unwrap_or_default();
        let settled = |e: &Value| {
            !["QUEUED", "DEFERRED", "SENDING"].contains(&e["status"].as_str().unwrap_or(""))
        };
        if entries.len() == 4 && entries.iter().all(settled) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let outcome = |channel: &str| {
        let e = entries.iter().find(|e| e["channel"] == channel).unwrap();
        (
            e["status"].as_str().unwrap().to_string(),
            e["reason"].clone(),
        )
    };
    assert_eq!(outcome("email"), ("SENT".into(), Value::Null));
    assert_eq!(outcome("inApp"), ("SENT".into(), Value::Null));
    assert_eq!(outcome("sms"), ("SKIPPED".into(), json!("no_phone")));
    assert_eq!(outcome("push"), ("SKIPPED".into(), json!("no_device")));
    let r = call(
        &api,
        Method::GET,
        &format!("{mine}&channel=email"),
        None,
        &admin,
    )
    .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
    let text = r.body.to_string() + &json!(entries).to_string();
    assert!(
        !text.contains(&email) && !text.contains(CANARY),
        "no address, no reason"
    );

    // The default comes back on request
    let reset = json!({"template": "appointment-booked", "locale": "en", "useDefault": true});
    let r = call(&api, Method::PUT, &templates, Some(reset), &admin).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["clinic"], json!([]));
}

#[tokio::test]
async fn a_subscription_and_its_payment_are_told_to_the_patient_without_amounts() {
    let api = Api::start().await;
    let stack = api.stack.as_ref().unwrap();
    let _worker = stack.spawn_notifications(Duration::from_millis(100));
    let clinic = ClinicId::parse(DEMO_CLINIC_ID).unwrap();
    let (_, email) = person(stack, Some(&clinic), Role::Patient, None, true).await;
    let token = api.token(&email, DEMO_PASSWORD).await;
    let desk = api.token("reception@demo.clinic", DEMO_PASSWORD).await;
    // WHEN the patient subscribes to the demo plan and the desk takes the first payment
    let r = call(
        &api,
        Method::POST,
        &format!("/v1/clinics/{clinic}/subscriptions"),
        Some(json!({"planId": local_stack::DEMO_PLAN_ID})),
        &token,
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let invoice = r.body["latestInvoiceId"].as_str().unwrap().to_string();
    let paid = call(
        &api,
        Method::POST,
        &format!("/v1/clinics/{clinic}/payments"),
        Some(json!({"invoiceId": invoice, "method": "CASH"})),
        &desk,
    )
    .await;
    assert_eq!(paid.status, StatusCode::CREATED, "{}", paid.body);
    // THEN the patient is told each, with a link to the invoice and no amount
    let expected = [
        "Your subscription at Demo Clinic has started",
        "A new invoice from Demo Clinic",
        "Payment received by Demo Clinic",
    ];
    let mut mail = Vec::new();
    for _ in 0..100 {
        mail = mail_to(&email).await;
        if expected
            .iter()
            .all(|s| mail.iter().any(|m| m["subject"] == *s))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for s in expected {
        let m = mail
            .iter()
            .find(|m| m["subject"] == s)
            .unwrap_or_else(|| panic!("{s}: {mail:?}"));
        let body = m["body"].as_str().unwrap();
        assert!(body.contains("http://127.0.0.1:3000/clinics/"), "{body}");
        let amount = paid.body["amount"].as_i64().unwrap();
        let major = format!("{}.{:02}", amount / 100, amount % 100);
        assert!(!body.contains(&major) && !body.contains("EUR"), "{body}");
    }
    let invoice_mail = mail.iter().find(|m| m["subject"] == expected[1]).unwrap();
    assert!(invoice_mail["body"].as_str().unwrap().contains(&invoice));
}

#[tokio::test]
async fn every_role_on_the_clinic_notification_routes_gets_what_the_table_says() {
    use shared::policy::{Action, Resource, Scope, authorize};
    let stack = blackbox::fresh_stack("ntr").await;
    let clinic = ClinicId::generate();
    let location = shared::ids::LocationId::generate();
    shared::provision::put_clinic(
        &stack.clients,
        &stack.resources.table,
        &clinic,
        ("Walk", "Europe/Berlin", "EUR"),
        false,
    )
    .await
    .unwrap();
    shared::provision::put_location(
        &stack.clients,
        &stack.resources.table,
        &clinic,
        &location,
        "North",
        0,
    )
    .await
    .unwrap();
    let mut people = Vec::new();
    for role in Role::ALL {
        let (clinic_of, location_of) = match role {
            Role::SuperAdmin => (None, None),
            Role::ClinicLocationHead => (Some(&clinic), Some(&location)),
            _ => (Some(&clinic), None),
        };
        people.push((
            role,
            person(&stack, clinic_of, role, location_of, true).await.1,
        ));
    }
    let api = Api::serve(stack).await;
    let templates = format!("/v1/clinics/{clinic}/notification-templates");
    let log = format!("/v1/clinics/{clinic}/notifications/deliveries");
    let body = json!({"template": "appointment-missed", "locale": "en", "useDefault": true});
    for (role, email) in people {
        let token = api.token(&email, DEMO_PASSWORD).await;
        // What the table grants: reading the wording at the caller's own location counts (the
        // wording is the clinic's), wording and the log need the whole clinic.
        let wide = |action: Action| {
            authorize(role, Resource::NotificationTemplates, action)
                .iter()
                .any(|g| matches!(g.scope, Scope::Any | Scope::Clinic))
        };
        let located = authorize(role, Resource::NotificationTemplates, Action::Read)
            .iter()
            .any(|g| g.scope == Scope::Location);
        let expect = |ok: bool| {
            if ok {
                StatusCode::OK
            } else {
                StatusCode::FORBIDDEN
            }
        };
        let cells = [
            (
                Method::GET,
                &templates,
                None,
                expect(wide(Action::Read) || located),
            ),
            (
                Method::PUT,
                &templates,
                Some(body.clone()),
                expect(wide(Action::Update)),
            ),
            (Method::GET, &log, None, expect(wide(Action::Read))),
        ];
        for (method, path, body, want) in cells {
            let r = call(&api, method.clone(), path, body, &token).await;
            assert_eq!(r.status, want, "{role:?} {method} {path}: {}", r.body);
        }
    }
}
