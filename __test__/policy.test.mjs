import assert from 'node:assert/strict'
import { test } from 'node:test'
import { ContractValidationError, PolicySnapshotSchema, parsePolicySnapshot } from '../index.js'

const base = (rules) => ({ broker: [{ ip: '10.0.0.5', port: 8081 }], dns: [{ ip: '10.0.0.53' }], rules })
const issuesOf = (input) => {
  try {
    parsePolicySnapshot(input)
  } catch (e) {
    assert.ok(e instanceof ContractValidationError)
    return e.issues
  }
  assert.fail('expected rejection')
}

test('normalises defaults and re-parses to itself', () => {
  const s = parsePolicySnapshot(base([{ id: 'gh', action: 'allow', cidr: '140.82.112.0/20', ports: [443], protocol: 'tcp' }]))
  assert.deepEqual(s.dns, [{ ip: '10.0.0.53', port: 53 }])
  assert.deepEqual(s.sampling, { allowOneIn: 1, unmanagedOneIn: 0 })
  assert.deepEqual(parsePolicySnapshot(s), s)
})

test('host bits, non-canonical text and mapped IPv6 name what to write', () => {
  const issues = issuesOf(
    base([
      { id: 'a', action: 'allow', cidr: '10.0.0.1/8' },
      { id: 'b', action: 'allow', cidr: '2001:DB8::/32' },
      { id: 'c', action: 'deny', cidr: '::ffff:10.0.0.0/104' },
    ]),
  )
  assert.deepEqual(
    issues.map((i) => [i.path, i.message]),
    [
      [['rules', 0, 'cidr'], '`10.0.0.1/8` has host bits set: write `10.0.0.0/8`'],
      [['rules', 1, 'cidr'], '`2001:DB8::/32` is not canonical CIDR text: write `2001:db8::/32`'],
      [
        ['rules', 2, 'cidr'],
        '`::ffff:10.0.0.0/104` is an IPv4-mapped IPv6 range; the dataplane judges IPv4-mapped destinations by the IPv4 rules: write the IPv4 rule `10.0.0.0/8`',
      ],
    ],
  )
})

test('duplicates, empty ports, bad ids and unknown keys are all listed', () => {
  const issues = issuesOf({
    ...base([
      { id: 'x', action: 'allow', cidr: '10.0.0.0/8', ports: [443, 443] },
      { id: 'x', action: 'allow', cidr: '10.0.0.0/8', ports: [] },
      { id: 'y'.repeat(64), action: 'allow', cidr: '10.0.0.0/8', proto: 'tcp' },
    ]),
    version: 1,
  })
  assert.deepEqual(
    issues.map((i) => [i.path.join('.'), i.code]),
    [
      ['', 'unrecognized_keys'],
      ['rules.0.ports.1', 'custom'],
      ['rules.1.id', 'custom'],
      ['rules.1.ports', 'too_small'],
      ['rules.2', 'unrecognized_keys'],
      ['rules.2.id', 'too_big'],
    ],
  )
})

test('rule limit is per address family', () => {
  const rules = Array.from({ length: 131_073 }, (_, i) => ({ id: `r${i}`, action: 'allow', cidr: '10.0.0.0/8' }))
  const issues = issuesOf(base(rules))
  assert.deepEqual(issues, [
    { path: ['rules'], code: 'too_big', message: 'at most 131072 IPv4 rules are supported, received 131073' },
  ])
  rules.pop()
  rules.push({ id: 'v6', action: 'allow', cidr: '2001:db8::/32' })
  assert.equal(parsePolicySnapshot(base(rules)).rules.length, 131_073)
})

test('schema surface: safeParse never throws for bad input; non-JSON values are issues', () => {
  assert.equal(PolicySnapshotSchema.safeParse(undefined).success, false)
  assert.equal(PolicySnapshotSchema.safeParse({ broker: [], dns: [], rules: [], f() {} }).success, false)
  assert.equal(PolicySnapshotSchema.safeParse(base([{ id: 'a', action: 'allow', cidr: '10.0.0.0/8', ports: [NaN] }])).success, false)
  assert.equal(PolicySnapshotSchema.safeParse({ broker: [], dns: [], rules: [] }).success, true)
})
