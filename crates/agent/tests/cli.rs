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
        &["ctl", "version"],
        &["ctl", "policy", "summary"],
        &["ctl", "policy", "diff"],
        &["ctl", "cgroup", "list"],
        &["ctl", "completions"],
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

#[test]
fn connection_errors_say_what_usually_causes_them() {
    // ENOENT: no agent at that path; the hint names the variable and the default.
    let (code, _, err) = run(
        &["ctl", "--socket", "/nonexistent/agentd.sock", "status"],
        &[],
    );
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("hint: is the agent running?"), "{err}");
    assert!(err.contains("BROKER_EBPF_CONTROL_SOCKET (unset)"), "{err}");
    assert!(
        err.contains("/var/run/broker-interceptor-ebpf/agentd.sock"),
        "{err}"
    );
    let (_, _, err) = run(
        &["ctl", "status"],
        &[("BROKER_EBPF_CONTROL_SOCKET", "/nonexistent/env.sock")],
    );
    assert!(
        err.contains("BROKER_EBPF_CONTROL_SOCKET (\"/nonexistent/env.sock\")"),
        "{err}"
    );
    // ECONNREFUSED: a socket file nobody listens on.
    let dir = std::env::temp_dir().join(format!("iea-cli-stale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let stale = dir.join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).expect("bind"));
    let (code, _, err) = run(
        &["ctl", "--socket", stale.to_str().expect("utf8"), "health"],
        &[],
    );
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("no agent listens on it"), "{err}");
    // EACCES: a socket the caller may not open names its owner and group (only testable without root's
    // override: as root, run as nobody).
    let _listener = {
        let _ = std::fs::remove_file(&stale);
        std::os::unix::net::UnixListener::bind(&stale).expect("bind")
    };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        use std::os::unix::fs::PermissionsExt;
        use std::os::unix::process::CommandExt;
        std::fs::set_permissions(&stale, std::fs::Permissions::from_mode(0o660)).expect("chmod");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let out = Command::new(BIN)
            .args(["ctl", "--socket", stale.to_str().expect("utf8"), "health"])
            .uid(65534)
            .gid(65534)
            .output()
            .expect("run as nobody");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{err}");
        assert!(err.contains("Permission denied"), "{err}");
        assert!(err.contains("the socket is mode 0660, owner 0:0"), "{err}");
        assert!(err.contains("as a member of group 0"), "{err}");
    } else {
        eprintln!("skipped the EACCES case: needs root to run ctl as another uid");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn output_format_json_is_o_json_and_conflicts_with_o_table() {
    let (code, _, err) = run(&["ctl", "--json", "-o", "table", "health"], &[]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run(&["ctl", "-o", "yaml", "health"], &[]);
    assert_eq!(code, 2, "{err}");
    // version prints the client's version even when no agent answers (exit 3 all the same).
    let (code, out, _) = run(
        &[
            "ctl",
            "--socket",
            "/nonexistent/agentd.sock",
            "version",
            "-o",
            "json",
        ],
        &[],
    );
    assert_eq!(code, 3);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(
        v,
        serde_json::json!({"client": {"version": env!("CARGO_PKG_VERSION")}, "agent": null})
    );
    let (code, out, _) = run(
        &["ctl", "--socket", "/nonexistent/agentd.sock", "version"],
        &[],
    );
    assert_eq!(code, 3);
    assert_eq!(
        out,
        format!(
            "client: {}\nagent: not reachable\n",
            env!("CARGO_PKG_VERSION")
        )
    );
}

#[test]
fn completions_for_each_shell_name_the_ctl_commands() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef interceptor-ebpf"),
        ("fish", "complete -c interceptor-ebpf"),
    ] {
        let (code, out, err) = run(&["ctl", "completions", shell], &[]);
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(
            out.contains(marker),
            "{shell}: {}",
            &out[..out.len().min(300)]
        );
        for word in ["cgroup", "events", "completions", "version"] {
            assert!(out.contains(word), "{shell} lacks {word}");
        }
    }
    let (code, _, _) = run(&["ctl", "completions", "powershell-7"], &[]);
    assert_eq!(code, 2);
}

#[test]
fn invalid_snapshots_print_a_capped_issue_list_and_oversized_requests_are_not_sent() {
    let dir = std::env::temp_dir().join(format!("iea-cli-big-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    // 30,000 invalid rules: every issue counted, 20 shown.
    let rules: Vec<String> = (0..30_000)
        .map(|i| format!(r#"{{"id":"r{i}","action":"allow","cidr":"10.0.0.1/8"}}"#))
        .collect();
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        format!(r#"{{"broker":[],"dns":[],"rules":[{}]}}"#, rules.join(",")),
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
    assert_eq!(code, 5, "{err}");
    assert!(err.len() < 4096, "{} bytes of error", err.len());
    assert!(err.contains("(30,000 issues)"), "{err}");
    assert!(
        err.contains("rules[19].cidr") && !err.contains("rules[20].cidr"),
        "{err}"
    );
    assert!(err.trim_end().ends_with("and 29,980 more"), "{err}");
    // A valid snapshot whose request line exceeds 16 MiB: refused before connecting, exit 5 (the agent's code
    // for it), without a connection error.
    let rules: Vec<String> = (0..131_072u32)
        .map(|i| {
            format!(
                r#"{{"id":"rule-{i:0>52}","action":"allow","cidr":"{}.{}.{}.0/24","ports":[443,8443,9443]}}"#,
                10 + i / 65_536,
                (i / 256) % 256,
                i % 256
            )
        })
        .collect();
    let big = dir.join("big.json");
    std::fs::write(
        &big,
        format!(r#"{{"broker":[],"dns":[],"rules":[{}]}}"#, rules.join(",")),
    )
    .expect("write");
    assert!(std::fs::metadata(&big).expect("size").len() > 16 * 1024 * 1024);
    let (code, _, err) = run(
        &[
            "ctl",
            "--socket",
            "/nonexistent",
            "policy",
            "apply",
            big.to_str().expect("utf8"),
        ],
        &[],
    );
    assert_eq!(code, 5, "{err}");
    assert!(
        err.contains("the agent reads at most 16,777,216 bytes a line"),
        "{err}"
    );
    assert!(
        err.contains("nothing was sent") && !err.contains("cannot connect"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn events_filters_are_checked_before_connecting() {
    for (args, needle) in [
        (&["--reason", "DENY_NOTHING"][..], "unknown reason code"),
        (&["--cgroup", "/system.slice"][..], "expected a cgroup id"),
        (&["--since", "tomorrow"][..], "RFC 3339"),
    ] {
        let mut argv = vec!["ctl", "--socket", "/nonexistent", "events", "--count", "1"];
        argv.extend_from_slice(args);
        let (code, _, err) = run(&argv, &[]);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let (code, _, err) = run(
        &[
            "ctl",
            "--socket",
            "/nonexistent",
            "events",
            "--count",
            "1",
            "--verdict",
            "maybe",
        ],
        &[],
    );
    assert_eq!(code, 2, "{err}");
}
