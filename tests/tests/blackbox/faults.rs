//! AWS faults never become 500s and never lose data. The stack under test reaches the emulator
//! through a fault-injection proxy (`local_stack::faults`) that fails chosen calls as AWS
//! would: DynamoDB throttling and cancelled transactions, timeouts and broken connections,
//! KMS throttling and internal errors, EventBridge failures. Each answer is a 503 problem
//! with `Retry-After`; the same request then succeeds; nothing is half written, no plaintext
//! is stored, and the outbox publishes each event once after recovery.

use std::{sync::Arc, time::Duration};

use blackbox::{Api, Reply, call, demo_slots, person};
use http::{Method, StatusCode};
use local_stack::{
    DEMO_CLINIC_ID, DEMO_PASSWORD, Stack,
    faults::{Fault, FaultProxy},
};
use serde_json::json;
use shared::{aws::CallLimits, ids::ClinicId, policy::Role};

/// Short enough that a test of timeouts ends in seconds, long enough for a loaded emulator.
const LIMITS: CallLimits = CallLimits {
    connect: Duration::from_secs(2),
    attempt: Duration::from_secs(3),
    operation: Duration::from_secs(8),
    max_attempts: 3,
};

/// A demo stack seeded directly, then served by a second stack (fresh containers: empty key
/// caches) whose clients go through the proxy.
async fn faulty(label: &str) -> (Api, FaultProxy) {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL (make test)");
    let proxy = FaultProxy::start(&endpoint).await.expect("proxy");
    let seeded = Stack::up(
        shared::provision::test_clients().await,
        &shared::provision::unique_prefix(label),
    )
    .await
    .expect("stack");
    seeded.seed_demo().await.expect("seed");
    let clients = shared::provision::local_clients_with(&proxy.url, LIMITS).await;
    let served = Stack::with_clock(
        clients,
        seeded.resources.clone(),
        Arc::new(shared::clock::SystemClock),
    )
    .await
    .expect("served stack");
    (Api::serve(served).await, proxy)
}

/// A 503 problem with `Retry-After` that says nothing of the cause.
fn assert_unavailable(r: &Reply, what: &str) {
    assert_eq!(
        r.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{what}: {}",
        r.body
    );
    assert_eq!(
        r.headers["content-type"], "application/problem+json",
        "{what}"
    );
    assert!(r.headers.contains_key("retry-after"), "{what}");
    assert_eq!(r.body["code"], "temporarily_unavailable", "{what}");
    let text = r.body.to_string();
    assert!(
        !text.contains("injected") && !text.contains("Exception"),
        "{what}: the cause leaked: {text}"
    );
}

#[tokio::test]
async fn dynamodb_faults_answer_503_with_retry_after_and_the_same_request_then_succeeds() {
    let (api, proxy) = faulty("fdb").await;
    let patient = api.token("patient@demo.clinic", DEMO_PASSWORD).await;
    let path = format!("/v1/clinics/{DEMO_CLINIC_ID}/appointments");
    for (target, fault, what) in [
        (
            "DynamoDB_20120810.",
            Fault::error(400, "ProvisionedThroughputExceededException"),
            "throughput exceeded",
        ),
        (
            "DynamoDB_20120810.",
            Fault::error(400, "ThrottlingException"),
            "throttled",
        ),
        (
            "DynamoDB_20120810.",
            Fault::error(500, "InternalServerError"),
            "internal server error",
        ),
        ("DynamoDB_20120810.", Fault::Reset, "connection reset"),
        (
            "DynamoDB_20120810.",
            Fault::Delay(Duration::from_secs(10)),
            "timeout",
        ),
    ] {
        let before = proxy.injected(target);
        let answered = matches!(fault, Fault::Error { .. });
        proxy.inject(target, fault, None);
        let r = api.get(&path, Some(&patient)).await;
        assert_unavailable(&r, what);
        // The SDK tried an error answer again, as configured, before giving up (a slow or
        // broken call is cut by the attempt and operation timeouts).
        let attempts = proxy.injected(target) - before;
        let least = if answered { LIMITS.max_attempts } else { 1 };
        assert!(attempts >= least, "{what}: {attempts} attempts");
        proxy.clear();
        let r = api.get(&path, Some(&patient)).await;
        assert_eq!(r.status, StatusCode::OK, "{what}, retried: {}", r.body);
    }
    // Liveness stays a cheap answer; readiness says what is down.
    proxy.inject(
        "DynamoDB_20120810.DescribeTable",
        Fault::error(500, "InternalServerError"),
        None,
    );
    assert_eq!(api.get("/v1/health", None).await.status, StatusCode::OK);
    let r = api.get("/v1/health/ready", None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert_eq!(r.body["code"], "not_ready");
    let detail = r.body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("table") && detail.contains("auditTable") && !detail.contains("phiKey"),
        "{detail}"
    );
    proxy.clear();
    proxy.inject(
        "AmazonSQS.GetQueueAttributes",
        Fault::error(500, "InternalError"),
        None,
    );
    proxy.inject(
        "TrentService.DescribeKey",
        Fault::error(500, "KMSInternalException"),
        None,
    );
    let r = api.get("/v1/health/ready", None).await;
    let detail = r.body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("phiKey") && detail.contains("notificationsQueue"),
        "{detail}"
    );
    proxy.clear();
    let r = api.get("/v1/health/ready", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "ready");
    assert_eq!(r.headers["cache-control"], "no-store");
}

#[tokio::test]
async fn a_throttled_booking_writes_nothing_its_retry_books_once_and_its_event_is_published_once() {
    let (api, proxy) = faulty("ftx").await;
    let stack = api.stack.as_ref().expect("stack");
    // The bus fails from the start: the outbox must keep every event until it answers.
    proxy.inject(
        "AWSEvents.PutEvents",
        Fault::error(500, "InternalException"),
        None,
    );
    let _relay = stack.spawn_relay(Duration::from_millis(200));
    let demo = ClinicId::parse(DEMO_CLINIC_ID).expect("clinic");
    let (_, email) = person(stack, Some(&demo), Role::Patient, None, true).await;
    let token = api.token(&email, DEMO_PASSWORD).await;
    let slots = demo_slots(&api, &token, 4).await;
    let appointments = format!("/v1/clinics/{DEMO_CLINIC_ID}/appointments");
    let book = |at: &str| json!({"doctorId": local_stack::demo_user_id(3), "kind": "VIDEO_CALL", "startsAt": at});
    let post = |body: serde_json::Value, key: &'static str| {
        let auth = format!("Bearer {token}");
        let api = &api;
        let path = appointments.clone();
        async move {
            api.send(
                Method::POST,
                &path,
                Some(body.to_string().into_bytes()),
                &[("authorization", auth.as_str()), ("idempotency-key", key)],
            )
            .await
        }
    };
    let mine = || async {
        call(&api, Method::GET, &appointments, None, &token)
            .await
            .body["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    // WHEN the booking's transaction is cancelled by throttling, then throttled outright
    proxy.inject(
        "DynamoDB_20120810.TransactWriteItems",
        Fault::TransactionThrottled { items: 6 },
        Some(1),
    );
    assert_unavailable(&post(book(&slots[0]), "book-1").await, "cancelled");
    proxy.inject(
        "DynamoDB_20120810.TransactWriteItems",
        Fault::error(400, "ThrottlingException"),
        None,
    );
    assert_unavailable(&post(book(&slots[0]), "book-1").await, "throttled");
    proxy.clear();
    proxy.inject(
        "AWSEvents.PutEvents",
        Fault::error(500, "InternalException"),
        None,
    );
    // THEN nothing was written
    assert!(mine().await.is_empty(), "a half-made booking");
    // AND the same request (same key) then books exactly once
    let r = post(book(&slots[0]), "book-1").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.body["id"].as_str().expect("id").to_string();
    let again = post(book(&slots[0]), "book-1").await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(
        again.body["id"],
        id.as_str(),
        "the replay answers the same booking"
    );
    assert_eq!(mine().await.len(), 1);

    // AND while the bus fails, the outbox keeps the event; after recovery it is published once
    for _ in 0..50 {
        if proxy.injected("AWSEvents.PutEvents") > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(proxy.injected("AWSEvents.PutEvents") > 0, "the relay tried");
    proxy.clear();
    let events = api.bus_events(&["appointment.created"]).await;
    let published = events
        .iter()
        .filter(|e| e["detail-type"] == "appointment.created" && e.to_string().contains(&id))
        .count();
    assert_eq!(published, 1, "{events:?}");
}

/// Every item of the table, as text.
async fn table_text(stack: &Stack) -> String {
    blackbox::audit::scan(&stack.clients.dynamodb, &stack.resources.table, None)
        .await
        .iter()
        .map(|i| format!("{i:?}\n"))
        .collect()
}

#[tokio::test]
async fn kms_faults_answer_503_and_no_plaintext_is_ever_stored_or_returned() {
    let (api, proxy) = faulty("fkms").await;
    let stack = api.stack.as_ref().expect("stack");
    let login = || {
        api.post(
            "/v1/auth/login",
            json!({"email": "patient@demo.clinic", "password": DEMO_PASSWORD}),
            None,
        )
    };
    // GIVEN KMS cannot open data keys: a sign-in, whose answer holds the profile, is refused
    proxy.inject(
        "TrentService.Decrypt",
        Fault::error(500, "KMSInternalException"),
        None,
    );
    let r = login().await;
    assert_unavailable(&r, "decrypt failing");
    assert!(!r.body.to_string().contains("Pat"), "{}", r.body);
    proxy.clear();
    let r = login().await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["user"]["givenName"], "Pat");
    let token = r.body["accessToken"].as_str().expect("token").to_string();

    // WHEN KMS cannot make data keys, a change of the profile is refused and nothing is kept
    let phone = "+4930555019283";
    proxy.inject(
        "TrentService.GenerateDataKey",
        Fault::error(400, "ThrottlingException"),
        None,
    );
    let before = call(&api, Method::GET, "/v1/users/me", None, &token).await;
    assert_eq!(before.status, StatusCode::OK, "{}", before.body);
    let r = call(
        &api,
        Method::PATCH,
        "/v1/users/me",
        Some(json!({"phone": phone})),
        &token,
    )
    .await;
    assert_unavailable(&r, "data keys throttled");
    assert!(
        proxy.injected("TrentService.GenerateDataKey") >= LIMITS.max_attempts,
        "retried"
    );
    let after = call(&api, Method::GET, "/v1/users/me", None, &token).await;
    assert_eq!(
        after.body["version"], before.body["version"],
        "nothing changed"
    );
    assert!(!table_text(stack).await.contains(phone), "plaintext stored");
    // THEN once KMS answers, the same change is made, sealed
    proxy.clear();
    let r = call(
        &api,
        Method::PATCH,
        "/v1/users/me",
        Some(json!({"phone": phone})),
        &token,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["phone"], phone);
    assert!(!table_text(stack).await.contains(phone), "plaintext stored");
}

#[tokio::test]
async fn account_mail_the_queue_refused_is_queued_from_its_event_and_sent_once() {
    let (api, proxy) = faulty("fml").await;
    let stack = api.stack.as_ref().expect("stack");
    let demo = ClinicId::parse(DEMO_CLINIC_ID).expect("clinic");
    let (_, email) = person(stack, Some(&demo), Role::Patient, None, true).await;
    // GIVEN a notifications queue that refuses every message
    proxy.inject(
        "AmazonSQS.SendMessage",
        Fault::error(500, "InternalError"),
        None,
    );
    // WHEN the person asks for a password reset
    let r = api
        .post("/v1/auth/password/forgot", json!({ "email": email }), None)
        .await;
    // THEN the answer is the usual 202 although the queue refused the job
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    assert!(
        proxy.injected("AmazonSQS.SendMessage") > 0,
        "the call tried the queue"
    );
    // AND once the queue is back, the relay, the notifications consumer and the worker
    // deliver the reset mail, once
    proxy.clear();
    let _relay = stack.spawn_relay(Duration::from_millis(200));
    let _notifications = stack.spawn_notifications(Duration::from_millis(200));
    let mut mail = Vec::new();
    for _ in 0..100 {
        mail = blackbox::mail_to(&email).await;
        if !mail.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(mail.len(), 1, "the reset mail arrived");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(blackbox::mail_to(&email).await.len(), 1, "and only once");
    // AND with the queue up, a job sent directly and queued again from its event is one mail
    let r = api
        .post("/v1/auth/password/forgot", json!({ "email": email }), None)
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    for _ in 0..100 {
        if blackbox::mail_to(&email).await.len() > 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        blackbox::mail_to(&email).await.len(),
        2,
        "one more mail, not two"
    );
}
