// The baseline: the DataplanePacketEvent schema written in zod 4, with the same rules as far as zod expresses
// them. Differences (zod is at most as strict as the Rust validator, never stricter):
// - dst_ip: zod checks IPv4/IPv6 syntax but not the canonical form.
// - observed_at: z.iso.datetime({ offset: true }) does not check calendar dates (Feb 30) or leap years.
// - lone surrogates in strings are not rejected.
import { z } from 'zod'

const OBSERVE_WOULD_BLOCK = {
  OBSERVE_WOULD_ALLOW: false,
  OBSERVE_WOULD_DENY_EXPLICIT: true,
  OBSERVE_WOULD_DENY_DEFAULT: true,
}
const DENY = new Set(['DENY_EXPLICIT', 'DENY_DEFAULT', 'DENY_DEGRADED_FAIL_CLOSED'])
const U64_MAX = 18446744073709551615n

const int = (max) => z.number().int().min(0).max(max)

export const DataplanePacketEventZod = z
  .strictObject({
    code_namespace: z.literal('dataplane_verdict'),
    reason_code: z.enum([
      'UNMANAGED_ALLOW',
      'OBSERVE_WOULD_ALLOW',
      'OBSERVE_WOULD_DENY_EXPLICIT',
      'OBSERVE_WOULD_DENY_DEFAULT',
      'ALLOW_EXPLICIT',
      'ALLOW_BROKER',
      'ALLOW_DNS',
      'DENY_EXPLICIT',
      'DENY_DEFAULT',
      'DENY_DEGRADED_FAIL_CLOSED',
      'ALLOW_DEGRADED_FAIL_OPEN',
    ]),
    verdict: z.enum(['allow', 'deny']),
    would_block: z.boolean().optional(),
    hook: z.enum(['connect4', 'connect6', 'sendmsg4', 'sendmsg6']).optional(),
    cgroup_id: z
      .string()
      .regex(/^(0|[1-9][0-9]*)$/)
      .refine((s) => s.length < 20 || BigInt(s) <= U64_MAX, 'does not fit in 64 bits')
      .optional(),
    message: z.string().optional(),
    protocol: z.enum(['tcp', 'udp']).optional(),
    dst_ip: z.union([z.ipv4(), z.ipv6()]).optional(),
    dst_port: int(65535).optional(),
    pid: int(4294967295).optional(),
    uid: int(4294967295).optional(),
    comm: z
      .string()
      .refine((s) => Buffer.byteLength(s, 'utf8') <= 16, 'at most 16 bytes')
      .optional(),
    rule_id: z.string().optional(),
    dns_name: z.string().optional(),
    policy_generation: int(Number.MAX_SAFE_INTEGER).optional(),
    workload_id: z.string().optional(),
    observed_at: z.iso.datetime({ offset: true }).optional(),
  })
  .superRefine((e, ctx) => {
    const verdict = DENY.has(e.reason_code) ? 'deny' : 'allow'
    if (e.verdict !== verdict) {
      ctx.addIssue({ code: 'custom', path: ['verdict'], message: `verdict must be "${verdict}"` })
    }
    const want = OBSERVE_WOULD_BLOCK[e.reason_code]
    if (want === undefined) {
      if (e.would_block !== undefined) {
        ctx.addIssue({ code: 'custom', path: ['would_block'], message: 'would_block is only for OBSERVE codes' })
      }
    } else if (e.would_block !== want) {
      ctx.addIssue({ code: 'custom', path: ['would_block'], message: `would_block must be ${want}` })
    }
  })
