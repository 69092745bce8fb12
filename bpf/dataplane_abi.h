/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The one definition of every structure and constant shared by the eBPF programs (bpf/dataplane.bpf.c,
 * bpf/policy_lookup.h) and the Rust loader (crates/core/src/dataplane/abi.rs). build.rs turns every
 * `#define DP_<NAME> <integer>` line of this file into a Rust constant, and abi.rs checks at compile time that the
 * Rust mirrors have the sizes and offsets below and that the hook and protocol values equal
 * crates/core/src/contract/hook.rs. Keep each define on one line with a plain integer.
 *
 * Pinned state is adopted only by a build with the same layout: build.rs derives DP_ABI_FINGERPRINT from the bytes
 * of this header and of policy_lookup.h, the loader stores it in dp_config when it creates the maps and refuses to
 * adopt a pin directory holding another value. Bump DP_ABI_VERSION when dataplane.bpf.c changes what the maps
 * mean without touching either header, so the fingerprint changes too.
 */
#ifndef BROKER_INTERCEPTOR_EBPF_DATAPLANE_ABI_H
#define BROKER_INTERCEPTOR_EBPF_DATAPLANE_ABI_H

#include <linux/types.h>

#define DP_ABI_VERSION 3

/* Hooks and protocols: the values of crates/core/src/contract/hook.rs (checked from Rust). */
#define DP_HOOK_CONNECT4 1
#define DP_HOOK_CONNECT6 2
#define DP_HOOK_SENDMSG4 3
#define DP_HOOK_SENDMSG6 4
#define DP_PROTO_TCP 6
#define DP_PROTO_UDP 17
/* ICMP ping sockets (IPPROTO_ICMP); an ICMPv6 ping socket reports IPPROTO_ICMPV6, folded into this value. */
#define DP_PROTO_ICMP 1
#define DP_IPPROTO_ICMPV6 58

/* Address families as written into events (the kernel's AF_INET / AF_INET6). */
#define DP_FAMILY_INET 2
#define DP_FAMILY_INET6 10

/* Modes: a managed entry's mode 0 inherits the global mode. */
#define DP_MODE_INHERIT 0
#define DP_MODE_ENFORCE 1
#define DP_MODE_OBSERVE 2
#define DP_FAIL_CLOSED 0
#define DP_FAIL_OPEN 1

/* What a group entry decides. Within a group, entries are sorted by descending action: broker, DNS, deny,
 * allow; the first entry matching port and protocol decides (so broker beats DNS beats every rule, and deny wins
 * a tie between rules of the same prefix). Broker and DNS entries exist only in host groups (/32, /128). */
#define DP_ACTION_ALLOW 1
#define DP_ACTION_DENY 2
#define DP_ACTION_DNS 3
#define DP_ACTION_BROKER 4
#define DP_VERDICT_DENY 0
#define DP_VERDICT_ALLOW 1

/* Capacities. Policy data lives in two slots (the active one and the one being written). */
#define DP_SLOTS 2
/* Kernel rule entries (rules x port ranges) of one family in one snapshot. */
#define DP_RULE_ENTRIES_PER_FAMILY 131072
/* Broker and DNS entries (broker = 1, DNS = 2: udp and tcp) of one snapshot. */
#define DP_ENDPOINTS_PER_SLOT 8192
/* Rule + endpoint entries of one family in one slot: that family's share of the overflow array. */
#define DP_ENTRIES_PER_FAMILY 139264
/* A slot's overflow entries (its dp_entries map): index = (v6 ? DP_ENTRIES_PER_FAMILY : 0) + i. */
#define DP_ENTRY_SLOT_ENTRIES 278528
/* Distinct rule CIDRs of one family in one snapshot. */
#define DP_PREFIXES_PER_FAMILY 131072
/* Groups of one family in one slot (the capacity of one slot's group map): every CIDR plus every endpoint host. */
#define DP_GROUPS_PER_FAMILY 139264
/* Entries of one group (rules x port ranges of one CIDR, plus the endpoints of a host). */
#define DP_ENTRIES_PER_PREFIX 1024
/* A group of at most this many entries carries them in its own value: one map lookup decides it. */
#define DP_GROUP_INLINE 4
#define DP_RULE_IDS_PER_SLOT 262144
#define DP_MANAGED_CGROUPS 65536
#define DP_MAX_CGROUP_LEVELS 64
#define DP_ID_BYTES 64
#define DP_RULE_INDEX_NONE 4294967295
/* Prefix lengths a family can hold (0..32, 0..128), and the room reserved for their list in dp_slot_meta: a power
 * of two, so a program indexes it with a mask the verifier can see is in bounds. */
#define DP_V4_LENGTHS 33
#define DP_V6_LENGTHS 129
#define DP_V4_LENGTHS_ROOM 64
#define DP_V6_LENGTHS_ROOM 256

#define DP_COUNTER_EVENTS_EMITTED 0
#define DP_COUNTER_RINGBUF_FULL 1
/* Not a count: the per-CPU word a program's ordering fetch-add targets (see dataplane.bpf.c, order_after). */
#define DP_COUNTER_BARRIER 2
#define DP_COUNTERS 3

/* dp_verdicts (per CPU): one count per (hook, reason code), at index hook * DP_VERDICT_REASONS + reason. Room for
 * every value of Hook (crates/core/src/contract/hook.rs) and DataplaneReasonCode (reason_codes.rs), both of which
 * only grow: crates/core/src/dataplane/abi.rs checks at compile time that each list fits. */
#define DP_VERDICT_HOOKS 16
#define DP_VERDICT_REASONS 32
#define DP_VERDICT_COUNTERS 512

/* Global configuration: one value of an mmap-able array. User space writes each field with one aligned atomic
 * store through the mapping, so a program never reads a torn field. */
struct dp_config {
	__u64 heartbeat_ns; /* CLOCK_MONOTONIC ns of the last agent beat (the base of bpf_ktime_get_coarse_ns) */
	__u64 grace_ns;
	__u32 active_slot; /* 0 or 1: the only value a replacement flips */
	__u32 global_mode; /* DP_MODE_ENFORCE or DP_MODE_OBSERVE */
	__u32 fail_mode;   /* DP_FAIL_CLOSED or DP_FAIL_OPEN */
	__u32 reserved;
	__u64 abi_fingerprint; /* DP_ABI_FINGERPRINT of the build that created the maps; programs never read it */
	/* Bumped by user space after every change a verdict depends on (a policy flip, a managed-cgroup entry or
	 * mode, the global or fail mode): a socket's cached verdict is used only while the epoch is unchanged. */
	__u64 epoch;
	/* The cgroup id of the managed subtree's root (the options' cgroupRoot). The programs are attached at the
	 * root of the cgroup2 hierarchy, so they run for every socket of the host; only cgroups below this one can
	 * be managed, and the managed-cgroup walk looks up none of the ancestors above it. Set before attaching. */
	__u64 subtree_id;
	/* The agent's DNS proxy (SPEC 4b, docs/dataplane.md "Rules by name"): where a managed workload's DNS traffic
	 * is steered when the active policy names destinations by DNS name. Network order; port 0: no proxy, nothing
	 * is steered (a dataplane without one refuses such a policy). Set by user space before such a policy. */
	__u32 dns_proxy_ip4;
	__u16 dns_proxy_port;
	__u16 pad;
	__u32 dns_proxy_ip6[4];
};
#define DP_CONFIG_SIZE 80

/* Per-slot metadata, written before the slot becomes active. generation 0: the slot never held a policy.
 * len4/len6 list the prefix lengths present in the slot's groups, longest first: the walk looks up only those. */
struct dp_slot_meta {
	__u64 generation;
	__u32 allow_one_in;
	__u32 unmanaged_one_in;
	__u32 ipv4_rules;
	__u32 ipv6_rules;
	__u32 broker_endpoints;
	__u32 dns_endpoints;
	__u8 n_len4;
	__u8 n_len6;
	__u8 steer_dns; /* 1: the policy names destinations by DNS name, or refuses queries (SPEC 4b) */
	__u8 pad[5];
	__u8 len4[DP_V4_LENGTHS_ROOM];
	__u8 len6[DP_V6_LENGTHS_ROOM];
};
#define DP_SLOT_META_SIZE 360

/* A managed cgroup (key: cgroup id). The workload id is NUL-padded, for user space only. */
struct dp_managed {
	__u32 mode;
	__u32 reserved;
	__u8 workload_id[64];
};
#define DP_MANAGED_SIZE 72

/* Group keys: the slot (also the slot of the map holding them), the prefix length and the address masked to it
 * (network order). */
struct dp_key4 {
	__u8 slot;
	__u8 prefix_len;
	__u16 pad;
	__u32 addr;
};
#define DP_KEY4_SIZE 8

struct dp_key6 {
	__u8 slot;
	__u8 prefix_len;
	__u16 pad;
	__u32 addr[4];
};
#define DP_KEY6_SIZE 20

/* One entry: a port range, a protocol (0 = any) and an action. A policy rule with several ports becomes several
 * entries carrying the same rule_index; broker and DNS entries carry DP_RULE_INDEX_NONE. */
struct dp_rule_entry {
	__u16 port_lo;
	__u16 port_hi;
	__u8 protocol;
	__u8 action;
	__u16 reserved;
	__u32 rule_index;
};
#define DP_RULE_ENTRY_SIZE 12

/* The entries of one CIDR (and, for a host, its broker/DNS endpoints), sorted by descending action. Up to
 * DP_GROUP_INLINE of them live in `entries`; a larger group keeps all of them in dp_entries from `first`. */
struct dp_group {
	__u32 count;
	__u32 first;
	struct dp_rule_entry entries[DP_GROUP_INLINE];
};
#define DP_GROUP_SIZE 56

/* The last verdict of a UDP socket (socket-local storage, kernel only): reused for the next connect/sendmsg of
 * the same caller cgroup, hook and destination while dp_config.epoch is unchanged and jiffies has not reached
 * fresh_until_jiffies, a bound that ends before the heartbeat's grace period can (dataplane.bpf.c, run). The
 * fields a reuse compares and needs come first, so a reuse that reports nothing reads one cache line. */
struct dp_sk_verdict {
	__u64 epoch;
	__u64 fresh_until_jiffies;
	__u64 cgroup_id;
	__u32 addr[4]; /* as judged: IPv4 (also of a mapped IPv6 destination) in addr[0] */
	__u32 reason;
	__u32 sample_one_in; /* events: 1 = always, 0 = never, n = 1 in n */
	__u16 port;
	__u8 hook;
	__u8 judge_v4;
	__u32 rule_index;
	__u64 managed_cgroup_id;
	__u64 generation;
	__u8 outside; /* the caller was outside the managed subtree: no count, no event */
	__u8 pad[7];
};
#define DP_SK_VERDICT_SIZE 80

/* The longest scheduler tick Linux can be built with (CONFIG_HZ=100): a count of jiffies spans at most this many
 * nanoseconds each, so a jiffies bound computed with it never outlasts the time it stands for on any CONFIG_HZ. */
#define DP_MAX_TICK_NS 10000000

/* A rule id (NUL-padded) in user space's rule_index -> rule_id table. */
struct dp_id {
	__u8 bytes[64];
};

/* One verdict record in the ring buffer. */
struct dp_event {
	__u64 monotonic_ns;
	__u64 cgroup_id;         /* the caller's own cgroup */
	__u64 managed_cgroup_id; /* the managed entry that matched, 0 when unmanaged */
	__u64 policy_generation; /* generation of the slot that decided, 0 when none was loaded */
	__u32 tgid;
	__u32 uid;
	__u32 reason;     /* broker_dataplane_verdict_reason_code_t */
	__u32 rule_index; /* DP_RULE_INDEX_NONE unless a rule decided */
	__u8 dst_addr[16]; /* as the caller wrote it; IPv4 in the first 4 bytes */
	__u8 comm[16];
	__u16 dst_port; /* host order */
	__u8 hook;
	__u8 protocol;
	__u8 family;
	__u8 verdict;
	__u8 pad[2];
};
#define DP_EVENT_SIZE 88
#define DP_EVENT_OFF_MONOTONIC_NS 0
#define DP_EVENT_OFF_CGROUP_ID 8
#define DP_EVENT_OFF_MANAGED_CGROUP_ID 16
#define DP_EVENT_OFF_POLICY_GENERATION 24
#define DP_EVENT_OFF_TGID 32
#define DP_EVENT_OFF_UID 36
#define DP_EVENT_OFF_REASON 40
#define DP_EVENT_OFF_RULE_INDEX 44
#define DP_EVENT_OFF_DST_ADDR 48
#define DP_EVENT_OFF_COMM 64
#define DP_EVENT_OFF_DST_PORT 80
#define DP_EVENT_OFF_HOOK 82
#define DP_EVENT_OFF_PROTOCOL 83
#define DP_EVENT_OFF_FAMILY 84
#define DP_EVENT_OFF_VERDICT 85

/* ---- Bypass layers (docs/threat-model.md): socket creation, cgroup LSM, egress backstop ----------------------- */

/* Hooks and protocols of the layers (values of crates/core/src/contract/hook.rs, checked from Rust). */
#define DP_HOOK_SOCK_CREATE 5
#define DP_HOOK_SOCKET_CREATE_LSM 6
#define DP_HOOK_EGRESS 7
#define DP_PROTO_UDPLITE 136
#define DP_PROTO_RAW 255
#define DP_PROTO_PACKET 254
#define DP_PROTO_XDP 253
/* An event's family when the judged call has no destination (a socket being created). */
#define DP_FAMILY_NONE 0

/* Socket families and types the creation layers look at (the kernel's uapi values). */
#define DP_AF_PACKET 17
#define DP_AF_XDP 44
#define DP_SOCK_STREAM 1
#define DP_SOCK_DGRAM 2
#define DP_SOCK_RAW 3
#define DP_IPPROTO_MPTCP 262

/* dp_layer_state.flags: set by the loader from the layers it attached. EGRESS: the egress layer judges the
 * packets of ping sockets (so sock_create lets them be created). MARKS: sockets are marked with their verdicts
 * and the egress layer passes marked flows without judging them again. */
#define DP_LAYER_F_EGRESS 1
#define DP_LAYER_F_MARKS 2
/* struct bpf_sock.state of a socket whose SYN is being sent (the uapi BPF_TCP_SYN_SENT). */
#define DP_TCP_SYN_SENT 2
/* __sk_buff.protocol values (ETH_P_IP, ETH_P_IPV6), host order. */
#define DP_ETH_P_IP 2048
#define DP_ETH_P_IPV6 34525

/* dp_layer_counters (per CPU). */
#define DP_LC_SOCKETS_REFUSED 0
#define DP_LC_SOCKETS_WOULD_REFUSE 1
#define DP_LC_PACKETS_DROPPED 2
#define DP_LC_PACKETS_WOULD_DROP 3
#define DP_LC_PACKETS_JUDGED 4
#define DP_LC_MARKS_WRITTEN 5
#define DP_LAYER_COUNTERS 6

/* Runtime state of the layers: one value of an array map, written by the loader. mark_epoch grows on every
 * change of the managed cgroups or modes, so a socket mark taken before such a change is judged again. */
struct dp_layer_state {
	__u32 mark_epoch;
	__u32 flags;
};
#define DP_LAYER_STATE_SIZE 8

/* Socket marks (BPF_MAP_TYPE_SK_STORAGE value): what a socket was last judged for. A mark is valid while its
 * generation is the active policy generation and its epoch the current mark_epoch; a FAIL_OPEN mark only while
 * the dataplane is still degraded; an UNMANAGED mark ignores the generation and the destination. */
#define DP_MARK_ALLOW 1
#define DP_MARK_OBSERVED 2
#define DP_MARK_UNMANAGED 3
#define DP_MARK_FAIL_OPEN 4
struct dp_sk_mark {
	__u64 generation;
	__u32 epoch;
	__u8 kind;     /* DP_MARK_* */
	__u8 family;   /* of addr: DP_FAMILY_INET or DP_FAMILY_INET6 (an IPv4-mapped destination is INET) */
	__u8 protocol; /* DP_PROTO_* */
	__u8 pad;
	__u16 port;    /* host order */
	__u16 pad2;
	__u32 pad3;
	__u8 addr[16]; /* IPv4 in the first 4 bytes */
	/* For a socket judged by its sending task (DP_SK_F_BY_TASK): the cgroup of the task the mark was taken for;
	 * a packet sent by a task of another cgroup is judged again. 0 for a socket judged by its own cgroup (TCP). */
	__u64 task_cgroup;
};
#define DP_SK_MARK_SIZE 48

/*
 * A socket's one storage record (dp_sk_state, BPF_MAP_TYPE_SK_STORAGE: it lives and dies with the socket), shared
 * by the sock_addr programs and the egress backstop so that one lookup serves both: the verdict a UDP socket
 * reuses while dp_config.epoch holds (dataplane.bpf.c, run) and the mark the egress backstop passes a flow on
 * (socket_marks.h).
 */
struct dp_sk_state {
	struct dp_sk_verdict verdict;
	struct dp_sk_mark mark;
	__u32 flags; /* DP_SK_F_* */
	__u32 pad;
};
#define DP_SK_STATE_SIZE 136
/* The socket was created or first judged by user space (cgroup/sock_create, or a connect/sendmsg hook) and is not
 * TCP: every packet it sends leaves synchronously in the sending task's context (UDP, UDP-Lite, ping, raw), so the
 * egress backstop judges its packets by the policy of the task that sends them, wherever the socket was created
 * (docs/threat-model.md, "Sockets carried into a managed cgroup"). Sockets the kernel creates for itself (its ICMP
 * and TCP reset sockets, which send from softirq context on behalf of no task) never get it. */
#define DP_SK_F_BY_TASK 1

/* ---- Rules by name (SPEC 4b; docs/dataplane.md, "Rules by name") ---------------------------------------------- */

/* Addresses the DNS proxy learned from a managed workload's answers, per (slot, managed cgroup, address): each one
 * is judged as a host prefix (/32, /128) with the entries of the fqdn rules and broker names whose names taught it,
 * until expires_ns (CLOCK_MONOTONIC, the base of bpf_ktime_get_coarse_ns). User space writes a slot's entries
 * before it flips to the slot and removes them after it leaves it, as for the rest of a slot. */
#define DP_LEARNED_ENTRIES 65536
#define DP_LEARNED_INLINE 4
#define DP_DNS_NAME_BYTES 256
/* Sockets whose DNS traffic was steered to the proxy, by socket cookie (LRU: a closed socket's record ages out). */
#define DP_DNS_FLOWS 16384

struct dp_learned_key {
	__u64 managed_id;
	__u32 addr[4]; /* network order; IPv4 in addr[0], the rest 0 */
	__u8 slot;
	__u8 v4;
	__u8 pad[6];
};
#define DP_LEARNED_KEY_SIZE 32

struct dp_learned {
	__u64 expires_ns;
	__u32 count; /* entries in use, at most DP_LEARNED_INLINE: sorted broker, deny, allow */
	__u32 pad;
	struct dp_rule_entry entries[DP_LEARNED_INLINE];
	/* The name whose answer taught it (user space only: what an adopting agent reads back). */
	__u8 name[DP_DNS_NAME_BYTES];
};
#define DP_LEARNED_SIZE 320

/* One steered socket: where it meant to send its DNS traffic, and who it is. */
struct dp_dns_flow {
	__u32 addr[4];  /* network order, as the caller wrote it: IPv4 in addr[0] (also of a mapped IPv6 one) */
	__u16 port;     /* host order */
	__u8 family;    /* DP_FAMILY_INET (also for a mapped IPv6 destination) or DP_FAMILY_INET6 */
	__u8 mapped;    /* written as an IPv4-mapped IPv6 address on an IPv6 socket */
	__u32 pad;
	__u64 cgroup_id;
	__u64 managed_id;
};
#define DP_DNS_FLOW_SIZE 40

#ifdef __bpf__
_Static_assert(sizeof(struct dp_config) == DP_CONFIG_SIZE, "dp_config");
_Static_assert(sizeof(struct dp_learned_key) == DP_LEARNED_KEY_SIZE, "dp_learned_key");
_Static_assert(sizeof(struct dp_learned) == DP_LEARNED_SIZE, "dp_learned");
_Static_assert(sizeof(struct dp_dns_flow) == DP_DNS_FLOW_SIZE, "dp_dns_flow");
_Static_assert(sizeof(struct dp_slot_meta) == DP_SLOT_META_SIZE, "dp_slot_meta");
_Static_assert(sizeof(struct dp_managed) == DP_MANAGED_SIZE, "dp_managed");
_Static_assert(sizeof(struct dp_key4) == DP_KEY4_SIZE, "dp_key4");
_Static_assert(sizeof(struct dp_key6) == DP_KEY6_SIZE, "dp_key6");
_Static_assert(sizeof(struct dp_group) == DP_GROUP_SIZE, "dp_group");
_Static_assert(sizeof(struct dp_rule_entry) == DP_RULE_ENTRY_SIZE, "dp_rule_entry");
_Static_assert(sizeof(struct dp_id) == DP_ID_BYTES, "dp_id");
_Static_assert(sizeof(struct dp_sk_verdict) == DP_SK_VERDICT_SIZE, "dp_sk_verdict");
_Static_assert(sizeof(struct dp_event) == DP_EVENT_SIZE, "dp_event");
_Static_assert(__builtin_offsetof(struct dp_event, dst_addr) == DP_EVENT_OFF_DST_ADDR, "dst_addr");
_Static_assert(__builtin_offsetof(struct dp_event, dst_port) == DP_EVENT_OFF_DST_PORT, "dst_port");
_Static_assert(__builtin_offsetof(struct dp_event, verdict) == DP_EVENT_OFF_VERDICT, "verdict");
_Static_assert(DP_ENTRIES_PER_FAMILY == DP_RULE_ENTRIES_PER_FAMILY + DP_ENDPOINTS_PER_SLOT, "entries per family");
_Static_assert(DP_ENTRY_SLOT_ENTRIES == 2 * DP_ENTRIES_PER_FAMILY, "entry slot");
_Static_assert(DP_GROUPS_PER_FAMILY == DP_PREFIXES_PER_FAMILY + DP_ENDPOINTS_PER_SLOT, "groups per family");
_Static_assert(DP_V4_LENGTHS <= DP_V4_LENGTHS_ROOM && DP_V6_LENGTHS <= DP_V6_LENGTHS_ROOM, "length lists");
_Static_assert((DP_V4_LENGTHS_ROOM & (DP_V4_LENGTHS_ROOM - 1)) == 0, "v4 room: power of two");
_Static_assert((DP_V6_LENGTHS_ROOM & (DP_V6_LENGTHS_ROOM - 1)) == 0, "v6 room: power of two");
_Static_assert(sizeof(struct dp_layer_state) == DP_LAYER_STATE_SIZE, "dp_layer_state");
_Static_assert(sizeof(struct dp_sk_mark) == DP_SK_MARK_SIZE, "dp_sk_mark");
_Static_assert(sizeof(struct dp_sk_state) == DP_SK_STATE_SIZE, "dp_sk_state");
#endif

#endif /* BROKER_INTERCEPTOR_EBPF_DATAPLANE_ABI_H */
