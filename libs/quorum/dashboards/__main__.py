"""``python -m quorum.dashboards [--check]``: write dashboards/*.json and the generated sections of
docs/observability.md from the code, or (``--check``) exit 1 naming every file that differs.

For a native stack: ``--native-prometheus`` prints a Prometheus configuration scraping it; ``--native-grafana
DIR`` writes Grafana provisioning files for it (the running ``quorum dev``'s database) into DIR."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from quorum.dashboards import render
from quorum.dashboards.catalogue import DOC, render_doc
from quorum.dashboards.native import grafana_provisioning, prometheus_config
from quorum.devstack import REPO_ROOT, ports_from_env, running_stack
from quorum.runtime.settings import DEV_APP_DB_PASSWORD

OUT = REPO_ROOT / "dashboards"
COMMAND = "python -m quorum.dashboards"


def wanted_files(out: Path, doc: Path) -> dict[Path, str | None]:
    """Every file the code decides: its wanted text, or None for a dashboard file the code no longer makes."""
    files: dict[Path, str | None] = {out / name: text for name, text in render().items()}
    files.update({stale: None for stale in sorted(out.glob("*.json")) if stale not in files})
    files[doc] = render_doc(doc.read_text())
    return files


def sync(out: Path, doc: Path, *, check: bool) -> list[str]:
    """Write (or with ``check`` only compare) the generated files; returns what differed, one line each."""
    differing: list[str] = []
    for path, text in wanted_files(out, doc).items():
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        differing.append(f"{path} " + ("is not made by any dashboard" if text is None else
                                       "is missing" if current is None else "differs from what the code generates"))
        if check:
            continue
        if text is None:
            path.unlink()
        else:
            path.write_text(text)
    return differing


def _native_grafana(target: Path, prometheus_url: str) -> None:
    found = running_stack()
    if found is None:
        raise SystemExit("--native-grafana: no running `quorum dev` found (.quorum/stack.json); start `make dev` first")
    _, stack = found
    files = grafana_provisioning(prometheus_url=prometheus_url, database_url=str(stack["DATABASE_URL"]),
                                 password=os.environ.get("QUORUM_APP_DB_PASSWORD", DEV_APP_DB_PASSWORD))
    for name, text in files.items():
        path = target / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a file is not current; write nothing")
    parser.add_argument("--out", type=Path, default=OUT, help="the dashboards folder (default: %(default)s)")
    parser.add_argument("--doc", type=Path, default=DOC, help="the observability doc (default: %(default)s)")
    parser.add_argument("--native-prometheus", action="store_true",
                        help="print a Prometheus configuration scraping a native stack (`make dev` ports, or "
                             "QUORUM_<SERVICE>_HTTP_PORT) with the alert rules, and exit")
    parser.add_argument("--native-grafana", type=Path, metavar="DIR",
                        help="write Grafana provisioning for the running native stack into DIR, and exit")
    parser.add_argument("--prometheus-url", default="http://127.0.0.1:9090",
                        help="the Prometheus --native-grafana points at (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.native_prometheus:
        print(prometheus_config(ports_from_env(os.environ)), end="")
        return 0
    if args.native_grafana is not None:
        _native_grafana(args.native_grafana, args.prometheus_url)
        return 0
    if not args.doc.is_file():
        parser.error(f"--doc {args.doc} does not exist")
    if not args.out.is_dir():
        if args.check:
            parser.error(f"--out {args.out} is not a folder")
        args.out.mkdir(parents=True)
    differing = sync(args.out, args.doc, check=args.check)
    if args.check and differing:
        print("\n".join(differing) + f"\nrun `{COMMAND}` and commit the result", file=sys.stderr)
        return 1
    for line in differing:
        print(line.split(" ", 1)[0] + (" removed" if "not made" in line else " written"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
