// Public types of @broker-interceptor/interceptor-ebpf. Hand-written: the schema objects, exact string unions
// and the compile-time overlap guard cannot be generated from Rust. Each part's types live in js/<part>.d.ts;
// __test__/types.test-d.ts compiles against this file with `strict` on.

export * from './js/errors'
export * from './js/codes'
export * from './js/policy'
export * from './js/control'
export * from './js/interceptor'
export * from './js/events'
export * from './js/control-client'
