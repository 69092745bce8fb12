//! systemd's service notification protocol (sd_notify(3)), for `Type=notify` units with a `WatchdogSec=`
//! (deploy/systemd/interceptor-ebpf-agent.service): one datagram per notification to the Unix socket
//! `$NOTIFY_SOCKET` names, holding newline-separated `KEY=VALUE` assignments.
//!
//! - `READY=1` once the programs are attached (or adopted) and the control socket serves;
//! - `WATCHDOG=1` from the heartbeat task while its beats keep the heartbeat within the grace, at least twice
//!   per `$WATCHDOG_USEC` (only when it is set, and `$WATCHDOG_PID`, when set, is this process);
//! - `STOPPING=1` when the agent starts stopping;
//! - `STATUS=...` with each of them and on every degraded/recovered transition (`systemctl status` shows it).
//!
//! Without `$NOTIFY_SOCKET` (any other way of running the agent) nothing is sent. A few lines of our own
//! rather than a crate: the protocol is one `sendto` of a datagram, and the agent needs no other part of
//! libsystemd.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Why `$NOTIFY_SOCKET` or `$WATCHDOG_USEC` cannot be used (logged as a warning; the agent runs on without).
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// Neither an absolute path nor `@` followed by an abstract socket name.
    #[error("NOTIFY_SOCKET={0:?}: expected an absolute path or @ and an abstract socket name")]
    Address(String),
    /// The socket could not be created or the address is too long.
    #[error("NOTIFY_SOCKET={address:?}: {source}")]
    Socket {
        address: String,
        #[source]
        source: std::io::Error,
    },
    /// Not a number of microseconds.
    #[error("WATCHDOG_USEC={0:?}: expected a number of microseconds")]
    Watchdog(String),
}

/// A connection to the service manager's notification socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    address: SocketAddr,
    /// How often to send `WATCHDOG=1`: half the manager's timeout; `None` without a watchdog for us.
    watchdog_interval: Option<Duration>,
    /// `READY=1` was sent: watchdog pings only follow it.
    ready: AtomicBool,
}

impl Notifier {
    /// From the environment the service manager set (`env` reads a variable); `Ok(None)` without
    /// `$NOTIFY_SOCKET`.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Notifier>, NotifyError> {
        let Some(raw) = env("NOTIFY_SOCKET").filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let socket_error = |source| NotifyError::Socket {
            address: raw.clone(),
            source,
        };
        let address = if let Some(name) = raw.strip_prefix('@') {
            SocketAddr::from_abstract_name(name.as_bytes()).map_err(socket_error)?
        } else if raw.starts_with('/') {
            SocketAddr::from_pathname(&raw).map_err(socket_error)?
        } else {
            return Err(NotifyError::Address(raw));
        };
        let socket = UnixDatagram::unbound().map_err(socket_error)?;
        // A full queue at the manager drops a notification instead of stalling the async worker that sends it.
        socket.set_nonblocking(true).map_err(socket_error)?;
        Ok(Some(Notifier {
            socket,
            address,
            watchdog_interval: watchdog_interval(env)?,
            ready: AtomicBool::new(false),
        }))
    }

    /// Start-up is complete: `READY=1` with a status.
    pub fn ready(&self, status: &str) -> std::io::Result<()> {
        self.send(&format!("READY=1\nSTATUS={}", status_line(status)))?;
        self.ready.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// `WATCHDOG=1`, once `READY=1` went out (before it, systemd's start timeout applies instead); `Ok(false)`
    /// when not sent for that reason.
    pub fn watchdog(&self) -> std::io::Result<bool> {
        if !self.ready.load(Ordering::Relaxed) {
            return Ok(false);
        }
        self.send("WATCHDOG=1").map(|()| true)
    }

    /// The agent is stopping: `STOPPING=1` with a status.
    pub fn stopping(&self, status: &str) -> std::io::Result<()> {
        self.send(&format!("STOPPING=1\nSTATUS={}", status_line(status)))
    }

    /// A new status line for `systemctl status`.
    pub fn status(&self, status: &str) -> std::io::Result<()> {
        self.send(&format!("STATUS={}", status_line(status)))
    }

    fn send(&self, state: &str) -> std::io::Result<()> {
        self.socket
            .send_to_addr(state.as_bytes(), &self.address)
            .map(drop)
    }

    /// How often the heartbeat task must send `WATCHDOG=1`, when the manager watches this process.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog_interval
    }
}

/// Half of `$WATCHDOG_USEC` (sd_watchdog_enabled(3) asks for a ping at least that often), when it is set, not
/// 0, and `$WATCHDOG_PID` is unset or this process.
fn watchdog_interval(
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Duration>, NotifyError> {
    let Some(usec) = env("WATCHDOG_USEC").filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let usec: u64 = usec
        .trim()
        .parse()
        .map_err(|_| NotifyError::Watchdog(usec.clone()))?;
    let for_us = match env("WATCHDOG_PID").filter(|s| !s.is_empty()) {
        Some(pid) => pid.trim().parse::<u32>().ok() == Some(std::process::id()),
        None => true,
    };
    Ok((usec > 0 && for_us).then(|| Duration::from_micros(usec / 2)))
}

/// A `STATUS=` value on one line (the protocol separates assignments by newlines).
fn status_line(text: &str) -> String {
    text.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn nothing_without_notify_socket() {
        assert!(Notifier::from_env(&env(&[])).expect("ok").is_none());
        assert!(
            Notifier::from_env(&env(&[("NOTIFY_SOCKET", ""), ("WATCHDOG_USEC", "1000")]))
                .expect("ok")
                .is_none()
        );
    }

    #[test]
    fn a_relative_address_or_a_bad_watchdog_is_refused() {
        for (vars, want) in [
            (
                vec![("NOTIFY_SOCKET", "run/notify")],
                "expected an absolute path",
            ),
            (
                vec![("NOTIFY_SOCKET", "/run/notify"), ("WATCHDOG_USEC", "5s")],
                "WATCHDOG_USEC=\"5s\"",
            ),
        ] {
            let e = Notifier::from_env(&env(&vars)).expect_err("refused");
            assert!(e.to_string().contains(want), "{e}");
        }
        let long = format!("/{}", "x".repeat(200));
        let e = Notifier::from_env(&env(&[("NOTIFY_SOCKET", &long)])).expect_err("too long");
        assert!(matches!(e, NotifyError::Socket { .. }), "{e}");
    }

    #[test]
    fn the_watchdog_is_half_the_timeout_and_only_for_this_process() {
        let me = std::process::id().to_string();
        let other = (std::process::id() + 1).to_string();
        for (vars, want) in [
            (vec![], None),
            (vec![("WATCHDOG_USEC", "0")], None),
            (
                vec![("WATCHDOG_USEC", "5000000")],
                Some(Duration::from_millis(2500)),
            ),
            (
                vec![("WATCHDOG_USEC", "5000000"), ("WATCHDOG_PID", &me)],
                Some(Duration::from_millis(2500)),
            ),
            (
                vec![("WATCHDOG_USEC", "5000000"), ("WATCHDOG_PID", &other)],
                None,
            ),
        ] {
            let mut vars = vars;
            vars.push(("NOTIFY_SOCKET", "@interceptor-ebpf-test"));
            let n = Notifier::from_env(&env(&vars))
                .expect("ok")
                .expect("notifier");
            assert_eq!(n.watchdog_interval(), want, "{vars:?}");
        }
    }

    #[test]
    fn notifications_arrive_as_datagrams_at_a_path_and_an_abstract_name() {
        let dir = std::env::temp_dir().join(format!("iea-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let by_path = UnixDatagram::bind(&path).expect("bind path");
        let name = format!("iea-notify-{}", std::process::id());
        let by_name = UnixDatagram::bind_addr(
            &SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract"),
        )
        .expect("bind abstract");
        for (address, receiver) in [
            (path.display().to_string(), &by_path),
            (format!("@{name}"), &by_name),
        ] {
            let n = Notifier::from_env(&env(&[("NOTIFY_SOCKET", &address)]))
                .expect("ok")
                .expect("notifier");
            // No watchdog ping before READY=1.
            assert!(!n.watchdog().expect("nothing to send"));
            n.ready("serving,\npolicy generation 1").expect("send");
            assert!(n.watchdog().expect("send"));
            n.status("degraded: x").expect("send");
            n.stopping("SIGTERM").expect("send");
            let mut buf = [0u8; 256];
            for want in [
                "READY=1\nSTATUS=serving, policy generation 1",
                "WATCHDOG=1",
                "STATUS=degraded: x",
                "STOPPING=1\nSTATUS=SIGTERM",
            ] {
                let len = receiver.recv(&mut buf).expect("receive");
                assert_eq!(std::str::from_utf8(&buf[..len]), Ok(want), "{address}");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn status_stays_on_one_line() {
        assert_eq!(status_line("degraded: a\nb"), "degraded: a b");
    }
}
