// The Passgate browser demo: register, log in, profile, orders, silent refresh, logout.
// Every call goes straight from this page to the gateway (cross-origin, CORS), with the access
// token in the Authorization header. Server text is rendered with textContent only (dom.js).

import { config } from "./config.js";
import { byId, h, replace, show } from "./dom.js";
import { ApiError, NetworkError, onRequest, request } from "./http.js";
import { refreshMargin, Session } from "./session.js";
import { setupExternal } from "./external.js";
import { OrderStream } from "./stream.js";

const gateway = config.gateway.replace(/\/+$/, "");
const session = new Session(gateway);
const ALL_SCOPES = ["users:read", "users:write", "orders:read", "orders:write"];
// Shown on their own (or, for retry_after, as a countdown) rather than in the list of extras.
const STANDARD_PROBLEM_FIELDS = new Set(["type", "title", "status", "detail", "request_id", "trace_id", "instance", "retry_after"]);

// ---------------------------------------------------------------------------------------------
// Notices: one place that explains what happened, errors included.

let noticeTimer = null;
let pausedButtons = []; // submit buttons paused by a Retry-After countdown

function clearNotice() {
  clearInterval(noticeTimer);
  noticeTimer = null;
  for (const button of pausedButtons) button.disabled = false;
  pausedButtons = [];
  const notice = byId("notice");
  replace(notice);
  delete notice.dataset.status;
  show(notice, false);
}

function showNotice(kind, heading, ...body) {
  clearNotice();
  const notice = byId("notice");
  notice.dataset.kind = kind;
  const close = h("button", { type: "button", class: "close", "aria-label": "Dismiss", onclick: clearNotice }, "×");
  replace(notice, close, h("h3", { class: "notice-title" }, heading), ...body);
  show(notice, true);
  return notice;
}

/** Show an error from any action, readably: status, title, detail, request id, what to do. */
function showError(error, doing) {
  if (error instanceof ApiError) {
    const p = error.problem ?? {};
    const lines = [];
    if (error.detail) lines.push(h("p", { class: "detail" }, error.detail));
    const hint = hintFor(error);
    if (hint) lines.push(h("p", { class: "hint" }, hint));
    const extras = Object.entries(p).filter(([key]) => !STANDARD_PROBLEM_FIELDS.has(key));
    const facts = [];
    for (const [key, value] of extras) facts.push(fact(key, typeof value === "string" ? value : JSON.stringify(value)));
    if (p.type && p.type !== "about:blank") facts.push(fact("type", p.type));
    facts.push(fact("request id", error.requestId ?? "(not readable)", "request-id"));
    if (p.trace_id) facts.push(fact("trace id", p.trace_id));
    const notice = showNotice(
      "error",
      `${doing} failed: ${error.status} ${error.title}`.trim(),
      ...lines,
      h("dl", { class: "facts small" }, facts),
    );
    notice.dataset.status = String(error.status);
    if (error.status === 429 && error.retryAfter !== null) startCountdown(notice, error.retryAfter);
    return;
  }
  if (error instanceof NetworkError) {
    const notice = showNotice(
      "error",
      `${doing} failed: network error`,
      h("p", { class: "detail" }, error.timedOut
        ? `The gateway did not answer ${error.method} ${error.url} within 15 s.`
        : `The browser could not complete ${error.method} ${error.url}, so the page got no answer to read.`),
      h("p", { class: "hint" },
        `Either the gateway is unreachable, or it does not allow this origin (${location.origin}) ` +
        "in its CORS answer. The browser does not tell the page which one, on purpose; the devtools console does."),
    );
    notice.dataset.status = "network";
    return;
  }
  console.error(error);
  showNotice("error", `${doing} failed`, h("p", { class: "detail" }, String(error?.message ?? error)));
  byId("notice").dataset.status = "client";
}

function hintFor(error) {
  const p = error.problem ?? {};
  switch (error.status) {
    case 400:
      return "The server rejected the input; the detail above says which field.";
    case 401:
      if (error.path === "/auth/login") return "Wrong username or password (the answer is the same whether or not the user exists).";
      if (error.path === "/auth/refresh") return "The refresh token is expired, revoked or already used: log in again.";
      return "The gateway did not accept the access token, even after one silent refresh.";
    case 403:
      return `This session's token lacks the scope ${p.required_scope ?? "this request needs"}. ` +
        "Log out and log in again with that scope ticked.";
    case 404:
      return "Not found (or not yours).";
    case 409:
      return "Conflict with the current state.";
    case 429:
      return "Too many requests: the gateway or auth service is throttling this client.";
    default:
      return error.status >= 500 ? "The server failed; the request id helps to find it in the logs." : "";
  }
}

function fact(label, value, id) {
  return h("div", {}, h("dt", {}, label), h("dd", {}, h("code", id ? { id, class: "wrap" } : { class: "wrap" }, value)));
}

function startCountdown(notice, seconds) {
  const until = Date.now() + seconds * 1000;
  const label = h("span", { id: "retry-after", dataset: { seconds: String(seconds) } });
  notice.append(h("p", { class: "hint" }, "Retry after: ", label));
  pausedButtons = [...document.querySelectorAll("button[type=submit]")];
  const tick = () => {
    const left = Math.ceil((until - Date.now()) / 1000);
    if (left <= 0) {
      label.textContent = "now — you can try again.";
      for (const button of pausedButtons) button.disabled = false;
      pausedButtons = [];
      clearInterval(noticeTimer);
      return;
    }
    label.textContent = left >= 120 ? `${Math.floor(left / 60)} min ${left % 60} s` : `${left} s`;
    for (const button of pausedButtons) button.disabled = true;
  };
  tick();
  noticeTimer = setInterval(tick, 1000);
}

/** Run a UI action: disable its button, show its error if it fails. */
async function action(button, doing, fn) {
  if (button) button.disabled = true;
  try {
    return await fn();
  } catch (error) {
    showError(error, doing);
    return undefined;
  } finally {
    if (button && !pausedButtons.includes(button)) button.disabled = false;
  }
}

// ---------------------------------------------------------------------------------------------
// Where we are: the page's origin, the gateway, and whether the gateway lets this origin in.

async function probeGateway() {
  const badge = byId("gateway-status");
  try {
    await request(gateway, "GET", "/.well-known/openid-configuration", { label: "CORS probe" });
    badge.dataset.state = "allowed";
    badge.textContent = "this origin is allowed";
  } catch (error) {
    if (error instanceof ApiError) {
      // An answer the page can read means CORS let it through, whatever the status.
      badge.dataset.state = "allowed";
      badge.textContent = `this origin is allowed (probe answered ${error.status})`;
    } else {
      badge.dataset.state = "refused";
      badge.textContent = "refused (not on the gateway's CORS allowlist, or gateway down)";
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Activity log: every request this page made, newest first.

onRequest((entry) => {
  const list = byId("activity");
  const status = entry.status === null ? (entry.timedOut ? "timeout" : "network error") : String(entry.status);
  const statusClass = entry.status === null ? "bad" : entry.status < 400 ? "good" : "bad";
  const item = h("li", {},
    h("time", {}, new Date().toLocaleTimeString()),
    " ",
    h("span", { class: `status ${statusClass}` }, status),
    " ",
    h("code", {}, `${entry.method} ${entry.path}`),
    entry.label ? h("span", { class: "tag" }, entry.label) : null,
    h("span", { class: "muted" }, ` ${Math.round(entry.ms)} ms`),
    entry.requestId ? h("span", { class: "muted rid" }, ` · request id ${entry.requestId}`) : null,
  );
  list.prepend(item);
  while (list.children.length > 25) list.lastElementChild.remove();
});

// ---------------------------------------------------------------------------------------------
// Signed out: log in, register.

function chosenScopes() {
  const picked = [...document.querySelectorAll("#login-form input[name=scope]:checked")].map((box) => box.value);
  return picked;
}

byId("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const username = byId("login-username").value.trim();
  const password = byId("login-password").value;
  const scopes = chosenScopes();
  if (!username || !password) return showNotice("error", "Enter a username and a password.");
  if (scopes.length === 0) return showNotice("error", "Pick at least one scope.");
  // All boxes ticked: ask for nothing in particular, and get every scope the account has.
  const scope = scopes.length === ALL_SCOPES.length ? undefined : scopes.join(" ");
  action(byId("login-submit"), "Logging in", async () => {
    await session.login(username, password, scope);
    byId("login-password").value = "";
    clearNotice();
  });
});

byId("register-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const username = byId("register-username").value.trim();
  const password = byId("register-password").value;
  const displayName = byId("register-display-name").value.trim();
  if (!/^[a-z0-9._-]{3,64}$/.test(username)) {
    return showNotice("error", "Choose a username of 3 to 64 characters: a–z, 0–9, dot, underscore, hyphen.");
  }
  if (password.length < 12) return showNotice("error", "Choose a password of at least 12 characters.");
  const body = { username, password };
  if (displayName) body.display_name = displayName;
  action(byId("register-submit"), "Registering", async () => {
    await request(gateway, "POST", "/auth/register", { body });
    await session.login(username, password);
    byId("register-password").value = "";
    showNotice("ok", `Welcome, ${displayName || username}! Your account exists and you are logged in.`);
  });
});

// ---------------------------------------------------------------------------------------------
// Signed in: session, profile, orders.

session.subscribe((event) => {
  if (event.type === "login") {
    enterSignedIn();
  } else if (event.type === "refresh") {
    renderSession();
  } else if (event.type === "logout") {
    enterSignedOut();
    if (event.error) showError(event.error, "Revoking the refresh token at the server");
    else showNotice("ok", "Logged out. The refresh token was revoked at the server and forgotten by this tab.");
  } else if (event.type === "ended") {
    enterSignedOut();
    if (event.error) showError(event.error, `Session ended (${event.reason}). Renewing the session`);
    else showNotice("info", `Session ended: ${event.reason}. Log in again.`);
  } else if (event.type === "error") {
    renderSession();
  }
});

let ticker = null;

// Timers are throttled in background tabs and stop while a laptop sleeps: on coming back,
// renew at once if the token is (nearly) expired instead of waiting for the late timer.
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && session.loggedIn && session.secondsLeft <= refreshMargin(session.lifetime)) {
    session.refresh().catch(() => {}); // failures arrive as session events
  }
});

function enterSignedIn() {
  show(byId("signed-out"), false);
  show(byId("signed-in"), true);
  document.body.dataset.session = "in";
  renderSession();
  clearInterval(ticker);
  ticker = setInterval(renderSession, 1000);
  orders.reset();
  loadProfile();
  orders.load();
  startStream();
}

// -- live order changes: a WebSocket through the gateway (stream.js) --------------------------

const STREAM_LABELS = { connecting: "live: connecting…", live: "live", offline: "live: off" };

const stream = new OrderStream(session, {
  onState(state, detail) {
    const badge = byId("stream-status");
    badge.dataset.state = state;
    badge.textContent = STREAM_LABELS[state] + (detail ? ` (${detail})` : "");
  },
  onOrder(order) {
    const list = byId("stream-events");
    list.prepend(h("li", { class: "live-event", dataset: { orderId: order.id, status: order.status } },
      h("time", {}, new Date().toLocaleTimeString()), " ",
      h("span", { class: `status-pill ${order.status}` }, order.status), " ",
      h("code", {}, `…${order.id.slice(-8)}`), ` ${formatMoney(order.total_cents)}`,
      order.note ? h("span", { class: "muted" }, ` · ${order.note}`) : null,
    ));
    while (list.children.length > 10) list.lastElementChild.remove();
    if (orders.index === 0) orders.load(); // the newest page shows it too
  },
});

function startStream() {
  if (session.scope.split(" ").includes("orders:read")) stream.start();
  else stream.onState("offline", "this token lacks orders:read");
}

function enterSignedOut() {
  stream.stop();
  replace(byId("stream-events"));
  clearInterval(ticker);
  ticker = null;
  show(byId("signed-in"), false);
  show(byId("signed-out"), true);
  document.body.dataset.session = "out";
  for (const id of ["session-user", "session-scopes", "token-id", "profile-username", "profile-display-name", "profile-id", "profile-created"]) {
    byId(id).textContent = "…";
  }
  replace(byId("orders-body"));
}

function renderSession() {
  byId("session-user").textContent = session.subject ?? "…";
  replace(byId("session-scopes"), session.scope.split(" ").filter(Boolean).map((s) => h("span", { class: "chip" }, s)));
  const tokenId = byId("token-id");
  tokenId.textContent = session.tokenId ? `jti …${session.tokenId.slice(-8)}` : "(none)";
  tokenId.dataset.jti = session.tokenId ?? "";
  const left = Math.round(session.secondsLeft);
  byId("token-expiry").textContent = session.loggedIn ? `expires in ${left} s (lifetime ${session.lifetime} s)` : "";
  byId("token-refreshes").textContent = String(session.refreshes);
  byId("token-refreshes").dataset.count = String(session.refreshes);
  const next = Math.max(0, Math.round((session.nextRefreshAt - Date.now()) / 1000));
  byId("token-next").textContent = session.lastError
    ? `last refresh failed (${session.lastError.message}); retrying`
    : session.nextRefreshAt ? `next in ${next} s` : "";
}

async function loadProfile() {
  await action(byId("profile-reload"), "Loading the profile", async () => {
    const { data } = await session.call("GET", "/users/me");
    renderProfile(data);
  });
}

function renderProfile(profile) {
  byId("profile-username").textContent = profile.username;
  byId("profile-display-name").textContent = profile.display_name ?? "";
  byId("profile-id").textContent = profile.id;
  byId("profile-created").textContent = formatTime(profile.created_at);
  if (profile.username) byId("session-user").textContent = profile.username;
}

byId("profile-reload").addEventListener("click", () => loadProfile());

byId("profile-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = byId("profile-new-name");
  const displayName = input.value.trim();
  if (!displayName) return showNotice("error", "Enter a display name.");
  action(byId("profile-save"), "Saving the display name", async () => {
    const { data } = await session.call("PATCH", "/users/me", { body: { display_name: displayName } });
    renderProfile(data);
    input.value = "";
    showNotice("ok", "Display name saved.");
  });
});

byId("logout").addEventListener("click", () => {
  action(byId("logout"), "Logging out", () => session.logout().catch(() => {}));
});

// -- placing an order ------------------------------------------------------------------------

function itemRow() {
  const remove = h("button", { type: "button", class: "link", "aria-label": "Remove this line", onclick: () => {
    if (byId("order-items").children.length > 1) row.remove();
    updateTotal();
  } }, "×");
  const row = h("tr", { class: "item" },
    h("td", {}, h("input", { name: "sku", class: "sku", placeholder: "e.g. BOOK-42", maxlength: "64", required: true, "aria-label": "SKU" })),
    h("td", {}, h("input", { name: "quantity", class: "quantity", type: "number", min: "1", max: "1000", value: "1", required: true, "aria-label": "Quantity" })),
    h("td", {}, h("input", { name: "price", class: "price", inputmode: "decimal", placeholder: "9.99", required: true, "aria-label": "Unit price" })),
    h("td", {}, remove),
  );
  row.addEventListener("input", updateTotal);
  return row;
}

/** "12", "12.5", "12.50" (or with a comma) to integer cents, or null. No floating point. */
export function toCents(text) {
  const match = /^\s*(\d{1,7})(?:[.,](\d{1,2}))?\s*$/.exec(text);
  if (!match) return null;
  return Number(match[1]) * 100 + Number((match[2] ?? "0").padEnd(2, "0"));
}

function formatMoney(cents) {
  return new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 }).format(cents / 100);
}

function formatTime(value) {
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? String(value ?? "") : date.toLocaleString();
}

function readItems() {
  const items = [];
  const problems = [];
  [...byId("order-items").children].forEach((row, index) => {
    const sku = row.querySelector(".sku").value.trim();
    const quantity = Number(row.querySelector(".quantity").value);
    const cents = toCents(row.querySelector(".price").value);
    if (!sku) problems.push(`line ${index + 1}: enter a SKU`);
    if (!Number.isInteger(quantity) || quantity < 1 || quantity > 1000) problems.push(`line ${index + 1}: quantity 1 to 1000`);
    if (cents === null) problems.push(`line ${index + 1}: price like 12.50`);
    items.push({ sku, quantity, unit_price_cents: cents ?? 0 });
  });
  return { items, problems };
}

function updateTotal() {
  const { items } = readItems();
  byId("order-total").textContent = formatMoney(items.reduce((sum, i) => sum + (i.quantity || 0) * i.unit_price_cents, 0));
}

function resetOrderForm() {
  replace(byId("order-items"), itemRow());
  byId("order-note").value = "";
  updateTotal();
}

function newIdempotencyKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

byId("order-add-item").addEventListener("click", () => {
  if (byId("order-items").children.length < 100) byId("order-items").append(itemRow());
});

byId("order-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const { items, problems } = readItems();
  if (problems.length) return showNotice("error", "Check the order", h("ul", {}, problems.map((p) => h("li", {}, p))));
  const body = { items };
  const note = byId("order-note").value.trim();
  if (note) body.note = note;
  // One key per submission: a retry of this same submission (after a silent refresh, or a
  // double click) cannot place the order twice.
  const headers = { "Idempotency-Key": newIdempotencyKey() };
  action(byId("order-submit"), "Placing the order", async () => {
    const { data } = await session.call("POST", "/orders", { body, headers });
    showNotice("ok", `Order placed: ${items.length} line(s), total ${formatMoney(data.total_cents)}.`);
    resetOrderForm();
    orders.reset();
    await orders.load();
  });
});

// -- the orders list, with cursor pagination -------------------------------------------------

const orders = {
  cursors: [null], // cursors[i] fetches page i; cursors[0] is the newest page
  index: 0,
  next: null,

  reset() {
    this.cursors = [null];
    this.index = 0;
    this.next = null;
  },

  async load() {
    await action(byId("orders-reload"), "Loading orders", async () => {
      const limit = byId("orders-page-size").value;
      const params = new URLSearchParams({ limit });
      const cursor = this.cursors[this.index];
      if (cursor) params.set("cursor", cursor);
      const { data } = await session.call("GET", `/orders?${params}`);
      this.next = data.next_cursor ?? null;
      this.render(data.items ?? []);
    });
  },

  render(items) {
    replace(byId("orders-body"), items.map(orderRow));
    show(byId("orders-empty"), items.length === 0 && this.index === 0);
    byId("orders-page").textContent = `Page ${this.index + 1}`;
    byId("orders-newer").disabled = this.index === 0;
    byId("orders-older").disabled = !this.next;
  },
};

function orderRow(order) {
  const cancel = order.status === "placed"
    ? h("button", { type: "button", class: "link danger cancel", onclick: (event) => cancelOrder(order, event.currentTarget) }, "Cancel")
    : null;
  const items = (order.items ?? []).map((i) => `${i.sku} × ${i.quantity}`).join(", ");
  return h("tr", { class: "order", dataset: { id: order.id, status: order.status } },
    h("td", {}, formatTime(order.created_at)),
    h("td", { class: "items-cell" }, items),
    h("td", { class: "num" }, formatMoney(order.total_cents)),
    h("td", {}, h("span", { class: `status-pill ${order.status}` }, order.status)),
    h("td", { class: "note" }, order.note ?? ""),
    h("td", {}, cancel),
  );
}

async function cancelOrder(order, button) {
  await action(button, "Cancelling the order", async () => {
    await session.call("POST", `/orders/${encodeURIComponent(order.id)}/cancel`);
    showNotice("ok", `Order …${order.id.slice(-8)} cancelled.`);
    await orders.load();
  });
}

byId("orders-reload").addEventListener("click", () => orders.load());
byId("orders-page-size").addEventListener("change", () => {
  orders.reset();
  orders.load();
});
byId("orders-older").addEventListener("click", () => {
  if (!orders.next) return;
  orders.cursors[orders.index + 1] = orders.next;
  orders.index += 1;
  orders.load();
});
byId("orders-newer").addEventListener("click", () => {
  if (orders.index === 0) return;
  orders.index -= 1;
  orders.load();
});

// ---------------------------------------------------------------------------------------------
// Start.

async function start() {
  byId("page-origin").textContent = location.origin;
  byId("gateway-url").textContent = gateway;
  if (config.origin && config.origin !== location.origin) {
    byId("page-origin").textContent = `${location.origin} (configured as ${config.origin})`;
  }
  document.title = `Passgate demo · ${location.host}`;
  // A stable accent colour per origin, so windows on different origins look different.
  const hues = [226, 168, 272, 14, 328, 200];
  let hash = 0;
  for (const char of location.origin) hash = (hash * 31 + char.charCodeAt(0)) % 997;
  document.documentElement.style.setProperty("--hue", String(hues[hash % hues.length]));
  resetOrderForm();
  probeGateway();
  // Back from an external provider: exchange the one-time code in the fragment for tokens.
  const external = setupExternal({ gateway, session, action });
  try {
    const provider = await external.complete();
    if (provider) {
      showNotice("ok", `Signed in with ${provider}.`);
      return;
    }
  } catch (error) {
    showError(error, "Signing in with the provider");
  }
  if (session.hasRefreshToken) {
    // A reload: the access token is gone with the old page; the tab's refresh token renews it.
    document.body.dataset.session = "restoring";
    try {
      await session.restore();
      return;
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 401)) showError(error, "Restoring the session");
    }
  }
  enterSignedOut();
}

start().finally(() => {
  document.body.dataset.ready = "true";
});
