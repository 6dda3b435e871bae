// Controls, and the two-step confirmation: a first call that answers 202 carries the server's warning and a
// single-use token; the dialog shows that warning word for word, asks for the typed phrase and the master PIN
// where the server needs them, and sends the very same request again with the token.

import { describe, post } from "./api.js";
import { duration, toast } from "./ui.js";

// The server's answer says which phrase to type (``phrase``) and whether the master PIN is needed
// (``pin_required``).

function outcome(answer) {
  const { status, data } = answer;
  if (status === 200 || status === 201 || status === 204) {
    const detail = data && data.confirmation ? ` (${data.confirmation})` : "";
    return { ok: true, text: `${(data && data.action) || "done"}: ${(data && data.status) || "OK"}${detail}` };
  }
  if (status === 409 && data && data.status === "REFUSED") {
    return { ok: false, text: `refused: ${data.detail || data.action}` };
  }
  if (status === 504) return { ok: false, text: `no confirmation in time: ${describe(data, status)}` };
  return { ok: false, text: describe(data, status) };
}

// POST a control; confirm it in the dialog when the server asks. Resolves to the final answer
// ({status, data, ok}); a canceled confirmation resolves to {canceled: true}.
export async function control(path, body = {}, { title } = {}) {
  const first = await post(path, body);
  if (first.status === 202 && first.data && first.data.confirmation_token) {
    return confirmInDialog(path, body, first.data, title);
  }
  report(first);
  return first;
}

function report(answer) {
  const { ok, text } = outcome(answer);
  toast(text, ok ? "ok" : "bad");
}

// Ask before a control the server does not guard itself (a service's shutdown): the same dialog, our words.
export function askFirst(title, warning) {
  return openDialog({ title, warning, phrase: null, pin: false, expiresAt: null, submit: async () => ({ done: true }) })
    .then((result) => !result.canceled);
}

function confirmInDialog(path, body, required, title) {
  const phrase = required.phrase || null;
  const pin = Boolean(required.pin_required);
  return openDialog({
    title: title || `Confirm ${required.action.replaceAll("_", " ")}`,
    warning: required.warning, phrase, pin, expiresAt: required.expires_at,
    submit: async ({ typed, pinValue }) => {
      const second = { ...body, confirmation_token: required.confirmation_token };
      if (phrase) second.confirmation_phrase = typed;
      if (pin) second.pin = pinValue;
      const answer = await post(path, second);
      // A mistyped phrase (422) or a wrong PIN (403) leaves the token unspent: let the operator try again.
      if (answer.status === 422 || answer.status === 403) return { retry: describe(answer.data, answer.status) };
      report(answer);
      return { done: true, answer };
    },
  }).then((result) => result.answer || result);
}

function openDialog({ title, warning, phrase, pin, expiresAt, submit }) {
  const dialog = document.getElementById("confirm");
  const $ = (id) => document.getElementById(id);
  const form = $("confirm-form");
  const ok = $("confirm-ok");
  const cancel = $("confirm-cancel");
  const typed = $("confirm-phrase");
  const pinInput = $("confirm-pin");
  $("confirm-title").textContent = title;
  $("confirm-warning").textContent = warning;
  $("confirm-error").textContent = "";
  $("confirm-phrase-row").hidden = !phrase;
  $("confirm-phrase-text").textContent = phrase || "";
  $("confirm-pin-row").hidden = !pin;
  typed.value = "";
  pinInput.value = "";

  const ready = () => (!phrase || typed.value === phrase) && (!pin || pinInput.value.length > 0);
  let sending = false;
  let expired = false;
  const refresh = () => { ok.disabled = sending || expired || !ready(); cancel.disabled = sending; };
  refresh();

  let timer = null;
  const tick = () => {
    if (!expiresAt) { $("confirm-expiry").textContent = ""; return; }
    const left = (new Date(expiresAt).getTime() - Date.now()) / 1000;
    $("confirm-expiry").textContent = left > 0 ? `This confirmation expires in ${duration(left)}.`
      : "This confirmation has expired: cancel and start again.";
    if (left <= 0 && !expired) { expired = true; refresh(); }
  };
  tick();
  if (expiresAt) timer = setInterval(tick, 1000);

  return new Promise((resolve) => {
    const finish = (result) => {
      clearInterval(timer);
      typed.removeEventListener("input", refresh);
      pinInput.removeEventListener("input", refresh);
      form.removeEventListener("submit", onSubmit);
      cancel.removeEventListener("click", onCancel);
      dialog.removeEventListener("cancel", onCancel);
      if (dialog.open) dialog.close();
      resolve(result);
    };
    const onCancel = (event) => {
      event.preventDefault();
      if (!sending) finish({ canceled: true });
    };
    const onSubmit = async (event) => {
      event.preventDefault();
      if (sending || expired || !ready()) return;
      sending = true;
      refresh();
      try {
        const result = await submit({ typed: typed.value, pinValue: pinInput.value });
        if (result.retry) {
          $("confirm-error").textContent = result.retry;
          sending = false;
          refresh();
          return;
        }
        finish(result);
      } catch (error) {
        finish({ canceled: true, error });
        toast(error.message || String(error), "bad");
      }
    };
    typed.addEventListener("input", refresh);
    pinInput.addEventListener("input", refresh);
    form.addEventListener("submit", onSubmit);
    cancel.addEventListener("click", onCancel);
    dialog.addEventListener("cancel", onCancel);
    dialog.showModal();
    (phrase ? typed : pin ? pinInput : cancel).focus();
  });
}
