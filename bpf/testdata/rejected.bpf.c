// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/* Test fixture: a program the verifier must reject (a sock_addr program may only return 0 or 1), used to check
 * that a rejection reaches the caller with the verifier log (crates/core/src/dataplane/program.rs tests). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("cgroup/connect4")
int dp_connect4(struct bpf_sock_addr *ctx)
{
	return 2;
}
