//! The local stack: provisions the emulated resources, builds every function's state against
//! them, merges the function routers into one gateway, runs the async side (the events relay)
//! in-process, and seeds demo data. `make dev`, the black-box tests and the benchmarks use it.

pub mod bench;

use axum::Router;
use shared::{
    aws::Clients,
    clock::{Clock, SystemClock},
    config::PlatformConfig,
    crypto::Phi,
    ids::{ClinicId, UserId},
    outbox::{Actor, EventEnvelope, Subject},
    policy::Role,
    provision::{Resources, provision, put_clinic},
    types::Email,
};
use std::{net::SocketAddr, sync::Arc, time::Duration};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The demo clinic has a fixed id so the README walk-through can name it.
pub const DEMO_CLINIC_ID: &str = "c1a1c000-0000-4000-8000-000000000001";
/// Every seeded demo user shares this password (it passes the password policy).
pub const DEMO_PASSWORD: &str = "clinic-demo-passphrase";
/// The platform's super admin (a platform role, no clinic membership).
pub const DEMO_SUPER_ADMIN: &str = "super@demo.clinic";
/// One demo user per main role of the demo clinic: (role, email, given name, family name).
pub const DEMO_USERS: &[(Role, &str, &str, &str)] = &[
    (Role::ClinicAdmin, "admin@demo.clinic", "Ada", "Admin"),
    (Role::Doctor, "doctor@demo.clinic", "Dana", "Doctor"),
    (Role::Nurse, "nurse@demo.clinic", "Nia", "Nurse"),
    (
        Role::Receptionist,
        "reception@demo.clinic",
        "Remy",
        "Reception",
    ),
    (
        Role::FinanceBilling,
        "finance@demo.clinic",
        "Fay",
        "Finance",
    ),
    (Role::Patient, "patient@demo.clinic", "Pat", "Patient"),
];

/// A running set of resources and the functions' states built on them.
pub struct Stack {
    pub clients: Clients,
    pub resources: Resources,
    pub auth: auth::AppState,
}

impl Stack {
    /// Provisions fresh resources under `prefix` and wires the functions to them.
    pub async fn up(clients: Clients, prefix: &str) -> Result<Self, BoxError> {
        let resources = provision(&clients, prefix).await?;
        let auth = auth::AppState::new(
            &clients,
            auth_config(&resources),
            Arc::new(SystemClock) as Arc<dyn Clock>,
        )
        .await?;
        Ok(Self {
            clients,
            resources,
            auth,
        })
    }

    /// Every function's routes behind one set of platform layers, as API Gateway would route.
    pub fn gateway(&self) -> Router {
        shared::http::platform(Router::new().merge(auth::routes(self.auth.clone())))
    }

    /// Starts the stream-to-bus relay in the background.
    pub fn spawn_relay(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let poller = relay::StreamPoller::new(
            aws_sdk_dynamodbstreams::Client::new(&self.clients.sdk),
            self.clients.dynamodb.clone(),
            &self.resources.table,
            relay::Relay {
                eventbridge: self.clients.eventbridge.clone(),
                bus: self.resources.bus.clone(),
            },
        );
        tokio::spawn(poller.run(every))
    }

    /// The demo clinic and one user per main role.
    pub async fn seed_demo(&self) -> Result<ClinicId, BoxError> {
        let clinic = ClinicId::parse(DEMO_CLINIC_ID).ok_or("bad demo clinic id")?;
        put_clinic(
            &self.clients,
            &self.resources.table,
            &clinic,
            "Demo Clinic",
            "Europe/Berlin",
            "EUR",
        )
        .await?;
        let super_admin = UserId::generate();
        let identity = auth::identity::NewIdentity {
            user: super_admin.clone(),
            email: Email::parse(DEMO_SUPER_ADMIN).ok_or("bad demo email")?,
            given_name: "Sam".into(),
            family_name: "Super".into(),
            phone: None,
            birth_date: None,
            password_hash: Some(
                auth::service::hash_password(&Phi::new(DEMO_PASSWORD.to_string())).await?,
            ),
            membership: None,
            platform_role: Some(Role::SuperAdmin),
        };
        let event = EventEnvelope::new(
            "auth.user_registered",
            None,
            Actor::default(),
            Subject {
                kind: "user".into(),
                id: super_admin.to_string(),
            },
            serde_json::json!({ "userId": super_admin, "platformRole": "SUPER_ADMIN" }),
            jiff::Timestamp::now(),
        );
        self.auth
            .identities()
            .create(identity, &event, jiff::Timestamp::now().as_second())
            .await?;
        for (role, email, given, family) in DEMO_USERS {
            let req = auth::service::RegisterRequest {
                clinic_id: clinic.to_string(),
                email: Phi::new(email.to_string()),
                password: Phi::new(DEMO_PASSWORD.to_string()),
                given_name: Phi::new(given.to_string()),
                family_name: Phi::new(family.to_string()),
                phone: None,
                birth_date: None,
            };
            self.auth.register(req, *role).await?;
        }
        Ok(clinic)
    }
}

/// The auth function's configuration for these resources.
pub fn auth_config(res: &Resources) -> auth::AuthConfig {
    auth::AuthConfig {
        platform: PlatformConfig {
            table_name: res.table.clone(),
            kms_key_id: res.kms_key_id.clone(),
            secrets_ciphertext: res.secrets_ciphertext.clone(),
            jwt_issuer: "https://auth.clinic.local".into(),
            jwt_audience: "clinic-api".into(),
            session_cache_seconds: 30,
        },
        notifications_queue_url: res.notifications_high_url.clone(),
        app_url: "http://127.0.0.1:3000".into(),
    }
}

/// Serves `router` on `addr` until the process ends. Returns the bound address first.
pub async fn serve(
    router: Router,
    addr: SocketAddr,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), BoxError> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let handle = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "gateway stopped");
        }
    });
    Ok((bound, handle))
}
