// The console's shell: log-in, the session's inactivity timer, the pages and their navigation, the live stream,
// and the warnings that stay on screen whatever the page (live money, a halt, routing or the stream down).

import { currentSession, logIn, logOut, useSession } from "./api.js";
import * as stream from "./stream.js";
import { debounce, latestStatus, onStatus, refreshStatus } from "./status.js";
import { badge, clear, h, setRole, toast } from "./ui.js";
import overview from "./pages/overview.js";
import portfolio from "./pages/portfolio.js";
import decisions from "./pages/decisions.js";
import strategy from "./pages/strategy.js";
import risk from "./pages/risk.js";
import audit from "./pages/audit.js";
import admin from "./pages/admin.js";

const PAGES = [overview, portfolio, decisions, strategy, risk, audit, admin];
const $ = (id) => document.getElementById(id);
let session = null;
let leavePage = () => {};
let idleTimer = null;
let unsubscribe = [];

// --- session ------------------------------------------------------------------------------------------------
function showLogin(message = "") {
  const wasIn = session !== null;
  session = null;
  clearTimeout(idleTimer);
  stream.close();
  leavePage();
  leavePage = () => {};
  for (const fn of unsubscribe) fn();
  unsubscribe = [];
  $("app").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = wasIn || message ? message : "";
  $("login-submit").disabled = false;
  $("login-token").focus();
}

// The server ends an idle session; this timer only notices it then, so the screen does not linger logged in.
function armIdleTimer(seconds) {
  clearTimeout(idleTimer);
  if (!session) return;
  idleTimer = setTimeout(async () => {
    const now = await currentSession();
    if (!now) showLogin("Your session ended after a while without activity: log in again.");
    else armIdleTimer(now.seconds_left);
  }, (seconds ?? session.idle_timeout_s) * 1000 + 500);
}

function start(s) {
  session = s;
  useSession(s, {
    lost: (why) => { if (session) showLogin(`Logged out: ${why}`); },
    activity: () => armIdleTimer(),
  });
  setRole(s.role);
  $("login").hidden = true;
  $("app").hidden = false;
  clear($("who"), `${s.token_id} · `, badge(s.role, s.role === "viewer" ? "warn" : ""));
  armIdleTimer(s.seconds_left);
  buildNav();
  stream.open();
  const statusSoon = debounce(() => refreshStatus().catch(() => {}), 250);
  unsubscribe = [
    stream.on(["state", "alerts"], statusSoon),
    stream.onConnection(() => renderWarnings()),
    onStatus(() => renderWarnings()),
  ];
  refreshStatus({ background: false }).catch((e) => toast(`status: ${e.message}`, "bad"));
  route();
}

async function submitLogin(event) {
  event.preventDefault();
  const button = $("login-submit");
  if (button.disabled) return;
  button.disabled = true;
  $("login-error").textContent = "";
  try {
    const s = await logIn($("login-token").value);
    $("login-token").value = "";
    start(s);
  } catch (error) {
    $("login-error").textContent = error.message;
    button.disabled = false;
  }
}

// --- pages ----------------------------------------------------------------------------------------------------
function buildNav() {
  clear($("nav"), PAGES.map((p) => h("a", { href: `#/${p.id}`, id: `nav-${p.id}`, text: p.title })));
}

function currentPage() {
  const id = (location.hash.match(/^#\/([a-z]+)/) || [])[1];
  return PAGES.find((p) => p.id === id) || PAGES[0];
}

// What a page gets: subscriptions and timers that end when the operator leaves it.
function pageContext() {
  const cleanups = [];
  return {
    on: (topics, fn) => cleanups.push(stream.on(topics, fn)),
    onStatus: (fn) => cleanups.push(onStatus(fn)),
    every: (ms, fn) => { const t = setInterval(fn, ms); cleanups.push(() => clearInterval(t)); },
    soon: (fn, ms = 300) => { const d = debounce(fn, ms); cleanups.push(d.cancel); return d; },
    leave: () => cleanups.splice(0).forEach((fn) => fn()),
  };
}

async function route() {
  if (!session) return;
  leavePage();
  const page = currentPage();
  for (const a of $("nav").querySelectorAll("a")) a.classList.toggle("active", a.id === `nav-${page.id}`);
  // A fresh container per visit: a page still loading when the operator moves on draws into a detached one.
  const frame = $("page");
  const root = h("div");
  clear(frame, root);
  delete frame.dataset.ready;
  frame.dataset.page = page.id;
  const ctx = pageContext();
  leavePage = ctx.leave;
  document.title = `${page.title} · Quorum console`;
  try {
    await page.render(root, ctx);
  } catch (error) {
    root.append(h("p", { class: "error", text: `${page.title}: ${error.message}` }));
  }
  if (root.isConnected) frame.dataset.ready = "1";
}

// --- warnings -------------------------------------------------------------------------------------------------
function renderWarnings() {
  const box = $("warnings");
  const s = latestStatus();
  const items = [];
  if (!stream.isConnected()) {
    items.push(["stream", "warn", "Live updates are disconnected: figures may be stale until the stream reconnects."]);
  }
  if (s) {
    if (s.trading_mode === "LIVE") items.push(["live", "live", "LIVE trading: orders spend real money."]);
    if (s.emergency_halt) {
      items.push(["emergency", "bad", "EMERGENCY HALT after a drawdown breach: clear it on the Overview once understood."]);
    } else if (s.halted) {
      items.push(["halted", "bad", `Trading is HALTED${s.halt_reason ? `: ${s.halt_reason}` : ""}.`]);
    }
    if (!s.routing_connected) {
      items.push(["routing", "warn", `Order routing is ${s.routing || "disconnected"}: no order reaches the venue.`]);
    }
    if (s.kill_switch_global) items.push(["kill", "bad", "The global kill switch is engaged: close-only."]);
    const stale = Object.entries(s.services || {}).filter(([, v]) => v.stale).map(([k]) => k);
    if (stale.length) items.push(["stale", "warn", `No recent heartbeat from: ${stale.join(", ")}.`]);
  }
  clear(box, items.map(([id, kind, text]) => h("div", { class: `warning ${kind}`, dataset: { warning: id }, text })));
  const mode = $("mode-badge");
  mode.textContent = s ? s.trading_mode : "";
  mode.className = `badge ${s && s.trading_mode === "LIVE" ? "live" : "ok"}`;
  const live = $("stream-state");
  live.textContent = stream.isConnected() ? "live" : "offline";
  live.className = `badge ${stream.isConnected() ? "ok" : "warn"}`;
}

// --- boot -----------------------------------------------------------------------------------------------------
$("login-form").addEventListener("submit", submitLogin);
$("logout").addEventListener("click", async () => {
  $("logout").disabled = true;
  try { await logOut(); } finally { $("logout").disabled = false; showLogin("Logged out."); }
});
window.addEventListener("hashchange", route);
currentSession().then((s) => (s ? start(s) : showLogin()), () => showLogin("The gateway cannot be reached."));
