"""Semi-Auto trade proposals: the list, and the operator's approve or reject (commands to the OMS)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query
from quorum.events.base import Payload
from quorum.events.control import ApproveProposal, RejectProposal

from .. import queries
from ..deps import Actor, Cmd, Conn, Limit, Offset, Reader
from ..http import CONTROL_RESPONSES
from ..schemas import ControlRequest, ControlResult, Page, ProposalOut

router = APIRouter()


def _decide(verb: str, command: type[Payload]) -> None:
    async def route(actor: Actor, commands: Cmd, decision_id: uuid.UUID, body: ControlRequest | None = None) -> Any:
        return await commands.control(command, f"proposal_{verb}", actor, body.reason if body else "",
                                      decision_id=decision_id)

    route.__name__ = f"proposal_{verb}"
    router.post(f"/proposals/{{decision_id}}/{verb}", response_model=ControlResult, tags=["controls"],
                responses=CONTROL_RESPONSES)(route)


_decide("approve", ApproveProposal)
_decide("reject", RejectProposal)


@router.get("/proposals", response_model=Page[ProposalOut], tags=["read"])
async def get_proposals(_: Reader, conn: Conn, status_: Annotated[str | None, Query(
        alias="status", pattern="^(PENDING|APPROVED|REJECTED|EXPIRED|OBSERVED)$")] = None,
        limit: Limit = 100, offset: Offset = 0) -> Page[ProposalOut]:
    """Semi-Auto trade proposals (and, in Observe mode, what would have been traded)."""
    return await queries.proposals_page(conn, status_, limit, offset)
