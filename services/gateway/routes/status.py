"""How the system stands: trading mode, halts, routing, service health; risk's limits and kill switches; the
council's settings."""

from __future__ import annotations

from functools import cache

from fastapi import APIRouter
from quorum.dashboards import links

from .. import queries
from ..deps import ActiveConfig, Conn, Health, Mode, Reader, Settings
from ..schemas import CouncilOut, RiskOut, Status

router = APIRouter(tags=["read"])


@router.get("/status", response_model=Status)
async def get_status(_: Reader, conn: Conn, mode: Mode, settings: Settings, services: Health,
                     config_hash: ActiveConfig) -> Status:
    status = await queries.status(conn, mode, settings.risk_profile.value, services, config_hash)
    base = settings.grafana_url.rstrip("/")
    return status.model_copy(update={"dashboards": {title: base + path for title, path in _dashboards()}})


@cache
def _dashboards() -> tuple[tuple[str, str], ...]:
    return tuple((link.title, link.path) for link in links())


@router.get("/council", response_model=CouncilOut)
async def get_council(_: Reader, conn: Conn, settings: Settings) -> CouncilOut:
    """Council mode and threshold per symbol, the active risk profile, strategies disabled by errors."""
    return await queries.council(conn, settings.risk_profile.value)


@router.get("/risk", response_model=RiskOut)
async def get_risk(_: Reader, conn: Conn, settings: Settings) -> RiskOut:
    """Active profile and its limits, halt and emergency state, drawdown, kill switches."""
    return await queries.risk(conn, settings.risk_profile.value, settings.risk_config, settings.quote_currency)
