//! The audit trail's tamper evidence: finished days are sealed into signed, chained digests,
//! and verification (what `local-stack audit verify` runs) finds a changed, removed or
//! inserted record, or a removed digest, against what the emulator really stores.

use std::sync::Arc;

use local_stack::Stack;
use shared::{
    audit::{AuditAction, AuditEntry, Outcome},
    clock::ManualClock,
    db::{Item, s},
    ids::{ClinicId, UserId},
    keys,
    policy::Role,
};

fn entry(clinic: &ClinicId, patient: &UserId, action: AuditAction) -> AuditEntry {
    AuditEntry {
        clinic: clinic.clone(),
        actor: UserId::generate(),
        role: Some(Role::Doctor),
        patient: Some(patient.clone()),
        action,
        resource: "ehr.vitals".into(),
        ids: vec![UserId::generate().to_string()],
        purpose: "treatment",
        reason: None,
        outcome: Outcome::Success,
    }
}

async fn records_of(stack: &Stack, clinic: &ClinicId) -> Vec<Item> {
    stack
        .clients
        .dynamodb
        .query()
        .table_name(&stack.resources.audit_table)
        .key_condition_expression("pk = :p")
        .expression_attribute_values(":p", s(keys::audit_pk(clinic)))
        .send()
        .await
        .expect("records")
        .items()
        .to_vec()
}

#[tokio::test]
async fn a_sealed_day_shows_any_changed_removed_or_inserted_record() {
    let clients = shared::provision::test_clients().await;
    let resources =
        shared::provision::provision(&clients, &shared::provision::unique_prefix("seal"))
            .await
            .expect("provision");
    let now = jiff::Timestamp::now();
    let today = now.to_zoned(jiff::tz::TimeZone::UTC).date();
    let two_days_ago = today
        .checked_sub(jiff::Span::new().days(2))
        .unwrap()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .unwrap()
        .timestamp();
    let clock = Arc::new(ManualClock::new(
        two_days_ago + jiff::SignedDuration::from_hours(9),
    ));
    let stack = Stack::with_clock(clients, resources, clock.clone())
        .await
        .expect("stack");
    let (clinic, patient) = (ClinicId::generate(), UserId::generate());
    // GIVEN three accesses two days ago and four yesterday
    for (hours, action) in [
        (9, AuditAction::Create),
        (10, AuditAction::Read),
        (11, AuditAction::Update),
        (33, AuditAction::Read),
        (34, AuditAction::BreakGlass),
        (35, AuditAction::Read),
        (36, AuditAction::Delete),
    ] {
        clock.set(two_days_ago + jiff::SignedDuration::from_hours(hours));
        stack
            .ehr
            .audit
            .record(&entry(&clinic, &patient, action))
            .await
            .expect("record");
    }
    let (table, signer) = (&stack.ehr.audit.table, stack.audit_signer());

    // WHEN the finished days are sealed (once: sealing again seals nothing)
    let sealed = ehr::seal::seal_clinic(table, &signer, &clinic, today)
        .await
        .expect("seal");
    assert_eq!(sealed.iter().map(|d| d.count).collect::<Vec<_>>(), [3, 4]);
    assert_eq!(
        sealed[1].previous, sealed[0].root,
        "each day chains to the one before"
    );
    assert!(
        ehr::seal::seal_clinic(table, &signer, &clinic, today)
            .await
            .unwrap()
            .is_empty()
    );

    // THEN the untouched trail verifies
    let verify = || async {
        ehr::seal::verify(table, &signer, &clinic)
            .await
            .expect("verify")
    };
    let report = verify().await;
    assert!(report.ok(), "{report:?}");
    assert_eq!((report.days_sealed, report.records_sealed), (2, 7));

    let raw = &stack.clients.dynamodb;
    let name = &stack.resources.audit_table;
    let records = records_of(&stack, &clinic).await;
    let yesterday = sealed[1].day.clone();
    let problem_of = |r: &ehr::seal::Report| {
        assert_eq!(r.findings.len(), 1, "{r:?}");
        assert_eq!(r.findings[0].day, yesterday);
        r.findings[0].problem.clone()
    };
    // A changed record (someone with table access rewrote an action) ...
    let victim = records[4].clone();
    let mut changed = victim.clone();
    changed.insert("action".into(), s("read"));
    raw.put_item()
        .table_name(name)
        .set_item(Some(changed))
        .send()
        .await
        .unwrap();
    assert!(problem_of(&verify().await).contains("changed"));
    // ... a removed one ...
    let key = |i: &Item| {
        raw.delete_item()
            .table_name(name)
            .key(keys::PK, i[keys::PK].clone())
            .key(keys::SK, i[keys::SK].clone())
    };
    key(&victim).send().await.unwrap();
    assert!(problem_of(&verify().await).contains("removed"));
    raw.put_item()
        .table_name(name)
        .set_item(Some(victim.clone()))
        .send()
        .await
        .unwrap();
    assert!(verify().await.ok(), "restored");
    // ... and an inserted one are found.
    clock.set(two_days_ago + jiff::SignedDuration::from_hours(37));
    let forged = stack
        .ehr
        .audit
        .put(&entry(&clinic, &patient, AuditAction::Read))
        .await
        .unwrap();
    let forged = forged.put.unwrap().item;
    raw.put_item()
        .table_name(name)
        .set_item(Some(forged.clone()))
        .send()
        .await
        .unwrap();
    assert!(problem_of(&verify().await).contains("inserted"));
    key(&forged).send().await.unwrap();
    assert!(verify().await.ok());

    // AND a removed digest breaks the chain.
    raw.delete_item()
        .table_name(name)
        .key(keys::PK, s(format!("AUDITDIGEST#{clinic}")))
        .key(keys::SK, s(&sealed[0].day))
        .send()
        .await
        .unwrap();
    let report = verify().await;
    assert!(!report.ok());
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.problem.contains("does not follow")),
        "{report:?}"
    );
}

#[tokio::test]
async fn accesses_outside_any_clinic_are_fanned_out_and_sealed_like_a_clinics() {
    let clients = shared::provision::test_clients().await;
    let resources =
        shared::provision::provision(&clients, &shared::provision::unique_prefix("sealp"))
            .await
            .expect("provision");
    let yesterday = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24);
    let clock = Arc::new(ManualClock::new(yesterday));
    let stack = Stack::with_clock(clients, resources, clock.clone())
        .await
        .expect("stack");
    // GIVEN a person read their own profile yesterday (no clinic: the platform scope)
    let me = UserId::generate();
    stack
        .ehr
        .audit
        .record(&AuditEntry::own(
            &me,
            AuditAction::Read,
            "profile",
            vec![me.to_string()],
        ))
        .await
        .expect("record");
    let platform = ClinicId::platform();
    let records = records_of(&stack, &platform).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["role"].as_s().unwrap(), "self");
    clock.set(jiff::Timestamp::now());
    // WHEN the seal job fans out (this stack has no clinic) and its work is drained
    let sent = shared::jobs::fan_out(&stack.ehr, &stack.resources.audit_seal_url, ehr::seal::JOB)
        .await
        .expect("fan out");
    assert_eq!(sent, 1, "the platform scope's message");
    let mut done = 0;
    for _ in 0..10 {
        done += local_stack::drain_sweeps(&stack).await.expect("drain");
        if done >= 1 {
            break;
        }
    }
    assert_eq!(done, 1);
    // THEN yesterday's platform record is sealed and verifies
    let report = ehr::seal::verify(&stack.ehr.audit.table, &stack.audit_signer(), &platform)
        .await
        .expect("verify");
    assert!(report.ok(), "{report:?}");
    assert_eq!((report.days_sealed, report.records_sealed), (1, 1));
    // AND other jobs do not get the platform scope
    let swept = shared::jobs::fan_out(
        &stack.appointments,
        &stack.resources.appointments_sweep_url,
        appointments::sweep::JOB,
    )
    .await
    .expect("fan out");
    assert_eq!(swept, 0);
}
