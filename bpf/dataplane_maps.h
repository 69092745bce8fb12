/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * Every map of the dataplane object and the one writer of a verdict record (emit_record, and emit for the
 * sock_addr hooks), in one header that dataplane.bpf.c includes first, so a reader finds every pinned map and
 * what each program writes to the ring buffer in one place. The maps are pinned by name (LIBBPF_PIN_BY_NAME):
 * their names are the pin names of crates/core/src/dataplane/pins.rs (`MAP_NAMES`), and their layout is part of
 * the ABI fingerprint a pinned state must match to be adopted (crates/core/build.rs).
 */
#ifndef BROKER_INTERCEPTOR_EBPF_DATAPLANE_MAPS_H
#define BROKER_INTERCEPTOR_EBPF_DATAPLANE_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "dataplane_abi.h"

/* ---- Configuration and policy (read by every program through policy_lookup.h) ------------------------------- */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct dp_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dp_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, DP_SLOTS);
	__type(key, __u32);
	__type(value, struct dp_slot_meta);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dp_slot_meta SEC(".maps");

/* The group maps of one slot. User space creates a fresh, empty pair for a slot before writing a policy into
 * it, installs them in dp_groups4/dp_groups6[slot], and drops the previous pair whole (the kernel frees it in
 * the background): clearing a slot costs nothing, whatever policy it held. The creation parameters in
 * crates/core/src/dataplane/group_maps.rs must equal these. */
struct dp_groups4_slot {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DP_GROUPS_PER_FAMILY);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(key_size, sizeof(struct dp_key4));
	__uint(value_size, sizeof(struct dp_group));
};

struct dp_groups6_slot {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DP_GROUPS_PER_FAMILY);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(key_size, sizeof(struct dp_key6));
	__uint(value_size, sizeof(struct dp_group));
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, DP_SLOTS);
	__type(key, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct dp_groups4_slot);
} dp_groups4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, DP_SLOTS);
	__type(key, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct dp_groups6_slot);
} dp_groups6 SEC(".maps");

/* The entries of groups larger than DP_GROUP_INLINE: one hash map per slot (key: the entry's index in the slot,
 * IPv6 entries from DP_ENTRIES_PER_FAMILY), installed and reclaimed with the slot's group maps. Allocated as
 * entries are written (BPF_F_NO_PREALLOC), so a policy without large groups holds none of this memory. */
struct dp_entries_slot {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DP_ENTRY_SLOT_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(struct dp_rule_entry));
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, DP_SLOTS);
	__type(key, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct dp_entries_slot);
} dp_entries SEC(".maps");

/* ---- Managed cgroups, rule ids, the ring buffer and the counters -------------------------------------------- */

/* Allocated per entry (BPF_F_NO_PREALLOC): a node with a handful of managed cgroups does not hold room for 65,536.
 * Lookups cost the same; an upsert allocates. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DP_MANAGED_CGROUPS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct dp_managed);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dp_managed SEC(".maps");

/* Rule ids (rule_index -> id) are not the programs' business: user space keeps them per generation and pins each
 * slot's as an array sized to its policy (dp_rule_ids_0, dp_rule_ids_1: crates/core/src/dataplane/slots.rs), so an
 * adopting loader can still name the rule of an event of the generation it adopted. */

/* max_entries is set by the loader (DataplaneOptions::ring_buffer_bytes). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 * 1024 * 1024);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dp_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DP_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dp_counters SEC(".maps");

/* Every verdict, by (hook, reason code): counted in the program that makes it, whether or not its event is
 * sampled, emitted or dropped, so these counts are exact where the events are best-effort (count_verdict). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DP_VERDICT_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dp_verdicts SEC(".maps");

/* ---- The bypass layers' state and counters, and each socket's storage record (socket_marks.h) --------------- */

/* Flags and the mark epoch, written by the loader (struct dp_layer_state). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dp_layer_state);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dp_layer_state SEC(".maps");

/* Each socket's one storage record: its cached verdict and its mark (struct dp_sk_state). */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct dp_sk_state);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dp_sk_state SEC(".maps");

/* What the layers refused, dropped or judged, per CPU (DP_LC_*). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DP_LAYER_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dp_layer_counters SEC(".maps");

/* ---- Rules by name: addresses learned from DNS answers, and the sockets steered to the DNS proxy ----------------- */

/* Written by the agent's DNS proxy before it releases an answer (struct dp_learned); allocated per entry. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DP_LEARNED_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct dp_learned_key);
	__type(value, struct dp_learned);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dp_learned SEC(".maps");

/* Written when a socket's DNS traffic is steered; read by the proxy (whose socket is it?) and by the return path
 * (recvmsg, getpeername), which shows the workload its own resolver answering. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, DP_DNS_FLOWS);
	__type(key, __u64);
	__type(value, struct dp_dns_flow);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dp_dns_flows SEC(".maps");

/* ---- Writing a verdict record ---------------------------------------------------------------------------------- */

/* One connect/sendmsg being judged. */
struct dp_request {
	__u32 addr[4]; /* network order, as judged: the IPv4 destination (also of a mapped IPv6 one) in addr[0] */
	__u32 ip6[4];  /* network order, as written (connect6/sendmsg6) */
	__u16 port;    /* host order */
	__u8 protocol; /* DP_PROTO_*: ICMPv6 ping sockets report DP_PROTO_ICMP */
	__u8 judge_v4; /* judged by the IPv4 tables */
};

static __always_inline void counter_add(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&dp_counters, &idx);

	if (c)
		__sync_fetch_and_add(c, 1);
}

/*
 * Counts one verdict of program `hook` (a constant in every caller) with `reason`. The add is atomic although the
 * word is this CPU's own: a program can be preempted (or interrupted by a softirq program) on its CPU between a
 * load and a store, and a plain increment would then lose a count. An uncontended atomic add on a line no other
 * CPU writes costs a few cycles. A reason outside the room (never written: reason_codes.rs) finds no slot.
 */
static __always_inline void count_verdict(__u8 hook, __u32 reason)
{
	__u32 idx = (__u32)hook * DP_VERDICT_REASONS + reason;
	__u64 *c = bpf_map_lookup_elem(&dp_verdicts, &idx);

	if (c)
		__sync_fetch_and_add(c, 1);
}

/*
 * The one writer of a verdict record (struct dp_event), for every program: the sock_addr hooks (emit), the
 * socket-creation layers (emit_socket_event) and the egress backstop (emit_packet_event). `dst` holds 4
 * (DP_FAMILY_INET) or 16 (DP_FAMILY_INET6) bytes in network order; with DP_FAMILY_NONE (a socket being created)
 * it is not read and the record has no destination. A full ring buffer is counted, never silent.
 */
static __always_inline void emit_record(__u8 hook, __u8 protocol, __u8 family, const __u32 *dst, __u16 port,
					__u32 uid, __u64 cgroup_id, __u64 managed_id, __u64 generation,
					__u32 reason, __u32 rule_index, __u8 verdict)
{
	struct dp_event *e = bpf_ringbuf_reserve(&dp_events, sizeof(*e), 0);

	if (!e) {
		counter_add(DP_COUNTER_RINGBUF_FULL);
		return;
	}
	e->monotonic_ns = bpf_ktime_get_ns();
	e->cgroup_id = cgroup_id;
	e->managed_cgroup_id = managed_id;
	e->policy_generation = generation;
	e->tgid = bpf_get_current_pid_tgid() >> 32;
	e->uid = uid;
	e->reason = reason;
	e->rule_index = rule_index;
	__builtin_memset(e->dst_addr, 0, sizeof(e->dst_addr));
	if (family == DP_FAMILY_INET)
		__builtin_memcpy(e->dst_addr, dst, 4);
	else if (family == DP_FAMILY_INET6)
		__builtin_memcpy(e->dst_addr, dst, 16);
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->dst_port = port;
	e->hook = hook;
	e->protocol = protocol;
	e->family = family;
	e->verdict = verdict;
	e->pad[0] = 0;
	e->pad[1] = 0;
	bpf_ringbuf_submit(e, 0);
	counter_add(DP_COUNTER_EVENTS_EMITTED);
}

static __always_inline void emit(const struct dp_request *r, __u8 hook, __u8 family, __u64 cgroup_id,
				 __u64 managed_id, __u64 generation, __u32 reason, __u32 rule_index, __u8 verdict)
{
	emit_record(hook, r->protocol, family, family == DP_FAMILY_INET ? &r->addr[0] : r->ip6, r->port,
		    (__u32)bpf_get_current_uid_gid(), cgroup_id, managed_id, generation, reason, rule_index, verdict);
}

#endif /* BROKER_INTERCEPTOR_EBPF_DATAPLANE_MAPS_H */
