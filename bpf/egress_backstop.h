/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * The egress backstop (layer `egress`, docs/threat-model.md): cgroup_skb/egress judges the IP packets leaving the
 * sockets of managed cgroups, so a packet that escaped the socket hooks (an unconnected ping sendto(), a raw
 * socket where sock_create is not attached, a kernel path no sock_addr hook covers) is still dropped and counted
 * when the policy denies its destination.
 *
 *   1. Not a full socket (a request socket's SYN-ACK, a TIME_WAIT socket's ACK): pass. Neither can reach a
 *      destination of the workload's choosing.
 *   2. A valid mark (socket_marks.h) for exactly this destination: pass. This is the path of every packet of a
 *      flow the connect/sendmsg hooks judged: one socket-storage lookup, the packet's destination read, compares.
 *      The handshake of a TCP connect() that was allowed passes on its mark whatever changed since: the verdict
 *      the caller got covers it (a policy change meets the flow at its first packet after the handshake).
 *   3. A TCP socket past SYN_SENT without any mark: pass. It was accepted from a listener (inbound connections
 *      are not egress) or connected before this layer was attached; an active open always sends its SYN in
 *      SYN_SENT, and that SYN is judged here when no connect verdict marked the socket.
 *   4. Otherwise the packet is judged like a connect (SPEC 4 order) by the cgroup of the task that sent it when
 *      the socket is judged by its sender (DP_SK_F_BY_TASK: every socket but TCP, whose packets leave in the
 *      sender's context) and that task is managed, else by the cgroup of the socket that sent it (TCP: segments
 *      leave from softirq and timers on behalf of no task). A mark holds only for the sender's cgroup it was
 *      taken for, so a socket carried into a managed cgroup is judged again by its new user. Then:
 *      unmanaged -> pass; broker/DNS -> pass; degraded -> fail closed (drop) or open; rules; default deny. A deny
 *      drops the packet (the sending call gets EPERM when it is synchronous: UDP, ICMP, raw) with a
 *      DENY_PACKET_EGRESS event (DENY_DEGRADED_FAIL_CLOSED when degraded), every time: deny events are never
 *      sampled. An allow marks the socket, so its flow takes path 2 from then on and its event (sampled like
 *      every allow) is emitted once per flow and policy, not per packet. Observe mode passes and reports
 *      OBSERVE_WOULD_DENY_PACKET_EGRESS once per flow (the mark remembers it).
 *
 * The judgment is the sock_addr programs' own: the lookup of policy_lookup.h on the slot read once from dp_config,
 * inside the RCU read-side section the kernel holds around cgroup programs (so a replacement never rewrites the
 * slot under it: docs/dataplane.md, "Atomic replacement"). A packet's pid and comm are those of the task running
 * when it left
 * (the sender for UDP, ICMP and raw sends; for TCP segments sent from a timer or softirq, whichever task ran);
 * its uid is the socket owner's.
 */
#ifndef BROKER_INTERCEPTOR_EBPF_EGRESS_BACKSTOP_H
#define BROKER_INTERCEPTOR_EBPF_EGRESS_BACKSTOP_H

/* The destination of one IP packet. */
struct dp_packet {
	__u32 addr[4]; /* network order; IPv4 in addr[0] */
	__u16 port;    /* host order; 0 without ports (ICMP, other protocols, a non-first fragment) */
	__u8 protocol; /* DP_PROTO_TCP, UDP, UDPLITE, ICMP (also ICMPv6), or DP_PROTO_RAW for anything else */
	__u8 family;   /* DP_FAMILY_INET or DP_FAMILY_INET6 */
};

struct dp_ipv4_hdr {
	__u8 version_ihl;
	__u8 tos;
	__u16 tot_len;
	__u16 id;
	__u16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__u16 check;
	__u32 saddr;
	__u32 daddr;
};

struct dp_ipv6_hdr {
	__u32 version_tc_flow;
	__u16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u32 saddr[4];
	__u32 daddr[4];
};

static __always_inline int has_ports(__u8 protocol)
{
	return protocol == DP_PROTO_TCP || protocol == DP_PROTO_UDP || protocol == DP_PROTO_UDPLITE;
}

/* The protocol a packet is judged and reported as: the ones the sock_addr hooks know, ICMPv6 folded into ICMP as
 * they fold it, anything else DP_PROTO_RAW (rules without a protocol still apply to it, endpoints never do). */
static __always_inline __u8 packet_protocol(__u8 ip_protocol)
{
	if (has_ports(ip_protocol) || ip_protocol == DP_PROTO_ICMP)
		return ip_protocol;
	if (ip_protocol == DP_IPPROTO_ICMPV6)
		return DP_PROTO_ICMP;
	return DP_PROTO_RAW;
}

/* Reads the packet's destination; 0 when it is not an IPv4/IPv6 packet or too short. For IPv6 the first next
 * header decides: a packet with extension headers is judged by address as protocol DP_PROTO_RAW. The headers
 * are read in place (direct packet access: a locally built packet has them in its linear part), through
 * bpf_skb_load_bytes only when they are not. */
static __always_inline int parse_packet(struct __sk_buff *skb, struct dp_packet *p)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	__u16 ports[2];

	if (skb->protocol == bpf_htons(DP_ETH_P_IP)) {
		struct dp_ipv4_hdr copy, *h = data;
		__u32 ihl;

		if ((void *)(h + 1) > end) {
			if (bpf_skb_load_bytes(skb, 0, &copy, sizeof(copy)))
				return 0;
			h = &copy;
		}
		p->family = DP_FAMILY_INET;
		p->addr[0] = h->daddr;
		p->protocol = packet_protocol(h->protocol);
		if (bpf_ntohs(h->frag_off) & 0x1fff) {
			p->protocol = DP_PROTO_RAW; /* a later fragment: no transport header to judge */
			return 1;
		}
		if (!has_ports(p->protocol))
			return 1;
		ihl = (__u32)(h->version_ihl & 0xf) * 4;
		if (ihl < sizeof(*h))
			return 1;
		if (data + ihl + sizeof(ports) <= end) {
			__u16 *l4 = data + ihl;

			if ((void *)(l4 + 2) <= end)
				p->port = bpf_ntohs(l4[1]);
		} else if (!bpf_skb_load_bytes(skb, ihl, ports, sizeof(ports))) {
			p->port = bpf_ntohs(ports[1]);
		}
		return 1;
	}
	if (skb->protocol == bpf_htons(DP_ETH_P_IPV6)) {
		struct dp_ipv6_hdr copy, *h = data;

		if ((void *)(h + 1) > end) {
			if (bpf_skb_load_bytes(skb, 0, &copy, sizeof(copy)))
				return 0;
			h = &copy;
		}
		p->family = DP_FAMILY_INET6;
		p->addr[0] = h->daddr[0];
		p->addr[1] = h->daddr[1];
		p->addr[2] = h->daddr[2];
		p->addr[3] = h->daddr[3];
		p->protocol = packet_protocol(h->nexthdr);
		if (!has_ports(h->nexthdr))
			return 1;
		if (data + sizeof(*h) + sizeof(ports) <= end) {
			__u16 *l4 = data + sizeof(*h);

			p->port = bpf_ntohs(l4[1]);
		} else if (!bpf_skb_load_bytes(skb, sizeof(*h), ports, sizeof(ports))) {
			p->port = bpf_ntohs(ports[1]);
		}
		return 1;
	}
	return 0;
}

static __always_inline int mark_matches(const struct dp_sk_mark *m, const struct dp_packet *p)
{
	if (m->family != p->family || m->protocol != p->protocol || m->port != mark_port(p->protocol, p->port))
		return 0;
	if (p->family == DP_FAMILY_INET)
		return *(const __u32 *)m->addr == p->addr[0];
	return *(const __u32 *)&m->addr[0] == p->addr[0] && *(const __u32 *)&m->addr[4] == p->addr[1] &&
	       *(const __u32 *)&m->addr[8] == p->addr[2] && *(const __u32 *)&m->addr[12] == p->addr[3];
}

/* Enforce-mode degradation (SPEC 4, step 4): no policy yet, or the heartbeat is older than the grace period
 * (the coarse clock, as in run()). */
static __always_inline int is_degraded(struct dp_config *cfg, __u64 generation)
{
	__u64 now = bpf_ktime_get_coarse_ns();
	__u64 beat = *(volatile __u64 *)&cfg->heartbeat_ns;
	__u64 grace = *(volatile __u64 *)&cfg->grace_ns;

	return generation == 0 || (now > beat && now - beat > grace);
}

/* The walk over a socket's ancestor cgroups (a bpf_loop callback: verified once, not once per level). */
struct dp_ancestor_walk {
	struct __sk_buff *skb;
	__u64 cgroup_id;
	__u64 subtree;
	__u64 managed_id;
	struct dp_managed *managed;
	int below;
};

static long ancestor_step(__u64 level, void *data)
{
	struct dp_ancestor_walk *w = data;
	__u64 id = bpf_skb_ancestor_cgroup_id(w->skb, (int)level);
	struct dp_managed *m;

	if (id == 0 || id == w->cgroup_id)
		return 1;
	if (!w->below) {
		w->below = id == w->subtree;
		return 0;
	}
	m = bpf_map_lookup_elem(&dp_managed, &id);
	if (m) {
		w->managed = m;
		w->managed_id = id;
	}
	return 0;
}

/* The managed entry of the socket's cgroup or its nearest managed ancestor below the managed subtree's root
 * (find_managed, by the skb's cgroup): the own cgroup first, then the ancestors from the root down, the deepest
 * hit winning. */
static __always_inline struct dp_managed *find_managed_skb(struct __sk_buff *skb, struct dp_config *cfg,
							   __u64 cgroup_id, __u64 *managed_id, int *inside)
{
	struct dp_managed *managed = bpf_map_lookup_elem(&dp_managed, &cgroup_id);
	struct dp_ancestor_walk w = {};

	if (managed) {
		*managed_id = cgroup_id;
		*inside = 1;
		return managed;
	}
	w.skb = skb;
	w.cgroup_id = cgroup_id;
	w.subtree = *(volatile const __u64 *)&cfg->subtree_id;
	*inside = 1;
	if (cgroup_id == w.subtree)
		return 0;
	bpf_loop(DP_MAX_CGROUP_LEVELS, ancestor_step, &w, 0);
	*managed_id = w.managed_id;
	*inside = w.below;
	return w.managed;
}

static __always_inline void emit_packet_event(struct __sk_buff *skb, const struct dp_packet *p, __u64 cgroup_id,
					      __u64 managed_id, __u64 generation, __u32 reason, __u32 rule_index,
					      __u8 verdict)
{
	/* The socket's owner: the program may run in a context that is not the sending task's. */
	emit_record(DP_HOOK_EGRESS, p->protocol, p->family, p->addr, p->port, bpf_get_socket_uid(skb), cgroup_id,
		    managed_id, generation, reason, rule_index, verdict);
}

/* Step 4 of the file comment. `task` is the sending task's cgroup for a socket judged by its sender
 * (DP_SK_F_BY_TASK), else 0. Returns the program's verdict. */
static __always_inline int egress_judge(struct __sk_buff *skb, struct bpf_sock *sk, struct dp_config *cfg,
					struct dp_layer_state *st, const struct dp_packet *p, __u64 task)
{
	__u64 cgroup_id = task, managed_id = 0, generation;
	struct dp_managed *managed = 0;
	__u32 flags = *(volatile __u32 *)&st->flags, epoch = *(volatile __u32 *)&st->mark_epoch;
	__u32 reason, rule_index = DP_RULE_INDEX_NONE, mode, allow_one_in, slot;
	struct dp_slot_meta *meta;
	struct dp_sk_state *s;
	int observe, degraded = 0, allow, always_emit = 1, inside = 1, task_inside = 0;
	struct dp_walk w;
	__u8 kind;

	/* The sender's policy when the sender is managed; otherwise the socket's own cgroup's, as for a socket that
	 * is not judged by its sender: a socket a managed workload created keeps its policy in any hands. */
	if (task)
		managed = find_managed(task, &managed_id, &task_inside);
	if (!managed) {
		cgroup_id = bpf_skb_cgroup_id(skb);
		managed = find_managed_skb(skb, cfg, cgroup_id, &managed_id, &inside);
		inside |= task_inside;
	}
	if (!managed) {
		/* TCP needs no mark: only its SYN gets here. Other sockets skip the cgroup walk from now on. */
		if ((flags & DP_LAYER_F_MARKS) && sk->protocol != DP_PROTO_TCP) {
			s = bpf_sk_storage_get(&dp_sk_state, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
			if (s) {
				s->mark.kind = DP_MARK_UNMANAGED;
				s->mark.epoch = epoch;
				s->mark.task_cgroup = task;
			}
		}
		if (inside)
			count_verdict(DP_HOOK_EGRESS, BROKER_DP_REASON_UNMANAGED_ALLOW);
		return 1;
	}
	layer_count(DP_LC_PACKETS_JUDGED);
	mode = managed->mode;
	if (mode == DP_MODE_INHERIT)
		mode = *(volatile __u32 *)&cfg->global_mode;
	observe = mode == DP_MODE_OBSERVE;

	/* The slot is read once; the lookup and the metadata use only it (one generation per verdict). */
	slot = dp_active_slot(cfg);
	meta = bpf_map_lookup_elem(&dp_slot_meta, &slot);
	if (!meta)
		return 1; /* unreachable: index 0 or 1 of a 2-entry array */
	generation = meta->generation;
	allow_one_in = meta->allow_one_in;
	if (!observe)
		degraded = is_degraded(cfg, generation);
	dp_walk_init(&w, slot, p->addr, p->family == DP_FAMILY_INET, p->port, p->protocol, degraded);
	dp_policy_lookup(&w);

	switch (w.action) {
	case DP_ACTION_BROKER:
		reason = BROKER_DP_REASON_ALLOW_BROKER;
		always_emit = 0;
		break;
	case DP_ACTION_DNS:
		reason = BROKER_DP_REASON_ALLOW_DNS;
		always_emit = 0;
		break;
	case DP_ACTION_DENY:
		rule_index = w.rule_index;
		reason = observe ? BROKER_DP_REASON_OBSERVE_WOULD_DENY_PACKET_EGRESS : BROKER_DP_REASON_DENY_PACKET_EGRESS;
		break;
	case DP_ACTION_ALLOW:
		rule_index = w.rule_index;
		reason = observe ? BROKER_DP_REASON_OBSERVE_WOULD_ALLOW : BROKER_DP_REASON_ALLOW_EXPLICIT;
		always_emit = 0;
		break;
	default:
		if (degraded && *(volatile __u32 *)&cfg->fail_mode == DP_FAIL_OPEN) {
			reason = BROKER_DP_REASON_ALLOW_DEGRADED_FAIL_OPEN;
			always_emit = 0; /* once per flow: the FAIL_OPEN mark keeps it off this path while degraded */
		} else if (degraded) {
			reason = BROKER_DP_REASON_DENY_DEGRADED_FAIL_CLOSED;
		} else {
			reason = observe ? BROKER_DP_REASON_OBSERVE_WOULD_DENY_PACKET_EGRESS :
					   BROKER_DP_REASON_DENY_PACKET_EGRESS;
		}
		break;
	}

	allow = reason != BROKER_DP_REASON_DENY_PACKET_EGRESS && reason != BROKER_DP_REASON_DENY_DEGRADED_FAIL_CLOSED;
	count_verdict(DP_HOOK_EGRESS, reason);
	if (!allow)
		layer_count(DP_LC_PACKETS_DROPPED);
	else if (reason == BROKER_DP_REASON_OBSERVE_WOULD_DENY_PACKET_EGRESS)
		layer_count(DP_LC_PACKETS_WOULD_DROP);
	kind = mark_kind_of(reason);
	if (kind && (flags & DP_LAYER_F_MARKS)) {
		s = bpf_sk_storage_get(&dp_sk_state, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (s) {
			write_mark(&s->mark, kind, generation, epoch, p->family, p->protocol, p->port, p->addr, task);
			layer_count(DP_LC_MARKS_WRITTEN);
		}
	}
	/* Allows are reported (sampled) only where a mark keeps the report to once per flow: without socket storage
	 * every packet of an allowed flow comes here, and the egress layer reports only what it drops or would. */
	if (always_emit || ((flags & DP_LAYER_F_MARKS) && sampled(allow_one_in)))
		emit_packet_event(skb, p, cgroup_id, managed_id, generation, reason, rule_index,
				  allow ? DP_VERDICT_ALLOW : DP_VERDICT_DENY);
	return allow;
}

/*
 * Returns 1 to let the packet leave, 0 to drop it (the kernel returns EPERM to a synchronous sender). The mark is
 * looked up on skb->sk as it comes (any socket kind: only a full socket can hold a record), so a packet that takes
 * path 2 pays for one helper call; bpf_sk_fullsock() is called only on the paths that need the full socket.
 */
SEC("cgroup_skb/egress")
int dp_egress(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;
	struct dp_layer_state *st = layer_state();
	__u32 zero = 0;
	struct dp_config *cfg = bpf_map_lookup_elem(&dp_config, &zero);
	struct dp_sk_mark *m = 0;
	struct dp_packet p = {};
	__u32 flags, epoch;
	__u64 task = 0;

	if (!sk || !st || !cfg)
		return 1;
	flags = *(volatile __u32 *)&st->flags;
	epoch = *(volatile __u32 *)&st->mark_epoch;
	if (flags & DP_LAYER_F_MARKS) {
		struct dp_sk_state *s = bpf_sk_storage_get(&dp_sk_state, sk, 0, 0);

		if (s) {
			/* A socket judged by its sender: its packets leave in the sending task's context. */
			if (s->flags & DP_SK_F_BY_TASK)
				task = bpf_get_current_cgroup_id();
			/* A record without a mark (kind 0) holds only a UDP socket's cached verdict. */
			if (s->mark.kind && s->mark.task_cgroup == task)
				m = &s->mark;
		}
		if (m && m->kind == DP_MARK_UNMANAGED && m->epoch == epoch)
			return 1;
	}
	if (!m) {
		sk = bpf_sk_fullsock(sk);
		if (!sk)
			return 1; /* 1. */
		if (sk->protocol == DP_PROTO_TCP && sk->state != DP_TCP_SYN_SENT)
			return 1; /* 3., decided before reading the packet */
	}
	if (!parse_packet(skb, &p))
		return 1; /* an inet socket's egress carries IPv4 or IPv6 only */
	if (m && mark_matches(m, &p)) { /* 2. */
		__u64 generation;

		/* A connect verdict covers its own handshake: the SYN (and its retransmissions) of a socket that
		 * connect() allowed leaves even if a new policy arrived in between; the flow's first packet after the
		 * handshake meets the new policy. Dropping the SYN would not fail connect(), only stall it. (The mark
		 * matched a TCP packet, so it is a TCP mark; only a TCP socket is ever in SYN_SENT.) */
		if (m->kind == DP_MARK_ALLOW && p.protocol == DP_PROTO_TCP && sk->state == DP_TCP_SYN_SENT)
			return 1;
		generation = active_generation(cfg);
		if (m->epoch == epoch && m->generation == generation &&
		    (m->kind != DP_MARK_FAIL_OPEN || is_degraded(cfg, generation)))
			return 1;
	}
	if (m) {
		sk = bpf_sk_fullsock(sk); /* a socket with a record is a full socket: never 0 here */
		if (!sk)
			return 1;
	}
	return egress_judge(skb, sk, cfg, st, &p, task) ? 1 : 0; /* 4. */
}

#endif /* BROKER_INTERCEPTOR_EBPF_EGRESS_BACKSTOP_H */
