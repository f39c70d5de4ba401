//! Authentication rules with no I/O: password policy, request limits, token lifetimes, session limits,
//! refresh-token format and reuse classification.

use shared::ids::{SessionId, UserId};

pub const MIN_PASSWORD_CHARS: usize = 10;
/// Bounds the hashing work an attacker can demand per request.
pub const MAX_PASSWORD_CHARS: usize = 256;
/// Request limits of the auth routes (fixed windows, per source address or per account). The
/// per-source limits are brakes on one host, generous enough for a clinic's staff behind one
/// address; password guesses have their own backoff per (account, source), which is what stops
/// guessing (see `shared::throttle` and ADR 0013).
pub mod limits {
    use shared::throttle::Limit;

    const MINUTE: i64 = 60;
    const HOUR: i64 = 60 * MINUTE;

    /// Logins from one address, whatever the account (a guesser trying many accounts).
    pub const LOGIN_PER_SOURCE: Limit = Limit {
        purpose: "login.source",
        max: 300,
        window_seconds: MINUTE,
    };
    pub const REGISTER_PER_SOURCE: Limit = Limit {
        purpose: "register.source",
        max: 100,
        window_seconds: HOUR,
    };
    /// Refreshes from one address (a client refreshes every 15 minutes per session).
    pub const REFRESH_PER_SOURCE: Limit = Limit {
        purpose: "refresh.source",
        max: 600,
        window_seconds: MINUTE,
    };
    pub const FORGOT_PER_SOURCE: Limit = Limit {
        purpose: "forgot.source",
        max: 100,
        window_seconds: HOUR,
    };
    /// Reset mails to one address (known or not: the answer never tells).
    pub const FORGOT_PER_ACCOUNT: Limit = Limit {
        purpose: "forgot.account",
        max: 5,
        window_seconds: HOUR,
    };
    /// Links presented (reset, verification, invitation) from one address.
    pub const LINKS_PER_SOURCE: Limit = Limit {
        purpose: "links.source",
        max: 100,
        window_seconds: HOUR,
    };
    /// New verification mails for one account.
    pub const RESEND_PER_ACCOUNT: Limit = Limit {
        purpose: "resend.account",
        max: 5,
        window_seconds: HOUR,
    };
}
pub const REFRESH_TOKEN_SECONDS: i64 = 7 * 24 * 60 * 60;
/// A session cannot be refreshed past this age, whatever the rotations.
pub const SESSION_MAX_SECONDS: i64 = 30 * 24 * 60 * 60;
pub const MAX_LIVE_SESSIONS: usize = 10;

/// The commonest passwords of ten or more characters (shorter ones fail the length rule).
const COMMON_PASSWORDS: &[&str] = &[
    "1234567890",
    "12345678910",
    "123456789a",
    "1234567890a",
    "0123456789",
    "0987654321",
    "9876543210",
    "1111111111",
    "0000000000",
    "1q2w3e4r5t",
    "1q2w3e4r5t6y",
    "1qaz2wsx3edc",
    "qwertyuiop",
    "qwertyuiop123",
    "qwerty1234",
    "qwerty12345",
    "qwerty123456",
    "asdfghjkl1",
    "password12",
    "password123",
    "password1234",
    "password12345",
    "password!1",
    "passw0rd123",
    "p@ssw0rd123",
    "p@ssword123",
    "iloveyou12",
    "iloveyou123",
    "welcome123",
    "welcome1234",
    "letmein123",
    "administrator",
    "admin12345",
    "admin123456",
    "abcdefghij",
    "abc1234567",
    "abcd123456",
    "princess123",
    "sunshine123",
    "football123",
    "baseball123",
    "monkey12345",
    "dragon12345",
    "superman123",
    "trustno1234",
    "changeme123",
    "zaq12wsxcde",
    "computer123",
    "starwars123",
    "whatever123",
    "michael123",
    "jennifer123",
    "123qweasdzxc",
    "1234qwerasdf",
];

/// Why a password is refused; the message never repeats the password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordProblem {
    TooShort,
    TooLong,
    TooCommon,
    ContainsEmail,
}

impl PasswordProblem {
    pub fn code(self) -> &'static str {
        match self {
            PasswordProblem::TooShort => "too_short",
            PasswordProblem::TooLong => "too_long",
            PasswordProblem::TooCommon => "too_common",
            PasswordProblem::ContainsEmail => "contains_email",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            PasswordProblem::TooShort => "Use at least 10 characters.",
            PasswordProblem::TooLong => "Use at most 256 characters.",
            PasswordProblem::TooCommon => "This password is too common; choose another.",
            PasswordProblem::ContainsEmail => "The password must not contain your email address.",
        }
    }
}

pub fn check_password(password: &str, email: Option<&str>) -> Result<(), PasswordProblem> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(PasswordProblem::TooShort);
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(PasswordProblem::TooLong);
    }
    let lower = password.to_lowercase();
    let first = lower.chars().next();
    if COMMON_PASSWORDS.contains(&lower.as_str()) || lower.chars().all(|c| Some(c) == first) {
        return Err(PasswordProblem::TooCommon);
    }
    if let Some(email) = email {
        let local = email.split('@').next().unwrap_or_default();
        if lower.contains(&email.to_lowercase())
            || (local.len() >= 4 && lower.contains(&local.to_lowercase()))
        {
            return Err(PasswordProblem::ContainsEmail);
        }
    }
    Ok(())
}

pub use shared::identity::valid_birth_date;

/// Sessions to evict so that at most [`MAX_LIVE_SESSIONS`] stay live: the oldest first.
pub fn sessions_to_evict(mut live: Vec<(i64, SessionId)>) -> Vec<SessionId> {
    if live.len() <= MAX_LIVE_SESSIONS {
        return Vec::new();
    }
    live.sort();
    let excess = live.len() - MAX_LIVE_SESSIONS;
    live.into_iter().take(excess).map(|(_, id)| id).collect()
}

/// When a refresh token issued at `now` for a session created at `created` expires.
pub fn refresh_expiry(created: i64, now: i64) -> i64 {
    (now + REFRESH_TOKEN_SECONDS).min(created + SESSION_MAX_SECONDS)
}

/// An opaque refresh token: `rt1.<userId>.<sessionId>.<secret>`. Only the secret's hash is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshToken {
    pub user: UserId,
    pub session: SessionId,
    pub secret: String,
}

/// The parts of an opaque token `<prefix>.<a>.<b>.<secret>` whose secret is 256 bits
/// (43 base64url characters), if it has that shape.
pub fn token_parts<'a>(raw: &'a str, prefix: &str) -> Option<(&'a str, &'a str, &'a str)> {
    let mut parts = raw.split('.');
    let (Some(p), Some(a), Some(b), Some(secret), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    (p == prefix && secret.len() == 43).then_some((a, b, secret))
}

impl RefreshToken {
    pub fn parse(raw: &str) -> Option<Self> {
        let (u, s, secret) = token_parts(raw, "rt1")?;
        Some(Self {
            user: UserId::parse(u)?,
            session: SessionId::parse(s)?,
            secret: secret.to_string(),
        })
    }

    pub fn format(&self) -> String {
        format!("rt1.{}.{}.{}", self.user, self.session, self.secret)
    }
}

/// Stored form of a superseded refresh-token hash: a 128-bit prefix keeps the set small.
pub fn used_hash_marker(hash: &str) -> String {
    hash.chars().take(22).collect()
}

/// What a presented refresh token is, compared with its session's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshCheck {
    /// The current token: rotate it.
    Current,
    /// A token this session already rotated away: someone is replaying it.
    Reused,
    /// Not a token of this session at all.
    Unknown,
}

pub fn classify_refresh(
    presented_hash: &str,
    current_hash: &str,
    used_markers: &[String],
) -> RefreshCheck {
    if shared::crypto::constant_time_eq(presented_hash.as_bytes(), current_hash.as_bytes()) {
        RefreshCheck::Current
    } else if used_markers.contains(&used_hash_marker(presented_hash)) {
        RefreshCheck::Reused
    } else {
        RefreshCheck::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_policy_table() {
        let cases: &[(&str, Option<&str>, Result<(), PasswordProblem>)] = &[
            ("short", None, Err(PasswordProblem::TooShort)),
            ("123456789", None, Err(PasswordProblem::TooShort)),
            ("1234567890", None, Err(PasswordProblem::TooCommon)),
            ("Password123", None, Err(PasswordProblem::TooCommon)),
            ("aaaaaaaaaaaa", None, Err(PasswordProblem::TooCommon)),
            (
                "zorro.fisk@mail.test1",
                Some("zorro.fisk@mail.test"),
                Err(PasswordProblem::ContainsEmail),
            ),
            (
                "my-zorro.fisk-pass",
                Some("zorro.fisk@mail.test"),
                Err(PasswordProblem::ContainsEmail),
            ),
            (
                "correct horse battery",
                Some("zorro.fisk@mail.test"),
                Ok(()),
            ),
            ("ünïcödé-pässwörd", None, Ok(())),
        ];
        for (pw, email, want) in cases {
            assert_eq!(check_password(pw, *email), *want, "{pw}");
        }
        assert_eq!(
            check_password(&"x1".repeat(200), None),
            Err(PasswordProblem::TooLong)
        );
    }

    #[test]
    fn birth_dates_are_strict() {
        let today = jiff::civil::date(2026, 11, 23);
        for ok in ["1990-04-01", "1900-01-01", "2026-11-23"] {
            assert!(valid_birth_date(ok, today), "{ok}");
        }
        for bad in [
            "19900401",
            "1990-04-01T10:00",
            "+001990-04-01",
            "2026-11-24",
            "1899-12-31",
            "1990-02-30",
            "1990-4-1",
        ] {
            assert!(!valid_birth_date(bad, today), "{bad}");
        }
    }

    #[test]
    fn evicts_only_the_oldest_beyond_the_limit() {
        let ids: Vec<SessionId> = (0..12).map(|_| SessionId::generate()).collect();
        let live: Vec<(i64, SessionId)> = ids
            .iter()
            .enumerate()
            .rev()
            .map(|(i, s)| (i as i64, s.clone()))
            .collect();
        assert_eq!(
            sessions_to_evict(live),
            vec![ids[0].clone(), ids[1].clone()]
        );
        assert!(sessions_to_evict(vec![(1, SessionId::generate())]).is_empty());
    }

    #[test]
    fn refresh_expiry_is_capped_by_session_age() {
        assert_eq!(refresh_expiry(0, 10), 10 + REFRESH_TOKEN_SECONDS);
        let late = SESSION_MAX_SECONDS - 100;
        assert_eq!(refresh_expiry(0, late), SESSION_MAX_SECONDS);
    }

    #[test]
    fn refresh_tokens_round_trip_and_reject_junk() {
        let t = RefreshToken {
            user: UserId::generate(),
            session: SessionId::generate(),
            secret: shared::crypto::random_token(),
        };
        assert_eq!(RefreshToken::parse(&t.format()), Some(t.clone()));
        for junk in [
            "",
            "rt1",
            "rt2.a.b.c",
            &format!("rt1.x.{}.{}", t.session, t.secret),
            &format!("{}.extra", t.format()),
        ] {
            assert!(RefreshToken::parse(junk).is_none(), "{junk}");
        }
    }

    #[test]
    fn classifies_presented_tokens() {
        let used = vec![used_hash_marker("old-hash-aaaaaaaaaaaaaaaaaaaaaaaa")];
        assert_eq!(classify_refresh("cur", "cur", &used), RefreshCheck::Current);
        assert_eq!(
            classify_refresh("old-hash-aaaaaaaaaaaaaaaaaaaaaaaa", "cur", &used),
            RefreshCheck::Reused
        );
        assert_eq!(
            classify_refresh("other", "cur", &used),
            RefreshCheck::Unknown
        );
    }
}
