//! `local-stack`: bring the whole system up locally, seal platform secrets for a deployment,
//! or run the benchmarks.

use local_stack::{
    DEMO_CLINIC_ID, DEMO_LOCATION_ID, DEMO_PASSWORD, DEMO_PLAN_ID, DEMO_SUPER_ADMIN,
    DEMO_SUPER_ADMIN_TOTP, DEMO_USERS, SECOND_CLINIC_ID, SECOND_CLINIC_USERS, Stack, serve,
};
use shared::aws::Clients;

const USAGE: &str = "usage:
  local-stack dev [--port 3000]          provision, seed, and serve every function on 127.0.0.1
  local-stack seal-secrets --key-id ID   generate platform secrets and print both sealed documents
                                         (PlatformSecrets for every function, SigningSecrets for auth)
  local-stack rotate-secrets --key-id ID --current SIGNING_CIPHERTEXT
                                         new signing key (the previous one stays valid), same index keys
  local-stack mail                       print the mail, SMS and push messages the running stack's
                                         notification worker sent (what the emulator's SES and SNS
                                         accepted)
  local-stack audit seal|verify [--clinic ID]
                                         seal the running stack's finished audit days (as the daily
                                         job does; default: the demo clinic), or verify every sealed day: count, hash chain,
                                         link to the day before and KMS signature (exit 1 on a finding)
  local-stack totp [SECRET]              the current code of an authenticator secret (base32;
                                         default: the demo super admin's)
  local-stack bench BINARY...            cold start, size and AWS-call benchmarks (see Makefile)
  local-stack contract [--examples 5]    check a fresh stack against its OpenAPI document with
                                         schemathesis, signed in as several roles (exit 1 on a failure)
  local-stack soak [--minutes 10] [--clients 16]
                                         drive a fresh stack's gateway with a clinic's mix; report
                                         latency per operation, errors and memory (exit 1 on a
                                         missed target)";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    match args.first().map(String::as_str) {
        Some("dev") => {
            shared::telemetry::init();
            let port: u16 = flag("--port")
                .map(|p| p.parse())
                .transpose()?
                .unwrap_or(3000);
            dev(port).await
        }
        Some("seal-secrets") => {
            let key_id = flag("--key-id").ok_or("--key-id is required")?;
            let clients = Clients::from_env_with(shared::aws::CallLimits::EMULATOR).await;
            let sealed = shared::secrets::PlatformSecrets::generate()
                .seal(&clients.kms, &key_id)
                .await?;
            println!("PlatformSecrets={}", sealed.shared);
            println!("SigningSecrets={}", sealed.signing);
            Ok(())
        }
        Some("rotate-secrets") => {
            let key_id = flag("--key-id").ok_or("--key-id is required")?;
            let current =
                flag("--current").ok_or("--current is required (the SigningSecrets in use)")?;
            let clients = Clients::from_env_with(shared::aws::CallLimits::EMULATOR).await;
            let rotated = shared::secrets::PlatformSecrets::open_signing(&clients.kms, &current)
                .await?
                .rotate_signing_key();
            let sealed = rotated.seal(&clients.kms, &key_id).await?;
            println!("PlatformSecrets={}", sealed.shared);
            println!("SigningSecrets={}", sealed.signing);
            Ok(())
        }
        Some("mail") => mail().await,
        Some("audit") => {
            let clinic = flag("--clinic").unwrap_or_else(|| DEMO_CLINIC_ID.to_string());
            audit(args.get(1).map(String::as_str), &clinic).await
        }
        Some("totp") => {
            let secret = args.get(1).map_or(DEMO_SUPER_ADMIN_TOTP, String::as_str);
            let code = local_stack::totp_code(secret, jiff::Timestamp::now().as_second())
                .ok_or("not a base32 authenticator secret of at least 128 bits")?;
            println!("{code}");
            Ok(())
        }
        Some("soak") => {
            shared::telemetry::init();
            local_stack::soak::run(&args[1..]).await
        }
        Some("contract") => {
            if std::env::var("LOG_LEVEL").is_ok() {
                shared::telemetry::init();
            }
            local_stack::contract::run(&args[1..]).await
        }
        Some("bench") => {
            // The report is the output; logs only when asked for.
            if std::env::var("LOG_LEVEL").is_ok() {
                shared::telemetry::init();
            }
            local_stack::bench::run(&args[1..]).await
        }
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    }
}

async fn dev(port: u16) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    if std::env::var("AWS_ENDPOINT_URL").is_err() {
        return Err(
            "AWS_ENDPOINT_URL is not set: `make dev` starts the emulator and sets it".into(),
        );
    }
    // Listening for Ctrl-C and SIGTERM starts now, not when the stack is ready.
    let stop = local_stack::lifecycle::Stop::install()?;
    let clients = Clients::from_env_with(shared::aws::CallLimits::EMULATOR).await;
    let stack = Stack::up(clients, "clinic-dev").await?;
    stack.seed_demo().await?;
    let stack = std::sync::Arc::new(stack);
    let _background = stack.spawn_background();
    let (addr, server) = serve(stack.gateway(), ([127, 0, 0, 1], port).into()).await?;
    let env_file = std::path::Path::new(".local/stack.env");
    if let Some(dir) = env_file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut env = String::from("# Resources of the running local stack (written by `make dev`).\n");
    for (k, v) in stack.resources.env() {
        env.push_str(&format!("{k}={v}\n"));
    }
    env.push_str(&format!(
        "AWS_ENDPOINT_URL={}\n",
        std::env::var("AWS_ENDPOINT_URL").unwrap_or_default()
    ));
    std::fs::write(env_file, env)?;
    println!("\nLocal stack ready on http://{addr}\n");
    println!("Password for every demo user: {DEMO_PASSWORD}\n");
    println!(
        "Platform:       {:<22} {DEMO_SUPER_ADMIN:<24} authenticator secret {DEMO_SUPER_ADMIN_TOTP} (`make totp` prints its code)",
        "SUPER_ADMIN"
    );
    println!(
        "Demo Clinic     {DEMO_CLINIC_ID} (Europe/Berlin, EUR; location Main Street {DEMO_LOCATION_ID})"
    );
    for (i, (role, email, _, _)) in DEMO_USERS.iter().enumerate() {
        println!(
            "                {:<22} {email:<24} {}",
            role.as_str(),
            local_stack::demo_user_id(i + 1)
        );
    }
    println!("                plan Family care (EUR 49/month, 4 visits) {DEMO_PLAN_ID}");
    println!("Second Clinic   {SECOND_CLINIC_ID} (America/New_York, USD)");
    for (role, email, _, _) in SECOND_CLINIC_USERS {
        println!("                {:<22} {email}", role.as_str());
    }
    println!("\nTry: curl -s http://{addr}/v1/health");
    println!("Resource names are in .local/stack.env. Ctrl-C stops everything.\n");
    tokio::select! {
        _ = server => Err("the gateway stopped".into()),
        why = stop.requested() => {
            println!("\nStopping: {why}.");
            Ok(())
        }
        dead = local_stack::lifecycle::emulator_gone() => {
            eprintln!("\nStopping: {dead}.");
            std::process::exit(1);
        }
    }
}

/// A developer's outbox of the running local stack: every email the emulator's SES accepted,
/// then every SMS and push message its SNS accepted, newest last. For local use only: the
/// links printed are live credentials.
async fn mail() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .map_err(|_| "AWS_ENDPOINT_URL is not set: run `make mail`")?;
    let mail = local_stack::sent_mail(&endpoint).await?;
    for m in &mail {
        let to: Vec<&str> = m["destinations"]["ToAddresses"]
            .as_array()
            .map(|a| a.iter().filter_map(|t| t.as_str()).collect())
            .unwrap_or_default();
        println!(
            "To: {}\nSubject: {}\n\n{}\n{}",
            to.join(", "),
            m["subject"].as_str().unwrap_or_default(),
            m["body"].as_str().unwrap_or_default().trim_end(),
            "-".repeat(72)
        );
    }
    if mail.is_empty() {
        println!("No mail sent yet.");
    }
    for m in local_stack::sent_sms(&endpoint).await? {
        println!(
            "SMS to: {}\n\n{}\n{}",
            m["phone_number"].as_str().unwrap_or_default(),
            m["message"].as_str().unwrap_or_default(),
            "-".repeat(72)
        );
    }
    for m in local_stack::sent_push(&endpoint).await? {
        // The message holds each platform's payload; its default text is what a phone shows.
        let text = m["message"]
            .as_str()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
            .and_then(|v| v["default"].as_str().map(str::to_string))
            .unwrap_or_default();
        println!(
            "Push to: {}\n\n{text}\n{}",
            m["endpoint"].as_str().unwrap_or_default(),
            "-".repeat(72)
        );
    }
    Ok(())
}

/// Seals or verifies one clinic's audit trail in the running local stack (names from its
/// environment: `AUDIT_TABLE_NAME`, `AUDIT_SIGNING_KEY_ID`).
async fn audit(
    what: Option<&str>,
    clinic: &str,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let clinic = shared::ids::ClinicId::parse(clinic).ok_or("--clinic is not a clinic id")?;
    let table_name = shared::config::required("AUDIT_TABLE_NAME")?;
    let clients = Clients::from_env_with(shared::aws::CallLimits::EMULATOR).await;
    let table = shared::db::Table::new(clients.dynamodb.clone(), table_name);
    let signer = ehr::seal::Signer {
        kms: clients.kms.clone(),
        key_id: shared::config::required("AUDIT_SIGNING_KEY_ID")?,
    };
    match what {
        Some("seal") => {
            // Finished days only, as the daily job: a day is sealed once, when it is over.
            let today = jiff::Zoned::now()
                .with_time_zone(jiff::tz::TimeZone::UTC)
                .date();
            let sealed = ehr::seal::seal_clinic(&table, &signer, &clinic, today).await?;
            for d in &sealed {
                println!(
                    "sealed {} {}: {} records, root {}",
                    d.clinic_id, d.day, d.count, d.root
                );
            }
            if sealed.is_empty() {
                println!(
                    "nothing to seal: every finished day with records is sealed (today is sealed tomorrow)"
                );
            }
            Ok(())
        }
        Some("verify") => {
            let report = ehr::seal::verify(&table, &signer, &clinic).await?;
            println!(
                "{clinic}: {} sealed days, {} sealed records",
                report.days_sealed, report.records_sealed
            );
            for f in &report.findings {
                println!("  {}: {}", f.day, f.problem);
            }
            if report.ok() {
                println!("  every sealed day verifies");
                Ok(())
            } else {
                std::process::exit(1)
            }
        }
        _ => Err("usage: local-stack audit seal|verify [--clinic ID]".into()),
    }
}
