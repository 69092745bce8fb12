#!/usr/bin/env bash
# The generated C headers must (1) compile cleanly as C11 and for the BPF target and (2) hold the SPEC values.
# Drift from the Rust source is checked separately by `cargo xtask codegen --check`.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cc -std=c11 -Wall -Wextra -Werror -Wno-unused-variable -I native/include crates/core/tests/c/code_headers_test.c -o "$out/code_headers_test"
"$out/code_headers_test"
if command -v clang-19 >/dev/null 2>&1; then
  # The eBPF programs include these headers: they must also be clean for the BPF target.
  printf '#include "reason_codes.h"\n#include "control_authz_codes.h"\n' |
    clang-19 -target bpf -std=c11 -Wall -Wextra -Werror -I native/include -fsyntax-only -x c -
fi
