//! End to end: a workload in a managed cgroup (own cgroup, own netns) reaches the broker and what the policy
//! allows, is refused elsewhere with EPERM, and every verdict arrives, as the same DataplanePacketEvent line,
//! through SubscribeEvents, through `ctl events` and in the agent's log; the metrics count them; Shutdown
//! leaves the pinned enforcement in place. Root only.

mod support;

use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use interceptor_ebpf_agent::client::Client;
use serde_json::Value;
use support::dp::{self, Probe};
use support::{ctl, metric, scrape, text, Agent, World};

#[test]
fn refusals_reach_subscribers_ctl_events_and_the_log() {
    if support::skip("refusals_reach_subscribers_ctl_events_and_the_log") {
        return;
    }
    let mut world = World::new("e2e");
    let netns = dp::NetNs::new("e2e");
    let (workload, workload_id) = world.cgroup.child("workload");
    let (_unmanaged, _) = world.cgroup.child("unmanaged");
    let policy = support::write_policy(&world.dir.path);
    let agent = Agent::start(
        &world,
        &[
            ("BROKER_EBPF_POLICY_FILE", policy.to_str().expect("utf8")),
            ("BROKER_EBPF_METRICS_LISTEN", "127.0.0.1:0"),
        ],
    );
    let metrics_addr = agent.metrics_addr();
    let out = ctl(
        &world.socket,
        &[
            "cgroup",
            "add",
            &world.payload_path(&workload),
            "--workload-id",
            "wl-e2e",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        format!(
            "managed: {} (id {workload_id}) mode inherit (global) workload wl-e2e",
            world.payload_path(&workload)
        )
    );

    // Subscriber 1: the protocol client, in a thread.
    let client = Client::connect(&world.socket, Some(Duration::from_secs(5))).expect("connect");
    let mut stream = client.subscribe().expect("subscribe");
    stream
        .set_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    const PROBES: usize = 5;
    let subscriber = std::thread::spawn(move || {
        let mut lines = Vec::new();
        while lines.len() < PROBES {
            match stream.next_line() {
                Ok(Some(l)) => lines.push(String::from_utf8(l).expect("utf8")),
                _ => break,
            }
        }
        lines
    });
    // Subscriber 2: `ctl events`, piped: JSON lines.
    let mut events = Command::new(support::BIN)
        .args(["ctl", "--socket"])
        .arg(&world.socket)
        .args(["events", "--count", &PROBES.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ctl events");
    // Both subscribed before the workload starts (the agent keeps no history).
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(
        &scrape(&metrics_addr),
        "interceptor_ebpf_event_subscribers ",
    ) != Some(2)
    {
        assert!(Instant::now() < deadline, "two subscribers");
        std::thread::sleep(Duration::from_millis(50));
    }

    let sa = |s: &str| s.parse::<SocketAddr>().expect("addr");
    let cases = [
        (
            Probe::TcpConnect,
            "10.66.0.10:8081",
            libc::ECONNREFUSED,
            "ALLOW_BROKER",
            None,
        ),
        (
            Probe::TcpConnect,
            "10.66.1.5:443",
            libc::ECONNREFUSED,
            "ALLOW_EXPLICIT",
            Some("allow-api"),
        ),
        (
            Probe::TcpConnect,
            "10.66.1.99:443",
            libc::EPERM,
            "DENY_EXPLICIT",
            Some("deny-bad"),
        ),
        (
            Probe::TcpConnect,
            "10.9.9.9:443",
            libc::EPERM,
            "DENY_DEFAULT",
            None,
        ),
        (
            Probe::UdpSendto,
            "10.9.9.9:9",
            libc::EPERM,
            "DENY_DEFAULT",
            None,
        ),
    ];
    let mut expected = HashMap::new();
    for (kind, dst, errno, code, rule) in cases {
        let r = dp::probe(&workload, &netns, kind, sa(dst));
        assert_eq!(r.errno, errno, "{dst}: errno");
        expected.insert(r.pid, (dst, code, rule, kind));
    }

    let from_client = subscriber.join().expect("subscriber");
    let mut ctl_out = String::new();
    events
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut ctl_out)
        .expect("ctl events output");
    let status = events.wait().expect("ctl events exit");
    assert_eq!(status.code(), Some(0));
    let from_ctl: Vec<String> = ctl_out.lines().map(str::to_owned).collect();
    assert_eq!(from_client.len(), PROBES, "{from_client:?}");
    assert_eq!(from_ctl.len(), PROBES, "{ctl_out}");

    for (pid, (dst, code, rule, kind)) in &expected {
        let find = |lines: &[String]| {
            lines
                .iter()
                .find(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| v["pid"] == *pid))
                .cloned()
                .unwrap_or_else(|| panic!("no event for pid {pid} ({dst}) in {lines:?}"))
        };
        let line = find(&from_client);
        assert_eq!(find(&from_ctl), line, "ctl events prints the same line");
        let logged = agent
            .wait_line(Duration::from_secs(5), |r| r["pid"] == *pid)
            .expect("logged");
        assert_eq!(
            serde_json::to_string(&logged).expect("json"),
            line,
            "the log has the same record"
        );
        // The record is exactly the contract's log record of a valid event.
        let event = interceptor_ebpf_core::contract::events::json::parse_json(line.as_bytes())
            .unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(
            String::from_utf8(event.to_log_json()).expect("utf8"),
            line,
            "serializeDataplanePacketEventToLog form"
        );
        let v: Value = serde_json::from_str(&line).expect("json");
        assert_eq!(v["reason_code"], *code, "{dst}");
        assert_eq!(v["workload_id"], "wl-e2e");
        assert_eq!(v["cgroup_id"], workload_id.to_string());
        assert_eq!(v["policy_generation"], 1);
        assert_eq!(v["rule_id"].as_str(), *rule, "{dst}");
        assert_eq!(v["dst_ip"], dst.split(':').next().unwrap_or_default());
        let hook = if *kind == Probe::UdpSendto {
            "sendmsg4"
        } else {
            "connect4"
        };
        assert_eq!(v["hook"], hook);
    }

    // The metrics count the verdicts by code and hook.
    let m = scrape(&metrics_addr);
    for (series, n) in [
        ("interceptor_ebpf_verdicts_total{reason_code=\"DENY_DEFAULT\",hook=\"connect4\"} ", 1),
        ("interceptor_ebpf_verdicts_total{reason_code=\"DENY_DEFAULT\",hook=\"sendmsg4\"} ", 1),
        ("interceptor_ebpf_verdicts_total{reason_code=\"ALLOW_BROKER\",hook=\"connect4\"} ", 1),
        ("interceptor_ebpf_policy_generation ", 1),
        ("interceptor_ebpf_managed_cgroups ", 1),
        ("interceptor_ebpf_degraded ", 0),
        ("interceptor_ebpf_control_requests_total{command=\"UpsertManagedCgroup\",outcome=\"ok\"} ", 1),
    ] {
        assert_eq!(metric(&m, series), Some(n), "{series}\n{m}");
    }
    assert!(metric(&m, "interceptor_ebpf_kernel_events_emitted_total ")
        .is_some_and(|n| n >= PROBES as u64));

    // Shutdown without --detach: the agent exits 0 and the pins keep enforcing.
    let out = ctl(&world.socket, &["shutdown"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut agent = agent;
    assert_eq!(agent.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(!world.socket.exists(), "the socket file is removed");
    let r = dp::probe(&workload, &netns, Probe::TcpConnect, sa("10.9.9.9:443"));
    assert_eq!(r.errno, libc::EPERM, "still enforced after Shutdown");
    let stopped = agent
        .wait_line(Duration::from_secs(5), |r| r["agent_event"] == "stopped")
        .expect("stopped line");
    assert_eq!(stopped["enforcement"], "pinned");
    // Every line the agent wrote is one of three kinds (two records, one envelope); the records are the package's
    // own (its parsers read them back) and every operational line has the envelope's keys.
    for r in agent.records() {
        if r["code_namespace"] == "dataplane_verdict" {
            interceptor_ebpf_core::contract::events::parse_value(&r).expect("the package's parser");
        } else if r["code_namespace"] == "control_authz" {
            interceptor_ebpf_core::contract::control::authz::ControlPlaneAuthzEvent::from_json_value_for_log(&r)
                .expect("the package's parser");
        } else {
            for key in ["time", "level", "msg", "target"] {
                assert!(r[key].is_string(), "{key}: {r}");
            }
        }
        let kinds = [
            r["code_namespace"] == "dataplane_verdict",
            r["code_namespace"] == "control_authz",
            // An operational line: the agent's own (agent_event) or a dataplane log record.
            r.get("level").is_some() && r.get("code_namespace").is_none(),
        ];
        assert_eq!(kinds.iter().filter(|k| **k).count(), 1, "{r}");
    }
}
