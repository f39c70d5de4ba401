//! PHI protection: the redacting `Phi` wrapper, KMS envelope encryption of fields with
//! AES-256-GCM bound to clinic, entity, record and field, and keyed blind indexes.

use aes_gcm::{
    Aes256Gcm, Nonce,
    aead::{Aead, KeyInit, Payload},
};
use aws_sdk_kms::{primitives::Blob, types::DataKeySpec};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::{
    collections::HashMap,
    fmt,
    sync::Mutex,
    time::{Duration, Instant},
};
use zeroize::Zeroizing;

/// Personal or clinical data. `Debug` and `Display` never show the value; serialisation is
/// transparent so it can be returned to an authorised caller.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Phi<T>(T);

impl<T> Phi<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// Deliberate access to the value, easy to grep for in review.
    pub fn expose(&self) -> &T {
        &self.0
    }

    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Phi<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("«redacted»")
    }
}

impl<T> fmt::Display for Phi<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("«redacted»")
    }
}

/// Fills a fixed-size array from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // The OS RNG failing is not recoverable; running on with weak randomness would be worse.
    #[allow(clippy::expect_used)]
    getrandom::getrandom(&mut b).expect("operating system random number generator");
    b
}

/// A 256-bit random value, URL-safe base64: refresh tokens, reset tokens.
pub fn random_token() -> String {
    B64.encode(random_bytes::<32>())
}

/// SHA-256 of a high-entropy secret, for storing tokens only as hashes.
pub fn token_hash(secret: &str) -> String {
    use sha2::Digest;
    B64.encode(Sha256::digest(secret.as_bytes()))
}

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("key management service: {0}")]
    Kms(String),
    /// KMS is throttled, failing or unreachable: nothing was sealed or opened.
    #[error("key management service unavailable: {0}")]
    Unavailable(String),
    #[error("ciphertext is malformed")]
    Malformed,
    #[error("ciphertext failed authentication (wrong record, field, clinic or tampered)")]
    Integrity,
}

impl From<CryptoError> for crate::ApiError {
    fn from(e: CryptoError) -> Self {
        match e {
            CryptoError::Unavailable(cause) => {
                tracing::warn!(%cause, "key management unavailable");
                crate::db::unavailable()
            }
            e => crate::ApiError::internal(e),
        }
    }
}

/// A failed KMS call: [`CryptoError::Unavailable`] when it was the service's fault, `other`
/// otherwise.
fn kms_error<E>(e: crate::db::SdkErr<E>, other: impl FnOnce(String) -> CryptoError) -> CryptoError
where
    E: aws_sdk_kms::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let text = aws_sdk_kms::error::DisplayErrorContext(&e).to_string();
    if crate::db::is_transient(&e) {
        CryptoError::Unavailable(text)
    } else {
        other(text)
    }
}

/// Where a ciphertext belongs. All four parts go into the associated data, and the tenant also
/// into the KMS encryption context, so a ciphertext moved elsewhere fails to decrypt.
#[derive(Debug, Clone, Copy)]
pub struct FieldContext<'a> {
    /// The clinic id, or [`PLATFORM_TENANT`] for global identity data.
    pub tenant: &'a str,
    pub entity: &'a str,
    pub record: &'a str,
    pub field: &'a str,
}

/// Tenant scope for data that belongs to no single clinic (a user's identity).
pub const PLATFORM_TENANT: &str = "platform";

impl FieldContext<'_> {
    fn aad(&self) -> Vec<u8> {
        format!(
            "v1|{}|{}|{}|{}",
            self.tenant, self.entity, self.record, self.field
        )
        .into_bytes()
    }
}

/// Bounds on how long and how often one data key is used before a fresh one is requested.
#[derive(Debug, Clone, Copy)]
pub struct KeyCacheLimits {
    pub max_age: Duration,
    pub max_uses: u64,
    pub max_entries: usize,
}

impl Default for KeyCacheLimits {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(300),
            max_uses: 10_000,
            max_entries: 1_024,
        }
    }
}

struct CachedKey {
    plaintext: Zeroizing<[u8; 32]>,
    wrapped: Vec<u8>,
    created: Instant,
    uses: u64,
}

/// Envelope encryption with KMS data keys cached per tenant for a bounded lifetime and use
/// count. Ciphertext format: `v1.<wrapped data key>.<nonce>.<ciphertext+tag>`, base64url.
pub struct Envelope {
    kms: aws_sdk_kms::Client,
    key_id: String,
    limits: KeyCacheLimits,
    encrypt_keys: Mutex<HashMap<String, CachedKey>>,
    decrypt_keys: Mutex<HashMap<Vec<u8>, CachedKey>>,
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("key_id", &self.key_id)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Envelope {
    pub fn new(
        kms: aws_sdk_kms::Client,
        key_id: impl Into<String>,
        limits: KeyCacheLimits,
    ) -> Self {
        Self {
            kms,
            key_id: key_id.into(),
            limits,
            encrypt_keys: Mutex::new(HashMap::new()),
            decrypt_keys: Mutex::new(HashMap::new()),
        }
    }

    fn fresh(&self, k: &CachedKey) -> bool {
        k.created.elapsed() < self.limits.max_age && k.uses < self.limits.max_uses
    }

    /// A data key for this tenant, from the cache or from KMS `GenerateDataKey`.
    async fn data_key(&self, tenant: &str) -> Result<(Zeroizing<[u8; 32]>, Vec<u8>), CryptoError> {
        {
            let mut cache = lock(&self.encrypt_keys);
            if let Some(k) = cache.get_mut(tenant) {
                if self.fresh(k) {
                    k.uses += 1;
                    return Ok((k.plaintext.clone(), k.wrapped.clone()));
                }
            }
        }
        let out = self
            .kms
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256)
            .encryption_context("tenant", tenant)
            .send()
            .await
            .map_err(|e| kms_error(e, CryptoError::Kms))?;
        let plain = out.plaintext().ok_or(CryptoError::Malformed)?.as_ref();
        let wrapped = out
            .ciphertext_blob()
            .ok_or(CryptoError::Malformed)?
            .as_ref()
            .to_vec();
        let mut key = Zeroizing::new([0u8; 32]);
        if plain.len() != 32 {
            return Err(CryptoError::Malformed);
        }
        key.copy_from_slice(plain);
        {
            let mut cache = lock(&self.encrypt_keys);
            if cache.len() >= self.limits.max_entries {
                cache.clear();
            }
            cache.insert(
                tenant.to_string(),
                CachedKey {
                    plaintext: key.clone(),
                    wrapped: wrapped.clone(),
                    created: Instant::now(),
                    uses: 1,
                },
            );
        }
        // What this container seals it can open without asking KMS to unwrap the key again.
        let mut opened = lock(&self.decrypt_keys);
        if opened.len() >= self.limits.max_entries {
            opened.clear();
        }
        opened.insert(
            [tenant.as_bytes(), b"\x1f", &wrapped].concat(),
            CachedKey {
                plaintext: key.clone(),
                wrapped: Vec::new(),
                created: Instant::now(),
                uses: 0,
            },
        );
        Ok((key, wrapped))
    }

    /// Whether the key answers and is enabled (readiness; one `DescribeKey`).
    pub async fn ready(&self) -> bool {
        self.kms
            .describe_key()
            .key_id(&self.key_id)
            .send()
            .await
            .is_ok_and(|k| k.key_metadata().is_some_and(|m| m.enabled()))
    }

    /// Unwraps a data key through KMS `Decrypt` (tenant in the encryption context), cached.
    async fn unwrap_key(
        &self,
        tenant: &str,
        wrapped: &[u8],
    ) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        let cache_key = [tenant.as_bytes(), b"\x1f", wrapped].concat();
        {
            let mut cache = lock(&self.decrypt_keys);
            if let Some(k) = cache.get_mut(&cache_key) {
                if self.fresh(k) {
                    k.uses += 1;
                    return Ok(k.plaintext.clone());
                }
            }
        }
        let out = self
            .kms
            .decrypt()
            .key_id(&self.key_id)
            .ciphertext_blob(Blob::new(wrapped.to_vec()))
            .encryption_context("tenant", tenant)
            .send()
            .await
            .map_err(|e| kms_error(e, |_| CryptoError::Integrity))?;
        let plain = out.plaintext().ok_or(CryptoError::Malformed)?.as_ref();
        if plain.len() != 32 {
            return Err(CryptoError::Malformed);
        }
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(plain);
        let mut cache = lock(&self.decrypt_keys);
        if cache.len() >= self.limits.max_entries {
            cache.clear();
        }
        cache.insert(
            cache_key,
            CachedKey {
                plaintext: key.clone(),
                wrapped: Vec::new(),
                created: Instant::now(),
                uses: 1,
            },
        );
        Ok(key)
    }

    pub async fn encrypt(
        &self,
        ctx: &FieldContext<'_>,
        plaintext: &[u8],
    ) -> Result<String, CryptoError> {
        let (key, wrapped) = self.data_key(ctx.tenant).await?;
        let cipher = Aes256Gcm::new_from_slice(key.as_ref()).map_err(|_| CryptoError::Malformed)?;
        let nonce = random_bytes::<12>();
        let aad = ctx.aad();
        let ct = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Malformed)?;
        Ok(format!(
            "v1.{}.{}.{}",
            B64.encode(wrapped),
            B64.encode(nonce),
            B64.encode(ct)
        ))
    }

    pub async fn decrypt(
        &self,
        ctx: &FieldContext<'_>,
        blob: &str,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let mut parts = blob.split('.');
        let (Some("v1"), Some(w), Some(n), Some(c), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(CryptoError::Malformed);
        };
        let wrapped = B64.decode(w).map_err(|_| CryptoError::Malformed)?;
        let nonce = B64.decode(n).map_err(|_| CryptoError::Malformed)?;
        let ct = B64.decode(c).map_err(|_| CryptoError::Malformed)?;
        if nonce.len() != 12 {
            return Err(CryptoError::Malformed);
        }
        let key = self.unwrap_key(ctx.tenant, &wrapped).await?;
        let cipher = Aes256Gcm::new_from_slice(key.as_ref()).map_err(|_| CryptoError::Malformed)?;
        let aad = ctx.aad();
        cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &ct,
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Integrity)
    }

    pub async fn encrypt_str(
        &self,
        ctx: &FieldContext<'_>,
        value: &Phi<String>,
    ) -> Result<String, CryptoError> {
        self.encrypt(ctx, value.expose().as_bytes()).await
    }

    pub async fn decrypt_str(
        &self,
        ctx: &FieldContext<'_>,
        blob: &str,
    ) -> Result<Phi<String>, CryptoError> {
        let bytes = self.decrypt(ctx, blob).await?;
        String::from_utf8(bytes.to_vec())
            .map(Phi::new)
            .map_err(|_| CryptoError::Malformed)
    }
}

/// Keyed blind index (HMAC-SHA256) for exact-match lookups of encrypted values.
/// The purpose is mixed in so the same value indexes differently for email and phone.
#[derive(Clone)]
pub struct BlindIndex {
    key: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for BlindIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BlindIndex(«key»)")
    }
}

impl BlindIndex {
    pub fn new(key: &[u8]) -> Self {
        Self {
            key: Zeroizing::new(key.to_vec()),
        }
    }

    pub fn compute(&self, purpose: &str, normalized_value: &str) -> String {
        self.compute_bytes(purpose, normalized_value.as_bytes())
    }

    /// [`compute`](Self::compute) over bytes (a request body, which may hold a password).
    pub fn compute_bytes(&self, purpose: &str, value: &[u8]) -> String {
        B64.encode(hmac_sha256(
            &self.key,
            &[purpose.as_bytes(), b"\x1f", value],
        ))
    }
}

/// HMAC-SHA256 over the concatenation of `parts`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    #[allow(clippy::expect_used)]
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("hmac key of any length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// Constant-time comparison of two MACs or hashes.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phi_never_prints() {
        let p = Phi::new("Jane Canary".to_string());
        assert_eq!(format!("{p:?} {p}"), "«redacted» «redacted»");
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"Jane Canary\"");
    }

    #[test]
    fn blind_index_is_keyed_and_purpose_bound() {
        let a = BlindIndex::new(b"key-a");
        let b = BlindIndex::new(b"key-b");
        assert_eq!(a.compute("email", "x@y.zz"), a.compute("email", "x@y.zz"));
        assert_ne!(a.compute("email", "x@y.zz"), b.compute("email", "x@y.zz"));
        assert_ne!(a.compute("email", "x@y.zz"), a.compute("phone", "x@y.zz"));
        assert!(!a.compute("email", "x@y.zz").contains("x@y"));
    }

    #[test]
    fn tokens_are_random_and_hashes_stable() {
        assert_ne!(random_token(), random_token());
        assert_eq!(token_hash("abc"), token_hash("abc"));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
