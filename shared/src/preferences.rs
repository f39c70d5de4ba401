//! A user's notification preferences: per category and channel on or off, and quiet hours in
//! the user's time zone. The users function stores them; the notification worker reads them at
//! send time. Account messages always go out, and are never held by quiet hours.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::{
    ApiError, FieldError,
    db::{Table, get_opt_s, n, s},
    ids::UserId,
    keys,
};

pub const CATEGORIES: [&str; 4] = ["appointments", "billing", "clinical", "account"];
pub const CHANNELS: [&str; 4] = ["email", "sms", "push", "inApp"];
/// The category that cannot be switched off or held.
pub const ACCOUNT: &str = "account";

/// Quiet hours: from `start` to `end` (`HH:MM`, wrapping past midnight when `end` is earlier)
/// in `timeZone`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QuietHours {
    pub start: String,
    pub end: String,
    pub time_zone: String,
}

/// What a user chose. Absent entries are on: a new user gets everything on every channel.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Preferences {
    /// category → channel → on.
    #[serde(default)]
    pub channels: BTreeMap<String, BTreeMap<String, bool>>,
    #[serde(default)]
    pub quiet_hours: Option<QuietHours>,
}

fn minutes(hh_mm: &str) -> Option<i64> {
    let (h, m) = hh_mm.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
    ((0..24).contains(&h) && (0..60).contains(&m)).then_some(h * 60 + m)
}

impl Preferences {
    /// Every rule a stored preference must keep, all reported at once.
    pub fn errors(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        for (category, channels) in &self.channels {
            if !CATEGORIES.contains(&category.as_str()) {
                errors.push(FieldError::new(
                    "channels",
                    "unknown_category",
                    "Categories are appointments, billing, clinical and account.",
                ));
                continue;
            }
            for (channel, on) in channels {
                if !CHANNELS.contains(&channel.as_str()) {
                    errors.push(FieldError::new(
                        "channels",
                        "unknown_channel",
                        "Channels are email, sms, push and inApp.",
                    ));
                } else if category == ACCOUNT && !on {
                    errors.push(FieldError::new(
                        "channels",
                        "always_on",
                        "Account messages (sign-in, password, memberships) cannot be switched off.",
                    ));
                }
            }
        }
        if let Some(q) = &self.quiet_hours {
            if minutes(&q.start).is_none() || minutes(&q.end).is_none() || q.start == q.end {
                errors.push(FieldError::new(
                    "quietHours",
                    "invalid_quiet_hours",
                    "Use start and end as HH:MM (24-hour clock), not the same time.",
                ));
            }
            if jiff::tz::TimeZone::get(&q.time_zone).is_err() {
                errors.push(FieldError::new(
                    "quietHours.timeZone",
                    "invalid_time_zone",
                    "Use an IANA time zone name, e.g. Europe/Berlin.",
                ));
            }
        }
        errors
    }

    /// Whether messages of `category` may go out on `channel` (account ones always may).
    pub fn allows(&self, category: &str, channel: &str) -> bool {
        category == ACCOUNT
            || self
                .channels
                .get(category)
                .and_then(|c| c.get(channel))
                .copied()
                .unwrap_or(true)
    }

    /// When the quiet hours holding `now` end (epoch seconds), or `None` outside them (and
    /// always for account messages).
    pub fn quiet_until(&self, category: &str, now: i64) -> Option<i64> {
        let q = self.quiet_hours.as_ref().filter(|_| category != ACCOUNT)?;
        let (start, end) = (minutes(&q.start)?, minutes(&q.end)?);
        let tz = jiff::tz::TimeZone::get(&q.time_zone).ok()?;
        let local = jiff::Timestamp::from_second(now).ok()?.to_zoned(tz);
        let at = i64::from(local.hour()) * 60 + i64::from(local.minute());
        let inside = if start < end {
            (start..end).contains(&at)
        } else {
            at >= start || at < end
        };
        if !inside {
            return None;
        }
        let today = local.date();
        let day = if start < end || at < end {
            today
        } else {
            today.tomorrow().ok()?
        };
        let end_time = jiff::civil::Time::new(
            i8::try_from(end / 60).ok()?,
            i8::try_from(end % 60).ok()?,
            0,
            0,
        )
        .ok()?;
        let ends = day
            .to_datetime(end_time)
            .to_zoned(local.time_zone().clone())
            .ok()?;
        Some(ends.timestamp().as_second())
    }
}

/// A user's stored preferences, or the defaults.
pub async fn load(table: &Table, user: &UserId) -> Result<Preferences, ApiError> {
    let item = table.get(keys::user_pk(user), keys::PREFERENCES_SK).await?;
    Ok(item
        .as_ref()
        .and_then(|i| get_opt_s(i, "preferences"))
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_default())
}

/// Replaces a user's preferences (validated by the caller).
pub async fn save(
    table: &Table,
    user: &UserId,
    prefs: &Preferences,
    now: i64,
) -> Result<(), ApiError> {
    let json = serde_json::to_string(prefs).map_err(ApiError::internal)?;
    table
        .client
        .put_item()
        .table_name(&table.name)
        .item(keys::PK, s(keys::user_pk(user)))
        .item(keys::SK, s(keys::PREFERENCES_SK))
        .item(keys::ENTITY, s("NOTIFICATION_PREFERENCES"))
        .item("preferences", s(json))
        .item("updatedAt", n(now))
        .send()
        .await
        .map_err(crate::db::fault)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiet(start: &str, end: &str) -> Preferences {
        Preferences {
            channels: BTreeMap::new(),
            quiet_hours: Some(QuietHours {
                start: start.into(),
                end: end.into(),
                time_zone: "Europe/Berlin".into(),
            }),
        }
    }

    fn at(s: &str) -> i64 {
        s.parse::<jiff::Timestamp>().unwrap().as_second()
    }

    #[test]
    fn everything_is_on_until_switched_off_and_account_mail_always_is() {
        let mut p = Preferences::default();
        assert!(p.allows("appointments", "email"));
        p.channels.insert(
            "appointments".into(),
            BTreeMap::from([("email".to_string(), false)]),
        );
        assert!(!p.allows("appointments", "email"));
        assert!(p.allows("appointments", "sms"));
        p.channels.insert(
            "account".into(),
            BTreeMap::from([("email".to_string(), false)]),
        );
        assert!(p.allows("account", "email"));
        let codes: Vec<_> = p.errors().into_iter().map(|e| e.code).collect();
        assert_eq!(codes, ["always_on"]);
    }

    #[test]
    fn quiet_hours_hold_until_their_end_in_the_users_zone_across_midnight() {
        let p = quiet("22:00", "07:00");
        // 23:30 in Berlin (UTC+1 in December): held until 07:00 the next morning.
        assert_eq!(
            p.quiet_until("appointments", at("2026-12-01T22:30:00Z")),
            Some(at("2026-12-02T06:00:00Z"))
        );
        // 06:00 Berlin: until 07:00 the same day.
        assert_eq!(
            p.quiet_until("appointments", at("2026-12-02T05:00:00Z")),
            Some(at("2026-12-02T06:00:00Z"))
        );
        assert_eq!(
            p.quiet_until("appointments", at("2026-12-02T12:00:00Z")),
            None
        );
        assert_eq!(p.quiet_until("account", at("2026-12-01T22:30:00Z")), None);
        let day = quiet("12:00", "13:00");
        assert_eq!(
            day.quiet_until("billing", at("2026-12-02T11:30:00Z")),
            Some(at("2026-12-02T12:00:00Z"))
        );
    }

    #[test]
    fn bad_quiet_hours_and_unknown_names_are_refused() {
        let mut p = quiet("25:00", "07:00");
        p.quiet_hours.as_mut().unwrap().time_zone = "Mars/Olympus".into();
        p.channels.insert(
            "marketing".into(),
            BTreeMap::from([("email".to_string(), true)]),
        );
        let codes: Vec<_> = p.errors().into_iter().map(|e| e.code).collect();
        assert_eq!(
            codes,
            [
                "unknown_category",
                "invalid_quiet_hours",
                "invalid_time_zone"
            ]
        );
    }
}
