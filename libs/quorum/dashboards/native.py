"""Configurations that point a Prometheus and a Grafana at a native stack (``make dev`` / ``quorum dev``): the
same jobs as deploy/prometheus/prometheus.yml on the services' local ports, and the same datasource uids as
deploy/grafana/provisioning, so the generated dashboards work unchanged. Written as JSON, which both read as
YAML."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from sqlalchemy.engine import make_url

from quorum.dashboards.panels import POSTGRES, PROMETHEUS
from quorum.devstack import REPO_ROOT, SERVICES

ALERT_RULES = REPO_ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARDS_DIR = REPO_ROOT / "dashboards"
APP_ROLE = "quorum_service"


def _dump(doc: object) -> str:
    return json.dumps(doc, indent=2) + "\n"


def prometheus_config(ports: Mapping[str, int], *, host: str = "127.0.0.1",
                      rule_files: Sequence[Path | str] = (ALERT_RULES,), scrape_interval: str = "5s",
                      extra_targets: Mapping[str, str] | None = None) -> str:
    """One job per service, named after it; ``extra_targets`` adds jobs such as
    ``{"postgres-exporter": "127.0.0.1:9187"}``."""
    missing = [name for name in SERVICES if name not in ports]
    if missing:
        raise ValueError(f"no port for {', '.join(missing)} (ports has {sorted(ports)})")
    targets = {name: f"{host}:{ports[name]}" for name in SERVICES} | dict(extra_targets or {})
    return _dump({
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "rule_files": [str(f) for f in rule_files],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [target]}]}
                           for job, target in targets.items()],
    })


def grafana_provisioning(*, prometheus_url: str, database_url: str, password: str,
                         dashboards: Path = DASHBOARDS_DIR) -> dict[str, str]:
    """Provisioning files (path under the provisioning folder -> text): the two datasources, reading the
    database as the services' login role, and a provider loading ``dashboards``."""
    url = make_url(database_url)
    if not url.host or not url.database:
        raise ValueError(f"the database URL needs a host and a database name, got {url.render_as_string()!r}")
    datasources = {"apiVersion": 1, "datasources": [
        {"name": "Prometheus", "uid": PROMETHEUS.uid, "type": PROMETHEUS.type_val, "access": "proxy",
         "url": prometheus_url, "isDefault": True, "jsonData": {"timeInterval": "5s"}},
        {"name": "Quorum PostgreSQL", "uid": POSTGRES.uid, "type": POSTGRES.type_val, "access": "proxy",
         "url": f"{url.host}:{url.port or 5432}", "user": APP_ROLE,
         "jsonData": {"database": url.database, "sslmode": "disable", "timescaledb": False},
         "secureJsonData": {"password": password}},
    ]}
    provider = {"apiVersion": 1, "providers": [
        {"name": "quorum", "orgId": 1, "folder": "Quorum", "type": "file", "disableDeletion": True,
         "allowUiUpdates": False, "updateIntervalSeconds": 30, "options": {"path": str(dashboards.resolve())}},
    ]}
    return {"datasources/quorum.yml": _dump(datasources), "dashboards/quorum.yml": _dump(provider)}
