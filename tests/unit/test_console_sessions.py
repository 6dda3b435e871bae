"""The console's session store: sessions end after their idle timeout, only activity extends them, a full
store drops the stalest session, and neither cookie values nor CSRF tokens can be guessed from what it holds."""

from __future__ import annotations

import pytest

from services.gateway.auth import Principal, Role
from services.gateway.console.sessions import SessionStore

OPERATOR = Principal("op0123456789", Role.OPERATOR)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def store(idle: float = 60.0, max_sessions: int = 10) -> tuple[SessionStore, Clock]:
    clock = Clock()
    return SessionStore(idle, max_sessions, clock=clock), clock


def test_a_session_is_found_until_its_idle_timeout_then_gone() -> None:
    sessions, clock = store(idle=60)
    session_id, opened = sessions.open(OPERATOR)

    clock.now += 59
    found = sessions.find(session_id)
    clock.now += 1
    expired = sessions.find(session_id)

    assert found is opened and found.principal == OPERATOR
    assert expired is None and len(sessions) == 0


def test_only_a_touch_extends_a_session_and_finding_it_does_not() -> None:
    sessions, clock = store(idle=60)
    touched_id, touched = sessions.open(OPERATOR)
    idle_id, _ = sessions.open(OPERATOR)

    clock.now += 40
    sessions.touch(touched)
    sessions.find(idle_id)
    clock.now += 30

    assert sessions.find(touched_id) is touched
    assert sessions.seconds_left(touched) == pytest.approx(30)
    assert sessions.find(idle_id) is None


def test_a_full_store_drops_expired_sessions_first_then_the_stalest() -> None:
    sessions, clock = store(idle=60, max_sessions=2)
    stale_id, _ = sessions.open(OPERATOR)
    clock.now += 10
    recent_id, recent = sessions.open(OPERATOR)
    clock.now += 10
    sessions.touch(recent)

    newest_id, _ = sessions.open(OPERATOR)

    assert sessions.find(stale_id) is None
    assert sessions.find(recent_id) is recent and sessions.find(newest_id) is not None


def test_close_ends_a_session_once() -> None:
    sessions, _ = store()
    session_id, _ = sessions.open(OPERATOR)

    assert sessions.close(session_id) is True
    assert sessions.close(session_id) is False
    assert sessions.find(session_id) is None


def test_ids_and_csrf_tokens_are_fresh_random_and_the_store_keeps_no_session_id() -> None:
    sessions, _ = store(max_sessions=100)
    opened = [sessions.open(OPERATOR) for _ in range(50)]
    ids = {session_id for session_id, _ in opened}
    tokens = {s.csrf_token for _, s in opened}

    assert len(ids) == 50 and len(tokens) == 50
    assert all(len(i) >= 40 for i in ids) and not ids & tokens
    assert not ids & set(sessions._sessions)  # only hashes of the ids are held


def test_the_csrf_token_must_match_exactly() -> None:
    sessions, _ = store()
    _, session = sessions.open(OPERATOR)

    assert session.csrf_matches(session.csrf_token)
    assert not session.csrf_matches(None)
    assert not session.csrf_matches("")
    assert not session.csrf_matches(session.csrf_token[:-1])


def test_a_store_without_a_timeout_or_room_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="idle_timeout_s must be positive"):
        SessionStore(0, 10)
    with pytest.raises(ValueError, match="max_sessions at least 1"):
        SessionStore(60, 0)
