//! `interceptor-ebpf ctl`: one control request per invocation (events: a stream), text for people, `--json`
//! for scripts, and exit codes that say what went wrong (see [`crate::exit::Exit`]).

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use interceptor_ebpf_core::contract::config::{controller_socket_path, ENV_CONTROL_SOCKET};
use interceptor_ebpf_core::contract::control::protocol::{
    check_cgroup_path, parse_cgroup_id, CgroupRef, CommandRequest, Health, HealthStatus,
    ManagedCgroup, Mode, PolicySummary, ResponseData, ShutdownOptions, Status, UpsertManagedCgroup,
};
use interceptor_ebpf_core::contract::events::json::parse_json;
use interceptor_ebpf_core::contract::events::DataplanePacketEvent;
use interceptor_ebpf_core::contract::json_reader::Issues;
use interceptor_ebpf_core::contract::layer::Layer;
use interceptor_ebpf_core::contract::policy::PolicySnapshot;
use interceptor_ebpf_core::contract::validation::PathSegment;

use crate::cli::{
    CgroupCommand, CtlArgs, CtlCommand, EventsArgs, ModeArg, ModeCommand, PolicyCommand,
};
use crate::client::{Client, ClientError};
use crate::exit::Exit;

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Mode {
        match m {
            ModeArg::Enforce => Mode::Enforce,
            ModeArg::Observe => Mode::Observe,
        }
    }
}

fn socket_path(args: &CtlArgs) -> PathBuf {
    controller_socket_path(args.socket.clone(), std::env::var_os(ENV_CONTROL_SOCKET))
}

fn fail(exit: Exit, message: impl std::fmt::Display) -> Exit {
    eprintln!("interceptor-ebpf ctl: {message}");
    exit
}

fn client_exit(e: &ClientError) -> Exit {
    match e {
        ClientError::Refused(_) if e.is_authorization() => Exit::Authorization,
        ClientError::Refused(_) => Exit::Command,
        _ => Exit::Connection,
    }
}

/// A payload cgroup: a path as /proc/<pid>/cgroup prints it, or decimal id digits; checked by the contract.
fn cgroup_arg(text: &str) -> Result<CgroupRef, String> {
    let mut issues = Issues::new();
    let path = [PathSegment::from("cgroup")];
    let parsed = if text.starts_with('/') {
        check_cgroup_path(text, &path, &mut issues).map(|p| CgroupRef::Path(p.to_owned()))
    } else {
        parse_cgroup_id(text, &path, &mut issues).map(CgroupRef::Id)
    };
    parsed.ok_or_else(|| {
        let detail = issues
            .into_vec()
            .into_iter()
            .map(|i| i.message)
            .collect::<Vec<_>>()
            .join("; ");
        format!("{text}: {detail} (give a path such as /system.slice/app.service or a cgroup id)")
    })
}

pub fn run(args: CtlArgs) -> Exit {
    let socket = socket_path(&args);
    let timeout = Some(Duration::from_millis(args.timeout_ms.max(1)));
    let request = match &args.command {
        CtlCommand::Health => CommandRequest::GetHealth,
        CtlCommand::Status => CommandRequest::GetStatus,
        CtlCommand::Policy(PolicyCommand::Show) => CommandRequest::GetPolicySummary,
        CtlCommand::Policy(PolicyCommand::Apply { file }) => match read_policy(file) {
            Ok(s) => CommandRequest::ReplacePolicySnapshot(s),
            Err((exit, message)) => return fail(exit, message),
        },
        CtlCommand::Cgroup(CgroupCommand::Add {
            cgroup,
            mode,
            workload_id,
        }) => match cgroup_arg(cgroup) {
            Ok(c) => CommandRequest::UpsertManagedCgroup(UpsertManagedCgroup {
                cgroup: c,
                mode: mode.map(Mode::from),
                workload_id: workload_id.clone(),
            }),
            Err(m) => return fail(Exit::Usage, m),
        },
        CtlCommand::Cgroup(CgroupCommand::Remove { cgroup }) => match cgroup_arg(cgroup) {
            Ok(c) => CommandRequest::DeleteManagedCgroup(c),
            Err(m) => return fail(Exit::Usage, m),
        },
        CtlCommand::Cgroup(CgroupCommand::Mode { cgroup, mode }) => match cgroup_arg(cgroup) {
            Ok(c) => CommandRequest::SetCgroupMode {
                cgroup: c,
                mode: Mode::from(*mode),
            },
            Err(m) => return fail(Exit::Usage, m),
        },
        CtlCommand::Mode(ModeCommand::Set { mode }) => {
            CommandRequest::SetGlobalMode(Mode::from(*mode))
        }
        CtlCommand::Shutdown(s) => CommandRequest::Shutdown(ShutdownOptions { detach: s.detach }),
        CtlCommand::Events(e) => return events(&socket, timeout, e),
    };
    let mut client = match Client::connect(&socket, timeout) {
        Ok(c) => c,
        Err(e) => return fail(Exit::Connection, e),
    };
    let data = match client.call(request) {
        Ok(d) => d,
        Err(e) => return fail(client_exit(&e), e),
    };
    let degraded =
        matches!(&data, ResponseData::GetHealth(h) if h.status == HealthStatus::Degraded);
    let text = if args.json {
        json_of(&data)
    } else {
        text_of(&data)
    };
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{text}").and_then(|()| out.flush()).is_err() {
        return Exit::Failure;
    }
    if degraded {
        Exit::Degraded
    } else {
        Exit::Ok
    }
}

fn read_policy(file: &PathBuf) -> Result<PolicySnapshot, (Exit, String)> {
    let mut bytes = Vec::new();
    let read = if file.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut bytes).map(|_| ())
    } else {
        std::fs::File::open(file).and_then(|mut f| f.read_to_end(&mut bytes).map(|_| ()))
    };
    read.map_err(|e| (Exit::Usage, format!("cannot read {}: {e}", file.display())))?;
    PolicySnapshot::from_json_slice(&bytes).map_err(|e| {
        (
            Exit::Command,
            format!("{} is not a valid policy snapshot: {e}", file.display()),
        )
    })
}

fn json_of(data: &ResponseData) -> String {
    let value = match data {
        ResponseData::GetHealth(h) => serde_json::to_value(h),
        ResponseData::GetStatus(s) => serde_json::to_value(s),
        ResponseData::GetPolicySummary(p) | ResponseData::ReplacePolicySnapshot(p) => {
            serde_json::to_value(p)
        }
        ResponseData::UpsertManagedCgroup(c)
        | ResponseData::DeleteManagedCgroup(c)
        | ResponseData::SetCgroupMode(c) => serde_json::to_value(c),
        ResponseData::SetGlobalMode(g) => serde_json::to_value(g),
        ResponseData::Shutdown | ResponseData::SubscribeEvents => Ok(serde_json::Value::Null),
    };
    value
        .map(|v| v.to_string())
        .unwrap_or_else(|_| "null".into())
}

fn cgroup_text(c: &ManagedCgroup) -> String {
    let mut s = format!(
        "{} (id {})",
        c.path.as_deref().unwrap_or("(path unknown)"),
        c.cgroup_id
    );
    s.push_str(&format!(
        " mode {}",
        c.mode.map_or("inherit (global)", Mode::as_str)
    ));
    if let Some(w) = &c.workload_id {
        s.push_str(&format!(" workload {w}"));
    }
    s
}

fn summary_text(p: &PolicySummary) -> String {
    if p.generation == 0 {
        return "no policy loaded".into();
    }
    format!(
        "generation {}: {} IPv4 rules, {} IPv6 rules, {} broker endpoints, {} DNS endpoints",
        p.generation, p.ipv4_rules, p.ipv6_rules, p.broker_endpoints, p.dns_endpoints
    )
}

fn health_text(h: &Health) -> String {
    let mut out = match h.status {
        HealthStatus::Ok => "status: ok".to_owned(),
        HealthStatus::Degraded => "status: degraded".to_owned(),
    };
    if let Some(since) = &h.degraded_since {
        out.push_str(&format!(" since {since}"));
    }
    for r in &h.degraded_reasons {
        out.push_str(&format!("\n  - {r}"));
    }
    if let Some(t) = &h.started_at {
        out.push_str(&format!("\nstarted: {t}"));
    }
    match (h.adopted, h.adopted_heartbeat_age_ms) {
        (Some(true), Some(age)) => out.push_str(&format!(
            "\nadopted: yes (the pinned heartbeat was {age} ms old{})",
            match h.heartbeat_grace_ms {
                Some(g) if age > g =>
                    format!("; the kernel gave degraded verdicts for {} ms", age - g),
                _ => String::new(),
            }
        )),
        (Some(true), None) => out.push_str("\nadopted: yes"),
        (Some(false), _) => out.push_str("\nadopted: no (fresh start)"),
        (None, _) => {}
    }
    if let (Some(age), Some(grace)) = (h.heartbeat_age_ms, h.heartbeat_grace_ms) {
        out.push_str(&format!("\nheartbeat: {age} ms ago (grace {grace} ms)"));
    }
    if let Some(layers) = &h.active_layers {
        out.push_str(&format!("\nbypass layers in force: {}", names(layers)));
    }
    out
}

fn names(layers: &[Layer]) -> String {
    if layers.is_empty() {
        return "(none)".to_owned();
    }
    layers
        .iter()
        .map(|l| l.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn status_text(s: &Status) -> String {
    let hooks: Vec<&str> = s.attached_hooks.iter().map(|h| h.as_str()).collect();
    let mut out = format!(
        "hooks: {}\nglobal mode: {}\nfail mode: {}\npolicy: generation {}, {} IPv4 rules, {} IPv6 rules\n\
         events: {} emitted, {} dropped in the kernel, {} dropped in queues\ndegraded: {}\nmanaged cgroups: {}",
        if hooks.is_empty() { "(none)".to_owned() } else { hooks.join(", ") },
        s.global_mode.as_str(),
        s.fail_mode.as_str(),
        s.generation,
        s.ipv4_rules,
        s.ipv6_rules,
        s.events_emitted,
        s.dropped_in_kernel,
        s.dropped_in_queue,
        if s.degraded { "yes" } else { "no" },
        s.managed_cgroups.len()
    );
    for c in &s.managed_cgroups {
        out.push_str(&format!("\n  {}", cgroup_text(c)));
    }
    out.push_str(&format!(
        "\nbypass layers in force: {}",
        names(&s.active_layers)
    ));
    for l in &s.layers {
        out.push_str(&format!("\n  {}: {}", l.layer, l.state.as_str()));
        if let Some(why) = l.state.reason() {
            out.push_str(&format!(" ({why})"));
        }
    }
    let c = &s.layer_counters;
    out.push_str(&format!(
        "\nlayer counters: {} sockets refused ({} in observe), {} packets dropped ({} in observe), \
         {} packets judged, {} socket marks written",
        c.sockets_refused,
        c.sockets_would_refuse,
        c.packets_dropped,
        c.packets_would_drop,
        c.packets_judged,
        c.marks_written
    ));
    out.push_str(&format!(
        "\nverdicts (kernel counters): {}",
        s.verdicts.iter().map(|v| v.count).sum::<u64>()
    ));
    for v in &s.verdicts {
        out.push_str(&format!(
            "\n  {} {}: {}",
            v.hook.as_str(),
            v.reason.as_str(),
            v.count
        ));
    }
    out
}

fn text_of(data: &ResponseData) -> String {
    match data {
        ResponseData::GetHealth(h) => health_text(h),
        ResponseData::GetStatus(s) => status_text(s),
        ResponseData::GetPolicySummary(p) => summary_text(p),
        ResponseData::ReplacePolicySnapshot(p) => format!("applied {}", summary_text(p)),
        ResponseData::UpsertManagedCgroup(c) => format!("managed: {}", cgroup_text(c)),
        ResponseData::DeleteManagedCgroup(c) => format!("no longer managed: {}", cgroup_text(c)),
        ResponseData::SetCgroupMode(c) => format!("mode set: {}", cgroup_text(c)),
        ResponseData::SetGlobalMode(g) => format!("global mode: {}", g.global_mode.as_str()),
        ResponseData::Shutdown => "the agent stopped".into(),
        ResponseData::SubscribeEvents => "subscribed".into(),
    }
}

fn table_line(cols: [&str; 10]) -> String {
    let [time, verdict, reason, hook, proto, dst, pid, comm, who, rule] = cols;
    format!(
        "{time:<30} {verdict:<8} {reason:<28} {hook:<8} {proto:<5} {dst:<45} {pid:<8} {comm:<16} {who:<20} {rule}"
    )
}

fn table_header() -> String {
    table_line([
        "TIME",
        "VERDICT",
        "REASON",
        "HOOK",
        "PROTO",
        "DESTINATION",
        "PID",
        "COMM",
        "CGROUP/WORKLOAD",
        "RULE",
    ])
}

fn table_row(e: &DataplanePacketEvent) -> String {
    let time = e
        .observed_at
        .as_ref()
        .map_or("-".to_owned(), |t| t.to_string());
    let dst = match (e.dst_ip, e.dst_port) {
        (Some(std::net::IpAddr::V6(ip)), Some(port)) => format!("[{ip}]:{port}"),
        (Some(ip), Some(port)) => format!("{ip}:{port}"),
        (Some(ip), None) => ip.to_string(),
        _ => "-".into(),
    };
    let verdict = match e.would_block() {
        Some(true) => "observe!",
        Some(false) => "observe",
        None => e.verdict().as_str(),
    };
    let who = match (&e.workload_id, e.cgroup_id) {
        (Some(w), _) => w.clone(),
        (None, Some(id)) => id.to_string(),
        (None, None) => "-".into(),
    };
    let pid = e.pid.map_or("-".into(), |p| p.to_string());
    table_line([
        &time,
        verdict,
        e.reason_code.as_str(),
        e.hook.map_or("-", |h| h.as_str()),
        e.protocol.map_or("-", |p| p.as_str()),
        &dst,
        &pid,
        e.comm.as_ref().map_or("-", |c| c.as_str()),
        &who,
        e.rule_id.as_deref().unwrap_or("-"),
    ])
}

fn events(socket: &std::path::Path, timeout: Option<Duration>, args: &EventsArgs) -> Exit {
    if !args.follow && args.count.is_none() {
        return fail(
            Exit::Usage,
            "events needs --follow (stream until interrupted) or --count N: the agent keeps no history, \
             events are live",
        );
    }
    let client = match Client::connect(socket, timeout) {
        Ok(c) => c,
        Err(e) => return fail(Exit::Connection, e),
    };
    let mut stream = match client.subscribe() {
        Ok(s) => s,
        Err(e) => return fail(client_exit(&e), e),
    };
    let stdout = std::io::stdout();
    let table = stdout.is_terminal();
    let mut out = stdout.lock();
    if table && writeln!(out, "{}", table_header()).is_err() {
        return Exit::Failure;
    }
    let mut seen = 0u64;
    while args.count.is_none_or(|n| seen < n) {
        let line = match stream.next_line() {
            Ok(Some(l)) => l,
            Ok(None) => return fail(Exit::Connection, "the agent closed the event stream"),
            Err(e) => return fail(Exit::Connection, e),
        };
        // Every line is checked against the contract; an invalid one is reported, not shown as an event.
        let event = match parse_json(&line) {
            Ok(e) => e,
            Err(e) => {
                return fail(
                    Exit::Connection,
                    format!("invalid event line from the agent: {e}"),
                )
            }
        };
        let written = if table {
            writeln!(out, "{}", table_row(&event))
        } else {
            out.write_all(&line).and_then(|()| out.write_all(b"\n"))
        };
        if written.and_then(|()| out.flush()).is_err() {
            // The reader went away (e.g. `| head`): that ends the stream, not an error.
            return Exit::Ok;
        }
        seen += 1;
    }
    Exit::Ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_arguments_are_paths_or_ids_checked_by_the_contract() {
        assert_eq!(cgroup_arg("/a/b"), Ok(CgroupRef::Path("/a/b".into())));
        assert_eq!(cgroup_arg("42"), Ok(CgroupRef::Id(42)));
        for bad in ["/", "a/b", "/a/../b", "042", "0", ""] {
            assert!(cgroup_arg(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn table_rows_line_up_with_the_header() {
        let line = br#"{"code_namespace":"dataplane_verdict","reason_code":"DENY_DEFAULT","verdict":"deny","hook":"connect4","cgroup_id":"7","protocol":"tcp","dst_ip":"192.0.2.1","dst_port":443,"pid":1,"uid":0,"comm":"curl","policy_generation":1,"observed_at":"2026-01-01T00:00:00.000000000Z"}"#;
        let row = table_row(&parse_json(line).expect("event"));
        assert!(
            row.starts_with("2026-01-01T00:00:00.000000000Z deny     DENY_DEFAULT"),
            "{row}"
        );
        let header = table_header();
        assert_eq!(row.find("connect4"), header.find("HOOK"));
        assert_eq!(row.find("192.0.2.1"), header.find("DESTINATION"));
        assert_eq!(row.find("curl"), header.find("COMM"));
    }
}
