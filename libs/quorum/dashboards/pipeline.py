"""Pipeline: end-to-end latency from a candle to the decision, the order, the fill and the ledger posting;
throughput and handler time per service; consumer lag, redeliveries, dead letters and the outbox; service
health; and the NATS and PostgreSQL servers as their exporters see them."""

from __future__ import annotations

from quorum.dashboards.panels import (
    HALF,
    QUARTER,
    SERVICE,
    SIXTH,
    THIRD,
    UP,
    WARN_ABOVE_ZERO,
    Board,
    Section,
    graph,
    names,
    number,
    prom,
    selector,
    states,
)

LATENCY = "quorum_pipeline_latency_seconds_bucket"
QUORUM_DB = 'datname="quorum"'


def _latency(q: float) -> str:
    return f"histogram_quantile({q}, sum by (le, stage) (rate({LATENCY}[$__rate_interval])))"


def _flow() -> Section:
    return Section("End-to-end latency and throughput", [
        graph("Candle to stage: median", prom(_latency(0.5), "{{stage}}"), unit="s", width=THIRD,
              description="From a candle entering Quorum to the decision, the order, the fill and the ledger "
                          "posting (times carried in the envelopes)."),
        graph("Candle to stage: p95", prom(_latency(0.95), "{{stage}}"), unit="s", width=THIRD),
        graph("Candle to stage: p99", prom(_latency(0.99), "{{stage}}"), unit="s", width=THIRD),
        graph("Events in per second", prom("sum by (service) (rate("
                                           f"{selector('quorum_events_in_total', SERVICE)}[$__rate_interval]))",
                                           "{{service}}"), width=THIRD),
        graph("Events out per second", prom("sum by (service) (rate("
                                            f"{selector('quorum_events_out_total', SERVICE)}[$__rate_interval]))",
                                            "{{service}}"), width=THIRD),
        graph("Handler time p95", prom("histogram_quantile(0.95, sum by (le, service) (rate("
                                       f"{selector('quorum_handler_seconds_bucket', SERVICE)}[$__rate_interval])))",
                                       "{{service}}"), unit="s", width=THIRD,
              description="Handler time including its database transaction."),
    ])


def _backlog() -> Section:
    return Section("Lag, redeliveries and dead letters", [
        graph("Consumer lag: not yet delivered", prom("max by (stream, consumer) (quorum_consumer_pending_messages)",
                                                      "{{consumer}}"), width=THIRD,
              description="Per durable consumer, read from JetStream."),
        graph("Consumer lag: delivered, not acknowledged",
              prom("max by (stream, consumer) (quorum_consumer_ack_pending_messages)", "{{consumer}}"), width=THIRD),
        graph("Outbox backlog", prom(f"max by (service) ({selector('quorum_outbox_pending', SERVICE)})",
                                     "{{service}}"), width=THIRD, description="Rows written, not yet published."),
        graph("Redeliveries", prom("sum by (service, consumer) (increase("
                                   f"{selector('quorum_redeliveries_total', SERVICE)}[$__rate_interval]))",
                                   "{{service}} {{consumer}}"),
              prom("max by (consumer) (quorum_consumer_redelivered_messages)", "pending redelivered: {{consumer}}"),
              width=THIRD),
        number("Dead letters", prom("max(quorum_dead_letters)", "in the dead-letter stream"),
               prom(f"sum({selector('quorum_dlq_total', SERVICE)})", "sent since start"),
               thresholds=WARN_ABOVE_ZERO, width=SIXTH, show_names=True),
        number("Duplicates skipped", prom(f"sum({selector('quorum_duplicates_total', SERVICE)})", "duplicates"),
               width=SIXTH, description="Messages the inbox had already applied."),
        graph("Handler errors per minute", prom("sum by (service) (rate("
                                                f"{selector('quorum_handler_errors_total', SERVICE)}"
                                                "[$__rate_interval])) * 60", "{{service}}"), width=THIRD),
    ])


def _health() -> Section:
    return Section("Service health", [
        states("Scrape targets up", prom(f'max by (job) (up{{job=~"${SERVICE.name}|nats-exporter|postgres-exporter"}})',
                                         "{{job}}"), mappings=UP, width=HALF, height=8),
        names("Lifecycle state", prom(f"max by (service, state) ({selector('quorum_service_state', SERVICE)}) == 1",
                                      "{{service}}: {{state}}"), width=HALF, height=8),
    ])


def _nats() -> Section:
    return Section("NATS server (prometheus-nats-exporter)", [
        number("Connections", prom("sum(gnatsd_varz_connections)", "connections"), width=QUARTER),
        number("Slow consumers", prom("sum(gnatsd_varz_slow_consumers)", "slow consumers"),
               thresholds=WARN_ABOVE_ZERO, width=QUARTER),
        graph("Messages per second", prom("sum(rate(gnatsd_varz_in_msgs[$__rate_interval]))", "in"),
              prom("sum(rate(gnatsd_varz_out_msgs[$__rate_interval]))", "out"), width=QUARTER),
        graph("JetStream storage", prom("sum(jetstream_server_total_message_bytes)", "stored"), unit="bytes",
              width=QUARTER),
        graph("JetStream consumers: pending",
              prom("max by (stream_name, consumer_name) (jetstream_consumer_num_pending)",
                   "{{stream_name}}/{{consumer_name}}"), width=THIRD),
        graph("JetStream consumers: ack pending",
              prom("max by (stream_name, consumer_name) (jetstream_consumer_num_ack_pending)",
                   "{{stream_name}}/{{consumer_name}}"), width=THIRD),
        graph("JetStream streams: messages", prom("max by (stream_name) (jetstream_stream_total_messages)",
                                                  "{{stream_name}}"), width=THIRD),
    ])


def _postgres() -> Section:
    return Section("PostgreSQL (postgres-exporter)", [
        number("Database up", prom("max(pg_up)", "up"), mappings=UP, width=SIXTH),
        number("Connections", prom(f"sum(pg_stat_database_numbackends{{{QUORUM_DB}}})", "backends"), width=SIXTH),
        number("Database size", prom(f"max(pg_database_size_bytes{{{QUORUM_DB}}})", "size"), unit="bytes",
               width=SIXTH),
        number("Deadlocks", prom(f"sum(pg_stat_database_deadlocks{{{QUORUM_DB}}})", "deadlocks"),
               thresholds=WARN_ABOVE_ZERO, width=SIXTH),
        graph("Transactions per second",
              prom(f"sum(rate(pg_stat_database_xact_commit{{{QUORUM_DB}}}[$__rate_interval]))", "commits"),
              prom(f"sum(rate(pg_stat_database_xact_rollback{{{QUORUM_DB}}}[$__rate_interval]))", "rollbacks"),
              width=THIRD),
        graph("Buffer cache hit ratio",
              prom(f"sum(rate(pg_stat_database_blks_hit{{{QUORUM_DB}}}[$__rate_interval])) / ("
                   f"sum(rate(pg_stat_database_blks_hit{{{QUORUM_DB}}}[$__rate_interval])) + "
                   f"sum(rate(pg_stat_database_blks_read{{{QUORUM_DB}}}[$__rate_interval])))", "hit ratio"),
              unit="percentunit", min_value=0, max_value=1, width=THIRD),
        graph("Locks by mode", prom(f"sum by (mode) (pg_locks_count{{{QUORUM_DB}}})", "{{mode}}"), width=THIRD),
    ])


def board() -> Board:
    return Board("quorum-pipeline", "Quorum — pipeline",
                 "End-to-end latency percentiles, throughput, consumer lag, redeliveries, dead letters, service "
                 "health, and the NATS and PostgreSQL servers.",
                 [SERVICE], [_flow(), _backlog(), _health(), _nats(), _postgres()])
