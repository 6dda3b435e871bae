"""Fixtures for in-process services: the environment a service reads, pointed at this test's servers."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def infra(monkeypatch: pytest.MonkeyPatch, database_url: str, nats_url: str, js: Any,
          tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Services built in this test read these URLs; ``js`` has the topology provisioned; the MLflow store is the
    test's own (empty: inference serves the baseline unless the test registers a champion)."""
    monkeypatch.setenv("QUORUM_MLFLOW_STATE_DIR", str(tmp_path_factory.mktemp("mlflow")))
    monkeypatch.delenv("QUORUM_MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("NATS_URL", nats_url)
    monkeypatch.setenv("QUORUM_ENVIRONMENT", "test")
    return js
