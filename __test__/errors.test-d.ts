// Compiled by `pnpm typecheck` against index.d.ts; never run. The error classes' `code` unions are exact: a
// switch over every code leaves `never`, so a code added to (or removed from) a union without its case here
// fails the type check, and codes that do not exist are refused.
import {
  ContractValidationError,
  ControlClientError,
  DataplaneError,
  type ControlClientErrorCode,
  type DataplaneErrorCode,
} from '../index.js'

function dataplaneWhy(code: DataplaneErrorCode): string {
  switch (code) {
    case 'ERR_DATAPLANE_IO':
    case 'ERR_DATAPLANE_CGROUP_ROOT_NOT_FOUND':
    case 'ERR_DATAPLANE_NOT_CGROUP2':
    case 'ERR_DATAPLANE_BPFFS_UNAVAILABLE':
    case 'ERR_DATAPLANE_LOAD':
    case 'ERR_DATAPLANE_OBJECT':
    case 'ERR_DATAPLANE_ATTACH':
    case 'ERR_DATAPLANE_LAYER':
    case 'ERR_DATAPLANE_MAP':
    case 'ERR_DATAPLANE_POLICY_TOO_LARGE':
    case 'ERR_DATAPLANE_INVALID_POLICY':
    case 'ERR_DATAPLANE_NOT_MANAGED':
    case 'ERR_DATAPLANE_CGROUP_ROOT_REFUSED':
    case 'ERR_DATAPLANE_ALREADY_SUBSCRIBED':
    case 'ERR_DATAPLANE_EVENT_READER':
    case 'ERR_DATAPLANE_CLOSED':
    case 'ERR_DATAPLANE_INVALID_OPTION':
    case 'ERR_DATAPLANE_ADOPT':
      return 'dataplane'
    case 'ERR_INTERCEPTOR_EBPF_UNSUPPORTED_PLATFORM':
      return 'no dataplane in this build'
    default: {
      const exhaustive: never = code
      return exhaustive
    }
  }
}

function controlWhy(code: ControlClientErrorCode): string {
  switch (code) {
    case 'ERR_CONTROL_REFUSED':
    case 'ERR_CONTROL_TIMEOUT':
    case 'ERR_CONTROL_CONNECTION':
    case 'ERR_CONTROL_CLOSED':
    case 'ERR_CONTROL_BAD_RESPONSE':
      return code
    default: {
      const exhaustive: never = code
      return exhaustive
    }
  }
}

function handle(error: unknown): string {
  if (error instanceof DataplaneError) return dataplaneWhy(error.code)
  if (error instanceof ControlClientError) return controlWhy(error.code)
  if (error instanceof ContractValidationError) return error.code
  return 'unknown'
}

// @ts-expect-error a control code is not a dataplane code
const notDataplane: DataplaneErrorCode = 'ERR_CONTROL_CLOSED'
// @ts-expect-error a dataplane code is not a control code
const notControl: ControlClientErrorCode = 'ERR_DATAPLANE_CLOSED'
// @ts-expect-error the loader's require-time errors are not DataplaneErrors: nothing can be caught as one then
const loaderError: DataplaneErrorCode = 'ERR_INTERCEPTOR_EBPF_BINARY_MISSING'
const both: [Error, Error] = [
  new DataplaneError('ERR_DATAPLANE_MAP', 'map dp_managed: EPERM'),
  new ControlClientError('ERR_CONTROL_REFUSED', 'CTRL_COMMAND_FAILED: no', { command: 'Shutdown' }),
]
const named: 'DataplaneError' = new DataplaneError('ERR_DATAPLANE_CLOSED', 'closed').name

void [handle, notDataplane, notControl, loaderError, both, named]
