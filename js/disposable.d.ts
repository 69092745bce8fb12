// `Symbol.asyncDispose` for `[Symbol.asyncDispose]()` on Interceptor and ControlClient, declared as
// TypeScript's lib `esnext.disposable` and @types/node (compatibility/disposable.d.ts) declare it, so these types
// compile with neither of them; identical declarations merge. `await using` itself still needs one of them
// for the global `AsyncDisposable` type.
export {}

declare global {
  interface SymbolConstructor {
    readonly asyncDispose: unique symbol
  }
}
