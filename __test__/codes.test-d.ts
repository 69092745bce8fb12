// Compiled by `pnpm typecheck` (tsc, strict) against the published index.d.ts; never run.
import {
  assertNoReasonCodeOverlap,
  controlPlaneAuthzErrorCodes,
  dataplaneVerdictReasonCodes,
  DataplaneHookSchema,
  type ContractValidationError,
  type ControlPlaneAuthzErrorCode,
  type DataplaneAndControlPlaneCodesMustNotOverlap,
  type DataplaneVerdictReasonCode,
  type DataplaneHook,
} from '../index.js'

const noOverlap: DataplaneAndControlPlaneCodesMustNotOverlap = true
const firstCode: DataplaneVerdictReasonCode = dataplaneVerdictReasonCodes[0]
const ctl: ControlPlaneAuthzErrorCode = controlPlaneAuthzErrorCodes[7]
// @ts-expect-error a control code is not a dataplane code
const wrongNamespace: DataplaneVerdictReasonCode = 'CTRL_COMMAND_FAILED'
// @ts-expect-error unknown codes are not in the union
const unknownCode: ControlPlaneAuthzErrorCode = 'NOPE'
const result = DataplaneHookSchema.safeParse('connect4')
if (result.success) {
  const hook: DataplaneHook = result.data
  void hook
} else {
  const err: ContractValidationError = result.error
  void err.issues[0]?.path
}
assertNoReasonCodeOverlap()
void [noOverlap, firstCode, ctl, wrongNamespace, unknownCode]
