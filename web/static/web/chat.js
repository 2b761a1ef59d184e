// The chat page: plain DOM on top of the realtime client. No framework, no build.
//
// State lives here (conversations, messages by id, who is typing, presence);
// the client keeps the connection, the cursors and the unsent messages (in
// localStorage, so a reload loses nothing). REST gives the snapshots (the
// conversation list, a page of history), the socket everything after.

import { RealtimeClient, newClientMsgId } from "../realtime/client.js";

const config = JSON.parse(document.getElementById("chat-config").textContent);
const me = config.user;

const client = new RealtimeClient({
  csrfToken: config.csrfToken,
  storage: window.localStorage,
  storageKey: `realtime:${me.id}`,
});

const $ = (id) => document.getElementById(id);

/** A DOM element: h("li", {class: "x", dataset: {id: 1}, onclick}, "text", child). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// ---- state ------------------------------------------------------------

const conversations = new Map(); // id -> REST conversation (members, last_seq, unread_count, last_message, ...)
const messages = new Map(); // conversation id -> Map(message id -> message)
const history = new Map(); // conversation id -> {hasMore, nextBefore, loaded}
const typing = new Map(); // conversation id -> [{user_id, device_id}]
const usernames = new Map([[me.id, me.username]]);
let openId = null;
let editing = null; // {conversationId, message}
let pendingConflict = null;

function nameOf(userId) {
  return usernames.get(userId) || `user ${userId}`;
}

function rememberMembers(conversation) {
  for (const member of conversation.members || []) usernames.set(member.user.id, member.user.username);
}

function otherMembers(conversation) {
  return (conversation.members || []).filter((m) => m.user.id !== me.id);
}

function titleOf(conversation) {
  if (conversation.title) return conversation.title;
  const others = otherMembers(conversation).map((m) => m.user.username);
  if (!others.length) return "Just you";
  return others.join(", ");
}

function storeMessage(message) {
  let byId = messages.get(message.conversation_id);
  if (!byId) {
    byId = new Map();
    messages.set(message.conversation_id, byId);
  }
  const old = byId.get(message.id);
  if (old && old.version > message.version) return false; // an older state arriving late
  if (old && old.version === message.version && old.deleted === message.deleted) return false;
  byId.set(message.id, { ...old, ...message });
  return true;
}

function sortedMessages(conversationId) {
  return [...(messages.get(conversationId)?.values() || [])].sort((a, b) => a.seq - b.seq);
}

// ---- conversation list ------------------------------------------------------

function presenceOf(userId) {
  return client.presence().get(userId)?.status || "offline";
}

function presenceText(userId) {
  const presence = client.presence().get(userId);
  if (!presence) return "";
  if (presence.status !== "offline") return presence.status;
  if (!presence.last_seen_at) return "offline";
  const seen = new Date(presence.last_seen_at);
  const sameDay = seen.toDateString() === new Date().toDateString();
  return `last seen ${sameDay ? timeOf(presence.last_seen_at) : seen.toLocaleDateString()}`;
}

function dot(userId) {
  return h("span", { class: `dot ${presenceOf(userId)}`, dataset: { presenceUser: userId }, title: presenceOf(userId) });
}

function preview(conversation) {
  const typers = typing.get(conversation.id) || [];
  if (typers.length) return h("span", { class: "typing-preview" }, `${typers.map((t) => nameOf(t.user_id)).join(", ")} typing…`);
  const last = conversation.last_message;
  if (!last) return h("span", { class: "muted" }, "No messages yet");
  const who = last.sender === me.id ? "You: " : conversation.kind === "group" ? `${nameOf(last.sender)}: ` : "";
  return h("span", {}, who, last.deleted ? h("i", {}, "message deleted") : last.body);
}

function renderList() {
  const list = $("conversation-list");
  const sorted = [...conversations.values()].sort((a, b) => activity(b) - activity(a) || b.id - a.id);
  list.replaceChildren(
    ...sorted.map((c) => {
      const direct = c.kind === "direct" ? otherMembers(c)[0] : null;
      return h(
        "li",
        {},
        h(
          "button",
          {
            type: "button",
            class: `conversation-item${c.id === openId ? " active" : ""}${c.unread_count ? " unread" : ""}`,
            dataset: { conversationId: c.id },
            onclick: () => openConversation(c.id),
          },
          h("span", { class: "avatar" }, titleOf(c).slice(0, 1).toUpperCase(), direct ? dot(direct.user.id) : null),
          h(
            "span",
            { class: "item-text" },
            h("span", { class: "item-title" }, titleOf(c)),
            h("span", { class: "item-preview" }, preview(c)),
          ),
          c.unread_count ? h("span", { class: "badge", dataset: { unread: c.unread_count } }, String(c.unread_count)) : null,
        ),
      );
    }),
  );
  $("no-conversations").hidden = conversations.size > 0;
}

function activity(conversation) {
  const at = conversation.last_message?.created_at || conversation.created_at;
  return at ? Date.parse(at) : 0;
}

function addConversation(conversation) {
  const old = conversations.get(conversation.id);
  conversations.set(conversation.id, {
    unread_count: 0,
    read_seq: 0,
    last_message: null,
    last_seq: 0,
    ...old,
    ...conversation,
  });
  rememberMembers(conversation);
}

async function loadConversations() {
  const list = [];
  for (let offset = 0; ; offset += 200) {
    const page = await client.api("conversations", { query: { limit: 200, offset } });
    list.push(...page.results);
    if (!page.next) break;
  }
  for (const conversation of list) {
    addConversation(conversation);
    client.setCursor(conversation.id, conversation.last_seq);
    client.refreshPresence(); // its conversation.created is now below the cursor: never applied
  }
  renderList();
}

async function refreshConversation(conversationId) {
  try {
    const fresh = await client.api(`conversations/${conversationId}`);
    addConversation(fresh);
    renderList();
    if (conversationId === openId) renderHeader();
  } catch (error) {
    if (error.code === "not_found") dropConversation(conversationId);
  }
}

function dropConversation(conversationId) {
  conversations.delete(conversationId);
  messages.delete(conversationId);
  history.delete(conversationId);
  if (openId === conversationId) closeConversation();
  renderList();
}

// ---- one conversation --------------------------------------------------------

async function openConversation(conversationId) {
  if (!conversations.has(conversationId)) return;
  if (openId !== null && openId !== conversationId) client.stopTyping(openId);
  openId = conversationId;
  cancelEdit();
  history.set(conversationId, history.get(conversationId) || { hasMore: false, nextBefore: null, loaded: false });
  if (location.hash !== `#c${conversationId}`) history_replace(`#c${conversationId}`);
  document.body.classList.add("show-conversation");
  $("placeholder").hidden = true;
  $("conversation-head").hidden = false;
  $("messages").hidden = false;
  $("composer").hidden = false;
  renderHeader();
  renderMessages({ toBottom: true });
  renderList();
  $("composer-input").focus();
  const state = history.get(conversationId);
  if (!state.loaded) {
    const page = await client.api(`conversations/${conversationId}/messages`, { query: { limit: 50 } });
    page.results.forEach(storeMessage);
    Object.assign(state, { hasMore: page.has_more, nextBefore: page.next_before, loaded: true });
    if (openId === conversationId) renderMessages({ toBottom: true });
  }
  client.loadReceipts(conversationId).catch(() => {});
  markRead();
}

function history_replace(hash) {
  window.history.replaceState(null, "", hash);
}

function closeConversation() {
  if (openId !== null) client.stopTyping(openId);
  openId = null;
  cancelEdit();
  document.body.classList.remove("show-conversation");
  $("placeholder").hidden = false;
  $("conversation-head").hidden = true;
  $("messages").hidden = true;
  $("composer").hidden = true;
  $("typing").textContent = "";
  history_replace(location.pathname + location.search);
  renderList();
}

async function loadOlder() {
  const conversationId = openId;
  const state = history.get(conversationId);
  if (!state?.hasMore) return;
  const box = $("messages");
  const fromBottom = box.scrollHeight - box.scrollTop;
  const page = await client.api(`conversations/${conversationId}/messages`, {
    query: { before: state.nextBefore, limit: 50 },
  });
  page.results.forEach(storeMessage);
  Object.assign(state, { hasMore: page.has_more, nextBefore: page.next_before });
  if (openId !== conversationId) return;
  renderMessages();
  box.scrollTop = box.scrollHeight - fromBottom; // keep the reader's place
}

function renderHeader() {
  const conversation = conversations.get(openId);
  if (!conversation) return;
  $("conversation-title").textContent = titleOf(conversation);
  const others = otherMembers(conversation);
  $("conversation-members").replaceChildren(
    ...(conversation.kind === "direct" && others.length === 1
      ? [h("span", { class: "member" }, dot(others[0].user.id), h("span", { class: "presence-text", dataset: { presenceText: others[0].user.id } }, presenceText(others[0].user.id)))]
      : others.map((m) => h("span", { class: "member" }, dot(m.user.id), m.user.username, " "))),
  );
}

function timeOf(iso) {
  const date = new Date(iso);
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

/** sent, delivered or read: for every other member (per §8, from the members' cursors). */
function receiptOf(conversation, message) {
  const recipients = otherMembers(conversation).map((m) => m.user.id);
  if (!recipients.length) return { state: "sent", title: "Sent" };
  const cursors = client.receipts(conversation.id);
  const read = recipients.filter((id) => (cursors.get(id)?.read_seq || 0) >= message.seq);
  const delivered = recipients.filter((id) => (cursors.get(id)?.delivered_seq || 0) >= message.seq);
  if (read.length === recipients.length) return { state: "read", title: `Read by ${read.map(nameOf).join(", ")}` };
  if (delivered.length === recipients.length) {
    const readBy = read.length ? `; read by ${read.map(nameOf).join(", ")}` : "";
    return { state: "delivered", title: `Delivered to ${delivered.map(nameOf).join(", ")}${readBy}` };
  }
  return { state: "sent", title: delivered.length ? `Delivered to ${delivered.map(nameOf).join(", ")}` : "Sent" };
}

const MARKS = { pending: "sending…", sent: "✓", delivered: "✓✓", read: "✓✓" };

function messageItem(conversation, message) {
  const mine = message.sender === me.id;
  const receipt = mine && !message.deleted ? receiptOf(conversation, message) : null;
  const actions =
    mine && !message.deleted
      ? h(
          "span",
          { class: "actions" },
          h("button", { type: "button", class: "link", dataset: { action: "edit" }, onclick: () => startEdit(message) }, "Edit"),
          h("button", { type: "button", class: "link", dataset: { action: "delete" }, onclick: (e) => confirmDelete(e, message) }, "Delete"),
        )
      : null;
  return h(
    "li",
    {
      class: `message${mine ? " mine" : ""}${message.deleted ? " deleted" : ""}`,
      dataset: { messageId: message.id, seq: message.seq, clientMsgId: message.client_msg_id },
    },
    conversation.kind === "group" && !mine ? h("span", { class: "sender" }, nameOf(message.sender)) : null,
    h("span", { class: "body" }, message.deleted ? "This message was deleted." : message.body),
    h(
      "span",
      { class: "meta" },
      message.edited_at && !message.deleted ? h("span", { class: "edited" }, "edited ") : null,
      h("time", { datetime: message.created_at }, timeOf(message.created_at)),
      receipt ? h("span", { class: `receipt ${receipt.state}`, dataset: { receipt: receipt.state }, title: receipt.title }, MARKS[receipt.state]) : null,
      actions,
    ),
  );
}

function pendingItem(pending) {
  return h(
    "li",
    { class: "message mine pending", dataset: { clientMsgId: pending.client_msg_id } },
    h("span", { class: "body" }, pending.body),
    h("span", { class: "meta" }, h("span", { class: "receipt", dataset: { receipt: "pending" }, title: "Waiting to be sent" }, MARKS.pending)),
  );
}

function renderMessages({ toBottom = false } = {}) {
  const conversation = conversations.get(openId);
  if (!conversation) return;
  const box = $("messages");
  const atBottom = toBottom || box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  const shown = sortedMessages(openId);
  const known = new Set(shown.map((m) => m.client_msg_id));
  const pending = client
    .pendingSends()
    .filter((p) => p.conversation_id === openId && !known.has(p.client_msg_id));
  $("message-list").replaceChildren(...shown.map((m) => messageItem(conversation, m)), ...pending.map(pendingItem));
  $("load-older").hidden = !history.get(openId)?.hasMore;
  if (atBottom) box.scrollTop = box.scrollHeight;
}

function renderTyping() {
  const typers = openId === null ? [] : typing.get(openId) || [];
  const names = [...new Set(typers.map((t) => nameOf(t.user_id)))];
  $("typing").textContent = names.length ? `${names.join(", ")} ${names.length > 1 ? "are" : "is"} typing…` : "";
}

let readTimer = null;

/** Mark the open conversation read up to its last seq while the page is in view. */
function markRead() {
  clearTimeout(readTimer);
  readTimer = setTimeout(() => {
    const conversation = conversations.get(openId);
    if (!conversation || document.visibilityState !== "visible") return;
    const seq = Math.max(conversation.last_seq || 0, client.cursor(conversation.id) || 0);
    if (seq <= 0) return;
    const mineRead = client.receipts(conversation.id).get(me.id)?.read_seq || 0;
    if (conversation.unread_count === 0 && mineRead >= seq && conversation.read_seq >= seq) return;
    conversation.unread_count = 0;
    conversation.read_seq = Math.max(conversation.read_seq || 0, seq);
    renderList();
    client.read(conversation.id, seq).catch(() => {});
  }, 150);
}

// ---- composing, editing, deleting ------------------------------------------

function send(event) {
  event.preventDefault();
  const input = $("composer-input");
  const body = input.value;
  if (!body.trim() || openId === null) return;
  if (editing) {
    saveEdit(body);
    return;
  }
  const conversationId = openId;
  input.value = "";
  autosize();
  client.send(conversationId, body, { clientMsgId: newClientMsgId() }).catch((error) => showError(error));
  renderMessages({ toBottom: true });
}

function startEdit(message) {
  editing = { conversationId: message.conversation_id, message };
  $("edit-bar").hidden = false;
  $("send").textContent = "Save";
  const input = $("composer-input");
  input.value = message.body;
  autosize();
  input.focus();
}

function cancelEdit() {
  editing = null;
  pendingConflict = null;
  $("edit-bar").hidden = true;
  $("conflict").hidden = true;
  $("send").textContent = "Send";
  if ($("composer-input").value && openId !== null) $("composer-input").value = "";
}

async function saveEdit(body, version) {
  // Based on the version the user began editing: if it changed since, the server says so.
  const { conversationId, message } = editing;
  try {
    await client.edit(conversationId, message.id, body, version ?? message.version);
    cancelEdit();
    $("composer-input").value = "";
    autosize();
  } catch (error) {
    if (error.code === "version_conflict") showConflict(body, error.details);
    else if (error.code === "message_deleted") {
      cancelEdit();
      showError(new Error("That message was deleted meanwhile."));
    } else showError(error);
  }
}

function showConflict(mine, details) {
  pendingConflict = { mine, details };
  const box = $("conflict");
  box.replaceChildren(
    h("strong", {}, "This message was changed elsewhere. "),
    h("span", {}, "Its text now: "),
    h("q", { class: "current-body" }, details.current_body),
    h(
      "div",
      { class: "conflict-actions" },
      h("button", { type: "button", class: "small primary", dataset: { action: "overwrite" }, onclick: () => saveEdit(mine, details.current_version) }, "Save mine anyway"),
      h(
        "button",
        {
          type: "button",
          class: "small",
          dataset: { action: "keep" },
          onclick: () => {
            cancelEdit();
            $("composer-input").value = "";
          },
        },
        "Keep theirs",
      ),
    ),
  );
  box.hidden = false;
}

function confirmDelete(event, message) {
  const button = event.currentTarget;
  if (button.dataset.armed) {
    client.delete(message.conversation_id, message.id).catch(showError);
    return;
  }
  button.dataset.armed = "1";
  button.textContent = "Really delete?";
  setTimeout(() => {
    if (button.isConnected) {
      delete button.dataset.armed;
      button.textContent = "Delete";
    }
  }, 4000);
}

let errorTimer = null;

function showError(error) {
  const banner = $("connection");
  banner.hidden = false;
  banner.className = "connection error";
  banner.textContent = error.message || String(error);
  clearTimeout(errorTimer);
  errorTimer = setTimeout(renderConnection, 5000);
}

function autosize() {
  const input = $("composer-input");
  input.style.height = "auto";
  input.style.height = `${Math.min(input.scrollHeight, 160)}px`;
}

// ---- starting a conversation ------------------------------------------------

const picked = new Map(); // user id -> username
let searchTimer = null;

function openNewPanel() {
  picked.clear();
  $("new-panel").hidden = false;
  $("user-search").value = "";
  $("group-title").value = "";
  $("new-error").hidden = true;
  renderPicked();
  search();
  $("user-search").focus();
}

function closeNewPanel() {
  $("new-panel").hidden = true;
}

async function search() {
  const term = $("user-search").value.trim();
  try {
    const found = await client.api("users", { query: { search: term } });
    $("user-results").replaceChildren(
      ...found.results.map((user) =>
        h(
          "li",
          {},
          h(
            "button",
            {
              type: "button",
              class: `user-result${picked.has(user.id) ? " picked" : ""}`,
              dataset: { userId: user.id, username: user.username },
              onclick: () => {
                if (picked.has(user.id)) picked.delete(user.id);
                else picked.set(user.id, user.username);
                renderPicked();
                search();
              },
            },
            user.username,
          ),
        ),
      ),
      ...(found.results.length ? [] : [h("li", { class: "muted" }, "Nobody found.")]),
    );
  } catch (error) {
    showError(error);
  }
}

function renderPicked() {
  $("picked").replaceChildren(...[...picked.values()].map((name) => h("span", { class: "chip" }, name)));
  $("group-title").hidden = picked.size < 2;
  $("start-conversation").disabled = picked.size === 0;
  $("start-conversation").textContent = picked.size > 1 ? "Start group" : "Start chat";
}

async function startConversation() {
  const memberIds = [...picked.keys()];
  const body =
    memberIds.length === 1
      ? { kind: "direct", member_ids: memberIds }
      : { kind: "group", title: $("group-title").value.trim(), member_ids: memberIds };
  try {
    const conversation = await client.api("conversations", { method: "POST", body });
    addConversation(conversation);
    client.setCursor(conversation.id, conversation.last_seq);
    client.refreshPresence(); // its conversation.created is now below the cursor: never applied
    closeNewPanel();
    renderList();
    openConversation(conversation.id);
  } catch (error) {
    $("new-error").hidden = false;
    $("new-error").textContent = error.message;
  }
}

// ---- connection state -----------------------------------------------------

function renderConnection() {
  const banner = $("connection");
  const text = {
    connecting: "Connecting…",
    syncing: "Catching up…",
    waiting: "Connection lost. Reconnecting…",
    offline: "You are offline. Messages will be sent when you are back.",
    closed: "Disconnected. Reload the page or log in again.",
  }[client.state];
  banner.className = `connection ${client.state}`;
  banner.textContent = text || "";
  banner.hidden = !text || client.state === "connecting" || client.state === "syncing";
  document.body.dataset.connection = client.state;
}

// ---- events from the client --------------------------------------------------

client.on("state", renderConnection);

client.on("message", (message, frame) => {
  const conversation = conversations.get(message.conversation_id);
  if (!conversation) {
    refreshConversation(message.conversation_id);
    return;
  }
  conversation.last_seq = Math.max(conversation.last_seq || 0, frame.seq);
  const isLast = !conversation.last_message || conversation.last_message.seq <= message.seq;
  if (isLast) conversation.last_message = message;
  const loaded = history.get(message.conversation_id)?.loaded;
  if (frame.kind === "message.created" || loaded) storeMessage(message);
  if (frame.kind === "message.created" && message.sender !== me.id) {
    if (message.conversation_id === openId && document.visibilityState === "visible") markRead();
    else conversation.unread_count = (conversation.unread_count || 0) + 1;
  }
  if (frame.kind === "message.deleted" && message.sender !== me.id && message.seq > (conversation.read_seq || 0)) {
    conversation.unread_count = Math.max(0, (conversation.unread_count || 0) - 1);
  }
  if (editing && editing.message.id === message.id && frame.kind === "message.deleted") cancelEdit();
  renderList();
  if (message.conversation_id === openId) renderMessages();
});

client.on("conversation", (frame) => {
  const payload = frame.payload;
  const id = frame.conversation_id;
  if (frame.kind === "conversation.created") {
    addConversation({ ...payload, last_seq: frame.seq });
  } else if (frame.kind === "member.added") {
    addConversation({ ...payload.conversation, last_seq: frame.seq });
    if (payload.user.id === me.id) refreshConversation(id);
  } else if (frame.kind === "member.removed") {
    if (payload.user.id === me.id) {
      dropConversation(id);
      return;
    }
    const conversation = conversations.get(id);
    if (conversation) conversation.members = conversation.members.filter((m) => m.user.id !== payload.user.id);
  } else if (frame.kind === "conversation.renamed") {
    const conversation = conversations.get(id);
    if (conversation) conversation.title = payload.title;
  }
  const conversation = conversations.get(id);
  if (conversation) conversation.last_seq = Math.max(conversation.last_seq || 0, frame.seq);
  renderList();
  if (id === openId) {
    renderHeader();
    renderMessages();
  }
});

client.on("receipts", (conversationId, changed) => {
  const mine = changed.find((r) => r.user_id === me.id);
  const conversation = conversations.get(conversationId);
  if (mine && conversation && mine.read_seq > (conversation.read_seq || 0)) {
    // Read on another device of mine: the badge follows.
    conversation.read_seq = mine.read_seq;
    if (mine.read_seq >= (conversation.last_seq || 0)) conversation.unread_count = 0;
    else refreshConversation(conversationId);
    renderList();
  }
  if (conversationId === openId) renderMessages();
});

client.on("typing", (conversationId, typers) => {
  typing.set(conversationId, typers);
  renderList();
  renderTyping();
});

client.on("presence", (presence) => {
  for (const el of document.querySelectorAll(`[data-presence-user="${presence.user_id}"]`)) {
    el.className = `dot ${presence.status}`;
    el.title = presence.status;
  }
  for (const el of document.querySelectorAll(`[data-presence-text="${presence.user_id}"]`)) {
    el.textContent = presenceText(presence.user_id);
  }
});

client.on("reset", ({ conversationId }) => {
  // The server will not replay this conversation: reload it (§6 reset).
  messages.delete(conversationId);
  history.delete(conversationId);
  refreshConversation(conversationId).then(() => {
    if (conversationId === openId) openConversation(conversationId);
  });
});

client.on("gone", (conversationId) => dropConversation(conversationId));

client.on("outbox", () => {
  if (openId !== null) renderMessages();
});

client.on("sent", () => {
  if (openId !== null) renderMessages();
});

client.on("ready", () => {
  // After a reconnect: what arrived while away may be unread.
  if (openId !== null) markRead();
});

client.on("error", (error) => {
  if (error.code === "unauthorized" || error.code === "device_revoked") {
    window.location.href = "/login/";
    return;
  }
  console.warn(error);
});

// ---- wiring ---------------------------------------------------------------

$("composer").addEventListener("submit", send);
$("composer-input").addEventListener("input", () => {
  autosize();
  if (openId === null || editing) return;
  if ($("composer-input").value) client.typing(openId);
  else client.stopTyping(openId);
});
$("composer-input").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) send(event);
  if (event.key === "Escape" && editing) cancelEdit();
});
$("cancel-edit").addEventListener("click", cancelEdit);
$("back").addEventListener("click", closeConversation);
$("load-older").addEventListener("click", loadOlder);
$("messages").addEventListener("scroll", () => {
  if ($("messages").scrollTop < 40) loadOlder();
});
$("new-conversation").addEventListener("click", openNewPanel);
$("cancel-new").addEventListener("click", closeNewPanel);
$("start-conversation").addEventListener("click", startConversation);
$("user-search").addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(search, 150);
});
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") markRead();
});
window.addEventListener("focus", markRead);

async function start() {
  renderConnection();
  try {
    await loadConversations();
  } catch (error) {
    showError(error);
  }
  client.connect().catch(() => {});
  const match = /^#c(\d+)$/.exec(location.hash);
  if (match && conversations.has(Number(match[1]))) openConversation(Number(match[1]));
  document.body.dataset.ready = "1";
}

window.chat = { client, conversations, messages }; // for the browser tests and the curious
start();
