"""Writing the audit trail: one row in ``audit_log`` and one ``ActionAudited`` event, in the caller's
transaction, so an action and its record commit (or vanish) together."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects.postgresql import insert

from quorum.db.tables import audit_log
from quorum.events.audit import ActionAudited
from quorum.ids import stable_uuid
from quorum.runtime.handling import Context


async def record_audit(ctx: Context, *, actor: str, action: str, mode: str, risk_profile: str, status: str,
                       details: dict[str, Any], key: object) -> None:
    """``actor`` is ``USER:<token id>`` or ``SYSTEM:<service>``; ``key`` makes the record's id deterministic."""
    event_id = stable_uuid("audit", key, status)
    await ctx.conn.execute(insert(audit_log).values(
        ts=ctx.clock.now(), actor=actor, action=action, mode=mode, risk_profile=risk_profile, status=status,
        details=details, event_id=event_id,
    ).on_conflict_do_nothing())
    ctx.emit(ActionAudited(actor=actor, action=action, mode=mode, risk_profile=risk_profile, status=status,
                           details=details), key=str(event_id))
