//! Platform secrets (token signing keys, blind-index key, cursor key): generated once,
//! sealed with KMS, handed to functions as ciphertext and opened once per cold start.

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
const CONTEXT_VALUE: &str = "platform-secrets";

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SecretsDoc {
    version: u8,
    signing_kid: String,
    signing_seed: String,
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
    pub signing_key: SigningKey,
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
        Self {
            signing_kid: new_kid(),
            signing_key: SigningKey::from_bytes(&random_bytes::<32>()),
            previous_keys: Vec::new(),
            blind_index_key: Zeroizing::new(random_bytes::<32>().to_vec()),
            cursor_key: Zeroizing::new(random_bytes::<32>().to_vec()),
        }
    }

    /// A new signing key; the current one's public half stays valid (one previous key kept).
    pub fn rotate_signing_key(mut self) -> Self {
        let old = (self.signing_kid.clone(), self.signing_key.verifying_key());
        self.previous_keys = vec![old];
        self.signing_kid = new_kid();
        self.signing_key = SigningKey::from_bytes(&random_bytes::<32>());
        self
    }

    fn to_doc(&self) -> SecretsDoc {
        SecretsDoc {
            version: 1,
            signing_kid: self.signing_kid.clone(),
            signing_seed: B64.encode(self.signing_key.to_bytes()),
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
        let seed: [u8; 32] = B64
            .decode(&doc.signing_seed)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or(CryptoError::Malformed)?;
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
            signing_key: SigningKey::from_bytes(&seed),
            previous_keys,
            blind_index_key: decode(&doc.blind_index_key)?,
            cursor_key: decode(&doc.cursor_key)?,
        })
    }

    /// Encrypts the secrets under the KMS key; the result goes into `PLATFORM_SECRETS`.
    pub async fn seal(
        &self,
        kms: &aws_sdk_kms::Client,
        key_id: &str,
    ) -> Result<String, CryptoError> {
        let json =
            Zeroizing::new(serde_json::to_vec(&self.to_doc()).map_err(|_| CryptoError::Malformed)?);
        let out = kms
            .encrypt()
            .key_id(key_id)
            .plaintext(Blob::new(json.to_vec()))
            .encryption_context(CONTEXT_KEY, CONTEXT_VALUE)
            .send()
            .await
            .map_err(|e| {
                CryptoError::Kms(aws_sdk_kms::error::DisplayErrorContext(e).to_string())
            })?;
        let blob = out.ciphertext_blob().ok_or(CryptoError::Malformed)?;
        Ok(B64STD.encode(blob.as_ref()))
    }

    /// Decrypts `PLATFORM_SECRETS` (one KMS call per cold start).
    pub async fn open(
        kms: &aws_sdk_kms::Client,
        ciphertext_b64: &str,
    ) -> Result<Self, CryptoError> {
        let blob = B64STD
            .decode(ciphertext_b64.trim())
            .map_err(|_| CryptoError::Malformed)?;
        let out = kms
            .decrypt()
            .ciphertext_blob(Blob::new(blob))
            .encryption_context(CONTEXT_KEY, CONTEXT_VALUE)
            .send()
            .await
            .map_err(|e| {
                CryptoError::Kms(aws_sdk_kms::error::DisplayErrorContext(e).to_string())
            })?;
        let plain = Zeroizing::new(
            out.plaintext()
                .ok_or(CryptoError::Malformed)?
                .as_ref()
                .to_vec(),
        );
        let doc: SecretsDoc = serde_json::from_slice(&plain).map_err(|_| CryptoError::Malformed)?;
        Self::from_doc(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_round_trip_keeps_keys() {
        let s = PlatformSecrets::generate().rotate_signing_key();
        let back = PlatformSecrets::from_doc(s.to_doc()).unwrap();
        assert_eq!(back.signing_kid, s.signing_kid);
        assert_eq!(back.signing_key.to_bytes(), s.signing_key.to_bytes());
        assert_eq!(back.previous_keys.len(), 1);
        assert_eq!(
            back.blind_index_key.as_slice(),
            s.blind_index_key.as_slice()
        );
        assert!(!format!("{s:?}").contains(&B64.encode(s.signing_key.to_bytes())));
    }
}
