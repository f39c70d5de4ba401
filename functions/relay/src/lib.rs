//! The events relay: publishes outbox items to the EventBridge bus. On AWS it is fed by the
//! table's stream (filtered to outbox inserts) and reports partial batch failures; locally the
//! same publishing runs from [`StreamPoller`], which reads the stream through the SDK and can
//! feed any [`ChangeSink`] the same way.

use aws_lambda_events::event::dynamodb::Event;
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use shared::outbox::{EventEnvelope, publish};
use shared::stream::{Change, ChangeSink};
use std::collections::HashMap;

/// How often a change that failed is tried again before it is dead-lettered: the template's
/// `MaximumRetryAttempts` of the relay's event source mapping.
pub const RETRY_ATTEMPTS: u32 = 10;

/// Where events go.
#[derive(Debug, Clone)]
pub struct Relay {
    pub eventbridge: aws_sdk_eventbridge::Client,
    pub bus: String,
    /// Where outbox items go that can never be published (undecodable envelopes).
    pub dead_letters: DeadLetters,
}

/// The relay's dead-letter queue (`EventsRelayDlq`; on AWS also the event source mapping's
/// on-failure destination). A record there names the change and the item's key, never its
/// content, and why it was not relayed; the item itself stays in the table until its TTL.
#[derive(Debug, Clone)]
pub struct DeadLetters {
    pub sqs: aws_sdk_sqs::Client,
    pub url: String,
}

impl DeadLetters {
    /// Records `change` as not relayed for `condition`. False when the queue did not take the
    /// record, so the caller keeps the change.
    pub async fn send(&self, change: &Change, condition: &str, attempts: u32) -> bool {
        let key = |name: &str| {
            change
                .new
                .as_ref()
                .or(change.old.as_ref())
                .and_then(|i| i.get(name))
                .and_then(|v| v.as_s().ok())
                .cloned()
        };
        let body = serde_json::json!({
            "condition": condition,
            "attempts": attempts,
            "eventId": change.id,
            "sequenceNumber": change.sequence,
            "pk": key(shared::keys::PK),
            "sk": key(shared::keys::SK),
        });
        match self
            .sqs
            .send_message()
            .queue_url(&self.url)
            .message_body(body.to_string())
            .send()
            .await
        {
            Ok(_) => {
                tracing::error!(event_id = %change.id, condition, attempts, "change dead-lettered");
                true
            }
            Err(e) => {
                tracing::warn!(event_id = %change.id, error = %e, "the dead-letter queue refused a change");
                false
            }
        }
    }
}

/// The envelope of an outbox insert, `None` for any other change.
pub fn envelope_of(change: &Change) -> Option<Result<EventEnvelope, serde_json::Error>> {
    if !change.insert {
        return None;
    }
    let image = change.new.as_ref()?;
    let s = |name: &str| {
        image
            .get(name)
            .and_then(|v| v.as_s().ok())
            .map(String::as_str)
    };
    EventEnvelope::from_stream_attributes(s("entity"), s("envelope"))
}

impl ChangeSink for Relay {
    /// Publishes the batch's outbox inserts; answers those that failed to publish. Undecodable
    /// envelopes go to the dead-letter queue at once (retrying cannot fix them, and they must
    /// not block the shard); one the queue does not take is answered as failed.
    async fn handle(&self, changes: Vec<Change>) -> Vec<Change> {
        let mut envelopes = Vec::new();
        let mut carried = Vec::new();
        let mut kept = Vec::new();
        for change in changes {
            match envelope_of(&change) {
                Some(Ok(env)) => {
                    envelopes.push(env);
                    carried.push(change);
                }
                Some(Err(e)) => {
                    tracing::error!(event_id = %change.id, error = %e, "undecodable outbox item");
                    if !self
                        .dead_letters
                        .send(&change, "UndecodableOutboxItem", 1)
                        .await
                    {
                        kept.push(change);
                    }
                }
                None => {}
            }
        }
        let failed = publish(&self.eventbridge, &self.bus, &envelopes).await;
        tracing::info!(
            published = envelopes.len() - failed.len(),
            failed = failed.len(),
            "relay batch done"
        );
        kept.extend(failed.into_iter().map(|i| carried[i].clone()));
        kept
    }
}

impl Relay {
    /// Handles one Lambda stream batch, reporting the first record that failed to publish so
    /// Lambda retries from it.
    pub async fn handle(&self, event: Event) -> DynamoDbEventResponse {
        shared::stream::handle_event(self, event).await
    }
}

fn attribute(
    v: aws_sdk_dynamodbstreams::types::AttributeValue,
) -> aws_sdk_dynamodb::types::AttributeValue {
    use aws_sdk_dynamodb::types::AttributeValue as D;
    use aws_sdk_dynamodbstreams::types::AttributeValue as S;
    match v {
        S::S(s) => D::S(s),
        S::N(n) => D::N(n),
        S::B(b) => D::B(b),
        S::Bool(b) => D::Bool(b),
        S::Null(b) => D::Null(b),
        S::M(m) => D::M(m.into_iter().map(|(k, v)| (k, attribute(v))).collect()),
        S::L(l) => D::L(l.into_iter().map(attribute).collect()),
        S::Ss(s) => D::Ss(s),
        S::Ns(n) => D::Ns(n),
        S::Bs(b) => D::Bs(b),
        _ => D::Null(true),
    }
}

fn change_of(r: aws_sdk_dynamodbstreams::types::Record) -> Option<Change> {
    let insert = r.event_name.as_ref().map(|n| n.as_str()) == Some("INSERT");
    let d = r.dynamodb?;
    let item = |i: Option<HashMap<String, aws_sdk_dynamodbstreams::types::AttributeValue>>| {
        i.filter(|m| !m.is_empty())
            .map(|m| m.into_iter().map(|(k, v)| (k, attribute(v))).collect())
    };
    Some(Change {
        id: r.event_id.unwrap_or_default(),
        sequence: d.sequence_number.clone().unwrap_or_default(),
        insert,
        old: item(d.old_image),
        new: item(d.new_image),
    })
}

/// Reads the table's stream through the SDK and hands every change to a sink: the local
/// stand-in for a Lambda event source mapping. Changes the sink could not handle are handed to
/// it again on the next poll, before newer ones.
pub struct StreamPoller<S> {
    streams: aws_sdk_dynamodbstreams::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    table: String,
    sink: S,
    iterators: HashMap<String, Option<String>>,
    pending: Vec<Change>,
    /// Failed attempts so far of each pending change, by change id.
    attempts: HashMap<String, u32>,
    dead_letters: Option<DeadLetters>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S: ChangeSink> StreamPoller<S> {
    pub fn new(
        streams: aws_sdk_dynamodbstreams::Client,
        dynamodb: aws_sdk_dynamodb::Client,
        table: impl Into<String>,
        sink: S,
    ) -> Self {
        Self {
            streams,
            dynamodb,
            table: table.into(),
            sink,
            iterators: HashMap::new(),
            pending: Vec::new(),
            attempts: HashMap::new(),
            dead_letters: None,
        }
    }

    /// Moves a change that still fails after [`RETRY_ATTEMPTS`] retries to `dead_letters`, as
    /// the event source mapping's on-failure destination does (without one, it is retried for
    /// as long as the stream keeps it).
    pub fn with_dead_letters(mut self, dead_letters: DeadLetters) -> Self {
        self.dead_letters = Some(dead_letters);
        self
    }

    async fn discover_shards(&mut self) -> Result<(), BoxError> {
        let table = self
            .dynamodb
            .describe_table()
            .table_name(&self.table)
            .send()
            .await?;
        let arn = table
            .table
            .and_then(|t| t.latest_stream_arn)
            .ok_or("the table has no stream")?;
        let desc = self
            .streams
            .describe_stream()
            .stream_arn(&arn)
            .send()
            .await?;
        let shards = desc
            .stream_description
            .map(|d| d.shards.unwrap_or_default())
            .unwrap_or_default();
        for shard in shards {
            let Some(id) = shard.shard_id else { continue };
            if self.iterators.contains_key(&id) {
                continue;
            }
            let it = self
                .streams
                .get_shard_iterator()
                .stream_arn(&arn)
                .shard_id(&id)
                .shard_iterator_type(aws_sdk_dynamodbstreams::types::ShardIteratorType::TrimHorizon)
                .send()
                .await?
                .shard_iterator;
            self.iterators.insert(id, it);
        }
        Ok(())
    }

    /// One pass over every shard; returns how many changes the sink handled.
    pub async fn poll_once(&mut self) -> Result<usize, BoxError> {
        self.discover_shards().await?;
        let mut batch = std::mem::take(&mut self.pending);
        let shard_ids: Vec<String> = self.iterators.keys().cloned().collect();
        for id in shard_ids {
            let Some(Some(iterator)) = self.iterators.get(&id).cloned() else {
                continue;
            };
            let out = self
                .streams
                .get_records()
                .shard_iterator(iterator)
                .send()
                .await?;
            batch.extend(
                out.records
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(change_of),
            );
            self.iterators.insert(id, out.next_shard_iterator);
        }
        let total = batch.len();
        let failed = self.sink.handle(batch).await;
        let mut pending = Vec::with_capacity(failed.len());
        let mut attempts = HashMap::with_capacity(failed.len());
        for change in failed {
            let n = self.attempts.get(&change.id).copied().unwrap_or(0) + 1;
            let exhausted = n > RETRY_ATTEMPTS;
            let dead = match &self.dead_letters {
                Some(dl) if exhausted => dl.send(&change, "RetryAttemptsExhausted", n).await,
                _ => false,
            };
            if !dead {
                attempts.insert(change.id.clone(), n);
                pending.push(change);
            }
        }
        // Changes that succeeded (or were dead-lettered) are forgotten.
        self.attempts = attempts;
        self.pending = pending;
        Ok(total - self.pending.len())
    }

    /// Polls forever at `every`, logging (not stopping on) errors.
    pub async fn run(mut self, every: std::time::Duration) {
        loop {
            match self.poll_once().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(changes = n, "stream changes handled"),
                Err(e) => tracing::warn!(error = %e, "stream poll failed"),
            }
            tokio::time::sleep(every).await;
        }
    }
}
