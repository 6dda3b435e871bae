// Risk: every profile's limits side by side with the active one, switching (the server warns before a riskier
// one), exposure against the active limits, the halt and the kill switches.

import { get } from "../api.js";
import { control } from "../confirm.js";
import { refreshStatus } from "../status.js";
import { actionButton, badge, clear, h, num, table, time } from "../ui.js";

const LIMITS = [
  ["risk_per_trade_pct", "Risk per trade", (v) => `${num(v)}% of equity`],
  ["max_drawdown_pct", "Max drawdown", (v) => `${num(v)}%`],
  ["max_concurrent_positions", "Max positions", (v) => String(v)],
  ["max_total_exposure", "Max total exposure", limit],
  ["max_cluster_exposure", "Max cluster exposure", limit],
  ["max_stop_distance_pct", "Max stop distance", (v) => `${num(v)}%`],
  ["min_confidence", "Min confidence", (v) => num(v, 2)],
  ["daily_loss_limit", "Daily loss limit", limit],
];

function limit(v) {
  if (!v) return "—";
  return v.mode === "PERCENT" ? `${num(v.value)}% of equity` : `${num(v.value)} (quote)`;
}

function limitAmount(v, equity) {
  if (!v) return null;
  return v.mode === "PERCENT" ? (equity * Number(v.value)) / 100 : Number(v.value);
}

function meter(label, used, cap, text) {
  const ratio = cap ? Math.min(1, used / cap) : 0;
  const bar = h("span", { class: ratio >= 1 ? "over" : ratio >= 0.8 ? "near" : "" });
  bar.style.width = `${Math.round(ratio * 100)}%`;
  return h("div", { class: "meter" }, h("div", { class: "row" }, h("strong", { text: label }),
    h("span", { class: "muted", text })), h("div", { class: "progress" }, bar));
}

function profilesTable(profiles, active, switchTo) {
  const names = Object.keys(profiles);
  const head = h("tr", {}, h("th", { text: "Limit" }), names.map((n) => h("th", {},
    n, n === active ? badge("active", "ok") : null)));
  const rows = LIMITS.map(([key, label, show]) => h("tr", {}, h("td", { text: label }),
    names.map((n) => h("td", { class: n === active ? "active-col" : null, text: show(profiles[n][key]) }))));
  const buttons = h("tr", {}, h("td"), names.map((n) => h("td", {}, n === active ? h("span", { class: "muted",
    text: "in force" }) : actionButton(`Switch to ${n}`, () => switchTo(n), { key: `profile-${n}`,
    id: `profile-${n}` }))));
  return h("div", { class: "table-wrap" }, h("table", { id: "profiles" }, h("thead", {}, head),
    h("tbody", {}, rows, buttons)));
}

export default {
  id: "risk",
  title: "Risk",
  async render(root, ctx) {
    const body = h("div");
    root.append(body);
    const load = async (background) => {
      const [risk, profiles, portfolio] = await Promise.all([get("/risk", { background }),
        get("/console/risk-profiles", { background }), get("/portfolio", { background })]);
      const lim = risk.limits;
      const equity = Number(portfolio.equity ?? portfolio.cash);
      const exposure = Number(portfolio.holdings_value);
      const drawdownPct = risk.drawdown ? Number(risk.drawdown.drawdown_pct) : 0;
      const cap = limitAmount(lim.max_total_exposure, equity);
      clear(body,
        h("section", { class: "card" }, h("h2", {}, "Active profile: ",
          h("span", { id: "active-profile", text: risk.risk_profile })),
        h("div", { class: "row" },
          risk.emergency_halt ? badge("EMERGENCY HALT", "bad") : risk.halted ? badge("HALTED", "bad")
            : badge("trading", "ok"),
          risk.halt_reason ? h("span", { class: "muted", text: risk.halt_reason }) : null,
          h("span", { class: "muted", text: `cash ${num(risk.cash)}` })),
        h("div", { class: "section" },
          meter("Drawdown", drawdownPct, Number(lim.max_drawdown_pct),
            `${num(drawdownPct)}% of ${num(lim.max_drawdown_pct)}%`),
          meter("Open positions", portfolio.positions, lim.max_concurrent_positions,
            `${portfolio.positions} of ${lim.max_concurrent_positions}`),
          meter("Total exposure", exposure, cap, `${num(exposure)} of ${num(cap)}`))),
        h("section", { class: "card" }, h("h2", { text: "Profiles" }),
          h("p", { class: "hint", text: "Moving to a riskier profile asks for confirmation with the server's warning." }),
          profilesTable(profiles.profiles, risk.risk_profile, switchTo)),
        h("section", { class: "card" }, h("h2", { text: "Kill switches" }), table([
          { label: "Scope", value: (k) => (k.scope === "*" ? "global" : k.scope) },
          { label: "Engaged", value: (k) => (k.engaged ? badge("engaged", "bad") : "no") },
          { label: "Automatic", value: (k) => (k.automatic ? "yes" : "no") },
          { label: "Losing streak", value: (k) => k.losing_streak, num: true },
          { label: "Reason", value: (k) => k.reason || "—" },
          { label: "By", value: (k) => k.updated_by },
          { label: "At", value: (k) => time(k.updated_at) },
        ], risk.kill_switches, { empty: "no kill switch was ever engaged" })));
    };
    const switchTo = async (profile) => {
      await control("/controls/risk-profile", { profile, reason: "console" },
        { title: `Switch the risk profile to ${profile}` });
      await Promise.all([load(false), refreshStatus({ background: false }).catch(() => {})]);
    };
    ctx.on(["state", "alerts", "equity"], ctx.soon(() => load(true).catch(() => {}), 500));
    await load(false);
  },
};
