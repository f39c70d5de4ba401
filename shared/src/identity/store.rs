//! DynamoDB adapter for identities: one user per email (lookup item), phone lookups and
//! memberships.

use aws_sdk_dynamodb::types::{ConditionCheck, Put, TransactWriteItem, Update};

use crate::{
    ApiError,
    db::{self, Table, cancellation_reasons, condition_failed_at, get_opt_s, n, s, tx_put},
    ids::{ClinicId, LocationId, UserId},
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
    /// The address is proven to be theirs.
    pub email_verified: bool,
}

/// A membership of a user in a clinic.
#[derive(Debug, Clone)]
pub struct NewMembership {
    pub clinic: ClinicId,
    pub role: Role,
    pub location: Option<LocationId>,
    /// Waits for its owner's consent (staff added them) instead of being active at once (a
    /// patient registering themselves, the seed).
    pub pending: bool,
}

/// A membership waiting for its owner to accept it.
pub const PENDING: &str = "PENDING";
/// A membership in force.
pub const ACTIVE: &str = "ACTIVE";

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
        .item(
            keys::GSI2PK,
            s(keys::role_members_pk(&m.clinic, m.role.as_str())),
        )
        .item(keys::GSI2SK, s(keys::member_sk(user)))
        .item("userId", s(user.as_str()))
        .item("clinicId", s(m.clinic.as_str()))
        .item("role", s(m.role.as_str()))
        .item("status", s(if m.pending { PENDING } else { ACTIVE }))
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
    /// One of the [`Together`] actions failed its guard.
    Guarded(crate::error::Guard),
    Store(ApiError),
}

/// Registration: clinic must exist, email must be new; user, email lookup, membership and
/// event are written together or not at all.
/// Writes to commit in the same transaction as a new identity.
#[derive(Debug, Default)]
pub struct Together {
    /// Extra actions, after the identity's own.
    pub actions: Vec<TransactWriteItem>,
    /// What it means when an action fails its condition: (index in `actions`, guard).
    pub guards: Vec<(usize, crate::error::Guard)>,
    /// The actions create the membership's clinic, so it cannot be checked for (one item
    /// may appear only once in a transaction).
    pub creates_clinic: bool,
    /// The membership's clinic must take self-registrations (`selfRegistration` set);
    /// otherwise the clinic need only exist.
    pub self_registration: bool,
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
        .item("emailVerified", db::b(u.email_verified))
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
            .key(keys::SK, s(keys::CLINIC_SK));
        let check_clinic = if together.self_registration {
            check_clinic
                .condition_expression("selfRegistration = :open")
                .expression_attribute_values(":open", db::b(true))
        } else {
            check_clinic.condition_expression("attribute_exists(pk)")
        }
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
    let first_extra = items.len();
    items.extend(together.actions);
    match db::transact(&table.client, items).await {
        Ok(()) => Ok(()),
        Err(e) => match cancellation_reasons(&e) {
            Some(r) if condition_failed_at(&r, 0) => Err(CreateUserError::EmailTaken),
            Some(r) if checks_clinic && condition_failed_at(&r, 1) => {
                Err(CreateUserError::ClinicNotFound)
            }
            Some(r)
                if together
                    .guards
                    .iter()
                    .any(|(i, _)| condition_failed_at(&r, first_extra + i)) =>
            {
                let failed = together
                    .guards
                    .iter()
                    .find(|(i, _)| condition_failed_at(&r, first_extra + i));
                Err(failed.map_or_else(
                    || store(db::fault(e)),
                    |(_, g)| CreateUserError::Guarded(*g),
                ))
            }
            // Still conflicting after retries: another registration for this email (or a
            // write to the clinic) is in flight; the client may retry.
            Some(r) if r.iter().flatten().any(|c| c == "TransactionConflict") => {
                Err(store(ApiError::conflict(
                    "concurrent_request",
                    "Another request changed the same records; try again.",
                )))
            }
            _ => Err(store(db::tx_fault(e))),
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

/// A user's memberships in force or waiting for their consent, each with its clinic: one
/// query of the user's index.
pub async fn current_memberships(
    table: &Table,
    user: &UserId,
) -> Result<Vec<(ClinicId, crate::tenancy::MemberRecord)>, ApiError> {
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
        .map_err(db::fault)?;
    out.items()
        .iter()
        .filter(|i| get_opt_s(i, "status").is_some_and(|s| s == ACTIVE || s == PENDING))
        .filter_map(|i| {
            let clinic = get_opt_s(i, "clinicId").and_then(ClinicId::parse)?;
            Some(crate::tenancy::MemberRecord::from_item(i).map(|m| (clinic, m)))
        })
        .collect()
}

/// A user's memberships, active and pending: (clinic, role, status).
pub async fn memberships(
    table: &Table,
    user: &UserId,
) -> Result<Vec<(String, String, String)>, ApiError> {
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
        .map_err(db::fault)?;
    Ok(out
        .items()
        .iter()
        .filter_map(|i| {
            let status = get_opt_s(i, "status").filter(|s| [ACTIVE, PENDING].contains(s))?;
            Some((
                get_opt_s(i, "clinicId")?.to_string(),
                get_opt_s(i, "role")?.to_string(),
                status.to_string(),
            ))
        })
        .collect())
}

/// The write that makes a pending membership active: it fails unless the membership exists
/// and still waits for consent.
pub fn accept_membership(
    table: &Table,
    clinic: &ClinicId,
    user: &UserId,
    now: i64,
) -> Result<TransactWriteItem, ApiError> {
    db::tx_update(
        Update::builder()
            .table_name(&table.name)
            .key(keys::PK, s(keys::clinic_pk(clinic)))
            .key(keys::SK, s(keys::member_sk(user)))
            .update_expression(
                "SET #status = :active, acceptedAt = :now, updatedAt = :now, version = version + :one",
            )
            .condition_expression("#status = :pending")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":active", s(ACTIVE))
            .expression_attribute_values(":pending", s(PENDING))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":one", n(1)),
    )
}

/// A membership's role and status, if it exists.
pub async fn membership(
    table: &Table,
    clinic: &ClinicId,
    user: &UserId,
) -> Result<Option<(Role, String)>, ApiError> {
    let item = table
        .get(keys::clinic_pk(clinic), keys::member_sk(user))
        .await?;
    Ok(item.and_then(|i| {
        Some((
            get_opt_s(&i, "role").and_then(Role::parse)?,
            get_opt_s(&i, "status")?.to_string(),
        ))
    }))
}
