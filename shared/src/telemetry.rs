//! JSON logs through `tracing`, one line per event. Log ids, never PHI.

use tracing_subscriber::filter::LevelFilter;

/// Installs the JSON subscriber; the level comes from `LOG_LEVEL` (default `info`).
pub fn init() {
    let level = std::env::var("LOG_LEVEL")
        .ok()
        .and_then(|l| l.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    let _ = tracing_subscriber::fmt()
        .json()
        .with_max_level(level)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(true)
        .with_ansi(false)
        .try_init();
}
