// Compiles against index.d.ts with `strict`: what must not compile is marked @ts-expect-error.
import { Interceptor, DataplaneError, parsePolicySnapshot } from '../index'
import type {
  InterceptorPacketEvent,
  DataplaneStatus,
  PolicySummary,
  ManagedCgroup,
  PolicySnapshotInput,
  DataplaneErrorCode,
} from '../index'

async function typeTest(): Promise<void> {
  const i: Interceptor = await Interceptor.load({ cgroupRoot: '/sys/fs/cgroup/x', failMode: 'open', globalMode: 'observe' })
  // @ts-expect-error unknown option
  await Interceptor.load({ cgroupPath: '/x' })
  // @ts-expect-error bad fail mode
  await Interceptor.load({ failMode: 'ajar' })
  await Interceptor.load({ disableLayers: ['sock_create', 'socket_create_lsm'] })
  // @ts-expect-error unknown layer
  await Interceptor.load({ disableLayers: ['firewall'] })
  // @ts-expect-error the constructor is private: use load()
  new Interceptor()

  const summary: PolicySummary = await i.replacePolicySnapshot({ broker: [], dns: [], rules: [] })
  const n: number = summary.ipv4Rules + summary.generation + summary.fqdnRules + summary.brokerNames
  await i.replacePolicySnapshot({
    broker: [{ fqdn: 'broker.internal', port: 8081 }],
    dns: [],
    rules: [{ id: 'gh', action: 'allow', fqdn: '*.github.com', ports: [443] }],
    dnsQueries: 'policy',
  })
  // @ts-expect-error a rule has exactly one of cidr and fqdn
  await i.replacePolicySnapshot({ broker: [], dns: [], rules: [{ id: 'x', action: 'allow', cidr: '10.0.0.0/8', fqdn: 'a.b.c' }] })
  // @ts-expect-error dnsQueries is `any` or `policy`
  await i.replacePolicySnapshot({ broker: [], dns: [], rules: [], dnsQueries: 'all' })
  void n
  const m: ManagedCgroup = i.upsertManagedCgroup({ path: 'workload', mode: 'enforce', workloadId: 'w1' })
  i.upsertManagedCgroup({ id: m.cgroupId })
  i.upsertManagedCgroup({ id: '1', allowRoot: true })
  // @ts-expect-error allowRoot is a boolean
  i.upsertManagedCgroup({ id: '1', allowRoot: 'yes' })
  // @ts-expect-error path and id are exclusive
  i.upsertManagedCgroup({ path: 'a', id: 1 })
  // @ts-expect-error mode is required
  i.setCgroupMode({ path: 'a' })
  i.setCgroupMode({ id: '42', mode: 'observe' })
  // @ts-expect-error unknown mode
  i.setGlobalMode('audit')
  const deleted: boolean = i.deleteManagedCgroup({ path: 'workload' })
  void deleted

  const s: DataplaneStatus = i.status()
  const lost: number = s.eventsEmitted - s.eventsDelivered - s.droppedInKernel - s.droppedInQueue
  void lost
  for (const l of s.layers) {
    const why: string | undefined = l.state === 'unavailable' ? l.reason : undefined
    void why
  }
  const raw: boolean = s.activeLayers.includes('sock_create') && s.layerCounters.socketsRefused >= 0
  void raw
  const denied: number = s.verdicts.find((v) => v.hook === 'sendmsg4' && v.reasonCode === 'DENY_DEFAULT')?.count ?? 0
  void denied
  // @ts-expect-error a hook is one of the hooks
  void s.verdicts.some((v) => v.hook === 'bind4')

  for await (const e of i.events({ batchSize: 128 })) {
    const ev: InterceptorPacketEvent = e
    if (ev.reason_code === 'OBSERVE_WOULD_ALLOW') {
      const wb: false = ev.would_block
      void wb
    }
    if (ev.verdict === 'deny') {
      // @ts-expect-error deny codes never carry would_block
      const wb: boolean = ev.would_block
      void wb
    }
    const id: string = ev.cgroup_id
    void id
    if (ev.reason_code === 'DENY_SOCKET_CREATE' || ev.reason_code === 'OBSERVE_WOULD_DENY_SOCKET_CREATE') {
      // A refused socket has no destination.
      const dst: string | undefined = ev.dst_ip
      void dst
    }
    if (ev.reason_code === 'OBSERVE_WOULD_DENY_SOCKET_CREATE') {
      const wb: true = ev.would_block
      void wb
    }
  }
  await i.close({ detach: true })
  // @ts-expect-error unknown close option
  await i.close({ force: true })
}
void typeTest

// replacePolicySnapshot takes the policy snapshot type (js/policy.d.ts), JSON text or bytes; nothing else.
async function snapshots(i: Interceptor): Promise<void> {
  const input: PolicySnapshotInput = { broker: [{ ip: '10.0.0.5', port: 8081 }], dns: [{ ip: '10.0.0.53' }], rules: [] }
  await i.replacePolicySnapshot(input)
  await i.replacePolicySnapshot(parsePolicySnapshot(input))
  await i.replacePolicySnapshot('{"broker":[],"dns":[],"rules":[]}')
  await i.replacePolicySnapshot(new Uint8Array(0))
  await i.replacePolicySnapshot({
    broker: [],
    dns: [],
    rules: [{ id: 'gh', action: 'allow', cidr: '140.82.112.0/20', ports: [443], protocol: 'tcp' }],
    sampling: { allowOneIn: 10 },
  })
  // @ts-expect-error `brokers` is not a snapshot key, and broker, dns and rules are required
  await i.replacePolicySnapshot({ brokers: [] })
  // @ts-expect-error rules are required even when empty
  await i.replacePolicySnapshot({ broker: [], dns: [] })
  // @ts-expect-error an action is allow or deny
  await i.replacePolicySnapshot({ broker: [], dns: [], rules: [{ id: 'x', action: 'block', cidr: '10.0.0.0/8' }] })
  const anyObject: object = {}
  // @ts-expect-error an arbitrary object is not a snapshot
  await i.replacePolicySnapshot(anyObject)
}
void snapshots

// AbortSignal on every async call; `await using`.
async function abortAndDispose(signal: AbortSignal): Promise<void> {
  await using i = await Interceptor.load({ cgroupRoot: '/sys/fs/cgroup/x', signal })
  await i.replacePolicySnapshot({ broker: [], dns: [], rules: [] }, { signal })
  await i.replacePolicySnapshot('{}', {})
  // @ts-expect-error replacePolicySnapshot has no other option
  await i.replacePolicySnapshot('{}', { timeoutMs: 5 })
  // @ts-expect-error a signal is an AbortSignal
  await Interceptor.load({ signal: true })
  for await (const e of i.events({ batchSize: 16, signal: AbortSignal.timeout(1000) })) void e
  for await (const batch of i.eventBatches({ signal })) void batch.length
  const disposed: Promise<void> = i[Symbol.asyncDispose]()
  void disposed
  // close() takes no signal: it is the cleanup an abort leads to
  // @ts-expect-error unknown close option
  await i.close({ signal })
}
void abortAndDispose

// Errors: DataplaneError with a literal code union; ContractValidationError for input.
function classify(error: unknown): string {
  if (error instanceof DataplaneError) {
    const code: DataplaneErrorCode = error.code
    const log: string | undefined = error.verifierLog
    const asError: Error = error
    // @ts-expect-error not one of the codes
    if (error.code === 'ERR_DATAPLANE_NOPE') return 'never'
    // @ts-expect-error the code is read-only
    error.code = 'ERR_DATAPLANE_MAP'
    void [log, asError]
    return code
  }
  return 'other'
}
void classify
const made = new DataplaneError('ERR_DATAPLANE_CLOSED', 'the dataplane is closed')
// @ts-expect-error unknown code
void new DataplaneError('ERR_NOPE', 'x')
void made
