"""Fixtures for the unit tests."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Settings must come from what each test sets, never from the shell that runs pytest."""
    for name in list(os.environ):
        if name.startswith("QUORUM_") or name in {"NATS_URL", "DATABASE_URL"}:
            monkeypatch.delenv(name)
    return monkeypatch
