// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/* The cheapest possible cgroup/connect4 program: allows everything. The benchmark attaches it to separate the
 * kernel's fixed cost of running any sock_addr program (for UDP that includes taking the socket lock) from the
 * cost of the dataplane's own logic. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("cgroup/connect4")
int allow_all(struct bpf_sock_addr *ctx)
{
	return 1;
}
