# Sourced by scripts/lab/e2e.sh and scripts/lab/native/up.sh: which of a dataplane's programs are attached.
# shellcheck shell=bash
#
# The dataplane attaches its programs at the top of the cgroup2 mount (docs/dataplane.md, "Attach point"), where
# other dataplanes (another lab, a test suite) may attach theirs too: a dataplane's own programs are the ones
# pinned in its pin directory (prog_<name>).

# The ids of the programs pinned under pin dir $1 that are attached to cgroup directory $2, one per line.
attached_programs() {
  local pin_dir=$1 cgroup=$2 attached f id
  attached=$(bpftool cgroup show "$cgroup" 2>/dev/null | awk 'NR > 1 && $1 ~ /^[0-9]+$/ {print $1}')
  for f in "$pin_dir"/prog_*; do
    [[ -e "$f" ]] || continue
    id=$(bpftool prog show pinned "$f" | awk -F: 'NR == 1 {print $1}')
    grep -qx "$id" <<<"$attached" && echo "$id"
  done
  return 0
}
