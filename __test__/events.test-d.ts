// Compiled by `pnpm typecheck` (tsc, strict) against the published index.d.ts; never run.
import {
  DataplanePacketEventSchema,
  parseDataplanePacketEvent,
  parseDataplanePacketEventJson,
  parseDataplanePacketEventNdjson,
  serializeDataplanePacketEventToLog,
  DATAPLANE_PACKET_EVENT_KEYS,
  type ContractIssue,
  type DataplaneLogRecord,
  type DataplanePacketEvent,
} from '../index.js'

const deny: DataplanePacketEvent = {
  code_namespace: 'dataplane_verdict',
  reason_code: 'DENY_DEFAULT',
  verdict: 'deny',
  dst_ip: '10.0.0.1',
  dst_port: 443,
}
const observe: DataplanePacketEvent = {
  code_namespace: 'dataplane_verdict',
  reason_code: 'OBSERVE_WOULD_ALLOW',
  verdict: 'allow',
  would_block: false,
}
const observeDeny: DataplanePacketEvent = {
  code_namespace: 'dataplane_verdict',
  reason_code: 'OBSERVE_WOULD_DENY_DEFAULT',
  verdict: 'allow',
  would_block: true,
}

// @ts-expect-error a deny code with verdict allow
const contradicts: DataplanePacketEvent = { code_namespace: 'dataplane_verdict', reason_code: 'DENY_DEFAULT', verdict: 'allow' }
// @ts-expect-error would_block is forbidden outside the observe codes
const forbidden: DataplanePacketEvent = { code_namespace: 'dataplane_verdict', reason_code: 'ALLOW_DNS', verdict: 'allow', would_block: false }
// @ts-expect-error would_block is required for observe codes
const missing: DataplanePacketEvent = { code_namespace: 'dataplane_verdict', reason_code: 'OBSERVE_WOULD_DENY_EXPLICIT', verdict: 'allow' }
// @ts-expect-error OBSERVE_WOULD_ALLOW carries would_block false
const flipped: DataplanePacketEvent = { code_namespace: 'dataplane_verdict', reason_code: 'OBSERVE_WOULD_ALLOW', verdict: 'allow', would_block: true }
// @ts-expect-error control codes are not dataplane codes
const control: DataplanePacketEvent = { code_namespace: 'dataplane_verdict', reason_code: 'CTRL_COMMAND_FAILED', verdict: 'deny' }
// @ts-expect-error sctp is not one of the protocol names
const sctp: DataplanePacketEvent = { ...deny, protocol: 'sctp' }
const refused: DataplanePacketEvent = {
  code_namespace: 'dataplane_verdict',
  reason_code: 'DENY_SOCKET_CREATE',
  verdict: 'deny',
  hook: 'sock_create',
  protocol: 'raw',
}
void refused
const wouldDrop: DataplanePacketEvent = {
  code_namespace: 'dataplane_verdict',
  reason_code: 'OBSERVE_WOULD_DENY_SOCKET_CREATE',
  verdict: 'allow',
  would_block: true,
  hook: 'socket_create_lsm',
  protocol: 'packet',
}
void wouldDrop
// SPEC 4b: a refused DNS query, and what observe mode reports instead.
const dnsRefused: DataplanePacketEvent = {
  code_namespace: 'dataplane_verdict',
  reason_code: 'DENY_DNS_QUERY',
  verdict: 'deny',
  hook: 'dns',
  dns_name: 'x.attacker.example',
}
void dnsRefused
const dnsWouldRefuse: DataplanePacketEvent = { ...dnsRefused, reason_code: 'OBSERVE_WOULD_DENY_DNS_QUERY', verdict: 'allow', would_block: true }
void dnsWouldRefuse
// @ts-expect-error OBSERVE_WOULD_DENY_DNS_QUERY must carry would_block true
const dnsNoBlock: DataplanePacketEvent = { ...dnsRefused, reason_code: 'OBSERVE_WOULD_DENY_DNS_QUERY', verdict: 'allow' }
// @ts-expect-error dns_name is a string
const dnsNameNumber: DataplanePacketEvent = { ...dnsRefused, dns_name: 7 }
// @ts-expect-error a socket refusal is a deny
const refusedAllow: DataplanePacketEvent = { ...refused, verdict: 'allow' }
// @ts-expect-error cgroup ids are strings
const numericCgroup: DataplanePacketEvent = { ...deny, cgroup_id: 42 }
// @ts-expect-error unknown keys do not compile either
const extra: DataplanePacketEvent = { ...deny, extra: 1 }

const parsed = parseDataplanePacketEvent(JSON.parse('{}') as unknown)
// Narrowing on the code gives would_block's exact type.
if (parsed.reason_code === 'OBSERVE_WOULD_ALLOW') {
  const wb: false = parsed.would_block
  void wb
}
if (parsed.verdict === 'deny') {
  const wb: undefined = parsed.would_block
  void wb
}
const log: DataplaneLogRecord = serializeDataplanePacketEventToLog(parsed)
const fromText: DataplanePacketEvent = parseDataplanePacketEventJson('{}')
const fromBytes: DataplanePacketEvent = parseDataplanePacketEventJson(new Uint8Array(2))
// @ts-expect-error numbers are not JSON text
parseDataplanePacketEventJson(42)
const batch = parseDataplanePacketEventNdjson(Buffer.from(''))
const firstLine: number | undefined = batch.errors[0]?.line
const issues: ContractIssue[] | undefined = batch.errors[0]?.issues
const records: DataplanePacketEvent[] = batch.records
const safe = DataplanePacketEventSchema.safeParse({})
if (safe.success) {
  const ok: DataplanePacketEvent = safe.data
  void ok
}
const firstKey: string = DATAPLANE_PACKET_EVENT_KEYS[0]
void [deny, observe, observeDeny, contradicts, forbidden, missing, flipped, control, sctp, numericCgroup, extra, refusedAllow]
void [log, fromText, fromBytes, firstLine, issues, records, firstKey]
