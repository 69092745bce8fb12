//! `ctl` against a running agent: `version`, `-o json`, `policy show` (and its round trip into `policy apply`),
//! `policy diff` exit codes, `cgroup list`, `events` filters, and what `policy show` says about an adopted
//! state whose snapshot the agent never saw. Root only.

mod support;

use std::io::Read;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::dp::{self, Probe};
use support::{ctl, metric, scrape, text, Agent, World};

fn json_out(out: &std::process::Output) -> Value {
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    serde_json::from_str(text(&out.stdout).trim())
        .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)))
}

#[test]
fn version_output_formats_policy_show_diff_apply_and_cgroup_list() {
    if support::skip("version_output_formats_policy_show_diff_apply_and_cgroup_list") {
        return;
    }
    let mut world = World::new("ctl");
    let (workload, workload_id) = world.cgroup.child("workload");
    let policy = support::write_policy(&world.dir.path);
    let mut agent = Agent::start(
        &world,
        &[("BROKER_EBPF_POLICY_FILE", policy.to_str().expect("utf8"))],
    );
    let version = env!("CARGO_PKG_VERSION");

    // version: the client's and the agent's (from GetHealth).
    let out = ctl(&world.socket, &["version"], None);
    assert_eq!(
        text(&out.stdout),
        format!("client: {version}\nagent: {version}\n")
    );
    let v = json_out(&ctl(&world.socket, &["version", "-o", "json"], None));
    assert_eq!(
        v,
        json!({"client": {"version": version}, "agent": {"version": version}})
    );
    // -o json and its alias --json print the same reply data.
    let health = json_out(&ctl(&world.socket, &["health", "-o", "json"], None));
    assert_eq!(health["version"], version);
    assert_eq!(health["status"], "ok");
    let alias = json_out(&ctl(&world.socket, &["--json", "status"], None));
    assert_eq!(alias["generation"], 1);

    // policy show: the policy file as applied; -o json is the snapshot itself, in canonical form.
    let out = ctl(&world.socket, &["policy", "show"], None);
    let shown = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        shown.starts_with(
            "generation 1: 2 IPv4 rules, 0 IPv6 rules, 1 broker endpoints, 1 DNS endpoints\n"
        ),
        "{shown}"
    );
    assert!(shown.contains("broker: 10.66.0.10:8081"), "{shown}");
    assert!(shown.contains("dns: 10.66.0.53:53"), "{shown}");
    assert!(
        shown.contains("allow-api  allow 10.66.1.0/24 ports 443 any-protocol"),
        "{shown}"
    );
    let snapshot = json_out(&ctl(&world.socket, &["policy", "show", "-o", "json"], None));
    assert_eq!(
        snapshot,
        json!({
            "broker": [{"ip": "10.66.0.10", "port": 8081}],
            "dns": [{"ip": "10.66.0.53", "port": 53}],
            "rules": [
                {"id": "allow-api", "action": "allow", "cidr": "10.66.1.0/24", "ports": [443]},
                {"id": "deny-bad", "action": "deny", "cidr": "10.66.1.99/32"}
            ],
            "sampling": {"allowOneIn": 1, "unmanagedOneIn": 0},
            "dnsQueries": "any"
        })
    );
    let summary = json_out(&ctl(
        &world.socket,
        &["policy", "summary", "-o", "json"],
        None,
    ));
    assert_eq!(
        summary,
        json!({"generation": 1, "ipv4Rules": 2, "ipv6Rules": 0, "brokerEndpoints": 1, "dnsEndpoints": 1, "fqdnRules": 0, "brokerNames": 0})
    );
    let shown_file = world.dir.path.join("shown.json");
    std::fs::write(&shown_file, snapshot.to_string()).expect("write");
    let shown_path = shown_file.to_str().expect("utf8");

    // policy diff: 0 when identical (also against the file it was written from), 1 when different.
    for file in [shown_path, policy.to_str().expect("utf8")] {
        let out = ctl(&world.socket, &["policy", "diff", file], None);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_eq!(
            text(&out.stdout).trim(),
            "no changes: the file is the active policy"
        );
    }
    let mut changed = snapshot.clone();
    changed["rules"][1]["action"] = json!("allow");
    changed["rules"]
        .as_array_mut()
        .expect("rules")
        .push(json!({"id": "v6", "action": "deny", "cidr": "2001:db8::/32"}));
    changed["sampling"]["allowOneIn"] = json!(4);
    let changed_file = world.dir.path.join("changed.json");
    std::fs::write(&changed_file, changed.to_string()).expect("write");
    let changed_path = changed_file.to_str().expect("utf8");
    let out = ctl(&world.socket, &["policy", "diff", changed_path], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "+ rule v6: deny 2001:db8::/32 any-protocol\n\
         ~ rule deny-bad: deny 10.66.1.99/32 any-protocol -> allow 10.66.1.99/32 any-protocol\n\
         ~ sampling: allowOneIn 1 -> 4, unmanagedOneIn 0 -> 0\n\
         1 rules added, 0 removed, 1 changed\n"
    );
    let out = ctl(
        &world.socket,
        &["policy", "diff", changed_path, "-o", "json"],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let d: Value = serde_json::from_str(text(&out.stdout).trim()).expect("json");
    assert_eq!(d["identical"], false);
    assert_eq!(d["rules"]["changed"][0]["id"], "deny-bad");

    // A dry run: the agent compiles the file against the dataplane's limits and applies nothing.
    let out = ctl(
        &world.socket,
        &["policy", "apply", "--dry-run", changed_path],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "valid, nothing applied (dry run): the policy would hold 2 IPv4 rules, 1 IPv6 rules, 1 broker \
         endpoints, 1 DNS endpoints; generation 1 stays active\n"
    );
    let dry = json_out(&ctl(
        &world.socket,
        &["policy", "apply", "--dry-run", changed_path, "-o", "json"],
        None,
    ));
    assert_eq!(dry["generation"], 1);
    assert_eq!(
        (dry["ipv4Rules"].clone(), dry["ipv6Rules"].clone()),
        (json!(2), json!(1))
    );
    assert_eq!(
        json_out(&ctl(
            &world.socket,
            &["policy", "summary", "-o", "json"],
            None
        ))["generation"],
        1,
        "a dry run spends no generation"
    );
    // Beyond the dataplane's limit (131,072 rules per family): refused by the same compiler, nothing applied.
    let big_rules: Vec<Value> = (0..131_073u32)
        .map(|i| {
            json!({"id": format!("r{i}"), "action": "allow",
                   "cidr": format!("10.{}.{}.{}/32", (i >> 16) & 255, (i >> 8) & 255, i & 255)})
        })
        .collect();
    let big_path = world.dir.path.join("too-big.json");
    std::fs::write(
        &big_path,
        json!({"broker": [], "dns": [], "rules": big_rules}).to_string(),
    )
    .expect("write");
    let out = ctl(
        &world.socket,
        &[
            "policy",
            "apply",
            "--dry-run",
            big_path.to_str().expect("utf-8"),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("131072"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        json_out(&ctl(
            &world.socket,
            &["policy", "summary", "-o", "json"],
            None
        ))["generation"],
        1
    );

    // The shown snapshot round-trips into policy apply; the applied file is what policy show shows next.
    let out = ctl(&world.socket, &["policy", "apply", changed_path], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let after = json_out(&ctl(&world.socket, &["policy", "show", "-o", "json"], None));
    assert_eq!(after, changed);
    let out = ctl(&world.socket, &["policy", "apply", shown_path], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("applied generation 3:"));
    assert_eq!(
        json_out(&ctl(&world.socket, &["policy", "show", "-o", "json"], None)),
        snapshot
    );

    // cgroup list: a table for people, the ManagedCgroup array with -o json.
    let out = ctl(&world.socket, &["cgroup", "list"], None);
    assert_eq!(text(&out.stdout).trim(), "no managed cgroups");
    let path = world.payload_path(&workload);
    let out = ctl(
        &world.socket,
        &[
            "cgroup",
            "add",
            &path,
            "--mode",
            "observe",
            "--workload-id",
            "wl-ctl",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = ctl(&world.socket, &["cgroup", "list"], None);
    let table = text(&out.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(
        lines[0].starts_with("PATH") && lines[0].contains("WORKLOAD"),
        "{table}"
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        row,
        [path.as_str(), &workload_id.to_string(), "observe", "wl-ctl"]
    );
    let list = json_out(&ctl(&world.socket, &["cgroup", "list", "-o", "json"], None));
    assert_eq!(
        list,
        json!([{"cgroupId": workload_id.to_string(), "path": path, "mode": "observe", "workloadId": "wl-ctl"}])
    );

    // A restarted agent adopts the pinned policy, whose snapshot it never saw: show and diff say so (exit 5).
    let out = ctl(&world.socket, &["shutdown"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(agent.wait_exit(Duration::from_secs(10)), Some(0));
    drop(agent);
    let _adopter = Agent::start(&world, &[]);
    let out = ctl(&world.socket, &["policy", "summary"], None);
    assert_eq!(
        text(&out.stdout).trim(),
        "generation 3: 2 IPv4 rules, 0 IPv6 rules, 1 broker endpoints, 1 DNS endpoints",
        "the counts of an adopted policy are known"
    );
    for args in [
        &["policy", "show"][..],
        &["policy", "show", "-o", "json"][..],
        &["policy", "diff", shown_path][..],
    ] {
        let out = ctl(&world.socket, args, None);
        assert_eq!(out.status.code(), Some(5), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {}", text(&out.stdout));
        let err = text(&out.stderr);
        assert!(
            err.contains("generation 3 is loaded, but this agent did not apply it"),
            "{args:?}: {err}"
        );
    }
    let out = ctl(&world.socket, &["policy", "apply", shown_path], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        json_out(&ctl(&world.socket, &["policy", "show", "-o", "json"], None)),
        snapshot
    );
}

#[test]
fn events_filters_and_output_formats() {
    if support::skip("events_filters_and_output_formats") {
        return;
    }
    let mut world = World::new("ctlev");
    let netns = dp::NetNs::new("ctlev");
    let (workload, _) = world.cgroup.child("workload");
    let policy = support::write_policy(&world.dir.path);
    let agent = Agent::start(
        &world,
        &[
            ("BROKER_EBPF_POLICY_FILE", policy.to_str().expect("utf8")),
            ("BROKER_EBPF_METRICS_LISTEN", "127.0.0.1:0"),
        ],
    );
    let out = ctl(
        &world.socket,
        &[
            "cgroup",
            "add",
            &world.payload_path(&workload),
            "--workload-id",
            "wl-ev",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let spawn = |args: &[&str]| {
        Command::new(support::BIN)
            .args(["ctl", "--socket"])
            .arg(&world.socket)
            .arg("events")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ctl events")
    };
    // A table although piped (-o table); JSON lines of one reason; one workload and an age, JSON.
    let mut denies = spawn(&["--count", "2", "--verdict", "deny", "-o", "table"]);
    let mut explicit = spawn(&["--count", "1", "--reason", "DENY_EXPLICIT", "-o", "json"]);
    let mut recent = spawn(&["--count", "3", "--workload", "wl-ev", "--since", "1h"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(
        &scrape(&agent.metrics_addr()),
        "interceptor_ebpf_event_subscribers ",
    ) != Some(3)
    {
        assert!(Instant::now() < deadline, "three subscribers");
        std::thread::sleep(Duration::from_millis(50));
    }
    let sa = |s: &str| s.parse::<SocketAddr>().expect("addr");
    for dst in ["10.66.1.5:443", "10.66.1.99:443", "10.9.9.9:443"] {
        dp::probe(&workload, &netns, Probe::TcpConnect, sa(dst));
    }
    let output = |child: &mut std::process::Child| {
        let mut s = String::new();
        child
            .stdout
            .take()
            .expect("stdout")
            .read_to_string(&mut s)
            .expect("read");
        let mut err = String::new();
        child
            .stderr
            .take()
            .expect("stderr")
            .read_to_string(&mut err)
            .expect("read");
        assert_eq!(child.wait().expect("exit").code(), Some(0), "{err}");
        (s, err)
    };
    let (table, _) = output(&mut denies);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[0].starts_with("TIME") && lines[0].contains("VERDICT"),
        "{table}"
    );
    assert!(
        lines[1].contains(" deny ") && lines[1].contains("DENY_EXPLICIT"),
        "{table}"
    );
    assert!(
        lines[2].contains(" deny ") && lines[2].contains("DENY_DEFAULT"),
        "{table}"
    );
    let (one, _) = output(&mut explicit);
    let v: Value = serde_json::from_str(one.trim()).expect("one JSON line");
    assert_eq!(v["reason_code"], "DENY_EXPLICIT");
    assert_eq!(v["rule_id"], "deny-bad");
    let (all, note) = output(&mut recent);
    let codes: Vec<String> = all
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json")["reason_code"].to_string())
        .collect();
    assert_eq!(
        codes,
        [
            "\"ALLOW_EXPLICIT\"",
            "\"DENY_EXPLICIT\"",
            "\"DENY_DEFAULT\""
        ]
    );
    assert!(note.contains("the agent keeps no event history"), "{note}");
}
