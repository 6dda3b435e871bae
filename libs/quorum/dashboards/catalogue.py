"""The metric catalogue: every Prometheus metric Quorum's services export (read from the modules that define
them, so it cannot drift), the exporter metrics the dashboards use, and the generated sections of
docs/observability.md that list them and the dashboards."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from prometheus_client.metrics import MetricWrapperBase

from quorum.devstack import REPO_ROOT
from quorum.docs_gen import render_sections, table

DOC = REPO_ROOT / "docs" / "observability.md"

METRIC_MODULES = (
    "quorum.metrics",
    "quorum.telemetry",
    "services.inference.service",
    "services.market_data.service",
    "services.market_data.live",
    "services.risk.service",
)
"""Every module that defines a metric at import time (a unit test checks no other module does)."""

# Sample names per metric type, as Prometheus stores them (prometheus_client strips _total from a counter's
# name and _info from an info's).
_SAMPLES: Mapping[str, tuple[str, ...]] = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "enum": ("",),
}
_QUERIED_AS = {"counter": "_total", "info": "_info", "histogram": "_bucket"}

EXPORTER_METRICS: Mapping[str, frozenset[str]] = {
    # prometheus-nats-exporter -varz -connz -jsz=all (the Pipeline dashboard's NATS row)
    "nats-exporter": frozenset({
        "gnatsd_varz_connections", "gnatsd_varz_slow_consumers", "gnatsd_varz_in_msgs", "gnatsd_varz_out_msgs",
        "jetstream_server_total_message_bytes", "jetstream_consumer_num_pending",
        "jetstream_consumer_num_ack_pending", "jetstream_stream_total_messages",
    }),
    # postgres-exporter's default collectors (the Pipeline dashboard's PostgreSQL row)
    "postgres-exporter": frozenset({
        "pg_up", "pg_stat_database_numbackends", "pg_database_size_bytes", "pg_stat_database_deadlocks",
        "pg_stat_database_xact_commit", "pg_stat_database_xact_rollback", "pg_stat_database_blks_hit",
        "pg_stat_database_blks_read", "pg_locks_count",
    }),
}
PROMETHEUS_METRICS = frozenset({"up"})
"""Series Prometheus writes itself for every target."""


@dataclass(frozen=True)
class Metric:
    name: str
    """As a query names it: ``_total`` for counters, ``_info`` for info metrics, the base name otherwise."""
    type: str
    labels: tuple[str, ...]
    help: str
    module: str

    @property
    def samples(self) -> frozenset[str]:
        base = self.name.removesuffix(_QUERIED_AS.get(self.type, "")) if self.type != "histogram" else self.name
        return frozenset(base + suffix for suffix in _SAMPLES[self.type])


def _labels(metric: MetricWrapperBase) -> tuple[str, ...]:
    # prometheus-client has no public accessor for a metric's label names.
    return tuple(getattr(metric, "_labelnames", ()))


def metrics(modules: Iterable[str] = METRIC_MODULES) -> list[Metric]:
    """Every metric the modules define, sorted by name; one defined twice under one name is an error."""
    found: dict[str, Metric] = {}
    for module_name in modules:
        module = importlib.import_module(module_name)
        for value in vars(module).values():
            if not isinstance(value, MetricWrapperBase):
                continue
            family = value.describe()[0]
            name = family.name + _QUERIED_AS.get(family.type, "") if family.type != "histogram" else family.name
            metric = Metric(name, family.type, _labels(value), family.documentation, module_name)
            if name in found and found[name].module != module_name:
                raise ValueError(f"metric {name} is defined in both {found[name].module} and {module_name}")
            found[name] = metric
    return sorted(found.values(), key=lambda m: m.name)


def queryable_names(catalogue: Iterable[Metric] | None = None) -> frozenset[str]:
    """Every series name a dashboard or an alert may query: Quorum's samples, the exporters' and ``up``."""
    names = {s for m in (metrics() if catalogue is None else catalogue) for s in m.samples}
    for exporter in EXPORTER_METRICS.values():
        names |= exporter
    return frozenset(names | PROMETHEUS_METRICS)


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_SERIES = re.compile(r"\b(?:(?:quorum|gnatsd|jetstream|pg)_[a-z0-9_]*|quorum:[a-z0-9_:]+|up)\b")


def series_in(expr: str) -> set[str]:
    """The series names a PromQL expression reads (Quorum's, the exporters', recording rules' and ``up``);
    label values in quotes are not names."""
    return set(_SERIES.findall(_STRING.sub('""', expr)))


# --- docs/observability.md ------------------------------------------------------------------------------------------
def metrics_section() -> str:
    def labels(m: Metric) -> str:
        if m.type == "info":
            return "set by the service (model, version, run_id, source)"
        return ", ".join(m.labels) or "—"

    return table(("metric", "type", "labels", "meaning", "defined in"),
                  ((f"`{m.name}`", m.type, labels(m), m.help, f"`{m.module}`") for m in metrics()))


def exporters_section() -> str:
    return table(("exporter", "metrics the dashboards read"),
                  ((name, ", ".join(f"`{n}`" for n in sorted(names))) for name, names in EXPORTER_METRICS.items()))


def dashboards_section() -> str:
    from quorum.dashboards import boards, queries

    counted: dict[str, int] = {}
    for q in queries():
        counted[q.dashboard] = counted.get(q.dashboard, 0) + 1
    return table(("dashboard", "file", "open at", "queries", "what it shows"),
                  ((b.title, f"`dashboards/{b.file_name}`", f"`/d/{b.uid}`", counted.get(b.title, 0), b.description)
                   for b in boards()))


SECTIONS: Mapping[str, Callable[[], str]] = {
    "dashboards": dashboards_section,
    "metrics": metrics_section,
    "exporters": exporters_section,
}


def render_doc(text: str) -> str:
    """``text`` with every generated section replaced by what the code says now."""
    return render_sections(text, SECTIONS, "docs/observability.md")
