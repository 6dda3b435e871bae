// Small DOM helpers: elements, tables, numbers and times, toasts, and the buttons that act. An action button
// disables itself before its request leaves and stays disabled until the answer is in, so one click (or one
// held-down Enter) sends one request; the in-flight set keeps it disabled across a redraw of its page.

const ROLES = ["viewer", "operator", "admin"];
const inFlight = new Set();
const MAX_TOASTS = 3;
let role = "viewer";

export function setRole(r) { role = r; }
export function currentRole() { return role; }
export function can(needed) { return ROLES.indexOf(role) >= ROLES.indexOf(needed); }

export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value == null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// --- numbers and times ---------------------------------------------------------------------------------------
export function num(value, digits = 2) {
  if (value == null || value === "") return "—";
  const n = Number(value);
  if (!Number.isFinite(n)) return String(value);
  return n.toLocaleString(undefined, { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function qty(value) {
  if (value == null) return "—";
  const n = Number(value);
  return Number.isFinite(n) ? n.toLocaleString(undefined, { maximumFractionDigits: 8 }) : String(value);
}

export function pct(fraction, digits = 2) {
  return fraction == null ? "—" : `${num(Number(fraction) * 100, digits)}%`;
}

export function time(ts) {
  if (!ts) return "—";
  const d = new Date(ts);
  return Number.isNaN(d.getTime()) ? String(ts) : d.toISOString().replace("T", " ").slice(0, 19);
}

export function duration(seconds) {
  if (seconds == null) return "—";
  const s = Math.max(0, Math.round(seconds));
  const m = Math.floor(s / 60);
  return m ? `${m}m ${String(s % 60).padStart(2, "0")}s` : `${s}s`;
}

export function badge(text, kind = "") {
  return h("span", { class: `badge ${kind}`, text });
}

// --- tables --------------------------------------------------------------------------------------------------
// columns: [{ label, value(row) -> text | Node, num: bool }]
export function table(columns, rows, { empty = "nothing yet", rowClass, id } = {}) {
  if (!rows || rows.length === 0) return h("p", { class: "muted", text: empty });
  const head = h("tr", {}, columns.map((c) => h("th", { class: c.num ? "num" : null, text: c.label })));
  const body = rows.map((row) => h("tr", { class: rowClass ? rowClass(row) : null },
    columns.map((c) => h("td", { class: c.num ? "num" : null }, cell(c.value(row))))));
  return h("div", { class: "table-wrap" }, h("table", { id }, h("thead", {}, head), h("tbody", {}, body)));
}

function cell(value) {
  return value == null ? "—" : value;
}

export function json(value) {
  return h("pre", { class: "json", text: JSON.stringify(value, null, 2) });
}

// A flat object as a two-column table (metrics): numbers formatted, nested values as JSON.
export function keyValues(obj, { id } = {}) {
  const show = (v) => (typeof v === "number" ? num(v, Math.abs(v) >= 100 ? 2 : 4)
    : v !== null && typeof v === "object" ? JSON.stringify(v) : v == null ? "—" : String(v));
  return table([{ label: "", value: ([k]) => k }, { label: "", value: ([, v]) => show(v), num: true }],
    Object.entries(obj || {}).sort(([a], [b]) => a.localeCompare(b)), { empty: "none", id });
}

// --- acting ----------------------------------------------------------------------------------------------------
// ``needed``: the least role that may act; ``key`` names the action across redraws (default: the label).
export function actionButton(label, run, { needed = "operator", cls = "", key = label, title, id } = {}) {
  const allowed = can(needed);
  const button = h("button", {
    type: "button", class: cls, id, dataset: { action: key },
    title: allowed ? title : `${needed} role needed (you are ${role})`,
  }, label);
  button.disabled = !allowed || inFlight.has(key);
  button.addEventListener("click", async (event) => {
    event.preventDefault();
    if (button.disabled || inFlight.has(key)) return;
    inFlight.add(key);
    button.disabled = true;
    try {
      await run(button);
    } catch (error) {
      toast(error.message || String(error), "bad");
    } finally {
      inFlight.delete(key);
      button.disabled = !can(needed);
    }
  });
  return button;
}

// A form whose submit acts once at a time: its fields and submit button disable while the request is out.
export function actionForm(fields, submitLabel, run, { needed = "operator", cls = "primary", key } = {}) {
  const allowed = can(needed);
  const submit = h("button", { type: "submit", class: cls }, submitLabel);
  const form = h("form", { class: "form" }, fields, submit);
  const name = key || submitLabel;
  const lock = (on) => {
    for (const el of form.elements) el.disabled = on || !allowed;
  };
  lock(inFlight.has(name));
  if (!allowed) submit.title = `${needed} role needed (you are ${role})`;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!allowed || inFlight.has(name)) return;
    inFlight.add(name);
    const values = Object.fromEntries(new FormData(form).entries());
    lock(true);
    try {
      await run(values, form);
    } catch (error) {
      toast(error.message || String(error), "bad");
    } finally {
      inFlight.delete(name);
      lock(false);
    }
  });
  return form;
}

export function field(label, input) {
  return h("label", { class: "field" }, h("span", { class: "hint", text: label }), input);
}

export function select(name, options, selected) {
  return h("select", { name }, options.map((o) => {
    const [value, text] = Array.isArray(o) ? o : [o, o];
    return h("option", { value, selected: value === selected }, text);
  }));
}

export function toast(message, kind = "") {
  const box = document.getElementById("toasts");
  const el = h("div", { class: `toast ${kind}`, text: message });
  box.append(el);
  while (box.children.length > MAX_TOASTS) box.firstElementChild.remove();
  setTimeout(() => el.remove(), kind === "bad" ? 9000 : 5000);
}
