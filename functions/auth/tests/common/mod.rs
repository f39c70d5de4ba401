//! Test harness: the auth router wired to a freshly provisioned table, key and queues in the
//! local emulator (real DynamoDB, KMS and SQS calls), with a manual clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(dead_code)]

use auth::{AppState, AuthConfig, router};
use axum::{Router, body::Body};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use shared::{
    aws::Clients,
    clock::ManualClock,
    config::PlatformConfig,
    ids::ClinicId,
    provision::{Resources, provision, put_clinic, test_clients, unique_prefix},
};
use std::sync::Arc;
use tower::ServiceExt;

pub const PASSWORD: &str = "correct horse battery staple";

pub struct TestApp {
    pub router: Router,
    pub state: AppState,
    pub clock: Arc<ManualClock>,
    pub clients: Clients,
    pub res: Resources,
    pub clinic: ClinicId,
}

pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub headers: HeaderMap,
}

pub async fn spawn() -> TestApp {
    let clients = test_clients().await;
    let res = provision(&clients, &unique_prefix("auth"))
        .await
        .expect("provision");
    let clinic = ClinicId::generate();
    put_clinic(
        &clients,
        &res.table,
        &clinic,
        ("Test Clinic", "Europe/Berlin", "EUR"),
        true,
    )
    .await
    .expect("clinic");
    let clock = Arc::new(ManualClock::starting_now());
    let cfg = AuthConfig {
        platform: PlatformConfig {
            table_name: res.table.clone(),
            audit_table_name: res.audit_table.clone(),
            kms_key_id: res.kms_key_id.clone(),
            secrets_ciphertext: res.secrets_ciphertext.clone(),
            signing_secrets_ciphertext: Some(res.signing_secrets_ciphertext.clone()),
            jwt_issuer: "https://auth.test".into(),
            jwt_audience: "clinic-api".into(),
            session_cache_seconds: 30,
        },
        notifications_queue_url: res.notifications_high_url.clone(),
        app_url: "https://app.test".into(),
    };
    let state = AppState::with_links(&clients, cfg, clock.clone())
        .await
        .expect("state");
    TestApp {
        router: router(state.clone()),
        state,
        clock,
        clients,
        res,
        clinic,
    }
}

impl TestApp {
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> Reply {
        self.call_with(
            method,
            path,
            body.map(|b| b.to_string().into_bytes()),
            token,
            &[],
        )
        .await
    }

    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Reply {
        // Each call from an address of its own, unless a test says where it comes from.
        let b = shared::crypto::random_bytes::<3>();
        let source = format!("10.{}.{}.{}", b[0], b[1], b[2]);
        self.call_from(&source, method, path, body, token, headers)
            .await
    }

    /// A call as API Gateway delivers it from `source` (its `sourceIp`).
    pub async fn call_from(
        &self,
        source: &str,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut ctx =
            lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequestContext::default();
        ctx.http.source_ip = Some(source.to_string());
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .extension(lambda_http::request::RequestContext::ApiGatewayV2(ctx));
        if body.is_some()
            && !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            req = req.header("content-type", "application/json");
        }
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .router
            .clone()
            .oneshot(
                req.body(body.map(Body::from).unwrap_or_else(Body::empty))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        Reply {
            status,
            body,
            headers,
        }
    }

    pub fn registration(&self, email: &str) -> Value {
        json!({
            "clinicId": self.clinic, "email": email, "password": PASSWORD,
            "givenName": "Ada", "familyName": "Lovelace", "phone": "+4930123456", "birthDate": "1990-12-10"
        })
    }

    pub async fn register(&self, email: &str) -> Reply {
        self.call(
            Method::POST,
            "/v1/auth/register",
            Some(self.registration(email)),
            None,
        )
        .await
    }

    pub async fn login_from(&self, source: &str, email: &str, password: &str) -> Reply {
        let body = json!({"email": email, "password": password}).to_string();
        self.call_from(
            source,
            Method::POST,
            "/v1/auth/login",
            Some(body.into_bytes()),
            None,
            &[],
        )
        .await
    }

    pub async fn login(&self, email: &str, password: &str) -> Reply {
        self.call(
            Method::POST,
            "/v1/auth/login",
            Some(json!({"email": email, "password": password})),
            None,
        )
        .await
    }

    pub async fn registered_login(&self, email: &str) -> Reply {
        assert_eq!(self.register(email).await.status, StatusCode::CREATED);
        let r = self.login(email, PASSWORD).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r
    }

    /// The newest queued account-mail job of `kind` (older ones of that kind are taken off the
    /// queue too) and the token of its link, opened as the notification worker opens it.
    pub async fn link_job(&self, kind: &str) -> (String, Value) {
        let job = queued_job(&self.clients, &self.res.notifications_high_url, kind).await;
        let token = link_token(&self.state, &job).await;
        (token, job)
    }

    pub async fn scan(&self) -> Vec<shared::db::Item> {
        self.clients
            .dynamodb
            .scan()
            .table_name(&self.res.table)
            .send()
            .await
            .unwrap()
            .items
            .unwrap_or_default()
    }
}

pub fn s(v: &Value, k: &str) -> String {
    v[k].as_str()
        .unwrap_or_else(|| panic!("{k} missing in {v}"))
        .to_string()
}

pub async fn second_container(app: &TestApp) -> TestApp {
    let cfg = AuthConfig {
        platform: PlatformConfig {
            table_name: app.res.table.clone(),
            audit_table_name: app.res.audit_table.clone(),
            kms_key_id: app.res.kms_key_id.clone(),
            secrets_ciphertext: app.res.secrets_ciphertext.clone(),
            signing_secrets_ciphertext: Some(app.res.signing_secrets_ciphertext.clone()),
            jwt_issuer: "https://auth.test".into(),
            jwt_audience: "clinic-api".into(),
            session_cache_seconds: 30,
        },
        notifications_queue_url: app.res.notifications_high_url.clone(),
        app_url: "https://app.test".into(),
    };
    let state = AppState::with_links(&app.clients, cfg, app.clock.clone())
        .await
        .unwrap();
    TestApp {
        router: router(state.clone()),
        state,
        clock: app.clock.clone(),
        clients: app.clients.clone(),
        res: app.res.clone(),
        clinic: app.clinic.clone(),
    }
}

/// Takes every queued job of `kind` off the queue and returns the newest.
pub async fn queued_job(clients: &Clients, queue: &str, kind: &str) -> Value {
    shared::provision::take_queued(clients, queue, |j| j["kind"] == kind)
        .await
        .unwrap()
        .into_iter()
        .max_by_key(|j| j["createdAt"].as_str().unwrap_or_default().to_string())
        .unwrap_or_else(|| panic!("no {kind} job queued"))
}

/// The token of a job's link, through the link's sealed secret (what the worker does).
pub async fn link_token(state: &AppState, job: &Value) -> String {
    let now = jiff::Timestamp::now().as_second() - 60;
    shared::provision::link_token(state.ext(), job, now)
        .await
        .unwrap()
}
