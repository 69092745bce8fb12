#!/usr/bin/env node
// Every check the labs make on what they observed, in one place (scripts/lab/{native,docker}/*.sh and
// scripts/lab/e2e.sh call it). The agent's event log is read with the package's own
// `parseDataplanePacketEventNdjson`, the agent's status with `parseControlCommandData`: a line the package
// would reject fails the lab, and reason codes are compared on parsed events, never on grepped text.
//
//   node scripts/lab/check-verdicts.mjs [--quiet] CHECK...
//
// The test service's answers (its JSON bodies as text):
//   --health TEXT           /health: status "ok"
//   --chat TEXT             /chat: answered through the broker, by the broker stand-in
//   --direct TEXT           /direct-call: connect() refused with EPERM, and the test service found the agent's
//                           deny event for it (a valid DataplanePacketEvent)
//   --direct-code CODE      ... and that event's reason_code is CODE (without it: any code)
// The agent's event log (NDJSON of `interceptor-ebpf ctl events --follow`):
//   --events FILE|-         every line must be a valid DataplanePacketEvent; with --direct, the direct call's
//                           event must be in it (same destination and code)
//   --after-line N          the expectations look only at the lines after line N (the log's length before)
//   --broker-port PORT      an ALLOW_BROKER event to PORT
//   --broker-name NAME      ... whose dns_name is NAME: the broker was reached at an address the agent's DNS
//                           proxy learned from an answer for NAME (SPEC 4b), not at a listed address
//   --wait-ms MS            re-read FILE until the expectations hold, at most MS (default 5000; not for -)
// The broker stand-in's log:
//   --broker-log FILE       no request reached the upstream stand-in (the target of the direct call)
// The agent's status (`interceptor-ebpf ctl status --json`):
//   --status TEXT           a valid GetStatus data object
//   --generation N          ... whose policy generation is N
//   --attached-programs N   N programs attached to the agent's cgroup root: the four sock_addr programs, the
//                           four of the DNS steering's return path (recvmsg4/6, getpeername4/6: attached
//                           with them, never listed in attachedHooks) and one per active bypass layer that is
//                           a program of its own
// The agent's DNS proxy (`interceptor-ebpf ctl -o json dns`):
//   --dns TEXT              a valid GetDnsStatus data object of a serving proxy
//   --dns-broker NAME       ... that lists a learned address of NAME as a broker address (broker: true)
//
// Prints one `ok`/`FAIL` line per check and exits 1 if any failed (2 for bad arguments). --quiet prints
// nothing: for retry loops that only need the exit status.

import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { isIPv6 } from 'node:net'
import { parseArgs } from 'node:util'

const require = createRequire(import.meta.url)
const { parseDataplanePacketEvent, parseDataplanePacketEventNdjson, parseControlCommandData } = require('../../index.js')

const usage = 'usage: node scripts/lab/check-verdicts.mjs [--quiet] CHECK... (see the head of the file)'
let args
try {
  args = parseArgs({
    options: {
      quiet: { type: 'boolean' },
      health: { type: 'string' },
      chat: { type: 'string' },
      direct: { type: 'string' },
      'direct-code': { type: 'string' },
      events: { type: 'string' },
      'after-line': { type: 'string' },
      'broker-port': { type: 'string' },
      'wait-ms': { type: 'string' },
      'broker-log': { type: 'string' },
      status: { type: 'string' },
      generation: { type: 'string' },
      'attached-programs': { type: 'string' },
      'broker-name': { type: 'string' },
      dns: { type: 'string' },
      'dns-broker': { type: 'string' },
    },
    strict: true,
  }).values
} catch (err) {
  console.error(`check-verdicts: ${err.message}\n${usage}`)
  process.exit(2)
}

// A call that checks nothing must not pass for a verified lab.
const checks = ['health', 'chat', 'direct', 'events', 'broker-log', 'status', 'dns']
if (!checks.some((name) => args[name] !== undefined)) {
  console.error(`check-verdicts: nothing to check (--${checks.join(', --')})\n${usage}`)
  process.exit(2)
}

function integerArg(name, fallback) {
  const text = args[name]
  if (text === undefined) return fallback
  if (!/^[0-9]+$/.test(text)) {
    console.error(`check-verdicts: --${name} must be a non-negative integer, not '${text}'`)
    process.exit(2)
  }
  return Number(text)
}
const afterLine = integerArg('after-line', 0)
const brokerPort = integerArg('broker-port', undefined)
const waitMs = integerArg('wait-ms', 5000)
const generation = integerArg('generation', undefined)
const attachedPrograms = integerArg('attached-programs', undefined)
if (args['direct-code'] !== undefined && args.direct === undefined) {
  console.error('check-verdicts: --direct-code needs --direct')
  process.exit(2)
}
if ((brokerPort !== undefined || args['after-line'] !== undefined) && args.events === undefined) {
  console.error('check-verdicts: --broker-port and --after-line need --events')
  process.exit(2)
}
if (args['broker-name'] !== undefined && brokerPort === undefined) {
  console.error('check-verdicts: --broker-name needs --broker-port')
  process.exit(2)
}
if (args['dns-broker'] !== undefined && args.dns === undefined) {
  console.error('check-verdicts: --dns-broker needs --dns')
  process.exit(2)
}
if ((generation !== undefined || attachedPrograms !== undefined) && args.status === undefined) {
  console.error('check-verdicts: --generation and --attached-programs need --status')
  process.exit(2)
}

let failed = false
function check(label, ok, detail) {
  if (!ok) failed = true
  if (!args.quiet) console.log(`  ${ok ? 'ok  ' : 'FAIL'}  ${label.padEnd(30)} ${detail}`)
}

/** A JSON answer, or `{}` (every field check then fails and the detail shows the text). */
function answer(text) {
  try {
    const value = JSON.parse(text)
    return value !== null && typeof value === 'object' ? value : {}
  } catch {
    return {}
  }
}

const oneLine = (text) => text.replace(/\s+/g, ' ').trim()
/** `::ffff:a.b.c.d` and `a.b.c.d` name the same IPv4 destination (the events keep what connect() got). */
const sameIp = (a, b) => typeof a === 'string' && typeof b === 'string' && unmapped(a) === unmapped(b)
const unmapped = (ip) => (isIPv6(ip) && /^::ffff:\d/i.test(ip) ? ip.slice(7) : ip).toLowerCase()
const describe = (e) =>
  `${e.reason_code} ${e.verdict} ${e.hook ?? ''} ${e.dst_ip ?? '-'}:${e.dst_port ?? '-'} (${e.comm ?? ''})${e.dns_name ? ` dns_name=${e.dns_name}` : ''}`

// --- the test service's answers ---------------------------------------------------------------------------------
if (args.health !== undefined) {
  check('health', answer(args.health).status === 'ok', oneLine(args.health))
}

if (args.chat !== undefined) {
  const chat = answer(args.chat)
  check(
    'chat through the broker',
    chat.via === 'broker' && typeof chat.reply === 'string' && chat.reply.startsWith('broker stand-in'),
    oneLine(args.chat),
  )
}

/** The direct call's deny event as the test service reported it, once it parsed. */
let directEvent = null
if (args.direct !== undefined) {
  const direct = answer(args.direct)
  check(
    'direct call refused: EPERM',
    direct.outcome === 'refused' && direct.errno === 'EPERM',
    `outcome=${direct.outcome} errno=${direct.errno} target=${direct.target}`,
  )
  let detail
  try {
    directEvent = parseDataplanePacketEvent(direct.event)
    detail = describe(directEvent)
  } catch (err) {
    detail = `the test service found no valid event: ${direct.eventSource ?? err.message}`
  }
  const want = args['direct-code']
  check(
    want === undefined ? 'its reason code' : `its event: ${want}`,
    directEvent !== null && directEvent.verdict === 'deny' && (want === undefined || directEvent.reason_code === want),
    detail,
  )
}

// --- the agent's event log ----------------------------------------------------------------------------------
if (args.events !== undefined) {
  const fromStdin = args.events === '-'
  const deadline = Date.now() + (fromStdin ? 0 : waitMs)
  for (;;) {
    let text
    try {
      text = readFileSync(fromStdin ? 0 : args.events, 'utf8')
    } catch (err) {
      check('agent event log', false, `cannot read ${args.events}: ${err.message}`)
      break
    }
    // Complete lines only: the follower may be half-way through writing the last one.
    const lines = text.slice(0, text.lastIndexOf('\n') + 1).split('\n')
    const before = parseDataplanePacketEventNdjson(lines.slice(0, afterLine).join('\n'))
    const after = parseDataplanePacketEventNdjson(lines.slice(afterLine).join('\n'))
    const errors = [...before.errors, ...after.errors.map((e) => ({ ...e, line: e.line + afterLine }))]
    const recent = after.records
    const allow =
      brokerPort === undefined
        ? undefined
        : recent.findLast(
            (e) =>
              e.reason_code === 'ALLOW_BROKER' &&
              e.dst_port === brokerPort &&
              (args['broker-name'] === undefined || e.dns_name === args['broker-name']),
          )
    const deny =
      directEvent === null
        ? undefined
        : recent.find(
            (e) =>
              e.reason_code === directEvent.reason_code &&
              e.dst_port === directEvent.dst_port &&
              sameIp(e.dst_ip, directEvent.dst_ip),
          )
    const missing = (brokerPort !== undefined && allow === undefined) || (directEvent !== null && deny === undefined)
    // A rejected line does not get better by waiting; a missing event may still be on its way.
    if (missing && errors.length === 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100))
      continue
    }
    const first = errors[0]
    check(
      'agent event log parses',
      errors.length === 0,
      errors.length === 0
        ? `${before.records.length + recent.length} events, ${recent.length} after line ${afterLine}`
        : `${errors.length} line(s) rejected; line ${first.line}: ${first.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`,
    )
    if (brokerPort !== undefined) {
      const byName = args['broker-name'] === undefined ? '' : ` with dns_name ${args['broker-name']}`
      check(
        `its event: ALLOW_BROKER${args['broker-name'] === undefined ? '' : ' by name'}`,
        allow !== undefined,
        allow !== undefined ? describe(allow) : `no ALLOW_BROKER event to port ${brokerPort}${byName} after line ${afterLine}`,
      )
    }
    if (directEvent !== null) {
      check(
        'the agent logged the refusal',
        deny !== undefined,
        deny !== undefined
          ? describe(deny)
          : `no ${directEvent.reason_code} event to ${directEvent.dst_ip}:${directEvent.dst_port} after line ${afterLine}`,
      )
    }
    break
  }
}

// --- the broker stand-in's log ------------------------------------------------------------------------------
if (args['broker-log'] !== undefined) {
  let reached
  try {
    // The stand-in's JSON log lines: a warning for every request that reached the upstream directly.
    reached = readFileSync(args['broker-log'], 'utf8')
      .split('\n')
      .filter((line) => line.includes('went around the broker')).length
  } catch (err) {
    reached = `cannot read ${args['broker-log']}: ${err.message}`
  }
  check('upstream never reached', reached === 0, `upstream stand-in requests: ${reached}`)
}

// --- the agent's status ---------------------------------------------------------------------------------------
if (args.status !== undefined) {
  let status = null
  try {
    status = parseControlCommandData('GetStatus', JSON.parse(args.status))
    check('agent status', true, `generation ${status.generation}, layers in force: ${status.activeLayers.join(', ') || 'none'}`)
  } catch (err) {
    check('agent status', false, `not a GetStatus data object: ${err.message}: ${oneLine(args.status).slice(0, 200)}`)
  }
  if (generation !== undefined) {
    check(`policy generation ${generation}`, status?.generation === generation, `generation ${status?.generation}`)
  }
  if (attachedPrograms !== undefined) {
    // socket_storage is a mode of the other programs, not a program of its own.
    const programLayers = (status?.activeLayers ?? []).filter((layer) => layer !== 'socket_storage')
    // The agent attaches the return path of DNS steering (rules by name, SPEC 4b) beside the sock_addr hooks,
    // whatever the policy: it restores the resolver's address on answers the DNS proxy sent.
    const dnsReturnPath = ['dns_recvmsg4', 'dns_recvmsg6', 'dns_getpeername4', 'dns_getpeername6']
    const expected = (status?.attachedHooks.length ?? 0) + dnsReturnPath.length + programLayers.length
    check(
      'programs attached',
      attachedPrograms === expected,
      `${attachedPrograms} attached, expected ${expected} (${status?.attachedHooks.join(', ')}; ${dnsReturnPath.join(', ')}; ${programLayers.join(', ')})`,
    )
  }
}

// --- the agent's DNS proxy ------------------------------------------------------------------------------------
if (args.dns !== undefined) {
  let dns = null
  try {
    dns = parseControlCommandData('GetDnsStatus', JSON.parse(args.dns))
    check(
      'DNS proxy serving',
      dns.serving === true,
      dns.serving
        ? `on ${dns.listen.join(', ')}, ${dns.counters.queries} queries, ${dns.counters.learnedAddresses} learned, ${dns.counters.upstreamFailures} upstream failures`
        : `not serving: ${dns.reason}`,
    )
  } catch (err) {
    check('DNS proxy serving', false, `not a GetDnsStatus data object: ${err.message}: ${oneLine(args.dns).slice(0, 200)}`)
  }
  const name = args['dns-broker']
  if (name !== undefined) {
    const learned = (dns?.learned ?? []).filter((l) => l.name === name && l.broker === true)
    check(
      `learned: ${name}`,
      learned.length > 0,
      learned.length > 0
        ? learned.map((l) => `${l.address} broker ttl ${Math.round(l.ttlRemainingMs / 1000)} s${l.workloadId ? ` for ${l.workloadId}` : ''}`).join(', ')
        : `no learned broker address of ${name} (learned: ${(dns?.learned ?? []).map((l) => `${l.name} ${l.address}`).join(', ') || 'none'})`,
    )
  }
}

process.exit(failed ? 1 : 0)
