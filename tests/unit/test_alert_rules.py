"""The alert rules: valid, unit-tested with promtool (each rule fires on its case and not on the case beside it),
reading only metrics that exist, and routed by a valid Alertmanager configuration."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from quorum.dashboards.catalogue import queryable_names, series_in
from quorum.devstack import REPO_ROOT

PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS_DIR / "alerts.yml"
RULE_TESTS = PROMETHEUS_DIR / "alerts_test.yml"
ALERTMANAGER = REPO_ROOT / "deploy" / "alertmanager" / "alertmanager.yml"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian's prometheus / prometheus-alertmanager packages; "
                    "`make system-deps` installs promtool)")
    return path


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120)


def _rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_the_rules_are_valid() -> None:
    done = _run(_tool("promtool"), "check", "rules", RULES)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_rule_unit_tests_pass() -> None:
    done = _run(_tool("promtool"), "test", "rules", RULE_TESTS)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_broken_expectation_fails_the_rule_tests(tmp_path: Path) -> None:
    """The rule tests can fail: with a smaller drawdown margin the PAPER book no longer alerts."""
    promtool = _tool("promtool")
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    (tmp_path / RULES.name).write_text(RULES.read_text().replace("expr: vector(0.2)", "expr: vector(0.1)"))
    done = _run(promtool, "test", "rules", tmp_path / RULE_TESTS.name)
    assert done.returncode != 0
    assert "QuorumDrawdownNearLimit" in done.stdout + done.stderr


def test_the_prometheus_config_is_valid_with_its_rule_files(tmp_path: Path) -> None:
    """prometheus.yml names the rules where compose mounts them; checked here against the repo's copy."""
    config = (PROMETHEUS_DIR / "prometheus.yml").read_text().replace("/etc/prometheus/alerts.yml", str(RULES))
    (tmp_path / "prometheus.yml").write_text(config)
    done = _run(_tool("promtool"), "check", "config", tmp_path / "prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_alertmanager_config_is_valid() -> None:
    done = _run(_tool("amtool"), "check-config", ALERTMANAGER)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_rule_reads_metrics_that_exist() -> None:
    known = queryable_names() | {rule["record"] for rule in _rules() if "record" in rule}
    missing = {(rule.get("alert") or rule["record"], name) for rule in _rules()
               for name in series_in(rule["expr"]) if name not in known}
    assert not missing, f"rules read series nothing exports: {sorted(missing)}"


def test_every_alert_has_a_severity_a_summary_and_a_unit_test() -> None:
    tested = {case["alertname"] for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
              for case in test.get("alert_rule_test", []) if case.get("exp_alerts")}
    alerts = [rule for rule in _rules() if "alert" in rule]
    assert {a["alert"] for a in alerts} >= {
        "QuorumMarketDataStale", "QuorumConsumerLagGrowing", "QuorumDeadLetters", "QuorumServiceDown",
        "QuorumDrawdownNearLimit", "QuorumDriftDetected", "QuorumRoutingDisconnectedWhileTrading"}
    for alert in alerts:
        assert alert["labels"]["severity"] in {"warning", "critical"}, alert["alert"]
        assert alert["annotations"].get("summary") and alert["annotations"].get("description"), alert["alert"]
        assert alert["alert"] in tested, f"{alert['alert']} has no test case where it fires"
