import assert from 'node:assert/strict'
import { test } from 'node:test'
import { EbpfInterceptorConfigSchema, parseEbpfInterceptorConfig, shouldFailClosedOnUnknownReasonCode } from '../index.js'

const defaults = {
  environment: 'development',
  rejectUnknownReasonCodes: true,
  controlSocketPath: '/var/run/broker-interceptor-ebpf/agentd.sock',
  controlSocketDirMode: 0o750,
  controlSocketFileMode: 0o660,
  controlSocketOwnerUid: 0,
  controlSocketOwnerGid: 0,
  privilegedControllerUids: [],
  privilegedControllerGids: [],
}

test('undefined and {} are the all-defaults config, keys in declaration order', () => {
  assert.deepEqual(parseEbpfInterceptorConfig(undefined), defaults)
  assert.deepEqual(Object.keys(parseEbpfInterceptorConfig({})), Object.keys(defaults))
})

test('every field is validated and every issue listed', () => {
  const r = EbpfInterceptorConfigSchema.safeParse({
    environment: 'staging',
    controlSocketFileMode: 0o1000,
    controlSocketOwnerUid: -1,
    privilegedControllerGids: [1.5],
    controlSocketPath: 'agent.sock',
    extra: true,
  })
  assert.equal(r.success, false)
  assert.deepEqual(r.error.issues.map((i) => i.path.join('.')), [
    '',
    'environment',
    'controlSocketPath',
    'controlSocketFileMode',
    'controlSocketOwnerUid',
    'privilegedControllerGids.0',
  ])
  assert.equal(EbpfInterceptorConfigSchema.safeParse(null).success, false)
  assert.equal(EbpfInterceptorConfigSchema.safeParse({ controlSocketOwnerGid: 4294967296 }).success, false)
  assert.equal(EbpfInterceptorConfigSchema.safeParse({ controlSocketOwnerGid: 4294967295 }).success, true)
})

test('production always fails closed on unknown reason codes', () => {
  assert.equal(shouldFailClosedOnUnknownReasonCode({ environment: 'production', rejectUnknownReasonCodes: false }), true)
  assert.equal(shouldFailClosedOnUnknownReasonCode({ environment: 'test', rejectUnknownReasonCodes: false }), false)
  assert.equal(shouldFailClosedOnUnknownReasonCode({ environment: 'development' }), true)
  assert.equal(shouldFailClosedOnUnknownReasonCode(undefined), true)
  assert.throws(() => shouldFailClosedOnUnknownReasonCode({ environment: 'prod' }), { code: 'ERR_CONTRACT_VALIDATION' })
})
