// CommonJS consumers compiled by tsc (`import x = require()` in a .cts file, nodenext): the original's functions
// and types through the `ebpf.` namespace.
import assert = require('node:assert/strict')
import ebpf = require('@broker-interceptor/interceptor-ebpf')

const peer: ebpf.ControllerPeer = { hasPeerCred: false, uid: 0, gid: 0 }
const result: ebpf.ControlAuthzResult = ebpf.authorizeControllerPeer(peer, { allowedUids: [], allowedGids: [] })
assert.deepEqual(result, {
  ok: false,
  code_namespace: 'control_authz',
  reason_code: 'CTRL_AUTH_PEERCRED_UNAVAILABLE',
  message: 'SO_PEERCRED metadata is required',
})
const event: ebpf.DataplanePacketEvent = ebpf.DataplanePacketEventSchema.parse({
  code_namespace: 'dataplane_verdict',
  reason_code: 'ALLOW_BROKER',
  verdict: 'allow',
})
assert.equal(event.reason_code, 'ALLOW_BROKER')
const config: ebpf.EbpfInterceptorConfig = ebpf.parseEbpfInterceptorConfig({})
assert.equal(ebpf.shouldFailClosedOnUnknownReasonCode(config), true)
try {
  ebpf.parseDataplanePacketEvent({ code_namespace: 'dataplane_verdict' })
  assert.fail('expected a validation error')
} catch (e) {
  assert.ok(e instanceof ebpf.ContractValidationError)
  assert.ok(e.issues.length > 0)
}
assert.equal(typeof ebpf.Interceptor, 'function')
console.log('cjs (.cts, import = require): ok')
