"""docs/architecture.md must stay true: every event type, stream, durable consumer and table is in it."""

from __future__ import annotations

from pathlib import Path

import pytest
from quorum.db.tables import metadata
from quorum.events import registered_types
from quorum.subjects import subject
from quorum.topology import TOPOLOGY

DOC = (Path(__file__).resolve().parents[2] / "docs" / "architecture.md").read_text()


@pytest.mark.parametrize("name", sorted(registered_types()))
def test_every_event_type_is_catalogued_with_its_subject(name: str) -> None:
    cls = registered_types()[name]
    prefix = subject(cls).split(".*")[0]
    assert f"`{name}`" in DOC
    assert prefix in DOC, f"{name}: subject {prefix} missing from the catalogue"


@pytest.mark.parametrize("durable", [c.durable for c in TOPOLOGY.consumers])
def test_every_durable_consumer_is_documented(durable: str) -> None:
    assert f"| {durable} |" in DOC


@pytest.mark.parametrize("stream", [s.name for s in TOPOLOGY.streams])
def test_every_stream_is_documented(stream: str) -> None:
    assert f"| {stream} |" in DOC


@pytest.mark.parametrize("table", sorted(metadata.tables))
def test_every_table_is_documented(table: str) -> None:
    assert f"| {table} |" in DOC
