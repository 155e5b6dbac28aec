// The live order stream: GET /orders/stream through the gateway, as a WebSocket.
// Each message is {"type": "ready"} once, then {"type": "order", "order": {...}} per order
// placed or cancelled by this user, from this page or any other client. The gateway closes
// the socket with 4001 when the access token expires and 4002 when it was idle: the page
// opens a new one (with a fresh token); any other end is retried with a growing delay.

const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 30000;
const TOKEN_EXPIRED = 4001;

export class OrderStream {
  #socket = null;
  #wanted = false;
  #retryMs = RETRY_MIN_MS;
  #timer = null;

  /** onState(state: "connecting" | "live" | "offline", detail), onOrder(order). */
  constructor(session, { onState, onOrder }) {
    this.session = session;
    this.onState = onState;
    this.onOrder = onOrder;
  }

  start() {
    this.#wanted = true;
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
      socket = await this.session.socket("/orders/stream");
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
    if (message.type === "ready") {
      this.#retryMs = RETRY_MIN_MS;
      this.onState("live", "");
    } else if (message.type === "order" && message.order) {
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
