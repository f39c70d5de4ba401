//! Throttles kept in the table: fixed-window counters per (purpose, key) for routes that cost
//! or mail something, and per-(account, source) backoff for password guesses. Keys (addresses,
//! account ids) are stored only as keyed hashes; every item expires by TTL.
//!
//! Both reserve the attempt atomically before the work is done, so parallel requests cannot
//! all get through, and refuse with 429 and `Retry-After`.

use aws_sdk_dynamodb::types::ReturnValue;

use crate::{
    ApiError,
    crypto::BlindIndex,
    db::{self, Table, get_opt_n, n, s},
};

/// A fixed-window limit: at most `max` requests per `window_seconds` for one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// What is limited (part of the item key): `register.source`, `forgot.account`, ...
    pub purpose: &'static str,
    pub max: i64,
    pub window_seconds: i64,
}

/// Password guesses a (account, source) pair may make before each next one waits.
pub const FREE_GUESSES: i64 = 5;
/// The longest wait between guesses.
pub const MAX_GUESS_DELAY_SECONDS: i64 = 15 * 60;
/// How long a pair's guesses are remembered after the last one.
pub const GUESS_MEMORY_SECONDS: i64 = 24 * 60 * 60;

/// How long the guess after `guesses` reserved ones waits: nothing for the first
/// [`FREE_GUESSES`], then 2, 4, 8 ... seconds, at most [`MAX_GUESS_DELAY_SECONDS`].
pub fn guess_delay(guesses: i64) -> i64 {
    if guesses < FREE_GUESSES {
        return 0;
    }
    let doublings = (guesses - FREE_GUESSES + 1).min(20);
    (1_i64 << doublings).min(MAX_GUESS_DELAY_SECONDS)
}

/// Seconds until the window that `now` falls in ends.
pub fn window_left(now: i64, window_seconds: i64) -> i64 {
    window_seconds - now.rem_euclid(window_seconds)
}

/// 429 with `Retry-After`.
pub fn too_many(retry_after_seconds: i64) -> ApiError {
    ApiError::TooManyRequests {
        code: "too_many_requests",
        detail: "Too many attempts; try again later.".into(),
        retry_after_seconds: retry_after_seconds.max(1),
    }
}

/// A reserved password guess, to [`Throttles::forgive`] when it proved right.
#[derive(Debug, Clone)]
pub struct Guess {
    pk: String,
    /// The count this guess set.
    count: i64,
}

#[derive(Clone)]
pub struct Throttles {
    table: Table,
    blind: BlindIndex,
}

impl std::fmt::Debug for Throttles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttles").finish_non_exhaustive()
    }
}

impl Throttles {
    pub fn new(table: Table, blind: BlindIndex) -> Self {
        Self { table, blind }
    }

    fn pk(&self, purpose: &str, key: &str) -> String {
        format!("THROTTLE#{purpose}#{}", self.blind.compute("throttle", key))
    }

    /// Counts one request of `key` against `limit`: 429 once the window's `max` are taken.
    pub async fn take(&self, limit: &Limit, key: &str, now: i64) -> Result<(), ApiError> {
        let window = now - now.rem_euclid(limit.window_seconds);
        let res = self
            .table
            .client
            .update_item()
            .table_name(&self.table.name)
            .key(crate::keys::PK, s(self.pk(limit.purpose, key)))
            .key(crate::keys::SK, s(format!("W#{window}")))
            .update_expression("ADD #n :one SET #ttl = :ttl")
            .condition_expression("attribute_not_exists(#n) OR #n < :max")
            .expression_attribute_names("#n", "n")
            .expression_attribute_names("#ttl", crate::keys::TTL)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":max", n(limit.max))
            .expression_attribute_values(":ttl", n(window + limit.window_seconds + 60))
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if db::is_condition_failed(&e) => {
                tracing::info!(log_type = "security", purpose = limit.purpose, "throttled");
                Err(too_many(window_left(now, limit.window_seconds)))
            }
            Err(e) => Err(db::fault(e)),
        }
    }

    /// Reserves one password guess for `account` from `source` before the password is checked:
    /// free for the first few, then each waits twice as long as the one before. The count and
    /// the time of the next allowed guess move in one conditional write on the count that was
    /// read, so of parallel guesses only one is reserved at a time; the others are refused.
    /// A stranger's guesses from elsewhere never slow the owner's own source.
    pub async fn guess(&self, account: &str, source: &str, now: i64) -> Result<Guess, ApiError> {
        let pk = self.pk("guess", &format!("{account}|{source}"));
        let item = self.table.get(pk.clone(), "BACKOFF").await?;
        let seen = item
            .as_ref()
            .and_then(|i| get_opt_n(i, "guesses"))
            .unwrap_or(0);
        let next_at = item
            .as_ref()
            .and_then(|i| get_opt_n(i, "nextAt"))
            .unwrap_or(0);
        if next_at > now {
            return Err(too_many(next_at - now));
        }
        let count = seen + 1;
        let res = self
            .table
            .client
            .update_item()
            .table_name(&self.table.name)
            .key(crate::keys::PK, s(&pk))
            .key(crate::keys::SK, s("BACKOFF"))
            .update_expression("SET guesses = :count, nextAt = :next, #ttl = :ttl")
            .condition_expression(
                "(attribute_not_exists(guesses) AND :seen = :zero) OR guesses = :seen",
            )
            .expression_attribute_names("#ttl", crate::keys::TTL)
            .expression_attribute_values(":count", n(count))
            .expression_attribute_values(":seen", n(seen))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":next", n(now + guess_delay(count)))
            .expression_attribute_values(":ttl", n(now + GUESS_MEMORY_SECONDS))
            .return_values(ReturnValue::None)
            .send()
            .await;
        match res {
            Ok(_) => Ok(Guess { pk, count }),
            // Another guess of this pair was reserved meanwhile: this one waits its turn.
            Err(e) if db::is_condition_failed(&e) => {
                tracing::info!(log_type = "security", "parallel password guess refused");
                Err(too_many(guess_delay(count).max(1)))
            }
            Err(e) => Err(db::fault(e)),
        }
    }

    /// The guess was right: the pair starts afresh, unless another guess was reserved after
    /// this one (its count stands; a success never clears a backoff set meanwhile).
    pub async fn forgive(&self, guess: &Guess) -> Result<(), ApiError> {
        let res = self
            .table
            .client
            .delete_item()
            .table_name(&self.table.name)
            .key(crate::keys::PK, s(&guess.pk))
            .key(crate::keys::SK, s("BACKOFF"))
            .condition_expression("guesses = :count")
            .expression_attribute_values(":count", n(guess.count))
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if db::is_condition_failed(&e) => Ok(()),
            Err(e) => Err(db::fault(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guesses_are_free_then_wait_twice_as_long_each_time_up_to_a_cap() {
        let delays: Vec<i64> = (1..=9).map(guess_delay).collect();
        assert_eq!(delays, vec![0, 0, 0, 0, 2, 4, 8, 16, 32]);
        assert_eq!(guess_delay(100), MAX_GUESS_DELAY_SECONDS);
        assert_eq!(guess_delay(0), 0);
    }

    #[test]
    fn a_window_ends_on_its_boundary() {
        assert_eq!(window_left(3600, 3600), 3600);
        assert_eq!(window_left(3601, 3600), 3599);
        assert_eq!(window_left(7199, 3600), 1);
    }
}
