#!/usr/bin/env python3
"""Offline checks of the observability kit that promtool cannot make (run by deploy/validate.sh):

- grafana-dashboard.json: unique panel ids, every panel on the `${datasource}` variable, every query with a refId
  and an expression, panels within the 24-column grid; its PromQL is written, Grafana variables filled in, as
  recording rules to the file given (`--dashboard-rules FILE`) for `promtool check rules` to parse;
- podmonitor.yaml against deploy/kubernetes/agent-daemonset.yaml: its namespace, its selector matching the pod
  labels, its port a named container port, its path the one the pod's prometheus.io annotations give, its job
  label the job the alert rules select;
- every alert of alerts.yaml has a case in alerts.test.yaml where it fires and one where it stays quiet;
- every metric the alert rules and the dashboard read is in the metrics table of docs/agent.md (which
  scripts/check-metrics.sh holds against a live agent).

PyYAML comes with kubernetes-validate (scripts/setup.sh).
"""

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
KIT = ROOT / "deploy/observability"
JOB = "interceptor-ebpf-agent"
# What the dashboard's queries mean by each Grafana variable, for parsing only.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$instance": ".*"}
METRIC = re.compile(r"\b((?:interceptor_ebpf|process)_[a-z0-9_]+)")

problems = []


def problem(text):
    problems.append(text)


def dashboard_exprs(path):
    dashboard = json.loads(path.read_text())
    for key in ("uid", "title", "schemaVersion", "panels", "templating"):
        if key not in dashboard:
            problem(f"{path.name}: no {key}")
    variables = {v.get("name") for v in dashboard.get("templating", {}).get("list", [])}
    if not {"datasource", "instance"} <= variables:
        problem(f"{path.name}: the datasource and instance variables are missing ({sorted(variables)})")
    exprs = []
    ids = set()
    for panel in dashboard.get("panels", []):
        pid = panel.get("id")
        if pid in ids:
            problem(f"{path.name}: panel id {pid} twice")
        ids.add(pid)
        grid = panel.get("gridPos", {})
        if not all(isinstance(grid.get(k), int) for k in "hwxy") or grid["x"] + grid["w"] > 24:
            problem(f"{path.name}: panel {pid} has no valid gridPos within 24 columns: {grid}")
        if panel.get("type") == "row":
            continue
        if not panel.get("title") or not panel.get("description"):
            problem(f"{path.name}: panel {pid} needs a title and a description")
        if panel.get("datasource", {}).get("uid") != "${datasource}":
            problem(f"{path.name}: panel {pid} does not use the ${{datasource}} variable")
        targets = panel.get("targets", [])
        if not targets:
            problem(f"{path.name}: panel {pid} ({panel.get('title')}) has no query")
        refs = [t.get("refId") for t in targets]
        if len(set(refs)) != len(refs) or not all(refs):
            problem(f"{path.name}: panel {pid} needs a unique refId per query: {refs}")
        for t in targets:
            expr = t.get("expr", "")
            if not expr.strip():
                problem(f"{path.name}: panel {pid} query {t.get('refId')} has no expression")
                continue
            if t.get("datasource", {}).get("uid") != "${datasource}":
                problem(f"{path.name}: panel {pid} query {t.get('refId')} does not use ${{datasource}}")
            exprs.append((f"panel {pid} ({panel.get('title')}) query {t.get('refId')}", expr, f"panel_{pid}_{t.get('refId')}"))
    return exprs


def filled(expr):
    for variable, value in sorted(GRAFANA_VARIABLES.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(variable, value)
    if "$" in expr:
        problem(f"grafana-dashboard.json: an unknown variable in {expr}")
    return expr


def check_pod_monitor():
    monitor = yaml.safe_load((KIT / "podmonitor.yaml").read_text())
    docs = list(yaml.safe_load_all((ROOT / "deploy/kubernetes/agent-daemonset.yaml").read_text()))
    daemonset = next(d for d in docs if d.get("kind") == "DaemonSet")
    template = daemonset["spec"]["template"]
    pod_labels = template["metadata"].get("labels", {})
    annotations = template["metadata"].get("annotations", {})
    ports = {p.get("name"): p.get("containerPort") for c in template["spec"]["containers"] for p in c.get("ports", [])}
    where = "podmonitor.yaml"
    if (monitor.get("apiVersion"), monitor.get("kind")) != ("monitoring.coreos.com/v1", "PodMonitor"):
        problem(f"{where}: not a monitoring.coreos.com/v1 PodMonitor")
    spec = monitor.get("spec", {})
    known = {"jobLabel", "selector", "namespaceSelector", "podMetricsEndpoints", "podTargetLabels", "sampleLimit"}
    if set(spec) - known:
        problem(f"{where}: unexpected spec fields {sorted(set(spec) - known)}")
    namespace = daemonset["metadata"]["namespace"]
    if monitor.get("metadata", {}).get("namespace") != namespace:
        problem(f"{where}: not in the agent's namespace {namespace}")
    if spec.get("namespaceSelector", {}).get("matchNames") != [namespace]:
        problem(f"{where}: namespaceSelector does not select {namespace}")
    selector = spec.get("selector", {}).get("matchLabels", {})
    if not selector or any(pod_labels.get(k) != v for k, v in selector.items()):
        problem(f"{where}: selector {selector} does not match the agent pod's labels {pod_labels}")
    if pod_labels.get(spec.get("jobLabel")) != JOB:
        problem(f"{where}: jobLabel {spec.get('jobLabel')} does not give job={JOB} (the alert rules select it)")
    endpoints = spec.get("podMetricsEndpoints", [])
    if not endpoints:
        problem(f"{where}: no podMetricsEndpoints")
    endpoint_keys = {"port", "path", "scheme", "interval", "scrapeTimeout", "relabelings", "honorLabels"}
    for e in endpoints:
        if set(e) - endpoint_keys:
            problem(f"{where}: unexpected endpoint fields {sorted(set(e) - endpoint_keys)}")
        if e.get("port") not in ports:
            problem(f"{where}: port {e.get('port')} is not a named port of the agent container ({sorted(ports)})")
        elif str(ports[e["port"]]) != annotations.get("prometheus.io/port"):
            problem(f"agent-daemonset.yaml: prometheus.io/port {annotations.get('prometheus.io/port')} is not the "
                    f"metrics port {ports[e['port']]}")
        if e.get("path") != annotations.get("prometheus.io/path"):
            problem(f"{where}: path {e.get('path')} is not the pod's prometheus.io/path {annotations.get('prometheus.io/path')}")
    if annotations.get("prometheus.io/scrape") != "true":
        problem("agent-daemonset.yaml: the pod template lacks prometheus.io/scrape: \"true\"")
    env = {v["name"]: v.get("value") for c in template["spec"]["containers"] for v in c.get("env", [])}
    listen = env.get("BROKER_EBPF_METRICS_LISTEN", "")
    if not listen.endswith(f":{annotations.get('prometheus.io/port')}"):
        problem(f"agent-daemonset.yaml: BROKER_EBPF_METRICS_LISTEN={listen} is not the annotated port")


def documented_metrics():
    text = (ROOT / "docs/agent.md").read_text()
    section = text.split("\n## Metrics\n", 1)[-1].split("\n## ", 1)[0]
    names = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`((?:interceptor_ebpf|process)_[a-z0-9_]+)`", line.split("|")[1]))
    return names


def check_alert_tests(alerts):
    tests = yaml.safe_load((KIT / "alerts.test.yaml").read_text())
    firing, quiet = set(), set()
    for test in tests.get("tests", []):
        for case in test.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else quiet).add(case.get("alertname"))
    names = {r["alert"] for g in alerts["groups"] for r in g["rules"] if "alert" in r}
    for name in sorted(names - firing):
        problem(f"alerts.test.yaml: no case where {name} fires")
    for name in sorted(names - quiet):
        problem(f"alerts.test.yaml: no case where {name} stays quiet")
    for name in sorted((firing | quiet) - names):
        problem(f"alerts.test.yaml: {name} is not an alert of alerts.yaml")


def base(name):
    return re.sub(r"_(bucket|sum|count)$", "", name)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dashboard-rules", required=True, type=Path,
                        help="where to write the dashboard's queries as recording rules, for promtool check rules")
    args = parser.parse_args()

    exprs = dashboard_exprs(KIT / "grafana-dashboard.json")
    # Named after the panel and query, so that promtool's complaint points at them.
    rules = [{"record": f"dashboard:{name}", "expr": filled(expr)} for _, expr, name in exprs]
    args.dashboard_rules.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))

    check_pod_monitor()

    documented = documented_metrics()
    alerts = yaml.safe_load((KIT / "alerts.yaml").read_text())
    check_alert_tests(alerts)
    used = {(f"alerts.yaml {r['alert']}", m) for g in alerts["groups"] for r in g["rules"]
            for m in METRIC.findall(r["expr"])}
    used |= {(where, m) for where, expr, _ in exprs for m in METRIC.findall(expr)}
    for where, metric in sorted(used):
        if metric not in documented and base(metric) not in documented:
            problem(f"{where}: {metric} is not in the metrics table of docs/agent.md")

    if problems:
        for p in problems:
            print(f"deploy/observability/lint: {p}", file=sys.stderr)
        return 1
    print(f"deploy/observability/lint: dashboard ({len(exprs)} queries), PodMonitor and DaemonSet agree; "
          f"{len({m for _, m in used})} metrics used, all documented")
    return 0


if __name__ == "__main__":
    sys.exit(main())
