//! Two-step sign-in over HTTP, tried as an attacker would: enrolment and confirmation,
//! challenges that are single-use and short-lived, codes and recovery codes taken once, code
//! guessing slowed per account, the platform administrator who always needs the second step,
//! and a clinic that requires it of its staff.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use blackbox::{Api, Reply, account, call, enrol_authenticator, job_for, person};
use http::{Method, StatusCode};
use jiff::SignedDuration;
use local_stack::{DEMO_PASSWORD, Stack, totp_code};
use serde_json::json;
use shared::{
    clock::ManualClock,
    ids::{ClinicId, UserId},
    policy::Role,
    provision::{provision, put_clinic, test_clients, unique_prefix},
};
use std::sync::Arc;

struct World {
    api: Api,
    clock: Arc<ManualClock>,
    clinic: ClinicId,
}

impl World {
    fn stack(&self) -> &Stack {
        self.api.stack.as_ref().unwrap()
    }

    fn advance(&self, seconds: i64) {
        self.clock.advance(SignedDuration::from_secs(seconds));
    }

    async fn member(&self, role: Role) -> (UserId, String) {
        person(self.stack(), Some(&self.clinic), role, None, true).await
    }

    async fn login(&self, email: &str) -> Reply {
        self.api
            .post(
                "/v1/auth/login",
                json!({"email": email, "password": DEMO_PASSWORD}),
                None,
            )
            .await
    }

    async fn answer(&self, challenge: &str, factor: serde_json::Value) -> Reply {
        let mut body = json!({ "challenge": challenge });
        for (k, v) in factor.as_object().unwrap() {
            body[k] = v.clone();
        }
        self.api.post("/v1/auth/login/mfa", body, None).await
    }

    /// A login that must be challenged: its challenge.
    async fn challenge(&self, email: &str) -> String {
        let r = self.login(email).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["mfaRequired"], true, "{}", r.body);
        assert!(
            r.body.get("accessToken").is_none(),
            "no tokens before the code"
        );
        r.body["challenge"].as_str().unwrap().to_string()
    }

    fn code(&self, secret: &str) -> String {
        totp_code(secret, self.api.now()).unwrap()
    }
}

async fn world(label: &str) -> World {
    let clients = test_clients().await;
    let resources = provision(&clients, &unique_prefix(label)).await.unwrap();
    let clock = Arc::new(ManualClock::starting_now());
    let stack = Stack::with_clock(clients.clone(), resources, clock.clone())
        .await
        .unwrap();
    let clinic = ClinicId::generate();
    put_clinic(
        &clients,
        &stack.resources.table,
        &clinic,
        ("Two Step", "Europe/Berlin", "EUR"),
        true,
    )
    .await
    .unwrap();
    World {
        api: Api::serve(stack).await,
        clock,
        clinic,
    }
}

fn code_of(r: &Reply) -> (StatusCode, Option<&str>) {
    (
        r.status,
        r.body["errors"][0]["code"]
            .as_str()
            .or_else(|| r.body["code"].as_str()),
    )
}

/// A six-digit code that is not the right one now (nor a step either side).
fn wrong_code(secret: &str, now: i64) -> String {
    let right: Vec<String> = (-1..=1)
        .map(|s| totp_code(secret, now + 30 * s).unwrap())
        .collect();
    (0..1000)
        .map(|i| format!("{:06}", 111_111 + i))
        .find(|c| !right.contains(c))
        .unwrap()
}

#[tokio::test]
async fn an_authenticator_is_enrolled_then_asked_for_at_every_login_and_each_code_counts_once() {
    let w = world("mfa").await;
    let (user, email) = w.member(Role::Patient).await;
    let token = w.api.token(&email, DEMO_PASSWORD).await;
    let start = |password: &str| {
        call(
            &w.api,
            Method::POST,
            "/v1/auth/mfa/totp",
            Some(json!({ "password": password })),
            &token,
        )
    };
    // Only the signed-in owner, with the password again
    let r = w
        .api
        .post(
            "/v1/auth/mfa/totp",
            json!({"password": DEMO_PASSWORD}),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = start("not the password at all").await;
    assert_eq!(
        code_of(&r),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("wrong_password"))
    );
    let r = start(DEMO_PASSWORD).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.headers["cache-control"], "no-store");
    let secret = r.body["secret"].as_str().unwrap().to_string();
    assert_eq!(secret.len(), 32);
    let uri = r.body["otpauthUri"].as_str().unwrap();
    assert!(uri.contains(&format!("secret={secret}")), "{uri}");
    assert!(uri.contains(&email.replace('@', "%40")), "{uri}");
    assert_eq!(
        (r.body["digits"].as_i64(), r.body["period"].as_i64()),
        (Some(6), Some(30))
    );
    // The secret is stored sealed, like PHI
    let item = w
        .stack()
        .clients
        .dynamodb
        .get_item()
        .table_name(&w.stack().resources.table)
        .key("pk", shared::db::s(shared::keys::user_pk(&user)))
        .key("sk", shared::db::s(shared::keys::TOTP_SK))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let stored = format!("{item:?}");
    assert!(
        !stored.contains(&secret),
        "the secret is never stored in the clear"
    );
    assert!(item["sealedSecret"].as_s().unwrap().starts_with("v1."));
    // Confirming takes a right code only
    let confirm = |code: String| {
        call(
            &w.api,
            Method::POST,
            "/v1/auth/mfa/totp/confirm",
            Some(json!({ "code": code })),
            &token,
        )
    };
    let r = confirm(wrong_code(&secret, w.api.now())).await;
    assert_eq!(
        code_of(&r),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("wrong_code"))
    );
    let r = confirm(w.code(&secret)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let recovery: Vec<String> = r.body["recoveryCodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(recovery.len(), 10);
    let notice = job_for(w.stack(), &user, "mfa-enabled").await.to_string();
    assert!(!notice.contains(&secret) && !notice.contains(&recovery[0]));
    assert_eq!(
        code_of(&start(DEMO_PASSWORD).await),
        (StatusCode::CONFLICT, Some("mfa_already_enabled"))
    );

    // Every login now stops at a challenge
    let challenge = w.challenge(&email).await;
    let forged = format!("{}x", &challenge[..challenge.len() - 1]);
    let r = w.answer(&forged, json!({"code": w.code(&secret)})).await;
    assert_eq!(
        code_of(&r),
        (StatusCode::UNAUTHORIZED, Some("invalid_mfa_challenge"))
    );
    // The confirming code's step is spent: the same code again is refused
    let r = w.answer(&challenge, json!({"code": w.code(&secret)})).await;
    assert_eq!(
        code_of(&r),
        (StatusCode::UNAUTHORIZED, Some("invalid_mfa_code"))
    );
    let r = w
        .answer(
            &challenge,
            json!({"code": w.code(&secret), "recoveryCode": recovery[0]}),
        )
        .await;
    assert_eq!(
        code_of(&r),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("one_factor"))
    );
    w.advance(30);
    let code = w.code(&secret);
    let r = w.answer(&challenge, json!({ "code": code })).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.headers["cache-control"], "no-store");
    let access = r.body["accessToken"].as_str().unwrap().to_string();
    assert_eq!(
        call(&w.api, Method::GET, "/v1/auth/sessions", None, &access)
            .await
            .status,
        StatusCode::OK
    );
    // A challenge answers once; a code counts once, even with a new challenge
    w.advance(30);
    let r = w.answer(&challenge, json!({"code": w.code(&secret)})).await;
    assert_eq!(
        code_of(&r),
        (StatusCode::UNAUTHORIZED, Some("invalid_mfa_challenge"))
    );
    let second = w.challenge(&email).await;
    let r = w.answer(&second, json!({ "code": code })).await;
    assert_eq!(
        code_of(&r),
        (StatusCode::UNAUTHORIZED, Some("invalid_mfa_code")),
        "a replayed code"
    );
    // A recovery code, typed loosely, stands in for a code once
    let typed = recovery[3].to_lowercase().replace('-', " ");
    let r = w.answer(&second, json!({ "recoveryCode": typed })).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    job_for(w.stack(), &user, "mfa-recovery-code-used").await;
    let third = w.challenge(&email).await;
    let r = w
        .answer(&third, json!({ "recoveryCode": recovery[3] }))
        .await;
    assert_eq!(
        code_of(&r),
        (StatusCode::UNAUTHORIZED, Some("invalid_mfa_code"))
    );
    // A challenge lives five minutes
    w.advance(6 * 60);
    let r = w.answer(&third, json!({"code": w.code(&secret)})).await;
    assert_eq!(
        code_of(&r),
        (StatusCode::UNAUTHORIZED, Some("invalid_mfa_challenge"))
    );

    // Turning it off takes the password and a code
    let token = w.api.token_with(&email, DEMO_PASSWORD, &secret).await;
    let remove = |body: serde_json::Value| {
        call(
            &w.api,
            Method::DELETE,
            "/v1/auth/mfa/totp",
            Some(body),
            &token,
        )
    };
    let r = remove(json!({"password": "not the password at all", "code": "123456"})).await;
    assert_eq!(
        code_of(&r),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("wrong_password"))
    );
    let r = remove(json!({"password": DEMO_PASSWORD})).await;
    assert_eq!(
        code_of(&r),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("one_factor"))
    );
    let r =
        remove(json!({"password": DEMO_PASSWORD, "code": wrong_code(&secret, w.api.now())})).await;
    assert_eq!(
        code_of(&r),
        (StatusCode::UNAUTHORIZED, Some("invalid_mfa_code"))
    );
    let r = remove(json!({"password": DEMO_PASSWORD, "recoveryCode": recovery[5]})).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    job_for(w.stack(), &user, "mfa-disabled").await;
    let r = w.login(&email).await;
    assert!(r.body["accessToken"].is_string(), "{}", r.body);
}

#[tokio::test]
async fn codes_cannot_be_guessed_faster_than_the_backoff_allows() {
    let w = world("mfa").await;
    let (_, email) = w.member(Role::Doctor).await;
    let token = w.api.token(&email, DEMO_PASSWORD).await;
    let (secret, _) = enrol_authenticator(&w.api, &token, DEMO_PASSWORD).await;
    w.advance(30);
    let challenge = w.challenge(&email).await;
    for _ in 0..5 {
        let r = w
            .answer(
                &challenge,
                json!({"code": wrong_code(&secret, w.api.now())}),
            )
            .await;
        assert_eq!(
            code_of(&r),
            (StatusCode::UNAUTHORIZED, Some("invalid_mfa_code"))
        );
    }
    // Past the free guesses, even the right code waits: the answer tells nothing meanwhile.
    // A fresh login does not start the count afresh.
    let again = w.challenge(&email).await;
    let r = w.answer(&again, json!({"code": w.code(&secret)})).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    let wait: i64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(wait >= 1);
    w.advance(wait);
    let r = w.answer(&again, json!({"code": w.code(&secret)})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn a_super_admin_acts_only_in_a_session_that_passed_the_second_step() {
    let w = world("mfa").await;
    // A platform administrator without an authenticator yet: the password opens a session,
    // but the role does not act in it.
    let (_, email) = account(w.stack(), None, Role::SuperAdmin, None, true).await;
    let token = w.api.token(&email, DEMO_PASSWORD).await;
    let clinic = format!("/v1/clinics/{}", w.clinic);
    let body = json!({"name": "Nope", "timeZone": "Europe/Paris", "currency": "EUR",
                      "admin": {"email": "nope@mfa.test", "givenName": "N", "familyName": "O"}});
    for (method, path, body) in [
        (Method::POST, "/v1/clinics", Some(body.clone())),
        (Method::GET, "/v1/clinics", None),
        (Method::GET, clinic.as_str(), None),
        (Method::GET, &format!("{clinic}/members"), None),
    ] {
        let r = call(&w.api, method.clone(), path, body, &token).await;
        assert_eq!(
            code_of(&r),
            (StatusCode::FORBIDDEN, Some("mfa_required")),
            "{method} {path}: {}",
            r.body
        );
    }
    let (secret, recovery) = enrol_authenticator(&w.api, &token, DEMO_PASSWORD).await;
    // The role cannot turn it off again
    let r = call(
        &w.api,
        Method::DELETE,
        "/v1/auth/mfa/totp",
        Some(json!({"password": DEMO_PASSWORD, "recoveryCode": recovery[0]})),
        &token,
    )
    .await;
    assert_eq!(code_of(&r), (StatusCode::FORBIDDEN, Some("mfa_required")));
    // The session it was enrolled in stays a password-only one; a login with a code acts
    let r = call(&w.api, Method::GET, &clinic, None, &token).await;
    assert_eq!(code_of(&r), (StatusCode::FORBIDDEN, Some("mfa_required")));
    w.advance(30);
    let challenge = w.challenge(&email).await;
    let r = w.answer(&challenge, json!({"code": w.code(&secret)})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let strong = r.body["accessToken"].as_str().unwrap();
    let r = call(&w.api, Method::GET, &clinic, None, strong).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = call(&w.api, Method::POST, "/v1/clinics", Some(body), strong).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

#[tokio::test]
async fn a_clinic_that_requires_it_lets_its_staff_act_only_after_the_second_step() {
    let w = world("mfa").await;
    let (_, admin_email) = w.member(Role::ClinicAdmin).await;
    let (_, doctor_email) = w.member(Role::Doctor).await;
    let (_, patient_email) = w.member(Role::Patient).await;
    let admin = w.api.token(&admin_email, DEMO_PASSWORD).await;
    let doctor = w.api.token(&doctor_email, DEMO_PASSWORD).await;
    let patient = w.api.token(&patient_email, DEMO_PASSWORD).await;
    let clinic = format!("/v1/clinics/{}", w.clinic);
    let get = |token: &String| {
        let (api, path, token) = (&w.api, clinic.clone(), token.clone());
        async move { call(api, Method::GET, &path, None, &token).await }
    };
    assert_eq!(get(&doctor).await.status, StatusCode::OK);
    let r = call(
        &w.api,
        Method::PATCH,
        &clinic,
        Some(json!({"staffMfaRequired": true})),
        &admin,
    )
    .await;
    assert_eq!(r.body["staffMfaRequired"], true, "{}", r.body);
    // Within the membership cache period every container applies the rule
    w.advance(61);
    for token in [&doctor, &admin] {
        let r = get(token).await;
        assert_eq!(
            code_of(&r),
            (StatusCode::FORBIDDEN, Some("mfa_required")),
            "{}",
            r.body
        );
    }
    // Patients are not staff; strangers still see nothing at all
    assert_eq!(get(&patient).await.status, StatusCode::OK);
    let other = ClinicId::generate();
    put_clinic(
        &w.stack().clients,
        &w.stack().resources.table,
        &other,
        ("Elsewhere", "Europe/Berlin", "EUR"),
        true,
    )
    .await
    .unwrap();
    let (_, stranger) = person(w.stack(), Some(&other), Role::Doctor, None, true).await;
    let stranger = w.api.token(&stranger, DEMO_PASSWORD).await;
    assert_eq!(get(&stranger).await.status, StatusCode::NOT_FOUND);
    // The admin sets up an authenticator, signs in with a code, and can act (and relax the rule)
    let (secret, _) = enrol_authenticator(&w.api, &admin, DEMO_PASSWORD).await;
    w.advance(30);
    let strong = w.api.token_with(&admin_email, DEMO_PASSWORD, &secret).await;
    assert_eq!(get(&strong).await.status, StatusCode::OK);
    let r = call(
        &w.api,
        Method::PATCH,
        &clinic,
        Some(json!({"staffMfaRequired": false})),
        &strong,
    )
    .await;
    assert_eq!(r.body["staffMfaRequired"], false, "{}", r.body);
    w.advance(61);
    assert_eq!(get(&doctor).await.status, StatusCode::OK);
}
