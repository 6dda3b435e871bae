"""What the council decided (with every voter's signal) and how each strategy's convictions scored."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from quorum.types import Action

from .. import queries
from ..deps import Conn, Limit, Offset, Reader
from ..schemas import DecisionOut, IsoDatetime, KarmaScorecard, Page

router = APIRouter(tags=["read"])


@router.get("/decisions", response_model=Page[DecisionOut])
async def get_decisions(_: Reader, conn: Conn, symbol: str | None = None, action: Action | None = None,
                        since: IsoDatetime | None = None, until: IsoDatetime | None = None,
                        limit: Limit = 100, offset: Offset = 0) -> Page[DecisionOut]:
    """Council decisions, newest first, each with every voter's signal."""
    return await queries.decisions_page(conn, symbol, action, since, until, limit, offset)


@router.get("/decisions/{decision_id}", response_model=DecisionOut,
            responses={404: {"description": "no such decision"}})
async def get_decision(_: Reader, conn: Conn, decision_id: uuid.UUID) -> DecisionOut:
    found = await queries.decision(conn, decision_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no decision {decision_id}")
    return found


@router.get("/karma", response_model=KarmaScorecard)
async def get_karma(_: Reader, conn: Conn, by: Annotated[str, Query(pattern="^(strategy|producer)$")]
                    = "strategy", symbol: str | None = None) -> KarmaScorecard:
    """Hit rate, average return and calibration of each strategy's (or producer's) convictions, scored
    when the campaign they argued about closed."""
    return await queries.karma(conn, by, symbol)
