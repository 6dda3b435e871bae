"""Audit family: who did what, in which mode and risk profile, and how it ended."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from quorum.events.base import Payload


class ActionAudited(Payload):
    FAMILY = "audit"
    PRODUCERS = ("gateway", "risk", "oms", "market_data", "trainer")

    actor: str = Field(description="USER:<token id> or SYSTEM:<service>")
    action: str
    mode: str = Field(description="PAPER, LIVE or SYSTEM")
    risk_profile: str
    status: str
    details: dict[str, Any] = Field(default_factory=dict)
