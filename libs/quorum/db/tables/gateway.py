"""Gateway: the audit trail (other services append to it too), tokens, the master PIN, exchange keys."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, DateTime, Identity, Index, Integer, LargeBinary, String, Table
from sqlalchemy.dialects.postgresql import JSONB, UUID

from quorum.db.tables.base import about, created_at, metadata, timestamp

OWNER = "gateway"

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    timestamp(),
    Column("actor", String(200), nullable=False),
    Column("action", String(64), nullable=False),
    Column("mode", String(8), nullable=False),
    Column("risk_profile", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("details", JSONB, nullable=False),
    Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
    Column("prev_hash", String(64), nullable=False, server_default="0" * 64),
    Column("hash", String(64), nullable=False, server_default="",
           comment="HMAC-SHA256 (key QUORUM_CHAIN_KEY, outside the database) over prev_hash and this row"),
    Index("ix_audit_log_ts", "ts"),
    info=about("operator and system actions: actor, action, mode, risk profile, status, details; "
               "HMAC-chained", kind="plain, append-only (triggers)"),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("token_id", String(16), primary_key=True, comment="public name of the token, used as the audit actor"),
    Column("token_hash", String(64), nullable=False, unique=True, comment="sha256 of the token; never the token"),
    Column("name", String(100), nullable=False),
    Column("role", String(16), nullable=False, comment="viewer, operator or admin"),
    Column("created_by", String(200), nullable=False),
    created_at(),
    Column("revoked_at", DateTime(timezone=True)),
    info=about("bearer tokens: public id, SHA-256 of the token, role (viewer / operator / admin), revocation"),
)

master_pin = Table(
    "master_pin",
    metadata,
    Column("scope", String(16), primary_key=True),
    Column("salt", LargeBinary, nullable=False),
    Column("verifier", LargeBinary, nullable=False, comment="scrypt(PIN) for checking it; the key is derived apart"),
    Column("n", Integer, nullable=False),
    Column("r", Integer, nullable=False),
    Column("p", Integer, nullable=False),
    created_at(),
    info=about("scrypt verifier of the master PIN (salt, cost); never the PIN"),
)

exchange_keys = Table(
    "exchange_keys",
    metadata,
    Column("key_id", UUID(as_uuid=True), primary_key=True),
    Column("exchange", String(32), nullable=False),
    Column("label", String(100), nullable=False),
    Column("api_key_hint", String(16), nullable=False, comment="last 4 characters, to recognise the key"),
    Column("ciphertext", LargeBinary, nullable=False, comment="AES-256-GCM of the key and secret"),
    Column("nonce", LargeBinary, nullable=False),
    Column("can_withdraw", Boolean, comment="as the exchange reported at registration; null: not exposed"),
    Column("created_by", String(200), nullable=False),
    created_at(),
    Column("revoked_at", DateTime(timezone=True)),
    info=about("exchange keys, AES-256-GCM under a PIN-derived key (bound to the key id), last 4 characters, "
               "withdrawal permission"),
)

confirmation_tokens = Table(
    "confirmation_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True, comment="sha256 of the token; the token itself is never stored"),
    Column("actor", String(200), nullable=False),
    Column("action", String(64), nullable=False),
    Column("params_hash", String(64), nullable=False, comment="the confirmed request, so a token cannot be reused"),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True)),
    created_at(),
    info=about("hashed single-use confirmation tokens for dangerous controls, with expiry"),
)
