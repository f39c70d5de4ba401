//! A person's own profile: what they may change, its validation, and the versioned update
//! that re-encrypts every changed field (every field is PHI, never logged).

use aws_sdk_dynamodb::types::Delete;
use serde::{Deserialize, Serialize};
use shared::{
    ApiError, FieldError,
    audit::{AuditAction, AuditEntry},
    crypto::Phi,
    db::{self, VersionedUpdate, s, tx_delete},
    http::patch_field,
    identity::{Profile, field},
    ids::UserId,
    keys,
    outbox::{Actor, EventEnvelope, Subject},
    types::PhoneE164,
};

use crate::AppState;

/// A postal address. PHI: only ever held inside `Phi`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Address {
    pub line1: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    pub city: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// ISO 3166-1 alpha-2.
    pub country: String,
}

/// Who to call in an emergency. PHI.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EmergencyContact {
    pub name: String,
    pub phone: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relationship: Option<String>,
}

const GENDERS: &[&str] = &["female", "male", "non_binary", "other", "undisclosed"];

/// What a person may change about themselves. Anything else (email, role, clinic, ids,
/// version, audit fields) is an unknown field and refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProfilePatch {
    #[serde(default, deserialize_with = "patch_field")]
    given_name: Option<Option<Phi<String>>>,
    #[serde(default, deserialize_with = "patch_field")]
    family_name: Option<Option<Phi<String>>>,
    #[serde(default, deserialize_with = "patch_field")]
    phone: Option<Option<Phi<String>>>,
    #[serde(default, deserialize_with = "patch_field")]
    birth_date: Option<Option<Phi<String>>>,
    #[serde(default, deserialize_with = "patch_field")]
    gender: Option<Option<Phi<String>>>,
    #[serde(default, deserialize_with = "patch_field")]
    address: Option<Option<Phi<Address>>>,
    #[serde(default, deserialize_with = "patch_field")]
    emergency_contact: Option<Option<Phi<EmergencyContact>>>,
}

fn text_ok(v: &str, max: usize) -> bool {
    let n = v.trim().chars().count();
    n > 0 && n <= max
}

impl ProfilePatch {
    /// Every field checked at once; returns the new plaintext (or `None` to clear) by attribute.
    pub fn validate(
        self,
        today: jiff::civil::Date,
    ) -> Result<Vec<(&'static str, Option<String>)>, ApiError> {
        let mut errors = Vec::new();
        let mut out: Vec<(&'static str, Option<String>)> = Vec::new();
        for (name, v) in [
            ("givenName", self.given_name),
            ("familyName", self.family_name),
        ] {
            match v {
                Some(Some(v)) if text_ok(v.expose(), 100) => {
                    out.push((name, Some(v.expose().trim().to_string())))
                }
                Some(Some(_)) => errors.push(FieldError::new(
                    name,
                    "invalid_length",
                    "Use 1 to 100 characters.",
                )),
                Some(None) => errors.push(FieldError::new(
                    name,
                    "required",
                    "A name cannot be removed.",
                )),
                None => {}
            }
        }
        match self.phone {
            Some(Some(p)) => match PhoneE164::parse(p.expose()) {
                Some(p) => out.push(("phone", Some(p.expose().to_string()))),
                None => errors.push(FieldError::new(
                    "phone",
                    "invalid_phone",
                    "Use international E.164 form, e.g. +4930123456.",
                )),
            },
            Some(None) => out.push(("phone", None)),
            None => {}
        }
        match self.birth_date {
            Some(Some(b)) if shared::identity::valid_birth_date(b.expose(), today) => {
                out.push(("birthDate", Some(b.expose().clone())))
            }
            Some(Some(_)) => errors.push(FieldError::new(
                "birthDate",
                "invalid_date",
                "Use YYYY-MM-DD, not in the future.",
            )),
            Some(None) => out.push(("birthDate", None)),
            None => {}
        }
        match self.gender {
            Some(Some(g)) if GENDERS.contains(&g.expose().as_str()) => {
                out.push(("gender", Some(g.expose().clone())))
            }
            Some(Some(_)) => errors.push(FieldError::new(
                "gender",
                "invalid_value",
                "Use female, male, non_binary, other or undisclosed.",
            )),
            Some(None) => out.push(("gender", None)),
            None => {}
        }
        match self.address {
            Some(Some(a)) => {
                let a = a.expose();
                let ok = text_ok(&a.line1, 200)
                    && text_ok(&a.city, 100)
                    && a.line2.as_deref().is_none_or(|l| l.chars().count() <= 200)
                    && a.postal_code.as_deref().is_none_or(|p| text_ok(p, 20))
                    && a.region.as_deref().is_none_or(|r| text_ok(r, 100))
                    && a.country.len() == 2
                    && a.country.bytes().all(|b| b.is_ascii_uppercase());
                if ok {
                    out.push(("address", serde_json::to_string(a).ok()));
                } else {
                    errors.push(FieldError::new("address", "invalid_address", "line1, city and a two-letter country code are required; parts are limited in length."));
                }
            }
            Some(None) => out.push(("address", None)),
            None => {}
        }
        match self.emergency_contact {
            Some(Some(c)) => {
                let c = c.expose();
                let phone = PhoneE164::parse(&c.phone);
                if text_ok(&c.name, 200)
                    && phone.is_some()
                    && c.relationship.as_deref().is_none_or(|r| text_ok(r, 50))
                {
                    let normalized = EmergencyContact {
                        phone: phone.map(|p| p.expose().to_string()).unwrap_or_default(),
                        ..c.clone()
                    };
                    out.push(("emergencyContact", serde_json::to_string(&normalized).ok()));
                } else {
                    errors.push(FieldError::new(
                        "emergencyContact",
                        "invalid_contact",
                        "A name and an E.164 phone are required.",
                    ));
                }
            }
            Some(None) => out.push(("emergencyContact", None)),
            None => {}
        }
        if !errors.is_empty() {
            return Err(ApiError::Validation(errors));
        }
        if out.is_empty() {
            return Err(ApiError::unprocessable(
                "empty_update",
                "The body changes nothing.",
            ));
        }
        Ok(out)
    }
}

/// The caller's own profile, recorded in the audit trail before it is returned.
pub async fn view(state: &AppState, user: &UserId) -> Result<serde_json::Value, ApiError> {
    let profile = state
        .identities
        .profile(user)
        .await?
        .ok_or(ApiError::NotFound)?;
    state
        .audit
        .record(&own_profile(user, AuditAction::Read))
        .await?;
    Ok(render(user, &profile))
}

fn own_profile(user: &UserId, action: AuditAction) -> AuditEntry {
    AuditEntry::own(user, action, "profile", vec![user.to_string()])
}

/// The profile as its owner sees it.
fn render(user: &UserId, profile: &Profile) -> serde_json::Value {
    let mut view = serde_json::Map::new();
    view.insert("id".into(), user.to_string().into());
    for (name, value) in &profile.fields {
        let v = match *name {
            "address" | "emergencyContact" => {
                serde_json::from_str(value.expose()).unwrap_or(serde_json::Value::Null)
            }
            _ => serde_json::Value::String(value.expose().clone()),
        };
        view.insert((*name).into(), v);
    }
    view.insert("version".into(), profile.version.into());
    serde_json::Value::Object(view)
}

/// Applies a validated patch to `user`'s profile: every changed field re-encrypted, the phone
/// lookup kept in step, under the profile's version, with `user.updated` (field names only).
pub async fn update(
    state: &AppState,
    user: &UserId,
    patch: ProfilePatch,
) -> Result<serde_json::Value, ApiError> {
    let now = state.clock.now();
    let changes = patch.validate(now.to_zoned(jiff::tz::TimeZone::UTC).date())?;
    // The current profile (for its version and phone lookup) and the new fields' ciphertexts
    // do not depend on each other: read and encrypt together.
    let read = async {
        state
            .identities
            .profile(user)
            .await?
            .ok_or(ApiError::NotFound)
    };
    let seal = async {
        let mut sealed = Vec::with_capacity(changes.len());
        for (name, value) in &changes {
            let ct = match value {
                Some(v) => Some(
                    state
                        .envelope
                        .encrypt(&field(user, name), v.as_bytes())
                        .await?,
                ),
                None => None,
            };
            sealed.push(ct);
        }
        Ok::<_, ApiError>(sealed)
    };
    let (current, sealed) = tokio::try_join!(read, seal)?;
    let epoch = now.as_second();

    let mut update = VersionedUpdate::new();
    let mut extra = Vec::new();
    for ((name, value), ct) in changes.iter().zip(sealed) {
        match ct {
            Some(ct) => {
                update.set(name, s(ct));
            }
            None => {
                update.remove(name);
            }
        }
        if *name == "phone" {
            // Keep the phone lookup in step: drop the old entry, add the new one (nothing to
            // do when the number is unchanged).
            let new_index = value
                .as_deref()
                .and_then(PhoneE164::parse)
                .map(|p| state.identities.phone_index(&p));
            if new_index != current.phone_index {
                if let Some(old) = &current.phone_index {
                    extra.push(tx_delete(
                        Delete::builder()
                            .table_name(&state.table.name)
                            .key(keys::PK, s(keys::phone_pk(old)))
                            .key(keys::SK, s(keys::user_pk(user))),
                    )?);
                }
                match &new_index {
                    Some(idx) => {
                        update.set("phoneIndex", s(idx));
                        extra.push(shared::identity::store::phone_put(&state.table, idx, user)?);
                    }
                    None => {
                        update.remove("phoneIndex");
                    }
                }
            }
        }
    }
    let update = update.build(
        &state.table,
        keys::user_pk(user),
        keys::PROFILE_SK,
        current.version,
        epoch,
    )?;
    let fields: Vec<&str> = changes.iter().map(|(n, _)| *n).collect();
    let event = EventEnvelope::new(
        "user.updated",
        None,
        Actor {
            user_id: Some(user.to_string()),
            role: None,
        },
        Subject {
            kind: "user".into(),
            id: user.to_string(),
        },
        serde_json::json!({ "userId": user, "fields": fields }),
        now,
    );
    let mut items = vec![update];
    items.extend(extra);
    items.push(event.outbox_write(&state.table.name, epoch)?);
    // The change and its audit record commit together.
    items.push(
        state
            .audit
            .put(&own_profile(user, AuditAction::Update))
            .await?,
    );
    if shared::db::run_guarded(&state.table, items, &[0])
        .await?
        .is_some()
    {
        return Err(db::CHANGED_MEANWHILE.into());
    }
    tracing::info!(user_id = %user, fields = fields.len(), "profile updated");
    // The profile as committed: the one read, with the changes applied, one version on.
    let mut after = current;
    for (name, value) in changes {
        after.fields.retain(|(n, _)| *n != name);
        if let Some(v) = value {
            after.fields.push((name, Phi::new(v)));
        }
    }
    after.version += 1;
    Ok(render(user, &after))
}
