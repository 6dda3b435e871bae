"""Quorum's Grafana dashboards as code (grafana-foundation-sdk): trading desk, council & models, market data and
pipeline. ``python -m quorum.dashboards`` writes them to dashboards/*.json (provisioned by compose) and the
generated sections of docs/observability.md; ``--check`` only says whether those files are current.

:func:`queries` lists every query of every panel and annotation, for the test that runs each against a real
Prometheus and PostgreSQL; :func:`links` gives each dashboard's path on a Grafana server.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from grafana_foundation_sdk.cog.encoder import JSONEncoder

from quorum.dashboards import council, market_data, pipeline, trading
from quorum.dashboards.panels import Board
from quorum.dashboards.queries import Query, substitute

__all__ = ["Board", "Query", "boards", "links", "queries", "render", "substitute"]


def boards() -> list[Board]:
    return [trading.board(), council.board(), market_data.board(), pipeline.board()]


def _json(dashboard: Any) -> str:
    return JSONEncoder(sort_keys=True, indent=2, ensure_ascii=False).encode(dashboard) + "\n"


def render() -> dict[str, str]:
    """File name -> the dashboard's JSON (sorted keys, so the output is stable)."""
    return {b.file_name: _json(b.build()) for b in boards()}


def queries() -> list[Query]:
    """Every panel's and annotation's query, read back from the rendered JSON: kind, dashboard, panel, text."""
    from quorum.dashboards.queries import extract

    return [q for text in render().values() for q in extract(json.loads(text))]


@dataclass(frozen=True)
class DashboardLink:
    title: str
    uid: str

    @property
    def path(self) -> str:
        """Relative to the Grafana server's base URL (Grafana redirects /d/<uid> to the full slug)."""
        return f"/d/{self.uid}"


def links() -> list[DashboardLink]:
    return [DashboardLink(b.title, b.uid) for b in boards()]
