// Generated from EVENT_KEYS (crates/core/src/contract/events/mod.rs) and the record layout
// (src/packet_event/layout.rs) by `cargo xtask codegen`. Do not edit: `cargo xtask codegen --check` fails on drift.
'use strict'

/**
 * The code of js/events.js that names each DataplanePacketEvent key, specialised to the keys so that V8 sees
 * plain property reads and writes. `t` is `native.dataplaneEventTables()`, `checkObject` its fast path.
 */
module.exports = function eventFields(t, checkObject) {
  const codes = t.codes
  const verdicts = t.verdicts
  const wouldBlock = t.wouldBlock
  const hooks = t.hooks
  const protocols = t.protocols
  const REASON_CODE = t.slots[1]
  const HOOK = t.slots[4]
  const CGROUP_ID = t.slots[5]
  const MESSAGE = t.slots[6]
  const PROTOCOL = t.slots[7]
  const DST_IP = t.slots[8]
  const DST_PORT = t.slots[9]
  const PID = t.slots[10]
  const UID = t.slots[11]
  const COMM = t.slots[12]
  const RULE_ID = t.slots[13]
  const DNS_NAME = t.slots[14]
  const POLICY_GENERATION = t.slots[15]
  const WORKLOAD_ID = t.slots[16]
  const OBSERVED_AT = t.slots[17]

  /**
   * Reads every key of `input` once and has Rust judge the values (`checkObject(countOrKeys, ...values)`, see
   * src/packet_event.rs): returns the issues (an array), or a new object with the validated values in table order,
   * leaving out undefined ones and, `forLog`, the empty strings the log record drops. Each value is read
   * once, so a getter cannot hand the output something other than what was validated.
   */
  function checkAndBuild(input, count, forLog) {
    const v0 = input.code_namespace
    const v1 = input.reason_code
    const v2 = input.verdict
    const v3 = input.would_block
    const v4 = input.hook
    const v5 = input.cgroup_id
    const v6 = input.message
    const v7 = input.protocol
    const v8 = input.dst_ip
    const v9 = input.dst_port
    const v10 = input.pid
    const v11 = input.uid
    const v12 = input.comm
    const v13 = input.rule_id
    const v14 = input.dns_name
    const v15 = input.policy_generation
    const v16 = input.workload_id
    const v17 = input.observed_at
    let r = checkObject(count, v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15, v16, v17)
    // The count shows keys beyond the known ones: ask again with the names, so Rust can list them.
    if (r === -1) {
      const names = []
      for (const k in input) names.push(k)
      r = checkObject(names, v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15, v16, v17)
    }
    if (typeof r !== 'number') return r
    const drop = forLog ? r : 0
    const out = { code_namespace: v0, reason_code: v1, verdict: v2 }
    if (v3 !== undefined && (drop & 8) === 0) out.would_block = v3
    if (v4 !== undefined && (drop & 16) === 0) out.hook = v4
    if (v5 !== undefined && (drop & 32) === 0) out.cgroup_id = v5
    if (v6 !== undefined && (drop & 64) === 0) out.message = v6
    if (v7 !== undefined && (drop & 128) === 0) out.protocol = v7
    if (v8 !== undefined && (drop & 256) === 0) out.dst_ip = v8
    if (v9 !== undefined && (drop & 512) === 0) out.dst_port = v9
    if (v10 !== undefined && (drop & 1024) === 0) out.pid = v10
    if (v11 !== undefined && (drop & 2048) === 0) out.uid = v11
    if (v12 !== undefined && (drop & 4096) === 0) out.comm = v12
    if (v13 !== undefined && (drop & 8192) === 0) out.rule_id = v13
    if (v14 !== undefined && (drop & 16384) === 0) out.dns_name = v14
    if (v15 !== undefined && (drop & 32768) === 0) out.policy_generation = v15
    if (v16 !== undefined && (drop & 65536) === 0) out.workload_id = v16
    if (v17 !== undefined && (drop & 131072) === 0) out.observed_at = v17
    return out
  }

  /** The event of the record at `s[o]`: `src.text()` is the input as a string, `extras` the strings that could
   * not be sliced from it. */
  function fromSlots(s, o, src, extras) {
    const code = s[o + REASON_CODE]
    const out = { code_namespace: 'dataplane_verdict', reason_code: codes[code], verdict: verdicts[code] }
    let v
    v = wouldBlock[code]
    if (v !== null) out.would_block = v
    v = s[o + HOOK]
    if (v !== 0) out.hook = hooks[v]
    v = s[o + CGROUP_ID]
    if (v !== -1) out.cgroup_id = v >= 0 ? src.text().slice(v, s[o + CGROUP_ID + 1]) : extras[-v - 2]
    v = s[o + MESSAGE]
    if (v !== -1) out.message = v >= 0 ? src.text().slice(v, s[o + MESSAGE + 1]) : extras[-v - 2]
    v = s[o + PROTOCOL]
    if (v !== 0) out.protocol = protocols[v]
    v = s[o + DST_IP]
    if (v !== -1) out.dst_ip = v >= 0 ? src.text().slice(v, s[o + DST_IP + 1]) : extras[-v - 2]
    v = s[o + DST_PORT]
    if (v !== -1) out.dst_port = v
    v = s[o + PID]
    if (v !== -1) out.pid = v
    v = s[o + UID]
    if (v !== -1) out.uid = v
    v = s[o + COMM]
    if (v !== -1) out.comm = v >= 0 ? src.text().slice(v, s[o + COMM + 1]) : extras[-v - 2]
    v = s[o + RULE_ID]
    if (v !== -1) out.rule_id = v >= 0 ? src.text().slice(v, s[o + RULE_ID + 1]) : extras[-v - 2]
    v = s[o + DNS_NAME]
    if (v !== -1) out.dns_name = v >= 0 ? src.text().slice(v, s[o + DNS_NAME + 1]) : extras[-v - 2]
    v = s[o + POLICY_GENERATION]
    if (v !== -1) out.policy_generation = v
    v = s[o + WORKLOAD_ID]
    if (v !== -1) out.workload_id = v >= 0 ? src.text().slice(v, s[o + WORKLOAD_ID + 1]) : extras[-v - 2]
    v = s[o + OBSERVED_AT]
    if (v !== -1) out.observed_at = v >= 0 ? src.text().slice(v, s[o + OBSERVED_AT + 1]) : extras[-v - 2]
    return out
  }

  return { checkAndBuild, fromSlots }
}
