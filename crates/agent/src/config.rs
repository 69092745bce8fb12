//! The agent's configuration (SPEC 5): flags override environment variables, which override the defaults.
//!
//! Every value is checked here, before anything is attached; the first bad one becomes a [`ConfigError`] whose
//! one-line message names the flag or variable and the value. The contract's own rules do the checking where
//! they exist (socket path, modes and ids through `EbpfInterceptorConfig`, the heartbeat pair through
//! `contract::heartbeat`, the policy file through the snapshot parser), so the agent, the Node API and the
//! control protocol cannot disagree.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Map, Value};

use interceptor_ebpf_core::contract::config::{EbpfInterceptorConfig, Environment};
use interceptor_ebpf_core::contract::heartbeat::{heartbeat_timing_named, HeartbeatTiming};
use interceptor_ebpf_core::contract::layer::Layer;
use interceptor_ebpf_core::contract::load_options::{
    parse_layer_list, ring_buffer_rule, DEFAULT_RING_BUFFER_BYTES,
};
use interceptor_ebpf_core::contract::modes::{FailMode, Mode};
use interceptor_ebpf_core::contract::policy::PolicySnapshot;
use interceptor_ebpf_core::dataplane;

use crate::cgroups::CgroupScope;
use crate::cli::AgentArgs;
use crate::daemon::fairness::SlotLimits;

/// Shared with every controller (`ctl`, `ControlClient`): the contract defines it.
pub use interceptor_ebpf_core::contract::config::ENV_CONTROL_SOCKET;
pub const ENV_SOCKET_MODE: &str = "BROKER_EBPF_SOCKET_MODE";
pub const ENV_SOCKET_DIR_MODE: &str = "BROKER_EBPF_SOCKET_DIR_MODE";
pub const ENV_SOCKET_UID: &str = "BROKER_EBPF_SOCKET_UID";
pub const ENV_SOCKET_GID: &str = "BROKER_EBPF_SOCKET_GID";
pub const ENV_PRIVILEGED_UIDS: &str = "BROKER_EBPF_PRIVILEGED_UIDS";
pub const ENV_PRIVILEGED_GIDS: &str = "BROKER_EBPF_PRIVILEGED_GIDS";
pub const ENV_CGROUP_ROOT: &str = "BROKER_EBPF_CGROUP_ROOT";
pub const ENV_PIN_DIR: &str = "BROKER_EBPF_PIN_DIR";
pub const ENV_FAIL_MODE: &str = "BROKER_EBPF_FAIL_MODE";
pub const ENV_GLOBAL_MODE: &str = "BROKER_EBPF_GLOBAL_MODE";
pub const ENV_HEARTBEAT_INTERVAL_MS: &str = "BROKER_EBPF_HEARTBEAT_INTERVAL_MS";
pub const ENV_HEARTBEAT_GRACE_MS: &str = "BROKER_EBPF_HEARTBEAT_GRACE_MS";
pub const ENV_POLICY_FILE: &str = "BROKER_EBPF_POLICY_FILE";
pub const ENV_DISABLE_LAYERS: &str = "BROKER_EBPF_DISABLE_LAYERS";
pub const ENV_RING_BUFFER_BYTES: &str = "BROKER_EBPF_RING_BUFFER_BYTES";
pub const ENV_METRICS_LISTEN: &str = "BROKER_EBPF_METRICS_LISTEN";
pub const ENV_DNS_PROXY_PORT: &str = "BROKER_EBPF_DNS_PROXY_PORT";
/// The DNS proxy's port when none is configured (docs/agent.md, "DNS proxy").
pub const DEFAULT_DNS_PROXY_PORT: u16 = 15353;
pub const ENV_ENVIRONMENT: &str = "BROKER_EBPF_ENVIRONMENT";
pub const ENV_MAX_CLIENTS: &str = "BROKER_EBPF_MAX_CLIENTS";
pub const ENV_MAX_CLIENTS_PER_UID: &str = "BROKER_EBPF_MAX_CLIENTS_PER_UID";
pub const ENV_RESERVED_CLIENTS: &str = "BROKER_EBPF_RESERVED_CLIENTS";
pub const ENV_CLIENT_IDLE_TIMEOUT_MS: &str = "BROKER_EBPF_CLIENT_IDLE_TIMEOUT_MS";
pub const ENV_REQUEST_TIMEOUT_MS: &str = "BROKER_EBPF_REQUEST_TIMEOUT_MS";
pub const ENV_VERDICT_LOG: &str = "BROKER_EBPF_VERDICT_LOG";

/// Where the verdict and authorization records go (operational lines always go to standard error).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerdictLog {
    Stdout,
    Stderr,
    /// Appended to; created (mode 0640) when missing.
    File(PathBuf),
}

impl VerdictLog {
    /// `stdout`, `stderr` or an absolute file path (a relative one would depend on the directory the agent was
    /// started in).
    fn parse(s: &Source) -> Result<VerdictLog, ConfigError> {
        match s.value.as_str() {
            "stdout" => Ok(VerdictLog::Stdout),
            "stderr" => Ok(VerdictLog::Stderr),
            v if Path::new(v).is_absolute() => Ok(VerdictLog::File(PathBuf::from(v))),
            _ => Err(ConfigError::new(
                s,
                "expected stdout, stderr or an absolute file path",
            )),
        }
    }

    /// Opens the destination.
    pub fn open(&self) -> std::io::Result<Box<dyn std::io::Write + Send>> {
        use std::os::unix::fs::OpenOptionsExt;
        Ok(match self {
            VerdictLog::Stdout => Box::new(std::io::stdout()),
            VerdictLog::Stderr => Box::new(std::io::stderr()),
            VerdictLog::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .mode(0o640)
                    .open(path)?,
            ),
        })
    }
}

/// Default for `max_clients`: far more controllers and subscribers than a node has, few enough that their
/// buffers stay small (see `server::BUFFER_BUDGET_BYTES` for the large-request bound).
pub const DEFAULT_MAX_CLIENTS: usize = 4096;
pub const MAX_MAX_CLIENTS: usize = 65_536;
/// Default for `max_clients_per_uid`: an unprivileged uid (a dashboard, `ctl events` readers) needs a few
/// connections; an eighth of the default total still leaves most of it to others.
pub const DEFAULT_MAX_CLIENTS_PER_UID: usize = 512;
/// Default for `reserved_clients` (at most a quarter of `max_clients`): room for root's `ctl` and a
/// controller's connections while unprivileged peers hold everything else.
pub const DEFAULT_RESERVED_CLIENTS: usize = 64;
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 300_000;
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 10_000;
const MAX_TIMEOUT_MS: u64 = 86_400_000;

/// Everything the agent needs, validated.
#[derive(Debug)]
pub struct AgentConfig {
    /// Environment, socket path, modes and owner, privileged uids and gids: the contract's config.
    pub contract: EbpfInterceptorConfig,
    /// Where the programs attach and where payload paths are mapped.
    pub cgroups: CgroupScope,
    /// `None`: `<bpffs>/broker-interceptor-ebpf`.
    pub pin_dir: Option<PathBuf>,
    pub fail_mode: FailMode,
    pub global_mode: Mode,
    pub heartbeat: HeartbeatTiming,
    /// Bypass layers not to attach (docs/threat-model.md); an adopted state drops their pinned links.
    pub disable_layers: Vec<Layer>,
    /// The event ring buffer's size (an adopted state keeps the size it was created with).
    pub ring_buffer_bytes: u32,
    /// The initial policy and the file it came from.
    pub policy: Option<(PathBuf, PolicySnapshot)>,
    pub metrics_listen: Option<SocketAddr>,
    /// The DNS proxy's port on 127.0.0.1 and [::1] (SPEC 4b); 0: no proxy.
    pub dns_proxy_port: u16,
    /// Connections served at once, per unprivileged uid, and kept for privileged peers (`daemon::fairness`).
    pub slots: SlotLimits,
    pub idle_timeout: Duration,
    pub request_timeout: Duration,
    /// Where verdict and authorization records go.
    pub verdict_log: VerdictLog,
}

/// Where a value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// `--flag` or `ENV_VAR`.
    pub name: String,
    pub value: String,
}

/// A bad configuration value: `NAME=VALUE: why` on one line.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{name}={value}: {reason}")]
pub struct ConfigError {
    pub name: String,
    pub value: String,
    pub reason: String,
}

impl ConfigError {
    fn new(source: &Source, reason: impl Into<String>) -> Self {
        ConfigError {
            name: source.name.clone(),
            value: source.value.clone(),
            reason: reason.into(),
        }
    }
}

/// Reads flags and environment. `env` is `std::env::var` in the binary and a map in tests.
struct Reader<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Reader<'_> {
    /// The flag's value if given, else the variable's; an empty variable counts as unset.
    fn get(&self, flag: &Option<String>, flag_name: &str, env_name: &str) -> Option<Source> {
        if let Some(v) = flag {
            return Some(Source {
                name: format!("--{flag_name}"),
                value: v.clone(),
            });
        }
        (self.env)(env_name)
            .filter(|v| !v.is_empty())
            .map(|value| Source {
                name: env_name.to_owned(),
                value,
            })
    }
}

fn parse_octal_mode(s: &Source) -> Result<u32, ConfigError> {
    let digits = s.value.strip_prefix("0o").unwrap_or(&s.value);
    let ok = !digits.is_empty()
        && digits.len() <= 4
        && digits.bytes().all(|b| (b'0'..=b'7').contains(&b));
    match u32::from_str_radix(digits, 8) {
        Ok(m) if ok && m <= 0o777 => Ok(m),
        _ => Err(ConfigError::new(
            s,
            "expected octal permission bits between 0000 and 0777, e.g. 0660",
        )),
    }
}

fn parse_u64(s: &Source, what: &str) -> Result<u64, ConfigError> {
    let v = s.value.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ConfigError::new(
            s,
            format!("expected {what} (decimal digits)"),
        ));
    }
    v.parse::<u64>()
        .map_err(|_| ConfigError::new(s, format!("{what} is too large")))
}

fn parse_ms(s: &Source) -> Result<Duration, ConfigError> {
    match parse_u64(s, "milliseconds")? {
        0 => Err(ConfigError::new(s, "must be at least 1 ms")),
        ms if ms > MAX_TIMEOUT_MS => Err(ConfigError::new(
            s,
            format!("must be at most {MAX_TIMEOUT_MS} ms (one day)"),
        )),
        ms => Ok(Duration::from_millis(ms)),
    }
}

fn parse_id_list(s: &Source) -> Result<Vec<u64>, ConfigError> {
    let mut out = Vec::new();
    for item in s.value.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(ConfigError::new(
                s,
                "expected a comma-separated list of ids such as 0,1000 (an item is empty)",
            ));
        }
        let one = Source {
            name: s.name.clone(),
            value: item.to_owned(),
        };
        out.push(
            parse_u64(&one, "an id")
                .map_err(|e| ConfigError::new(s, format!("`{item}`: {}", e.reason)))?,
        );
    }
    Ok(out)
}

fn absolute(s: &Source) -> Result<PathBuf, ConfigError> {
    let p = Path::new(&s.value);
    if !p.is_absolute() {
        return Err(ConfigError::new(s, "must be an absolute path"));
    }
    Ok(p.to_path_buf())
}

impl AgentConfig {
    /// Flags first, then the environment, then defaults. Reads the policy file and checks the cgroup root.
    pub fn resolve(
        args: &AgentArgs,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<AgentConfig, ConfigError> {
        let r = Reader { env };
        // The contract's config checks path, modes and ids; each key remembers its source for the error.
        let mut contract = Map::new();
        let mut sources: Vec<(&str, Source)> = Vec::new();
        let mut put = |key: &'static str, source: Source, value: Value| {
            contract.insert(key.to_owned(), value);
            sources.push((key, source));
        };
        if let Some(s) = r.get(&args.control_socket, "control-socket", ENV_CONTROL_SOCKET) {
            let v = Value::from(s.value.as_str());
            put("controlSocketPath", s, v);
        }
        if let Some(s) = r.get(&args.socket_mode, "socket-mode", ENV_SOCKET_MODE) {
            let m = parse_octal_mode(&s)?;
            put("controlSocketFileMode", s, json!(m));
        }
        if let Some(s) = r.get(
            &args.socket_dir_mode,
            "socket-dir-mode",
            ENV_SOCKET_DIR_MODE,
        ) {
            let m = parse_octal_mode(&s)?;
            put("controlSocketDirMode", s, json!(m));
        }
        if let Some(s) = r.get(&args.socket_uid, "socket-uid", ENV_SOCKET_UID) {
            let id = parse_u64(&s, "a uid")?;
            put("controlSocketOwnerUid", s, json!(id));
        }
        if let Some(s) = r.get(&args.socket_gid, "socket-gid", ENV_SOCKET_GID) {
            let id = parse_u64(&s, "a gid")?;
            put("controlSocketOwnerGid", s, json!(id));
        }
        if let Some(s) = r.get(
            &args.privileged_uids,
            "privileged-uids",
            ENV_PRIVILEGED_UIDS,
        ) {
            let ids = parse_id_list(&s)?;
            put("privilegedControllerUids", s, json!(ids));
        }
        if let Some(s) = r.get(
            &args.privileged_gids,
            "privileged-gids",
            ENV_PRIVILEGED_GIDS,
        ) {
            let ids = parse_id_list(&s)?;
            put("privilegedControllerGids", s, json!(ids));
        }
        if let Some(s) = r.get(&args.environment, "environment", ENV_ENVIRONMENT) {
            if Environment::from_wire(&s.value).is_none() {
                return Err(ConfigError::new(
                    &s,
                    "expected development, test or production",
                ));
            }
            let v = Value::from(s.value.as_str());
            put("environment", s, v);
        }
        let contract =
            EbpfInterceptorConfig::from_json_value(&Value::Object(contract)).map_err(|e| {
                let issue = &e.issues[0];
                let key = issue.path_text();
                match sources.iter().find(|(k, _)| key.starts_with(k)) {
                    Some((_, s)) => ConfigError::new(s, issue.message.clone()),
                    None => ConfigError {
                        name: key,
                        value: String::new(),
                        reason: issue.message.clone(),
                    },
                }
            })?;

        let fail_mode = match r.get(&args.fail_mode, "fail-mode", ENV_FAIL_MODE) {
            Some(s) => FailMode::from_wire(&s.value)
                .ok_or_else(|| ConfigError::new(&s, "expected closed or open"))?,
            None => FailMode::Closed,
        };
        let global_mode = match r.get(&args.global_mode, "global-mode", ENV_GLOBAL_MODE) {
            Some(s) => Mode::from_wire(&s.value)
                .ok_or_else(|| ConfigError::new(&s, "expected enforce or observe"))?,
            None => Mode::Enforce,
        };

        let interval = r.get(
            &args.heartbeat_interval_ms,
            "heartbeat-interval-ms",
            ENV_HEARTBEAT_INTERVAL_MS,
        );
        let grace = r.get(
            &args.heartbeat_grace_ms,
            "heartbeat-grace-ms",
            ENV_HEARTBEAT_GRACE_MS,
        );
        let interval_ms = interval
            .as_ref()
            .map(|s| parse_u64(s, "milliseconds"))
            .transpose()?;
        let grace_ms = grace
            .as_ref()
            .map(|s| parse_u64(s, "milliseconds"))
            .transpose()?;
        let interval_name = interval
            .as_ref()
            .map_or(ENV_HEARTBEAT_INTERVAL_MS.to_owned(), |s| s.name.clone());
        let grace_name = grace
            .as_ref()
            .map_or(ENV_HEARTBEAT_GRACE_MS.to_owned(), |s| s.name.clone());
        let heartbeat = heartbeat_timing_named(
            interval_ms,
            grace_ms,
            (&interval_name, &grace_name),
        )
        .map_err(|e| {
            let issue = &e.issues[0];
            let value_of =
                |s: &Option<Source>| s.as_ref().map_or("(unset)".to_owned(), |s| s.value.clone());
            if issue.message.contains(&interval_name) && issue.message.contains(&grace_name) {
                // The pair is at fault: name both values.
                return ConfigError {
                    name: interval_name.clone(),
                    value: format!("{}, {grace_name}={}", value_of(&interval), value_of(&grace)),
                    reason: issue.message.clone(),
                };
            }
            let blamed = if issue.path_text() == grace_name {
                &grace
            } else {
                &interval
            };
            match blamed {
                Some(s) => ConfigError::new(s, issue.message.clone()),
                None => ConfigError {
                    name: issue.path_text(),
                    value: "(unset)".to_owned(),
                    reason: issue.message.clone(),
                },
            }
        })?;

        let cgroups = match r.get(&args.cgroup_root, "cgroup-root", ENV_CGROUP_ROOT) {
            Some(s) => {
                let root = absolute(&s)?;
                let mount = dataplane::cgroup2_root().map_err(|e| {
                    ConfigError::new(&s, format!("cannot find the cgroup2 mount: {e}"))
                })?;
                CgroupScope::new(&mount, &root).map_err(|why| ConfigError::new(&s, why))?
            }
            None => {
                let mount = dataplane::cgroup2_root().map_err(|e| ConfigError {
                    name: ENV_CGROUP_ROOT.to_owned(),
                    value: String::new(),
                    reason: format!("not set, and no default: {e}"),
                })?;
                CgroupScope::new(&mount, &mount).map_err(|why| ConfigError {
                    name: ENV_CGROUP_ROOT.to_owned(),
                    value: mount.display().to_string(),
                    reason: why,
                })?
            }
        };
        let pin_dir = r
            .get(&args.pin_dir, "pin-dir", ENV_PIN_DIR)
            .map(|s| absolute(&s))
            .transpose()?;
        let disable_layers = match r.get(&args.disable_layers, "disable-layers", ENV_DISABLE_LAYERS)
        {
            Some(s) => parse_layer_list(&s.value).map_err(|(_, why)| ConfigError::new(&s, why))?,
            None => Vec::new(),
        };
        let ring_buffer_bytes = match r.get(
            &args.ring_buffer_bytes,
            "ring-buffer-bytes",
            ENV_RING_BUFFER_BYTES,
        ) {
            Some(s) => {
                let bytes = parse_u64(&s, "bytes")?;
                ring_buffer_rule(bytes).map_err(|(_, why)| ConfigError::new(&s, why))?
            }
            None => DEFAULT_RING_BUFFER_BYTES,
        };
        let policy = match r.get(&args.policy_file, "policy-file", ENV_POLICY_FILE) {
            Some(s) => {
                let path = PathBuf::from(&s.value);
                let bytes = std::fs::read(&path).map_err(|e| {
                    ConfigError::new(&s, format!("cannot read the policy file: {e}"))
                })?;
                let snapshot = PolicySnapshot::from_json_slice(&bytes)
                    .map_err(|e| ConfigError::new(&s, format!("invalid policy snapshot: {e}")))?;
                Some((path, snapshot))
            }
            None => None,
        };
        let metrics_listen = r
            .get(&args.metrics_listen, "metrics-listen", ENV_METRICS_LISTEN)
            .map(|s| {
                s.value.parse::<SocketAddr>().map_err(|_| {
                    ConfigError::new(&s, "expected ip:port, e.g. 127.0.0.1:9464 or [::1]:9464")
                })
            })
            .transpose()?;
        let dns_proxy_port = match r.get(&args.dns_proxy_port, "dns-proxy-port", ENV_DNS_PROXY_PORT)
        {
            Some(s) => match parse_u64(&s, "a port")? {
                p @ 0..=65_535 => p as u16,
                _ => {
                    return Err(ConfigError::new(
                        &s,
                        "must be a port, 0..65535 (0: no proxy)",
                    ))
                }
            },
            None => DEFAULT_DNS_PROXY_PORT,
        };
        let max_clients = match r.get(&args.max_clients, "max-clients", ENV_MAX_CLIENTS) {
            Some(s) => match parse_u64(&s, "a number of connections")? {
                n @ 1..=65_536 => n as usize,
                _ => {
                    return Err(ConfigError::new(
                        &s,
                        format!("must be between 1 and {MAX_MAX_CLIENTS}"),
                    ))
                }
            },
            None => DEFAULT_MAX_CLIENTS,
        };
        let per_uid = match r.get(
            &args.max_clients_per_uid,
            "max-clients-per-uid",
            ENV_MAX_CLIENTS_PER_UID,
        ) {
            Some(s) => match parse_u64(&s, "a number of connections")? {
                n @ 1..=65_536 => n as usize,
                _ => {
                    return Err(ConfigError::new(
                        &s,
                        format!("must be between 1 and {MAX_MAX_CLIENTS}"),
                    ))
                }
            },
            None => DEFAULT_MAX_CLIENTS_PER_UID,
        };
        let reserved = match r.get(
            &args.reserved_clients,
            "reserved-clients",
            ENV_RESERVED_CLIENTS,
        ) {
            Some(s) => {
                let n = parse_u64(&s, "a number of connections")?;
                if n >= max_clients as u64 {
                    let why = format!(
                        "must be less than the most connections served at once ({max_clients}): unprivileged \
                         peers need at least one"
                    );
                    return Err(ConfigError::new(&s, why));
                }
                n as usize
            }
            None => DEFAULT_RESERVED_CLIENTS.min(max_clients / 4),
        };
        let slots = SlotLimits {
            max_clients,
            per_uid,
            reserved,
        };
        let idle_timeout = r
            .get(
                &args.client_idle_timeout_ms,
                "client-idle-timeout-ms",
                ENV_CLIENT_IDLE_TIMEOUT_MS,
            )
            .map(|s| parse_ms(&s))
            .transpose()?
            .unwrap_or(Duration::from_millis(DEFAULT_IDLE_TIMEOUT_MS));
        let request_timeout = r
            .get(
                &args.request_timeout_ms,
                "request-timeout-ms",
                ENV_REQUEST_TIMEOUT_MS,
            )
            .map(|s| parse_ms(&s))
            .transpose()?
            .unwrap_or(Duration::from_millis(DEFAULT_REQUEST_TIMEOUT_MS));

        let verdict_log = r
            .get(&args.verdict_log, "verdict-log", ENV_VERDICT_LOG)
            .map(|s| VerdictLog::parse(&s))
            .transpose()?
            .unwrap_or(VerdictLog::Stdout);

        Ok(AgentConfig {
            contract,
            cgroups,
            pin_dir,
            fail_mode,
            global_mode,
            heartbeat,
            disable_layers,
            ring_buffer_bytes,
            policy,
            metrics_listen,
            dns_proxy_port,
            slots,
            idle_timeout,
            request_timeout,
            verdict_log,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve(args: AgentArgs, env: &[(&str, &str)]) -> Result<AgentConfig, ConfigError> {
        let map: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        AgentConfig::resolve(&args, &move |k| map.get(k).cloned())
    }

    fn err(args: AgentArgs, env: &[(&str, &str)]) -> String {
        resolve(args, env).expect_err("must be refused").to_string()
    }

    fn have_cgroup2() -> bool {
        dataplane::cgroup2_root().is_ok()
    }

    #[test]
    fn defaults() {
        if !have_cgroup2() {
            eprintln!("SKIPPED defaults: no cgroup2 mount");
            return;
        }
        let c = resolve(AgentArgs::default(), &[]).expect("defaults");
        assert_eq!(c.contract, EbpfInterceptorConfig::default());
        assert_eq!(c.fail_mode, FailMode::Closed);
        assert_eq!(c.global_mode, Mode::Enforce);
        assert_eq!(c.heartbeat, HeartbeatTiming::default());
        assert!(c.policy.is_none() && c.metrics_listen.is_none() && c.pin_dir.is_none());
        assert_eq!(c.dns_proxy_port, DEFAULT_DNS_PROXY_PORT);
        assert!(c.disable_layers.is_empty());
        assert_eq!(
            c.slots,
            SlotLimits {
                max_clients: DEFAULT_MAX_CLIENTS,
                per_uid: DEFAULT_MAX_CLIENTS_PER_UID,
                reserved: DEFAULT_RESERVED_CLIENTS
            }
        );
        let small = resolve(AgentArgs::default(), &[(ENV_MAX_CLIENTS, "8")]).expect("valid");
        assert_eq!(
            small.slots.reserved, 2,
            "the default reserve is at most a quarter"
        );
    }

    #[test]
    fn flags_override_the_environment() {
        if !have_cgroup2() {
            eprintln!("SKIPPED flags_override_the_environment: no cgroup2 mount");
            return;
        }
        let args = AgentArgs {
            socket_mode: Some("0600".into()),
            privileged_uids: Some("0, 1000".into()),
            ..AgentArgs::default()
        };
        let c = resolve(
            args,
            &[
                (ENV_SOCKET_MODE, "0666"),
                (ENV_SOCKET_GID, "5"),
                (ENV_PRIVILEGED_UIDS, "7"),
                (ENV_HEARTBEAT_GRACE_MS, "900"),
                (ENV_FAIL_MODE, "open"),
                (ENV_METRICS_LISTEN, "127.0.0.1:9464"),
                (ENV_DISABLE_LAYERS, "egress"),
            ],
        )
        .expect("valid");
        assert_eq!(c.contract.control_socket_file_mode, 0o600);
        assert_eq!(c.contract.control_socket_owner_gid, 5);
        assert_eq!(c.contract.privileged_controller_uids, [0, 1000]);
        assert_eq!(c.heartbeat.interval, Duration::from_millis(300));
        assert_eq!(c.fail_mode, FailMode::Open);
        assert_eq!(c.metrics_listen, "127.0.0.1:9464".parse().ok());
        assert_eq!(c.disable_layers, [Layer::Egress]);
        assert_eq!(c.ring_buffer_bytes, DEFAULT_RING_BUFFER_BYTES);
        let c = resolve(
            AgentArgs {
                ring_buffer_bytes: Some("1048576".into()),
                ..AgentArgs::default()
            },
            &[(ENV_RING_BUFFER_BYTES, "4194304")],
        )
        .expect("valid");
        assert_eq!(c.ring_buffer_bytes, 1 << 20);
        let c = resolve(
            AgentArgs {
                disable_layers: Some("socket_create_lsm, sock_create".into()),
                ..AgentArgs::default()
            },
            &[(ENV_DISABLE_LAYERS, "egress")],
        )
        .expect("valid");
        assert_eq!(
            c.disable_layers,
            [Layer::SocketCreateLsm, Layer::SockCreate]
        );
    }

    #[test]
    fn the_verdict_log_is_stdout_stderr_or_an_absolute_path() {
        if !have_cgroup2() {
            eprintln!(
                "SKIPPED the_verdict_log_is_stdout_stderr_or_an_absolute_path: no cgroup2 mount"
            );
            return;
        }
        let to = |env: &[(&str, &str)], flag: Option<&str>| {
            resolve(
                AgentArgs {
                    verdict_log: flag.map(str::to_owned),
                    ..AgentArgs::default()
                },
                env,
            )
            .map(|c| c.verdict_log)
        };
        assert_eq!(to(&[], None).expect("default"), VerdictLog::Stdout);
        assert_eq!(
            to(&[(ENV_VERDICT_LOG, "stderr")], None).expect("stderr"),
            VerdictLog::Stderr
        );
        assert_eq!(
            to(&[(ENV_VERDICT_LOG, "stderr")], Some("/var/log/v.ndjson")).expect("the flag wins"),
            VerdictLog::File(PathBuf::from("/var/log/v.ndjson"))
        );
        for (env, flag, want) in [
            (Some("verdicts.ndjson"), None, "BROKER_EBPF_VERDICT_LOG=verdicts.ndjson: expected stdout, stderr or an absolute file path"),
            (Some("STDOUT"), None, "BROKER_EBPF_VERDICT_LOG=STDOUT: expected"),
            (None, Some(""), "--verdict-log=: expected"),
        ] {
            let env: Vec<(&str, &str)> = env.map(|v| (ENV_VERDICT_LOG, v)).into_iter().collect();
            let e = to(&env, flag).expect_err("refused").to_string();
            assert!(e.starts_with(want), "{e}");
        }
    }

    #[test]
    fn a_bad_value_names_its_variable_or_flag_and_the_value() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[(ENV_SOCKET_MODE, "0999")],
                "BROKER_EBPF_SOCKET_MODE=0999: expected octal",
            ),
            (
                &[(ENV_SOCKET_MODE, "1777")],
                "BROKER_EBPF_SOCKET_MODE=1777: expected octal",
            ),
            (
                &[(ENV_SOCKET_UID, "-1")],
                "BROKER_EBPF_SOCKET_UID=-1: expected a uid",
            ),
            (
                &[(ENV_SOCKET_UID, "4294967296")],
                "BROKER_EBPF_SOCKET_UID=4294967296: ",
            ),
            (
                &[(ENV_PRIVILEGED_GIDS, "1,,2")],
                "BROKER_EBPF_PRIVILEGED_GIDS=1,,2: ",
            ),
            (
                &[(ENV_PRIVILEGED_GIDS, "1,x")],
                "BROKER_EBPF_PRIVILEGED_GIDS=1,x: `x`",
            ),
            (
                &[(ENV_CONTROL_SOCKET, "relative.sock")],
                "BROKER_EBPF_CONTROL_SOCKET=relative.sock: ",
            ),
            (
                &[(ENV_FAIL_MODE, "ajar")],
                "BROKER_EBPF_FAIL_MODE=ajar: expected closed or open",
            ),
            (
                &[(ENV_RING_BUFFER_BYTES, "1000000")],
                "BROKER_EBPF_RING_BUFFER_BYTES=1000000: expected a power of two",
            ),
            (
                &[(ENV_RING_BUFFER_BYTES, "2147483648")],
                "BROKER_EBPF_RING_BUFFER_BYTES=2147483648: expected at most 1073741824",
            ),
            (
                &[(ENV_RING_BUFFER_BYTES, "1MiB")],
                "BROKER_EBPF_RING_BUFFER_BYTES=1MiB: expected bytes (decimal digits)",
            ),
            (
                &[(ENV_ENVIRONMENT, "staging")],
                "BROKER_EBPF_ENVIRONMENT=staging: ",
            ),
            (
                &[(ENV_METRICS_LISTEN, "localhost")],
                "BROKER_EBPF_METRICS_LISTEN=localhost: ",
            ),
            (
                &[(ENV_DNS_PROXY_PORT, "65536")],
                "BROKER_EBPF_DNS_PROXY_PORT=65536: must be a port",
            ),
            (
                &[(ENV_DNS_PROXY_PORT, "53a")],
                "BROKER_EBPF_DNS_PROXY_PORT=53a: expected a port",
            ),
            (
                &[(ENV_HEARTBEAT_GRACE_MS, "0")],
                "BROKER_EBPF_HEARTBEAT_GRACE_MS=0: ",
            ),
            (
                &[(ENV_PIN_DIR, "pins")],
                "BROKER_EBPF_PIN_DIR=pins: must be an absolute path",
            ),
            (&[(ENV_MAX_CLIENTS, "0")], "BROKER_EBPF_MAX_CLIENTS=0: "),
            (
                &[(ENV_MAX_CLIENTS_PER_UID, "0")],
                "BROKER_EBPF_MAX_CLIENTS_PER_UID=0: must be between 1 and 65536",
            ),
            (
                &[(ENV_MAX_CLIENTS, "16"), (ENV_RESERVED_CLIENTS, "16")],
                "BROKER_EBPF_RESERVED_CLIENTS=16: must be less than the most connections served at once (16)",
            ),
            (
                &[(ENV_DISABLE_LAYERS, "sock_create,firewall")],
                "BROKER_EBPF_DISABLE_LAYERS=sock_create,firewall: expected one of `sock_create` | \
                 `socket_create_lsm` | `egress` | `socket_storage`, received `firewall`",
            ),
            (
                &[(ENV_POLICY_FILE, "/nonexistent/p.json")],
                "BROKER_EBPF_POLICY_FILE=/nonexistent/p.json: cannot read",
            ),
        ];
        for (env, want) in cases {
            let got = err(AgentArgs::default(), env);
            assert!(got.starts_with(want), "{env:?}: {got}");
            assert!(!got.contains('\n'), "one line: {got}");
        }
        let got = err(
            AgentArgs {
                socket_mode: Some("abc".into()),
                ..AgentArgs::default()
            },
            &[],
        );
        assert!(got.starts_with("--socket-mode=abc: "), "{got}");
    }

    #[test]
    fn a_heartbeat_pair_that_can_only_flap_names_both() {
        let got = err(
            AgentArgs::default(),
            &[
                (ENV_HEARTBEAT_INTERVAL_MS, "5000"),
                (ENV_HEARTBEAT_GRACE_MS, "5000"),
            ],
        );
        assert!(
            got.starts_with(
                "BROKER_EBPF_HEARTBEAT_INTERVAL_MS=5000, BROKER_EBPF_HEARTBEAT_GRACE_MS=5000: \
                 BROKER_EBPF_HEARTBEAT_INTERVAL_MS (5000 ms) must be shorter than BROKER_EBPF_HEARTBEAT_GRACE_MS"
            ),
            "{got}"
        );
        let got = err(
            AgentArgs {
                heartbeat_interval_ms: Some("6000".into()),
                ..AgentArgs::default()
            },
            &[],
        );
        assert!(got.contains("--heartbeat-interval-ms=6000"), "{got}");
        assert!(got.contains("not given: default 5000 ms"), "{got}");
    }
}
