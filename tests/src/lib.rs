//! Black-box harness: drives the API over real HTTP the way a client does. With `API_URL` set
//! it targets that deployment (demo data expected); otherwise it brings up an in-process local
//! stack (gateway, relay, seed) against the emulator at `AWS_ENDPOINT_URL` on a free port.

pub mod audit;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use local_stack::{DEMO_PASSWORD, DEMO_SUPER_ADMIN_TOTP, Stack};
use serde_json::{Value, json};
use shared::{
    ids::{ClinicId, LocationId, UserId},
    outbox::{Actor as EventActor, EventEnvelope, Subject as EventSubject},
    policy::Role,
    types::Email,
};
use std::time::Duration;

pub struct Api {
    pub base: String,
    client: Client<HttpConnector, Full<Bytes>>,
    /// The in-process stack, when not testing a deployment.
    pub stack: Option<Stack>,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Api {
    pub async fn start() -> Api {
        let client = Client::builder(TokioExecutor::new()).build_http();
        if let Ok(base) = std::env::var("API_URL") {
            return Api {
                base: base.trim_end_matches('/').to_string(),
                client,
                stack: None,
            };
        }
        let clients = shared::provision::test_clients().await;
        let stack = Stack::up(clients, &shared::provision::unique_prefix("bb"))
            .await
            .expect("stack");
        stack.seed_demo().await.expect("seed");
        let _relay = stack.spawn_relay(Duration::from_millis(200));
        let (addr, _server) = local_stack::serve(stack.gateway(), ([127, 0, 0, 1], 0).into())
            .await
            .expect("serve");
        Api {
            base: format!("http://{addr}"),
            client,
            stack: Some(stack),
        }
    }

    /// Serves an already-built stack in-process (tests that need its clock or resources).
    pub async fn serve(stack: Stack) -> Api {
        let client = Client::builder(TokioExecutor::new()).build_http();
        let (addr, _server) = local_stack::serve(stack.gateway(), ([127, 0, 0, 1], 0).into())
            .await
            .expect("serve");
        Api {
            base: format!("http://{addr}"),
            client,
            stack: Some(stack),
        }
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .expect("request");
        let resp = self.client.request(req).await.expect("http");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("authorization", a.as_str())).collect();
        self.send(Method::GET, path, None, &headers).await
    }

    pub async fn post(&self, path: &str, body: Value, token: Option<&str>) -> Reply {
        self.with_body(Method::POST, path, body, token).await
    }

    pub async fn with_body(
        &self,
        method: Method,
        path: &str,
        body: Value,
        token: Option<&str>,
    ) -> Reply {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("authorization", a.as_str())).collect();
        self.send(method, path, Some(body.to_string().into_bytes()), &headers)
            .await
    }

    /// Logs in and returns the access token; an account with an authenticator (the seeded
    /// super admins, whose secret is the demo one) answers its challenge with a code.
    pub async fn token(&self, email: &str, password: &str) -> String {
        self.token_with(email, password, DEMO_SUPER_ADMIN_TOTP)
            .await
    }

    /// Logs in, answering a challenge with a code of the authenticator `secret`.
    pub async fn token_with(&self, email: &str, password: &str, secret: &str) -> String {
        let r = self
            .post(
                "/v1/auth/login",
                serde_json::json!({"email": email, "password": password}),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "login {email}: {}", r.body);
        if r.body["mfaRequired"] == true {
            let challenge = r.body["challenge"].as_str().expect("challenge");
            return self.second_step(challenge, secret).await;
        }
        r.body["accessToken"].as_str().expect("token").to_string()
    }

    /// The server's time: the in-process stack's clock (tests move it), or this machine's.
    pub fn now(&self) -> i64 {
        self.stack.as_ref().map_or_else(
            || jiff::Timestamp::now().as_second(),
            |s| s.auth.clock.epoch(),
        )
    }

    /// Answers a login challenge with the authenticator code of `secret` and returns the
    /// access token. A code is taken once: a second login within the same 30 seconds uses the
    /// next step's code (accepted within the skew), and after that waits for a fresh step.
    pub async fn second_step(&self, challenge: &str, secret: &str) -> String {
        for attempt in 0..4 {
            let at = self.now() + if attempt % 2 == 1 { 30 } else { 0 };
            let code = local_stack::totp_code(secret, at).expect("code");
            let r = self
                .post(
                    "/v1/auth/login/mfa",
                    serde_json::json!({"challenge": challenge, "code": code}),
                    None,
                )
                .await;
            if r.status == StatusCode::OK {
                return r.body["accessToken"].as_str().expect("token").to_string();
            }
            assert_eq!(
                r.status,
                StatusCode::UNAUTHORIZED,
                "second step: {}",
                r.body
            );
            assert_eq!(r.body["code"], "invalid_mfa_code", "{}", r.body);
            if attempt == 1 {
                let wait = 30 - self.now().rem_euclid(30) + 1;
                tokio::time::sleep(Duration::from_secs(wait.unsigned_abs())).await;
            }
        }
        panic!("no code of the authenticator was taken");
    }

    /// Events that reached the bus (in-process stack only), as EventBridge delivers them;
    /// polls until every type in `want` has been seen or about twenty seconds pass.
    pub async fn bus_events(&self, want: &[&str]) -> Vec<Value> {
        let Some(stack) = &self.stack else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for _ in 0..20 {
            let msgs = stack
                .clients
                .sqs
                .receive_message()
                .queue_url(&stack.resources.events_tap_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .expect("receive")
                .messages
                .unwrap_or_default();
            out.extend(
                msgs.iter()
                    .filter_map(|m| m.body().and_then(|b| serde_json::from_str(b).ok())),
            );
            let seen = |t: &&str| out.iter().any(|e: &Value| e["detail-type"] == *t);
            if want.iter().all(seen) {
                break;
            }
        }
        out
    }
}

/// Creates a person with an optional membership; with `password`, ready to log in. A super
/// admin comes with an authenticator of the demo secret, since the role always signs in in two
/// steps.
pub async fn person(
    stack: &Stack,
    clinic: Option<&ClinicId>,
    role: Role,
    location: Option<&LocationId>,
    password: bool,
) -> (UserId, String) {
    let (user, email) = account(stack, clinic, role, location, password).await;
    if clinic.is_none() && role == Role::SuperAdmin {
        let secret = auth::totp::secret_from_base32(DEMO_SUPER_ADMIN_TOTP).expect("secret");
        auth::Auth(&stack.auth)
            .seed_totp(&user, &secret)
            .await
            .expect("person");
    }
    (user, email)
}

/// [`person`] without an authenticator, whatever the role.
pub async fn account(
    stack: &Stack,
    clinic: Option<&ClinicId>,
    role: Role,
    location: Option<&LocationId>,
    password: bool,
) -> (UserId, String) {
    let user = UserId::generate();
    let email = format!(
        "{}-{}@people.test",
        role.as_str().to_lowercase(),
        &user.as_str()[..8]
    );
    let hash = if password {
        Some(
            auth::service::hash_password(&shared::crypto::Phi::new(DEMO_PASSWORD.to_string()))
                .await
                .expect("person"),
        )
    } else {
        None
    };
    let identity = shared::identity::NewIdentity {
        user: user.clone(),
        email: Email::parse(&email).expect("person"),
        given_name: "Given".into(),
        family_name: "Family".into(),
        phone: None,
        birth_date: None,
        password_hash: hash,
        membership: clinic.map(|c| shared::identity::NewMembership {
            clinic: c.clone(),
            role,
            location: location.cloned(),
            pending: false,
        }),
        platform_role: clinic.is_none().then_some(role),
        email_verified: true,
    };
    let event = EventEnvelope::new(
        "auth.user_registered",
        clinic,
        EventActor::default(),
        EventSubject {
            kind: "user".into(),
            id: user.to_string(),
        },
        json!({}),
        jiff::Timestamp::now(),
    );
    stack
        .auth
        .identities
        .create(identity, &event, jiff::Timestamp::now().as_second())
        .await
        .expect("person");
    if let (Some(c), Some(l)) = (clinic, location) {
        // Keep the location's member count true, as the clinics function does.
        stack
            .clients
            .dynamodb
            .update_item()
            .table_name(&stack.resources.table)
            .key("pk", shared::db::s(shared::keys::clinic_pk(c)))
            .key("sk", shared::db::s(shared::keys::location_sk(l)))
            .update_expression("ADD memberCount :one")
            .expression_attribute_values(":one", shared::db::n(1))
            .send()
            .await
            .expect("person");
    }
    (user, email)
}

/// Sets up an authenticator for the signed-in caller (enrolment and its confirmation with the
/// current code); returns its base32 secret and the recovery codes.
pub async fn enrol_authenticator(api: &Api, token: &str, password: &str) -> (String, Vec<String>) {
    let r = call(
        api,
        Method::POST,
        "/v1/auth/mfa/totp",
        Some(json!({"password": password})),
        token,
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "enrol: {}", r.body);
    let secret = r.body["secret"].as_str().expect("secret").to_string();
    let code = local_stack::totp_code(&secret, api.now()).expect("code");
    let r = call(
        api,
        Method::POST,
        "/v1/auth/mfa/totp/confirm",
        Some(json!({"code": code})),
        token,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "confirm: {}", r.body);
    let codes = r.body["recoveryCodes"]
        .as_array()
        .expect("recovery codes")
        .iter()
        .filter_map(|c| c.as_str().map(str::to_string))
        .collect();
    (secret, codes)
}

/// One authenticated request with an optional JSON body.
pub async fn call(
    api: &Api,
    method: Method,
    path: &str,
    body: Option<Value>,
    token: &str,
) -> Reply {
    let auth = format!("Bearer {token}");
    api.send(
        method,
        path,
        body.map(|b| b.to_string().into_bytes()),
        &[("authorization", auth.as_str())],
    )
    .await
}

/// Takes every queued account-mail job of `kind` for `user` off the stack's notifications
/// queue (others stay queued) and returns the newest.
pub async fn job_for(stack: &Stack, user: &UserId, kind: &str) -> Value {
    shared::provision::take_queued(
        &stack.clients,
        &stack.resources.notifications_high_url,
        |j| j["kind"] == kind && j["userId"] == user.as_str(),
    )
    .await
    .expect("receive")
    .into_iter()
    .max_by_key(|j| j["createdAt"].as_str().unwrap_or_default().to_string())
    .unwrap_or_else(|| panic!("no {kind} job queued for {user}"))
}

/// The newest link job of `kind` for `user` and its token, opened through the link's sealed
/// secret as the notification worker opens it (the job itself carries no token).
pub async fn link_for(stack: &Stack, user: &UserId, kind: &str) -> (String, Value) {
    let job = job_for(stack, user, kind).await;
    let token = shared::provision::link_token(stack.auth.ext(), &job, stack.auth.clock.epoch())
        .await
        .expect("open link");
    (token, job)
}

pub use shared::provision::join_all;

/// The emails the emulator's SES accepted for `address` (subject, body, source, destinations),
/// oldest first, read from its model data as a newcomer would.
pub async fn mail_to(address: &str) -> Vec<Value> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL");
    local_stack::sent_mail(&endpoint)
        .await
        .expect("emulator data")
        .into_iter()
        .filter(|m| {
            m["destinations"]["ToAddresses"]
                .as_array()
                .is_some_and(|to| to.iter().any(|t| t == address))
        })
        .collect()
}

/// A stack of its own (fresh resources under `label`), on the system clock, not served.
pub async fn fresh_stack(label: &str) -> Stack {
    let clients = shared::provision::test_clients().await;
    let resources =
        shared::provision::provision(&clients, &shared::provision::unique_prefix(label))
            .await
            .expect("provision");
    Stack::with_clock(
        clients,
        resources,
        std::sync::Arc::new(shared::clock::SystemClock),
    )
    .await
    .expect("stack")
}

/// The demo doctor's free slots (their starts) `days_ahead` days from today in the demo
/// clinic's zone, as the caller sees them.
pub async fn demo_slots(api: &Api, token: &str, days_ahead: i64) -> Vec<String> {
    let clinic = local_stack::DEMO_CLINIC_ID;
    let doctor = local_stack::demo_user_id(3);
    let day = jiff::Zoned::now()
        .with_time_zone(jiff::tz::TimeZone::get("Europe/Berlin").expect("zone"))
        .date()
        .checked_add(jiff::Span::new().days(days_ahead))
        .expect("date");
    let r = call(
        api,
        Method::GET,
        &format!("/v1/clinics/{clinic}/doctors/{doctor}/slots?date={day}"),
        None,
        token,
    )
    .await;
    assert_eq!(r.status, http::StatusCode::OK, "{}", r.body);
    r.body["slots"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["startsAt"].as_str().map(str::to_string))
        .collect()
}

/// Books a video visit with the demo doctor at `at` for the caller; answers its id.
pub async fn book_demo_doctor(api: &Api, token: &str, at: &str, reason: Option<&str>) -> String {
    let clinic = local_stack::DEMO_CLINIC_ID;
    let doctor = local_stack::demo_user_id(3);
    let mut body = json!({"doctorId": doctor, "kind": "VIDEO_CALL", "startsAt": at});
    if let Some(r) = reason {
        body["reason"] = json!(r);
    }
    let booked = call(
        api,
        Method::POST,
        &format!("/v1/clinics/{clinic}/appointments"),
        Some(body),
        token,
    )
    .await;
    assert_eq!(booked.status, http::StatusCode::CREATED, "{}", booked.body);
    booked.body["id"].as_str().expect("id").to_string()
}

/// The SMS the emulator's SNS accepted for `phone`, oldest first (their texts).
pub async fn sms_to(phone: &str) -> Vec<String> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL");
    local_stack::sent_sms(&endpoint)
        .await
        .expect("emulator data")
        .into_iter()
        .filter(|m| m["phone_number"] == phone)
        .filter_map(|m| m["message"].as_str().map(str::to_string))
        .collect()
}

/// The push messages the emulator's SNS accepted for a device's `token` (their JSON documents).
pub async fn pushes_to(token: &str) -> Vec<Value> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL");
    local_stack::sent_push(&endpoint)
        .await
        .expect("emulator data")
        .into_iter()
        .filter(|m| m["token"] == token)
        .filter_map(|m| {
            m["message"]
                .as_str()
                .and_then(|t| serde_json::from_str(t).ok())
        })
        .collect()
}

/// Waits (up to about twenty seconds) until `n` emails for `address` have arrived.
pub async fn await_mail(address: &str, n: usize) -> Vec<Value> {
    for _ in 0..100 {
        let mail = mail_to(address).await;
        if mail.len() >= n {
            return mail;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("fewer than {n} emails arrived for {address}");
}
