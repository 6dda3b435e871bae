// The gateway's live stream (Server-Sent Events, same origin, so the session cookie goes along). Pages subscribe
// to topics; the browser reconnects by itself after a drop, and the header shows whether the stream is live.

const TOPICS = ["equity", "fills", "decisions", "alerts", "state"];
const listeners = new Map(TOPICS.map((t) => [t, new Set()]));
const stateListeners = new Set();
let source = null;
let connected = false;

export function isConnected() { return connected; }

function setConnected(value) {
  connected = value;
  for (const fn of stateListeners) fn(value);
}

export function onConnection(fn) {
  stateListeners.add(fn);
  return () => stateListeners.delete(fn);
}

export function open() {
  if (source) return;
  source = new EventSource(`/stream?topics=${TOPICS.join(",")}`);
  source.onopen = () => setConnected(true);
  source.onerror = () => setConnected(false);
  for (const topic of TOPICS) {
    source.addEventListener(topic, (message) => {
      let envelope;
      try { envelope = JSON.parse(message.data); } catch { return; }
      for (const fn of listeners.get(topic)) fn(envelope);
    });
  }
}

export function close() {
  if (source) source.close();
  source = null;
  setConnected(false);
}

// Subscribe to one or more topics; returns the unsubscribe.
export function on(topics, fn) {
  const names = Array.isArray(topics) ? topics : [topics];
  for (const t of names) listeners.get(t).add(fn);
  return () => { for (const t of names) listeners.get(t).delete(fn); };
}
