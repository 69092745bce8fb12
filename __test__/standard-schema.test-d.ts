// Compiled by `pnpm typecheck` (tsc, strict) against the published index.d.ts; never run.
// Our hand-written StandardSchemaV1 must be the one the ecosystem types: assignable to @standard-schema/spec's
// interface and accepted, with its output type, by a library that takes a standard schema.
import type { StandardSchemaV1 as SpecStandardSchemaV1 } from '@standard-schema/spec'
import { Hono } from 'hono'
import { sValidator } from '@hono/standard-validator'
import {
  ControlProtocolResponseSchema,
  DataplanePacketEventSchema,
  EbpfInterceptorConfigSchema,
  type ControlProtocolResponse,
  type DataplanePacketEvent,
  type EbpfInterceptorConfig,
  type StandardSchemaV1,
} from '../index.js'

const asSpec: SpecStandardSchemaV1<unknown, DataplanePacketEvent> = DataplanePacketEventSchema
const asOurs: StandardSchemaV1<unknown, EbpfInterceptorConfig> = EbpfInterceptorConfigSchema

type Out = SpecStandardSchemaV1.InferOutput<typeof ControlProtocolResponseSchema>
const out: ControlProtocolResponse = null as unknown as Out
type OurOut = StandardSchemaV1.InferOutput<typeof DataplanePacketEventSchema>
const ourOut: DataplanePacketEvent = null as unknown as OurOut

// validate is synchronous here: no await needed, and the union narrows on `issues`.
const r = DataplanePacketEventSchema['~standard'].validate({})
if (r.issues) {
  const where: ReadonlyArray<string | number> = r.issues[0]!.path
  void where
} else {
  const verdict: 'allow' | 'deny' = r.value.verdict
  void verdict
}
const vendor: 'interceptor-ebpf' = DataplanePacketEventSchema['~standard'].vendor

new Hono().post('/', sValidator('json', DataplanePacketEventSchema), (c) => {
  const event: DataplanePacketEvent = c.req.valid('json')
  // @ts-expect-error the validated body is a DataplanePacketEvent, not `any`
  const wrong: number = c.req.valid('json').reason_code
  return c.json({ code: event.reason_code, wrong })
})

void [asSpec, asOurs, out, ourOut, vendor]
