//! Configuration from the environment, failing fast with a message that names the variable.

use std::str::FromStr;

#[derive(Debug, thiserror::Error)]
#[error("configuration error: environment variable {name} {problem}")]
pub struct ConfigError {
    pub name: String,
    pub problem: String,
}

/// A variable that must be set and non-empty.
pub fn required(name: &str) -> Result<String, ConfigError> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v),
        Ok(_) => Err(ConfigError {
            name: name.into(),
            problem: "is empty".into(),
        }),
        Err(_) => Err(ConfigError {
            name: name.into(),
            problem: "is not set".into(),
        }),
    }
}

/// A variable with a default when unset.
pub fn optional(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// A typed variable with a default when unset; a value that does not parse is an error.
pub fn parsed<T: FromStr>(name: &str, default: T) -> Result<T, ConfigError> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().map_err(|_| ConfigError {
            name: name.into(),
            problem: format!("has an invalid value for {}", std::any::type_name::<T>()),
        }),
        _ => Ok(default),
    }
}

/// Settings every function needs.
#[derive(Debug, Clone)]
pub struct PlatformConfig {
    /// `TABLE_NAME`: the single DynamoDB table.
    pub table_name: String,
    /// `AUDIT_TABLE_NAME`: the append-only audit trail of every access to health information.
    pub audit_table_name: String,
    /// `KMS_KEY_ID`: key (id, ARN or alias) for envelope encryption of PHI.
    pub kms_key_id: String,
    /// `PLATFORM_SECRETS`: base64 KMS ciphertext of the index keys and the signing keys' public
    /// halves (every function).
    pub secrets_ciphertext: String,
    /// `SIGNING_SECRETS`: the same with the private signing key, under its own encryption
    /// context (only the function that issues tokens has it).
    pub signing_secrets_ciphertext: Option<String>,
    /// `JWT_ISSUER` and `JWT_AUDIENCE`: claims every access token carries.
    pub jwt_issuer: String,
    pub jwt_audience: String,
    /// `SESSION_CACHE_SECONDS`: how long a live-session check is trusted in a container.
    pub session_cache_seconds: u64,
}

impl PlatformConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let session_cache_seconds = parsed("SESSION_CACHE_SECONDS", 30u64)?;
        if session_cache_seconds > 60 {
            return Err(ConfigError {
                name: "SESSION_CACHE_SECONDS".into(),
                problem: "must be at most 60 (revocation must take effect within a minute)".into(),
            });
        }
        Ok(Self {
            table_name: required("TABLE_NAME")?,
            audit_table_name: required("AUDIT_TABLE_NAME")?,
            kms_key_id: required("KMS_KEY_ID")?,
            secrets_ciphertext: required("PLATFORM_SECRETS")?,
            signing_secrets_ciphertext: std::env::var("SIGNING_SECRETS")
                .ok()
                .filter(|s| !s.trim().is_empty()),
            jwt_issuer: optional("JWT_ISSUER", "https://auth.clinic.local"),
            jwt_audience: optional("JWT_AUDIENCE", "clinic-api"),
            session_cache_seconds,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_variable_is_named_in_the_error() {
        let err = required("SURELY_NOT_SET_ANYWHERE_4821").unwrap_err();
        assert_eq!(
            err.to_string(),
            "configuration error: environment variable SURELY_NOT_SET_ANYWHERE_4821 is not set"
        );
    }

    #[test]
    fn optional_falls_back_to_default() {
        assert_eq!(optional("SURELY_NOT_SET_ANYWHERE_4822", "x"), "x");
        assert_eq!(parsed("SURELY_NOT_SET_ANYWHERE_4823", 7u64).unwrap(), 7);
    }
}
