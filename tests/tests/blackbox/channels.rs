//! Every channel against the emulator: a booking reaches its patient by email, SMS, push and
//! the in-app inbox and its doctor in the app; a disabled push endpoint is forgotten; critical
//! alerts pass quiet hours; and a clinic's flood of mail is paced, never dropped. Messages are
//! read back from what the emulator's SES and SNS accepted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use blackbox::{
    Api, account, book_demo_doctor, call, demo_slots, mail_to, person, pushes_to, sms_to,
};
use http::{Method, StatusCode};
use local_stack::{DEMO_CLINIC_ID, DEMO_PASSWORD, Stack, drain_notifications};
use serde_json::{Value, json};
use shared::{
    contracts::NotificationJob,
    ids::{ClinicId, UserId},
    policy::Role,
};
use std::{collections::BTreeMap, future::Future, time::Duration};

const CANARY: &str = "CANARY-REASON-CHANNELS-7d41";

/// Polls `check` (every 200 ms, up to about `seconds`) until it answers something.
async fn until<T, F, Fut>(seconds: u64, what: &str, check: F) -> T
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    for _ in 0..seconds * 5 {
        if let Some(v) = check().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn inbox(api: &Api, token: &str, query: &str) -> Vec<Value> {
    let r = call(
        api,
        Method::GET,
        &format!("/v1/users/me/notifications{query}"),
        None,
        token,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["items"].as_array().cloned().unwrap_or_default()
}

/// The inbox messages of `template`, once there is one.
async fn await_inbox(api: &Api, token: &str, template: &str) -> Vec<Value> {
    until(20, template, || async {
        let found: Vec<Value> = inbox(api, token, "")
            .await
            .into_iter()
            .filter(|m| m["template"] == template)
            .collect();
        (!found.is_empty()).then_some(found)
    })
    .await
}

/// A phone number of its own for this run (the emulator keeps every test's SMS).
fn fresh_phone() -> String {
    let digits: String = uuid::Uuid::new_v4()
        .as_u128()
        .to_string()
        .chars()
        .take(8)
        .collect();
    format!("+1555{digits}")
}

async fn device(api: &Api, token: &str, method: Method, body: Value) -> blackbox::Reply {
    call(api, method, "/v1/users/me/devices", Some(body), token).await
}

#[tokio::test]
async fn a_booking_reaches_the_patient_on_every_channel_and_the_doctor_in_the_app() {
    let api = Api::start().await;
    let stack = api.stack.as_ref().unwrap();
    let _notifications = stack.spawn_notifications(Duration::from_millis(100));
    let clinic = ClinicId::parse(DEMO_CLINIC_ID).unwrap();
    let (_, email) = person(stack, Some(&clinic), Role::Patient, None, true).await;
    let token = api.token(&email, DEMO_PASSWORD).await;
    let phone = fresh_phone();
    let r = call(
        &api,
        Method::PATCH,
        "/v1/users/me",
        Some(json!({ "phone": phone })),
        &token,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // GIVEN a phone registered for push (twice: the same device), and bad registrations refused
    let push_token = format!("fcm-{}", uuid::Uuid::new_v4());
    let body = json!({"platform": "fcm", "token": push_token});
    let first = device(&api, &token, Method::POST, body.clone()).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let again = device(&api, &token, Method::POST, body.clone()).await;
    assert_eq!(again.body["deviceId"], first.body["deviceId"]);
    assert!(
        !first.body.to_string().contains(&push_token),
        "the token is not echoed"
    );
    for bad in [
        json!({"platform": "pager", "token": "x"}),
        json!({"platform": "fcm", "token": "has spaces"}),
    ] {
        let r = device(&api, &token, Method::POST, bad).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    }

    // WHEN the patient books with the demo doctor
    let at = demo_slots(&api, &token, 1).await.remove(0);
    let id = book_demo_doctor(&api, &token, &at, Some(CANARY)).await;

    // THEN the patient gets it by email, SMS, push and in the app, each once
    let mail = until(20, "the booking email", || async {
        let m: Vec<Value> = mail_to(&email)
            .await
            .into_iter()
            .filter(|m| {
                m["subject"]
                    .as_str()
                    .unwrap()
                    .starts_with("Your appointment on")
            })
            .collect();
        (!m.is_empty()).then_some(m)
    })
    .await;
    assert_eq!(mail.len(), 1);
    let sms = until(20, "the booking SMS", || async {
        let s = sms_to(&phone).await;
        (!s.is_empty()).then_some(s)
    })
    .await;
    assert_eq!(sms.len(), 1, "{sms:?}");
    assert!(
        sms[0].contains("appointment booked") && sms[0].contains(&id),
        "{}",
        sms[0]
    );
    let pushes = until(20, "the booking push", || async {
        let p = pushes_to(&push_token).await;
        (!p.is_empty()).then_some(p)
    })
    .await;
    assert_eq!(pushes.len(), 1, "{pushes:?}");
    let fcm: Value = serde_json::from_str(pushes[0]["GCM"].as_str().unwrap()).unwrap();
    assert!(
        fcm["data"]["link"].as_str().unwrap().ends_with(&id),
        "{fcm}"
    );
    let mine = await_inbox(&api, &token, "appointment-booked").await;
    assert_eq!(mine.len(), 1);
    assert!(mine[0]["link"].as_str().unwrap().ends_with(&id));
    assert_eq!(mine[0]["readAt"], Value::Null);
    // ... and the doctor finds it in their inbox
    let doctor_token = api.token("doctor@demo.clinic", DEMO_PASSWORD).await;
    let theirs = await_inbox(&api, &doctor_token, "schedule-booked").await;
    assert_eq!(theirs.len(), 1);
    assert!(
        theirs[0]["title"]
            .as_str()
            .unwrap()
            .starts_with("New appointment on")
    );

    // WHEN the device is removed and the appointment cancelled
    let r = device(&api, &token, Method::DELETE, body.clone()).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let r = device(&api, &token, Method::DELETE, body).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "removing twice is fine");
    let r = call(
        &api,
        Method::POST,
        &format!("/v1/clinics/{clinic}/appointments/{id}/cancel"),
        Some(json!({"reason": CANARY})),
        &token,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // THEN the doctor is told in the app, the patient by SMS, and no push goes to the device
    let cancelled = await_inbox(&api, &doctor_token, "schedule-cancelled").await;
    assert_eq!(cancelled.len(), 1);
    until(20, "the cancellation SMS", || async {
        (sms_to(&phone).await.len() == 2).then_some(())
    })
    .await;
    await_inbox(&api, &token, "appointment-cancelled").await;
    assert_eq!(
        pushes_to(&push_token).await.len(),
        1,
        "the removed device got nothing"
    );

    // Reading: marked once, filtered by unread, another's message or a made-up id is 404
    let read = |who: &str, nid: &str| {
        let path = format!("/v1/users/me/notifications/{nid}/read");
        let (api, who) = (&api, who.to_string());
        async move { call(api, Method::POST, &path, None, &who).await }
    };
    let nid = mine[0]["notificationId"].as_str().unwrap();
    assert_eq!(read(&token, nid).await.status, StatusCode::NO_CONTENT);
    assert_eq!(read(&token, nid).await.status, StatusCode::NO_CONTENT);
    assert_eq!(read(&doctor_token, nid).await.status, StatusCode::NOT_FOUND);
    assert_eq!(read(&token, "nope").await.status, StatusCode::NOT_FOUND);
    let unread = inbox(&api, &token, "?unread=true").await;
    assert!(
        unread.iter().all(|m| m["notificationId"] != nid),
        "{unread:?}"
    );
    let all = inbox(&api, &token, "").await;
    let first = all.iter().find(|m| m["notificationId"] == nid).unwrap();
    assert!(first["readAt"].is_string());
    // Paged newest first, with a cursor bound to its owner
    let page = call(
        &api,
        Method::GET,
        "/v1/users/me/notifications?limit=1",
        None,
        &token,
    )
    .await;
    assert_eq!(page.body["items"][0]["template"], "appointment-cancelled");
    let cursor = page.body["nextCursor"].as_str().unwrap();
    let next = format!("/v1/users/me/notifications?limit=1&cursor={cursor}");
    let second = call(&api, Method::GET, &next, None, &token).await;
    assert_eq!(second.body["items"][0]["template"], "appointment-booked");
    let stolen = call(&api, Method::GET, &next, None, &doctor_token).await;
    assert_eq!(stolen.status, StatusCode::BAD_REQUEST);

    // No channel and no stored message carries the reason
    let everything = json!([
        mail_to(&email).await,
        sms_to(&phone).await,
        pushes_to(&push_token).await,
        inbox(&api, &token, "").await,
        inbox(&api, &doctor_token, "").await,
    ])
    .to_string();
    assert!(!everything.contains(CANARY));
}

async fn stack(label: &str) -> Stack {
    blackbox::fresh_stack(label).await
}

async fn clinic(stack: &Stack, name: &str) -> ClinicId {
    let clinic = ClinicId::generate();
    shared::provision::put_clinic(
        &stack.clients,
        &stack.resources.table,
        &clinic,
        (name, "Europe/Berlin", "EUR"),
        false,
    )
    .await
    .unwrap();
    clinic
}

fn job(user: &UserId, clinic: &ClinicId, template: &str, channel: &str) -> NotificationJob {
    NotificationJob {
        job_id: uuid::Uuid::new_v4().to_string(),
        kind: template.into(),
        channel: channel.into(),
        user_id: user.clone(),
        clinic_id: Some(clinic.clone()),
        template: template.into(),
        params: BTreeMap::from([
            ("clinicName".to_string(), "Paced".to_string()),
            (
                "startsAt".to_string(),
                "Tuesday 2026-12-01, 19:30 (CET)".to_string(),
            ),
            (
                "appointmentUrl".to_string(),
                format!("http://app/clinics/{clinic}/appointments/a"),
            ),
            (
                "alertUrl".to_string(),
                format!("http://app/clinics/{clinic}/alerts/1"),
            ),
        ]),
        correlation_id: "test".into(),
        trace_id: None,
        created_at: jiff::Timestamp::now().to_string(),
        slot_ms: None,
    }
}

async fn record(stack: &Stack, job: &NotificationJob) -> Option<notifications::store::Delivery> {
    notifications::store::get(&stack.notifications.table, &job.job_id, &job.channel)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_disabled_endpoint_is_forgotten_and_critical_alerts_pass_quiet_hours() {
    let api = Api::serve(stack("push").await).await;
    let stack = api.stack.as_ref().unwrap();
    let clinic = clinic(stack, "Push").await;
    let (user, email) = person(stack, Some(&clinic), Role::Patient, None, true).await;
    let token = api.token(&email, DEMO_PASSWORD).await;
    let push_token = format!("apns-{}", uuid::Uuid::new_v4());
    let body = json!({"platform": "apns", "token": push_token});
    assert_eq!(
        device(&api, &token, Method::POST, body.clone())
            .await
            .status,
        StatusCode::CREATED
    );
    // GIVEN quiet hours from an hour ago to two hours from now
    let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC);
    let hh_mm = |z: jiff::Zoned| z.strftime("%H:%M").to_string();
    let (start, end) = (
        hh_mm(
            now.checked_sub(jiff::SignedDuration::from_hours(1))
                .unwrap(),
        ),
        hh_mm(
            now.checked_add(jiff::SignedDuration::from_hours(2))
                .unwrap(),
        ),
    );
    let r = call(
        &api,
        Method::PUT,
        "/v1/users/me/notification-preferences",
        Some(json!({"quietHours": {"start": start, "end": end, "timeZone": "UTC"}})),
        &token,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // AND the push service disabled the device's endpoint (the app was removed)
    let sns = aws_sdk_sns::Client::new(&stack.clients.sdk);
    let apps = notifications::parse_push_apps(&stack.resources.push_apps);
    let app = &apps.iter().find(|(p, _)| p == "apns").unwrap().1;
    let endpoints = sns
        .list_endpoints_by_platform_application()
        .platform_application_arn(app)
        .send()
        .await
        .unwrap();
    let arn = endpoints
        .endpoints()
        .iter()
        .find(|e| e.attributes().and_then(|a| a.get("Token")) == Some(&push_token))
        .and_then(|e| e.endpoint_arn())
        .unwrap()
        .to_string();
    sns.set_endpoint_attributes()
        .endpoint_arn(&arn)
        .attributes("Enabled", "false")
        .send()
        .await
        .unwrap();
    // WHEN a critical alert and an appointment message go out by push
    let critical = &stack.resources.notifications_critical_url;
    let normal = &stack.resources.notifications_normal_url;
    let alert = job(&user, &clinic, "clinical-alert", "push");
    let held = job(&user, &clinic, "appointment-confirmed", "push");
    alert.send(&stack.clients.sqs, critical).await.unwrap();
    held.send(&stack.clients.sqs, normal).await.unwrap();
    while drain_notifications(&stack.notifications, critical)
        .await
        .unwrap()
        > 0
    {}
    while drain_notifications(&stack.notifications, normal)
        .await
        .unwrap()
        > 0
    {}
    // THEN the alert was not held, found the endpoint disabled and forgot the device; the
    // appointment message waits for the quiet hours to end
    let r = record(stack, &alert).await.expect("the alert was handled");
    assert_eq!(
        (r.status.as_str(), r.reason.as_deref()),
        ("SKIPPED", Some("devices_disabled"))
    );
    assert!(
        notifications::devices::endpoints(&stack.notifications.table, &user)
            .await
            .unwrap()
            .is_empty()
    );
    let waiting = record(stack, &held).await.expect("recorded as waiting");
    assert_eq!(
        (waiting.status.as_str(), waiting.reason.as_deref()),
        ("DEFERRED", Some("quiet_hours"))
    );
    // WHEN the app registers again (SNS enables the endpoint) and another alert goes out
    assert_eq!(
        device(&api, &token, Method::POST, body).await.status,
        StatusCode::CREATED
    );
    let again = job(&user, &clinic, "clinical-alert", "push");
    again.send(&stack.clients.sqs, critical).await.unwrap();
    while drain_notifications(&stack.notifications, critical)
        .await
        .unwrap()
        > 0
    {}
    // THEN it arrives
    let pushes = pushes_to(&push_token).await;
    assert_eq!(pushes.len(), 1, "{pushes:?}");
    let apns: Value = serde_json::from_str(pushes[0]["APNS"].as_str().unwrap()).unwrap();
    assert_eq!(apns["aps"]["alert"]["title"], "A clinical alert from Paced");
    assert_eq!(record(stack, &again).await.unwrap().status, "SENT");
}

#[tokio::test]
async fn a_clinics_flood_of_mail_is_paced_to_its_limit_and_none_is_lost() {
    // GIVEN 150 emails for 15 patients of one clinic, queued at once
    let stack = stack("rate").await;
    let clinic = clinic(&stack, "Paced").await;
    let mut patients = Vec::new();
    for _ in 0..15 {
        patients.push(account(&stack, Some(&clinic), Role::Patient, None, false).await);
    }
    let jobs: Vec<NotificationJob> = (0..150)
        .map(|i| {
            job(
                &patients[i % 15].0,
                &clinic,
                "appointment-confirmed",
                "email",
            )
        })
        .collect();
    NotificationJob::send_all(
        &jobs,
        &stack.clients.sqs,
        &stack.resources.notifications_normal_url,
    )
    .await
    .unwrap();
    // WHEN the worker runs
    let _worker = stack.spawn_notifications(Duration::from_millis(100));
    // THEN every one is sent, within about a minute and a half (looked at once a second,
    // newest job first, so the looking does not slow the worker down)
    let mut sent = Vec::new();
    for _ in 0..240 {
        sent.clear();
        for j in jobs.iter().rev() {
            match record(&stack, j).await {
                Some(d) if d.status == "SENT" => sent.push(d.updated_at),
                _ => break,
            }
        }
        if sent.len() == jobs.len() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(sent.len(), jobs.len(), "every email was sent");
    // ... never more than 100 in any minute (records keep whole seconds: 59 of them span less
    // than a minute)
    let mut times = sent;
    times.sort_unstable();
    for (i, start) in times.iter().enumerate() {
        let within = times[i..].iter().take_while(|&&t| t <= start + 59).count();
        assert!(
            within <= 100,
            "{within} sent in the minute from {start}: {:?}",
            times.iter().map(|t| t - times[0]).collect::<Vec<_>>()
        );
    }
    assert!(times[149] - times[0] >= 60, "the rest waited: {times:?}");
    for (_, email) in &patients {
        assert_eq!(mail_to(email).await.len(), 10, "{email}");
    }
}
