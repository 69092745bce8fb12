//! The bypass layers (docs/threat-model.md): programs beside the four sock_addr hooks that stop what
//! `connect()`/`sendmsg()` never see. Each layer needs a kernel feature that production kernels may lack, so
//! each is probed at load, attached when the kernel has it, and reported as active, disabled (by the options) or
//! unavailable (with the kernel's reason) in [`super::DataplaneStatus::layers`] and once in the log.
//!
//! | layer | program | kernel feature |
//! |---|---|---|
//! | `sock_create` | `dp_sock_create` (`cgroup/sock_create`) | cgroup BPF (4.10) |
//! | `socket_create_lsm` | `dp_socket_create_lsm` (`lsm_cgroup/socket_create`) | BPF LSM active + BPF_LSM_CGROUP (6.0) |
//! | `egress` | `dp_egress` (`cgroup_skb/egress`) | cgroup_skb with socket storage (5.2) |
//! | `socket_storage` | marks written by the sock_addr programs, read by `dp_egress` | socket storage in sock_addr programs (probed) |
//!
//! Order of attachment: the egress layer first, then the layer flags (`dp_layer_state`) that tell the other
//! programs what is attached, then the socket-creation layers. A ping socket is created only while the egress
//! layer judges its sends, so the flags change before a layer is added or after it is removed, never leaving a
//! moment where neither judges.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;

use aya::maps::{Array, MapData, PerCpuArray};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::{
    CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSock, CgroupSockAddr, LsmCgroup,
    ProgramError,
};
use aya::{Btf, Ebpf, EbpfLoader};
use rustix::mount::MountFlags;

use super::abi::{self, c, LayerState as RawLayerState};
use super::error::{chain, Cause, DataplaneError};
use super::mounts;
use super::pins;
use super::program;
use crate::contract::layer::{Layer, LayerCounters, LayerState, LayerStatus};

/// A layer's program in bpf/dataplane.bpf.c: what the dataplane adds to the contract's [`Layer`]. Pinned as
/// `prog_<layer>`, its link as `link_<layer>` (`pins.rs`); `None` for socket storage, which is a mode of the
/// other programs.
fn layer_program(layer: Layer) -> Option<&'static str> {
    match layer {
        Layer::SockCreate => Some("dp_sock_create"),
        Layer::SocketCreateLsm => Some("dp_socket_create_lsm"),
        Layer::Egress => Some("dp_egress"),
        Layer::SocketStorage => None,
    }
}

/// What the kernel lets the programs do, probed before the dataplane object is loaded.
#[derive(Clone, Debug)]
pub(crate) struct KernelSupport {
    /// `Err(why)`: sock_addr programs cannot use socket storage, so they are loaded without the marking code.
    pub sock_addr_storage: Result<(), String>,
    /// `Err(why)`: cgroup/sock_create programs cannot use socket storage, so sockets whose sends reach no
    /// sock_addr hook are judged at egress by their own cgroup, not by the task sending on them.
    pub sock_create_storage: Result<(), String>,
}

impl KernelSupport {
    /// Loads (never attaches) the probe programs of bpf/probes.bpf.c.
    pub(crate) fn probe(btf: Option<&Btf>) -> KernelSupport {
        KernelSupport {
            sock_addr_storage: probe_sock_addr_storage(btf),
            sock_create_storage: probe_storage::<CgroupSock>(
                btf,
                "probe_sock_create_storage",
                "use socket storage in a cgroup/sock_create program",
            ),
        }
    }
}

fn probe_sock_addr_storage(btf: Option<&Btf>) -> Result<(), String> {
    probe_storage::<CgroupSockAddr>(
        btf,
        "probe_sock_addr_storage",
        "use socket storage and bpf_jiffies64 in a sock_addr program",
    )
}

/// Loads one probe program of bpf/probes.bpf.c: `Ok` when the verifier accepts it, else why not.
fn probe_storage<P: ProbeProgram>(btf: Option<&Btf>, name: &str, what: &str) -> Result<(), String>
where
    for<'a> &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let mut ebpf = EbpfLoader::new()
        .btf(btf)
        .load(abi::PROBES_OBJECT)
        .map_err(|e| format!("socket storage maps: {}", chain(&e)))?;
    let prog: &mut P = ebpf
        .program_mut(name)
        .ok_or("probe program missing")?
        .try_into()
        .map_err(|e: ProgramError| e.to_string())?;
    program::load_retrying(|| prog.load_probe()).map_err(|e| program_reason(what, &e))
}

/// The program kinds a probe is: `load()` of each.
trait ProbeProgram {
    fn load_probe(&mut self) -> Result<(), ProgramError>;
}

impl ProbeProgram for CgroupSockAddr {
    fn load_probe(&mut self) -> Result<(), ProgramError> {
        self.load()
    }
}

impl ProbeProgram for CgroupSock {
    fn load_probe(&mut self) -> Result<(), ProgramError> {
        self.load()
    }
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
            packets_dropped: sum(c::DP_LC_PACKETS_DROPPED)?,
            packets_would_drop: sum(c::DP_LC_PACKETS_WOULD_DROP)?,
            packets_judged: sum(c::DP_LC_PACKETS_JUDGED)?,
            marks_written: sum(c::DP_LC_MARKS_WRITTEN)?,
        })
    }

    fn state(&self) -> Result<RawLayerState, DataplaneError> {
        self.state
            .get(&0, 0)
            .map_err(|e| DataplaneError::map("dp_layer_state", e))
    }

    /// Invalidates every socket mark: the next packet of each flow is judged again. Called when the managed
    /// cgroups or the modes change (a new policy invalidates them through its generation). One 4-byte value
    /// written with a map update, which the programs read with one aligned load.
    pub(crate) fn bump_epoch(&mut self) -> Result<(), DataplaneError> {
        let mut st = self.state()?;
        st.mark_epoch = st.mark_epoch.wrapping_add(1);
        self.state
            .set(0, st, 0)
            .map_err(|e| DataplaneError::map("dp_layer_state", e))
    }

    fn write_flags(&mut self, flags: u32) -> Result<(), DataplaneError> {
        let mut st = self.state()?;
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
            MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NOEXEC | MountFlags::NODEV,
        )
        .map_err(|e| format!("mount securityfs to read the active LSMs: {e}"))?;
        let text = std::fs::read_to_string(dir.join("lsm"));
        mounts::unmount(&dir);
        text.map_err(|e| format!("read securityfs lsm: {e}"))
    })();
    let _ = std::fs::remove_dir(&dir);
    result
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

/// Loads, attaches and pins one layer's program. `Ok(Err(reason))`: the kernel does not offer the layer.
fn attach_one(
    ebpf: &mut Ebpf,
    btf: Option<&Btf>,
    layer: Layer,
    cgroup_root: &File,
    pin_dir: &Path,
) -> Result<Result<PinnedLink, String>, DataplaneError> {
    let Some(name) = layer_program(layer) else {
        return Ok(Err(format!("{layer} has no program")));
    };
    let program = ebpf
        .program_mut(name)
        .ok_or_else(|| DataplaneError::Object(format!("program {name} missing").into()))?;
    let link: FdLink = match layer {
        Layer::SockCreate => {
            let prog: &mut CgroupSock = program
                .try_into()
                .map_err(|e: ProgramError| DataplaneError::Object(Box::new(e)))?;
            if let Err(e) = program::load_retrying(|| prog.load()) {
                return Ok(Err(program_reason("load cgroup/sock_create", &e)));
            }
            pin_program(
                prog.pin(pins::prog_pin(pin_dir, layer.as_str())),
                layer,
                pin_dir,
            )?;
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
                .map_err(|e: ProgramError| DataplaneError::Object(Box::new(e)))?;
            if let Err(e) = program::load_retrying(|| prog.load("socket_create", btf)) {
                return Ok(Err(program_reason("load lsm_cgroup/socket_create", &e)));
            }
            pin_program(
                prog.pin(pins::prog_pin(pin_dir, layer.as_str())),
                layer,
                pin_dir,
            )?;
            let id = match prog.attach(cgroup_root.as_fd()) {
                Ok(id) => id,
                Err(e) => return Ok(Err(program_reason("attach lsm_cgroup/socket_create", &e))),
            };
            FdLink::from(prog.take_link(id).map_err(|e| attach_error(layer, e))?)
        }
        Layer::Egress => {
            let prog: &mut CgroupSkb = program
                .try_into()
                .map_err(|e: ProgramError| DataplaneError::Object(Box::new(e)))?;
            if let Err(e) = program::load_retrying(|| prog.load()) {
                return Ok(Err(program_reason("load cgroup_skb/egress", &e)));
            }
            pin_program(
                prog.pin(pins::prog_pin(pin_dir, layer.as_str())),
                layer,
                pin_dir,
            )?;
            let id = match prog.attach(
                cgroup_root.as_fd(),
                CgroupSkbAttachType::Egress,
                CgroupAttachMode::Single,
            ) {
                Ok(id) => id,
                Err(e) => return Ok(Err(program_reason("attach cgroup_skb/egress", &e))),
            };
            let link = prog.take_link(id).map_err(|e| attach_error(layer, e))?;
            FdLink::try_from(link).map_err(|e| attach_error(layer, e))?
        }
        Layer::SocketStorage => return Ok(Err(format!("{layer} has no program"))),
    };
    let pinned = link
        .pin(pins::link_pin(pin_dir, layer.as_str()))
        .map_err(|e| DataplaneError::layer(layer, "pin link", e))?;
    Ok(Ok(pinned))
}

fn attach_error(layer: Layer, e: impl Into<Cause>) -> DataplaneError {
    DataplaneError::layer(layer, "take its link", e)
}

fn pin_program(
    result: Result<(), aya::pin::PinError>,
    layer: Layer,
    pin_dir: &Path,
) -> Result<(), DataplaneError> {
    result.map_err(|e| {
        DataplaneError::layer(
            layer,
            format!(
                "pin program at {}",
                pins::prog_pin(pin_dir, layer.as_str()).display()
            ),
            e,
        )
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
    kernel: &KernelSupport,
) -> Result<Layers, DataplaneError> {
    let state: Array<MapData, RawLayerState> = typed(ebpf, "dp_layer_state")?;
    let counters: PerCpuArray<MapData, u64> = typed(ebpf, "dp_layer_counters")?;
    let mut layers = Layers {
        links: Vec::new(),
        status: Vec::new(),
        state,
        counters,
    };
    let mut states: Vec<(Layer, LayerState)> = Vec::new();

    // 1. The egress layer, and the flags saying whether it is there: removed after its flags, added before.
    let egress = if disabled.contains(&Layer::Egress) {
        layers.write_flags(0)?;
        pins::remove_program_pins(pin_dir, Layer::Egress.as_str())?;
        LayerState::Disabled
    } else {
        layers.attach_program(ebpf, btf, Layer::Egress, cgroup_root, pin_dir)?
    };
    let storage = if disabled.contains(&Layer::SocketStorage) {
        LayerState::Disabled
    } else if egress != LayerState::Active {
        LayerState::Unavailable("the egress layer, which reads the marks, is not attached".into())
    } else {
        match &kernel.sock_addr_storage {
            Ok(()) => LayerState::Active,
            // The egress layer still marks the flows it judges itself (cgroup_skb programs have socket storage).
            Err(why) => LayerState::Unavailable(format!(
                "connect/sendmsg verdicts cannot mark sockets ({why}); the egress layer marks the flows it judges"
            )),
        }
    };
    let mut flags = 0;
    if egress == LayerState::Active {
        flags |= abi::LAYER_FLAG_EGRESS;
        if !disabled.contains(&Layer::SocketStorage) {
            flags |= abi::LAYER_FLAG_MARKS;
        }
    }
    layers.write_flags(flags)?;
    states.push((Layer::Egress, egress));
    states.push((Layer::SocketStorage, storage));

    // 2. The socket-creation layers.
    for layer in [Layer::SockCreate, Layer::SocketCreateLsm] {
        let state = if disabled.contains(&layer) {
            pins::remove_program_pins(pin_dir, layer.as_str())?;
            LayerState::Disabled
        } else {
            layers.attach_program(ebpf, btf, layer, cgroup_root, pin_dir)?
        };
        states.push((layer, state));
    }
    for layer in Layer::ALL {
        if let Some((_, state)) = states.iter().find(|(l, _)| *l == layer) {
            layers.status.push(LayerStatus {
                layer,
                state: state.clone(),
            });
        }
    }
    Ok(layers)
}

impl Layers {
    /// Adopts the pinned link of a layer's program, or loads, attaches and pins it.
    fn attach_program(
        &mut self,
        ebpf: &mut Ebpf,
        btf: Option<&Btf>,
        layer: Layer,
        cgroup_root: &File,
        pin_dir: &Path,
    ) -> Result<LayerState, DataplaneError> {
        let link_pin = pins::link_pin(pin_dir, layer.as_str());
        let outcome = if link_pin.exists() {
            let link = PinnedLink::from_pin(&link_pin).map_err(|e| DataplaneError::Adopt {
                path: link_pin.clone(),
                reason: format!("reopen {layer}: {e}"),
            })?;
            Ok(link)
        } else {
            pins::remove_stale_prog_pin(&pins::prog_pin(pin_dir, layer.as_str()))?;
            attach_one(ebpf, btf, layer, cgroup_root, pin_dir)?
        };
        Ok(match outcome {
            Ok(link) => {
                self.links.push((layer, link));
                LayerState::Active
            }
            Err(why) => {
                // A program pinned before the attach failed must not stay behind.
                let _ = std::fs::remove_file(pins::prog_pin(pin_dir, layer.as_str()));
                LayerState::Unavailable(why)
            }
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
