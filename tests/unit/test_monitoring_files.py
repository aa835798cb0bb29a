"""deploy/monitoring/: the alert rules, their promtool tests, the scrape config, the dashboard.

promtool checks the rules and runs their unit tests; every dashboard query goes through promtool
too (as recording rules), so a PromQL typo fails here, not on a Grafana screen. Every metric a
rule, a rule test or a panel names is one the code exports: documented in docs/operations.md,
"Metrics", one of the API's queue-health gauges, or Prometheus' own ``up``.

promtool is a hard requirement of this test (``apt-get install prometheus`` on Debian/Ubuntu;
CI installs it in .ci/run): a missing promtool fails, it does not skip. Debian's promtool is
built without Kubernetes discovery, so the example config is checked with its
``kubernetes_sd_configs`` swapped for ``static_configs`` (the relabel rules and rule files are
still checked), and the compose variant in its comments is checked on its own.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
ALERTS = MONITORING / "alerts.yml"
ALERT_TESTS = MONITORING / "alerts.test.yml"
PROMETHEUS = MONITORING / "prometheus.yml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
OPERATIONS = ROOT / "docs" / "operations.md"

# The API's queue-health gauges (api/queue_depth.py, queue_health), each of which the dashboard
# must show.
QUEUE_HEALTH_GAUGES = frozenset(
    {
        "vidjobs_queue_oldest_pending_age_seconds",
        "vidjobs_jobs_lease_expired",
        "vidjobs_webhook_deliveries_pending",
        "vidjobs_webhook_oldest_pending_age_seconds",
    }
)
SCRAPE_JOBS = frozenset({"vidjobs-api", "vidjobs-worker"})
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

_PROMQL_WORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool"}
    | {"and", "or", "unless", "offset", "inf", "nan", "atan2"}
)
_STRING = re.compile(r'"(?:\\.|[^"\\])*"' + r"|'(?:\\.|[^'\\])*'")
_GRAFANA_VARIABLE = re.compile(r"\$\{\w+\}|\$\w+")
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
# An identifier that is not part of a number or a longer name, and not a function call.
_NAME = re.compile(r"(?<![\w:.])([a-zA-Z_:][\w:]*)(?![\w:]|\s*\()")
_DOCUMENTED = re.compile(r"^\| `([a-z_:][a-z0-9_:]*)` \| (counter|gauge|histogram) \|", re.M)
_JOB_SELECTOR = re.compile(r'\bjob\s*=~?\s*"([^"]*)"')


def metric_names(promql: str) -> set[str]:
    """The metric names a PromQL expression (or a series selector) reads.

    Strings, Grafana variables, label matchers, ranges and grouping clauses are removed first;
    what is left that looks like a name and is neither a function nor a keyword is a metric.
    """
    text = _STRING.sub('""', promql)
    text = _GRAFANA_VARIABLE.sub("", text)
    text = _MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _GROUPING.sub("", text)
    return {m for m in _NAME.findall(text) if m.lower() not in _PROMQL_WORDS}


def _documented_metrics() -> set[str]:
    text = OPERATIONS.read_text(encoding="utf-8")
    section = text.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    names = set()
    for name, kind in _DOCUMENTED.findall(section):
        names.add(name)
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names


def _known_metrics() -> set[str]:
    return _documented_metrics() | {"up"}


def _alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _rule_tests() -> list[dict[str, Any]]:
    tests: list[dict[str, Any]] = yaml.safe_load(ALERT_TESTS.read_text(encoding="utf-8"))["tests"]
    return tests


def _dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return dashboard


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, rows and the panels inside collapsed rows included."""
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _dashboard_queries() -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable."""
    dashboard = _dashboard()
    for panel in _panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield f"panel {panel['id']} {panel['title']!r} {target['refId']}", target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            query = query["query"] if isinstance(query, dict) else query
            values = re.fullmatch(r"label_values\((.+),\s*\w+\)", query)
            yield f"variable {variable['name']}", values.group(1) if values else query


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not on PATH; it checks deploy/monitoring/. On Debian/Ubuntu: "
            "apt-get install -y --no-install-recommends prometheus (only /usr/bin/promtool is "
            "used); elsewhere take promtool from a Prometheus release tarball "
            "(https://prometheus.io/download/). .ci/run installs it in CI.",
            pytrace=False,
        )
    return path


def _run(promtool: str, *args: str, cwd: Path = ROOT) -> str:
    done = subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"promtool {' '.join(args)} failed:\n{output}"
    return output


def test_promtool_checks_the_alert_rules(promtool: str) -> None:
    output = _run(promtool, "check", "rules", str(ALERTS))
    assert f"SUCCESS: {len(_alert_rules())} rules found" in output


def test_promtool_rule_tests_pass(promtool: str) -> None:
    output = _run(promtool, "test", "rules", str(ALERT_TESTS))
    assert "SUCCESS" in output


def test_every_alert_has_a_firing_and_a_quiet_test() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in _rule_tests():
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    alerts = {rule["alert"] for rule in _alert_rules()}
    assert alerts - firing == set(), "alerts no test fires"
    assert alerts - quiet == set(), "alerts no test expects to stay quiet"
    assert (firing | quiet) - alerts == set(), "tests of alerts that do not exist"


def test_every_alert_says_how_bad_and_what_to_do() -> None:
    anchors = {
        re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", OPERATIONS.read_text(encoding="utf-8"), re.M)
    }
    rules = _alert_rules()
    assert len(rules) >= 7
    for rule in rules:
        name = rule["alert"]
        assert name.startswith("Vidjobs"), name
        assert re.fullmatch(r"\d+[smh]", str(rule.get("for", ""))), f"{name}: no for:"
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        notes = rule["annotations"]
        assert notes["summary"], name
        assert len(notes["description"]) > 80, name
        doc, _, anchor = notes["runbook"].partition("#")
        assert doc == "docs/operations.md", f"{name}: {notes['runbook']}"
        assert anchor in anchors, f"{name}: {notes['runbook']}"


def test_rules_and_their_tests_name_only_exported_metrics_and_scrape_jobs() -> None:
    known = _known_metrics()
    assert len(known) > 20, "the Metrics tables of docs/operations.md were not found"
    used: dict[str, set[str]] = {}
    for rule in _alert_rules():
        used[rule["alert"]] = metric_names(rule["expr"])
        assert set(_JOB_SELECTOR.findall(rule["expr"])) <= SCRAPE_JOBS, rule["alert"]
    for case in _rule_tests():
        for series in case.get("input_series", []):
            used[f"test {case['name']!r}"] = metric_names(series["series"])
            assert set(_JOB_SELECTOR.findall(series["series"])) <= SCRAPE_JOBS, case["name"]
    assert all(used.values()), "a metric name was not found in an expression"
    unknown = {where: names - known for where, names in used.items() if names - known}
    assert unknown == {}


def test_the_metric_name_parser() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (route, le) (rate(vidjobs_http_request_duration_seconds"
        '_bucket{status=~"5..", route="/a/{id}"}[$__rate_interval]))) > 1e3 and on() '
        "(sum(up{job='x'}) or vector(0)) == 0 unless ignoring(instance) foo:bar offset 5m"
    )
    assert metric_names(expr) == {"vidjobs_http_request_duration_seconds_bucket", "up", "foo:bar"}


def _config_with_static_targets(config: dict[str, Any]) -> dict[str, Any]:
    """The config with absolute rule-file paths and no Kubernetes discovery (see the docstring)."""
    config = dict(config)
    config["rule_files"] = [str(MONITORING / path) for path in config.get("rule_files", [])]
    jobs = []
    for original in config["scrape_configs"]:
        job = dict(original)
        if job.pop("kubernetes_sd_configs", None) is not None:
            job["static_configs"] = [{"targets": ["10.0.0.1:9100"]}]
        jobs.append(job)
    config["scrape_configs"] = jobs
    return config


def _compose_variant() -> dict[str, Any]:
    text = PROMETHEUS.read_text(encoding="utf-8")
    block = text.split("# compose-scrape-configs:begin\n", 1)[1]
    block = block.split("# compose-scrape-configs:end", 1)[0]
    lines = [line.removeprefix("#").removeprefix(" ") for line in block.splitlines()]
    variant: dict[str, Any] = yaml.safe_load("\n".join(lines))
    return variant


def test_promtool_checks_the_example_scrape_config(promtool: str, tmp_path: Path) -> None:
    config = yaml.safe_load(PROMETHEUS.read_text(encoding="utf-8"))
    assert {job["job_name"] for job in config["scrape_configs"]} == SCRAPE_JOBS
    assert [job["job_name"] for job in _compose_variant()["scrape_configs"]] == sorted(SCRAPE_JOBS)
    kubernetes = tmp_path / "prometheus.yml"
    kubernetes.write_text(yaml.safe_dump(_config_with_static_targets(config)), encoding="utf-8")
    output = _run(promtool, "check", "config", str(kubernetes))
    assert "SUCCESS: 1 rule files found" in output
    compose = tmp_path / "prometheus-compose.yml"
    compose_config = _config_with_static_targets({**config, **_compose_variant()})
    compose.write_text(yaml.safe_dump(compose_config), encoding="utf-8")
    _run(promtool, "check", "config", str(compose))


def test_the_worker_scrape_follows_the_worker_pod_annotations() -> None:
    (worker,) = [
        doc
        for doc in yaml.safe_load_all((ROOT / "deploy" / "k8s" / "worker.yaml").read_text())
        if doc and doc.get("kind") == "Deployment"
    ]
    template = worker["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    config = yaml.safe_load(PROMETHEUS.read_text(encoding="utf-8"))
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "vidjobs-worker"]
    kept = {
        tuple(rule["source_labels"]): rule["regex"]
        for rule in job["relabel_configs"]
        if rule.get("action") == "keep"
    }
    label = "__meta_kubernetes_pod_label_app_kubernetes_io_name"
    assert kept[(label,)] == template["metadata"]["labels"]["app.kubernetes.io/name"]
    assert kept[("__meta_kubernetes_pod_annotation_prometheus_io_scrape",)] == "true"


def test_the_dashboard_panels_are_complete() -> None:
    dashboard = _dashboard()
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["uid"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = list(_panels(dashboard["panels"]))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    cells: dict[tuple[int, int], str] = {}
    graphs = [panel for panel in panels if panel["type"] != "row"]
    assert len(graphs) >= 12
    for panel in graphs:
        where = f"panel {panel['id']} {panel.get('title')!r}"
        assert panel["title"], where
        assert panel["datasource"] == DATASOURCE, where
        assert panel["targets"], where
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), where
        for target in panel["targets"]:
            assert target["expr"].strip(), where
            assert target["datasource"] == DATASOURCE, where
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, where
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{where} overlaps {cells[(x, y)]}"
                cells[(x, y)] = where


def test_the_dashboard_names_only_exported_metrics() -> None:
    known = _known_metrics()
    used = {where: metric_names(expr) for where, expr in _dashboard_queries()}
    assert all(used.values()), "a metric name was not found in a query"
    unknown = {where: names - known for where, names in used.items() if names - known}
    assert unknown == {}
    assert set().union(*used.values()) >= QUEUE_HEALTH_GAUGES, "a queue gauge has no panel"
    selected = {job for _, expr in _dashboard_queries() for job in _JOB_SELECTOR.findall(expr)}
    assert selected == SCRAPE_JOBS


def test_promtool_parses_every_dashboard_query(promtool: str, tmp_path: Path) -> None:
    # Grafana fills its variables in before the query reaches Prometheus: do the same.
    fill = {"$__rate_interval": "5m", "$__interval": "1m", "$pipeline": ".*"}
    rules = []
    for i, (where, query) in enumerate(_dashboard_queries()):
        expr = query
        for variable, value in fill.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"{where}: an unknown variable in {query}"
        name = re.sub(r"\W+", "_", where).strip("_")  # names the panel in promtool's error
        rules.append({"record": f"dashboard:{name}_{i}", "expr": expr})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    _run(promtool, "check", "rules", str(path))
