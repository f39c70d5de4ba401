//! How `local-stack dev` ends: on Ctrl-C, on SIGTERM or SIGHUP, when the process that started
//! it goes away (so no orphan keeps the port and the pollers), or when the emulator stops
//! answering (then with an error that says so, rather than pollers logging failures forever).
//! Every poller is a task of the process, so it ends with it; `infra/with-moto.sh` stops the
//! emulator when the command it runs ends.

use std::time::Duration;

use shared::aws::{CallLimits, Clients};
use tokio::signal::unix::{Signal, SignalKind, signal};

/// The ways the stack is asked to stop, listened for from the moment it is installed (before
/// the stack says it is ready, so a signal sent right after never meets the default action).
pub struct Stop {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
    parent: u32,
}

impl Stop {
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
            parent: std::os::unix::process::parent_id(),
        })
    }

    /// Resolves with the reason once the stack is asked to stop.
    pub async fn requested(mut self) -> &'static str {
        let parent = self.parent;
        let orphaned = async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if std::os::unix::process::parent_id() != parent {
                    return;
                }
            }
        };
        tokio::select! {
            _ = self.interrupt.recv() => "interrupted",
            _ = self.terminate.recv() => "terminated",
            _ = self.hangup.recv() => "hung up",
            () = orphaned => "the process that started it went away",
        }
    }
}

/// Consecutive failed probes after which the emulator counts as gone.
const MISSED_PROBES: u32 = 3;

/// Resolves with an explanation once the emulator at `AWS_ENDPOINT_URL` has failed
/// [`MISSED_PROBES`] cheap probes in a row (one every two seconds).
pub async fn emulator_gone() -> String {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    let probe = Clients::from_env_with(CallLimits {
        connect: Duration::from_secs(1),
        attempt: Duration::from_secs(5),
        operation: Duration::from_secs(5),
        max_attempts: 1,
    })
    .await;
    let mut missed = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let answered = probe.dynamodb.list_tables().limit(1).send().await.is_ok();
        missed = if answered { 0 } else { missed + 1 };
        if missed >= MISSED_PROBES {
            return format!(
                "the AWS emulator at {endpoint} stopped answering, so the local stack stops with it \
                 (under `make dev` the emulator's log is target/moto-dev.log)"
            );
        }
    }
}
