// Overview: how the system stands and the controls an operator reaches for first. The emergency strip (halt or
// resume, panic) comes first and stays at the top, so it works on a phone.

import { get } from "../api.js";
import { askFirst, control } from "../confirm.js";
import { refreshStatus } from "../status.js";
import { actionButton, badge, clear, h, select, table, time } from "../ui.js";

const OPERATING_MODES = ["OBSERVE", "SEMI_AUTO", "FULL_AUTO"];

// Send a control, then show the state it led to.
async function act(path, body, options) {
  const answer = await control(path, body, options);
  await refreshStatus({ background: false }).catch(() => {});
  return answer;
}

function card(title, ...body) {
  return h("section", { class: "card" }, h("h3", { text: title }), body);
}

function dataSource(source) {
  if (!source) return "—";
  return [source.source, source.exchange, source.secondary ? `fallback ${source.secondary}` : null]
    .filter(Boolean).join(" · ");
}

function emergency(s) {
  const halt = s.halted
    ? actionButton("Resume trading", () => act("/controls/resume", { reason: "console" }),
      { id: "resume", cls: "big primary", key: "resume" })
    : actionButton("Halt trading", () => act("/controls/halt", { reason: "console" }),
      { id: "halt", cls: "big warn", key: "halt" });
  const panic = actionButton("PANIC: sell everything", () => act("/controls/panic", { reason: "console panic" },
    { title: "Panic: halt and sell every position" }), { id: "panic", cls: "big danger", key: "panic" });
  const state = s.emergency_halt ? badge("EMERGENCY HALT", "bad") : s.halted ? badge("HALTED", "bad")
    : badge("TRADING", "ok");
  return h("section", { class: "card emergency", id: "emergency" },
    h("div", { class: "row" }, h("strong", { text: "Trading: " }), h("span", { id: "trading-state" }, state),
      s.halt_reason ? h("span", { class: "muted", text: s.halt_reason }) : null),
    h("div", { class: "controls row" }, halt, panic));
}

function tradingMode(s) {
  const other = s.trading_mode === "LIVE" ? "PAPER" : "LIVE";
  return card("Paper / live",
    h("div", { class: "value", id: "trading-mode" }, badge(s.trading_mode, s.trading_mode === "LIVE" ? "live" : "ok")),
    h("p", { class: "hint", text: "Paper and live are never switched at runtime: the gateway refuses it. Restart "
      + "every service with the live configuration and an unlocked exchange key (see the README)." }),
    actionButton(`Ask to switch to ${other}`, () => act("/controls/trading-mode", { mode: other, reason: "console" }),
      { key: "trading-mode" }));
}

// What the operator has typed or chosen survives a redraw (a live update redraws the page).
function draft(drafts, name, input) {
  if (drafts[name] !== undefined) input.value = drafts[name];
  input.addEventListener("input", () => { drafts[name] = input.value; });
  return input;
}

function operatingMode(s, drafts) {
  const choice = draft(drafts, "mode", select("mode", OPERATING_MODES, s.operating_mode || "OBSERVE"));
  choice.id = "operating-mode-select";
  return card("Operating mode",
    h("div", { class: "value", id: "operating-mode", text: s.operating_mode || "—" }),
    h("p", { class: "hint", text: "Observe records only; Semi-Auto asks you per trade (Decisions page); Full-Auto "
      + "trades. More autonomy asks for confirmation." }),
    h("div", { class: "row" }, choice, actionButton("Apply", () => act("/controls/operating-mode",
      { mode: choice.value, reason: "console" }), { key: "operating-mode", id: "operating-mode-apply" })));
}

function routing(s) {
  const toggle = s.routing_connected
    ? actionButton("Disconnect routing", () => act("/controls/routing/disconnect", { reason: "console" }),
      { cls: "warn", key: "routing", id: "routing-disconnect" })
    : actionButton("Authorize routing", () => act("/controls/routing/authorize", { reason: "console" }),
      { cls: "primary", key: "routing", id: "routing-authorize" });
  return card("Order routing (master toggle)",
    h("div", { class: "value", id: "routing" },
      badge(s.routing_connected ? "CONNECTED" : "DISCONNECTED", s.routing_connected ? "ok" : "warn")),
    h("p", { class: "hint", text: s.routing }), toggle);
}

function killSwitch(s, symbols, drafts) {
  const globalButton = s.kill_switch_global
    ? actionButton("Release global kill switch", () => act("/controls/kill-switch/release", { reason: "console" }),
      { key: "kill-global" })
    : actionButton("Engage global kill switch", () => act("/controls/kill-switch/engage", { reason: "console" }),
      { cls: "warn", key: "kill-global" });
  const symbol = draft(drafts, "symbol", h("input", { name: "symbol", placeholder: "BTC/USDT", list: "kill-symbols",
    size: 12 }));
  const killed = s.killed_symbols.map((sym) => h("div", { class: "row" }, badge(sym, "bad"),
    actionButton("Release", () => act("/controls/kill-switch/release", { symbol: sym, reason: "console" }),
      { key: `kill-release-${sym}` })));
  return card("Kill switch",
    h("div", { class: "value" }, badge(s.kill_switch_global ? "GLOBAL: ENGAGED" : "global: off",
      s.kill_switch_global ? "bad" : "ok")),
    h("p", { class: "hint", text: "Close-only: exits and stops still work, new buys are refused." }),
    globalButton, killed,
    h("datalist", { id: "kill-symbols" }, symbols.map((m) => h("option", { value: m }))),
    h("div", { class: "row" }, symbol, actionButton("Engage for symbol", () => {
      if (!symbol.value) throw new Error("type the symbol to close-only, such as BTC/USDT");
      return act("/controls/kill-switch/engage", { symbol: symbol.value.trim().toUpperCase(), reason: "console" });
    }, { key: "kill-symbol" })));
}

function emergencyHalt(s) {
  return card("Emergency halt",
    h("div", { class: "value" }, badge(s.emergency_halt ? "ENGAGED" : "clear", s.emergency_halt ? "bad" : "ok")),
    h("p", { class: "hint", text: "Risk halts everything when the drawdown breaches the profile's limit." }),
    s.emergency_halt ? actionButton("Clear emergency halt", () => act("/controls/emergency-halt/clear",
      { reason: "console" }), { cls: "warn", key: "clear-emergency" }) : null);
}

function book() {
  return card("Orders and positions",
    h("div", { class: "controls" },
      actionButton("Cancel all orders", () => act("/controls/orders/cancel-all", { reason: "console" }),
        { key: "cancel-all" }),
      actionButton("Close all positions", () => act("/controls/positions/close-all", { reason: "console" }),
        { cls: "danger", key: "close-all" })));
}

function facts(s) {
  const model = s.model_in_service;
  const el = card("System",
    table([{ label: "", value: (r) => r[0] }, { label: "", value: (r) => r[1] }], [
      ["Risk profile", h("a", { href: "#/risk", id: "risk-profile", text: s.risk_profile })],
      ["Model in service", model ? `${model.model_name}@${model.version} (${model.source})` : s.model || "—"],
      ["Data source", dataSource(s.data_source)],
      ["Last candle", time(s.last_candle_ts)],
      ["Configuration", s.config_hash || "—"],
      ["Council", Object.entries(s.council_modes || {}).map(([k, v]) => `${k}: ${v}`).join(", ") || "default"],
      ["Validation gates", Object.entries(s.gates || {}).map(([k, v]) => `${k}: ${v}`).join(", ") || "—"],
    ], { id: "system" }));
  el.classList.add("wide");
  return el;
}

function services(s) {
  const rows = Object.entries(s.services || {}).sort(([a], [b]) => a.localeCompare(b));
  return h("section", { class: "card section" }, h("h3", { text: "Services" }),
    table([
      { label: "Service", value: ([name]) => name },
      { label: "State", value: ([, v]) => badge(v.stale ? `${v.state} (stale)` : v.state,
        v.stale || v.state !== "RUNNING" ? "warn" : "ok") },
      { label: "Last seen", value: ([, v]) => time(v.last_seen) },
      { label: "", value: ([name]) => actionButton("Shut down", async () => {
        const sure = await askFirst(`Shut down ${name}`, `${name} stops gracefully: it confirms, drains its work and `
          + "exits. Its supervisor may start it again; without one it stays down.");
        if (sure) await act("/controls/shutdown", { service: name, reason: "console" });
      }, { key: `shutdown-${name}` }) },
    ], rows, { empty: "no service has reported yet", id: "services" }));
}

export default {
  id: "overview",
  title: "Overview",
  async render(root, ctx) {
    const markets = await get("/console/markets").catch(() => []);
    const symbols = [...new Set(markets.map((m) => m.symbol))];
    const drafts = {};
    const draw = (s) => clear(root,
      emergency(s),
      h("div", { class: "grid" }, tradingMode(s), operatingMode(s, drafts), routing(s), killSwitch(s, symbols, drafts),
        emergencyHalt(s), book(), facts(s)),
      services(s));
    ctx.onStatus(draw);
    await refreshStatus({ background: false });
  },
};
