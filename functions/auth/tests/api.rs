//! The auth function's routes against the local emulator, each test in its own freshly
//! provisioned table, key and queues.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use http::{Method, StatusCode};
use jiff::SignedDuration;
use serde_json::{Value, json};
use shared::{clock::Clock, ids::ClinicId};
use std::sync::Arc;

#[tokio::test]
async fn register_login_refresh_logout() {
    // GIVEN a clinic
    let app = spawn().await;
    // WHEN a patient registers
    let r = app.register("Ada@Example.org").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["user"]["email"], "ada@example.org");
    assert_eq!(r.body["user"]["memberships"][0]["role"], "PATIENT");
    // THEN they can log in with any capitalisation of the email
    let login = app.login("ADA@example.org", PASSWORD).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    assert_eq!(login.headers["cache-control"], "no-store");
    assert_eq!(login.body["user"]["givenName"], "Ada");
    assert_eq!(login.body["expiresIn"], 900);
    let access = s(&login.body, "accessToken");
    let sessions = app
        .call(Method::GET, "/v1/auth/sessions", None, Some(&access))
        .await;
    assert_eq!(sessions.status, StatusCode::OK);
    assert_eq!(sessions.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(sessions.body["items"][0]["current"], true);
    // AND refresh rotates the pair
    let refreshed = app
        .call(
            Method::POST,
            "/v1/auth/refresh",
            Some(json!({"refreshToken": s(&login.body, "refreshToken")})),
            None,
        )
        .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.body);
    assert_ne!(refreshed.body["refreshToken"], login.body["refreshToken"]);
    assert_eq!(refreshed.body["sessionId"], login.body["sessionId"]);
    // AND logout ends the session: its access token stops working at once in this container
    let out = app
        .call(Method::POST, "/v1/auth/logout", None, Some(&access))
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    let after = app
        .call(Method::GET, "/v1/auth/sessions", None, Some(&access))
        .await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    assert_eq!(after.body["code"], "session_revoked");
    let again = app
        .call(
            Method::POST,
            "/v1/auth/refresh",
            Some(json!({"refreshToken": s(&refreshed.body, "refreshToken")})),
            None,
        )
        .await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn revoked_session_stops_working_in_other_containers_within_a_minute() {
    // GIVEN a second container of the function whose cache has seen the session live
    let app = spawn().await;
    let login = app.registered_login("two@example.org").await;
    let access = s(&login.body, "accessToken");
    let other = second_container(&app).await;
    assert_eq!(
        other
            .call(Method::GET, "/v1/auth/sessions", None, Some(&access))
            .await
            .status,
        StatusCode::OK
    );
    // WHEN the first container ends the session
    assert_eq!(
        app.call(Method::POST, "/v1/auth/logout", None, Some(&access))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    // THEN the first refuses it at once, and the second at the latest when its cache entry
    // (30 s, under the 60 s rule) runs out
    assert_eq!(
        app.call(Method::GET, "/v1/auth/sessions", None, Some(&access))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    app.clock.advance(SignedDuration::from_secs(31));
    let r = other
        .call(Method::GET, "/v1/auth/sessions", None, Some(&access))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body["code"], "session_revoked");
}

#[tokio::test]
async fn registration_validates_every_field() {
    let app = spawn().await;
    let r = app
        .call(Method::POST, "/v1/auth/register", Some(json!({
            "clinicId": "nope", "email": "not-an-email", "password": "short",
            "givenName": "", "familyName": "x".repeat(101), "phone": "12345", "birthDate": "2999-01-01"
        })), None)
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<&str> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    for f in [
        "clinicId",
        "email",
        "password",
        "givenName",
        "familyName",
        "phone",
        "birthDate",
    ] {
        assert!(fields.contains(&f), "{f} not in {fields:?}");
    }
    // Common password and unknown clinic
    let mut body = app.registration("c@example.org");
    body["password"] = json!("Password123");
    assert_eq!(
        app.call(Method::POST, "/v1/auth/register", Some(body), None)
            .await
            .body["errors"][0]["code"],
        "too_common"
    );
    let mut body = app.registration("c@example.org");
    body["clinicId"] = json!(ClinicId::generate());
    let r = app
        .call(Method::POST, "/v1/auth/register", Some(body), None)
        .await;
    assert_eq!(r.body["errors"][0]["code"], "registration_closed");
    // Duplicate email, in any case
    let first = app.register("dup@example.org").await;
    assert_eq!(first.status, StatusCode::CREATED);
    // The account's address is unproven; its verification link went out as a job that
    // carries neither the address nor the token
    assert_eq!(first.body["user"]["emailVerified"], false);
    let (token, job) = app.link_job("email_verification").await;
    assert_eq!(job["userId"], first.body["user"]["id"]);
    assert!(!job.to_string().contains("dup@example.org") && !job.to_string().contains(&token));
    let r = app.register("DUP@example.org").await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.body["code"], "email_taken");
}

#[tokio::test]
async fn twenty_concurrent_registrations_with_one_email_make_one_account() {
    let app = Arc::new(spawn().await);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            app.register("race@example.org").await.status
        }));
    }
    let mut created = 0;
    for t in tasks {
        match t.await.unwrap() {
            StatusCode::CREATED => created += 1,
            StatusCode::CONFLICT => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(created, 1);
    let users = app
        .scan()
        .await
        .into_iter()
        .filter(|i| {
            i.get("entity")
                .and_then(|v| v.as_s().ok())
                .map(String::as_str)
                == Some("USER")
        })
        .count();
    assert_eq!(users, 1);
    assert_eq!(
        app.login("race@example.org", PASSWORD).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn reused_refresh_token_revokes_the_session_family() {
    let app = spawn().await;
    let login = app.registered_login("reuse@example.org").await;
    let rt1 = s(&login.body, "refreshToken");
    let second = app
        .call(
            Method::POST,
            "/v1/auth/refresh",
            Some(json!({"refreshToken": rt1})),
            None,
        )
        .await;
    assert_eq!(second.status, StatusCode::OK);
    let rt2 = s(&second.body, "refreshToken");
    // WHEN the old token is replayed
    let replay = app
        .call(
            Method::POST,
            "/v1/auth/refresh",
            Some(json!({"refreshToken": rt1})),
            None,
        )
        .await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED);
    assert_eq!(replay.body["code"], "refresh_token_reused");
    // THEN the newest token and the access token of the family are dead too
    let r = app
        .call(
            Method::POST,
            "/v1/auth/refresh",
            Some(json!({"refreshToken": rt2})),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = app
        .call(
            Method::GET,
            "/v1/auth/sessions",
            None,
            Some(&s(&second.body, "accessToken")),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // AND a made-up token is simply invalid
    let r = app
        .call(
            Method::POST,
            "/v1/auth/refresh",
            Some(json!({"refreshToken": "rt1.a.b.c"})),
            None,
        )
        .await;
    assert_eq!(r.body["code"], "invalid_refresh_token");
}

#[tokio::test]
async fn of_concurrent_refreshes_exactly_one_succeeds() {
    let app = Arc::new(spawn().await);
    let login = app.registered_login("twin@example.org").await;
    let rt = s(&login.body, "refreshToken");
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let app = app.clone();
        let rt = rt.clone();
        tasks.push(tokio::spawn(async move {
            app.call(
                Method::POST,
                "/v1/auth/refresh",
                Some(json!({"refreshToken": rt})),
                None,
            )
            .await
            .status
        }));
    }
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap() == StatusCode::OK {
            ok += 1;
        }
    }
    assert_eq!(ok, 1);
}

#[tokio::test]
async fn sessions_are_listed_revoked_and_capped_at_ten() {
    let app = spawn().await;
    let first = app.registered_login("many@example.org").await;
    let second = app.login("many@example.org", PASSWORD).await;
    let access = s(&second.body, "accessToken");
    let list = app
        .call(Method::GET, "/v1/auth/sessions", None, Some(&access))
        .await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 2);
    // Revoke the first session from the second
    let path = format!("/v1/auth/sessions/{}", s(&first.body, "sessionId"));
    assert_eq!(
        app.call(Method::DELETE, &path, None, Some(&access))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.call(Method::DELETE, &path, None, Some(&access))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.call(
            Method::GET,
            "/v1/auth/sessions",
            None,
            Some(&s(&first.body, "accessToken"))
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );
    // Someone else's session id is "not found", exactly like a missing one
    let stranger = app.registered_login("stranger@example.org").await;
    let theirs = app
        .call(
            Method::DELETE,
            &format!("/v1/auth/sessions/{}", s(&stranger.body, "sessionId")),
            None,
            Some(&access),
        )
        .await;
    let missing = app
        .call(
            Method::DELETE,
            &format!("/v1/auth/sessions/{}", shared::ids::SessionId::generate()),
            None,
            Some(&access),
        )
        .await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
    assert_eq!(theirs.body["code"], missing.body["code"]);
    assert_eq!(theirs.body["detail"], missing.body["detail"]);
    // Eleven more logins: at most ten stay live, the oldest go first
    let mut last = String::new();
    for _ in 0..11 {
        app.clock.advance(SignedDuration::from_secs(1));
        last = s(
            &app.login("many@example.org", PASSWORD).await.body,
            "accessToken",
        );
    }
    let list = app
        .call(Method::GET, "/v1/auth/sessions", None, Some(&last))
        .await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 10);
    let r = app
        .call(
            Method::POST,
            "/v1/auth/refresh",
            Some(json!({"refreshToken": s(&second.body, "refreshToken")})),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Logout everywhere
    assert_eq!(
        app.call(
            Method::POST,
            "/v1/auth/logout",
            Some(json!({"allDevices": true})),
            Some(&last)
        )
        .await
        .status,
        StatusCode::NO_CONTENT
    );
    let again = app.login("many@example.org", PASSWORD).await;
    let list = app
        .call(
            Method::GET,
            "/v1/auth/sessions",
            None,
            Some(&s(&again.body, "accessToken")),
        )
        .await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn password_guesses_are_reserved_first_and_slow_down_per_account_and_source() {
    let app = spawn().await;
    app.registered_login("lock@example.org").await;
    let attacker = "203.0.113.7";
    // Unknown email and wrong password answer alike
    let unknown = app
        .login_from(attacker, "nobody@example.org", "whatever-password")
        .await;
    let wrong = app
        .login_from(attacker, "lock@example.org", "wrong password 1")
        .await;
    assert_eq!(
        (
            unknown.status,
            &unknown.body["code"],
            &unknown.body["detail"]
        ),
        (wrong.status, &wrong.body["code"], &wrong.body["detail"])
    );
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    // Twenty guesses fired at once: each is reserved before its password is checked, one at a
    // time, so almost all are refused unchecked
    let guesses = shared::provision::join_all(
        (0..20)
            .map(|i| {
                let app = &app;
                async move {
                    app.login_from(attacker, "lock@example.org", &format!("parallel {i}"))
                        .await
                }
            })
            .collect(),
    )
    .await;
    let checked = guesses
        .iter()
        .filter(|r| r.status == StatusCode::UNAUTHORIZED)
        .count();
    assert!((1..=4).contains(&checked), "{checked} guesses were checked");
    for r in guesses
        .iter()
        .filter(|r| r.status != StatusCode::UNAUTHORIZED)
    {
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
        assert!(r.headers.contains_key("retry-after"));
    }
    // Guessing on, the pair soon waits, and each wait is longer than the one before
    let mut waits = Vec::new();
    for i in 0..8 {
        let r = app
            .login_from(attacker, "lock@example.org", &format!("wrong {i}"))
            .await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            let wait: i64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
            waits.push(wait);
            app.clock.advance(SignedDuration::from_secs(wait));
        }
    }
    assert!(waits.len() >= 3, "{waits:?}");
    assert!(waits.windows(2).all(|w| w[1] > w[0]), "{waits:?}");
    // The right password from the guesser's address waits too...
    app.login_from(attacker, "lock@example.org", "one more")
        .await;
    let right = app.login_from(attacker, "lock@example.org", PASSWORD).await;
    assert_eq!(right.status, StatusCode::TOO_MANY_REQUESTS);
    // ...but the owner, from their own address, is never locked out by a stranger
    let owner = app
        .login_from("198.51.100.1", "lock@example.org", PASSWORD)
        .await;
    assert_eq!(owner.status, StatusCode::OK, "{}", owner.body);
    // Guesses of the current password in a password change count the same way
    let token = s(&owner.body, "accessToken");
    let change = |i: usize| {
        let body =
            json!({"currentPassword": format!("not it {i}"), "newPassword": "a brand new secret"});
        let (app, token) = (&app, token.clone());
        async move {
            app.call_from(
                "198.51.100.1",
                Method::POST,
                "/v1/auth/password/change",
                Some(body.to_string().into_bytes()),
                Some(&token),
                &[],
            )
            .await
        }
    };
    let mut statuses = Vec::new();
    for i in 0..7 {
        statuses.push(change(i).await.status);
    }
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::UNPROCESSABLE_ENTITY)
            .count(),
        shared::throttle::FREE_GUESSES as usize,
        "{statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&StatusCode::TOO_MANY_REQUESTS));
}

#[tokio::test]
async fn reset_mails_are_limited_per_address_whether_or_not_it_has_an_account() {
    let app = spawn().await;
    app.register("limits@example.org").await;
    for email in ["limits@example.org", "nobody.here@example.org"] {
        let mut statuses = Vec::new();
        for _ in 0..6 {
            let r = app
                .call(
                    Method::POST,
                    "/v1/auth/password/forgot",
                    Some(json!({ "email": email })),
                    None,
                )
                .await;
            statuses.push(r.status);
        }
        assert_eq!(
            statuses,
            [
                [StatusCode::ACCEPTED; 5].as_slice(),
                &[StatusCode::TOO_MANY_REQUESTS]
            ]
            .concat(),
            "{email}"
        );
    }
}

#[tokio::test]
async fn changing_the_password_ends_the_other_sessions() {
    let app = spawn().await;
    let a = app.registered_login("change@example.org").await;
    let b = app.login("change@example.org", PASSWORD).await;
    let token = s(&a.body, "accessToken");
    let wrong = app
        .call(
            Method::POST,
            "/v1/auth/password/change",
            Some(json!({"currentPassword": "nope nope nope", "newPassword": "a brand new secret"})),
            Some(&token),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    let weak = app
        .call(
            Method::POST,
            "/v1/auth/password/change",
            Some(json!({"currentPassword": PASSWORD, "newPassword": "qwertyuiop"})),
            Some(&token),
        )
        .await;
    assert_eq!(weak.body["errors"][0]["code"], "too_common");
    let ok = app
        .call(
            Method::POST,
            "/v1/auth/password/change",
            Some(json!({"currentPassword": PASSWORD, "newPassword": "a brand new secret"})),
            Some(&token),
        )
        .await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT, "{}", ok.body);
    assert_eq!(
        app.call(Method::GET, "/v1/auth/sessions", None, Some(&token))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.call(
            Method::GET,
            "/v1/auth/sessions",
            None,
            Some(&s(&b.body, "accessToken"))
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login("change@example.org", PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login("change@example.org", "a brand new secret")
            .await
            .status,
        StatusCode::OK
    );
}

async fn reset_token_from_queue(app: &TestApp) -> (String, String) {
    let (token, job) = app.link_job("password_reset").await;
    (token, job.to_string())
}

#[tokio::test]
async fn password_reset_is_single_use_and_expires() {
    let app = spawn().await;
    let a = app.registered_login("reset@example.org").await;
    // Unknown addresses get the same answer and no job
    let unknown = app
        .call(
            Method::POST,
            "/v1/auth/password/forgot",
            Some(json!({"email": "ghost@example.org"})),
            None,
        )
        .await;
    let known = app
        .call(
            Method::POST,
            "/v1/auth/password/forgot",
            Some(json!({"email": "reset@example.org"})),
            None,
        )
        .await;
    assert_eq!((unknown.status, &unknown.body), (known.status, &known.body));
    assert_eq!(known.status, StatusCode::ACCEPTED);
    let (token, job) = reset_token_from_queue(&app).await;
    assert!(
        !job.contains("reset@example.org"),
        "the queue job must not carry the email"
    );
    // A weak password is refused without consuming the token
    let weak = app
        .call(
            Method::POST,
            "/v1/auth/password/reset",
            Some(json!({"token": token, "newPassword": "1234567890"})),
            None,
        )
        .await;
    assert_eq!(weak.status, StatusCode::UNPROCESSABLE_ENTITY);
    let ok = app
        .call(
            Method::POST,
            "/v1/auth/password/reset",
            Some(json!({"token": token, "newPassword": "brand-new passphrase"})),
            None,
        )
        .await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT, "{}", ok.body);
    let reuse = app
        .call(
            Method::POST,
            "/v1/auth/password/reset",
            Some(json!({"token": token, "newPassword": "another fresh one"})),
            None,
        )
        .await;
    assert_eq!(reuse.status, StatusCode::BAD_REQUEST);
    assert_eq!(reuse.body["code"], "invalid_reset_token");
    // Every session ended; the new password works
    assert_eq!(
        app.call(
            Method::GET,
            "/v1/auth/sessions",
            None,
            Some(&s(&a.body, "accessToken"))
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login("reset@example.org", "brand-new passphrase")
            .await
            .status,
        StatusCode::OK
    );
    // A token older than 15 minutes is refused
    app.call(
        Method::POST,
        "/v1/auth/password/forgot",
        Some(json!({"email": "reset@example.org"})),
        None,
    )
    .await;
    let (late, _) = reset_token_from_queue(&app).await;
    app.clock.advance(SignedDuration::from_mins(16));
    let r = app
        .call(
            Method::POST,
            "/v1/auth/password/reset",
            Some(json!({"token": late, "newPassword": "too late for this"})),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn hostile_tokens_are_refused_without_touching_the_database() {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
    let app = spawn().await;
    let login = app.registered_login("tokens@example.org").await;
    let good = s(&login.body, "accessToken");
    let parts: Vec<&str> = good.split('.').collect();
    let header: Value = serde_json::from_slice(&B64.decode(parts[0]).unwrap()).unwrap();
    let claims: Value = serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
    let enc = |v: &Value| B64.encode(v.to_string());
    let with_claims = |k: &str, v: Value| {
        let mut c = claims.clone();
        c[k] = v;
        format!("{}.{}.{}", parts[0], enc(&c), parts[2])
    };
    let mut none_header = header.clone();
    none_header["alg"] = json!("none");
    let mut hs_header = header.clone();
    hs_header["alg"] = json!("HS256");
    let mut unknown_kid = header.clone();
    unknown_kid["kid"] = json!("k-unknown");
    let now = app.clock.epoch();
    let hostile = vec![
        format!("{}.{}.", enc(&none_header), parts[1]),
        format!("{}.{}.{}", enc(&hs_header), parts[1], parts[2]),
        format!("{}.{}.{}", enc(&unknown_kid), parts[1], parts[2]),
        with_claims("exp", json!(now - 60)),
        with_claims("nbf", json!(now + 3600)),
        with_claims("iss", json!("https://evil.test")),
        with_claims("aud", json!("other-api")),
        with_claims("sub", json!(shared::ids::UserId::generate())),
        "garbage".to_string(),
    ];
    let before = app.clients.calls.get();
    for t in &hostile {
        let r = app
            .call(Method::GET, "/v1/auth/sessions", None, Some(t))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{t}");
        assert!(r.headers.contains_key("www-authenticate"));
    }
    // Expired-by-time (clock moved past 15 minutes) is refused too
    app.clock.advance(SignedDuration::from_mins(16));
    assert_eq!(
        app.call(Method::GET, "/v1/auth/sessions", None, Some(&good))
            .await
            .body["code"],
        "token_expired"
    );
    assert_eq!(
        app.clients.calls.get(),
        before,
        "no AWS call for a refused token"
    );
    let missing = app.call(Method::GET, "/v1/auth/sessions", None, None).await;
    assert_eq!(missing.body["code"], "missing_token");
    // RFC 6750: no error attribute when no token was sent; invalid_token when one was refused
    assert_eq!(
        missing.headers["www-authenticate"],
        "Bearer realm=\"clinic-api\""
    );
    let refused = app
        .call(Method::GET, "/v1/auth/sessions", None, Some("garbage"))
        .await;
    assert!(
        refused.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"invalid_token\"")
    );
}

#[tokio::test]
async fn phi_is_encrypted_at_rest_and_bound_to_its_record() {
    let app = spawn().await;
    app.registered_login("phi.canary@example.org").await;
    app.register("other.person@example.org").await;
    let items = app.scan().await;
    let raw = format!("{items:?}");
    for plain in [
        "phi.canary@example.org",
        "Ada",
        "Lovelace",
        "+4930123456",
        "1990-12-10",
    ] {
        assert!(!raw.contains(plain), "plaintext {plain} found at rest");
    }
    // A ciphertext moved onto another user's record does not decrypt there
    let users: Vec<_> = items
        .iter()
        .filter(|i| {
            i.get("entity")
                .and_then(|v| v.as_s().ok())
                .map(String::as_str)
                == Some("USER")
        })
        .collect();
    assert_eq!(users.len(), 2);
    let ct = users[0]["email"].as_s().unwrap();
    let own_id = users[0]["userId"].as_s().unwrap();
    let other_id = users[1]["userId"].as_s().unwrap();
    let ctx = |id: &'static str| shared::crypto::FieldContext {
        tenant: "platform",
        entity: "USER",
        record: id,
        field: "email",
    };
    let own: &'static str = Box::leak(own_id.clone().into_boxed_str());
    let other: &'static str = Box::leak(other_id.clone().into_boxed_str());
    assert!(app.state.envelope.decrypt(&ctx(own), ct).await.is_ok());
    assert!(app.state.envelope.decrypt(&ctx(other), ct).await.is_err());
    let wrong_field = shared::crypto::FieldContext {
        field: "givenName",
        ..ctx(own)
    };
    assert!(app.state.envelope.decrypt(&wrong_field, ct).await.is_err());
    let wrong_tenant = shared::crypto::FieldContext {
        tenant: "some-clinic",
        ..ctx(own)
    };
    assert!(app.state.envelope.decrypt(&wrong_tenant, ct).await.is_err());
    // Outbox events carry ids only
    let events: Vec<String> = items
        .iter()
        .filter_map(|i| i.get("envelope").and_then(|v| v.as_s().ok()).cloned())
        .collect();
    assert!(events.iter().any(|e| e.contains("auth.user_registered")));
    assert!(events.iter().any(|e| e.contains("auth.login_succeeded")));
    assert!(
        events
            .iter()
            .all(|e| !e.contains("canary") && !e.contains("Ada"))
    );
}

#[tokio::test]
async fn bad_bodies_are_client_errors_never_500() {
    let app = spawn().await;
    let cases: Vec<(Vec<u8>, StatusCode, &str)> = vec![
        (b"{,".to_vec(), StatusCode::BAD_REQUEST, "malformed_json"),
        (
            br#"{"email": 5, "password": []}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            br#"{"email": "a@b.cd", "password": "xxxxxxxxxxxx", "isAdmin": true}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            b"[]".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            vec![b'a'; 1024 * 1024],
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
    ];
    for path in [
        "/v1/auth/login",
        "/v1/auth/register",
        "/v1/auth/refresh",
        "/v1/auth/password/forgot",
        "/v1/auth/password/reset",
    ] {
        for (body, status, code) in &cases {
            let r = app
                .call_with(Method::POST, path, Some(body.clone()), None, &[])
                .await;
            assert!(r.status != StatusCode::INTERNAL_SERVER_ERROR, "{path}");
            assert_eq!(r.status, *status, "{path} {code}");
            assert_eq!(r.body["code"], *code, "{path}");
            assert_eq!(r.headers["content-type"], "application/problem+json");
            assert!(r.body["correlationId"].is_string());
        }
    }
    let r = app
        .call_with(
            Method::POST,
            "/v1/auth/login",
            Some(b"{}".to_vec()),
            None,
            &[("content-type", "text/plain")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Logout's body is optional, but when present it obeys the same rules
    let token = s(
        &app.registered_login("bodies@example.org").await.body,
        "accessToken",
    );
    let auth = format!("Bearer {token}");
    let r = app
        .call_with(
            Method::POST,
            "/v1/auth/logout",
            Some(b"{}".to_vec()),
            None,
            &[("content-type", "text/plain"), ("authorization", &auth)],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = app
        .call_with(
            Method::POST,
            "/v1/auth/logout",
            Some(vec![b' '; 1024 * 1024]),
            Some(&token),
            &[],
        )
        .await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large"))
    );
    let r = app
        .call_with(
            Method::POST,
            "/v1/auth/logout",
            Some(br#"{"allDevices": "yes"}"#.to_vec()),
            Some(&token),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.status.is_client_error());
    // An over-long password is refused before hashing
    let r = app.login("a@example.org", &"p".repeat(10_000)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn idempotency_key_replays_and_refuses_mismatches() {
    let app = Arc::new(spawn().await);
    let body = app
        .registration("idem@example.org")
        .to_string()
        .into_bytes();
    let key = [("idempotency-key", "reg-0001")];
    let first = app
        .call_with(
            Method::POST,
            "/v1/auth/register",
            Some(body.clone()),
            None,
            &key,
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    let again = app
        .call_with(
            Method::POST,
            "/v1/auth/register",
            Some(body.clone()),
            None,
            &key,
        )
        .await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.body, first.body);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    let other = app
        .registration("idem2@example.org")
        .to_string()
        .into_bytes();
    let mismatch = app
        .call_with(Method::POST, "/v1/auth/register", Some(other), None, &key)
        .await;
    assert_eq!(mismatch.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(mismatch.body["code"], "idempotency_key_reused");
    // Concurrent duplicates with a fresh key: one effect
    let body = app
        .registration("idem3@example.org")
        .to_string()
        .into_bytes();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let app = app.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let r = app
                .call_with(
                    Method::POST,
                    "/v1/auth/register",
                    Some(body),
                    None,
                    &[("idempotency-key", "reg-0002")],
                )
                .await;
            (r.status, r.headers.contains_key("idempotent-replayed"))
        }));
    }
    let mut fresh_created = 0;
    for t in tasks {
        let (status, replayed) = t.await.unwrap();
        assert!(
            matches!(status, StatusCode::CREATED | StatusCode::CONFLICT),
            "{status}"
        );
        if status == StatusCode::CREATED && !replayed {
            fresh_created += 1;
        }
    }
    assert_eq!(fresh_created, 1);
    let users = app
        .scan()
        .await
        .into_iter()
        .filter(|i| {
            i.get("entity")
                .and_then(|v| v.as_s().ok())
                .map(String::as_str)
                == Some("USER")
        })
        .count();
    assert_eq!(users, 2);
    // The stored response is encrypted at rest
    let raw = format!("{:?}", app.scan().await);
    assert!(!raw.contains("idem@example.org"));
    // AND the stored body hash is keyed: a plain digest of a registration body (which holds a
    // password) could be confirmed by anyone who guesses the body
    use base64::Engine;
    use sha2::Digest;
    let plain = |b: &[u8]| {
        let mut h = sha2::Sha256::new();
        h.update(b);
        h.update(b"\x1f");
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h.finalize())
    };
    let hashes: Vec<String> = app
        .scan()
        .await
        .iter()
        .filter(|i| {
            i.get("entity")
                .and_then(|v| v.as_s().ok())
                .map(String::as_str)
                == Some("IDEMPOTENCY")
        })
        .filter_map(|i| i.get("requestHash").and_then(|v| v.as_s().ok()).cloned())
        .collect();
    assert!(!hashes.is_empty());
    for h in &hashes {
        assert_ne!(*h, plain(&body));
        let mut bare = sha2::Sha256::new();
        bare.update(&body);
        assert_ne!(
            *h,
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bare.finalize())
        );
    }
}

#[tokio::test]
async fn platform_routes_answer() {
    let app = spawn().await;
    assert_eq!(
        app.call(Method::GET, "/v1/health", None, None).await.body["status"],
        "ok"
    );
    let jwks = app
        .call(Method::GET, "/.well-known/jwks.json", None, None)
        .await;
    assert_eq!(jwks.body["keys"][0]["kty"], "OKP");
    assert_eq!(jwks.body["keys"][0]["alg"], "EdDSA");
    let r = app
        .call_with(
            Method::GET,
            "/v1/health",
            None,
            None,
            &[("x-correlation-id", "trace-42")],
        )
        .await;
    assert_eq!(r.headers["x-correlation-id"], "trace-42");
}

/// Runs a sample API Gateway v2 event from `events/` through the Lambda adapter's request
/// conversion and the router, as `lambda_http::run` does on AWS.
async fn through_lambda(app: &TestApp, sample: &str) -> (StatusCode, Value) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let req = lambda_http::request::from_str(sample).unwrap();
    let (parts, body) = req.into_parts();
    let req = http::Request::from_parts(parts, axum::body::Body::from(body.to_vec()));
    let resp = app.router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn sample_api_gateway_events_route_through_the_lambda_adapter() {
    let app = spawn().await;
    let (status, body) = through_lambda(
        &app,
        include_str!("../../../events/auth-health-apigw-v2.json"),
    )
    .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    // The login sample uses the demo patient: register it in this test's clinic first
    let mut reg = app.registration("patient@demo.clinic");
    reg["password"] = json!("clinic-demo-passphrase");
    assert_eq!(
        app.call(Method::POST, "/v1/auth/register", Some(reg), None)
            .await
            .status,
        StatusCode::CREATED
    );
    let (status, body) = through_lambda(
        &app,
        include_str!("../../../events/auth-login-apigw-v2.json"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["accessToken"].is_string());
    let (status, body) = through_lambda(
        &app,
        include_str!("../../../events/auth-login-unknown-field-apigw-v2.json"),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_body"))
    );
}

#[tokio::test]
async fn a_token_and_a_clinic_are_checked_without_an_http_request() {
    // GIVEN a registered patient of the test clinic, logged in (as a WebSocket `$connect` or a
    // queue consumer would see them: a token string and ids, no request parts)
    let app = spawn().await;
    let login = app.registered_login("socket@example.org").await;
    let access = s(&login.body, "accessToken");
    let authn = &app.state.authn;
    // WHEN the token is verified on its own
    let caller = authn.authenticate_token(&access).await.expect("caller");
    // THEN it names the session's user, and their clinic gives their role
    assert_eq!(caller.session_id.as_str(), s(&login.body, "sessionId"));
    let access_to = authn
        .clinic_access(caller.clone(), app.clinic.clone())
        .await
        .expect("member");
    assert_eq!(access_to.role, shared::policy::Role::Patient);
    // AND another clinic is not found, like one that does not exist
    let other = authn.clinic_access(caller, ClinicId::generate()).await;
    assert!(matches!(other, Err(shared::ApiError::NotFound)));
    // AND a forged token or one of an ended session is refused
    let forged = format!("{}x", &access[..access.len() - 1]);
    assert!(authn.authenticate_token(&forged).await.is_err());
    let out = app
        .call(
            Method::POST,
            "/v1/auth/logout",
            Some(json!({})),
            Some(&access),
        )
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT, "{}", out.body);
    assert!(matches!(
        authn.authenticate_token(&access).await,
        Err(shared::ApiError::Unauthorized {
            code: "session_revoked",
            ..
        })
    ));
}
