"""Tamper evidence against the database's owner, on a real PostgreSQL: the services' login role cannot touch
the journal or the audit trail; the owner can, but an edit with recomputed (plain SHA-256) hashes is reported
by ``quorum audit verify`` and ``quorum ledger verify`` run as the real CLI; migration 0008 re-keys the plain
chains of existing rows, and refuses to bless rows that were already edited."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import SecretStr
from quorum import audit_chain, ledger_books
from quorum.clock import TestClock
from quorum.db.engine import APP_LOGIN_ROLE, app_database_url, create_engine
from quorum.db.tables import audit_log
from quorum.devstack import Stack, migrate
from quorum.domain.ledger import GENESIS_HASH, fill_lines, legacy_txn_hash, opening_balance
from quorum.runtime.audit import record_audit
from quorum.runtime.handling import Context
from quorum.types import Side, TradingMode
from sqlalchemy import select, text

from services.ledger.service import post
from tests.support import REPO_ROOT, run_sql

pytestmark = pytest.mark.integration

KEY = "integration-chain-key-4f1c9e"
PAPER = TradingMode.PAPER
T0 = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture
def chain_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """The key the migrations, the writers and the CLI all read (``QUORUM_CHAIN_KEY``)."""
    monkeypatch.setenv("QUORUM_CHAIN_KEY", KEY)
    return KEY


async def write_history(url: str, key: str) -> None:
    """Three audited actions and three journal transactions, through the real writers."""
    engine = create_engine(url)
    clock = TestClock(T0)
    try:
        for i, action in enumerate(("trading_mode_switch", "token_create", "routing_authorize")):
            async with engine.begin() as conn:
                ctx = Context(conn=conn, clock=clock, service="test")
                await record_audit(ctx, actor="USER:admin", action=action, mode="PAPER", risk_profile="MEDIUM",
                                   status="CONFIRMED", details={"n": i}, key=f"action-{i}", chain_key=SecretStr(key))
                lines = (opening_balance(PAPER, "USDT", Decimal(10000)) if i == 0 else
                         fill_lines(PAPER, "BTC/USDT", Side.BUY, Decimal("0.01"), Decimal(30000), Decimal("0.3"),
                                    "USDT"))
                await post(ctx, PAPER, uuid.uuid4(), clock.now(), f"txn {i}", lines, None, chain_key=SecretStr(key))
            clock.set(clock.now() + timedelta(hours=1))
    finally:
        await engine.dispose()


async def edit_and_rehash_plainly(owner_url: str, *edits: str) -> None:
    """What the database's owner can do without the key: lift the triggers, edit, recompute every hash with the
    unkeyed SHA-256 exactly as the code before 0008 did, put the triggers back."""
    engine = create_engine(owner_url)
    try:
        async with engine.begin() as conn:
            for table in ("audit_log", "ledger_transactions", "ledger_entries"):
                await conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
            for sql in edits:
                await conn.execute(text(sql))
            prev = audit_chain.GENESIS
            for r in (await conn.execute(select(audit_log).order_by(audit_log.c.id))).all():
                digest = audit_chain.legacy_row_hash(prev, {**r._mapping, "event_id": str(r.event_id)})
                await conn.execute(text("UPDATE audit_log SET prev_hash = :p, hash = :h WHERE id = :i"),
                                   {"p": prev, "h": digest, "i": r.id})
                prev = digest
            prev = GENESIS_HASH
            for e in await ledger_books.load_journal(conn, PAPER):
                digest = legacy_txn_hash(prev, e.txn_id, e.ts_iso, e.description, e.lines)
                await conn.execute(text("UPDATE ledger_transactions SET prev_hash = :p, hash = :h WHERE seq = :s"),
                                   {"p": prev, "h": digest, "s": e.seq})
                prev = digest
            for table in ("audit_log", "ledger_transactions", "ledger_entries"):
                await conn.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER USER"))
    finally:
        await engine.dispose()


async def chain_problems(url: str, key: bytes | None) -> tuple[list[str], list[str]]:
    """(audit, ledger) problems under ``key`` (None: the unkeyed scheme the code used before 0008)."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            rows = [{**r._mapping, "event_id": str(r.event_id)}
                    for r in (await conn.execute(select(audit_log).order_by(audit_log.c.id))).all()]
            journal = await ledger_books.load_journal(conn, PAPER)
    finally:
        await engine.dispose()
    from quorum.domain.ledger import verify_chain

    return audit_chain.verify(rows, key=key), verify_chain(journal, key=key)


def cli(url: str, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "quorum.cli", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          env={**os.environ, "DATABASE_URL": url, "QUORUM_CHAIN_KEY": key}, timeout=60)


EDITS = ("UPDATE audit_log SET actor = 'USER:someone-else' WHERE id = (SELECT min(id) FROM audit_log)",
         "UPDATE ledger_entries SET amount = amount * 2 WHERE txn_id = (SELECT txn_id FROM ledger_transactions "
         "ORDER BY seq LIMIT 1)")


async def test_an_owner_edit_with_recomputed_plain_hashes_fails_audit_and_ledger_verify(
        database_url: str, chain_key: str) -> None:
    await write_history(app_database_url(database_url), chain_key)
    clean = [cli(database_url, chain_key, "audit", "verify"), cli(database_url, chain_key, "ledger", "verify")]
    wrong_key = cli(database_url, "not-the-services-key-0123", "audit", "verify")

    await edit_and_rehash_plainly(database_url, *EDITS)
    forged_unkeyed = await chain_problems(database_url, None)
    audit = cli(database_url, chain_key, "audit", "verify")
    ledger = cli(database_url, chain_key, "ledger", "verify")

    assert [c.returncode for c in clean] == [0, 0], [c.stdout + c.stderr for c in clean]
    assert "3 rows, hash chain OK" in clean[0].stdout and "PAPER ledger: hash chain OK" in clean[1].stdout
    assert wrong_key.returncode == 1  # the key is what the chain rests on
    assert forged_unkeyed == ([], [])  # the forgery is perfect against the unkeyed scheme the code used before
    assert audit.returncode == 1 and "audit row" in audit.stdout and "altered" in audit.stdout, audit.stdout
    assert ledger.returncode == 1 and "altered" in ledger.stdout, ledger.stdout
    assert "3 problems" in audit.stdout  # every row's hash was recomputed, so none carries a keyed hash


@pytest.mark.parametrize("statement", [
    "ALTER TABLE audit_log DISABLE TRIGGER ALL",
    "ALTER TABLE ledger_transactions DISABLE TRIGGER USER",
    "ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_append_only",
    "DROP TRIGGER audit_log_append_only ON audit_log",
    "SET session_replication_role = replica",
    "UPDATE audit_log SET status = 'EDITED'",
    "DELETE FROM audit_log",
    "TRUNCATE audit_log",
    "UPDATE ledger_transactions SET description = 'edited'",
    "DELETE FROM ledger_entries",
    "TRUNCATE ledger_transactions",
    "UPDATE alembic_version SET version_num = '0001'",
    "CREATE OR REPLACE FUNCTION quorum_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
])
async def test_the_service_login_role_cannot_lift_the_triggers_nor_change_journal_and_audit(
        database_url: str, chain_key: str, statement: str) -> None:
    app_url = app_database_url(database_url)
    await write_history(app_url, chain_key)  # it can do what the services do: read and append
    engine = create_engine(app_url)
    try:
        with pytest.raises(Exception, match="must be owner|permission denied"):
            async with engine.begin() as conn:
                await conn.execute(text(statement))
    finally:
        await engine.dispose()


def test_the_service_login_role_is_neither_owner_nor_superuser(database_url: str) -> None:
    app_url = app_database_url(database_url).replace("postgresql+asyncpg", "postgresql")
    me = run_sql(app_url, "SELECT current_user AS name, r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolbypassrls, "
                          "pg_has_role(current_user, 'quorum_app', 'MEMBER') AS app FROM pg_roles r "
                          "WHERE r.rolname = current_user")
    owned = run_sql(app_url, "SELECT count(*) AS n FROM pg_tables WHERE schemaname = 'public' "
                             "AND tableowner = current_user")

    assert me == [{"name": APP_LOGIN_ROLE, "rolsuper": False, "rolcreaterole": False, "rolcreatedb": False,
                   "rolbypassrls": False, "app": True}]
    assert owned == [{"n": 0}]


def test_migration_0008_re_keys_plain_chains_and_the_downgrade_restores_them(
        empty_database_url: str, chain_key: str) -> None:
    url = empty_database_url
    migrate(url)
    asyncio.run(write_history(url, chain_key))
    migrate(url, "0007", downgrade=True)
    asyncio.run(edit_and_rehash_plainly(url))  # no edit: rows exactly as the code before 0008 wrote them
    before = asyncio.run(chain_problems(url, None))

    migrate(url)
    keyed, unkeyed = asyncio.run(chain_problems(url, chain_key.encode())), asyncio.run(chain_problems(url, None))
    migrate(url, "0007", downgrade=True)
    restored = asyncio.run(chain_problems(url, None))

    assert before == ([], [])
    assert keyed == ([], [])
    assert len(unkeyed[0]) >= 3 and len(unkeyed[1]) >= 3  # every row now carries a keyed hash
    assert restored == ([], [])


def test_migration_0008_refuses_to_re_key_a_chain_that_was_already_edited(
        empty_database_url: str, chain_key: str) -> None:
    url = empty_database_url
    migrate(url)
    asyncio.run(write_history(url, chain_key))
    migrate(url, "0007", downgrade=True)
    asyncio.run(edit_and_rehash_plainly(url))
    run_sql(url, "ALTER TABLE audit_log DISABLE TRIGGER USER")  # an edit behind the triggers' back, hash kept
    run_sql(url, "UPDATE audit_log SET actor = 'USER:someone-else' WHERE id = (SELECT max(id) FROM audit_log)")
    run_sql(url, "ALTER TABLE audit_log ENABLE TRIGGER USER")

    with pytest.raises(RuntimeError, match=r"refusing to re-chain.*plain SHA-256.*audit row \d+: content"):
        migrate(url)
    assert run_sql(url, "SELECT version_num FROM alembic_version") == [{"version_num": "0007"}]


def test_native_services_connect_as_the_login_role_and_write_keyed_chains(
        tmp_path: Path, nats_url: str, database_url: str, chain_key: str) -> None:
    stack = Stack.with_free_ports(tmp_path / "stack", nats_url=nats_url, database_url=database_url, log=sys.stderr,
                                  env={"QUORUM_ENVIRONMENT": "test"})
    stack.prepare()
    try:
        stack.start_services(("ledger",))
        stack.wait_ready(timeout=60)
        users = run_sql(database_url, "SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = "
                                      "current_database() AND pid <> pg_backend_pid()")
    finally:
        stack.stop()
    verified = cli(database_url, chain_key, "ledger", "verify")

    assert users == [{"usename": APP_LOGIN_ROLE}]
    assert verified.returncode == 0 and "PAPER ledger: hash chain OK" in verified.stdout, verified.stdout
    assert run_sql(database_url, "SELECT count(*) AS n FROM ledger_transactions") == [{"n": 1}]  # the opening
