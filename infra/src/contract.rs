//! `make contract` (part of `make test`): the OpenAPI document as an enforced contract.
//! schemathesis (in the project virtualenv) reads the document a fresh local stack serves at
//! `/v1/openapi.json` and drives every operation with generated requests, valid and invalid,
//! signed in as several of the demo clinic's roles in turn. Its checks: no server error,
//! every status code documented, content type, response headers and body conform to the
//! schema, and schema-violating requests are refused. Settings live in
//! `infra/schemathesis.toml`; each role's report goes to `target/contract/`.

use std::{net::SocketAddr, process::Command, sync::Arc, time::Instant};

use http::Method;
use serde_json::json;

use crate::{BoxError, DEMO_CLINIC_ID, DEMO_PASSWORD, Stack, demo_user_id, soak::Driver};

/// The roles the contract is checked as: (name, demo account). The clinic admin goes last: the
/// runs change the clinic too (one may require two-step sign-in of its staff, after which a
/// staff session without it is refused everywhere). Operations that end the caller's own
/// session run after all of them, in their own pass.
const ROLES: &[(&str, &str)] = &[
    ("patient", "patient@demo.clinic"),
    ("doctor", "doctor@demo.clinic"),
    ("receptionist", "reception@demo.clinic"),
    ("clinic-admin", "admin@demo.clinic"),
];

/// Operations that can end the caller's own session (schemathesis reuses the ids it has seen in
/// answers, the caller's own session among them).
const SESSION_ENDERS: &[&str] = &["logout", "revokeSession"];

fn schemathesis() -> String {
    std::env::var("SCHEMATHESIS").unwrap_or_else(|_| ".venv/bin/schemathesis".into())
}

/// One schemathesis run as `role`; `only_enders` selects the session-ending pass.
fn check(
    base: &str,
    role: &str,
    token: &str,
    examples: u32,
    only_enders: bool,
) -> Result<bool, BoxError> {
    let pass = if only_enders { "session-end" } else { "main" };
    let report = format!("target/contract/{role}-{pass}.ndjson");
    let mut cmd = Command::new(schemathesis());
    cmd.args(["--config-file", "infra/schemathesis.toml", "run"])
        .arg(format!("{base}/v1/openapi.json"))
        .args(["--url", base])
        .args(["--max-examples", &examples.to_string()])
        .args(["--report", "ndjson", "--report-ndjson-path", &report]);
    for op in SESSION_ENDERS {
        cmd.arg(if only_enders {
            "--include-operation-id"
        } else {
            "--exclude-operation-id"
        })
        .arg(op);
    }
    let status = cmd
        .env("CONTRACT_TOKEN", token)
        .env("CONTRACT_CLINIC_ID", DEMO_CLINIC_ID)
        .env("CONTRACT_DOCTOR_ID", demo_user_id(3).to_string())
        .env("CONTRACT_PATIENT_ID", demo_user_id(7).to_string())
        .status()
        .map_err(|e| format!("{} could not run ({e}); run `make setup`", schemathesis()))?;
    Ok(status.success())
}

pub async fn run(args: &[String]) -> Result<(), BoxError> {
    let examples: u32 = args
        .iter()
        .position(|a| a == "--examples")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .or_else(|| std::env::var("CONTRACT_EXAMPLES").ok())
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(5);
    let aws = shared::aws::Clients::from_env_with(shared::aws::CallLimits::EMULATOR).await;
    let stack = Arc::new(Stack::up(aws, &shared::provision::unique_prefix("contract")).await?);
    stack.seed_demo().await?;
    let _background = stack.spawn_background();
    let (addr, _server) =
        crate::serve(stack.gateway(), SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let base = format!("http://{addr}");
    std::fs::create_dir_all("target/contract")?;

    // Every role signs in first: the runs send wrong passwords for demo addresses too, and an
    // account they lock must not be one still to be checked.
    let started = Instant::now();
    let mut driver = Driver::new(&base, 0, started);
    let mut tokens = Vec::new();
    for (role, email) in ROLES {
        let body = json!({"email": email, "password": DEMO_PASSWORD});
        let (status, v) = driver
            .send(
                "login",
                Method::POST,
                "/v1/auth/login",
                Some(body),
                None,
                false,
            )
            .await;
        let token = v["accessToken"]
            .as_str()
            .ok_or_else(|| format!("{role} could not sign in ({status})"))?;
        tokens.push((*role, token.to_string()));
    }
    let mut failed = Vec::new();
    for (role, token) in &tokens {
        println!("== contract as {role} ({examples} examples per operation)");
        if !check(&base, role, token, examples, false)? {
            failed.push(role.to_string());
        }
    }
    for (role, token) in &tokens {
        println!("== contract as {role}: operations that end the session");
        if !check(&base, role, token, examples, true)? {
            failed.push(format!("{role} (session end)"));
        }
    }
    println!(
        "contract checked as {} roles in {:.0} s",
        tokens.len(),
        started.elapsed().as_secs_f64()
    );
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the API broke its OpenAPI contract as: {}",
            failed.join(", ")
        )
        .into())
    }
}
