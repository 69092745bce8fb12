//! Standard output: one JSON object per line.
//!
//! Three kinds of lines, never confused with one another:
//! - a verdict event: exactly the contract's DataplanePacketEvent log record (`code_namespace` first, value
//!   `dataplane_verdict`), what `serializeDataplanePacketEventToLog` returns;
//! - a control-plane refusal: exactly the ControlPlaneAuthzEvent log record (`code_namespace` `control_authz`),
//!   what `serializeControlPlaneAuthzErrorToLog` returns;
//! - an agent lifecycle line: first key `agent_event`, never a `code_namespace`.
//!
//! Lines go through a bounded queue to one writer thread, so a slow or blocked standard output never stalls the
//! control socket or the event pipeline; a line the queue cannot take is counted (`dropped`), never waited for.
//! The queue takes memory as lines wait in it, not up front: a channel of 65,536 slots allocated at start was
//! 1.5 MiB of the idle agent's RSS for a queue that is nearly always empty.

use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::SystemTime;

use serde_json::{Map, Value};

use interceptor_ebpf_core::contract::control::authz::ControlPlaneAuthzEvent;
use interceptor_ebpf_core::contract::timestamp::Timestamp;

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

fn now_text() -> String {
    Timestamp::from_system_time(SystemTime::now())
        .map(|t| t.as_str().to_owned())
        .unwrap_or_default()
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

    /// A ControlPlaneAuthzEvent log record.
    pub fn authz(&self, event: &ControlPlaneAuthzEvent) {
        let mut line = event.to_log_line().into_bytes();
        line.push(b'\n');
        self.line(line.into());
    }

    /// A lifecycle line: `{"agent_event": kind, "time": ..., fields...}`.
    pub fn lifecycle(&self, kind: &str, fields: Value) {
        let mut m = Map::new();
        m.insert("agent_event".into(), Value::from(kind));
        m.insert("time".into(), Value::from(now_text()));
        if let Value::Object(extra) = fields {
            for (k, v) in extra {
                m.insert(k, v);
            }
        }
        let mut line = serde_json::to_vec(&Value::Object(m)).unwrap_or_default();
        line.push(b'\n');
        self.line(line.into());
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

    #[test]
    fn lifecycle_and_authz_lines_cannot_be_confused() {
        let sink = Sink::default();
        let log = Log::start(Box::new(sink.clone())).expect("log");
        log.lifecycle("started", serde_json::json!({"pid": 1}));
        log.authz(
            &ControlPlaneAuthzEvent::new(ControlAuthzCode::PeercredRejectedUid, "nope")
                .with_command("Shutdown"),
        );
        log.finish();
        let text = String::from_utf8(sink.0.lock().expect("sink").clone()).expect("utf8");
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["agent_event"], "started");
        assert!(lines[0].get("code_namespace").is_none());
        assert_eq!(
            text.lines().nth(1),
            Some(
                r#"{"code_namespace":"control_authz","reason_code":"CTRL_AUTH_PEERCRED_REJECTED_UID","message":"nope","command":"Shutdown"}"#
            )
        );
        assert_eq!(log.dropped(), 0);
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
