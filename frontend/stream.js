// The live order stream: GET /orders/stream through the gateway, as a WebSocket.
// Each message is {"type": "ready", "cursor"} once, then {"type": "order", "order", "cursor"}
// per order placed or cancelled by this user, from this page or any other client. The
// gateway closes the socket with 4001 when the access token expires and 4002 when it was
// idle: the page opens a new one (with a fresh token) at once; any other end is retried with
// a growing delay. A new socket resumes from the last cursor (?since=), so nothing changed
// in between is missed; a change seen twice across the seam is shown once.

const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 30000;
const TOKEN_EXPIRED = 4001;

export class OrderStream {
  #socket = null;
  #wanted = false;
  #retryMs = RETRY_MIN_MS;
  #timer = null;
  #cursor = null; // where a new socket resumes
  #seen = new Map(); // order id -> the last status shown

  /** onState(state: "connecting" | "live" | "offline", detail), onOrder(order). */
  constructor(session, { onState, onOrder }) {
    this.session = session;
    this.onState = onState;
    this.onOrder = onOrder;
  }

  start() {
    this.#wanted = true;
    this.#cursor = null;
    this.#seen.clear();
    if (!this.#socket) this.#open();
  }

  stop() {
    this.#wanted = false;
    clearTimeout(this.#timer);
    const socket = this.#socket;
    this.#socket = null;
    if (socket) socket.close(1000, "signed out");
    this.onState("offline", "stopped");
  }

  async #open() {
    this.onState("connecting", "");
    let socket;
    try {
      const path = this.#cursor ? `/orders/stream?since=${encodeURIComponent(this.#cursor)}` : "/orders/stream";
      socket = await this.session.socket(path);
    } catch (error) {
      this.#retry(`no token (${error.message ?? error})`);
      return;
    }
    if (!this.#wanted) {
      socket.close(1000, "signed out");
      return;
    }
    this.#socket = socket;
    socket.addEventListener("message", (event) => this.#receive(event));
    socket.addEventListener("close", (event) => {
      if (this.#socket !== socket) return;
      this.#socket = null;
      if (!this.#wanted) return;
      if (event.code === TOKEN_EXPIRED) {
        this.#retryMs = RETRY_MIN_MS;
        this.#open(); // at once, with the token the session renews
      } else {
        this.#retry(`closed (${event.code}${event.reason ? `: ${event.reason}` : ""})`);
      }
    });
  }

  #receive(event) {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      return;
    }
    if (typeof message.cursor === "string") this.#cursor = message.cursor;
    if (message.type === "ready") {
      this.#retryMs = RETRY_MIN_MS;
      this.onState("live", "");
    } else if (message.type === "order" && message.order && this.#seen.get(message.order.id) !== message.order.status) {
      this.#seen.set(message.order.id, message.order.status);
      this.onOrder(message.order);
    }
  }

  #retry(why) {
    this.onState("offline", `${why}; retrying in ${Math.round(this.#retryMs / 1000)} s`);
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      if (this.#wanted && !this.#socket) this.#open();
    }, this.#retryMs);
    this.#retryMs = Math.min(this.#retryMs * 2, RETRY_MAX_MS);
  }
}
