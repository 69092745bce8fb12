// Compiled by `pnpm typecheck` against the published index.d.ts; never run.
import {
  ControlClient,
  ControlClientError,
  ControlProtocolRequestError,
  type ControlClientErrorCode,
  type DataplaneLayer,
  type DataplanePacketEvent,
  type HealthData,
  type ManagedCgroupData,
  type PolicySummaryData,
  type StatusData,
} from '../index.js'

async function typed(): Promise<void> {
  const client: ControlClient = await ControlClient.connect()
  const other = await ControlClient.connect('/run/agent.sock', { timeoutMs: 500 })
  const health: HealthData = await client.getHealth()
  const since: string | undefined = health.degradedSince
  const adopted: boolean | undefined = health.adopted
  const status: StatusData = await client.getStatus({ timeoutMs: 100 })
  const dropped: number = status.droppedInQueue
  const inForce: DataplaneLayer[] = status.activeLayers
  const healthLayers: DataplaneLayer[] | undefined = health.activeLayers
  for (const l of status.layers) {
    const why: string | undefined = l.state === 'unavailable' ? l.reason : undefined
    // @ts-expect-error only an unavailable layer has a reason
    const never: string = l.state === 'active' ? l.reason : ''
    void [why, never]
  }
  const refused: number = status.layerCounters.socketsRefused
  const summary: PolicySummaryData = await client.replacePolicySnapshot({
    broker: [{ ip: '10.0.0.5', port: 8081 }],
    dns: [{ ip: '10.0.0.53' }],
    rules: [{ id: 'gh', action: 'allow', cidr: '140.82.112.0/20', ports: [443] }],
  })
  const entry: ManagedCgroupData = await client.upsertManagedCgroup({ path: '/workloads/a', workloadId: 'wl-a' })
  const removed: ManagedCgroupData = await client.deleteManagedCgroup({ id: entry.cgroupId })
  const mode: 'enforce' | 'observe' = (await client.setGlobalMode('observe')).globalMode
  await client.setCgroupMode({ id: '42', mode: 'enforce' })
  const stopped: void = await client.shutdown({ detach: true })
  for await (const event of client.subscribeEvents()) {
    const e: DataplanePacketEvent = event
    const code: string = e.reason_code
    void code
  }
  client.close()
  other.close()
  void [since, adopted, dropped, inForce, healthLayers, refused, summary, removed, mode, stopped]

  // @ts-expect-error the global mode is enforce or observe
  await client.setGlobalMode('audit')
  // @ts-expect-error path and id together are not a cgroup selector
  await client.deleteManagedCgroup({ path: '/a', id: '1' })
  // @ts-expect-error the constructor is private: use ControlClient.connect()
  new ControlClient()
}

function handle(error: unknown): void {
  if (error instanceof ControlClientError) {
    const code: ControlClientErrorCode = error.code
    const reason: string | undefined = error.reason_code
    void [code, reason]
  } else if (error instanceof ControlProtocolRequestError) {
    const payloadInvalid: string = error.controlError.reason_code
    void payloadInvalid
  }
}

// The socket of `ctl` when no path is given (null too); AbortSignal on every call; `await using`.
async function operator(signal: AbortSignal): Promise<void> {
  await using client = await ControlClient.connect(undefined, { signal, timeoutMs: 2000 })
  await using other = await ControlClient.connect(null)
  await client.getHealth({ signal })
  await client.replacePolicySnapshot({ broker: [], dns: [], rules: [] }, { signal: AbortSignal.timeout(500), timeoutMs: 1000 })
  await client.shutdown({ detach: false }, { signal })
  for await (const event of client.subscribeEvents({ signal })) void event.reason_code
  // @ts-expect-error a signal is an AbortSignal
  await client.getStatus({ signal: 'stop' })
  // @ts-expect-error the snapshot type, not any object
  await client.replacePolicySnapshot({ brokers: [] })
  const disposed: Promise<void> = other[Symbol.asyncDispose]()
  void disposed
}

// No path (or null): the socket ctl uses.
async function socketOfCtl(): Promise<void> {
  ;(await ControlClient.connect(null)).close()
  ;(await ControlClient.connect(undefined, { timeoutMs: 100 })).close()
  // @ts-expect-error a path is a string
  await ControlClient.connect(42)
}

const made: ControlClientError = new ControlClientError('ERR_CONTROL_TIMEOUT', 'no reply', { command: 'GetStatus', requestId: '1' })
// @ts-expect-error unknown code
void new ControlClientError('ERR_CONTROL_NOPE', 'x')

void typed
void handle
void operator
void made
void socketOfCtl
