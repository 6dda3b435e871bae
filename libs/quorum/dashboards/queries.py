"""Every query the dashboards run, read back from the generated JSON (so the list is what Grafana gets), and the
substitution of Grafana's template variables and macros that turns one into text Prometheus or PostgreSQL can
evaluate directly (the proof that every panel returns data runs them that way)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from quorum.dashboards.panels import ALL

Kind = Literal["promql", "sql"]
Values = Mapping[str, str | Sequence[str]]

# Metrics that only an exporter supplies (Quorum's services export everything else): name prefix -> exporter.
EXPORTERS = {"gnatsd_": "nats-exporter", "jetstream_": "nats-exporter", "pg_": "postgres-exporter"}
_EXPORTER_METRIC = re.compile(r"\b(" + "|".join(EXPORTERS) + r")[a-z0-9_]+")
_VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)")
_TIME_MACRO = re.compile(r"\$__(timeFilter|timeFrom|timeTo)\(\s*([^)]*?)\s*\)")
_DURATION = re.compile(r"^\d+(ms|s|m|h|d|w|y)$")


@dataclass(frozen=True)
class Query:
    """One query of one panel (or of an annotation), as the dashboard JSON holds it."""

    kind: Kind
    dashboard: str
    panel: str
    text: str
    variables: tuple[str, ...] = ()
    """The dashboard's template variable names, the only ``$names`` the text may use."""

    @property
    def requires(self) -> str | None:
        """The exporter whose metrics it reads ("nats-exporter", "postgres-exporter"); None: Quorum's own."""
        if self.kind != "promql":
            return None
        found = _EXPORTER_METRIC.search(self.text)
        return EXPORTERS[found.group(1)] if found else None

    def evaluable(self, *, start: datetime, end: datetime, values: Values | None = None, interval: str = "5s",
                  rate_interval: str = "1m") -> str:
        """The text with variables and macros replaced as Grafana would for that range; a variable not in
        ``values`` is "All" (values of variables this dashboard lacks are ignored, so one mapping serves every
        query). Raises ValueError naming anything it cannot replace."""
        return substitute(self.text, self.kind, variables=self.variables, start=start, end=end, values=values,
                          interval=interval, rate_interval=rate_interval)


def substitute(text: str, kind: Kind, *, variables: Sequence[str], start: datetime, end: datetime,
               values: Values | None = None, interval: str = "5s", rate_interval: str = "1m") -> str:
    """Replace Grafana's macros (``$__timeFilter(col)``, ``$__timeFrom()``, ``$__timeTo()``, ``$__interval``,
    ``$__rate_interval``, ``$__range``) and template variables (``$name``, ``${name}``, ``${name:regex}``)."""
    if kind not in ("promql", "sql"):
        raise ValueError(f"kind must be 'promql' or 'sql', got {kind!r}")
    for name, moment in (("start", start), ("end", end)):
        if moment.tzinfo is None:
            raise ValueError(f"{name} must be timezone-aware, got {moment!r}")
    if end <= start:
        raise ValueError(f"end ({end.isoformat()}) must be after start ({start.isoformat()})")
    for name, duration in (("interval", interval), ("rate_interval", rate_interval)):
        if not _DURATION.match(duration):
            raise ValueError(f"{name} must be a Prometheus duration such as 15s or 1m, got {duration!r}")
    values = dict(values or {})  # values of variables another dashboard has are ignored: one mapping serves all

    if kind == "sql":
        text = _TIME_MACRO.sub(lambda m: _time_macro(m.group(1), m.group(2), start, end), text)
    builtins = {"__rate_interval": rate_interval, "__interval": interval,
                "__range": f"{max(1, round((end - start).total_seconds()))}s"}

    def replace(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3)
        if name in builtins:
            return builtins[name]
        if name not in variables:
            raise ValueError(f"{kind} query uses ${name}, which is neither a variable of its dashboard "
                             f"{list(variables)} nor a macro this helper knows")
        return _format(values.get(name), m.group(2), kind)

    return _VARIABLE.sub(replace, text)


def _time_macro(macro: str, argument: str, start: datetime, end: datetime) -> str:
    frm, to = (f"'{t.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}'" for t in (start, end))
    if macro == "timeFilter":
        if not argument:
            raise ValueError("$__timeFilter needs a column: $__timeFilter(ts)")
        return f"{argument} BETWEEN {frm} AND {to}"
    return frm if macro == "timeFrom" else to


def _format(value: str | Sequence[str] | None, fmt: str | None, kind: Kind) -> str:
    """A variable's value as Grafana formats it: "All" stays the raw ``.*``; chosen values are regex-escaped
    and joined as ``(a|b)`` (in PromQL strings, backslashes doubled too)."""
    if fmt not in (None, "regex"):
        raise ValueError(f"variable format {fmt!r} is not one the dashboards use (regex)")
    if value is None or value == ALL:
        return ALL
    chosen = [value] if isinstance(value, str) else list(value)
    if not chosen:
        raise ValueError("a variable needs at least one value (or none given, for All)")
    escaped = [re.escape(v) for v in chosen]
    if kind == "promql":
        escaped = [e.replace("\\", "\\\\") for e in escaped]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def extract(doc: Mapping[str, Any]) -> Iterator[Query]:
    """The queries of one dashboard's JSON: panel targets (rows' nested panels too) and annotations."""
    title = str(doc.get("title", ""))
    variables = tuple(v["name"] for v in doc.get("templating", {}).get("list", []))
    for panel in _panels(doc.get("panels", [])):
        for target in panel.get("targets", []):
            yield from _target(target, title, str(panel.get("title", "")), variables)
    for annotation in doc.get("annotations", {}).get("list", []):
        if annotation.get("builtIn"):
            continue
        yield from _target(annotation.get("target", {}), title, f"annotation: {annotation.get('name', '')}",
                           variables)


def _panels(panels: Sequence[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _target(target: Mapping[str, Any], dashboard: str, panel: str, variables: tuple[str, ...]) -> Iterator[Query]:
    if "rawSql" in target:
        yield Query("sql", dashboard, panel, target["rawSql"], variables)
    elif "expr" in target:
        yield Query("promql", dashboard, panel, target["expr"], variables)
