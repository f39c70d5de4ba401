//! PHI canaries never reach the logs. Its own test binary: a scoped tracing subscriber is only
//! reliable when no other test in the process registers the same call sites concurrently.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use http::{Method, StatusCode};
use serde_json::json;
use std::sync::Arc;

#[derive(Clone, Default)]
struct Capture(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn phi_canaries_never_reach_the_logs() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let app = spawn().await;
    let canary = json!({
        "clinicId": app.clinic, "email": "canary.mail.7f3a@example.org", "password": "CanaryPassword-7f3a",
        "givenName": "CanaryGiven7f3a", "familyName": "CanaryFamily7f3a", "phone": "+4917700737373", "birthDate": "1977-07-07"
    });
    assert_eq!(
        app.call(
            Method::POST,
            "/v1/auth/register",
            Some(canary.clone()),
            None
        )
        .await
        .status,
        StatusCode::CREATED
    );
    // Error paths: duplicate, bad types with canary values, wrong password, unknown email, forgot
    app.call(
        Method::POST,
        "/v1/auth/register",
        Some(canary.clone()),
        None,
    )
    .await;
    let mut bad = canary.clone();
    bad["phone"] = json!("+CanaryBadPhone7f3a");
    bad["birthDate"] = json!("CanaryDate7f3a");
    app.call(Method::POST, "/v1/auth/register", Some(bad), None)
        .await;
    app.call_with(
        Method::POST,
        "/v1/auth/register",
        Some(br#"{"email": "canary.mail.7f3a@example.org", "givenName": 7}"#.to_vec()),
        None,
        &[],
    )
    .await;
    app.login("canary.mail.7f3a@example.org", "CanaryWrongPassword-7f3a")
        .await;
    app.login("canary.unknown.7f3a@example.org", "CanaryPassword-7f3a")
        .await;
    let ok = app
        .login("canary.mail.7f3a@example.org", "CanaryPassword-7f3a")
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    app.call(
        Method::POST,
        "/v1/auth/password/forgot",
        Some(json!({"email": "canary.mail.7f3a@example.org"})),
        None,
    )
    .await;
    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("user registered"),
        "the capture must see the function's logs: {}",
        &logs[..logs.len().min(3000)]
    );
    assert!(logs.contains("login failed"));
    for needle in ["canary", "Canary", "4917700737373", "1977-07-07"] {
        assert!(
            !logs.contains(needle),
            "PHI canary {needle} leaked into logs"
        );
    }
}
