"""Optimizer configurations: the active one and the proposals side by side (each proposal carries the active
one's metrics on the same data), an operator's approval — two steps; the row becomes ACTIVE and the council is
told in one transaction, then its confirmation is awaited — and a rejection. Every step is audited."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, HTTPException, status
from quorum.backtest import optimize_store as store
from quorum.council.settings import CouncilConfig
from quorum.events.base import Envelope
from quorum.events.control import ActivateCouncilConfiguration
from quorum.runtime.handling import Context

from .. import queries
from ..deps import Actor, Cmd, Conn, Reader, Settings
from ..http import CONTROL_RESPONSES, Refused
from ..schemas import (
    ConfigurationOut,
    ConfigurationsOut,
    ConfirmableRequest,
    ConfirmationRequired,
    ControlRequest,
    ControlResult,
)

router = APIRouter(tags=["configurations"])
NOT_FOUND = {404: {"description": "no such configuration"}}
APPROVE = "configuration_approve"
REJECT = "configuration_reject"


@router.get("/configurations", response_model=ConfigurationsOut)
async def get_configurations(_: Reader, conn: Conn) -> ConfigurationsOut:
    """What the council decides with and what the optimizer proposes instead, metrics side by side."""
    return await queries.configurations_view(conn)


async def _proposed(conn: Any, config_id: uuid.UUID, action: str) -> ConfigurationOut:
    found = await queries.configuration(conn, config_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no configuration {config_id}")
    if found.status != "PROPOSED":
        raise Refused(action, f"configuration {config_id} is {found.status}, not PROPOSED")
    return found


def _warning(found: ConfigurationOut, active_profile: str) -> str:
    m, before = found.metrics, found.active_metrics or {}
    text = (f"The council will decide with configuration {found.config_hash} from its next candle: score "
            f"{_figure(m.get('score'))} against the active one's {_figure(before.get('score'))}, out-of-sample "
            f"drawdown {_figure(m.get('max_drawdown'), '.2%')} (limit {_figure(m.get('drawdown_limit'), '.2%')}).")
    if found.profile.value != active_profile:
        text += f" It was optimized for the {found.profile} profile; the active profile is {active_profile}."
    return text


def _figure(value: Any, spec: str = ".3f") -> str:
    return format(value, spec) if isinstance(value, int | float) else "n/a"


@router.post("/configurations/{config_id}/approve", response_model=ControlResult,
             responses={202: {"model": ConfirmationRequired, "description": "confirm with the token"},
                        **NOT_FOUND, **CONTROL_RESPONSES})
async def approve_configuration(actor: Actor, commands: Cmd, conn: Conn, settings: Settings, config_id: uuid.UUID,
                                body: ConfirmableRequest | None = None) -> Any:
    """Make a PROPOSED configuration the council's (two steps: the first answers with the warning and a token).
    The active one is SUPERSEDED; the council confirms once it decides with the new one."""
    body = body or ConfirmableRequest()
    found = await _proposed(conn, config_id, APPROVE)
    try:  # what the council will build from it: refused here rather than by the council once it is ACTIVE
        CouncilConfig(**found.overrides).params()
    except ValueError as exc:
        raise Refused(APPROVE, "it does not build under the council's settings: " + " ".join(str(exc).split())
                      ) from None
    profile = await queries.risk_profile(conn, settings.risk_profile.value)
    first = await commands.confirm_step(actor, APPROVE, body.confirmation_token,
                                        {"configuration_id": str(config_id), "config_hash": found.config_hash},
                                        _warning(found, profile))
    if first is not None:
        return first

    async def activate(ctx: Context) -> Envelope[Any]:
        try:
            _, env = await store.activate(ctx, config_id, actor=actor, reason=body.reason or "approved")
        except store.NotProposed as exc:
            raise Refused(APPROVE, str(exc)) from None
        return env

    return await commands.control(ActivateCouncilConfiguration, APPROVE, actor, body.reason, prepare=activate)


@router.post("/configurations/{config_id}/reject", response_model=ConfigurationOut,
             responses={**NOT_FOUND, 409: CONTROL_RESPONSES[409]})
async def reject_configuration(actor: Actor, commands: Cmd, conn: Conn, config_id: uuid.UUID,
                               body: ControlRequest | None = None) -> Any:
    """Turn a proposal down: it stays on record as REJECTED, with who and why."""
    reason = (body.reason if body else "") or "rejected"
    await _proposed(conn, config_id, REJECT)

    async def write(ctx: Context) -> Any:
        try:
            row = await store.reject(ctx.conn, config_id, actor=actor, reason=reason, now=ctx.clock.now())
        except store.NotProposed as exc:
            raise Refused(REJECT, str(exc)) from None
        await commands.audit(ctx, actor, REJECT, "CONFIRMED", {"configuration_id": str(config_id),
                                                               "config_hash": row.config_hash, "reason": reason},
                             uuid.uuid4())
        return row

    return ConfigurationOut.model_validate(await commands.transact(write))
