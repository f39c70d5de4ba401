//! The `appointments` function: doctors' availability, free slots, booking without double
//! booking, the appointment lifecycle and the day's check-in queue, every route checked against
//! the policy table. Pure rules live in [`rules`], storage in [`store`], the expiry / no-show
//! sweep in [`sweep`].

pub mod api;
pub mod lifecycle;
pub mod rules;
pub mod store;
pub mod sweep;

use std::{future::Future, ops::Deref, pin::Pin, sync::Arc};

use aws_sdk_dynamodb::types::TransactWriteItem;
use axum::{
    Router, middleware,
    routing::{get, post},
};
use jiff::{Timestamp, tz::TimeZone};
use shared::{
    ApiError,
    authn::{Authenticator, HasAuthenticator},
    aws::Clients,
    clock::{Clock, SystemClock},
    config::PlatformConfig,
    crypto::{FieldContext, Phi},
    db::Table,
    idempotency::idempotent,
    ids::{AppointmentId, ClinicId, UserId},
    outbox::{Actor, EventEnvelope, Subject},
    platform::Platform,
    policy::Role,
};

use store::AppointmentRecord;

pub const ROUTES: &[(&str, &str)] = &[
    (
        "GET",
        "/v1/clinics/{clinicId}/doctors/{doctorId}/availability",
    ),
    (
        "PUT",
        "/v1/clinics/{clinicId}/doctors/{doctorId}/availability",
    ),
    ("GET", "/v1/clinics/{clinicId}/doctors/{doctorId}/slots"),
    ("GET", "/v1/clinics/{clinicId}/appointments"),
    ("POST", "/v1/clinics/{clinicId}/appointments"),
    ("GET", "/v1/clinics/{clinicId}/appointments/{appointmentId}"),
    (
        "PATCH",
        "/v1/clinics/{clinicId}/appointments/{appointmentId}",
    ),
    (
        "POST",
        "/v1/clinics/{clinicId}/appointments/{appointmentId}/{action}",
    ),
    ("GET", "/v1/clinics/{clinicId}/queue"),
];

/// What a booking is, as far as coverage is concerned: ids and codes only.
#[derive(Debug, Clone)]
pub struct BookingFacts {
    pub clinic: ClinicId,
    pub appointment: AppointmentId,
    pub patient: UserId,
    pub doctor: UserId,
    pub kind: rules::Kind,
    pub starts_at: Timestamp,
}

/// A transaction action contributed by coverage, and the error to answer when its condition
/// fails (for example "quota exhausted").
pub struct Guarded {
    pub item: TransactWriteItem,
    pub on_failure: fn() -> ApiError,
}

pub type CoverageFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<Guarded>, ApiError>> + Send + 'a>>;

/// The seam where billing hooks into booking: whatever a booking must consume (a subscription's
/// appointment quota) is written in the booking's own transaction, under the coverage's own
/// conditions, and given back in the cancelling transaction. Without billing, nothing is added.
pub trait Coverage: Send + Sync {
    /// Actions to add to the booking transaction (booking and follow-ups).
    fn reserve<'a>(&'a self, booking: &'a BookingFacts) -> CoverageFuture<'a>;
    /// Actions to add to the cancelling transaction.
    fn release<'a>(&'a self, booking: &'a BookingFacts) -> CoverageFuture<'a>;
}

/// No coverage: bookings consume nothing.
pub struct Uncovered;

impl Coverage for Uncovered {
    fn reserve<'a>(&'a self, _: &'a BookingFacts) -> CoverageFuture<'a> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn release<'a>(&'a self, _: &'a BookingFacts) -> CoverageFuture<'a> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

pub struct Inner {
    pub platform: Platform,
    pub coverage: Arc<dyn Coverage>,
}

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl Deref for AppState {
    type Target = Platform;
    fn deref(&self) -> &Platform {
        &self.0.platform
    }
}

impl HasAuthenticator for AppState {
    fn authenticator(&self) -> &Authenticator {
        &self.authn
    }
}

impl AppState {
    pub async fn new(
        clients: &Clients,
        cfg: &PlatformConfig,
        clock: Arc<dyn Clock>,
        coverage: Arc<dyn Coverage>,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let platform = Platform::new(clients, cfg, clock).await?;
        Ok(Self(Arc::new(Inner { platform, coverage })))
    }

    pub async fn from_env() -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let cfg = PlatformConfig::from_env()?;
        let clients = Clients::from_env().await;
        Self::new(&clients, &cfg, Arc::new(SystemClock), Arc::new(Uncovered)).await
    }

    pub fn coverage(&self) -> &dyn Coverage {
        self.0.coverage.as_ref()
    }
}

pub fn router(state: AppState) -> Router {
    shared::http::platform(routes(state))
}

pub fn routes(state: AppState) -> Router {
    let idem = || middleware::from_fn_with_state(state.idempotency.clone(), idempotent);
    Router::new()
        .route(
            "/v1/clinics/{clinicId}/doctors/{doctorId}/availability",
            get(api::get_availability).put(api::put_availability),
        )
        .route(
            "/v1/clinics/{clinicId}/doctors/{doctorId}/slots",
            get(api::get_slots),
        )
        .route(
            "/v1/clinics/{clinicId}/appointments",
            get(api::list_appointments).merge(post(api::book).layer(idem())),
        )
        .route(
            "/v1/clinics/{clinicId}/appointments/{appointmentId}",
            get(api::get_appointment).patch(api::update_appointment),
        )
        .route(
            "/v1/clinics/{clinicId}/appointments/{appointmentId}/{action}",
            post(api::act),
        )
        .route("/v1/clinics/{clinicId}/queue", get(api::get_queue))
        .with_state(state)
}

/// Who changes an appointment: a member (id and role) or the platform's sweep.
#[derive(Debug, Clone)]
pub struct Who {
    pub user: Option<UserId>,
    pub role: &'static str,
}

impl Who {
    pub fn member(user: &UserId, role: Role) -> Self {
        Self {
            user: Some(user.clone()),
            role: role.as_str(),
        }
    }

    pub fn system() -> Self {
        Self {
            user: None,
            role: "SYSTEM",
        }
    }
}

/// The encryption context of an appointment's PHI field.
pub fn phi_field<'a>(
    clinic: &'a ClinicId,
    id: &'a AppointmentId,
    field: &'a str,
) -> FieldContext<'a> {
    FieldContext {
        tenant: clinic.as_str(),
        entity: "appointment",
        record: id.as_str(),
        field,
    }
}

/// Encrypts an appointment's PHI field for storage.
pub async fn seal(
    state: &AppState,
    clinic: &ClinicId,
    id: &AppointmentId,
    field: &'static str,
    value: &Phi<String>,
) -> Result<String, ApiError> {
    Ok(state
        .envelope
        .encrypt_str(&phi_field(clinic, id, field), value)
        .await?)
}

/// The event announcing a change of `a`: ids, codes and times only, never notes or reasons.
pub fn appointment_event(
    kind: &str,
    a: &AppointmentRecord,
    who: &Who,
    now: Timestamp,
    extra: serde_json::Value,
) -> EventEnvelope {
    let mut data = serde_json::json!({
        "appointmentId": a.id,
        "doctorId": a.doctor,
        "patientId": a.patient,
        "locationId": a.location,
        "kind": store::kind_str(a.kind),
        "status": a.status.as_str(),
        "startsAt": store::iso(a.starts_at),
        "endsAt": store::iso(a.ends_at()),
    });
    if let (Some(d), serde_json::Value::Object(x)) = (data.as_object_mut(), extra) {
        d.extend(x);
    }
    EventEnvelope::new(
        kind,
        Some(&a.clinic),
        Actor {
            user_id: who.user.as_ref().map(ToString::to_string),
            role: Some(who.role.to_string()),
        },
        Subject {
            kind: "appointment".into(),
            id: a.id.to_string(),
        },
        data,
        now,
    )
}

/// A transaction under construction, remembering which actions' conditions mean what.
#[derive(Default)]
pub struct Tx {
    items: Vec<TransactWriteItem>,
    guards: Vec<(usize, fn() -> ApiError)>,
}

impl Tx {
    pub fn push(&mut self, item: TransactWriteItem) {
        self.items.push(item);
    }

    pub fn guard(&mut self, item: TransactWriteItem, on_failure: fn() -> ApiError) {
        self.guards.push((self.items.len(), on_failure));
        self.items.push(item);
    }

    pub fn extend_guarded(&mut self, items: Vec<Guarded>) {
        for g in items {
            self.guard(g.item, g.on_failure);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Commits all actions or none; a failed guarded condition becomes its error.
    pub async fn commit(self, table: &Table) -> Result<(), ApiError> {
        let watch: Vec<usize> = self.guards.iter().map(|(i, _)| *i).collect();
        match auth::store::run_guarded(table, self.items, &watch).await? {
            None => Ok(()),
            Some(i) => Err(self
                .guards
                .iter()
                .find(|(g, _)| *g == i)
                .map(|(_, f)| f())
                .unwrap_or_else(|| ApiError::internal("unknown guarded action"))),
        }
    }
}

pub fn slot_taken() -> ApiError {
    ApiError::conflict(
        "slot_taken",
        "The doctor already has an appointment at this time.",
    )
}

pub fn changed_meanwhile() -> ApiError {
    ApiError::conflict(
        "version_conflict",
        "The appointment was changed by someone else; read it again and retry.",
    )
}

pub fn claims_lost() -> ApiError {
    ApiError::conflict(
        "slot_not_held",
        "The appointment no longer holds its time; reschedule it.",
    )
}

/// The clinic's time zone (calendar dates, the day's queue).
pub async fn clinic_zone(state: &AppState, clinic: &ClinicId) -> Result<TimeZone, ApiError> {
    let c = clinics::store::get_clinic(&state.table, clinic)
        .await?
        .ok_or(ApiError::NotFound)?;
    TimeZone::get(&c.time_zone).map_err(ApiError::internal)
}
