"""Console sessions: an API token is exchanged once for a random session id in an HttpOnly cookie, so the
token never lives in the browser's script-readable storage. Each session carries its own CSRF token, which
every state-changing request made with the cookie must echo in a header (a cross-site page can make the browser
send the cookie, never read the token).

Kept in the gateway's memory: the gateway is one process, and a restart logging every operator out is the safe
failure. Only a hash of each session id is held, so a memory dump yields no usable cookie."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..auth import Principal

COOKIE = "quorum_session"
CSRF_HEADER = "X-CSRF-Token"
BACKGROUND_HEADER = "X-Quorum-Background"  # the console's own refreshes: not operator activity
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass
class Session:
    principal: Principal
    csrf_token: str
    last_active: float

    def csrf_matches(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented.encode(), self.csrf_token.encode())


class SessionStore:
    """Sessions by (hashed) id, each ending ``idle_timeout_s`` after its last operator request."""

    def __init__(self, idle_timeout_s: float, max_sessions: int, clock: Callable[[], float] = time.monotonic):
        if idle_timeout_s <= 0 or max_sessions < 1:
            raise ValueError("idle_timeout_s must be positive and max_sessions at least 1")
        self.idle_timeout_s = idle_timeout_s
        self.max_sessions = max_sessions
        self._clock = clock
        self._sessions: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def open(self, principal: Principal) -> tuple[str, Session]:
        """A new session (never a presented id: no fixation); returns the cookie value and the session."""
        now = self._clock()
        if len(self._sessions) >= self.max_sessions:
            self._sweep(now)
        while len(self._sessions) >= self.max_sessions:  # full of live sessions: the stalest one goes
            del self._sessions[min(self._sessions, key=lambda k: self._sessions[k].last_active)]
        session_id = secrets.token_urlsafe(32)
        session = Session(principal, secrets.token_urlsafe(32), now)
        self._sessions[_key(session_id)] = session
        return session_id, session

    def find(self, session_id: str) -> Session | None:
        """The live session of this id, without counting as activity; an expired one is dropped."""
        key = _key(session_id)
        session = self._sessions.get(key)
        if session is not None and self._expired(session, self._clock()):
            del self._sessions[key]
            return None
        return session

    def touch(self, session: Session) -> None:
        session.last_active = self._clock()

    def seconds_left(self, session: Session) -> float:
        return max(0.0, session.last_active + self.idle_timeout_s - self._clock())

    def close(self, session_id: str) -> bool:
        return self._sessions.pop(_key(session_id), None) is not None

    def _expired(self, session: Session, now: float) -> bool:
        return now - session.last_active >= self.idle_timeout_s

    def _sweep(self, now: float) -> None:
        self._sessions = {k: s for k, s in self._sessions.items() if not self._expired(s, now)}
