"""The parts of docs/architecture.md that restate code, rendered from that code so they cannot drift.

Each section sits between ``<!-- generated:<name>:start -->`` and ``<!-- generated:<name>:end -->``; the
prose around them is hand-written and left alone. Sources: the event registry (``quorum.events``, with each
payload's ``PRODUCERS``), the topology (``quorum.topology.TOPOLOGY``), the table modules (``quorum.db.tables``)
and the service list (``quorum.devstack``). ``python -m quorum.docs_gen`` rewrites the file; ``--check`` only
says whether it is current (a unit test does the same).
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from quorum.db.tables import HYPERTABLES, OWNERS, metadata
from quorum.devstack import DEFAULT_PORTS, REPO_ROOT, SERVICES
from quorum.events import registered_types
from quorum.events.base import EVERY_SERVICE, Payload
from quorum.subjects import subject
from quorum.topology import DAY, TOPOLOGY, Topology, subjects_overlap

DOC = REPO_ROOT / "docs" / "architecture.md"
COMMAND = "python -m quorum.docs_gen"


def cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def table(header: Iterable[str], rows: Iterable[Iterable[object]]) -> str:
    """A Markdown table (the generated sections of the docs share it)."""
    head = list(header)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _code(items: Iterable[str]) -> str:
    return ", ".join(f"`{i}`" for i in items)


def _seconds(value: float) -> str:
    if value >= DAY:
        return f"{value / DAY:g} days"
    return f"{value / 60:g} min" if value >= 60 else f"{value:g} s"


def _owned_tables(service: str) -> str:
    return ", ".join(name for name, owner in OWNERS.items() if owner == service)


def services_section() -> str:
    """One row per service: its console script (from pyproject.toml), default HTTP port and tables."""
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    entry = {target.split(".")[1]: script for script, target in scripts.items() if target.startswith("services.")}
    return table(("service", "entry point", "HTTP port (default)", "owns tables"), (
        (name, f"`{entry[name]}`", DEFAULT_PORTS[name], _owned_tables(name)) for name in SERVICES))


def _template(cls: type[Payload]) -> str:
    """The subject with each routing key as ``<key>``: ``quorum.md.candle_closed.<exchange>.<symbol>...``."""
    tokens = subject(cls).split(".")
    return ".".join(tokens[:len(tokens) - len(cls.ROUTING)] + [f"<{k}>" for k in cls.ROUTING])


def _catalogue_order(topology: Topology) -> list[type[Payload]]:
    """Stream order, then module and definition order (the registry's order within one module)."""
    registry = list(registered_types().values())

    def stream_index(cls: type[Payload]) -> int:
        return next((i for i, s in enumerate(topology.streams) if any(subjects_overlap(f, subject(cls))
                                                                        for f in s.subjects)), len(topology.streams))

    return sorted(registry, key=lambda c: (stream_index(c), c.__module__, registry.index(c)))


def _producers(cls: type[Payload]) -> str:
    return ", ".join("every service" if p == EVERY_SERVICE else p for p in cls.PRODUCERS) or "(none declared)"


def events_section(topology: Topology = TOPOLOGY) -> str:
    """The event catalogue, then why the types no durable consumer reads are still stored."""
    rows = []
    for cls in _catalogue_order(topology):
        readers = topology.readers(subject(cls))
        rows.append((f"`{_template(cls)}`", f"`{cls.event_type()}` ({cls.__module__.rsplit('.', 1)[-1]})",
                     cls.KIND, cls.SCHEMA_VERSION, _producers(cls),
                     _code(c.durable for c in readers) if readers else "none (see below)"))
    catalogue = table(("subject", "payload (module)", "kind", "schema", "producers", "durable consumers"), rows)
    by_reason: dict[str, list[str]] = {}
    for name, reason in topology.consumed_by_none_reason:
        by_reason.setdefault(reason, []).append(name)
    unread = table(("read by no durable consumer", "why it is stored anyway"),
                    ((_code(sorted(names)), reason) for reason, names in by_reason.items()))
    return catalogue + "\n" + unread


def streams_section(topology: Topology = TOPOLOGY) -> str:
    return table(("stream", "subjects", "holds", "retention", "duplicate window"), (
        (s.name, _code(s.subjects), s.description, _seconds(s.max_age_s), _seconds(s.duplicate_window_s))
        for s in topology.streams))


def consumers_section(topology: Topology = TOPOLOGY) -> str:
    return table(("durable consumer", "stream", "filter", "service", "max_deliver", "ack_wait", "max_ack_pending"), (
        (c.durable, c.stream, _code(c.filters), c.service, c.max_deliver, _seconds(c.ack_wait_s), c.max_ack_pending)
        for c in topology.consumers))


def kv_section(topology: Topology = TOPOLOGY) -> str:
    return table(("KV bucket", "contents", "TTL", "history"), (
        (kv.bucket, kv.description, "none" if kv.ttl_s is None else _seconds(kv.ttl_s), kv.history)
        for kv in topology.kv))


def tables_section() -> str:
    """Every table in ``metadata``, grouped by owner; purpose and kind come from each table's ``info``."""
    def kind(name: str) -> str:
        return "time series" if name in HYPERTABLES else metadata.tables[name].info.get("kind", "plain")

    return table(("table", "owner", "purpose", "kind"), (
        (name, owner, metadata.tables[name].info.get("purpose", ""), kind(name)) for name, owner in OWNERS.items()))


SECTIONS: dict[str, Callable[[], str]] = {
    "services": services_section,
    "events": events_section,
    "streams": streams_section,
    "consumers": consumers_section,
    "kv": kv_section,
    "tables": tables_section,
}


def _marker_pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- generated:{name}:start -->\n).*?(<!-- generated:{name}:end -->)", re.DOTALL)


def render_sections(text: str, sections: Mapping[str, Callable[[], str]], doc: str) -> str:
    """``text`` with every generated section (between its markers) replaced by what the code says now."""
    for name, section in sections.items():
        found = _marker_pattern(name).search(text)
        if found is None:
            raise ValueError(f"{doc} lacks the markers of the generated section {name!r}")
        text = text[:found.end(1)] + "\n" + section() + "\n" + text[found.start(2):]
    return text


def render(text: str) -> str:
    """``text`` with every generated section replaced by what the code says now."""
    return render_sections(text, SECTIONS, "docs/architecture.md")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m quorum.docs_gen", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is not current; write nothing")
    parser.add_argument("--doc", type=Path, default=DOC)
    args = parser.parse_args(argv)
    current = args.doc.read_text()
    wanted = render(current)
    if args.check:
        if wanted != current:
            print(f"{args.doc} is out of date: run `{COMMAND}`", file=sys.stderr)
            return 1
        return 0
    if wanted != current:
        args.doc.write_text(wanted)
        print(f"rewrote the generated sections of {args.doc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
