// Parity of the control socket's peer and socket checks with the original package (SPEC 3): its argument
// shapes, its flat results, its messages. The additions (null peer, config policy, fs.Stats) follow.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { test } from 'node:test'
import { authorizeControllerPeer, parseEbpfInterceptorConfig, validateSocketSecurityMetadata } from '../index.js'

const peer = (uid, gid, hasPeerCred = true) => ({ hasPeerCred, uid, gid })
const allowed = (allowedUids, allowedGids) => ({ allowedUids, allowedGids })
const refusal = (reason_code, message) => ({ ok: false, code_namespace: 'control_authz', reason_code, message })

test('hasPeerCred false: PEERCRED_UNAVAILABLE with the fixed message, whatever the lists and ids say', () => {
  for (const policy of [allowed([123], [456]), allowed([], []), allowed([0], [])]) {
    assert.deepEqual(
      authorizeControllerPeer(peer(123, 456, false), policy),
      refusal('CTRL_AUTH_PEERCRED_UNAVAILABLE', 'SO_PEERCRED metadata is required'),
    )
  }
  // The original never read uid/gid without credentials: a sentinel such as -1 is not an error.
  assert.equal(authorizeControllerPeer({ hasPeerCred: false, uid: -1, gid: -1 }, allowed([], [])).reason_code, 'CTRL_AUTH_PEERCRED_UNAVAILABLE')
})

test('both lists empty: permissive, every peer with credentials is allowed', () => {
  assert.deepEqual(authorizeControllerPeer(peer(5000, 5000), allowed([], [])), { ok: true })
  assert.deepEqual(authorizeControllerPeer(peer(0, 0), allowed([], [])), { ok: true })
})

test('OR semantics: the uid or the gid matching is enough', () => {
  assert.deepEqual(authorizeControllerPeer(peer(1000, 9999), allowed([1000], [2000])), { ok: true })
  assert.deepEqual(authorizeControllerPeer(peer(9999, 2000), allowed([1000], [2000])), { ok: true })
  assert.deepEqual(authorizeControllerPeer(peer(1000, 1000), allowed([1000], [1000])), { ok: true })
  assert.deepEqual(authorizeControllerPeer(peer(7, 2000), allowed([], [2000])), { ok: true })
})

test('refusals: REJECTED_UID when allowedUids is set, else REJECTED_GID; original messages', () => {
  assert.deepEqual(
    authorizeControllerPeer(peer(2000, 1000), allowed([1000], [])),
    refusal('CTRL_AUTH_PEERCRED_REJECTED_UID', 'peer uid 2000 is not authorized'),
  )
  // Both lists set and neither matches: the uid list decides the code.
  assert.deepEqual(
    authorizeControllerPeer(peer(2000, 3000), allowed([1000], [1000])),
    refusal('CTRL_AUTH_PEERCRED_REJECTED_UID', 'peer uid 2000 is not authorized'),
  )
  assert.deepEqual(
    authorizeControllerPeer(peer(1000, 2000), allowed([], [1000])),
    refusal('CTRL_AUTH_PEERCRED_REJECTED_GID', 'peer gid 2000 is not authorized'),
  )
})

test('the failure is flat: exactly ok, code_namespace, reason_code, message, in that order', () => {
  const r = authorizeControllerPeer(peer(1, 1), allowed([0], []))
  assert.deepEqual(Object.keys(r), ['ok', 'code_namespace', 'reason_code', 'message'])
  assert.equal('error' in r, false)
})

test('socket mode first, octal messages, then owner', () => {
  const expect = { expectedMode: 0o660, expectedOwnerUid: 0, expectedOwnerGid: 0 }
  assert.deepEqual(validateSocketSecurityMetadata({ mode: 0o660, ownerUid: 0, ownerGid: 0 }, expect), { ok: true })
  // A full st_mode (socket type bits) is masked with 0o777 first.
  assert.deepEqual(validateSocketSecurityMetadata({ mode: 0o140660, ownerUid: 0, ownerGid: 0 }, expect), { ok: true })
  // Wrong mode and wrong owner: the mode is reported.
  assert.deepEqual(
    validateSocketSecurityMetadata({ mode: 0o666, ownerUid: 1000, ownerGid: 1000 }, expect),
    refusal('CTRL_AUTH_SOCKET_MODE_INVALID', 'socket mode 666 != expected 660'),
  )
  assert.deepEqual(
    validateSocketSecurityMetadata({ mode: 0o660, ownerUid: 1000, ownerGid: 1000 }, expect),
    refusal('CTRL_AUTH_SOCKET_OWNER_INVALID', 'socket owner 1000:1000 != expected 0:0'),
  )
  assert.deepEqual(
    validateSocketSecurityMetadata({ mode: 0o660, ownerUid: 0, ownerGid: 5 }, expect),
    refusal('CTRL_AUTH_SOCKET_OWNER_INVALID', 'socket owner 0:5 != expected 0:0'),
  )
  // Octal without padding, as Number#toString(8) printed it.
  assert.equal(validateSocketSecurityMetadata({ mode: 0o7, ownerUid: 0, ownerGid: 0 }, expect).message, 'socket mode 7 != expected 660')
  assert.equal(
    validateSocketSecurityMetadata({ mode: 0o600, ownerUid: 0, ownerGid: 0 }, { ...expect, expectedMode: 0o60 }).message,
    'socket mode 600 != expected 60',
  )
  // The expected mode is compared as given: bits above 0o777 can never match, so the check fails closed.
  assert.equal(
    validateSocketSecurityMetadata({ mode: 0o1660, ownerUid: 0, ownerGid: 0 }, { ...expect, expectedMode: 0o1660 }).message,
    'socket mode 660 != expected 1660',
  )
})

test('malformed arguments are ContractValidationErrors naming the argument', () => {
  const issuesOf = (fn) => {
    try {
      fn()
    } catch (e) {
      assert.equal(e.code, 'ERR_CONTRACT_VALIDATION')
      return e.issues.map((i) => `${i.path.join('.')}: ${i.message}`)
    }
    assert.fail('expected a ContractValidationError')
  }
  assert.deepEqual(issuesOf(() => authorizeControllerPeer({ hasPeerCred: true, uid: 1 }, allowed([], []))), [
    'peer.gid: expected integer, received undefined',
  ])
  assert.deepEqual(issuesOf(() => authorizeControllerPeer(peer(1, 1), { allowedUids: [1] })), [
    'policy.allowedGids: expected array, received undefined',
  ])
  assert.deepEqual(issuesOf(() => validateSocketSecurityMetadata({ mode: 0o660, ownerUid: 0 }, { expectedMode: 0o660, expectedOwnerUid: 0, expectedOwnerGid: 0 })), [
    'meta.ownerGid: expected integer, received undefined',
  ])
})

test('additions: null peer, {uid, gid, pid}, a config as policy or expectation, fs.Stats as metadata', () => {
  for (const none of [null, undefined]) {
    assert.equal(authorizeControllerPeer(none, allowed([], [])).reason_code, 'CTRL_AUTH_PEERCRED_UNAVAILABLE')
  }
  assert.deepEqual(authorizeControllerPeer({ uid: 1000, gid: 2000, pid: 7 }, allowed([1000], [])), { ok: true })
  const config = parseEbpfInterceptorConfig({ environment: 'production', privilegedControllerGids: [2000] })
  assert.deepEqual(authorizeControllerPeer(peer(1000, 2000), config), { ok: true })
  assert.equal(authorizeControllerPeer(peer(1000, 1000), config).reason_code, 'CTRL_AUTH_PEERCRED_REJECTED_GID')
  assert.deepEqual(validateSocketSecurityMetadata({ mode: 0o660, uid: 0, gid: 0 }, { mode: 0o660, uid: 0, gid: 0 }), { ok: true })

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sockmeta-'))
  try {
    const file = path.join(dir, 's')
    fs.writeFileSync(file, '')
    fs.chmodSync(file, 0o640)
    const st = fs.statSync(file)
    const cfg = { controlSocketFileMode: 0o640, controlSocketOwnerUid: st.uid, controlSocketOwnerGid: st.gid }
    assert.deepEqual(validateSocketSecurityMetadata(st, cfg), { ok: true })
    fs.chmodSync(file, 0o666)
    assert.deepEqual(
      validateSocketSecurityMetadata(fs.statSync(file, { bigint: true }), cfg),
      refusal('CTRL_AUTH_SOCKET_MODE_INVALID', 'socket mode 666 != expected 640'),
    )
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})
