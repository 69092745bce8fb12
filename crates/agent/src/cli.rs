//! The command line: `interceptor-ebpf agent` (the daemon) and `interceptor-ebpf ctl` (the operator's client).
//!
//! Agent settings are plain strings here: `config` reads them together with their environment variables, so a
//! bad value is reported once, naming the flag or variable it came from.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The interceptor-ebpf agent and its control client.
#[derive(Debug, Parser)]
#[command(name = "interceptor-ebpf", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: TopCommand,
}

#[derive(Debug, Subcommand)]
pub enum TopCommand {
    /// Run the agent: load (or adopt) the eBPF dataplane, serve the control socket, beat the heartbeat, write
    /// JSON log lines to standard output. Every flag overrides its environment variable.
    Agent(Box<AgentArgs>),
    /// Drive a running agent over its control socket.
    Ctl(CtlArgs),
}

/// Agent flags. Each one overrides the environment variable named in its help.
#[derive(Debug, Args, Default)]
pub struct AgentArgs {
    /// Control socket path [env: BROKER_EBPF_CONTROL_SOCKET] [default: /var/run/broker-interceptor-ebpf/agentd.sock]
    #[arg(long, value_name = "PATH")]
    pub control_socket: Option<String>,
    /// Permission bits of the socket, octal [env: BROKER_EBPF_SOCKET_MODE] [default: 0660]
    #[arg(long, value_name = "OCTAL")]
    pub socket_mode: Option<String>,
    /// Permission bits of the socket directory when the agent creates it, octal [env: BROKER_EBPF_SOCKET_DIR_MODE] [default: 0750]
    #[arg(long, value_name = "OCTAL")]
    pub socket_dir_mode: Option<String>,
    /// Owner uid of the socket [env: BROKER_EBPF_SOCKET_UID] [default: 0]
    #[arg(long, value_name = "UID")]
    pub socket_uid: Option<String>,
    /// Owner gid of the socket [env: BROKER_EBPF_SOCKET_GID] [default: 0]
    #[arg(long, value_name = "GID")]
    pub socket_gid: Option<String>,
    /// Uids allowed to send mutating commands, comma-separated [env: BROKER_EBPF_PRIVILEGED_UIDS] [default: none]
    #[arg(long, value_name = "LIST")]
    pub privileged_uids: Option<String>,
    /// Gids allowed to send mutating commands, comma-separated [env: BROKER_EBPF_PRIVILEGED_GIDS] [default: none]
    #[arg(long, value_name = "LIST")]
    pub privileged_gids: Option<String>,
    /// Cgroup v2 directory the programs attach to; payload paths must lie below it [env: BROKER_EBPF_CGROUP_ROOT] [default: the cgroup2 mount]
    #[arg(long, value_name = "DIR")]
    pub cgroup_root: Option<String>,
    /// bpffs directory for pinned programs, links and maps [env: BROKER_EBPF_PIN_DIR] [default: <bpffs>/broker-interceptor-ebpf]
    #[arg(long, value_name = "DIR")]
    pub pin_dir: Option<String>,
    /// What enforced cgroups get while degraded: closed or open [env: BROKER_EBPF_FAIL_MODE] [default: closed]
    #[arg(long, value_name = "MODE")]
    pub fail_mode: Option<String>,
    /// Global mode set at start: enforce or observe [env: BROKER_EBPF_GLOBAL_MODE] [default: enforce]
    #[arg(long, value_name = "MODE")]
    pub global_mode: Option<String>,
    /// Heartbeat period in ms [env: BROKER_EBPF_HEARTBEAT_INTERVAL_MS] [default: a third of the grace, or 1000]
    #[arg(long, value_name = "MS")]
    pub heartbeat_interval_ms: Option<String>,
    /// Heartbeat age in ms after which enforced cgroups are degraded [env: BROKER_EBPF_HEARTBEAT_GRACE_MS] [default: 5000]
    #[arg(long, value_name = "MS")]
    pub heartbeat_grace_ms: Option<String>,
    /// Bypass layers not to attach, comma-separated: sock_create, socket_create_lsm, egress, socket_storage [env: BROKER_EBPF_DISABLE_LAYERS] [default: none]
    #[arg(long, value_name = "LIST")]
    pub disable_layers: Option<String>,
    /// Size of the kernel's event ring buffer in bytes: a power of two, a multiple of the page size, at most 1 GiB; an adopted state keeps its own [env: BROKER_EBPF_RING_BUFFER_BYTES] [default: 4194304]
    #[arg(long, value_name = "BYTES")]
    pub ring_buffer_bytes: Option<String>,
    /// Where verdict and authorization records go: stdout, stderr or a file (appended to); operational lines always go to standard error [env: BROKER_EBPF_VERDICT_LOG] [default: stdout]
    #[arg(long, value_name = "DEST")]
    pub verdict_log: Option<String>,
    /// Policy snapshot (JSON) applied at start when no policy is loaded [env: BROKER_EBPF_POLICY_FILE]
    #[arg(long, value_name = "FILE")]
    pub policy_file: Option<String>,
    /// Port of the DNS proxy on 127.0.0.1 and [::1], where the kernel steers managed workloads' DNS when the policy names destinations by DNS name; 0 turns the proxy off (such a policy is then refused) [env: BROKER_EBPF_DNS_PROXY_PORT] [default: 15353]
    #[arg(long, value_name = "PORT")]
    pub dns_proxy_port: Option<String>,
    /// Address of the Prometheus endpoint (/metrics), e.g. 127.0.0.1:9464 [env: BROKER_EBPF_METRICS_LISTEN] [default: off]
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// development, test or production [env: BROKER_EBPF_ENVIRONMENT] [default: development]
    #[arg(long, value_name = "ENV")]
    pub environment: Option<String>,
    /// Most control connections served at once [env: BROKER_EBPF_MAX_CLIENTS] [default: 4096]
    #[arg(long, value_name = "N")]
    pub max_clients: Option<String>,
    /// Most control connections one unprivileged uid may hold [env: BROKER_EBPF_MAX_CLIENTS_PER_UID] [default: 512]
    #[arg(long, value_name = "N")]
    pub max_clients_per_uid: Option<String>,
    /// Control connections kept for root and privileged peers, less than --max-clients [env: BROKER_EBPF_RESERVED_CLIENTS] [default: 64, at most a quarter of --max-clients]
    #[arg(long, value_name = "N")]
    pub reserved_clients: Option<String>,
    /// Close a connection that sends no request for this long, in ms [env: BROKER_EBPF_CLIENT_IDLE_TIMEOUT_MS] [default: 300000]
    #[arg(long, value_name = "MS")]
    pub client_idle_timeout_ms: Option<String>,
    /// A started request line must end within this many ms [env: BROKER_EBPF_REQUEST_TIMEOUT_MS] [default: 10000]
    #[arg(long, value_name = "MS")]
    pub request_timeout_ms: Option<String>,
}

/// Client options shared by every `ctl` command.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// Control socket path [env: BROKER_EBPF_CONTROL_SOCKET] [default: /var/run/broker-interceptor-ebpf/agentd.sock]
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// How long to wait for the agent's answer, in ms
    #[arg(long, global = true, value_name = "MS", default_value_t = 10_000)]
    pub timeout_ms: u64,
    /// Output format: `table` (for people; the default) or `json` (one JSON value per line, for scripts;
    /// `events` then prints each event line as received, also on a terminal)
    #[arg(long, short = 'o', global = true, value_enum, value_name = "FORMAT")]
    pub output: Option<OutputFormat>,
    /// Same as `-o json`
    #[arg(long, global = true, conflicts_with = "output")]
    pub json: bool,
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// `ctl -o FORMAT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

impl CtlArgs {
    /// `-o`, then `--json`; absent: `None` (each command picks: text, or for `events` the terminal test).
    pub fn format(&self) -> Option<OutputFormat> {
        match (self.output, self.json) {
            (Some(f), _) => Some(f),
            (None, true) => Some(OutputFormat::Json),
            (None, false) => None,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// This client's version and the agent's
    Version,
    /// Is the agent ok or degraded, and why (exit 6 when degraded)
    Health,
    /// Hooks, bypass layers, managed cgroups, modes, policy counts and event counters
    Status,
    /// Show or replace the policy
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Manage cgroups: add, remove, set their mode
    #[command(subcommand)]
    Cgroup(CgroupCommand),
    /// The global mode of cgroups whose entry names none
    #[command(subcommand)]
    Mode(ModeCommand),
    /// The DNS proxy of rules by name: whether it serves, its counters, and each learned address (name, address,
    /// TTL left, rule ids, workload)
    Dns,
    /// Stream verdict events: a live table on a terminal, JSON lines when piped
    Events(EventsArgs),
    /// Stop the agent; pinned enforcement stays unless --detach
    Shutdown(ShutdownArgs),
    /// Print a shell completion script: `interceptor-ebpf ctl completions bash > /etc/bash_completion.d/interceptor-ebpf`
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// The active policy snapshot: a table, or with `-o json` the snapshot itself (what `policy apply` reads).
    /// Exit 5 when the agent does not know it (no policy, or a pinned state adopted from a previous agent)
    Show,
    /// Generation and counts of the loaded policy (also of an adopted one)
    Summary,
    /// What applying FILE would change: rules added, removed or changed (by id), broker, DNS and sampling.
    /// Exit 0 when FILE is the active policy, 1 when it differs
    Diff {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Replace the policy with a snapshot file (JSON, see docs/policy-snapshot.md); `-` reads standard input
    Apply {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Have the agent validate and compile the snapshot against the dataplane's limits and apply nothing
        /// (the generation stays as it is): what the apply would report, or why it would be refused.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ModeArg {
    Enforce,
    Observe,
}

#[derive(Debug, Subcommand)]
pub enum CgroupCommand {
    /// The managed cgroups: path, id, mode, workload id
    List,
    /// Manage a cgroup (and its children)
    Add {
        /// As /proc/<pid>/cgroup prints it (`/system.slice/app.service`), or a cgroup id (decimal)
        #[arg(value_name = "PATH|ID")]
        cgroup: String,
        /// Mode of this cgroup; absent: follows the global mode
        #[arg(long, value_enum)]
        mode: Option<ModeArg>,
        /// Workload id reported in its events (1-63 bytes)
        #[arg(long, value_name = "ID")]
        workload_id: Option<String>,
    },
    /// Stop managing a cgroup
    Remove {
        #[arg(value_name = "PATH|ID")]
        cgroup: String,
    },
    /// Set a managed cgroup's mode
    Mode {
        #[arg(value_name = "PATH|ID")]
        cgroup: String,
        #[arg(value_enum)]
        mode: ModeArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum ModeCommand {
    /// Set the global mode
    Set {
        #[arg(value_enum)]
        mode: ModeArg,
    },
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Keep streaming until interrupted (the agent keeps no history: events are live)
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Stop after this many events (counted after the filters)
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Only events with this reason code (e.g. DENY_DEFAULT); repeat or comma-separate for several
    #[arg(long, value_name = "CODE", value_delimiter = ',')]
    pub reason: Vec<String>,
    /// Only events with this verdict: allow or deny (an observe-mode event has the verdict it was given: allow)
    #[arg(long, value_enum)]
    pub verdict: Option<VerdictArg>,
    /// Only events of this cgroup id (decimal, as events report it); repeat for several
    #[arg(long, value_name = "ID")]
    pub cgroup: Vec<String>,
    /// Only events of this workload id; repeat for several
    #[arg(long, value_name = "ID")]
    pub workload: Vec<String>,
    /// Only events observed at or after this time: RFC 3339 (2026-12-07T16:00:00Z) or an age (30s, 5m, 2h).
    /// The agent keeps no history, so this filters the live stream; nothing older is replayed
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum VerdictArg {
    Allow,
    Deny,
}

#[derive(Debug, Args)]
pub struct ShutdownArgs {
    /// Also detach the programs and remove every pin: enforcement stops
    #[arg(long)]
    pub detach: bool,
}
