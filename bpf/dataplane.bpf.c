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
#include "dataplane_maps.h"
#include "policy_lookup.h"
#include "dns_steering.h"
#include "reason_codes.h"

char LICENSE[] SEC("license") = "GPL";

/* ---- Socket marks read by the egress backstop (docs/threat-model.md) and each socket's storage record ------- */
#include "socket_marks.h"

/* 1 in n; n == 0 never, n == 1 always. bpf_get_prandom_u32 is the kernel's per-CPU PRNG. */
static __always_inline int sampled(__u32 n)
{
	if (n == 0)
		return 0;
	if (n == 1)
		return 1;
	return bpf_get_prandom_u32() % n == 0;
}

/* 1 for the reasons whose verdict is allow, 0 for deny (the program's return value: exactly 0 or 1). */
static __always_inline int reason_allows(__u32 reason)
{
	return reason != BROKER_DP_REASON_DENY_EXPLICIT && reason != BROKER_DP_REASON_DENY_DEFAULT &&
	       reason != BROKER_DP_REASON_DENY_DEGRADED_FAIL_CLOSED;
}

static __always_inline void read_request(struct bpf_sock_addr *ctx, int v6, struct dp_request *r)
{
	__u8 protocol = (__u8)ctx->protocol;

	r->protocol = protocol == DP_IPPROTO_ICMPV6 ? DP_PROTO_ICMP : protocol;
	r->port = bpf_ntohs((__u16)ctx->user_port);
	if (v6) {
		r->ip6[0] = ctx->user_ip6[0];
		r->ip6[1] = ctx->user_ip6[1];
		r->ip6[2] = ctx->user_ip6[2];
		r->ip6[3] = ctx->user_ip6[3];
		if (r->ip6[0] == 0 && r->ip6[1] == 0 && r->ip6[2] == bpf_htonl(0x0000ffff)) {
			r->addr[0] = r->ip6[3];
			r->judge_v4 = 1;
		} else {
			r->addr[0] = r->ip6[0];
			r->addr[1] = r->ip6[1];
			r->addr[2] = r->ip6[2];
			r->addr[3] = r->ip6[3];
		}
	} else {
		r->addr[0] = ctx->user_ip4;
		r->judge_v4 = 1;
	}
}

/*
 * 1. Managed: the caller's cgroup, or its nearest managed ancestor below the managed subtree's root
 * (dp_config.subtree_id). The caller's own cgroup is tried first (one lookup for a workload managed directly, the
 * common case); otherwise the ancestors are walked from the root down and the deepest hit wins. The programs are
 * attached at the root of the cgroup2 hierarchy and so run for every task of the host: the ancestors above the
 * subtree's root cannot be managed and cost one helper call each, no lookup. `*inside` says whether the caller is
 * in the subtree at all: a task outside it is passed without a verdict (no count, no event), as if the programs
 * were not attached there. `cgroup_id` is the current task's cgroup: the walk reads its ancestors.
 */
static __always_inline struct dp_managed *find_managed(__u64 cgroup_id, __u64 *managed_id, int *inside)
{
	struct dp_managed *managed = bpf_map_lookup_elem(&dp_managed, &cgroup_id);
	__u32 zero = 0, level;
	struct dp_config *cfg;
	__u64 subtree;
	int below = 0;

	*inside = 1;
	if (managed) {
		*managed_id = cgroup_id;
		return managed;
	}
	cfg = bpf_map_lookup_elem(&dp_config, &zero);
	if (!cfg)
		return 0; /* unreachable: an array map always has index 0 */
	subtree = *(volatile const __u64 *)&cfg->subtree_id;
	if (cgroup_id == subtree)
		return 0;
	for (level = 0; level < DP_MAX_CGROUP_LEVELS; level++) {
		__u64 id = bpf_get_current_ancestor_cgroup_id(level);
		struct dp_managed *m;

		if (id == 0 || id == cgroup_id)
			break;
		if (!below) {
			below = id == subtree;
			continue;
		}
		m = bpf_map_lookup_elem(&dp_managed, &id);
		if (m) {
			managed = m;
			*managed_id = id;
		}
	}
	*inside = below;
	return managed;
}

/*
 * Orders the loads after it after the loads before it, on every architecture: a fetching atomic is a full
 * barrier in the BPF memory model (arm64 JITs it as LDADDAL, x86 as LOCK XADD). It targets a per-CPU word, so
 * it never bounces a cache line between CPUs. Used only when a verdict is about to be cached.
 */
static __always_inline void order_after(void)
{
	__u32 idx = DP_COUNTER_BARRIER;
	__u64 *word = bpf_map_lookup_elem(&dp_counters, &idx);

	if (word) {
		__u64 v = __sync_fetch_and_add(word, 0);

		asm volatile("" : : "r"(v));
	}
}

/* A verdict and what its event needs. */
struct dp_verdict {
	__u64 managed_id;
	__u64 generation;
	__u32 reason;
	__u32 rule_index;
	__u32 sample_one_in; /* 1 = always report, 0 = never, n = 1 in n */
	__u32 outside;	     /* the caller is outside the managed subtree: allowed, neither counted nor reported */
	__u32 steer;	     /* a DNS destination the proxy must see (dns_steering.h) */
};

/*
 * Judges one connect/sendmsg (SPEC 4, in its order) from the maps. The slot is read once, here; the lookup and
 * the slot's metadata use only that slot, so the verdict and its event belong to one generation. The slot a
 * replacement rewrites is never the one a running program may have read: user space waits for an RCU grace
 * period after each flip before touching the old slot, and this program runs inside the RCU read-side section
 * the kernel holds around cgroup programs (docs/dataplane.md, "Atomic replacement"). Returns 1 when the verdict
 * may be cached (it does not depend on the clock). A global function: the verifier checks it once, not once per
 * path of its caller. A verdict an address learned from DNS decided depends on the clock (its expiry), and a steered
 * DNS verdict must rewrite every call: neither may be cached.
 */
__noinline int decide(const struct dp_request *r, __u64 cgroup_id, int fresh, __u64 now, struct dp_verdict *v)
{
	__u32 zero = 0;
	struct dp_config *cfg = bpf_map_lookup_elem(&dp_config, &zero);
	struct dp_managed *managed;
	struct dp_slot_meta *meta;
	__u32 slot, mode;
	int observe, degraded = 0, inside, cacheable = 1;
	struct dp_walk w;

	if (!r || !v || !cfg)
		return 0;
	v->managed_id = 0;
	v->rule_index = DP_RULE_INDEX_NONE;
	v->sample_one_in = 1;
	v->outside = 0;
	v->steer = 0;
	managed = find_managed(cgroup_id, &v->managed_id, &inside);
	slot = dp_active_slot(cfg);
	meta = bpf_map_lookup_elem(&dp_slot_meta, &slot);
	if (!meta) {
		v->reason = BROKER_DP_REASON_UNMANAGED_ALLOW; /* unreachable: index 0 or 1 of a 2-entry array */
		v->sample_one_in = 0;
		return 0;
	}
	v->generation = meta->generation;

	/* 1. Not managed: allowed whatever the policy says; an event only when the policy samples them (and never
	 * for a caller outside the managed subtree). */
	if (!managed) {
		v->reason = BROKER_DP_REASON_UNMANAGED_ALLOW;
		v->sample_one_in = inside ? meta->unmanaged_one_in : 0;
		v->outside = !inside;
		return 1;
	}
	mode = managed->mode;
	if (mode == DP_MODE_INHERIT)
		mode = *(volatile const __u32 *)&cfg->global_mode;
	observe = mode == DP_MODE_OBSERVE;

	/* 4. is decided before the lookup, which then honours only broker and DNS (2., 3.): observe mode is never
	 * degraded, it blocks nothing and keeps reporting rule verdicts. */
	if (!observe)
		degraded = v->generation == 0 || !fresh;

	dp_walk_init(&w, slot, r->addr, r->judge_v4, r->port, r->protocol, degraded);
	dp_policy_lookup(&w);
	/* Addresses learned from the workload's DNS answers (SPEC 4b): host prefixes next to the walk's result. */
	if (w.action != DP_ACTION_BROKER && w.action != DP_ACTION_DNS && dp_apply_learned(&w, v->managed_id, now))
		cacheable = 0;

	switch (w.action) {
	case DP_ACTION_BROKER: /* 2. */
		v->rule_index = w.rule_index;
		v->reason = BROKER_DP_REASON_ALLOW_BROKER;
		v->sample_one_in = meta->allow_one_in;
		return cacheable;
	case DP_ACTION_DNS: /* 3. */
		v->reason = BROKER_DP_REASON_ALLOW_DNS;
		v->sample_one_in = meta->allow_one_in;
		/* Steered to the agent's DNS proxy when the policy names destinations by DNS name (dns_steering.h). */
		v->steer = meta->steer_dns && *(volatile const __u16 *)&cfg->dns_proxy_port != 0;
		return !v->steer;
	case DP_ACTION_DENY: /* 5. */
		v->rule_index = w.rule_index;
		v->reason = observe ? BROKER_DP_REASON_OBSERVE_WOULD_DENY_EXPLICIT : BROKER_DP_REASON_DENY_EXPLICIT;
		return cacheable;
	case DP_ACTION_ALLOW:
		v->rule_index = w.rule_index;
		v->reason = observe ? BROKER_DP_REASON_OBSERVE_WOULD_ALLOW : BROKER_DP_REASON_ALLOW_EXPLICIT;
		v->sample_one_in = meta->allow_one_in;
		return cacheable;
	}
	if (degraded) { /* 4. */
		v->reason = *(volatile const __u32 *)&cfg->fail_mode == DP_FAIL_OPEN ?
				    BROKER_DP_REASON_ALLOW_DEGRADED_FAIL_OPEN :
				    BROKER_DP_REASON_DENY_DEGRADED_FAIL_CLOSED;
		return 0;
	}
	/* 6. */
	v->reason = observe ? BROKER_DP_REASON_OBSERVE_WOULD_DENY_DEFAULT : BROKER_DP_REASON_DENY_DEFAULT;
	return 1;
}

static __always_inline int same_destination(const struct dp_sk_verdict *c, const struct dp_request *r, __u8 hook)
{
	return c->hook == hook && c->port == r->port && c->judge_v4 == r->judge_v4 && c->addr[0] == r->addr[0] &&
	       c->addr[1] == r->addr[1] && c->addr[2] == r->addr[2] && c->addr[3] == r->addr[3];
}

/*
 * The jiffies value before which a verdict decided now (coarse clock `now`, jiffies `j0` read before it) may be
 * reused without reading the clock again: the heartbeat deadline (beat + grace) counted in ticks of the longest
 * tick any CONFIG_HZ has (DP_MAX_TICK_NS), less one tick for the jiffy in progress. On a kernel with a shorter
 * tick the bound ends earlier in time, never later, and the next call reads the clock again; 0 when the
 * remaining time is shorter than two such ticks (the verdict is then not reused at all).
 */
static __always_inline __u64 fresh_until(__u64 j0, __u64 now, __u64 beat, __u64 grace)
{
	__u64 deadline = beat + grace, ticks;

	if (now >= deadline)
		return 0;
	ticks = (deadline - now) / DP_MAX_TICK_NS;
	return ticks < 2 ? 0 : j0 + ticks - 1;
}

/*
 * A UDP socket keeps its last verdict (the `verdict` half of its dp_sk_state record): a socket that sends to, or
 * connects to, the same destination again from the same cgroup reuses it without the managed-cgroup and policy
 * lookups and without reading the clock. It is reused only while dp_config.epoch -- bumped by user space after
 * every change a verdict depends on -- is the one it was decided under, and while jiffies is below the bound
 * fresh_until() stamped on it, which passes before the heartbeat's grace period ends: a verdict is never reused
 * after the moment it would have turned degraded. bpf_jiffies64() is one load (the verifier inlines it), where
 * the coarse clock is a helper call; a verdict that depends on the clock (degraded) is never cached. A run that
 * reuses a verdict is a run that happened before the change that bumps the epoch; its verdict and its event
 * still come from one generation. TCP sockets connect once, so they never pay for the cache; they get a record
 * only when the egress layer wants their mark. The socket's mark (the other half, read by the egress backstop)
 * is written with the verdict that fills the cache; user space bumps the mark epoch before dp_config.epoch, so a
 * verdict cached under the current epoch was marked under the current mark epoch too, and a reused verdict needs
 * no new mark. Without socket storage in sock_addr programs (dp_sock_addr_storage, a frozen .rodata flag) the
 * verifier drops all of this and every call is judged.
 */
static __always_inline int run(struct bpf_sock_addr *ctx, __u8 hook, int v6)
{
	__u32 zero = 0;
	struct dp_config *cfg = bpf_map_lookup_elem(&dp_config, &zero);
	__u8 family = v6 ? DP_FAMILY_INET6 : DP_FAMILY_INET;
	struct dp_sk_state *s = 0;
	struct dp_request r = {};
	struct dp_verdict v;
	__u64 cgroup_id, epoch, now, beat, grace, j0 = 0;
	int fresh, allow;

	if (!cfg)
		return 1; /* unreachable: an array map always has index 0 */
	cgroup_id = bpf_get_current_cgroup_id();
	epoch = *(volatile const __u64 *)&cfg->epoch;
	read_request(ctx, v6, &r);
	if (r.port == bpf_ntohs(*(volatile const __u16 *)&cfg->dns_proxy_port) && dp_steered_send(ctx, cfg, &r))
		return 1;

	if (dp_sock_addr_storage && r.protocol == DP_PROTO_UDP) {
		struct bpf_sock *sk = ctx->sk;

		if (sk)
			s = bpf_sk_storage_get(&dp_sk_state, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (s) {
			/* A user-space UDP socket: the egress layer judges its packets by the task sending them. */
			if (!(s->flags & DP_SK_F_BY_TASK))
				s->flags |= DP_SK_F_BY_TASK;
			j0 = bpf_jiffies64();
			if (s->verdict.epoch == epoch && j0 < s->verdict.fresh_until_jiffies &&
			    s->verdict.cgroup_id == cgroup_id && same_destination(&s->verdict, &r, hook)) {
				v.reason = s->verdict.reason;
				v.sample_one_in = s->verdict.sample_one_in;
				v.rule_index = s->verdict.rule_index;
				v.managed_id = s->verdict.managed_cgroup_id;
				v.generation = s->verdict.generation;
				v.outside = s->verdict.outside;
				v.steer = 0; /* a steered verdict is never cached */
				goto out;
			}
			/* The verdict about to be cached must come from the state of `epoch` or later. */
			order_after();
		}
	}

	/* The coarse clock (same base as CLOCK_MONOTONIC, one tick of resolution) is enough for a grace period and
	 * costs no clock-source read. */
	now = bpf_ktime_get_coarse_ns();
	beat = *(volatile const __u64 *)&cfg->heartbeat_ns;
	grace = *(volatile const __u64 *)&cfg->grace_ns;
	fresh = !(now > beat && now - beat > grace);

	if (decide(&r, cgroup_id, fresh, now, &v) && s && fresh) {
		struct dp_sk_verdict *c = &s->verdict;

		c->epoch = epoch;
		c->fresh_until_jiffies = fresh_until(j0, now, beat, grace);
		c->cgroup_id = cgroup_id;
		c->managed_cgroup_id = v.managed_id;
		c->generation = v.generation;
		c->addr[0] = r.addr[0];
		c->addr[1] = r.addr[1];
		c->addr[2] = r.addr[2];
		c->addr[3] = r.addr[3];
		c->reason = v.reason;
		c->rule_index = v.rule_index;
		c->sample_one_in = v.sample_one_in;
		c->port = r.port;
		c->hook = hook;
		c->judge_v4 = r.judge_v4;
		c->outside = (__u8)v.outside;
	}
	if (v.steer) {
		/* The packets go to the proxy: the mark the egress layer passes them on names the proxy's address. The
		 * event below still reports the resolver the workload wrote. */
		__u32 proxy[4] = {};
		__u16 proxy_port = dp_steered_destination(cfg, r.judge_v4, proxy);

		if (v.managed_id)
			mark_verdict(ctx, s, r.protocol, proxy_port, r.judge_v4, proxy, v.reason, v.generation,
				     cgroup_id);
		dp_steer_dns(ctx, &r, v6, cgroup_id, v.managed_id, cfg);
	} else if (v.managed_id) {
		mark_verdict(ctx, s, r.protocol, r.port, r.judge_v4, r.addr, v.reason, v.generation, cgroup_id);
	}
out:
	/* Every verdict, also a reused one and one whose event is not sampled or finds the ring buffer full. */
	if (v.outside)
		return 1;
	count_verdict(hook, v.reason);
	allow = reason_allows(v.reason);
	/* Deny, observe would-deny and degraded verdicts are always reported; allows as the policy samples them. */
	if (sampled(v.sample_one_in))
		emit(&r, hook, family, cgroup_id, v.managed_id, v.generation, v.reason, v.rule_index,
		     allow ? DP_VERDICT_ALLOW : DP_VERDICT_DENY);
	return allow ? 1 : 0;
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
