//! The `ehr` function: patients' health records in nine coded kinds, versioned and never
//! lost, every clinical field sealed under the clinic's keys, every access under the policy
//! table and in the audit trail.
//!
//! The kinds are declarations in [`kinds`] over the generic record of
//! [`shared::clinical`]; [`records`] holds the operations every kind shares, [`access`] what
//! the policy needs to know about the caller and the patient, [`break_glass`] a clinician's audited emergency access, [`care_team`] the members
//! clinic admins put on a patient's care team, [`trail`] the clinic's audit trail and a patient's access log, [`own`] a patient's
//! record across clinics, and [`store`] the raw reads.

pub mod access;
pub mod break_glass;
pub mod care_team;
pub mod kinds;
pub mod own;
pub mod records;
mod routes;
pub mod seal;
pub mod store;
pub mod trail;

use axum::Router;

/// Every route this function serves: (method, path). The integration tests hold it against
/// the OpenAPI document and `template.yaml`.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/clinics/{clinicId}/patients/{patientId}/ehr"),
    (
        "GET",
        "/v1/clinics/{clinicId}/patients/{patientId}/ehr/{kind}",
    ),
    (
        "POST",
        "/v1/clinics/{clinicId}/patients/{patientId}/ehr/{kind}",
    ),
    (
        "GET",
        "/v1/clinics/{clinicId}/patients/{patientId}/ehr/{kind}/{recordId}",
    ),
    (
        "PATCH",
        "/v1/clinics/{clinicId}/patients/{patientId}/ehr/{kind}/{recordId}",
    ),
    (
        "DELETE",
        "/v1/clinics/{clinicId}/patients/{patientId}/ehr/{kind}/{recordId}",
    ),
    (
        "GET",
        "/v1/clinics/{clinicId}/patients/{patientId}/ehr/{kind}/{recordId}/history",
    ),
    (
        "POST",
        "/v1/clinics/{clinicId}/patients/{patientId}/break-glass",
    ),
    (
        "GET",
        "/v1/clinics/{clinicId}/patients/{patientId}/care-team",
    ),
    (
        "PUT",
        "/v1/clinics/{clinicId}/patients/{patientId}/care-team/{memberId}",
    ),
    (
        "DELETE",
        "/v1/clinics/{clinicId}/patients/{patientId}/care-team/{memberId}",
    ),
    ("GET", "/v1/clinics/{clinicId}/audit"),
    ("GET", "/v1/users/me/access-log"),
    ("GET", "/v1/users/me/health-record"),
];

/// Handlers' state: the platform alone.
pub type AppState = shared::app::AppState<()>;

/// The sealing job's state: the platform and the audit signing key.
pub type SealState = shared::app::AppState<seal::Signer>;

/// The sealing job's state from the environment (`AUDIT_SIGNING_KEY_ID` besides the
/// platform's variables).
pub async fn seal_state_from_env() -> Result<SealState, shared::app::BoxError> {
    let cfg = shared::config::PlatformConfig::from_env()?;
    let clients = shared::aws::Clients::from_env().await;
    let signer = seal::Signer {
        kms: clients.kms.clone(),
        key_id: shared::config::required("AUDIT_SIGNING_KEY_ID")?,
    };
    SealState::open(
        &clients,
        &cfg,
        std::sync::Arc::new(shared::clock::SystemClock),
        signer,
    )
    .await
}

/// The routes with the platform's layers, for this function's own Lambda.
pub fn router(state: AppState) -> Router {
    shared::http::platform(routes(state))
}

/// The bare routes, for a gateway that merges several functions under one set of layers.
pub fn routes(state: AppState) -> Router {
    Router::new()
        .merge(routes::records::router(&state))
        .merge(routes::care_team::router())
        .merge(routes::trail::router())
        .with_state(state)
}

/// This context's part of the OpenAPI document (see `shared::openapi`).
pub fn openapi() -> serde_json::Value {
    shared::openapi::part(include_str!("../openapi.json"))
}
