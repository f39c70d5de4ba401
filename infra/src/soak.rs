//! `make soak`: a day of use in minutes. Many concurrent clients drive the local gateway over
//! HTTP with a clinic's mix (register, login, refresh, find a slot, book, reschedule, cancel,
//! list, subscribe and pay) for a bounded time, while the relay, the consumers and the jobs run
//! as under `make dev`. The report gives requests per second, p50/p95/p99 per operation in the
//! first and the last minute, answers by status, and the emulator's and the gateway's memory;
//! it fails when a target is missed: any 5xx, a last-minute p95 above 1.5x the first minute's,
//! or emulator memory that grows faster than the data it holds (8 KiB per stored item).

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde_json::{Value, json};
use shared::{
    crypto::Phi,
    identity::{NewIdentity, NewMembership},
    ids::{ClinicId, UserId},
    outbox::{Actor, EventEnvelope, Subject},
    policy::Role,
    types::Email,
};

use crate::{
    BoxError, DEMO_CLINIC_ID, DEMO_PASSWORD, DEMO_PLAN_ID, Stack, delivery::percentile,
    demo_user_id,
};

/// One answered request.
struct Sample {
    op: &'static str,
    /// Seconds since the soak began.
    at: f64,
    latency: Duration,
    status: u16,
}

#[derive(Default)]
struct Memory {
    /// (seconds since start, emulator RSS KiB, gateway RSS KiB, items in the two tables)
    samples: Vec<(f64, u64, u64, u64)>,
}

fn rss_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// The process id of the emulator `AWS_ENDPOINT_URL` names (`infra/emulator.py -p <port>`).
fn emulator_pid() -> Option<String> {
    let url = std::env::var("AWS_ENDPOINT_URL").ok()?;
    let port = url.rsplit(':').next()?.trim_end_matches('/').to_string();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid = e.file_name().to_string_lossy().to_string();
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).to_string())
            .collect();
        let emulator = args.iter().any(|a| a.ends_with("emulator.py"));
        let on_port = args.windows(2).any(|w| w[0] == "-p" && w[1] == port);
        (emulator && on_port).then_some(pid)
    })
}

/// One virtual client: its own loopback address (the API throttles per source, as API Gateway
/// does per caller), an HTTP client, and what it has recorded.
pub(crate) struct Driver {
    base: String,
    http: Client<HttpConnector, Full<Bytes>>,
    started: Instant,
    samples: Vec<Sample>,
}

impl Driver {
    pub(crate) fn new(base: &str, index: usize, started: Instant) -> Self {
        let mut connector = HttpConnector::new();
        let octet = u8::try_from(10 + index % 240).unwrap_or(10);
        connector.set_local_address(Some(IpAddr::V4(Ipv4Addr::new(127, 0, 1, octet))));
        Self {
            base: base.to_string(),
            http: Client::builder(TokioExecutor::new()).build(connector),
            started,
            samples: Vec::new(),
        }
    }

    pub(crate) async fn send(
        &mut self,
        op: &'static str,
        method: Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
        key: bool,
    ) -> (u16, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if key {
            req = req.header("idempotency-key", uuid::Uuid::new_v4().to_string());
        }
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        let Ok(req) = req.body(Full::new(Bytes::from(bytes))) else {
            return (0, Value::Null);
        };
        let t = Instant::now();
        let (status, value) = match self.http.request(req).await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let body = resp
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
            }
            // No answer at all counts with the server errors.
            Err(_) => (599, Value::Null),
        };
        self.samples.push(Sample {
            op,
            at: self.started.elapsed().as_secs_f64(),
            latency: t.elapsed(),
            status,
        });
        (status, value)
    }
}

/// A member of `clinic` with `role`, a proven address and, if given, a password.
pub(crate) async fn member(
    stack: &Stack,
    clinic: &ClinicId,
    email: &str,
    role: Role,
    password_hash: Option<&str>,
) -> Result<UserId, BoxError> {
    let user = UserId::generate();
    let identity = NewIdentity {
        user: user.clone(),
        email: Email::parse(email).ok_or("bad email")?,
        given_name: "Load".into(),
        family_name: "Test".into(),
        phone: None,
        birth_date: None,
        password_hash: password_hash.map(str::to_string),
        platform_role: None,
        membership: Some(NewMembership {
            clinic: clinic.clone(),
            role,
            location: None,
            pending: false,
        }),
        email_verified: true,
    };
    let now = jiff::Timestamp::now();
    let event = EventEnvelope::new(
        "auth.user_registered",
        Some(clinic),
        Actor::default(),
        Subject {
            kind: "user".into(),
            id: user.to_string(),
        },
        json!({ "userId": user, "clinicId": clinic, "role": role }),
        now,
    );
    stack
        .auth
        .identities
        .create(identity, &event, now.as_second())
        .await?;
    Ok(user)
}

/// A soak client's account: a member of the demo clinic with the demo password.
async fn person(
    stack: &Stack,
    clinic: &ClinicId,
    hash: &str,
    i: usize,
    role: Role,
) -> Result<String, BoxError> {
    let email = format!(
        "soak-{}-{i}-{}@soak.example",
        role.as_str().to_lowercase(),
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    );
    member(stack, clinic, &email, role, Some(hash)).await?;
    Ok(email)
}

fn token_of(v: &Value) -> Option<(String, String)> {
    Some((
        v["accessToken"].as_str()?.to_string(),
        v["refreshToken"].as_str()?.to_string(),
    ))
}

/// One client's loop until `until`: a patient's visits and the desk's billing, in turns.
async fn drive(
    mut d: Driver,
    (email, desk_email): (String, String),
    n: usize,
    until: Instant,
) -> Vec<Sample> {
    let clinic = format!("/v1/clinics/{DEMO_CLINIC_ID}");
    let doctor = demo_user_id(3).to_string();
    let login = |email: &str| json!({"email": email, "password": DEMO_PASSWORD});
    let mut tokens = None;
    let mut desk = None;
    let mut k: u64 = 0;
    while Instant::now() < until {
        k += 1;
        // Sessions: a login now and then, refreshes between.
        if tokens.is_none() || k % 40 == 0 {
            let (_, v) = d
                .send(
                    "login",
                    Method::POST,
                    "/v1/auth/login",
                    Some(login(&email)),
                    None,
                    false,
                )
                .await;
            tokens = token_of(&v);
        } else if k % 8 == 0 {
            if let Some((_, refresh)) = &tokens {
                let body = json!({"refreshToken": refresh});
                let (_, v) = d
                    .send(
                        "refresh",
                        Method::POST,
                        "/v1/auth/refresh",
                        Some(body),
                        None,
                        false,
                    )
                    .await;
                tokens = token_of(&v).or(tokens);
            }
        }
        if desk.is_none() {
            let (_, v) = d
                .send(
                    "login",
                    Method::POST,
                    "/v1/auth/login",
                    Some(login(&desk_email)),
                    None,
                    false,
                )
                .await;
            desk = token_of(&v).map(|(a, _)| a);
        }
        let (Some((access, _)), Some(desk_token)) = (tokens.clone(), desk.clone()) else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        // A slot some days ahead, booked, moved, then cancelled.
        let day = jiff::Zoned::now()
            .date()
            .checked_add(jiff::Span::new().days(1 + ((k as i64 + n as i64) % 28)))
            .unwrap_or_default();
        let (_, slots) = d
            .send(
                "slots",
                Method::GET,
                &format!("{clinic}/doctors/{doctor}/slots?date={day}"),
                None,
                Some(&access),
                false,
            )
            .await;
        let free: Vec<String> = slots["slots"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["startsAt"].as_str().map(str::to_string))
            .collect();
        if free.len() >= 2 {
            let pick = (k as usize * 7 + n * 13) % free.len();
            let body = json!({"doctorId": doctor, "kind": "VIDEO_CALL", "startsAt": free[pick], "reason": "soak visit"});
            let (status, booked) = d
                .send(
                    "book",
                    Method::POST,
                    &format!("{clinic}/appointments"),
                    Some(body),
                    Some(&access),
                    true,
                )
                .await;
            if status == 201 {
                let one = format!(
                    "{clinic}/appointments/{}",
                    booked["id"].as_str().unwrap_or_default()
                );
                let to = &free[(pick + 1) % free.len()];
                d.send(
                    "reschedule",
                    Method::POST,
                    &format!("{one}/reschedule"),
                    Some(json!({"startsAt": to})),
                    Some(&desk_token),
                    false,
                )
                .await;
                d.send(
                    "cancel",
                    Method::POST,
                    &format!("{one}/cancel"),
                    Some(json!({"reason": "soak"})),
                    Some(&access),
                    false,
                )
                .await;
            }
        }
        let (status, _) = d
            .send(
                "list",
                Method::GET,
                &format!("{clinic}/appointments"),
                None,
                Some(&access),
                false,
            )
            .await;
        if status == 401 {
            // The session ended (an account keeps its newest ten): sign in again.
            tokens = None;
        }
        // Every tenth turn: a new patient registers, the desk subscribes them and takes payment.
        if k % 10 == 0 {
            let fresh = format!(
                "reg-{n}-{k}-{}@soak.example",
                &uuid::Uuid::new_v4().simple().to_string()[..6]
            );
            let body = json!({"clinicId": DEMO_CLINIC_ID, "email": fresh, "password": DEMO_PASSWORD, "givenName": "New", "familyName": "Patient"});
            let (status, reg) = d
                .send(
                    "register",
                    Method::POST,
                    "/v1/auth/register",
                    Some(body),
                    None,
                    true,
                )
                .await;
            if status == 201 {
                let body = json!({"planId": DEMO_PLAN_ID, "patientId": reg["user"]["id"]});
                let (status, sub) = d
                    .send(
                        "subscribe",
                        Method::POST,
                        &format!("{clinic}/subscriptions"),
                        Some(body),
                        Some(&desk_token),
                        true,
                    )
                    .await;
                if status == 201 {
                    let body = json!({"invoiceId": sub["latestInvoiceId"], "method": "CASH"});
                    d.send(
                        "pay",
                        Method::POST,
                        &format!("{clinic}/payments"),
                        Some(body),
                        Some(&desk_token),
                        true,
                    )
                    .await;
                }
            }
            let (status, _) = d
                .send(
                    "list invoices",
                    Method::GET,
                    &format!("{clinic}/invoices"),
                    None,
                    Some(&desk_token),
                    false,
                )
                .await;
            if status == 401 {
                desk = None;
            }
        }
    }
    d.samples
}

/// Runs the soak: `--minutes` (default 10, or `SOAK_MINUTES`), `--clients` (default 16).
pub async fn run(args: &[String]) -> Result<(), BoxError> {
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let minutes: f64 = flag("--minutes")
        .or_else(|| std::env::var("SOAK_MINUTES").ok())
        .map(|m| m.parse())
        .transpose()?
        .unwrap_or(10.0);
    let clients: usize = flag("--clients")
        .or_else(|| std::env::var("SOAK_CLIENTS").ok())
        .map(|c| c.parse())
        .transpose()?
        .unwrap_or(16);
    let emulator_pid = emulator_pid().unwrap_or_default();

    let aws = shared::aws::Clients::from_env_with(shared::aws::CallLimits::EMULATOR).await;
    let stack = Arc::new(Stack::up(aws, &shared::provision::unique_prefix("soak")).await?);
    let demo = stack.seed_demo().await?;
    // What `make dev` runs beside the gateway.
    let _background = stack.spawn_background();
    let (addr, _server) =
        crate::serve(stack.gateway(), SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let base = format!("http://{addr}");
    let hash = auth::service::hash_password(&Phi::new(DEMO_PASSWORD.to_string())).await?;
    let mut emails = Vec::with_capacity(clients);
    for i in 0..clients {
        // A patient and a receptionist each: an account keeps its newest ten sessions.
        emails.push((
            person(&stack, &demo, &hash, i, Role::Patient).await?,
            person(&stack, &demo, &hash, i, Role::Receptionist).await?,
        ));
    }
    println!("Soaking {base} with {clients} clients for {minutes} minutes...");

    let started = Instant::now();
    let until = started + Duration::from_secs_f64(minutes * 60.0);
    let memory = Arc::new(Mutex::new(Memory::default()));
    let sampler = {
        let memory = memory.clone();
        let pid = emulator_pid.clone();
        let ddb = stack.clients.dynamodb.clone();
        let tables = [
            stack.resources.table.clone(),
            stack.resources.audit_table.clone(),
        ];
        tokio::spawn(async move {
            loop {
                let at = started.elapsed().as_secs_f64();
                let emulator = if pid.is_empty() { 0 } else { rss_kib(&pid) };
                let gateway = rss_kib("self");
                let mut items = 0u64;
                for t in &tables {
                    if let Ok(d) = ddb.describe_table().table_name(t).send().await {
                        items += d
                            .table()
                            .and_then(|t| t.item_count())
                            .and_then(|n| u64::try_from(n).ok())
                            .unwrap_or(0);
                    }
                }
                memory
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .samples
                    .push((at, emulator, gateway, items));
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        })
    };
    let tasks: Vec<_> = emails
        .into_iter()
        .enumerate()
        .map(|(n, email)| tokio::spawn(drive(Driver::new(&base, n, started), email, n, until)))
        .collect();
    let mut samples = Vec::new();
    for t in tasks {
        samples.extend(t.await?);
    }
    sampler.abort();
    let elapsed = started.elapsed().as_secs_f64();
    let memory = memory
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .samples
        .clone();
    let (text, ok) = report(&samples, &memory, elapsed, clients);
    println!("{text}");
    std::fs::create_dir_all("target/soak")?;
    std::fs::write("target/soak/report.md", &text)?;
    if ok {
        Ok(())
    } else {
        Err("a soak target was missed (see the report)".into())
    }
}

/// The report, and whether every target held.
fn report(
    samples: &[Sample],
    memory: &[(f64, u64, u64, u64)],
    elapsed: f64,
    clients: usize,
) -> (String, bool) {
    let mut out = String::new();
    let total = samples.len();
    out.push_str(&format!(
        "## Soak: {clients} clients, {:.1} minutes\n\n{total} requests, {:.1} per second.\n\n",
        elapsed / 60.0,
        total as f64 / elapsed
    ));
    let first = |s: &&Sample| s.at < 60.0;
    let last = |s: &&Sample| s.at >= elapsed - 60.0;
    let mut by_op: BTreeMap<&str, (Vec<Duration>, Vec<Duration>, usize)> = BTreeMap::new();
    for s in samples {
        let e = by_op.entry(s.op).or_default();
        e.2 += 1;
        if first(&s) {
            e.0.push(s.latency);
        }
        if last(&s) {
            e.1.push(s.latency);
        }
    }
    out.push_str("| operation | requests | first minute p50 / p95 / p99 (ms) | last minute p50 / p95 / p99 (ms) | p95 last / first |\n|---|---|---|---|---|\n");
    let mut slower = Vec::new();
    for (op, (mut a, mut b, n)) in by_op {
        a.sort();
        b.sort();
        let (p95a, p95b) = (percentile(&a, 0.95), percentile(&b, 0.95));
        let ratio = if p95a > 0.0 { p95b / p95a } else { 0.0 };
        // A ratio over a handful of requests says little; judge operations seen often enough.
        if ratio > 1.5 && a.len() >= 20 && b.len() >= 20 {
            slower.push(op);
        }
        out.push_str(&format!(
            "| {op} | {n} | {:.0} / {p95a:.0} / {:.0} | {:.0} / {p95b:.0} / {:.0} | {ratio:.2} |\n",
            percentile(&a, 0.5),
            percentile(&a, 0.99),
            percentile(&b, 0.5),
            percentile(&b, 0.99),
        ));
    }
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    for s in samples {
        *statuses.entry(s.status).or_default() += 1;
    }
    out.push_str("\nAnswers by status: ");
    out.push_str(
        &statuses
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    let server_errors: usize = statuses
        .iter()
        .filter(|(s, _)| **s >= 500)
        .map(|(_, n)| n)
        .sum();
    // Memory: after the first minute (imports and caches warm) against the last sample.
    let settled = memory
        .iter()
        .find(|(at, _, _, _)| *at >= 60.0)
        .or(memory.first());
    let end = memory.last();
    let peak = |i: usize| {
        memory
            .iter()
            .map(|m| if i == 0 { m.1 } else { m.2 })
            .max()
            .unwrap_or(0)
    };
    let mib = |k: u64| k as f64 / 1024.0;
    let (mut per_item, mut flat) = (0.0, true);
    if let (Some(s), Some(e)) = (settled, end) {
        out.push_str(&format!(
            "\n\nMemory (RSS, MiB): emulator {:.0} after the first minute, {:.0} at the end, peak {:.0}; gateway {:.0} after the first minute, {:.0} at the end, peak {:.0}.\n",
            mib(s.1),
            mib(e.1),
            mib(peak(0)),
            mib(s.2),
            mib(e.2),
            mib(peak(1)),
        ));
        // The data a clinic keeps grows with its bookings; the emulator's memory may grow with
        // it, never with the requests themselves. Flat: at most 8 KiB per item stored since the
        // first minute (an item, its indexes and Python's objects), however many requests.
        let grown = e.1.saturating_sub(s.1) as f64;
        let stored = e.3.saturating_sub(s.3).max(1) as f64;
        per_item = grown / stored;
        flat = s.1 == 0 || per_item <= 8.0;
        out.push_str(&format!(
            "The tables held {} items after the first minute and {} at the end: the emulator grew {:.1} KiB per item stored.\n",
            s.3, e.3, per_item
        ));
    }
    out.push_str(&format!(
        "\nTargets: no 5xx: {} ({server_errors}); last minute's p95 within 1.5x of the first: {}{}; emulator memory follows the data, not the requests: {} ({:.1} KiB per stored item).\n",
        if server_errors == 0 { "held" } else { "missed" },
        if slower.is_empty() { "held" } else { "missed" },
        if slower.is_empty() { String::new() } else { format!(" ({})", slower.join(", ")) },
        if flat { "held" } else { "missed" },
        per_item,
    ));
    (out, server_errors == 0 && slower.is_empty() && flat)
}
