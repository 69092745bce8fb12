/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * Rules by name (SPEC 4b; docs/dataplane.md, "Rules by name"): the kernel half.
 *
 * - Learned addresses: the agent's DNS proxy writes, before it releases an answer, each A/AAAA address of a name
 *   an fqdn rule or broker name names into dp_learned, keyed by (slot, managed cgroup, address), with the entries
 *   of the rules whose names taught it and the answer's expiry. dp_apply_learned judges a destination by them as a
 *   host prefix (/32, /128) of the slot being read, next to the CIDR walk.
 * - Steering: when the active policy names destinations by DNS name (dp_slot_meta.steer_dns), a managed
 *   workload's connect/sendmsg to a DNS endpoint is rewritten to the proxy (dp_config.dns_proxy_*), and the
 *   socket's intended resolver is recorded in dp_dns_flows under its cookie: the proxy reads it to know whom to
 *   forward to and who asked. The return path (recvmsg for UDP, getpeername for connected sockets) shows the
 *   workload its own resolver's address where the proxy's would appear.
 */
#ifndef BROKER_INTERCEPTOR_EBPF_DNS_STEERING_H
#define BROKER_INTERCEPTOR_EBPF_DNS_STEERING_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "dataplane_abi.h"
#include "dataplane_maps.h"
#include "policy_lookup.h"

/*
 * Offers the learned entries of w's destination for `managed_id` (the walk `w` has already run): 1 when a learned
 * address decided (w->action, w->rule_index), 0 when the walk's own result stands. A learned address is a host
 * prefix: it beats every shorter CIDR, and on a tie with a host rule of the policy deny wins (the walk's deny
 * stands; a learned deny beats the walk's allow). A learned broker entry decides like a broker endpoint, also in a
 * degraded walk; expired entries are not read.
 */
static __always_inline int dp_apply_learned(struct dp_walk *w, __u64 managed_id, __u64 now)
{
	struct dp_learned_key k = {};
	struct dp_learned *l;
	__u8 walk_action = w->action, walk_host = w->host;
	__u32 walk_rule = w->rule_index, count;

	k.managed_id = managed_id;
	k.slot = (__u8)w->slot;
	k.v4 = w->v4;
	k.addr[0] = w->addr[0];
	if (!w->v4) {
		k.addr[1] = w->addr[1];
		k.addr[2] = w->addr[2];
		k.addr[3] = w->addr[3];
	}
	l = bpf_map_lookup_elem(&dp_learned, &k);
	if (!l || l->expires_ns <= now)
		return 0;
	count = l->count;
	w->action = 0;
	w->rule_index = DP_RULE_INDEX_NONE;
	if (dp_take_inline(w, l->entries, count) && !(walk_action == DP_ACTION_DENY && walk_host &&
						      w->action != DP_ACTION_BROKER))
		return 1;
	w->action = walk_action;
	w->rule_index = walk_rule;
	return 0;
}

/* The proxy's address as a judged destination (IPv4, also for an IPv4-mapped one, in addr[0]); its port, host
 * order. */
static __always_inline __u16 dp_steered_destination(const struct dp_config *cfg, int judge_v4, __u32 addr[4])
{
	if (judge_v4) {
		addr[0] = *(volatile const __u32 *)&cfg->dns_proxy_ip4;
	} else {
		addr[0] = cfg->dns_proxy_ip6[0];
		addr[1] = cfg->dns_proxy_ip6[1];
		addr[2] = cfg->dns_proxy_ip6[2];
		addr[3] = cfg->dns_proxy_ip6[3];
	}
	return bpf_ntohs(*(volatile const __u16 *)&cfg->dns_proxy_port);
}

/*
 * 1 for a send to the proxy on a socket this program steered: an IPv6 socket connected to an IPv4-mapped resolver
 * sends through udp_sendmsg with its (rewritten) peer as the address, so sendmsg4 sees the proxy. It was judged when
 * it connected; like any other send on a connected socket it is not judged again.
 */
static __always_inline int dp_steered_send(struct bpf_sock_addr *ctx, const struct dp_config *cfg,
					   const struct dp_request *r)
{
	__u32 proxy[4] = {};
	__u16 port = dp_steered_destination(cfg, r->judge_v4, proxy);
	__u64 cookie;

	if (port == 0 || r->port != port || !r->judge_v4 || r->addr[0] != proxy[0])
		return 0;
	cookie = bpf_get_socket_cookie(ctx);
	return bpf_map_lookup_elem(&dp_dns_flows, &cookie) != 0;
}

/*
 * Rewrites the destination of a DNS connect/sendmsg to the proxy and records the intended one under the socket's
 * cookie. A record that could not be written (it cannot: an LRU map makes room) would leave the proxy unable to
 * place the query, which it then drops: DNS fails closed, it is never sent unjudged.
 */
static __always_inline void dp_steer_dns(struct bpf_sock_addr *ctx, const struct dp_request *r, int v6,
					 __u64 cgroup_id, __u64 managed_id, const struct dp_config *cfg)
{
	struct dp_dns_flow f = {};
	__u64 cookie = bpf_get_socket_cookie(ctx);
	__u32 proxy4 = *(volatile const __u32 *)&cfg->dns_proxy_ip4;
	__u16 port = *(volatile const __u16 *)&cfg->dns_proxy_port;

	f.port = r->port;
	f.cgroup_id = cgroup_id;
	f.managed_id = managed_id;
	if (r->judge_v4) {
		f.addr[0] = r->addr[0];
		f.family = DP_FAMILY_INET;
		f.mapped = v6 ? 1 : 0;
	} else {
		f.addr[0] = r->ip6[0];
		f.addr[1] = r->ip6[1];
		f.addr[2] = r->ip6[2];
		f.addr[3] = r->ip6[3];
		f.family = DP_FAMILY_INET6;
	}
	bpf_map_update_elem(&dp_dns_flows, &cookie, &f, BPF_ANY);
	if (!v6) {
		ctx->user_ip4 = proxy4;
	} else if (r->judge_v4) {
		ctx->user_ip6[3] = proxy4; /* ::ffff:<proxy's IPv4 address>: the first three words stay */
	} else {
		ctx->user_ip6[0] = cfg->dns_proxy_ip6[0];
		ctx->user_ip6[1] = cfg->dns_proxy_ip6[1];
		ctx->user_ip6[2] = cfg->dns_proxy_ip6[2];
		ctx->user_ip6[3] = cfg->dns_proxy_ip6[3];
	}
	ctx->user_port = port;
}

/*
 * The return path of a steered socket: where the proxy's address appears as the peer (a datagram's source in
 * recvmsg, the connected peer in getpeername), the workload sees the resolver it addressed. Every other socket is
 * left alone: its cookie has no record, or the peer is not the proxy. These programs must return 1.
 */
static __always_inline int dp_restore_peer(struct bpf_sock_addr *ctx, int v6)
{
	__u32 zero = 0;
	struct dp_config *cfg = bpf_map_lookup_elem(&dp_config, &zero);
	struct dp_dns_flow *f;
	__u64 cookie;
	__u16 port;

	if (!cfg)
		return 1;
	port = *(volatile const __u16 *)&cfg->dns_proxy_port;
	if (port == 0 || (__u16)ctx->user_port != port)
		return 1;
	cookie = bpf_get_socket_cookie(ctx);
	f = bpf_map_lookup_elem(&dp_dns_flows, &cookie);
	if (!f)
		return 1;
	if (!v6) {
		if (ctx->user_ip4 != cfg->dns_proxy_ip4 || f->family != DP_FAMILY_INET)
			return 1;
		ctx->user_ip4 = f->addr[0];
	} else if (ctx->user_ip6[0] == 0 && ctx->user_ip6[1] == 0 && ctx->user_ip6[2] == bpf_htonl(0x0000ffff)) {
		/* An IPv6 socket talking to an IPv4 resolver (steered on connect6, or on sendmsg4 for a mapped sendto) */
		if (f->family != DP_FAMILY_INET || ctx->user_ip6[3] != cfg->dns_proxy_ip4)
			return 1;
		ctx->user_ip6[3] = f->addr[0];
	} else {
		if (f->family != DP_FAMILY_INET6 || ctx->user_ip6[0] != cfg->dns_proxy_ip6[0] ||
		    ctx->user_ip6[1] != cfg->dns_proxy_ip6[1] || ctx->user_ip6[2] != cfg->dns_proxy_ip6[2] ||
		    ctx->user_ip6[3] != cfg->dns_proxy_ip6[3])
			return 1;
		ctx->user_ip6[0] = f->addr[0];
		ctx->user_ip6[1] = f->addr[1];
		ctx->user_ip6[2] = f->addr[2];
		ctx->user_ip6[3] = f->addr[3];
	}
	ctx->user_port = bpf_htons(f->port);
	return 1;
}

SEC("cgroup/recvmsg4")
int dp_dns_recvmsg4(struct bpf_sock_addr *ctx)
{
	return dp_restore_peer(ctx, 0);
}

SEC("cgroup/recvmsg6")
int dp_dns_recvmsg6(struct bpf_sock_addr *ctx)
{
	return dp_restore_peer(ctx, 1);
}

SEC("cgroup/getpeername4")
int dp_dns_getpeername4(struct bpf_sock_addr *ctx)
{
	return dp_restore_peer(ctx, 0);
}

SEC("cgroup/getpeername6")
int dp_dns_getpeername6(struct bpf_sock_addr *ctx)
{
	return dp_restore_peer(ctx, 1);
}

#endif /* BROKER_INTERCEPTOR_EBPF_DNS_STEERING_H */
