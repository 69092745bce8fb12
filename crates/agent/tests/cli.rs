//! The command line without privileges: `--help` on every subcommand, `--version`, configuration errors (one
//! line naming the variable and the value, exit 2, nothing attached), and ctl's exit codes for usage and
//! connection errors.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_interceptor-ebpf");

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run the binary");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_subcommand_has_help_and_the_program_a_version() {
    let subcommands: &[&[&str]] = &[
        &[],
        &["agent"],
        &["ctl"],
        &["ctl", "health"],
        &["ctl", "status"],
        &["ctl", "policy"],
        &["ctl", "policy", "show"],
        &["ctl", "policy", "apply"],
        &["ctl", "cgroup"],
        &["ctl", "cgroup", "add"],
        &["ctl", "cgroup", "remove"],
        &["ctl", "cgroup", "mode"],
        &["ctl", "mode"],
        &["ctl", "mode", "set"],
        &["ctl", "events"],
        &["ctl", "shutdown"],
    ];
    for sub in subcommands {
        let mut args = sub.to_vec();
        args.push("--help");
        let (code, out, err) = run(&args, &[]);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(out.contains("Usage: interceptor-ebpf"), "{args:?}: {out}");
    }
    let (code, out, _) = run(&["--version"], &[]);
    assert_eq!(code, 0);
    assert_eq!(
        out.trim(),
        format!("interceptor-ebpf {}", env!("CARGO_PKG_VERSION"))
    );
    let (code, _, err) = run(&["agent", "--no-such-flag"], &[]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn a_bad_configuration_value_stops_the_agent_with_one_line_and_exit_2() {
    /// (environment, flags, start of the expected error line)
    type Case = (
        &'static [(&'static str, &'static str)],
        &'static [&'static str],
        &'static str,
    );
    let cases: &[Case] = &[
        (
            &[("BROKER_EBPF_SOCKET_MODE", "0999")],
            &[],
            "BROKER_EBPF_SOCKET_MODE=0999: ",
        ),
        (
            &[("BROKER_EBPF_FAIL_MODE", "ajar")],
            &[],
            "BROKER_EBPF_FAIL_MODE=ajar: ",
        ),
        (
            &[
                ("BROKER_EBPF_HEARTBEAT_INTERVAL_MS", "2000"),
                ("BROKER_EBPF_HEARTBEAT_GRACE_MS", "1500"),
            ],
            &[],
            "BROKER_EBPF_HEARTBEAT_INTERVAL_MS=2000, BROKER_EBPF_HEARTBEAT_GRACE_MS=1500: ",
        ),
        (
            &[("BROKER_EBPF_PRIVILEGED_UIDS", "0,root")],
            &[],
            "BROKER_EBPF_PRIVILEGED_UIDS=0,root: ",
        ),
        (
            &[("BROKER_EBPF_METRICS_LISTEN", "9464")],
            &[],
            "BROKER_EBPF_METRICS_LISTEN=9464: ",
        ),
        (
            &[("BROKER_EBPF_FAIL_MODE", "open")],
            &["--fail-mode", "shut"],
            "--fail-mode=shut: ",
        ),
        (
            &[("BROKER_EBPF_POLICY_FILE", "/nonexistent/policy.json")],
            &[],
            "BROKER_EBPF_POLICY_FILE=/nonexistent/policy.json: ",
        ),
        (
            &[("BROKER_EBPF_DISABLE_LAYERS", "sock_create,raw_sockets")],
            &[],
            "BROKER_EBPF_DISABLE_LAYERS=sock_create,raw_sockets: expected one of `sock_create` | \
             `socket_create_lsm` | `egress` | `socket_storage`, received `raw_sockets`",
        ),
        (
            &[("BROKER_EBPF_DISABLE_LAYERS", "egress")],
            &["--disable-layers", "lsm"],
            "--disable-layers=lsm: expected one of ",
        ),
    ];
    for (env, flags, want) in cases {
        let mut args = vec!["agent"];
        args.extend_from_slice(flags);
        let (code, out, err) = run(&args, env);
        assert_eq!(code, 2, "{env:?}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.contains(want), "{env:?}: {err}");
        assert!(out.is_empty(), "nothing on standard output: {out}");
    }
}

#[test]
fn ctl_exit_codes_for_usage_and_connection_errors() {
    let (code, _, err) = run(
        &["ctl", "--socket", "/nonexistent/agentd.sock", "health"],
        &[],
    );
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("cannot connect to the agent at /nonexistent/agentd.sock"),
        "{err}"
    );
    let (code, _, err) = run(
        &["ctl", "--socket", "/nonexistent/agentd.sock", "events"],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run(&["ctl", "cgroup", "add", "relative/path"], &[]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run(&["ctl", "mode", "set", "audit"], &[]);
    assert_eq!(code, 2, "{err}");
    let dir = std::env::temp_dir().join(format!("iea-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let bad = dir.join("bad-policy.json");
    std::fs::write(
        &bad,
        r#"{"broker":[],"dns":[],"rules":[{"id":"x","action":"allow","cidr":"10.0.0.1/8"}]}"#,
    )
    .expect("write");
    let (code, _, err) = run(
        &[
            "ctl",
            "--socket",
            "/nonexistent",
            "policy",
            "apply",
            bad.to_str().expect("utf8"),
        ],
        &[],
    );
    assert_eq!(
        code, 5,
        "an invalid snapshot is refused before connecting: {err}"
    );
    assert!(err.contains("rules[0].cidr"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
    // The environment names the socket when --socket is absent.
    let (code, _, err) = run(
        &["ctl", "status"],
        &[("BROKER_EBPF_CONTROL_SOCKET", "/nonexistent/env.sock")],
    );
    assert_eq!(code, 3);
    assert!(err.contains("/nonexistent/env.sock"), "{err}");
}
