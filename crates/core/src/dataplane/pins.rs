//! Every path under the pin directory, in one place: the maps (pinned by name, aya's `default_map_pin_directory`),
//! and for each program its link `link_<name>` and its program `prog_<name>` (`<name>`: the hook's or layer's
//! wire name). [`pinned_links`] lists every link a pinned state may hold (the adoption check reads it), and
//! [`remove_pins`] removes a whole pinned state.

use std::path::{Path, PathBuf};

use aya::programs::links::PinnedLink;
use aya_obj::generated::bpf_attach_type::{
    BPF_CGROUP_INET4_CONNECT, BPF_CGROUP_INET4_GETPEERNAME, BPF_CGROUP_INET6_CONNECT,
    BPF_CGROUP_INET6_GETPEERNAME, BPF_CGROUP_INET_EGRESS, BPF_CGROUP_INET_SOCK_CREATE,
    BPF_CGROUP_UDP4_RECVMSG, BPF_CGROUP_UDP4_SENDMSG, BPF_CGROUP_UDP6_RECVMSG,
    BPF_CGROUP_UDP6_SENDMSG, BPF_LSM_CGROUP,
};

use super::error::DataplaneError;
use crate::contract::hook::Hook;
use crate::contract::layer::Layer;

/// The pin directory under the bpffs root when the options name none.
pub(crate) const PIN_DIR_NAME: &str = "broker-interceptor-ebpf";

/// The map whose pin marks an existing state to adopt.
pub(crate) const CONFIG_MAP: &str = "dp_config";

/// Every map the programs and the loader use, by pin name. `dp_config` first: its pin marks a state to adopt.
pub(crate) const MAP_NAMES: [&str; 14] = [
    CONFIG_MAP,
    "dp_slot_meta",
    "dp_groups4",
    "dp_groups6",
    "dp_entries",
    "dp_managed",
    "dp_events",
    "dp_counters",
    // Every verdict by (hook, reason code) (crates/core/src/dataplane/verdict_counters.rs).
    "dp_verdicts",
    // The bypass layers' (bpf/socket_marks.h); the sock_addr programs use them too.
    "dp_layer_state",
    "dp_layer_counters",
    // Each socket's storage record: its cached verdict and its mark (struct dp_sk_state).
    "dp_sk_state",
    // Rules by name (bpf/dns_steering.h): learned addresses and steered sockets.
    "dp_learned",
    "dp_dns_flows",
];

/// The pin of map `name` (one of [`MAP_NAMES`]).
pub(crate) fn map_pin(pin_dir: &Path, name: &str) -> PathBuf {
    pin_dir.join(name)
}

/// The pin of the bpf_link of program `name` (a hook's or a layer's wire name).
pub(crate) fn link_pin(pin_dir: &Path, name: &str) -> PathBuf {
    pin_dir.join(format!("link_{name}"))
}

/// The pin of program `name` (a hook's or a layer's wire name).
pub(crate) fn prog_pin(pin_dir: &Path, name: &str) -> PathBuf {
    pin_dir.join(format!("prog_{name}"))
}

/// A link a pinned state may hold: its program's name, the attach type its link must have, and both pins.
pub(crate) struct LinkPins {
    pub name: &'static str,
    pub attach_type: u32,
    pub link: PathBuf,
    pub prog: PathBuf,
}

/// Every link a pinned state may hold: the four sock_addr hooks', then the bypass layers' (socket storage has
/// no program of its own).
pub(crate) fn pinned_links(pin_dir: &Path) -> Vec<LinkPins> {
    let hooks = [
        (Hook::Connect4.as_str(), BPF_CGROUP_INET4_CONNECT as u32),
        (Hook::Connect6.as_str(), BPF_CGROUP_INET6_CONNECT as u32),
        (Hook::Sendmsg4.as_str(), BPF_CGROUP_UDP4_SENDMSG as u32),
        (Hook::Sendmsg6.as_str(), BPF_CGROUP_UDP6_SENDMSG as u32),
        // The return path of DNS steering (loader.rs, DNS_RETURN_PROGRAMS).
        ("dns_recvmsg4", BPF_CGROUP_UDP4_RECVMSG as u32),
        ("dns_recvmsg6", BPF_CGROUP_UDP6_RECVMSG as u32),
        ("dns_getpeername4", BPF_CGROUP_INET4_GETPEERNAME as u32),
        ("dns_getpeername6", BPF_CGROUP_INET6_GETPEERNAME as u32),
    ];
    let layers = [
        (
            Layer::SockCreate.as_str(),
            BPF_CGROUP_INET_SOCK_CREATE as u32,
        ),
        (Layer::SocketCreateLsm.as_str(), BPF_LSM_CGROUP as u32),
        (Layer::Egress.as_str(), BPF_CGROUP_INET_EGRESS as u32),
    ];
    hooks
        .into_iter()
        .chain(layers)
        .map(|(name, attach_type)| LinkPins {
            name,
            attach_type,
            link: link_pin(pin_dir, name),
            prog: prog_pin(pin_dir, name),
        })
        .collect()
}

/// Removes a program pin left by a loader that died between pinning the program and pinning its link.
pub(crate) fn remove_stale_prog_pin(prog_pin: &Path) -> Result<(), DataplaneError> {
    if prog_pin.exists() {
        std::fs::remove_file(prog_pin).map_err(|e| DataplaneError::io("remove", prog_pin, e))?;
    }
    Ok(())
}

/// Unpins (and so detaches) the link of program `name` and removes its program pin: a layer the options now
/// disable leaves an adopted state this way.
pub(crate) fn remove_program_pins(pin_dir: &Path, name: &str) -> Result<(), DataplaneError> {
    let link_pin = link_pin(pin_dir, name);
    if link_pin.exists() {
        let link = PinnedLink::from_pin(&link_pin).map_err(|e| DataplaneError::Adopt {
            path: link_pin.clone(),
            reason: format!("reopen {name}: {e}"),
        })?;
        // Dropping the last fd of an unpinned bpf_link detaches the program.
        let fd_link = link.unpin().map_err(|e| DataplaneError::Adopt {
            path: link_pin.clone(),
            reason: format!("unpin {name}: {e}"),
        })?;
        drop(fd_link);
    }
    remove_stale_prog_pin(&prog_pin(pin_dir, name))
}

/// A pin directory without `dp_config` must be empty: anything else there is a load that stopped half way, or
/// something that is not ours, and adopting a part of it would be a half-adopted dataplane.
pub(crate) fn refuse_leftovers(pin_dir: &Path) -> Result<(), DataplaneError> {
    let entries =
        std::fs::read_dir(pin_dir).map_err(|e| DataplaneError::io("read_dir", pin_dir, e))?;
    let names: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    Err(DataplaneError::Adopt {
        path: pin_dir.to_path_buf(),
        reason: format!(
            "it holds {names:?} but no dp_config: an interrupted load or something that is not a dataplane; \
             remove the pin directory (`rm -r` of it) or choose another one"
        ),
    })
}

/// Removes every pin under `dir` (maps, programs, links) and the directory itself.
pub(crate) fn remove_pins(dir: &Path) -> Result<(), DataplaneError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(DataplaneError::io("read_dir", dir, e)),
    };
    for entry in entries {
        let path = entry
            .map_err(|e| DataplaneError::io("read_dir", dir, e))?
            .path();
        std::fs::remove_file(&path).map_err(|e| DataplaneError::io("remove", &path, e))?;
    }
    std::fs::remove_dir(dir).map_err(|e| DataplaneError::io("rmdir", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_program_with_a_link_has_distinct_pins() {
        let dir = Path::new("/sys/fs/bpf/x");
        let links = pinned_links(dir);
        let sock_addr: Vec<&str> = Hook::SOCK_ADDR.iter().map(|h| h.as_str()).collect();
        let layers: Vec<&str> = Layer::ALL
            .iter()
            .filter(|l| **l != Layer::SocketStorage)
            .map(|l| l.as_str())
            .collect();
        let names: Vec<&str> = links.iter().map(|l| l.name).collect();
        let dns = [
            "dns_recvmsg4",
            "dns_recvmsg6",
            "dns_getpeername4",
            "dns_getpeername6",
        ];
        assert_eq!(names, [sock_addr, dns.to_vec(), layers].concat());
        let mut paths: Vec<&PathBuf> = links.iter().flat_map(|l| [&l.link, &l.prog]).collect();
        paths.sort();
        paths.dedup();
        assert_eq!(paths.len(), 2 * links.len());
        assert_eq!(link_pin(dir, "egress"), dir.join("link_egress"));
        assert_eq!(prog_pin(dir, "connect4"), dir.join("prog_connect4"));
    }
}
