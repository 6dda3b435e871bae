"""The one ``MetaData`` every table module registers on, and the column and table helpers they share.

Alembic (``migrations/env.py``) and the schema test read this same ``metadata`` through ``quorum.db.tables``,
which imports every module, so a table defined in any of them is part of the compared schema.
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, MetaData, Numeric, String, Table, func

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Unconstrained NUMERIC keeps every digit the exchange sent; asdecimal makes reads come back as Decimal.
Money = Numeric(asdecimal=True)


def timestamp(name: str = "ts", **kw: object) -> Column:
    return Column(name, DateTime(timezone=True), nullable=False, **kw)  # type: ignore[arg-type]


def created_at() -> Column:
    return Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now())


def about(purpose: str, kind: str = "plain") -> dict[str, str]:
    """``Table.info`` for the table catalogue generated into docs/architecture.md; the schema ignores it.
    Time-series tables are told apart by ``HYPERTABLES``, so ``kind`` only says plain, projection or append-only."""
    return {"purpose": purpose, "kind": kind}


def profile_table(name: str, info: dict[str, str]) -> Table:
    """A risk profile per scope: risk owns the active one, the council keeps its copy in the same shape."""
    return Table(
        name,
        metadata,
        Column("scope", String(16), primary_key=True),
        Column("profile", String(8), nullable=False),
        Column("updated_by", String(200), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        info=info,
    )
