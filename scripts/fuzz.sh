#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/fuzz_targets for the given number of seconds each (default 60) and
# prints one summary line per target. A crash stops the script with libFuzzer's report and the reproducer in
# fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh        # 60 s per target
#   scripts/fuzz.sh 600    # 10 min per target
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
# cargo-fuzz passes nightly-only flags (-Zsanitizer=address); this toolchain is stable only, and
# RUSTC_BOOTSTRAP=1 lets stable rustc accept them.
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

summary=()
for target_file in fuzz/fuzz_targets/*.rs; do
  target="$(basename "$target_file" .rs)"
  corpus="fuzz/corpus/$target"
  mkdir -p "$corpus"
  # Seed the first time: fuzz/seeds/<target>/ if present, else the sample events in examples/events.
  if [ -z "$(ls -A "$corpus")" ]; then
    if [ -d "fuzz/seeds/$target" ]; then
      cp "fuzz/seeds/$target"/* "$corpus"/
    elif [ -d examples/events ]; then
      cp examples/events/* "$corpus"/
    fi
  fi
  log="$(mktemp)"
  echo "== $target (${seconds}s)"
  set +e
  cargo fuzz run "$target" "$corpus" -- -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 \
    >"$log" 2>&1
  status=$?
  set -e
  grep -E '^(#[0-9]+.*DONE|Done [0-9]+ runs)' "$log" || true
  runs="$(grep -Eo 'Done [0-9]+ runs' "$log" | grep -Eo '[0-9]+' || echo '?')"
  cov="$(grep -Eo 'cov: [0-9]+' "$log" | tail -1 | grep -Eo '[0-9]+' || echo '?')"
  if [ "$status" -ne 0 ]; then
    tail -n 40 "$log"
    echo "FUZZ FAILURE in $target (see fuzz/artifacts/$target/)" >&2
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
  summary+=("$target: $runs executions in ${seconds}s, coverage $cov edges, no crash")
done

echo
printf '%s\n' "${summary[@]}"
