//! Access tokens: compact JWS with EdDSA (Ed25519), `kid`, `typ=at+jwt`, `iss`, `aud`, `exp`,
//! `nbf`, encoded and verified with the `jsonwebtoken` crate; verification accepts nothing else
//! (no `none`, no HMAC, no unknown key, no `crit`, at most 5 s of clock skew). JWKS output.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use ed25519_dalek::{SigningKey, VerifyingKey, pkcs8::EncodePrivateKey};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};

use crate::ids::{SessionId, UserId};
use crate::secrets::PlatformSecrets;

/// Access tokens live 15 minutes.
pub const ACCESS_TOKEN_SECONDS: i64 = 15 * 60;
/// Allowed clock skew when checking `exp` and `nbf`.
const LEEWAY_SECONDS: i64 = 5;
/// Longer tokens are refused before any parsing.
const MAX_TOKEN_BYTES: usize = 4096;
const TOKEN_TYPE: &str = "at+jwt";
const ALGORITHM: &str = "EdDSA";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub sid: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub jti: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is malformed")]
    Malformed,
    #[error("token algorithm is not accepted")]
    Algorithm,
    #[error("token type is not an access token")]
    Type,
    #[error("token key is unknown")]
    UnknownKey,
    #[error("token signature is invalid")]
    Signature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token issuer is wrong")]
    Issuer,
    #[error("token audience is wrong")]
    Audience,
    #[error("token subject is invalid")]
    Subject,
    #[error("this function holds no signing key")]
    CannotSign,
}

/// A freshly issued access token.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub expires_at: i64,
}

/// The signing key (only where tokens are issued) plus every key still accepted for
/// verification.
pub struct KeySet {
    kid: String,
    signing: Option<EncodingKey>,
    verifiers: Vec<(String, VerifyingKey, DecodingKey)>,
    validation: Validation,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("kid", &self.kid)
            .field("signs", &self.signing.is_some())
            .finish_non_exhaustive()
    }
}

fn encoding_key(key: &SigningKey) -> Option<EncodingKey> {
    key.to_pkcs8_der()
        .ok()
        .map(|der| EncodingKey::from_ed_der(der.as_bytes()))
}

impl KeySet {
    /// Keys that verify, and sign where the secrets hold the private key.
    pub fn from_secrets(secrets: &PlatformSecrets, issuer: &str, audience: &str) -> Self {
        let mut verifiers = vec![(secrets.signing_kid.clone(), secrets.signing_public)];
        verifiers.extend(secrets.previous_keys.iter().cloned());
        Self::new(
            secrets.signing_kid.clone(),
            secrets.signing_key.as_ref().and_then(encoding_key),
            verifiers,
            issuer,
            audience,
        )
    }

    fn new(
        kid: String,
        signing: Option<EncodingKey>,
        keys: Vec<(String, VerifyingKey)>,
        issuer: &str,
        audience: &str,
    ) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        // Time is checked against the injected clock below, with the same leeway.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = LEEWAY_SECONDS as u64;
        let verifiers = keys
            .into_iter()
            .filter_map(|(kid, vk)| {
                DecodingKey::from_ed_components(&B64.encode(vk.to_bytes()))
                    .ok()
                    .map(|dk| (kid, vk, dk))
            })
            .collect();
        Self {
            kid,
            signing,
            verifiers,
            validation,
        }
    }

    /// Whether this key set can issue tokens.
    pub fn signs(&self) -> bool {
        self.signing.is_some()
    }

    pub fn issue(
        &self,
        user: &UserId,
        session: &SessionId,
        now: i64,
    ) -> Result<IssuedToken, TokenError> {
        let key = self.signing.as_ref().ok_or(TokenError::CannotSign)?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(TOKEN_TYPE.into());
        header.kid = Some(self.kid.clone());
        let claims = AccessClaims {
            iss: self
                .validation
                .iss
                .iter()
                .flatten()
                .next()
                .cloned()
                .unwrap_or_default(),
            aud: self
                .validation
                .aud
                .iter()
                .flatten()
                .next()
                .cloned()
                .unwrap_or_default(),
            sub: user.to_string(),
            sid: session.to_string(),
            iat: now,
            nbf: now,
            exp: now + ACCESS_TOKEN_SECONDS,
            jti: uuid::Uuid::new_v4().to_string(),
        };
        let token =
            jsonwebtoken::encode(&header, &claims, key).map_err(|_| TokenError::CannotSign)?;
        Ok(IssuedToken {
            token,
            expires_at: claims.exp,
        })
    }

    /// Verifies signature and claims. Pure CPU: no I/O happens before a token is proven genuine.
    pub fn verify(&self, token: &str, now: i64) -> Result<AccessClaims, TokenError> {
        if token.len() > MAX_TOKEN_BYTES || token.split('.').count() != 3 {
            return Err(TokenError::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
            ErrorKind::InvalidAlgorithmName | ErrorKind::InvalidAlgorithm => TokenError::Algorithm,
            _ => TokenError::Malformed,
        })?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::Algorithm);
        }
        if header.crit.is_some() {
            return Err(TokenError::Malformed);
        }
        if header.typ.as_deref() != Some(TOKEN_TYPE) {
            return Err(TokenError::Type);
        }
        let kid = header.kid.ok_or(TokenError::UnknownKey)?;
        let key = self
            .verifiers
            .iter()
            .find(|(k, _, _)| *k == kid)
            .map(|(_, _, d)| d)
            .ok_or(TokenError::UnknownKey)?;
        let claims = jsonwebtoken::decode::<AccessClaims>(token, key, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => TokenError::Signature,
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    TokenError::Algorithm
                }
                ErrorKind::InvalidIssuer => TokenError::Issuer,
                ErrorKind::InvalidAudience => TokenError::Audience,
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                _ => TokenError::Malformed,
            })?
            .claims;
        if now >= claims.exp + LEEWAY_SECONDS {
            return Err(TokenError::Expired);
        }
        if claims.nbf > now + LEEWAY_SECONDS {
            return Err(TokenError::NotYetValid);
        }
        if UserId::parse(&claims.sub).is_none() || SessionId::parse(&claims.sid).is_none() {
            return Err(TokenError::Subject);
        }
        Ok(claims)
    }

    /// The JSON Web Key Set of every key still accepted.
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<_> = self
            .verifiers
            .iter()
            .map(|(kid, key, _)| {
                serde_json::json!({
                    "kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": ALGORITHM,
                    "kid": kid, "x": B64.encode(key.to_bytes()),
                })
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::Signer;
    use hmac::{Hmac, Mac};
    use sha2::Sha256;

    /// A token signed by hand, for forgeries the library would never produce.
    fn sign_parts<H: Serialize, C: Serialize>(key: &SigningKey, header: &H, claims: &C) -> String {
        let h = B64.encode(serde_json::to_vec(header).unwrap());
        let p = B64.encode(serde_json::to_vec(claims).unwrap());
        let input = format!("{h}.{p}");
        let sig = key.sign(input.as_bytes());
        format!("{input}.{}", B64.encode(sig.to_bytes()))
    }

    const NOW: i64 = 1_800_000_000;

    fn keyset() -> (KeySet, PlatformSecrets) {
        let s = PlatformSecrets::generate();
        (KeySet::from_secrets(&s, "iss-a", "aud-a"), s)
    }

    fn ids() -> (UserId, SessionId) {
        (UserId::generate(), SessionId::generate())
    }

    fn claims(now: i64) -> AccessClaims {
        let (u, s) = ids();
        AccessClaims {
            iss: "iss-a".into(),
            aud: "aud-a".into(),
            sub: u.to_string(),
            sid: s.to_string(),
            iat: now,
            nbf: now,
            exp: now + 900,
            jti: "j".into(),
        }
    }

    fn header(alg: &str, kid: &str) -> serde_json::Value {
        serde_json::json!({"alg": alg, "typ": "at+jwt", "kid": kid})
    }

    #[test]
    fn issued_tokens_verify() {
        let (ks, _) = keyset();
        let (u, s) = ids();
        let t = ks.issue(&u, &s, NOW).unwrap();
        let c = ks.verify(&t.token, NOW + 10).unwrap();
        assert_eq!(c.sub, u.to_string());
        assert_eq!(c.sid, s.to_string());
        assert_eq!(t.expires_at, NOW + ACCESS_TOKEN_SECONDS);
    }

    #[test]
    fn hostile_tokens_are_refused() {
        let (ks, secrets) = keyset();
        let kid = secrets.signing_kid.clone();
        let (u, s) = ids();
        let good = ks.issue(&u, &s, NOW).unwrap().token;

        // alg=none with an empty signature.
        let none = format!(
            "{}.{}.",
            B64.encode(serde_json::to_vec(&header("none", &kid)).unwrap()),
            B64.encode(serde_json::to_vec(&claims(NOW)).unwrap())
        );
        assert!(matches!(
            ks.verify(&none, NOW),
            Err(TokenError::Algorithm | TokenError::Malformed)
        ));

        // HS256 keyed with the public key (the classic key-confusion attack).
        let h = B64.encode(serde_json::to_vec(&header("HS256", &kid)).unwrap());
        let p = B64.encode(serde_json::to_vec(&claims(NOW)).unwrap());
        let mut mac = Hmac::<Sha256>::new_from_slice(&secrets.signing_public.to_bytes()).unwrap();
        mac.update(format!("{h}.{p}").as_bytes());
        let hs = format!("{h}.{p}.{}", B64.encode(mac.finalize().into_bytes()));
        assert_eq!(ks.verify(&hs, NOW), Err(TokenError::Algorithm));

        // Signed by a key the verifier does not know, under an unknown and a known kid.
        let other = SigningKey::from_bytes(&crate::crypto::random_bytes::<32>());
        assert_eq!(
            ks.verify(
                &sign_parts(&other, &header("EdDSA", "k-unknown"), &claims(NOW)),
                NOW
            ),
            Err(TokenError::UnknownKey)
        );
        assert_eq!(
            ks.verify(
                &sign_parts(&other, &header("EdDSA", &kid), &claims(NOW)),
                NOW
            ),
            Err(TokenError::Signature)
        );

        // Expired, not yet valid, wrong issuer, wrong audience.
        let sk = secrets.signing_key.as_ref().unwrap();
        let mut c = claims(NOW - 2000);
        assert_eq!(
            ks.verify(&sign_parts(sk, &header("EdDSA", &kid), &c), NOW),
            Err(TokenError::Expired)
        );
        c = claims(NOW);
        c.nbf = NOW + 600;
        assert_eq!(
            ks.verify(&sign_parts(sk, &header("EdDSA", &kid), &c), NOW),
            Err(TokenError::NotYetValid)
        );
        c = claims(NOW);
        c.iss = "evil".into();
        assert_eq!(
            ks.verify(&sign_parts(sk, &header("EdDSA", &kid), &c), NOW),
            Err(TokenError::Issuer)
        );
        c = claims(NOW);
        c.aud = "other-api".into();
        assert_eq!(
            ks.verify(&sign_parts(sk, &header("EdDSA", &kid), &c), NOW),
            Err(TokenError::Audience)
        );

        // Wrong typ (e.g. an ID token) is refused.
        let id_header = serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": kid});
        assert_eq!(
            ks.verify(&sign_parts(sk, &id_header, &claims(NOW)), NOW),
            Err(TokenError::Type)
        );

        // Tampered payload: swap in another subject, keep the signature.
        let mut parts: Vec<&str> = good.split('.').collect();
        let forged = B64.encode(serde_json::to_vec(&claims(NOW)).unwrap());
        parts[1] = &forged;
        assert_eq!(ks.verify(&parts.join("."), NOW), Err(TokenError::Signature));

        // Garbage.
        for junk in ["", "a.b", "a.b.c.d", "....", &"x".repeat(5000)] {
            assert!(ks.verify(junk, NOW).is_err());
        }
    }

    #[test]
    fn keys_opened_from_the_shared_document_verify_but_cannot_sign() {
        let s = PlatformSecrets::generate();
        let signer = KeySet::from_secrets(&s, "i", "a");
        let (u, sid) = ids();
        let t = signer.issue(&u, &sid, NOW).unwrap().token;
        let mut shared = PlatformSecrets::generate();
        shared.signing_kid = s.signing_kid.clone();
        shared.signing_public = s.signing_public;
        shared.signing_key = None;
        let verifier = KeySet::from_secrets(&shared, "i", "a");
        assert!(!verifier.signs());
        assert!(verifier.verify(&t, NOW).is_ok());
        assert_eq!(
            verifier.issue(&u, &sid, NOW).unwrap_err(),
            TokenError::CannotSign
        );
    }

    #[test]
    fn previous_key_still_verifies_after_rotation() {
        let s = PlatformSecrets::generate();
        let old = KeySet::from_secrets(&s, "i", "a");
        let (u, sid) = ids();
        let t = old.issue(&u, &sid, NOW).unwrap().token;
        let rotated = s.rotate_signing_key();
        let new = KeySet::from_secrets(&rotated, "i", "a");
        assert!(new.verify(&t, NOW).is_ok());
        assert_eq!(new.jwks()["keys"].as_array().unwrap().len(), 2);
    }
}
