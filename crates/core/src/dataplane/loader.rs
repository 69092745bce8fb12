//! [`Dataplane`]: loads the programs with the kernel's BTF, attaches them with bpf_link to the cgroup root, pins
//! links, programs and maps under the pin directory (or adopts what is pinned there), runs the heartbeat timer
//! and the event reader, and applies policies and managed cgroups.

use std::collections::HashMap as StdHashMap;
use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use aya::maps::{HashMap, MapData, MapError, MapInfo, PerCpuArray, RingBuf};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::{CgroupAttachMode, CgroupSockAddr, ProgramError};
use aya::{Btf, Ebpf, EbpfError, EbpfLoader};

use super::abi::{self, c, DnsFlow, Learned, LearnedKey, Managed};
use super::adoption;
use super::cgroup::{self, CgroupRef, ManagedCgroup};
use super::config_map::{self, ConfigMapping};
use super::error::DataplaneError;
use super::events::{self, EventContext, EventHub, EventReceiver, RuleIdCache};
use super::fqdn::{self, DnsQueryVerdict, LearnedAddress, LearnedTable, NamePolicy, SteeredFlow};
use super::group_maps::{Capacity, GroupMaps};
use super::layers::{self, KernelSupport, Layers};
use super::mounts;
use super::options::{DataplaneOptions, FailMode, Mode};
use super::pins;
use super::policy_compile;
use super::program;
use super::slots::{self, Inactive, PolicyMaps};
use super::verdict_counters;
use crate::contract::cgroup::directory_of;
use crate::contract::hook::Hook;
use crate::contract::layer::{LayerCounters, LayerStatus};
use crate::contract::policy::{PolicySnapshot, PolicySummary};
use crate::contract::slot_id::{check_slot_id, MAX_SLOT_ID_BYTES};
use crate::contract::validation::{Issue, IssueCode, ValidationError};
use crate::contract::verdict_counts::VerdictCount;

// The contract's id-slot rule (rule and workload ids) is what the kernel slot holds, terminating NUL included.
const _: () = assert!(MAX_SLOT_ID_BYTES + 1 == abi::ID_BYTES);

/// A snapshot of the dataplane's state.
#[derive(Clone, Debug)]
pub struct DataplaneStatus {
    pub attached_hooks: Vec<Hook>,
    pub cgroup_root: PathBuf,
    pub pin_dir: PathBuf,
    pub adopted: bool,
    pub managed_cgroups: Vec<ManagedCgroup>,
    pub global_mode: Mode,
    pub fail_mode: FailMode,
    pub heartbeat_grace: Duration,
    pub generation: u64,
    pub ipv4_rules: u32,
    pub ipv6_rules: u32,
    /// Records the kernel put in the ring buffer.
    pub events_emitted: u64,
    /// Failed ring buffer reservations.
    pub dropped_in_kernel: u64,
    /// Events the bounded user-space queue could not take.
    pub dropped_in_queue: u64,
    /// Heartbeat older than the grace period, or no policy loaded.
    pub degraded: bool,
    /// Every bypass layer and whether it is active, disabled by the options or unavailable on this kernel
    /// (docs/threat-model.md), in [`super::Layer::ALL`] order.
    pub layers: Vec<LayerStatus>,
    /// What the bypass layers refused.
    pub layer_counters: LayerCounters,
    /// Every verdict the programs made, by (hook, reason code), the pairs that counted only: exact, whatever the
    /// events' sampling and drops (docs/dataplane.md, "Verdict counters").
    pub verdicts: Vec<VerdictCount>,
    /// Addresses learned from DNS answers that have not expired (SPEC 4b).
    pub learned_addresses: u64,
}

/// The learned addresses and their kernel map, behind one lock: the DNS proxy's writes and a policy replacement
/// never interleave (fqdn.rs).
pub(crate) struct LearnedState {
    pub table: LearnedTable,
    pub map: HashMap<MapData, LearnedKey, Learned>,
}

/// The cgroup id of the root of the cgroup2 hierarchy (its kernfs root inode).
const ROOT_CGROUP_ID: u64 = 1;

/// The program of a sock_addr hook; the layers' programs are named in `layers.rs`.
fn hook_program(hook: Hook) -> Option<&'static str> {
    match hook {
        Hook::Connect4 => Some("dp_connect4"),
        Hook::Connect6 => Some("dp_connect6"),
        Hook::Sendmsg4 => Some("dp_sendmsg4"),
        Hook::Sendmsg6 => Some("dp_sendmsg6"),
        Hook::SockCreate | Hook::SocketCreateLsm | Hook::Egress | Hook::Dns => None,
    }
}

/// The return path of DNS steering (bpf/dns_steering.h): (program, pin name). They make no verdict; errors
/// attaching them name the `dns` hook.
pub(crate) const DNS_RETURN_PROGRAMS: [(&str, &str); 4] = [
    ("dp_dns_recvmsg4", "dns_recvmsg4"),
    ("dp_dns_recvmsg6", "dns_recvmsg6"),
    ("dp_dns_getpeername4", "dns_getpeername4"),
    ("dp_dns_getpeername6", "dns_getpeername6"),
];

/// The loader's own heartbeat: writes CLOCK_MONOTONIC into dp_config every interval unless paused.
struct HeartbeatTimer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    paused: Arc<AtomicBool>,
}

impl HeartbeatTimer {
    fn start(config: Arc<ConfigMapping>, interval: Duration) -> Result<Self, DataplaneError> {
        let (tx, rx) = mpsc::channel::<()>();
        let paused = Arc::new(AtomicBool::new(false));
        let paused_t = paused.clone();
        let thread = std::thread::Builder::new()
            .name("dp-heartbeat".into())
            .spawn(move || {
                // A beat now, then one every interval; any message or a dropped sender stops the timer.
                loop {
                    if !paused_t.load(Ordering::Relaxed) {
                        config.set_heartbeat_ns(config_map::monotonic_ns());
                    }
                    if !matches!(rx.recv_timeout(interval), Err(RecvTimeoutError::Timeout)) {
                        break;
                    }
                }
            })
            .map_err(|e| DataplaneError::io("spawn heartbeat thread", "dp-heartbeat", e))?;
        Ok(HeartbeatTimer {
            stop: Some(tx),
            thread: Some(thread),
            paused,
        })
    }

    fn stop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Inner {
    // Kept for the programs this loader loaded (their fds); links are owned separately.
    _ebpf: Ebpf,
    links: Vec<(Hook, PinnedLink)>,
    layers: Layers,
    config: Arc<ConfigMapping>,
    _config_map: MapData,
    maps: Arc<Mutex<PolicyMaps>>,
    managed: HashMap<MapData, u64, Managed>,
    counters: PerCpuArray<MapData, u64>,
    verdicts: PerCpuArray<MapData, u64>,
    /// Taken by the first `subscribe()`, which starts the reader.
    ring: Option<RingBuf<MapData>>,
    reader: Option<tokio::task::JoinHandle<()>>,
    heartbeat: HeartbeatTimer,
    hub: Arc<EventHub>,
    paths: StdHashMap<u64, PathBuf>,
}

impl Inner {
    /// The metadata of the active slot.
    fn active_meta(&self) -> Result<abi::SlotMeta, DataplaneError> {
        let active = self.config.active_slot();
        self.maps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .meta(active)
    }

    /// After a change of the managed cgroups or the modes has reached the maps: revokes every socket mark (the
    /// layers' mark epoch) and then every verdict a UDP socket cached (`dp_config.epoch`). In this order, a
    /// verdict cached under the new epoch was marked under the new mark epoch (bpf/dataplane.bpf.c, `run`). The
    /// verdict epoch is bumped even when the mark epoch could not be written, whose error is returned.
    fn revoke_socket_state(&mut self) -> Result<(), DataplaneError> {
        let marks = self.layers.bump_epoch();
        self.config.bump_epoch();
        marks
    }
}

/// The loaded dataplane. Every method takes `&self`; the type is `Send + Sync`.
pub struct Dataplane {
    inner: Mutex<Option<Inner>>,
    learned: Arc<Mutex<LearnedState>>,
    /// Read by the DNS proxy on every query, without the dataplane's lock.
    dns_flows: HashMap<MapData, u64, DnsFlow>,
    config: Arc<ConfigMapping>,
    rule_ids: Arc<Mutex<RuleIdCache>>,
    workloads: Arc<RwLock<StdHashMap<u64, Option<String>>>>,
    cgroup_root: PathBuf,
    pin_dir: PathBuf,
    adopted: bool,
    adopted_heartbeat_age: Option<Duration>,
}

fn take_map(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::Map, DataplaneError> {
    ebpf.take_map(name)
        .ok_or_else(|| DataplaneError::map(name, "missing from the eBPF object"))
}

fn typed<T: TryFrom<aya::maps::Map, Error = MapError>>(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> Result<T, DataplaneError> {
    T::try_from(take_map(ebpf, name)?).map_err(|e| DataplaneError::map(name, e))
}

fn object_error(e: EbpfError) -> DataplaneError {
    match e {
        EbpfError::ProgramError(e) => program::load_error("(object)", e),
        other => DataplaneError::Object(Box::new(other)),
    }
}

/// Loads (if needed), attaches and pins one hook, or adopts its pinned link.
fn attach_hook(
    ebpf: &mut Ebpf,
    hook: Hook,
    cgroup_root: &File,
    pin_dir: &Path,
) -> Result<(PinnedLink, bool), DataplaneError> {
    let name = hook_program(hook).ok_or_else(|| {
        DataplaneError::attach(hook, "select its program", "not a sock_addr hook")
    })?;
    attach_sock_addr(ebpf, name, hook.as_str(), hook, cgroup_root, pin_dir)
}

/// Loads (if needed), attaches and pins the sock_addr program `name` under pin name `pin_name`, or adopts its
/// pinned link; errors name `hook`.
fn attach_sock_addr(
    ebpf: &mut Ebpf,
    name: &str,
    pin_name: &str,
    hook: Hook,
    cgroup_root: &File,
    pin_dir: &Path,
) -> Result<(PinnedLink, bool), DataplaneError> {
    let link_pin = pins::link_pin(pin_dir, pin_name);
    if link_pin.exists() {
        let link = PinnedLink::from_pin(&link_pin).map_err(|e| {
            DataplaneError::attach(hook, format!("adopt {}", link_pin.display()), e)
        })?;
        return Ok((link, true));
    }
    let prog: &mut CgroupSockAddr = ebpf
        .program_mut(name)
        .ok_or_else(|| DataplaneError::Object(format!("program {name} missing").into()))?
        .try_into()
        .map_err(|e: ProgramError| DataplaneError::Object(Box::new(e)))?;
    program::load(name, || prog.load())?;
    let prog_pin = pins::prog_pin(pin_dir, pin_name);
    pins::remove_stale_prog_pin(&prog_pin)?;
    prog.pin(&prog_pin)
        .map_err(|e| DataplaneError::attach(hook, "pin program", e))?;
    // With bpf_link (kernel >= 5.7) the kernel requires flags 0 (`Single` here) and always runs the link next to
    // other multi-attached programs of the cgroup (e.g. systemd's): every one must allow.
    let id = prog
        .attach(cgroup_root.as_fd(), CgroupAttachMode::Single)
        .map_err(|e| DataplaneError::attach(hook, "attach", e))?;
    let link = prog
        .take_link(id)
        .map_err(|e| DataplaneError::attach(hook, "take link", e))?;
    let fd_link =
        FdLink::try_from(link).map_err(|e| DataplaneError::attach(hook, "not a bpf_link", e))?;
    let pinned = fd_link
        .pin(&link_pin)
        .map_err(|e| DataplaneError::attach(hook, "pin link", e))?;
    Ok((pinned, false))
}

impl Dataplane {
    /// Loads the 4 programs with the kernel's BTF, attaches them with bpf_link to `cgroup_root`, pins links,
    /// programs and maps under `pin_dir`, or adopts an existing pinned state there (`status().adopted`; policy,
    /// managed cgroups and modes are kept). Starts the heartbeat thread. fail_mode, global_mode and grace from
    /// `opts` are applied to an adopted state too. A verifier rejection returns [`DataplaneError::Load`] with
    /// the verifier log. Options that break the contract's rules ([`DataplaneOptions::validate`], e.g. a
    /// heartbeat interval not shorter than the grace) are refused with [`DataplaneError::InvalidOption`].
    pub fn load(opts: DataplaneOptions) -> Result<Dataplane, DataplaneError> {
        opts.validate().map_err(DataplaneError::InvalidOption)?;
        let cgroup_root = match &opts.cgroup_root {
            Some(p) => p.clone(),
            None => mounts::cgroup2_root()?,
        };
        if !cgroup_root.is_dir() || !mounts::is_cgroup2(&cgroup_root) {
            return Err(DataplaneError::NotCgroup2 { path: cgroup_root });
        }
        // The programs run for the cgroup of the socket, which may be any cgroup: a socket created outside the
        // managed subtree and used inside it (by a task that moved in, or received it over SCM_RIGHTS) is judged
        // only by programs attached above both. So they are attached at the top of the cgroup2 mount, and
        // `cgroup_root` bounds which cgroups may be managed (docs/dataplane.md, "Attach point").
        let attach_root = mounts::cgroup2_mount_top(&cgroup_root);
        let subtree_id = cgroup::cgroup_id(&cgroup_root)?;
        let pin_dir = match &opts.pin_dir {
            Some(p) => {
                // bpffs is mounted at /sys/fs/bpf when none is, also for a pin dir given by name: one below
                // /sys/fs/bpf failed with mkdir's ENOENT on a host without bpffs (issue 17).
                let on_bpffs = p
                    .ancestors()
                    .find(|a| a.exists())
                    .is_some_and(mounts::is_bpffs);
                if !on_bpffs {
                    mounts::bpffs_root()?;
                }
                p.clone()
            }
            None => mounts::bpffs_root()?.join(pins::PIN_DIR_NAME),
        };
        std::fs::create_dir_all(&pin_dir).map_err(|e| DataplaneError::io("mkdir", &pin_dir, e))?;
        if !mounts::is_bpffs(&pin_dir) {
            return Err(DataplaneError::BpffsUnavailable {
                reason: format!("{} is not on bpffs", pin_dir.display()),
            });
        }
        let adopted = pins::map_pin(&pin_dir, pins::CONFIG_MAP).exists();
        if adopted {
            // Before aya opens (or creates next to it) a single pinned map.
            adoption::check(&pin_dir, &cgroup_root, &attach_root)?;
        } else {
            pins::refuse_leftovers(&pin_dir)?;
        }
        // An adopted ring buffer keeps its size; the reader must map exactly that size.
        let ring_bytes = match MapInfo::from_pin(pins::map_pin(&pin_dir, "dp_events")) {
            Ok(info) if adopted => info.max_entries(),
            _ => opts.ring_buffer_bytes,
        };

        let btf = Btf::from_sys_fs().ok();
        // What the kernel lets the programs do decides how they are loaded (socket marks in sock_addr programs).
        let kernel = KernelSupport::probe(btf.as_ref());
        let sock_addr_storage: u32 = u32::from(kernel.sock_addr_storage.is_ok());
        let sock_create_storage: u32 = u32::from(kernel.sock_create_storage.is_ok());
        let mut ebpf = EbpfLoader::new()
            .btf(btf.as_ref())
            .default_map_pin_directory(&pin_dir)
            .map_max_entries("dp_events", ring_bytes)
            .override_global("dp_sock_addr_storage", &sock_addr_storage, true)
            .override_global("dp_sock_create_storage", &sock_create_storage, true)
            .load(abi::BPF_OBJECT)
            .map_err(object_error)?;

        let config_map = match take_map(&mut ebpf, pins::CONFIG_MAP)? {
            aya::maps::Map::Array(data) => data,
            _ => return Err(DataplaneError::map("dp_config", "not an array map")),
        };
        let config = Arc::new(ConfigMapping::new(config_map.fd().as_fd())?);
        if !adopted {
            config.set_abi_fingerprint(abi::ABI_FINGERPRINT);
        }
        let groups = GroupMaps::open(&pin_dir)
            .map_err(|e| DataplaneError::map("dp_groups", format!("open pins: {e}")))?;
        let mut maps = PolicyMaps {
            slot_meta: typed(&mut ebpf, "dp_slot_meta")?,
            pin_dir: pin_dir.clone(),
            recent_needs: std::collections::VecDeque::with_capacity(slots::RECENT_NEEDS),
            groups: Arc::new(groups),
            inactive: Inactive::Dirty,
        };
        // The inactive slot gets fresh group maps in the background; an adopted one may also still have readers
        // (the previous loader may have flipped just before it stopped), which the reclaim waits for.
        maps.start_reclaim(config.active_slot() ^ 1, Capacity::least());
        let managed: HashMap<MapData, u64, Managed> = typed(&mut ebpf, "dp_managed")?;
        let counters: PerCpuArray<MapData, u64> = typed(&mut ebpf, "dp_counters")?;
        let verdicts: PerCpuArray<MapData, u64> = typed(&mut ebpf, verdict_counters::MAP)?;
        let ring: RingBuf<MapData> = typed(&mut ebpf, "dp_events")?;
        let learned_map: HashMap<MapData, LearnedKey, Learned> = typed(&mut ebpf, "dp_learned")?;
        let dns_flows: HashMap<MapData, u64, DnsFlow> = typed(&mut ebpf, "dp_dns_flows")?;
        let mut learned_table = LearnedTable::default();
        // The active policy's names, pinned with its slot; a slot that steers no DNS names none.
        let active_slot = config.active_slot();
        let names = match maps.dns_names(active_slot) {
            Some(blob) => NamePolicy::from_blob(&blob),
            None if maps.meta(active_slot)?.steer_dns == 0 => Some(NamePolicy::default()),
            None => None,
        };
        if let Some(names) = names {
            learned_table.set_policy(Arc::new(names));
        }
        if adopted {
            // Addresses a previous agent learned and that have not expired (their policy is learned again from
            // the next replacement, which recomputes their entries).
            learned_table.adopt(
                &learned_map,
                config.active_slot(),
                config_map::monotonic_ns(),
            );
        }

        // Read before this loader's first beat: how long an adopted state went without one.
        let adopted_heartbeat_age = adopted.then(|| {
            Duration::from_nanos(config_map::monotonic_ns().saturating_sub(config.heartbeat_ns()))
        });
        // Options first, then the programs: an attached program must never see a fresh state without a grace.
        config.set_grace_ns(opts.heartbeat_grace.as_nanos() as u64);
        config.set_fail_mode(opts.fail_mode.to_abi());
        config.set_global_mode(opts.global_mode.to_abi());
        config.set_heartbeat_ns(config_map::monotonic_ns());
        config.set_subtree_id(subtree_id);
        // Verdicts UDP sockets cached under an adopted state may have used another global mode.
        config.bump_epoch();

        let root_dir =
            File::open(&attach_root).map_err(|e| DataplaneError::io("open", &attach_root, e))?;
        let mut links = Vec::with_capacity(Hook::SOCK_ADDR.len());
        for hook in Hook::SOCK_ADDR {
            let (link, _was_pinned) = attach_hook(&mut ebpf, hook, &root_dir, &pin_dir)?;
            links.push((hook, link));
        }
        // The return path of DNS steering: inert until a policy names destinations by DNS name.
        for (name, pin_name) in DNS_RETURN_PROGRAMS {
            let (link, _was_pinned) =
                attach_sock_addr(&mut ebpf, name, pin_name, Hook::Dns, &root_dir, &pin_dir)?;
            links.push((Hook::Dns, link));
        }
        let layers = layers::attach(
            &mut ebpf,
            btf.as_ref(),
            &root_dir,
            &pin_dir,
            &opts.disable_layers,
            &kernel,
        )?;
        // The layers' flags are in force now: a verdict cached before them may lack the mark the egress layer
        // reads, and a reused verdict writes no mark.
        config.bump_epoch();
        if cgroup::cgroup_id(&attach_root)? != ROOT_CGROUP_ID {
            log::warn!(
                "the cgroup2 mount at {} shows a subtree of the hierarchy (a bind mount or a cgroup namespace): \
                 sockets created in cgroups above it are not judged when a managed task uses them; mount the \
                 whole hierarchy for the agent (docs/deployment.md)",
                attach_root.display()
            );
        }
        log::info!(
            "dataplane attached to {} (managing the cgroups below {}): hooks {}; bypass layers: {}",
            attach_root.display(),
            cgroup_root.display(),
            Hook::SOCK_ADDR.map(Hook::as_str).join(", "),
            layers.summary()
        );

        let mut workloads = StdHashMap::new();
        for (id, entry) in managed.iter().filter_map(Result::ok) {
            workloads.insert(id, slots::decode_id(&entry.workload_id));
        }
        // Loading and verifying the programs can take longer than a short grace period on a busy machine: the
        // timer beats as soon as it starts, so the state is not left stale by the load itself.
        let heartbeat = HeartbeatTimer::start(config.clone(), opts.heartbeat_interval)?;
        Ok(Dataplane {
            inner: Mutex::new(Some(Inner {
                _ebpf: ebpf,
                links,
                layers,
                config: config.clone(),
                _config_map: config_map,
                maps: Arc::new(Mutex::new(maps)),
                managed,
                counters,
                verdicts,
                ring: Some(ring),
                reader: None,
                heartbeat,
                hub: EventHub::new(opts.event_queue_capacity),
                paths: StdHashMap::new(),
            })),
            learned: Arc::new(Mutex::new(LearnedState {
                table: learned_table,
                map: learned_map,
            })),
            dns_flows,
            config,
            rule_ids: Arc::new(Mutex::new(RuleIdCache::default())),
            workloads: Arc::new(RwLock::new(workloads)),
            cgroup_root,
            pin_dir,
            adopted,
            adopted_heartbeat_age,
        })
    }

    /// The active policy's generation and counts, from the pinned slot metadata (so an adopted policy reports
    /// what the loader that applied it reported). Generation 0: no policy was ever loaded.
    pub fn policy_summary(&self) -> Result<PolicySummary, DataplaneError> {
        let (fqdn_rules, broker_names) = self
            .learned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .table
            .policy()
            .map_or((0, 0), |p| p.counts());
        self.with(|i| {
            let meta = i.active_meta()?;
            Ok(PolicySummary {
                generation: meta.generation,
                ipv4_rules: u64::from(meta.ipv4_rules),
                ipv6_rules: u64::from(meta.ipv6_rules),
                broker_endpoints: u64::from(meta.broker_endpoints),
                dns_endpoints: u64::from(meta.dns_endpoints),
                // From the active slot's pinned names (an adopted policy's too).
                fqdn_rules,
                broker_names,
            })
        })
    }

    /// For an adopted state: how old its heartbeat was when this loader adopted it (beyond the grace period the
    /// kernel was giving the degraded verdicts). `None` for a fresh state.
    pub fn adopted_heartbeat_age(&self) -> Option<Duration> {
        self.adopted_heartbeat_age
    }

    fn lock(&self) -> Result<MutexGuard<'_, Option<Inner>>, DataplaneError> {
        // A poisoned lock means a panic mid-operation; the kernel state is still consistent (every change is
        // one map update or the slot flip), so keep serving.
        Ok(self.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn with<R>(
        &self,
        f: impl FnOnce(&mut Inner) -> Result<R, DataplaneError>,
    ) -> Result<R, DataplaneError> {
        let mut guard = self.lock()?;
        let inner = guard.as_mut().ok_or(DataplaneError::Closed)?;
        f(inner)
    }

    /// What [`Self::replace_policy`] would report for `snapshot`, without applying it: the snapshot is compiled
    /// against the dataplane's limits (a snapshot beyond one is [`DataplaneError::PolicyTooLarge`], as a
    /// replacement would be), nothing is written, and the summary's `generation` is the active one, unchanged.
    pub fn check_policy(&self, snapshot: &PolicySnapshot) -> Result<PolicySummary, DataplaneError> {
        let compiled = policy_compile::compile(snapshot)?;
        self.check_dns_proxy(&compiled)?;
        let active = self.policy_summary()?.generation;
        Ok(PolicySummary {
            generation: active,
            ipv4_rules: u64::from(compiled.ipv4_rules),
            ipv6_rules: u64::from(compiled.ipv6_rules),
            broker_endpoints: u64::from(compiled.broker_endpoints),
            dns_endpoints: u64::from(compiled.dns_endpoints),
            fqdn_rules: snapshot.counts().fqdn_rules,
            broker_names: snapshot.counts().broker_names,
        })
    }

    /// Atomic: compiled snapshot -> inactive slot -> one switch. Errors leave the active policy untouched.
    pub fn replace_policy(
        &self,
        snapshot: &PolicySnapshot,
    ) -> Result<PolicySummary, DataplaneError> {
        let compiled = policy_compile::compile(snapshot)?;
        self.check_dns_proxy(&compiled)?;
        let (maps, config) = self.with(|i| Ok((i.maps.clone(), i.config.clone())))?;
        let mut maps = maps.lock().unwrap_or_else(|p| p.into_inner());
        // The learned addresses follow the policy into the slot it flips to (fqdn.rs); no learning in between.
        let mut learned = self.learned.lock().unwrap_or_else(|p| p.into_inner());
        let names = Arc::new(NamePolicy::new(snapshot));
        let ids = Arc::new(compiled.rule_ids.clone());
        // Cached before the flip so the first events of the new generation already resolve their rule ids.
        let generation = maps.meta(0)?.generation.max(maps.meta(1)?.generation) + 1;
        if let Ok(mut cache) = self.rule_ids.lock() {
            cache.insert(generation, ids);
        }
        let old_slot = config.active_slot();
        let applied = maps.replace(&config, &compiled, |slot| {
            let LearnedState { table, map } = &mut *learned;
            table.write_for(map, names, slot, config_map::monotonic_ns())
        })?;
        LearnedTable::clear_slot(&mut learned.map, old_slot);
        debug_assert_eq!(applied, generation);
        Ok(PolicySummary {
            generation: applied,
            ipv4_rules: u64::from(compiled.ipv4_rules),
            ipv6_rules: u64::from(compiled.ipv6_rules),
            broker_endpoints: u64::from(compiled.broker_endpoints),
            dns_endpoints: u64::from(compiled.dns_endpoints),
            fqdn_rules: snapshot.counts().fqdn_rules,
            broker_names: snapshot.counts().broker_names,
        })
    }

    /// A policy that needs the DNS proxy (SPEC 4b) is refused by a dataplane that has none: its fqdn rules would
    /// never learn an address and `dnsQueries: "policy"` would not be enforced.
    fn check_dns_proxy(
        &self,
        compiled: &policy_compile::CompiledPolicy,
    ) -> Result<(), DataplaneError> {
        if compiled.steer_dns && self.config.dns_proxy_port() == 0 {
            return Err(DataplaneError::InvalidPolicy(
                "the policy names destinations by DNS name (fqdn rules, broker names or dnsQueries: \"policy\"), \
                 which needs a DNS proxy, and this dataplane has none: apply it through the agent \
                 (docs/dataplane.md, \"Rules by name\")"
                    .to_owned(),
            ));
        }
        Ok(())
    }

    /// Turns DNS steering on for policies that need it: a managed workload's DNS traffic to a `dns[]` endpoint is
    /// sent to `127.0.0.1:port` (IPv4 and IPv4-mapped resolvers) or `[::1]:port` (IPv6 ones), where the agent's
    /// proxy listens. Port 0 turns it off (a policy that needs it is then refused). Sockets that cached a DNS
    /// verdict are judged again.
    pub fn set_dns_proxy(&self, port: u16) -> Result<(), DataplaneError> {
        self.config.set_dns_proxy(
            std::net::Ipv4Addr::LOCALHOST,
            std::net::Ipv6Addr::LOCALHOST,
            port,
        );
        self.config.bump_epoch();
        Ok(())
    }

    /// Whether the active policy steers managed workloads' DNS to the proxy (it names destinations by DNS name).
    pub fn dns_steering(&self) -> Result<bool, DataplaneError> {
        self.with(|i| {
            let meta = i.active_meta()?;
            Ok(meta.steer_dns != 0)
        })
    }

    /// The DNS proxy's port the programs steer to, 0 when none.
    pub fn dns_proxy_port(&self) -> u16 {
        self.config.dns_proxy_port()
    }

    /// The steered socket with this cookie: the resolver it addressed and its cgroups. `None` when the programs
    /// steered no such socket (or its record aged out).
    pub fn dns_flow(&self, cookie: u64) -> Option<SteeredFlow> {
        self.dns_flows
            .get(&cookie, 0)
            .ok()
            .map(|raw| fqdn::flow_of(&raw))
    }

    /// Whether the active policy's names are known to this loader (it applied the policy): an adopted policy's are
    /// not, and until the next replacement nothing new is learned and every query is answered.
    pub fn dns_policy_known(&self) -> bool {
        self.learned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .table
            .policy()
            .is_some()
    }

    /// What the proxy does with a query for `name` (canonical) from `flow` (SPEC 4b, `dnsQueries`): refused when
    /// the policy says `"policy"` and names no such name; reported but answered when the workload observes.
    pub fn dns_query_verdict(&self, flow: &SteeredFlow, name: &str) -> DnsQueryVerdict {
        let answer = {
            let learned = self.learned.lock().unwrap_or_else(|p| p.into_inner());
            match learned.table.policy() {
                Some(p) => {
                    p.dns_queries == crate::contract::policy::DnsQueries::Any || p.names(name)
                }
                None => true,
            }
        };
        if answer {
            return DnsQueryVerdict::Answer;
        }
        let mode = self
            .with(|i| Ok(i.managed.get(&flow.managed_cgroup_id, 0).ok()))
            .ok()
            .flatten()
            .map_or(abi::MODE_INHERIT, |m| m.mode);
        let mode = if mode == abi::MODE_INHERIT {
            self.config.global_mode()
        } else {
            mode
        };
        if mode == abi::MODE_OBSERVE {
            DnsQueryVerdict::ObserveWouldRefuse
        } else {
            DnsQueryVerdict::Refuse
        }
    }

    /// Learns an answer for `flow`'s workload: `names` are the question's name and its CNAME chain (canonical),
    /// `addrs` the A/AAAA addresses with their TTLs (seconds). Every address a policy name covers is in the kernel
    /// when this returns. Returns how many addresses were written.
    pub fn learn_dns(
        &self,
        flow: &SteeredFlow,
        names: &[&str],
        addrs: &[(std::net::IpAddr, u32)],
    ) -> Result<usize, DataplaneError> {
        let mut learned = self.learned.lock().unwrap_or_else(|p| p.into_inner());
        let LearnedState { table, map } = &mut *learned;
        table.learn(
            map,
            self.config.active_slot(),
            flow.managed_cgroup_id,
            names,
            addrs,
            config_map::monotonic_ns(),
        )
    }

    /// Reports a query the DNS proxy refused (or, in observe mode, would have): a DENY_DNS_QUERY /
    /// OBSERVE_WOULD_DENY_DNS_QUERY event with hook `dns` and `dns_name`, to every subscriber like a kernel verdict.
    /// The destination is the resolver the workload addressed. `verdict` Answer reports nothing.
    pub fn report_dns_query(
        &self,
        flow: &SteeredFlow,
        name: &str,
        verdict: DnsQueryVerdict,
        tcp: bool,
    ) {
        use crate::contract::reason_codes::DataplaneReasonCode;
        let reason = match verdict {
            DnsQueryVerdict::Answer => return,
            DnsQueryVerdict::Refuse => DataplaneReasonCode::DenyDnsQuery,
            DnsQueryVerdict::ObserveWouldRefuse => DataplaneReasonCode::ObserveWouldDenyDnsQuery,
        };
        let Ok(Some(hub)) = self.with(|i| Ok(Some(i.hub.clone()))) else {
            return;
        };
        let generation = self.policy_summary().map_or(0, |s| s.generation);
        let workload_id = self
            .workloads
            .read()
            .ok()
            .and_then(|w| w.get(&flow.managed_cgroup_id).cloned().flatten());
        hub.publish(vec![events::VerdictEvent {
            observed_at: std::time::SystemTime::now(),
            monotonic_ns: config_map::monotonic_ns(),
            cgroup_id: flow.cgroup_id,
            pid: 0,
            uid: 0,
            comm: String::new(),
            hook: Hook::Dns,
            protocol: if tcp {
                crate::contract::hook::Protocol::Tcp
            } else {
                crate::contract::hook::Protocol::Udp
            },
            dst_ip: Some(flow.original.ip()),
            dst_port: Some(flow.original.port()),
            reason,
            rule_id: None,
            dns_name: Some(name.to_owned()),
            policy_generation: generation,
            workload_id,
            managed_cgroup_id: flow.managed_cgroup_id,
        }]);
    }

    /// Forgets the learned addresses whose TTL ran out (the kernel already ignores them). Returns how many.
    pub fn expire_dns(&self) -> usize {
        let mut learned = self.learned.lock().unwrap_or_else(|p| p.into_inner());
        let LearnedState { table, map } = &mut *learned;
        table.expire(map, self.config.active_slot(), config_map::monotonic_ns())
    }

    /// The active policy's `dnsQueries` (`Any` while an adopted policy's names are unknown), and how many
    /// addresses were learned since this loader started (an address learned again counts again).
    pub fn dns_queries_and_learned_total(&self) -> (crate::contract::policy::DnsQueries, u64) {
        let learned = self.learned.lock().unwrap_or_else(|p| p.into_inner());
        (
            learned
                .table
                .policy()
                .map_or(crate::contract::policy::DnsQueries::Any, |p| p.dns_queries),
            learned.table.learned_total,
        )
    }

    /// Every learned address that has not expired (`ctl dns`).
    pub fn learned_addresses(&self) -> Vec<LearnedAddress> {
        self.learned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .table
            .view(config_map::monotonic_ns())
    }

    /// Adds or updates the managed entry of `target` (the root cgroup is refused: see
    /// [`Self::upsert_managed_cgroup_with`]).
    pub fn upsert_managed_cgroup(
        &self,
        target: &CgroupRef,
        mode: Option<Mode>,
        workload_id: Option<&str>,
    ) -> Result<ManagedCgroup, DataplaneError> {
        self.upsert_managed_cgroup_with(target, mode, workload_id, false)
    }

    /// [`Self::upsert_managed_cgroup`], where `allow_root: true` lets the root cgroup of the hierarchy be
    /// managed (the contract's root rule, [`crate::contract::cgroup::refuse_root`]: every process of the host
    /// then falls under enforcement). The workload id follows the contract's id-slot rule.
    pub fn upsert_managed_cgroup_with(
        &self,
        target: &CgroupRef,
        mode: Option<Mode>,
        workload_id: Option<&str>,
        allow_root: bool,
    ) -> Result<ManagedCgroup, DataplaneError> {
        let invalid = |(code, message)| {
            DataplaneError::InvalidOption(ValidationError::single(Issue::at(
                "workloadId",
                code,
                message,
            )))
        };
        let encoded = match workload_id {
            Some(w) => {
                check_slot_id("workloadId", w).map_err(invalid)?;
                slots::encode_id(w).ok_or_else(|| {
                    invalid((IssueCode::TooBig, "does not fit the id slot".to_owned()))
                })?
            }
            None => [0; abi::ID_BYTES],
        };
        let resolved = cgroup::resolve(&self.cgroup_root, target)?;
        cgroup::refuse_hierarchy_root(target, &resolved, allow_root)?;
        let entry = Managed {
            mode: mode.map_or(abi::MODE_INHERIT, Mode::to_abi),
            reserved: 0,
            workload_id: encoded,
        };
        self.with(|i| {
            i.managed
                .insert(resolved.id, entry, 0)
                .map_err(|e| DataplaneError::map("dp_managed", e))?;
            if let Some(p) = &resolved.path {
                i.paths.insert(resolved.id, p.clone());
            }
            // After the change, so no socket keeps a mark or a verdict taken under the old entry.
            i.revoke_socket_state()
        })?;
        if let Ok(mut w) = self.workloads.write() {
            w.insert(resolved.id, workload_id.map(str::to_owned));
        }
        Ok(ManagedCgroup {
            cgroup_id: resolved.id,
            path: resolved.path,
            mode,
            workload_id: workload_id.map(str::to_owned),
        })
    }

    /// `Ok(false)` when the cgroup was not managed.
    pub fn delete_managed_cgroup(&self, target: &CgroupRef) -> Result<bool, DataplaneError> {
        let id = match target {
            CgroupRef::Id(id) => *id,
            CgroupRef::Path(p) => cgroup::cgroup_id(&directory_of(&self.cgroup_root, p))?,
        };
        let removed = self.with(|i| {
            match i.managed.get(&id, 0) {
                Ok(_) => {}
                Err(MapError::KeyNotFound) => return Ok(false),
                Err(e) => return Err(DataplaneError::map("dp_managed", e)),
            }
            i.managed
                .remove(&id)
                .map_err(|e| DataplaneError::map("dp_managed", e))?;
            i.paths.remove(&id);
            i.revoke_socket_state()?;
            Ok(true)
        })?;
        if removed {
            if let Ok(mut w) = self.workloads.write() {
                w.remove(&id);
            }
        }
        Ok(removed)
    }

    pub fn set_global_mode(&self, mode: Mode) -> Result<(), DataplaneError> {
        self.with(|i| {
            i.config.set_global_mode(mode.to_abi());
            i.revoke_socket_state()
        })
    }

    /// The cgroup must be managed ([`DataplaneError::NotManaged`] otherwise).
    pub fn set_cgroup_mode(&self, target: &CgroupRef, mode: Mode) -> Result<(), DataplaneError> {
        let resolved = cgroup::resolve(&self.cgroup_root, target)?;
        self.with(|i| {
            let mut entry = match i.managed.get(&resolved.id, 0) {
                Ok(e) => e,
                Err(MapError::KeyNotFound) => {
                    return Err(DataplaneError::NotManaged {
                        cgroup: target.to_string(),
                    })
                }
                Err(e) => return Err(DataplaneError::map("dp_managed", e)),
            };
            entry.mode = mode.to_abi();
            i.managed
                .insert(resolved.id, entry, 0)
                .map_err(|e| DataplaneError::map("dp_managed", e))?;
            i.revoke_socket_state()
        })
    }

    pub fn set_fail_mode(&self, mode: FailMode) -> Result<(), DataplaneError> {
        self.with(|i| {
            i.config.set_fail_mode(mode.to_abi());
            Ok(())
        })
    }

    /// Writes the current CLOCK_MONOTONIC time as the agent heartbeat.
    pub fn heartbeat(&self) -> Result<(), DataplaneError> {
        self.with(|i| {
            i.config.set_heartbeat_ns(config_map::monotonic_ns());
            Ok(())
        })
    }

    /// Stops the loader's own heartbeat timer (tests use it to provoke the degraded state); `heartbeat()` still
    /// works.
    pub fn pause_heartbeat_timer(&self) {
        if let Ok(Some(i)) = self.lock().as_deref() {
            i.heartbeat.paused.store(true, Ordering::Relaxed);
        }
    }

    pub fn status(&self) -> Result<DataplaneStatus, DataplaneError> {
        self.with(|i| {
            let meta = i.active_meta()?;
            let sum = |idx: u64| -> Result<u64, DataplaneError> {
                let values = i
                    .counters
                    .get(&(idx as u32), 0)
                    .map_err(|e| DataplaneError::map("dp_counters", e))?;
                Ok(values.iter().fold(0u64, |acc, v| acc.wrapping_add(*v)))
            };
            let mut managed_cgroups = Vec::new();
            for (id, entry) in i.managed.iter().filter_map(Result::ok) {
                let path = match i.paths.get(&id) {
                    Some(p) => Some(p.clone()),
                    None => cgroup::find_by_id(&self.cgroup_root, id),
                };
                managed_cgroups.push(ManagedCgroup {
                    cgroup_id: id,
                    path,
                    mode: Mode::from_abi(entry.mode),
                    workload_id: slots::decode_id(&entry.workload_id),
                });
            }
            managed_cgroups.sort_by_key(|m| m.cgroup_id);
            let now = config_map::monotonic_ns();
            let beat = i.config.heartbeat_ns();
            let stale = now > beat && now - beat > i.config.grace_ns();
            Ok(DataplaneStatus {
                attached_hooks: i
                    .links
                    .iter()
                    .map(|(h, _)| *h)
                    .filter(|h| *h != Hook::Dns)
                    .collect(),
                cgroup_root: self.cgroup_root.clone(),
                pin_dir: self.pin_dir.clone(),
                adopted: self.adopted,
                managed_cgroups,
                global_mode: Mode::from_abi(i.config.global_mode()).unwrap_or(Mode::Enforce),
                fail_mode: FailMode::from_abi(i.config.fail_mode()),
                heartbeat_grace: Duration::from_nanos(i.config.grace_ns()),
                generation: meta.generation,
                ipv4_rules: meta.ipv4_rules,
                ipv6_rules: meta.ipv6_rules,
                events_emitted: sum(c::DP_COUNTER_EVENTS_EMITTED)?,
                dropped_in_kernel: sum(c::DP_COUNTER_RINGBUF_FULL)?,
                dropped_in_queue: i.hub.dropped.load(Ordering::Relaxed),
                degraded: stale || meta.generation == 0,
                layers: i.layers.status.clone(),
                layer_counters: i.layers.counters()?,
                verdicts: verdict_counters::read(&i.verdicts)?,
                learned_addresses: self
                    .learned
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .table
                    .count(now),
            })
        })
    }

    /// A new subscription to the verdict events: every subscriber receives every event decoded after it
    /// subscribed, in its own bounded queue (a slow subscriber loses events, counted in `dropped_in_queue`,
    /// without slowing the others). The first call starts the tokio task reading the ring buffer, so it must be
    /// made inside a tokio runtime; the reader then runs on that runtime until `close()`.
    pub fn subscribe(&self) -> Result<EventReceiver, DataplaneError> {
        self.with(|i| {
            // Subscribed before the reader starts: the records already waiting in a pinned ring buffer (the
            // verdicts given while no loader ran) reach the first subscriber instead of nobody.
            let receiver = i.hub.subscribe();
            if let Some(ring) = i.ring.take() {
                let handle = match tokio::runtime::Handle::try_current() {
                    Ok(h) => h,
                    Err(e) => {
                        i.ring = Some(ring);
                        return Err(DataplaneError::EventReader(
                            format!("not inside a tokio runtime: {e}").into(),
                        ));
                    }
                };
                let _enter = handle.enter();
                let fd =
                    events::register(ring).map_err(|e| DataplaneError::EventReader(Box::new(e)))?;
                let ctx = EventContext {
                    rule_ids: self.rule_ids.clone(),
                    workloads: self.workloads.clone(),
                    maps: i.maps.clone(),
                    learned: self.learned.clone(),
                };
                i.reader = Some(handle.spawn(events::run_reader(fd, i.hub.clone(), ctx)));
            }
            Ok(receiver)
        })
    }

    /// Stops the timer and the reader. `detach = true` also detaches the programs and removes everything pinned
    /// (enforcement stops); `detach = false` leaves programs, links and maps pinned (enforcement continues).
    pub fn close(&self, detach: bool) -> Result<(), DataplaneError> {
        let Some(mut inner) = self.lock()?.take() else {
            return Ok(());
        };
        inner.heartbeat.stop();
        if let Some(r) = inner.reader.take() {
            r.abort();
        }
        inner.hub.close();
        if !detach {
            return Ok(());
        }
        let mut first_error = None;
        for (layer, link) in inner.layers.links.drain(..) {
            match link.unpin() {
                Ok(fd_link) => drop(fd_link),
                Err(e) => {
                    first_error.get_or_insert(DataplaneError::layer(layer, "unpin link", e));
                }
            }
        }
        for (hook, link) in inner.links.drain(..) {
            match link.unpin() {
                // Dropping the last fd of an unpinned bpf_link detaches the program.
                Ok(fd_link) => drop(fd_link),
                Err(e) => {
                    first_error.get_or_insert(DataplaneError::attach(hook, "unpin link", e));
                }
            }
        }
        drop(inner);
        if let Err(e) = pins::remove_pins(&self.pin_dir) {
            first_error.get_or_insert(e);
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        let _ = self.close(false);
    }
}
