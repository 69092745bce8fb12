// A deterministic, realistic mix of DataplanePacketEvents: every code, IPv4 and IPv6, most enrichment fields.
const CODES = [
  ['DENY_DEFAULT', 'deny', undefined, 20],
  ['ALLOW_BROKER', 'allow', undefined, 20],
  ['ALLOW_DNS', 'allow', undefined, 15],
  ['ALLOW_EXPLICIT', 'allow', undefined, 12],
  ['DENY_EXPLICIT', 'deny', undefined, 10],
  ['OBSERVE_WOULD_DENY_DEFAULT', 'allow', true, 6],
  ['OBSERVE_WOULD_DENY_EXPLICIT', 'allow', true, 4],
  ['OBSERVE_WOULD_ALLOW', 'allow', false, 4],
  ['UNMANAGED_ALLOW', 'allow', undefined, 4],
  ['DENY_DEGRADED_FAIL_CLOSED', 'deny', undefined, 3],
  ['ALLOW_DEGRADED_FAIL_OPEN', 'allow', undefined, 2],
]
const COMMS = ['node', 'python3', 'curl', 'java', 'envoy', 'payments-worker']

// xorshift32: the same payloads on every run.
function rng(seed) {
  let x = seed
  return () => {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    return (x >>> 0) / 4294967296
  }
}

export function makeEvents(n, seed = 0x5eed) {
  const r = rng(seed)
  const weighted = CODES.flatMap((c) => Array(c[3]).fill(c))
  const out = []
  for (let i = 0; i < n; i++) {
    const [code, verdict, wouldBlock] = weighted[Math.floor(r() * weighted.length)]
    const v6 = r() < 0.3
    const udp = code === 'ALLOW_DNS' && r() < 0.7
    const e = { code_namespace: 'dataplane_verdict', reason_code: code, verdict }
    if (wouldBlock !== undefined) e.would_block = wouldBlock
    e.hook = (udp ? 'sendmsg' : 'connect') + (v6 ? '6' : '4')
    e.cgroup_id = String(4294967296 + Math.floor(r() * 1e9))
    if (verdict === 'deny' || r() < 0.2) e.message = `${code.toLowerCase().replaceAll('_', ' ')} for egress`
    e.protocol = udp ? 'udp' : 'tcp'
    e.dst_ip = v6
      ? `2001:db8:${Math.floor(r() * 65535).toString(16)}::${Math.floor(r() * 65535).toString(16)}`
      : `${10 + Math.floor(r() * 200)}.${Math.floor(r() * 256)}.${Math.floor(r() * 256)}.${1 + Math.floor(r() * 254)}`
    e.dst_port = code === 'ALLOW_DNS' ? 53 : code === 'ALLOW_BROKER' ? 8081 : 443
    e.pid = 1000 + Math.floor(r() * 60000)
    e.uid = r() < 0.5 ? 0 : 1000 + Math.floor(r() * 1000)
    e.comm = COMMS[Math.floor(r() * COMMS.length)]
    if (code.includes('EXPLICIT')) e.rule_id = `rule-${Math.floor(r() * 500)}`
    e.policy_generation = 1 + Math.floor(r() * 10000)
    e.workload_id = `wl-${Math.floor(r() * 40)}`
    const ns = String(Math.floor(r() * 1e9)).padStart(9, '0')
    e.observed_at = `2026-11-28T15:${String(Math.floor(r() * 60)).padStart(2, '0')}:${String(Math.floor(r() * 60)).padStart(2, '0')}.${ns}Z`
    out.push(e)
  }
  return out
}
