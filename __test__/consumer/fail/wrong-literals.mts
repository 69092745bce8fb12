// Must NOT compile: each line ending in an `error TS<code>` comment is a type error the original package's types also gave.
// scripts/consumer-test.sh checks that tsc reports exactly these errors, on exactly these lines.
import {
  authorizeControllerPeer,
  type ControlPlaneAuthzErrorCode,
  type DataplanePacketEvent,
  type DataplaneVerdictReasonCode,
  type ControlProtocolCommand,
} from '@broker-interceptor/interceptor-ebpf'

const dataplane: DataplaneVerdictReasonCode = 'DENY_EVERYTHING' // error TS2322
const crossNamespace: ControlPlaneAuthzErrorCode = 'DENY_DEFAULT' // error TS2322
const command: ControlProtocolCommand = 'Reboot' // error TS2322
const event: DataplanePacketEvent = { code_namespace: 'dataplane_verdict', reason_code: 'ALLOW_DNS', verdict: 'maybe' } // error TS2322
const result = authorizeControllerPeer({ hasPeerCred: true, uid: 1, gid: 1 }, { allowedUids: [], allowedGids: [] })
if (!result.ok && result.reason_code === 'CTRL_AUTH_SOMETHING_ELSE') { // error TS2367
  void result
}
authorizeControllerPeer({ hasPeerCred: true, uid: '1', gid: 1 }, { allowedUids: [], allowedGids: [] }) // error TS2322
void [dataplane, crossNamespace, command, event]
