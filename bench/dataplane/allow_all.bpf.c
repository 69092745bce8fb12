// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/* The cheapest possible sock_addr programs: allow everything, on the four hooks the dataplane uses. The
 * benchmark attaches them to separate the kernel's fixed cost of running any sock_addr program (for UDP that
 * includes taking the socket lock) from the cost of the dataplane's own logic. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("cgroup/connect4")
int allow_connect4(struct bpf_sock_addr *ctx)
{
	return 1;
}

SEC("cgroup/connect6")
int allow_connect6(struct bpf_sock_addr *ctx)
{
	return 1;
}

SEC("cgroup/sendmsg4")
int allow_sendmsg4(struct bpf_sock_addr *ctx)
{
	return 1;
}

SEC("cgroup/sendmsg6")
int allow_sendmsg6(struct bpf_sock_addr *ctx)
{
	return 1;
}
