import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Hono } from 'hono'
import { sValidator } from '@hono/standard-validator'
import * as api from '../index.js'

const schemas = Object.entries(api).filter(([name, value]) => name.endsWith('Schema') && typeof value === 'object')

const samples = {
  DataplanePacketEventSchema: [
    { code_namespace: 'dataplane_verdict', reason_code: 'DENY_DEFAULT', verdict: 'deny', hook: 'connect4' },
    { code_namespace: 'dataplane_verdict', reason_code: 'DENY_DEFAULT', verdict: 'allow' },
  ],
  DataplaneHookSchema: ['sendmsg6', 'sendmsg7'],
  EbpfInterceptorConfigSchema: [{ environment: 'production' }, { controlSocketFileMode: 0o1777 }],
  ControlProtocolResponseSchema: [
    { ok: true, command: 'Shutdown' },
    { ok: false, error: { code_namespace: 'control_authz', reason_code: 'DENY_DEFAULT', message: 'x' } },
  ],
}

test('every exported schema implements Standard Schema v1 beside parse/safeParse', () => {
  assert.ok(schemas.length >= 14, `found ${schemas.length} schemas`)
  for (const [name, schema] of schemas) {
    assert.equal(typeof schema.parse, 'function', name)
    assert.equal(typeof schema.safeParse, 'function', name)
    const std = schema['~standard']
    assert.equal(std.version, 1, name)
    assert.equal(std.vendor, 'interceptor-ebpf', name)
    assert.equal(typeof std.validate, 'function', name)
    assert.ok(Object.isFrozen(std), name)
    // Invalid input: issues with message and path, never a throw; the same issues safeParse reports.
    const bad = std.validate(Symbol('not json'))
    assert.ok(Array.isArray(bad.issues) && bad.issues.length > 0, name)
    for (const issue of bad.issues) {
      assert.equal(typeof issue.message, 'string', name)
      assert.ok(Array.isArray(issue.path), name)
    }
  }
})

test('validate agrees with safeParse: value on success, the same messages and paths on failure', () => {
  for (const [name, [good, bad]] of Object.entries(samples)) {
    const schema = api[name]
    assert.deepEqual(schema['~standard'].validate(good), { value: schema.parse(good) }, name)
    const failure = schema.safeParse(bad)
    assert.equal(failure.success, false, name)
    assert.deepEqual(
      schema['~standard'].validate(bad),
      { issues: failure.error.issues.map((i) => ({ message: i.message, path: i.path })) },
      name,
    )
  }
})

test('validate lets non-validation errors through (a bug must not become an issue)', () => {
  // A getter that throws is not invalid input; it is the caller's bug and must surface as itself.
  const hostile = {
    code_namespace: 'dataplane_verdict',
    get reason_code() {
      throw new RangeError('boom')
    },
  }
  assert.throws(() => api.DataplanePacketEventSchema['~standard'].validate(hostile), RangeError)
})

test('a real Standard Schema consumer: hono + @hono/standard-validator', async () => {
  const app = new Hono()
  app.post('/events', sValidator('json', api.DataplanePacketEventSchema), (c) => c.json(c.req.valid('json')))
  app.post('/control', sValidator('json', api.ControlCommandRequestSchema), (c) => c.json(c.req.valid('json')))
  app.post('/envelope', sValidator('json', api.ControlProtocolRequestSchema), (c) => c.json(c.req.valid('json')))
  app.post('/mode', sValidator('json', api.ControlCommandPayloadSchemas.SetGlobalMode), (c) => c.json(c.req.valid('json')))
  const post = (path, body) =>
    app.request(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })

  // Valid: the handler receives the parsed (normalised, key-ordered) value.
  const ok = await post('/events', { verdict: 'deny', hook: 'connect6', reason_code: 'DENY_DEFAULT', code_namespace: 'dataplane_verdict' })
  assert.equal(ok.status, 200)
  const event = await ok.json()
  assert.deepEqual(Object.keys(event), ['code_namespace', 'reason_code', 'verdict', 'hook'])

  // Invalid: hono answers 400 with our issues, paths included.
  const bad = await post('/events', { code_namespace: 'dataplane_verdict', reason_code: 'CTRL_COMMAND_FAILED', verdict: 'deny' })
  assert.equal(bad.status, 400)
  const body = await bad.json()
  assert.equal(body.success, false)
  assert.deepEqual(body.error.map((i) => i.path), [['reason_code']])
  assert.match(body.error[0].message, /control_authz/)

  const control = await post('/control', { command: 'SetGlobalMode', payload: { mode: 'audit' }, id: '7' })
  assert.equal(control.status, 400)
  assert.deepEqual((await control.json()).error.map((i) => i.path), [['payload', 'mode']])
  const health = await post('/control', { command: 'GetHealth' })
  assert.equal(health.status, 200)
  assert.deepEqual(await health.json(), { command: 'GetHealth' })
  // The generic envelope takes any payload, as the original did; the per-command schema does not.
  const envelope = await post('/envelope', { command: 'SetGlobalMode', payload: { mode: 'audit' } })
  assert.equal(envelope.status, 200)
  const mode = await post('/mode', { mode: 'audit' })
  assert.equal(mode.status, 400)
  assert.deepEqual((await mode.json()).error.map((i) => i.path), [['mode']])
})
