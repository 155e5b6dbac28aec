// One fetch wrapper for every call to the gateway: JSON in, JSON out, and two error types the
// UI knows how to show: ApiError (the gateway answered with an error status, usually
// application/problem+json per RFC 9457) and NetworkError (fetch itself rejected: the gateway is
// down, the request timed out, or the browser refused the response because this origin is not
// on the gateway's CORS allowlist; the page is deliberately not told which).

const TIMEOUT_MS = 15000;

/** An answer with status >= 400, with everything the problem+json body and headers said. */
export class ApiError extends Error {
  constructor({ method, path, status, statusText, problem, requestId, retryAfter, wwwAuthenticate }) {
    const detail = problem?.detail ?? problem?.title ?? statusText ?? "";
    super(`${method} ${path}: ${status} ${detail}`.trim());
    this.name = "ApiError";
    this.method = method;
    this.path = path;
    this.status = status;
    this.title = problem?.title ?? statusText ?? "";
    this.detail = problem?.detail ?? "";
    this.problem = problem; // the parsed body, or null when it was not JSON
    this.requestId = requestId;
    this.retryAfter = retryAfter; // seconds, or null
    this.wwwAuthenticate = wwwAuthenticate; // null unless the gateway exposes the header
  }
}

/** fetch() rejected: no HTTP answer the page may read. */
export class NetworkError extends Error {
  constructor({ method, path, url, cause, timedOut }) {
    super(`${method} ${path}: ${timedOut ? "timed out" : "network error"}`);
    this.name = "NetworkError";
    this.method = method;
    this.path = path;
    this.url = url;
    this.cause = cause;
    this.timedOut = timedOut;
  }
}

const listeners = new Set();

/** Subscribe to a summary of every request (for the activity log). Returns an unsubscribe. */
export function onRequest(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function emit(entry) {
  for (const listener of listeners) {
    try {
      listener(entry);
    } catch (error) {
      console.error("activity listener failed", error);
    }
  }
}

function parseRetryAfter(header, problem) {
  // RFC 9110 section 10.2.3: delay-seconds or an HTTP-date. The gateway must list the header in
  // Access-Control-Expose-Headers for a cross-origin page to see it; the problem body carries
  // `retry_after` too, so the page can tell the user either way.
  if (header) {
    const seconds = Number(header);
    if (Number.isFinite(seconds)) return Math.max(0, Math.ceil(seconds));
    const date = Date.parse(header);
    if (!Number.isNaN(date)) return Math.max(0, Math.ceil((date - Date.now()) / 1000));
  }
  const fromBody = Number(problem?.retry_after);
  return Number.isFinite(fromBody) && problem?.retry_after !== undefined ? fromBody : null;
}

/**
 * Call the gateway. `token` adds `Authorization: Bearer`; `body` is sent as JSON.
 * Resolves to {status, data, requestId, headers}; rejects with ApiError or NetworkError.
 */
export async function request(gateway, method, path, { token, body, headers = {}, label } = {}) {
  const url = gateway.replace(/\/+$/, "") + path;
  const init = {
    method,
    headers: { Accept: "application/json, application/problem+json", ...headers },
    // Tokens travel in the Authorization header only: no cookies, no credentials mode.
    credentials: "omit",
    cache: "no-store",
    redirect: "error",
    referrerPolicy: "no-referrer",
  };
  if (token) init.headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), TIMEOUT_MS);
  init.signal = controller.signal;
  const started = performance.now();
  let response;
  try {
    response = await fetch(url, init);
  } catch (cause) {
    const timedOut = controller.signal.aborted;
    emit({ method, path, label, status: null, requestId: null, ms: performance.now() - started, timedOut });
    throw new NetworkError({ method, path, url, cause, timedOut });
  } finally {
    clearTimeout(timer);
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  // X-Request-Id is readable only when exposed by CORS; problem bodies always carry request_id.
  const requestId = response.headers.get("X-Request-Id") ?? data?.request_id ?? null;
  emit({ method, path, label, status: response.status, requestId, ms: performance.now() - started });
  if (!response.ok) {
    throw new ApiError({
      method,
      path,
      status: response.status,
      statusText: response.statusText,
      problem: data && typeof data === "object" ? data : null,
      requestId,
      retryAfter: parseRetryAfter(response.headers.get("Retry-After"), data),
      wwwAuthenticate: response.headers.get("WWW-Authenticate"),
    });
  }
  return { status: response.status, data, requestId, headers: response.headers };
}
