"""The audit trail's and the journal's chains are keyed (HMAC-SHA256 under QUORUM_CHAIN_KEY); the unkeyed
SHA-256 of the rows written before migration 0008 stays computable, bit for bit, so it can re-chain them."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal as D

import pytest
from quorum import audit_chain
from quorum.db.engine import APP_LOGIN_ROLE, app_database_url
from quorum.domain.ledger import GENESIS_HASH, JournalEntry, Line, legacy_txn_hash, txn_hash, verify_chain
from quorum.runtime.settings import DEV_APP_DB_PASSWORD, DEV_CHAIN_KEY, StackSecrets
from sqlalchemy.engine import make_url

from services.risk.service import RiskSettings

KEY = b"unit-test-chain-key-0123"
LINES = (Line("paper:cash:USDT", "USDT", D("10000")), Line("paper:equity:USDT", "USDT", D("-10000")))
TXN = (GENESIS_HASH, "t-1", "2024-01-01T00:00:00+00:00", "opening balance 10000 USDT", LINES)
ROW = {"id": 1, "event_id": "00000000-0000-0000-0000-000000000001", "ts": datetime(2024, 1, 1, tzinfo=UTC),
       "actor": "USER:admin", "action": "halt", "mode": "PAPER", "risk_profile": "MEDIUM", "status": "CONFIRMED",
       "details": {"reason": "lunch", "n": 1}}
# Digests of TXN and ROW computed by the code before the chains were keyed (git d3f0b0e).
OLD_TXN_DIGEST = "0d57985e46347081ab2fb3dfd18c2e140a7fddf0ab075c48d8b44cb00768ca05"
OLD_ROW_DIGEST = "1abf6deedd0852bcd176322eedf66cef9ccaf8f70e4d694e65fefdcbf661e905"




def test_the_legacy_hashes_are_the_old_codes_digests() -> None:
    assert legacy_txn_hash(*TXN) == OLD_TXN_DIGEST
    assert audit_chain.legacy_row_hash(audit_chain.GENESIS, ROW) == OLD_ROW_DIGEST


def test_the_keyed_hashes_depend_on_the_key_and_differ_from_the_plain_ones() -> None:
    assert txn_hash(*TXN, key=KEY) not in {OLD_TXN_DIGEST, txn_hash(*TXN, key=KEY + b"x")}
    assert audit_chain.row_hash(audit_chain.GENESIS, ROW, key=KEY) not in {
        OLD_ROW_DIGEST, audit_chain.row_hash(audit_chain.GENESIS, ROW, key=KEY + b"x")}


def test_a_row_carrying_a_recomputed_plain_hash_fails_the_keyed_check() -> None:
    """What an owner without the key can do: edit, then recompute the plain hash of the whole chain."""
    forged_row = {**ROW, "actor": "USER:someone-else"}
    forged_row.update(prev_hash=audit_chain.GENESIS, hash=audit_chain.legacy_row_hash(audit_chain.GENESIS, forged_row))
    forged_txn = JournalEntry(1, *TXN[1:], prev_hash=GENESIS_HASH, hash=legacy_txn_hash(*TXN))

    assert audit_chain.verify([forged_row], key=None) == [] and verify_chain([forged_txn], key=None) == []
    assert audit_chain.verify([forged_row], key=KEY) == ["audit row 1: content does not match its hash (altered)"]
    assert verify_chain([forged_txn], key=KEY) == ["seq 1 (t-1): content does not match its hash (altered)"]


def test_a_keyed_chain_verifies_under_its_key_only() -> None:
    row = {**ROW, "prev_hash": audit_chain.GENESIS, "hash": audit_chain.row_hash(audit_chain.GENESIS, ROW, key=KEY)}
    txn = JournalEntry(1, *TXN[1:], prev_hash=GENESIS_HASH, hash=txn_hash(*TXN, key=KEY))

    assert audit_chain.verify([row], key=KEY) == [] and verify_chain([txn], key=KEY) == []
    assert audit_chain.verify([row], key=b"another-key-0123456") and verify_chain([txn], key=b"another-key-0123456")


def test_production_refuses_the_default_chain_key_in_services_and_in_the_stack_steps(
        clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("QUORUM_ENVIRONMENT", "production")
    clean_env.setenv("DATABASE_URL", "postgresql+asyncpg://quorum_service:Xk2-strong-Pw9@db:5432/quorum")
    clean_env.setenv("QUORUM_APP_DB_PASSWORD", "Xk2-strong-Pw9")

    with pytest.raises(ValueError, match=r"default secrets: \['QUORUM_CHAIN_KEY'\]"):
        RiskSettings()
    with pytest.raises(ValueError, match=r"default secrets: \['QUORUM_CHAIN_KEY'\]"):
        StackSecrets()
    clean_env.setenv("QUORUM_CHAIN_KEY", "chain-7Qe2-LmZ9-xV4r-pK81")
    assert RiskSettings().chain_key.get_secret_value() == StackSecrets().chain_key.get_secret_value()


def test_production_refuses_the_default_app_role_password(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("QUORUM_ENVIRONMENT", "production")
    clean_env.setenv("QUORUM_CHAIN_KEY", "chain-7Qe2-LmZ9-xV4r-pK81")

    with pytest.raises(ValueError, match=r"default secrets: \['QUORUM_APP_DB_PASSWORD'\]"):
        StackSecrets()


def test_development_defaults_and_a_short_chain_key_is_refused_by_name(clean_env: pytest.MonkeyPatch) -> None:
    defaults = StackSecrets()
    assert (defaults.chain_key.get_secret_value(), defaults.app_db_password.get_secret_value()) == (
        DEV_CHAIN_KEY, DEV_APP_DB_PASSWORD)
    clean_env.setenv("QUORUM_CHAIN_KEY", "short")
    with pytest.raises(ValueError, match="QUORUM_CHAIN_KEY"):
        StackSecrets()


def test_services_connect_as_the_app_login_role_on_the_owners_server() -> None:
    url = make_url(app_database_url("postgresql://postgres@127.0.0.1:5433/quorum", "s3cret-'pw"))

    assert (url.drivername, url.username, url.password, url.host, url.port, url.database) == (
        "postgresql+asyncpg", APP_LOGIN_ROLE, "s3cret-'pw", "127.0.0.1", 5433, "quorum")
