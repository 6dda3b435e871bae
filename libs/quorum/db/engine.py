"""Engine construction. Commits happen only at the handler / request boundary, never inside domain code."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def async_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs (as most tools print them) and use the asyncpg driver."""
    for prefix in ("postgresql+psycopg://", "postgresql+psycopg2://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix):]
    if not url.startswith("postgresql+asyncpg://"):
        raise ValueError(f"DATABASE_URL must be a PostgreSQL URL, got scheme {url.split(':', 1)[0]!r}")
    return url


def create_engine(url: str, *, pool_size: int = 5) -> AsyncEngine:
    return create_async_engine(async_url(url), pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
