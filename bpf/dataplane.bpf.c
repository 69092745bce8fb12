// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * Egress verdicts for managed cgroups on cgroup/connect4, connect6, sendmsg4, sendmsg6 (SPEC 4, in its order):
 * unmanaged -> broker -> DNS -> degraded -> rules (longest prefix, deny wins a tie) -> default deny.
 *
 * Only the uapi `struct bpf_sock_addr` context is read, and the verifier rewrites those accesses for the running
 * kernel, so no kernel-internal struct is touched and no vmlinux.h/CO-RE relocation is needed; the object still
 * carries BTF (-g) for its map definitions. Every program returns exactly 1 (allow) or 0 (deny: EPERM).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "dataplane_abi.h"
#include "reason_codes.h"

char LICENSE[] SEC("license") = "GPL";

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

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DP_MANAGED_CGROUPS);
	__type(key, __u64);
	__type(value, struct dp_managed);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dp_managed SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, DP_LPM_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct dp_lpm4_key);
	__type(value, struct dp_prefix_group);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dp_lpm4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, DP_LPM_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct dp_lpm6_key);
	__type(value, struct dp_prefix_group);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dp_lpm6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, DP_RULE_ENTRIES_TOTAL);
	__type(key, __u32);
	__type(value, struct dp_rule_entry);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dp_rules SEC(".maps");

/* Read by user space only (rule_index -> rule id of the generation that decided); pinned for adoption. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, DP_RULE_IDS_TOTAL);
	__type(key, __u32);
	__type(value, struct dp_id);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dp_rule_ids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DP_ENDPOINT_ENTRIES);
	__type(key, struct dp_endpoint_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dp_endpoints SEC(".maps");

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

/* Programs currently reading each slot, per CPU (a program runs with migration disabled, so it increments and
 * decrements on the same CPU). The loader waits for the inactive slot's sum to be 0 before rewriting it. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DP_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dp_readers SEC(".maps");

/* ---- Socket marks read by the egress backstop (docs/threat-model.md); judge() calls mark_verdict() ---------- */
#include "socket_marks.h"

/* One connect/sendmsg being judged. */
struct dp_request {
	__u32 slot;
	__u32 ip4;     /* network order; the IPv4 destination (also for an IPv4-mapped IPv6 one) */
	__u32 ip6[4];  /* network order, as written */
	__u16 port;    /* host order */
	__u8 protocol;
	__u8 judge_v4; /* judged by the IPv4 rules and endpoints */
};

/* State of one walk over the prefixes covering the destination. */
struct dp_walk {
	union {
		struct dp_lpm4_key k4;
		struct dp_lpm6_key k6;
	};
	__s32 next_prefix; /* the longest prefix length still to consider; < 0: done */
	__u32 base;        /* first rule entry of this slot and family */
	__u16 port;
	__u8 protocol;
	__u8 action;       /* 0 until a rule matched */
	__u32 rule_index;
	__u32 scan_first;
};

static __always_inline void counter_add(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&dp_counters, &idx);

	if (c)
		__sync_fetch_and_add(c, 1);
}

/* Scans one prefix group; entries are sorted deny first, so the first match is the verdict of this prefix. */
static long scan_entry(__u64 i, void *data)
{
	struct dp_walk *w = data;
	__u32 idx = w->scan_first + (__u32)i;
	struct dp_rule_entry *e = bpf_map_lookup_elem(&dp_rules, &idx);

	if (!e)
		return 1;
	if (e->protocol != 0 && e->protocol != w->protocol)
		return 0;
	if (w->port < e->port_lo || w->port > e->port_hi)
		return 0;
	w->action = e->action;
	w->rule_index = e->rule_index;
	return 1;
}

static __always_inline long scan_group(struct dp_walk *w, struct dp_prefix_group *g)
{
	__u32 count = g->count;

	if (count > DP_ENTRIES_PER_PREFIX)
		count = DP_ENTRIES_PER_PREFIX;
	w->scan_first = w->base + g->first;
	bpf_loop(count, scan_entry, w, 0);
	if (w->action)
		return 1;
	/* No rule of this prefix matches port/protocol: continue with the next shorter covering prefix. */
	w->next_prefix = (__s32)g->prefix_len - 1;
	return w->next_prefix < 0;
}

static long walk4_step(__u64 i, void *data)
{
	struct dp_walk *w = data;
	struct dp_prefix_group *g;

	if (w->next_prefix < 0)
		return 1;
	w->k4.prefixlen = DP_LPM_SLOT_BITS + (__u32)w->next_prefix;
	g = bpf_map_lookup_elem(&dp_lpm4, &w->k4);
	if (!g)
		return 1;
	return scan_group(w, g);
}

static long walk6_step(__u64 i, void *data)
{
	struct dp_walk *w = data;
	struct dp_prefix_group *g;

	if (w->next_prefix < 0)
		return 1;
	w->k6.prefixlen = DP_LPM_SLOT_BITS + (__u32)w->next_prefix;
	g = bpf_map_lookup_elem(&dp_lpm6, &w->k6);
	if (!g)
		return 1;
	return scan_group(w, g);
}

/* Returns the action of the longest matching prefix (deny first within it), 0 when no rule matches. */
static __always_inline __u8 match_rules(const struct dp_request *r, __u32 *rule_index)
{
	struct dp_walk w = {};

	w.port = r->port;
	w.protocol = r->protocol;
	w.rule_index = DP_RULE_INDEX_NONE;
	if (r->judge_v4) {
		w.k4.slot = (__u8)r->slot;
		__builtin_memcpy(w.k4.addr, &r->ip4, 4);
		w.next_prefix = 32;
		w.base = r->slot * DP_RULE_SLOT_ENTRIES;
		bpf_loop(33, walk4_step, &w, 0);
	} else {
		w.k6.slot = (__u8)r->slot;
		__builtin_memcpy(w.k6.addr, r->ip6, 16);
		w.next_prefix = 128;
		w.base = r->slot * DP_RULE_SLOT_ENTRIES + DP_RULE_ENTRIES_PER_FAMILY;
		bpf_loop(129, walk6_step, &w, 0);
	}
	*rule_index = w.rule_index;
	return w.action;
}

static __always_inline __u32 endpoint_kind(const struct dp_request *r)
{
	struct dp_endpoint_key k = {};
	__u32 *kind;

	k.slot = (__u8)r->slot;
	k.protocol = r->protocol;
	k.port = r->port;
	if (r->judge_v4) {
		k.family = DP_FAMILY_INET;
		__builtin_memcpy(k.addr, &r->ip4, 4);
	} else {
		k.family = DP_FAMILY_INET6;
		__builtin_memcpy(k.addr, r->ip6, 16);
	}
	kind = bpf_map_lookup_elem(&dp_endpoints, &k);
	return kind ? *kind : 0;
}

/* 1 in n; n == 0 never, n == 1 always. bpf_get_prandom_u32 is the kernel's per-CPU PRNG. */
static __always_inline int sampled(__u32 n)
{
	if (n == 0)
		return 0;
	if (n == 1)
		return 1;
	return bpf_get_prandom_u32() % n == 0;
}

static __always_inline void emit(struct bpf_sock_addr *ctx, const struct dp_request *r, __u8 hook, __u8 family,
				 __u64 cgroup_id, __u64 managed_id, __u64 generation, __u32 reason, __u32 rule_index,
				 __u8 verdict)
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
	e->uid = (__u32)bpf_get_current_uid_gid();
	e->reason = reason;
	e->rule_index = rule_index;
	__builtin_memset(e->dst_addr, 0, sizeof(e->dst_addr));
	if (family == DP_FAMILY_INET)
		__builtin_memcpy(e->dst_addr, &r->ip4, 4);
	else
		__builtin_memcpy(e->dst_addr, r->ip6, 16);
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->dst_port = r->port;
	e->hook = hook;
	/* A ping socket's protocol: ICMPv6 is reported as icmp, like ICMP (contract/hook.rs). */
	e->protocol = r->protocol == DP_IPPROTO_ICMPV6 ? DP_PROTO_ICMP : r->protocol;
	e->family = family;
	e->verdict = verdict;
	e->pad[0] = 0;
	e->pad[1] = 0;
	bpf_ringbuf_submit(e, 0);
	counter_add(DP_COUNTER_EVENTS_EMITTED);
}

static __always_inline int judge(struct bpf_sock_addr *ctx, struct dp_config *cfg, __u32 slot, __u8 hook, int v6,
				 struct dp_managed *managed, __u64 cgroup_id, __u64 managed_id)
{
	struct dp_slot_meta *meta;
	struct dp_request r = {};
	__u64 generation;
	__u32 reason, rule_index = DP_RULE_INDEX_NONE, mode, allow_one_in, unmanaged_one_in;
	__u8 family = v6 ? DP_FAMILY_INET6 : DP_FAMILY_INET;
	int observe, allow, always_emit = 1;

	r.slot = slot;
	meta = bpf_map_lookup_elem(&dp_slot_meta, &r.slot);
	if (!meta)
		return 1; /* unreachable: index 0 or 1 of a 2-entry array */
	generation = meta->generation;
	allow_one_in = meta->allow_one_in;
	unmanaged_one_in = meta->unmanaged_one_in;

	r.protocol = (__u8)ctx->protocol;
	r.port = bpf_ntohs((__u16)ctx->user_port);
	if (v6) {
		r.ip6[0] = ctx->user_ip6[0];
		r.ip6[1] = ctx->user_ip6[1];
		r.ip6[2] = ctx->user_ip6[2];
		r.ip6[3] = ctx->user_ip6[3];
		if (r.ip6[0] == 0 && r.ip6[1] == 0 && r.ip6[2] == bpf_htonl(0x0000ffff)) {
			r.ip4 = r.ip6[3];
			r.judge_v4 = 1;
		}
	} else {
		r.ip4 = ctx->user_ip4;
		r.judge_v4 = 1;
	}

	if (!managed) {
		if (sampled(unmanaged_one_in))
			emit(ctx, &r, hook, family, cgroup_id, 0, generation, BROKER_DP_REASON_UNMANAGED_ALLOW,
			     DP_RULE_INDEX_NONE, DP_VERDICT_ALLOW);
		return 1;
	}
	mode = managed->mode;
	if (mode == DP_MODE_INHERIT)
		mode = *(volatile __u32 *)&cfg->global_mode;
	observe = mode == DP_MODE_OBSERVE;

	switch (endpoint_kind(&r)) {
	case DP_ENDPOINT_BROKER: /* 2. */
		reason = BROKER_DP_REASON_ALLOW_BROKER;
		always_emit = 0;
		goto out;
	case DP_ENDPOINT_DNS: /* 3. */
		reason = BROKER_DP_REASON_ALLOW_DNS;
		always_emit = 0;
		goto out;
	}

	/* 4. Degraded: only in enforce mode (observe never blocks, so it keeps reporting rule verdicts). */
	if (!observe) {
		__u64 now = bpf_ktime_get_ns();
		__u64 beat = *(volatile __u64 *)&cfg->heartbeat_ns;
		__u64 grace = *(volatile __u64 *)&cfg->grace_ns;

		if (generation == 0 || (now > beat && now - beat > grace)) {
			if (*(volatile __u32 *)&cfg->fail_mode == DP_FAIL_OPEN)
				reason = BROKER_DP_REASON_ALLOW_DEGRADED_FAIL_OPEN;
			else
				reason = BROKER_DP_REASON_DENY_DEGRADED_FAIL_CLOSED;
			goto out;
		}
	}

	/* 5./6. Rules. */
	switch (match_rules(&r, &rule_index)) {
	case DP_ACTION_DENY:
		reason = observe ? BROKER_DP_REASON_OBSERVE_WOULD_DENY_EXPLICIT : BROKER_DP_REASON_DENY_EXPLICIT;
		break;
	case DP_ACTION_ALLOW:
		reason = observe ? BROKER_DP_REASON_OBSERVE_WOULD_ALLOW : BROKER_DP_REASON_ALLOW_EXPLICIT;
		always_emit = 0;
		break;
	default:
		rule_index = DP_RULE_INDEX_NONE;
		reason = observe ? BROKER_DP_REASON_OBSERVE_WOULD_DENY_DEFAULT : BROKER_DP_REASON_DENY_DEFAULT;
		break;
	}

out:
	allow = reason != BROKER_DP_REASON_DENY_EXPLICIT && reason != BROKER_DP_REASON_DENY_DEFAULT &&
		reason != BROKER_DP_REASON_DENY_DEGRADED_FAIL_CLOSED;
	mark_verdict(ctx, r.protocol, r.port, r.judge_v4, r.ip4, r.ip6, reason, generation);
	/* Deny, observe would-deny and degraded verdicts are always reported; plain allows are sampled. */
	if (always_emit || sampled(allow_one_in))
		emit(ctx, &r, hook, family, cgroup_id, managed_id, generation, reason, rule_index,
		     allow ? DP_VERDICT_ALLOW : DP_VERDICT_DENY);
	return allow ? 1 : 0;
}

static __always_inline __s64 reader_add(__u32 slot, __s64 delta)
{
	__u64 *n = bpf_map_lookup_elem(&dp_readers, &slot);

	if (!n)
		return -1;
	__sync_fetch_and_add(n, delta);
	return 0;
}

/*
 * The one read of active_slot that selects the generation, registered as a reader of that slot: count first,
 * then check the slot is still active. The loader flips first, then waits for the old slot's count to reach 0
 * before rewriting it; the atomic add is a full barrier, so either the loader sees this reader, or this reader
 * sees the flip and moves to the new slot (a Dekker pair). Everything after reads only the returned slot.
 */
static __always_inline __u32 slot_acquire(struct dp_config *cfg)
{
	__u32 slot = *(volatile __u32 *)&cfg->active_slot & 1;
	int i;

	for (i = 0; i < DP_SLOT_ACQUIRE_TRIES; i++) {
		__u32 now;

		reader_add(slot, 1);
		now = *(volatile __u32 *)&cfg->active_slot & 1;
		if (now == slot)
			break;
		reader_add(slot, -1);
		slot = now;
		if (i == DP_SLOT_ACQUIRE_TRIES - 1)
			reader_add(slot, 1); /* two flips within one program run: the quiesce interval still covers it */
	}
	return slot;
}

/*
 * 1. Managed: the caller's cgroup, or its nearest managed ancestor. The caller's own cgroup is tried first (one
 * lookup for a workload managed directly, the common case); otherwise the ancestors are walked from the root
 * down and the deepest hit wins.
 */
static __always_inline struct dp_managed *find_managed(__u64 cgroup_id, __u64 *managed_id)
{
	struct dp_managed *managed = bpf_map_lookup_elem(&dp_managed, &cgroup_id);
	__u32 level;

	if (managed) {
		*managed_id = cgroup_id;
		return managed;
	}
	for (level = 0; level < DP_MAX_CGROUP_LEVELS; level++) {
		__u64 id = bpf_get_current_ancestor_cgroup_id(level);
		struct dp_managed *m;

		if (id == 0 || id == cgroup_id)
			break;
		m = bpf_map_lookup_elem(&dp_managed, &id);
		if (m) {
			managed = m;
			*managed_id = id;
		}
	}
	return managed;
}

static __always_inline int run(struct bpf_sock_addr *ctx, __u8 hook, int v6)
{
	__u32 zero = 0;
	struct dp_config *cfg = bpf_map_lookup_elem(&dp_config, &zero);
	struct dp_managed *managed;
	__u64 cgroup_id, managed_id = 0;
	__u32 slot;
	int verdict;

	if (!cfg)
		return 1; /* unreachable: an array map always has index 0 */
	cgroup_id = bpf_get_current_cgroup_id();
	managed = find_managed(cgroup_id, &managed_id);
	/* An unmanaged caller is allowed whatever the policy says; it only needs a slot to sample an event. */
	if (!managed) {
		__u32 meta_slot = *(volatile __u32 *)&cfg->active_slot & 1;
		struct dp_slot_meta *meta = bpf_map_lookup_elem(&dp_slot_meta, &meta_slot);

		if (!meta || meta->unmanaged_one_in == 0)
			return 1;
		return judge(ctx, cfg, meta_slot, hook, v6, 0, cgroup_id, 0);
	}
	slot = slot_acquire(cfg);
	verdict = judge(ctx, cfg, slot, hook, v6, managed, cgroup_id, managed_id);
	reader_add(slot, -1);
	return verdict;
}

SEC("cgroup/connect4")
int dp_connect4(struct bpf_sock_addr *ctx)
{
	return run(ctx, DP_HOOK_CONNECT4, 0);
}

SEC("cgroup/connect6")
int dp_connect6(struct bpf_sock_addr *ctx)
{
	return run(ctx, DP_HOOK_CONNECT6, 1);
}

SEC("cgroup/sendmsg4")
int dp_sendmsg4(struct bpf_sock_addr *ctx)
{
	return run(ctx, DP_HOOK_SENDMSG4, 0);
}

SEC("cgroup/sendmsg6")
int dp_sendmsg6(struct bpf_sock_addr *ctx)
{
	return run(ctx, DP_HOOK_SENDMSG6, 1);
}

/* ---- Bypass layers: socket creation, cgroup LSM and egress backstop programs (docs/threat-model.md) ---------- */
#include "bypass_layers.h"
#include "egress_backstop.h"
