//! Client-eye scenarios over HTTP: platform routes, the patient journey, the demo seed, and
//! hostile requests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use blackbox::Api;
use http::{Method, StatusCode};
use local_stack::{DEMO_CLINIC_ID, DEMO_PASSWORD, DEMO_USERS};
use serde_json::json;

fn unique_email() -> String {
    format!("bb-{}@example.org", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn platform_routes_and_problem_fallbacks() {
    let api = Api::start().await;
    let health = api
        .send(
            Method::GET,
            "/v1/health",
            None,
            &[("x-correlation-id", "bb-trace-1")],
        )
        .await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body["status"], "ok");
    assert_eq!(health.headers["x-correlation-id"], "bb-trace-1");
    let jwks = api.get("/.well-known/jwks.json", None).await;
    assert!(!jwks.body["keys"].as_array().unwrap().is_empty());
    // The OpenAPI document describes every route the gateway serves
    let doc = api.get("/v1/openapi.json", None).await;
    // ... and nothing else: the documented (method, path) pairs are exactly the served ones.
    let mut served: Vec<(String, String)> = docs::every_route()
        .into_iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    let mut documented = Vec::new();
    for (path, item) in doc.body["paths"].as_object().unwrap() {
        for method in ["get", "put", "post", "patch", "delete"] {
            if item.get(method).is_some() {
                documented.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    served.sort();
    documented.sort();
    assert_eq!(documented, served);
    let missing = api.get("/v1/nothing-here", None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.headers["content-type"], "application/problem+json");
    assert!(missing.body["correlationId"].is_string());
    let wrong_method = api.send(Method::PUT, "/v1/auth/login", None, &[]).await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn patient_journey_from_registration_to_logout() {
    let api = Api::start().await;
    let email = unique_email();
    // GIVEN a new patient registers into the demo clinic
    let reg = api
        .post("/v1/auth/register", json!({"clinicId": DEMO_CLINIC_ID, "email": email, "password": "a long enough passphrase", "givenName": "Bo", "familyName": "Black"}), None)
        .await;
    assert_eq!(reg.status, StatusCode::CREATED, "{}", reg.body);
    // WHEN they log in, look at their sessions and refresh
    let login = api
        .post(
            "/v1/auth/login",
            json!({"email": email, "password": "a long enough passphrase"}),
            None,
        )
        .await;
    assert_eq!(login.status, StatusCode::OK);
    let access = login.body["accessToken"].as_str().unwrap().to_string();
    let sessions = api.get("/v1/auth/sessions", Some(&access)).await;
    assert_eq!(sessions.status, StatusCode::OK);
    let refreshed = api
        .post(
            "/v1/auth/refresh",
            json!({"refreshToken": login.body["refreshToken"]}),
            None,
        )
        .await;
    assert_eq!(refreshed.status, StatusCode::OK);
    // THEN logging out everywhere ends the session
    let out = api
        .post(
            "/v1/auth/logout",
            json!({"allDevices": true}),
            Some(&access),
        )
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert_eq!(
        api.get("/v1/auth/sessions", Some(&access)).await.status,
        StatusCode::UNAUTHORIZED
    );
    // AND (locally) the relay has published the outbox events to the bus
    if api.stack.is_some() {
        let events = api
            .bus_events(&[
                "auth.user_registered",
                "auth.login_succeeded",
                "auth.logged_out",
            ])
            .await;
        let types: Vec<&str> = events
            .iter()
            .filter_map(|e| e["detail-type"].as_str())
            .collect();
        for t in [
            "auth.user_registered",
            "auth.login_succeeded",
            "auth.logged_out",
        ] {
            assert!(types.contains(&t), "{t} not relayed; got {types:?}");
        }
        assert!(
            events.iter().all(|e| !e.to_string().contains(&email)),
            "events must not carry PHI"
        );
    }
}

#[tokio::test]
async fn every_demo_user_can_log_in_with_their_role() {
    let api = Api::start().await;
    for (role, email, _, _) in DEMO_USERS {
        let r = api
            .post(
                "/v1/auth/login",
                json!({"email": email, "password": DEMO_PASSWORD}),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{email}");
        assert_eq!(r.body["user"]["memberships"][0]["role"], role.as_str());
        assert_eq!(r.body["user"]["memberships"][0]["clinicId"], DEMO_CLINIC_ID);
    }
}

#[tokio::test]
async fn hostile_requests_get_problems_not_crashes() {
    let api = Api::start().await;
    let huge = vec![b'x'; 1024 * 1024];
    let r = api
        .send(Method::POST, "/v1/auth/login", Some(huge), &[])
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.body["code"], "payload_too_large");
    // The webhook reads its raw body (the signature covers it), under the same limit.
    let r = api
        .send(
            Method::POST,
            "/v1/webhooks/payments/gateway",
            Some(vec![b'x'; 2200 * 1024]),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.body["code"], "payload_too_large");
    assert_eq!(r.headers["content-type"], "application/problem+json");
    let r = api
        .send(
            Method::POST,
            "/v1/auth/register",
            Some(b"{\"clinicId\": ".to_vec()),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = api
        .get("/v1/auth/sessions", Some("eyJhbGciOiJub25lIn0.e30."))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = api
        .send(Method::DELETE, "/v1/auth/sessions/not-a-uuid", None, &[])
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn authenticated_answers_are_never_cached() {
    // GIVEN a signed-in patient
    let api = Api::start().await;
    let token = api.token("patient@demo.clinic", DEMO_PASSWORD).await;
    let clinic = format!("/v1/clinics/{DEMO_CLINIC_ID}");
    // WHEN they read their profile, their clinic, something forbidden, something missing, and
    // send a bad token
    for (path, token, status) in [
        ("/v1/users/me".to_string(), token.as_str(), StatusCode::OK),
        (clinic.clone(), token.as_str(), StatusCode::OK),
        (
            format!("{clinic}/billing/analytics"),
            token.as_str(),
            StatusCode::FORBIDDEN,
        ),
        (
            format!("{clinic}/appointments/nope"),
            token.as_str(),
            StatusCode::NOT_FOUND,
        ),
        (
            "/v1/users/me".to_string(),
            "not-a-token",
            StatusCode::UNAUTHORIZED,
        ),
    ] {
        let r = api.get(&path, Some(token)).await;
        // THEN every answer says no cache may store it
        assert_eq!(r.status, status, "{path}: {}", r.body);
        assert_eq!(r.headers["cache-control"], "no-store", "{path}");
    }
    // AND public documents stay cacheable
    let jwks = api.get("/.well-known/jwks.json", None).await;
    assert!(
        jwks.headers
            .get("cache-control")
            .is_none_or(|v| v != "no-store")
    );
}
