//! Connection fairness on the control socket (issue 17, "Lock-out"): an unprivileged peer holding connections
//! cannot lock root or the privileged controller out. Root only (loads the dataplane; the hostile peer's
//! connections are made from a thread whose effective uid and gid are switched, which SO_PEERCRED reports).

mod support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use support::{ctl, text, Agent, World};

/// The privileged controller's uid in these tests (not root).
const CONTROLLER: u32 = 1500;

fn agent(world: &World, extra: &[(&str, &str)]) -> Agent {
    let policy = support::write_policy(&world.dir.path);
    let mut env = vec![
        ("BROKER_EBPF_SOCKET_MODE", "0666"),
        ("BROKER_EBPF_SOCKET_DIR_MODE", "0755"),
        ("BROKER_EBPF_PRIVILEGED_UIDS", "1500"),
        ("BROKER_EBPF_METRICS_LISTEN", "127.0.0.1:0"),
        ("BROKER_EBPF_POLICY_FILE", policy.to_str().expect("utf8")),
    ];
    env.extend_from_slice(extra);
    Agent::start(world, &env)
}

/// One connection and what the agent said to its first GetHealth: `Ok` (served, kept open) or the refusal
/// line it got instead.
enum Conn {
    /// Held open (the agent counts it) until dropped.
    Served(#[allow(dead_code)] UnixStream),
    Refused(Value),
}

fn open(socket: &Path) -> Conn {
    let mut s = UnixStream::connect(socket).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    // A refused connection may already be closed: the refusal line is still there to read.
    let _ = s.write_all(b"{\"command\":\"GetHealth\"}\n");
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).expect("a reply");
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
    if v["ok"] == true {
        Conn::Served(s)
    } else {
        Conn::Refused(v)
    }
}

/// `open`, again while the agent refuses, until `deadline` has passed: for a slot that is about to be freed.
fn open_retrying_refusals(socket: &Path, deadline: Duration) -> Conn {
    let start = std::time::Instant::now();
    loop {
        let conn = open(socket);
        if matches!(conn, Conn::Served(_)) || start.elapsed() > deadline {
            return conn;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `n` connections made with effective uid and gid `id` (from a thread of its own: raw setres[ug]id changes
/// that thread's credentials only, and connect() hands them to SO_PEERCRED).
fn open_as(socket: &Path, id: u32, n: usize) -> Vec<Conn> {
    let socket = socket.to_path_buf();
    std::thread::spawn(move || {
        let keep = u32::MAX; // -1: leave unchanged
                             // SAFETY: raw syscalls on this thread's credentials; the thread ends after the connects.
        let rc = unsafe {
            libc::syscall(libc::SYS_setresgid, keep, id, keep)
                | libc::syscall(libc::SYS_setresuid, keep, id, keep)
        };
        assert_eq!(rc, 0, "switch to {id}");
        (0..n).map(|_| open(&socket)).collect::<Vec<_>>()
    })
    .join()
    .expect("connect thread")
}

fn served(conns: &[Conn]) -> usize {
    conns
        .iter()
        .filter(|c| matches!(c, Conn::Served(_)))
        .count()
}

fn refusals(conns: &[Conn]) -> Vec<&Value> {
    conns
        .iter()
        .filter_map(|c| match c {
            Conn::Refused(v) => Some(v),
            Conn::Served(_) => None,
        })
        .collect()
}

fn message(v: &Value) -> &str {
    assert_eq!(v["error"]["reason_code"], "CTRL_COMMAND_FAILED", "{v}");
    v["error"]["message"].as_str().expect("message")
}

/// Root's `ctl health` and the controller's mutation both work.
fn privileged_peers_are_served(socket: &Path) {
    let out = ctl(socket, &["health"], None);
    assert_eq!(
        out.status.code(),
        Some(0),
        "root's ctl health: {}",
        text(&out.stderr)
    );
    let out = ctl(
        socket,
        &["mode", "set", "enforce"],
        Some((CONTROLLER, CONTROLLER)),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "the controller's mutation: {}",
        text(&out.stderr)
    );
}

/// The attack of issue 17: a read-only peer opens connections until the agent refuses it. Before the reserve,
/// it held every slot and root's `ctl health` got "serves at most N connections".
#[test]
fn an_unprivileged_peer_holding_every_slot_it_can_does_not_lock_root_out() {
    if support::skip("an_unprivileged_peer_holding_every_slot_it_can_does_not_lock_root_out") {
        return;
    }
    let world = World::new("lockout");
    // Default per-uid cap (512) and reserve (a quarter of 32 = 8).
    let agent = agent(&world, &[("BROKER_EBPF_MAX_CLIENTS", "32")]);
    let held = open_as(&world.socket, 65534, 40);
    assert_eq!(served(&held), 24, "32 slots, 8 kept for privileged peers");
    let refused = refusals(&held);
    assert_eq!(refused.len(), 16);
    assert!(
        message(refused[0]).contains(
            "the last 8 of 32 are kept for privileged peers (BROKER_EBPF_RESERVED_CLIENTS)"
        ),
        "{}",
        refused[0]
    );
    privileged_peers_are_served(&world.socket);
    // The reserve is the privileged peers' to use up; past max_clients everyone is refused. The ctl processes
    // above have exited, but the agent frees their slots when it sees their connections close, which can come
    // after this point: a refusal is retried until that has had time to happen (a reserve root cannot use
    // still fails, after the deadline).
    let root = (0..8)
        .map(|_| open_retrying_refusals(&world.socket, Duration::from_secs(5)))
        .collect::<Vec<_>>();
    assert_eq!(served(&root), 8);
    let over = open(&world.socket);
    let Conn::Refused(v) = over else {
        panic!("the 33rd connection was served")
    };
    assert!(message(&v).contains("at most 32 connections"), "{v}");
    drop((held, root, agent));
}

#[test]
fn each_unprivileged_uid_has_its_cap_and_refusals_are_logged_sparingly_and_counted() {
    if support::skip(
        "each_unprivileged_uid_has_its_cap_and_refusals_are_logged_sparingly_and_counted",
    ) {
        return;
    }
    let world = World::new("peercap");
    let agent = agent(
        &world,
        &[
            ("BROKER_EBPF_MAX_CLIENTS", "64"),
            ("BROKER_EBPF_MAX_CLIENTS_PER_UID", "4"),
            ("BROKER_EBPF_RESERVED_CLIENTS", "2"),
        ],
    );
    let started = agent
        .wait_line(Duration::from_secs(10), |r| r["agent_event"] == "started")
        .expect("started");
    assert_eq!(
        (
            &started["max_clients"],
            &started["max_clients_per_uid"],
            &started["reserved_clients"]
        ),
        (&Value::from(64), &Value::from(4), &Value::from(2))
    );

    let flood_start = Instant::now();
    let nobody = open_as(&world.socket, 65534, 204);
    assert_eq!(served(&nobody), 4);
    let refused = refusals(&nobody);
    assert_eq!(refused.len(), 200);
    assert!(
        message(refused[0]).contains(
            "uid 65534 holds 4 connections, the most an unprivileged peer may hold (BROKER_EBPF_MAX_CLIENTS_PER_UID)"
        ),
        "{}",
        refused[0]
    );
    // Another unprivileged uid still gets its own four.
    assert_eq!(served(&open_as(&world.socket, 65533, 4)), 4);
    privileged_peers_are_served(&world.socket);

    // 200 refusals, at most one line a second; the next line counts the ones held back.
    let flood_secs = flood_start.elapsed().as_secs();
    std::thread::sleep(Duration::from_millis(1100));
    let late = open_as(&world.socket, 65534, 1);
    assert_eq!(served(&late), 0);
    let summary = agent
        .wait_line(Duration::from_secs(5), |r| {
            r["agent_event"] == "connection_refused" && r["suppressed"].as_u64() > Some(0)
        })
        .expect("a line counting the refusals held back");
    assert_eq!(summary["reason"], "peer_limit");
    assert_eq!(summary["peer"]["uid"], 65534);
    let lines: Vec<Value> = agent
        .records()
        .into_iter()
        .filter(|r| r["agent_event"] == "connection_refused")
        .collect();
    assert!(
        lines.len() as u64 <= flood_secs + 2,
        "{} lines for 201 refusals in {flood_secs} s",
        lines.len()
    );
    let logged_or_held: u64 = lines
        .iter()
        .map(|l| 1 + l["suppressed"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(logged_or_held, 201, "{lines:?}");

    let metrics = support::scrape(&agent.metrics_addr());
    assert_eq!(
        support::metric(
            &metrics,
            "interceptor_ebpf_control_connections_refused_total{reason=\"peer_limit\"} "
        ),
        Some(201),
        "{metrics}"
    );
    assert_eq!(
        support::metric(
            &metrics,
            "interceptor_ebpf_control_connections_refused_total{reason=\"reserved\"} "
        ),
        Some(0)
    );
    drop((nobody, agent));
}
