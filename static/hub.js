// One WebSocket to the hub (docs/websocket.md): numbered client frames answered by `reply`,
// events pushed as `event`/`interrupt`, `resync` when the hub had to drop our queue. Reconnects
// with backoff after a dropped socket; the owner authenticates and re-subscribes (with `since`)
// from its `onopen` callback. The page keeps two: the watch and the seat (app.js). No DOM here.

/** A refused frame: the hub's error object (code, message, field?). */
export class HubError extends Error {
  constructor(error, operation) {
    super(error?.message || "the hub refused the request");
    this.code = error?.code || "error";
    this.field = error?.field;
    this.operation = operation;
    this.details = error;
  }
}

const CALL_TIMEOUT_MS = 30_000;
const PING_EVERY_MS = 20_000;
const BACKOFF_MS = [300, 1000, 2000, 4000, 8000];

export class HubConnection {
  /**
   * @param {object} handlers
   *   onopen()              the socket is open (authenticate and subscribe here)
   *   onframe(frame)        event / interrupt / resync / error frames
   *   onstate(state, info)  "connecting" | "open" | "reconnecting" | "closed"
   */
  constructor(handlers) {
    this.handlers = handlers;
    this.url = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/ws`;
    this.nextId = 1;
    this.pending = new Map();
    this.socket = null;
    this.attempt = 0;
    this.stopped = false;
    this.pingTimer = null;
    this.retryTimer = null;
    this.onOnline = () => {
      if (!this.socket && !this.stopped) this.connectNow();
    };
    window.addEventListener("online", this.onOnline);
  }

  start() {
    this.stopped = false;
    this.connectNow();
  }

  /** Closes for good (switching sessions builds a new connection). */
  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    window.removeEventListener("online", this.onOnline);
    this.teardown("closed");
  }

  /** Closes the socket as a network drop would; the connection comes back by itself. */
  drop() {
    if (this.socket) this.socket.close(4000, "dropped on purpose");
  }

  get isOpen() {
    return this.socket?.readyState === WebSocket.OPEN;
  }

  connectNow() {
    clearTimeout(this.retryTimer);
    this.handlers.onstate?.(this.attempt === 0 ? "connecting" : "reconnecting", { attempt: this.attempt });
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.onopen = () => {
      if (socket !== this.socket) return;
      this.attempt = 0;
      this.handlers.onstate?.("open");
      this.pingTimer = setInterval(() => this.ping(), PING_EVERY_MS);
      this.handlers.onopen?.();
    };
    socket.onmessage = (m) => {
      if (socket === this.socket) this.receive(m.data);
    };
    socket.onclose = (e) => {
      if (socket !== this.socket) return;
      this.teardown("reconnecting", { code: e.code, reason: e.reason });
      if (!this.stopped) this.scheduleReconnect();
    };
    // onerror is always followed by onclose, which does the work.
    socket.onerror = () => {};
  }

  scheduleReconnect() {
    const base = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
    this.attempt += 1;
    const wait = base + Math.floor(Math.random() * base * 0.3);
    this.handlers.onstate?.("reconnecting", { attempt: this.attempt, wait });
    this.retryTimer = setTimeout(() => this.connectNow(), wait);
  }

  teardown(state, info) {
    clearInterval(this.pingTimer);
    const socket = this.socket;
    this.socket = null;
    if (socket && socket.readyState <= WebSocket.OPEN) {
      socket.onclose = null;
      socket.close(1000);
    }
    for (const { reject, timer, operation } of this.pending.values()) {
      clearTimeout(timer);
      reject(new HubError({ code: "disconnected", message: "the connection to the hub dropped before it answered; try again once it is back" }, operation));
    }
    this.pending.clear();
    this.handlers.onstate?.(state, info);
  }

  async ping() {
    try {
      await this.request({ type: "ping" }, 10_000);
    } catch {
      // No answer: the socket is dead even if the browser has not noticed yet.
      this.drop();
    }
  }

  receive(data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    if (frame.type === "reply") {
      const waiting = this.pending.get(frame.id);
      if (!waiting) return;
      this.pending.delete(frame.id);
      clearTimeout(waiting.timer);
      if (frame.error) waiting.reject(new HubError(frame.error, waiting.operation));
      else waiting.resolve(frame.ok ?? {});
      return;
    }
    this.handlers.onframe?.(frame);
  }

  /** Sends a client frame and resolves with its reply's `ok` (rejects with a HubError). */
  request(frame, timeoutMs = CALL_TIMEOUT_MS) {
    const operation = frame.operation || frame.type;
    if (!this.isOpen) {
      return Promise.reject(new HubError({ code: "disconnected", message: "not connected to the hub; it reconnects by itself" }, operation));
    }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new HubError({ code: "timeout", message: `no answer from the hub within ${Math.round(timeoutMs / 1000)} s` }, operation));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer, operation });
      this.socket.send(JSON.stringify({ ...frame, id }));
    });
  }

  /** Runs an operation the MCP tools offer, by tool name. */
  call(operation, args = {}) {
    return this.request({ type: "call", operation, arguments: args });
  }
}
