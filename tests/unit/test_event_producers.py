"""Every payload type names the services that emit it, so the event catalogue's producers come from code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from quorum.devstack import SERVICES
from quorum.events import registered_types
from quorum.events.base import EVERY_SERVICE

ROOT = Path(__file__).resolve().parents[2]
SERVICE_NAMES = {m.group(1) for path in ROOT.glob("services/*/service.py")
                 for m in re.finditer(r'^\s+NAME = "(\w+)"', path.read_text(), re.M)}


def test_the_service_list_matches_the_services_directory() -> None:
    assert SERVICE_NAMES == set(SERVICES)


@pytest.mark.parametrize("name", sorted(registered_types()))
def test_each_payload_declares_its_producers_on_itself(name: str) -> None:
    cls = registered_types()[name]
    assert "PRODUCERS" in vars(cls), f"{name}: declare PRODUCERS on the class (the services that emit it)"
    producers = cls.PRODUCERS
    assert producers, f"{name}: PRODUCERS is empty"
    assert len(set(producers)) == len(producers)
    unknown = set(producers) - SERVICE_NAMES - {EVERY_SERVICE}
    assert not unknown, f"{name}: {sorted(unknown)} are not service names ({sorted(SERVICE_NAMES)})"
    assert EVERY_SERVICE not in producers or producers == (EVERY_SERVICE,)
