"""The native stack as a new user meets it: a relative state folder, and CLI commands run beside ``quorum dev``
finding its database through the stack's record instead of the compose defaults."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from quorum.devstack import STACK_FILE, Stack, ports_from_env, running_stack
from quorum.infra.embedded import EmbeddedPostgres

pytestmark = pytest.mark.integration


def test_embedded_postgres_starts_from_a_relative_state_folder(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    pg = EmbeddedPostgres(Path(".quorum/postgres"), durable=False)
    try:
        pg.start()  # postgres changes directory before it creates its socket lock file
        assert pg._psql("SELECT 1") == "1"
    finally:
        pg.stop()
    assert (tmp_path / ".quorum" / "postgres" / "pgdata" / "PG_VERSION").is_file()


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "NATS_URL")}
    return subprocess.run([sys.executable, "-m", "quorum.cli", *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=60)


def test_cli_uses_the_running_stack_record_ignores_a_dead_one_and_a_clean_stop_removes_it(
    tmp_path: Path, database_url: str
) -> None:
    stack = Stack(base_dir=tmp_path / ".quorum", database_url=database_url, nats_url="nats://127.0.0.1:1")
    stack.base_dir.mkdir()
    record = stack.record()
    assert json.loads(record.read_text())["DATABASE_URL"] == database_url

    found = cli(tmp_path, "ledger", "verify")
    assert found.returncode == 0, found.stdout + found.stderr
    assert "hash chain OK" in found.stdout and f"pid {os.getpid()}" in found.stderr

    reused = {**json.loads(record.read_text()), "started": "0"}  # the same pid, another process's start time
    record.write_text(json.dumps(reused))
    assert running_stack((stack.base_dir,)) is None
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    record.write_text(json.dumps({**json.loads(record.read_text()), "pid": int(dead.stdout)}))
    assert running_stack((stack.base_dir,)) is None
    stale = cli(tmp_path, "ledger", "verify")  # back to the compose default, whatever listens there
    assert "native stack" not in stale.stderr, stale.stderr

    stack.record()
    stack.stop()
    assert not (stack.base_dir / STACK_FILE).exists()


def test_http_port_overrides_are_honoured_and_a_bad_one_is_named() -> None:
    ports = ports_from_env({"QUORUM_GATEWAY_HTTP_PORT": "18000", "QUORUM_RISK_HTTP_PORT": "18105"})
    assert ports["gateway"] == 18000 and ports["risk"] == 18105 and ports["oms"] == 8106
    with pytest.raises(ValueError, match="QUORUM_OMS_HTTP_PORT"):
        ports_from_env({"QUORUM_OMS_HTTP_PORT": "eighty"})
    with pytest.raises(ValueError, match="QUORUM_LEDGER_HTTP_PORT"):
        ports_from_env({"QUORUM_LEDGER_HTTP_PORT": "70000"})
