//! Rust mirrors of bpf/dataplane_abi.h. The numbers come from the header itself (build.rs generates
//! `dataplane_abi.rs` from its `#define`s), and every layout is checked against them at compile time.

use std::mem::{offset_of, size_of};

use crate::contract::hook::{Hook, Protocol};
use crate::contract::reason_codes::DataplaneReasonCode;

#[allow(dead_code, clippy::unreadable_literal)]
pub(crate) mod c {
    include!(concat!(env!("OUT_DIR"), "/dataplane_abi.rs"));
}

/// The eBPF object built by build.rs from bpf/dataplane.bpf.c.
pub(crate) static BPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/dataplane.bpf.o"));

/// The feature probes built from bpf/probes.bpf.c (crates/core/src/dataplane/layers.rs loads them, never attaches them).
pub(crate) static PROBES_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/probes.bpf.o"));

pub(crate) const MODE_INHERIT: u32 = c::DP_MODE_INHERIT as u32;
pub(crate) const MODE_ENFORCE: u32 = c::DP_MODE_ENFORCE as u32;
pub(crate) const MODE_OBSERVE: u32 = c::DP_MODE_OBSERVE as u32;
pub(crate) const FAIL_CLOSED: u32 = c::DP_FAIL_CLOSED as u32;
pub(crate) const FAIL_OPEN: u32 = c::DP_FAIL_OPEN as u32;
pub(crate) const ACTION_ALLOW: u8 = c::DP_ACTION_ALLOW as u8;
pub(crate) const ACTION_DENY: u8 = c::DP_ACTION_DENY as u8;
pub(crate) const ACTION_DNS: u8 = c::DP_ACTION_DNS as u8;
pub(crate) const ACTION_BROKER: u8 = c::DP_ACTION_BROKER as u8;
pub(crate) const FAMILY_INET: u8 = c::DP_FAMILY_INET as u8;
pub(crate) const FAMILY_INET6: u8 = c::DP_FAMILY_INET6 as u8;
pub(crate) const RULE_INDEX_NONE: u32 = c::DP_RULE_INDEX_NONE as u32;
pub(crate) const ID_BYTES: usize = c::DP_ID_BYTES as usize;
pub(crate) const FAMILY_NONE: u8 = c::DP_FAMILY_NONE as u8;
pub(crate) const LAYER_FLAG_EGRESS: u32 = c::DP_LAYER_F_EGRESS as u32;
pub(crate) const LAYER_FLAG_MARKS: u32 = c::DP_LAYER_F_MARKS as u32;
pub(crate) const GROUP_INLINE: usize = c::DP_GROUP_INLINE as usize;
/// This build's map layout: build.rs hashes bpf/dataplane_abi.h and bpf/policy_lookup.h into it.
pub(crate) const ABI_FINGERPRINT: u64 = c::DP_ABI_FINGERPRINT;

/// The index of `(hook, reason)` in dp_verdicts (bpf/dataplane_maps.h, `count_verdict`).
pub(crate) const fn verdict_index(hook: Hook, reason: DataplaneReasonCode) -> u32 {
    hook as u32 * c::DP_VERDICT_REASONS as u32 + reason.value()
}

// Every hook and reason code has its room in dp_verdicts. Both lists are dense from 1 (hook.rs and
// reason_codes.rs test it), so the last one is the largest.
const _: () = assert!(c::DP_VERDICT_HOOKS * c::DP_VERDICT_REASONS == c::DP_VERDICT_COUNTERS);
const _: () = assert!((Hook::ALL[Hook::ALL.len() - 1] as u64) < c::DP_VERDICT_HOOKS);
const _: () = assert!(
    (DataplaneReasonCode::ALL[DataplaneReasonCode::ALL.len() - 1].value() as u64)
        < c::DP_VERDICT_REASONS
);

// The hook and protocol numbers the programs write are the contract's.
const _: () = assert!(c::DP_HOOK_CONNECT4 == Hook::Connect4 as u64);
const _: () = assert!(c::DP_HOOK_CONNECT6 == Hook::Connect6 as u64);
const _: () = assert!(c::DP_HOOK_SENDMSG4 == Hook::Sendmsg4 as u64);
const _: () = assert!(c::DP_HOOK_SENDMSG6 == Hook::Sendmsg6 as u64);
const _: () = assert!(c::DP_PROTO_TCP == Protocol::Tcp as u64);
const _: () = assert!(c::DP_PROTO_UDP == Protocol::Udp as u64);
const _: () = assert!(c::DP_HOOK_SOCK_CREATE == Hook::SockCreate as u64);
const _: () = assert!(c::DP_HOOK_SOCKET_CREATE_LSM == Hook::SocketCreateLsm as u64);
const _: () = assert!(c::DP_HOOK_EGRESS == Hook::Egress as u64);
const _: () = assert!(c::DP_PROTO_ICMP == Protocol::Icmp as u64);
const _: () = assert!(c::DP_PROTO_UDPLITE == Protocol::Udplite as u64);
const _: () = assert!(c::DP_PROTO_RAW == Protocol::Raw as u64);
const _: () = assert!(c::DP_PROTO_PACKET == Protocol::Packet as u64);
const _: () = assert!(c::DP_PROTO_XDP == Protocol::Xdp as u64);
const _: () = assert!(c::DP_AF_PACKET == libc::AF_PACKET as u64);
// AF_XDP is 44 in include/linux/socket.h (libc does not define it for every target libc).
const _: () = assert!(c::DP_AF_XDP == 44);
const _: () = assert!(c::DP_SOCK_STREAM == libc::SOCK_STREAM as u64);
const _: () = assert!(c::DP_SOCK_DGRAM == libc::SOCK_DGRAM as u64);
const _: () = assert!(c::DP_SOCK_RAW == libc::SOCK_RAW as u64);
const _: () = assert!(c::DP_IPPROTO_ICMPV6 == libc::IPPROTO_ICMPV6 as u64);
const _: () = assert!(c::DP_IPPROTO_MPTCP == libc::IPPROTO_MPTCP as u64);
const _: () = assert!(c::DP_PROTO_ICMP == libc::IPPROTO_ICMP as u64);
const _: () = assert!(c::DP_FAMILY_INET == libc::AF_INET as u64);
const _: () = assert!(c::DP_FAMILY_INET6 == libc::AF_INET6 as u64);
// Entries of a group sort by descending action: broker, DNS, deny, allow (the first match decides).
const _: () =
    assert!(ACTION_BROKER > ACTION_DNS && ACTION_DNS > ACTION_DENY && ACTION_DENY > ACTION_ALLOW);

/// `struct dp_config`: the mmap-ed global configuration.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Config {
    pub heartbeat_ns: u64,
    pub grace_ns: u64,
    pub active_slot: u32,
    pub global_mode: u32,
    pub fail_mode: u32,
    pub reserved: u32,
    pub abi_fingerprint: u64,
    pub epoch: u64,
    pub subtree_id: u64,
    pub dns_proxy_ip4: u32,
    pub dns_proxy_port: u16,
    pub pad: u16,
    pub dns_proxy_ip6: [u32; 4],
}
const _: () = assert!(size_of::<Config>() as u64 == c::DP_CONFIG_SIZE);
pub(crate) const CONFIG_OFF_HEARTBEAT: usize = offset_of!(Config, heartbeat_ns);
pub(crate) const CONFIG_OFF_GRACE: usize = offset_of!(Config, grace_ns);
pub(crate) const CONFIG_OFF_ACTIVE_SLOT: usize = offset_of!(Config, active_slot);
pub(crate) const CONFIG_OFF_GLOBAL_MODE: usize = offset_of!(Config, global_mode);
pub(crate) const CONFIG_OFF_FAIL_MODE: usize = offset_of!(Config, fail_mode);
pub(crate) const CONFIG_OFF_ABI_FINGERPRINT: usize = offset_of!(Config, abi_fingerprint);
pub(crate) const CONFIG_OFF_EPOCH: usize = offset_of!(Config, epoch);
pub(crate) const CONFIG_OFF_SUBTREE_ID: usize = offset_of!(Config, subtree_id);
pub(crate) const CONFIG_OFF_DNS_PROXY_IP4: usize = offset_of!(Config, dns_proxy_ip4);
/// The proxy's port shares one aligned 32-bit word with its padding (written with one store).
pub(crate) const CONFIG_OFF_DNS_PROXY_PORT: usize = offset_of!(Config, dns_proxy_port);
pub(crate) const CONFIG_OFF_DNS_PROXY_IP6: usize = offset_of!(Config, dns_proxy_ip6);
const _: () = assert!(CONFIG_OFF_DNS_PROXY_PORT.is_multiple_of(4));

pub(crate) const V4_LENGTHS_ROOM: usize = c::DP_V4_LENGTHS_ROOM as usize;
pub(crate) const V6_LENGTHS_ROOM: usize = c::DP_V6_LENGTHS_ROOM as usize;

/// `struct dp_slot_meta`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SlotMeta {
    pub generation: u64,
    pub allow_one_in: u32,
    pub unmanaged_one_in: u32,
    pub ipv4_rules: u32,
    pub ipv6_rules: u32,
    pub broker_endpoints: u32,
    pub dns_endpoints: u32,
    pub n_len4: u8,
    pub n_len6: u8,
    pub steer_dns: u8,
    pub pad: [u8; 5],
    pub len4: [u8; V4_LENGTHS_ROOM],
    pub len6: [u8; V6_LENGTHS_ROOM],
}
const _: () = assert!(size_of::<SlotMeta>() as u64 == c::DP_SLOT_META_SIZE);

impl Default for SlotMeta {
    fn default() -> Self {
        SlotMeta {
            generation: 0,
            allow_one_in: 0,
            unmanaged_one_in: 0,
            ipv4_rules: 0,
            ipv6_rules: 0,
            broker_endpoints: 0,
            dns_endpoints: 0,
            n_len4: 0,
            n_len6: 0,
            steer_dns: 0,
            pad: [0; 5],
            len4: [0; V4_LENGTHS_ROOM],
            len6: [0; V6_LENGTHS_ROOM],
        }
    }
}

/// `struct dp_managed`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct Managed {
    pub mode: u32,
    pub reserved: u32,
    pub workload_id: [u8; ID_BYTES],
}
const _: () = assert!(size_of::<Managed>() as u64 == c::DP_MANAGED_SIZE);

/// `struct dp_key4`: slot, prefix length, address masked to it (network order bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Key4 {
    pub slot: u8,
    pub prefix_len: u8,
    pub pad: u16,
    pub addr: [u8; 4],
}
const _: () = assert!(size_of::<Key4>() as u64 == c::DP_KEY4_SIZE);

/// `struct dp_key6`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Key6 {
    pub slot: u8,
    pub prefix_len: u8,
    pub pad: u16,
    pub addr: [u8; 16],
}
const _: () = assert!(size_of::<Key6>() as u64 == c::DP_KEY6_SIZE);

/// `struct dp_rule_entry`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RuleEntry {
    pub port_lo: u16,
    pub port_hi: u16,
    pub protocol: u8,
    pub action: u8,
    pub reserved: u16,
    pub rule_index: u32,
}
const _: () = assert!(size_of::<RuleEntry>() as u64 == c::DP_RULE_ENTRY_SIZE);

/// `struct dp_group`: the entries of one CIDR (or host), inline when at most GROUP_INLINE.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Group {
    pub count: u32,
    pub first: u32,
    pub entries: [RuleEntry; GROUP_INLINE],
}
const _: () = assert!(size_of::<Group>() as u64 == c::DP_GROUP_SIZE);

/// `struct dp_id`: a NUL-padded rule id.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IdSlot {
    pub bytes: [u8; ID_BYTES],
}
const _: () = assert!(size_of::<IdSlot>() as u64 == c::DP_ID_BYTES);

/// `struct dp_event`: one ring buffer record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RawEvent {
    pub monotonic_ns: u64,
    pub cgroup_id: u64,
    pub managed_cgroup_id: u64,
    pub policy_generation: u64,
    pub tgid: u32,
    pub uid: u32,
    pub reason: u32,
    pub rule_index: u32,
    pub dst_addr: [u8; 16],
    pub comm: [u8; 16],
    pub dst_port: u16,
    pub hook: u8,
    pub protocol: u8,
    pub family: u8,
    pub verdict: u8,
    pub pad: [u8; 2],
}
const _: () = assert!(size_of::<RawEvent>() as u64 == c::DP_EVENT_SIZE);
const _: () = assert!(offset_of!(RawEvent, monotonic_ns) as u64 == c::DP_EVENT_OFF_MONOTONIC_NS);
const _: () = assert!(offset_of!(RawEvent, cgroup_id) as u64 == c::DP_EVENT_OFF_CGROUP_ID);
const _: () =
    assert!(offset_of!(RawEvent, managed_cgroup_id) as u64 == c::DP_EVENT_OFF_MANAGED_CGROUP_ID);
const _: () =
    assert!(offset_of!(RawEvent, policy_generation) as u64 == c::DP_EVENT_OFF_POLICY_GENERATION);
const _: () = assert!(offset_of!(RawEvent, tgid) as u64 == c::DP_EVENT_OFF_TGID);
const _: () = assert!(offset_of!(RawEvent, uid) as u64 == c::DP_EVENT_OFF_UID);
const _: () = assert!(offset_of!(RawEvent, reason) as u64 == c::DP_EVENT_OFF_REASON);
const _: () = assert!(offset_of!(RawEvent, rule_index) as u64 == c::DP_EVENT_OFF_RULE_INDEX);
const _: () = assert!(offset_of!(RawEvent, dst_addr) as u64 == c::DP_EVENT_OFF_DST_ADDR);
const _: () = assert!(offset_of!(RawEvent, comm) as u64 == c::DP_EVENT_OFF_COMM);
const _: () = assert!(offset_of!(RawEvent, dst_port) as u64 == c::DP_EVENT_OFF_DST_PORT);
const _: () = assert!(offset_of!(RawEvent, hook) as u64 == c::DP_EVENT_OFF_HOOK);
const _: () = assert!(offset_of!(RawEvent, protocol) as u64 == c::DP_EVENT_OFF_PROTOCOL);
const _: () = assert!(offset_of!(RawEvent, family) as u64 == c::DP_EVENT_OFF_FAMILY);
const _: () = assert!(offset_of!(RawEvent, verdict) as u64 == c::DP_EVENT_OFF_VERDICT);

/// `struct dp_layer_state`: flags and the mark epoch of the bypass layers.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LayerState {
    pub mark_epoch: u32,
    pub flags: u32,
}
const _: () = assert!(size_of::<LayerState>() as u64 == c::DP_LAYER_STATE_SIZE);

pub(crate) const LEARNED_INLINE: usize = c::DP_LEARNED_INLINE as usize;
pub(crate) const DNS_NAME_BYTES: usize = c::DP_DNS_NAME_BYTES as usize;

/// `struct dp_learned_key`: (managed cgroup, address, slot) of an address learned from a DNS answer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct LearnedKey {
    pub managed_id: u64,
    pub addr: [u8; 16],
    pub slot: u8,
    pub v4: u8,
    pub pad: [u8; 6],
}
const _: () = assert!(size_of::<LearnedKey>() as u64 == c::DP_LEARNED_KEY_SIZE);

/// `struct dp_learned`: the entries a learned address is judged by, its expiry and the name that taught it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct Learned {
    pub expires_ns: u64,
    pub count: u32,
    pub pad: u32,
    pub entries: [RuleEntry; LEARNED_INLINE],
    pub name: [u8; DNS_NAME_BYTES],
}
const _: () = assert!(size_of::<Learned>() as u64 == c::DP_LEARNED_SIZE);

/// `struct dp_dns_flow`: a steered socket's intended resolver and its cgroups.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct DnsFlow {
    pub addr: [u8; 16],
    pub port: u16,
    pub family: u8,
    pub mapped: u8,
    pub pad: u32,
    pub cgroup_id: u64,
    pub managed_id: u64,
}
const _: () = assert!(size_of::<DnsFlow>() as u64 == c::DP_DNS_FLOW_SIZE);

// SAFETY: every type below is #[repr(C)], made only of integers and byte arrays with explicit padding fields, so
// every bit pattern is valid and there are no implicit padding bytes (checked by the size asserts above).
unsafe impl aya::Pod for SlotMeta {}
// SAFETY: see above.
unsafe impl aya::Pod for Managed {}
// SAFETY: see above.
unsafe impl aya::Pod for Key4 {}
// SAFETY: see above.
unsafe impl aya::Pod for Key6 {}
// SAFETY: see above.
unsafe impl aya::Pod for RuleEntry {}
// SAFETY: see above.
unsafe impl aya::Pod for Group {}
// SAFETY: see above.
unsafe impl aya::Pod for IdSlot {}
// SAFETY: see above.
unsafe impl aya::Pod for LayerState {}
// SAFETY: see above.
unsafe impl aya::Pod for LearnedKey {}
// SAFETY: see above.
unsafe impl aya::Pod for Learned {}
// SAFETY: see above.
unsafe impl aya::Pod for DnsFlow {}

impl RawEvent {
    /// Copies a record out of the ring buffer; `None` when the length is not the record size.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<RawEvent> {
        if bytes.len() != size_of::<RawEvent>() {
            return None;
        }
        // SAFETY: the length equals size_of::<RawEvent>(), RawEvent is plain old data (any bit pattern is valid)
        // and read_unaligned does not require the ring buffer slice to be aligned.
        Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<RawEvent>()) })
    }
}
