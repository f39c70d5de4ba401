//! A clinic's members: their directory (contact details only for those who manage them),
//! adding a person with a role, changing a member's role, location or status, and removing
//! them. A location counts its members in the same transactions that assign them.

use serde::{Deserialize, Serialize};
use shared::{
    ApiError, FieldError,
    audit::{AuditAction, AuditEntry},
    authn::ClinicAccess,
    crypto::Phi,
    db::{self, Tx, VersionedUpdate, s},
    error::Guard,
    identity::{
        LinkKind, NewMembership, Profile, Together,
        store::{PENDING, member_put},
    },
    ids::{LocationId, UserId},
    keys,
    policy::{Action, Resource, Role, Subject as Target},
    record::Record,
    tenancy::{self, MemberRecord, count_members},
    types::{Email, PhoneE164},
};

use crate::{
    AppState,
    events::event,
    people::{NewPerson, send_invitation},
    store,
};

/// The membership put's condition failed: the person is in the clinic already.
const ALREADY_MEMBER: Guard = Guard::new(
    "already_member",
    "This person is already a member of the clinic.",
);

/// A member count's condition failed: the location named is not in this clinic.
const UNKNOWN_LOCATION: Guard = Guard::on_field(
    "locationId",
    "unknown_location",
    "No such location in this clinic.",
);

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberView {
    user_id: String,
    role: Role,
    status: String,
    location_id: Option<String>,
    given_name: Option<Phi<String>>,
    family_name: Option<Phi<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<Phi<String>>,
    version: i64,
}

/// The member as the policy sees them.
pub(crate) fn target(m: &MemberRecord) -> Target<'_> {
    Target {
        owner: Some(m.user.as_str()),
        location: m.location.as_ref().map(LocationId::as_str),
        member_role: Some(m.role),
        ..Default::default()
    }
}

/// Whether the caller may see contact details (they manage members, not just read a directory).
fn sees_contacts(access: &ClinicAccess, m: &MemberRecord) -> bool {
    m.user == access.caller.user_id
        || access.allows(Resource::Member, Action::Create, &target(m))
        || access.allows(Resource::Member, Action::Manage, &target(m))
}

/// What audit records name a member's details by.
const RESOURCE: &str = "member";

fn audited(access: &ClinicAccess, user: &UserId, action: AuditAction) -> AuditEntry {
    AuditEntry::by(access, user, action, RESOURCE, vec![user.to_string()])
}

/// One member with their profile, as this caller may see them, recorded in the audit trail
/// before it is returned.
pub async fn read(
    state: &AppState,
    access: &ClinicAccess,
    m: &MemberRecord,
) -> Result<MemberView, ApiError> {
    let view = view(state, access, m).await?;
    state
        .audit
        .record(&audited(access, &m.user, AuditAction::Read))
        .await?;
    Ok(view)
}

/// The member with their profile, as this caller may see them.
async fn view(
    state: &AppState,
    access: &ClinicAccess,
    m: &MemberRecord,
) -> Result<MemberView, ApiError> {
    let profile = state.identities.profile(&m.user).await?.unwrap_or_default();
    Ok(view_of(access, m, &profile))
}

fn view_of(access: &ClinicAccess, m: &MemberRecord, profile: &Profile) -> MemberView {
    MemberView {
        user_id: m.user.to_string(),
        role: m.role,
        status: m.status.clone(),
        location_id: m.location.as_ref().map(ToString::to_string),
        given_name: profile.get("givenName").cloned(),
        family_name: profile.get("familyName").cloned(),
        email: if sees_contacts(access, m) {
            profile.get("email").cloned()
        } else {
            None
        },
        version: m.version,
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MemberQuery {
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    cursor: Option<String>,
}

/// One page of the members the caller may see, filtered by role. Cursors are bound to the
/// clinic and the filter.
pub async fn list(
    state: &AppState,
    access: &ClinicAccess,
    q: MemberQuery,
) -> Result<(Vec<MemberView>, Option<String>), ApiError> {
    let role = q
        .role
        .as_deref()
        .map(|r| {
            Role::parse(r)
                .ok_or_else(|| ApiError::invalid_field("role", "invalid_role", "Not a role."))
        })
        .transpose()?;
    let limit = db::page_limit(q.limit)?;
    let query_key = format!("members?role={}", role.map(Role::as_str).unwrap_or(""));
    let start = q
        .cursor
        .as_deref()
        .map(|c| state.cursors.open(access.clinic.as_str(), &query_key, c))
        .transpose()?;
    let (records, last) =
        store::member_page(&state.table, &access.clinic, role, limit, start).await?;
    let next = last.map(|k| state.cursors.seal(access.clinic.as_str(), &query_key, &k));
    let (items, _) = views(state, access, &records).await?;
    record_page(state, access, AuditAction::Read, &items).await?;
    Ok((items, next))
}

/// One audit record for a page of members, naming each of them.
async fn record_page(
    state: &AppState,
    access: &ClinicAccess,
    action: AuditAction,
    items: &[MemberView],
) -> Result<(), ApiError> {
    let ids = items.iter().map(|v| v.user_id.clone()).collect();
    state
        .audit
        .record(&AuditEntry::of_clinic(access, action, RESOURCE, ids))
        .await
}

/// The members among `records` the caller may read, with their profiles (one batched read),
/// and which of them have a proven address.
async fn views(
    state: &AppState,
    access: &ClinicAccess,
    records: &[MemberRecord],
) -> Result<(Vec<MemberView>, Vec<bool>), ApiError> {
    let visible: Vec<&MemberRecord> = records
        .iter()
        .filter(|m| access.allows(Resource::Member, Action::Read, &target(m)))
        .collect();
    let users: Vec<UserId> = visible.iter().map(|m| m.user.clone()).collect();
    let profiles = state.identities.profiles(&users).await?;
    let none = Profile::default();
    Ok(visible
        .iter()
        .map(|m| {
            let p = profiles.get(&m.user).unwrap_or(&none);
            (view_of(access, m, p), p.email_verified)
        })
        .unzip())
}

/// An exact lookup of members by email or phone: in a body, so neither sits in a URL or an
/// access log.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberSearch {
    #[serde(default)]
    email: Option<Phi<String>>,
    #[serde(default)]
    phone: Option<Phi<String>>,
}

/// The clinic's members with exactly this email or phone (blind indexes), as the caller may
/// see them. Accounts whose address is not proven are never found: whoever registered an
/// address first is not necessarily its owner.
pub async fn search(
    state: &AppState,
    access: &ClinicAccess,
    q: MemberSearch,
) -> Result<Vec<MemberView>, ApiError> {
    let email = q
        .email
        .as_ref()
        .map(|e| {
            Email::parse(e.expose()).ok_or_else(|| {
                FieldError::new("email", "invalid_email", "Not a valid email address.")
            })
        })
        .transpose();
    let phone = q
        .phone
        .as_ref()
        .map(|p| {
            PhoneE164::parse(p.expose()).ok_or_else(|| {
                FieldError::new("phone", "invalid_phone", "Use international E.164 form.")
            })
        })
        .transpose();
    let (email, phone) = match (email, phone) {
        (Ok(None), Ok(None)) => {
            return Err(ApiError::unprocessable(
                "empty_search",
                "Give an email or a phone number to search for.",
            ));
        }
        (Ok(e), Ok(p)) => (e, p),
        (e, p) => {
            return Err(ApiError::Validation(
                [e.err(), p.err()].into_iter().flatten().collect(),
            ));
        }
    };
    let mut users = Vec::new();
    if let Some(e) = &email {
        users.extend(state.identities.user_by_email(e).await?);
    }
    if let Some(p) = &phone {
        users.extend(state.identities.users_by_phone(p).await?);
    }
    users.sort();
    users.dedup();
    let mut records = Vec::new();
    for u in users {
        if let Some(m) = tenancy::get_member(&state.table, &access.clinic, &u).await? {
            records.push(m);
        }
    }
    let (items, proven) = views(state, access, &records).await?;
    let found: Vec<MemberView> = items
        .into_iter()
        .zip(proven)
        .filter_map(|(v, proven)| proven.then_some(v))
        .collect();
    record_page(state, access, AuditAction::Search, &found).await?;
    Ok(found)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AddMember {
    email: Phi<String>,
    given_name: Phi<String>,
    family_name: Phi<String>,
    role: String,
    #[serde(default)]
    location_id: Option<String>,
    #[serde(default)]
    phone: Option<Phi<String>>,
}

/// A person to add, every field checked.
pub struct NewMember {
    person: NewPerson,
    email: Email,
    pub(crate) role: Role,
    pub(crate) location: Option<LocationId>,
    phone: Option<PhoneE164>,
}

impl AddMember {
    /// Every problem at once (422), before the policy sees the role and location asked for.
    pub fn validate(self) -> Result<NewMember, ApiError> {
        let person = NewPerson {
            email: self.email,
            given_name: self.given_name,
            family_name: self.family_name,
        };
        let (mut errors, email) = person.errors("");
        let role = Role::parse(&self.role).filter(|r| *r != Role::SuperAdmin);
        if role.is_none() {
            errors.push(FieldError::new(
                "role",
                "invalid_role",
                "Not a clinic role.",
            ));
        }
        let location = match &self.location_id {
            Some(l) => match LocationId::parse(l) {
                Some(l) => Some(l),
                None => {
                    errors.push(FieldError::new(
                        "locationId",
                        "invalid_id",
                        "Not a location id.",
                    ));
                    None
                }
            },
            None => None,
        };
        let phone = match &self.phone {
            Some(p) => match PhoneE164::parse(p.expose()) {
                Some(p) => Some(p),
                None => {
                    errors.push(FieldError::new(
                        "phone",
                        "invalid_phone",
                        "Use international E.164 form.",
                    ));
                    None
                }
            },
            None => None,
        };
        let (Some(email), Some(role), true) = (email, role, errors.is_empty()) else {
            return Err(ApiError::Validation(errors));
        };
        Ok(NewMember {
            person,
            email,
            role,
            location,
            phone,
        })
    }
}

impl NewMember {
    /// The membership about to exist, as the policy sees it.
    pub fn target(&self) -> Target<'_> {
        Target {
            member_role: Some(self.role),
            location: self.location.as_ref().map(LocationId::as_str),
            ..Default::default()
        }
    }
}

/// Adds the person to the clinic with a pending membership, and sends the invitation whose
/// link accepts it: to a new identity (who chooses a password when accepting) or to an existing
/// one (found by email). The answer is the same for both, and holds only what the caller sent.
///
/// Someone new is the common case and costs one transaction (identity, membership, the
/// location's count, the link and the event) and the invitation's message; someone who exists
/// costs the failed attempt, the email lookup and the membership's own transaction.
pub async fn add(
    state: &AppState,
    access: &ClinicAccess,
    new: NewMember,
) -> Result<MemberView, ApiError> {
    let NewMember {
        person,
        email,
        role,
        location,
        phone,
    } = new;
    let now = state.clock.epoch();
    let membership = NewMembership {
        clinic: access.clinic.clone(),
        role,
        location: location.clone(),
        pending: true,
    };
    let counted = |tx_guards: &mut Vec<(usize, Guard)>, actions: &mut Vec<_>| {
        if let Some(l) = &location {
            tx_guards.push((actions.len(), UNKNOWN_LOCATION));
            actions.push(count_members(&state.table, &access.clinic, l, 1)?);
        }
        Ok::<_, ApiError>(())
    };
    let mail = state.ext();
    let fresh = UserId::generate();
    let (mut actions, link) = mail
        .prepare(&fresh, LinkKind::Membership, Some(&access.clinic), now)
        .await?;
    // A new person's details, or a membership shown with them: its record commits with it.
    actions.push(
        state
            .audit
            .put(&audited(access, &fresh, AuditAction::Create))
            .await?,
    );
    let mut together = Together {
        actions,
        ..Together::default()
    };
    counted(&mut together.guards, &mut together.actions)?;
    let identity = person.identity(fresh.clone(), email.clone(), phone, membership.clone());
    let created = state
        .identities
        .try_create_with(
            identity,
            &added(state, access, &fresh, &membership),
            now,
            together,
        )
        .await?;
    let (user, link) = if created {
        (fresh, link)
    } else {
        let user = state
            .identities
            .user_by_email(&email)
            .await?
            .ok_or(db::CHANGED_MEANWHILE)?;
        let (link_writes, link) = mail
            .prepare(&user, LinkKind::Membership, Some(&access.clinic), now)
            .await?;
        let mut tx = Tx::default();
        let (mut guards, mut actions) = (Vec::new(), Vec::new());
        counted(&mut guards, &mut actions)?;
        for (item, (_, guard)) in actions.into_iter().zip(guards) {
            tx.guard(item, guard);
        }
        tx.guard(
            member_put(&state.table, &user, &membership, now)?,
            ALREADY_MEMBER,
        );
        for write in link_writes {
            tx.push(write);
        }
        tx.push(added(state, access, &user, &membership).outbox_write(&state.table.name, now)?);
        tx.push(
            state
                .audit
                .put(&audited(access, &user, AuditAction::Create))
                .await?,
        );
        tx.commit(&state.table).await?;
        (user, link)
    };
    send_invitation(state, &link, now).await;
    tracing::info!(clinic_id = %access.clinic, user_id = %user, role = %role, "member invited");
    // The member as committed, with what the caller sent: nothing stored elsewhere is shown.
    let m = MemberRecord {
        user: user.clone(),
        clinic: access.clinic.clone(),
        role,
        status: PENDING.into(),
        location,
        version: 1,
        created_at: now,
        updated_at: now,
    };
    let profile = Profile {
        user: Some(user),
        fields: vec![
            ("email", Phi::new(email.expose().to_string())),
            (
                "givenName",
                Phi::new(person.given_name.expose().trim().to_string()),
            ),
            (
                "familyName",
                Phi::new(person.family_name.expose().trim().to_string()),
            ),
        ],
        ..Profile::default()
    };
    Ok(view_of(access, &m, &profile))
}

/// The event of a membership added.
fn added(
    state: &AppState,
    access: &ClinicAccess,
    user: &UserId,
    m: &NewMembership,
) -> shared::outbox::EventEnvelope {
    event(
        state,
        "clinic.member_added",
        &access.clinic,
        &access.caller,
        access.role,
        ("member", user.to_string()),
        serde_json::json!({ "clinicId": access.clinic, "userId": user, "role": m.role, "locationId": m.location, "status": PENDING }),
    )
}

/// The member, if it exists and the caller may know about it; otherwise 404.
pub async fn visible(
    state: &AppState,
    access: &ClinicAccess,
    user: &UserId,
) -> Result<MemberRecord, ApiError> {
    let m = tenancy::get_member(&state.table, &access.clinic, user)
        .await?
        .ok_or(ApiError::NotFound)?;
    if access.allows(Resource::Member, Action::Read, &target(&m)) || m.user == access.caller.user_id
    {
        Ok(m)
    } else {
        Err(ApiError::NotFound)
    }
}

/// Nobody changes or removes their own membership (an admin could lock the clinic out);
/// another admin or a super admin does it.
pub fn refuse_own_membership(access: &ClinicAccess, m: &MemberRecord) -> Result<(), ApiError> {
    if m.user == access.caller.user_id && access.role != Role::SuperAdmin {
        return Err(ApiError::Forbidden);
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateMember {
    #[serde(default)]
    role: Option<String>,
    #[serde(default, deserialize_with = "shared::http::patch_field")]
    location_id: Option<Option<String>>,
    #[serde(default)]
    status: Option<String>,
}

/// A change of a membership, every field checked; `None` leaves a field as it is, and a
/// location of `Some(None)` unassigns the member.
pub struct MemberChange {
    pub(crate) role: Option<Role>,
    pub(crate) location: Option<Option<LocationId>>,
    pub(crate) status: Option<String>,
}

impl UpdateMember {
    /// Every problem at once (422), and a body that changes nothing is refused (422).
    pub fn validate(self) -> Result<MemberChange, ApiError> {
        let mut errors = Vec::new();
        let role = match &self.role {
            Some(r) => match Role::parse(r).filter(|r| *r != Role::SuperAdmin) {
                Some(r) => Some(r),
                None => {
                    errors.push(FieldError::new(
                        "role",
                        "invalid_role",
                        "Not a clinic role.",
                    ));
                    None
                }
            },
            None => None,
        };
        let location: Option<Option<LocationId>> = match &self.location_id {
            Some(Some(l)) => match LocationId::parse(l) {
                Some(l) => Some(Some(l)),
                None => {
                    errors.push(FieldError::new(
                        "locationId",
                        "invalid_id",
                        "Not a location id.",
                    ));
                    None
                }
            },
            Some(None) => Some(None),
            None => None,
        };
        if let Some(st) = &self.status {
            if st != "ACTIVE" && st != "INACTIVE" {
                errors.push(FieldError::new(
                    "status",
                    "invalid_status",
                    "Use ACTIVE or INACTIVE.",
                ));
            }
        }
        if !errors.is_empty() {
            return Err(ApiError::Validation(errors));
        }
        if role.is_none() && location.is_none() && self.status.is_none() {
            return Err(ApiError::unprocessable(
                "empty_update",
                "The body changes nothing.",
            ));
        }
        Ok(MemberChange {
            role,
            location,
            status: self.status,
        })
    }
}

/// Applies the change to `m` if its version has not moved since it was read, moving the
/// member counts of the locations it leaves and joins in the same transaction.
pub async fn update(
    state: &AppState,
    access: &ClinicAccess,
    m: MemberRecord,
    change: MemberChange,
) -> Result<MemberView, ApiError> {
    let MemberChange {
        role: new_role,
        location: new_location,
        status,
    } = change;
    let now = state.clock.epoch();
    let mut update = VersionedUpdate::new();
    let mut tx = Tx::default();
    if let Some(r) = new_role {
        update.set("role", s(r.as_str()));
        update.set(
            keys::GSI2PK,
            s(keys::role_members_pk(&access.clinic, r.as_str())),
        );
    }
    if let Some(st) = &status {
        update.set("status", s(st));
    }
    if let Some(l) = &new_location {
        if l != &m.location {
            if let Some(old) = &m.location {
                tx.guard(
                    count_members(&state.table, &access.clinic, old, -1)?,
                    UNKNOWN_LOCATION,
                );
            }
            match l {
                Some(new) => {
                    tx.guard(
                        count_members(&state.table, &access.clinic, new, 1)?,
                        UNKNOWN_LOCATION,
                    );
                    update.set("locationId", s(new.as_str()));
                }
                None => {
                    update.remove("locationId");
                }
            }
        }
    }
    tx.guard(m.update(&state.table, update, now)?, db::CHANGED_MEANWHILE);
    let kind = if new_role.is_some_and(|r| r != m.role) {
        "clinic.member_role_changed"
    } else {
        "clinic.member_updated"
    };
    let event = event(
        state,
        kind,
        &access.clinic,
        &access.caller,
        access.role,
        ("member", m.user.to_string()),
        serde_json::json!({ "clinicId": access.clinic, "userId": m.user, "role": new_role.unwrap_or(m.role), "previousRole": m.role, "status": status, "locationId": new_location.clone().unwrap_or(m.location.clone()) }),
    );
    tx.push(event.outbox_write(&state.table.name, now)?);
    tx.push(
        state
            .audit
            .put(&audited(access, &m.user, AuditAction::Update))
            .await?,
    );
    tx.commit(&state.table).await?;
    state.authn.forget_membership(&access.clinic, &m.user);
    if let Some(r) = new_role.filter(|r| *r != m.role) {
        // An account notice: the person learns of every role they gain. The change is
        // committed, so a failure to queue it is logged, not answered.
        let params = std::collections::BTreeMap::from([
            ("clinicId".to_string(), access.clinic.to_string()),
            ("role".to_string(), r.as_str().to_string()),
        ]);
        if let Err(e) = state
            .ext()
            .notify(&m.user, "role-changed", params, now)
            .await
        {
            tracing::error!(user_id = %m.user, error = %e, "role notice not queued");
        }
    }
    let m = tenancy::get_member(&state.table, &access.clinic, &m.user)
        .await?
        .ok_or(ApiError::NotFound)?;
    view(state, access, &m).await
}

/// Removes the membership if its version has not moved, and frees its location's slot.
pub async fn remove(
    state: &AppState,
    access: &ClinicAccess,
    m: MemberRecord,
) -> Result<(), ApiError> {
    let now = state.clock.epoch();
    let mut tx = Tx::default();
    tx.guard(
        tenancy::delete_member(&state.table, &access.clinic, &m.user, m.version)?,
        db::CHANGED_MEANWHILE,
    );
    if let Some(l) = &m.location {
        tx.push(count_members(&state.table, &access.clinic, l, -1)?);
    }
    let event = event(
        state,
        "clinic.member_removed",
        &access.clinic,
        &access.caller,
        access.role,
        ("member", m.user.to_string()),
        serde_json::json!({ "clinicId": access.clinic, "userId": m.user, "role": m.role }),
    );
    tx.push(event.outbox_write(&state.table.name, now)?);
    tx.commit(&state.table).await?;
    state.authn.forget_membership(&access.clinic, &m.user);
    tracing::info!(clinic_id = %access.clinic, user_id = %m.user, "member removed");
    Ok(())
}
