//! `interceptor-ebpf ctl`: one control request per invocation (events: a stream; `version`, `policy diff`:
//! one request and local work), text for people (`-o table`), one JSON line for scripts (`-o json`, alias
//! `--json`), and exit codes that say what went wrong (see [`crate::exit::Exit`]). What can be checked before
//! sending is checked here: the contract's rules on the input, the 16 MiB line limit.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use interceptor_ebpf_core::contract::config::{
    controller_socket_path, DEFAULT_CONTROL_SOCKET_PATH, ENV_CONTROL_SOCKET,
};
use interceptor_ebpf_core::contract::control::protocol::{
    check_cgroup_path, parse_cgroup_id, CgroupRef, CommandRequest, ControlRequest, DnsStatus,
    Health, HealthStatus, ManagedCgroup, Mode, PolicySummary, ResponseData, ShutdownOptions,
    Status, UpsertManagedCgroup, MAX_LINE_BYTES,
};
use interceptor_ebpf_core::contract::events::json::parse_json;
use interceptor_ebpf_core::contract::events::DataplanePacketEvent;
use interceptor_ebpf_core::contract::json_reader::Issues;
use interceptor_ebpf_core::contract::layer::Layer;
use interceptor_ebpf_core::contract::policy::PolicySnapshot;
use interceptor_ebpf_core::contract::reason_codes::{DataplaneReasonCode, Verdict};
use interceptor_ebpf_core::contract::timestamp::{Timestamp, TimestampParts};
use interceptor_ebpf_core::contract::validation::{PathSegment, ValidationError};
use interceptor_ebpf_core::contract::wire_literal::WireLiteral;

use crate::cli::{
    CgroupCommand, CtlArgs, CtlCommand, EventsArgs, ModeArg, ModeCommand, OutputFormat,
    PolicyCommand, VerdictArg,
};
use crate::client::{Client, ClientError};
use crate::exit::Exit;
use crate::policy_diff::{diff, endpoint, rule_text};

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
    let json = args.format() == Some(OutputFormat::Json);
    let request = match &args.command {
        CtlCommand::Version => return version(&socket, timeout, json),
        CtlCommand::Completions { shell } => return completions(*shell),
        CtlCommand::Health => CommandRequest::GetHealth,
        CtlCommand::Status => CommandRequest::GetStatus,
        CtlCommand::Dns => CommandRequest::GetDnsStatus,
        CtlCommand::Policy(PolicyCommand::Show) => return policy_show(&socket, timeout, json),
        CtlCommand::Policy(PolicyCommand::Summary) => CommandRequest::GetPolicySummary,
        CtlCommand::Policy(PolicyCommand::Diff { file }) => {
            return policy_diff(&socket, timeout, file, json)
        }
        CtlCommand::Policy(PolicyCommand::Apply { file, dry_run }) => match read_policy(file) {
            Ok(s) if *dry_run => CommandRequest::ValidatePolicySnapshot(s),
            Ok(s) => CommandRequest::ReplacePolicySnapshot(s),
            Err((exit, message)) => return fail(exit, message),
        },
        CtlCommand::Cgroup(CgroupCommand::List) => {
            return match call(&socket, timeout, CommandRequest::GetStatus) {
                Ok(ResponseData::GetStatus(s)) => print(&cgroups_output(&s.managed_cgroups, json)),
                Ok(other) => fail(
                    Exit::Connection,
                    format!("unexpected reply {}", other.command()),
                ),
                Err(exit) => exit,
            };
        }
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
        CtlCommand::Events(e) => return events(&socket, timeout, e, args.format()),
    };
    let data = match call(&socket, timeout, request) {
        Ok(d) => d,
        Err(exit) => return exit,
    };
    let degraded =
        matches!(&data, ResponseData::GetHealth(h) if h.status == HealthStatus::Degraded);
    let text = if json { json_of(&data) } else { text_of(&data) };
    match print(&text) {
        Exit::Ok if degraded => Exit::Degraded,
        other => other,
    }
}

/// Writes one output line; a failed write is exit 1.
fn print(text: &str) -> Exit {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Ok(()) => Exit::Ok,
        Err(_) => Exit::Failure,
    }
}

/// One request on its own connection: the request line's size is checked first (exit 5, what the agent
/// would answer), a connection failure gets its hint (exit 3), a refusal its exit code.
fn call(
    socket: &Path,
    timeout: Option<Duration>,
    request: CommandRequest,
) -> Result<ResponseData, Exit> {
    let command = request.command();
    // The longest id the client sends, so the size is an upper bound of the line written.
    let sized = ControlRequest {
        request,
        id: Some(u64::MAX.to_string()),
    };
    let body = sized.to_line().len() - 1;
    let request = sized.request;
    if body > MAX_LINE_BYTES {
        return Err(fail(
            Exit::Command,
            format!(
                "the {command} request is {} bytes; the agent reads at most {} bytes a line \
                 (MAX_CONTROL_LINE_BYTES, 16 MiB): nothing was sent",
                thousands(body as u64),
                thousands(MAX_LINE_BYTES as u64)
            ),
        ));
    }
    let mut client = Client::connect(socket, timeout).map_err(|e| connect_failed(&e))?;
    client
        .call(request)
        .map_err(|e| fail(client_exit(&e), capped(&e.to_string())))
}

/// `cannot connect` with what usually causes it: no agent at that path (ENOENT), a socket nobody listens on
/// (ECONNREFUSED), or a peer outside the socket's group (EACCES).
fn connect_failed(e: &ClientError) -> Exit {
    let mut message = e.to_string();
    if let ClientError::Connect { path, source } = e {
        let hint = match source.kind() {
            std::io::ErrorKind::NotFound => Some(format!(
                "is the agent running? ctl uses --socket, else {ENV_CONTROL_SOCKET} ({}), else {}; the agent \
                 serves the path of its own {ENV_CONTROL_SOCKET} or --control-socket",
                std::env::var(ENV_CONTROL_SOCKET).map_or_else(|_| "unset".to_owned(), |v| format!("{v:?}")),
                DEFAULT_CONTROL_SOCKET_PATH
            )),
            std::io::ErrorKind::ConnectionRefused => Some(
                "the socket file exists but no agent listens on it (a stale socket: the agent stopped or \
                 crashed)"
                    .to_owned(),
            ),
            std::io::ErrorKind::PermissionDenied => Some(permission_hint(path)),
            _ => None,
        };
        if let Some(hint) = hint {
            message.push_str(&format!("\n  hint: {hint}"));
        }
    }
    fail(Exit::Connection, message)
}

fn permission_hint(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: getuid/getgid cannot fail and touch no memory.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    match std::fs::metadata(path) {
        Ok(m) => format!(
            "the socket is mode {:04o}, owner {}:{}; this process runs as uid {uid} gid {gid}: run as root or \
             as a member of group {} (the agent's BROKER_EBPF_SOCKET_GID; `id` lists your groups, a new \
             group membership needs a new login)",
            m.mode() & 0o7777,
            m.uid(),
            m.gid(),
            m.gid()
        ),
        Err(_) => format!(
            "a directory on the way to {} is not searchable by uid {uid} gid {gid} (the agent creates it \
             with BROKER_EBPF_SOCKET_DIR_MODE, default 0750, owned by BROKER_EBPF_SOCKET_UID:GID)",
            path.display()
        ),
    }
}

/// `1234567` -> `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Issues shown on standard error before the rest are counted: enough to fix a file, never a multi-megabyte
/// line.
const MAX_ISSUES_SHOWN: usize = 20;

/// A validation error's issues, the first [`MAX_ISSUES_SHOWN`] one per line, then `and N more`.
fn issue_list(e: &ValidationError) -> String {
    let mut out = String::new();
    for issue in e.issues.iter().take(MAX_ISSUES_SHOWN) {
        out.push_str(&format!(
            "\n  {}",
            capped(&ValidationError::single(issue.clone()).to_string())
        ));
    }
    if e.issues.len() > MAX_ISSUES_SHOWN {
        out.push_str(&format!(
            "\n  and {} more",
            thousands((e.issues.len() - MAX_ISSUES_SHOWN) as u64)
        ));
    }
    out
}

/// Longest message printed as is; the agent's refusals list at most 100 issues, but each may quote input.
const MAX_MESSAGE_BYTES: usize = 4096;

/// `text`, cut at a character boundary after [`MAX_MESSAGE_BYTES`] with how much was left out.
fn capped(text: &str) -> String {
    if text.len() <= MAX_MESSAGE_BYTES {
        return text.to_owned();
    }
    let mut end = MAX_MESSAGE_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}... and {} more bytes",
        &text[..end],
        thousands((text.len() - end) as u64)
    )
}

fn completions(shell: clap_complete::Shell) -> Exit {
    use clap::CommandFactory;
    let mut command = crate::cli::Cli::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(shell, &mut command, "interceptor-ebpf", &mut out);
    match out.flush() {
        Ok(()) => Exit::Ok,
        Err(_) => Exit::Failure,
    }
}

/// `ctl version`: this binary's version always; the agent's from GetHealth when one answers (exit 3 when
/// none does, after printing the client's).
fn version(socket: &Path, timeout: Option<Duration>, json: bool) -> Exit {
    let client = env!("CARGO_PKG_VERSION");
    let agent = call(socket, timeout, CommandRequest::GetHealth);
    let agent_version = match &agent {
        Ok(ResponseData::GetHealth(h)) => Some(h.version.clone()),
        _ => None,
    };
    let text = if json {
        serde_json::json!({
            "client": {"version": client},
            "agent": agent_version.as_ref().map(|v| serde_json::json!({"version": v})),
        })
        .to_string()
    } else {
        let agent = match &agent_version {
            Some(Some(v)) => v.clone(),
            Some(None) => "unknown (an agent older than the version field of GetHealth)".to_owned(),
            None => "not reachable".to_owned(),
        };
        format!("client: {client}\nagent: {agent}")
    };
    match (print(&text), agent) {
        (Exit::Ok, Err(exit)) => exit,
        (Exit::Ok, Ok(_)) => Exit::Ok,
        (other, _) => other,
    }
}

/// The active snapshot, or exit 5 saying why the agent does not know it.
fn active_snapshot(
    socket: &Path,
    timeout: Option<Duration>,
) -> Result<(u64, PolicySnapshot), Exit> {
    let data = match call(socket, timeout, CommandRequest::GetPolicySnapshot)? {
        ResponseData::GetPolicySnapshot(p) => p,
        other => {
            return Err(fail(
                Exit::Connection,
                format!("unexpected reply {}", other.command()),
            ))
        }
    };
    match data.snapshot {
        Some(s) => Ok((data.generation, s)),
        None if data.generation == 0 => Err(fail(Exit::Command, "no policy loaded")),
        None => Err(fail(
            Exit::Command,
            format!(
                "generation {} is loaded, but this agent did not apply it: it adopted the pinned state of a \
                 previous agent (or another loader replaced the policy), and the kernel keeps only the compiled \
                 form; `ctl policy apply FILE` makes the snapshot known again",
                data.generation
            ),
        )),
    }
}

fn policy_show(socket: &Path, timeout: Option<Duration>, json: bool) -> Exit {
    let (generation, snapshot) = match active_snapshot(socket, timeout) {
        Ok(s) => s,
        Err(exit) => return exit,
    };
    if json {
        return print(&snapshot.to_json_value().to_string());
    }
    let counts = snapshot.counts();
    let mut out = format!(
        "generation {generation}: {} IPv4 rules, {} IPv6 rules, {} broker endpoints, {} DNS endpoints{}\n\
         sampling: allowOneIn {}, unmanagedOneIn {}\ndnsQueries: {}",
        counts.ipv4_rules,
        counts.ipv6_rules,
        counts.broker_endpoints,
        counts.dns_endpoints,
        by_name_text(counts.fqdn_rules, counts.broker_names),
        snapshot.sampling.allow_one_in,
        snapshot.sampling.unmanaged_one_in,
        snapshot.dns_queries.as_str()
    );
    for b in &snapshot.broker {
        out.push_str(&format!("\nbroker: {}", endpoint(b.ip, b.port)));
    }
    for b in &snapshot.broker_names {
        out.push_str(&format!("\nbroker: {}:{}", b.fqdn, b.port));
    }
    for d in &snapshot.dns {
        out.push_str(&format!("\ndns: {}", endpoint(d.ip, d.port)));
    }
    if !snapshot.rules.is_empty() {
        let width = snapshot
            .rules
            .iter()
            .map(|r| r.id.chars().count())
            .max()
            .unwrap_or(0)
            .max(2);
        out.push_str(&format!("\n{:<width$}  RULE", "ID"));
        for r in &snapshot.rules {
            out.push_str(&format!("\n{:<width$}  {}", r.id, rule_text(r)));
        }
    }
    print(&out)
}

/// Exit 0 when FILE is the active policy, 1 when it differs (as diff(1)); other codes as every command.
fn policy_diff(socket: &Path, timeout: Option<Duration>, file: &PathBuf, json: bool) -> Exit {
    let proposed = match read_policy(file) {
        Ok(s) => s,
        Err((exit, message)) => return fail(exit, message),
    };
    let (_, active) = match active_snapshot(socket, timeout) {
        Ok(s) => s,
        Err(exit) => return exit,
    };
    let d = diff(&active, &proposed);
    let text = if json {
        d.to_json().to_string()
    } else {
        d.to_text()
    };
    match print(&text) {
        Exit::Ok if !d.is_empty() => Exit::Failure,
        other => other,
    }
}

fn cgroups_output(cgroups: &[ManagedCgroup], json: bool) -> String {
    if json {
        return serde_json::to_string(cgroups).unwrap_or_else(|_| "null".into());
    }
    if cgroups.is_empty() {
        return "no managed cgroups".to_owned();
    }
    let rows: Vec<[String; 4]> = cgroups
        .iter()
        .map(|c| {
            [
                c.path.clone().unwrap_or_else(|| "(path unknown)".into()),
                c.cgroup_id.to_string(),
                c.mode.map_or("inherit", Mode::as_str).to_owned(),
                c.workload_id.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let header = ["PATH", "ID", "MODE", "WORKLOAD"].map(str::to_owned);
    let width = |i: usize| {
        rows.iter()
            .chain(std::iter::once(&header))
            .map(|r| r[i].chars().count())
            .max()
            .unwrap_or(0)
    };
    let (w0, w1, w2) = (width(0), width(1), width(2));
    std::iter::once(&header)
        .chain(rows.iter())
        .map(|[p, id, m, w]| format!("{p:<w0$}  {id:<w1$}  {m:<w2$}  {w}"))
        .collect::<Vec<_>>()
        .join("\n")
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
            format!(
                "{} is not a valid policy snapshot ({} issues):{}",
                file.display(),
                thousands(e.issues.len() as u64),
                issue_list(&e)
            ),
        )
    })
}

fn json_of(data: &ResponseData) -> String {
    let value = match data {
        ResponseData::GetHealth(h) => serde_json::to_value(h),
        ResponseData::GetStatus(s) => serde_json::to_value(s),
        ResponseData::GetPolicySummary(p)
        | ResponseData::ReplacePolicySnapshot(p)
        | ResponseData::ValidatePolicySnapshot(p) => serde_json::to_value(p),
        ResponseData::GetPolicySnapshot(_) => Ok(data.to_json_value().unwrap_or_default()),
        ResponseData::UpsertManagedCgroup(c)
        | ResponseData::DeleteManagedCgroup(c)
        | ResponseData::SetCgroupMode(c) => serde_json::to_value(c),
        ResponseData::SetGlobalMode(g) => serde_json::to_value(g),
        ResponseData::GetDnsStatus(d) => serde_json::to_value(d),
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
    format!("generation {}: {}", p.generation, counts_text(p))
}

fn counts_text(p: &PolicySummary) -> String {
    format!(
        "{} IPv4 rules, {} IPv6 rules, {} broker endpoints, {} DNS endpoints{}",
        p.ipv4_rules,
        p.ipv6_rules,
        p.broker_endpoints,
        p.dns_endpoints,
        by_name_text(p.fqdn_rules, p.broker_names)
    )
}

/// The counts of SPEC 4b, shown when a policy has any: `, 2 fqdn rules, 1 broker name`.
fn by_name_text(fqdn_rules: u64, broker_names: u64) -> String {
    if fqdn_rules == 0 && broker_names == 0 {
        return String::new();
    }
    let plural = |n: u64| if n == 1 { "" } else { "s" };
    format!(
        ", {fqdn_rules} fqdn rule{}, {broker_names} broker name{}",
        plural(fqdn_rules),
        plural(broker_names)
    )
}

fn dns_status_text(d: &DnsStatus) -> String {
    let mut out = if d.serving {
        format!("DNS proxy: serving on {}", d.listen.join(", "))
    } else {
        format!(
            "DNS proxy: not serving ({})",
            d.reason.as_deref().unwrap_or("no reason given")
        )
    };
    let c = &d.counters;
    out.push_str(&format!(
        "\ndnsQueries: {}\ncounters: {} queries, {} refused, {} would refuse (observe), {} addresses learned, \
         {} upstream failures\nlearned addresses: {}",
        d.dns_queries.as_str(),
        c.queries,
        c.refused,
        c.would_refuse,
        c.learned_addresses,
        c.upstream_failures,
        d.learned.len()
    ));
    for l in &d.learned {
        let target = if l.broker {
            "broker".to_owned()
        } else {
            format!("rules {}", l.rule_ids.join(", "))
        };
        out.push_str(&format!(
            "\n  {} {} ({target}) cgroup {}{} ttl {} ms",
            l.name,
            l.address,
            l.cgroup_id,
            l.workload_id
                .as_deref()
                .map_or(String::new(), |w| format!(" workload {w}")),
            l.ttl_remaining_ms
        ));
    }
    out
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
    if let Some(n) = s.learned_addresses {
        out.push_str(&format!("\naddresses learned from DNS answers: {n}"));
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
        ResponseData::GetPolicySnapshot(p) => format!("generation {}", p.generation),
        ResponseData::ReplacePolicySnapshot(p) => format!("applied {}", summary_text(p)),
        ResponseData::ValidatePolicySnapshot(p) => format!(
            "valid, nothing applied (dry run): the policy would hold {}; generation {} stays active",
            counts_text(p),
            p.generation
        ),
        ResponseData::UpsertManagedCgroup(c) => format!("managed: {}", cgroup_text(c)),
        ResponseData::DeleteManagedCgroup(c) => format!("no longer managed: {}", cgroup_text(c)),
        ResponseData::SetCgroupMode(c) => format!("mode set: {}", cgroup_text(c)),
        ResponseData::SetGlobalMode(g) => format!("global mode: {}", g.global_mode.as_str()),
        ResponseData::Shutdown => "the agent stopped".into(),
        ResponseData::SubscribeEvents => "subscribed".into(),
        ResponseData::GetDnsStatus(d) => dns_status_text(d),
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

/// What `ctl events` keeps: every filter given must match.
struct EventFilter {
    reasons: Vec<DataplaneReasonCode>,
    verdict: Option<Verdict>,
    cgroups: Vec<u64>,
    workloads: Vec<String>,
    /// Unix time in ns.
    since: Option<i128>,
}

impl EventFilter {
    fn from_args(args: &EventsArgs, now: SystemTime) -> Result<EventFilter, String> {
        let reasons = args
            .reason
            .iter()
            .map(|r| {
                DataplaneReasonCode::from_wire_literal(r).ok_or_else(|| {
                    format!(
                        "--reason {r}: unknown reason code; expected one of {}",
                        DataplaneReasonCode::VALUES
                            .iter()
                            .map(|c| c.wire())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        let cgroups = args
            .cgroup
            .iter()
            .map(|c| {
                let mut issues = Issues::new();
                parse_cgroup_id(c, &[PathSegment::from("cgroup")], &mut issues).ok_or_else(|| {
                    format!("--cgroup {c}: expected a cgroup id in decimal, as events report it")
                })
            })
            .collect::<Result<_, _>>()?;
        let since = match &args.since {
            None => None,
            Some(text) => Some(since_ns(text, now)?),
        };
        Ok(EventFilter {
            reasons,
            verdict: args.verdict.map(|v| match v {
                VerdictArg::Allow => Verdict::Allow,
                VerdictArg::Deny => Verdict::Deny,
            }),
            cgroups,
            workloads: args.workload.clone(),
            since,
        })
    }

    fn keeps(&self, e: &DataplanePacketEvent) -> bool {
        (self.reasons.is_empty() || self.reasons.contains(&e.reason_code))
            && self.verdict.is_none_or(|v| e.verdict() == v)
            && (self.cgroups.is_empty() || e.cgroup_id.is_some_and(|c| self.cgroups.contains(&c)))
            && (self.workloads.is_empty()
                || e.workload_id
                    .as_ref()
                    .is_some_and(|w| self.workloads.contains(w)))
            && self.since.is_none_or(|since| {
                e.observed_at
                    .as_ref()
                    .is_some_and(|t| unix_ns(t.parts()) >= since)
            })
    }
}

/// `--since`: an RFC 3339 time, or an age (`90s`, `5m`, `2h`, `1d`) before `now`; in unix ns.
fn since_ns(text: &str, now: SystemTime) -> Result<i128, String> {
    if let Ok(t) = Timestamp::parse(text) {
        return Ok(unix_ns(t.parts()));
    }
    let bad = || {
        format!("--since {text}: expected an RFC 3339 time (2026-12-07T16:00:00Z) or an age such as 30s, 5m, 2h, 1d")
    };
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let n: i128 = number.parse().map_err(|_| bad())?;
    let unit_s: i128 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128);
    Ok(now - n.saturating_mul(unit_s).saturating_mul(1_000_000_000))
}

/// Unix time in ns of a timestamp's fields (its offset applied; a leap second counts as the next second).
fn unix_ns(p: TimestampParts) -> i128 {
    // Days from 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
    let (y, m, d) = (i64::from(p.year), i64::from(p.month), i64::from(p.day));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs =
        days * 86_400 + i64::from(p.hour) * 3600 + i64::from(p.minute) * 60 + i64::from(p.second)
            - i64::from(p.offset_minutes) * 60;
    i128::from(secs) * 1_000_000_000 + i128::from(p.nanos)
}

fn events(
    socket: &Path,
    timeout: Option<Duration>,
    args: &EventsArgs,
    format: Option<OutputFormat>,
) -> Exit {
    if !args.follow && args.count.is_none() {
        return fail(
            Exit::Usage,
            "events needs --follow (stream until interrupted) or --count N: the agent keeps no history, \
             events are live",
        );
    }
    let filter = match EventFilter::from_args(args, SystemTime::now()) {
        Ok(f) => f,
        Err(m) => return fail(Exit::Usage, m),
    };
    if args.since.is_some() {
        eprintln!(
            "interceptor-ebpf ctl: note: the agent keeps no event history; --since filters the live stream \
             (events observed earlier are not replayed)"
        );
    }
    let client = match Client::connect(socket, timeout) {
        Ok(c) => c,
        Err(e) => return connect_failed(&e),
    };
    let mut stream = match client.subscribe() {
        Ok(s) => s,
        Err(e) => return fail(client_exit(&e), e),
    };
    let stdout = std::io::stdout();
    let table = match format {
        Some(OutputFormat::Table) => true,
        Some(OutputFormat::Json) => false,
        None => stdout.is_terminal(),
    };
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
                    format!(
                        "invalid event line from the agent: {}",
                        capped(&e.to_string())
                    ),
                )
            }
        };
        if !filter.keeps(&event) {
            continue;
        }
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

    #[test]
    fn thousands_groups_digits_by_three() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(131_062), "131,062");
        assert_eq!(thousands(16_777_216), "16,777,216");
    }

    #[test]
    fn long_messages_are_cut_at_a_character_boundary() {
        assert_eq!(capped("short"), "short");
        let long = "é".repeat(MAX_MESSAGE_BYTES);
        let cut = capped(&long);
        assert!(cut.len() < MAX_MESSAGE_BYTES + 40, "{}", cut.len());
        assert!(
            cut.ends_with(&format!(
                "... and {} more bytes",
                thousands((long.len() - MAX_MESSAGE_BYTES) as u64)
            )),
            "{}",
            &cut[cut.len() - 40..]
        );
    }

    #[test]
    fn issue_lists_show_the_first_issues_and_count_the_rest() {
        let issues = (0..131_082)
            .map(|i| {
                interceptor_ebpf_core::contract::validation::Issue::at(
                    "rules",
                    interceptor_ebpf_core::contract::validation::IssueCode::Custom,
                    format!("issue {i}"),
                )
            })
            .collect();
        let text = issue_list(&ValidationError::new(issues));
        // One issue a line, each under the "is not a valid policy snapshot" line it follows.
        assert!(text.starts_with("\n  rules: issue 0\n"), "{text}");
        assert_eq!(text.lines().skip(1).count(), MAX_ISSUES_SHOWN + 1, "{text}");
        assert!(text.contains("issue 19"), "{text}");
        assert!(!text.contains("issue 20"), "{text}");
        assert!(text.ends_with("and 131,062 more"), "{text}");
    }

    #[test]
    fn unix_time_of_timestamps_applies_the_offset() {
        let at = |s: &str| unix_ns(Timestamp::parse(s).expect("timestamp").parts());
        assert_eq!(at("1970-01-01T00:00:00Z"), 0);
        assert_eq!(at("2000-03-01T00:00:00Z"), 951_868_800 * 1_000_000_000);
        assert_eq!(
            at("2026-12-07T16:00:00.5Z"),
            1_796_659_200 * 1_000_000_000 + 500_000_000
        );
        assert_eq!(at("2026-12-07T17:00:00+01:00"), at("2026-12-07T16:00:00Z"));
        assert_eq!(at("1969-12-31T23:59:59Z"), -1_000_000_000);
    }

    #[test]
    fn since_takes_a_time_or_an_age() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10_000);
        let s = |t: &str| since_ns(t, now);
        assert_eq!(s("30s"), Ok(9_970 * 1_000_000_000));
        assert_eq!(s("5m"), Ok(9_700 * 1_000_000_000));
        assert_eq!(s("2h"), Ok(2_800 * 1_000_000_000));
        assert_eq!(s("1d"), Ok((10_000 - 86_400) * 1_000_000_000));
        assert_eq!(s("1970-01-01T00:00:01Z"), Ok(1_000_000_000));
        for bad in ["", "5", "m", "5w", "-5m", "yesterday", "1970-01-01"] {
            assert!(s(bad).is_err(), "{bad}");
        }
    }

    fn event(line: &str) -> DataplanePacketEvent {
        parse_json(line.as_bytes()).expect("event")
    }

    #[test]
    fn event_filters_keep_what_every_given_filter_matches() {
        let deny = event(
            r#"{"code_namespace":"dataplane_verdict","reason_code":"DENY_DEFAULT","verdict":"deny","hook":"connect4","cgroup_id":"7","workload_id":"wl-a","observed_at":"2026-01-01T00:00:10Z"}"#,
        );
        let allow = event(
            r#"{"code_namespace":"dataplane_verdict","reason_code":"ALLOW_EXPLICIT","verdict":"allow","hook":"connect4","cgroup_id":"8","observed_at":"2026-01-01T00:00:00Z"}"#,
        );
        let filter = |f: &[&str]| {
            let mut argv = vec!["events", "--follow"];
            argv.extend_from_slice(f);
            #[derive(clap::Parser)]
            struct Wrap {
                #[command(flatten)]
                events: EventsArgs,
            }
            use clap::Parser;
            let w = Wrap::try_parse_from(argv).expect("args");
            EventFilter::from_args(&w.events, SystemTime::UNIX_EPOCH)
        };
        let keeps = |f: &[&str]| {
            let f = filter(f).expect("filter");
            (f.keeps(&deny), f.keeps(&allow))
        };
        assert_eq!(keeps(&[]), (true, true));
        assert_eq!(keeps(&["--verdict", "deny"]), (true, false));
        assert_eq!(keeps(&["--verdict", "allow"]), (false, true));
        assert_eq!(keeps(&["--reason", "ALLOW_EXPLICIT"]), (false, true));
        assert_eq!(
            keeps(&["--reason", "DENY_DEFAULT,ALLOW_EXPLICIT"]),
            (true, true)
        );
        assert_eq!(keeps(&["--cgroup", "8"]), (false, true));
        assert_eq!(keeps(&["--cgroup", "7", "--cgroup", "8"]), (true, true));
        assert_eq!(keeps(&["--workload", "wl-a"]), (true, false));
        assert_eq!(keeps(&["--since", "2026-01-01T00:00:05Z"]), (true, false));
        assert_eq!(
            keeps(&["--verdict", "deny", "--cgroup", "8"]),
            (false, false)
        );
        assert!(filter(&["--reason", "DENY_EVERYTHING"]).is_err());
        assert!(filter(&["--cgroup", "/a/b"]).is_err());
        assert!(filter(&["--cgroup", "007"]).is_err());
        assert!(filter(&["--since", "soon"]).is_err());
    }

    #[test]
    fn the_cgroup_list_is_a_table_or_json() {
        let cgroups = [
            ManagedCgroup {
                cgroup_id: 42,
                path: Some("/system.slice/app.service".into()),
                mode: Some(Mode::Observe),
                workload_id: Some("billing".into()),
            },
            ManagedCgroup {
                cgroup_id: 7,
                path: None,
                mode: None,
                workload_id: None,
            },
        ];
        let table = cgroups_output(&cgroups, false);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[0].starts_with("PATH"), "{table}");
        assert_eq!(lines[0].find("ID"), lines[1].find("42"), "{table}");
        assert_eq!(lines[0].find("MODE"), lines[2].find("inherit"), "{table}");
        assert!(
            lines[1].ends_with("billing") && lines[2].ends_with('-'),
            "{table}"
        );
        assert_eq!(cgroups_output(&[], false), "no managed cgroups");
        let json: serde_json::Value =
            serde_json::from_str(&cgroups_output(&cgroups, true)).expect("json");
        assert_eq!(json[0]["cgroupId"], "42");
        assert_eq!(json[0]["workloadId"], "billing");
        assert_eq!(json[1], serde_json::json!({"cgroupId": "7"}));
    }
}
