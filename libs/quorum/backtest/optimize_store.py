"""The ``configurations`` table's writes and the reads the optimizer needs, in the caller's transaction: what ran
live (the ACTIVE periods and the closed campaigns), recording a study's best candidate (PROPOSED, or ACTIVE
without approval), approving and rejecting one. Activation also emits ``ActivateCouncilConfiguration``
through the unit of work's outbox, so the row and the council's command commit together.

The gateway owns the table: the command line writes as the gateway (its outbox rows are the gateway's, which
its relay publishes), and both audit through ``record_audit``."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from quorum.backtest.optimize import ActivePeriod, LiveCampaign, LiveData
from quorum.db.tables import configurations, karma_votes
from quorum.events.base import Envelope
from quorum.events.control import ActivateCouncilConfiguration
from quorum.runtime.handling import Context

SYSTEM = "SYSTEM:optimizer"
c = configurations.c


class NotProposed(LookupError):
    """The row is not (or no longer) a PROPOSED configuration."""


async def active(conn: AsyncConnection) -> Any:
    """The ACTIVE row, or None (the council decides with the services' settings)."""
    return (await conn.execute(select(configurations).where(c.status == "ACTIVE"))).first()


async def live_data(conn: AsyncConnection, now: datetime) -> LiveData:
    """Every period a configuration was ACTIVE and every closed campaign (its first conviction's time, its
    return): the pure side picks those of a configuration within the window."""
    periods = (await conn.execute(select(c.config_hash, c.activated_at, c.superseded_at)
                                  .where(c.activated_at.is_not(None)))).all()
    k = karma_votes.c
    closed = (await conn.execute(select(func.min(k.ts), func.max(k.outcome_return))
                                 .where(k.outcome_return.is_not(None), k.position_id.is_not(None))
                                 .group_by(k.position_id))).all()
    return LiveData(tuple(ActivePeriod(p.config_hash, p.activated_at, p.superseded_at) for p in periods),
                    tuple(LiveCampaign(opened, float(ret)) for opened, ret in closed), now)


async def record_candidate(conn: AsyncConnection, *, config_hash: str, overrides: Mapping[str, Any],
                           params: Mapping[str, Any], profile: str, metrics: Mapping[str, Any],
                           active_metrics: Mapping[str, Any] | None, active_id: uuid.UUID | None, study: str | None,
                           actor: str, now: datetime) -> Any:
    """A new PROPOSED row; an older proposal still waiting is superseded by it (one decision at a time)."""
    await conn.execute(update(configurations).where(c.status == "PROPOSED").values(
        status="SUPERSEDED", superseded_at=now, reason="a newer proposal replaced it"))
    return (await conn.execute(insert(configurations).values(
        id=uuid.uuid4(), created_at=now, created_by=actor, config_hash=config_hash, overrides=dict(overrides),
        params=dict(params), status="PROPOSED", profile=profile, metrics=dict(metrics),
        active_metrics=None if active_metrics is None else dict(active_metrics), active_config_id=active_id,
        study=study).returning(configurations))).one()


async def proposed(conn: AsyncConnection, config_id: uuid.UUID) -> Any:
    """The PROPOSED row (locked until the transaction ends), or NotProposed."""
    row = (await conn.execute(select(configurations).where(c.id == config_id).with_for_update())).first()
    if row is None or row.status != "PROPOSED":
        raise NotProposed(f"configuration {config_id} is " + ("unknown" if row is None else row.status))
    return row


async def activate(ctx: Context, config_id: uuid.UUID, *, actor: str, reason: str) -> tuple[Any, Envelope[Any]]:
    """The PROPOSED row becomes ACTIVE (the active one SUPERSEDED) and the council is told, in ``ctx``'s
    transaction: (the row, the command's envelope)."""
    row = await proposed(ctx.conn, config_id)
    now = ctx.clock.now()
    await ctx.conn.execute(update(configurations).where(c.status == "ACTIVE").values(
        status="SUPERSEDED", superseded_at=now, reason=f"superseded by {config_id}"))
    row = (await ctx.conn.execute(update(configurations).where(c.id == config_id).values(
        status="ACTIVE", decided_by=actor, decided_at=now, activated_at=now, reason=reason)
        .returning(configurations))).one()
    env = ctx.emit(ActivateCouncilConfiguration(actor=actor, reason=reason, configuration_id=row.id,
                                                config_hash=row.config_hash, overrides=row.overrides),
                   key=str(row.id))
    return row, env


async def reject(conn: AsyncConnection, config_id: uuid.UUID, *, actor: str, reason: str, now: datetime) -> Any:
    await proposed(conn, config_id)
    return (await conn.execute(update(configurations).where(c.id == config_id).values(
        status="REJECTED", decided_by=actor, decided_at=now, reason=reason).returning(configurations))).one()
