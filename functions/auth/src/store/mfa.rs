//! Two-step sign-in items: the user's authenticator (`MFA#TOTP`, its secret sealed, the last
//! step taken, the hashes of unused recovery codes) and a login's waiting challenge. Every
//! single use is a condition: a step only after the last one taken, a recovery code only while
//! it is in the set, a challenge only while it exists.

use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, Update, builders::UpdateBuilder};
use shared::{
    ApiError,
    db::{self, Item, Table, get_n, get_opt_n, get_opt_s, get_s, get_ss, n, s},
    ids::UserId,
    keys,
    outbox::EventEnvelope,
};

pub const PENDING: &str = "PENDING";
pub const ACTIVE: &str = "ACTIVE";

/// The user's authenticator as stored.
#[derive(Debug, Clone)]
pub struct TotpRecord {
    pub status: String,
    pub sealed_secret: String,
    /// The last step whose code was taken (0 before any).
    pub last_step: i64,
    /// Hashes of the recovery codes not yet used.
    pub recovery: Vec<String>,
    /// When a pending enrolment lapses.
    pub expires_at: i64,
}

/// What proves the second step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    /// A code of this step (taken only if later than the last one taken).
    Step(i64),
    /// A recovery code, by its hash (taken only while unused).
    Recovery(String),
}

pub async fn get_totp(table: &Table, user: &UserId) -> Result<Option<TotpRecord>, ApiError> {
    let item = table.get(keys::user_pk(user), keys::TOTP_SK).await?;
    totp_from(item.as_ref())
}

fn totp_from(item: Option<&Item>) -> Result<Option<TotpRecord>, ApiError> {
    let Some(item) = item else { return Ok(None) };
    Ok(Some(TotpRecord {
        status: get_s(item, "status")?.to_string(),
        sealed_secret: get_s(item, "sealedSecret")?.to_string(),
        last_step: get_opt_n(item, "lastStep").unwrap_or(0),
        recovery: get_ss(item, "recoveryCodes"),
        expires_at: get_opt_n(item, "expiresAt").unwrap_or(i64::MAX),
    }))
}

/// Starts (or restarts) an enrolment; `false` if an authenticator is already active.
pub async fn put_enrolment(
    table: &Table,
    user: &UserId,
    sealed_secret: &str,
    expires_at: i64,
    now: i64,
) -> Result<bool, ApiError> {
    let res = table
        .client
        .put_item()
        .table_name(&table.name)
        .item(keys::PK, s(keys::user_pk(user)))
        .item(keys::SK, s(keys::TOTP_SK))
        .item(keys::ENTITY, s("TOTP"))
        .item("status", s(PENDING))
        .item("sealedSecret", s(sealed_secret))
        .item("createdAt", n(now))
        .item("expiresAt", n(expires_at))
        .item(keys::TTL, n(expires_at + 60 * 60))
        .condition_expression("attribute_not_exists(pk) OR #st = :pending")
        .expression_attribute_names("#st", "status")
        .expression_attribute_values(":pending", s(PENDING))
        .send()
        .await;
    db::condition_held(res)
}

fn profile_update(table: &Table, user: &UserId, enabled: bool) -> UpdateBuilder {
    let u = Update::builder()
        .table_name(&table.name)
        .key(keys::PK, s(keys::user_pk(user)))
        .key(keys::SK, s(keys::PROFILE_SK))
        .condition_expression("attribute_exists(pk)");
    if enabled {
        u.update_expression("SET mfaEnabled = :t")
            .expression_attribute_values(":t", db::b(true))
    } else {
        u.update_expression("REMOVE mfaEnabled")
    }
}

/// Activates the enrolment whose secret was just proven by a code of `step`, with its
/// recovery codes, and marks the profile; `false` if it lapsed or changed meanwhile.
pub async fn confirm(
    table: &Table,
    user: &UserId,
    sealed_secret: &str,
    step: i64,
    recovery_hashes: Vec<String>,
    event: &EventEnvelope,
    now: i64,
) -> Result<bool, ApiError> {
    let activate = Update::builder()
        .table_name(&table.name)
        .key(keys::PK, s(keys::user_pk(user)))
        .key(keys::SK, s(keys::TOTP_SK))
        .update_expression(
            "SET #st = :active, lastStep = :step, recoveryCodes = :codes, confirmedAt = :now \
             REMOVE expiresAt, #ttl",
        )
        .condition_expression("#st = :pending AND sealedSecret = :sealed AND expiresAt > :now")
        .expression_attribute_names("#st", "status")
        .expression_attribute_names("#ttl", keys::TTL)
        .expression_attribute_values(":active", s(ACTIVE))
        .expression_attribute_values(":pending", s(PENDING))
        .expression_attribute_values(":sealed", s(sealed_secret))
        .expression_attribute_values(":step", n(step))
        .expression_attribute_values(":codes", AttributeValue::Ss(recovery_hashes))
        .expression_attribute_values(":now", n(now));
    let items = vec![
        db::tx_update(activate)?,
        db::tx_update(profile_update(table, user, true))?,
        event.outbox_write(&table.name, now)?,
    ];
    Ok(db::run_guarded(table, items, &[0]).await?.is_none())
}

/// The authenticator update that takes `proof` once, or fails its condition.
fn take_proof(table: &Table, user: &UserId, proof: &Proof) -> UpdateBuilder {
    let u = Update::builder()
        .table_name(&table.name)
        .key(keys::PK, s(keys::user_pk(user)))
        .key(keys::SK, s(keys::TOTP_SK))
        .expression_attribute_names("#st", "status")
        .expression_attribute_values(":active", s(ACTIVE));
    match proof {
        Proof::Step(step) => u
            .update_expression("SET lastStep = :step")
            .condition_expression(
                "#st = :active AND (attribute_not_exists(lastStep) OR lastStep < :step)",
            )
            .expression_attribute_values(":step", n(*step)),
        Proof::Recovery(hash) => u
            .update_expression("DELETE recoveryCodes :used")
            .condition_expression("#st = :active AND contains(recoveryCodes, :hash)")
            .expression_attribute_values(":used", AttributeValue::Ss(vec![hash.clone()]))
            .expression_attribute_values(":hash", s(hash)),
    }
}

/// A login's challenge, waiting for its second step.
pub async fn put_challenge(
    table: &Table,
    user: &UserId,
    id: &str,
    secret_hash: &str,
    expires_at: i64,
) -> Result<(), ApiError> {
    table
        .client
        .put_item()
        .table_name(&table.name)
        .item(keys::PK, s(keys::user_pk(user)))
        .item(keys::SK, s(keys::mfa_challenge_sk(id)))
        .item(keys::ENTITY, s("MFA_CHALLENGE"))
        .item("secretHash", s(secret_hash))
        .item("expiresAt", n(expires_at))
        .item(keys::TTL, n(expires_at + 60 * 60))
        .condition_expression("attribute_not_exists(pk)")
        .send()
        .await
        .map_err(db::fault)?;
    Ok(())
}

/// What a login's second step reads, in one round trip.
#[derive(Debug)]
pub struct Answering {
    /// The waiting challenge's secret hash and expiry.
    pub challenge: Option<(String, i64)>,
    pub totp: Option<TotpRecord>,
    pub user: Option<super::UserRecord>,
}

/// A waiting challenge, the user's authenticator and the user, in one read.
pub async fn answering(table: &Table, user: &UserId, id: &str) -> Result<Answering, ApiError> {
    let challenge_sk = keys::mfa_challenge_sk(id);
    let mut items = table
        .batch_get(vec![
            db::key(keys::user_pk(user), challenge_sk.clone()),
            db::key(keys::user_pk(user), keys::TOTP_SK),
            db::key(keys::user_pk(user), keys::PROFILE_SK),
        ])
        .await?;
    let profile = items
        .iter()
        .position(|i| get_opt_s(i, keys::SK) == Some(keys::PROFILE_SK))
        .map(|p| items.swap_remove(p));
    let part =
        |sk: &str| -> Option<&Item> { items.iter().find(|i| get_opt_s(i, keys::SK) == Some(sk)) };
    let challenge = match part(&challenge_sk) {
        Some(i) => Some((get_s(i, "secretHash")?.to_string(), get_n(i, "expiresAt")?)),
        None => None,
    };
    Ok(Answering {
        challenge,
        totp: totp_from(part(keys::TOTP_SK))?,
        user: profile
            .map(|item| super::user_from_item(user, item))
            .transpose()?,
    })
}

/// Spends the challenge and the proof together; `false` if either was spent meanwhile (a
/// replayed code, a used recovery code, a challenge answered twice).
pub async fn answer_challenge(
    table: &Table,
    user: &UserId,
    id: &str,
    secret_hash: &str,
    proof: &Proof,
) -> Result<bool, ApiError> {
    let spend = Delete::builder()
        .table_name(&table.name)
        .key(keys::PK, s(keys::user_pk(user)))
        .key(keys::SK, s(keys::mfa_challenge_sk(id)))
        .condition_expression("secretHash = :h")
        .expression_attribute_values(":h", s(secret_hash));
    let items = vec![
        db::tx_delete(spend)?,
        db::tx_update(take_proof(table, user, proof))?,
    ];
    Ok(db::run_guarded(table, items, &[0, 1]).await?.is_none())
}

/// Removes the authenticator (the proof taken in the same condition) and unmarks the profile;
/// `false` if the proof was spent meanwhile.
pub async fn remove(
    table: &Table,
    user: &UserId,
    proof: &Proof,
    event: &EventEnvelope,
    now: i64,
) -> Result<bool, ApiError> {
    let (condition, values): (&str, Vec<(&str, AttributeValue)>) = match proof {
        Proof::Step(step) => (
            "#st = :active AND (attribute_not_exists(lastStep) OR lastStep < :step)",
            vec![(":step", n(*step))],
        ),
        Proof::Recovery(hash) => (
            "#st = :active AND contains(recoveryCodes, :hash)",
            vec![(":hash", s(hash))],
        ),
    };
    let mut delete = Delete::builder()
        .table_name(&table.name)
        .key(keys::PK, s(keys::user_pk(user)))
        .key(keys::SK, s(keys::TOTP_SK))
        .condition_expression(condition)
        .expression_attribute_names("#st", "status")
        .expression_attribute_values(":active", s(ACTIVE));
    for (k, v) in values {
        delete = delete.expression_attribute_values(k, v);
    }
    let items = vec![
        db::tx_delete(delete)?,
        db::tx_update(profile_update(table, user, false))?,
        event.outbox_write(&table.name, now)?,
    ];
    Ok(db::run_guarded(table, items, &[0]).await?.is_none())
}

/// Sets up an active authenticator with a known secret and no recovery codes, for seeding
/// the local stack's platform administrator and test accounts.
pub async fn seed(
    table: &Table,
    user: &UserId,
    sealed_secret: &str,
    now: i64,
) -> Result<(), ApiError> {
    let put = Put::builder()
        .table_name(&table.name)
        .item(keys::PK, s(keys::user_pk(user)))
        .item(keys::SK, s(keys::TOTP_SK))
        .item(keys::ENTITY, s("TOTP"))
        .item("status", s(ACTIVE))
        .item("sealedSecret", s(sealed_secret))
        .item("lastStep", n(0))
        .item("createdAt", n(now))
        .item("confirmedAt", n(now));
    let items = vec![
        db::tx_put(put)?,
        db::tx_update(profile_update(table, user, true))?,
    ];
    db::run_guarded(table, items, &[]).await?;
    Ok(())
}
