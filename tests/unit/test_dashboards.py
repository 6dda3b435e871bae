"""The dashboards as code: the committed JSON is what the code generates, every panel queries something real
(metrics that exist, SQL that runs on the schema, datasources that are provisioned, variables that are
defined and used), and the query list and its variable substitution hold for the proof against a live stack."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from quorum import dashboards
from quorum.dashboards import __main__ as cli
from quorum.dashboards.catalogue import DOC, METRIC_MODULES, metrics, queryable_names, render_doc, series_in
from quorum.dashboards.native import grafana_provisioning, prometheus_config
from quorum.dashboards.panels import AUDIT_MARKS, PROMETHEUS, Sql, graph, prom
from quorum.devstack import DEFAULT_PORTS, REPO_ROOT, SERVICES

PROVISIONING = REPO_ROOT / "deploy" / "grafana" / "provisioning"
START = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
END = START + timedelta(hours=1)


def _docs() -> dict[str, dict[str, Any]]:
    return {name: json.loads(text) for name, text in dashboards.render().items()}


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _datasource_refs(node: object) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if isinstance(node.get("datasource"), dict):
            yield node["datasource"]
        for value in node.values():
            yield from _datasource_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _datasource_refs(value)


# --- generated == committed -----------------------------------------------------------------------------------------
def test_the_committed_dashboards_and_doc_are_what_the_code_generates() -> None:
    differing = cli.sync(cli.OUT, DOC, check=True)
    assert not differing, "\n".join(differing) + f"\nrun `{cli.COMMAND}` and commit the result"


def test_check_names_a_changed_a_missing_and_a_stale_file_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, doc = tmp_path / "dashboards", tmp_path / "observability.md"
    out.mkdir()
    doc.write_text(DOC.read_text())
    assert cli.main(["--out", str(out), "--doc", str(doc)]) == 0
    (out / "quorum-trading.json").write_text("{}\n")
    (out / "quorum-pipeline.json").unlink()
    (out / "quorum-overview.json").write_text("{}\n")

    assert cli.main(["--check", "--out", str(out), "--doc", str(doc)]) == 1

    err = capsys.readouterr().err
    assert "quorum-trading.json differs from what the code generates" in err
    assert "quorum-pipeline.json is missing" in err
    assert "quorum-overview.json is not made by any dashboard" in err
    assert (out / "quorum-trading.json").read_text() == "{}\n"


def test_writing_restores_every_file_and_removes_stale_ones(tmp_path: Path) -> None:
    out, doc = tmp_path / "dashboards", tmp_path / "observability.md"
    out.mkdir()
    doc.write_text(DOC.read_text().replace("| `quorum_orders_total`", "| `stale_metric`"))
    (out / "old.json").write_text("{}")

    assert cli.main(["--out", str(out), "--doc", str(doc)]) == 0

    assert sorted(p.name for p in out.iterdir()) == sorted(dashboards.render())
    assert cli.sync(out, doc, check=True) == []
    assert "stale_metric" not in doc.read_text()


def test_the_output_is_stable_sorted_json() -> None:
    first, second = dashboards.render(), dashboards.render()
    assert first == second
    for text in first.values():
        assert text == json.dumps(json.loads(text), sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def test_a_doc_without_a_generated_section_is_an_error() -> None:
    with pytest.raises(ValueError, match="'metrics'"):
        render_doc(DOC.read_text().replace("<!-- generated:metrics:start -->", ""))


# --- what the dashboards hold ----------------------------------------------------------------------------------------
def test_there_are_the_four_dashboards_with_unique_uids() -> None:
    docs = _docs()
    assert {d["title"] for d in docs.values()} == {
        "Quorum — trading desk", "Quorum — council & models", "Quorum — market data", "Quorum — pipeline"}
    assert len({d["uid"] for d in docs.values()}) == 4
    assert {f"{d['uid']}.json" for d in docs.values()} == set(docs)


def test_every_panel_has_a_title_and_at_least_one_query() -> None:
    for name, doc in _docs().items():
        ids = []
        for panel in _panels(doc["panels"]):
            ids.append(panel["id"])
            assert panel.get("title"), f"{name}: panel {panel['id']} has no title"
            if panel["type"] == "row":
                continue
            targets = panel.get("targets", [])
            assert targets, f"{name}: panel {panel['title']!r} has no query"
            for t in targets:
                assert (t.get("expr") or t.get("rawSql") or "").strip(), f"{name}: {panel['title']!r} empty query"
        assert len(ids) == len(set(ids)), f"{name}: panel ids repeat"


def test_every_datasource_ref_is_a_provisioned_uid() -> None:
    provisioned = yaml.safe_load((PROVISIONING / "datasources" / "datasources.yml").read_text())["datasources"]
    known = {(d["uid"], d["type"]) for d in provisioned} | {("-- Grafana --", "grafana")}
    for name, doc in _docs().items():
        for ref in _datasource_refs(doc):
            assert (ref.get("uid"), ref.get("type")) in known, f"{name}: datasource {ref} is not provisioned"


def test_every_variable_is_used_and_every_used_variable_is_defined() -> None:
    for name, doc in _docs().items():
        defined = [v["name"] for v in doc["templating"]["list"]]
        texts = [q.text for q in dashboards.queries() if q.dashboard == doc["title"]]
        texts += [p.get("title", "") for p in _panels(doc["panels"])]
        for variable in defined:
            assert any(re.search(rf"\$\{{?{variable}\b", t) for t in texts), f"{name}: ${variable} is never used"
        for q in dashboards.queries():
            if q.dashboard == doc["title"]:
                q.evaluable(start=START, end=END)  # raises on a $name that is not defined


def test_every_metric_a_panel_reads_is_exported_by_quorum_or_an_exporter() -> None:
    known = queryable_names()
    missing = {(q.dashboard, q.panel, name) for q in dashboards.queries() if q.kind == "promql"
               for name in series_in(q.text) if name not in known}
    assert not missing, f"panels query series nothing exports: {sorted(missing)}"


def test_exporter_panels_say_which_exporter_they_need() -> None:
    by_panel = {q.panel: q.requires for q in dashboards.queries()}
    assert by_panel["Connections"] in {"nats-exporter", "postgres-exporter"}
    assert by_panel["JetStream consumers: pending"] == "nats-exporter"
    assert by_panel["Database size"] == "postgres-exporter"
    assert by_panel["Equity"] is None


def test_every_promql_expression_parses(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian's prometheus package: `make system-deps`)")
    exprs = [q.evaluable(start=START, end=END) for q in dashboards.queries() if q.kind == "promql"]
    rules = {"groups": [{"name": "dashboards", "rules": [
        {"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump(rules))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_audit_annotations_name_actions_the_services_write() -> None:
    sources = "\n".join(p.read_text() for d in ("libs/quorum", "services") for p in (REPO_ROOT / d).rglob("*.py")
                        if "dashboards" not in p.parts)
    for marks in AUDIT_MARKS:
        for action in marks.actions:
            assert f'"{action}"' in sources, f"annotation {marks.name!r}: no service audits the action {action!r}"


@pytest.mark.integration
async def test_every_sql_query_runs_against_the_migrated_schema(database_url: str) -> None:
    from quorum.db.engine import create_engine

    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            for q in dashboards.queries():
                if q.kind == "sql":
                    await conn.exec_driver_sql(q.evaluable(start=START, end=END, values={"symbol": "BTC/USDT"}))
    finally:
        await engine.dispose()


# --- the query list and its substitution -----------------------------------------------------------------------------
def test_queries_list_every_panel_and_annotation_query_with_where_it_is() -> None:
    found = dashboards.queries()
    panels = sum(len(p.get("targets", [])) for d in _docs().values() for p in _panels(d["panels"]))
    annotations = sum(len(d["annotations"]["list"]) - 1 for d in _docs().values())
    assert len(found) == panels + annotations
    assert {q.kind for q in found} == {"promql", "sql"}
    trading = [q for q in found if q.dashboard == "Quorum — trading desk"]
    assert any(q.panel == "Drawdown against its limit" and "quorum_risk_drawdown_limit_ratio" in q.text
               for q in trading)
    assert any(q.panel == "annotation: Halts and kill switches" and q.kind == "sql" for q in trading)


def test_all_stands_for_any_value_and_chosen_values_are_escaped_regexes() -> None:
    text = 'sum(quorum_risk_exposure_quote{symbol=~"$symbol"}) by (symbol)'

    def sub(**values: Any) -> str:
        return dashboards.substitute(text, "promql", variables=("symbol",), start=START, end=END, values=values)

    assert sub() == 'sum(quorum_risk_exposure_quote{symbol=~".*"}) by (symbol)'
    assert sub(symbol="BTC/USDT") == 'sum(quorum_risk_exposure_quote{symbol=~"BTC/USDT"}) by (symbol)'
    assert sub(symbol=["BTC/USDT", "ETH.X"]) == (
        'sum(quorum_risk_exposure_quote{symbol=~"(BTC/USDT|ETH\\\\.X)"}) by (symbol)')


def test_macros_become_the_range_and_intervals() -> None:
    sql = "SELECT 1 FROM fills WHERE $__timeFilter(ts) AND symbol ~ '^(${symbol:regex})$' AND ts < $__timeTo()"
    assert dashboards.substitute(sql, "sql", variables=("symbol",), start=START, end=END,
                                 values={"symbol": ["A.B", "C"]}) == (
        "SELECT 1 FROM fills WHERE ts BETWEEN '2024-05-01T12:00:00Z' AND '2024-05-01T13:00:00Z' "
        "AND symbol ~ '^((A\\.B|C))$' AND ts < '2024-05-01T13:00:00Z'")
    promql = "rate(x[$__rate_interval]) + increase(y[$__interval]) + z[$__range]"
    assert dashboards.substitute(promql, "promql", variables=(), start=START, end=END, rate_interval="2m") == (
        "rate(x[2m]) + increase(y[5s]) + z[3600s]")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"text": "up{job=~\"$job\"}"}, r"\$job, which is neither a variable"),
    ({"values": {"symbol": []}}, "at least one value"),
    ({"start": datetime(2024, 5, 1)}, "start must be timezone-aware"),
    ({"end": START}, "must be after start"),
    ({"rate_interval": "a minute"}, "rate_interval must be a Prometheus duration"),
    ({"kind": "graphql"}, "kind must be 'promql' or 'sql'"),
])
def test_bad_substitution_input_is_refused_with_what_was_wrong(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"text": 'up{job=~"$symbol"}', "kind": "promql", "variables": ("symbol",),
                            "start": START, "end": END} | kwargs
    with pytest.raises(ValueError, match=message):
        dashboards.substitute(args.pop("text"), args.pop("kind"), **args)


def test_a_panel_refuses_no_query_and_mixed_datasources() -> None:
    with pytest.raises(ValueError, match="'Empty' has no query"):
        graph("Empty")
    with pytest.raises(ValueError, match="mixes PromQL and SQL"):
        graph("Mixed", prom("up"), Sql("SELECT 1"))
    with pytest.raises(ValueError, match="needs an expression"):
        prom(" ")


# --- the catalogue and the native configurations ------------------------------------------------------------------
METRIC_TYPES = {"Counter", "Gauge", "Histogram", "Info", "Summary", "Enum"}


def _defines_a_metric(path: Path) -> bool:
    """A module-level ``NAME = Counter("quorum_...", ...)`` (metrics are created at import)."""
    for node in ast.parse(path.read_text()).body:
        value = getattr(node, "value", None)
        if (isinstance(value, ast.Call) and getattr(value.func, "id", "") in METRIC_TYPES and value.args
                and isinstance(value.args[0], ast.Constant) and str(value.args[0].value).startswith("quorum_")):
            return True
    return False


def test_the_catalogue_reads_every_module_that_defines_a_metric() -> None:
    defining = {".".join(path.relative_to(base).with_suffix("").parts)
                for base, root in ((REPO_ROOT / "libs", "quorum"), (REPO_ROOT, "services"))
                for path in (base / root).rglob("*.py") if _defines_a_metric(path)}

    assert "quorum.telemetry" in defining
    assert defining <= set(METRIC_MODULES), f"the catalogue misses modules: {sorted(defining - set(METRIC_MODULES))}"
    names = [m.name for m in metrics()]
    assert {"quorum_orders_total", "quorum_model_info", "quorum_handler_seconds"} <= set(names)


def test_the_native_prometheus_config_scrapes_every_service_as_its_job() -> None:
    config = json.loads(prometheus_config(DEFAULT_PORTS))
    jobs = {c["job_name"]: c["static_configs"][0]["targets"][0] for c in config["scrape_configs"]}
    assert jobs == {name: f"127.0.0.1:{DEFAULT_PORTS[name]}" for name in SERVICES}
    assert config["rule_files"] == [str(REPO_ROOT / "deploy" / "prometheus" / "alerts.yml")]
    with pytest.raises(ValueError, match="no port for gateway"):
        prometheus_config({k: v for k, v in DEFAULT_PORTS.items() if k != "gateway"})


def test_native_grafana_provisioning_keeps_the_uids_and_reads_as_the_service_role() -> None:
    files = grafana_provisioning(prometheus_url="http://127.0.0.1:9090", password="pw",
                                 database_url="postgresql+asyncpg://postgres@127.0.0.1:55432/quorum")
    sources = {d["uid"]: d for d in json.loads(files["datasources/quorum.yml"])["datasources"]}
    assert sources[PROMETHEUS.uid]["url"] == "http://127.0.0.1:9090"
    assert sources["quorum-pg"]["url"] == "127.0.0.1:55432"
    assert sources["quorum-pg"]["user"] == "quorum_service"
    provider = json.loads(files["dashboards/quorum.yml"])["providers"][0]
    assert provider["options"]["path"] == str(REPO_ROOT / "dashboards")
    with pytest.raises(ValueError, match="needs a host and a database"):
        grafana_provisioning(prometheus_url="x", password="pw", database_url="postgresql://")
