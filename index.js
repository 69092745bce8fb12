'use strict'
// Public CommonJS entry of @broker-interceptor/interceptor-ebpf. Each part lives in js/<part>.js and forwards
// every rule to the Rust addon loaded by the generated binding.js.

module.exports = {
  ...require('./js/errors.js'),
  ...require('./js/codes.js'),
  ...require('./js/policy.js'),
  ...require('./js/control.js'),
  ...require('./js/interceptor.js'),
  ...require('./js/events.js'),
  ...require('./js/control-client.js'),
}
