"""Writing the audit trail: one row in ``audit_log`` and one ``ActionAudited`` event, in the caller's
transaction, so an action and its record commit (or vanish) together. Rows are hash-chained in id order
under an advisory lock, so concurrent writers (every service audits) cannot fork the chain, and keyed with
the chain key (``QUORUM_CHAIN_KEY``, from the service's settings), which the database never sees."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr
from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert

from quorum.audit_chain import GENESIS, canonical_details, row_hash
from quorum.db.tables import audit_log
from quorum.events.audit import ActionAudited
from quorum.ids import stable_uuid
from quorum.runtime.handling import Context


async def record_audit(ctx: Context, *, actor: str, action: str, mode: str, risk_profile: str, status: str,
                       details: dict[str, Any], key: object, chain_key: SecretStr) -> None:
    """``actor`` is ``USER:<token id>`` or ``SYSTEM:<service>``; ``key`` makes the record's id deterministic."""
    event_id = stable_uuid("audit", key, status)
    details = canonical_details(details)
    await ctx.conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('quorum:audit_log'))"))
    if (await ctx.conn.execute(select(audit_log.c.id).where(audit_log.c.event_id == event_id))).first():
        return  # recorded already (a redelivered cause)
    prev = (await ctx.conn.execute(select(audit_log.c.hash).order_by(audit_log.c.id.desc()).limit(1))
            ).scalar_one_or_none() or GENESIS
    row = {"event_id": str(event_id), "ts": ctx.clock.now(), "actor": actor, "action": action, "mode": mode,
           "risk_profile": risk_profile, "status": status, "details": details}
    digest = row_hash(prev, row, key=chain_key.get_secret_value().encode())
    await ctx.conn.execute(insert(audit_log).values(**{**row, "event_id": event_id}, prev_hash=prev, hash=digest))
    ctx.emit(ActionAudited(actor=actor, action=action, mode=mode, risk_profile=risk_profile, status=status,
                           details=details), key=str(event_id))


async def active_profile(conn: Any, default: str) -> str:
    """The risk profile in force (risk owns it), for audit rows written by other services."""
    from quorum.db.tables import risk_profile_state

    row = (await conn.execute(select(risk_profile_state.c.profile).where(
        risk_profile_state.c.scope == "global"))).scalar_one_or_none()
    return row or default
