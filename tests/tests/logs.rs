//! PHI never reaches the logs: everything the functions log while a scenario writes, reads,
//! refuses and fails on canary values (a profile, an appointment's reason, health records, a
//! break-glass reason) is captured, and holds none of them. A test binary of its own, so the
//! capturing subscriber is the process's only one.

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use blackbox::{Api, call, demo_slots, person};
use http::{Method, StatusCode};
use local_stack::{DEMO_CLINIC_ID, DEMO_PASSWORD, demo_user_id};
use serde_json::json;
use shared::{ids::ClinicId, policy::Role};

const CANARY: &str = "CANARY-LOGS-9a3e";

#[derive(Clone)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn canary_values_never_reach_the_logs() {
    let captured = Captured(Arc::new(Mutex::new(Vec::new())));
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || shared::telemetry::Typed(writer.clone()))
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");

    let api = &Api::start().await;
    let stack = api.stack.as_ref().expect("in-process stack");
    let clinic = ClinicId::parse(DEMO_CLINIC_ID).expect("clinic");
    // A patient whose own words carry the canary: a profile, a booking's reason
    let (patient, email) = person(stack, Some(&clinic), Role::Patient, None, true).await;
    let token = api.token(&email, DEMO_PASSWORD).await;
    let me = call(
        api,
        Method::PATCH,
        "/v1/users/me",
        Some(json!({"givenName": CANARY})),
        &token,
    )
    .await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    let slots = demo_slots(api, &token, 2).await;
    let booked = call(api, Method::POST, &format!("/v1/clinics/{DEMO_CLINIC_ID}/appointments"), Some(json!({"doctorId": demo_user_id(3), "kind": "VIDEO_CALL", "startsAt": slots[0], "reason": CANARY})), &token).await;
    assert_eq!(booked.status, StatusCode::CREATED, "{}", booked.body);
    // Health records with the canary, written, read, refused and invalid
    let doctor = api.token("doctor@demo.clinic", DEMO_PASSWORD).await;
    let ehr = format!("/v1/clinics/{DEMO_CLINIC_ID}/patients/{patient}/ehr");
    let made = call(
        api,
        Method::POST,
        &format!("{ehr}/medical-history"),
        Some(json!({"data": {"name": CANARY, "clinicalStatus": "active", "notes": CANARY}})),
        &doctor,
    )
    .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let bad = call(api, Method::POST, &format!("{ehr}/vitals"), Some(json!({"data": {"takenAt": CANARY, "measurements": [{"type": CANARY, "value": 1, "unit": CANARY}]}})), &doctor).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!bad.body.to_string().contains(CANARY), "{}", bad.body);
    let unknown = call(
        api,
        Method::POST,
        &format!("{ehr}/vitals"),
        Some(json!({"data": {CANARY: 1}})),
        &doctor,
    )
    .await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        call(api, Method::GET, &ehr, None, &doctor).await.status,
        StatusCode::OK
    );
    let (_, other_email) = person(stack, Some(&clinic), Role::Doctor, None, true).await;
    let other = api.token(&other_email, DEMO_PASSWORD).await;
    assert_eq!(
        call(api, Method::GET, &ehr, None, &other).await.status,
        StatusCode::NOT_FOUND
    );
    let glass = call(
        api,
        Method::POST,
        &format!("/v1/clinics/{DEMO_CLINIC_ID}/patients/{patient}/break-glass"),
        Some(json!({"reason": format!("{CANARY} in the emergency room")})),
        &other,
    )
    .await;
    assert_eq!(glass.status, StatusCode::CREATED, "{}", glass.body);
    assert_eq!(
        call(api, Method::GET, &ehr, None, &other).await.status,
        StatusCode::OK
    );
    let log = call(api, Method::GET, "/v1/users/me/access-log", None, &token).await;
    assert!(
        log.body.to_string().contains(CANARY),
        "the patient reads the reason"
    );

    let logs =
        String::from_utf8_lossy(&captured.0.lock().unwrap_or_else(|e| e.into_inner())).to_string();
    assert!(logs.lines().count() > 10, "the functions logged: {logs}");
    assert!(!logs.contains(CANARY), "a canary in the logs");

    // Every line is typed; requests, security events and business metrics among them.
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let known = [
        "api", "database", "security", "audit", "metrics", "error", "system",
    ];
    for l in &lines {
        let kind = l["type"].as_str().unwrap_or_default();
        assert!(known.contains(&kind), "untyped line: {l}");
    }
    let of = |kind: &str| lines.iter().filter(|l| l["type"] == kind).count();
    assert!(of("api") >= 10, "request lines");
    // The doctor's 404 is no security event, but break-glass is
    assert!(
        lines
            .iter()
            .any(|l| l["type"] == "security" && l["fields"]["message"] == "break-glass opened"),
        "break-glass is a security event"
    );
    // A booking is counted as an embedded metric document CloudWatch reads.
    let booking = lines
        .iter()
        .find(|l| l["type"] == "metrics" && l.get("BookingsCreated").is_some())
        .expect("a BookingsCreated metric");
    assert_eq!(booking["BookingsCreated"], 1);
    assert_eq!(
        booking["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        shared::metrics::NAMESPACE
    );
    assert_eq!(
        booking["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"],
        "BookingsCreated"
    );
}
