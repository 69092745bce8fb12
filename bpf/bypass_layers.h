/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * The bypass layers (docs/threat-model.md): what a workload cannot do around connect()/sendmsg().
 *
 *   dp_sock_create        cgroup/sock_create        refuses IPv4/IPv6 sockets the sock_addr hooks cannot judge
 *   dp_socket_create_lsm  lsm_cgroup/socket_create  refuses packet and XDP sockets (needs BPF LSM, kernel >= 6.0)
 *
 * Included at the end of dataplane.bpf.c: it shares that file's maps (dp_config, dp_slot_meta, dp_managed,
 * dp_events, dp_counters, and dp_layer_state/dp_layer_counters of socket_marks.h) and its managed-cgroup lookup
 * (find_managed). The loader attaches each program as a separate layer and reports which ones the kernel
 * accepted (crates/core/src/dataplane/layers.rs). The egress backstop is in egress_backstop.h.
 */
#ifndef BROKER_INTERCEPTOR_EBPF_BYPASS_LAYERS_H
#define BROKER_INTERCEPTOR_EBPF_BYPASS_LAYERS_H

/* The generation in force, for the event only: a socket refusal does not depend on the policy. */
static __always_inline __u64 active_generation(struct dp_config *cfg)
{
	__u32 slot = dp_active_slot(cfg);
	struct dp_slot_meta *meta = bpf_map_lookup_elem(&dp_slot_meta, &slot);

	return meta ? meta->generation : 0;
}

/* A verdict on a call that has no destination (a socket being created): family DP_FAMILY_NONE, no address. */
static __always_inline void emit_socket_event(__u8 hook, __u8 protocol, __u64 cgroup_id, __u64 managed_id,
					      __u64 generation, __u32 reason, __u8 verdict)
{
	emit_record(hook, protocol, DP_FAMILY_NONE, NULL, 0, (__u32)bpf_get_current_uid_gid(), cgroup_id, managed_id,
		    generation, reason, DP_RULE_INDEX_NONE, verdict);
}

/*
 * The caller (current task) is in a managed cgroup and is creating a socket of kind `protocol` that no active
 * layer can judge by destination: enforce refuses it (socket() fails with EPERM), observe reports what enforce
 * would do. Neither depends on the policy or the heartbeat: such a socket is refused whatever the rules say,
 * also while degraded (fail-open only opens what the rules would judge). Returns the program's verdict.
 */
static __always_inline int refuse_socket(__u8 hook, __u8 protocol, __u64 cgroup_id, __u64 managed_id,
					 struct dp_managed *managed)
{
	__u32 zero = 0;
	struct dp_config *cfg = bpf_map_lookup_elem(&dp_config, &zero);
	__u32 mode;
	__u64 generation;

	if (!cfg)
		return 1; /* unreachable: an array map always has index 0 */
	mode = managed->mode;
	if (mode == DP_MODE_INHERIT)
		mode = *(volatile __u32 *)&cfg->global_mode;
	generation = active_generation(cfg);
	if (mode == DP_MODE_OBSERVE) {
		layer_count(DP_LC_SOCKETS_WOULD_REFUSE);
		count_verdict(hook, BROKER_DP_REASON_OBSERVE_WOULD_DENY_SOCKET_CREATE);
		emit_socket_event(hook, protocol, cgroup_id, managed_id, generation,
				  BROKER_DP_REASON_OBSERVE_WOULD_DENY_SOCKET_CREATE, DP_VERDICT_ALLOW);
		return 1;
	}
	layer_count(DP_LC_SOCKETS_REFUSED);
	count_verdict(hook, BROKER_DP_REASON_DENY_SOCKET_CREATE);
	emit_socket_event(hook, protocol, cgroup_id, managed_id, generation, BROKER_DP_REASON_DENY_SOCKET_CREATE,
			  DP_VERDICT_DENY);
	return 0;
}

/*
 * The kind of an IPv4/IPv6 socket that must be refused, as the protocol its event reports, or 0 when the
 * socket's traffic is judged by destination:
 *   TCP and MPTCP streams      connect4/connect6 (MPTCP's own subflows: the egress layer)
 *   UDP and UDP-Lite datagrams connect4/6 and sendmsg4/6
 *   ICMP/ICMPv6 ping sockets   connect4/6, but an unconnected sendto() reaches no sock_addr hook: only the
 *                              egress layer judges it, so they are refused when that layer is not attached
 *   SOCK_RAW, any protocol     refused (headers written by the caller; only the egress layer could see them)
 *   anything else (SCTP, ...)  refused: no sock_addr hook judges its associations
 */
static __always_inline __u8 unjudged_inet_kind(__u32 type, __u32 protocol, __u32 flags)
{
	if (type == DP_SOCK_RAW)
		return DP_PROTO_RAW;
	if (type == DP_SOCK_STREAM && (protocol == DP_PROTO_TCP || protocol == DP_IPPROTO_MPTCP))
		return 0;
	if (type == DP_SOCK_DGRAM && (protocol == DP_PROTO_UDP || protocol == DP_PROTO_UDPLITE))
		return 0;
	if (type == DP_SOCK_DGRAM && (protocol == DP_PROTO_ICMP || protocol == DP_IPPROTO_ICMPV6))
		return (flags & DP_LAYER_F_EGRESS) ? 0 : DP_PROTO_ICMP;
	return DP_PROTO_RAW;
}

/*
 * Set by the loader before the object is loaded (a frozen .rodata value): 1 when this kernel lets cgroup/sock_create
 * programs use socket storage (probed with bpf/probes.bpf.c), so dp_sock_create can mark the sockets it lets through
 * whose sends reach no sock_addr hook.
 */
const volatile __u32 dp_sock_create_storage = 0;

/*
 * Runs in the creating task's context for every AF_INET/AF_INET6 socket user space creates on the host (the
 * programs are attached at the root of the cgroup2 hierarchy; the kernel's own sockets never come here). TCP and
 * UDP sockets cost nothing more: the sock_addr hooks judge their connects and sends by the calling task. Any other
 * kind is refused when the creator is managed and no layer judges it; otherwise, when the egress layer reads marks,
 * it is marked DP_SK_F_BY_TASK, so its packets are judged by the task that sends them wherever it was created: a
 * ping or raw socket created outside a managed cgroup and carried into one (by moving in, or over SCM_RIGHTS) is
 * judged by the policy of the managed task that uses it (docs/threat-model.md).
 */
SEC("cgroup/sock_create")
int dp_sock_create(struct bpf_sock *sk)
{
	__u32 type = sk->type, protocol = sk->protocol, flags;
	__u64 cgroup_id, managed_id = 0;
	struct dp_managed *managed;
	struct dp_sk_state *s;
	int inside;
	__u8 kind;

	if (type == DP_SOCK_STREAM && (protocol == DP_PROTO_TCP || protocol == DP_IPPROTO_MPTCP))
		return 1;
	if (type == DP_SOCK_DGRAM && protocol == DP_PROTO_UDP)
		return 1;
	flags = layer_flags();
	cgroup_id = bpf_get_current_cgroup_id();
	managed = find_managed(cgroup_id, &managed_id, &inside);
	kind = unjudged_inet_kind(type, protocol, flags);
	if (managed && kind && !refuse_socket(DP_HOOK_SOCK_CREATE, kind, cgroup_id, managed_id, managed))
		return 0;
	if (dp_sock_create_storage && (flags & DP_LAYER_F_MARKS)) {
		s = bpf_sk_storage_get(&dp_sk_state, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (s)
			s->flags |= DP_SK_F_BY_TASK;
	}
	return 1;
}

/*
 * security_socket_create(family, type, protocol, kern), for tasks below the attach point. cgroup/sock_create
 * never sees these families: packet and XDP sockets send link-layer frames straight to a device, past every IP
 * hook including the egress layer. Sockets the kernel creates for itself (kern != 0) are not the workload's.
 * A BPF_LSM_CGROUP program returns 1 to allow and 0 to refuse with EPERM.
 */
SEC("lsm_cgroup/socket_create")
int dp_socket_create_lsm(unsigned long long *ctx)
{
	int family = (int)ctx[0];
	int kern = (int)ctx[3];
	__u64 cgroup_id, managed_id = 0;
	struct dp_managed *managed;
	int inside;
	__u8 kind;

	if (kern)
		return 1;
	if (family == DP_AF_PACKET)
		kind = DP_PROTO_PACKET;
	else if (family == DP_AF_XDP)
		kind = DP_PROTO_XDP;
	else
		return 1;
	cgroup_id = bpf_get_current_cgroup_id();
	managed = find_managed(cgroup_id, &managed_id, &inside);
	if (!managed)
		return 1;
	return refuse_socket(DP_HOOK_SOCKET_CREATE_LSM, kind, cgroup_id, managed_id, managed) ? 1 : 0;
}

#endif /* BROKER_INTERCEPTOR_EBPF_BYPASS_LAYERS_H */
