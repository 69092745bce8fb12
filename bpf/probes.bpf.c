// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * Feature probes, loaded (never attached) by crates/core/src/dataplane/layers.rs before the dataplane object: what the
 * kernel lets a program do decides how the dataplane object is loaded. Each program is the smallest use of one
 * feature; the verifier accepting it is the answer.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} probe_storage SEC(".maps");

/* Can a sock_addr program (connect4) use socket storage, and read jiffies (the bound of a cached verdict)?
 * Decides whether connect/sendmsg verdicts are cached and mark sockets. */
SEC("cgroup/connect4")
int probe_sock_addr_storage(struct bpf_sock_addr *ctx)
{
	__u64 *v = bpf_sk_storage_get(&probe_storage, ctx->sk, 0, BPF_SK_STORAGE_GET_F_CREATE);

	if (v)
		*v = bpf_jiffies64();
	return 1;
}

/* Can a cgroup/sock_create program use socket storage? Decides whether the sockets whose sends reach no sock_addr
 * hook (ping, raw, ...) are marked at creation to be judged at egress by the task that sends on them. */
SEC("cgroup/sock_create")
int probe_sock_create_storage(struct bpf_sock *sk)
{
	__u64 *v = bpf_sk_storage_get(&probe_storage, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);

	if (v)
		*v = 1;
	return 1;
}
