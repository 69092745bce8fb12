//! `kill -9` of the agent while a workload connects in a loop: enforcement never lapses (a denied destination
//! is refused in every round), the degraded code appears once the grace period passed (the allowed destination
//! is refused too, fail-closed, and the DENY_DEGRADED_FAIL_CLOSED events reach the next agent's log), and a
//! restarted agent adopts the pinned state and says so in GetHealth. Root only.

mod support;

use std::net::SocketAddrV4;
use std::time::Duration;

use support::{ctl, dp, monotonic_ns, text, Agent, Round, WorkloadLoop, World};

const GRACE_MS: u64 = 1000;
const EPERM: i32 = libc::EPERM;
const ECONNREFUSED: i32 = libc::ECONNREFUSED;

fn rounds_between(rounds: &[Round], from_ns: u64, to_ns: u64) -> Vec<Round> {
    rounds
        .iter()
        .copied()
        .filter(|r| r.at_ns >= from_ns && r.at_ns < to_ns)
        .collect()
}

#[test]
fn kill_9_keeps_enforcing_degrades_after_the_grace_and_a_restart_adopts() {
    if support::skip("kill_9_keeps_enforcing_degrades_after_the_grace_and_a_restart_adopts") {
        return;
    }
    let mut world = World::new("kill9");
    let netns = dp::NetNs::new("kill9");
    let (workload, workload_id) = world.cgroup.child("workload");
    let policy = support::write_policy(&world.dir.path);
    let policy = policy.to_str().expect("utf8").to_owned();
    let env = [
        ("BROKER_EBPF_POLICY_FILE", policy.as_str()),
        ("BROKER_EBPF_HEARTBEAT_GRACE_MS", "1000"),
        ("BROKER_EBPF_HEARTBEAT_INTERVAL_MS", "100"),
        ("BROKER_EBPF_FAIL_MODE", "closed"),
    ];
    let mut first = Agent::start(&world, &env);
    let path = world.payload_path(&workload);
    let out = ctl(
        &world.socket,
        &["cgroup", "add", &path, "--workload-id", "wl-kill9"],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let denied: SocketAddrV4 = "10.66.9.9:443".parse().expect("addr");
    let allowed: SocketAddrV4 = "10.66.1.7:443".parse().expect("addr");
    let start = monotonic_ns();
    let lp = WorkloadLoop::start(
        &workload,
        &netns,
        [denied, allowed],
        Duration::from_millis(20),
        Duration::from_millis(6500),
    );
    std::thread::sleep(Duration::from_millis(1000));
    let killed = monotonic_ns();
    first.kill9();
    std::thread::sleep(Duration::from_millis(2500));
    let restarting = monotonic_ns();
    let second = Agent::start(&world, &env);
    let started = monotonic_ns();
    let workload_pid = lp.pid;
    let rounds = lp.finish();
    let end = monotonic_ns();
    let ms = |ns: u64| ns / 1_000_000;
    eprintln!(
        "{} rounds in {} ms; killed at {} ms, restarted at {} ms (started at {} ms)",
        rounds.len(),
        ms(end - start),
        ms(killed - start),
        ms(restarting - start),
        ms(started - start)
    );
    assert!(rounds.len() > 100, "the loop ran: {} rounds", rounds.len());

    // Enforcement never lapses: the denied destination is refused in every single round.
    let lapses: Vec<_> = rounds.iter().filter(|r| r.errnos[0] != EPERM).collect();
    assert!(
        lapses.is_empty(),
        "the denied destination got through: {lapses:?}"
    );

    // Before the kill, and within the grace after it, the allowed destination is allowed.
    let grace = GRACE_MS * 1_000_000;
    for r in rounds_between(&rounds, start, killed + grace - 200_000_000) {
        assert_eq!(
            r.errnos[1], ECONNREFUSED,
            "allowed while the heartbeat is fresh: {r:?}"
        );
    }
    // Once the grace has passed without heartbeat: fail-closed, the allowed destination is refused too.
    let degraded = rounds_between(&rounds, killed + grace + 300_000_000, restarting);
    assert!(
        degraded.len() >= 10,
        "rounds while degraded: {}",
        degraded.len()
    );
    for r in &degraded {
        assert_eq!(r.errnos[1], EPERM, "fail-closed while degraded: {r:?}");
    }
    // The restarted agent beats again: allowed again.
    let after = rounds_between(&rounds, started + 300_000_000, end);
    assert!(!after.is_empty(), "rounds after the restart");
    for r in &after {
        assert_eq!(
            r.errnos[1], ECONNREFUSED,
            "allowed again after the restart: {r:?}"
        );
    }

    // The restarted agent adopted the pinned state (no policy file re-applied) and reports what happened.
    assert!(second
        .wait_line(Duration::from_secs(5), |r| r["agent_event"]
            == "policy_file_skipped")
        .is_some());
    let adopted = second
        .wait_line(Duration::from_secs(5), |r| r["agent_event"] == "adopted")
        .expect("adopted line");
    assert_eq!(adopted["generation"], 1);
    assert_eq!(adopted["managed_cgroups"], 1);
    let out = ctl(&world.socket, &["--json", "health"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let h: serde_json::Value = serde_json::from_slice(&out.stdout).expect("health json");
    assert_eq!(h["status"], "ok");
    assert_eq!(h["adopted"], true);
    let age = h["adoptedHeartbeatAgeMs"]
        .as_u64()
        .expect("adoptedHeartbeatAgeMs");
    assert!(
        age >= ms(restarting - killed) && age < ms(started - killed) + 1000,
        "pinned heartbeat age {age} ms; the agent was dead for {} ms",
        ms(restarting - killed)
    );
    let out = ctl(&world.socket, &["--json", "status"], None);
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status json");
    assert_eq!(st["generation"], 1);
    assert_eq!(st["managedCgroups"][0]["cgroupId"], workload_id.to_string());
    assert_eq!(st["managedCgroups"][0]["workloadId"], "wl-kill9");

    // The verdicts given while no agent ran waited in the pinned ring buffer: the new agent logs them, with
    // the degraded code (for both destinations: the degraded check comes before the rules).
    let degraded_event = second
        .wait_line(Duration::from_secs(10), |r| {
            r["reason_code"] == "DENY_DEGRADED_FAIL_CLOSED"
                && r["pid"] == workload_pid
                && r["dst_ip"] == "10.66.1.7"
        })
        .expect("a DENY_DEGRADED_FAIL_CLOSED event");
    assert_eq!(degraded_event["verdict"], "deny");
    assert_eq!(degraded_event["workload_id"], "wl-kill9");
    drop(second);
}
