// `pnpm demo`: what the DataplanePacketEvent contract accepts, what it rejects (and why), and what the agent
// logs. Reads the sample inputs in examples/events/.
import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

import {
  ContractValidationError,
  parseDataplanePacketEvent,
  parseDataplanePacketEventJson,
  parseDataplanePacketEventNdjson,
  serializeDataplanePacketEventToLog,
} from '../index.js'

const dir = join(fileURLToPath(new URL('.', import.meta.url)), 'events')
const files = readdirSync(dir).sort()
const read = (name) => readFileSync(join(dir, name))

function describe(e) {
  const host = e.dst_ip?.includes(':') ? `[${e.dst_ip}]` : e.dst_ip
  const where = e.dst_ip === undefined ? '' : ` ${e.protocol === undefined ? '' : `${e.protocol} `}${host}:${e.dst_port ?? '?'}`
  const who = e.comm === undefined ? '' : ` from ${e.comm}${e.pid === undefined ? '' : ` (pid ${e.pid})`}`
  const observe = e.would_block === undefined ? '' : `, would_block=${e.would_block}`
  return `${e.verdict.toUpperCase()} ${e.reason_code}${observe}${where}${who}`
}

function printIssues(issues, indent = '    ') {
  for (const i of issues) console.log(`${indent}${i.path.length ? i.path.join('.') : '(root)'} [${i.code}] ${i.message}`)
}

console.log('1. Valid events, parsed from JSON bytes with parseDataplanePacketEventJson()\n')
const valid = []
for (const f of files.filter((f) => f.startsWith('valid-'))) {
  const event = parseDataplanePacketEventJson(read(f))
  valid.push(event)
  console.log(`  ok  ${f}\n      ${describe(event)}`)
}

console.log('\n2. Invalid events are rejected with every issue listed (ContractValidationError)\n')
for (const f of files.filter((f) => f.startsWith('invalid-'))) {
  try {
    parseDataplanePacketEventJson(read(f))
    console.log(`  ??  ${f} was accepted`)
  } catch (error) {
    if (!(error instanceof ContractValidationError)) throw error
    console.log(`  no  ${f}`)
    printIssues(error.issues, '      ')
  }
}

console.log('\n3. Log records: keys in SPEC order, would_block kept when false, empty strings dropped\n')
const observe = valid.find((e) => e.reason_code === 'OBSERVE_WOULD_ALLOW')
console.log(`  parsed event: ${JSON.stringify(observe)}`)
console.log(`  log record:   ${JSON.stringify(serializeDataplanePacketEventToLog(observe))}`)

console.log('\n4. Objects are checked the same way (parseDataplanePacketEvent)\n')
const tampered = { ...valid[0], verdict: valid[0].verdict === 'deny' ? 'allow' : 'deny', sampled: true }
try {
  parseDataplanePacketEvent(tampered)
} catch (error) {
  console.log(`  an event whose verdict contradicts its code, with an extra key:`)
  printIssues(error.issues, '      ')
}

console.log('\n5. An NDJSON batch (parseDataplanePacketEventNdjson): bad lines never stop the others\n')
const { records, errors } = parseDataplanePacketEventNdjson(read('batch.ndjson'))
console.log(`  ${records.length} records accepted:`)
for (const r of records) console.log(`      ${describe(r)}`)
console.log(`  ${errors.length} lines rejected:`)
for (const e of errors) {
  console.log(`      line ${e.line}:`)
  printIssues(e.issues, '        ')
}
