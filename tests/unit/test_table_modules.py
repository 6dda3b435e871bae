"""The table package: one module per owner, one shared ``metadata``, every table reachable as before."""

from __future__ import annotations

import pytest
import quorum.db.tables as tables
from quorum.db.tables import HYPERTABLES, OWNERS, metadata
from quorum.devstack import SERVICES
from sqlalchemy import Table


def test_every_table_has_one_owner_and_every_owner_is_a_service_or_the_runtime() -> None:
    assert set(OWNERS) == set(metadata.tables)
    assert set(OWNERS.values()) <= {*SERVICES, "runtime"}
    assert set(HYPERTABLES) <= set(metadata.tables)


@pytest.mark.parametrize("name", sorted(metadata.tables))
def test_each_table_is_exported_by_name_on_the_shared_metadata_with_a_purpose(name: str) -> None:
    table = getattr(tables, name)
    assert isinstance(table, Table), f"quorum.db.tables.{name} is not the table (a module of that name shadows it?)"
    assert table is metadata.tables[name]
    assert name in tables.__all__
    assert len(table.info.get("purpose", "")) > 5, f"{name}: give it info=about('...') for the docs"
