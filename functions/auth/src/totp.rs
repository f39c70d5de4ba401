//! Two-step sign-in rules with no I/O: time-based one-time codes (RFC 6238: HMAC-SHA1, six
//! digits, 30-second steps), single-use recovery codes, the login's MFA challenge token and the
//! `otpauth://` address an authenticator app scans.

use shared::{
    crypto::{constant_time_eq, random_bytes, random_token},
    ids::UserId,
};
use totp_rs::{Algorithm, Secret, TOTP};

pub const DIGITS: usize = 6;
pub const PERIOD_SECONDS: i64 = 30;
/// Codes of one step either side of now are taken: a phone's clock drifts, and a code typed
/// at the end of its window arrives in the next.
pub const SKEW_STEPS: i64 = 1;
/// 160 bits, the length RFC 4226 recommends for HMAC-SHA1.
pub const SECRET_BYTES: usize = 20;
pub const RECOVERY_CODES: usize = 10;
/// 80 bits each: far beyond guessing, and beyond an offline search of their stored hashes.
const RECOVERY_CODE_BYTES: usize = 10;
/// What authenticator apps show above the account.
pub const ISSUER: &str = "Clinic Practice";
/// A started enrolment must be confirmed within this time.
pub const ENROLMENT_SECONDS: i64 = 15 * 60;
/// The time between a right password and its second step.
pub const CHALLENGE_SECONDS: i64 = 5 * 60;

fn totp(secret: &[u8]) -> Option<TOTP> {
    TOTP::new(
        Algorithm::SHA1,
        DIGITS,
        0,
        PERIOD_SECONDS.unsigned_abs(),
        secret.to_vec(),
    )
    .ok()
}

/// The 30-second step a moment falls in.
pub fn step_of(unix: i64) -> i64 {
    unix.div_euclid(PERIOD_SECONDS)
}

/// The code of the step `unix` falls in (what the user's authenticator shows then).
pub fn code_at(secret: &[u8], unix: i64) -> Option<String> {
    let t = u64::try_from(unix).ok()?;
    Some(totp(secret)?.generate(t))
}

/// The step a presented code belongs to, if it is right within the skew of `now` and later
/// than `after` (the last step accepted: a code is taken once, RFC 6238 section 5.2).
pub fn matching_step(secret: &[u8], code: &str, now: i64, after: i64) -> Option<i64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != DIGITS || !code.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let current = step_of(now);
    let mut found = None;
    // Every candidate is compared, so the time taken does not tell which step matched.
    for step in (current - SKEW_STEPS)..=(current + SKEW_STEPS) {
        let Some(expected) = code_at(secret, step * PERIOD_SECONDS) else {
            continue;
        };
        if constant_time_eq(expected.as_bytes(), code.as_bytes()) && step > after {
            found = Some(step);
        }
    }
    found
}

/// The secret as authenticator apps take it (RFC 4648 base32).
pub fn secret_base32(secret: &[u8]) -> String {
    Secret::Raw(secret.to_vec()).to_encoded().to_string()
}

/// A base32 secret back to bytes (for the demo's fixed secret and for tests).
pub fn secret_from_base32(encoded: &str) -> Option<Vec<u8>> {
    Secret::Encoded(encoded.to_string()).to_bytes().ok()
}

pub fn new_secret() -> [u8; SECRET_BYTES] {
    random_bytes::<SECRET_BYTES>()
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode_component(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The key-URI an authenticator app scans: issuer, the account's address, and the parameters.
pub fn otpauth_uri(secret: &[u8], account: &str) -> String {
    format!(
        "otpauth://totp/{issuer}:{account}?secret={secret}&issuer={issuer}&algorithm=SHA1&digits={DIGITS}&period={PERIOD_SECONDS}",
        issuer = encode_component(ISSUER),
        account = encode_component(account),
        secret = secret_base32(secret),
    )
}

/// Fresh recovery codes as shown once to the user: `XXXX-XXXX-XXXX-XXXX`.
pub fn new_recovery_codes() -> Vec<String> {
    (0..RECOVERY_CODES)
        .map(|_| {
            let raw = secret_base32(&random_bytes::<RECOVERY_CODE_BYTES>());
            raw.as_bytes()
                .chunks(4)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect::<Vec<_>>()
                .join("-")
        })
        .collect()
}

/// A recovery code as typed (any case, with or without dashes and spaces) in its canonical
/// form, the one whose hash is kept; `None` if it cannot be one.
pub fn normalize_recovery_code(typed: &str) -> Option<String> {
    let canonical: String = typed
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let ok = canonical.len() == 16
        && canonical
            .chars()
            .all(|c| c.is_ascii_uppercase() || ('2'..='7').contains(&c));
    ok.then_some(canonical)
}

/// What a right password earns an account with two-step sign-in: a short-lived challenge to
/// present with a code. Only the secret's hash is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub user: UserId,
    pub id: String,
    pub secret: String,
}

impl Challenge {
    pub fn new(user: &UserId) -> Self {
        Self {
            user: user.clone(),
            id: uuid::Uuid::new_v4().to_string(),
            secret: random_token(),
        }
    }

    pub fn format(&self) -> String {
        format!("mfa1.{}.{}.{}", self.user, self.id, self.secret)
    }

    pub fn parse(raw: &str) -> Option<Self> {
        let (u, id, secret) = crate::rules::token_parts(raw, "mfa1")?;
        let id = uuid::Uuid::parse_str(id).ok()?.to_string();
        Some(Self {
            user: UserId::parse(u)?,
            id,
            secret: secret.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 6238 appendix B: the SHA-1 seed and its eight-digit values; six digits are the last six.
    const RFC_SEED: &[u8] = b"12345678901234567890";

    #[test]
    fn codes_are_those_of_rfc_6238() {
        for (t, eight) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
        ] {
            assert_eq!(code_at(RFC_SEED, t).unwrap(), eight[2..], "t={t}");
        }
    }

    #[test]
    fn a_code_is_taken_within_one_step_and_only_once() {
        let secret = new_secret();
        let now = 1_700_000_000;
        let code = code_at(&secret, now).unwrap();
        let step = step_of(now);
        assert_eq!(matching_step(&secret, &code, now, 0), Some(step));
        assert_eq!(matching_step(&secret, &code, now + 30, 0), Some(step));
        assert_eq!(matching_step(&secret, &code, now - 30, 0), Some(step));
        assert_eq!(matching_step(&secret, &code, now + 90, 0), None);
        // Replay: the step was already accepted.
        assert_eq!(matching_step(&secret, &code, now, step), None);
        let spaced = format!("{} {}", &code[..3], &code[3..]);
        assert_eq!(matching_step(&secret, &spaced, now, 0), Some(step));
        assert_eq!(matching_step(&secret, "12345", now, 0), None);
        assert_eq!(matching_step(&secret, "abcdef", now, 0), None);
    }

    #[test]
    fn secrets_round_trip_through_base32_and_the_key_uri() {
        let secret = new_secret();
        let b32 = secret_base32(&secret);
        assert_eq!(b32.len(), 32);
        assert_eq!(secret_from_base32(&b32).unwrap(), secret.to_vec());
        let uri = otpauth_uri(&secret, "sam+x@demo.clinic");
        assert!(uri.starts_with("otpauth://totp/Clinic%20Practice:sam%2Bx%40demo.clinic?secret="));
        assert!(uri.contains(&format!("secret={b32}&issuer=Clinic%20Practice")));
        assert!(uri.ends_with("&algorithm=SHA1&digits=6&period=30"));
    }

    #[test]
    fn recovery_codes_are_distinct_and_normalize_as_typed() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODES);
        let unique: std::collections::BTreeSet<_> = codes.iter().collect();
        assert_eq!(unique.len(), RECOVERY_CODES);
        let first = &codes[0];
        assert_eq!(first.len(), 19);
        let canonical = normalize_recovery_code(first).unwrap();
        assert_eq!(
            normalize_recovery_code(&first.to_lowercase().replace('-', " ")),
            Some(canonical)
        );
        assert_eq!(normalize_recovery_code("too-short"), None);
        assert_eq!(normalize_recovery_code("AAAA-AAAA-AAAA-AAA1"), None);
    }

    #[test]
    fn challenges_parse_only_in_their_own_shape() {
        let user = UserId::generate();
        let c = Challenge::new(&user);
        assert_eq!(Challenge::parse(&c.format()), Some(c.clone()));
        assert_eq!(
            Challenge::parse(&c.format().replacen("mfa1", "rt1", 1)),
            None
        );
        assert_eq!(Challenge::parse(&format!("{}x", c.format())), None);
        assert_eq!(Challenge::parse("mfa1.a.b.c"), None);
    }
}
