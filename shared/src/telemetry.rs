//! JSON logs through `tracing`, one line per event, each with a `type` beside its level:
//! `api` (one line per request), `database`, `security` (failed sign-ins, lockouts, refused
//! tokens and actions, break-glass), `audit`, `metrics` (CloudWatch embedded metric format
//! documents), `error` or `system`. A call site names its type with a `log_type` field;
//! otherwise the level and the module decide. Log ids, never PHI.

use std::io::Write;

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
        .with_writer(|| Typed(std::io::stdout()))
        .try_init();
}

/// A writer that gives every JSON log line its `type` (see [`typed_line`]).
#[derive(Debug, Clone)]
pub struct Typed<W>(pub W);

impl<W: Write> Write for Typed<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write_all(&typed_line(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// The type of a line from its level and module, when the call site named none.
fn derived_type(level: &str, target: &str) -> &'static str {
    if level == "ERROR" {
        "error"
    } else if target == "shared::http" {
        "api"
    } else if ["shared::db", "shared::outbox", "shared::stream", "relay"]
        .iter()
        .any(|t| target.starts_with(t))
    {
        "database"
    } else if target.starts_with("shared::audit") || target.starts_with("ehr::seal") {
        "audit"
    } else {
        "system"
    }
}

/// One formatted line with its top-level `type`. A `metrics` line becomes the embedded metric
/// document it carries (in its `emf` field), which CloudWatch turns into metrics. A line that
/// is not a JSON object passes unchanged.
pub fn typed_line(line: &[u8]) -> Vec<u8> {
    let text = line.strip_suffix(b"\n").unwrap_or(line);
    let Ok(serde_json::Value::Object(mut event)) = serde_json::from_slice(text) else {
        return line.to_vec();
    };
    let fields = event
        .get_mut("fields")
        .and_then(serde_json::Value::as_object_mut);
    let (named, emf) = match fields {
        Some(f) => (
            f.remove("log_type")
                .and_then(|v| v.as_str().map(str::to_string)),
            f.remove("emf"),
        ),
        None => (None, None),
    };
    let kind = named.unwrap_or_else(|| {
        let get = |k: &str| event.get(k).and_then(|v| v.as_str()).unwrap_or_default();
        derived_type(get("level"), get("target")).to_string()
    });
    let mut out = match (kind.as_str(), emf) {
        ("metrics", Some(serde_json::Value::String(doc))) => {
            match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&doc) {
                Ok(doc) => doc,
                Err(_) => event,
            }
        }
        _ => event,
    };
    out.insert("type".into(), kind.into());
    let mut bytes = serde_json::to_vec(&out).unwrap_or_else(|_| text.to_vec());
    bytes.push(b'\n');
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(line: &str) -> serde_json::Value {
        serde_json::from_slice(&typed_line(line.as_bytes())).unwrap()
    }

    #[test]
    fn every_line_gets_a_type_named_or_derived() {
        let named = typed(
            r#"{"level":"INFO","target":"auth::sessions","fields":{"message":"login failed","log_type":"security"}}"#,
        );
        assert_eq!(named["type"], "security");
        assert!(named["fields"].get("log_type").is_none());
        assert_eq!(
            typed(r#"{"level":"ERROR","target":"x","fields":{}}"#)["type"],
            "error"
        );
        assert_eq!(
            typed(r#"{"level":"INFO","target":"shared::http","fields":{}}"#)["type"],
            "api"
        );
        assert_eq!(
            typed(r#"{"level":"WARN","target":"shared::db","fields":{}}"#)["type"],
            "database"
        );
        assert_eq!(
            typed(r#"{"level":"INFO","target":"billing::sweep","fields":{}}"#)["type"],
            "system"
        );
        assert_eq!(typed_line(b"not json\n"), b"not json\n");
    }

    #[test]
    fn a_metrics_line_is_its_embedded_metric_document() {
        let doc = r#"{\"_aws\":{\"Timestamp\":1,\"CloudWatchMetrics\":[]},\"BookingsCreated\":1}"#;
        let line = format!(
            r#"{{"level":"INFO","target":"shared::metrics","fields":{{"message":"metric","log_type":"metrics","emf":"{doc}"}}}}"#
        );
        let out = typed(&line);
        assert_eq!(out["type"], "metrics");
        assert_eq!(out["BookingsCreated"], 1);
        assert!(out.get("_aws").is_some() && out.get("fields").is_none());
    }
}
