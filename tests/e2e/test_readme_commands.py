"""The README's commands as a new user types them: a fresh clone, ``make dev``, the safe curl examples over real
HTTP, the ledger and audit checks from the clone's directory against the running stack, then Ctrl-C.

The clone is this working tree (committed HEAD plus the uncommitted files over it) with relative ``.quorum``
state, exactly as a fresh clone has. It reuses the virtual environment the tests run in (``.venv`` is a link
to it, and ``make`` sees it up to date, so nothing is installed); ``PYTHONPATH`` points at the clone so its
code runs, as the editable install of a real clone would. HTTP ports are overridden with free ones
(``QUORUM_<SERVICE>_HTTP_PORT``), so this runs beside anything else listening on 8000.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from quorum.devstack import SERVICES, STACK_FILE
from quorum.infra.embedded import free_port

from tests.support import DATA_DIR, REPO_ROOT

pytestmark = pytest.mark.e2e

SAFE = ("/status", "/orders", "/fills", "/positions", "/balances", "/audit", "/controls/halt", "/controls/resume")
VERIFY = ".venv/bin/quorum ledger verify && .venv/bin/quorum ledger rebuild && .venv/bin/quorum audit verify"
REPLAY = ".venv/bin/quorum replay"


def readme_curls() -> list[str]:
    """The README's read and halt/resume examples, verbatim (so the test follows the README)."""
    lines = [ln.strip() for ln in (REPO_ROOT / "README.md").read_text().splitlines()]
    assert VERIFY in lines, "the README's ledger/audit command changed; update this test"
    picked = []
    for ln in lines:
        url = re.search(r"localhost:8000(/[^\s\"?]*)", ln)
        if ln.startswith("curl -s") and url and url.group(1) in SAFE:
            picked.append(ln)
    return picked


def replay_when_settled(clone: Path, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``quorum replay`` as the README shows it; while the stack still works through its candles the recorded
    decisions trail the stored candles, so it is run again until they agree (it only reads)."""
    deadline = time.monotonic() + timeout
    while True:
        done = subprocess.run(["bash", "-c", REPLAY], cwd=clone, env=env, capture_output=True, text=True, timeout=180)
        if done.returncode == 0 or time.monotonic() > deadline:
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
            return done
        time.sleep(2)


def fresh_clone(dest: Path) -> Path:
    """``git clone`` of the repository, then the working tree's current files over it."""
    subprocess.run(["git", "clone", "--quiet", str(REPO_ROOT), str(dest)], check=True, timeout=120)
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO_ROOT, check=True, capture_output=True, timeout=60).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        src, dst = REPO_ROOT / rel, dest / rel
        if src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
        elif dst.is_file():  # deleted in the working tree
            dst.unlink()
    return dest


def link_venv(clone: Path) -> None:
    """``.venv`` in the clone is the interpreter's own venv; make must see it installed (or we skip)."""
    venv = Path(sys.prefix)
    stamp = venv / ".quorum-installed"
    if sys.prefix == sys.base_prefix or not stamp.is_file():
        pytest.skip(f"needs the tests to run in a virtual environment made by `make install` ({stamp} missing)")
    (clone / ".venv").symlink_to(venv, target_is_directory=True)
    before = stamp.stat().st_mtime - 60
    os.utime(clone / "pyproject.toml", (before, before))  # the copy is newer than the stamp: would reinstall
    if subprocess.run(["make", "-q", "install"], cwd=clone, timeout=30).returncode != 0:
        pytest.skip("make would reinstall the project into the shared virtual environment")


def _stragglers(clone: Path) -> list[int]:
    """Processes still running from the clone (services run in its directory, servers on its .quorum)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().decode(errors="replace")
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if str(clone) in cmd or cwd == str(clone):
            found.append(int(proc.name))
    return found


class Dev:
    """``make dev`` in its own process group (as a terminal runs it), its output collected line by line."""

    def __init__(self, clone: Path, env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(["make", "dev", "DEV_ARGS=--limit 30"], cwd=clone, env=env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            sys.stderr.write(line)

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in ln for ln in self.lines):
            if self.proc.poll() is not None:
                raise AssertionError(f"make dev exited with {self.proc.returncode} before {text!r}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} from make dev within {timeout}s")
            time.sleep(0.2)

    def ctrl_c(self, timeout: float = 90) -> int:
        os.killpg(self.proc.pid, signal.SIGINT)  # the terminal sends Ctrl-C to the whole foreground group
        rc = self.proc.wait(timeout)
        self._pump.join(5)
        return rc


@pytest.fixture
def clone(tmp_path: Path) -> Iterator[Path]:
    if not (DATA_DIR / "ohlcv" / "binance_BTCUSDT_1h.csv").is_file():
        pytest.skip(f"market data not found in {DATA_DIR}: set QUORUM_DATA_DIR to the shared data folder")
    if shutil.which("git") is None or shutil.which("make") is None or shutil.which("curl") is None:
        pytest.skip("needs git, make and curl, as the README does")
    if not (REPO_ROOT / ".git").exists():
        pytest.skip(f"{REPO_ROOT} is not a git checkout")
    repo = fresh_clone(tmp_path / "quorum")
    link_venv(repo)
    try:
        yield repo
    finally:
        for pid in _stragglers(repo):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_readme_commands_work_from_a_fresh_clone_against_a_real_make_dev(clone: Path) -> None:
    ports = {name: free_port() for name in SERVICES}
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("QUORUM_") and k not in ("DATABASE_URL", "NATS_URL", "PYTHONPATH", "VIRTUAL_ENV")}
    env.update({"PYTHONPATH": f"{clone / 'libs'}:{clone}", "QUORUM_DATA_DIR": str(DATA_DIR),
                **{f"QUORUM_{name.upper()}_HTTP_PORT": str(port) for name, port in ports.items()}})
    gateway = f"localhost:{ports['gateway']}"
    dev = Dev(clone, env)
    try:
        dev.wait_for("paper routing authorization", timeout=240)
        assert any("paper routing authorization: 200" in ln for ln in dev.lines)
        assert httpx.get(f"http://{gateway}/readyz", timeout=5).status_code == 200  # the overridden port

        record = json.loads((clone / ".quorum" / STACK_FILE).read_text())
        assert record["ports"]["gateway"] == ports["gateway"]

        curls = readme_curls()
        assert len(curls) == len(SAFE), curls
        for line in curls:
            typed = "TOKEN=dev-token-change-me\n" + line.replace("localhost:8000", gateway) + " -w '\\n%{http_code}'"
            done = subprocess.run(["bash", "-c", typed], cwd=clone, capture_output=True, text=True, timeout=60)
            body, _, status = done.stdout.rpartition("\n")
            assert done.returncode == 0 and status == "200", f"{line}\n-> {status}: {body[:500]}"
            json.loads(body)

        books = subprocess.run(["bash", "-c", VERIFY], cwd=clone, env=env, capture_output=True, text=True,
                               timeout=180)
        assert books.returncode == 0, books.stdout + books.stderr
        assert "PAPER ledger: hash chain OK" in books.stdout
        assert "PAPER ledger: projections vs journal OK" in books.stdout
        audited = re.search(r"audit trail: (\d+) rows, hash chain OK", books.stdout)
        assert audited and int(audited.group(1)) >= 3, books.stdout  # routing authorized, halt, resume
        assert f"pid {record['pid']}" in books.stderr  # found through the running stack's record

        assert any(ln.startswith(REPLAY + " ") or ln == REPLAY for ln in (REPO_ROOT / "README.md").read_text()
                   .splitlines()), "the README's replay command changed; update this test"
        replayed = replay_when_settled(clone, env)
        summary = json.loads(replayed.stdout.strip().splitlines()[-1])
        assert summary["differences"] == 0 and summary["compared"]["candles"] >= 30, replayed.stdout[-2000:]
        assert summary["compared"]["decisions"] == summary["compared"]["candles"]
    finally:
        rc = dev.ctrl_c()
    # make re-raises the Ctrl-C it forwarded once its child is done, as it does in a terminal.
    assert rc in (0, -signal.SIGINT), rc
    assert any(ln.startswith("stack") and ln.endswith("| stopped") for ln in dev.lines[-3:]), dev.lines[-3:]
    assert not [ln for ln in dev.lines if "Traceback" in ln]
    assert not (clone / ".quorum" / STACK_FILE).exists()
    assert _stragglers(clone) == []
