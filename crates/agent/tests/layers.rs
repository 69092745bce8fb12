//! The bypass layers through the agent: the `layers` lifecycle line at start, `activeLayers` in GetHealth and
//! `layers`/`activeLayers`/`layerCounters` in GetStatus (read through the strict client), `ctl status`, the
//! metrics, a raw socket refused at creation logged without a destination, and `BROKER_EBPF_DISABLE_LAYERS`
//! taking a layer out. Root only.

mod support;

use std::time::Duration;

use interceptor_ebpf_agent::client::Client;
use interceptor_ebpf_core::contract::control::protocol::{CommandRequest, ResponseData, Status};
use interceptor_ebpf_core::contract::layer::{active_layers, Layer, LayerState};
use serde_json::Value;
use support::dp;
use support::{ctl, metric, scrape, text, Agent, World};

fn status(client: &mut Client) -> Status {
    match client.call(CommandRequest::GetStatus).expect("GetStatus") {
        ResponseData::GetStatus(s) => s,
        other => panic!("GetStatus answered {other:?}"),
    }
}

fn health_layers(client: &mut Client) -> Option<Vec<Layer>> {
    match client.call(CommandRequest::GetHealth).expect("GetHealth") {
        ResponseData::GetHealth(h) => h.active_layers,
        other => panic!("GetHealth answered {other:?}"),
    }
}

fn state(s: &Status, layer: Layer) -> LayerState {
    s.layers
        .iter()
        .find(|l| l.layer == layer)
        .map(|l| l.state.clone())
        .unwrap_or_else(|| panic!("{layer} missing from {:?}", s.layers))
}

/// `socket(AF_INET, SOCK_RAW, IPPROTO_UDP)` in `cgroup`: 0 when created, else the errno.
fn raw_socket(cgroup: &std::path::Path, netns: &dp::NetNs) -> dp::ProbeResult {
    dp::run_in_child(cgroup, netns, || {
        // SAFETY: plain syscalls on integers, in the forked child.
        unsafe {
            let s = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_UDP);
            if s < 0 {
                return *libc::__errno_location();
            }
            libc::close(s);
        }
        0
    })
}

#[test]
fn layers_are_reported_at_start_in_health_status_ctl_and_metrics_and_refusals_are_logged() {
    if support::skip(
        "layers_are_reported_at_start_in_health_status_ctl_and_metrics_and_refusals_are_logged",
    ) {
        return;
    }
    let mut world = World::new("layers");
    let netns = dp::NetNs::new("layers");
    let (workload, workload_id) = world.cgroup.child("workload");
    let policy = support::write_policy(&world.dir.path);
    let agent = Agent::start(
        &world,
        &[
            ("BROKER_EBPF_POLICY_FILE", policy.to_str().expect("utf8")),
            ("BROKER_EBPF_METRICS_LISTEN", "127.0.0.1:0"),
        ],
    );
    let metrics_addr = agent.metrics_addr();

    // The layers line: written once, before `started`, every layer with its state.
    let records = agent.records();
    let lines: Vec<&Value> = records
        .iter()
        .filter(|r| r["agent_event"] == "layers")
        .collect();
    assert_eq!(lines.len(), 1, "one layers line: {records:?}");
    let at = |event: &str| records.iter().position(|r| r["agent_event"] == event);
    assert!(
        at("layers").is_some() && at("layers") < at("started"),
        "{records:?}"
    );
    let logged = lines[0];
    let names: Vec<&str> = logged["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .filter_map(|l| l["layer"].as_str())
        .collect();
    assert_eq!(names, Layer::ALL.map(Layer::as_str));

    let mut client =
        Client::connect(&world.socket, Some(Duration::from_secs(10))).expect("connect");
    let s = status(&mut client);
    assert_eq!(
        s.layers.iter().map(|l| l.layer).collect::<Vec<_>>(),
        Layer::ALL
    );
    // This kernel has cgroup/sock_create and cgroup_skb with socket storage; BPF LSM may refuse to load.
    assert_eq!(state(&s, Layer::SockCreate), LayerState::Active);
    assert_eq!(state(&s, Layer::Egress), LayerState::Active);
    match state(&s, Layer::SocketCreateLsm) {
        LayerState::Active => {}
        LayerState::Unavailable(why) => assert!(!why.is_empty()),
        LayerState::Disabled => panic!("nothing was disabled"),
    }
    assert_eq!(s.active_layers, active_layers(&s.layers));
    assert_eq!(health_layers(&mut client), Some(s.active_layers.clone()));
    let logged_active: Vec<&str> = logged["active"]
        .as_array()
        .expect("active")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        logged_active,
        s.active_layers
            .iter()
            .map(|l| l.as_str())
            .collect::<Vec<_>>()
    );

    // A raw socket in a managed cgroup is refused at creation; its event has no destination.
    let out = ctl(
        &world.socket,
        &["cgroup", "add", &world.payload_path(&workload)],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let before = s.layer_counters.sockets_refused;
    let r = raw_socket(&workload, &netns);
    assert_eq!(r.errno, libc::EPERM, "raw socket in a managed cgroup");
    let event = agent
        .wait_line(Duration::from_secs(5), |v| v["pid"] == r.pid)
        .expect("the refusal is logged");
    assert_eq!(event["reason_code"], "DENY_SOCKET_CREATE");
    assert_eq!(event["hook"], "sock_create");
    assert_eq!(event["protocol"], "raw");
    assert_eq!(event["cgroup_id"], workload_id.to_string());
    assert!(
        event.get("dst_ip").is_none() && event.get("dst_port").is_none(),
        "no destination: {event}"
    );
    let line = serde_json::to_string(&event).expect("json");
    interceptor_ebpf_core::contract::events::json::parse_json(line.as_bytes())
        .unwrap_or_else(|e| panic!("{line}: {e}"));
    assert_eq!(
        status(&mut client).layer_counters.sockets_refused,
        before + 1
    );

    // ctl status and the metrics say the same.
    let out = ctl(&world.socket, &["status"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(
        shown.contains("\n  sock_create: active") && shown.contains("\n  egress: active"),
        "{shown}"
    );
    let m = scrape(&metrics_addr);
    for (series, n) in [
        ("interceptor_ebpf_layer_active{layer=\"sock_create\"} ", 1),
        ("interceptor_ebpf_layer_active{layer=\"egress\"} ", 1),
        (
            "interceptor_ebpf_verdicts_total{reason_code=\"DENY_SOCKET_CREATE\",hook=\"sock_create\"} ",
            1,
        ),
        (
            "interceptor_ebpf_sockets_refused_total{mode=\"enforce\"} ",
            before + 1,
        ),
    ] {
        assert_eq!(metric(&m, series), Some(n), "{series}\n{m}");
    }
}

#[test]
fn a_layer_named_in_broker_ebpf_disable_layers_is_not_attached() {
    if support::skip("a_layer_named_in_broker_ebpf_disable_layers_is_not_attached") {
        return;
    }
    let mut world = World::new("nolayer");
    let netns = dp::NetNs::new("nolayer");
    let (workload, _) = world.cgroup.child("workload");
    let agent = Agent::start(
        &world,
        &[
            ("BROKER_EBPF_DISABLE_LAYERS", "sock_create"),
            ("BROKER_EBPF_METRICS_LISTEN", "127.0.0.1:0"),
        ],
    );
    let metrics_addr = agent.metrics_addr();
    let mut client =
        Client::connect(&world.socket, Some(Duration::from_secs(10))).expect("connect");
    let s = status(&mut client);
    assert_eq!(state(&s, Layer::SockCreate), LayerState::Disabled);
    assert_eq!(state(&s, Layer::Egress), LayerState::Active);
    assert!(!s.active_layers.contains(&Layer::SockCreate));
    assert_eq!(health_layers(&mut client), Some(s.active_layers.clone()));
    let out = ctl(
        &world.socket,
        &["cgroup", "add", &world.payload_path(&workload)],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // Not refused at creation: the layer is not there (its packets still meet the egress layer).
    let r = raw_socket(&workload, &netns);
    assert_eq!(r.errno, 0, "sock_create is disabled");
    let out = ctl(&world.socket, &["status"], None);
    assert!(
        text(&out.stdout).contains("\n  sock_create: disabled"),
        "{}",
        text(&out.stdout)
    );
    let m = scrape(&metrics_addr);
    assert_eq!(
        metric(&m, "interceptor_ebpf_layer_active{layer=\"sock_create\"} "),
        Some(0),
        "{m}"
    );
}
