//! What makes a pinned state adoptable, checked before anything of it is used or anything is created next to it.
//!
//! A loader adopts the maps and links pinned under its pin directory. Adopting the wrong thing would be silent and
//! dangerous: maps of another layout read by this build's user space, or links enforcing on another cgroup than
//! the one asked for. So, before aya opens a single pinned map:
//!
//! 1. `dp_config` has this build's value size and holds this build's layout fingerprint
//!    (`DP_ABI_FINGERPRINT`, derived by build.rs from bpf/dataplane_abi.h and bpf/policy_lookup.h);
//! 2. every map this build uses is pinned (aya would otherwise create and pin a fresh one that the pinned
//!    programs never read);
//! 3. every pinned link (of a sock_addr hook or of a bypass layer, `layers.rs`) is a cgroup link of its attach
//!    type, attached to the requested cgroup root (`bpf_link_info.cgroup.cgroup_id` against the root's id),
//!    running the pinned program of that hook, whose maps are the pinned maps (and the object's own read-only
//!    `.rodata`, which is never pinned: the values the loader set before loading, e.g. `dp_sock_addr_storage`).
//!
//! Any mismatch is [`DataplaneError::Adopt`] with how to recover; nothing was changed.

use std::collections::HashSet;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use aya::maps::MapInfo;
use aya::programs::ProgramInfo;

use super::abi::{self, c};
use super::bpf_sys::{bpf, obj_get, ElemAttr, BPF_MAP_LOOKUP_ELEM, BPF_OBJ_GET_INFO_BY_FD};
use super::cgroup;
use super::error::DataplaneError;
use super::pins;

/// `enum bpf_link_type` value of the cgroup links (the kernel's uapi `linux/bpf.h`, a stable ABI).
const BPF_LINK_TYPE_CGROUP: u32 = 3;

/// `BPF_F_RDONLY_PROG`: the programs cannot write the map (aya sets it on, and freezes, `.rodata`).
const BPF_F_RDONLY_PROG: u32 = 1 << 7;

/// A map the programs use besides the pinned ones: only the object's own frozen `.rodata` is allowed.
fn is_object_rodata(id: u32) -> bool {
    MapInfo::from_id(id).is_ok_and(|m| {
        m.name_as_str().is_some_and(|n| n.ends_with(".rodata"))
            && m.map_flags() & BPF_F_RDONLY_PROG != 0
    })
}

/// The `info` member of `union bpf_attr` (BPF_OBJ_GET_INFO_BY_FD).
#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// `struct bpf_link_info` up to its `cgroup` member, with room for the kernel's larger union members (which
/// must read back as zero past what this kernel fills in).
#[repr(C, align(8))]
struct LinkInfo {
    link_type: u32,
    id: u32,
    prog_id: u32,
    pad: u32,
    cgroup_id: u64,
    attach_type: u32,
    rest: [u32; 25],
}

fn link_info(fd: &OwnedFd) -> io::Result<LinkInfo> {
    let mut info = LinkInfo {
        link_type: 0,
        id: 0,
        prog_id: 0,
        pad: 0,
        cgroup_id: 0,
        attach_type: 0,
        rest: [0; 25],
    };
    let mut attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of::<LinkInfo>() as u32,
        info: &mut info as *mut LinkInfo as u64,
    };
    // SAFETY: `info` is a writable, zeroed buffer of `info_len` bytes that outlives the call.
    unsafe { bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr) }?;
    Ok(info)
}

/// Reads element 0 of the pinned array map at `path` (`value_size` bytes).
fn read_first(path: &Path, value_size: usize) -> io::Result<Vec<u8>> {
    let fd = obj_get(path)?;
    let key: u32 = 0;
    let mut value = vec![0u8; value_size];
    let mut attr = ElemAttr {
        map_fd: fd.as_raw_fd() as u32,
        key: &key as *const u32 as u64,
        value: value.as_mut_ptr() as u64,
        ..ElemAttr::default()
    };
    // SAFETY: key points to a u32 (the array's key size), value to `value_size` writable bytes (its value size).
    unsafe { bpf(BPF_MAP_LOOKUP_ELEM, &mut attr) }?;
    Ok(value)
}

const RECOVER: &str = "to recover, detach that dataplane (close({ detach: true }) from the build and cgroup root \
                       that pinned it), or remove the pin directory (`rm -r` of it unpins the links, which \
                       detaches their programs once no process holds them), or run the build that pinned it, \
                       or choose another pin directory";

fn refuse(pin_dir: &Path, reason: String) -> DataplaneError {
    DataplaneError::Adopt {
        path: pin_dir.to_path_buf(),
        reason: format!("{reason}; {RECOVER}"),
    }
}

/// Checks the pinned state under `pin_dir` (which has a `dp_config` pin) against this build and `cgroup_root`.
pub(crate) fn check(pin_dir: &Path, cgroup_root: &Path) -> Result<(), DataplaneError> {
    // 1. The layout.
    let config_pin = pins::map_pin(pin_dir, pins::CONFIG_MAP);
    let config_info = MapInfo::from_pin(&config_pin)
        .map_err(|e| refuse(pin_dir, format!("dp_config cannot be read: {e}")))?;
    if u64::from(config_info.value_size()) != c::DP_CONFIG_SIZE {
        return Err(refuse(
            pin_dir,
            format!(
                "it was pinned by a build with another map layout (dp_config holds {} bytes, this build's {})",
                config_info.value_size(),
                c::DP_CONFIG_SIZE
            ),
        ));
    }
    let config = read_first(&config_pin, c::DP_CONFIG_SIZE as usize)
        .map_err(|e| refuse(pin_dir, format!("dp_config cannot be read: {e}")))?;
    let off = abi::CONFIG_OFF_ABI_FINGERPRINT;
    let mut fp = [0u8; 8];
    fp.copy_from_slice(&config[off..off + 8]);
    let pinned = u64::from_ne_bytes(fp);
    if pinned != abi::ABI_FINGERPRINT {
        let what = if pinned == 0 {
            "it has no layout fingerprint (pinned by an older build, or by a load interrupted before it wrote one)"
                .to_string()
        } else {
            format!(
                "it was pinned by a build with another map layout (fingerprint {pinned:#018x}, this build's {:#018x})",
                abi::ABI_FINGERPRINT
            )
        };
        return Err(refuse(pin_dir, what));
    }

    // 2. Every map.
    let mut map_ids = HashSet::new();
    for name in pins::MAP_NAMES {
        let info = MapInfo::from_pin(pins::map_pin(pin_dir, name)).map_err(|e| {
            refuse(
                pin_dir,
                format!("map {name} is not pinned ({e}): the pinned state is incomplete"),
            )
        })?;
        map_ids.insert(info.id());
    }

    // 3. Every pinned link.
    let root_id = cgroup::cgroup_id(cgroup_root)?;
    for pins::LinkPins {
        name,
        attach_type: attach,
        link: link_path,
        prog: prog_path,
    } in pins::pinned_links(pin_dir)
    {
        if !link_path.exists() {
            continue; // a loader died before attaching this hook, or a layer is not attached: load() sees to it
        }
        let info = obj_get(&link_path)
            .and_then(|fd| link_info(&fd))
            .map_err(|e| {
                refuse(
                    pin_dir,
                    format!("{} cannot be read: {e}", link_path.display()),
                )
            })?;
        if info.link_type != BPF_LINK_TYPE_CGROUP || info.attach_type != attach {
            return Err(refuse(
                pin_dir,
                format!(
                    "{} is not a cgroup {name} link (link type {}, attach type {})",
                    link_path.display(),
                    info.link_type,
                    info.attach_type
                ),
            ));
        }
        if info.cgroup_id != root_id {
            let where_ = match cgroup::find_by_id(cgroup_root, info.cgroup_id).or_else(|| {
                super::mounts::cgroup2_root()
                    .ok()
                    .and_then(|m| cgroup::find_by_id(&m, info.cgroup_id))
            }) {
                Some(p) => format!("cgroup {} (id {})", p.display(), info.cgroup_id),
                None if info.cgroup_id == 0 => {
                    "no cgroup any more (its cgroup was removed)".to_string()
                }
                None => format!("cgroup id {}", info.cgroup_id),
            };
            return Err(refuse(
                pin_dir,
                format!(
                    "{} is attached to {where_}, not to the requested cgroup root {} (id {root_id}); load with \
                     that cgroup root to adopt it",
                    link_path.display(),
                    cgroup_root.display()
                ),
            ));
        }
        let prog = ProgramInfo::from_pin(&prog_path).map_err(|e| {
            refuse(
                pin_dir,
                format!("the program of {} is not pinned ({e})", link_path.display()),
            )
        })?;
        let prog_maps = prog.map_ids().ok().flatten().unwrap_or_default();
        if prog.id() != info.prog_id
            || prog_maps
                .iter()
                .any(|id| !map_ids.contains(id) && !is_object_rodata(*id))
        {
            return Err(refuse(
                pin_dir,
                format!(
                    "{} runs program {} with maps {prog_maps:?}, not the pinned program {} on the pinned maps",
                    link_path.display(),
                    info.prog_id,
                    prog.id()
                ),
            ));
        }
    }
    Ok(())
}
