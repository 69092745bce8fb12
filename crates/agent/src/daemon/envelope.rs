//! Operational lines: one JSON envelope for everything the agent says about itself.
//!
//! `{"time":"<RFC 3339, UTC, ns>","level":"error|warn|info|debug|trace","msg":"...","target":"...", fields...}`,
//! one object a line, on standard error. The agent's own lines carry `agent_event` (a stable name: `started`,
//! `degraded`, `control_refused`, ...) and that event's named fields; the dataplane crate's `log` records come
//! through the `tracing-log` bridge with their own target (`interceptor_ebpf_core::...`).
//!
//! Verdict and authorization records are not operational lines: they stay exactly the contract's log records
//! (`log.rs`, on the verdict stream), so the package's parsers read them unchanged.
//!
//! Filtering is `RUST_LOG`'s syntax (tracing-subscriber's `EnvFilter`), default `info`. When standard error is
//! connected to journald (`JOURNAL_STREAM` names its device and inode, as systemd sets it), each line starts
//! with the sd-daemon(3) priority prefix (`<3>` error ... `<7>` debug) so the journal records the level.
//!
//! Lines go through the same bounded, lazily grown queue as the verdict records (`log::Log`): a blocked standard
//! error never stalls the runtime; what the queue cannot take is counted.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_log::{AsLog, NormalizeEvent};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;
use tracing_subscriber::EnvFilter;

use interceptor_ebpf_core::contract::timestamp::Timestamp;

use super::log::Log;

/// The target of the agent's own lines (`RUST_LOG=interceptor_ebpf_agent=debug` selects them).
pub const AGENT_TARGET: &str = "interceptor_ebpf_agent";

/// The filter when `RUST_LOG` is unset or empty.
pub const DEFAULT_FILTER: &str = "info";

/// The name of the field carrying an event's named fields as one JSON object (private to this module).
const FIELDS: &str = "agent_fields";

/// Writes formatted events into a [`Log`] queue.
pub struct EnvelopeLayer {
    out: Arc<Log>,
    journald: bool,
}

impl EnvelopeLayer {
    /// `journald`: prefix each line with its syslog priority (see [`stderr_is_journald`]).
    pub fn new(out: Arc<Log>, journald: bool) -> EnvelopeLayer {
        EnvelopeLayer { out, journald }
    }
}

impl<S: Subscriber> Layer<S> for EnvelopeLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        // A bridged `log` record: its real level and target, not the bridge's callsite.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let mut fields = Fields::default();
        event.record(&mut fields);
        let line = format_line(
            SystemTime::now(),
            *meta.level(),
            meta.target(),
            fields,
            self.journald,
        );
        self.out.line(line.into());
    }
}

/// An event's fields as the visitor collects them.
#[derive(Default)]
pub struct Fields {
    msg: String,
    named: Map<String, Value>,
}

impl Fields {
    /// Fields built directly (tests).
    pub fn new(msg: &str, named: Map<String, Value>) -> Fields {
        Fields {
            msg: msg.to_owned(),
            named,
        }
    }

    fn put(&mut self, field: &Field, value: Value) {
        let name = field.name();
        // The bridge's own bookkeeping (`log.target`, `log.file`, ...) is already in the metadata.
        if name.starts_with("log.") {
            return;
        }
        if name == "message" {
            self.msg = match value {
                Value::String(s) => s,
                other => other.to_string(),
            };
        } else {
            self.named.insert(name.to_owned(), value);
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == FIELDS {
            if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(&text) {
                self.named.extend(m);
            }
            return;
        }
        self.put(field, Value::String(text));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::String(value.to_string()));
    }
}

/// `error` ... `trace`.
pub fn level_name(level: Level) -> &'static str {
    match level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        _ => "trace",
    }
}

/// sd-daemon(3)'s priority prefix: SD_ERR, SD_WARNING, SD_INFO, SD_DEBUG (trace is debug to syslog).
pub fn journald_prefix(level: Level) -> &'static str {
    match level {
        Level::ERROR => "<3>",
        Level::WARN => "<4>",
        Level::INFO => "<6>",
        _ => "<7>",
    }
}

/// One line: `time`, `level`, `msg`, `target` first, then the named fields (a field named like one of the four
/// cannot replace it), ending in `\n`.
pub fn format_line(
    at: SystemTime,
    level: Level,
    target: &str,
    fields: Fields,
    journald: bool,
) -> Vec<u8> {
    let mut m = Map::new();
    let time = Timestamp::from_system_time(at)
        .map(|t| t.as_str().to_owned())
        .unwrap_or_default();
    m.insert("time".into(), Value::from(time));
    m.insert("level".into(), Value::from(level_name(level)));
    m.insert("msg".into(), Value::from(fields.msg));
    m.insert("target".into(), Value::from(target));
    for (k, v) in fields.named {
        if !m.contains_key(&k) {
            m.insert(k, v);
        }
    }
    let mut line = Vec::with_capacity(256);
    if journald {
        line.extend_from_slice(journald_prefix(level).as_bytes());
    }
    if serde_json::to_writer(&mut line, &Value::Object(m)).is_err() {
        line.extend_from_slice(b"{}");
    }
    line.push(b'\n');
    line
}

/// True when `journal_stream` (the `JOURNAL_STREAM` value, `<device>:<inode>` in decimal) names the file that
/// `stat` (device, inode) describes: systemd connected this stream to journald.
pub fn journal_stream_matches(journal_stream: Option<&str>, stat: Option<(u64, u64)>) -> bool {
    let (Some(value), Some((dev, ino))) = (journal_stream, stat) else {
        return false;
    };
    let Some((d, i)) = value.trim().split_once(':') else {
        return false;
    };
    d.parse::<u64>() == Ok(dev) && i.parse::<u64>() == Ok(ino)
}

/// Device and inode of standard error.
fn stderr_stat() -> Option<(u64, u64)> {
    // SAFETY: fstat writes the struct we own; fd 2 is only read.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstat(libc::STDERR_FILENO, &mut st) } != 0 {
        return None;
    }
    Some((st.st_dev as u64, st.st_ino as u64))
}

/// Whether systemd connected standard error to journald.
pub fn stderr_is_journald() -> bool {
    journal_stream_matches(
        std::env::var("JOURNAL_STREAM").ok().as_deref(),
        stderr_stat(),
    )
}

/// What [`install`] could not honour, to report once the envelope is in place.
pub struct Installed {
    /// `RUST_LOG` was set but not valid: the default filter is used, and this says why.
    pub bad_filter: Option<String>,
}

/// Makes `out` the destination of every `tracing` event and every `log` record of this process, filtered by
/// `rust_log` (`RUST_LOG`'s syntax; unset or empty: [`DEFAULT_FILTER`]). Once per process.
pub fn install(out: Arc<Log>, rust_log: Option<&str>, journald: bool) -> Result<Installed, String> {
    let (filter, bad_filter) = match rust_log.map(str::trim).filter(|s| !s.is_empty()) {
        None => (EnvFilter::new(DEFAULT_FILTER), None),
        Some(spec) => match EnvFilter::try_new(spec) {
            Ok(f) => (f, None),
            Err(e) => (
                EnvFilter::new(DEFAULT_FILTER),
                Some(format!("RUST_LOG={spec}: {e}")),
            ),
        },
    };
    // The `log` crate's own level gate stops what the filter would drop before a record is even built.
    let log_max = filter
        .max_level_hint()
        .map_or(tracing_log::log::LevelFilter::Trace, |l| l.as_log());
    let subscriber = tracing_subscriber::registry()
        .with(filter)
        .with(EnvelopeLayer::new(out, journald));
    tracing::subscriber::set_global_default(subscriber).map_err(|e| e.to_string())?;
    tracing_log::LogTracer::builder()
        .with_max_level(log_max)
        .init()
        .map_err(|e| e.to_string())?;
    Ok(Installed { bad_filter })
}

/// A named event's fields as one JSON object, handed to the layer through a single `tracing` field.
struct Json(Value);

impl fmt::Debug for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_string())
    }
}

/// One of the agent's own lines: `event` is its stable `agent_event` name, `msg` the human sentence, `fields` a
/// JSON object of its named fields.
pub fn emit(level: Level, event: &str, msg: &str, fields: Value) {
    let fields = Json(fields);
    match level {
        Level::ERROR => {
            tracing::error!(target: AGENT_TARGET, agent_event = event, agent_fields = ?fields, "{msg}")
        }
        Level::WARN => {
            tracing::warn!(target: AGENT_TARGET, agent_event = event, agent_fields = ?fields, "{msg}")
        }
        Level::INFO => {
            tracing::info!(target: AGENT_TARGET, agent_event = event, agent_fields = ?fields, "{msg}")
        }
        Level::DEBUG => {
            tracing::debug!(target: AGENT_TARGET, agent_event = event, agent_fields = ?fields, "{msg}")
        }
        _ => {
            tracing::trace!(target: AGENT_TARGET, agent_event = event, agent_fields = ?fields, "{msg}")
        }
    }
}

/// [`emit`] at info.
pub fn info(event: &str, msg: &str, fields: Value) {
    emit(Level::INFO, event, msg, fields);
}

/// [`emit`] at warn.
pub fn warn(event: &str, msg: &str, fields: Value) {
    emit(Level::WARN, event, msg, fields);
}

/// [`emit`] at error.
pub fn error(event: &str, msg: &str, fields: Value) {
    emit(Level::ERROR, event, msg, fields);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn line(level: Level, journald: bool) -> String {
        let mut named = Map::new();
        named.insert("agent_event".into(), Value::from("degraded"));
        named.insert("reasons".into(), serde_json::json!(["heartbeat stale"]));
        // A field named like an envelope key does not replace it.
        named.insert("level".into(), Value::from("nonsense"));
        let at = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        String::from_utf8(format_line(
            at,
            level,
            AGENT_TARGET,
            Fields::new("the agent is degraded", named),
            journald,
        ))
        .expect("utf8")
    }

    #[test]
    fn a_line_is_the_envelope_then_the_named_fields() {
        assert_eq!(
            line(Level::WARN, false),
            "{\"time\":\"2023-11-14T22:13:20.123456789Z\",\"level\":\"warn\",\"msg\":\"the agent is degraded\",\
             \"target\":\"interceptor_ebpf_agent\",\"agent_event\":\"degraded\",\"reasons\":[\"heartbeat stale\"]}\n"
        );
    }

    #[test]
    fn journald_lines_start_with_the_syslog_priority() {
        for (level, prefix) in [
            (Level::ERROR, "<3>{"),
            (Level::WARN, "<4>{"),
            (Level::INFO, "<6>{"),
            (Level::DEBUG, "<7>{"),
            (Level::TRACE, "<7>{"),
        ] {
            let text = line(level, true);
            assert!(text.starts_with(prefix), "{level}: {text}");
            let v: Value = serde_json::from_str(&text[3..]).expect("json after the prefix");
            assert_eq!(v["level"], level_name(level));
        }
        assert!(line(Level::INFO, false).starts_with('{'));
    }

    #[test]
    fn journal_stream_must_name_the_device_and_inode_of_standard_error() {
        let st = Some((64769, 123456));
        assert!(journal_stream_matches(Some("64769:123456"), st));
        assert!(journal_stream_matches(Some("64769:123456\n"), st));
        assert!(!journal_stream_matches(Some("64769:123457"), st));
        assert!(!journal_stream_matches(Some("1:123456"), st));
        assert!(!journal_stream_matches(Some("64769"), st));
        assert!(!journal_stream_matches(Some("x:y"), st));
        assert!(!journal_stream_matches(None, st));
        assert!(!journal_stream_matches(Some("64769:123456"), None));
    }

    /// A fake JOURNAL_STREAM naming a real file's device and inode, as systemd would for the journal's socket.
    #[test]
    fn a_journal_stream_naming_this_file_is_recognized() {
        use std::os::unix::fs::MetadataExt;
        let path = std::env::temp_dir().join(format!("envelope-js-{}", std::process::id()));
        std::fs::write(&path, b"").expect("file");
        let md = std::fs::metadata(&path).expect("stat");
        let _ = std::fs::remove_file(&path);
        let fake = format!("{}:{}", md.dev(), md.ino());
        assert!(journal_stream_matches(
            Some(&fake),
            Some((md.dev(), md.ino()))
        ));
        assert!(!journal_stream_matches(
            Some(&fake),
            Some((md.dev(), md.ino() + 1))
        ));
    }

    #[test]
    fn the_visitor_merges_named_fields_and_takes_the_message() {
        // Through a real subscriber (scoped to this thread), so the macros' field handling is what is tested.
        #[derive(Clone, Default)]
        struct Sink(Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Sink {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0
                    .lock()
                    .map_err(|_| std::io::ErrorKind::Other)?
                    .extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let out = Log::start(Box::new(sink.clone())).expect("log");
        let subscriber = tracing_subscriber::registry()
            .with(EnvFilter::new("warn"))
            .with(EnvelopeLayer::new(out.clone(), false));
        tracing::subscriber::with_default(subscriber, || {
            info("started", "agent started", serde_json::json!({"pid": 1}));
            warn(
                "warning",
                "SIGHUP ignored",
                serde_json::json!({"generation": 3, "layers": ["connect4"]}),
            );
            tracing::error!(target: "interceptor_ebpf_core::dataplane", errno = 1i64, "attach failed");
        });
        out.finish();
        let text = String::from_utf8(sink.0.lock().expect("sink").clone()).expect("utf8");
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        // warn filter: the info line is not written.
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["level"], "warn");
        assert_eq!(lines[0]["msg"], "SIGHUP ignored");
        assert_eq!(lines[0]["agent_event"], "warning");
        assert_eq!(lines[0]["generation"], 3);
        assert_eq!(lines[0]["layers"], serde_json::json!(["connect4"]));
        assert!(lines[0].get(FIELDS).is_none());
        assert_eq!(lines[1]["level"], "error");
        assert_eq!(lines[1]["target"], "interceptor_ebpf_core::dataplane");
        assert_eq!(lines[1]["errno"], 1);
    }
}
