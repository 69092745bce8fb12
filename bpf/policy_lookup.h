/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * The policy lookup: which broker/DNS endpoint or rule decides a destination (ip, port, protocol) in one policy
 * slot. Shared by every program that judges a destination: the cgroup sock_addr programs of dataplane.bpf.c, and
 * any other program (e.g. a cgroup_skb egress program) that includes this header; the maps are pinned by name, so
 * programs of different objects loaded with the same pin directory share them.
 *
 * Layout (docs/dataplane.md, "Rule lookup"): per family and slot one hash map of groups keyed by
 * (slot, prefix length, address masked to it), found through the map-of-maps dp_groups4/dp_groups6. A group holds every entry of one CIDR -- and, for a host (/32,
 * /128), its broker and DNS endpoints -- sorted broker, DNS, deny, allow; the first entry matching port and
 * protocol decides. dp_slot_meta lists the prefix lengths present in the slot, longest first, and the walk looks
 * up only those, longest first: the first group with a matching entry is the longest matching prefix. Broker
 * and DNS entries live in host groups, which come first, so one hash lookup decides a broker or DNS destination
 * and any destination a host rule covers; a group of at most DP_GROUP_INLINE entries carries them in its value.
 *
 * The caller picks the slot once (dp_active_slot) and passes it in: every map read below uses that slot only,
 * which is what makes a replacement atomic for the caller (docs/dataplane.md, "Atomic replacement").
 */
#ifndef BROKER_INTERCEPTOR_EBPF_POLICY_LOOKUP_H
#define BROKER_INTERCEPTOR_EBPF_POLICY_LOOKUP_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "dataplane_abi.h"
#include "dataplane_maps.h"

/* Its maps (dp_config, dp_slot_meta, dp_groups4/dp_groups6, dp_entries) are in dataplane_maps.h. */

/* One destination being looked up, and the result. Fill it with dp_walk_init. */
struct dp_walk {
	union {
		struct dp_key4 k4;
		struct dp_key6 k6;
	};
	__u32 addr[4];    /* network order, as judged: IPv4 (also an IPv4-mapped IPv6 one) in addr[0] */
	__u32 slot;
	__u32 base;       /* first overflow entry of this family in the slot's dp_entries map */
	__u32 scan_first; /* first overflow entry of the group being scanned */
	__u32 rule_index; /* out: DP_RULE_INDEX_NONE unless a rule decided */
	__u16 port;       /* host order */
	__u8 protocol;    /* DP_PROTO_* */
	__u8 v4;
	__u8 endpoints_only; /* degraded: only broker and DNS may decide */
	__u8 action;         /* out: DP_ACTION_*, 0 when nothing matched */
	__u8 host;           /* out: the deciding group is a host prefix (/32, /128) */
	__u8 pad;
};

/* The slot every read of one verdict uses: read once, then passed to everything else. */
static __always_inline __u32 dp_active_slot(const struct dp_config *cfg)
{
	return *(volatile const __u32 *)&cfg->active_slot & 1;
}

/* `i & mask`, kept even where the compiler can prove it redundant: the verifier needs to see the bound on the
 * register that indexes the array, and clang otherwise checks a copy and indexes with the original. */
static __always_inline __u32 dp_index(__u32 i, __u32 mask)
{
	asm volatile("" : "+r"(i));
	return i & mask;
}

/* A network-order mask of the first `bits` bits of a 32-bit word (bits >= 32: all of them). */
static __always_inline __u32 dp_mask32(__u32 bits)
{
	if (bits == 0)
		return 0;
	if (bits >= 32)
		return 0xffffffff;
	return bpf_htonl(0xffffffffu << (32 - bits));
}

static __always_inline void dp_walk_init(struct dp_walk *w, __u32 slot, const __u32 addr[4], int v4, __u16 port,
					 __u8 protocol, int endpoints_only)
{
	__builtin_memset(w, 0, sizeof(*w));
	w->addr[0] = addr[0];
	w->addr[1] = addr[1];
	w->addr[2] = addr[2];
	w->addr[3] = addr[3];
	w->slot = slot & 1;
	w->base = v4 ? 0 : DP_ENTRIES_PER_FAMILY;
	w->rule_index = DP_RULE_INDEX_NONE;
	w->port = port;
	w->protocol = protocol;
	w->v4 = v4 ? 1 : 0;
	w->endpoints_only = endpoints_only ? 1 : 0;
}

/* Offers one entry; 1 when the scan of its group is over (it decided, or a degraded walk reached the rules). */
static __always_inline int dp_take(struct dp_walk *w, const struct dp_rule_entry *e)
{
	__u8 action = e->action;

	if (w->endpoints_only && action != DP_ACTION_BROKER && action != DP_ACTION_DNS)
		return 1;
	if (e->protocol != 0 && e->protocol != w->protocol)
		return 0;
	if (w->port < e->port_lo || w->port > e->port_hi)
		return 0;
	w->action = action;
	w->rule_index = e->rule_index;
	return 1;
}

/* Offers the entries of a host prefix the caller found elsewhere (an address learned from a DNS answer, SPEC 4b):
 * the first matching one decides, as in a group. */
static __always_inline int dp_take_inline(struct dp_walk *w, const struct dp_rule_entry *entries, __u32 count)
{
	if (count > 0 && dp_take(w, &entries[0]))
		return w->action != 0;
	if (count > 1 && dp_take(w, &entries[1]))
		return w->action != 0;
	if (count > 2 && dp_take(w, &entries[2]))
		return w->action != 0;
	if (count > 3 && dp_take(w, &entries[3]))
		return w->action != 0;
	return 0;
}

static long dp_scan_cb(__u64 i, void *data)
{
	struct dp_walk *w = data;
	__u32 idx = w->scan_first + (__u32)i, slot = w->slot;
	void *entries = bpf_map_lookup_elem(&dp_entries, &slot);
	struct dp_rule_entry *e;

	if (!entries)
		return 1;
	e = bpf_map_lookup_elem(entries, &idx);
	if (!e)
		return 1;
	return dp_take(w, e);
}

/* 1 when the group decided. Small groups are scanned in place (no further lookup); larger ones in dp_entries. */
static __always_inline int dp_scan_group(struct dp_walk *w, const struct dp_group *g)
{
	__u32 count = g->count;

	if (count <= DP_GROUP_INLINE)
		return dp_take_inline(w, g->entries, count);
	if (count > DP_ENTRIES_PER_PREFIX)
		count = DP_ENTRIES_PER_PREFIX;
	w->scan_first = w->base + g->first;
	bpf_loop(count, dp_scan_cb, w, 0);
	return w->action != 0;
}

/* Broker and DNS live only in the host group, the first one looked up: a degraded walk ends there. */
static __always_inline long dp_walk_found(struct dp_walk *w, const struct dp_group *g)
{
	if (!g)
		return w->endpoints_only != 0;
	return dp_scan_group(w, g) || w->endpoints_only != 0;
}

/* Looks up the i-th present IPv4 prefix length (longest first); 1 when the walk is over. */
static long dp_walk4_cb(__u64 i, void *data)
{
	struct dp_walk *w = data;
	__u32 slot = w->slot;
	struct dp_slot_meta *meta = bpf_map_lookup_elem(&dp_slot_meta, &slot);
	void *groups;
	__u32 len;

	if (!meta || i >= meta->n_len4)
		return 1;
	len = meta->len4[dp_index((__u32)i, DP_V4_LENGTHS_ROOM - 1)];
	if (w->endpoints_only && len != 32)
		return 1;
	w->k4.slot = (__u8)slot;
	w->k4.prefix_len = (__u8)len;
	w->k4.addr = w->addr[0] & dp_mask32(len);
	w->host = len == 32;
	groups = bpf_map_lookup_elem(&dp_groups4, &slot);
	if (!groups)
		return 1; /* the slot has no group map yet: nothing was ever written to it */
	return dp_walk_found(w, bpf_map_lookup_elem(groups, &w->k4));
}

/* The same for IPv6. */
static long dp_walk6_cb(__u64 i, void *data)
{
	struct dp_walk *w = data;
	__u32 slot = w->slot;
	struct dp_slot_meta *meta = bpf_map_lookup_elem(&dp_slot_meta, &slot);
	void *groups;
	__u32 len;

	if (!meta || i >= meta->n_len6)
		return 1;
	len = meta->len6[dp_index((__u32)i, DP_V6_LENGTHS_ROOM - 1)];
	if (w->endpoints_only && len != 128)
		return 1;
	w->k6.slot = (__u8)slot;
	w->k6.prefix_len = (__u8)len;
	w->k6.addr[0] = w->addr[0] & dp_mask32(len);
	w->k6.addr[1] = w->addr[1] & dp_mask32(len > 32 ? len - 32 : 0);
	w->k6.addr[2] = w->addr[2] & dp_mask32(len > 64 ? len - 64 : 0);
	w->k6.addr[3] = w->addr[3] & dp_mask32(len > 96 ? len - 96 : 0);
	w->host = len == 128;
	groups = bpf_map_lookup_elem(&dp_groups6, &slot);
	if (!groups)
		return 1;
	return dp_walk_found(w, bpf_map_lookup_elem(groups, &w->k6));
}

/*
 * Decides w's destination: w->action is the action of the first matching entry of the longest matching prefix
 * (broker and DNS first, deny before allow), 0 when nothing matched; w->rule_index the rule that decided. The walk
 * visits only the prefix lengths present in the slot, longest first, and usually ends at the first: a host group
 * (broker, DNS, host rules) or the one CIDR covering the destination. The kernel inlines bpf_loop with a known
 * callback into a plain loop, so the walk costs one call per length visited.
 */
static __always_inline void dp_policy_lookup(struct dp_walk *w)
{
	if (w->v4)
		bpf_loop(DP_V4_LENGTHS, dp_walk4_cb, w, 0);
	else
		bpf_loop(DP_V6_LENGTHS, dp_walk6_cb, w, 0);
}

#endif /* BROKER_INTERCEPTOR_EBPF_POLICY_LOOKUP_H */
