import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { test } from 'node:test'
import { authorizeControllerPeer, parseEbpfInterceptorConfig, validateSocketSecurityMetadata } from '../index.js'

const policy = (uids, gids) => ({ privilegedControllerUids: uids, privilegedControllerGids: gids })
const codeOf = (r) => (r.ok ? null : r.error.reason_code)

test('no credentials: PEERCRED_UNAVAILABLE with the fixed message', () => {
  for (const peer of [null, undefined]) {
    assert.deepEqual(authorizeControllerPeer(peer, policy([0], [])), {
      ok: false,
      error: {
        code_namespace: 'control_authz',
        reason_code: 'CTRL_AUTH_PEERCRED_UNAVAILABLE',
        message: 'SO_PEERCRED metadata is required',
      },
    })
  }
})

test('OR semantics, permissive mode and REJECTED_UID vs REJECTED_GID', () => {
  const peer = { uid: 1000, gid: 2000, pid: 7 }
  assert.deepEqual(authorizeControllerPeer(peer, policy([], [])), { ok: true })
  assert.equal(codeOf(authorizeControllerPeer(peer, policy([1000], [0]))), null)
  assert.equal(codeOf(authorizeControllerPeer(peer, policy([0], [2000]))), null)
  assert.equal(codeOf(authorizeControllerPeer(peer, policy([0], [0]))), 'CTRL_AUTH_PEERCRED_REJECTED_UID')
  assert.equal(codeOf(authorizeControllerPeer(peer, policy([0], []))), 'CTRL_AUTH_PEERCRED_REJECTED_UID')
  assert.equal(codeOf(authorizeControllerPeer(peer, policy([], [0]))), 'CTRL_AUTH_PEERCRED_REJECTED_GID')
  // A whole config works as a policy.
  const config = parseEbpfInterceptorConfig({ environment: 'production', privilegedControllerGids: [2000] })
  assert.deepEqual(authorizeControllerPeer(peer, config), { ok: true })
  assert.throws(() => authorizeControllerPeer({ uid: -1, gid: 0 }, policy([], [])), (e) => {
    assert.deepEqual(e.issues[0].path, ['peer', 'uid'])
    return true
  })
  assert.throws(() => authorizeControllerPeer(peer, { privilegedControllerUids: 'root' }), { code: 'ERR_CONTRACT_VALIDATION' })
})

test('socket check: mode first (octal in message), then owner', () => {
  const expected = { mode: 0o660, uid: 0, gid: 0 }
  assert.deepEqual(validateSocketSecurityMetadata({ mode: 0o140660, uid: 0, gid: 0 }, expected), { ok: true })
  const both = validateSocketSecurityMetadata({ mode: 0o666, uid: 1000, gid: 1000 }, expected)
  assert.equal(both.error.reason_code, 'CTRL_AUTH_SOCKET_MODE_INVALID')
  assert.equal(both.error.message, 'control socket mode is 0666, expected 0660')
  const owner = validateSocketSecurityMetadata({ mode: 0o660, uid: 0, gid: 1000 }, expected)
  assert.equal(owner.error.reason_code, 'CTRL_AUTH_SOCKET_OWNER_INVALID')
  assert.equal(owner.error.message, 'control socket owner is 0:1000, expected 0:0')
  // Expectations derived from a config; fs.Stats accepted directly.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sockmeta-'))
  try {
    const file = path.join(dir, 's')
    fs.writeFileSync(file, '')
    fs.chmodSync(file, 0o640)
    const st = fs.statSync(file)
    const cfg = { controlSocketFileMode: 0o640, controlSocketOwnerUid: st.uid, controlSocketOwnerGid: st.gid }
    assert.deepEqual(validateSocketSecurityMetadata(st, cfg), { ok: true })
    fs.chmodSync(file, 0o666)
    const r = validateSocketSecurityMetadata(fs.statSync(file), cfg)
    assert.equal(r.error.message, 'control socket mode is 0666, expected 0640')
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})
