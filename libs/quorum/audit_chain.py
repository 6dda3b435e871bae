"""The audit trail's hash chain: each row carries the hash of the previous one, so an edited, removed or
reordered row is detected by re-walking the chain (the database also refuses UPDATE/DELETE/TRUNCATE).

The hash is an HMAC-SHA256 under a key kept outside the database (``QUORUM_CHAIN_KEY``): the database's owner
can lift the triggers and edit a row, but cannot compute the hash that would make the edit pass. Rows written
before the key existed were re-chained under it by migration 0008, once their plain SHA-256 chain verified."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

GENESIS = "0" * 64
FIELDS = ("event_id", "ts", "actor", "action", "mode", "risk_profile", "status", "details")


def canonical_details(details: Mapping[str, Any]) -> dict[str, Any]:
    """Details as they will read back from JSONB (only JSON types), so the hash is stable across the trip."""
    return json.loads(json.dumps(details, default=str))


def _body(prev_hash: str, row: Mapping[str, Any]) -> bytes:
    parts = []
    for name in FIELDS:
        value = row[name]
        if isinstance(value, datetime):
            value = value.isoformat()
        elif name == "details":
            value = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
        parts.append(f"{name}={value}")
    return "\x1f".join([prev_hash, *parts]).encode()


def row_hash(prev_hash: str, row: Mapping[str, Any], *, key: bytes) -> str:
    return hmac.new(key, _body(prev_hash, row), hashlib.sha256).hexdigest()


def legacy_row_hash(prev_hash: str, row: Mapping[str, Any]) -> str:
    """The unkeyed SHA-256 of rows written before migration 0008 (it re-chains them; nothing else uses it)."""
    return hashlib.sha256(_body(prev_hash, row)).hexdigest()


def verify(rows: Iterable[Mapping[str, Any]], *, key: bytes | None) -> list[str]:
    """Problems found walking rows in id order: a broken link or a row whose content no longer matches.
    ``key=None`` checks the legacy unkeyed chain (for migration 0008)."""
    problems, prev = [], GENESIS
    for r in rows:
        if r["prev_hash"] != prev:
            problems.append(f"audit row {r['id']}: links to {r['prev_hash'][:12]}…, expected {prev[:12]}…")
        expected = legacy_row_hash(r["prev_hash"], r) if key is None else row_hash(r["prev_hash"], r, key=key)
        if expected != r["hash"]:
            problems.append(f"audit row {r['id']}: content does not match its hash (altered)")
        prev = r["hash"]
    return problems
