/* Compiles the generated headers and checks every value against the list in the SPEC.
 * scripts/check-c-headers.sh builds it with -Wall -Werror for both C11 and the BPF target. */
#include <stdio.h>
#include "reason_codes.h"
#include "control_authz_codes.h"
#include "reason_codes.h" /* include guards must make a second include harmless */

#define EXPECT(name, value) _Static_assert((name) == (value), #name " must be " #value)

EXPECT(BROKER_DP_REASON_UNSPECIFIED, 0);
EXPECT(BROKER_DP_REASON_UNMANAGED_ALLOW, 1);
EXPECT(BROKER_DP_REASON_OBSERVE_WOULD_ALLOW, 2);
EXPECT(BROKER_DP_REASON_OBSERVE_WOULD_DENY_EXPLICIT, 3);
EXPECT(BROKER_DP_REASON_OBSERVE_WOULD_DENY_DEFAULT, 4);
EXPECT(BROKER_DP_REASON_ALLOW_EXPLICIT, 5);
EXPECT(BROKER_DP_REASON_ALLOW_BROKER, 6);
EXPECT(BROKER_DP_REASON_ALLOW_DNS, 7);
EXPECT(BROKER_DP_REASON_DENY_EXPLICIT, 8);
EXPECT(BROKER_DP_REASON_DENY_DEFAULT, 9);
EXPECT(BROKER_DP_REASON_DENY_DEGRADED_FAIL_CLOSED, 10);
EXPECT(BROKER_DP_REASON_ALLOW_DEGRADED_FAIL_OPEN, 11);
EXPECT(BROKER_DP_REASON_DENY_SOCKET_CREATE, 12);
EXPECT(BROKER_DP_REASON_OBSERVE_WOULD_DENY_SOCKET_CREATE, 13);
EXPECT(BROKER_DP_REASON_DENY_PACKET_EGRESS, 14);
EXPECT(BROKER_DP_REASON_OBSERVE_WOULD_DENY_PACKET_EGRESS, 15);
EXPECT(BROKER_DP_REASON_DENY_DNS_QUERY, 16);
EXPECT(BROKER_DP_REASON_OBSERVE_WOULD_DENY_DNS_QUERY, 17);
EXPECT(BROKER_DP_REASON_MAX_VALUE, 17);

EXPECT(BROKER_CTRL_AUTH_UNSPECIFIED, 0);
EXPECT(BROKER_CTRL_AUTH_PEERCRED_UNAVAILABLE, 1);
EXPECT(BROKER_CTRL_AUTH_PEERCRED_REJECTED_UID, 2);
EXPECT(BROKER_CTRL_AUTH_PEERCRED_REJECTED_GID, 3);
EXPECT(BROKER_CTRL_AUTH_SOCKET_MODE_INVALID, 4);
EXPECT(BROKER_CTRL_AUTH_SOCKET_OWNER_INVALID, 5);
EXPECT(BROKER_CTRL_REQUEST_MALFORMED, 6);
EXPECT(BROKER_CTRL_REQUEST_PAYLOAD_INVALID, 7);
EXPECT(BROKER_CTRL_COMMAND_FAILED, 8);
EXPECT(BROKER_CTRL_AUTH_MAX_VALUE, 8);

/* The typedef names the eBPF programs use. */
static broker_dataplane_verdict_reason_code_t dp = BROKER_DP_REASON_DENY_DEFAULT;
static broker_control_authz_error_code_t ctl = BROKER_CTRL_COMMAND_FAILED;

int main(void) {
    /* Runtime check too, so a broken compiler constant-folding cannot hide a mismatch. */
    if ((int)dp != 9 || (int)ctl != 8) {
        fprintf(stderr, "header values wrong at run time\n");
        return 1;
    }
    printf("c headers: 1 passed, 0 failed\n");
    return 0;
}
