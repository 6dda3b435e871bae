"""Who is calling, and may they: bearer tokens stored as SHA-256 hashes with a role, compared in constant
time; a token bucket per token, and one per client address for failed authentications (checked before any
database lookup, so guessing tokens costs the database nothing); roles ordered viewer < operator < admin.

The bootstrap token (``QUORUM_GATEWAY_API_TOKEN``) is an admin that never touches the database, so a fresh
system can be operated and can mint the real tokens (``POST /admin/tokens``)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from enum import StrEnum

from quorum.db.tables import api_tokens
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection


class Role(StrEnum):
    VIEWER = "viewer"  # reads
    OPERATOR = "operator"  # reads and controls
    ADMIN = "admin"  # everything, including tokens, the master PIN and exchange keys

    def allows(self, needed: Role) -> bool:
        order = list(Role)
        return order.index(self) >= order.index(needed)


@dataclass(frozen=True)
class Principal:
    token_id: str
    role: Role

    @property
    def actor(self) -> str:
        return f"USER:{self.token_id}"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_id(token: str) -> str:
    """A stable, non-reversible public name for a token (the audit actor)."""
    return token_hash(token)[:12]


def new_token() -> str:
    return "qk_" + secrets.token_urlsafe(32)


async def authenticate(conn: AsyncConnection | None, presented: str, bootstrap: str) -> Principal | None:
    digest = token_hash(presented)
    if hmac.compare_digest(digest, token_hash(bootstrap)):
        return Principal(token_id(bootstrap), Role.ADMIN)
    if conn is None:
        return None
    row = (await conn.execute(select(api_tokens.c.token_id, api_tokens.c.token_hash, api_tokens.c.role).where(
        api_tokens.c.token_hash == digest, api_tokens.c.revoked_at.is_(None)))).first()
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        return None
    return Principal(row.token_id, Role(row.role))


async def still_valid(conn: AsyncConnection, who: Principal, bootstrap: str) -> Principal | None:
    """The principal a console session was opened for, as it stands now: None once its token is revoked."""
    if hmac.compare_digest(who.token_id, token_id(bootstrap)):
        return who
    row = (await conn.execute(select(api_tokens.c.token_id, api_tokens.c.role).where(
        api_tokens.c.token_id == who.token_id, api_tokens.c.revoked_at.is_(None)))).first()
    return None if row is None else Principal(row.token_id, Role(row.role))


@dataclass
class RateLimiter:
    """Token bucket per principal: ``rate`` requests per second sustained, ``burst`` at once."""

    rate: float
    burst: float
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    def _level(self, key: str, now: float | None) -> tuple[float, float]:
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - last) * self.rate), now

    def take(self, key: str, now: float | None = None) -> float:
        """0 when allowed; otherwise the seconds to wait before retrying."""
        tokens, now = self._level(key, now)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate
        self._buckets[key] = (tokens - 1, now)
        return 0.0

    def blocked(self, key: str, now: float | None = None) -> float:
        """Like ``take`` without spending: 0 when a request may go ahead, else the seconds to wait."""
        tokens, _ = self._level(key, now)
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate

    def forget_idle(self, now: float | None = None, keep: int = 10_000) -> None:
        """Drop buckets that have refilled, once there are many (clients come and go)."""
        if len(self._buckets) <= keep:
            return
        now = time.monotonic() if now is None else now
        self._buckets = {k: (t, last) for k, (t, last) in self._buckets.items()
                         if t + (now - last) * self.rate < self.burst}
