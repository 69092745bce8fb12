/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * Socket marks: what a socket was last judged for, so the egress backstop (egress_backstop.h) passes the packets
 * of a flow the connect/sendmsg hooks already judged without judging them again.
 *
 * A mark (struct dp_sk_mark, in the socket's one storage record dp_sk_state, which lives and dies with the socket
 * and also holds a UDP socket's cached verdict) holds the judged destination, the policy generation and the
 * layers' mark epoch. It is valid while both are current: a new policy
 * (generation) or a change of the managed cgroups or modes (epoch) makes the next packet of every flow be judged
 * again, once. Verdicts that hold until such a change are marked: allows and observe-mode would-denies (reported
 * once per flow instead of once per packet); a degraded fail-open allow is marked FAIL_OPEN, which holds only
 * while the dataplane stays degraded (the flow is judged by the rules again once the agent is back). Denied calls
 * send nothing and leave the mark as it was.
 *
 * Included by dataplane.bpf.c after dataplane_maps.h and before run(), which calls mark_verdict() with every managed
 * verdict (`addr` as judged: an IPv4 destination, also an IPv4-mapped one, in addr[0]).
 */
#ifndef BROKER_INTERCEPTOR_EBPF_SOCKET_MARKS_H
#define BROKER_INTERCEPTOR_EBPF_SOCKET_MARKS_H

/* Its maps (dp_layer_state, dp_sk_state, dp_layer_counters) are in dataplane_maps.h. */

/*
 * Set by the loader before the object is loaded (a frozen .rodata value, so the verifier drops the dead branch):
 * 1 when this kernel lets sock_addr programs use socket storage (bpf_sk_storage_get), probed with
 * bpf/probes.bpf.c. On a kernel without it the sock_addr programs load without the marking code.
 */
const volatile __u32 dp_sock_addr_storage = 0;

static __always_inline void layer_count(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&dp_layer_counters, &idx);

	if (c)
		__sync_fetch_and_add(c, 1);
}

static __always_inline struct dp_layer_state *layer_state(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&dp_layer_state, &zero);
}

static __always_inline __u32 layer_flags(void)
{
	struct dp_layer_state *st = layer_state();

	return st ? *(volatile __u32 *)&st->flags : 0;
}

/* The mark kind a verdict earns, 0 for none (see the file comment). */
static __always_inline __u8 mark_kind_of(__u32 reason)
{
	switch (reason) {
	case BROKER_DP_REASON_ALLOW_EXPLICIT:
	case BROKER_DP_REASON_ALLOW_BROKER:
	case BROKER_DP_REASON_ALLOW_DNS:
	case BROKER_DP_REASON_OBSERVE_WOULD_ALLOW:
		return DP_MARK_ALLOW;
	case BROKER_DP_REASON_OBSERVE_WOULD_DENY_EXPLICIT:
	case BROKER_DP_REASON_OBSERVE_WOULD_DENY_DEFAULT:
	case BROKER_DP_REASON_OBSERVE_WOULD_DENY_PACKET_EGRESS:
		return DP_MARK_OBSERVED;
	case BROKER_DP_REASON_ALLOW_DEGRADED_FAIL_OPEN:
		return DP_MARK_FAIL_OPEN;
	default:
		return 0;
	}
}

/* ICMP has no ports: a ping socket's sin_port is an identifier, and its packets carry none. (ICMPv6 is folded
 * into DP_PROTO_ICMP by the programs, on both sides of the comparison.) */
static __always_inline __u16 mark_port(__u8 protocol, __u16 port)
{
	return protocol == DP_PROTO_ICMP ? 0 : port;
}

/* Writes the mark of one judged destination (family INET: addr[0..4]). */
static __always_inline void write_mark(struct dp_sk_mark *m, __u8 kind, __u64 generation, __u32 epoch, __u8 family,
				       __u8 protocol, __u16 port, const void *addr, __u64 task_cgroup)
{
	m->generation = generation;
	m->task_cgroup = task_cgroup;
	m->epoch = epoch;
	m->kind = kind;
	m->family = family;
	m->protocol = protocol;
	m->pad = 0;
	m->port = mark_port(protocol, port);
	m->pad2 = 0;
	m->pad3 = 0;
	if (family == DP_FAMILY_INET) {
		__builtin_memset(m->addr, 0, sizeof(m->addr));
		__builtin_memcpy(m->addr, addr, 4);
	} else {
		__builtin_memcpy(m->addr, addr, 16);
	}
}

/* Every socket but TCP sends its packets in the sending task's context: the egress layer judges them by that task
 * (DP_SK_F_BY_TASK). A TCP segment may leave from softirq or a timer, on behalf of no task. */
static __always_inline int judged_by_task(__u8 protocol)
{
	return protocol != DP_PROTO_TCP;
}

/*
 * Called by run() with the verdict of a managed connect/sendmsg: marks the socket with the destination it was
 * judged for, when the egress layer reads marks (DP_LAYER_F_MARKS) and this kernel lets sock_addr programs use
 * socket storage. `s` is the socket's record when run() already has it (a UDP socket), 0 to look it up. An
 * IPv4-mapped destination is marked as the IPv4 address its packets carry. `cgroup_id` is the calling task's
 * cgroup: the mark of a socket judged by its sending task holds only for packets that task's cgroup sends.
 */
static __always_inline void mark_verdict(struct bpf_sock_addr *ctx, struct dp_sk_state *s, __u8 protocol,
					 __u16 port, int judge_v4, const __u32 addr[4], __u32 reason, __u64 generation,
					 __u64 cgroup_id)
{
	int by_task = judged_by_task(protocol);

	struct dp_layer_state *st;
	__u8 kind;

	if (!dp_sock_addr_storage)
		return;
	kind = mark_kind_of(reason);
	if (!kind)
		return;
	st = layer_state();
	if (!st || !(*(volatile __u32 *)&st->flags & DP_LAYER_F_MARKS))
		return;
	if (!s)
		s = bpf_sk_storage_get(&dp_sk_state, ctx->sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!s)
		return; /* no memory for the record: the egress layer judges the packets instead */
	if (by_task)
		s->flags |= DP_SK_F_BY_TASK;
	write_mark(&s->mark, kind, generation, *(volatile __u32 *)&st->mark_epoch,
		   judge_v4 ? DP_FAMILY_INET : DP_FAMILY_INET6, protocol, port, addr, by_task ? cgroup_id : 0);
	layer_count(DP_LC_MARKS_WRITTEN);
}

#endif /* BROKER_INTERCEPTOR_EBPF_SOCKET_MARKS_H */
