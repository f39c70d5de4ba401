//! Platform secrets (token signing keys, blind-index key, cursor key): generated once,
//! sealed with KMS, handed to functions as ciphertext and opened once per cold start.
//!
//! They are sealed twice, under different encryption contexts: the *shared* document (index and
//! cursor keys, the signing keys' public halves) that every function opens
//! (`PLATFORM_SECRETS`, `purpose=platform-secrets`), and the *signing* document (the same plus
//! the private signing key) that only the auth function may open (`SIGNING_SECRETS`,
//! `purpose=token-signing`; its role alone may decrypt under that context).

use aws_sdk_kms::primitives::Blob;
use base64::{
    Engine, engine::general_purpose::STANDARD as B64STD,
    engine::general_purpose::URL_SAFE_NO_PAD as B64,
};
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto::{CryptoError, random_bytes};

const CONTEXT_KEY: &str = "purpose";
/// The encryption context of the shared document.
pub const SHARED_PURPOSE: &str = "platform-secrets";
/// The encryption context of the signing document.
pub const SIGNING_PURPOSE: &str = "token-signing";

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SecretsDoc {
    version: u8,
    signing_kid: String,
    /// Only in the signing document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signing_seed: Option<String>,
    signing_public_key: String,
    previous_keys: Vec<PublicKeyDoc>,
    blind_index_key: String,
    cursor_key: String,
}

#[derive(Serialize, Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct PublicKeyDoc {
    kid: String,
    public_key: String,
}

/// The opened secrets. Nothing here is ever logged.
pub struct PlatformSecrets {
    pub signing_kid: String,
    /// Only where the signing document was opened (the auth function).
    pub signing_key: Option<SigningKey>,
    pub signing_public: VerifyingKey,
    /// Public keys of earlier signing keys, still accepted until their tokens expire.
    pub previous_keys: Vec<(String, VerifyingKey)>,
    pub blind_index_key: Zeroizing<Vec<u8>>,
    pub cursor_key: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for PlatformSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformSecrets")
            .field("signing_kid", &self.signing_kid)
            .finish_non_exhaustive()
    }
}

fn new_kid() -> String {
    format!("k-{}", &B64.encode(random_bytes::<9>()))
}

impl PlatformSecrets {
    pub fn generate() -> Self {
        let key = SigningKey::from_bytes(&random_bytes::<32>());
        Self {
            signing_kid: new_kid(),
            signing_public: key.verifying_key(),
            signing_key: Some(key),
            previous_keys: Vec::new(),
            blind_index_key: Zeroizing::new(random_bytes::<32>().to_vec()),
            cursor_key: Zeroizing::new(random_bytes::<32>().to_vec()),
        }
    }

    /// A new signing key; the current one's public half stays valid (one previous key kept).
    pub fn rotate_signing_key(mut self) -> Self {
        let old = (self.signing_kid.clone(), self.signing_public);
        let key = SigningKey::from_bytes(&random_bytes::<32>());
        self.previous_keys = vec![old];
        self.signing_kid = new_kid();
        self.signing_public = key.verifying_key();
        self.signing_key = Some(key);
        self
    }

    /// The document, with the private signing key only when `signing`.
    fn to_doc(&self, signing: bool) -> SecretsDoc {
        SecretsDoc {
            version: 2,
            signing_kid: self.signing_kid.clone(),
            signing_seed: self
                .signing_key
                .as_ref()
                .filter(|_| signing)
                .map(|k| B64.encode(k.to_bytes())),
            signing_public_key: B64.encode(self.signing_public.to_bytes()),
            previous_keys: self
                .previous_keys
                .iter()
                .map(|(kid, k)| PublicKeyDoc {
                    kid: kid.clone(),
                    public_key: B64.encode(k.to_bytes()),
                })
                .collect(),
            blind_index_key: B64.encode(self.blind_index_key.as_slice()),
            cursor_key: B64.encode(self.cursor_key.as_slice()),
        }
    }

    fn from_doc(doc: SecretsDoc) -> Result<Self, CryptoError> {
        let bytes32 = |s: &str| -> Result<[u8; 32], CryptoError> {
            B64.decode(s)
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or(CryptoError::Malformed)
        };
        let signing_key = doc
            .signing_seed
            .as_deref()
            .map(|s| bytes32(s).map(|b| SigningKey::from_bytes(&b)))
            .transpose()?;
        let signing_public = VerifyingKey::from_bytes(&bytes32(&doc.signing_public_key)?)
            .map_err(|_| CryptoError::Malformed)?;
        if signing_key
            .as_ref()
            .is_some_and(|k| k.verifying_key() != signing_public)
        {
            return Err(CryptoError::Malformed);
        }
        let mut previous_keys = Vec::new();
        for p in doc.previous_keys {
            let bytes: [u8; 32] = B64
                .decode(&p.public_key)
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or(CryptoError::Malformed)?;
            let key = VerifyingKey::from_bytes(&bytes).map_err(|_| CryptoError::Malformed)?;
            previous_keys.push((p.kid, key));
        }
        let decode = |s: &str| {
            B64.decode(s)
                .map(Zeroizing::new)
                .map_err(|_| CryptoError::Malformed)
        };
        Ok(Self {
            signing_kid: doc.signing_kid,
            signing_key,
            signing_public,
            previous_keys,
            blind_index_key: decode(&doc.blind_index_key)?,
            cursor_key: decode(&doc.cursor_key)?,
        })
    }

    /// Seals both documents under the KMS key: `shared` goes into every function's
    /// `PLATFORM_SECRETS`, `signing` into the auth function's `SIGNING_SECRETS`.
    pub async fn seal(
        &self,
        kms: &aws_sdk_kms::Client,
        key_id: &str,
    ) -> Result<Sealed, CryptoError> {
        if self.signing_key.is_none() {
            return Err(CryptoError::Malformed);
        }
        Ok(Sealed {
            shared: seal_doc(kms, key_id, &self.to_doc(false), SHARED_PURPOSE).await?,
            signing: seal_doc(kms, key_id, &self.to_doc(true), SIGNING_PURPOSE).await?,
        })
    }

    /// Decrypts `PLATFORM_SECRETS` (one KMS call per cold start): no private signing key.
    pub async fn open(
        kms: &aws_sdk_kms::Client,
        ciphertext_b64: &str,
    ) -> Result<Self, CryptoError> {
        open_doc(kms, ciphertext_b64, SHARED_PURPOSE).await
    }

    /// Decrypts `SIGNING_SECRETS` (the auth function's one KMS call per cold start).
    pub async fn open_signing(
        kms: &aws_sdk_kms::Client,
        ciphertext_b64: &str,
    ) -> Result<Self, CryptoError> {
        let s = open_doc(kms, ciphertext_b64, SIGNING_PURPOSE).await?;
        if s.signing_key.is_none() {
            return Err(CryptoError::Malformed);
        }
        Ok(s)
    }
}

/// The two sealed documents.
#[derive(Debug, Clone)]
pub struct Sealed {
    pub shared: String,
    pub signing: String,
}

async fn seal_doc(
    kms: &aws_sdk_kms::Client,
    key_id: &str,
    doc: &SecretsDoc,
    purpose: &str,
) -> Result<String, CryptoError> {
    let json = Zeroizing::new(serde_json::to_vec(doc).map_err(|_| CryptoError::Malformed)?);
    let out = kms
        .encrypt()
        .key_id(key_id)
        .plaintext(Blob::new(json.to_vec()))
        .encryption_context(CONTEXT_KEY, purpose)
        .send()
        .await
        .map_err(|e| CryptoError::Kms(aws_sdk_kms::error::DisplayErrorContext(e).to_string()))?;
    let blob = out.ciphertext_blob().ok_or(CryptoError::Malformed)?;
    Ok(B64STD.encode(blob.as_ref()))
}

async fn open_doc(
    kms: &aws_sdk_kms::Client,
    ciphertext_b64: &str,
    purpose: &str,
) -> Result<PlatformSecrets, CryptoError> {
    let blob = B64STD
        .decode(ciphertext_b64.trim())
        .map_err(|_| CryptoError::Malformed)?;
    let out = kms
        .decrypt()
        .ciphertext_blob(Blob::new(blob))
        .encryption_context(CONTEXT_KEY, purpose)
        .send()
        .await
        .map_err(|e| CryptoError::Kms(aws_sdk_kms::error::DisplayErrorContext(e).to_string()))?;
    let plain = Zeroizing::new(
        out.plaintext()
            .ok_or(CryptoError::Malformed)?
            .as_ref()
            .to_vec(),
    );
    let doc: SecretsDoc = serde_json::from_slice(&plain).map_err(|_| CryptoError::Malformed)?;
    PlatformSecrets::from_doc(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_round_trip_keeps_keys() {
        let s = PlatformSecrets::generate().rotate_signing_key();
        let back = PlatformSecrets::from_doc(s.to_doc(true)).unwrap();
        assert_eq!(back.signing_kid, s.signing_kid);
        let seed = |p: &PlatformSecrets| p.signing_key.as_ref().unwrap().to_bytes();
        assert_eq!(seed(&back), seed(&s));
        assert_eq!(back.previous_keys.len(), 1);
        assert_eq!(
            back.blind_index_key.as_slice(),
            s.blind_index_key.as_slice()
        );
        assert!(!format!("{s:?}").contains(&B64.encode(seed(&s))));
    }

    #[test]
    fn the_shared_document_holds_no_private_key() {
        let s = PlatformSecrets::generate();
        let doc = serde_json::to_string(&s.to_doc(false)).unwrap();
        let seed = B64.encode(s.signing_key.as_ref().unwrap().to_bytes());
        assert!(!doc.contains(&seed));
        let shared = PlatformSecrets::from_doc(s.to_doc(false)).unwrap();
        assert!(shared.signing_key.is_none());
        assert_eq!(shared.signing_public, s.signing_public);
    }
}
