//! AWS SDK clients built once per container from the standard environment (including
//! `AWS_ENDPOINT_URL`), each carrying a counter of calls so benchmarks and tests can see
//! how many AWS requests an operation costs.

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    AfterDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
    FinalizerInterceptorContextRef, Output,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Counts every request attempt sent to AWS by the clients it is attached to, and the
/// sequential depth: how many times a call started while none was in flight. Calls made
/// concurrently (a `join`, one batch) add one to the depth; calls made one after another add
/// one each. Measured one operation at a time, depth is the operation's chain of round trips.
#[derive(Debug, Clone, Default)]
pub struct CallCounter(Arc<Counts>);

#[derive(Debug, Default)]
struct Counts {
    calls: AtomicU64,
    in_flight: AtomicU64,
    depth: AtomicU64,
    /// Off unless a benchmark asks: reading every response body costs time.
    counting_items: AtomicBool,
    items: AtomicU64,
}

impl CallCounter {
    pub fn get(&self) -> u64 {
        self.0.calls.load(Ordering::Relaxed)
    }

    /// Rounds of calls so far (see the type's doc).
    pub fn depth(&self) -> u64 {
        self.0.depth.load(Ordering::Relaxed)
    }

    /// From now on, also count the items DynamoDB read (see [`CallCounter::items_read`]).
    pub fn count_items(&self) {
        self.0.counting_items.store(true, Ordering::Relaxed);
    }

    /// Items DynamoDB read so far, once [`CallCounter::count_items`] was called: the sum of
    /// `ScannedCount` over queries and scans (items evaluated, before any filter), one per
    /// item a GetItem found, and every item a BatchGetItem returned.
    pub fn items_read(&self) -> u64 {
        self.0.items.load(Ordering::Relaxed)
    }
}

/// Items a DynamoDB response says were read (0 for any other response).
fn items_in(out: &Output) -> u64 {
    use aws_sdk_dynamodb::operation::{
        batch_get_item::BatchGetItemOutput, get_item::GetItemOutput, query::QueryOutput,
        scan::ScanOutput,
    };
    let scanned = |n: i32| u64::try_from(n).unwrap_or(0);
    if let Some(q) = out.downcast_ref::<QueryOutput>() {
        scanned(q.scanned_count)
    } else if let Some(s) = out.downcast_ref::<ScanOutput>() {
        scanned(s.scanned_count)
    } else if let Some(g) = out.downcast_ref::<GetItemOutput>() {
        u64::from(g.item.is_some())
    } else if let Some(b) = out.downcast_ref::<BatchGetItemOutput>() {
        b.responses
            .as_ref()
            .map(|r| r.values().map(|items| items.len() as u64).sum())
            .unwrap_or(0)
    } else {
        0
    }
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "CallCounter"
    }

    fn read_before_attempt(
        &self,
        _ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if self.0.in_flight.fetch_add(1, Ordering::SeqCst) == 0 {
            self.0.depth.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }

    fn read_before_transmit(
        &self,
        _ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.calls.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        ctx: &AfterDeserializationInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if self.0.counting_items.load(Ordering::Relaxed) {
            if let Ok(out) = ctx.output_or_error() {
                self.0.items.fetch_add(items_in(out), Ordering::Relaxed);
            }
        }
        Ok(())
    }

    fn read_after_attempt(
        &self,
        _ctx: &FinalizerInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }
}

/// How long one AWS call may take and how often it is tried, set explicitly rather than left to
/// the SDK's defaults. A function answers within its Lambda timeout (10 s for the HTTP
/// functions) even when a service hangs: each attempt is cut at `attempt`, the whole call at
/// `operation`, and the standard retry mode (jittered exponential backoff, with a retry quota
/// that stops retry storms) tries throttled, failing and timed-out calls again up to
/// `max_attempts` times in all.
#[derive(Debug, Clone, Copy)]
pub struct CallLimits {
    pub connect: std::time::Duration,
    pub attempt: std::time::Duration,
    pub operation: std::time::Duration,
    pub max_attempts: u32,
}

impl CallLimits {
    /// In a Lambda function, against AWS.
    pub const FUNCTION: CallLimits = CallLimits {
        connect: std::time::Duration::from_millis(1000),
        attempt: std::time::Duration::from_millis(2000),
        operation: std::time::Duration::from_millis(4500),
        max_attempts: 3,
    };

    /// Against the local emulator, one Python process that a loaded machine may slow down.
    pub const EMULATOR: CallLimits = CallLimits {
        connect: std::time::Duration::from_millis(2000),
        attempt: std::time::Duration::from_secs(30),
        operation: std::time::Duration::from_secs(60),
        max_attempts: 3,
    };

    /// The loader of the standard environment (region, credentials, `AWS_ENDPOINT_URL`) with
    /// these limits.
    pub fn loader(self) -> aws_config::ConfigLoader {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .retry_config(
                aws_config::retry::RetryConfig::standard().with_max_attempts(self.max_attempts),
            )
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(self.connect)
                    .operation_attempt_timeout(self.attempt)
                    .operation_timeout(self.operation)
                    .build(),
            )
    }
}

/// The clients a function may use. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Clients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub kms: aws_sdk_kms::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub eventbridge: aws_sdk_eventbridge::Client,
    pub calls: CallCounter,
    /// KMS calls alone (also counted in `calls`).
    pub kms_calls: CallCounter,
    pub sdk: aws_types::SdkConfig,
}

impl Clients {
    /// Loads region, credentials and endpoint from the environment, with a function's limits.
    pub async fn from_env() -> Self {
        Self::from_env_with(CallLimits::FUNCTION).await
    }

    /// [`Clients::from_env`] with other limits.
    pub async fn from_env_with(limits: CallLimits) -> Self {
        Self::from_sdk(limits.loader().load().await)
    }

    pub fn from_sdk(sdk: aws_types::SdkConfig) -> Self {
        let calls = CallCounter::default();
        let kms_calls = CallCounter::default();
        let dynamodb = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&sdk)
                .interceptor(calls.clone())
                .build(),
        );
        let kms = aws_sdk_kms::Client::from_conf(
            aws_sdk_kms::config::Builder::from(&sdk)
                .interceptor(calls.clone())
                .interceptor(kms_calls.clone())
                .build(),
        );
        let sqs = aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(&sdk)
                .interceptor(calls.clone())
                .build(),
        );
        let eventbridge = aws_sdk_eventbridge::Client::from_conf(
            aws_sdk_eventbridge::config::Builder::from(&sdk)
                .interceptor(calls.clone())
                .build(),
        );
        Self {
            dynamodb,
            kms,
            sqs,
            eventbridge,
            calls,
            kms_calls,
            sdk,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Output, items_in};
    use aws_sdk_dynamodb::operation::{get_item::GetItemOutput, query::QueryOutput};
    use aws_sdk_dynamodb::types::AttributeValue;

    #[test]
    fn items_read_come_from_dynamodb_outputs_only() {
        let q = QueryOutput::builder().count(2).scanned_count(7).build();
        assert_eq!(items_in(&Output::erase(q)), 7);
        let found = GetItemOutput::builder()
            .item("pk", AttributeValue::S("x".into()))
            .build();
        assert_eq!(items_in(&Output::erase(found)), 1);
        assert_eq!(
            items_in(&Output::erase(GetItemOutput::builder().build())),
            0
        );
        assert_eq!(items_in(&Output::erase(String::from("kms"))), 0);
    }
}
