//! Notification benchmarks for `make bench`: AWS calls per delivered message on each channel,
//! jobs per second through one worker, and the time from a booking's commit to its email in the
//! emulator (the relay and the notifications consumers polling as `make dev` runs them).

use http::Method;
use serde_json::json;
use shared::{contracts::NotificationJob, ids::ClinicId};
use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use crate::{
    BoxError, DEMO_CLINIC_ID, Stack,
    bench::{call, password_token},
    drain_notifications,
};

/// An appointment message for the demo patient on `channel`.
fn job(clinic: &ClinicId, channel: &str) -> NotificationJob {
    NotificationJob {
        job_id: uuid::Uuid::new_v4().to_string(),
        kind: "appointment.confirmed".into(),
        channel: channel.into(),
        user_id: crate::demo_user_id(7),
        clinic_id: Some(clinic.clone()),
        template: "appointment-confirmed".into(),
        params: BTreeMap::from([
            ("clinicName".to_string(), "Demo Clinic".to_string()),
            (
                "startsAt".to_string(),
                "Tuesday 2026-12-01, 19:30 (CET)".to_string(),
            ),
            (
                "appointmentUrl".to_string(),
                format!("http://127.0.0.1:3000/clinics/{clinic}/appointments/x"),
            ),
        ]),
        correlation_id: "bench".into(),
        trace_id: None,
        created_at: jiff::Timestamp::now().to_string(),
        slot_ms: None,
    }
}

/// A patient of the clinic with a proven address and no password (the desk books for them).
async fn patient(
    stack: &Stack,
    clinic: &ClinicId,
    i: usize,
) -> Result<shared::ids::UserId, BoxError> {
    crate::soak::member(
        stack,
        clinic,
        &format!("latency-{i}@bench.example"),
        shared::policy::Role::Patient,
        None,
    )
    .await
}

/// The `p` quantile of sorted durations, in milliseconds (0 for none).
pub(crate) fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// The notifications section of the report, on a stack of its own (so no backlog of earlier
/// benchmarks' events is in the queues or the sending limits).
pub async fn table(clients: &shared::aws::Clients) -> Result<String, BoxError> {
    let stack = &Stack::up(
        clients.clone(),
        &shared::provision::unique_prefix("delivery"),
    )
    .await?;
    stack.seed_demo().await?;
    let clinic = ClinicId::parse(DEMO_CLINIC_ID).ok_or("demo clinic")?;
    let normal = &stack.resources.notifications_normal_url;
    let counter = &stack.clients.calls;
    let mut out = String::from(
        "\n## Notifications\n\n| delivery (one queue message, receive and delete included) | AWS calls | depth |\n|---|---|---|\n",
    );
    // The demo patient gets a phone and a device, so every channel has somewhere to go.
    let router = stack.gateway();
    let token = password_token(&router, "patient@demo.clinic").await?;
    for (method, path, body) in [
        (
            Method::PATCH,
            "/v1/users/me",
            json!({"phone": "+4930555000"}),
        ),
        (
            Method::POST,
            "/v1/users/me/devices",
            json!({"platform": "fcm", "token": "bench-device-token"}),
        ),
    ] {
        let (status, answer) = call(&router, method, path, Some(body), Some(&token)).await?;
        if !status.is_success() {
            return Err(format!("{path} answered {status}: {answer}").into());
        }
    }
    // The login's notice goes first, unmeasured.
    let high = &stack.resources.notifications_high_url;
    while drain_notifications(&stack.notifications, high).await? > 0 {}
    for channel in ["email", "sms", "push", "inApp"] {
        // Warm: the first message opens data keys and fills the clinic cache.
        job(&clinic, channel)
            .send(&stack.clients.sqs, normal)
            .await?;
        while drain_notifications(&stack.notifications, normal).await? > 0 {}
        job(&clinic, channel)
            .send(&stack.clients.sqs, normal)
            .await?;
        let (calls, depth) = (counter.get(), counter.depth());
        let n = drain_notifications(&stack.notifications, normal).await?;
        if n != 1 {
            return Err(format!("expected one {channel} job, found {n}").into());
        }
        out.push_str(&format!(
            "| appointment message by {channel} | {} | {} |\n",
            counter.get() - calls,
            counter.depth() - depth
        ));
    }

    // Throughput: one worker (the in-process handler, batches of ten) over 200 email jobs,
    // with limits high enough not to hold any.
    let mut cfg = crate::notifications_config(
        &stack.resources,
        shared::config::PlatformConfig {
            signing_secrets_ciphertext: None,
            ..crate::auth_config(&stack.resources).platform
        },
        0,
    );
    cfg.limits = notifications::limits::Limits {
        clinic_per_minute: 1_000_000,
        recipient_per_minute: 1_000_000,
    };
    let worker = notifications::state(
        &stack.clients,
        cfg,
        std::sync::Arc::new(shared::clock::SystemClock),
    )
    .await?;
    let jobs: Vec<NotificationJob> = (0..200).map(|_| job(&clinic, "email")).collect();
    NotificationJob::send_all(&jobs, &stack.clients.sqs, normal).await?;
    let started = Instant::now();
    let mut received = 0;
    loop {
        received += drain_notifications(&worker, normal).await?;
        // Every job received once: the run is over when they are all sent.
        if received >= jobs.len() {
            let mut all = true;
            for j in jobs.iter().rev() {
                let d = notifications::store::get(&worker.table, &j.job_id, "email").await?;
                if d.is_none_or(|d| d.status != "SENT") {
                    all = false;
                    break;
                }
            }
            if all {
                break;
            }
        }
        if started.elapsed() > Duration::from_secs(300) {
            return Err("the throughput run did not finish".into());
        }
    }
    let per_second = jobs.len() as f64 / started.elapsed().as_secs_f64();
    out.push_str(&format!(
        "\nThroughput: {} email jobs through one worker in {:.1} s: **{per_second:.0} jobs/s** \
         (a batch's ten messages side by side; the emulator applies DynamoDB requests one at a time).\n",
        jobs.len(),
        started.elapsed().as_secs_f64()
    ));

    // Commit to inbox: bookings through the gateway, the relay and the consumers polling every
    // 100 ms, until the patient's email is in the emulator's SES.
    let _relay = stack.spawn_relay(Duration::from_millis(100));
    let _notify = stack.spawn_notifications(Duration::from_millis(100));
    let doctor = crate::demo_user_id(3);
    // The desk books (a patient's own open bookings are limited).
    let desk = password_token(&router, "reception@demo.clinic").await?;
    let day = jiff::Zoned::now()
        .with_time_zone(jiff::tz::TimeZone::get("Europe/Berlin")?)
        .date()
        .checked_add(jiff::Span::new().days(5))?;
    let (_, slots) = call(
        &router,
        Method::GET,
        &format!("/v1/clinics/{clinic}/doctors/{doctor}/slots?date={day}"),
        None,
        Some(&token),
    )
    .await?;
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    let booked_mail = |mail: &[serde_json::Value]| {
        mail.iter()
            .filter(|m| {
                m["subject"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("Your appointment on"))
            })
            .count()
    };
    // (Each patient's booking mail is the only one with that subject to their address.)
    let mut latencies = Vec::new();
    for i in 0..10 {
        let Some(at) = slots["slots"][i]["startsAt"].as_str() else {
            break;
        };
        // A patient of their own each time, so no person's sending limit paces the run.
        let patient = patient(stack, &clinic, i).await?;
        let before = booked_mail(&crate::sent_mail(&endpoint).await?);
        let (status, _) = call(
            &router,
            Method::POST,
            &format!("/v1/clinics/{clinic}/appointments"),
            Some(json!({"doctorId": doctor, "patientId": patient, "kind": "VIDEO_CALL", "startsAt": at})),
            Some(&desk),
        )
        .await?;
        if !status.is_success() {
            return Err(format!("a measured booking answered {status}").into());
        }
        let committed = Instant::now();
        loop {
            if booked_mail(&crate::sent_mail(&endpoint).await?) > before {
                latencies.push(committed.elapsed());
                break;
            }
            if committed.elapsed() > Duration::from_secs(30) {
                let (log, _) = notifications::store::log(
                    &stack.notifications,
                    &clinic,
                    &notifications::store::LogFilter::default(),
                    Some(20),
                    None,
                )
                .await?;
                return Err(
                    format!("a booking's email did not arrive within 30 s: {log:?}").into(),
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    latencies.sort();
    if !latencies.is_empty() {
        out.push_str(&format!(
            "\nBooking commit to its email in the emulator's SES ({} bookings; relay and \
             consumers polling every 100 ms): p50 **{:.0} ms**, p95 **{:.0} ms**.\n",
            latencies.len(),
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.95)
        ));
    }
    Ok(out)
}
