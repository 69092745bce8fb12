// Plain `require()` from JavaScript, no TypeScript involved.
'use strict'
const assert = require('node:assert/strict')
const { authorizeControllerPeer, validateSocketSecurityMetadata, parseDataplanePacketEvent, Interceptor } = require('@broker-interceptor/interceptor-ebpf')

assert.deepEqual(authorizeControllerPeer({ hasPeerCred: true, uid: 1000, gid: 2000 }, { allowedUids: [], allowedGids: [1000] }), {
  ok: false,
  code_namespace: 'control_authz',
  reason_code: 'CTRL_AUTH_PEERCRED_REJECTED_GID',
  message: 'peer gid 2000 is not authorized',
})
assert.deepEqual(
  validateSocketSecurityMetadata({ mode: 0o660, ownerUid: 1000, ownerGid: 1000 }, { expectedMode: 0o660, expectedOwnerUid: 0, expectedOwnerGid: 0 }),
  { ok: false, code_namespace: 'control_authz', reason_code: 'CTRL_AUTH_SOCKET_OWNER_INVALID', message: 'socket owner 1000:1000 != expected 0:0' },
)
assert.equal(parseDataplanePacketEvent({ code_namespace: 'dataplane_verdict', reason_code: 'DENY_DEFAULT', verdict: 'deny' }).verdict, 'deny')
assert.equal(typeof Interceptor, 'function')
console.log('cjs (require): ok')
