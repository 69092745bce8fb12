//! Authorization with real client processes under other uids and gids (SO_PEERCRED), and the socket's own
//! mode and owner re-checked before each mutation. Root only (loads the dataplane, runs clients as other ids).

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use support::{ctl, text, Agent, World};

/// An agent whose socket any local uid can connect to, so that SO_PEERCRED alone decides.
fn open_agent(world: &World, uids: &str, gids: &str) -> Agent {
    let policy = support::write_policy(&world.dir.path);
    Agent::start(
        world,
        &[
            ("BROKER_EBPF_SOCKET_MODE", "0666"),
            ("BROKER_EBPF_SOCKET_DIR_MODE", "0755"),
            ("BROKER_EBPF_PRIVILEGED_UIDS", uids),
            ("BROKER_EBPF_PRIVILEGED_GIDS", gids),
            ("BROKER_EBPF_POLICY_FILE", policy.to_str().expect("utf8")),
        ],
    )
}

fn refusals(agent: &Agent, code: &str) -> Vec<serde_json::Value> {
    agent
        .records()
        .into_iter()
        .filter(|r| r["code_namespace"] == "control_authz" && r["reason_code"] == code)
        .collect()
}

#[test]
fn the_authorization_matrix_with_real_client_processes() {
    if support::skip("the_authorization_matrix_with_real_client_processes") {
        return;
    }
    let world = World::new("authz");
    let agent = open_agent(&world, "1500", "2500");
    let s = &world.socket;

    // Allowed by uid (its gid is not listed), allowed by gid (its uid is not listed).
    for ids in [(1500, 4000), (4001, 2500)] {
        let out = ctl(s, &["mode", "set", "observe"], Some(ids));
        assert_eq!(out.status.code(), Some(0), "{ids:?}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout).trim(), "global mode: observe");
    }
    // Neither listed: the uid list is set, so the refusal is REJECTED_UID; exit 4; logged with the command.
    let out = ctl(s, &["mode", "set", "enforce"], Some((4002, 4002)));
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("CTRL_AUTH_PEERCRED_REJECTED_UID"),
        "{}",
        text(&out.stderr)
    );
    let logged = agent
        .wait_line(Duration::from_secs(5), |r| {
            r["reason_code"] == "CTRL_AUTH_PEERCRED_REJECTED_UID"
        })
        .expect("the refusal is logged");
    assert_eq!(
        logged
            .as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>()),
        Some(vec![
            "code_namespace".into(),
            "reason_code".into(),
            "message".into(),
            "command".into()
        ])
    );
    assert_eq!(logged["command"], "SetGlobalMode");
    assert!(logged["message"]
        .as_str()
        .is_some_and(|m| m.contains("uid 4002")));

    // Read-only commands from anyone who can connect.
    for args in [
        &["health"][..],
        &["status"],
        &["policy", "show"],
        &["events", "--count", "0"],
    ] {
        let out = ctl(s, args, Some((4003, 4003)));
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    // Every mutation is refused for that peer, before anything is applied.
    for args in [
        &["policy", "apply", "/dev/null"][..],
        &["cgroup", "add", "/x"],
        &["cgroup", "remove", "/x"],
        &["cgroup", "mode", "/x", "observe"],
        &["shutdown"],
    ] {
        let out = ctl(s, args, Some((4003, 4003)));
        // `policy apply /dev/null` is refused locally (an empty file is no snapshot): exit 5, never sent.
        let want = if args[0] == "policy" { 5 } else { 4 };
        assert_eq!(
            out.status.code(),
            Some(want),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let status = ctl(s, &["--json", "status"], None);
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status json");
    assert_eq!(
        v["globalMode"], "observe",
        "the refused SetGlobalMode changed nothing"
    );
    // Five refusals, each logged (the log is written asynchronously: wait for the last).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while refusals(&agent, "CTRL_AUTH_PEERCRED_REJECTED_UID").len() < 5
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(refusals(&agent, "CTRL_AUTH_PEERCRED_REJECTED_UID").len(), 5);
    drop(agent);

    // Only a gid list: REJECTED_GID.
    let world = World::new("authz-gid");
    let _agent = open_agent(&world, "", "2500");
    let out = ctl(
        &world.socket,
        &["mode", "set", "observe"],
        Some((1500, 4004)),
    );
    assert_eq!(out.status.code(), Some(4));
    assert!(text(&out.stderr).contains("CTRL_AUTH_PEERCRED_REJECTED_GID"));
    let out = ctl(
        &world.socket,
        &["mode", "set", "observe"],
        Some((1500, 2500)),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // Both lists empty: permissive.
    let world = World::new("authz-open");
    let _agent = open_agent(&world, "", "");
    let out = ctl(
        &world.socket,
        &["mode", "set", "observe"],
        Some((4005, 4005)),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn a_socket_changed_behind_the_agents_back_refuses_mutations() {
    if support::skip("a_socket_changed_behind_the_agents_back_refuses_mutations") {
        return;
    }
    let world = World::new("tamper");
    let agent = Agent::start(&world, &[]);
    let s = &world.socket;
    let meta = std::fs::metadata(s).expect("socket");
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o660,
        "the configured mode"
    );
    assert_eq!(
        std::fs::metadata(s.parent().expect("dir"))
            .expect("dir")
            .permissions()
            .mode()
            & 0o777,
        0o750,
        "the socket directory has its mode"
    );
    assert_eq!(
        ctl(s, &["mode", "set", "observe"], None).status.code(),
        Some(0)
    );

    std::fs::set_permissions(s, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let out = ctl(s, &["mode", "set", "enforce"], None);
    assert_eq!(out.status.code(), Some(4));
    assert!(
        text(&out.stderr)
            .contains("CTRL_AUTH_SOCKET_MODE_INVALID: control socket mode is 0666, expected 0660"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        ctl(s, &["status"], None).status.code(),
        Some(0),
        "read-only commands still work"
    );
    std::fs::set_permissions(s, std::fs::Permissions::from_mode(0o660)).expect("chmod back");
    assert_eq!(
        ctl(s, &["mode", "set", "enforce"], None).status.code(),
        Some(0)
    );

    std::os::unix::fs::lchown(s, Some(1), Some(1)).expect("chown");
    let out = ctl(s, &["cgroup", "add", "/x"], None);
    assert_eq!(out.status.code(), Some(4));
    assert!(
        text(&out.stderr)
            .contains("CTRL_AUTH_SOCKET_OWNER_INVALID: control socket owner is 1:1, expected 0:0"),
        "{}",
        text(&out.stderr)
    );
    assert!(agent
        .wait_line(Duration::from_secs(5), |r| r["reason_code"]
            == "CTRL_AUTH_SOCKET_OWNER_INVALID"
            && r["command"] == "UpsertManagedCgroup")
        .is_some());
    std::os::unix::fs::lchown(s, Some(0), Some(0)).expect("chown back");
    let status = ctl(s, &["--json", "status"], None);
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    assert_eq!(v["globalMode"], "enforce");
    assert_eq!(v["managedCgroups"], serde_json::json!([]));
}

#[test]
fn a_live_agents_socket_is_not_stolen_and_a_stale_one_is_replaced() {
    if support::skip("a_live_agents_socket_is_not_stolen_and_a_stale_one_is_replaced") {
        return;
    }
    let world = World::new("steal");
    let mut first = Agent::start(&world, &[]);
    let mut second = Agent::spawn(&world, &[]);
    assert_eq!(second.wait_exit(Duration::from_secs(30)), Some(1));
    assert!(
        second.stderr().contains("another agent is serving"),
        "{}",
        second.stderr()
    );
    assert!(
        second
            .records()
            .iter()
            .all(|r| r["agent_event"] != "started"),
        "the second agent never started"
    );
    assert_eq!(
        ctl(&world.socket, &["health"], None).status.code(),
        Some(6),
        "the first still serves (no policy: degraded)"
    );

    first.kill9();
    assert!(
        world.socket.exists(),
        "a killed agent leaves its socket file"
    );
    let mut third = Agent::start(&world, &[]);
    let out = ctl(&world.socket, &["--json", "health"], None);
    let h: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        h["adopted"], true,
        "the stale socket was replaced and the pins adopted"
    );

    // SIGTERM: a clean stop that leaves the pins enforcing and removes the socket file.
    third.signal(libc::SIGTERM);
    assert_eq!(
        third.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        third.stderr()
    );
    // The output thread may still be reading the last lines after the exit.
    let stopping = third
        .wait_line(Duration::from_secs(5), |r| r["agent_event"] == "stopping")
        .expect("stopping line");
    assert_eq!(stopping["reason"], "SIGTERM");
    assert!(third
        .wait_line(Duration::from_secs(5), |r| r["agent_event"] == "stopped"
            && r["enforcement"] == "pinned")
        .is_some());
    assert!(!world.socket.exists(), "the socket file is removed");
    assert!(
        world.pins.path.join("link_connect4").exists(),
        "the pins stay"
    );
}
