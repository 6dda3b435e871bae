// Audit: the trail, newest first, filtered by actor, action, status (on the server, so older matching rows are
// found too; the loaded rows are filtered at once meanwhile) or any text; a re-walk of its hash chain; the whole
// trail exported as CSV or JSON lines (the export is a plain download: same origin, the cookie).

import { get } from "../api.js";
import { actionButton, badge, clear, field, h, select, table, time } from "../ui.js";

const PAGE = 500;
const STATUSES = [["", "any status"], "REQUESTED", "CONFIRMED", "REFUSED", "TIMEOUT", "PENDING_CONFIRM"];

function matches(row, f) {
  if (f.actor && !row.actor.toLowerCase().includes(f.actor.toLowerCase())) return false;
  if (f.action && !row.action.toLowerCase().includes(f.action.toLowerCase())) return false;
  if (f.status && row.status !== f.status) return false;
  if (f.text && !JSON.stringify(row).toLowerCase().includes(f.text.toLowerCase())) return false;
  return true;
}

export default {
  id: "audit",
  title: "Audit",
  async render(root, ctx) {
    const rows = [];
    const filters = { actor: "", action: "", status: "", text: "" };
    const list = h("div");
    const counter = h("span", { class: "hint" });
    const verdict = h("div", { id: "audit-verdict" });
    let exhausted = false;

    const draw = () => {
      const shown = rows.filter((r) => matches(r, filters));
      counter.textContent = `${shown.length} of ${rows.length} loaded rows${exhausted ? " (the whole trail)" : ""}`;
      clear(list, table([
        { label: "#", value: (r) => r.id, num: true },
        { label: "Time", value: (r) => time(r.ts) },
        { label: "Actor", value: (r) => r.actor },
        { label: "Action", value: (r) => r.action },
        { label: "Status", value: (r) => badge(r.status, r.status === "CONFIRMED" ? "ok"
          : r.status === "REFUSED" || r.status === "TIMEOUT" ? "bad" : "") },
        { label: "Mode / profile", value: (r) => `${r.mode} · ${r.risk_profile}` },
        { label: "Details", value: (r) => h("details", {}, h("summary", { text: summarize(r.details) }),
          h("pre", { class: "json", text: JSON.stringify(r.details, null, 2) })) },
      ], shown, { empty: "no row matches", id: "audit-rows" }));
    };
    const narrowed = () => Object.fromEntries(["actor", "action", "status"].filter((k) => filters[k])
      .map((k) => [k, filters[k]]));
    const loadMore = async () => {
      const page = await get("/audit", { params: { ...narrowed(), limit: PAGE, offset: rows.length } });
      rows.push(...page.items);
      exhausted = page.items.length < PAGE;
      more.hidden = exhausted;
      draw();
    };
    const reload = async (background = true) => {
      const limit = PAGE;  // the API serves at most 500 rows a page: a refresh shows the newest page again
      const page = await get("/audit", { background, params: { ...narrowed(), limit } });
      rows.splice(0, rows.length, ...page.items);
      exhausted = page.items.length < limit;
      more.hidden = exhausted;
      draw();
    };
    const refetch = ctx.soon(() => reload(false).catch(() => {}), 300);
    const input = (name, placeholder) => {
      const el = h("input", { name, placeholder, size: 14 });
      el.addEventListener("input", () => { filters[name] = el.value; draw(); if (name !== "text") refetch(); });
      return el;
    };
    const status = select("status", STATUSES, "");
    status.addEventListener("change", () => { filters.status = status.value; draw(); refetch(); });
    const more = actionButton("Load older rows", loadMore, { needed: "viewer", key: "audit-more" });
    const verify = actionButton("Verify the hash chain", async () => {
      const result = await get("/audit/verify");
      clear(verdict, result.ok ? badge(`chain OK: ${result.rows} rows`, "ok")
        : h("div", {}, badge(`chain BROKEN: ${result.problems.length} problems in ${result.rows} rows`, "bad"),
          h("ul", {}, result.problems.map((p) => h("li", { text: p })))));
    }, { needed: "viewer", key: "audit-verify", id: "audit-verify" });

    root.append(
      h("section", { class: "card" }, h("h2", { text: "Audit trail" }),
        h("div", { class: "row" }, verify,
          h("a", { href: "/audit/export?format=csv", download: "audit.csv", id: "export-csv", text: "Export CSV" }),
          h("a", { href: "/audit/export?format=jsonl", download: "audit.jsonl", id: "export-jsonl",
            text: "Export JSON lines" })),
        verdict,
        h("div", { class: "form section" }, field("Actor", input("actor", "USER:…")),
          field("Action", input("action", "halt")), field("Status", status), field("Any text", input("text", ""))),
        counter, list, more));
    ctx.on("state", ctx.soon(() => reload().catch(() => {}), 800));
    await loadMore();
  },
};

function summarize(details) {
  const keys = Object.keys(details || {});
  if (!keys.length) return "—";
  const first = keys.slice(0, 3).map((k) => `${k}: ${typeof details[k] === "object" ? "…" : details[k]}`);
  return first.join(", ").slice(0, 80);
}
