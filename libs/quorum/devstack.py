"""The native stack: embedded NATS and PostgreSQL (unless NATS_URL / DATABASE_URL are given), migrations,
provisioning, and every service as its own OS process with one combined, prefixed log.

Used by ``quorum dev`` and by the end-to-end tests, so both exercise the same start-up path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from quorum.infra.embedded import EmbeddedNats, EmbeddedPostgres, free_port

SERVICES = ("market_data", "features", "inference", "council", "risk", "oms", "matching", "ledger", "trainer",
            "gateway")
DEFAULT_PORTS = {"gateway": 8000, **{name: 8101 + i for i, name in enumerate(SERVICES[:-1])}}


def ports_from_env(environ: Mapping[str, str]) -> dict[str, int]:
    """Each service's HTTP port: ``QUORUM_<SERVICE>_HTTP_PORT`` where set (two stacks side by side), else the
    documented default."""
    ports = dict(DEFAULT_PORTS)
    for name in SERVICES:
        var = f"QUORUM_{name.upper()}_HTTP_PORT"
        if environ.get(var):
            try:
                ports[name] = int(environ[var])
            except ValueError:
                raise ValueError(f"{var} must be a port number, got {environ[var]!r}") from None
            if not 0 < ports[name] < 65536:
                raise ValueError(f"{var} must be a port number between 1 and 65535, got {ports[name]}")
    return ports
REPO_ROOT = Path(__file__).resolve().parents[2]
STATE_DIR = ".quorum"
STACK_FILE = "stack.json"
STACK_URLS = ("DATABASE_URL", "NATS_URL")


def _started(pid: int) -> str | None:
    """The process's start time (Linux), so a record is not revived by another process reusing its pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _pid_alive(pid: int, started: object = None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    return started is None or _started(pid) in (None, started)


def running_stack(state_dirs: tuple[Path, ...] | None = None) -> tuple[Path, dict[str, object]] | None:
    """The native stack a ``quorum dev`` recorded in a state folder (the working directory's ``.quorum``, then
    the repository's), if its process is still alive; a record left by a dead process is ignored."""
    dirs = state_dirs or (Path.cwd() / STATE_DIR, REPO_ROOT / STATE_DIR)
    for d in dict.fromkeys(p.resolve() for p in dirs):
        path = d / STACK_FILE
        try:
            doc = json.loads(path.read_text())
            pid = int(doc["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if _pid_alive(pid, doc.get("started")):
            return path, doc
    return None


def alembic_ini() -> Path:
    for candidate in (Path(os.environ.get("QUORUM_ALEMBIC_INI", "")), Path.cwd() / "alembic.ini",
                      REPO_ROOT / "alembic.ini"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("alembic.ini not found; run from the repository root or set QUORUM_ALEMBIC_INI")


def migrate(database_url: str, revision: str = "head", *, downgrade: bool = False) -> None:
    """Run Alembic programmatically (its env.py owns the event loop, so call this outside one)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config(str(alembic_ini()))
    cfg.set_main_option("sqlalchemy.url", database_url)
    cfg.attributes["configure_logger"] = False
    (command.downgrade if downgrade else command.upgrade)(cfg, revision)


async def provision_topology(nats_url: str) -> list[str]:
    from quorum.bus.connection import connect, jetstream
    from quorum.bus.provision import provision

    nc = await connect(nats_url, name="quorum-provision")
    try:
        return await provision(jetstream(nc))
    finally:
        await nc.close()


@dataclass
class ServiceProcess:
    name: str
    port: int
    proc: subprocess.Popen[str]
    pump: threading.Thread


@dataclass
class Stack:
    base_dir: Path
    nats_url: str | None = None
    database_url: str | None = None
    ports: Mapping[str, int] = field(default_factory=lambda: ports_from_env(os.environ))
    env: Mapping[str, str] = field(default_factory=dict)
    durable: bool = True
    log: TextIO = sys.stdout
    on_line: Callable[[str, str], None] | None = None
    nats: EmbeddedNats | None = None
    postgres: EmbeddedPostgres | None = None
    procs: dict[str, ServiceProcess] = field(default_factory=dict)
    _log_lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def with_free_ports(cls, base_dir: Path, **kw: object) -> Stack:
        return cls(base_dir=base_dir, ports={name: free_port() for name in SERVICES}, **kw)  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        self.base_dir = Path(self.base_dir).resolve()  # servers and services may run in other directories

    @property
    def record_file(self) -> Path:
        return self.base_dir / STACK_FILE

    def record(self) -> Path:
        """Say where this stack runs, so the CLI (``quorum ledger verify`` ...) finds it without URLs."""
        assert self.database_url and self.nats_url
        doc = {"pid": os.getpid(), "started": _started(os.getpid()), "DATABASE_URL": self.database_url,
               "NATS_URL": self.nats_url, "ports": dict(self.ports)}
        tmp = self.record_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        tmp.replace(self.record_file)
        return self.record_file

    def start_infra(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if self.nats_url is None:
            self.nats = EmbeddedNats(self.base_dir / "nats").start()
            self.nats_url = self.nats.url
            self.say("stack", f"embedded NATS (JetStream) at {self.nats_url}")
        if self.database_url is None:
            self.postgres = EmbeddedPostgres(self.base_dir / "postgres", durable=self.durable).start()
            self.database_url = self.postgres.url()
            self.say("stack", f"embedded PostgreSQL at {self.database_url}")

    def prepare(self) -> None:
        assert self.database_url and self.nats_url
        migrate(self.database_url)
        self.say("stack", "migrations at head")
        for line in asyncio.run(provision_topology(self.nats_url)):
            self.say("provision", line)

    def service_env(self, name: str) -> dict[str, str]:
        assert self.database_url and self.nats_url
        prefix = f"QUORUM_{name.upper()}_"
        from quorum.db.engine import app_database_url  # services connect as the app login role, not the owner

        return {**os.environ, "NATS_URL": self.nats_url, "DATABASE_URL": app_database_url(self.database_url),
                f"{prefix}HTTP_PORT": str(self.ports[name]), f"{prefix}HTTP_HOST": "127.0.0.1",
                "PYTHONUNBUFFERED": "1", **self.registry_env(), **self.env}

    def registry_env(self) -> dict[str, str]:
        """The MLflow store the services share: the one the environment names, else the local store in this
        stack's folder (so a test's stack never reads a developer's models)."""
        given = {**os.environ, **self.env}
        if given.get("QUORUM_MLFLOW_TRACKING_URI") or given.get("QUORUM_MLFLOW_STATE_DIR"):
            return {}
        return {"QUORUM_MLFLOW_STATE_DIR": str(self.base_dir)}

    def ensure_model(self, data_dir: Path) -> None:
        """No untrained first start: train and register a champion from the shared data when the store has none
        (``quorum.learning.bootstrap``), before inference starts and loads it."""
        from tqdm import tqdm

        from quorum.backtest.report import code_version
        from quorum.learning.bootstrap import ensure_champion
        from quorum.learning.settings import RegistrySettings

        env = {k.removeprefix("QUORUM_MLFLOW_").lower(): v for k, v in {**os.environ, **self.env,
                                                                       **self.registry_env()}.items()
               if k.startswith("QUORUM_MLFLOW_")}
        registry = RegistrySettings(**env).registry()
        with tqdm(total=100, unit="%", desc="training the first champion", disable=None, mininterval=0.5,
                  bar_format="{desc}: {bar} {n:.0f}% [{elapsed}]") as bar:
            def progress(p: Any) -> None:
                bar.update(p.percent - bar.n)

            ensure_champion(registry, data_dir, code_version=code_version(), say=lambda m: self.say("model", m),
                            progress=progress)

    def start_service(self, name: str) -> ServiceProcess:
        proc = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}"], env=self.service_env(name), cwd=str(REPO_ROOT),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, start_new_session=True,
        )
        pump = threading.Thread(target=self._pump, args=(name, proc), daemon=True)
        pump.start()
        sp = ServiceProcess(name, self.ports[name], proc, pump)
        self.procs[name] = sp
        return sp

    def start_services(self, names: tuple[str, ...] = SERVICES) -> None:
        for name in names:
            self.start_service(name)

    def wait_ready(self, timeout: float = 60.0, names: tuple[str, ...] | None = None,
                   stopping: Callable[[], bool] = lambda: False) -> None:
        """Until every service answers ``/readyz`` (or ``stopping()`` says Ctrl-C came first)."""
        import httpx

        deadline = time.monotonic() + timeout
        pending = set(names or self.procs)
        while pending and not stopping():
            for name in sorted(pending):
                sp = self.procs[name]
                if sp.proc.poll() is not None:
                    raise RuntimeError(f"service {name} exited with {sp.proc.returncode}")
                try:
                    if httpx.get(f"http://127.0.0.1:{sp.port}/readyz", timeout=1).status_code == 200:
                        pending.discard(name)
                except httpx.HTTPError:
                    pass
            if pending and time.monotonic() > deadline:
                raise TimeoutError(f"services not ready after {timeout}s: {sorted(pending)}")
            if pending:
                time.sleep(0.2)

    def stop_service(self, name: str, timeout: float = 20.0) -> int | None:
        sp = self.procs.pop(name, None)
        if sp is None or sp.proc.poll() is not None:
            return None if sp is None else sp.proc.returncode
        sp.proc.send_signal(signal.SIGTERM)
        try:
            return sp.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            sp.proc.kill()
            return sp.proc.wait(5)

    def stop(self) -> None:
        for name in list(self.procs):
            sp = self.procs[name]
            if sp.proc.poll() is None:
                sp.proc.send_signal(signal.SIGTERM)
        for name in list(self.procs):
            self.stop_service(name)
        if self.postgres:
            self.postgres.stop()
        if self.nats:
            self.nats.stop()
        mine = running_stack((self.base_dir,))
        if mine is not None and mine[1]["pid"] == os.getpid():
            with contextlib.suppress(OSError):
                self.record_file.unlink()

    # --- logs -----------------------------------------------------------------------------------------
    def say(self, who: str, line: str) -> None:
        with self._log_lock:
            self.log.write(f"{who:<12}| {line}\n")
            self.log.flush()
        if self.on_line is not None:
            self.on_line(who, line)

    def _pump(self, name: str, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.say(name, line.rstrip("\n"))
