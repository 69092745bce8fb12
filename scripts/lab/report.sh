# Sourced by the lab scripts (native and Docker): reading the test service's JSON answers and printing the
# verified report. Needs node (every lab machine has it: pnpm runs on it).
# shellcheck shell=bash disable=SC2034 # report_failed is read by the scripts that source this file

report_failed=0

# json_field KEY[.KEY...] < json   prints the value (strings bare, other values as JSON, missing as nothing)
json_field() {
  # shellcheck disable=SC2016 # JavaScript, not shell
  node -e '
    let s = ""
    process.stdin.on("data", (d) => (s += d)).on("end", () => {
      let v
      try { v = JSON.parse(s) } catch { v = undefined }
      for (const k of process.argv[1].split(".")) v = v == null ? undefined : v[k]
      process.stdout.write(v == null ? "" : typeof v === "string" ? v : JSON.stringify(v))
    })' "$1"
}

# check LABEL CONDITION-RESULT DETAIL   (CONDITION-RESULT is 0 for true, as the shell's exit codes)
check() {
  if [[ "$2" == 0 ]]; then
    printf '  ok    %-30s %s\n' "$1" "$3"
  else
    printf '  FAIL  %-30s %s\n' "$1" "$3"
    report_failed=1
  fi
}

# ok CMD...  prints 0 when the command succeeds, 1 otherwise (for check's second argument)
ok() { if "$@"; then echo 0; else echo 1; fi; }
