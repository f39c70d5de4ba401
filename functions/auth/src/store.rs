//! DynamoDB adapter for identities, sessions and reset tokens. Invariants live in conditions:
//! one user per email (lookup item), one winner per refresh rotation, single-use reset tokens.

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, Put, TransactWriteItem, Update,
};
use shared::{
    ApiError,
    db::{
        self, Item, Table, cancellation_reasons, condition_failed_at, get_n, get_opt_n, get_opt_s,
        get_s, get_ss, n, s,
    },
    ids::{ClinicId, LocationId, SessionId, UserId},
    keys,
    outbox::EventEnvelope,
    policy::Role,
};

/// What a new registration writes.
#[derive(Debug)]
pub struct NewUser {
    pub user: UserId,
    /// The clinic membership created with the identity, if any.
    pub membership: Option<NewMembership>,
    /// A platform-wide role (SUPER_ADMIN), if any.
    pub platform_role: Option<Role>,
    pub email_index: String,
    pub phone_index: Option<String>,
    /// Encrypted attributes by name (`email`, `givenName`, ...).
    pub sealed: Vec<(&'static str, String)>,
    /// `None` for an invited user who has not chosen a password yet.
    pub password_hash: Option<String>,
}

/// A membership of a user in a clinic.
#[derive(Debug, Clone)]
pub struct NewMembership {
    pub clinic: ClinicId,
    pub role: Role,
    pub location: Option<LocationId>,
}

/// Stored instead of a hash for invited users: no password verifies against it.
pub const NO_PASSWORD: &str = "!";

/// The put of a membership item; fails if the user is already a member.
pub fn member_put(
    table: &Table,
    user: &UserId,
    m: &NewMembership,
    now: i64,
) -> Result<TransactWriteItem, ApiError> {
    let mut put = Put::builder()
        .table_name(&table.name)
        .item(keys::PK, s(keys::clinic_pk(&m.clinic)))
        .item(keys::SK, s(keys::member_sk(user)))
        .item(keys::ENTITY, s("MEMBER"))
        .item(keys::GSI1PK, s(keys::user_pk(user)))
        .item(keys::GSI1SK, s(keys::membership_gsi1sk(&m.clinic)))
        .item("userId", s(user.as_str()))
        .item("clinicId", s(m.clinic.as_str()))
        .item("role", s(m.role.as_str()))
        .item("status", s("ACTIVE"))
        .item("createdAt", n(now))
        .item("updatedAt", n(now))
        .item("version", n(1))
        .condition_expression("attribute_not_exists(pk)");
    if let Some(l) = &m.location {
        put = put.item("locationId", s(l.as_str()));
    }
    tx_put(put)
}

/// The put of a phone lookup item (phones are not unique: one item per user).
pub fn phone_put(
    table: &Table,
    phone_index: &str,
    user: &UserId,
) -> Result<TransactWriteItem, ApiError> {
    tx_put(
        Put::builder()
            .table_name(&table.name)
            .item(keys::PK, s(keys::phone_pk(phone_index)))
            .item(keys::SK, s(keys::user_pk(user)))
            .item(keys::ENTITY, s("PHONE_LOOKUP"))
            .item("userId", s(user.as_str())),
    )
}

#[derive(Debug)]
pub enum CreateUserError {
    EmailTaken,
    ClinicNotFound,
    Store(ApiError),
}

/// A user's identity item.
#[derive(Debug, Clone)]
pub struct UserRecord {
    pub user: UserId,
    pub status: String,
    pub password_hash: String,
    pub failed_logins: i64,
    pub locked_until: Option<i64>,
    pub version: i64,
    pub platform_role: Option<Role>,
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

fn tx_put(p: aws_sdk_dynamodb::types::builders::PutBuilder) -> Result<TransactWriteItem, ApiError> {
    Ok(TransactWriteItem::builder()
        .put(p.build().map_err(ApiError::internal)?)
        .build())
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

/// Registration: clinic must exist, email must be new; user, email lookup, membership and
/// event are written together or not at all.
/// Writes to commit in the same transaction as a new identity.
#[derive(Debug, Default)]
pub struct Together {
    /// Extra actions, after the identity's own.
    pub actions: Vec<TransactWriteItem>,
    /// The actions create the membership's clinic, so it cannot be checked for (one item
    /// may appear only once in a transaction).
    pub creates_clinic: bool,
}

pub async fn create_user(
    table: &Table,
    u: &NewUser,
    event: &EventEnvelope,
    now: i64,
    together: Together,
) -> Result<(), CreateUserError> {
    let store = CreateUserError::Store;
    let email = Put::builder()
        .table_name(&table.name)
        .item(keys::PK, s(keys::email_pk(&u.email_index)))
        .item(keys::SK, s(keys::EMAIL_SK))
        .item(keys::ENTITY, s("EMAIL_LOOKUP"))
        .item("userId", s(u.user.as_str()))
        .condition_expression("attribute_not_exists(pk)");
    let mut user = Put::builder()
        .table_name(&table.name)
        .item(keys::PK, s(keys::user_pk(&u.user)))
        .item(keys::SK, s(keys::PROFILE_SK))
        .item(keys::ENTITY, s("USER"))
        .item("userId", s(u.user.as_str()))
        .item("emailIndex", s(&u.email_index))
        .item(
            "passwordHash",
            s(u.password_hash.as_deref().unwrap_or(NO_PASSWORD)),
        )
        .item("status", s("ACTIVE"))
        .item("failedLogins", n(0))
        .item("createdAt", n(now))
        .item("updatedAt", n(now))
        .item("version", n(1))
        .condition_expression("attribute_not_exists(pk)");
    for (name, value) in &u.sealed {
        user = user.item(*name, s(value));
    }
    if let Some(p) = &u.phone_index {
        user = user.item("phoneIndex", s(p));
    }
    if let Some(r) = u.platform_role {
        user = user.item("platformRole", s(r.as_str()));
    }
    // Index 0 is the email lookup, 1 the clinic check when there is a membership.
    let mut items = vec![tx_put(email).map_err(store)?];
    let checks_clinic = u.membership.is_some() && !together.creates_clinic;
    if let Some(m) = u.membership.as_ref().filter(|_| checks_clinic) {
        let check_clinic = ConditionCheck::builder()
            .table_name(&table.name)
            .key(keys::PK, s(keys::clinic_pk(&m.clinic)))
            .key(keys::SK, s(keys::CLINIC_SK))
            .condition_expression("attribute_exists(pk)")
            .build()
            .map_err(|e| store(ApiError::internal(e)))?;
        items.push(
            TransactWriteItem::builder()
                .condition_check(check_clinic)
                .build(),
        );
    }
    if let Some(m) = &u.membership {
        items.push(member_put(table, &u.user, m, now).map_err(store)?);
    }
    items.push(tx_put(user).map_err(store)?);
    if let Some(p) = &u.phone_index {
        items.push(phone_put(table, p, &u.user).map_err(store)?);
    }
    items.push(event.outbox_write(&table.name, now).map_err(store)?);
    items.extend(together.actions);
    match transact(table, items).await {
        Ok(()) => Ok(()),
        Err(e) => match cancellation_reasons(&e) {
            Some(r) if condition_failed_at(&r, 0) => Err(CreateUserError::EmailTaken),
            Some(r) if checks_clinic && condition_failed_at(&r, 1) => {
                Err(CreateUserError::ClinicNotFound)
            }
            // Still conflicting after retries: another registration for this email (or a
            // write to the clinic) is in flight; the client may retry.
            Some(r) if r.iter().flatten().any(|c| c == "TransactionConflict") => {
                Err(store(ApiError::conflict(
                    "concurrent_request",
                    "Another request changed the same records; try again.",
                )))
            }
            _ => Err(store(db::internal(e))),
        },
    }
}

pub async fn user_id_by_email(
    table: &Table,
    email_index: &str,
) -> Result<Option<UserId>, ApiError> {
    let item = table
        .get(keys::email_pk(email_index), keys::EMAIL_SK)
        .await?;
    Ok(item.and_then(|i| get_opt_s(&i, "userId").and_then(UserId::parse)))
}

pub async fn get_user(table: &Table, user: &UserId) -> Result<Option<UserRecord>, ApiError> {
    let Some(item) = table.get(keys::user_pk(user), keys::PROFILE_SK).await? else {
        return Ok(None);
    };
    Ok(Some(UserRecord {
        user: user.clone(),
        status: get_s(&item, "status")?.to_string(),
        password_hash: get_s(&item, "passwordHash")?.to_string(),
        failed_logins: get_opt_n(&item, "failedLogins").unwrap_or(0),
        locked_until: get_opt_n(&item, "lockedUntil"),
        version: get_n(&item, "version")?,
        platform_role: get_opt_s(&item, "platformRole").and_then(Role::parse),
        item,
    }))
}

/// Counts a failed login atomically and returns the new count.
pub async fn record_failed_login(table: &Table, user: &UserId, now: i64) -> Result<i64, ApiError> {
    let out = table
        .client
        .update_item()
        .table_name(&table.name)
        .set_key(Some(db::key(keys::user_pk(user), keys::PROFILE_SK)))
        .update_expression("ADD failedLogins :one SET lastFailedLoginAt = :now")
        .condition_expression("attribute_exists(pk)")
        .expression_attribute_values(":one", n(1))
        .expression_attribute_values(":now", n(now))
        .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
        .send()
        .await
        .map_err(db::internal)?;
    Ok(out
        .attributes
        .as_ref()
        .and_then(|a| get_opt_n(a, "failedLogins"))
        .unwrap_or(0))
}

/// Locks the account; only the failure that reached `failures` wins, so one lock event is written.
pub async fn lock_account(
    table: &Table,
    user: &UserId,
    failures: i64,
    until: i64,
    event: &EventEnvelope,
    now: i64,
) -> Result<bool, ApiError> {
    let lock = Update::builder()
        .table_name(&table.name)
        .key(keys::PK, s(keys::user_pk(user)))
        .key(keys::SK, s(keys::PROFILE_SK))
        .update_expression("SET lockedUntil = :until, failedLogins = :zero")
        .condition_expression("failedLogins = :failures")
        .expression_attribute_values(":until", n(until))
        .expression_attribute_values(":zero", n(0))
        .expression_attribute_values(":failures", n(failures));
    match transact(
        table,
        vec![tx_update(lock)?, event.outbox_write(&table.name, now)?],
    )
    .await
    {
        Ok(()) => Ok(true),
        Err(e) if cancellation_reasons(&e).is_some() => Ok(false),
        Err(e) => Err(db::internal(e)),
    }
}

pub async fn memberships(table: &Table, user: &UserId) -> Result<Vec<(String, String)>, ApiError> {
    let out = table
        .client
        .query()
        .table_name(&table.name)
        .index_name(keys::GSI1)
        .key_condition_expression("gsi1pk = :u AND begins_with(gsi1sk, :p)")
        .expression_attribute_values(":u", s(keys::user_pk(user)))
        .expression_attribute_values(":p", s(keys::MEMBERSHIP_GSI1_PREFIX))
        .send()
        .await
        .map_err(db::internal)?;
    Ok(out
        .items()
        .iter()
        .filter(|i| get_opt_s(i, "status") == Some("ACTIVE"))
        .filter_map(|i| {
            Some((
                get_opt_s(i, "clinicId")?.to_string(),
                get_opt_s(i, "role")?.to_string(),
            ))
        })
        .collect())
}

/// A session to start.
#[derive(Debug)]
pub struct NewSession<'a> {
    pub user: &'a UserId,
    pub session: &'a SessionId,
    pub token_hash: &'a str,
    pub refresh_expires_at: i64,
    /// Copied from the user at login, so every request learns it with the session check.
    pub platform_role: Option<Role>,
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
        platform_role,
    } = new;
    let mut put = Put::builder()
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
        .item(keys::TTL, n(refresh_expires_at + 24 * 60 * 60))
        .condition_expression("attribute_not_exists(pk)");
    if let Some(r) = platform_role {
        put = put.item("platformRole", s(r.as_str()));
    }
    let clear = Update::builder()
        .table_name(&table.name)
        .key(keys::PK, s(keys::user_pk(user)))
        .key(keys::SK, s(keys::PROFILE_SK))
        .update_expression("SET failedLogins = :zero, lastLoginAt = :now REMOVE lockedUntil")
        .condition_expression("attribute_exists(pk)")
        .expression_attribute_values(":zero", n(0))
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
    .map_err(db::internal)
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
            .map_err(db::internal)?;
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
    match res {
        Ok(_) => Ok(true),
        Err(e) if db::is_condition_failed(&e) => Ok(false),
        Err(e) => Err(db::internal(e)),
    }
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
    transact(table, items).await.map_err(db::internal)
}

/// The action that sets a new password hash, guarded by the version that was read.
pub fn password_update(
    table: &Table,
    user: &UserId,
    new_hash: &str,
    expected_version: i64,
    now: i64,
) -> Result<TransactWriteItem, ApiError> {
    tx_update(
        Update::builder()
            .table_name(&table.name)
            .key(keys::PK, s(keys::user_pk(user)))
            .key(keys::SK, s(keys::PROFILE_SK))
            .update_expression("SET passwordHash = :h, passwordChangedAt = :now, updatedAt = :now, failedLogins = :zero, version = version + :one REMOVE lockedUntil")
            .condition_expression("version = :v")
            .expression_attribute_values(":h", s(new_hash))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":v", n(expected_version)),
    )
}

pub async fn create_reset_token(
    table: &Table,
    token_hash: &str,
    user: &UserId,
    expires_at: i64,
) -> Result<(), ApiError> {
    table
        .client
        .put_item()
        .table_name(&table.name)
        .item(keys::PK, s(keys::reset_pk(token_hash)))
        .item(keys::SK, s(keys::RESET_SK))
        .item(keys::ENTITY, s("PASSWORD_RESET"))
        .item("userId", s(user.as_str()))
        .item("expiresAt", n(expires_at))
        .item(keys::TTL, n(expires_at + 60 * 60))
        .condition_expression("attribute_not_exists(pk)")
        .send()
        .await
        .map_err(db::internal)?;
    Ok(())
}

/// The user a live reset token belongs to.
pub async fn reset_token_user(
    table: &Table,
    token_hash: &str,
    now: i64,
) -> Result<Option<UserId>, ApiError> {
    let item = table
        .get(keys::reset_pk(token_hash), keys::RESET_SK)
        .await?;
    Ok(item
        .filter(|i| get_opt_n(i, "expiresAt").is_some_and(|e| e > now))
        .and_then(|i| get_opt_s(&i, "userId").and_then(UserId::parse)))
}

/// The action that consumes a reset token: it must still exist and be unexpired.
pub fn consume_reset(
    table: &Table,
    token_hash: &str,
    now: i64,
) -> Result<TransactWriteItem, ApiError> {
    let d = Delete::builder()
        .table_name(&table.name)
        .key(keys::PK, s(keys::reset_pk(token_hash)))
        .key(keys::SK, s(keys::RESET_SK))
        .condition_expression("attribute_exists(pk) AND expiresAt > :now")
        .expression_attribute_values(":now", n(now))
        .build()
        .map_err(ApiError::internal)?;
    Ok(TransactWriteItem::builder().delete(d).build())
}

pub use shared::db::run_guarded;
