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
//! 3. `dp_config` holds the requested cgroup root as the managed subtree (`subtree_id`), and every pinned link
//!    (of a sock_addr hook or of a bypass layer, `layers.rs`) is a cgroup link of its attach type, attached to
//!    the top of the cgroup2 mount that holds that root (`bpf_link_info.cgroup.cgroup_id` against its id),
//!    running the pinned program of that hook, whose maps are the pinned maps (and the object's own read-only
//!    `.rodata`, which is never pinned: the values the loader set before loading, e.g. `dp_sock_addr_storage`).
//!
//! Any mismatch is [`DataplaneError::Adopt`] with how to recover; nothing was changed.

use std::collections::HashSet;
use std::io;
use std::os::fd::AsFd;
use std::path::Path;

use aya::maps::MapInfo;
use aya::programs::ProgramInfo;
use aya_obj::generated::{bpf_link_type, BPF_F_RDONLY_PROG};

use super::abi::{self, c};
use super::cgroup;
use super::error::DataplaneError;
use super::pins;
use super::sys;

/// The link type of every link a pinned state holds.
const BPF_LINK_TYPE_CGROUP: u32 = bpf_link_type::BPF_LINK_TYPE_CGROUP as u32;

/// A map the programs use besides the pinned ones: only the object's own frozen `.rodata` is allowed
/// (`BPF_F_RDONLY_PROG`: the programs cannot write it; aya sets it on, and freezes, `.rodata`).
fn is_object_rodata(id: u32) -> bool {
    MapInfo::from_id(id).is_ok_and(|m| {
        m.name_as_str().is_some_and(|n| n.ends_with(".rodata"))
            && m.map_flags() & BPF_F_RDONLY_PROG != 0
    })
}

/// Reads element 0 of the pinned array map at `path` (`value_size` bytes).
fn read_first(path: &Path, value_size: usize) -> io::Result<Vec<u8>> {
    let fd = sys::obj_get(path)?;
    let key = 0u32.to_ne_bytes();
    let mut value = vec![0u8; value_size];
    // SAFETY: the key is a u32 (an array's key size), `value` holds `value_size` bytes: the caller passes the
    // map's value size, checked against MapInfo before.
    unsafe { sys::map::lookup_elem(fd.as_fd(), &key, &mut value) }?;
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
pub(crate) fn check(
    pin_dir: &Path,
    cgroup_root: &Path,
    attach_root: &Path,
) -> Result<(), DataplaneError> {
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

    // 3. The managed subtree, then every pinned link.
    let subtree_id = cgroup::cgroup_id(cgroup_root)?;
    let off = abi::CONFIG_OFF_SUBTREE_ID;
    let mut id = [0u8; 8];
    id.copy_from_slice(&config[off..off + 8]);
    let pinned_subtree = u64::from_ne_bytes(id);
    if pinned_subtree != subtree_id {
        let where_ = super::mounts::cgroup2_root()
            .ok()
            .and_then(|m| cgroup::find_by_id(&m, pinned_subtree))
            .map_or_else(
                || format!("cgroup id {pinned_subtree}"),
                |p| format!("{} (id {pinned_subtree})", p.display()),
            );
        return Err(refuse(
            pin_dir,
            format!(
                "it manages the cgroups below {where_}, not below the requested cgroup root {} (id {subtree_id}); \
                 load with that cgroup root to adopt it",
                cgroup_root.display()
            ),
        ));
    }
    let root_id = cgroup::cgroup_id(attach_root)?;
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
        let info = sys::obj_get(&link_path)
            .and_then(|fd| sys::link_info(fd.as_fd()))
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
            let where_ = match cgroup::find_by_id(attach_root, info.cgroup_id).or_else(|| {
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
                    "{} is attached to {where_}, not to {} (id {root_id}), the top of the cgroup2 mount this \
                     build attaches to",
                    link_path.display(),
                    attach_root.display()
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
