//! The events relay: publishes outbox items to the EventBridge bus. On AWS it is fed by the
//! table's stream (filtered to outbox inserts) and reports partial batch failures; locally the
//! same publishing runs from [`StreamPoller`], which reads the stream through the SDK.

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use shared::outbox::{EventEnvelope, publish};
use std::collections::HashMap;

/// Where events go.
#[derive(Debug, Clone)]
pub struct Relay {
    pub eventbridge: aws_sdk_eventbridge::Client,
    pub bus: String,
}

fn lambda_s<'a>(image: &'a serde_dynamo::Item, name: &str) -> Option<&'a str> {
    match image.get(name) {
        Some(serde_dynamo::AttributeValue::S(v)) => Some(v.as_str()),
        _ => None,
    }
}

/// The envelope of an outbox insert, `None` for any other change.
pub fn envelope_of(record: &EventRecord) -> Option<Result<EventEnvelope, serde_json::Error>> {
    if record.event_name != "INSERT" {
        return None;
    }
    let image = &record.change.new_image;
    EventEnvelope::from_stream_attributes(lambda_s(image, "entity"), lambda_s(image, "envelope"))
}

impl Relay {
    /// Handles one stream batch. Records that fail to publish are reported by sequence number
    /// so Lambda retries from the first of them; undecodable envelopes are logged and skipped
    /// (retrying cannot fix them, and they must not block the shard).
    pub async fn handle(&self, event: Event) -> DynamoDbEventResponse {
        let mut envelopes = Vec::new();
        let mut sequence_numbers = Vec::new();
        for record in &event.records {
            match envelope_of(record) {
                Some(Ok(env)) => {
                    envelopes.push(env);
                    sequence_numbers.push(record.change.sequence_number.clone());
                }
                Some(Err(e)) => {
                    tracing::error!(event_id = %record.event_id, error = %e, "undecodable outbox item skipped");
                }
                None => {}
            }
        }
        let failed = publish(&self.eventbridge, &self.bus, &envelopes).await;
        let mut response = DynamoDbEventResponse::default();
        for i in failed {
            let mut f = DynamoDbBatchItemFailure::default();
            f.item_identifier = sequence_numbers[i].clone();
            response.batch_item_failures.push(f);
        }
        tracing::info!(
            published = envelopes.len() - response.batch_item_failures.len(),
            failed = response.batch_item_failures.len(),
            "relay batch done"
        );
        response
    }
}

/// Reads the table's stream through the SDK and relays outbox inserts: the local stand-in for
/// the Lambda event source mapping. Publishing that fails is retried on the next poll.
pub struct StreamPoller {
    streams: aws_sdk_dynamodbstreams::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    table: String,
    relay: Relay,
    iterators: HashMap<String, Option<String>>,
    pending: Vec<EventEnvelope>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl StreamPoller {
    pub fn new(
        streams: aws_sdk_dynamodbstreams::Client,
        dynamodb: aws_sdk_dynamodb::Client,
        table: impl Into<String>,
        relay: Relay,
    ) -> Self {
        Self {
            streams,
            dynamodb,
            table: table.into(),
            relay,
            iterators: HashMap::new(),
            pending: Vec::new(),
        }
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

    /// One pass over every shard; returns how many events were published.
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
            for rec in out.records.unwrap_or_default() {
                let is_insert = rec.event_name.as_ref().map(|n| n.as_str()) == Some("INSERT");
                let Some(image) = rec.dynamodb.and_then(|d| d.new_image) else {
                    continue;
                };
                let s = |name: &str| {
                    image
                        .get(name)
                        .and_then(|v| v.as_s().ok())
                        .map(String::as_str)
                };
                if !is_insert {
                    continue;
                }
                match EventEnvelope::from_stream_attributes(s("entity"), s("envelope")) {
                    Some(Ok(env)) => batch.push(env),
                    Some(Err(e)) => tracing::error!(error = %e, "undecodable outbox item skipped"),
                    None => {}
                }
            }
            self.iterators.insert(id, out.next_shard_iterator);
        }
        let failed = publish(&self.relay.eventbridge, &self.relay.bus, &batch).await;
        let published = batch.len() - failed.len();
        self.pending = failed.into_iter().map(|i| batch[i].clone()).collect();
        Ok(published)
    }

    /// Polls forever at `every`, logging (not stopping on) errors.
    pub async fn run(mut self, every: std::time::Duration) {
        loop {
            match self.poll_once().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(published = n, "relayed outbox events"),
                Err(e) => tracing::warn!(error = %e, "stream poll failed"),
            }
            tokio::time::sleep(every).await;
        }
    }
}
