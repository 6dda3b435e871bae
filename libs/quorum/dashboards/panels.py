"""The pieces every Quorum dashboard is made of: the two provisioned datasources, the two query kinds (PromQL
and raw SQL), one function per panel kind, the template variables and the audit-trail annotations.

Panels differ only in what they query and how a value reads (unit, mappings), so each kind is written once
here; a dashboard module lists panels, never JSON.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Self

from grafana_foundation_sdk.builders import bargauge, heatmap, prometheus, stat, statetimeline, table, timeseries, trend
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (
    AnnotationTarget,
    DashboardCursorSync,
    DashboardLinkType,
    DataSourceRef,
    DataTransformerConfig,
    DynamicConfigValue,
    Threshold,
    ThresholdsMode,
    ValueMap,
    ValueMappingResult,
    VariableOption,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

# The uids deploy/grafana/provisioning/datasources/datasources.yml gives them (a test holds the two together).
PROMETHEUS = DataSourceRef(type_val="prometheus", uid="prometheus")
POSTGRES = DataSourceRef(type_val="grafana-postgresql-datasource", uid="quorum-pg")

# Default time range: Prometheus stores every sample at the wall-clock time it was scraped, live or replay alike,
# and a replay at full speed (`quorum dev`, compose's REPLAY_SPEED=0) runs its candles in minutes, so the last
# hour holds a replay that just ran as well as the last hour of live trading. Panels that read market time (the
# candles, fills, orders and decisions tables) are not filtered by the range: they show the latest rows, so a
# replay of 2020 shows up too. Annotations come from audit_log.ts, which is wall-clock time.
DEFAULT_TIME = ("now-1h", "now")
REFRESH = "10s"
REFRESH_CHOICES = ["5s", "10s", "30s", "1m", "5m"]
TAG = "quorum"
ALL = ".*"
"""What a variable's "All" stands for: a regex, raw (Grafana does not format a custom all value), so queries
match with =~ in PromQL and ~ in SQL."""

FULL, HALF, THIRD, QUARTER, SIXTH = 24, 12, 8, 6, 4


# --- queries -------------------------------------------------------------------------------------------------------
class SqlQuery(cogvariants.Dataquery):
    """A raw-SQL target of Grafana's PostgreSQL datasource: the SDK ships builders for many datasources, not
    this one, and a target is only its JSON."""

    def __init__(self, raw_sql: str, format_val: str = "table", ref_id: str = "A") -> None:
        self.raw_sql = raw_sql
        self.format_val = format_val
        self.ref_id = ref_id

    def to_json(self) -> dict[str, object]:
        return {"datasource": POSTGRES, "editorMode": "code", "format": self.format_val, "rawQuery": True,
                "rawSql": self.raw_sql, "refId": self.ref_id}


class Sql(cogbuilder.Builder[SqlQuery]):
    def __init__(self, raw_sql: str, *, time_series: bool = False) -> None:
        if not raw_sql.strip():
            raise ValueError("an SQL target needs a query")
        self._internal = SqlQuery(raw_sql.strip(), "time_series" if time_series else "table")

    def ref_id(self, ref_id: str) -> Self:
        self._internal.ref_id = ref_id
        return self

    def build(self) -> SqlQuery:
        return self._internal


class SqlAnnotationTarget(AnnotationTarget):
    """An annotation's target as the PostgreSQL datasource reads it (rows of time, text, tags), where the SDK's
    target only knows Grafana's own annotation store (limit, tags)."""

    def __init__(self, raw_sql: str) -> None:
        super().__init__()
        self.raw_sql = raw_sql

    def to_json(self) -> dict[str, object]:
        return SqlQuery(self.raw_sql, "table", "Anno").to_json()


class _SqlAnnotation(cogbuilder.Builder[AnnotationTarget]):
    def __init__(self, raw_sql: str) -> None:
        self._internal = SqlAnnotationTarget(raw_sql)

    def build(self) -> AnnotationTarget:
        return self._internal


Target = prometheus.Dataquery | Sql


def prom(expr: str, legend: str = "", *, instant: bool = False, table_format: bool = False,
         heatmap_format: bool = False) -> prometheus.Dataquery:
    """A PromQL target; ``legend`` uses {{label}} placeholders."""
    if not expr.strip():
        raise ValueError("a PromQL target needs an expression")
    q = prometheus.Dataquery().expr(expr).datasource(PROMETHEUS)
    if legend:
        q = q.legend_format(legend)
    if instant:
        q = q.instant()
    if table_format:
        q = q.format(PromQueryFormat.TABLE)
    if heatmap_format:
        q = q.format(PromQueryFormat.HEATMAP)
    return q


def _datasource(targets: Sequence[Target], title: str) -> DataSourceRef:
    if not targets:
        raise ValueError(f"panel {title!r} has no query")
    kinds = {isinstance(t, Sql) for t in targets}
    if len(kinds) > 1:
        raise ValueError(f"panel {title!r} mixes PromQL and SQL targets: one datasource per panel")
    return POSTGRES if kinds == {True} else PROMETHEUS


# --- value display -------------------------------------------------------------------------------------------------
def _map(*pairs: tuple[str, str, str]) -> list[Any]:
    return [ValueMap({value: ValueMappingResult(text=text, color=color, index=i)
                      for i, (value, text, color) in enumerate(pairs)})]


ENGAGED = _map(("0", "off", "green"), ("1", "ENGAGED", "red"))
CONNECTED = _map(("0", "disconnected", "red"), ("1", "connected", "green"))
UP = _map(("0", "down", "red"), ("1", "up", "green"))


def _thresholds(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    return dash.ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps(
        [Threshold(value=v, color=c) for v, c in steps])


GREEN = _thresholds((None, "green"))
WARN_ABOVE_ZERO = _thresholds((None, "green"), (1, "red"))


def _legend(*calcs: str) -> common_builders.VizLegendOptions:
    legend = (common_builders.VizLegendOptions().show_legend(True).placement(common.LegendPlacement.BOTTOM)
              .display_mode(common.LegendDisplayMode.TABLE if calcs else common.LegendDisplayMode.LIST))
    return legend.calcs(list(calcs)) if calcs else legend


def _last() -> common_builders.ReduceDataOptions:
    return common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False)


# --- panel kinds ---------------------------------------------------------------------------------------------------
PanelBuilder = cogbuilder.Builder[Any]


def _common(panel: Any, title: str, targets: Sequence[Target], description: str, width: int, height: int,
            unit: str | None) -> Any:
    ds = _datasource(targets, title)
    panel = panel.title(title).datasource(ds).span(width).height(height)
    if description:
        panel = panel.description(description)
    if unit:
        panel = panel.unit(unit)
    for ref, target in zip(string.ascii_uppercase, targets, strict=False):
        panel = panel.with_target(target.ref_id(ref))
    return panel


def graph(title: str, *targets: Target, unit: str | None = None, description: str = "", width: int = HALF,
          height: int = 8, stacked: bool = False, min_value: float | None = None,
          max_value: float | None = None) -> PanelBuilder:
    """A time series: rates, gauges and percentiles over the dashboard's range."""
    panel = _common(timeseries.Panel(), title, targets, description, width, height, unit)
    panel = panel.legend(_legend("lastNotNull", "max")).line_width(1).fill_opacity(10)
    if stacked:
        panel = panel.stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
    if min_value is not None:
        panel = panel.min(min_value)
    if max_value is not None:
        panel = panel.max(max_value)
    return panel


def number(title: str, *targets: Target, unit: str | None = None, description: str = "", width: int = QUARTER,
           height: int = 4, mappings: list[Any] | None = None, thresholds: dash.ThresholdsConfig | None = None,
           show_names: bool = False) -> PanelBuilder:
    """A single figure (or one per series): the latest value, coloured by thresholds or mappings."""
    panel = _common(stat.Panel(), title, targets, description, width, height, unit)
    panel = (panel.reduce_options(_last()).graph_mode(common.BigValueGraphMode.AREA)
             .color_mode(common.BigValueColorMode.VALUE)
             .text_mode(common.BigValueTextMode.VALUE_AND_NAME if show_names else common.BigValueTextMode.AUTO)
             .thresholds(thresholds or GREEN))
    if mappings:
        panel = panel.mappings(mappings)
    return panel


def names(title: str, *targets: Target, description: str = "", width: int = QUARTER, height: int = 4) -> PanelBuilder:
    """Which one of a one-hot state gauge is set: the series' name, not its value."""
    panel = _common(stat.Panel(), title, targets, description, width, height, None)
    return (panel.reduce_options(_last()).graph_mode(common.BigValueGraphMode.NONE)
            .color_mode(common.BigValueColorMode.NONE).text_mode(common.BigValueTextMode.NAME))


def bars(title: str, *targets: Target, unit: str | None = None, description: str = "", width: int = HALF,
         height: int = 8, max_value: float | None = None) -> PanelBuilder:
    """One bar per series, for comparing strategies, reasons or symbols at a glance."""
    panel = _common(bargauge.Panel(), title, targets, description, width, height, unit)
    panel = (panel.reduce_options(_last()).orientation(common.VizOrientation.HORIZONTAL)
             .display_mode(common.BarGaugeDisplayMode.GRADIENT).thresholds(GREEN).min(0))
    return panel.max(max_value) if max_value is not None else panel


def states(title: str, *targets: Target, mappings: list[Any], description: str = "", width: int = HALF,
           height: int = 6) -> PanelBuilder:
    """Flags over time (halted, kill switch, routing, up): when each changed, not only what it is now."""
    panel = _common(statetimeline.Panel(), title, targets, description, width, height, None)
    return panel.mappings(mappings).show_value(common.VisibilityMode.NEVER).merge_values(True).legend(_legend())


def rows_table(title: str, query: Sql, *, description: str = "", width: int = FULL, height: int = 8) -> PanelBuilder:
    """Latest rows of a table, newest first."""
    panel = _common(table.Panel(), title, [query], description, width, height, None)
    return panel.filterable(True).cell_height(common.TableCellHeight.SM)


def info_table(title: str, query: prometheus.Dataquery, *, description: str = "", width: int = HALF,
               height: int = 5, hide: Sequence[str] = ("Time", "Value", "__name__")) -> PanelBuilder:
    """The labels of an info-style series (value 1) as a table, e.g. the model in service."""
    panel = _common(table.Panel(), title, [query], description, width, height, None)
    organize = DataTransformerConfig(id_val="organize", options={"excludeByName": {name: True for name in hide}})
    return panel.with_transformation(organize)


def distribution(title: str, query: prometheus.Dataquery, *, unit: str | None = None, description: str = "",
                 width: int = HALF, height: int = 8) -> PanelBuilder:
    """A histogram's buckets over time."""
    panel = _common(heatmap.Panel(), title, [query], description, width, height, unit)
    return panel.calculate(False)


def by_x(title: str, query: Sql, *, x_field: str, description: str = "", width: int = FULL, height: int = 9,
         point_fields: Sequence[str] = (), x_unit: str = "dateTimeAsIso", repeat: Variable | None = None
         ) -> PanelBuilder:
    """A line over a numeric x (here market time as epoch ms), so it does not depend on the dashboard's range;
    ``point_fields`` are drawn as points (e.g. fills over candles); ``repeat``: one panel per selected value."""
    panel = _common(trend.Panel(), title, [query], description, width, height, None).x_field(x_field)
    if repeat is not None:
        panel = panel.repeat(repeat.name).repeat_direction("v")
    panel = panel.legend(_legend()).line_width(1).span_nulls(True)
    panel = panel.override_by_name(x_field, [_prop("unit", x_unit)])
    for name in point_fields:
        panel = panel.override_by_name(name, [_prop("custom.drawStyle", "points"), _prop("custom.pointSize", 9)])
    return panel


def _prop(name: str, value: object) -> DynamicConfigValue:
    return DynamicConfigValue(id_val=name, value=value)


# --- variables -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Variable:
    """A template variable filled from the values of the metric's label of the same name; multi-valued, with
    an "All" of ``.*``."""

    name: str
    label: str
    metric: str

    @property
    def query(self) -> str:
        return f"label_values({self.metric}, {self.name})"

    def builder(self) -> dash.QueryVariable:
        return (dash.QueryVariable(self.name).label(self.label).datasource(PROMETHEUS).query(self.query)
                .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).sort(VariableSort.ALPHABETICAL_ASC)
                .multi(True).include_all(True).all_value(ALL).current(_all_option()))


def _all_option() -> VariableOption:
    return VariableOption(selected=True, text="All", value="$__all")


SYMBOL = Variable("symbol", "Symbol", "quorum_md_candles_total")
MODE = Variable("mode", "Trading mode", "quorum_trading_equity_quote")
SERVICE = Variable("service", "Service", "quorum_service_state")
TIMEFRAME = Variable("timeframe", "Timeframe", "quorum_md_candles_total")


# --- annotations (the audit trail) ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class AuditMarks:
    """Audited actions drawn on every time panel: the finished outcome of each (not the REQUESTED row that
    precedes it), with who did it and why."""

    name: str
    color: str
    actions: tuple[str, ...]

    @property
    def sql(self) -> str:
        actions = ", ".join(f"'{a}'" for a in self.actions)
        return (
            "SELECT ts AS time, action || ' ' || status || ' by ' || actor"
            " || COALESCE(': ' || (details->>'reason'), '') AS text, action || ',' || status AS tags\n"
            "FROM audit_log\n"
            f"WHERE $__timeFilter(ts) AND status <> 'REQUESTED' AND action IN ({actions})\n"
            "ORDER BY ts"
        )

    def builder(self) -> dash.AnnotationQuery:
        return (dash.AnnotationQuery().name(self.name).datasource(POSTGRES).enable(True).icon_color(self.color)
                .target(_SqlAnnotation(self.sql)))


# Action names as the gateway, risk, the OMS and inference write them (services/gateway/routes/controls.py,
# libs/quorum/risk/decide.py, libs/quorum/oms/decide.py, services/inference/service.py).
AUDIT_MARKS = (
    AuditMarks("Halts and kill switches", "red", (
        "halt", "resume", "panic_halt", "drawdown_halt", "clear_emergency_halt", "kill_switch_engage",
        "kill_switch_release")),
    AuditMarks("Mode and profile changes", "orange", (
        "operating_mode", "risk_profile", "council_mode", "routing_authorize", "routing_disconnect",
        "trading_mode_switch")),
    AuditMarks("Model promotions", "purple", ("model_promote", "model_select", "model_rollback")),
)


def _builtin_annotation() -> dash.AnnotationQuery:
    return (dash.AnnotationQuery().name("Annotations & Alerts").datasource(DataSourceRef(type_val="grafana",
            uid="-- Grafana --")).enable(True).hide(True).icon_color("rgba(0, 211, 255, 1)").type("dashboard")
            .built_in(1))


# --- dashboards ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Section:
    """A row of the dashboard and the panels under it (left to right, wrapping at 24 columns)."""

    title: str
    panels: Sequence[PanelBuilder]


@dataclass(frozen=True)
class Board:
    """One dashboard: its file name is ``<uid>.json``."""

    uid: str
    title: str
    description: str
    variables: Sequence[Variable]
    sections: Sequence[Section]

    @property
    def file_name(self) -> str:
        return f"{self.uid}.json"

    def build(self) -> Any:
        b = (dash.Dashboard(self.title).uid(self.uid).description(self.description).tags([TAG])
             .time(*DEFAULT_TIME).refresh(REFRESH).timezone("utc").tooltip(DashboardCursorSync.CROSSHAIR)
             .timepicker(dash.TimePicker().refresh_intervals(REFRESH_CHOICES)).readonly()
             .link(dash.DashboardLink("Quorum").type(DashboardLinkType.DASHBOARDS).tags([TAG]).as_dropdown(True)
                   .include_vars(True).keep_time(True))
             .annotations([_builtin_annotation(), *(m.builder() for m in AUDIT_MARKS)])
             .variables([v.builder() for v in self.variables]))
        for section in self.sections:
            b = b.with_row(dash.Row(section.title))
            for panel in section.panels:
                b = b.with_panel(panel)
        built = b.build()
        for i, panel in enumerate(built.panels or [], start=1):
            panel.id_val = i
        return built


def sql_in(column: str, variable: Variable) -> str:
    """An SQL condition matching ``column`` against a multi-valued variable (its "All" is ``.*``)."""
    return f"{column} ~ '^(${{{variable.name}:regex}})$'"


def matcher(variable: Variable, label: str | None = None) -> str:
    """A PromQL label matcher for a multi-valued variable."""
    return f'{label or variable.name}=~"${variable.name}"'


def selector(metric: str, *variables: Variable, **fixed: str) -> str:
    """``metric{label=~"$var", ..., fixed="value"}``."""
    parts = [matcher(v) for v in variables] + [f'{k}="{v}"' for k, v in fixed.items()]
    return f"{metric}{{{', '.join(parts)}}}" if parts else metric
