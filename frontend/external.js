// "Sign in with ..." (and, when signed in, "Link ...") for each external OpenID Connect
// provider the auth service is configured with.
//
// How the result reaches this page without a token ever being in a URL (see
// services/auth/README.md): before leaving for the provider the page keeps a random binding
// verifier in this tab's sessionStorage and sends only its SHA-256 to the auth service. The
// provider sends the browser to the auth service, which sends it back here with a one-time,
// 60-second handoff code in the URL *fragment* (never sent to a server, nor in a Referer).
// The page removes the fragment from the address bar and history at once, then posts the
// code with the verifier and gets Passgate's tokens in the response body.

import { byId, h } from "./dom.js";
import { request } from "./http.js";

const BINDING_KEY = "passgate.oidc_binding";

// What the page says for each `#oidc_error=<reason>` the auth service can send back.
const REASONS = {
  denied: "You cancelled at the provider, or it refused.",
  identity_conflict: "That provider account is already linked to another Passgate account.",
  provisioning_failed: "The account could not be set up; try again shortly.",
  provider_unavailable: "The provider could not be reached; try again shortly.",
  id_token_invalid: "The provider's answer did not verify, so it was refused.",
  token_exchange_failed: "The provider did not accept the sign-in code; start again.",
};

function base64url(bytes) {
  let text = "";
  for (const byte of bytes) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

async function newBinding() {
  const verifier = base64url(crypto.getRandomValues(new Uint8Array(32)));
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return { verifier, challenge: base64url(new Uint8Array(digest)) };
}

export class ExternalSignInError extends Error {
  constructor(reason) {
    super(REASONS[reason] ?? `The sign-in did not complete (${reason}).`);
    this.name = "ExternalSignInError";
    this.reason = reason;
  }
}

/**
 * setupExternal({gateway, session, action}) adds the buttons (none when no
 * provider is configured) and returns complete(): on load, finish a sign-in whose result
 * is in the fragment. It resolves to the provider id when the session got tokens, or null.
 */
export function setupExternal({ gateway, session, action }) {
  async function go(button, provider, linking) {
    await action(button, `${linking ? "Linking" : "Signing in with"} ${provider.name}`, async () => {
      const { verifier, challenge } = await newBinding();
      const body = { return_to: location.origin + location.pathname, binding_challenge: challenge };
      const path = `/auth/oidc/${encodeURIComponent(provider.id)}/${linking ? "link" : "start"}`;
      const { data } = linking
        ? await session.call("POST", path, { body })
        : await request(gateway, "POST", path, { body });
      sessionStorage.setItem(BINDING_KEY, verifier);
      location.assign(data.authorization_url);
    });
  }

  async function render() {
    let providers = [];
    try {
      ({ data: { providers } } = await request(gateway, "GET", "/auth/oidc/providers", { label: "sign-in providers" }));
    } catch {
      return; // an older auth service, or the gateway is down: no buttons, nothing else changes
    }
    if (!providers?.length) return;
    const signIn = h("section", { class: "card", id: "external-card" },
      h("h2", {}, "Or sign in with"),
      providers.map((provider) => h("button", {
        type: "button", class: "secondary external-signin", dataset: { provider: provider.id },
        onclick: (event) => go(event.currentTarget, provider, false),
      }, `Sign in with ${provider.name}`)),
      h("p", { class: "muted small" }, "The provider sends you back here; no token ever appears in the address bar."),
    );
    byId("signed-out").append(signIn);
    const link = h("div", { id: "external-link" },
      providers.map((provider) => h("button", {
        type: "button", class: "link external-link", dataset: { provider: provider.id },
        onclick: (event) => go(event.currentTarget, provider, true),
      }, `Link ${provider.name}`)),
    );
    byId("session-card").append(link);
  }

  async function complete() {
    if (!location.hash.startsWith("#oidc_")) return null;
    const params = new URLSearchParams(location.hash.slice(1));
    // Out of the address bar and the history entry before anything else happens.
    history.replaceState(null, "", location.pathname + location.search);
    const verifier = sessionStorage.getItem(BINDING_KEY);
    sessionStorage.removeItem(BINDING_KEY);
    const error = params.get("oidc_error");
    if (error) throw new ExternalSignInError(error);
    const code = params.get("oidc_code");
    if (!code || !verifier) throw new ExternalSignInError("not started from this tab");
    const { data } = await request(gateway, "POST", "/auth/oidc/exchange", {
      body: { code, binding_verifier: verifier },
      label: "sign-in handoff",
    });
    session.adopt(data);
    return params.get("oidc_provider");
  }

  render();
  return { complete };
}
