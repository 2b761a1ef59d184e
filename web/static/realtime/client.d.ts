// Types of client.js, the realtime_sync JavaScript client (protocol v1, docs/protocol.md).

export declare const PROTOCOL_VERSION: 1;

export declare const CloseCode: Readonly<{
  UNAUTHORIZED: 4401;
  FORBIDDEN_ORIGIN: 4403;
  HEARTBEAT_TIMEOUT: 4408;
  DEVICE_REVOKED: 4410;
  TOO_FAR_BEHIND: 4429;
  RATE_LIMIT: 4430;
  TOO_MANY_CONNECTIONS: 4431;
  INTERNAL_ERROR: 4500;
  GOING_AWAY: 4503;
}>;

/** An error code of docs/protocol.md §14, or one of the client's own. */
export type ErrorCode =
  | "invalid_frame"
  | "invalid_json"
  | "frame_too_large"
  | "unknown_type"
  | "unavailable"
  | "rate_limited"
  | "internal_error"
  | "invalid"
  | "not_found"
  | "forbidden"
  | "version_conflict"
  | "message_deleted"
  | "client_msg_id_conflict"
  | "invalid_credentials"
  | "not_authenticated"
  | "authentication_failed"
  | "throttled"
  // the client's own
  | "unauthorized" // closed with 4401
  | "forbidden_origin" // closed with 4403
  | "device_revoked" // closed with 4410
  | "disconnected" // the connection closed before a request that is not retried was answered
  | "closed" // close() was called
  | (string & {});

export declare class RealtimeError extends Error {
  readonly code: ErrorCode;
  readonly field?: string;
  readonly details?: { current_version?: number; current_body?: string; retry_after?: number; [key: string]: unknown };
  /** The HTTP status, for errors of api(). */
  readonly status?: number;
  /** The close code, for a refused or revoked connection. */
  readonly closeCode?: number;
  constructor(
    code: ErrorCode,
    message?: string,
    extra?: { field?: string; details?: object; status?: number; closeCode?: number },
  );
}

export interface Backoff {
  /** First wait, in ms (default 500). */
  initial?: number;
  /** Longest wait, in ms (default 30000). */
  max?: number;
  /** Growth per attempt (default 2). */
  factor?: number;
}

/** The wait before reconnect attempt `attempt` (0-based): exponential, capped, between half and all of it. */
export declare function backoffDelay(attempt: number, backoff?: Backoff, random?: () => number): number;

/** A fresh client_msg_id (a UUID). */
export declare function newClientMsgId(): string;

/** The part of the Web Storage API the client uses (localStorage fits). */
export interface StorageLike {
  readonly length: number;
  key(index: number): string | null;
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

export interface RealtimeClientOptions {
  /** The WebSocket endpoint; default ws(s)://<page host>/ws/v1/. */
  url?: string;
  /** The REST base; default http(s)://<host of url>/api/v1/. */
  apiBase?: string;
  /** A device token (from POST /api/v1/auth/login). Without one: the page's Django session. */
  token?: string | null;
  /** The CSRF token for REST writes with the session; default: the csrftoken cookie. */
  csrfToken?: string | null;
  /** Keep cursors and unsent messages here (e.g. localStorage), so a reload loses nothing. */
  storage?: StorageLike | null;
  /** Prefix of the storage keys (default "realtime"); give one per user. */
  storageKey?: string;
  /** Cursors to start from: conversation id -> last seq applied. */
  cursors?: Record<string, number>;
  /** Reconnect backoff. */
  backoff?: Backoff;
  /** Send `delivered` after applying events (default true). */
  autoDelivered?: boolean;
  /** Input pause after which typing() sends `stop` (default 3000 ms). */
  typingIdleMs?: number;
  /** Ping interval; default hello.heartbeat_interval. */
  heartbeatIntervalMs?: number;
  /** Silence after which the connection counts as dead; default hello.heartbeat_timeout. */
  deadAfterMs?: number;
  /** How long a connection may take to reach hello before it is abandoned and tried again (default 15000 ms). */
  connectTimeoutMs?: number;
  /** Load GET /api/v1/presence after connecting and when contacts change (default true). */
  loadPresence?: boolean;
  /** A WebSocket constructor (default globalThis.WebSocket). */
  WebSocket?: new (url: string) => WebSocket;
  /** A fetch function (default globalThis.fetch). */
  fetch?: typeof fetch;
  /** Random numbers for the backoff jitter (tests). */
  random?: () => number;
}

export type ConnectionState = "idle" | "connecting" | "syncing" | "online" | "waiting" | "offline" | "closed";

export interface User {
  id: number;
  username: string;
}

export interface Hello {
  type: "hello";
  protocol: number;
  user: User;
  device: { id: number; name: string };
  server_time: string;
  heartbeat_interval: number;
  heartbeat_timeout: number;
  limits: {
    max_frame_bytes: number;
    message_body_max_chars: number;
    client_msg_id_max_chars: number;
    sync_max_changes: number;
    fetch_max_changes: number;
  };
  presence_timeout: number;
  typing_timeout: number;
}

export interface Message {
  id: number;
  conversation_id: number;
  /** The seq of the change that created it. */
  seq: number;
  sender: number;
  sender_device: number | null;
  client_msg_id: string;
  /** "" once deleted. */
  body: string;
  reply_to: number | null;
  version: number;
  created_at: string;
  edited_at: string | null;
  deleted: boolean;
  deleted_at: string | null;
  edited_by?: number | null;
  deleted_by?: number | null;
  redacted?: boolean;
}

export interface Member {
  user: User;
  role: "owner" | "admin" | "member";
  joined_at: string;
}

export interface Conversation {
  id: number;
  kind: "direct" | "group";
  title: string;
  created_by: number;
  created_at: string;
  members: Member[];
}

export type LogEventKind =
  | "conversation.created"
  | "conversation.renamed"
  | "member.added"
  | "member.removed"
  | "message.created"
  | "message.edited"
  | "message.deleted";

export interface LogEvent<P = Record<string, unknown>> {
  type: "event";
  kind: LogEventKind | (string & {});
  conversation_id: number;
  seq: number;
  payload: P;
}

export interface StateEvent<P = Record<string, unknown>> {
  type: "event";
  kind: "receipts.updated" | "presence.updated" | "typing" | (string & {});
  conversation_id?: number;
  payload: P;
}

export interface Receipt {
  user_id: number;
  delivered_seq: number;
  read_seq: number;
}

export interface Presence {
  user_id: number;
  status: "online" | "busy" | "away" | "offline";
  last_seen_at: string | null;
}

export interface Typer {
  user_id: number;
  device_id: number;
}

export interface SyncResult {
  cursors: Record<string, number>;
  reset: number[];
  gone: number[];
}

export interface SendResult {
  conversation_id: number;
  message_id: number;
  seq: number;
  client_msg_id: string;
  duplicate: boolean;
}

export interface CursorResult {
  conversation_id: number;
  delivered_seq: number;
  read_seq: number;
}

export interface FetchResult {
  conversation_id: number;
  changes: LogEvent[];
  has_more: boolean;
}

export interface PendingSend {
  conversation_id: number;
  client_msg_id: string;
  body: string;
  reply_to?: number;
}

export interface ResetInfo {
  conversationId: number;
  lastSeq: number;
  reason: "too_many_changes" | "cursor_ahead" | "rejoined" | "log_gap" | (string & {});
}

/** The events of RealtimeClient.on, with their listeners' arguments. */
export interface ClientEvents {
  /** Connection state changes. */
  state: (state: ConnectionState, detail?: { code?: number; delay?: number; attempt?: number; error?: RealtimeError }) => void;
  /** A connection was accepted (before its sync). */
  hello: (hello: Hello) => void;
  /** A sync completed: the client is caught up and live. */
  ready: (result: SyncResult) => void;
  /** The connection ended; `wasReady`: hello had arrived. */
  disconnect: (info: { code: number; wasReady: boolean }) => void;
  /** Every event frame, log events once each in seq order per conversation. */
  event: (frame: LogEvent | StateEvent) => void;
  /** message.created, message.edited or message.deleted. */
  message: (message: Message, frame: LogEvent<Message>) => void;
  /** conversation.created, conversation.renamed, member.added or member.removed. */
  conversation: (frame: LogEvent) => void;
  /** Receipt cursors moved (only the entries that changed). */
  receipts: (conversationId: number, changed: Receipt[]) => void;
  presence: (presence: Presence) => void;
  /** Who types in a conversation now (after each start, stop or expiry). */
  typing: (conversationId: number, typers: Typer[]) => void;
  /** The server will not replay this conversation: reload it over REST, then apply the events that follow. */
  reset: (info: ResetInfo) => void;
  /** A conversation the user is no longer in (its cursor is dropped). */
  gone: (conversationId: number) => void;
  /** The unacknowledged sends changed. */
  outbox: (pending: PendingSend[]) => void;
  /** A send restored from storage was acknowledged. */
  sent: (result: SendResult, request: PendingSend) => void;
  /** A connection-level error, a refused stored send, or an exception thrown by a listener. */
  error: (error: Error) => void;
}

export declare class RealtimeClient {
  constructor(options?: RealtimeClientOptions);

  readonly url: string;
  readonly apiBase: string;
  readonly state: ConnectionState;
  /** The current connection's hello; null while not connected. */
  readonly hello: Hello | null;
  readonly user: User | null;
  readonly device: { id: number; name: string } | null;

  on<K extends keyof ClientEvents>(name: K, listener: ClientEvents[K]): () => void;
  off<K extends keyof ClientEvents>(name: K, listener: ClientEvents[K]): void;

  /** Connect and keep reconnecting; resolves with hello after the first sync. */
  connect(): Promise<Hello>;
  /** Close for good; waiting requests are rejected (stored sends stay stored). */
  close(): void;

  send(conversationId: number, body: string, options?: { replyTo?: number | null; clientMsgId?: string }): Promise<SendResult>;
  pendingSends(): PendingSend[];
  edit(conversationId: number, messageId: number, body: string, version: number): Promise<{ message: Message }>;
  delete(conversationId: number, messageId: number): Promise<{ message: Message }>;
  read(conversationId: number, seq: number): Promise<CursorResult>;
  delivered(conversationId: number, seq: number): Promise<CursorResult>;
  fetch(conversationId: number, options?: { afterSeq?: number; limit?: number }): Promise<FetchResult>;
  ping(): Promise<{ server_time: string }>;
  resync(): Promise<SyncResult>;
  setPresence(status: "online" | "away" | "busy"): Promise<{ status: string }>;
  subscribePresence(userIds: number[]): Promise<{ presence: Presence[] }>;
  /** Call on every input in a conversation's composer. */
  typing(conversationId: number): Promise<unknown>;
  stopTyping(conversationId: number): Promise<unknown>;

  cursors(): Record<string, number>;
  cursor(conversationId: number): number | undefined;
  setCursor(conversationId: number, seq: number): void;
  forget(conversationId: number): void;
  receipts(conversationId: number): Map<number, Receipt>;
  loadReceipts(conversationId: number): Promise<Map<number, Receipt>>;
  presence(): Map<number, Presence>;
  typers(conversationId: number): Typer[];

  /** REST under /api/v1/ with the client's credentials. */
  api<T = any>(
    path: string,
    options?: { method?: string; body?: unknown; query?: Record<string, string | number | undefined | null> },
  ): Promise<T>;
}

export default RealtimeClient;
