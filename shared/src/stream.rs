//! Changes read from the table's stream, whoever reads it: a Lambda event source mapping on AWS
//! (DynamoDB stream events) or the local stack's poller (the Streams API). A [`ChangeSink`]
//! handles a batch of changes in stream order and answers the ones to try again.

use std::future::Future;

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use aws_sdk_dynamodb::types::AttributeValue;

use crate::db::Item;

/// One write, as the stream saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The stream record's id: unique per change, the same on every redelivery.
    pub id: String,
    /// Its position in its shard (what a Lambda batch failure names).
    pub sequence: String,
    /// The write created the item (`INSERT`).
    pub insert: bool,
    /// The item before the write (absent for an insert, or where the stream holds new images
    /// only).
    pub old: Option<Item>,
    /// The item after the write (absent for a delete).
    pub new: Option<Item>,
}

impl Change {
    /// The `entity` of the item, after the write or else before it.
    pub fn entity(&self) -> Option<&str> {
        self.new
            .as_ref()
            .or(self.old.as_ref())
            .and_then(|i| i.get(crate::keys::ENTITY))
            .and_then(|v| v.as_s().ok())
            .map(String::as_str)
    }
}

/// Whoever acts on changes: handles a batch in order and answers those that failed (to be
/// delivered again; everything after the first failure comes again too, as Lambda does).
pub trait ChangeSink: Send + Sync + 'static {
    fn handle(&self, changes: Vec<Change>) -> impl Future<Output = Vec<Change>> + Send;
}

fn from_lambda(v: serde_dynamo::AttributeValue) -> AttributeValue {
    use serde_dynamo::AttributeValue as L;
    match v {
        L::N(n) => AttributeValue::N(n),
        L::S(s) => AttributeValue::S(s),
        L::Bool(b) => AttributeValue::Bool(b),
        L::B(b) => AttributeValue::B(b.into()),
        L::Null(b) => AttributeValue::Null(b),
        L::M(m) => AttributeValue::M(m.into_iter().map(|(k, v)| (k, from_lambda(v))).collect()),
        L::L(l) => AttributeValue::L(l.into_iter().map(from_lambda).collect()),
        L::Ss(s) => AttributeValue::Ss(s),
        L::Ns(n) => AttributeValue::Ns(n),
        L::Bs(b) => AttributeValue::Bs(b.into_iter().map(Into::into).collect()),
    }
}

fn image(item: serde_dynamo::Item) -> Option<Item> {
    let map = item.into_inner();
    (!map.is_empty()).then(|| map.into_iter().map(|(k, v)| (k, from_lambda(v))).collect())
}

impl From<EventRecord> for Change {
    fn from(r: EventRecord) -> Self {
        Self {
            id: r.event_id,
            sequence: r.change.sequence_number.unwrap_or_default(),
            insert: r.event_name == "INSERT",
            old: image(r.change.old_image),
            new: image(r.change.new_image),
        }
    }
}

/// Hands a Lambda stream batch to `sink` and reports the first failed change, so the event
/// source mapping retries from there (bisecting as configured).
pub async fn handle_event(sink: &impl ChangeSink, event: Event) -> DynamoDbEventResponse {
    let changes: Vec<Change> = event.records.into_iter().map(Change::from).collect();
    let failed = sink.handle(changes).await;
    let mut response = DynamoDbEventResponse::default();
    if let Some(first) = failed.into_iter().next() {
        let mut f = DynamoDbBatchItemFailure::default();
        f.item_identifier = Some(first.sequence);
        response.batch_item_failures.push(f);
    }
    response
}
