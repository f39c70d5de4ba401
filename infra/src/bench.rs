//! Benchmarks for `make bench`: release binary sizes; cold start (process start until the
//! runtime asks for its first event from a local Lambda runtime API) of each function against
//! two hello-world `lambda_runtime` floors built in the same run (bare, and with the one KMS
//! decrypt of the secrets); AWS calls and sequential depth per operation; and the scale table
//! (items read per list page and analytics read, large clinic against small, see `scale`).

use axum::{
    Router,
    body::Body,
    extract::State,
    routing::{get, post},
};
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use shared::{aws::Clients, provision::unique_prefix};
use std::{
    path::Path,
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tokio::sync::oneshot;
use tower::ServiceExt;

use crate::{BoxError, DEMO_PASSWORD, Stack};

type Signal = Arc<Mutex<Option<oneshot::Sender<Result<(), String>>>>>;

async fn next_invocation(State(signal): State<Signal>) -> StatusCode {
    if let Some(tx) = signal.lock().unwrap_or_else(|e| e.into_inner()).take() {
        let _ = tx.send(Ok(()));
    }
    // Hold the long poll: the process is measured and killed while it waits here.
    std::future::pending::<()>().await;
    StatusCode::OK
}

async fn init_error(State(signal): State<Signal>, body: String) -> StatusCode {
    if let Some(tx) = signal.lock().unwrap_or_else(|e| e.into_inner()).take() {
        let _ = tx.send(Err(body));
    }
    StatusCode::ACCEPTED
}

/// Time from spawning `binary` until it polls the runtime API for its first event.
async fn cold_start(binary: &Path, env: &[(&'static str, String)]) -> Result<Duration, BoxError> {
    let (tx, rx) = oneshot::channel();
    let signal: Signal = Arc::new(Mutex::new(Some(tx)));
    let api = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next_invocation))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(signal);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, api).await });
    let name = binary
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("fn")
        .to_string();
    let started = Instant::now();
    let mut child = tokio::process::Command::new(binary)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", &name)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "bench")
        .env("LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let outcome = tokio::time::timeout(Duration::from_secs(30), rx).await;
    let elapsed = started.elapsed();
    let _ = child.kill().await;
    server.abort();
    match outcome {
        Ok(Ok(Ok(()))) => Ok(elapsed),
        Ok(Ok(Err(body))) => Err(format!("{name} reported an init error: {body}").into()),
        _ => Err(format!("{name} did not reach the runtime API within 30 s").into()),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs every benchmark and prints a markdown report (also written to `target/bench/report.md`).
pub async fn run(binaries: &[String]) -> Result<(), BoxError> {
    if binaries.is_empty() {
        return Err(
            "name the release binaries to measure; the hello-world baseline must be among them"
                .into(),
        );
    }
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    let clients = Clients::from_env_with(shared::aws::CallLimits::EMULATOR).await;
    let stack = Stack::up(clients.clone(), &unique_prefix("bench")).await?;
    let mut env = stack.resources.env();
    for var in [
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    ] {
        if let Ok(v) = std::env::var(var) {
            env.push((var, v));
        }
    }

    let mut report = String::from(
        "## Release binaries\n\n| binary | size (MiB) | cold start median (ms) | p90 (ms) | min (ms) | vs hello-world | vs hello-kms |\n|---|---|---|---|---|---|---|\n",
    );
    let mut rows = Vec::new();
    // Two floors: a bare runtime, and one that loads the AWS config and makes the one KMS
    // decrypt every function with secrets needs.
    let (mut bare, mut with_kms) = (None, None);
    for b in binaries {
        let path = Path::new(b);
        let size = std::fs::metadata(path)?.len();
        // Only the auth function holds the signing document, as on AWS.
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let mut own_env: Vec<_> = env
            .iter()
            .filter(|(k, _)| *k != "SIGNING_SECRETS" || name == "auth")
            .cloned()
            .collect();
        // The scheduled jobs name their work queue.
        match path.file_name().and_then(|n| n.to_str()) {
            Some("appointments-sweep") => own_env.push((
                "WORK_QUEUE_URL",
                stack.resources.appointments_sweep_url.clone(),
            )),
            Some("billing-sweep") => {
                own_env.push(("WORK_QUEUE_URL", stack.resources.billing_sweep_url.clone()));
            }
            Some("notifications-reminders") => own_env.push((
                "WORK_QUEUE_URL",
                stack.resources.notifications_reminders_url.clone(),
            )),
            Some("ehr-audit-seal") => {
                own_env.push(("WORK_QUEUE_URL", stack.resources.audit_seal_url.clone()));
            }
            _ => {}
        }
        let mut samples = Vec::with_capacity(runs);
        for _ in 0..runs {
            samples.push(cold_start(path, &own_env).await?);
        }
        samples.sort();
        let median = percentile(&samples, 0.5);
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(b)
            .to_string();
        match name.as_str() {
            "hello-lambda" => bare = Some(median),
            "hello-kms" => with_kms = Some(median),
            _ => {}
        }
        rows.push((name, size, median, percentile(&samples, 0.9), samples[0]));
    }
    for (name, size, median, p90, min) in &rows {
        let ratio = |base: Option<Duration>| {
            base.map(|b| format!("{:.1}x", ms(*median) / ms(b)))
                .unwrap_or_else(|| "n/a".into())
        };
        let (ratio, ratio_kms) = (ratio(bare), ratio(with_kms));
        report.push_str(&format!(
            "| {name} | {:.2} | {:.1} | {:.1} | {:.1} | {ratio} | {ratio_kms} |\n",
            *size as f64 / (1024.0 * 1024.0),
            ms(*median),
            ms(*p90),
            ms(*min)
        ));
    }
    report.push_str(&format!("\n{runs} runs each; cold start = process spawn until the first `GET /runtime/invocation/next`; \
        functions that need secrets decrypt them through the emulated KMS during init.\n"));

    report.push_str(
        "\n## AWS calls per operation (through the gateway router, against the emulator)\n\n\
        Depth: sequential round trips (calls made concurrently count once).\n\n\
        | operation | AWS calls | depth |\n|---|---|---|\n",
    );
    for (op, calls, depth) in calls_per_operation(&stack).await? {
        report.push_str(&format!("| {op} | {calls} | {depth} |\n"));
    }
    report.push_str(&crate::ehr_bench::table(&stack).await?);
    let large: usize = std::env::var("BENCH_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let router = stack.gateway();
    let token = super_admin_token(&router).await?;
    report.push_str(&crate::scale::table(&stack, &router, &token, large).await?);
    report.push_str(&crate::delivery::table(&stack.clients).await?);
    println!("{report}");
    std::fs::create_dir_all("target/bench")?;
    std::fs::write("target/bench/report.md", &report)?;
    Ok(())
}

pub(crate) async fn call(
    router: &Router,
    method: Method,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> Result<(StatusCode, Value), BoxError> {
    let mut req = Request::builder().method(method).uri(path);
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = router
        .clone()
        .oneshot(
            req.body(
                body.map(|b| Body::from(b.to_string()))
                    .unwrap_or_else(Body::empty),
            )?,
        )
        .await?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

/// The access token of a one-step login with the demo password.
pub(crate) async fn password_token(router: &Router, email: &str) -> Result<String, BoxError> {
    let (status, login) = call(
        router,
        Method::POST,
        "/v1/auth/login",
        Some(json!({"email": email, "password": DEMO_PASSWORD})),
        None,
    )
    .await?;
    ensure(status)?;
    Ok(login["accessToken"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

/// The demo super admin's password step: its challenge.
async fn super_admin_challenge(router: &Router) -> Result<Value, BoxError> {
    let (_, login) = call(
        router,
        Method::POST,
        "/v1/auth/login",
        Some(json!({"email": crate::DEMO_SUPER_ADMIN, "password": DEMO_PASSWORD})),
        None,
    )
    .await?;
    Ok(login["challenge"].clone())
}

/// Answers a challenge with the demo authenticator's code; a code is taken once, so one
/// already used in this 30-second step is followed by the next step's (within the skew).
async fn second_step(router: &Router, challenge: &Value) -> Result<(StatusCode, Value), BoxError> {
    let now = jiff::Timestamp::now().as_second();
    let mut answer = (StatusCode::UNAUTHORIZED, Value::Null);
    for at in [now, now + 30] {
        let code = crate::totp_code(crate::DEMO_SUPER_ADMIN_TOTP, at)
            .ok_or("demo authenticator secret")?;
        answer = call(
            router,
            Method::POST,
            "/v1/auth/login/mfa",
            Some(json!({"challenge": challenge, "code": code})),
            None,
        )
        .await?;
        if answer.0 == StatusCode::OK {
            break;
        }
    }
    Ok(answer)
}

/// The demo super admin's access token (two steps).
async fn super_admin_token(router: &Router) -> Result<String, BoxError> {
    let challenge = super_admin_challenge(router).await?;
    let (_, login) = second_step(router, &challenge).await?;
    Ok(login["accessToken"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

/// A measured call must have succeeded, or its count means nothing.
fn ensure(status: StatusCode) -> Result<(), BoxError> {
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("a measured call answered {status}").into())
    }
}

async fn calls_per_operation(stack: &Stack) -> Result<Vec<(String, u64, u64)>, BoxError> {
    let clinic = stack.seed_demo().await?;
    let router = stack.gateway();
    let counter = &stack.clients.calls;
    let mut out = Vec::new();
    let mut measure = |name: &str, (calls, depth): (u64, u64)| {
        out.push((
            name.to_string(),
            counter.get() - calls,
            counter.depth() - depth,
        ))
    };

    let reg = |email: &str| json!({"clinicId": clinic, "email": email, "password": DEMO_PASSWORD, "givenName": "Bea", "familyName": "Bench", "phone": "+4930123456", "birthDate": "1980-01-01"});
    let b = (counter.get(), counter.depth());
    call(
        &router,
        Method::POST,
        "/v1/auth/register",
        Some(reg("bench1@example.org")),
        None,
    )
    .await?;
    measure("register (5 PHI fields, warm key cache)", b);
    let b = (counter.get(), counter.depth());
    let (status, login) = call(
        &router,
        Method::POST,
        "/v1/auth/login",
        Some(json!({"email": "bench1@example.org", "password": DEMO_PASSWORD})),
        None,
    )
    .await?;
    if status != StatusCode::OK {
        return Err(format!("bench login failed: {status}").into());
    }
    measure("login (success)", b);
    let access = login["accessToken"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let refresh = login["refreshToken"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let b = (counter.get(), counter.depth());
    call(
        &router,
        Method::POST,
        "/v1/auth/login",
        Some(json!({"email": "bench1@example.org", "password": "wrong-password-x"})),
        None,
    )
    .await?;
    measure("login (wrong password)", b);
    let b = (counter.get(), counter.depth());
    let challenge = super_admin_challenge(&router).await?;
    measure(
        "login, password step of an account with an authenticator",
        b,
    );
    let b = (counter.get(), counter.depth());
    let (status, _) = second_step(&router, &challenge).await?;
    ensure(status)?;
    measure("login, second step (code)", b);
    let b = (counter.get(), counter.depth());
    call(
        &router,
        Method::POST,
        "/v1/auth/refresh",
        Some(json!({"refreshToken": refresh})),
        None,
    )
    .await?;
    measure("refresh", b);
    let b = (counter.get(), counter.depth());
    call(
        &router,
        Method::GET,
        "/v1/auth/sessions",
        None,
        Some(&access),
    )
    .await?;
    measure("list sessions (first call: session check + query)", b);
    let b = (counter.get(), counter.depth());
    call(
        &router,
        Method::GET,
        "/v1/auth/sessions",
        None,
        Some(&access),
    )
    .await?;
    measure("list sessions (session check cached)", b);
    let b = (counter.get(), counter.depth());
    call(
        &router,
        Method::GET,
        "/v1/auth/sessions",
        None,
        Some("not.a.token"),
    )
    .await?;
    measure("any route with an invalid token", b);
    // Earlier jobs (the registration's verification mail) are delivered first, unmeasured.
    let jobs = &stack.resources.notifications_high_url;
    while crate::drain_notifications(&stack.notifications, jobs).await? > 0 {}
    let b = (counter.get(), counter.depth());
    call(
        &router,
        Method::POST,
        "/v1/auth/password/forgot",
        Some(json!({"email": "bench1@example.org"})),
        None,
    )
    .await?;
    measure("forgot password (known email)", b);
    let b = (counter.get(), counter.depth());
    let delivered = crate::drain_notifications(&stack.notifications, jobs).await?;
    if delivered != 1 {
        return Err(format!("expected the one reset job, found {delivered}").into());
    }
    measure(
        "deliver the reset email (worker: receive, the limits' read and take, claim, profile and link, SES, settle, delete)",
        b,
    );
    let b = (counter.get(), counter.depth());
    call(
        &router,
        Method::POST,
        "/v1/auth/logout",
        None,
        Some(&access),
    )
    .await?;
    measure("logout", b);

    // Clinics and profiles, as the demo clinic admin (7 members in the demo clinic).
    let admin = password_token(&router, "admin@demo.clinic").await?;
    let clinic_path = format!("/v1/clinics/{clinic}");
    let b = (counter.get(), counter.depth());
    call(&router, Method::GET, &clinic_path, None, Some(&admin)).await?;
    measure(
        "get clinic (first call: session + membership checks + read)",
        b,
    );
    let b = (counter.get(), counter.depth());
    call(&router, Method::GET, &clinic_path, None, Some(&admin)).await?;
    measure("get clinic (checks cached)", b);
    let b = (counter.get(), counter.depth());
    call(
        &router,
        Method::GET,
        &format!("{clinic_path}/members"),
        None,
        Some(&admin),
    )
    .await?;
    measure("list members (7 members, names decrypted)", b);
    let b = (counter.get(), counter.depth());
    call(
        &router,
        Method::POST,
        &format!("{clinic_path}/locations"),
        Some(json!({"name": "Bench Branch"})),
        Some(&admin),
    )
    .await?;
    measure("create location", b);
    let b = (counter.get(), counter.depth());
    call(&router, Method::POST, &format!("{clinic_path}/members"), Some(json!({"email": "bench.nurse@example.org", "givenName": "B", "familyName": "N", "role": "NURSE"})), Some(&admin)).await?;
    measure("add member (new person, invited)", b);
    let b = (counter.get(), counter.depth());
    call(
        &router,
        Method::PATCH,
        "/v1/users/me",
        Some(json!({"phone": "+4930123999"})),
        Some(&admin),
    )
    .await?;
    measure("update own profile (phone: lookup moved)", b);

    // Scheduling, as reception, with the seeded doctor's hours (every day, around the clock).
    let desk = password_token(&router, "reception@demo.clinic").await?;
    let doctor = crate::demo_user_id(3);
    let patient = crate::demo_user_id(7);
    let tomorrow = jiff::Zoned::now()
        .with_time_zone(jiff::tz::TimeZone::get("Europe/Berlin")?)
        .date()
        .tomorrow()?;
    let b = (counter.get(), counter.depth());
    let (_, slots) = call(
        &router,
        Method::GET,
        &format!("{clinic_path}/doctors/{doctor}/slots?date={tomorrow}"),
        None,
        Some(&desk),
    )
    .await?;
    measure(
        "free slots of a doctor for a day (first call: session, membership, schedule read)",
        b,
    );
    let b = (counter.get(), counter.depth());
    call(
        &router,
        Method::GET,
        &format!("{clinic_path}/doctors/{doctor}/slots?date={tomorrow}"),
        None,
        Some(&desk),
    )
    .await?;
    measure("free slots of a doctor for a day (container warm)", b);
    let at = |i: usize| {
        slots["slots"][i]["startsAt"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let b = (counter.get(), counter.depth());
    let (_, booked) = call(
        &router,
        Method::POST,
        &format!("{clinic_path}/appointments"),
        Some(json!({"doctorId": doctor, "patientId": patient, "kind": "IN_PERSON", "locationId": crate::DEMO_LOCATION_ID, "startsAt": at(0), "reason": "bench"})),
        Some(&desk),
    )
    .await?;
    measure("book an appointment (reason encrypted)", b);
    let appt = format!(
        "{clinic_path}/appointments/{}",
        booked["id"].as_str().unwrap_or_default()
    );
    let b = (counter.get(), counter.depth());
    call(
        &router,
        Method::POST,
        &format!("{appt}/confirm"),
        None,
        Some(&desk),
    )
    .await?;
    measure("confirm an appointment", b);
    let b = (counter.get(), counter.depth());
    call(
        &router,
        Method::POST,
        &format!("{appt}/reschedule"),
        Some(json!({"startsAt": at(2)})),
        Some(&desk),
    )
    .await?;
    measure("reschedule an appointment", b);
    let b = (counter.get(), counter.depth());
    call(
        &router,
        Method::POST,
        &format!("{appt}/cancel"),
        Some(json!({"reason": "bench"})),
        Some(&desk),
    )
    .await?;
    measure("cancel an appointment", b);
    let b = (counter.get(), counter.depth());
    call(
        &router,
        Method::GET,
        &format!("{clinic_path}/appointments?from={tomorrow}&to={tomorrow}"),
        None,
        Some(&desk),
    )
    .await?;
    measure("list a day's appointments", b);

    // Billing: the subscription booking flow on the demo plan.
    let b = (counter.get(), counter.depth());
    let (status, sub) = call(
        &router,
        Method::POST,
        &format!("{clinic_path}/subscriptions"),
        Some(json!({"planId": crate::DEMO_PLAN_ID, "patientId": patient})),
        Some(&desk),
    )
    .await?;
    ensure(status)?;
    measure("subscribe (first invoice numbered and issued)", b);
    let b = (counter.get(), counter.depth());
    let (status, _) = call(
        &router,
        Method::POST,
        &format!("{clinic_path}/payments"),
        Some(json!({"invoiceId": sub["latestInvoiceId"], "method": "CASH"})),
        Some(&desk),
    )
    .await?;
    ensure(status)?;
    measure(
        "pay at the desk (payment, invoice PAID, subscription ACTIVE)",
        b,
    );
    let sub_id = sub["id"].as_str().unwrap_or_default();
    let b = (counter.get(), counter.depth());
    let (status, _) = call(
        &router,
        Method::GET,
        &format!("{clinic_path}/subscriptions/{sub_id}/coverage?appointmentType=IN_PERSON"),
        None,
        Some(&desk),
    )
    .await?;
    ensure(status)?;
    measure("coverage of a visit type", b);
    let b = (counter.get(), counter.depth());
    let (status, covered) = call(
        &router,
        Method::POST,
        &format!("{clinic_path}/appointments"),
        Some(json!({"doctorId": doctor, "patientId": patient, "kind": "IN_PERSON", "locationId": crate::DEMO_LOCATION_ID, "startsAt": at(4), "subscriptionId": sub_id})),
        Some(&desk),
    )
    .await?;
    ensure(status)?;
    measure("book covered by a subscription (quota taken)", b);
    let b = (counter.get(), counter.depth());
    let (status, _) = call(
        &router,
        Method::POST,
        &format!(
            "{clinic_path}/appointments/{}/cancel",
            covered["id"].as_str().unwrap_or_default()
        ),
        Some(json!({"reason": "bench"})),
        Some(&desk),
    )
    .await?;
    ensure(status)?;
    measure("cancel the covered visit", b);
    // The unit comes back when billing's queue consumer handles appointment.cancelled: the
    // handler's own calls, for the event as the bus delivers it (the queue's receive and
    // delete are the event source mapping's on AWS).
    let cancelled = shared::outbox::EventEnvelope::new(
        "appointment.cancelled",
        Some(&clinic),
        shared::outbox::Actor::default(),
        shared::outbox::Subject {
            kind: "appointment".into(),
            id: covered["id"].as_str().unwrap_or_default().into(),
        },
        // The data every appointment event carries (shared::contracts::AppointmentData).
        json!({
            "appointmentId": covered["id"],
            "doctorId": covered["doctorId"],
            "patientId": covered["patientId"],
            "locationId": covered["locationId"],
            "kind": covered["kind"],
            "status": "CANCELLED",
            "startsAt": covered["startsAt"],
            "endsAt": covered["endsAt"],
        }),
        jiff::Timestamp::now(),
    );
    let b = (counter.get(), counter.depth());
    billing::events::handle(&stack.billing, &cancelled, jiff::Timestamp::now()).await?;
    measure("give the unit back (billing-events handler, one event)", b);
    let (status, again) = call(
        &router,
        Method::GET,
        &format!("{clinic_path}/subscriptions/{sub_id}"),
        None,
        Some(&desk),
    )
    .await?;
    ensure(status)?;
    if again["quota"]["used"] != 0 {
        return Err("the cancelled visit's unit did not come back".into());
    }
    let b = (counter.get(), counter.depth());
    let (status, inv) = call(
        &router,
        Method::POST,
        &format!("{clinic_path}/invoices"),
        Some(json!({"patientId": patient, "lines": [{"description": "Dressing", "unitAmount": 800}]})),
        Some(&desk),
    )
    .await?;
    ensure(status)?;
    measure("issue an invoice (gapless number)", b);
    let (status, card) = call(
        &router,
        Method::POST,
        &format!("{clinic_path}/payments"),
        Some(json!({"invoiceId": inv["id"], "method": "CARD"})),
        Some(&desk),
    )
    .await?;
    ensure(status)?;
    let body = json!({"type": "payment.succeeded", "reference": card["providerReference"],
                      "amount": card["amount"], "currency": card["currency"]})
    .to_string();
    let signature = billing::providers::sign(
        shared::provision::LOCAL_WEBHOOK_SECRET.as_bytes(),
        jiff::Timestamp::now().as_second(),
        body.as_bytes(),
    );
    let b = (counter.get(), counter.depth());
    let resp = router
        .clone()
        .oneshot(
            Request::builder()
                .method(Method::POST)
                .uri("/v1/webhooks/payments/gateway")
                .header("content-type", "application/json")
                .header("x-signature", signature)
                .body(Body::from(body))?,
        )
        .await?;
    ensure(resp.status())?;
    measure("complete a card payment (signed webhook)", b);
    Ok(out)
}
