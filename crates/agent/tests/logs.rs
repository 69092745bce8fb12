//! The agent's two outputs (docs/agent.md "Logs"): operational lines on standard error, each one envelope with
//! `time`, `level`, `msg` and `target`; verdict and authorization records on their own stream, exactly the
//! package's log records. Root only (each test runs a real agent).

mod support;

use std::time::Duration;

use serde_json::Value;

use interceptor_ebpf_core::contract::control::authz::ControlPlaneAuthzEvent;
use interceptor_ebpf_core::contract::events::json::parse_json;
use interceptor_ebpf_core::contract::timestamp::Timestamp;
use support::{ctl, text, Agent, World};

const LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// Every standard-error line parsed, after checking the envelope of each.
fn envelopes(agent: &Agent) -> Vec<Value> {
    let lines = agent.ops_lines();
    assert!(!lines.is_empty(), "no operational lines");
    lines
        .iter()
        .map(|l| {
            let v: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line: {l}: {e}"));
            let keys: Vec<&str> = v
                .as_object()
                .expect("an object")
                .keys()
                .take(4)
                .map(String::as_str)
                .collect();
            assert_eq!(keys, ["time", "level", "msg", "target"], "{l}");
            let time = v["time"].as_str().expect("time");
            let parsed = Timestamp::parse(time).unwrap_or_else(|e| panic!("{l}: {e:?}"));
            assert!(
                time.ends_with('Z') && time.contains('.'),
                "UTC, fractional: {l}"
            );
            assert_eq!(parsed.as_str(), time);
            assert!(LEVELS.contains(&v["level"].as_str().expect("level")), "{l}");
            assert!(!v["msg"].as_str().expect("msg").is_empty(), "{l}");
            assert!(!v["target"].as_str().expect("target").is_empty(), "{l}");
            assert!(
                v.get("code_namespace").is_none(),
                "a record on the operational stream: {l}"
            );
            v
        })
        .collect()
}

fn find<'a>(lines: &'a [Value], event: &str) -> &'a Value {
    lines
        .iter()
        .find(|v| v["agent_event"] == event)
        .unwrap_or_else(|| panic!("no {event} line in {lines:#?}"))
}

#[test]
fn operational_lines_are_envelopes_and_records_go_to_the_verdict_log() {
    if support::skip("operational_lines_are_envelopes_and_records_go_to_the_verdict_log") {
        return;
    }
    let world = World::new("logs");
    let verdicts = world.dir.path.join("verdicts.ndjson");
    let agent = Agent::start(
        &world,
        &[
            ("BROKER_EBPF_SOCKET_MODE", "0666"),
            ("BROKER_EBPF_SOCKET_DIR_MODE", "0755"),
            ("BROKER_EBPF_PRIVILEGED_UIDS", "1500"),
            ("BROKER_EBPF_VERDICT_LOG", verdicts.to_str().expect("utf8")),
            // A warning: a filter that does not parse is said to be ignored (the default, info, applies).
            ("RUST_LOG", "interceptor_ebpf_agent=loud"),
        ],
    );
    // A control refusal: an unlisted uid asks for a mutation.
    let out = ctl(
        &world.socket,
        &["mode", "set", "observe"],
        Some((4002, 4002)),
    );
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    agent
        .wait_line(Duration::from_secs(5), |r| {
            r["agent_event"] == "control_refused"
        })
        .expect("the refusal's operational line");
    let mut agent = agent;
    agent.signal(libc::SIGTERM);
    assert_eq!(agent.wait_exit(Duration::from_secs(10)), Some(0));
    agent
        .wait_line(Duration::from_secs(5), |r| r["agent_event"] == "stopped")
        .expect("stopped");

    let lines = envelopes(&agent);
    assert_eq!(find(&lines, "started")["level"], "info");
    // The dataplane crate's `log` records come through the bridge, in the same envelope, with their own target.
    assert!(
        lines.iter().any(
            |v| v["target"] == "interceptor_ebpf_core::dataplane::loader"
                && v["level"] == "info"
                && v["msg"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("dataplane attached"))
        ),
        "{lines:#?}"
    );
    assert_eq!(find(&lines, "layers")["level"], "info");
    assert_eq!(find(&lines, "stopping")["reason"], "SIGTERM");
    assert_eq!(find(&lines, "stopped")["level"], "info");
    let refused = find(&lines, "control_refused");
    assert_eq!(refused["level"], "warn");
    assert_eq!(refused["reason_code"], "CTRL_AUTH_PEERCRED_REJECTED_UID");
    assert_eq!(refused["command"], "SetGlobalMode");
    let warning = find(&lines, "warning");
    assert_eq!(warning["level"], "warn");
    assert!(
        warning["error"]
            .as_str()
            .is_some_and(|e| e.contains("RUST_LOG=")),
        "{warning}"
    );

    // Nothing on standard output: the records went to the file, and parse with the package's parsers.
    assert_eq!(agent.stdout_lines(), Vec::<String>::new());
    let file = std::fs::read_to_string(&verdicts).expect("the verdict log");
    let records: Vec<&str> = file.lines().collect();
    assert_eq!(records.len(), 1, "{file}");
    let v: Value = serde_json::from_str(records[0]).expect("json");
    let event = ControlPlaneAuthzEvent::from_json_value_for_log(&v).expect("the contract's parser");
    assert_eq!(
        event.reason_code.as_str(),
        "CTRL_AUTH_PEERCRED_REJECTED_UID"
    );
    assert_eq!(records[0], event.to_log_line(), "byte for byte the record");
}

#[test]
fn rust_log_warn_keeps_only_warnings_and_errors() {
    if support::skip("rust_log_warn_keeps_only_warnings_and_errors") {
        return;
    }
    let world = World::new("logs-warn");
    // No privileged ids: the agent warns that every peer may mutate; with RUST_LOG=warn that is all it says.
    let mut agent = Agent::spawn(&world, &[("RUST_LOG", "warn")]);
    agent
        .wait_line(Duration::from_secs(30), |r| r["agent_event"] == "warning")
        .unwrap_or_else(|| panic!("no warning; stderr: {}", agent.stderr()));
    agent.signal(libc::SIGTERM);
    assert_eq!(agent.wait_exit(Duration::from_secs(10)), Some(0));
    let lines = envelopes(&agent);
    for v in &lines {
        assert!(v["level"] == "warn" || v["level"] == "error", "{v}");
    }
    // What info would have said (started, layers, stopping, stopped) is not there.
    for event in ["started", "layers", "stopping", "stopped"] {
        assert!(lines.iter().all(|v| v["agent_event"] != event), "{event}");
    }
}

#[test]
fn verdict_records_on_standard_output_parse_with_the_package_parsers() {
    if support::skip("verdict_records_on_standard_output_parse_with_the_package_parsers") {
        return;
    }
    let world = World::new("logs-out");
    let agent = Agent::start(
        &world,
        &[
            ("BROKER_EBPF_SOCKET_MODE", "0666"),
            ("BROKER_EBPF_SOCKET_DIR_MODE", "0755"),
            ("BROKER_EBPF_PRIVILEGED_UIDS", "1500"),
        ],
    );
    let out = ctl(
        &world.socket,
        &["mode", "set", "observe"],
        Some((4002, 4002)),
    );
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    agent
        .wait_line(Duration::from_secs(5), |r| {
            r["code_namespace"] == "control_authz"
        })
        .expect("the record");
    let mut agent = agent;
    agent.signal(libc::SIGTERM);
    assert_eq!(agent.wait_exit(Duration::from_secs(10)), Some(0));
    let stdout = agent.stdout_lines();
    assert!(!stdout.is_empty());
    for l in &stdout {
        let v: Value = serde_json::from_str(l).expect("json");
        match v["code_namespace"].as_str() {
            Some("control_authz") => {
                let e = ControlPlaneAuthzEvent::from_json_value_for_log(&v).expect("parser");
                assert_eq!(l, &e.to_log_line());
            }
            Some("dataplane_verdict") => {
                parse_json(l.as_bytes()).expect("parser");
            }
            _ => panic!("not a package record on the verdict stream: {l}"),
        }
    }
    envelopes(&agent);
}

/// Standard error on a file, and `JOURNAL_STREAM` naming that file's device and inode, as systemd sets it when
/// the journal holds the stream: every operational line starts with its syslog priority.
#[test]
fn a_journal_stream_on_standard_error_prefixes_each_line_with_its_priority() {
    use std::os::unix::fs::MetadataExt;
    use std::process::{Command, Stdio};
    if support::skip("a_journal_stream_on_standard_error_prefixes_each_line_with_its_priority") {
        return;
    }
    let world = World::new("logs-journal");
    let err_path = world.dir.path.join("stderr");
    let err = std::fs::File::create(&err_path).expect("stderr file");
    let md = err.metadata().expect("stat");
    let mut cmd = Command::new(support::BIN);
    cmd.arg("agent")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("JOURNAL_STREAM", format!("{}:{}", md.dev(), md.ino()))
        .env("BROKER_EBPF_PRIVILEGED_UIDS", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err);
    for (k, v) in world.env() {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn the agent");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&err_path)
        .unwrap_or_default()
        .contains("\"agent_event\":\"started\"")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no started line: {}",
            std::fs::read_to_string(&err_path).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = ctl(&world.socket, &["shutdown"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(child.wait().expect("wait").code(), Some(0));
    let written = std::fs::read_to_string(&err_path).expect("stderr");
    let mut levels = Vec::new();
    for line in written.lines() {
        let (prefix, json) = line.split_at(3);
        let v: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{line}: {e}"));
        let want = match v["level"].as_str().expect("level") {
            "error" => "<3>",
            "warn" => "<4>",
            "info" => "<6>",
            _ => "<7>",
        };
        assert_eq!(prefix, want, "{line}");
        levels.push(v["level"].as_str().unwrap_or_default().to_owned());
    }
    // At least an info line (started) and a warning (degraded: no policy) were seen with their priorities.
    assert!(
        levels.iter().any(|l| l == "info") && levels.iter().any(|l| l == "warn"),
        "{written}"
    );
}
