// The gateway's REST API as the console calls it: same origin, the session cookie, the session's CSRF token on
// every request that changes anything. Reads throw ApiError; controls return the answer whatever its status,
// because 202 (confirm), 409 (refused) and 504 (no confirmation) are answers an operator must see.

let csrfToken = null;
let onSessionLost = () => {};
let onActivity = () => {};

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

export function useSession(session, { lost, activity } = {}) {
  csrfToken = session ? session.csrf_token : null;
  if (lost) onSessionLost = lost;
  if (activity) onActivity = activity;
}

// A readable sentence from any error body: FastAPI's detail string, its validation list, or a control's result.
export function describe(data, status) {
  if (data == null) return `HTTP ${status}`;
  if (typeof data === "string") return data;
  if (Array.isArray(data.detail)) {
    return data.detail.map((e) => `${(e.loc || []).filter((p) => p !== "body").join(".") || "request"}: ${e.msg}`)
      .join("; ");
  }
  if (data.detail) return String(data.detail);
  if (data.status) return data.status;
  return `HTTP ${status}`;
}

async function call(method, path, { body, background = false } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  if (background) headers["X-Quorum-Background"] = "1";
  const response = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  const text = await response.text();
  if (text) {
    try { data = JSON.parse(text); } catch { data = text; }
  }
  if (response.status === 401) onSessionLost(describe(data, 401));
  else if (!background) onActivity();
  return { status: response.status, ok: response.ok, data };
}

// A read; ``background``: the console refreshing itself (after a live event), which is not operator activity.
export async function get(path, { background = false, params } = {}) {
  const query = params ? new URLSearchParams(Object.entries(params).filter(([, v]) => v !== "" && v != null)) : null;
  const answer = await call("GET", query && `${query}` ? `${path}?${query}` : path, { background });
  if (!answer.ok) throw new ApiError(answer.status, describe(answer.data, answer.status));
  return answer.data;
}

// A change: every status comes back (the caller shows it).
export function send(method, path, body) {
  return call(method, path, { body });
}

export function post(path, body = {}) {
  return send("POST", path, body);
}

export async function logIn(token) {
  const response = await fetch("/console/session", {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", Accept: "application/json", "X-Quorum-Console": "1" },
    body: JSON.stringify({ token }),
  });
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, describe(data, response.status));
  return data;
}

export async function currentSession() {
  const response = await fetch("/console/session", {
    credentials: "same-origin", headers: { Accept: "application/json", "X-Quorum-Background": "1" },
  });
  return response.ok ? response.json() : null;
}

export async function logOut() {
  await send("DELETE", "/console/session");
  csrfToken = null;
}
