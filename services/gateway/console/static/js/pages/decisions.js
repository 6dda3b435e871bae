// Decisions: Semi-Auto proposals waiting for the operator (approve or reject before they expire), then the
// council's decisions with every voter's vote, filtered by symbol and action.

import { get } from "../api.js";
import { control } from "../confirm.js";
import { actionButton, badge, clear, duration, field, h, num, qty, select, table, time } from "../ui.js";

const ACTIONS = [["", "any action"], "BUY", "SELL", "HOLD"];

function timeLeft(proposal) {
  if (!proposal.expires_at) return "no expiry";
  const left = (new Date(proposal.expires_at).getTime() - Date.now()) / 1000;
  return left > 0 ? duration(left) : "expired";
}

function proposalsTable(items, decide) {
  return table([
    { label: "Created", value: (p) => time(p.created_at) },
    { label: "Symbol", value: (p) => p.symbol },
    { label: "Side", value: (p) => badge(p.side, p.side === "BUY" ? "ok" : "warn") },
    { label: "Quantity", value: (p) => qty(p.quantity), num: true },
    { label: "Reference price", value: (p) => num(p.reference_price), num: true },
    { label: "Time left", value: (p) => h("span", { class: "time-left", dataset: { expires: p.expires_at || "" },
      text: timeLeft(p) }) },
    { label: "", value: (p) => h("div", { class: "row" },
      actionButton("Approve", () => decide(p, "approve"), { cls: "primary", key: `approve-${p.decision_id}` }),
      actionButton("Reject", () => decide(p, "reject"), { key: `reject-${p.decision_id}` })) },
  ], items, { empty: "no proposal is waiting (proposals appear in Semi-Auto mode)", id: "proposals" });
}

function decidedTable(items) {
  return table([
    { label: "Created", value: (p) => time(p.created_at) },
    { label: "Symbol", value: (p) => p.symbol },
    { label: "Side", value: (p) => p.side },
    { label: "Quantity", value: (p) => qty(p.quantity), num: true },
    { label: "Status", value: (p) => badge(p.status, p.status === "APPROVED" ? "ok" : "") },
    { label: "By", value: (p) => p.decided_by || "—" },
    { label: "At", value: (p) => time(p.decided_at) },
  ], items, { empty: "none decided yet" });
}

function votesTable(votes) {
  return table([
    { label: "Strategy", value: (v) => v.strategy },
    { label: "Producer", value: (v) => v.producer },
    { label: "Tag", value: (v) => v.risk_tag },
    { label: "Vote", value: (v) => v.action },
    { label: "Confidence", value: (v) => num(v.confidence, 3), num: true },
    { label: "Weight", value: (v) => num(v.weight, 3), num: true },
    { label: "Counted", value: (v) => (v.eligible ? "yes" : badge("filtered", "warn")) },
    { label: "Filter reason", value: (v) => v.filtered_reason || "—" },
    { label: "Reasons", value: (v) => v.reason_codes.join(", ") || "—" },
  ], votes, { empty: "no votes recorded" });
}

function decisionsTable(items) {
  return table([
    { label: "Time", value: (d) => time(d.ts) },
    { label: "Symbol", value: (d) => `${d.symbol} ${d.timeframe}` },
    { label: "Action", value: (d) => badge(d.action, d.action === "BUY" ? "ok" : d.action === "SELL" ? "warn" : "") },
    { label: "Intent", value: (d) => d.intent },
    { label: "Confidence / threshold", value: (d) => `${num(d.confidence, 3)} / ${num(d.threshold, 3)}`, num: true },
    { label: "Council", value: (d) => `${d.mode} · ${d.consensus}` },
    { label: "Regime", value: (d) => d.regime || "—" },
    { label: "Models / features", value: (d) => `${d.model_versions.join(", ") || "—"} · ${d.feature_set}` },
    { label: "Votes", value: (d) => h("details", {}, h("summary", { text: `${d.votes.length} votes` }),
      votesTable(d.votes), d.reason_codes.length ? h("p", { class: "hint", text: d.reason_codes.join(", ") }) : null) },
  ], items, { empty: "no decision matches", id: "decisions" });
}

export default {
  id: "decisions",
  title: "Decisions",
  async render(root, ctx) {
    const pending = h("div");
    const decided = h("div");
    const list = h("div");
    const markets = await get("/console/markets").catch(() => []);
    const filters = { symbol: "", action: "" };

    const loadProposals = async (background) => {
      const [open, recent] = await Promise.all([
        get("/proposals", { background, params: { status: "PENDING", limit: 100 } }),
        get("/proposals", { background, params: { limit: 20 } })]);
      clear(pending, proposalsTable(open.items, decide));
      clear(decided, decidedTable(recent.items.filter((p) => p.status !== "PENDING")));
    };
    const loadDecisions = async (background) => {
      const page = await get("/decisions", { background, params: { ...filters, limit: 50 } });
      clear(list, decisionsTable(page.items));
    };
    const decide = async (p, verb) => {
      await control(`/proposals/${p.decision_id}/${verb}`, { reason: `console ${verb}` });
      await loadProposals(false);
    };

    const symbol = select("symbol", [["", "any symbol"], ...new Set(markets.map((m) => m.symbol))], "");
    const action = select("action", ACTIONS, "");
    const apply = () => {
      filters.symbol = symbol.value;
      filters.action = action.value;
      return loadDecisions(false);
    };
    symbol.addEventListener("change", apply);
    action.addEventListener("change", apply);

    root.append(
      h("section", { class: "card" }, h("h2", { text: "Semi-Auto proposals" }),
        h("p", { class: "hint", text: "Each waits for your approval until it expires; an approved one is sent as an "
          + "order at once." }), pending,
        h("details", { class: "section" }, h("summary", { text: "Recently decided" }), decided)),
      h("section", { class: "card" }, h("h2", { text: "Council decisions" }),
        h("div", { class: "form" }, field("Symbol", symbol), field("Action", action)), list));

    ctx.every(1000, () => {
      for (const el of pending.querySelectorAll(".time-left")) {
        el.textContent = timeLeft({ expires_at: el.dataset.expires || null });
      }
    });
    ctx.on("state", ctx.soon(() => loadProposals(true).catch(() => {})));
    ctx.on("decisions", ctx.soon(() => loadDecisions(true).catch(() => {}), 500));
    await Promise.all([loadProposals(false), loadDecisions(false)]);
  },
};
