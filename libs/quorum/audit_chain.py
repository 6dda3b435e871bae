"""The audit trail's hash chain: each row carries the hash of the previous one, so an edited, removed or
reordered row is detected by re-walking the chain (the database also refuses UPDATE/DELETE/TRUNCATE)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

GENESIS = "0" * 64
FIELDS = ("event_id", "ts", "actor", "action", "mode", "risk_profile", "status", "details")


def canonical_details(details: Mapping[str, Any]) -> dict[str, Any]:
    """Details as they will read back from JSONB (only JSON types), so the hash is stable across the trip."""
    return json.loads(json.dumps(details, default=str))


def row_hash(prev_hash: str, row: Mapping[str, Any]) -> str:
    parts = []
    for name in FIELDS:
        value = row[name]
        if isinstance(value, datetime):
            value = value.isoformat()
        elif name == "details":
            value = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
        parts.append(f"{name}={value}")
    return hashlib.sha256("\x1f".join([prev_hash, *parts]).encode()).hexdigest()


def verify(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Problems found walking rows in id order: a broken link or a row whose content no longer matches."""
    problems, prev = [], GENESIS
    for r in rows:
        if r["prev_hash"] != prev:
            problems.append(f"audit row {r['id']}: links to {r['prev_hash'][:12]}…, expected {prev[:12]}…")
        if row_hash(r["prev_hash"], r) != r["hash"]:
            problems.append(f"audit row {r['id']}: content does not match its hash (altered)")
        prev = r["hash"]
    return problems
