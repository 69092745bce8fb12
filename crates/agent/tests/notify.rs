//! systemd's notification protocol against the real agent, as a `Type=notify` unit with `WatchdogSec=` runs it:
//! a Unix datagram socket stands in for the service manager (`$NOTIFY_SOCKET`). `READY=1` comes first and only
//! once the programs are pinned and the control socket answers; `WATCHDOG=1` follows at least twice per
//! `$WATCHDOG_USEC`, and never for another `$WATCHDOG_PID`; `STOPPING=1` on SIGTERM and on Shutdown. Root only.

mod support;

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

use support::{ctl, text, Agent, World};

/// The next datagram, or `None` after `timeout`.
fn next(socket: &UnixDatagram, timeout: Duration) -> Option<String> {
    socket.set_read_timeout(Some(timeout)).expect("timeout");
    let mut buf = [0u8; 4096];
    let len = socket.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..len]).into_owned())
}

/// Every datagram that arrives within `window`, with its arrival time.
fn collect(socket: &UnixDatagram, window: Duration) -> Vec<(Instant, String)> {
    let end = Instant::now() + window;
    let mut out = Vec::new();
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match next(socket, left.max(Duration::from_millis(1))) {
            Some(m) => out.push((Instant::now(), m)),
            None => break,
        }
    }
    out
}

/// The datagrams up to and including the first that is `want`, within `timeout`.
fn until(socket: &UnixDatagram, want: &str, timeout: Duration) -> Vec<String> {
    let end = Instant::now() + timeout;
    let mut out = Vec::new();
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match next(socket, left.max(Duration::from_millis(1))) {
            Some(m) => {
                let done = m == want;
                out.push(m);
                if done {
                    break;
                }
            }
            None => break,
        }
    }
    out
}

#[test]
fn ready_after_serving_watchdog_at_half_the_timeout_and_stopping_on_sigterm() {
    if support::skip("ready_after_serving_watchdog_at_half_the_timeout_and_stopping_on_sigterm") {
        return;
    }
    let world = World::new("notify");
    let path = world.dir.path.join("notify.sock");
    let manager = UnixDatagram::bind(&path).expect("bind the notify socket");
    let policy = support::write_policy(&world.dir.path);
    let mut agent = Agent::spawn(
        &world,
        &[
            ("NOTIFY_SOCKET", path.to_str().expect("utf8")),
            ("WATCHDOG_USEC", "1000000"),
            ("BROKER_EBPF_POLICY_FILE", policy.to_str().expect("utf8")),
        ],
    );

    let ready = next(&manager, Duration::from_secs(30)).unwrap_or_else(|| {
        panic!(
            "no notification; stdout {:?} stderr {}",
            agent.lines(),
            agent.stderr()
        )
    });
    assert_eq!(ready, "READY=1\nSTATUS=serving, policy generation 1");
    // At READY=1 the programs are attached and pinned, and the control socket answers at once.
    let pins = std::fs::read_dir(&world.pins.path)
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(pins > 0, "nothing pinned in {}", world.pins.path.display());
    let health = ctl(&world.socket, &["--timeout-ms", "2000", "health"], None);
    assert_eq!(health.status.code(), Some(0), "{}", text(&health.stderr));

    // WATCHDOG_USEC=1000000: a ping every 500 ms (the heartbeat interval is 100 ms here, so the beats keep the
    // heartbeat fresh), nothing else. A whole second is what systemd allows between two; the half left over is
    // slack for a loaded machine.
    let pings = collect(&manager, Duration::from_millis(3000));
    assert!(pings.iter().all(|(_, m)| m == "WATCHDOG=1"), "{pings:?}");
    assert!(
        (4..=8).contains(&pings.len()),
        "{} pings in 3 s",
        pings.len()
    );
    let widest = pings
        .windows(2)
        .map(|w| w[1].0 - w[0].0)
        .max()
        .unwrap_or_default();
    assert!(
        widest < Duration::from_millis(1000),
        "a gap of {widest:?} would let systemd's watchdog fire"
    );

    agent.signal(libc::SIGTERM);
    let want = "STOPPING=1\nSTATUS=stopping: SIGTERM";
    let stopping = until(&manager, want, Duration::from_secs(5));
    assert_eq!(
        stopping.last().map(String::as_str),
        Some(want),
        "{stopping:?}"
    );
    assert_eq!(agent.wait_exit(Duration::from_secs(15)), Some(0));
}

#[test]
fn no_watchdog_for_another_pid_and_stopping_on_shutdown_at_an_abstract_address() {
    if support::skip("no_watchdog_for_another_pid_and_stopping_on_shutdown_at_an_abstract_address")
    {
        return;
    }
    let world = World::new("notify-pid");
    let name = support::unique("notify");
    let manager = UnixDatagram::bind_addr(
        &SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract address"),
    )
    .expect("bind the notify socket");
    // Another process's watchdog (systemd sets WATCHDOG_PID to the main pid; pid 1 is never the agent), and no
    // policy: READY=1 says degraded.
    let mut agent = Agent::spawn(
        &world,
        &[
            ("NOTIFY_SOCKET", &format!("@{name}")),
            ("WATCHDOG_USEC", "200000"),
            ("WATCHDOG_PID", "1"),
        ],
    );
    let ready = next(&manager, Duration::from_secs(30)).expect("READY=1");
    assert!(
        ready.starts_with("READY=1\nSTATUS=degraded: no policy loaded"),
        "{ready}"
    );
    // Ten pings would have come in this second if the watchdog were ours.
    let after = collect(&manager, Duration::from_secs(1));
    assert!(after.is_empty(), "{after:?}");

    let out = ctl(&world.socket, &["shutdown"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let want = "STOPPING=1\nSTATUS=stopping: Shutdown";
    assert_eq!(until(&manager, want, Duration::from_secs(5)), [want]);
    assert_eq!(agent.wait_exit(Duration::from_secs(15)), Some(0));
}
