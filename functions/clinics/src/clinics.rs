//! Clinics: creating one together with its first admin, listing them, and changing a clinic's
//! settings (name, time zone, currency, locale) under its optimistic version.

use serde::{Deserialize, Serialize};
use shared::{
    ApiError, FieldError,
    audit::{AuditAction, AuditEntry, Outcome, purpose_of},
    authn::{Caller, ClinicAccess},
    clock::rfc3339,
    db::{self, VersionedUpdate, s},
    identity::{
        LinkKind, NewMembership, Together,
        store::{ACTIVE, PENDING, member_put},
    },
    ids::{ClinicId, UserId},
    policy::Role,
    record::Record,
    tenancy::{self, ClinicRecord},
    types::{Currency, TimeZoneName},
};

use crate::{
    AppState,
    events::event,
    people::{NewPerson, send_invitation},
    rules::{locale_ok, name_ok},
    store,
};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClinicView {
    id: String,
    name: String,
    time_zone: String,
    currency: String,
    locale: String,
    status: String,
    /// Patients may register themselves into the clinic.
    self_registration: bool,
    /// Staff act only in sessions that passed two-step sign-in.
    staff_mfa_required: bool,
    /// Unconfirmed bookings a patient may hold at once.
    max_open_holds: i64,
    /// How far ahead patients may book, in days.
    max_days_ahead: i64,
    /// How long a patient's unconfirmed booking holds its time, in minutes.
    hold_minutes: i64,
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
            self_registration: c.self_registration,
            staff_mfa_required: c.staff_mfa_required,
            max_open_holds: c.booking.max_open_holds,
            max_days_ahead: c.booking.max_days_ahead,
            hold_minutes: c.booking.hold_minutes,
            version: c.version,
            created_at: rfc3339(c.created_at),
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateClinic {
    name: String,
    time_zone: String,
    currency: String,
    #[serde(default)]
    locale: Option<String>,
    /// Patients may register themselves (default: no; the clinic adds them).
    #[serde(default)]
    self_registration: bool,
    /// Staff must sign in in two steps (default: yes).
    #[serde(default = "yes")]
    staff_mfa_required: bool,
    admin: NewPerson,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateClinic {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    time_zone: Option<String>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    locale: Option<String>,
    #[serde(default)]
    self_registration: Option<bool>,
    #[serde(default)]
    staff_mfa_required: Option<bool>,
    #[serde(default)]
    max_open_holds: Option<i64>,
    #[serde(default)]
    max_days_ahead: Option<i64>,
    #[serde(default)]
    hold_minutes: Option<i64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Page {
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    cursor: Option<String>,
}

/// Problems with the settings given; `None` is a setting left out.
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

/// A new clinic and who was invited to be its first admin.
pub struct Created {
    pub clinic: ClinicView,
    pub admin: UserId,
}

/// Creates the clinic with its first clinic admin, whose membership waits for their consent
/// through the link sent to the address: an existing person (found by email), or a new one who
/// chooses a password when accepting. The caller acts as super admin.
pub async fn create(
    state: &AppState,
    caller: &Caller,
    req: CreateClinic,
) -> Result<Created, ApiError> {
    let mut errors = settings_errors(
        Some(&req.name),
        Some(&req.time_zone),
        Some(&req.currency),
        req.locale.as_deref(),
    );
    let (person_errs, email) = req.admin.errors("admin.");
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
        self_registration: req.self_registration,
        staff_mfa_required: req.staff_mfa_required,
        booking: Default::default(),
        version: 1,
        created_at: now,
        updated_at: now,
    };
    let created = event(
        state,
        "clinic.created",
        &clinic.id,
        caller,
        Role::SuperAdmin,
        ("clinic", clinic.id.to_string()),
        serde_json::json!({ "clinicId": clinic.id }),
    );
    let existing = state.identities.user_by_email(&email).await?;
    let admin = existing.clone().unwrap_or_else(UserId::generate);
    // The first admin's membership waits for its owner's consent, like any member's.
    let membership = NewMembership {
        clinic: clinic.id.clone(),
        role: Role::ClinicAdmin,
        location: None,
        pending: true,
    };
    let added = event(
        state,
        "clinic.member_added",
        &clinic.id,
        caller,
        Role::SuperAdmin,
        ("member", admin.to_string()),
        serde_json::json!({ "clinicId": clinic.id, "userId": admin, "role": Role::ClinicAdmin, "status": PENDING }),
    );
    let (link_writes, link) = state
        .ext()
        .prepare(&admin, LinkKind::Membership, Some(&clinic.id), now)
        .await?;
    // The clinic, its first admin (identity or membership), the link and both events: all or
    // nothing.
    let mut items = vec![
        clinic.put(&state.table)?,
        created.outbox_write(&state.table.name, now)?,
    ];
    items.extend(link_writes);
    if existing.is_some() {
        items.push(member_put(&state.table, &admin, &membership, now)?);
        items.push(added.outbox_write(&state.table.name, now)?);
        db::run_guarded(&state.table, items, &[]).await?;
    } else {
        let identity = req.admin.identity(admin.clone(), email, None, membership);
        // A new person's details are written: the audit record commits with them.
        items.push(
            state
                .audit
                .put(&AuditEntry {
                    clinic: clinic.id.clone(),
                    actor: caller.user_id.clone(),
                    role: Some(Role::SuperAdmin),
                    patient: Some(admin.clone()),
                    action: AuditAction::Create,
                    resource: "member".into(),
                    ids: vec![admin.to_string()],
                    purpose: purpose_of(Role::SuperAdmin, false, false),
                    reason: None,
                    outcome: Outcome::Success,
                })
                .await?,
        );
        let together = Together {
            actions: items,
            creates_clinic: true,
            ..Together::default()
        };
        state
            .identities
            .create_with(identity, &added, now, together)
            .await?;
    }
    send_invitation(state, &link, now).await;
    tracing::info!(clinic_id = %clinic.id, admin_id = %admin, "clinic created");
    Ok(Created {
        clinic: ClinicView::from(&clinic),
        admin,
    })
}

/// Super admins page through every clinic; everyone else gets the clinics they belong to, in
/// one page.
pub async fn list(
    state: &AppState,
    caller: &Caller,
    page: Page,
) -> Result<(Vec<ClinicView>, Option<String>), ApiError> {
    let limit = db::page_limit(page.limit)?;
    if caller.platform_role == Some(Role::SuperAdmin) {
        caller.require_super_admin()?;
    }
    let (ids, next): (Vec<ClinicId>, Option<String>) = if caller.is_super_admin() {
        let start = page
            .cursor
            .as_deref()
            .map(|c| state.cursors.open("platform", "clinics", c))
            .transpose()?;
        let (ids, last) = store::clinic_page(&state.table, limit, start).await?;
        let next = last.map(|k| state.cursors.seal("platform", "clinics", &k));
        (ids, next)
    } else {
        let ids = shared::identity::store::memberships(&state.table, &caller.user_id)
            .await?
            .into_iter()
            .filter(|(_, _, status)| status == ACTIVE)
            .filter_map(|(c, _, _)| ClinicId::parse(&c))
            .collect();
        (ids, None)
    };
    // One batched read of the page's clinics, in the page's order.
    let clinics = tenancy::get_clinics(&state.table, &ids).await?;
    let items = ids
        .iter()
        .filter_map(|id| clinics.get(id).map(ClinicView::from))
        .collect();
    Ok((items, next))
}

pub async fn get(state: &AppState, clinic: &ClinicId) -> Result<ClinicView, ApiError> {
    Ok(ClinicView::from(
        &store::clinic(&state.table, clinic).await?,
    ))
}

/// Changes the settings given, if the clinic's version has not moved since it was read.
pub async fn update(
    state: &AppState,
    access: &ClinicAccess,
    req: UpdateClinic,
) -> Result<ClinicView, ApiError> {
    let mut errors = settings_errors(
        req.name.as_deref(),
        req.time_zone.as_deref(),
        req.currency.as_deref(),
        req.locale.as_deref(),
    );
    let limits: Vec<(&'static str, i64)> = shared::tenancy::BookingLimits::RANGES
        .into_iter()
        .zip([req.max_open_holds, req.max_days_ahead, req.hold_minutes])
        .filter_map(|((name, range), v)| {
            let v = v?;
            if !range.contains(&v) {
                errors.push(FieldError::new(
                    name,
                    "out_of_range",
                    format!("Use {} to {}.", range.start(), range.end()),
                ));
            }
            Some((name, v))
        })
        .collect();
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let current = store::clinic(&state.table, &access.clinic).await?;
    let switches: Vec<(&str, bool)> = [
        ("selfRegistration", req.self_registration),
        ("staffMfaRequired", req.staff_mfa_required),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect();
    let changes: Vec<(&str, String)> = [
        ("name", req.name.map(|n| n.trim().to_string())),
        ("timeZone", req.time_zone),
        ("currency", req.currency),
        ("locale", req.locale),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect();
    if changes.is_empty() && switches.is_empty() && limits.is_empty() {
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
    let mut fields: Vec<&str> = changes.iter().map(|(k, _)| *k).collect();
    for (name, on) in &switches {
        update.set(name, db::b(*on));
        fields.push(name);
    }
    for (name, v) in &limits {
        update.set(name, db::n(*v));
        fields.push(name);
    }
    let event = event(
        state,
        "clinic.updated",
        &access.clinic,
        &access.caller,
        access.role,
        ("clinic", access.clinic.to_string()),
        serde_json::json!({ "clinicId": access.clinic, "fields": fields }),
    );
    let mut tx = db::Tx::default();
    tx.guard(
        current.update(&state.table, update, now)?,
        db::CHANGED_MEANWHILE,
    );
    tx.push(event.outbox_write(&state.table.name, now)?);
    tx.commit(&state.table).await?;
    state.clinics.forget(&access.clinic);
    get(state, &access.clinic).await
}
