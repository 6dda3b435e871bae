"""Tamper evidence against the database's owner: the services get a login role of their own, and the audit
trail and the ledger journal are re-chained under a keyed hash.

- ``quorum_service``: LOGIN, a member of ``quorum_app`` (0006), neither owner nor superuser; its password is
  ``QUORUM_APP_DB_PASSWORD``. Created, or its password and attributes reset, at every upgrade. It can read and
  append but cannot lift the triggers, nor UPDATE, DELETE or TRUNCATE the journal and the audit trail.
- ``quorum_app``'s grants are renewed over every table (later migrations' tables included), the append-only
  tables stay append-only, and ``alembic_version`` becomes read-only to it.
- Re-chaining: the existing plain SHA-256 chains are verified first (a migration must not bless an edit:
  a broken chain stops it, naming the rows), then every row's ``prev_hash``/``hash`` is recomputed as
  HMAC-SHA256 under ``QUORUM_CHAIN_KEY`` (refused at its default in production), with the append-only
  triggers lifted by the owner for the duration. Every row then carries one scheme, so no per-row version is
  needed and a downgraded plain hash can never pass. The downgrade verifies the keyed chains and restores
  the plain ones, so downgrading under the old key and upgrading under a new one changes the key.

The roles are cluster-wide (other databases on the server may use them): the downgrade leaves them, as 0006
leaves ``quorum_app``, and revokes what this database gave.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 12:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHAINED = ("audit_log", "ledger_transactions")
APPEND_ONLY = ("audit_log", "ledger_transactions", "ledger_entries")
KEYED_COMMENT = "HMAC-SHA256 (key QUORUM_CHAIN_KEY, outside the database) over prev_hash and this row"
PLAIN_COMMENT = "sha256 over prev_hash and this row"

# The columns as of this revision (not the application's current tables, which may have moved on).
AUDIT = sa.table("audit_log", sa.column("id", sa.BigInteger), sa.column("event_id", postgresql.UUID),
                 sa.column("ts", sa.DateTime(timezone=True)), sa.column("actor"), sa.column("action"),
                 sa.column("mode"), sa.column("risk_profile"), sa.column("status"),
                 sa.column("details", postgresql.JSONB), sa.column("prev_hash"), sa.column("hash"))
TXNS = sa.table("ledger_transactions", sa.column("seq", sa.BigInteger), sa.column("txn_id", postgresql.UUID),
                sa.column("mode"), sa.column("ts", sa.DateTime(timezone=True)), sa.column("description"),
                sa.column("prev_hash"), sa.column("hash"))
ENTRIES = sa.table("ledger_entries", sa.column("id", sa.BigInteger), sa.column("txn_id", postgresql.UUID),
                   sa.column("account"), sa.column("currency"), sa.column("amount", sa.Numeric))


def upgrade() -> None:
    from quorum.runtime.settings import StackSecrets

    secrets = StackSecrets()
    _login_role(secrets.app_db_password.get_secret_value())
    _rechain(old_key=None, new_key=secrets.chain_key.get_secret_value().encode())
    op.alter_column('audit_log', 'hash', existing_type=sa.String(length=64), existing_nullable=False,
                    existing_server_default='', comment=KEYED_COMMENT, existing_comment=PLAIN_COMMENT)


def downgrade() -> None:
    from quorum.runtime.settings import StackSecrets

    _rechain(old_key=StackSecrets().chain_key.get_secret_value().encode(), new_key=None)
    op.alter_column('audit_log', 'hash', existing_type=sa.String(length=64), existing_nullable=False,
                    existing_server_default='', comment=PLAIN_COMMENT, existing_comment=KEYED_COMMENT)
    op.execute("GRANT INSERT, UPDATE, DELETE ON alembic_version TO quorum_app")


def _login_role(password: str) -> None:
    from quorum.db.engine import APP_LOGIN_ROLE

    bind = op.get_bind()
    if bind.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = 'quorum_app'")).first() is None:
        raise RuntimeError("migration 0008: role quorum_app is missing (0006 could not create it): run the "
                           "migrations as a user that may create roles (superuser or CREATEROLE)")
    if "\x00" in password:
        raise ValueError("QUORUM_APP_DB_PASSWORD must not contain NUL bytes")
    secret = "'" + password.replace("'", "''") + "'"
    exists = bind.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": APP_LOGIN_ROLE}).first()
    attributes = f"LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT PASSWORD {secret}"
    try:
        if exists:
            op.execute(f'ALTER ROLE "{APP_LOGIN_ROLE}" {attributes}')
        else:
            op.execute(f'CREATE ROLE "{APP_LOGIN_ROLE}" {attributes}')
        op.execute(f'GRANT quorum_app TO "{APP_LOGIN_ROLE}"')
    except sa.exc.DBAPIError as e:
        raise RuntimeError(f"migration 0008 could not create or update the login role {APP_LOGIN_ROLE}: run the "
                           f"migrations as a user that may create roles (superuser or CREATEROLE): {e.orig}") from e
    owner = bind.execute(sa.text("SELECT tableowner FROM pg_tables WHERE tablename = 'audit_log'")).scalar_one()
    if bind.execute(sa.text("SELECT pg_has_role(:r, :o, 'MEMBER')"), {"r": APP_LOGIN_ROLE, "o": owner}).scalar():
        raise RuntimeError(f"role {APP_LOGIN_ROLE} is a member of the schema owner {owner}: it must not be "
                           f"(REVOKE {owner} FROM {APP_LOGIN_ROLE})")
    op.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO quorum_app")
    op.execute("GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO quorum_app")
    op.execute(f"REVOKE UPDATE, DELETE, TRUNCATE ON {', '.join(APPEND_ONLY)} FROM quorum_app")
    op.execute("REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON alembic_version FROM quorum_app")


def _rechain(old_key: bytes | None, new_key: bytes | None) -> None:
    """Verify both chains under ``old_key`` (None: plain SHA-256), then rewrite them under ``new_key``."""
    from quorum import audit_chain
    from quorum.domain.ledger import GENESIS_HASH, legacy_txn_hash, txn_hash, verify_chain
    from quorum.ledger_books import assemble

    bind = op.get_bind()
    audit = [{**r, "event_id": str(r["event_id"])}
             for r in bind.execute(sa.select(AUDIT).order_by(AUDIT.c.id)).mappings()]
    journals = {}
    for (mode,) in bind.execute(sa.select(TXNS.c.mode).distinct().order_by(TXNS.c.mode)):
        journals[mode] = assemble(
            bind.execute(sa.select(TXNS).where(TXNS.c.mode == mode).order_by(TXNS.c.seq)).all(),
            bind.execute(sa.select(ENTRIES).join(TXNS, TXNS.c.txn_id == ENTRIES.c.txn_id)
                         .where(TXNS.c.mode == mode).order_by(ENTRIES.c.id)).all())
    problems = audit_chain.verify(audit, key=old_key)
    for mode, journal in journals.items():
        problems += [f"ledger {mode} {p}" for p in verify_chain(journal, key=old_key)]
    if problems:
        scheme = "plain SHA-256" if old_key is None else "keyed (QUORUM_CHAIN_KEY)"
        raise RuntimeError(f"refusing to re-chain: the {scheme} chains do not verify, so rows were edited (or, for "
                           f"a keyed chain, QUORUM_CHAIN_KEY is not the key they were written with): "
                           + "; ".join(problems[:20]))

    for table in CHAINED:
        op.execute(f"ALTER TABLE {table} DISABLE TRIGGER {table}_append_only")
    prev, updates = audit_chain.GENESIS, []
    for r in audit:
        digest = (audit_chain.legacy_row_hash(prev, r) if new_key is None
                  else audit_chain.row_hash(prev, r, key=new_key))
        updates.append({"i": r["id"], "p": prev, "h": digest})
        prev = digest
    if updates:
        bind.execute(sa.text("UPDATE audit_log SET prev_hash = :p, hash = :h WHERE id = :i"), updates)
    for journal in journals.values():
        prev, updates = GENESIS_HASH, []
        for e in journal:
            fields = (prev, e.txn_id, e.ts_iso, e.description, e.lines)
            digest = legacy_txn_hash(*fields) if new_key is None else txn_hash(*fields, key=new_key)
            updates.append({"s": e.seq, "p": prev, "h": digest})
            prev = digest
        if updates:
            bind.execute(sa.text("UPDATE ledger_transactions SET prev_hash = :p, hash = :h WHERE seq = :s"),
                         updates)
    for table in CHAINED:
        op.execute(f"ALTER TABLE {table} ENABLE TRIGGER {table}_append_only")
