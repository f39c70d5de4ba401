//! What every function builds once per container: the table, envelope encryption, blind
//! indexes, token keys, the authenticator, idempotency and cursor sealing, from one KMS call.

use std::{sync::Arc, time::Duration};

use crate::{
    authn::Authenticator,
    aws::Clients,
    clock::Clock,
    config::PlatformConfig,
    crypto::{BlindIndex, Envelope, KeyCacheLimits},
    db::{CursorCodec, Table},
    idempotency::IdempotencyStore,
    identity::Identities,
    jwt::KeySet,
    secrets::PlatformSecrets,
    tenancy::ClinicSettings,
};

pub struct Platform {
    pub table: Table,
    pub envelope: Arc<Envelope>,
    pub blind: BlindIndex,
    pub keys: Arc<KeySet>,
    pub authn: Authenticator,
    pub clock: Arc<dyn Clock>,
    pub idempotency: IdempotencyStore,
    pub cursors: CursorCodec,
    /// People: email and phone lookups, profiles, memberships.
    pub identities: Identities,
    /// Clinic settings (zone, currency), cached briefly.
    pub clinics: ClinicSettings,
    /// Queues: notification jobs and the scheduled jobs' per-clinic work.
    pub sqs: aws_sdk_sqs::Client,
    /// Request limits and password-guess backoff, kept in the table.
    pub throttles: crate::throttle::Throttles,
    /// The append-only record of every access to health information.
    pub audit: crate::audit::AuditTrail,
}

impl std::fmt::Debug for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Platform")
            .field("table", &self.table.name)
            .finish_non_exhaustive()
    }
}

impl Platform {
    /// Opens the platform secrets (the one KMS call of a cold start) and wires everything.
    pub async fn new(
        clients: &Clients,
        cfg: &PlatformConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, crate::crypto::CryptoError> {
        // The function that issues tokens opens the signing document (a superset); every other
        // function the shared one, and can only verify.
        let secrets = match &cfg.signing_secrets_ciphertext {
            Some(signing) => PlatformSecrets::open_signing(&clients.kms, signing).await?,
            None => PlatformSecrets::open(&clients.kms, &cfg.secrets_ciphertext).await?,
        };
        let keys = Arc::new(KeySet::from_secrets(
            &secrets,
            &cfg.jwt_issuer,
            &cfg.jwt_audience,
        ));
        let table = Table::new(clients.dynamodb.clone(), &cfg.table_name);
        let envelope = Arc::new(Envelope::new(
            clients.kms.clone(),
            &cfg.kms_key_id,
            KeyCacheLimits::default(),
        ));
        let authn = Authenticator::new(
            keys.clone(),
            table.clone(),
            clock.clone(),
            Duration::from_secs(cfg.session_cache_seconds),
        );
        let blind = BlindIndex::new(&secrets.blind_index_key);
        let idempotency = IdempotencyStore {
            table: table.clone(),
            envelope: envelope.clone(),
            clock: clock.clone(),
            keys: keys.clone(),
            hasher: blind.clone(),
        };
        let identities = Identities {
            table: table.clone(),
            envelope: envelope.clone(),
            blind: blind.clone(),
        };
        let clinics = ClinicSettings::new(table.clone(), clock.clone());
        let throttles = crate::throttle::Throttles::new(table.clone(), blind.clone());
        let audit = crate::audit::AuditTrail::new(
            Table::new(clients.dynamodb.clone(), &cfg.audit_table_name),
            envelope.clone(),
            clock.clone(),
        );
        Ok(Self {
            audit,
            throttles,
            table,
            envelope,
            blind,
            identities,
            clinics,
            keys,
            authn,
            clock,
            idempotency,
            cursors: CursorCodec::new(&secrets.cursor_key),
            sqs: clients.sqs.clone(),
        })
    }
}
