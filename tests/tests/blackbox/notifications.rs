//! Notification delivery against the emulator: account mail arrives by SES email and its link
//! works, a job delivered many times sends once, and a send that keeps failing is tried three
//! times, then dead-lettered with its failure recorded. Messages are read back from what the
//! emulator's SES accepted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use blackbox::{Api, await_mail, mail_to, person};
use http::StatusCode;
use local_stack::{Stack, drain_notifications, notifications_config};
use serde_json::json;
use shared::{
    config::PlatformConfig,
    contracts::NotificationJob,
    policy::Role,
    provision::{provision, test_clients, unique_prefix},
};
use std::{collections::BTreeMap, sync::Arc, time::Duration};

async fn stack(label: &str) -> Stack {
    blackbox::fresh_stack(label).await
}

/// A patient of a new clinic, ready to log in.
async fn patient(stack: &Stack) -> (shared::ids::UserId, String) {
    let clinic = shared::ids::ClinicId::generate();
    shared::provision::put_clinic(
        &stack.clients,
        &stack.resources.table,
        &clinic,
        ("Mail", "Europe/Berlin", "EUR"),
        false,
    )
    .await
    .unwrap();
    person(stack, Some(&clinic), Role::Patient, None, true).await
}

const SIGN_IN: &str = "New sign-in to your account";

/// The mail `address` got, sign-in notices aside (every login sends one).
async fn news(address: &str) -> Vec<serde_json::Value> {
    mail_to(address)
        .await
        .into_iter()
        .filter(|m| m["subject"] != SIGN_IN)
        .collect()
}

/// Waits (up to about twenty seconds) for `n` messages of [`news`].
async fn await_news(address: &str, n: usize) -> Vec<serde_json::Value> {
    for _ in 0..100 {
        let mail = news(address).await;
        if mail.len() >= n {
            return mail;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("fewer than {n} messages arrived for {address}");
}

/// Delivers what the queue at `url` holds until it is empty (as far as one receive sees).
async fn drain(state: &notifications::AppState, url: &str) {
    while drain_notifications(state, url).await.unwrap() > 0 {}
}

/// The email delivery record of `job`.
async fn record(
    table: &shared::db::Table,
    job: &NotificationJob,
) -> notifications::store::Delivery {
    notifications::store::get(table, &job.job_id, "email")
        .await
        .unwrap()
        .expect("a delivery record")
}

fn job(user: &shared::ids::UserId, template: &str) -> NotificationJob {
    NotificationJob {
        job_id: uuid::Uuid::new_v4().to_string(),
        kind: template.into(),
        channel: "email".into(),
        user_id: user.clone(),
        clinic_id: None,
        template: template.into(),
        params: BTreeMap::new(),
        correlation_id: "test".into(),
        trace_id: None,
        created_at: "2026-12-01T00:00:00Z".into(),
        slot_ms: None,
    }
}

async fn enqueue(stack: &Stack, job: &NotificationJob) {
    stack
        .clients
        .sqs
        .send_message()
        .queue_url(&stack.resources.notifications_high_url)
        .message_body(serde_json::to_string(job).unwrap())
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_forgotten_password_arrives_by_email_and_its_link_resets_it() {
    let stack = stack("ntf").await;
    let (_, email) = patient(&stack).await;
    let _worker = stack.spawn_notifications(Duration::from_millis(100));
    let _relay = stack.spawn_relay(Duration::from_millis(100));
    let api = Api::serve(stack).await;
    let r = api
        .post("/v1/auth/password/forgot", json!({ "email": email }), None)
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let mail = await_mail(&email, 1).await;
    let (subject, body) = (
        mail[0]["subject"].as_str().unwrap(),
        mail[0]["body"].as_str().unwrap(),
    );
    assert_eq!(subject, "Reset your password");
    assert_eq!(mail[0]["source"], shared::provision::LOCAL_SENDER);
    let token = body
        .split("reset-password?token=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the mail carries the reset link");
    let r = api
        .post(
            "/v1/auth/password/reset",
            json!({"token": token, "newPassword": "a password from the mail"}),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    api.token(&email, "a password from the mail").await;
    // Every sign-in is told to the owner
    let signed_in = await_mail(&email, 2).await;
    assert!(
        signed_in.iter().any(|m| m["subject"] == SIGN_IN),
        "{signed_in:?}"
    );
    // The delivery is announced (ids only) once it is settled
    let events = api.bus_events(&["notification.sent"]).await;
    let sent = events
        .iter()
        .find(|e| e["detail-type"] == "notification.sent")
        .expect("notification.sent on the bus");
    assert_eq!(sent["detail"]["data"]["template"], "password-reset");
    assert!(!sent.to_string().contains(&email));
    assert!(!sent.to_string().contains(token));
}

#[tokio::test]
async fn a_job_delivered_five_times_sends_one_email() {
    let stack = stack("ntf").await;
    let (user, email) = patient(&stack).await;
    let job = job(&user, "mfa-enabled");
    for _ in 0..5 {
        enqueue(&stack, &job).await;
    }
    let url = &stack.resources.notifications_high_url;
    drain(&stack.notifications, url).await;
    let mail = mail_to(&email).await;
    assert_eq!(mail.len(), 1, "{mail:?}");
    assert_eq!(mail[0]["subject"], "Two-step sign-in is on");
    let record = record(&stack.notifications.table, &job).await;
    assert_eq!((record.status.as_str(), record.attempts), ("SENT", 1));
}

#[tokio::test]
async fn a_send_that_keeps_failing_is_tried_three_times_then_dead_lettered() {
    let stack = stack("ntf").await;
    let (user, email) = patient(&stack).await;
    // A worker whose sender SES has never verified: every send is rejected.
    let mut cfg = notifications_config(
        &stack.resources,
        PlatformConfig {
            signing_secrets_ciphertext: None,
            ..local_stack::auth_config(&stack.resources).platform
        },
        0,
    );
    cfg.sender = "unverified@clinic.local".into();
    let failing = notifications::state(&stack.clients, cfg, Arc::new(shared::clock::SystemClock))
        .await
        .unwrap();
    let job = job(&user, "mfa-disabled");
    enqueue(&stack, &job).await;
    let url = &stack.resources.notifications_high_url;
    let mut dead = Vec::new();
    for _ in 0..30 {
        drain_notifications(&failing, url).await.unwrap();
        dead = stack
            .clients
            .sqs
            .receive_message()
            .queue_url(&stack.resources.notifications_high_dlq_url)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default();
        if !dead.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(dead.len(), 1, "the job reached the dead-letter queue");
    assert!(dead[0].body().unwrap().contains(&job.job_id));
    let record = record(&stack.notifications.table, &job).await;
    assert_eq!((record.status.as_str(), record.attempts), ("FAILED", 3));
    assert!(mail_to(&email).await.is_empty());
    // Nothing more is sent once it failed for good, even if the message came back
    enqueue(&stack, &job).await;
    drain(&stack.notifications, url).await;
    assert!(mail_to(&email).await.is_empty());
}

#[tokio::test]
async fn what_happens_to_an_appointment_is_mailed_to_its_patient_without_its_reason() {
    const CANARY: &str = "CANARY-REASON-NOTIFY-51c2";
    let api = Api::start().await;
    let stack = api.stack.as_ref().unwrap();
    let _notifications = stack.spawn_notifications(Duration::from_millis(100));
    let clinic = shared::ids::ClinicId::parse(local_stack::DEMO_CLINIC_ID).unwrap();
    // A patient of their own: the demo patient's address is every test's.
    let (_, email) = person(stack, Some(&clinic), Role::Patient, None, true).await;
    let token = api.token(&email, local_stack::DEMO_PASSWORD).await;
    let at = blackbox::demo_slots(&api, &token, 1).await.remove(0);
    let id = blackbox::book_demo_doctor(&api, &token, &at, Some(CANARY)).await;
    let mail = await_news(&email, 1).await;
    let subject = mail[0]["subject"].as_str().unwrap();
    let body = mail[0]["body"].as_str().unwrap();
    assert!(subject.starts_with("Your appointment on "), "{subject}");
    assert!(body.contains("Demo Clinic") && body.contains(&id), "{body}");
    assert!(
        body.contains("(CET)") || body.contains("(CEST)"),
        "the clinic's time: {body}"
    );
    let cancelled = blackbox::call(
        &api,
        http::Method::POST,
        &format!("/v1/clinics/{clinic}/appointments/{id}/cancel"),
        Some(json!({"reason": CANARY})),
        &token,
    )
    .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    let mail = await_news(&email, 2).await;
    assert!(
        mail.iter()
            .any(|m| m["subject"].as_str().unwrap().ends_with("was cancelled")),
        "{mail:?}"
    );
    assert!(!serde_json::to_string(&mail).unwrap().contains(CANARY));
}

#[tokio::test]
async fn preferences_switch_categories_off_and_quiet_hours_hold_all_but_account_mail() {
    let clients = test_clients().await;
    let resources = provision(&clients, &unique_prefix("ntf")).await.unwrap();
    // 13:00 in Berlin.
    let clock = Arc::new(shared::clock::ManualClock::new(
        "2026-12-01T12:00:00Z".parse().unwrap(),
    ));
    let stack = Stack::with_clock(clients.clone(), resources, clock.clone())
        .await
        .unwrap();
    let (user, email) = patient(&stack).await;
    let api = Api::serve(stack).await;
    let stack = api.stack.as_ref().unwrap();
    let token = api.token(&email, local_stack::DEMO_PASSWORD).await;
    let put = |body: serde_json::Value| {
        let (api, token) = (&api, token.clone());
        async move {
            blackbox::call(
                api,
                http::Method::PUT,
                "/v1/users/me/notification-preferences",
                Some(body),
                &token,
            )
            .await
        }
    };
    let r = blackbox::call(
        &api,
        http::Method::GET,
        "/v1/users/me/notification-preferences",
        None,
        &token,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, json!({"channels": {}, "quietHours": null}));
    let r = put(json!({"channels": {"account": {"email": false}}})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["errors"][0]["code"], "always_on");
    let r = put(json!({"quietHours": {"start": "9", "end": "07:00", "timeZone": "Nowhere/City"}}))
        .await;
    assert_eq!(r.body["errors"].as_array().unwrap().len(), 2, "{}", r.body);

    // Appointments by email off: that job is skipped, account mail still goes
    let r = put(json!({"channels": {"appointments": {"email": false}}})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let mut booked = job(&user, "appointment-booked");
    booked.params = BTreeMap::from([
        ("clinicName".to_string(), "Mail".to_string()),
        (
            "startsAt".to_string(),
            "Tuesday 2026-12-01, 19:30 (CET)".to_string(),
        ),
        (
            "appointmentUrl".to_string(),
            "http://app/clinics/c/appointments/a".to_string(),
        ),
    ]);
    enqueue(stack, &booked).await;
    enqueue(stack, &job(&user, "mfa-enabled")).await;
    let url = &stack.resources.notifications_high_url;
    drain(&stack.notifications, url).await;
    let mail = news(&email).await;
    assert_eq!(mail.len(), 1, "{mail:?}");
    assert_eq!(mail[0]["subject"], "Two-step sign-in is on");
    let skipped = record(&stack.notifications.table, &booked).await;
    assert_eq!(skipped.status, "SKIPPED");

    // Quiet hours 12:30-14:00 in Berlin hold the appointment mail (put back, no receive
    // spent) and let account mail through; after them it goes
    let r =
        put(json!({"quietHours": {"start": "12:30", "end": "14:00", "timeZone": "Europe/Berlin"}}))
            .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let mut cfg = notifications_config(
        &stack.resources,
        PlatformConfig {
            signing_secrets_ciphertext: None,
            ..local_stack::auth_config(&stack.resources).platform
        },
        0,
    );
    cfg.defer_step_seconds = 1;
    let worker = notifications::state(&stack.clients, cfg, clock.clone())
        .await
        .unwrap();
    let mut later = booked.clone();
    later.job_id = uuid::Uuid::new_v4().to_string();
    enqueue(stack, &later).await;
    enqueue(stack, &job(&user, "mfa-disabled")).await;
    drain(&worker, url).await;
    let mail = news(&email).await;
    assert_eq!(mail.len(), 2, "only the account notice: {mail:?}");
    assert_eq!(mail[1]["subject"], "Two-step sign-in is off");
    let held = notifications::store::get(&worker.table, &later.job_id, "email")
        .await
        .unwrap()
        .expect("a held job is recorded");
    assert_eq!(
        (held.status.as_str(), held.reason.as_deref(), held.attempts),
        ("DEFERRED", Some("quiet_hours"), 0),
        "held, not attempted"
    );
    clock.advance(jiff::SignedDuration::from_mins(61));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    drain(&worker, url).await;
    let mail = await_news(&email, 3).await;
    assert_eq!(
        mail[2]["subject"],
        "Your appointment on Tuesday 2026-12-01, 19:30 (CET)"
    );
}

#[tokio::test]
async fn bounces_and_complaints_that_ses_reports_are_recorded_on_their_delivery() {
    let stack = stack("ntf").await;
    let (user, email) = patient(&stack).await;
    let (bounced, complained) = (job(&user, "mfa-enabled"), job(&user, "mfa-disabled"));
    enqueue(&stack, &bounced).await;
    enqueue(&stack, &complained).await;
    drain(
        &stack.notifications,
        &stack.resources.notifications_high_url,
    )
    .await;
    assert_eq!(mail_to(&email).await.len(), 2);
    let id_of = |d: notifications::store::Delivery| d.message_id.expect("a provider id");
    let bounce_id = id_of(record(&stack.notifications.table, &bounced).await);
    let complaint_id = id_of(record(&stack.notifications.table, &complained).await);
    // WHEN SES reports a permanent bounce (raw, as the topic's subscription delivers it), a
    // complaint (in its SNS envelope), the bounce again, and a message of someone else
    let feedback = &stack.resources.notifications_feedback_url;
    let bounce = json!({"eventType": "Bounce", "mail": {"messageId": bounce_id},
        "bounce": {"bounceType": "Permanent", "bouncedRecipients": [{"emailAddress": email}]}});
    let complaint = json!({"Type": "Notification", "Message": json!({"eventType": "Complaint",
        "mail": {"messageId": complaint_id}, "complaint": {"complaintFeedbackType": "abuse"}})
        .to_string()});
    let stranger = json!({"eventType": "Bounce", "mail": {"messageId": "not-ours"}, "bounce": {}});
    for body in [&bounce, &complaint, &bounce, &stranger] {
        stack
            .clients
            .sqs
            .send_message()
            .queue_url(feedback)
            .message_body(body.to_string())
            .send()
            .await
            .unwrap();
    }
    drain(&stack.notifications, feedback).await;
    // THEN each delivery says what happened, once, and nothing is left on the queue
    let b = record(&stack.notifications.table, &bounced).await;
    assert_eq!(
        (b.status.as_str(), b.reason.as_deref()),
        ("BOUNCED", Some("Permanent"))
    );
    let c = record(&stack.notifications.table, &complained).await;
    assert_eq!(
        (c.status.as_str(), c.reason.as_deref()),
        ("COMPLAINED", Some("abuse"))
    );
    let left = stack
        .clients
        .sqs
        .receive_message()
        .queue_url(feedback)
        .send()
        .await
        .unwrap();
    assert!(left.messages.unwrap_or_default().is_empty());
    let _relay = stack.spawn_relay(Duration::from_millis(100));
    let api = Api::serve(stack).await;
    let events = api
        .bus_events(&["notification.bounced", "notification.complained"])
        .await;
    let kinds: Vec<&str> = events
        .iter()
        .filter_map(|e| e["detail-type"].as_str())
        .filter(|t| t.starts_with("notification.b") || t.starts_with("notification.c"))
        .collect();
    assert_eq!(kinds.len(), 2, "{kinds:?}");
    assert!(!serde_json::to_string(&events).unwrap().contains(&email));
}
