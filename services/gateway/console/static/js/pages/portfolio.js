// Portfolio: the book at a glance, equity and drawdown (against the active profile's limit) over time, positions
// with their unrealized PnL, balances, and a candle chart per asset with its fills, stop-loss and take-profit.
// The equity curve grows from the stream's marks; the rest reloads when a fill arrives.

import { get } from "../api.js";
import { candleChart, lineChart } from "../charts.js";
import { clear, field, h, num, pct, qty, select, table, time } from "../ui.js";

const PAGE = 500;
const MAX_PAGES = 20; // 10,000 marks: more than a chart can show

async function equityCurve() {
  const points = [];
  for (let offset = 0, i = 0; i < MAX_PAGES; i += 1, offset += PAGE) {
    const page = await get("/equity", { params: { limit: PAGE, offset } });
    points.push(...page.items);
    if (page.items.length < PAGE) break;
  }
  return points;
}

function thin(points, most = 800) {
  if (points.length <= most) return points;
  const step = points.length / most;
  return Array.from({ length: most }, (_, i) => points[Math.floor(i * step)]).concat(points[points.length - 1]);
}

function summary(p, limitPct) {
  const figure = (label, value, sub) => h("div", { class: "card" }, h("div", { class: "sub", text: label }),
    h("div", { class: "value", text: value }), sub ? h("div", { class: "sub", text: sub }) : null);
  return h("div", { class: "grid", id: "portfolio-summary" },
    figure("Equity", num(p.equity), `peak ${num(p.peak_equity)}`),
    figure("Drawdown", pct(p.drawdown), limitPct != null ? `limit ${num(limitPct)}%` : null),
    figure("Cash", num(p.cash), `holdings ${num(p.holdings_value)}`),
    figure("Unrealized PnL", num(p.unrealized_pnl), `realized ${num(p.realized_pnl)}`),
    figure("Fees paid", num(p.fees_paid), `${p.positions} open position${p.positions === 1 ? "" : "s"}`));
}

export default {
  id: "portfolio",
  title: "Portfolio",
  async render(root, ctx) {
    const top = h("div");
    const curves = h("div", { class: "grid charts" });
    const book = h("div");
    const assetChart = h("div");
    const [markets, risk] = await Promise.all([get("/console/markets"), get("/risk")]);
    const limitPct = Number(risk.limits.max_drawdown_pct);
    const marks = await equityCurve();
    let tradingMode = null;

    const drawCurves = () => {
      const shown = thin(marks);
      clear(curves,
        h("section", { class: "card" }, h("h3", { text: "Equity" }), lineChart(
          shown.map((m) => ({ t: Date.parse(m.ts), v: Number(m.equity) })), { label: "equity over time" })),
        h("section", { class: "card" }, h("h3", { text: "Drawdown" }), lineChart(
          shown.map((m) => ({ t: Date.parse(m.ts), v: -Number(m.drawdown) * 100 })),
          { label: "drawdown over time", area: true, limit: { v: -limitPct, label: `limit -${num(limitPct)}%` },
            format: (v) => `${v.toFixed(1)}%` })));
    };
    const loadBook = async (background) => {
      const [portfolio, positions, balances] = await Promise.all([get("/portfolio", { background }),
        get("/positions", { background }), get("/balances", { background })]);
      tradingMode = portfolio.mode;
      clear(top, summary(portfolio, limitPct));
      clear(book,
        h("section", { class: "card" }, h("h3", { text: "Positions" }), table([
          { label: "Symbol", value: (p) => p.symbol },
          { label: "Quantity", value: (p) => qty(p.quantity), num: true },
          { label: "Average cost", value: (p) => num(p.avg_cost), num: true },
          { label: "Mark", value: (p) => num(p.mark_price), num: true },
          { label: "Unrealized PnL", value: (p) => h("span", { class: Number(p.unrealized_pnl) < 0 ? "bad" : "good",
            text: num(p.unrealized_pnl) }), num: true },
          { label: "Realized PnL", value: (p) => num(p.realized_pnl), num: true },
          { label: "Fees", value: (p) => num(p.fees_paid), num: true },
          { label: "Updated", value: (p) => time(p.updated_at) },
        ], positions, { empty: "no open position", id: "positions" })),
        h("section", { class: "card" }, h("h3", { text: "Balances" }), table([
          { label: "Kind", value: (b) => b.kind },
          { label: "Currency", value: (b) => b.currency },
          { label: "Amount", value: (b) => qty(b.amount), num: true },
        ], balances, { empty: "no balance booked yet", id: "balances" })));
    };

    const choices = markets.map((m) => [`${m.symbol}|${m.timeframe}`, `${m.symbol} ${m.timeframe}`]);
    const market = select("market", choices, choices.length ? choices[0][0] : "");
    const loadChart = async (background) => {
      if (!market.value) { clear(assetChart, h("p", { class: "muted", text: "no candles stored yet" })); return; }
      const [symbol, timeframe] = market.value.split("|");
      const data = await get("/console/chart", { background, params: { symbol, timeframe, limit: 200 } });
      clear(assetChart, candleChart(data, { label: `${symbol} candles` }),
        h("p", { class: "hint", text: `${data.fills.length} fills shown; levels: ${data.levels.map(
          (l) => `${l.kind.toLowerCase()} ${num(l.price)}`).join(", ") || "none"}` }));
    };
    market.addEventListener("change", () => loadChart(false));

    root.append(top, curves, book,
      h("section", { class: "card" }, h("h3", { text: "Asset" }), field("Market", market), assetChart));
    drawCurves();
    await Promise.all([loadBook(false), loadChart(false)]);

    const redrawCurves = ctx.soon(drawCurves, 500);
    ctx.on("equity", (envelope) => {
      const m = envelope.payload;
      if (m.mode !== tradingMode) return;
      marks.push({ ts: m.ts, equity: m.equity, drawdown: m.drawdown });
      redrawCurves();
    });
    ctx.on("fills", ctx.soon(() => Promise.all([loadBook(true), loadChart(true)]).catch(() => {}), 500));
  },
};
