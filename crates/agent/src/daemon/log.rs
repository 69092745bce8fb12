//! The verdict stream: the package's log records, one JSON object per line, byte for byte what the contract
//! layer's serializers return and its parsers accept.
//!
//! Two kinds of records, never confused with one another:
//! - a verdict event: exactly the contract's DataplanePacketEvent log record (`code_namespace` first, value
//!   `dataplane_verdict`), what `serializeDataplanePacketEventToLog` returns;
//! - a control-plane refusal: exactly the ControlPlaneAuthzEvent log record (`code_namespace` `control_authz`),
//!   what `serializeControlPlaneAuthzErrorToLog` returns.
//!
//! The stream is standard output by default, or standard error or a file (`BROKER_EBPF_VERDICT_LOG`). The
//! agent's operational lines (start, stop, degraded, warnings, the dataplane's `log` records) are not records:
//! they go to standard error in the envelope of `envelope.rs`, through a queue of this same kind. A refusal is
//! both: its record here, and a `control_refused` warning there.
//!
//! Lines go through a bounded queue to one writer thread, so a slow or blocked output never stalls the
//! control socket or the event pipeline; a line the queue cannot take is counted (`dropped`), never waited for.
//! The queue takes memory as lines wait in it, not up front: a channel of 65,536 slots allocated at start was
//! 1.5 MiB of the idle agent's RSS for a queue that is nearly always empty.

use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde_json::Value;
use tracing::Level;

use interceptor_ebpf_core::contract::control::authz::ControlPlaneAuthzEvent;

use super::envelope;

/// Lines the queue holds before new ones are dropped (and counted).
pub const LOG_QUEUE_LINES: usize = 65_536;

/// The writer side of the log.
pub struct Log {
    tx: Mutex<Option<Sender<Arc<[u8]>>>>,
    /// Lines sent and not yet taken by the writer: the bound is kept here, the channel itself grows as needed
    /// (blocks of a few dozen slots, freed as the writer drains them).
    queued: Arc<AtomicUsize>,
    dropped: AtomicU64,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Log {
    /// Starts the writer thread on `out` (standard output in the agent).
    pub fn start(out: Box<dyn Write + Send>) -> std::io::Result<Arc<Log>> {
        let (tx, rx) = mpsc::channel::<Arc<[u8]>>();
        let queued = Arc::new(AtomicUsize::new(0));
        let taken = queued.clone();
        let thread = std::thread::Builder::new()
            .name("agent-log".into())
            .spawn(move || write_lines(rx, &taken, out))?;
        Ok(Arc::new(Log {
            tx: Mutex::new(Some(tx)),
            queued,
            dropped: AtomicU64::new(0),
            thread: Mutex::new(Some(thread)),
        }))
    }

    /// Queues one complete line (ending in `\n`).
    pub fn line(&self, line: Arc<[u8]>) {
        // A place in the queue first: never more than LOG_QUEUE_LINES lines wait.
        if self.queued.fetch_add(1, Ordering::AcqRel) >= LOG_QUEUE_LINES {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let sent = match self.tx.lock().ok().as_deref().and_then(Option::as_ref) {
            Some(tx) => tx.send(line).is_ok(),
            None => false,
        };
        if !sent {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A ControlPlaneAuthzEvent log record on this stream, and a `control_refused` operational warning.
    pub fn authz(&self, event: &ControlPlaneAuthzEvent) {
        let mut line = event.to_log_line().into_bytes();
        line.push(b'\n');
        self.line(line.into());
        envelope::warn(
            "control_refused",
            "control request refused",
            serde_json::json!({
                "reason_code": event.reason_code.as_str(),
                "command": event.command,
                "message": event.message,
            }),
        );
    }

    /// One of the agent's operational lines (not a record: it goes to the envelope, not to this queue).
    /// `kind` is its stable `agent_event` name; its level and sentence are [`lifecycle_level_and_msg`]'s.
    pub fn lifecycle(&self, kind: &str, fields: Value) {
        let mut fields = fields;
        let (level, msg) = lifecycle_level_and_msg(kind, &mut fields);
        envelope::emit(level, kind, &msg, fields);
    }

    /// Lines dropped because the queue was full (standard output too slow).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Writes out what is queued and stops the writer thread.
    pub fn finish(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}

/// Each lifecycle line's level and `msg`, in one place. A `warning`'s `message` field becomes its `msg`.
pub fn lifecycle_level_and_msg(kind: &str, fields: &mut Value) -> (Level, String) {
    let fixed = |level, msg: &str| (level, msg.to_owned());
    match kind {
        "warning" => {
            let msg = fields
                .as_object_mut()
                .and_then(|m| m.shift_remove("message"))
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| "warning".to_owned());
            (Level::WARN, msg)
        }
        "start_failed" => fixed(Level::ERROR, "the agent could not start"),
        "invalid_configuration" => fixed(Level::ERROR, "invalid configuration"),
        "degraded" => fixed(Level::WARN, "degraded"),
        "recovered" => fixed(Level::INFO, "recovered"),
        "connection_refused" => fixed(Level::WARN, "control connection refused"),
        "stopped" if fields.get("error").is_some_and(|e| !e.is_null()) => {
            fixed(Level::ERROR, "agent stopped; closing the dataplane failed")
        }
        "stopped" => fixed(Level::INFO, "agent stopped"),
        "stopping" => fixed(Level::INFO, "agent stopping"),
        "started" => fixed(Level::INFO, "agent started"),
        "layers" => fixed(Level::INFO, "bypass layers attached"),
        "adopted" => fixed(Level::INFO, "adopted the pinned dataplane state"),
        "policy_loaded" => fixed(Level::INFO, "policy file applied"),
        "policy_file_skipped" => fixed(Level::INFO, "policy file skipped"),
        "command" => fixed(Level::INFO, "control command"),
        other => (Level::INFO, other.replace('_', " ")),
    }
}

fn write_lines(rx: Receiver<Arc<[u8]>>, queued: &AtomicUsize, out: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    while let Ok(line) = rx.recv() {
        queued.fetch_sub(1, Ordering::AcqRel);
        let _ = out.write_all(&line);
        // Batch what is already queued into one write, then flush so a reader sees whole lines promptly.
        while let Ok(more) = rx.try_recv() {
            queued.fetch_sub(1, Ordering::AcqRel);
            let _ = out.write_all(&more);
        }
        let _ = out.flush();
    }
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;
    use interceptor_ebpf_core::contract::reason_codes::ControlAuthzCode;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
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

    /// The verdict stream holds only the package's records, byte for byte, and its parsers read them back.
    #[test]
    fn the_verdict_stream_holds_exactly_the_package_records() {
        use interceptor_ebpf_core::contract::events::json::parse_json;
        let sink = Sink::default();
        let log = Log::start(Box::new(sink.clone())).expect("log");
        // Operational lines never reach this stream (no subscriber here: they are simply not written).
        log.lifecycle("started", serde_json::json!({"pid": 1}));
        let refusal = ControlPlaneAuthzEvent::new(ControlAuthzCode::PeercredRejectedUid, "nope")
            .with_command("Shutdown");
        log.authz(&refusal);
        let verdict = crate::events::tests::event();
        log.line(crate::events::log_line(&verdict).into());
        log.finish();
        let text = String::from_utf8(sink.0.lock().expect("sink").clone()).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(
            lines[0],
            r#"{"code_namespace":"control_authz","reason_code":"CTRL_AUTH_PEERCRED_REJECTED_UID","message":"nope","command":"Shutdown"}"#
        );
        let v: Value = serde_json::from_str(lines[0]).expect("json");
        assert_eq!(
            ControlPlaneAuthzEvent::from_json_value_for_log(&v).expect("the contract's parser"),
            refusal
        );
        let parsed = parse_json(lines[1].as_bytes()).expect("the contract's parser");
        assert_eq!(parsed, verdict.to_packet_event());
        assert_eq!(log.dropped(), 0);
    }

    #[test]
    fn every_lifecycle_kind_has_a_level_and_a_sentence() {
        let mut w = serde_json::json!({"message": "SIGHUP ignored"});
        assert_eq!(
            lifecycle_level_and_msg("warning", &mut w),
            (Level::WARN, "SIGHUP ignored".to_owned())
        );
        assert!(w.get("message").is_none());
        let mut failed = serde_json::json!({"error": "EBUSY"});
        assert_eq!(
            lifecycle_level_and_msg("stopped", &mut failed).0,
            Level::ERROR
        );
        let mut ok = serde_json::json!({"error": null});
        assert_eq!(lifecycle_level_and_msg("stopped", &mut ok).0, Level::INFO);
        assert_eq!(
            lifecycle_level_and_msg("start_failed", &mut Value::Null).0,
            Level::ERROR
        );
        assert_eq!(
            lifecycle_level_and_msg("degraded", &mut Value::Null).0,
            Level::WARN
        );
    }

    /// Standard output that blocks every write until the gate opens, counting the lines it was given.
    #[derive(Clone, Default)]
    struct Gated {
        gate: Arc<(Mutex<bool>, std::sync::Condvar)>,
        entered: Arc<std::sync::atomic::AtomicBool>,
        lines: Arc<AtomicUsize>,
    }
    impl Write for Gated {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.entered.store(true, Ordering::SeqCst);
            let (open, cv) = &*self.gate;
            let mut open = open.lock().map_err(|_| std::io::ErrorKind::Other)?;
            while !*open {
                open = cv.wait(open).map_err(|_| std::io::ErrorKind::Other)?;
            }
            self.lines
                .fetch_add(b.iter().filter(|&&c| c == b'\n').count(), Ordering::SeqCst);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_blocked_standard_output_holds_at_most_the_queue_bound_and_the_rest_is_counted() {
        let out = Gated::default();
        let log = Log::start(Box::new(out.clone())).expect("log");
        let line: Arc<[u8]> = Arc::from(&b"{\"agent_event\":\"x\"}\n"[..]);
        // The writer takes the first line and blocks writing it.
        log.line(line.clone());
        while !out.entered.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        for _ in 0..LOG_QUEUE_LINES + 5 {
            log.line(line.clone());
        }
        assert_eq!(log.dropped(), 5);
        let (open, cv) = &*out.gate;
        *open.lock().expect("gate") = true;
        cv.notify_all();
        log.finish();
        assert_eq!(out.lines.load(Ordering::SeqCst), 1 + LOG_QUEUE_LINES);
        assert_eq!(log.dropped(), 5);
    }
}
