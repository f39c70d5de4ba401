//! Sending limits that defer, never drop: per clinic and per recipient, each a bucket item in
//! the table (the generic cell rate algorithm, a token bucket kept as one number: the
//! theoretical arrival time of the next message). A job over a limit reserves the next free
//! slot of every bucket it is under and is put back on its queue until then, carrying its slot,
//! so it goes without asking again and later jobs queue behind it instead of all coming back
//! at once. Critical jobs take no tokens and are never held.
//!
//! A limit of `N` a minute with a burst of `B` admits `B` at once and then one message every
//! `62 s / (N - B)`: no 60-second window ever sees more than `N`, as a held message goes at most
//! a quarter second before its slot and 1.5 seconds after it (SQS delays in whole seconds, and
//! the worker polls); one that comes back later than that takes a new slot. A
//! clinic's bucket bursts a tenth of its limit; a person's half of theirs (a login and its
//! notices come together).

use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
use shared::{
    ApiError,
    db::{self, Item, Table, get_opt_n, n, s},
    keys,
};

/// The limits the worker applies (`NOTIFICATIONS_CLINIC_PER_MINUTE`,
/// `NOTIFICATIONS_RECIPIENT_PER_MINUTE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Messages a clinic may send on one channel per minute (email, SMS).
    pub clinic_per_minute: i64,
    /// Messages one person may receive on one channel per minute.
    pub recipient_per_minute: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            clinic_per_minute: 100,
            recipient_per_minute: 20,
        }
    }
}

/// One bucket's rate: at most `per_minute` in any 60 seconds, `burst` of them at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_minute: i64,
    pub burst: i64,
}

impl Rate {
    /// How many may go at once from a full bucket (at least one, and fewer than the limit).
    pub fn burst(self) -> i64 {
        self.burst.clamp(1, (self.per_minute - 1).max(1))
    }

    /// Milliseconds between messages once the burst is spent.
    pub fn interval_ms(self) -> i64 {
        let sustained = (self.per_minute - self.burst()).max(1);
        (WINDOW_MS + LATENESS_MS + sustained - 1) / sustained
    }
}

const WINDOW_MS: i64 = 60_000;
/// A held message goes from this long before its slot ...
pub const EARLY_MS: i64 = 250;
/// ... to this long after it; later, it takes a new slot.
pub const LATE_MS: i64 = 1_500;
/// The span around a slot that the pacing allows for.
const LATENESS_MS: i64 = 2_000;
/// No slot is reserved further ahead than this (SQS holds a message at most 15 minutes); a job
/// that would wait longer comes back then and asks again.
pub const MAX_WAIT_MS: i64 = 15 * 60 * 1000;

/// Admits one message at `now_ms` to a bucket whose next arrival is `tat` (none: full): the
/// new tat and how long the message waits for its slot (0: now). A wait beyond
/// [`MAX_WAIT_MS`] reserves nothing: `Err(the wait)`.
pub fn admit(tat: Option<i64>, now_ms: i64, rate: Rate) -> Result<(i64, i64), i64> {
    let interval = rate.interval_ms();
    let tolerance = (rate.burst() - 1) * interval;
    let tat = tat.unwrap_or(now_ms).max(now_ms);
    let wait = (tat - now_ms - tolerance).max(0);
    if wait > MAX_WAIT_MS {
        Err(wait)
    } else {
        Ok((tat + interval, wait))
    }
}

/// A bucket: its item's partition (`CLINIC#c` or `USER#u`) and channel, with its rate.
#[derive(Debug, Clone)]
pub struct Bucket {
    pub pk: String,
    pub channel: String,
    pub rate: Rate,
}

fn put(
    table: &Table,
    b: &Bucket,
    old: Option<i64>,
    new: i64,
) -> Result<TransactWriteItem, ApiError> {
    let mut p = Put::builder()
        .table_name(&table.name)
        .item(keys::PK, s(&b.pk))
        .item(keys::SK, s(keys::rate_sk(&b.channel)))
        .item(keys::ENTITY, s("RATE"))
        .item("tat", n(new))
        // A bucket idle for a day is full again: DynamoDB may remove it.
        .item(keys::TTL, n(new / 1000 + 86_400));
    p = match old {
        Some(o) => p
            .condition_expression("tat = :old")
            .expression_attribute_values(":old", n(o)),
        None => p.condition_expression("attribute_not_exists(pk)"),
    };
    Ok(TransactWriteItem::builder()
        .put(p.build().map_err(ApiError::internal)?)
        .build())
}

/// Takes one token from every bucket at once (one read and one transaction) and answers how
/// many milliseconds the message waits for them: 0 to go now, else the slot it reserved in all
/// of them. `Err(wait)`: a bucket is booked beyond [`MAX_WAIT_MS`]; nothing was taken.
pub async fn take(
    table: &Table,
    buckets: &[Bucket],
    now_ms: i64,
) -> Result<Result<i64, i64>, ApiError> {
    if buckets.is_empty() {
        return Ok(Ok(0));
    }
    for tries in 0..20 {
        if tries > 0 {
            // Others took tokens meanwhile: let them finish before reading again.
            let jitter = u64::from(shared::crypto::random_bytes::<1>()[0]) % 10;
            tokio::time::sleep(std::time::Duration::from_millis(2 + jitter)).await;
        }
        let keys: Vec<Item> = buckets
            .iter()
            .map(|b| db::key(b.pk.clone(), keys::rate_sk(&b.channel)))
            .collect();
        let items = table.batch_get(keys).await?;
        let tat_of = |b: &Bucket| {
            items
                .iter()
                .find(|i| {
                    db::get_opt_s(i, keys::PK) == Some(b.pk.as_str())
                        && db::get_opt_s(i, keys::SK) == Some(keys::rate_sk(&b.channel).as_str())
                })
                .and_then(|i| get_opt_n(i, "tat"))
        };
        // Each bucket's slot for this message; the message goes at the latest of them, so
        // every bucket reserves that one (a slot taken later than needed only spaces it more).
        let mut wait = 0;
        for b in buckets {
            match admit(tat_of(b), now_ms, b.rate) {
                Ok((_, w)) => wait = wait.max(w),
                Err(w) => return Ok(Err(w)),
            }
        }
        let mut writes = Vec::with_capacity(buckets.len());
        for b in buckets {
            let old = tat_of(b);
            let (new, _) =
                admit(old, now_ms + wait, b.rate).map_err(|_| ApiError::internal("slot"))?;
            writes.push(put(table, b, old, new)?);
        }
        let watch: Vec<usize> = (0..writes.len()).collect();
        match db::run_guarded(table, writes, &watch).await {
            Ok(None) => return Ok(Ok(wait)),
            // Another worker took a token meanwhile: read the buckets again.
            Ok(Some(_)) | Err(ApiError::Conflict { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    // Still contended after every try: come back a moment later and ask again.
    Ok(Err(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_lets_a_burst_through_then_paces_and_never_exceeds_its_minute() {
        let rate = Rate {
            per_minute: 100,
            burst: 10,
        };
        assert_eq!(rate.burst(), 10);
        assert_eq!(rate.interval_ms(), 689);
        // GIVEN 300 messages arriving together, each going at its slot, up to 2 s late
        let mut tat = None;
        let mut sent = Vec::new();
        for i in 0..300 {
            let (next, wait) = admit(tat, 0, rate).unwrap();
            tat = Some(next);
            sent.push(wait + (i * 7919 % 2_000) * i64::from(wait > 0));
        }
        sent.sort_unstable();
        // THEN the first ten go at once, the rest are paced, and no 60-second window holds
        // more than 100
        assert_eq!(sent.iter().filter(|&&s| s == 0).count(), 10);
        for (i, start) in sent.iter().enumerate() {
            let within = sent[i..]
                .iter()
                .take_while(|&&s| s < start + 60_000)
                .count();
            assert!(within <= 100, "{within} in the minute from {start}");
        }
        assert!(sent[299] < 4 * 60_000, "it keeps sending: {}", sent[299]);
    }

    #[test]
    fn a_held_message_is_told_its_slot_and_nothing_is_booked_too_far_ahead() {
        let rate = Rate {
            per_minute: 2,
            burst: 0,
        };
        assert_eq!((rate.burst(), rate.interval_ms()), (1, 62_000));
        let (tat, wait) = admit(None, 0, rate).unwrap();
        assert_eq!(wait, 0);
        assert_eq!(admit(Some(tat), 1_000, rate), Ok((124_000, 61_000)));
        assert_eq!(admit(Some(tat), 62_000, rate), Ok((124_000, 0)));
        // An idle bucket is full again, not in debt.
        assert_eq!(admit(Some(tat), 600_000, rate), Ok((662_000, 0)));
        // A bucket booked beyond fifteen minutes reserves nothing.
        assert!(admit(Some(20 * 60_000), 0, rate).is_err());
    }
}
