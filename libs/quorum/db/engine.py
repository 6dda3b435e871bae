"""Engine construction. Commits happen only at the handler / request boundary, never inside domain code.

Two database identities: migrations run as the schema's owner; services connect as ``APP_LOGIN_ROLE``, a
login role that is a member of ``quorum_app`` and neither owner nor superuser, so a service can read and
append but cannot lift the append-only triggers or edit the journal and the audit trail (migration 0008)."""

from __future__ import annotations

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

APP_LOGIN_ROLE = "quorum_service"


def async_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs (as most tools print them) and use the asyncpg driver."""
    for prefix in ("postgresql+psycopg://", "postgresql+psycopg2://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix):]
    if not url.startswith("postgresql+asyncpg://"):
        raise ValueError(f"DATABASE_URL must be a PostgreSQL URL, got scheme {url.split(':', 1)[0]!r}")
    return url


def app_database_url(owner_url: str, password: str | None = None) -> str:
    """The URL services use: the owner's server and database, as the app login role. The password defaults to
    ``QUORUM_APP_DB_PASSWORD``, the one the migrations gave the role."""
    if password is None:
        from quorum.runtime.settings import StackSecrets

        password = StackSecrets().app_db_password.get_secret_value()
    url = make_url(async_url(owner_url)).set(username=APP_LOGIN_ROLE, password=password)
    return url.render_as_string(hide_password=False)


def create_engine(url: str, *, pool_size: int = 5) -> AsyncEngine:
    """A ping per checkout: a pooled connection that a database restart closed is replaced before use, for every
    caller (not only those that retry). Consumers check out once per fetched batch, so it costs one round trip
    per batch."""
    return create_async_engine(async_url(url), pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
