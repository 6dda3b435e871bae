// The gateway's /status, shared by the header's warnings and the overview: fetched once per change the stream
// announces (debounced), never on a timer.

import { get } from "./api.js";

let latest = null;
const subscribers = new Set();

export function latestStatus() { return latest; }

export function onStatus(fn) {
  subscribers.add(fn);
  if (latest) fn(latest);
  return () => subscribers.delete(fn);
}

export async function refreshStatus({ background = true } = {}) {
  latest = await get("/status", { background });
  for (const fn of subscribers) fn(latest);
  return latest;
}

// Run ``fn`` once, ``ms`` after the last of a burst of calls (a replay sends many events a second).
export function debounce(fn, ms = 300) {
  let timer = null;
  const run = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => { timer = null; fn(...args); }, ms);
  };
  run.cancel = () => clearTimeout(timer);
  return run;
}
