//! The control socket under bad and heavy input: malformed JSON, unknown command, unknown field, an invalid
//! payload (every issue listed), ids echoed, an oversized frame, half a frame then silence, an idle client,
//! 1,000 concurrent clients. The agent keeps serving everyone else and its memory stays bounded. Root only.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use interceptor_ebpf_agent::client::{Client, ClientError};
use interceptor_ebpf_core::contract::control::protocol::CommandRequest;
use interceptor_ebpf_core::contract::policy::PolicySnapshot;
use serde_json::Value;
use support::{Agent, World};

fn connect(socket: &Path) -> (BufReader<UnixStream>, UnixStream) {
    let s = UnixStream::connect(socket).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    (BufReader::new(s.try_clone().expect("clone")), s)
}

fn reply(r: &mut BufReader<UnixStream>) -> Value {
    let mut line = String::new();
    r.read_line(&mut line).expect("read a reply");
    assert!(line.ends_with('\n'), "a whole line: {line:?}");
    serde_json::from_str(&line).expect("JSON reply")
}

fn ask(r: &mut BufReader<UnixStream>, w: &mut UnixStream, line: &str) -> Value {
    w.write_all(line.as_bytes()).expect("write");
    reply(r)
}

/// The agent closed the connection after its last reply (a reset when our unread request bytes remained).
fn closed(r: &mut BufReader<UnixStream>) -> bool {
    let mut rest = Vec::new();
    match r.read_to_end(&mut rest) {
        Ok(0) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    }
}

fn error_code(v: &Value) -> &str {
    assert_eq!(v["ok"], false, "{v}");
    v["error"]["reason_code"].as_str().expect("reason_code")
}

#[test]
fn bad_requests_get_the_right_code_and_the_connection_goes_on() {
    if support::skip("bad_requests_get_the_right_code_and_the_connection_goes_on") {
        return;
    }
    let world = World::new("proto");
    let agent = Agent::start(&world, &[]);
    let (mut r, mut w) = connect(&world.socket);
    let cases = [
        ("{\"command\":\n", "CTRL_REQUEST_MALFORMED", None),
        ("not json\n", "CTRL_REQUEST_MALFORMED", None),
        (
            "{\"command\":\"Reboot\",\"id\":\"a\"}\n",
            "CTRL_REQUEST_MALFORMED",
            Some("a"),
        ),
        (
            "{\"command\":\"GetHealth\",\"verbose\":true,\"id\":\"b\"}\n",
            "CTRL_REQUEST_MALFORMED",
            Some("b"),
        ),
        (
            "{\"command\":\"GetHealth\",\"command\":\"Shutdown\"}\n",
            "CTRL_REQUEST_MALFORMED",
            None,
        ),
        ("[]\n", "CTRL_REQUEST_MALFORMED", None),
        (
            "{\"command\":\"SetGlobalMode\",\"payload\":{\"mode\":\"audit\"},\"id\":\"c\"}\n",
            "CTRL_REQUEST_PAYLOAD_INVALID",
            Some("c"),
        ),
        (
            "{\"command\":\"Shutdown\",\"payload\":{\"detach\":1}}\n",
            "CTRL_REQUEST_PAYLOAD_INVALID",
            None,
        ),
    ];
    for (line, code, id) in cases {
        // The line "{\"command\":\n" is a whole (broken) frame: the newline ends it.
        let v = ask(&mut r, &mut w, line);
        assert_eq!(error_code(&v), code, "{line:?}: {v}");
        assert_eq!(v["id"].as_str(), id, "{line:?}: id echoed");
    }
    // Every issue of a payload is listed, with its path.
    let v = ask(
        &mut r,
        &mut w,
        "{\"command\":\"ReplacePolicySnapshot\",\"payload\":{\"broker\":[{\"ip\":\"10.0.0.1\",\"port\":0}],\"dns\":[],\
         \"rules\":[{\"id\":\"a\",\"action\":\"allow\",\"cidr\":\"10.0.0.1/8\"},{\"id\":\"b\",\"action\":\"nope\",\"cidr\":\"10.0.0.0/8\"}]}}\n",
    );
    assert_eq!(error_code(&v), "CTRL_REQUEST_PAYLOAD_INVALID");
    let message = v["error"]["message"].as_str().expect("message");
    for path in [
        "payload.broker[0].port",
        "payload.rules[0].cidr",
        "payload.rules[1].action",
    ] {
        assert!(message.contains(path), "{path} in {message}");
    }
    assert_eq!(v["error"]["command"], "ReplacePolicySnapshot");
    // The same connection still serves.
    let v = ask(&mut r, &mut w, "{\"command\":\"GetStatus\",\"id\":\"d\"}\n");
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["id"], "d");
    // Pipelined requests are answered in order.
    w.write_all(b"{\"command\":\"GetPolicySummary\",\"id\":\"1\"}\n{\"command\":\"GetHealth\",\"id\":\"2\"}\n")
        .expect("write");
    assert_eq!(reply(&mut r)["id"], "1");
    assert_eq!(reply(&mut r)["id"], "2");
    // A failed command is CTRL_COMMAND_FAILED with the reason, and is logged like every refusal.
    let v = ask(
        &mut r,
        &mut w,
        "{\"command\":\"DeleteManagedCgroup\",\"payload\":{\"id\":\"12345\"}}\n",
    );
    assert_eq!(error_code(&v), "CTRL_COMMAND_FAILED");
    assert_eq!(v["error"]["message"], "cgroup id 12345 is not managed");
    let wait = Duration::from_secs(5);
    assert!(agent
        .wait_line(wait, |l| l["reason_code"] == "CTRL_REQUEST_PAYLOAD_INVALID"
            && l["command"] == "SetGlobalMode")
        .is_some());
    assert!(agent
        .wait_line(wait, |l| l["reason_code"] == "CTRL_COMMAND_FAILED"
            && l["command"] == "DeleteManagedCgroup")
        .is_some());
}

#[test]
fn oversized_and_unfinished_frames_are_cut_off_without_holding_up_others() {
    if support::skip("oversized_and_unfinished_frames_are_cut_off_without_holding_up_others") {
        return;
    }
    let world = World::new("frames");
    let _agent = Agent::start(
        &world,
        &[
            ("BROKER_EBPF_REQUEST_TIMEOUT_MS", "800"),
            ("BROKER_EBPF_CLIENT_IDLE_TIMEOUT_MS", "1500"),
        ],
    );
    let socket = world.socket.clone();

    // A frame of exactly 16 MiB is read (and judged); one byte more is refused and the connection closed.
    let (mut r, mut w) = connect(&socket);
    let head = "{\"command\":\"GetHealth\",\"payload\":\"";
    let tail = "\"}";
    let fill = 16 * 1024 * 1024 - head.len() - tail.len();
    let mut big = Vec::with_capacity(16 * 1024 * 1024 + 1);
    big.extend_from_slice(head.as_bytes());
    big.resize(head.len() + fill, b'x');
    big.extend_from_slice(tail.as_bytes());
    big.push(b'\n');
    w.write_all(&big).expect("write 16 MiB");
    assert_eq!(error_code(&reply(&mut r)), "CTRL_REQUEST_PAYLOAD_INVALID");
    let (mut r, mut w) = connect(&socket);
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'a'; 1 << 20];
        for _ in 0..17 {
            if w.write_all(&chunk).is_err() {
                return;
            }
        }
    });
    let v = reply(&mut r);
    assert_eq!(error_code(&v), "CTRL_REQUEST_MALFORMED");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("exceeds 16777216 bytes")),
        "{v}"
    );
    assert!(closed(&mut r));
    let _ = writer.join();

    // Half a frame, then silence: others are served meanwhile; the half frame is refused at its deadline.
    let (mut half_r, mut half_w) = connect(&socket);
    let started = Instant::now();
    half_w
        .write_all(b"{\"command\":\"GetHea")
        .expect("write half");
    let (mut idle_r, _idle_w) = connect(&socket);
    for n in 0..20 {
        let (mut r, mut w) = connect(&socket);
        let t = Instant::now();
        let v = ask(
            &mut r,
            &mut w,
            &format!("{{\"command\":\"GetStatus\",\"id\":\"{n}\"}}\n"),
        );
        assert_eq!(v["ok"], true);
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "served promptly: {:?}",
            t.elapsed()
        );
    }
    let v = reply(&mut half_r);
    let waited = started.elapsed();
    assert_eq!(error_code(&v), "CTRL_REQUEST_MALFORMED");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("within 800 ms")),
        "{v}"
    );
    assert!(
        waited >= Duration::from_millis(700) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    assert!(closed(&mut half_r));
    // An idle connection is closed quietly after the idle timeout.
    assert!(
        closed(&mut idle_r),
        "the idle connection is closed without a reply"
    );
    assert!(started.elapsed() >= Duration::from_millis(1400));
}

fn raise_nofile() {
    // SAFETY: plain rlimit struct we own.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

#[test]
fn a_thousand_concurrent_clients_are_served_with_bounded_memory() {
    if support::skip("a_thousand_concurrent_clients_are_served_with_bounded_memory") {
        return;
    }
    raise_nofile();
    let world = World::new("many");
    let agent = Agent::start(&world, &[]);
    let socket = world.socket.clone();
    // Warm up, then take the baseline.
    for _ in 0..50 {
        let (mut r, mut w) = connect(&socket);
        ask(&mut r, &mut w, "{\"command\":\"GetHealth\"}\n");
    }
    let before = agent.rss_kib();

    const CLIENTS: usize = 1000;
    const HELD: usize = 32 * 1024;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let held = rt.block_on(async {
        let mut tasks = Vec::with_capacity(CLIENTS);
        for n in 0..CLIENTS {
            let socket = socket.clone();
            tasks.push(tokio::spawn(async move {
                use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
                let stream = tokio::net::UnixStream::connect(&socket)
                    .await
                    .expect("connect");
                let (rd, mut wr) = stream.into_split();
                let mut rd = tokio::io::BufReader::new(rd);
                wr.write_all(format!("{{\"command\":\"GetHealth\",\"id\":\"{n}\"}}\n").as_bytes())
                    .await
                    .expect("write");
                let mut line = String::new();
                rd.read_line(&mut line).await.expect("reply");
                let v: Value = serde_json::from_str(&line).expect("json");
                assert_eq!(v["id"], n.to_string());
                // Then half a frame of 32 KiB, held open.
                let mut half = b"{\"command\":\"GetHealth\",\"payload\":\"".to_vec();
                half.resize(HELD, b'x');
                wr.write_all(&half).await.expect("write half");
                (rd, wr)
            }));
        }
        let mut held = Vec::with_capacity(CLIENTS);
        for t in tasks {
            held.push(t.await.expect("client task"));
        }
        held
    });
    assert_eq!(held.len(), CLIENTS);
    std::thread::sleep(Duration::from_millis(300));
    let during = agent.rss_kib();
    // Still serving a newcomer promptly.
    let t = Instant::now();
    let (mut r, mut w) = connect(&socket);
    assert_eq!(
        ask(&mut r, &mut w, "{\"command\":\"GetStatus\"}\n")["ok"],
        true
    );
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    let metrics_connections = CLIENTS;
    drop(held);
    drop(rt);
    // The bound: every client may hold 64 KiB without touching the shared budget; allow that plus slack for
    // task and socket state.
    let growth = during.saturating_sub(before);
    let bound = (metrics_connections as u64 * 64) + 32 * 1024;
    eprintln!("agent RSS: {before} KiB before, {during} KiB with {CLIENTS} clients holding {HELD} bytes each");
    assert!(
        growth < bound,
        "RSS grew by {growth} KiB (bound {bound} KiB)"
    );

    // And again: memory does not ratchet up with every wave of clients.
    for _ in 0..3 {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        rt.block_on(async {
            let mut tasks = Vec::new();
            for _ in 0..CLIENTS {
                let socket = socket.clone();
                tasks.push(tokio::spawn(async move {
                    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
                    let stream = tokio::net::UnixStream::connect(&socket)
                        .await
                        .expect("connect");
                    let (rd, mut wr) = stream.into_split();
                    wr.write_all(b"{\"command\":\"GetHealth\"}\n")
                        .await
                        .expect("write");
                    let mut line = String::new();
                    tokio::io::BufReader::new(rd)
                        .read_line(&mut line)
                        .await
                        .expect("reply");
                    assert!(line.starts_with("{\"ok\":true"), "{line}");
                }));
            }
            for t in tasks {
                t.await.expect("client");
            }
        });
    }
    let after = agent.rss_kib();
    eprintln!("agent RSS after three more waves of {CLIENTS} clients: {after} KiB");
    assert!(
        after < during + 16 * 1024,
        "RSS {after} KiB after the waves, {during} KiB during the first"
    );
}

/// A valid snapshot whose request line is over 16 MiB: the agent refuses it with CTRL_REQUEST_MALFORMED and
/// closes; the protocol client reports that reply, not the broken pipe it met while still writing (issue 17:
/// it used to say "the agent closed the connection"). `ctl policy apply` refuses the file before sending
/// anything, with the same exit status the agent's refusal gives (5).
#[test]
fn a_policy_over_16_mib_is_refused_by_the_agent_and_by_ctl_before_sending() {
    if support::skip("a_policy_over_16_mib_is_refused_by_the_agent_and_by_ctl_before_sending") {
        return;
    }
    let world = World::new("bigpolicy");
    let _agent = Agent::start(&world, &[]);
    // 48 rules of every port: about 18.7 MB, as the file and as the normalised request.
    let ports = (1..=65_535u32)
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let rules = (0..48)
        .map(|i| {
            format!(r#"{{"id":"r{i}","action":"allow","cidr":"10.1.{i}.0/24","ports":[{ports}]}}"#)
        })
        .collect::<Vec<_>>()
        .join(",");
    let text =
        format!(r#"{{"broker":[{{"ip":"10.0.0.5","port":8081}}],"dns":[],"rules":[{rules}]}}"#);
    assert!(
        text.len() > 16 * 1024 * 1024 + 1024 * 1024,
        "{}",
        text.len()
    );
    let snapshot = PolicySnapshot::from_json_slice(text.as_bytes()).expect("a valid snapshot");
    let file = world.dir.path.join("big-policy.json");
    std::fs::write(&file, text).expect("write the policy");

    let mut client =
        Client::connect(&world.socket, Some(Duration::from_secs(10))).expect("connect");
    match client.call(CommandRequest::ReplacePolicySnapshot(snapshot)) {
        Err(ClientError::Refused(e)) => {
            assert_eq!(e.reason_code.as_str(), "CTRL_REQUEST_MALFORMED");
            assert!(
                e.message
                    .contains("the request line exceeds 16777216 bytes"),
                "{}",
                e.message
            );
        }
        other => panic!("expected the agent's refusal, got {other:?}"),
    }

    let out = support::ctl(
        &world.socket,
        &["policy", "apply", file.to_str().expect("utf8")],
        None,
    );
    let stderr = support::text(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(
        stderr.contains("the agent reads at most 16,777,216 bytes a line")
            && stderr.contains("nothing was sent"),
        "{stderr}"
    );
    // The agent is unharmed.
    let out = support::ctl(&world.socket, &["status"], None);
    assert_eq!(out.status.code(), Some(0), "{}", support::text(&out.stderr));
}
