"""The audit trail: newest rows, a re-walk of its hash chain, and the whole trail exported for offline checks."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from quorum import audit_chain

from .. import queries
from ..deps import Conn, Engine, Limit, Offset, Reader, Settings
from ..schemas import AuditOut, AuditVerification, IsoAwareDatetime, Page

router = APIRouter(tags=["read"])


@router.get("/audit", response_model=Page[AuditOut])
async def get_audit(
    _: Reader, conn: Conn, limit: Limit = 100, offset: Offset = 0,
    actor: Annotated[str | None, Query(max_length=200, description="part of the actor, any case")] = None,
    action: Annotated[str | None, Query(max_length=64, description="part of the action, any case")] = None,
    status: Annotated[str | None, Query(max_length=16, pattern=r"^[A-Z_]+$",
                                        description="exactly: REQUESTED, CONFIRMED, REFUSED, ...")] = None,
    since: Annotated[IsoAwareDatetime | None, Query(description="rows at or after this time")] = None,
    until: Annotated[IsoAwareDatetime | None, Query(description="rows before this time")] = None,
) -> Page[AuditOut]:
    """The newest rows first, narrowed by any of the filters (an empty time range has no rows)."""
    return await queries.audit_page(conn, limit, offset, queries.AuditFilter(actor, action, status, since, until))


@router.get("/audit/verify", response_model=AuditVerification)
async def verify_audit(_: Reader, conn: Conn, settings: Settings) -> AuditVerification:
    """Re-walk the audit trail's hash chain: any edited, removed or reordered row is reported."""
    rows = [x async for x in queries.audit_rows(conn)]
    problems = audit_chain.verify(rows, key=settings.chain_key.get_secret_value().encode())
    return AuditVerification(ok=not problems, rows=len(rows), problems=problems)


@router.get("/audit/export", response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}, "application/x-ndjson": {}}}})
async def export_audit(_: Reader, engine: Engine,
                       fmt: str = Query("jsonl", alias="format", pattern="^(csv|jsonl)$")) -> Any:
    """The whole audit trail, oldest first, as CSV or JSON lines (hashes included, for offline checks)."""
    fields = ["id", *audit_chain.FIELDS, "prev_hash", "hash"]

    async def lines() -> AsyncIterator[str]:
        async with engine.connect() as conn:
            if fmt == "csv":
                yield ",".join(fields) + "\r\n"
            async for row in queries.audit_rows(conn):
                out = {k: (row[k].isoformat() if k == "ts" else row[k]) for k in fields}
                if fmt == "jsonl":
                    yield json.dumps(out, sort_keys=True, default=str) + "\n"
                else:
                    buf = io.StringIO()
                    csv.writer(buf).writerow([json.dumps(out[k], sort_keys=True) if k == "details" else out[k]
                                              for k in fields])
                    yield buf.getvalue()

    media = "text/csv" if fmt == "csv" else "application/x-ndjson"
    return StreamingResponse(lines(), media_type=media,
                             headers={"Content-Disposition": f"attachment; filename=audit.{fmt}"})
