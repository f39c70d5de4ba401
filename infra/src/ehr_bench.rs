//! `make bench`: what health records cost. AWS calls (and KMS calls among them) and sequential
//! depth to add a record, read one, and read a patient's summary of 100 records (in a
//! container that did not write them, then warm), and the audit trail's share of a read.

use std::sync::Arc;

use axum::Router;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use shared::{
    audit::{AuditAction, AuditEntry, Outcome},
    clock::SystemClock,
    config::PlatformConfig,
    ids::ClinicId,
    policy::Role,
};

use crate::{
    BoxError, DEMO_CLINIC_ID, Stack,
    bench::{call, password_token},
    demo_user_id,
};

/// (calls, KMS calls, depth) of one operation.
type Cost = (u64, u64, u64);

struct Meter<'a>(&'a Stack);

impl Meter<'_> {
    fn at(&self) -> Cost {
        let c = &self.0.clients;
        (c.calls.get(), c.kms_calls.get(), c.calls.depth())
    }
    fn since(&self, b: Cost) -> Cost {
        let a = self.at();
        (a.0 - b.0, a.1 - b.1, a.2 - b.2)
    }
}

fn vitals(i: usize) -> Value {
    json!({"data": {
        "takenAt": "2026-01-05T09:30:00Z",
        "measurements": [
            {"type": "heart-rate", "value": 60 + (i % 40), "unit": "/min"},
            {"type": "blood-pressure-systolic", "value": 110 + (i % 30), "unit": "mm[Hg]"},
            {"type": "spo2", "value": 97, "unit": "%"}
        ],
        "notes": "resting"
    }})
}

async fn expect(
    router: &Router,
    method: Method,
    path: &str,
    body: Option<Value>,
    token: &str,
    want: StatusCode,
) -> Result<Value, BoxError> {
    let (status, v) = call(router, method, path, body, Some(token)).await?;
    if status != want {
        return Err(format!("ehr bench: {path} answered {status}: {v}").into());
    }
    Ok(v)
}

/// The health-record section of the report.
pub async fn table(stack: &Stack) -> Result<String, BoxError> {
    let router = stack.gateway();
    let meter = Meter(stack);
    let (doctor, patient) = (demo_user_id(3), demo_user_id(7));
    let admin = password_token(&router, "admin@demo.clinic").await?;
    let token = password_token(&router, "doctor@demo.clinic").await?;
    let base = format!("/v1/clinics/{DEMO_CLINIC_ID}/patients/{patient}");
    // The doctor treats the patient (their care team), and one record warms the key cache.
    expect(
        &router,
        Method::PUT,
        &format!("{base}/care-team/{doctor}"),
        None,
        &admin,
        StatusCode::OK,
    )
    .await?;
    let ehr = format!("{base}/ehr");
    expect(
        &router,
        Method::POST,
        &format!("{ehr}/vitals"),
        Some(vitals(0)),
        &token,
        StatusCode::CREATED,
    )
    .await?;
    let mut rows: Vec<(String, Cost)> = Vec::new();

    let b = meter.at();
    let made = expect(
        &router,
        Method::POST,
        &format!("{ehr}/vitals"),
        Some(vitals(1)),
        &token,
        StatusCode::CREATED,
    )
    .await?;
    rows.push((
        "add a record (3 fields sealed, warm container)".into(),
        meter.since(b),
    ));
    let id = made["id"].as_str().unwrap_or_default().to_string();

    let b = meter.at();
    expect(
        &router,
        Method::GET,
        &format!("{ehr}/vitals/{id}"),
        None,
        &token,
        StatusCode::OK,
    )
    .await?;
    rows.push(("read one record (warm)".into(), meter.since(b)));

    let b = meter.at();
    expect(
        &router,
        Method::PATCH,
        &format!("{ehr}/vitals/{id}"),
        Some(json!({"version": 1, "data": {"notes": "after exercise"}})),
        &token,
        StatusCode::OK,
    )
    .await?;
    rows.push(("change a record (a new version)".into(), meter.since(b)));

    // A patient with 100 records (the two above and 98 more).
    for i in 2..100 {
        expect(
            &router,
            Method::POST,
            &format!("{ehr}/vitals"),
            Some(vitals(i)),
            &token,
            StatusCode::CREATED,
        )
        .await?;
    }
    // A container that did not write them: its own state (one KMS call to open the platform
    // secrets at its start, before this is measured) and no data key cached.
    let cfg = PlatformConfig {
        signing_secrets_ciphertext: None,
        ..crate::auth_config(&stack.resources).platform
    };
    let cold = ehr::AppState::open(&stack.clients, &cfg, Arc::new(SystemClock), ()).await?;
    let other = ehr::router(cold);
    let b = meter.at();
    let page = expect(
        &other,
        Method::GET,
        &format!("{ehr}?limit=100"),
        None,
        &token,
        StatusCode::OK,
    )
    .await?;
    let n = page["items"].as_array().map_or(0, Vec::len);
    if n != 100 {
        return Err(format!("ehr bench: the summary held {n} records").into());
    }
    rows.push((
        "read the summary of 100 records (a container that did not write them)".into(),
        meter.since(b),
    ));
    let b = meter.at();
    expect(
        &other,
        Method::GET,
        &format!("{ehr}?limit=100"),
        None,
        &token,
        StatusCode::OK,
    )
    .await?;
    rows.push((
        "read the summary of 100 records again (warm)".into(),
        meter.since(b),
    ));

    // The audit trail's share of any read: the record written before the answer.
    let entry = AuditEntry {
        clinic: ClinicId::parse(DEMO_CLINIC_ID).ok_or("demo clinic id")?,
        actor: doctor.clone(),
        role: Some(Role::Doctor),
        patient: Some(patient.clone()),
        action: AuditAction::Read,
        resource: "ehr.summary".into(),
        ids: (0..100).map(|i| format!("{i:036}")).collect(),
        purpose: "treatment",
        reason: None,
        outcome: Outcome::Success,
    };
    let b = meter.at();
    stack.ehr.audit.record(&entry).await?;
    rows.push((
        "audit record of a read (100 ids), alone".into(),
        meter.since(b),
    ));

    let mut out = String::from(
        "\n## Health records: AWS calls per operation\n\n\
        KMS calls are among the AWS calls; depth counts sequential round trips. Every read \
        writes its audit record before it answers (the last row is that record alone).\n\n\
        | operation | AWS calls | KMS calls | depth |\n|---|---|---|---|\n",
    );
    for (op, (calls, kms, depth)) in rows {
        out.push_str(&format!("| {op} | {calls} | {kms} | {depth} |\n"));
    }
    Ok(out)
}
