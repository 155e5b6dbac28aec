// The session: who is logged in and with which tokens.
//
// - The access token lives only in a private field of this object (memory): it is never written
//   to storage or a cookie, and a reload forgets it.
// - The refresh token lives in sessionStorage (this origin, this tab; it survives a reload and
//   is never sent automatically). See README.md for why, and for the XSS trade-off.
// - The access token is renewed silently shortly before it expires (from `expires_in`), before
//   any call made with a nearly expired token, and once after a 401 from an API call.
// - Refreshes are single-flight: the refresh token rotates on every use and the server treats
//   a second use of a spent token as theft (it revokes the whole family), so two refreshes must
//   never race with the same token.

import { ApiError, request } from "./http.js";

const STORAGE_KEY = "passgate.refresh_token";
const RETRY_DELAY_MS = 3000;

/** Renew this long before expiry: a fifth of the lifetime, at least 1 s, at most 60 s. */
export function refreshMargin(expiresIn) {
  return Math.min(60, Math.max(1, expiresIn * 0.2));
}

/** Decode (not verify: the gateway does that) the claims of a JWT, for display only. */
export function claims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "="));
    return JSON.parse(json);
  } catch {
    return {};
  }
}

export class Session {
  #accessToken = null;
  #refreshing = null;
  #timer = null;

  constructor(gateway, storage = window.sessionStorage) {
    this.gateway = gateway;
    this.storage = storage;
    this.expiresAt = 0; // ms since the epoch, by this browser's clock
    this.lifetime = 0; // seconds, as the server said in expires_in
    this.scope = "";
    this.subject = null;
    this.tokenId = null;
    this.refreshes = 0;
    this.nextRefreshAt = 0;
    this.lastError = null;
    this.listeners = new Set();
  }

  /** Listen for changes: listener({type: "login" | "refresh" | "logout" | "ended" | "error", ...}). */
  subscribe(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  #emit(event) {
    for (const listener of this.listeners) listener(event);
  }

  get loggedIn() {
    return this.#accessToken !== null;
  }

  get hasRefreshToken() {
    return Boolean(this.storage.getItem(STORAGE_KEY));
  }

  get secondsLeft() {
    return Math.max(0, (this.expiresAt - Date.now()) / 1000);
  }

  async login(username, password, scope) {
    const body = { username, password };
    if (scope) body.scope = scope;
    const { data } = await request(this.gateway, "POST", "/auth/login", { body });
    this.#accept(data);
    this.#emit({ type: "login" });
  }

  /** Take a token response obtained elsewhere (an external sign-in's handoff). */
  adopt(data) {
    this.#accept(data);
    this.#emit({ type: "login" });
  }

  /** After a reload: trade the stored refresh token for a fresh access token. */
  async restore() {
    if (!this.hasRefreshToken) return false;
    await this.refresh();
    this.#emit({ type: "login", restored: true });
    return true;
  }

  /** Rotate the refresh token and get a new access token; concurrent callers share one call. */
  refresh() {
    if (!this.#refreshing) {
      this.#refreshing = this.#doRefresh().finally(() => {
        this.#refreshing = null;
      });
    }
    return this.#refreshing;
  }

  async #doRefresh() {
    const refreshToken = this.storage.getItem(STORAGE_KEY);
    if (!refreshToken) {
      this.#end("no refresh token in this tab");
      throw new ApiError({ method: "POST", path: "/auth/refresh", status: 401, statusText: "Unauthorized", problem: { title: "Unauthorized", detail: "not logged in" } });
    }
    try {
      const { data } = await request(this.gateway, "POST", "/auth/refresh", {
        body: { refresh_token: refreshToken },
        label: "silent refresh",
      });
      this.#accept(data);
      this.refreshes += 1;
      this.lastError = null;
      this.#emit({ type: "refresh" });
    } catch (error) {
      if (error instanceof ApiError && (error.status === 401 || error.status === 400)) {
        // Expired, revoked (logged out elsewhere, password changed) or reused: start over.
        this.#end("the server no longer accepts this session's refresh token", error);
      } else {
        // Gateway down, CORS, 429 or 5xx: keep the refresh token and try again soon, while the
        // access token (if any) is still usable.
        this.lastError = error;
        if (this.loggedIn) this.#schedule(RETRY_DELAY_MS);
        this.#emit({ type: "error", error });
      }
      throw error;
    }
  }

  #accept(data) {
    this.#accessToken = data.access_token;
    if (data.refresh_token) this.storage.setItem(STORAGE_KEY, data.refresh_token);
    const expiresIn = Number(data.expires_in) || 300;
    this.lifetime = expiresIn;
    this.expiresAt = Date.now() + expiresIn * 1000;
    const tokenClaims = claims(data.access_token);
    this.scope = data.scope ?? tokenClaims.scope ?? "";
    this.subject = tokenClaims.sub ?? null;
    this.tokenId = tokenClaims.jti ?? null;
    this.#schedule((expiresIn - refreshMargin(expiresIn)) * 1000);
  }

  #schedule(delayMs) {
    clearTimeout(this.#timer);
    this.nextRefreshAt = Date.now() + delayMs;
    this.#timer = setTimeout(() => {
      this.refresh().catch(() => {}); // reported through the "error"/"ended" events
    }, Math.max(0, delayMs));
  }

  /** Forget everything locally. */
  #clear() {
    clearTimeout(this.#timer);
    this.#timer = null;
    this.#accessToken = null;
    this.storage.removeItem(STORAGE_KEY);
    this.expiresAt = 0;
    this.nextRefreshAt = 0;
    this.scope = "";
    this.subject = null;
    this.tokenId = null;
    this.refreshes = 0;
  }

  #end(reason, error) {
    const wasLoggedIn = this.loggedIn || this.hasRefreshToken;
    this.#clear();
    if (wasLoggedIn) this.#emit({ type: "ended", reason, error });
  }

  /** Revoke the refresh token at the server, then forget both tokens (even if the call fails). */
  async logout() {
    const refreshToken = this.storage.getItem(STORAGE_KEY);
    // Wait for an in-flight refresh: it would store a new refresh token right after we cleared.
    if (this.#refreshing) await this.#refreshing.catch(() => {});
    const current = this.storage.getItem(STORAGE_KEY) ?? refreshToken;
    this.#clear();
    let error = null;
    if (current) {
      try {
        await request(this.gateway, "POST", "/auth/logout", { body: { refresh_token: current } });
      } catch (caught) {
        error = caught;
      }
    }
    this.#emit({ type: "logout", error });
    if (error) throw error;
  }

  /**
   * An authenticated API call: renew first when the token is about to expire (timers can be
   * late in background tabs), and on a 401 renew once and retry once.
   */
  /**
   * A WebSocket to the gateway with this session's access token. A browser cannot set
   * Authorization on a WebSocket, so the token is offered as the subprotocol
   * "bearer.<token>" beside "passgate.v1"; the gateway answers "passgate.v1" only and never
   * passes the token on. Never in the URL, which servers and proxies log.
   */
  async socket(path) {
    if (!this.loggedIn || this.secondsLeft <= refreshMargin(this.lifetime) / 2) await this.refresh();
    const url = new URL(path, this.gateway);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    return new WebSocket(url, ["passgate.v1", `bearer.${this.#accessToken}`]);
  }

  async call(method, path, options = {}) {
    if (!this.loggedIn && !this.hasRefreshToken) {
      throw new ApiError({ method, path, status: 401, statusText: "Unauthorized", problem: { title: "Unauthorized", detail: "not logged in" } });
    }
    if (!this.loggedIn || this.secondsLeft <= refreshMargin(this.lifetime) / 2) {
      await this.refresh();
    }
    const token = this.#accessToken;
    try {
      return await request(this.gateway, method, path, { ...options, token });
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 401) throw error;
      // Another call may have renewed the token meanwhile; otherwise renew it now.
      if (this.#accessToken === token) await this.refresh();
      return await request(this.gateway, method, path, { ...options, token: this.#accessToken, label: "retry after refresh" });
    }
  }
}
