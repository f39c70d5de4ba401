//! A clinic's locations (branches): their details, and deletion only while no member is
//! assigned to them.

use serde::{Deserialize, Serialize};
use shared::{
    ApiError, FieldError,
    authn::ClinicAccess,
    db::{self, Tx, VersionedUpdate, s},
    error::Guard,
    ids::{ClinicId, LocationId},
    record::Record,
    tenancy::LocationRecord,
    types::PhoneE164,
};

use crate::{AppState, events::event, rules::name_ok, store};

/// The delete's condition on the member count failed.
const LOCATION_IN_USE: Guard = Guard::new(
    "location_in_use",
    "Members are still assigned to this location; move or remove them first.",
);

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LocationView {
    id: String,
    name: String,
    address: Option<String>,
    phone: Option<String>,
    member_count: i64,
    version: i64,
}

impl From<&LocationRecord> for LocationView {
    fn from(l: &LocationRecord) -> Self {
        Self {
            id: l.id.to_string(),
            name: l.name.clone(),
            address: l.address.clone(),
            phone: l.phone.clone(),
            member_count: l.member_count,
            version: l.version,
        }
    }
}

/// A location's public details (a branch's own address and phone are not PHI).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LocationInput {
    #[serde(default)]
    name: Option<String>,
    #[serde(default, deserialize_with = "shared::http::patch_field")]
    address: Option<Option<String>>,
    #[serde(default, deserialize_with = "shared::http::patch_field")]
    phone: Option<Option<String>>,
}

impl LocationInput {
    /// Every problem at once; a new location needs a name, an update may leave it out.
    fn errors(&self, creating: bool) -> Vec<FieldError> {
        let mut errors = Vec::new();
        match &self.name {
            Some(n) if !name_ok(n, 200) => errors.push(FieldError::new(
                "name",
                "invalid_length",
                "Use 1 to 200 characters.",
            )),
            None if creating => {
                errors.push(FieldError::new("name", "required", "A name is required."))
            }
            _ => {}
        }
        if let Some(Some(a)) = &self.address {
            if !name_ok(a, 500) {
                errors.push(FieldError::new(
                    "address",
                    "invalid_length",
                    "Use 1 to 500 characters.",
                ));
            }
        }
        if let Some(Some(p)) = &self.phone {
            if PhoneE164::parse(p).is_none() {
                errors.push(FieldError::new(
                    "phone",
                    "invalid_phone",
                    "Use international E.164 form.",
                ));
            }
        }
        errors
    }
}

pub async fn list(state: &AppState, clinic: &ClinicId) -> Result<Vec<LocationView>, ApiError> {
    let items = store::locations(&state.table, clinic).await?;
    Ok(items.iter().map(LocationView::from).collect())
}

/// The location of the clinic, or 404.
pub async fn load(
    state: &AppState,
    clinic: &ClinicId,
    id: &LocationId,
) -> Result<LocationRecord, ApiError> {
    store::location(&state.table, clinic, id).await
}

pub async fn get(
    state: &AppState,
    clinic: &ClinicId,
    id: &LocationId,
) -> Result<LocationView, ApiError> {
    Ok(LocationView::from(&load(state, clinic, id).await?))
}

/// A new location of the caller's clinic, with no members yet.
pub async fn create(
    state: &AppState,
    access: &ClinicAccess,
    req: LocationInput,
) -> Result<LocationView, ApiError> {
    let errors = req.errors(true);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    store::clinic(&state.table, &access.clinic).await?;
    let now = state.clock.epoch();
    let location = LocationRecord {
        id: LocationId::generate(),
        name: req.name.as_deref().unwrap_or_default().trim().to_string(),
        address: req.address.flatten().map(|a| a.trim().to_string()),
        phone: req
            .phone
            .flatten()
            .and_then(|p| PhoneE164::parse(&p))
            .map(|p| p.expose().to_string()),
        member_count: 0,
        version: 1,
        clinic: access.clinic.clone(),
        created_at: now,
        updated_at: now,
    };
    let id = location.id.clone();
    let event = event(
        state,
        "clinic.location.created",
        &access.clinic,
        &access.caller,
        access.role,
        ("location", id.to_string()),
        serde_json::json!({ "clinicId": access.clinic, "locationId": id }),
    );
    let mut tx = Tx::default();
    tx.push(store::location_put(&state.table, &location)?);
    tx.push(event.outbox_write(&state.table.name, now)?);
    tx.commit(&state.table).await?;
    get(state, &access.clinic, &id).await
}

/// Changes the details given of `current`, if its version has not moved since it was read.
pub async fn update(
    state: &AppState,
    access: &ClinicAccess,
    current: LocationRecord,
    req: LocationInput,
) -> Result<LocationView, ApiError> {
    let errors = req.errors(false);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let id = current.id.clone();
    let now = state.clock.epoch();
    let mut update = VersionedUpdate::new();
    let mut fields = Vec::new();
    if let Some(name) = &req.name {
        update.set("name", s(name.trim()));
        fields.push("name");
    }
    for (attr, value) in [("address", &req.address), ("phone", &req.phone)] {
        match value {
            Some(Some(v)) => {
                let v = if attr == "phone" {
                    PhoneE164::parse(v)
                        .map(|p| p.expose().to_string())
                        .unwrap_or_default()
                } else {
                    v.trim().to_string()
                };
                update.set(attr, s(v));
                fields.push(attr);
            }
            Some(None) => {
                update.remove(attr);
                fields.push(attr);
            }
            None => {}
        }
    }
    if fields.is_empty() {
        return Err(ApiError::unprocessable(
            "empty_update",
            "The body changes nothing.",
        ));
    }
    let event = event(
        state,
        "clinic.location.updated",
        &access.clinic,
        &access.caller,
        access.role,
        ("location", id.to_string()),
        serde_json::json!({ "clinicId": access.clinic, "locationId": id, "fields": fields }),
    );
    let mut tx = Tx::default();
    tx.guard(
        current.update(&state.table, update, now)?,
        db::CHANGED_MEANWHILE,
    );
    tx.push(event.outbox_write(&state.table.name, now)?);
    tx.commit(&state.table).await?;
    get(state, &access.clinic, &id).await
}

/// Deletes the location; refused while members are assigned to it (a condition on its member
/// count, so a member assigned meanwhile cannot be stranded).
pub async fn delete(
    state: &AppState,
    access: &ClinicAccess,
    id: &LocationId,
) -> Result<(), ApiError> {
    let now = state.clock.epoch();
    let delete = store::location_delete_if_empty(&state.table, &access.clinic, id)?;
    let event = event(
        state,
        "clinic.location.deleted",
        &access.clinic,
        &access.caller,
        access.role,
        ("location", id.to_string()),
        serde_json::json!({ "clinicId": access.clinic, "locationId": id }),
    );
    let mut tx = Tx::default();
    tx.guard(delete, LOCATION_IN_USE);
    tx.push(event.outbox_write(&state.table.name, now)?);
    tx.commit(&state.table).await
}
