//! A blocking control-protocol client: what `ctl`, the integration tests and the benchmark use.
//!
//! Requests are built from the contract's typed [`CommandRequest`] (so only valid requests are sent) with an
//! `id`; every response is read by the contract's `read_reply` (strict per-command schemas, the request's
//! command and id).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use interceptor_ebpf_core::contract::control::client::{read_reply, ReplyError};
use interceptor_ebpf_core::contract::control::protocol::{
    CommandRequest, ControlProtocolError, ControlRequest, ResponseData, MAX_LINE_BYTES,
};
use interceptor_ebpf_core::contract::reason_codes::ControlAuthzCode;

/// Why a call did not return data.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to the agent at {path}: {source}")]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no answer from the agent within {0} ms")]
    Timeout(u128),
    #[error("the agent closed the connection")]
    Closed,
    #[error("control socket I/O: {0}")]
    Io(#[source] std::io::Error),
    /// The line is not a valid response to the request sent.
    #[error("invalid response from the agent: {0}")]
    BadResponse(String),
    /// The agent refused or failed the request.
    #[error("{}: {}", .0.reason_code, .0.message)]
    Refused(ControlProtocolError),
}

impl ClientError {
    /// True for the peer and socket checks (codes 1-5).
    pub fn is_authorization(&self) -> bool {
        matches!(self, ClientError::Refused(e) if e.reason_code.value() <= ControlAuthzCode::SocketOwnerInvalid.value())
    }
}

pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
    timeout: Option<Duration>,
}

/// Reads one `\n`-terminated line of at most 16 MiB (without the `\n`); `None` at end of stream.
pub fn read_line(
    reader: &mut impl BufRead,
    timeout: Option<Duration>,
) -> Result<Option<Vec<u8>>, ClientError> {
    let mut line = Vec::new();
    let limit = (MAX_LINE_BYTES + 1) as u64;
    match reader.by_ref().take(limit).read_until(b'\n', &mut line) {
        Ok(0) => Ok(None),
        Ok(_) if line.last() == Some(&b'\n') => {
            line.pop();
            Ok(Some(line))
        }
        Ok(_) if line.len() as u64 >= limit => Err(ClientError::BadResponse(format!(
            "a line exceeds {MAX_LINE_BYTES} bytes"
        ))),
        Ok(_) => Err(ClientError::Closed),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Err(ClientError::Timeout(timeout.map_or(0, |t| t.as_millis())))
        }
        Err(e) => Err(ClientError::Io(e)),
    }
}

impl Client {
    /// `timeout` bounds each write and each wait for a response (`None`: wait forever).
    pub fn connect(path: &Path, timeout: Option<Duration>) -> Result<Client, ClientError> {
        let stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.to_path_buf(),
            source,
        })?;
        stream.set_read_timeout(timeout).map_err(ClientError::Io)?;
        stream.set_write_timeout(timeout).map_err(ClientError::Io)?;
        let writer = stream.try_clone().map_err(ClientError::Io)?;
        Ok(Client {
            reader: BufReader::new(stream),
            writer,
            next_id: 1,
            timeout,
        })
    }

    fn send(&mut self, request: &CommandRequest) -> Result<String, (String, ClientError)> {
        let id = self.next_id.to_string();
        self.next_id += 1;
        let line = ControlRequest {
            request: request.clone(),
            id: Some(id.clone()),
        }
        .to_line();
        match self.writer.write_all(line.as_bytes()) {
            Ok(()) => Ok(id),
            Err(e) => {
                let e = match e.kind() {
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                        ClientError::Timeout(self.timeout.map_or(0, |t| t.as_millis()))
                    }
                    std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset => {
                        ClientError::Closed
                    }
                    _ => ClientError::Io(e),
                };
                Err((id, e))
            }
        }
    }

    fn receive(&mut self, id: &str, request: &CommandRequest) -> Result<ResponseData, ClientError> {
        let line = read_line(&mut self.reader, self.timeout)?.ok_or(ClientError::Closed)?;
        read_reply(&line, request.command(), Some(id)).map_err(|e| match e {
            ReplyError::Refused(error) => ClientError::Refused(error),
            ReplyError::Invalid(e) => ClientError::BadResponse(e.to_string()),
        })
    }

    /// Sends one request and waits for its response.
    pub fn call(&mut self, request: CommandRequest) -> Result<ResponseData, ClientError> {
        match self.send(&request) {
            Ok(id) => self.receive(&id, &request),
            // The agent stops reading a request it refuses before the end (a line over 16 MiB) and closes the
            // connection after its reply: that reply, not the broken pipe, says what happened.
            Err((id, ClientError::Closed)) => match self.receive(&id, &request) {
                Err(ClientError::Refused(e)) => Err(ClientError::Refused(e)),
                _ => Err(ClientError::Closed),
            },
            Err((_, e)) => Err(e),
        }
    }

    /// Sends SubscribeEvents; the connection then carries event lines only.
    pub fn subscribe(mut self) -> Result<EventStream, ClientError> {
        self.call(CommandRequest::SubscribeEvents)?;
        // Events come when they come: no read timeout from here on.
        self.writer
            .set_read_timeout(None)
            .map_err(ClientError::Io)?;
        Ok(EventStream {
            reader: self.reader,
        })
    }
}

/// The event lines of a subscribed connection.
pub struct EventStream {
    reader: BufReader<UnixStream>,
}

impl EventStream {
    /// The next event line (a DataplanePacketEvent log record, without `\n`); `None` when the agent closed.
    pub fn next_line(&mut self) -> Result<Option<Vec<u8>>, ClientError> {
        read_line(&mut self.reader, None)
    }

    /// Bounds the wait for the next event (tests).
    pub fn set_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        self.reader.get_ref().set_read_timeout(timeout)
    }
}
