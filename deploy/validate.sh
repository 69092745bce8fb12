#!/usr/bin/env bash
# Validates the deployment files without a cluster or an init system (part of scripts/test-all.sh):
#   - every Kubernetes manifest against the pinned Kubernetes version's schemas, strictly (unknown fields
#     fail), with kubernetes-validate (PyPI; its schemas are bundled, no network); every file of
#     deploy/kubernetes/ is in the kustomization or under examples/, and every kustomization entry exists;
#   - the systemd unit with `systemd-analyze verify` (any warning fails: verify itself exits 0 on
#     unparseable directives);
#   - the observability kit (deploy/observability): the alert rules with `promtool check rules` and their unit
#     tests with `promtool test rules`; the dashboard's queries parsed by promtool; the dashboard, the PodMonitor
#     and the DaemonSet's scrape annotations checked against each other and the documented metrics (lint.py);
#   - docker/compose.yaml with `docker-compose config` (or `docker compose config`) when one is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

kubernetes_version="${KUBERNETES_VERSION:-1.33.0}"
failed=0
fail() { echo "deploy/validate: $*" >&2; failed=1; }

if ! command -v kubernetes-validate >/dev/null 2>&1; then
  echo "deploy/validate: kubernetes-validate is missing (scripts/setup.sh installs it)" >&2
  exit 1
fi

k8s=deploy/kubernetes
mapfile -t listed < <(awk '/^resources:/ {on=1; next} on && /^  - / {print $2; next} on && !/^  / {on=0}' "$k8s/kustomization.yaml")
((${#listed[@]})) || fail "no resources in $k8s/kustomization.yaml"
for f in "${listed[@]}"; do
  [[ -f "$k8s/$f" ]] || fail "$k8s/kustomization.yaml lists $f, which does not exist"
done
for f in "$k8s"/*.yaml; do
  name=$(basename "$f")
  [[ "$name" == kustomization.yaml ]] && continue
  [[ " ${listed[*]} " == *" $name "* ]] || fail "$f is not in the kustomization (move it to examples/ or list it)"
done
manifests=()
for f in "${listed[@]}"; do manifests+=("$k8s/$f"); done
manifests+=("$k8s"/examples/*.yaml)
if ! kubernetes-validate --kubernetes-version "$kubernetes_version" --strict --quiet "${manifests[@]}"; then
  fail "Kubernetes manifests do not validate against $kubernetes_version"
else
  echo "deploy/validate: ${#manifests[@]} manifests valid for Kubernetes $kubernetes_version (strict)"
fi

unit=deploy/systemd/interceptor-ebpf-agent.service
if command -v systemd-analyze >/dev/null 2>&1; then
  # verify wants ExecStart's binary to exist: point it at the one cargo built, else at a stand-in binary.
  binary=/bin/true
  for built in target/*/release/interceptor-ebpf target/release/interceptor-ebpf; do
    [[ -x "$built" ]] && binary="$PWD/$built" && break
  done
  sed "s|^ExecStart=/usr/local/bin/interceptor-ebpf|ExecStart=$binary|" "$unit" >"$tmp/$(basename "$unit")"
  out=$(systemd-analyze verify "$tmp/$(basename "$unit")" 2>&1) || fail "systemd-analyze verify failed: $out"
  if [[ -n "$out" ]]; then
    fail "systemd-analyze verify warns about $unit: $out"
  else
    echo "deploy/validate: $unit verified (ExecStart checked against $binary)"
  fi
else
  fail "systemd-analyze is missing (Debian package systemd)"
fi
# Documentation= points at files the documented install steps put in place: each is a file of docs/ that the
# unit's header and docs/deployment.md install into /usr/share/doc/interceptor-ebpf.
doc_dir=/usr/share/doc/interceptor-ebpf
mapfile -t doc_uris < <(sed -n 's/^Documentation=//p' "$unit" | tr ' ' '\n' | sed '/^$/d')
((${#doc_uris[@]})) || fail "$unit has no Documentation="
for uri in "${doc_uris[@]}"; do
  doc="docs/${uri#"file://$doc_dir/"}"
  if [[ "$uri" != "file://$doc_dir/"* || ! -f "$doc" ]]; then
    fail "$unit: Documentation=$uri is not a file of docs/ installed into $doc_dir"
    continue
  fi
  for where in "$unit" docs/deployment.md; do
    grep -Eq "install .*-t $doc_dir( .*)? $doc( |\$)" "$where" || fail "$where does not install $doc into $doc_dir"
  done
done

obs=deploy/observability
if command -v promtool >/dev/null 2>&1; then
  promtool check rules "$obs/alerts.yaml" >"$tmp/promtool.out" 2>&1 || fail "promtool check rules $obs/alerts.yaml: $(cat "$tmp/promtool.out")"
  promtool test rules "$obs/alerts.test.yaml" >"$tmp/promtool.out" 2>&1 || fail "promtool test rules $obs/alerts.test.yaml: $(cat "$tmp/promtool.out")"
  if python3 "$obs/lint.py" --dashboard-rules "$tmp/dashboard-rules.yaml"; then
    promtool check rules "$tmp/dashboard-rules.yaml" >"$tmp/promtool.out" 2>&1 ||
      fail "the queries of $obs/grafana-dashboard.json do not parse: $(cat "$tmp/promtool.out")"
  else
    fail "$obs/lint.py found problems"
  fi
  echo "deploy/validate: $obs: alert rules and their unit tests pass (promtool $(promtool --version 2>&1 | awk 'NR == 1 {print $3}')), dashboard queries parse"
else
  fail "promtool is missing (scripts/setup.sh installs it)"
fi

compose=()
if command -v docker-compose >/dev/null 2>&1; then
  compose=(docker-compose)
elif docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
fi
if ((${#compose[@]})); then
  for profile in "" example; do
    args=(-f docker/compose.yaml)
    [[ -n "$profile" ]] && args+=(--profile "$profile")
    "${compose[@]}" "${args[@]}" config -q || fail "docker/compose.yaml does not validate (${compose[*]} config${profile:+ --profile $profile})"
  done
  echo "deploy/validate: docker/compose.yaml valid (${compose[*]})"
else
  echo "deploy/validate: docker/compose.yaml not checked: neither docker-compose nor the compose plugin is installed"
fi
exit "$failed"
