// Strategy & models: the council's mode and threshold per symbol; the model registry (promote, select, roll
// back); training jobs with their progress as the trainer streams it; backtests and their reports; optimizer
// proposals beside the active configuration; the validation gates per asset.

import { ApiError, describe, get, post } from "../api.js";
import { control } from "../confirm.js";
import { actionButton, actionForm, badge, clear, field, h, json, keyValues, num, select, table, time, toast } from "../ui.js";

const COUNCIL_MODES = ["COUNCIL", "SOLO", "OFF"];
const TRAINING_DONE = new Set(["TrainingCompleted", "TrainingFailed", "TrainingCanceled", "TrainingStarted"]);

function section(title, ...body) {
  return h("section", { class: "card" }, h("h2", { text: title }), body);
}

function progressBar(percent) {
  const bar = h("span");
  bar.style.width = `${Math.max(0, Math.min(100, Number(percent) || 0))}%`;
  return h("div", { class: "progress" }, bar);
}

// An optional number field: blank is "keep the current one", anything else must be a number.
function optionalNumber(value, name) {
  if (value === "" || value == null) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n)) throw new Error(`${name} must be a number`);
  return n;
}

// --- council --------------------------------------------------------------------------------------------------
function councilSection(reload) {
  const body = h("div");
  const form = actionForm([
    field("Symbol (blank: the default)", h("input", { name: "symbol", placeholder: "BTC/USDT", size: 12 })),
    field("Mode", select("mode", COUNCIL_MODES, "COUNCIL")),
    field("Threshold", h("input", { name: "threshold", placeholder: "keep", size: 6, inputmode: "decimal" })),
    field("Solo strategy", h("input", { name: "solo_strategy", placeholder: "rsi", size: 10 })),
    field("Re-enable failed strategies", h("input", { name: "reenable_strategies", type: "checkbox", value: "1" })),
  ], "Set council mode", async (v) => {
    const body_ = { mode: v.mode, reason: "console", reenable_strategies: v.reenable_strategies === "1" };
    if (v.symbol) body_.symbol = v.symbol.trim().toUpperCase();
    const threshold = optionalNumber(v.threshold, "threshold");
    if (threshold !== undefined) body_.threshold = threshold;
    if (v.solo_strategy) body_.solo_strategy = v.solo_strategy.trim();
    await control("/controls/council/mode", body_);
    await reload();
  });
  const load = async (background) => {
    const council = await get("/council", { background });
    clear(body,
      h("p", { class: "hint", text: `Risk profile ${council.risk_profile}: voters are filtered by it.` }),
      table([
        { label: "Symbol", value: (c) => (c.symbol === "*" ? "default" : c.symbol) },
        { label: "Mode", value: (c) => c.mode },
        { label: "Threshold", value: (c) => num(c.threshold, 3), num: true },
        { label: "Solo", value: (c) => c.solo_strategy || "—" },
        { label: "Set by", value: (c) => `${c.updated_by} · ${time(c.updated_at)}` },
      ], council.controls, { empty: "every symbol uses the services' settings", id: "council" }),
      council.disabled_strategies.length ? h("div", { class: "section" }, h("h3", { text: "Disabled by errors" }),
        table([
          { label: "Symbol", value: (f) => f.symbol },
          { label: "Strategy", value: (f) => f.strategy },
          { label: "Error", value: (f) => f.error },
          { label: "Since", value: (f) => time(f.decision_ts) },
        ], council.disabled_strategies)) : null);
  };
  return { el: section("Council", body, form), load };
}

// --- models ---------------------------------------------------------------------------------------------------
function modelsSection() {
  const body = h("div");
  const load = async (background) => {
    let models;
    try {
      models = await get("/models", { background });
    } catch (error) {
      clear(body, h("p", { class: "muted", text: `The model registry cannot be read: ${error.message}` }));
      return;
    }
    const serving = models.in_service;
    clear(body,
      h("p", {}, "In service: ", serving ? h("strong", { text: `${serving.model_name}@${serving.version}` }) : "—",
        serving ? h("span", { class: "muted", text: ` (${serving.source} since ${time(serving.since)}${
          serving.previous ? `; before it ${serving.previous}` : ""})` }) : null,
        serving && serving.previous ? actionButton("Roll back", async () => {
          await control(`/models/${encodeURIComponent(serving.model_name)}/rollback`, { reason: "console" });
          await load(false);
        }, { key: "model-rollback", cls: "warn" }) : null),
      h("p", { class: "hint", text: `Registry: ${models.registry}` }),
      table([
        { label: "Model", value: (v) => `${v.name}:${v.version}` },
        { label: "Aliases", value: (v) => v.aliases.map((a) => badge(a, a === "champion" ? "ok" : "")) },
        { label: "Direction accuracy", value: (v) => num(v.metrics.oos_direction_accuracy, 4), num: true },
        { label: "MSE vs naive", value: (v) => num(v.metrics.oos_mse_vs_naive, 4), num: true },
        { label: "Gate", value: (v) => v.tags.promotion || "—" },
        { label: "Created", value: (v) => time(v.created_at) },
        { label: "", value: (v) => h("div", { class: "row" },
          actionButton("Promote", async () => {
            await control(`/models/${encodeURIComponent(v.name)}/versions/${v.version}/promote`, { reason: "console" },
              { title: `Promote ${v.name}:${v.version} to champion` });
            await load(false);
          }, { key: `promote-${v.name}-${v.version}` }),
          actionButton("Serve (pin)", async () => {
            await control("/controls/model/select", { model_name: v.name, version: v.version, reason: "console" });
            await load(false);
          }, { key: `select-${v.name}-${v.version}` })) },
      ], models.versions, { empty: "no model registered yet", id: "models" }));
  };
  return { el: section("Models", body), load };
}

// --- training -------------------------------------------------------------------------------------------------
function trainingSection() {
  const body = h("div");
  const load = async (background) => {
    const page = await get("/training/jobs", { background, params: { limit: 20 } });
    clear(body, table([
      { label: "Job", value: (j) => h("code", { text: j.id.slice(0, 8) }) },
      { label: "Model", value: (j) => `${j.request.model_name || ""} ${j.version ? `→ v${j.version}` : ""}` },
      { label: "Status", value: (j) => badge(j.status, j.status === "DONE" ? "ok" : j.status === "FAILED" ? "bad" : "") },
      { label: "Progress", value: (j) => h("div", { class: "job-progress", dataset: { job: j.id } },
        progressBar(j.progress), h("span", { class: "hint", text: `${j.stage || ""} ${num(j.progress, 0)}%` })) },
      { label: "Created", value: (j) => `${time(j.created_at)} by ${j.created_by}` },
      { label: "Result", value: (j) => (j.error ? h("span", { class: "bad", text: j.error })
        : j.result ? h("details", {}, h("summary", { text: "result" }), json(j.result)) : "—") },
      { label: "", value: (j) => (["QUEUED", "RUNNING"].includes(j.status) ? actionButton("Cancel", async () => {
        const answer = await post(`/training/jobs/${j.id}/cancel`, { reason: "console" });
        toast(answer.ok ? `cancel: ${answer.data.status}` : describe(answer.data, answer.status),
          answer.ok ? "ok" : "bad");
        await load(false);
      }, { key: `cancel-${j.id}` }) : null) },
    ], page.items, { empty: "no training job yet", id: "training-jobs" }));
  };
  const form = actionForm([
    field("Model name", h("input", { name: "model_name", value: "quorum-global", size: 16 })),
    field("Family", h("input", { name: "family", value: "lightgbm", size: 12 })),
    field("Task", select("task", ["classification", "regression"], "classification")),
    field("More of the request (JSON, optional)", h("textarea", { name: "extra", rows: 3,
      placeholder: '{"dataset": {"symbols": ["BTC/USDT"], "timeframe": "1h"}}' })),
  ], "Start training", async (v) => {
    let extra = {};
    if (v.extra.trim()) {
      try { extra = JSON.parse(v.extra); } catch (e) { throw new Error(`the extra request is not JSON: ${e.message}`); }
    }
    const request = { model_name: v.model_name, model: { family: v.family, task: v.task }, reason: "console",
      ...extra };
    const answer = await post("/controls/training", request);
    if (!answer.ok) throw new ApiError(answer.status, `training: ${describe(answer.data, answer.status)}`);
    toast(`training job ${answer.data.id.slice(0, 8)} queued`, "ok");
    await load(false);
  }, { key: "start-training" });
  const onEvent = (envelope) => {
    if (envelope.event_type === "TrainingProgressed") {
      const p = envelope.payload;
      const cell = body.querySelector(`.job-progress[data-job="${p.job_id}"]`);
      if (cell) clear(cell, progressBar(p.percent), h("span", { class: "hint", text: `${p.stage} ${num(p.percent, 0)}%` }));
      return true;
    }
    return TRAINING_DONE.has(envelope.event_type);
  };
  return { el: section("Training", body, form), load, onEvent };
}

// --- backtests ------------------------------------------------------------------------------------------------
// A backtest's metrics, or a walk-forward's per asset.
function metricsOf(metrics) {
  if (!metrics) return h("p", { class: "muted", text: "none yet" });
  const perAsset = Object.values(metrics).every((v) => v !== null && typeof v === "object" && !Array.isArray(v));
  if (!perAsset) return keyValues(metrics, { id: "backtest-metrics" });
  return h("div", {}, Object.entries(metrics).map(([asset, m]) => h("div", {}, h("h3", { text: asset }), keyValues(m))));
}

function backtestsSection() {
  const body = h("div");
  const report = h("div", { id: "backtest-report" });
  const show = async (id) => {
    const detail = await get(`/backtests/${id}`);
    clear(report, h("h3", { text: `Backtest ${id.slice(0, 8)}: ${detail.status}` }),
      detail.report_path ? h("p", {}, h("a", { href: `/backtests/${id}/report/`, target: "_blank", rel: "noopener",
        id: "backtest-report-link", text: "Open the full report" }),
      h("span", { class: "hint", text: ` (${detail.report_path})` })) : null,
      h("div", { class: "grid" }, h("div", {}, h("strong", { text: "Metrics" }), metricsOf(detail.metrics)),
        h("div", {}, h("strong", { text: "Configuration" }), h("details", {}, h("summary", { text: detail.config_hash }),
          json(detail.configuration)))));
  };
  const load = async (background) => {
    const page = await get("/backtests", { background, params: { limit: 20 } });
    clear(body, table([
      { label: "Created", value: (b) => `${time(b.created_at)} by ${b.created_by}` },
      { label: "Configuration", value: (b) => `${b.config_name} (${b.config_hash})` },
      { label: "Data", value: (b) => `${b.source} ${b.symbols.join(", ")} ${b.timeframe || ""}` },
      { label: "Status", value: (b) => badge(b.status, b.status === "DONE" ? "ok" : b.status === "FAILED" ? "bad" : "") },
      { label: "Progress", value: (b) => progressBar(b.progress * 100) },
      { label: "Walk-forward", value: (b) => (b.walk_forward ? "yes" : "no") },
      { label: "", value: (b) => actionButton("Report", () => show(b.id), { needed: "viewer", key: `report-${b.id}` }) },
    ], page.items, { empty: "no backtest yet", id: "backtests" }));
  };
  const form = actionForm([
    field("Configuration", h("input", { name: "configuration", value: "active", size: 14 })),
    field("Data file (blank: stored candles)", h("input", { name: "data_file", placeholder: "binance_BTCUSDT_1h.csv" })),
    field("Timeframe", h("input", { name: "timeframe", placeholder: "1h", size: 5 })),
  ], "Start backtest", async (v) => {
    const request = { configuration: v.configuration, reason: "console" };
    if (v.data_file) request.data_file = v.data_file;
    if (v.timeframe) request.timeframe = v.timeframe;
    const answer = await post("/backtests", request);
    if (!answer.ok) throw new ApiError(answer.status, `backtest: ${describe(answer.data, answer.status)}`);
    toast(`backtest ${answer.data.id.slice(0, 8)} queued`, "ok");
    await load(false);
  }, { key: "start-backtest" });
  const refresh = actionButton("Refresh", () => load(false), { needed: "viewer", key: "backtests-refresh" });
  return { el: section("Backtests", h("div", { class: "row" }, refresh,
    h("span", { class: "hint", text: "backtests report no live progress on the stream" })), body, form, report), load };
}

// --- optimizer ------------------------------------------------------------------------------------------------
function optimizerSection() {
  const body = h("div");
  const load = async (background) => {
    const view = await get("/configurations", { background });
    const columns = [view.active, ...view.proposed].filter(Boolean);
    if (!columns.length) {
      clear(body, h("p", { class: "muted", text: "no optimizer configuration: the council decides with the services' settings" }));
      return;
    }
    const metricKeys = [...new Set(columns.flatMap((c) => Object.keys(c.metrics || {})))].sort();
    const paramKeys = [...new Set(columns.flatMap((c) => Object.keys(c.params || {})))].sort();
    const head = h("tr", {}, h("th", { text: "" }), columns.map((c) => h("th", {},
      c.status === "ACTIVE" ? badge("active", "ok") : badge("proposed", "warn"), ` ${c.config_hash}`)));
    const row = (label, value) => h("tr", {}, h("td", { text: label }), columns.map((c) => h("td", { class: "num" },
      value(c))));
    const show = (v) => (typeof v === "number" ? num(v, 4) : v == null ? "—" : typeof v === "object" ? JSON.stringify(v) : String(v));
    const actions = h("tr", {}, h("td"), columns.map((c) => h("td", {}, c.status !== "PROPOSED" ? null : h("div",
      { class: "row" },
      actionButton("Approve", async () => {
        await control(`/configurations/${c.id}/approve`, { reason: "console" },
          { title: `Approve configuration ${c.config_hash}` });
        await load(false);
      }, { cls: "primary", key: `approve-config-${c.id}` }),
      actionButton("Reject", async () => {
        const answer = await post(`/configurations/${c.id}/reject`, { reason: "rejected in the console" });
        toast(answer.ok ? `configuration ${c.config_hash} rejected` : describe(answer.data, answer.status),
          answer.ok ? "ok" : "bad");
        await load(false);
      }, { key: `reject-config-${c.id}` })))));
    clear(body, h("div", { class: "table-wrap" }, h("table", { class: "side-by-side", id: "configurations" },
      h("thead", {}, head), h("tbody", {},
        row("Profile", (c) => c.profile), row("Created", (c) => time(c.created_at)),
        metricKeys.map((k) => row(k, (c) => show((c.metrics || {})[k]))),
        paramKeys.map((k) => row(`param ${k}`, (c) => show((c.params || {})[k]))),
        actions))));
  };
  return { el: section("Optimizer proposals", body), load };
}

// --- gates ----------------------------------------------------------------------------------------------------
function gatesSection() {
  const body = h("div");
  const load = async (background) => {
    const gates = await get("/gates", { background });
    clear(body, h("p", { class: "hint", text: `Configuration ${gates.config_hash || "unknown"}` }), table([
      { label: "Asset", value: (r) => r.asset },
      { label: "Verdict", value: (r) => badge(r.passed ? "passed" : "failed", r.passed ? "ok" : "bad") },
      { label: "Criteria", value: (r) => r.criteria.map((c) => h("div", { class: c.passed ? "good" : "bad",
        text: `${c.name}: ${c.figure == null ? "n/a" : num(c.figure, 4)} ${c.op} ${num(c.threshold, 4)}` })) },
      { label: "Reported", value: (r) => time(r.created_at) },
    ], gates.reports, { empty: "no gate report for this configuration yet (run a walk-forward backtest)", id: "gates" }));
  };
  return { el: section("Validation gates", body), load };
}

export default {
  id: "strategy",
  title: "Strategy & models",
  async render(root, ctx) {
    const council = councilSection(() => council.load(false));
    const sections = [council, modelsSection(), trainingSection(), backtestsSection(), optimizerSection(),
      gatesSection()];
    root.append(...sections.map((s) => s.el));
    const training = sections[2];
    const reloadTraining = ctx.soon(() => training.load(true).catch(() => {}), 300);
    const reloadCouncil = ctx.soon(() => council.load(true).catch(() => {}), 300);
    ctx.on("state", (envelope) => {
      if (training.onEvent(envelope) && envelope.event_type !== "TrainingProgressed") reloadTraining();
      if (envelope.event_type === "CouncilModeChanged" || envelope.event_type === "CouncilConfigurationActivated") {
        reloadCouncil();
      }
    });
    await Promise.all(sections.map((s) => s.load(false).catch((error) => {
      s.el.append(h("p", { class: "error", text: error.message }));
    })));
  },
};
