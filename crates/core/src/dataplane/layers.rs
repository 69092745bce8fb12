//! The bypass layers (docs/threat-model.md): programs beside the four sock_addr hooks that stop what
//! `connect()`/`sendmsg()` never see. Each layer needs a kernel feature that production kernels may lack, so
//! each is probed at load, attached when the kernel has it, and reported as active, disabled (by the options) or
//! unavailable (with the kernel's reason) in [`super::DataplaneStatus::layers`] and once in the log.
//!
//! | layer | program | kernel feature |
//! |---|---|---|
//! | `sock_create` | `dp_sock_create` (`cgroup/sock_create`) | cgroup BPF (4.10) |
//! | `socket_create_lsm` | `dp_socket_create_lsm` (`lsm_cgroup/socket_create`) | BPF LSM active + BPF_LSM_CGROUP (6.0) |

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use aya::maps::{Array, MapData, PerCpuArray};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::{CgroupAttachMode, CgroupSock, LsmCgroup, ProgramError};
use aya::{Btf, Ebpf};

use super::abi::{self, c, LayerState as RawLayerState};
use super::error::DataplaneError;
use super::mounts;

/// A bypass layer. Names are stable (options, status, the agent's environment).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Layer {
    /// `cgroup/sock_create`: refuses raw IPv4/IPv6 sockets (and other kinds no sock_addr hook judges) created in
    /// managed cgroups.
    SockCreate,
    /// `lsm_cgroup/socket_create`: refuses packet (`AF_PACKET`) and XDP (`AF_XDP`) sockets created in managed
    /// cgroups. Needs the BPF LSM to be active and BPF_LSM_CGROUP (kernel >= 6.0).
    SocketCreateLsm,
}

impl Layer {
    pub const ALL: [Layer; 2] = [Layer::SockCreate, Layer::SocketCreateLsm];

    pub const fn as_str(self) -> &'static str {
        match self {
            Layer::SockCreate => "sock_create",
            Layer::SocketCreateLsm => "socket_create_lsm",
        }
    }

    pub fn from_wire(s: &str) -> Option<Layer> {
        Layer::ALL.into_iter().find(|l| l.as_str() == s)
    }

    /// Parses a comma-separated list of layer names (`"sock_create, socket_create_lsm"`; empty items are
    /// ignored), as `BROKER_EBPF_DISABLE_LAYERS` and the Node option `disableLayers` give it. The error names
    /// the unknown item and the accepted names.
    pub fn parse_list(s: &str) -> Result<Vec<Layer>, String> {
        let mut out = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let layer = Layer::from_wire(item).ok_or_else(|| {
                format!(
                    "unknown layer `{item}`; expected a comma-separated list of {}",
                    Layer::ALL.map(Layer::as_str).join(", ")
                )
            })?;
            if !out.contains(&layer) {
                out.push(layer);
            }
        }
        Ok(out)
    }

    /// The program in bpf/dataplane.bpf.c, also the suffix of its pins (`prog_<name>`, `link_<name>`).
    const fn program(self) -> &'static str {
        match self {
            Layer::SockCreate => "dp_sock_create",
            Layer::SocketCreateLsm => "dp_socket_create_lsm",
        }
    }

    fn link_pin(self, pin_dir: &Path) -> PathBuf {
        pin_dir.join(format!("link_{}", self.as_str()))
    }

    fn prog_pin(self, pin_dir: &Path) -> PathBuf {
        pin_dir.join(format!("prog_{}", self.as_str()))
    }
}

impl std::fmt::Display for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a layer is in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayerState {
    /// Attached and enforcing.
    Active,
    /// Not attached because the options disabled it (`disable_layers`).
    Disabled,
    /// Not attached because the kernel lacks what it needs; the text says what.
    Unavailable(String),
}

impl LayerState {
    pub const fn as_str(&self) -> &'static str {
        match self {
            LayerState::Active => "active",
            LayerState::Disabled => "disabled",
            LayerState::Unavailable(_) => "unavailable",
        }
    }

    /// Why the layer is unavailable.
    pub fn reason(&self) -> Option<&str> {
        match self {
            LayerState::Unavailable(r) => Some(r),
            _ => None,
        }
    }
}

/// One layer and its state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerStatus {
    pub layer: Layer,
    pub state: LayerState,
}

/// What the layers refused, summed over CPUs since the counters map was created (it is pinned: an adopted
/// state keeps counting).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LayerCounters {
    /// Sockets refused at creation (enforce).
    pub sockets_refused: u64,
    /// Sockets observe mode let through that enforce would have refused.
    pub sockets_would_refuse: u64,
}

/// The layers a loader attached (or adopted) and the maps it drives them with.
pub(crate) struct Layers {
    pub links: Vec<(Layer, PinnedLink)>,
    pub status: Vec<LayerStatus>,
    state: Array<MapData, RawLayerState>,
    counters: PerCpuArray<MapData, u64>,
}

impl Layers {
    pub(crate) fn counters(&self) -> Result<LayerCounters, DataplaneError> {
        let sum = |idx: u64| -> Result<u64, DataplaneError> {
            let values = self
                .counters
                .get(&(idx as u32), 0)
                .map_err(|e| DataplaneError::map("dp_layer_counters", e))?;
            Ok(values.iter().fold(0u64, |acc, v| acc.wrapping_add(*v)))
        };
        Ok(LayerCounters {
            sockets_refused: sum(c::DP_LC_SOCKETS_REFUSED)?,
            sockets_would_refuse: sum(c::DP_LC_SOCKETS_WOULD_REFUSE)?,
        })
    }

    fn write_state(&mut self, flags: u32) -> Result<(), DataplaneError> {
        let mut st = self
            .state
            .get(&0, 0)
            .map_err(|e| DataplaneError::map("dp_layer_state", e))?;
        st.flags = flags;
        self.state
            .set(0, st, 0)
            .map_err(|e| DataplaneError::map("dp_layer_state", e))
    }

    /// One line for the log: `sock_create active, socket_create_lsm unavailable (why)`.
    pub(crate) fn summary(&self) -> String {
        self.status
            .iter()
            .map(|s| match &s.state {
                LayerState::Unavailable(why) => format!("{} unavailable ({why})", s.layer),
                other => format!("{} {}", s.layer, other.as_str()),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Whether the BPF LSM runs its hooks: `Err` says why not. (Whether the kernel has BPF_LSM_CGROUP and the hook
/// shows when the program is loaded.)
fn lsm_active() -> Result<(), String> {
    let lsms = active_lsms()?;
    if !lsms.split(',').any(|l| l.trim() == "bpf") {
        return Err(format!(
            "the BPF LSM is not active (active LSMs: {}); add `bpf` to the kernel's `lsm=` boot parameter",
            lsms.trim()
        ));
    }
    Ok(())
}

/// The kernel's active LSM list (`<securityfs>/lsm`). When securityfs is not mounted it is mounted on a
/// private temporary directory for the read and unmounted again, so the host's mount table is left as it was.
fn active_lsms() -> Result<String, String> {
    let mounted = mounts::mount_points("securityfs").map_err(|e| e.to_string())?;
    if let Some(dir) = mounted.first() {
        return std::fs::read_to_string(dir.join("lsm"))
            .map_err(|e| format!("read {}/lsm: {e}", dir.display()));
    }
    let dir = std::env::temp_dir().join(format!(
        "interceptor-ebpf-securityfs-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    let result = (|| {
        mounts::mount_fs(
            "securityfs",
            &dir,
            libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NOEXEC | libc::MS_NODEV,
        )
        .map_err(|e| format!("mount securityfs to read the active LSMs: {e}"))?;
        let text = std::fs::read_to_string(dir.join("lsm"));
        mounts::unmount(&dir);
        text.map_err(|e| format!("read securityfs lsm: {e}"))
    })();
    let _ = std::fs::remove_dir(&dir);
    result
}

/// An error and its sources, one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

/// The reason text of a program the kernel would not load or attach: errno text, and for a verifier rejection
/// the last lines of its log (the whole log is long and the end says why).
fn program_reason(what: &str, e: &ProgramError) -> String {
    match e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => reason_text(what, &io_error.to_string(), &verifier_log.to_string()),
        other => reason_text(what, &chain(other), ""),
    }
}

fn reason_text(what: &str, error: &str, verifier_log: &str) -> String {
    let tail: Vec<&str> = verifier_log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .rev()
        .take(3)
        .collect();
    if tail.is_empty() {
        return format!("the kernel refused to {what}: {error}");
    }
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    format!(
        "the kernel refused to {what}: {error}; verifier: {}",
        tail.join(" | ")
    )
}

/// Loads a program, trying again while the verifier gives up with EAGAIN (a signal arrived), as
/// `loader::load_program` does.
fn load_retrying(mut load: impl FnMut() -> Result<(), ProgramError>) -> Result<(), ProgramError> {
    let mut attempt = 1;
    loop {
        match load() {
            Err(ProgramError::LoadError { io_error, .. })
                if io_error.raw_os_error() == Some(libc::EAGAIN)
                    && attempt < super::loader::PROG_LOAD_ATTEMPTS =>
            {
                attempt += 1
            }
            other => return other,
        }
    }
}

/// Unpins and detaches a layer's pinned link and removes its program pin (a layer the options now disable).
fn remove_pins(layer: Layer, pin_dir: &Path) -> Result<(), DataplaneError> {
    let link_pin = layer.link_pin(pin_dir);
    if link_pin.exists() {
        let link = PinnedLink::from_pin(&link_pin).map_err(|e| DataplaneError::Adopt {
            path: link_pin.clone(),
            reason: format!("reopen {}: {e}", layer),
        })?;
        // Dropping the last fd of an unpinned bpf_link detaches the program.
        let fd_link = link.unpin().map_err(|e| DataplaneError::Adopt {
            path: link_pin.clone(),
            reason: format!("unpin {}: {e}", layer),
        })?;
        drop(fd_link);
    }
    let prog_pin = layer.prog_pin(pin_dir);
    if prog_pin.exists() {
        std::fs::remove_file(&prog_pin).map_err(|e| DataplaneError::io("remove", &prog_pin, e))?;
    }
    Ok(())
}

/// Loads, attaches and pins one layer's program. `Ok(Err(reason))`: the kernel does not offer the layer.
fn attach_one(
    ebpf: &mut Ebpf,
    btf: Option<&Btf>,
    layer: Layer,
    cgroup_root: &File,
    pin_dir: &Path,
) -> Result<Result<PinnedLink, String>, DataplaneError> {
    let name = layer.program();
    let program = ebpf
        .program_mut(name)
        .ok_or_else(|| DataplaneError::Object(format!("program {name} missing")))?;
    let link: FdLink = match layer {
        Layer::SockCreate => {
            let prog: &mut CgroupSock = program
                .try_into()
                .map_err(|e: ProgramError| DataplaneError::Object(e.to_string()))?;
            if let Err(e) = load_retrying(|| prog.load()) {
                return Ok(Err(program_reason("load cgroup/sock_create", &e)));
            }
            pin_program(prog.pin(layer.prog_pin(pin_dir)), layer, pin_dir)?;
            let id = match prog.attach(cgroup_root.as_fd(), CgroupAttachMode::Single) {
                Ok(id) => id,
                Err(e) => return Ok(Err(program_reason("attach cgroup/sock_create", &e))),
            };
            let link = prog.take_link(id).map_err(|e| attach_error(layer, e))?;
            FdLink::try_from(link).map_err(|e| attach_error(layer, e))?
        }
        Layer::SocketCreateLsm => {
            if let Err(why) = lsm_active() {
                return Ok(Err(why));
            }
            let Some(btf) = btf else {
                return Ok(Err(
                    "no kernel BTF (/sys/kernel/btf/vmlinux): LSM programs need it".into(),
                ));
            };
            let prog: &mut LsmCgroup = program
                .try_into()
                .map_err(|e: ProgramError| DataplaneError::Object(e.to_string()))?;
            if let Err(e) = load_retrying(|| prog.load("socket_create", btf)) {
                return Ok(Err(program_reason("load lsm_cgroup/socket_create", &e)));
            }
            pin_program(prog.pin(layer.prog_pin(pin_dir)), layer, pin_dir)?;
            let id = match prog.attach(cgroup_root.as_fd()) {
                Ok(id) => id,
                Err(e) => return Ok(Err(program_reason("attach lsm_cgroup/socket_create", &e))),
            };
            FdLink::from(prog.take_link(id).map_err(|e| attach_error(layer, e))?)
        }
    };
    let pinned = link
        .pin(layer.link_pin(pin_dir))
        .map_err(|e| DataplaneError::Layer {
            layer,
            reason: format!("pin link: {}", chain(&e)),
        })?;
    Ok(Ok(pinned))
}

fn attach_error(layer: Layer, e: impl std::fmt::Display) -> DataplaneError {
    DataplaneError::Layer {
        layer,
        reason: e.to_string(),
    }
}

fn pin_program(
    result: Result<(), aya::pin::PinError>,
    layer: Layer,
    pin_dir: &Path,
) -> Result<(), DataplaneError> {
    result.map_err(|e| DataplaneError::Layer {
        layer,
        reason: format!(
            "pin program at {}: {}",
            layer.prog_pin(pin_dir).display(),
            chain(&e)
        ),
    })
}

/// Attaches every layer the options do not disable and the kernel offers, or adopts its pinned link; removes
/// the pins of a layer the options disable (an adopted state drops it). Never fails because the kernel lacks a
/// feature: that layer is reported unavailable and the others still attach.
pub(crate) fn attach(
    ebpf: &mut Ebpf,
    btf: Option<&Btf>,
    cgroup_root: &File,
    pin_dir: &Path,
    disabled: &[Layer],
) -> Result<Layers, DataplaneError> {
    let state: Array<MapData, RawLayerState> = typed(ebpf, "dp_layer_state")?;
    let counters: PerCpuArray<MapData, u64> = typed(ebpf, "dp_layer_counters")?;
    let mut layers = Layers {
        links: Vec::new(),
        status: Vec::new(),
        state,
        counters,
    };
    for layer in Layer::ALL {
        if disabled.contains(&layer) {
            remove_pins(layer, pin_dir)?;
            layers.status.push(LayerStatus {
                layer,
                state: LayerState::Disabled,
            });
            continue;
        }
        let link_pin = layer.link_pin(pin_dir);
        let outcome = if link_pin.exists() {
            let link = PinnedLink::from_pin(&link_pin).map_err(|e| DataplaneError::Adopt {
                path: link_pin.clone(),
                reason: format!("reopen {layer}: {e}"),
            })?;
            Ok(link)
        } else {
            let prog_pin = layer.prog_pin(pin_dir);
            if prog_pin.exists() {
                // Left by a loader that died between pinning the program and pinning its link.
                std::fs::remove_file(&prog_pin)
                    .map_err(|e| DataplaneError::io("remove", &prog_pin, e))?;
            }
            attach_one(ebpf, btf, layer, cgroup_root, pin_dir)?
        };
        match outcome {
            Ok(link) => {
                layers.links.push((layer, link));
                layers.status.push(LayerStatus {
                    layer,
                    state: LayerState::Active,
                });
            }
            Err(why) => {
                // A program pinned before the attach failed must not stay behind.
                let _ = std::fs::remove_file(layer.prog_pin(pin_dir));
                layers.status.push(LayerStatus {
                    layer,
                    state: LayerState::Unavailable(why),
                });
            }
        }
    }
    layers.write_state(0)?;
    Ok(layers)
}

fn typed<T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>>(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> Result<T, DataplaneError> {
    let map = ebpf
        .take_map(name)
        .ok_or_else(|| DataplaneError::map(name, "missing from the eBPF object"))?;
    T::try_from(map).map_err(|e| DataplaneError::map(name, chain(&e)))
}

// The record layouts the layers share with the programs.
const _: () = assert!(abi::LAYER_FLAG_EGRESS == 1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_names_round_trip_and_lists_parse() {
        for l in Layer::ALL {
            assert_eq!(Layer::from_wire(l.as_str()), Some(l));
        }
        assert_eq!(
            Layer::parse_list(" socket_create_lsm,, sock_create ,socket_create_lsm"),
            Ok(vec![Layer::SocketCreateLsm, Layer::SockCreate])
        );
        assert_eq!(Layer::parse_list(""), Ok(vec![]));
        let err = Layer::parse_list("sock_create,raw").unwrap_err();
        assert!(
            err.contains("`raw`") && err.contains("sock_create"),
            "{err}"
        );
    }

    #[test]
    fn reason_keeps_the_end_of_the_verifier_log() {
        let r = reason_text(
            "load x",
            "Permission denied (os error 13)",
            "0: r0 = 0\n1: exit\nR0 invalid\nprocessed 2 insns\n\n",
        );
        assert_eq!(
            r,
            "the kernel refused to load x: Permission denied (os error 13); verifier: 1: exit | R0 invalid | processed 2 insns"
        );
        assert_eq!(
            reason_text("attach y", "Operation not permitted (os error 1)", ""),
            "the kernel refused to attach y: Operation not permitted (os error 1)"
        );
    }
}
