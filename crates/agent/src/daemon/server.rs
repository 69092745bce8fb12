//! The control socket's accept loop and connections: many clients at once, each served by its own task, so an
//! idle, slow or misbehaving client never holds up another.
//!
//! - Requests on one connection are answered in order; a client may pipeline them.
//! - Over `max_clients` open connections, over its uid's cap, or into the slots kept for privileged peers
//!   (`fairness`), a new one gets one CTRL_COMMAND_FAILED line and is closed.
//! - A connection without a request for the idle timeout is closed quietly; a started request line that does
//!   not end within the request timeout, ends with the connection, or exceeds 16 MiB gets one
//!   CTRL_REQUEST_MALFORMED line and the connection is closed (its framing can no longer be trusted).
//! - A reply that cannot be written within [`WRITE_TIMEOUT`] closes the connection.
//! - After SubscribeEvents the connection carries only DataplanePacketEvent lines until the client closes; a
//!   subscriber that falls behind by more than `SUBSCRIBER_BACKLOG` events loses the oldest ones (counted).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::Semaphore;

use interceptor_ebpf_core::contract::control::peer_auth::PeerCredentials;
use interceptor_ebpf_core::contract::control::protocol::{ControlResponse, MAX_LINE_BYTES};
use interceptor_ebpf_core::contract::reason_codes::ControlAuthzCode;

use super::control::{Agent, Outcome};
use super::fairness::{LogLimiter, Refusal, SlotLimits, Slots};
use super::framing::{self, FrameError, LineReader};
use super::heap;
use super::socket::peer_credentials;

/// How long one reply (or one batch of events) may take to write.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most event bytes written to a subscriber in one write.
const EVENT_BATCH_BYTES: usize = 64 * 1024;

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub slots: SlotLimits,
    pub idle_timeout: Duration,
    pub request_timeout: Duration,
}

pub async fn serve(listener: UnixListener, agent: Arc<Agent>, limits: Limits) {
    let slots = Slots::new(limits.slots, agent.authz.clone());
    let refusals_logged = LogLimiter::new(Duration::from_secs(1));
    let budget = framing::budget();
    let burst = Arc::new(heap::Burst::default());
    let mut stopping = agent.stopping();
    let mut last_accept_error = None::<tokio::time::Instant>;
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stopping.wait_for(|s| *s) => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and friends: say so (at most once a second) and let the load pass instead of spinning.
                let now = tokio::time::Instant::now();
                if last_accept_error.is_none_or(|t| now - t > Duration::from_secs(1)) {
                    agent.log.lifecycle(
                        "warning",
                        serde_json::json!({"message": format!("accept failed: {e}")}),
                    );
                    last_accept_error = Some(now);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        // SO_PEERCRED was taken by the kernel at connect time: whom the slot is charged to.
        let peer = peer_credentials(&stream);
        let slot = match slots.acquire(peer.as_ref()) {
            Ok(slot) => slot,
            Err(why) => {
                refuse(
                    &agent,
                    stream,
                    why,
                    &limits.slots,
                    peer.as_ref(),
                    &refusals_logged,
                );
                continue;
            }
        };
        let agent = agent.clone();
        let budget = budget.clone();
        let burst = burst.clone();
        tokio::spawn(async move {
            agent.metrics.connections().inc();
            burst.opened();
            connection(stream, peer, &agent, budget, limits).await;
            agent.metrics.connections().dec();
            drop(slot);
            if burst.closed() {
                agent.release.after_large_job();
            }
        });
    }
}

/// One CTRL_COMMAND_FAILED line saying why, then the connection is closed; counted, and logged at most once a
/// second so that a flood of refused connections cannot flood the log.
fn refuse(
    agent: &Arc<Agent>,
    stream: UnixStream,
    why: Refusal,
    limits: &SlotLimits,
    peer: Option<&PeerCredentials>,
    logged: &LogLimiter,
) {
    let line = ControlResponse::failure(
        ControlAuthzCode::CommandFailed,
        why.message(limits, peer),
        None,
        None,
    )
    .to_line();
    agent
        .metrics
        .request(None, Some(ControlAuthzCode::CommandFailed));
    agent.metrics.connection_refused(why);
    if let Some(suppressed) = logged.admit(std::time::Instant::now()) {
        agent.log.lifecycle(
            "connection_refused",
            serde_json::json!({
                "reason": why.as_str(),
                "peer": peer.map(|p| serde_json::json!({"uid": p.uid, "gid": p.gid, "pid": p.pid})),
                "max_clients": limits.max_clients,
                "max_clients_per_uid": limits.per_uid,
                "reserved_clients": limits.reserved,
                "suppressed": suppressed,
            }),
        );
    }
    tokio::spawn(async move {
        let mut stream = stream;
        let _ =
            tokio::time::timeout(Duration::from_secs(1), stream.write_all(line.as_bytes())).await;
    });
}

async fn write(wr: &mut OwnedWriteHalf, bytes: &[u8]) -> bool {
    matches!(
        tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(bytes)).await,
        Ok(Ok(()))
    )
}

async fn connection(
    stream: UnixStream,
    peer: Option<PeerCredentials>,
    agent: &Arc<Agent>,
    budget: Arc<Semaphore>,
    limits: Limits,
) {
    let (rd, mut wr) = stream.into_split();
    let mut lines = LineReader::new(rd, budget, limits.idle_timeout, limits.request_timeout);
    let mut stopping = agent.stopping();
    loop {
        let next = tokio::select! {
            r = lines.next_line() => r,
            _ = stopping.wait_for(|s| *s) => return,
        };
        let line = match next {
            Ok(Some(line)) => line,
            Ok(None) | Err(FrameError::Io(_)) => return,
            Err(FrameError::TooLong) => {
                let reply = malformed(
                    agent,
                    format!("malformed request: the request line exceeds {MAX_LINE_BYTES} bytes"),
                );
                let _ = write(&mut wr, reply.as_bytes()).await;
                return;
            }
            Err(FrameError::Incomplete(why)) => {
                let reply = malformed(agent, format!("malformed request: {why}"));
                let _ = write(&mut wr, reply.as_bytes()).await;
                return;
            }
        };
        match agent.handle(&line, peer.as_ref()).await {
            Outcome::Reply(reply) => {
                if !write(&mut wr, reply.as_bytes()).await {
                    return;
                }
            }
            Outcome::Stopped(reply) => {
                let _ = write(&mut wr, reply.as_bytes()).await;
                let _ = wr.shutdown().await;
                agent.shutdown_replied.notify_one();
                return;
            }
            Outcome::Subscribe(reply) => {
                // Subscribed before the reply is written: no event after the reply is missed.
                let rx = agent.events.subscribe();
                if write(&mut wr, reply.as_bytes()).await {
                    agent.metrics.subscribers().inc();
                    stream_events(agent, rx, &mut lines, &mut wr).await;
                    agent.metrics.subscribers().dec();
                }
                return;
            }
        }
    }
}

fn malformed(agent: &Agent, message: String) -> String {
    let error = interceptor_ebpf_core::contract::control::protocol::ControlProtocolError::new(
        ControlAuthzCode::RequestMalformed,
        message,
        None,
    );
    agent
        .metrics
        .request(None, Some(ControlAuthzCode::RequestMalformed));
    agent.log.authz(&error.to_event());
    ControlResponse::Failure { error, id: None }.to_line()
}

async fn stream_events<R: tokio::io::AsyncRead + Unpin>(
    agent: &Agent,
    mut rx: tokio::sync::broadcast::Receiver<Arc<[u8]>>,
    lines: &mut LineReader<R>,
    wr: &mut OwnedWriteHalf,
) {
    let mut stopping = agent.stopping();
    let mut batch = Vec::with_capacity(EVENT_BATCH_BYTES);
    loop {
        let first = tokio::select! {
            r = rx.recv() => r,
            _ = lines.wait_closed() => return,
            _ = stopping.wait_for(|s| *s) => return,
        };
        match first {
            Ok(line) => batch.extend_from_slice(&line),
            Err(RecvError::Lagged(n)) => {
                agent.dropped_subscriber.fetch_add(n, Ordering::Relaxed);
                continue;
            }
            Err(RecvError::Closed) => return,
        }
        while batch.len() < EVENT_BATCH_BYTES {
            match rx.try_recv() {
                Ok(line) => batch.extend_from_slice(&line),
                Err(TryRecvError::Lagged(n)) => {
                    agent.dropped_subscriber.fetch_add(n, Ordering::Relaxed);
                }
                Err(_) => break,
            }
        }
        if !write(wr, &batch).await {
            return;
        }
        batch.clear();
    }
}
