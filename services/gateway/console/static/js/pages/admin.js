// Admin: API tokens and their roles (a new token is shown once), the master PIN, and the exchange keys (never
// more than their last four characters). Everything here needs the admin role; others see why it is empty.

import { ApiError, get, post } from "../api.js";
import { control } from "../confirm.js";
import { actionButton, actionForm, badge, can, clear, currentRole, field, h, select, table, time, toast } from "../ui.js";

function adminOnly(root) {
  root.append(h("section", { class: "card", id: "admin-only" }, h("h2", { text: "Admin" }),
    h("p", { class: "muted", text: `Tokens, the master PIN and exchange keys need the admin role; you are `
      + `${currentRole()}.` })));
}

export default {
  id: "admin",
  title: "Admin",
  async render(root) {
    if (!can("admin")) {
      adminOnly(root);
      return;
    }
    const tokens = h("div");
    const fresh = h("div", { id: "new-token" });
    const keys = h("div");

    const loadTokens = async () => {
      const list = await get("/admin/tokens");
      clear(tokens, table([
        { label: "Token", value: (t) => h("code", { text: t.token_id }) },
        { label: "Name", value: (t) => t.name },
        { label: "Role", value: (t) => badge(t.role, t.role === "admin" ? "warn" : "") },
        { label: "Created", value: (t) => `${time(t.created_at)} by ${t.created_by}` },
        { label: "Revoked", value: (t) => (t.revoked_at ? badge(time(t.revoked_at), "bad") : "—") },
        { label: "", value: (t) => (t.revoked_at ? null : actionButton("Revoke", async () => {
          const answer = await post(`/admin/tokens/${t.token_id}/revoke`, {});
          toast(answer.ok ? `revoked ${t.token_id}` : `revoke: HTTP ${answer.status}`, answer.ok ? "ok" : "bad");
          await loadTokens();
        }, { needed: "admin", key: `revoke-${t.token_id}` })) },
      ], list, { empty: "no token minted yet (the bootstrap token is not listed)", id: "tokens" }));
    };
    const loadKeys = async () => {
      const list = await get("/admin/exchange-keys");
      clear(keys, table([
        { label: "Exchange", value: (k) => k.exchange },
        { label: "Label", value: (k) => k.label },
        { label: "Key", value: (k) => h("code", { text: `••••${k.api_key_hint}` }) },
        { label: "May withdraw", value: (k) => (k.can_withdraw === false ? badge("no", "ok")
          : badge(k.can_withdraw ? "YES" : "unknown", "warn")) },
        { label: "Created", value: (k) => `${time(k.created_at)} by ${k.created_by}` },
        { label: "Revoked", value: (k) => time(k.revoked_at) },
      ], list, { empty: "no exchange key registered", id: "exchange-keys" }));
    };

    const mint = actionForm([
      field("Name", h("input", { name: "name", required: true, maxlength: 100, placeholder: "grafana" })),
      field("Role", select("role", ["viewer", "operator", "admin"], "viewer")),
    ], "Mint token", async (values, form) => {
      const answer = await post("/admin/tokens", values);
      if (!answer.ok) throw new ApiError(answer.status, `mint: ${JSON.stringify(answer.data && answer.data.detail)}`);
      clear(fresh, h("div", { class: "warning warn" }, "Copy this token now: it is shown once. ",
        h("code", { text: answer.data.token })));
      form.reset();
      await loadTokens();
    }, { needed: "admin" });

    const pin = actionForm([
      field("New PIN", h("input", { name: "pin", type: "password", required: true, minlength: 6,
        autocomplete: "new-password" })),
      field("Current PIN (to change it)", h("input", { name: "current_pin", type: "password",
        autocomplete: "off" })),
    ], "Set master PIN", async (values, form) => {
      const body = { pin: values.pin, ...(values.current_pin ? { current_pin: values.current_pin } : {}) };
      const answer = await post("/admin/master-pin", body);
      if (answer.status === 204) toast("master PIN set", "ok");
      else throw new ApiError(answer.status, `master PIN: ${JSON.stringify(answer.data && answer.data.detail)}`);
      form.reset();
    }, { needed: "admin" });

    const register = actionForm([
      field("Exchange", h("input", { name: "exchange", required: true, placeholder: "binance", pattern: "[a-z0-9_]+" })),
      field("Label", h("input", { name: "label", required: true, placeholder: "main trading key" })),
      field("API key", h("input", { name: "api_key", required: true, minlength: 8, autocomplete: "off" })),
      field("Secret", h("input", { name: "secret", type: "password", required: true, minlength: 8,
        autocomplete: "off" })),
    ], "Register key", async (values, form) => {
      const answer = await control("/admin/exchange-keys", values, { title: "Register a live exchange key" });
      if (answer.ok) { form.reset(); await loadKeys(); }
    }, { needed: "admin" });

    root.append(
      h("section", { class: "card" }, h("h2", { text: "API tokens" }), tokens, fresh, mint),
      h("section", { class: "card" }, h("h2", { text: "Master PIN" }),
        h("p", { class: "hint", text: "Live actions ask for it; changing it re-encrypts every stored exchange key." }),
        pin),
      h("section", { class: "card" }, h("h2", { text: "Exchange keys" }),
        h("p", { class: "hint", text: "Checked with the exchange (a key that may withdraw is refused), stored "
          + "encrypted, never shown again." }), keys, register));
    await Promise.all([loadTokens(), loadKeys()]);
  },
};
