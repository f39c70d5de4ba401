//! DynamoDB adapter for identities and sessions. Invariants live in conditions: one user per
//! email (lookup item), one winner per refresh rotation.

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use shared::{
    ApiError,
    db::{self, Item, Table, get_n, get_opt_s, get_s, get_ss, n, s, tx_put},
    ids::{SessionId, UserId},
    keys,
    outbox::EventEnvelope,
    policy::Role,
};

pub mod mfa;

/// A user's identity item.
#[derive(Debug, Clone)]
pub struct UserRecord {
    pub user: UserId,
    /// The address is proven to be the account owner's.
    pub email_verified: bool,
    pub status: String,
    pub password_hash: String,
    pub version: i64,
    pub platform_role: Option<Role>,
    /// Signing in takes a code from the user's authenticator after the password.
    pub mfa_enabled: bool,
    pub item: Item,
}

/// One session (refresh-token family).
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub session: SessionId,
    pub status: String,
    pub token_hash: String,
    pub used: Vec<String>,
    pub created_at: i64,
    pub last_used_at: i64,
    pub refresh_expires_at: i64,
}

fn tx_update(
    u: aws_sdk_dynamodb::types::builders::UpdateBuilder,
) -> Result<TransactWriteItem, ApiError> {
    Ok(TransactWriteItem::builder()
        .update(u.build().map_err(ApiError::internal)?)
        .build())
}

async fn transact(
    table: &Table,
    items: Vec<TransactWriteItem>,
) -> Result<(), db::SdkErr<TransactWriteItemsError>> {
    table
        .client
        .transact_write_items()
        .set_transact_items(Some(items))
        .send()
        .await
        .map(|_| ())
}

pub async fn get_user(table: &Table, user: &UserId) -> Result<Option<UserRecord>, ApiError> {
    let Some(item) = table.get(keys::user_pk(user), keys::PROFILE_SK).await? else {
        return Ok(None);
    };
    user_from_item(user, item).map(Some)
}

/// A user's identity item as read.
pub fn user_from_item(user: &UserId, item: Item) -> Result<UserRecord, ApiError> {
    Ok(UserRecord {
        user: user.clone(),
        email_verified: shared::identity::email_verified(&item),
        status: get_s(&item, "status")?.to_string(),
        password_hash: get_s(&item, "passwordHash")?.to_string(),
        version: get_n(&item, "version")?,
        platform_role: get_opt_s(&item, "platformRole").and_then(Role::parse),
        mfa_enabled: db::get_opt_bool(&item, "mfaEnabled").unwrap_or(false),
        item,
    })
}

/// A session to start.
#[derive(Debug)]
pub struct NewSession<'a> {
    pub user: &'a UserId,
    pub session: &'a SessionId,
    pub token_hash: &'a str,
    pub refresh_expires_at: i64,
    /// The login passed the second step (an authenticator code or a recovery code).
    pub mfa: bool,
}

/// Writes a new session, clears failed-login counters and records the login event, together.
pub async fn create_session(
    table: &Table,
    new: NewSession<'_>,
    event: &EventEnvelope,
    now: i64,
) -> Result<(), ApiError> {
    let NewSession {
        user,
        session,
        token_hash,
        refresh_expires_at,
        mfa,
    } = new;
    let put = Put::builder()
        .table_name(&table.name)
        .item(keys::PK, s(keys::user_pk(user)))
        .item(keys::SK, s(keys::session_sk(session)))
        .item(keys::ENTITY, s("SESSION"))
        .item("sessionId", s(session.as_str()))
        .item("userId", s(user.as_str()))
        .item("status", s("ACTIVE"))
        .item("tokenHash", s(token_hash))
        .item("createdAt", n(now))
        .item("lastUsedAt", n(now))
        .item("refreshExpiresAt", n(refresh_expires_at))
        .item("mfa", db::b(mfa))
        .item(keys::TTL, n(refresh_expires_at + 24 * 60 * 60))
        .condition_expression("attribute_not_exists(pk)");
    let clear = Update::builder()
        .table_name(&table.name)
        .key(keys::PK, s(keys::user_pk(user)))
        .key(keys::SK, s(keys::PROFILE_SK))
        .update_expression("SET lastLoginAt = :now")
        .condition_expression("attribute_exists(pk)")
        .expression_attribute_values(":now", n(now));
    transact(
        table,
        vec![
            tx_put(put)?,
            tx_update(clear)?,
            event.outbox_write(&table.name, now)?,
        ],
    )
    .await
    .map_err(db::fault)
}

fn session_from_item(item: &Item) -> Result<SessionRecord, ApiError> {
    Ok(SessionRecord {
        session: SessionId::parse(get_s(item, "sessionId")?)
            .ok_or_else(|| ApiError::internal("bad session id"))?,
        status: get_s(item, "status")?.to_string(),
        token_hash: get_s(item, "tokenHash")?.to_string(),
        used: get_ss(item, "usedHashes"),
        created_at: get_n(item, "createdAt")?,
        last_used_at: get_n(item, "lastUsedAt")?,
        refresh_expires_at: get_n(item, "refreshExpiresAt")?,
    })
}

pub async fn get_session(
    table: &Table,
    user: &UserId,
    session: &SessionId,
) -> Result<Option<SessionRecord>, ApiError> {
    table
        .get(keys::user_pk(user), keys::session_sk(session))
        .await?
        .map(|i| session_from_item(&i))
        .transpose()
}

/// The user's sessions that are still live at `now`.
pub async fn live_sessions(
    table: &Table,
    user: &UserId,
    now: i64,
) -> Result<Vec<SessionRecord>, ApiError> {
    let mut sessions = Vec::new();
    let mut start: Option<Item> = None;
    loop {
        let out = table
            .client
            .query()
            .table_name(&table.name)
            .key_condition_expression("pk = :u AND begins_with(sk, :p)")
            .expression_attribute_values(":u", s(keys::user_pk(user)))
            .expression_attribute_values(":p", s(keys::SESSION_PREFIX))
            .consistent_read(true)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(db::fault)?;
        for item in out.items() {
            let rec = session_from_item(item)?;
            if rec.status == "ACTIVE" && rec.refresh_expires_at > now {
                sessions.push(rec);
            }
        }
        match out.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => break,
        }
    }
    Ok(sessions)
}

/// One refresh-token rotation.
#[derive(Debug)]
pub struct Rotation<'a> {
    pub old_hash: &'a str,
    pub new_hash: &'a str,
    /// What is kept of the old hash to recognise its reuse later.
    pub old_marker: &'a str,
    pub refresh_expires_at: i64,
}

/// Replaces the current refresh-token hash if it is still `old_hash`. `false`: another
/// refresh won the race, or the session was revoked meanwhile.
pub async fn rotate_refresh(
    table: &Table,
    user: &UserId,
    session: &SessionId,
    r: Rotation<'_>,
    now: i64,
) -> Result<bool, ApiError> {
    let Rotation {
        old_hash,
        new_hash,
        old_marker,
        refresh_expires_at,
    } = r;
    let res = table
        .client
        .update_item()
        .table_name(&table.name)
        .set_key(Some(db::key(keys::user_pk(user), keys::session_sk(session))))
        .update_expression("SET tokenHash = :new, lastUsedAt = :now, refreshExpiresAt = :exp, #ttl = :ttl ADD usedHashes :old")
        .condition_expression("tokenHash = :cur AND #status = :active AND refreshExpiresAt > :now")
        .expression_attribute_names("#status", "status")
        .expression_attribute_names("#ttl", keys::TTL)
        .expression_attribute_values(":new", s(new_hash))
        .expression_attribute_values(":cur", s(old_hash))
        .expression_attribute_values(":old", AttributeValue::Ss(vec![old_marker.to_string()]))
        .expression_attribute_values(":now", n(now))
        .expression_attribute_values(":exp", n(refresh_expires_at))
        .expression_attribute_values(":ttl", n(refresh_expires_at + 24 * 60 * 60))
        .expression_attribute_values(":active", s("ACTIVE"))
        .send()
        .await;
    db::condition_held(res)
}

pub fn revoke_action(
    table: &Table,
    user: &UserId,
    session: &SessionId,
    reason: &str,
    now: i64,
) -> Result<TransactWriteItem, ApiError> {
    tx_update(
        Update::builder()
            .table_name(&table.name)
            .key(keys::PK, s(keys::user_pk(user)))
            .key(keys::SK, s(keys::session_sk(session)))
            .update_expression("SET #status = :revoked, revokedAt = :now, revokedReason = :reason")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":revoked", s("REVOKED"))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":reason", s(reason)),
    )
}

/// Revokes sessions and records the event in one transaction (sessions are few: at most a
/// handful over the live limit).
pub async fn revoke_sessions(
    table: &Table,
    user: &UserId,
    sessions: &[SessionId],
    reason: &str,
    event: &EventEnvelope,
    now: i64,
) -> Result<(), ApiError> {
    let mut items = Vec::new();
    for sid in sessions {
        items.push(revoke_action(table, user, sid, reason, now)?);
    }
    items.push(event.outbox_write(&table.name, now)?);
    if items.len() > 100 {
        return Err(ApiError::internal("too many actions for one transaction"));
    }
    transact(table, items).await.map_err(db::fault)
}

/// The action that sets a new password hash, guarded by the version that was read. A password
/// set through a link sent to the address (`proves_email`) also marks the address proven.
pub fn password_update(
    table: &Table,
    user: &UserId,
    new_hash: &str,
    expected_version: i64,
    proves_email: bool,
    now: i64,
) -> Result<TransactWriteItem, ApiError> {
    let proven = if proves_email {
        ", emailVerified = :yes"
    } else {
        ""
    };
    let mut u = Update::builder()
        .table_name(&table.name)
        .key(keys::PK, s(keys::user_pk(user)))
        .key(keys::SK, s(keys::PROFILE_SK))
        .update_expression(format!("SET passwordHash = :h, passwordChangedAt = :now, updatedAt = :now, version = version + :one{proven}"));
    if proves_email {
        u = u.expression_attribute_values(":yes", AttributeValue::Bool(true));
    }
    tx_update(
        u.condition_expression("version = :v")
            .expression_attribute_values(":h", s(new_hash))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":v", n(expected_version)),
    )
}

pub use shared::db::run_guarded;

/// The action that marks a user's address proven; the user must exist.
pub fn email_verified_update(
    table: &Table,
    user: &UserId,
    now: i64,
) -> Result<TransactWriteItem, ApiError> {
    tx_update(
        Update::builder()
            .table_name(&table.name)
            .key(keys::PK, s(keys::user_pk(user)))
            .key(keys::SK, s(keys::PROFILE_SK))
            .update_expression("SET emailVerified = :yes, emailVerifiedAt = :now, updatedAt = :now")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .expression_attribute_values(":now", n(now)),
    )
}
