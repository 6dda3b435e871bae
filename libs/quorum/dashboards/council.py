"""Council & models: what the council decided and why (votes, agreement against its threshold, filtered votes,
karma), Semi-Auto proposals, and the model behind it (which one is in service, its latency, calibration and
drift), with training jobs."""

from __future__ import annotations

from quorum.dashboards.panels import (
    FULL,
    HALF,
    QUARTER,
    SYMBOL,
    THIRD,
    Board,
    Section,
    Sql,
    bars,
    distribution,
    graph,
    info_table,
    number,
    prom,
    rows_table,
    selector,
    sql_in,
)

DECISIONS = selector("quorum_council_decisions_total", SYMBOL)
AGREEMENT = selector("quorum_council_agreement_ratio_bucket", SYMBOL)


def _agreement(q: float) -> str:
    return f"histogram_quantile({q}, sum by (le) (rate({AGREEMENT}[$__rate_interval])))"


def _council() -> Section:
    return Section("Council", [
        bars("Decisions by action", prom(f"sum by (action) ({DECISIONS})", "{{action}}"), width=QUARTER),
        graph("Decisions per minute", prom(f"sum by (action) (rate({DECISIONS}[$__rate_interval])) * 60", "{{action}}"),
              stacked=True, width=QUARTER),
        graph("Agreement against the threshold", prom(_agreement(0.5), "median agreement"),
              prom(_agreement(0.9), "p90 agreement"),
              prom(f"max({selector('quorum_council_threshold_ratio', SYMBOL)})", "threshold"),
              unit="percentunit", min_value=0, max_value=1,
              description="Weighted agreement of the winning direction; the council acts at the threshold."),
        distribution("Agreement distribution",
                     prom(f"sum by (le) (increase({AGREEMENT}[$__rate_interval]))", "{{le}}", heatmap_format=True),
                     unit="percentunit", width=HALF),
        graph("Votes per strategy", prom("sum by (strategy, action) (rate(quorum_council_votes_total"
                                         "[$__rate_interval])) * 60", "{{strategy}} {{action}}"),
              width=HALF, description="Votes per minute."),
        bars("Votes filtered out", prom("sum by (strategy, reason) (quorum_council_votes_filtered_total)",
                                        "{{strategy}}: {{reason}}"),
             width=THIRD, description="Votes not counted (risk profile, regime, cooldown ...), by filter."),
        bars("Karma hit rate", prom("max by (strategy) (quorum_council_karma_hit_rate)", "{{strategy}}"),
             unit="percentunit", max_value=1, width=THIRD,
             description="Share of each strategy's scored votes that were right."),
        bars("Proposals (Semi-Auto)", prom("sum by (outcome) (quorum_proposals_total)", "{{outcome}}"),
             prom("sum(quorum_proposals_pending)", "pending now"), width=THIRD),
        rows_table("Latest decisions and their reasons", Sql(
            'SELECT ts AS "market time", symbol, timeframe, mode, action, consensus, confidence, threshold, regime, '
            "risk_profile, reason_codes::text AS reasons\n"
            "FROM decisions\n"
            f"WHERE {sql_in('symbol', SYMBOL)}\n"
            "ORDER BY ts DESC LIMIT 30"), width=FULL),
    ])


def _models() -> Section:
    return Section("Models", [
        info_table("Model in service", prom("max by (model, version, run_id, source) (quorum_model_info)",
                                            instant=True, table_format=True), width=HALF),
        number("Model age", prom("max by (model) (quorum_model_age_seconds)", "{{model}}"), unit="s",
               width=QUARTER, description="Since the model in service was trained."),
        number("Training jobs running", prom("sum(quorum_training_jobs_running)", "running"), width=QUARTER),
        graph("Prediction latency", prom("histogram_quantile(0.5, sum by (le, model) (rate("
                                         "quorum_prediction_seconds_bucket[$__rate_interval])))", "median {{model}}"),
              prom("histogram_quantile(0.99, sum by (le, model) (rate(quorum_prediction_seconds_bucket"
                   "[$__rate_interval])))", "p99 {{model}}"), unit="s", width=THIRD),
        graph("Predictions per minute", prom("sum by (model) (rate("
                                             f"{selector('quorum_predictions_total', SYMBOL)}[$__rate_interval])) * 60",
                                             "{{model}}"), width=THIRD),
        bars("Calibration: share that went up, by predicted P(up)",
             prom('sum by (bucket) (quorum_prediction_calibration_total{realized="up"}) / '
                  "sum by (bucket) (quorum_prediction_calibration_total)", "P(up) {{bucket}}"),
             unit="percentunit", max_value=1, width=THIRD,
             description="A calibrated model's 0.6-0.7 bucket went up about 65% of the time."),
        graph("Predicted against realized error", prom("max by (model) (quorum_inference_error_ratio)", "{{model}}"),
              width=THIRD, description="Rolling MSE of the expected return over the zero-return predictor's: above 1, "
                                       "the model does worse than predicting no move."),
        graph("Drift: PSI per feature", prom("max by (feature) (quorum_model_feature_psi)", "{{feature}}"),
              prom("max(quorum_inference_feature_psi_max)", "largest"), width=THIRD,
              description="Population stability of each input against the training distribution; 0.25 is a major "
                          "shift (QUORUM_INFERENCE_DRIFT_PSI_LIMIT)."),
        bars("Drift alerts, rollbacks and training jobs",
             prom("sum by (reason) (quorum_drift_detected_total)", "drift: {{reason}}"),
             prom("sum by (automatic) (quorum_model_rollbacks_total)", "rollbacks (automatic={{automatic}})"),
             prom("sum by (status) (quorum_training_jobs_total)", "training {{status}}"),
             width=THIRD),
    ])


def board() -> Board:
    return Board("quorum-council", "Quorum — council & models",
                 "Decisions, votes, agreement against the threshold, karma, the model in service, calibration "
                 "and drift.", [SYMBOL], [_council(), _models()])
