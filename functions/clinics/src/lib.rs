//! The `clinics` function: clinics, their locations and their members, every route checked
//! against the policy table. A caller who is not a member of the clinic in the path gets 404
//! for anything inside it, exactly like a clinic that does not exist.

use axum::{
    Router,
    extract::{Path, State},
    middleware,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use http::StatusCode;
use serde::{Deserialize, Deserializer, Serialize};
use shared::{
    ApiError, FieldError,
    authn::{Caller, ClinicAccess},
    clock::rfc3339,
    crypto::Phi,
    db::{self, VersionedUpdate, get_opt_s, n, s},
    http::{Json, Query, json_response},
    idempotency::idempotent,
    ids::{ClinicId, LocationId, UserId},
    keys,
    outbox::{Actor, EventEnvelope, Subject},
    policy::{Action, Resource, Role, Subject as Target},
    types::{Currency, Email, PhoneE164, TimeZoneName},
};

use shared::db::tx_put;
use shared::identity::{
    LinksConfig, NewIdentity, NewMembership, PasswordLink, PasswordLinks, Together,
    store::member_put,
};
use shared::tenancy::{self as store, ClinicRecord, LocationRecord, MemberRecord, count_members};

pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/clinics"),
    ("POST", "/v1/clinics"),
    ("GET", "/v1/clinics/{clinicId}"),
    ("PATCH", "/v1/clinics/{clinicId}"),
    ("GET", "/v1/clinics/{clinicId}/locations"),
    ("POST", "/v1/clinics/{clinicId}/locations"),
    ("GET", "/v1/clinics/{clinicId}/locations/{locationId}"),
    ("PATCH", "/v1/clinics/{clinicId}/locations/{locationId}"),
    ("DELETE", "/v1/clinics/{clinicId}/locations/{locationId}"),
    ("GET", "/v1/clinics/{clinicId}/members"),
    ("POST", "/v1/clinics/{clinicId}/members"),
    ("GET", "/v1/clinics/{clinicId}/members/{userId}"),
    ("PATCH", "/v1/clinics/{clinicId}/members/{userId}"),
    ("DELETE", "/v1/clinics/{clinicId}/members/{userId}"),
];

/// Handlers' state: the platform and the set-password links (invitations).
pub type AppState = shared::app::AppState<PasswordLinks>;

/// The same settings as the auth function: platform, the notifications queue (invitations)
/// and the app URL (set-password links).
pub type ClinicsConfig = LinksConfig;

/// An event of this context, caused by `actor` acting as `role`.
fn event(
    state: &AppState,
    kind: &str,
    clinic: &ClinicId,
    actor: &Caller,
    role: Role,
    subject: (&str, String),
    data: serde_json::Value,
) -> EventEnvelope {
    EventEnvelope::new(
        kind,
        Some(clinic),
        Actor {
            user_id: Some(actor.user_id.to_string()),
            role: Some(role.as_str().to_string()),
        },
        Subject {
            kind: subject.0.into(),
            id: subject.1,
        },
        data,
        state.clock.now(),
    )
}

pub fn router(state: AppState) -> Router {
    shared::http::platform(routes(state))
}

pub fn routes(state: AppState) -> Router {
    let idem = || middleware::from_fn_with_state(state.idempotency.clone(), idempotent);
    Router::new()
        .route(
            "/v1/clinics",
            get(list_clinics).merge(post(create_clinic).layer(idem())),
        )
        .route(
            "/v1/clinics/{clinicId}",
            get(get_clinic).patch(update_clinic),
        )
        .route(
            "/v1/clinics/{clinicId}/locations",
            get(list_locations).merge(post(create_location).layer(idem())),
        )
        .route(
            "/v1/clinics/{clinicId}/locations/{locationId}",
            get(get_location)
                .patch(update_location)
                .delete(delete_location),
        )
        .route(
            "/v1/clinics/{clinicId}/members",
            get(list_members).merge(post(add_member).layer(idem())),
        )
        .route(
            "/v1/clinics/{clinicId}/members/{userId}",
            get(get_member).patch(update_member).delete(remove_member),
        )
        .with_state(state)
}

/// `null` clears a field; an absent field stays as it is.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

fn name_ok(v: &str, max: usize) -> bool {
    let n = v.trim().chars().count();
    n > 0 && n <= max
}

fn locale_ok(v: &str) -> bool {
    (2..=35).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

// ---------------------------------------------------------------- clinics

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ClinicView {
    id: String,
    name: String,
    time_zone: String,
    currency: String,
    locale: String,
    status: String,
    version: i64,
    created_at: String,
}

impl From<&ClinicRecord> for ClinicView {
    fn from(c: &ClinicRecord) -> Self {
        Self {
            id: c.id.to_string(),
            name: c.name.clone(),
            time_zone: c.time_zone.clone(),
            currency: c.currency.clone(),
            locale: c.locale.clone(),
            status: c.status.clone(),
            version: c.version,
            created_at: rfc3339(c.created_at),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NewPerson {
    email: Phi<String>,
    given_name: Phi<String>,
    family_name: Phi<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateClinic {
    name: String,
    time_zone: String,
    currency: String,
    #[serde(default)]
    locale: Option<String>,
    admin: NewPerson,
}

fn settings_errors(
    name: Option<&str>,
    tz: Option<&str>,
    currency: Option<&str>,
    locale: Option<&str>,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if name.is_some_and(|n| !name_ok(n, 200)) {
        errors.push(FieldError::new(
            "name",
            "invalid_length",
            "Use 1 to 200 characters.",
        ));
    }
    if tz.is_some_and(|t| TimeZoneName::parse(t).is_none()) {
        errors.push(FieldError::new(
            "timeZone",
            "invalid_time_zone",
            "Use an IANA time zone such as Europe/Berlin.",
        ));
    }
    if currency.is_some_and(|c| Currency::parse(c).is_none()) {
        errors.push(FieldError::new(
            "currency",
            "invalid_currency",
            "Use an ISO 4217 code such as EUR.",
        ));
    }
    if locale.is_some_and(|l| !locale_ok(l)) {
        errors.push(FieldError::new(
            "locale",
            "invalid_locale",
            "Use a BCP 47 tag such as en or de-DE.",
        ));
    }
    errors
}

fn person_errors(p: &NewPerson, prefix: &str) -> (Vec<FieldError>, Option<Email>) {
    let mut errors = Vec::new();
    let email = Email::parse(p.email.expose());
    if email.is_none() {
        errors.push(FieldError::new(
            format!("{prefix}email"),
            "invalid_email",
            "Not a valid email address.",
        ));
    }
    for (name, v) in [("givenName", &p.given_name), ("familyName", &p.family_name)] {
        if !name_ok(v.expose(), 100) {
            errors.push(FieldError::new(
                format!("{prefix}{name}"),
                "invalid_length",
                "Use 1 to 100 characters.",
            ));
        }
    }
    (errors, email)
}

/// Sends the set-password invitation. The member exists whatever happens here, so a failure is
/// logged rather than failing a request whose writes are committed: the person can still use
/// "forgot password", which works for invited users too.
async fn invite(state: &AppState, user: &UserId, now: i64) {
    if let Err(e) = state
        .ext()
        .send_password_link(user, PasswordLink::Invitation, now)
        .await
    {
        tracing::error!(user_id = %user, error = %e, "invitation not sent");
    }
}

/// A super admin creates a clinic with its first clinic admin (an existing person, or a new
/// one who is invited to choose a password).
async fn create_clinic(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<CreateClinic>,
) -> Result<Response, ApiError> {
    if !caller.is_super_admin() {
        return Err(ApiError::Forbidden);
    }
    let mut errors = settings_errors(
        Some(&req.name),
        Some(&req.time_zone),
        Some(&req.currency),
        req.locale.as_deref(),
    );
    let (person_errs, email) = person_errors(&req.admin, "admin.");
    errors.extend(person_errs);
    let Some(email) = email.filter(|_| errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let now = state.clock.epoch();
    let clinic = ClinicRecord {
        id: ClinicId::generate(),
        name: req.name.trim().to_string(),
        time_zone: req.time_zone,
        currency: req.currency,
        locale: req.locale.unwrap_or_else(|| "en".into()),
        status: "ACTIVE".into(),
        version: 1,
        created_at: now,
    };
    let created = event(
        &state,
        "clinic.created",
        &clinic.id,
        &caller,
        Role::SuperAdmin,
        ("clinic", clinic.id.to_string()),
        serde_json::json!({ "clinicId": clinic.id }),
    );
    let existing = state.identities.user_by_email(&email).await?;
    let admin = existing.clone().unwrap_or_else(UserId::generate);
    let membership = NewMembership {
        clinic: clinic.id.clone(),
        role: Role::ClinicAdmin,
        location: None,
    };
    let added = event(
        &state,
        "clinic.member_added",
        &clinic.id,
        &caller,
        Role::SuperAdmin,
        ("member", admin.to_string()),
        serde_json::json!({ "clinicId": clinic.id, "userId": admin, "role": Role::ClinicAdmin }),
    );
    // The clinic, its first admin (identity or membership) and both events: all or nothing.
    let mut items = vec![
        clinic.put(&state.table)?,
        created.outbox_write(&state.table.name, now)?,
    ];
    if existing.is_some() {
        items.push(member_put(&state.table, &admin, &membership, now)?);
        items.push(added.outbox_write(&state.table.name, now)?);
        db::run_guarded(&state.table, items, &[]).await?;
    } else {
        let identity = NewIdentity {
            user: admin.clone(),
            email,
            given_name: req.admin.given_name.expose().trim().to_string(),
            family_name: req.admin.family_name.expose().trim().to_string(),
            phone: None,
            birth_date: None,
            password_hash: None,
            membership: Some(membership),
            platform_role: None,
        };
        let together = Together {
            actions: items,
            creates_clinic: true,
        };
        state
            .identities
            .create_with(identity, &added, now, together)
            .await?;
        invite(&state, &admin, now).await;
    }
    tracing::info!(clinic_id = %clinic.id, admin_id = %admin, "clinic created");
    Ok(json_response(
        StatusCode::CREATED,
        &serde_json::json!({ "clinic": ClinicView::from(&clinic), "admin": { "userId": admin, "invited": existing.is_none() } }),
    ))
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Page {
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    cursor: Option<String>,
}

/// Super admins list every clinic; everyone else the clinics they belong to.
async fn list_clinics(
    State(state): State<AppState>,
    caller: Caller,
    Query(page): Query<Page>,
) -> Result<Response, ApiError> {
    let limit = shared::db::page_limit(page.limit)?;
    let (ids, next): (Vec<ClinicId>, Option<String>) = if caller.is_super_admin() {
        let start = page
            .cursor
            .as_deref()
            .map(|c| state.cursors.open("platform", "clinics", c))
            .transpose()?;
        let out = state
            .table
            .client
            .query()
            .table_name(&state.table.name)
            .index_name(keys::GSI1)
            .key_condition_expression("gsi1pk = :p")
            .expression_attribute_values(":p", s(keys::CLINICS_GSI1PK))
            .limit(limit)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(db::internal)?;
        let ids = out
            .items()
            .iter()
            .filter_map(|i| get_opt_s(i, "clinicId").and_then(ClinicId::parse))
            .collect();
        let next = out
            .last_evaluated_key()
            .filter(|k| !k.is_empty())
            .map(|k| state.cursors.seal("platform", "clinics", k));
        (ids, next)
    } else {
        let ids = shared::identity::store::memberships(&state.table, &caller.user_id)
            .await?
            .into_iter()
            .filter_map(|(c, _)| ClinicId::parse(&c))
            .collect();
        (ids, None)
    };
    let mut items = Vec::new();
    for id in ids {
        if let Some(c) = store::get_clinic(&state.table, &id).await? {
            items.push(ClinicView::from(&c));
        }
    }
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "items": items, "nextCursor": next }),
    ))
}

async fn load_clinic(state: &AppState, access: &ClinicAccess) -> Result<ClinicRecord, ApiError> {
    store::get_clinic(&state.table, &access.clinic)
        .await?
        .ok_or(ApiError::NotFound)
}

async fn get_clinic(
    State(state): State<AppState>,
    access: ClinicAccess,
) -> Result<Response, ApiError> {
    access.require(Resource::Clinic, Action::Read, &Target::default())?;
    let clinic = load_clinic(&state, &access).await?;
    Ok(json_response(StatusCode::OK, &ClinicView::from(&clinic)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct UpdateClinic {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    time_zone: Option<String>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    locale: Option<String>,
}

async fn update_clinic(
    State(state): State<AppState>,
    access: ClinicAccess,
    Json(req): Json<UpdateClinic>,
) -> Result<Response, ApiError> {
    access.require(Resource::Clinic, Action::Update, &Target::default())?;
    let errors = settings_errors(
        req.name.as_deref(),
        req.time_zone.as_deref(),
        req.currency.as_deref(),
        req.locale.as_deref(),
    );
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let current = load_clinic(&state, &access).await?;
    let changes: Vec<(&str, String)> = [
        ("name", req.name.map(|n| n.trim().to_string())),
        ("timeZone", req.time_zone),
        ("currency", req.currency),
        ("locale", req.locale),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect();
    if changes.is_empty() {
        return Err(ApiError::unprocessable(
            "empty_update",
            "The body changes nothing.",
        ));
    }
    let now = state.clock.epoch();
    let mut update = VersionedUpdate::new();
    for (k, v) in &changes {
        update.set(k, s(v));
    }
    let fields: Vec<&str> = changes.iter().map(|(k, _)| *k).collect();
    let event = event(
        &state,
        "clinic.updated",
        &access.clinic,
        &access.caller,
        access.role,
        ("clinic", access.clinic.to_string()),
        serde_json::json!({ "clinicId": access.clinic, "fields": fields }),
    );
    let items = vec![
        update.build(
            &state.table,
            keys::clinic_pk(&access.clinic),
            keys::CLINIC_SK,
            current.version,
            now,
        )?,
        event.outbox_write(&state.table.name, now)?,
    ];
    if db::run_guarded(&state.table, items, &[0]).await?.is_some() {
        return Err(db::CHANGED_MEANWHILE.into());
    }
    let clinic = load_clinic(&state, &access).await?;
    Ok(json_response(StatusCode::OK, &ClinicView::from(&clinic)))
}

// ---------------------------------------------------------------- locations

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct LocationView {
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
struct LocationInput {
    #[serde(default)]
    name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    address: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    phone: Option<Option<String>>,
}

impl LocationInput {
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

async fn list_locations(
    State(state): State<AppState>,
    access: ClinicAccess,
) -> Result<Response, ApiError> {
    access.require(Resource::Location, Action::Read, &Target::default())?;
    // A clinic has few locations: read them all, page after page.
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let out = state
            .table
            .client
            .query()
            .table_name(&state.table.name)
            .key_condition_expression("pk = :c AND begins_with(sk, :l)")
            .expression_attribute_values(":c", s(keys::clinic_pk(&access.clinic)))
            .expression_attribute_values(":l", s(keys::LOCATION_PREFIX))
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(db::internal)?;
        for i in out.items() {
            items.push(LocationRecord::from_item(i)?);
        }
        match out.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => break,
        }
    }
    let views: Vec<LocationView> = items.iter().map(LocationView::from).collect();
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "items": views }),
    ))
}

async fn create_location(
    State(state): State<AppState>,
    access: ClinicAccess,
    Json(req): Json<LocationInput>,
) -> Result<Response, ApiError> {
    access.require(Resource::Location, Action::Create, &Target::default())?;
    let errors = req.errors(true);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    load_clinic(&state, &access).await?;
    let now = state.clock.epoch();
    let id = LocationId::generate();
    let mut put = aws_sdk_dynamodb::types::Put::builder()
        .table_name(&state.table.name)
        .item(keys::PK, s(keys::clinic_pk(&access.clinic)))
        .item(keys::SK, s(keys::location_sk(&id)))
        .item(keys::ENTITY, s("LOCATION"))
        .item("locationId", s(id.as_str()))
        .item("clinicId", s(access.clinic.as_str()))
        .item("name", s(req.name.as_deref().unwrap_or_default().trim()))
        .item("memberCount", n(0))
        .item("version", n(1))
        .item("createdAt", n(now))
        .condition_expression("attribute_not_exists(pk)");
    if let Some(Some(a)) = &req.address {
        put = put.item("address", s(a.trim()));
    }
    if let Some(Some(p)) = req
        .phone
        .as_ref()
        .and_then(|p| p.as_deref().map(PhoneE164::parse))
    {
        put = put.item("phone", s(p.expose()));
    }
    let event = event(
        &state,
        "clinic.location.created",
        &access.clinic,
        &access.caller,
        access.role,
        ("location", id.to_string()),
        serde_json::json!({ "clinicId": access.clinic, "locationId": id }),
    );
    db::run_guarded(
        &state.table,
        vec![tx_put(put)?, event.outbox_write(&state.table.name, now)?],
        &[],
    )
    .await?;
    let loc = load_location(&state, &access, &id).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &LocationView::from(&loc),
    ))
}

fn location_id(raw: &str) -> Result<LocationId, ApiError> {
    LocationId::parse(raw).ok_or(ApiError::NotFound)
}

/// A location of the caller's clinic, or 404 (an id from another clinic is simply absent).
async fn load_location(
    state: &AppState,
    access: &ClinicAccess,
    id: &LocationId,
) -> Result<LocationRecord, ApiError> {
    store::get_location(&state.table, &access.clinic, id)
        .await?
        .ok_or(ApiError::NotFound)
}

async fn get_location(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, location)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    access.require(Resource::Location, Action::Read, &Target::default())?;
    let id = location_id(&location)?;
    let loc = load_location(&state, &access, &id).await?;
    Ok(json_response(StatusCode::OK, &LocationView::from(&loc)))
}

async fn update_location(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, location)): Path<(String, String)>,
    Json(req): Json<LocationInput>,
) -> Result<Response, ApiError> {
    let id = location_id(&location)?;
    let current = load_location(&state, &access, &id).await?;
    access.require(
        Resource::Location,
        Action::Update,
        &Target {
            location: Some(id.as_str()),
            ..Default::default()
        },
    )?;
    let errors = req.errors(false);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
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
        &state,
        "clinic.location.updated",
        &access.clinic,
        &access.caller,
        access.role,
        ("location", id.to_string()),
        serde_json::json!({ "clinicId": access.clinic, "locationId": id, "fields": fields }),
    );
    if db::run_guarded(
        &state.table,
        vec![
            update.build(
                &state.table,
                keys::clinic_pk(&access.clinic),
                keys::location_sk(&id),
                current.version,
                now,
            )?,
            event.outbox_write(&state.table.name, now)?,
        ],
        &[0],
    )
    .await?
    .is_some()
    {
        return Err(db::CHANGED_MEANWHILE.into());
    }
    let loc = load_location(&state, &access, &id).await?;
    Ok(json_response(StatusCode::OK, &LocationView::from(&loc)))
}

/// Refused while members are assigned to the location (a condition on its member count).
async fn delete_location(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, location)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = location_id(&location)?;
    load_location(&state, &access, &id).await?;
    access.require(
        Resource::Location,
        Action::Delete,
        &Target {
            location: Some(id.as_str()),
            ..Default::default()
        },
    )?;
    let now = state.clock.epoch();
    let delete = db::tx_delete(
        aws_sdk_dynamodb::types::Delete::builder()
            .table_name(&state.table.name)
            .key(keys::PK, s(keys::clinic_pk(&access.clinic)))
            .key(keys::SK, s(keys::location_sk(&id)))
            .condition_expression("attribute_exists(pk) AND (attribute_not_exists(memberCount) OR memberCount <= :zero)")
            .expression_attribute_values(":zero", n(0)),
    )?;
    let event = event(
        &state,
        "clinic.location.deleted",
        &access.clinic,
        &access.caller,
        access.role,
        ("location", id.to_string()),
        serde_json::json!({ "clinicId": access.clinic, "locationId": id }),
    );
    if db::run_guarded(
        &state.table,
        vec![delete, event.outbox_write(&state.table.name, now)?],
        &[0],
    )
    .await?
    .is_some()
    {
        return Err(ApiError::conflict(
            "location_in_use",
            "Members are still assigned to this location; move or remove them first.",
        ));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---------------------------------------------------------------- members

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct MemberView {
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

fn target(m: &MemberRecord) -> Target<'_> {
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

async fn member_view(
    state: &AppState,
    access: &ClinicAccess,
    m: &MemberRecord,
) -> Result<MemberView, ApiError> {
    let profile = state.identities.profile(&m.user).await?.unwrap_or_default();
    Ok(view_of(access, m, &profile))
}

fn view_of(
    access: &ClinicAccess,
    m: &MemberRecord,
    profile: &shared::identity::Profile,
) -> MemberView {
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
struct MemberQuery {
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    cursor: Option<String>,
}

/// Members the caller may see, filtered by role, or found by exact email or phone (blind
/// indexes). Cursors are bound to the clinic and the filter.
async fn list_members(
    State(state): State<AppState>,
    access: ClinicAccess,
    Query(q): Query<MemberQuery>,
) -> Result<Response, ApiError> {
    if !shared::policy::may_ever(access.role, Resource::Member, Action::Read) {
        return Err(ApiError::Forbidden);
    }
    let role = q
        .role
        .as_deref()
        .map(|r| {
            Role::parse(r)
                .ok_or_else(|| ApiError::invalid_field("role", "invalid_role", "Not a role."))
        })
        .transpose()?;
    let limit = shared::db::page_limit(q.limit)?;
    let mut records = Vec::new();
    let mut next = None;
    if q.email.is_some() || q.phone.is_some() {
        let mut users = Vec::new();
        if let Some(e) = &q.email {
            let email = Email::parse(e).ok_or_else(|| {
                ApiError::invalid_field("email", "invalid_email", "Not a valid email address.")
            })?;
            users.extend(state.identities.user_by_email(&email).await?);
        }
        if let Some(p) = &q.phone {
            let phone = PhoneE164::parse(p).ok_or_else(|| {
                ApiError::invalid_field("phone", "invalid_phone", "Use international E.164 form.")
            })?;
            users.extend(state.identities.users_by_phone(&phone).await?);
        }
        users.sort();
        users.dedup();
        for u in users {
            if let Some(m) = store::get_member(&state.table, &access.clinic, &u).await? {
                records.push(m);
            }
        }
    } else {
        let query_key = format!("members?role={}", role.map(Role::as_str).unwrap_or(""));
        let start = q
            .cursor
            .as_deref()
            .map(|c| state.cursors.open(access.clinic.as_str(), &query_key, c))
            .transpose()?;
        let mut req = state
            .table
            .client
            .query()
            .table_name(&state.table.name)
            .key_condition_expression("pk = :c AND begins_with(sk, :m)")
            .expression_attribute_values(":c", s(keys::clinic_pk(&access.clinic)))
            .expression_attribute_values(":m", s(keys::MEMBER_PREFIX))
            .limit(limit)
            .set_exclusive_start_key(start);
        if let Some(r) = role {
            req = req
                .filter_expression("#role = :role")
                .expression_attribute_names("#role", "role")
                .expression_attribute_values(":role", s(r.as_str()));
        }
        let out = req.send().await.map_err(db::internal)?;
        for i in out.items() {
            records.push(MemberRecord::from_item(i)?);
        }
        next = out
            .last_evaluated_key()
            .filter(|k| !k.is_empty())
            .map(|k| state.cursors.seal(access.clinic.as_str(), &query_key, k));
    }
    let visible: Vec<&MemberRecord> = records
        .iter()
        .filter(|m| role.is_none_or(|r| m.role == r))
        .filter(|m| access.allows(Resource::Member, Action::Read, &target(m)))
        .collect();
    // One batched read for the page's profiles instead of one read per member.
    let users: Vec<UserId> = visible.iter().map(|m| m.user.clone()).collect();
    let profiles = state.identities.profiles(&users).await?;
    let items: Vec<MemberView> = visible
        .iter()
        .map(|m| {
            view_of(
                &access,
                m,
                profiles
                    .get(&m.user)
                    .unwrap_or(&shared::identity::Profile::default()),
            )
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "items": items, "nextCursor": next }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AddMember {
    email: Phi<String>,
    given_name: Phi<String>,
    family_name: Phi<String>,
    role: String,
    #[serde(default)]
    location_id: Option<String>,
    #[serde(default)]
    phone: Option<Phi<String>>,
}

/// Adds a person to the clinic with a role: an existing identity (found by email) or a new
/// one, invited to choose a password.
async fn add_member(
    State(state): State<AppState>,
    access: ClinicAccess,
    Json(req): Json<AddMember>,
) -> Result<Response, ApiError> {
    let person = NewPerson {
        email: req.email,
        given_name: req.given_name,
        family_name: req.family_name,
    };
    let (mut errors, email) = person_errors(&person, "");
    let role = Role::parse(&req.role).filter(|r| *r != Role::SuperAdmin);
    if role.is_none() {
        errors.push(FieldError::new(
            "role",
            "invalid_role",
            "Not a clinic role.",
        ));
    }
    let location = match &req.location_id {
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
    let phone = match &req.phone {
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
    access.require(
        Resource::Member,
        Action::Create,
        &Target {
            member_role: Some(role),
            location: location.as_ref().map(LocationId::as_str),
            ..Default::default()
        },
    )?;
    let now = state.clock.epoch();
    let existing = state.identities.user_by_email(&email).await?;
    let user = existing.clone().unwrap_or_else(UserId::generate);
    let membership = NewMembership {
        clinic: access.clinic.clone(),
        role,
        location: location.clone(),
    };
    let event = event(
        &state,
        "clinic.member_added",
        &access.clinic,
        &access.caller,
        access.role,
        ("member", user.to_string()),
        serde_json::json!({ "clinicId": access.clinic, "userId": user, "role": role, "locationId": location }),
    );
    let mut items = Vec::new();
    if let Some(l) = &location {
        items.push(count_members(&state.table, &access.clinic, l, 1)?);
    }
    if existing.is_some() {
        items.push(member_put(&state.table, &user, &membership, now)?);
        items.push(event.outbox_write(&state.table.name, now)?);
        let member_at = items.len() - 2;
        match db::run_guarded(&state.table, items, &[0, member_at]).await? {
            None => {}
            Some(i) if i == member_at => {
                return Err(ApiError::conflict(
                    "already_member",
                    "This person is already a member of the clinic.",
                ));
            }
            Some(_) => {
                return Err(ApiError::invalid_field(
                    "locationId",
                    "unknown_location",
                    "No such location in this clinic.",
                ));
            }
        }
    } else {
        if let Some(l) = &location {
            // Claim the location slot first; the identity transaction cannot include it.
            if db::run_guarded(&state.table, std::mem::take(&mut items), &[0])
                .await?
                .is_some()
            {
                return Err(ApiError::invalid_field(
                    "locationId",
                    "unknown_location",
                    "No such location in this clinic.",
                ));
            }
            let _ = l;
        }
        let identity = NewIdentity {
            user: user.clone(),
            email,
            given_name: person.given_name.expose().trim().to_string(),
            family_name: person.family_name.expose().trim().to_string(),
            phone,
            birth_date: None,
            password_hash: None,
            membership: Some(membership),
            platform_role: None,
        };
        if let Err(e) = state.identities.create(identity, &event, now).await {
            if let Some(l) = &location {
                let _ = db::run_guarded(
                    &state.table,
                    vec![count_members(&state.table, &access.clinic, l, -1)?],
                    &[],
                )
                .await;
            }
            return Err(e);
        }
        invite(&state, &user, now).await;
    }
    tracing::info!(clinic_id = %access.clinic, user_id = %user, role = %role, "member added");
    let m = store::get_member(&state.table, &access.clinic, &user)
        .await?
        .ok_or(ApiError::NotFound)?;
    let mut view = serde_json::to_value(member_view(&state, &access, &m).await?)
        .map_err(ApiError::internal)?;
    view["invited"] = serde_json::Value::Bool(existing.is_none());
    Ok(json_response(StatusCode::CREATED, &view))
}

/// The member, if it exists and the caller may know about it; otherwise 404.
async fn visible_member(
    state: &AppState,
    access: &ClinicAccess,
    raw: &str,
) -> Result<MemberRecord, ApiError> {
    let user = UserId::parse(raw).ok_or(ApiError::NotFound)?;
    let m = store::get_member(&state.table, &access.clinic, &user)
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
fn refuse_own_membership(access: &ClinicAccess, m: &MemberRecord) -> Result<(), ApiError> {
    if m.user == access.caller.user_id && access.role != Role::SuperAdmin {
        return Err(ApiError::Forbidden);
    }
    Ok(())
}

async fn get_member(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, user)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let m = visible_member(&state, &access, &user).await?;
    Ok(json_response(
        StatusCode::OK,
        &member_view(&state, &access, &m).await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct UpdateMember {
    #[serde(default)]
    role: Option<String>,
    #[serde(default, deserialize_with = "present")]
    location_id: Option<Option<String>>,
    #[serde(default)]
    status: Option<String>,
}

/// Role changes are updates (never to or from an admin role unless super admin); status and
/// location changes are management (a location head: staff of their own location only).
async fn update_member(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, user)): Path<(String, String)>,
    Json(req): Json<UpdateMember>,
) -> Result<Response, ApiError> {
    let m = visible_member(&state, &access, &user).await?;
    refuse_own_membership(&access, &m)?;
    let mut errors = Vec::new();
    let new_role = match &req.role {
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
    let new_location: Option<Option<LocationId>> = match &req.location_id {
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
    if let Some(st) = &req.status {
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
    if new_role.is_none() && new_location.is_none() && req.status.is_none() {
        return Err(ApiError::unprocessable(
            "empty_update",
            "The body changes nothing.",
        ));
    }
    let before = target(&m);
    if let Some(r) = new_role {
        access.require(Resource::Member, Action::Update, &before)?;
        access.require(
            Resource::Member,
            Action::Update,
            &Target {
                member_role: Some(r),
                ..before
            },
        )?;
    }
    if new_location.is_some() || req.status.is_some() {
        access.require(Resource::Member, Action::Manage, &before)?;
        if let Some(l) = &new_location {
            access.require(
                Resource::Member,
                Action::Manage,
                &Target {
                    location: l.as_ref().map(LocationId::as_str),
                    ..before
                },
            )?;
        }
    }
    let now = state.clock.epoch();
    let mut update = VersionedUpdate::new();
    let mut items = Vec::new();
    if let Some(r) = new_role {
        update.set("role", s(r.as_str()));
    }
    if let Some(st) = &req.status {
        update.set("status", s(st));
    }
    if let Some(l) = &new_location {
        if l != &m.location {
            if let Some(old) = &m.location {
                items.push(count_members(&state.table, &access.clinic, old, -1)?);
            }
            match l {
                Some(new) => {
                    items.push(count_members(&state.table, &access.clinic, new, 1)?);
                    update.set("locationId", s(new.as_str()));
                }
                None => {
                    update.remove("locationId");
                }
            }
        }
    }
    let member_at = items.len();
    items.push(update.build(
        &state.table,
        keys::clinic_pk(&access.clinic),
        keys::member_sk(&m.user),
        m.version,
        now,
    )?);
    let kind = if new_role.is_some_and(|r| r != m.role) {
        "clinic.member_role_changed"
    } else {
        "clinic.member_updated"
    };
    let event = event(
        &state,
        kind,
        &access.clinic,
        &access.caller,
        access.role,
        ("member", m.user.to_string()),
        serde_json::json!({ "clinicId": access.clinic, "userId": m.user, "role": new_role.unwrap_or(m.role), "previousRole": m.role, "status": req.status, "locationId": new_location.clone().unwrap_or(m.location.clone()) }),
    );
    items.push(event.outbox_write(&state.table.name, now)?);
    let watch: Vec<usize> = (0..=member_at).collect();
    match db::run_guarded(&state.table, items, &watch).await? {
        None => {}
        Some(i) if i == member_at => {
            return Err(db::CHANGED_MEANWHILE.into());
        }
        Some(_) => {
            return Err(ApiError::invalid_field(
                "locationId",
                "unknown_location",
                "No such location in this clinic.",
            ));
        }
    }
    state.authn.forget_membership(&access.clinic, &m.user);
    let m = store::get_member(&state.table, &access.clinic, &m.user)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(json_response(
        StatusCode::OK,
        &member_view(&state, &access, &m).await?,
    ))
}

async fn remove_member(
    State(state): State<AppState>,
    access: ClinicAccess,
    Path((_, user)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let m = visible_member(&state, &access, &user).await?;
    refuse_own_membership(&access, &m)?;
    access.require(Resource::Member, Action::Delete, &target(&m))?;
    let now = state.clock.epoch();
    let mut items = vec![store::delete_member(
        &state.table,
        &access.clinic,
        &m.user,
        m.version,
    )?];
    if let Some(l) = &m.location {
        items.push(count_members(&state.table, &access.clinic, l, -1)?);
    }
    let event = event(
        &state,
        "clinic.member_removed",
        &access.clinic,
        &access.caller,
        access.role,
        ("member", m.user.to_string()),
        serde_json::json!({ "clinicId": access.clinic, "userId": m.user, "role": m.role }),
    );
    items.push(event.outbox_write(&state.table.name, now)?);
    if db::run_guarded(&state.table, items, &[0]).await?.is_some() {
        return Err(db::CHANGED_MEANWHILE.into());
    }
    state.authn.forget_membership(&access.clinic, &m.user);
    tracing::info!(clinic_id = %access.clinic, user_id = %m.user, "member removed");
    Ok(StatusCode::NO_CONTENT.into_response())
}
