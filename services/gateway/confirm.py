"""Two-step confirmation for dangerous controls: the first call gets a warning and a single-use token that
expires; only a second call carrying that token, from the same operator, for the very same request, runs it.

Only the token's hash is stored, and the request is fingerprinted so a token issued to lower a limit cannot be
spent on raising it."""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import datetime, timedelta
from typing import Any

from quorum.db.tables import confirmation_tokens
from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def fingerprint(action: str, params: dict[str, Any]) -> str:
    return _sha(json.dumps({"action": action, "params": params}, sort_keys=True, default=str))


async def issue(conn: AsyncConnection, *, actor: str, action: str, params: dict[str, Any], now: datetime,
                ttl_s: float) -> tuple[str, datetime]:
    token = secrets.token_urlsafe(32)
    expires = now + timedelta(seconds=ttl_s)
    await conn.execute(insert(confirmation_tokens).values(
        token_hash=_sha(token), actor=actor, action=action, params_hash=fingerprint(action, params),
        expires_at=expires))
    return token, expires


async def redeem(conn: AsyncConnection, token: str, *, actor: str, action: str, params: dict[str, Any],
                 now: datetime) -> bool:
    """Spend the token (atomically, once). False: unknown, expired, used, or issued for something else."""
    t = confirmation_tokens.c
    spent = (await conn.execute(update(confirmation_tokens).where(
        t.token_hash == _sha(token), t.actor == actor, t.action == action,
        t.params_hash == fingerprint(action, params), t.used_at.is_(None), t.expires_at > now,
    ).values(used_at=now).returning(t.token_hash))).first()
    return spent is not None
