"""docker-compose.yml checked without a Docker engine (none exists on these machines): every Quorum command is an
installed entry point, every environment variable is a setting the service reads, healthchecks probe /readyz,
Prometheus scrapes what compose runs where it listens, Grafana's provisioned paths and dashboard files exist,
and images are pinned.

Each check is a function from documents to a list of problems; the tests below run it on the real files (no
problem) and on a copy broken in one place (that problem, named)."""

from __future__ import annotations

import argparse
import copy
import importlib
import inspect
import pkgutil
import re
import shlex
import tomllib
from collections.abc import Callable, Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings
from quorum import dashboards
from quorum.devstack import REPO_ROOT
from quorum.learning.settings import RegistrySettings
from quorum.runtime.settings import ServiceSettings, StackSecrets, env_name

Doc = dict[str, Any]

COMPOSE = REPO_ROOT / "docker-compose.yml"
PROMETHEUS = REPO_ROOT / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA_PROVISIONING = "/etc/grafana/provisioning"
MUST_HAVE_HEALTHCHECKS = ("prometheus", "grafana")

# `quorum <subcommand>` jobs read DATABASE_URL / NATS_URL (the shared ServiceSettings names) and these.
CLI_SETTINGS: Mapping[str, tuple[type[BaseSettings], ...]] = {
    "migrate": (ServiceSettings, StackSecrets),
    "provision": (ServiceSettings,),
    "bootstrap-model": (ServiceSettings, RegistrySettings),
}


def _load(path: Path) -> Doc:
    return yaml.safe_load(path.read_text())


@cache
def _compose() -> Doc:
    return _load(COMPOSE)


@cache
def _prometheus() -> Doc:
    return _load(PROMETHEUS)


@cache
def _scripts() -> dict[str, str]:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]


@cache
def _subcommands() -> frozenset[str]:
    from quorum.cli import build_parser

    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return frozenset(sub.choices)


_INTERPOLATION = re.compile(r"\$\$|\$\{(\w+)(?::?[-?]([^}]*))?\}")


def interpolate(value: object) -> str:
    """A compose value with ``${VAR:-default}`` at its default (as with nothing set) and ``$$`` as ``$``."""
    return _INTERPOLATION.sub(lambda m: "$" if m.group(0) == "$$" else (m.group(2) or ""), str(value))


def _command(svc: Doc) -> list[str]:
    cmd = svc.get("command") or []
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def _environment(svc: Doc) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): interpolate(v) for k, v in env.items()}


def quorum_services(compose: Doc) -> dict[str, Doc]:
    """The services built from this repository (the Quorum image): app services and one-off jobs."""
    return {name: svc for name, svc in compose["services"].items()
            if isinstance(svc.get("build"), dict) and svc["build"].get("context") == "."}


def _long_running(compose: Doc) -> dict[str, Doc]:
    return {name: svc for name, svc in quorum_services(compose).items() if svc.get("restart") != "no"}


# --- settings ------------------------------------------------------------------------------------------------------
def env_names(cls: type[BaseSettings]) -> set[str]:
    """Every environment variable a settings class reads (aliases, else prefix + field)."""
    names: set[str] = set()
    for field, info in cls.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {c for c in alias.choices if isinstance(c, str)}
        else:
            names.add(env_name(cls, field))
    return {n.upper() for n in names}


def _entry_settings(script: str) -> type[ServiceSettings]:
    module_name, attr = _scripts()[script].split(":")
    main = getattr(importlib.import_module(module_name), attr)
    settings_cls = inspect.getclosurevars(main).nonlocals.get("settings_cls")
    if settings_cls is None:
        raise LookupError(f"{script}: {module_name}:{attr} is not built by quorum.runtime.service.main_for")
    return settings_cls


def _package_settings(package: str) -> set[type[BaseSettings]]:
    """Settings classes the service's modules use besides its own (e.g. the model registry's)."""
    pkg = importlib.import_module(package)
    found: set[type[BaseSettings]] = set()
    for info in pkgutil.walk_packages(pkg.__path__, f"{package}."):
        if info.name.endswith(".__main__"):  # importing it would run the service
            continue
        for value in vars(importlib.import_module(info.name)).values():
            if inspect.isclass(value) and issubclass(value, BaseSettings) and value is not BaseSettings:
                found.add(value)
    return found


def settings_for(command: list[str]) -> tuple[type[BaseSettings], ...]:
    """The settings classes a Quorum command reads its environment through."""
    if command[0] == "quorum":
        return CLI_SETTINGS[command[1]]
    own = _entry_settings(command[0])
    others = _package_settings(own.__module__.rsplit(".", 1)[0]) - set(own.__mro__)
    return (own, *sorted(others, key=lambda c: c.__name__))


def http_port(compose: Doc, name: str) -> int:
    """The port a Quorum app service serves HTTP on: its settings' ``http_port`` as compose sets it."""
    svc = compose["services"][name]
    cls = _entry_settings(_command(svc)[0])
    value = _environment(svc).get(env_name(cls, "http_port"))
    return int(value) if value is not None else int(cls.model_fields["http_port"].default)


def listening_ports(compose: Doc, name: str) -> set[int]:
    svc = compose["services"][name]
    if name in _long_running(compose):
        return {http_port(compose, name)}
    ports = {int(str(p).split("/")[0]) for p in svc.get("expose", [])}
    for mapping in svc.get("ports", []):
        ports.add(int(str(mapping).split("/")[0].rsplit(":", 1)[-1]))
    return ports


# --- the checks ------------------------------------------------------------------------------------------------------
def entry_point_problems(compose: Doc, scripts: Mapping[str, str], subcommands: Iterable[str]) -> list[str]:
    problems = []
    for name, svc in quorum_services(compose).items():
        cmd = _command(svc)
        if not cmd:
            problems.append(f"{name}: no command")
        elif cmd[0] not in scripts:
            problems.append(f"{name}: command {cmd[0]!r} is not an installed entry point "
                            f"({', '.join(sorted(scripts))})")
        elif cmd[0] == "quorum" and (len(cmd) < 2 or cmd[1] not in subcommands):
            problems.append(f"{name}: `quorum {' '.join(cmd[1:2])}` is not a quorum subcommand")
        else:
            module_name, attr = scripts[cmd[0]].split(":")
            if not callable(getattr(importlib.import_module(module_name), attr, None)):
                problems.append(f"{name}: entry point {scripts[cmd[0]]} does not exist")
    return problems


def environment_problems(compose: Doc, settings: Callable[[list[str]], tuple[type[BaseSettings], ...]]
                         ) -> list[str]:
    problems = []
    for name, svc in quorum_services(compose).items():
        classes = settings(_command(svc))
        allowed = set().union(*(env_names(c) for c in classes))
        for var in _environment(svc):
            if var.upper() not in allowed:
                problems.append(f"{name}: {var} is not a field of {' / '.join(c.__name__ for c in classes)}")
    return problems


def healthcheck_problems(compose: Doc) -> list[str]:
    problems = []
    for name, svc in _long_running(compose).items():
        test = " ".join(str(t) for t in (svc.get("healthcheck") or {}).get("test", []))
        if not test:
            problems.append(f"{name}: no healthcheck")
        elif "/healthz" in test:
            problems.append(f"{name}: the healthcheck probes /healthz (alive) instead of /readyz (ready)")
        elif f":{http_port(compose, name)}/readyz" not in test:
            problems.append(f"{name}: the healthcheck does not probe /readyz on port {http_port(compose, name)}")
    for name in MUST_HAVE_HEALTHCHECKS:
        if not (compose["services"].get(name) or {}).get("healthcheck"):
            problems.append(f"{name}: no healthcheck")
    return problems


def _target_problem(compose: Doc, what: str, target: str) -> str | None:
    host, _, port = target.rpartition(":")
    if host not in compose["services"]:
        return f"{what}: {target}: {host!r} is not a compose service"
    if not port.isdigit() or int(port) not in listening_ports(compose, host):
        return f"{what}: {target}: {host} listens on {sorted(listening_ports(compose, host))}, not {port}"
    return None


def _mounts(svc: Doc) -> dict[str, str]:
    """Bind mounts of a service: container path -> host path (relative to the compose file)."""
    found = {}
    for volume in svc.get("volumes", []):
        parts = str(volume).split(":")
        if len(parts) >= 2 and parts[0].startswith((".", "/")):
            found[parts[1]] = parts[0]
    return found


def scrape_problems(compose: Doc, prometheus: Doc, root: Path = REPO_ROOT) -> list[str]:
    problems = []
    jobs: dict[str, str] = {}
    for sc in prometheus.get("scrape_configs", []):
        for static in sc.get("static_configs", []):
            for target in static.get("targets", []):
                problems.append(_target_problem(compose, f"job {sc['job_name']}", target))
                host = target.rpartition(":")[0]
                jobs[host] = sc["job_name"]
                if sc["job_name"] != host:
                    problems.append(f"job {sc['job_name']}: scrapes {host}; name the job after the service (the "
                                    "dashboards select services by job)")
    for manager in prometheus.get("alerting", {}).get("alertmanagers", []):
        for static in manager.get("static_configs", []):
            for target in static.get("targets", []):
                problems.append(_target_problem(compose, "alerting", target))
    for name in _long_running(compose):
        if name not in jobs:
            problems.append(f"{name}: Prometheus does not scrape it")
    mounted = _mounts(compose["services"].get("prometheus", {}))
    for rule_file in prometheus.get("rule_files", []):
        if rule_file not in mounted:
            problems.append(f"rule file {rule_file} is not mounted into the prometheus service")
        elif not (root / mounted[rule_file]).is_file():
            problems.append(f"rule file {rule_file}: {mounted[rule_file]} does not exist")
    return [p for p in problems if p]


def grafana_problems(compose: Doc, dashboard_files: Iterable[str], root: Path = REPO_ROOT) -> list[str]:
    problems = []
    mounts = _mounts(compose["services"]["grafana"])
    for container, host in mounts.items():
        if not (root / host).exists():
            problems.append(f"grafana mounts {host} at {container}, which does not exist")
    if GRAFANA_PROVISIONING not in mounts:
        return [*problems, f"grafana: nothing is mounted at {GRAFANA_PROVISIONING}"]
    provisioning = root / mounts[GRAFANA_PROVISIONING]
    sources = [d for f in sorted(provisioning.glob("datasources/*.y*ml")) for d in _load(f).get("datasources", [])]
    if not sources:
        problems.append(f"{mounts[GRAFANA_PROVISIONING]}/datasources provisions no datasource")
    for source in sources:
        url = source.get("url", "")
        netloc = urlsplit(url).netloc if "//" in url else url
        problems.append(_target_problem(compose, f"datasource {source.get('uid')}", netloc))
    providers = [p for f in sorted(provisioning.glob("dashboards/*.y*ml")) for p in _load(f).get("providers", [])]
    if not providers:
        problems.append(f"{mounts[GRAFANA_PROVISIONING]}/dashboards provisions no dashboard folder")
    for provider in providers:
        path = provider.get("options", {}).get("path", "")
        host = next((h + path[len(c):] for c, h in mounts.items() if path == c or path.startswith(c + "/")), None)
        if host is None:
            problems.append(f"dashboard provider {provider.get('name')}: {path} is not mounted into grafana")
            continue
        for file_name in dashboard_files:
            if not (root / host / file_name).is_file():
                problems.append(f"dashboard file {file_name} is missing from {host}")
    return [p for p in problems if p]


def image_problems(compose: Doc) -> list[str]:
    problems = []
    for name, svc in compose["services"].items():
        image = interpolate(svc.get("image", ""))
        if not image:
            continue
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        if not tag or tag.startswith("latest"):
            problems.append(f"{name}: image {image} is not pinned to a version")
    return problems


# --- the real files pass --------------------------------------------------------------------------------------------
def test_every_quorum_command_is_an_installed_entry_point() -> None:
    assert entry_point_problems(_compose(), _scripts(), _subcommands()) == []


def test_every_environment_variable_is_a_setting_the_service_reads() -> None:
    assert environment_problems(_compose(), settings_for) == []


def test_healthchecks_probe_readiness_and_prometheus_and_grafana_have_one() -> None:
    assert healthcheck_problems(_compose()) == []


def test_prometheus_scrapes_every_service_where_compose_runs_it() -> None:
    assert scrape_problems(_compose(), _prometheus()) == []


def test_grafana_provisioning_and_every_dashboard_file_exist() -> None:
    assert grafana_problems(_compose(), dashboards.render()) == []


def test_every_image_is_pinned() -> None:
    assert image_problems(_compose()) == []


def test_the_exporters_and_alertmanager_are_in_compose() -> None:
    services = _compose()["services"]
    assert {"nats-exporter", "postgres-exporter", "alertmanager"} <= set(services)
    assert _command(services["nats-exporter"]) == ["-varz", "-connz", "-jsz=all", "http://nats:8222"]
    assert "timescaledb:5432" in _environment(services["postgres-exporter"])["DATA_SOURCE_URI"]


# --- each check fails on a broken document ----------------------------------------------------------------------------
def _broken(change: Callable[[Doc], None]) -> Doc:
    doc = copy.deepcopy(_compose())
    change(doc)
    return doc


def _set(path: str, value: object) -> Callable[[Doc], None]:
    def change(doc: Doc) -> None:
        *parents, last = path.split(".")
        node = doc["services"]
        for key in parents:
            node = node[key]
        node[last] = value
    return change


@pytest.mark.parametrize(("change", "expected"), [
    (_set("market_data.command", ["quorum-market-date"]), "market_data: command 'quorum-market-date' is not an"),
    (_set("migrate.command", ["quorum", "migrat"]), "migrate: `quorum migrat` is not a quorum subcommand"),
    (_set("risk.command", []), "risk: no command"),
])
def test_a_command_that_is_no_entry_point_is_named(change: Callable[[Doc], None], expected: str) -> None:
    problems = entry_point_problems(_broken(change), _scripts(), _subcommands())
    assert any(p.startswith(expected) for p in problems), problems


def test_an_environment_variable_no_setting_reads_is_named() -> None:
    doc = _broken(lambda d: d["services"]["risk"]["environment"].update({"QUORUM_RISK_MAX_LEVERAGE": "3"}))
    assert environment_problems(doc, settings_for) == [
        "risk: QUORUM_RISK_MAX_LEVERAGE is not a field of RiskSettings"]


def test_a_misspelt_shared_variable_is_named_for_a_cli_job() -> None:
    doc = _broken(lambda d: d["services"]["migrate"]["environment"].update({"QUORUM_APP_DB_PASWORD": "x"}))
    assert environment_problems(doc, settings_for) == [
        "migrate: QUORUM_APP_DB_PASWORD is not a field of ServiceSettings / StackSecrets"]


@pytest.mark.parametrize(("change", "expected"), [
    (_set("oms.healthcheck.test", ["CMD", "python", "-c", "urlopen('http://127.0.0.1:8106/healthz')"]),
     "oms: the healthcheck probes /healthz (alive) instead of /readyz (ready)"),
    (_set("oms.healthcheck.test", ["CMD", "python", "-c", "urlopen('http://127.0.0.1:8105/readyz')"]),
     "oms: the healthcheck does not probe /readyz on port 8106"),
    (_set("oms.healthcheck", None), "oms: no healthcheck"),
    (_set("grafana.healthcheck", None), "grafana: no healthcheck"),
    (_set("prometheus.healthcheck", None), "prometheus: no healthcheck"),
])
def test_a_wrong_or_missing_healthcheck_is_named(change: Callable[[Doc], None], expected: str) -> None:
    assert healthcheck_problems(_broken(change)) == [expected]


def _prometheus_with(job: str, target: str) -> Doc:
    doc = copy.deepcopy(_prometheus())
    for sc in doc["scrape_configs"]:
        if sc["job_name"] == job:
            sc["static_configs"] = [{"targets": [target]}]
    return doc


@pytest.mark.parametrize(("job", "target", "expected"), [
    ("risk", "risk:8106", "job risk: risk:8106: risk listens on [8105], not 8106"),
    ("nats-exporter", "nats-exporter:7778", "job nats-exporter: nats-exporter:7778: nats-exporter listens on "
                                            "[7777], not 7778"),
    ("ledger", "ledgr:8108", "job ledger: ledgr:8108: 'ledgr' is not a compose service"),
])
def test_a_scrape_target_that_does_not_match_compose_is_named(job: str, target: str, expected: str) -> None:
    assert expected in scrape_problems(_compose(), _prometheus_with(job, target))


def test_a_service_prometheus_does_not_scrape_is_named() -> None:
    doc = copy.deepcopy(_prometheus())
    doc["scrape_configs"] = [sc for sc in doc["scrape_configs"] if sc["job_name"] != "trainer"]
    assert scrape_problems(_compose(), doc) == ["trainer: Prometheus does not scrape it"]


def test_an_unmounted_rule_file_is_named() -> None:
    doc = copy.deepcopy(_prometheus())
    doc["rule_files"] = ["/etc/prometheus/more-alerts.yml"]
    assert scrape_problems(_compose(), doc) == [
        "rule file /etc/prometheus/more-alerts.yml is not mounted into the prometheus service"]


def test_a_missing_dashboard_file_or_provisioned_path_is_named() -> None:
    files = [*dashboards.render(), "quorum-missing.json"]
    assert grafana_problems(_compose(), files) == ["dashboard file quorum-missing.json is missing from ./dashboards"]
    doc = _broken(lambda d: d["services"]["grafana"]["volumes"].__setitem__(
        0, "./deploy/grafana/provisionning:/etc/grafana/provisioning:ro"))
    assert grafana_problems(doc, dashboards.render())[0] == (
        "grafana mounts ./deploy/grafana/provisionning at /etc/grafana/provisioning, which does not exist")


def test_a_datasource_pointing_at_no_compose_service_is_named(tmp_path: Path) -> None:
    provisioning = tmp_path / "deploy" / "grafana" / "provisioning"
    (provisioning / "datasources").mkdir(parents=True)
    (provisioning / "dashboards").mkdir()
    (provisioning / "datasources" / "ds.yml").write_text(yaml.safe_dump({"datasources": [
        {"uid": "prometheus", "url": "http://prometheus:9091"}, {"uid": "quorum-pg", "url": "postgres:5432"}]}))
    (provisioning / "dashboards" / "d.yml").write_text(yaml.safe_dump({"providers": [
        {"name": "quorum", "options": {"path": "/var/lib/grafana/dashboards"}}]}))
    (tmp_path / "dashboards").mkdir()

    assert grafana_problems(_compose(), [], root=tmp_path) == [
        "datasource prometheus: prometheus:9091: prometheus listens on [9090], not 9091",
        "datasource quorum-pg: postgres:5432: 'postgres' is not a compose service"]


def test_an_unpinned_image_is_named() -> None:
    assert image_problems(_broken(_set("grafana.image", "grafana/grafana:latest"))) == [
        "grafana: image grafana/grafana:latest is not pinned to a version"]
    assert image_problems(_broken(_set("nats.image", "nats"))) == ["nats: image nats is not pinned to a version"]
