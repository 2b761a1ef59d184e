// realtime_sync JavaScript client: one ES module, no build step, no dependencies.
//
// Speaks protocol v1 of docs/protocol.md over one WebSocket per device, and the
// REST API under /api/v1/ where the protocol says to. Served by the project at
// /static/realtime/client.js; types in client.d.ts beside it; guide in
// docs/clients.md.
//
//   import { RealtimeClient } from "/static/realtime/client.js";
//   const client = new RealtimeClient({ token });          // or no token: the session
//   client.on("message", (message, event) => show(message));
//   await client.connect();
//   await client.send(12, "Hello");

export const PROTOCOL_VERSION = 1;

/** Close codes of docs/protocol.md §15. */
export const CloseCode = Object.freeze({
  UNAUTHORIZED: 4401,
  FORBIDDEN_ORIGIN: 4403,
  HEARTBEAT_TIMEOUT: 4408,
  DEVICE_REVOKED: 4410,
  TOO_FAR_BEHIND: 4429,
  RATE_LIMIT: 4430,
  TOO_MANY_CONNECTIONS: 4431,
  INTERNAL_ERROR: 4500,
  GOING_AWAY: 4503,
});

// Closes after which retrying with the same credentials cannot help (§2, §15).
const FATAL_CLOSES = new Map([
  [CloseCode.UNAUTHORIZED, "unauthorized"],
  [CloseCode.FORBIDDEN_ORIGIN, "forbidden_origin"],
  [CloseCode.DEVICE_REVOKED, "device_revoked"],
]);

// Codes this client closes its own socket with (the 4000-4099 range is the client's).
const CLIENT_CLOSE_DEAD = 4000; // no frame from the server for too long
const CLIENT_CLOSE_OFFLINE = 4001; // the browser went offline
const CLIENT_CLOSE_NO_HELLO = 4002; // no hello within connectTimeoutMs
const CLIENT_CLOSE_STOPPED = 1000; // close() was called

// Requests that are safe to send again on a new connection when their reply
// never came: every write is idempotent (§12), and reads can be repeated.
const RETRIED = new Set(["send", "edit", "delete", "read", "delivered", "fetch", "presence", "presence.subscribe"]);
// Writes of messages: one at a time per conversation, so they are written in
// the order they were made even when one is refused for the moment (see
// _pump), and at most MAX_IN_FLIGHT of them (to different conversations) at
// once, below the server's queue per connection (WS_MAX_PENDING_REQUESTS, 8
// by default). Other requests go at once.
const ORDERED = new Set(["send", "edit", "delete"]);
const MAX_IN_FLIGHT = 4;

/** A refused request or a failed connection: `code` is the protocol's error code. */
export class RealtimeError extends Error {
  constructor(code, message, { field, details, status, closeCode } = {}) {
    super(message || code);
    this.name = "RealtimeError";
    this.code = code;
    if (field !== undefined) this.field = field;
    if (details !== undefined) this.details = details;
    if (status !== undefined) this.status = status;
    if (closeCode !== undefined) this.closeCode = closeCode;
  }
}

/**
 * The wait before reconnect attempt `attempt` (0 for the first): exponential,
 * capped, with "equal jitter" (between half and all of the exponential value),
 * so a crowd of clients disconnected together does not return together.
 */
export function backoffDelay(attempt, { initial = 500, max = 30000, factor = 2 } = {}, random = Math.random) {
  const base = Math.min(max, initial * Math.pow(factor, Math.max(0, attempt)));
  return Math.round(base / 2 + random() * (base / 2));
}

/** A fresh client_msg_id (unique per user: a UUID). */
export function newClientMsgId() {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === "function") return c.randomUUID();
  const hex = (n) => Array.from({ length: n }, () => Math.floor(Math.random() * 16).toString(16)).join("");
  return `${hex(8)}-${hex(4)}-4${hex(3)}-${hex(4)}-${hex(12)}`;
}

function defaultUrl() {
  const loc = globalThis.location;
  if (!loc || !loc.host) throw new Error("RealtimeClient: give `url` (no page location to derive it from).");
  return `${loc.protocol === "https:" ? "wss" : "ws"}://${loc.host}/ws/v1/`;
}

function apiBaseFor(wsUrl) {
  const url = new URL(wsUrl);
  url.protocol = url.protocol === "wss:" ? "https:" : "http:";
  url.pathname = "/api/v1/";
  url.search = "";
  url.hash = "";
  return url.toString();
}

function cookie(name) {
  const doc = globalThis.document;
  if (!doc || typeof doc.cookie !== "string") return null;
  for (const part of doc.cookie.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return null;
}

const now = () => Date.now();

export class RealtimeClient {
  /**
   * @param {import("./client").RealtimeClientOptions} [options]
   */
  constructor(options = {}) {
    this.url = options.url || defaultUrl();
    this.apiBase = options.apiBase || apiBaseFor(this.url);
    this.token = options.token || null;
    this.csrfToken = options.csrfToken || null;
    this.WebSocketImpl = options.WebSocket || globalThis.WebSocket;
    this.fetchImpl = options.fetch || globalThis.fetch?.bind(globalThis);
    if (!this.WebSocketImpl) throw new Error("RealtimeClient: no WebSocket implementation; pass `WebSocket`.");
    this.backoff = { initial: 500, max: 30000, factor: 2, ...(options.backoff || {}) };
    this.autoDelivered = options.autoDelivered !== false;
    this.typingIdleMs = options.typingIdleMs ?? 3000;
    this.heartbeatIntervalMs = options.heartbeatIntervalMs ?? null; // default: hello.heartbeat_interval
    this.deadAfterMs = options.deadAfterMs ?? null; // default: hello.heartbeat_timeout
    this.connectTimeoutMs = options.connectTimeoutMs ?? 15000;
    this.loadPresence = options.loadPresence !== false;
    this.storage = options.storage || null;
    this.storageKey = options.storageKey || "realtime";
    this.random = options.random || Math.random;

    this.state = "idle"; // idle | connecting | syncing | online | waiting | offline | closed
    this.hello = null;
    this.user = null;
    this.device = null;

    this._listeners = new Map();
    this._cursors = new Map(); // conversation id -> last seq applied
    this._receipts = new Map(); // conversation id -> Map(user id -> {user_id, delivered_seq, read_seq})
    this._presence = new Map(); // user id -> {user_id, status, last_seen_at}
    this._typers = new Map(); // conversation id -> Map("user:device" -> {user_id, device_id, timer})
    this._typingOut = new Map(); // conversation id -> {lastStart, idleTimer, refreshTimer}
    this._pending = []; // requests not yet answered, in the order made
    this._byRef = new Map();
    this._refs = 0;
    this._ws = null;
    this._wanted = false;
    this._attempt = 0;
    this._retryTimer = null;
    this._heartbeatTimer = null;
    this._lastReceived = 0;
    this._retryAfterMs = null; // from an `overloaded` frame
    this._presenceStatus = "online";
    this._subscribed = null;
    this._deliveredSent = new Map();
    this._deliveredTimers = new Map();
    this._persistTimer = null;
    this._connectWaiters = [];
    this._online = this._online.bind(this);
    this._offline = this._offline.bind(this);

    for (const [id, seq] of Object.entries(options.cursors || {})) this._cursors.set(Number(id), seq);
    this._restore();
  }

  // ---- events ------------------------------------------------------------

  /** Listen to an event (see client.d.ts, ClientEvents); returns a function that stops listening. */
  on(name, listener) {
    if (!this._listeners.has(name)) this._listeners.set(name, new Set());
    this._listeners.get(name).add(listener);
    return () => this.off(name, listener);
  }

  off(name, listener) {
    this._listeners.get(name)?.delete(listener);
  }

  _emit(name, ...args) {
    for (const listener of [...(this._listeners.get(name) || [])]) {
      try {
        listener(...args);
      } catch (error) {
        // A listener's bug must not break the connection; report it and go on.
        if (name !== "error") this._emit("error", error);
        else globalThis.console?.error(error);
      }
    }
  }

  _setState(state, detail) {
    if (this.state === state) return;
    this.state = state;
    this._emit("state", state, detail);
  }

  // ---- connecting ------------------------------------------------------------

  /**
   * Connect, and keep reconnecting until close(). Resolves with the hello frame
   * once the first sync has completed; rejects if the server refuses the
   * credentials or the origin (4401, 4403) or revokes the device (4410).
   */
  connect() {
    const ready = new Promise((resolve, reject) => this._connectWaiters.push({ resolve, reject }));
    if (!this._wanted) {
      this._wanted = true;
      this._attempt = 0;
      if (typeof globalThis.addEventListener === "function") {
        globalThis.addEventListener("online", this._online);
        globalThis.addEventListener("offline", this._offline);
      }
      this._open();
    } else if (this.state === "online") {
      this._settleConnect(null);
    }
    return ready;
  }

  /** Close for good (no reconnecting). Requests still waiting are rejected. */
  close() {
    this._wanted = false;
    if (typeof globalThis.removeEventListener === "function") {
      globalThis.removeEventListener("online", this._online);
      globalThis.removeEventListener("offline", this._offline);
    }
    clearTimeout(this._retryTimer);
    this._flushPersist();
    const ws = this._ws;
    if (ws) {
      this._detach(ws);
      try {
        ws.close(CLIENT_CLOSE_STOPPED);
      } catch {
        // already closing
      }
    }
    this._connectionLost();
    // Sends kept in `storage` stay there for the next client (a reloaded page).
    const error = new RealtimeError("closed", "The client was closed.");
    for (const entry of this._pending.splice(0)) entry.reject(error);
    this._byRef.clear();
    for (const state of this._typingOut.values()) this._clearTypingOut(state);
    this._typingOut.clear();
    for (const timer of this._deliveredTimers.values()) clearTimeout(timer);
    this._deliveredTimers.clear();
    this._settleConnect(error);
    this._setState("closed", { code: CLIENT_CLOSE_STOPPED });
  }

  _isOffline() {
    const nav = globalThis.navigator;
    return !!nav && nav.onLine === false && typeof globalThis.addEventListener === "function";
  }

  _open() {
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    if (!this._wanted || this._ws) return;
    if (this._isOffline()) {
      this._setState("offline");
      return;
    }
    this._setState("connecting", { attempt: this._attempt });
    let url = this.url;
    if (this.token) url += (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(this.token);
    let ws;
    try {
      ws = new this.WebSocketImpl(url);
    } catch (error) {
      this._emit("error", error);
      this._scheduleReconnect(1006);
      return;
    }
    this._ws = ws;
    this._retryAfterMs = null;
    // A handshake can hang (a dead host, a half-open proxy): give up on it and try again.
    clearTimeout(this._connectTimer);
    this._connectTimer = setTimeout(() => {
      if (this._ws !== ws || this.hello) return;
      this._abandon(ws, CLIENT_CLOSE_NO_HELLO);
    }, this.connectTimeoutMs);
    ws.onmessage = (message) => this._onText(message.data);
    ws.onclose = (event) => this._onClose(ws, event.code);
    ws.onerror = () => {}; // a close always follows
  }

  _detach(ws) {
    ws.onmessage = ws.onclose = ws.onerror = null;
    if (this._ws === ws) this._ws = null;
  }

  /** Stop using a socket now (without waiting for its close handshake) and handle it as closed with `code`. */
  _abandon(ws, code) {
    this._detach(ws);
    try {
      ws.close(code);
    } catch {
      // already closing
    }
    this._onClose(null, code);
  }

  _online() {
    if (!this._wanted || this._ws) return;
    this._attempt = 0;
    this._open();
  }

  _offline() {
    // Browsers keep an open WebSocket through a network change for a long
    // time; going offline ends it at once, and nothing is tried until online.
    const ws = this._ws;
    if (!ws) {
      if (this._wanted && this.state !== "closed") {
        clearTimeout(this._retryTimer);
        this._setState("offline");
      }
      return;
    }
    this._abandon(ws, CLIENT_CLOSE_OFFLINE);
  }

  _onClose(ws, code) {
    if (ws) {
      if (ws !== this._ws) return; // an old socket's late close
      this._detach(ws);
    }
    const wasReady = this.hello !== null;
    this._connectionLost();
    this._emit("disconnect", { code, wasReady });
    if (!this._wanted) return;
    const fatal = FATAL_CLOSES.get(code);
    if (fatal) {
      this._wanted = false;
      const error = new RealtimeError(fatal, `The server closed the connection with ${code}.`, { closeCode: code });
      for (const entry of this._pending.splice(0)) entry.reject(error); // stored sends stay stored
      this._byRef.clear();
      this._settleConnect(error);
      this._setState("closed", { code, error });
      this._emit("error", error);
      return;
    }
    this._scheduleReconnect(code);
  }

  _scheduleReconnect(code) {
    if (code === CLIENT_CLOSE_OFFLINE || this._isOffline()) {
      this._setState("offline", { code });
      return;
    }
    let delay;
    if (this._retryAfterMs !== null) {
      delay = this._retryAfterMs; // `overloaded` said how long (already spread by the server)
    } else if (code === CloseCode.TOO_MANY_CONNECTIONS || code === CloseCode.RATE_LIMIT) {
      delay = backoffDelay(Math.max(this._attempt, 6), this.backoff, this.random); // do not retry in a loop
    } else {
      delay = backoffDelay(this._attempt, this.backoff, this.random);
    }
    this._attempt += 1;
    this._setState("waiting", { code, delay });
    this._retryTimer = setTimeout(() => this._open(), delay);
  }

  /** What a lost connection ends: heartbeats, typing state, replies it owed. */
  _connectionLost() {
    clearTimeout(this._connectTimer);
    clearInterval(this._heartbeatTimer);
    this._heartbeatTimer = null;
    this.hello = null;
    for (const [conversationId, typers] of this._typers) {
      for (const typer of typers.values()) clearTimeout(typer.timer);
      if (typers.size) {
        typers.clear();
        this._emit("typing", conversationId, []);
      }
    }
    for (const state of this._typingOut.values()) this._clearTypingOut(state);
    this._typingOut.clear();
    this._byRef.clear();
    const kept = [];
    for (const entry of this._pending) {
      entry.ref = null;
      clearTimeout(entry.retryTimer);
      entry.retryTimer = null;
      entry.parked = false;
      if (entry.internal || !RETRIED.has(entry.type)) {
        entry.reject(new RealtimeError("disconnected", "The connection closed before the reply came."));
      } else {
        kept.push(entry); // sent again, in the same order, after the next hello
      }
    }
    this._pending = kept;
  }

  _settleConnect(error) {
    for (const waiter of this._connectWaiters.splice(0)) {
      if (error) waiter.reject(error);
      else waiter.resolve(this._lastHello);
    }
  }

  // ---- frames ------------------------------------------------------------

  _onText(text) {
    this._lastReceived = now();
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    if (!frame || typeof frame !== "object") return;
    switch (frame.type) {
      case "hello":
        this._onHello(frame);
        break;
      case "ok":
      case "pong":
      case "error":
        this._onReply(frame);
        break;
      case "event":
        this._onEvent(frame);
        break;
      case "reset":
        this._onReset(frame);
        break;
      default: // a frame type this client does not know: skip it (§1)
    }
  }

  _onHello(hello) {
    clearTimeout(this._connectTimer);
    const userChanged = this.user !== null && this.user.id !== hello.user.id;
    this.hello = hello;
    this._lastHello = hello;
    this.user = hello.user;
    this.device = hello.device;
    this._checkStoredUser(hello.user.id, userChanged);
    this._setState("syncing");
    this._emit("hello", hello);
    this._startHeartbeat(hello);
    // Catch up first; requests sent after it are handled after it (one at a time, in order).
    this._internal("sync", { cursors: this.cursors() }).then(
      (result) => this._onSynced(result),
      () => {}, // the connection closed meanwhile: the next hello syncs again
    );
    if (this._presenceStatus !== "online") this._internal("presence", { status: this._presenceStatus }).catch(() => {});
    if (this._subscribed && this._subscribed.length) {
      this._internal("presence.subscribe", { user_ids: this._subscribed })
        .then((result) => result.presence.forEach((p) => this._setPresence(p)))
        .catch(() => {});
    }
    this._pump();
    if (this.loadPresence) this._loadPresenceSnapshot();
  }

  _onSynced(result) {
    for (const id of result.gone || []) {
      this._cursors.delete(Number(id));
      this._receipts.delete(Number(id));
      this._emit("gone", Number(id));
    }
    for (const [id, seq] of Object.entries(result.cursors || {})) {
      const current = this._cursors.get(Number(id));
      if (current === undefined || seq > current) this._cursors.set(Number(id), seq);
    }
    this._persist();
    this._attempt = 0;
    this._setState("online");
    this._emit("ready", result);
    this._settleConnect(null);
  }

  _startHeartbeat(hello) {
    clearInterval(this._heartbeatTimer);
    const interval = this.heartbeatIntervalMs ?? hello.heartbeat_interval * 1000;
    const deadAfter = this.deadAfterMs ?? hello.heartbeat_timeout * 1000;
    this._lastReceived = now();
    // Check often enough to notice a dead connection soon after deadAfter.
    const tick = Math.max(50, Math.min(interval, deadAfter / 4));
    let lastPing = now();
    this._heartbeatTimer = setInterval(() => {
      const ws = this._ws;
      if (!ws) return;
      if (now() - this._lastReceived > deadAfter) {
        // No pong, no frame: the connection is dead though the socket may not know it yet.
        this._abandon(ws, CLIENT_CLOSE_DEAD);
        return;
      }
      if (now() - lastPing >= interval) {
        lastPing = now();
        this._internal("ping", {}).catch(() => {});
      }
    }, tick);
  }

  _onReply(frame) {
    if (frame.type === "error" && frame.code === "overloaded" && frame.ref === null) {
      this._retryAfterMs = Math.round((frame.details?.retry_after ?? 1) * 1000);
      return;
    }
    if (frame.ref === null || frame.ref === undefined) {
      if (frame.type === "error") this._emit("error", new RealtimeError(frame.code, frame.message, frame));
      return;
    }
    const entry = this._byRef.get(frame.ref);
    if (!entry) return;
    this._byRef.delete(frame.ref);
    entry.ref = null;
    if (frame.type === "error") {
      if (frame.code === "unavailable") {
        entry.parked = true; // the server is going away: sent again on the next connection
        return;
      }
      if (frame.code === "rate_limited" && (!entry.internal || entry.type === "sync")) {
        const wait = Math.round((frame.details?.retry_after ?? 1) * 1000);
        if (entry.internal) this._retryOnThisConnection(entry, wait);
        else this._retryLater(entry, wait);
        return;
      }
      if (frame.code === "internal_error" && RETRIED.has(entry.type) && (entry.failures = (entry.failures || 0) + 1) < 3) {
        this._retryLater(entry, 500 * entry.failures);
        return;
      }
      this._finish(entry);
      entry.reject(new RealtimeError(frame.code, frame.message, { field: frame.field, details: frame.details }));
      return;
    }
    this._finish(entry);
    entry.resolve(frame.type === "pong" ? { server_time: frame.server_time } : frame.result);
  }

  _finish(entry) {
    const index = this._pending.indexOf(entry);
    if (index >= 0) this._pending.splice(index, 1);
    if (!entry.internal && this.hello) this._pump();
    if (entry.persistKey) {
      this._storageRemove(entry.persistKey);
      this._emit("outbox", this.pendingSends());
    }
  }

  _onEvent(frame) {
    const conversationId = frame.conversation_id;
    if (typeof frame.seq === "number") {
      const cursor = this._cursors.get(conversationId);
      if (cursor !== undefined && frame.seq <= cursor) return; // seen already (an older sync's replay)
      this._applyLogEvent(frame);
      this._cursors.set(conversationId, frame.seq);
      this._persist();
      this._scheduleDelivered(conversationId);
      return;
    }
    this._emit("event", frame);
    switch (frame.kind) {
      case "receipts.updated":
        this._mergeReceipts(conversationId, frame.payload.receipts);
        break;
      case "presence.updated":
        this._setPresence(frame.payload);
        break;
      case "typing":
        this._onTyping(conversationId, frame.payload);
        break;
      default: // an event kind this client does not know: skip it (§1)
    }
  }

  _applyLogEvent(frame) {
    this._emit("event", frame);
    const payload = frame.payload;
    switch (frame.kind) {
      case "message.created":
      case "message.edited":
      case "message.deleted":
        if (frame.kind !== "message.created") this._clearTyper(frame.conversation_id, payload.sender);
        else this._clearTyper(frame.conversation_id, payload.sender, payload.sender_device);
        this._emit("message", payload, frame);
        break;
      case "conversation.created":
      case "conversation.renamed":
      case "member.added":
      case "member.removed":
        if (frame.kind === "member.removed") {
          const receipts = this._receipts.get(frame.conversation_id);
          receipts?.delete(payload.user.id);
        }
        this._emit("conversation", frame);
        if ((frame.kind === "conversation.created" || frame.kind === "member.added") && this.loadPresence) {
          this._loadPresenceSnapshot();
        }
        break;
      default:
    }
  }

  _onReset(frame) {
    const conversationId = frame.conversation_id;
    this._cursors.set(conversationId, frame.last_seq); // exactly: a cursor_ahead reset moves it back
    this._persist({ exact: [conversationId] });
    this._receipts.delete(conversationId);
    this._emit("reset", { conversationId, lastSeq: frame.last_seq, reason: frame.reason });
  }

  // ---- requests ------------------------------------------------------------

  _request(type, fields, { persistKey = null } = {}) {
    let entry;
    const promise = new Promise((resolve, reject) => {
      entry = { type, fields, resolve, reject, ref: null, internal: false, persistKey };
    });
    this._pending.push(entry);
    if (this.hello) this._pump();
    return promise;
  }

  // Protocol requests of the client's own (sync, ping, the presence it restores):
  // sent on this connection only, never queued for the next.
  _internal(type, fields) {
    return new Promise((resolve, reject) => {
      const entry = { type, fields, resolve, reject, ref: null, internal: true };
      this._pending.push(entry);
      if (!this._transmit(entry)) {
        this._finish(entry);
        reject(new RealtimeError("disconnected", "Not connected."));
      }
    });
  }

  /**
   * Send the application's waiting requests. Writes of messages go one at a
   * time per conversation, in the order made: the server may refuse any
   * request for the moment (`rate_limited`), and a write already sent behind
   * a refused one would be written before it. So one waiting out a retry hint,
   * or parked until the next connection, holds back its conversation's later
   * writes. Writes to different conversations go together, at most
   * MAX_IN_FLIGHT at a time; anything else goes at once.
   */
  _pump() {
    let inFlight = 0;
    const held = new Set(); // conversations with an earlier write not answered yet
    for (const entry of this._pending) {
      if (entry.internal) continue;
      const waiting = entry.retryTimer || entry.parked;
      if (!ORDERED.has(entry.type)) {
        if (entry.ref === null && !waiting) this._transmit(entry);
        continue;
      }
      const conversationId = entry.fields.conversation_id;
      if (entry.ref !== null) {
        inFlight += 1;
        held.add(conversationId);
        continue;
      }
      if (held.has(conversationId)) continue;
      held.add(conversationId);
      if (!waiting && inFlight < MAX_IN_FLIGHT && this._transmit(entry)) inFlight += 1;
    }
  }

  _retryLater(entry, delayMs) {
    entry.retryTimer = setTimeout(() => {
      entry.retryTimer = null;
      this._pump();
    }, delayMs);
  }

  // A sync refused for the moment is sent again after the hint, on this
  // connection only: a disconnect meanwhile clears the timer and rejects it,
  // and the next hello syncs anyway.
  _retryOnThisConnection(entry, delayMs) {
    entry.retryTimer = setTimeout(() => {
      entry.retryTimer = null;
      if (!this._transmit(entry)) {
        this._finish(entry);
        entry.reject(new RealtimeError("disconnected", "Not connected."));
      }
    }, delayMs);
  }

  _transmit(entry) {
    const ws = this._ws;
    if (!ws || !this.hello || entry.ref !== null || !this._pending.includes(entry)) return false;
    entry.ref = `r${++this._refs}`;
    this._byRef.set(entry.ref, entry);
    try {
      ws.send(JSON.stringify({ type: entry.type, ref: entry.ref, ...entry.fields }));
      return true;
    } catch {
      this._byRef.delete(entry.ref);
      entry.ref = null;
      return false;
    }
  }

  /**
   * Send a message. Resolves with the `send` result once the server has
   * committed it. Made while offline, it waits (in `storage` too, when the
   * client has one) and goes out on the next connection; unanswered, it is
   * sent again with the same client_msg_id, so it is never written twice.
   */
  send(conversationId, body, { replyTo = null, clientMsgId = newClientMsgId() } = {}) {
    const fields = { conversation_id: conversationId, client_msg_id: clientMsgId, body };
    if (replyTo !== null && replyTo !== undefined) fields.reply_to = replyTo;
    this._stopTypingLocally(conversationId);
    let persistKey = null;
    if (this.storage) {
      persistKey = `${this.storageKey}:outbox:${clientMsgId}`;
      this._storageSet(persistKey, { ...fields, queued_at: new Date().toISOString() });
    }
    const promise = this._request("send", fields, { persistKey });
    this._emit("outbox", this.pendingSends());
    return promise;
  }

  /** Sends made and not acknowledged yet, oldest first (to show them as pending). */
  pendingSends() {
    return this._pending.filter((e) => e.type === "send").map((e) => ({ ...e.fields }));
  }

  /** Edit a message; rejects with code `version_conflict` (details.current_version, current_body) when it changed. */
  edit(conversationId, messageId, body, version) {
    return this._request("edit", { conversation_id: conversationId, message_id: messageId, body, version });
  }

  /** Delete a message (a tombstone stays). */
  delete(conversationId, messageId) {
    return this._request("delete", { conversation_id: conversationId, message_id: messageId });
  }

  /** Mark the conversation read up to `seq` (implies delivered). */
  read(conversationId, seq) {
    return this._request("read", { conversation_id: conversationId, seq });
  }

  /** Acknowledge delivery up to `seq` (done for you with autoDelivered). */
  delivered(conversationId, seq) {
    const sent = this._deliveredSent.get(conversationId) || 0;
    if (seq > sent) this._deliveredSent.set(conversationId, seq);
    return this._request("delivered", { conversation_id: conversationId, seq });
  }

  /** Read a range of the change log (does not move the cursor). */
  fetch(conversationId, { afterSeq = 0, limit } = {}) {
    const fields = { conversation_id: conversationId, after_seq: afterSeq };
    if (limit !== undefined) fields.limit = limit;
    return this._request("fetch", fields);
  }

  /** Round trip to the server; resolves with {server_time}. */
  ping() {
    return this._internal("ping", {});
  }

  /** Sync again with the cursors held (after a long idle, or to be sure). */
  resync() {
    return this._internal("sync", { cursors: this.cursors() }).then((result) => {
      this._onSynced(result);
      return result;
    });
  }

  /** This device's status, kept across reconnects (a new connection starts online). */
  setPresence(status) {
    this._presenceStatus = status;
    if (!this.hello) return Promise.resolve({ status });
    return this._internal("presence", { status });
  }

  /** Follow these users' presence (replaces the list; kept across reconnects). */
  subscribePresence(userIds) {
    this._subscribed = [...new Set(userIds)];
    if (!this.hello) return Promise.resolve({ presence: [] });
    return this._internal("presence.subscribe", { user_ids: this._subscribed }).then((result) => {
      result.presence.forEach((p) => this._setPresence(p));
      return result;
    });
  }

  /**
   * The user is typing in a conversation: call it on every input. Sends
   * `start` at once and again every typing_timeout / 3 while input goes on
   * (the refresh §10 asks for: more often than the timeout), and `stop` after
   * typingIdleMs without input.
   */
  typing(conversationId) {
    if (!this.hello || this.state !== "online") return Promise.resolve(null);
    const timeoutMs = (this.hello.typing_timeout || 6) * 1000;
    let state = this._typingOut.get(conversationId);
    const started = !state;
    if (!state) {
      state = { idleTimer: null, refreshTimer: null };
      this._typingOut.set(conversationId, state);
      state.refreshTimer = setInterval(() => {
        this._internal("typing", { conversation_id: conversationId, state: "start" }).catch(() => null);
      }, timeoutMs / 3);
    }
    clearTimeout(state.idleTimer);
    state.idleTimer = setTimeout(() => this.stopTyping(conversationId), this.typingIdleMs);
    if (!started) return Promise.resolve(null);
    return this._internal("typing", { conversation_id: conversationId, state: "start" }).catch(() => null);
  }

  /** The user stopped typing (cleared the input, left the conversation). */
  stopTyping(conversationId) {
    const state = this._typingOut.get(conversationId);
    if (!state) return Promise.resolve(null);
    this._clearTypingOut(state);
    this._typingOut.delete(conversationId);
    if (!this.hello) return Promise.resolve(null);
    return this._internal("typing", { conversation_id: conversationId, state: "stop" }).catch(() => null);
  }

  _stopTypingLocally(conversationId) {
    // A send ends the indicator on the server (§10): no stop to send.
    const state = this._typingOut.get(conversationId);
    if (state) {
      this._clearTypingOut(state);
      this._typingOut.delete(conversationId);
    }
  }

  _clearTypingOut(state) {
    clearTimeout(state.idleTimer);
    clearInterval(state.refreshTimer);
  }

  _scheduleDelivered(conversationId) {
    if (!this.autoDelivered || this._deliveredTimers.has(conversationId)) return;
    this._deliveredTimers.set(
      conversationId,
      setTimeout(() => {
        this._deliveredTimers.delete(conversationId);
        const seq = this._cursors.get(conversationId);
        if (seq === undefined || !this.hello || seq <= (this._deliveredSent.get(conversationId) || 0)) return;
        this.delivered(conversationId, seq).catch(() => {});
      }, 100),
    );
  }

  // ---- state: cursors, receipts, presence, typing ----------------------------

  /** The cursors held: conversation id (string) -> last seq applied. */
  cursors() {
    return Object.fromEntries([...this._cursors].map(([id, seq]) => [String(id), seq]));
  }

  cursor(conversationId) {
    return this._cursors.get(Number(conversationId));
  }

  /**
   * Start following a conversation from `seq` (for example the `last_seq` of a
   * REST snapshot) unless a later cursor is held. Takes effect on the next
   * sync; call resync() to apply it now.
   */
  setCursor(conversationId, seq) {
    const id = Number(conversationId);
    const current = this._cursors.get(id);
    if (current === undefined || seq > current) {
      this._cursors.set(id, seq);
      this._persist();
    }
  }

  /** Forget a conversation (no longer followed after the next sync). */
  forget(conversationId) {
    this._cursors.delete(Number(conversationId));
    this._persist({ removed: [Number(conversationId)] });
  }

  /** The members' receipt cursors known for a conversation: user id -> {user_id, delivered_seq, read_seq}. */
  receipts(conversationId) {
    return new Map(this._receipts.get(Number(conversationId)) || []);
  }

  /** Load every member's cursors over REST (they are not replayed on sync) and merge them. */
  async loadReceipts(conversationId) {
    const body = await this.api(`conversations/${conversationId}/receipts`);
    this._mergeReceipts(Number(conversationId), body.receipts);
    return this.receipts(conversationId);
  }

  _mergeReceipts(conversationId, entries) {
    let known = this._receipts.get(conversationId);
    if (!known) {
      known = new Map();
      this._receipts.set(conversationId, known);
    }
    const changed = [];
    for (const entry of entries) {
      const old = known.get(entry.user_id);
      const merged = {
        user_id: entry.user_id,
        delivered_seq: Math.max(old?.delivered_seq || 0, entry.delivered_seq),
        read_seq: Math.max(old?.read_seq || 0, entry.read_seq),
      };
      if (!old || old.delivered_seq !== merged.delivered_seq || old.read_seq !== merged.read_seq) changed.push(merged);
      known.set(entry.user_id, merged);
    }
    if (changed.length) this._emit("receipts", conversationId, changed);
  }

  /** Presence known: user id -> {user_id, status, last_seen_at}. */
  presence() {
    return new Map(this._presence);
  }

  _setPresence(entry) {
    const old = this._presence.get(entry.user_id);
    this._presence.set(entry.user_id, entry);
    if (!old || old.status !== entry.status || old.last_seen_at !== entry.last_seen_at) this._emit("presence", entry);
  }

  /**
   * Load the presence of every contact (`GET /presence`) into `presence()`.
   * Done by itself after each connect and when a `conversation.created` or
   * `member.added` event arrives; call it after adopting a conversation made
   * over REST (its cursor set past seq 1, that event is never applied here).
   */
  refreshPresence() {
    return this._loadPresenceSnapshot();
  }

  async _loadPresenceSnapshot() {
    if (!this.fetchImpl) return;
    try {
      const list = await this.api("presence");
      list.forEach((p) => this._setPresence(p));
    } catch {
      // REST unreachable: the events still come
    }
  }

  /** Who is typing in a conversation now: [{user_id, device_id}]. */
  typers(conversationId) {
    return [...(this._typers.get(Number(conversationId))?.values() || [])].map(({ user_id, device_id }) => ({
      user_id,
      device_id,
    }));
  }

  _onTyping(conversationId, payload) {
    let typers = this._typers.get(conversationId);
    if (!typers) {
      typers = new Map();
      this._typers.set(conversationId, typers);
    }
    const key = `${payload.user_id}:${payload.device_id}`;
    const old = typers.get(key);
    if (old) clearTimeout(old.timer);
    if (payload.state === "start") {
      const timer = setTimeout(() => {
        typers.delete(key);
        this._emit("typing", conversationId, this.typers(conversationId));
      }, (payload.expires_in ?? 6) * 1000);
      typers.set(key, { user_id: payload.user_id, device_id: payload.device_id, timer });
    } else {
      if (!old) return;
      typers.delete(key);
    }
    this._emit("typing", conversationId, this.typers(conversationId));
  }

  _clearTyper(conversationId, userId, deviceId) {
    // Their message arrived: the server ends that device's indicator (§10); show it ended now.
    const typers = this._typers.get(conversationId);
    if (!typers || deviceId === undefined || deviceId === null) return;
    const key = `${userId}:${deviceId}`;
    const old = typers.get(key);
    if (!old) return;
    clearTimeout(old.timer);
    typers.delete(key);
    this._emit("typing", conversationId, this.typers(conversationId));
  }

  // ---- REST ------------------------------------------------------------

  /**
   * A REST call under /api/v1/: `path` relative to it ("conversations"), JSON
   * in and out. With a token it sends `Authorization: Bearer`; without, the
   * session cookie and, for writes, the CSRF token. Rejects with a
   * RealtimeError carrying the API's `code` and the HTTP `status`.
   */
  async api(path, { method = "GET", body, query } = {}) {
    if (!this.fetchImpl) throw new Error("RealtimeClient: no fetch implementation; pass `fetch`.");
    const url = new URL(path.replace(/^\/+/, "").replace(/^api\/v1\//, ""), this.apiBase);
    for (const [key, value] of Object.entries(query || {})) {
      if (value !== undefined && value !== null) url.searchParams.set(key, String(value));
    }
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (this.token) {
      headers.Authorization = `Bearer ${this.token}`;
    } else if (!["GET", "HEAD", "OPTIONS"].includes(method.toUpperCase())) {
      const csrf = this.csrfToken || cookie("csrftoken");
      if (csrf) headers["X-CSRFToken"] = csrf;
    }
    const response = await this.fetchImpl(url.toString(), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
    if (response.status === 204) return null;
    const data = await response.json().catch(() => null);
    if (!response.ok) {
      throw new RealtimeError(data?.code || `http_${response.status}`, data?.message || response.statusText, {
        status: response.status,
        field: data?.field,
        details: data?.details,
      });
    }
    return data;
  }

  // ---- storage ------------------------------------------------------------

  _storageGet(key) {
    try {
      const text = this.storage.getItem(key);
      return text === null ? null : JSON.parse(text);
    } catch {
      return null;
    }
  }

  _storageSet(key, value) {
    try {
      this.storage.setItem(key, JSON.stringify(value));
    } catch {
      // full or unavailable: memory still holds it
    }
  }

  _storageRemove(key) {
    try {
      this.storage?.removeItem(key);
    } catch {
      // unavailable
    }
  }

  _storageKeys() {
    const keys = [];
    try {
      for (let i = 0; i < this.storage.length; i++) keys.push(this.storage.key(i));
    } catch {
      // unavailable
    }
    return keys;
  }

  _restore() {
    if (!this.storage) return;
    const stored = this._storageGet(`${this.storageKey}:cursors`) || {};
    for (const [id, seq] of Object.entries(stored)) {
      const current = this._cursors.get(Number(id));
      if (current === undefined || seq > current) this._cursors.set(Number(id), seq);
    }
    const prefix = `${this.storageKey}:outbox:`;
    const queued = this._storageKeys()
      .filter((key) => key && key.startsWith(prefix))
      .map((key) => ({ key, fields: this._storageGet(key) }))
      .filter((item) => item.fields && item.fields.client_msg_id)
      .sort((a, b) => String(a.fields.queued_at).localeCompare(String(b.fields.queued_at)));
    for (const { key, fields } of queued) {
      const { queued_at, ...request } = fields;
      const promise = this._request("send", request, { persistKey: key });
      promise.then(
        (result) => this._emit("sent", result, request),
        (error) => this._emit("error", error),
      );
    }
  }

  _checkStoredUser(userId, userChanged) {
    if (!this.storage) return;
    const key = `${this.storageKey}:user`;
    const stored = this._storageGet(key);
    if (userChanged || (stored !== null && stored !== userId)) {
      // Another user's cursors and unsent messages: never send them as this one.
      for (const storageKey of this._storageKeys()) {
        if (storageKey && storageKey.startsWith(`${this.storageKey}:`)) this._storageRemove(storageKey);
      }
      const error = new RealtimeError("closed", "Queued by another user.");
      this._pending = this._pending.filter((entry) => {
        if (!entry.persistKey) return true;
        entry.reject(error);
        return false;
      });
      this._cursors.clear();
      this._receipts.clear();
    }
    this._storageSet(key, userId);
  }

  _persist({ exact = [], removed = [] } = {}) {
    if (!this.storage) return;
    this._persistExact = [...(this._persistExact || []), ...exact];
    this._persistRemoved = [...(this._persistRemoved || []), ...removed];
    if (this._persistTimer) return;
    this._persistTimer = setTimeout(() => this._flushPersist(), 0);
  }

  _flushPersist() {
    clearTimeout(this._persistTimer);
    this._persistTimer = null;
    if (!this.storage) return;
    // Merged with what is stored: another tab of the same user may have gone further.
    const key = `${this.storageKey}:cursors`;
    const stored = this._storageGet(key) || {};
    const exact = new Set(this._persistExact || []);
    for (const id of this._persistRemoved || []) delete stored[String(id)];
    for (const [id, seq] of this._cursors) {
      const old = stored[String(id)];
      stored[String(id)] = exact.has(id) || old === undefined ? seq : Math.max(old, seq);
    }
    this._persistExact = [];
    this._persistRemoved = [];
    this._storageSet(key, stored);
  }
}

export default RealtimeClient;
