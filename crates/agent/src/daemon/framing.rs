//! NDJSON framing on one connection: lines of at most 16 MiB, an idle timeout between requests, a deadline for
//! a started request, and a budget shared by all connections for the memory of large requests.
//!
//! Every connection may buffer [`FREE_BYTES`] without asking. Beyond that it takes 1 MiB permits from a
//! semaphore of [`BUFFER_BUDGET_BYTES`], waiting at most until its request deadline; so thousands of clients
//! with half-sent large frames hold at most `clients * FREE_BYTES + BUFFER_BUDGET_BYTES` of buffers, and a
//! client that never finishes its frame is cut off at the deadline without holding up anyone else.
//!
//! The buffer grows with the request it holds: the first read takes at most [`FIRST_READ`] bytes, each
//! further one as much as is already buffered, up to [`READ_CHUNK`]. A connection sending the usual
//! sub-kilobyte requests keeps a 4 KiB buffer, not 64 KiB: with 64 KiB reserved per connection, each wave of
//! 1,000 clients touched other pages of the freed buffers of the previous one and the agent's RSS grew by
//! several MiB a wave.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use interceptor_ebpf_core::contract::control::protocol::MAX_LINE_BYTES;

/// Bytes a connection buffers without taking from the shared budget.
pub const FREE_BYTES: usize = 64 * 1024;
/// Shared budget for request bytes beyond [`FREE_BYTES`] per connection: 16 maximum-size requests at once.
pub const BUFFER_BUDGET_BYTES: usize = 256 * 1024 * 1024;
const PERMIT_BYTES: usize = 1024 * 1024;
/// The most one read takes (a large request is read in chunks of this size).
pub const READ_CHUNK: usize = 64 * 1024;
/// The most the first read of a request takes.
pub const FIRST_READ: usize = 4 * 1024;

/// How much the next read may take with `buffered` bytes of an unfinished request in the buffer.
fn read_size(buffered: usize) -> usize {
    buffered.clamp(FIRST_READ, READ_CHUNK)
}

/// The shared budget.
pub fn budget() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(BUFFER_BUDGET_BYTES / PERMIT_BYTES))
}

/// Why no line could be read.
#[derive(Debug)]
pub enum FrameError {
    /// More than [`MAX_LINE_BYTES`] without a newline.
    TooLong,
    /// A request was started and neither finished by its deadline nor before the connection closed.
    Incomplete(String),
    Io(std::io::Error),
}

pub struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    /// `buf[..scanned]` holds no newline.
    scanned: usize,
    /// When the first byte of the pending request arrived.
    started: Option<Instant>,
    budget: Arc<Semaphore>,
    /// Permits taken from the budget, each worth `PERMIT_BYTES`.
    held: Option<OwnedSemaphorePermit>,
    idle: Duration,
    request: Duration,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    pub fn new(inner: R, budget: Arc<Semaphore>, idle: Duration, request: Duration) -> Self {
        LineReader {
            inner,
            buf: Vec::new(),
            scanned: 0,
            started: None,
            budget,
            held: None,
            idle,
            request,
        }
    }

    fn held_permits(&self) -> usize {
        self.held
            .as_ref()
            .map_or(0, OwnedSemaphorePermit::num_permits)
    }

    fn allowed(&self) -> usize {
        FREE_BYTES + self.held_permits() * PERMIT_BYTES
    }

    fn take_line(&mut self, newline: usize) -> Vec<u8> {
        let line = if newline > FREE_BYTES {
            // A large request: hand over the buffer itself instead of copying it.
            let rest = self.buf.split_off(newline + 1);
            let mut line = std::mem::replace(&mut self.buf, rest);
            line.truncate(newline);
            line
        } else {
            let line = self.buf[..newline].to_vec();
            self.buf.drain(..=newline);
            line
        };
        if self.buf.len() <= FREE_BYTES {
            if self.buf.capacity() > FREE_BYTES {
                self.buf.shrink_to(self.buf.len().max(FIRST_READ));
            }
            self.held = None;
        }
        self.scanned = 0;
        self.started = (!self.buf.is_empty()).then(Instant::now);
        line
    }

    /// The next line without its `\n`; `Ok(None)` when the peer closed or stayed idle between requests.
    pub async fn next_line(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.buf[self.scanned..]) {
                return Ok(Some(self.take_line(self.scanned + i)));
            }
            self.scanned = self.buf.len();
            if self.buf.len() > MAX_LINE_BYTES {
                return Err(FrameError::TooLong);
            }
            let deadline = match self.started {
                None => Instant::now() + self.idle,
                Some(t) => t + self.request,
            };
            let chunk = read_size(self.buf.len());
            let need = self.buf.len() + chunk;
            if need > self.allowed() {
                // Double what is held, so a large request grows its buffer in O(log n) steps.
                let more = u32::try_from(self.held_permits().max(1)).unwrap_or(u32::MAX);
                let permit =
                    tokio::time::timeout_at(deadline, self.budget.clone().acquire_many_owned(more))
                        .await;
                match permit {
                    Ok(Ok(p)) => match &mut self.held {
                        Some(held) => held.merge(p),
                        None => self.held = Some(p),
                    },
                    Ok(Err(_)) => return Err(FrameError::Incomplete("the agent is stopping".into())),
                    Err(_) => {
                        return Err(FrameError::Incomplete(format!(
                            "request not complete within {} ms (the agent's request buffer budget is in use by \
                             other clients)",
                            self.request.as_millis()
                        )))
                    }
                }
                continue;
            }
            if self.buf.capacity() < need {
                let target = (self.buf.capacity() * 2).clamp(need, self.allowed());
                self.buf.reserve_exact(target - self.buf.len());
            }
            // At most one chunk per read, so the buffer never outgrows what the budget allowed.
            let mut limited = (&mut self.inner).take(chunk as u64);
            match tokio::time::timeout_at(deadline, limited.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) if self.buf.is_empty() => return Ok(None),
                Ok(Ok(0)) => {
                    return Err(FrameError::Incomplete(
                        "the connection was closed in the middle of a request (no newline)".into(),
                    ))
                }
                Ok(Ok(_)) => {
                    if self.started.is_none() {
                        self.started = Some(Instant::now());
                    }
                }
                Ok(Err(e)) => return Err(FrameError::Io(e)),
                Err(_) if self.started.is_none() => return Ok(None),
                Err(_) => {
                    return Err(FrameError::Incomplete(format!(
                        "request not complete within {} ms (no newline)",
                        self.request.as_millis()
                    )))
                }
            }
        }
    }

    /// Reads and discards until the peer closes (a subscribed connection only listens).
    pub async fn wait_closed(&mut self) {
        self.buf = Vec::new();
        self.held = None;
        let mut scratch = [0u8; 512];
        while let Ok(n) = self.inner.read(&mut scratch).await {
            if n == 0 {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn splits_lines_and_reports_eof_and_idle() {
        rt().block_on(async {
            let (mut a, b) = tokio::io::duplex(1 << 20);
            let mut r = LineReader::new(
                b,
                budget(),
                Duration::from_millis(50),
                Duration::from_millis(200),
            );
            a.write_all(b"{\"a\":1}\n{\"b\"").await.expect("write");
            assert_eq!(
                r.next_line().await.expect("line"),
                Some(b"{\"a\":1}".to_vec())
            );
            a.write_all(b":2}\n").await.expect("write");
            assert_eq!(
                r.next_line().await.expect("line"),
                Some(b"{\"b\":2}".to_vec())
            );
            // Idle: nothing started, the timeout ends the connection quietly.
            assert!(matches!(r.next_line().await, Ok(None)));
            a.write_all(b"half").await.expect("write");
            drop(a);
            assert!(matches!(
                r.next_line().await,
                Err(FrameError::Incomplete(_))
            ));
        });
    }

    #[test]
    fn small_requests_keep_a_small_buffer_and_large_ones_grow_it() {
        rt().block_on(async {
            let (mut a, b) = tokio::io::duplex(1 << 20);
            let mut r =
                LineReader::new(b, budget(), Duration::from_secs(5), Duration::from_secs(5));
            for _ in 0..3 {
                a.write_all(b"{\"command\":\"GetHealth\"}\n")
                    .await
                    .expect("write");
                assert_eq!(
                    r.next_line().await.expect("line"),
                    Some(b"{\"command\":\"GetHealth\"}".to_vec())
                );
                assert!(r.buf.capacity() <= FIRST_READ, "{}", r.buf.capacity());
            }
            // A 1 MiB line: read in growing chunks, then the buffer goes back to the small size.
            let mut big = vec![b'x'; 1 << 20];
            big.push(b'\n');
            let writer = tokio::spawn(async move {
                a.write_all(&big).await.expect("write");
                a.write_all(b"{}\n").await.expect("write");
                a
            });
            let line = r.next_line().await.expect("read").expect("line");
            assert_eq!(line.len(), 1 << 20);
            assert_eq!(r.next_line().await.expect("read"), Some(b"{}".to_vec()));
            assert!(r.buf.capacity() <= FREE_BYTES, "{}", r.buf.capacity());
            drop(writer.await.expect("writer"));
        });
        assert_eq!(read_size(0), FIRST_READ);
        assert_eq!(read_size(3 * FIRST_READ), 3 * FIRST_READ);
        assert_eq!(read_size(MAX_LINE_BYTES), READ_CHUNK);
    }

    #[test]
    fn a_started_request_has_a_deadline() {
        rt().block_on(async {
            let (mut a, b) = tokio::io::duplex(1 << 20);
            let mut r = LineReader::new(
                b,
                budget(),
                Duration::from_secs(60),
                Duration::from_millis(50),
            );
            a.write_all(b"{\"command\":").await.expect("write");
            match r.next_line().await {
                Err(FrameError::Incomplete(m)) => assert!(m.contains("within 50 ms"), "{m}"),
                other => panic!("{other:?}"),
            }
        });
    }

    #[test]
    fn a_line_over_16_mib_is_refused_without_buffering_more() {
        rt().block_on(async {
            let (mut a, b) = tokio::io::duplex(1 << 20);
            let budget = budget();
            let before = budget.available_permits();
            let mut r = LineReader::new(
                b,
                budget.clone(),
                Duration::from_secs(5),
                Duration::from_secs(20),
            );
            let writer = tokio::spawn(async move {
                let chunk = vec![b'x'; 1 << 20];
                for _ in 0..20 {
                    if a.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
            });
            assert!(matches!(r.next_line().await, Err(FrameError::TooLong)));
            assert!(r.buf.len() <= MAX_LINE_BYTES + READ_CHUNK + 1);
            assert!(r.buf.capacity() <= r.allowed());
            drop(r);
            assert_eq!(budget.available_permits(), before, "permits are returned");
            writer.abort();
        });
    }

    #[test]
    fn a_maximum_size_line_is_accepted_and_its_permits_returned() {
        rt().block_on(async {
            let (mut a, b) = tokio::io::duplex(1 << 20);
            let budget = budget();
            let before = budget.available_permits();
            let mut r = LineReader::new(
                b,
                budget.clone(),
                Duration::from_secs(5),
                Duration::from_secs(20),
            );
            tokio::spawn(async move {
                let mut line = vec![b'x'; MAX_LINE_BYTES];
                line.extend_from_slice(b"\n{}\n");
                let _ = a.write_all(&line).await;
            });
            let line = r.next_line().await.expect("read").expect("line");
            assert_eq!(line.len(), MAX_LINE_BYTES);
            assert_eq!(r.next_line().await.expect("read"), Some(b"{}".to_vec()));
            assert_eq!(budget.available_permits(), before);
        });
    }
}
