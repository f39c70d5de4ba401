//! Appointment reminders from the scheduled sweep: a confirmed appointment is reminded a day
//! ahead and two hours ahead, each once; a moved one is reminded of its new time only, and a
//! reminder for a time it no longer has, or for a cancelled one, is never sent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use blackbox::{Api, book_demo_doctor, call, demo_slots, mail_to, person};
use http::{Method, StatusCode};
use local_stack::{DEMO_CLINIC_ID, DEMO_PASSWORD, drain_notifications, notifications_config};
use serde_json::json;
use shared::{
    clock::ManualClock, config::PlatformConfig, contracts::NotificationJob, ids::ClinicId,
    policy::Role,
};
use std::{sync::Arc, time::Duration};

const REMINDER_24H: &str = "Reminder: your appointment on";
const REMINDER_2H: &str = "Your appointment is at";

/// The subjects of the mail `email` got that start with `prefix`.
async fn subjects(email: &str, prefix: &str) -> Vec<String> {
    mail_to(email)
        .await
        .into_iter()
        .filter_map(|m| m["subject"].as_str().map(str::to_string))
        .filter(|s| s.starts_with(prefix))
        .collect()
}

async fn await_subjects(email: &str, prefix: &str, n: usize) -> Vec<String> {
    for _ in 0..100 {
        let s = subjects(email, prefix).await;
        if s.len() >= n {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("fewer than {n} '{prefix}' messages for {email}");
}

#[tokio::test]
async fn a_confirmed_appointment_is_reminded_twice_and_a_moved_one_only_of_its_new_time() {
    let api = Api::start().await;
    let stack = api.stack.as_ref().unwrap();
    let _worker = stack.spawn_notifications(Duration::from_millis(100));
    let clinic = ClinicId::parse(DEMO_CLINIC_ID).unwrap();
    let (user, email) = person(stack, Some(&clinic), Role::Patient, None, true).await;
    let token = api.token(&email, DEMO_PASSWORD).await;
    let doctor_token = api.token("doctor@demo.clinic", DEMO_PASSWORD).await;
    // GIVEN a confirmed appointment the day after tomorrow
    let slots = demo_slots(&api, &token, 2).await;
    let slot = |i: usize| slots[i].clone();
    let id = book_demo_doctor(&api, &token, &slot(0), None).await;
    let appointment = format!("/v1/clinics/{clinic}/appointments/{id}");
    let r = call(
        &api,
        Method::POST,
        &format!("{appointment}/confirm"),
        None,
        &doctor_token,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let first: jiff::Timestamp = slot(0).parse().unwrap();
    // A sweep that runs at a chosen time (the worker sends with the real one).
    let clock = Arc::new(ManualClock::new(first));
    let platform = PlatformConfig {
        signing_secrets_ciphertext: None,
        ..local_stack::auth_config(&stack.resources).platform
    };
    let sweeper = notifications::state(
        &stack.clients,
        notifications_config(&stack.resources, platform, 0),
        clock.clone(),
    )
    .await
    .unwrap();
    let sweep = |hours_before: i64, at: jiff::Timestamp| {
        clock.set(
            at - jiff::SignedDuration::from_hours(hours_before)
                + jiff::SignedDuration::from_mins(1),
        );
        let (sweeper, clinic) = (&sweeper, &clinic);
        async move {
            notifications::reminders::sweep_clinic(sweeper, clinic)
                .await
                .unwrap()
        }
    };

    // WHEN the sweep runs more than a day ahead: nothing; a day ahead, twice: one reminder
    clock.set(first - jiff::SignedDuration::from_hours(30));
    let early = notifications::reminders::sweep_clinic(&sweeper, &clinic)
        .await
        .unwrap();
    assert_eq!(early.queued, 0);
    assert_eq!(sweep(24, first).await.queued, 1);
    assert_eq!(sweep(24, first).await.queued, 0, "marked: not queued again");
    let day_ahead = await_subjects(&email, REMINDER_24H, 1).await;
    assert_eq!(day_ahead.len(), 1);

    // WHEN the appointment moves to the next slot and the sweep runs two hours before it
    let r = call(
        &api,
        Method::POST,
        &format!("{appointment}/reschedule"),
        Some(json!({"startsAt": slot(1)})),
        &token,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let moved: jiff::Timestamp = slot(1).parse().unwrap();
    assert_eq!(sweep(2, moved).await.queued, 1, "the new time is reminded");
    let soon = await_subjects(&email, REMINDER_2H, 1).await;
    assert_eq!(soon.len(), 1);
    let local = |t: jiff::Timestamp| {
        t.to_zoned(jiff::tz::TimeZone::get("Europe/Berlin").unwrap())
            .strftime("%H:%M")
            .to_string()
    };
    assert!(
        soon[0].contains(&local(moved)),
        "{} names {}",
        soon[0],
        local(moved)
    );
    // ... and a reminder of the old time, had one been queued, is not sent
    let stale = NotificationJob {
        job_id: uuid::Uuid::new_v4().to_string(),
        kind: "appointment.reminder".into(),
        channel: "email".into(),
        user_id: user.clone(),
        clinic_id: Some(clinic.clone()),
        template: "appointment-reminder-2h".into(),
        params: [
            ("clinicName", "Demo Clinic".to_string()),
            ("startsAt", "then".to_string()),
            ("appointmentUrl", "http://app/x".to_string()),
            ("appointmentId", id.clone()),
            ("startsAtUnix", first.as_second().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
        correlation_id: "test".into(),
        trace_id: None,
        created_at: jiff::Timestamp::now().to_string(),
        slot_ms: None,
    };
    let normal = &stack.resources.notifications_normal_url;
    stale.send(&stack.clients.sqs, normal).await.unwrap();
    let mut record = None;
    for _ in 0..50 {
        drain_notifications(&stack.notifications, normal)
            .await
            .unwrap();
        record = notifications::store::get(&stack.notifications.table, &stale.job_id, "email")
            .await
            .unwrap();
        if record.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let record = record.expect("the stale reminder was handled");
    assert_eq!(
        (record.status.as_str(), record.reason.as_deref()),
        ("SKIPPED", Some("stale_reminder"))
    );

    // WHEN it is cancelled, no sweep reminds it again
    let r = call(
        &api,
        Method::POST,
        &format!("{appointment}/cancel"),
        Some(json!({"reason": "moving away"})),
        &token,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let after = sweep(1, moved).await;
    assert_eq!((after.upcoming, after.queued), (0, 0));
    assert_eq!(subjects(&email, REMINDER_2H).await.len(), 1);
    assert_eq!(subjects(&email, REMINDER_24H).await.len(), 1);
}
