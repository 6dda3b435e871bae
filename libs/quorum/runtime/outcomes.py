"""The adapter's half of a pure decision: emit an ``Outcome``'s events through the unit of work's outbox and
write its audit records, in the order the decision made them."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from quorum.events.base import Envelope
from quorum.outcome import Audit, Emit, Outcome
from quorum.runtime.audit import record_audit
from quorum.runtime.handling import Context


async def emit_outcome(ctx: Context, outcome: Outcome[Any], *,
                       chain_key: SecretStr) -> list[tuple[Emit, Envelope[Any]]]:
    """Emit the events (ids derived exactly as ``ctx.emit`` derives them) and record the audits; returns each
    Emit with its envelope, for records that refer to an emitted event's id."""
    pairs = [(e, ctx.emit(e.payload, key=e.key, event_time=e.event_time)) for e in outcome.events]
    for record in outcome.records:
        if isinstance(record, Audit):
            await record_audit(ctx, actor=record.actor, action=record.action, mode=record.mode,
                               risk_profile=record.risk_profile, status=record.status, details=record.details,
                               key=record.key, chain_key=chain_key)
    return pairs
