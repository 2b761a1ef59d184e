// The JS client (web/static/realtime/client.js) against a real server.
// Run: node --experimental-websocket --test tests/js/   (Node 22+: no flag needed)

import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";

import { backoffDelay, CloseCode, RealtimeClient, RealtimeError } from "../../web/static/realtime/client.js";
import { MemoryStorage, nextEvent, Proxy, recordMessages, Server, sleep, until } from "./support.mjs";

let server;
let proxy;
const clients = [];
const tokens = {};

function client(user, options = {}) {
  const made = new RealtimeClient({
    url: proxy.ws,
    token: tokens[user].token,
    backoff: { initial: 50, max: 400 },
    connectTimeoutMs: 1000,
    ...options,
  });
  clients.push(made);
  return made;
}

async function group(owner, ...members) {
  const ids = members.map((name) => tokens[name].user.id);
  return server.rest(tokens[owner].token, "POST", "conversations", { kind: "group", title: "t", member_ids: ids });
}

function bodies(seen, conversationId) {
  return seen.filter((m) => m.kind === "message.created" && m.conversation_id === conversationId).map((m) => m.body);
}

before(async () => {
  server = await new Server().start();
  proxy = await new Proxy(server.port).start();
  for (const name of ["alice", "bob", "carol", "dave"]) tokens[name] = await server.login(name);
});

// Each test's clients are closed after it: left connected, every later cut of
// the proxy would reconnect them too, and their presence would reach the
// next tests' clients.
afterEach(() => {
  for (const c of clients.splice(0)) c.close();
});

after(async () => {
  await proxy?.stop();
  await server?.stop();
});

describe("backoff", { timeout: 60000 }, () => {
  test("grows exponentially to the cap, with jitter between half and all of it", () => {
    const options = { initial: 500, max: 30000, factor: 2 };
    assert.equal(backoffDelay(0, options, () => 0), 250);
    assert.equal(backoffDelay(0, options, () => 1), 500);
    assert.equal(backoffDelay(3, options, () => 1), 4000);
    assert.equal(backoffDelay(3, options, () => 0), 2000);
    assert.equal(backoffDelay(20, options, () => 1), 30000);
    for (let attempt = 0; attempt < 12; attempt++) {
      const delay = backoffDelay(attempt, options);
      const base = Math.min(30000, 500 * 2 ** attempt);
      assert.ok(delay >= base / 2 && delay <= base, `${attempt}: ${delay}`);
    }
  });
});

describe("connecting", { timeout: 60000 }, () => {
  test("connects with a token, syncs, and every request returns a promise", async () => {
    const alice = client("alice");
    const states = [];
    alice.on("state", (state) => states.push(state));
    const hello = await alice.connect();
    assert.equal(hello.user.username, "alice");
    assert.equal(alice.state, "online");
    assert.deepEqual(states.slice(0, 3), ["connecting", "syncing", "online"]);
    const pong = await alice.ping();
    assert.match(pong.server_time, /Z$/);
    alice.close();
    assert.equal(alice.state, "closed");
  });

  test("a refused token (4401) is not retried and rejects connect()", async () => {
    const bad = client("alice", { token: "not-a-token" });
    let opened = 0;
    bad.on("state", (state) => state === "connecting" && opened++);
    await assert.rejects(bad.connect(), (error) => error instanceof RealtimeError && error.code === "unauthorized");
    assert.equal(bad.state, "closed");
    await sleep(300);
    assert.equal(opened, 1);
  });

  test("a refused origin (4403) is not retried", async () => {
    class ForeignPage extends WebSocket {
      constructor(url) {
        super(url, { headers: { Origin: "http://evil.example" } });
      }
    }
    const foreign = client("alice", { WebSocket: ForeignPage });
    const closes = [];
    foreign.on("disconnect", ({ code }) => closes.push(code));
    await assert.rejects(foreign.connect(), (error) => error.code === "forbidden_origin" && error.closeCode === 4403);
    await sleep(300);
    assert.deepEqual(closes, [CloseCode.FORBIDDEN_ORIGIN]);
  });

  test("a revoked device (4410) stops reconnecting", async () => {
    const login = await server.login("carol", "to revoke");
    const carol = client("carol", { token: login.token });
    await carol.connect();
    const closed = nextEvent(carol, "state", (state) => state === "closed");
    await server.rest(login.token, "POST", "auth/logout");
    const [, detail] = await closed;
    assert.equal(detail.code, CloseCode.DEVICE_REVOKED);
  });
});

describe("messages", { timeout: 60000 }, () => {
  test("a send reaches the other member once, with its client_msg_id", async () => {
    const conversation = await group("alice", "bob");
    const alice = client("alice");
    const bob = client("bob");
    const seen = recordMessages(bob);
    await Promise.all([alice.connect(), bob.connect()]);
    const result = await alice.send(conversation.id, "hello bob", { clientMsgId: "js-hello-1" });
    assert.equal(result.client_msg_id, "js-hello-1");
    assert.equal(result.duplicate, false);
    await until(() => bodies(seen, conversation.id).length === 1, "bob's message");
    assert.deepEqual(bodies(seen, conversation.id), ["hello bob"]);
    assert.equal(bob.cursor(conversation.id), result.seq);
    // Sending again with the same id is harmless.
    const again = await alice.send(conversation.id, "hello bob", { clientMsgId: "js-hello-1" });
    assert.equal(again.duplicate, true);
    assert.equal(again.message_id, result.message_id);
  });

  test("edit, the conflict of a stale edit, and delete", async () => {
    const conversation = await group("alice", "bob");
    const alice = client("alice");
    const bob = client("bob");
    const seen = recordMessages(bob);
    await Promise.all([alice.connect(), bob.connect()]);
    const sent = await alice.send(conversation.id, "first");
    const edited = await alice.edit(conversation.id, sent.message_id, "second", 1);
    assert.equal(edited.message.version, 2);
    await assert.rejects(alice.edit(conversation.id, sent.message_id, "third", 1), (error) => {
      assert.equal(error.code, "version_conflict");
      assert.deepEqual(error.details, { current_version: 2, current_body: "second" });
      return true;
    });
    const deleted = await alice.delete(conversation.id, sent.message_id);
    assert.equal(deleted.message.deleted, true);
    await until(() => seen.some((m) => m.kind === "message.deleted"), "the delete");
    assert.deepEqual(
      seen.filter((m) => m.conversation_id === conversation.id).map((m) => [m.kind, m.version, m.body]),
      [
        ["message.created", 1, "first"],
        ["message.edited", 2, "second"],
        ["message.deleted", 3, ""],
      ],
    );
  });

  test("read moves the receipts the sender sees; delivered goes out by itself", async () => {
    const conversation = await group("alice", "bob");
    const alice = client("alice");
    const bob = client("bob");
    await Promise.all([alice.connect(), bob.connect()]);
    const sent = await alice.send(conversation.id, "read me");
    const bobId = tokens.bob.user.id;
    await until(() => (alice.receipts(conversation.id).get(bobId)?.delivered_seq ?? 0) >= sent.seq, "delivered");
    assert.equal(alice.receipts(conversation.id).get(bobId).read_seq, 0);
    const cursor = await bob.read(conversation.id, sent.seq);
    assert.equal(cursor.read_seq, sent.seq);
    await until(() => (alice.receipts(conversation.id).get(bobId)?.read_seq ?? 0) >= sent.seq, "read");
    // A new client learns them over REST.
    const late = client("alice");
    const loaded = await late.loadReceipts(conversation.id);
    assert.deepEqual(loaded.get(bobId), { user_id: bobId, delivered_seq: sent.seq, read_seq: sent.seq });
  });

  test("typing starts, is refreshed while typing goes on, and ends", async () => {
    const conversation = await group("alice", "bob");
    const alice = client("alice", { typingIdleMs: 3000 });
    const bob = client("bob");
    await Promise.all([alice.connect(), bob.connect()]);
    const shown = [];
    bob.on("typing", (id, typers) => id === conversation.id && shown.push(typers.length));
    // Keystrokes every 0.4 s for 3.5 s: longer than the server's 1.5 s typing timeout, so only the
    // refresh keeps the indicator alive.
    const started = Date.now();
    while (Date.now() - started < 3500) {
      alice.typing(conversation.id);
      await sleep(400);
    }
    assert.deepEqual(bob.typers(conversation.id), [{ user_id: tokens.alice.user.id, device_id: alice.device.id }]);
    assert.equal(shown[0], 1);
    assert.ok(!shown.includes(0), `the indicator went out while alice typed: ${shown}`);
    await until(() => bob.typers(conversation.id).length === 0, "typing to end", 5000);
  });

  test("an indicator whose stop never comes expires expires_in after its last start", async () => {
    const conversation = await group("alice", "bob");
    const bobsLine = await new Proxy(server.port).start(); // bob's own network, to silence
    try {
      const alice = client("alice", { typingIdleMs: 60000 });
      const bob = client("bob", { url: bobsLine.ws, deadAfterMs: 60000 });
      await Promise.all([alice.connect(), bob.connect()]);
      const shown = nextEvent(bob, "typing", (id, typers) => id === conversation.id && typers.length === 1);
      alice.typing(conversation.id);
      await shown;
      bobsLine.blackhole = true; // refreshes and the stop are lost on the way to bob
      const startedWaiting = Date.now();
      await until(() => bob.typers(conversation.id).length === 0, "the indicator to expire", 5000);
      const waited = Date.now() - startedWaiting;
      assert.ok(waited >= 1000 && waited <= 2500, `expired after ${waited} ms (typing_timeout 1.5 s)`);
      alice.stopTyping(conversation.id);
    } finally {
      await bobsLine.stop();
    }
  });

  test("presence of the other member, and the status set before a reconnect is set again", async () => {
    const conversation = await group("alice", "carol");
    const alice = client("alice");
    await alice.connect();
    const carol = client("carol");
    const carolId = tokens.carol.user.id;
    const online = until(() => alice.presence().get(carolId)?.status === "online", "carol online");
    await carol.connect();
    await online;
    await carol.setPresence("busy");
    await until(() => alice.presence().get(carolId)?.status === "busy", "carol busy");
    proxy.cut(); // both drop; carol comes back busy, not online
    await until(() => carol.state === "online" && alice.state === "online", "both back");
    await sleep(600);
    await until(() => alice.presence().get(carolId)?.status === "busy", "carol busy again");
    assert.ok(conversation.id);
  });
});

describe("presence snapshot", { timeout: 60000 }, () => {
  // Dave shares no conversation before this test and never connects, so no
  // live presence of his can reach alice: only the snapshot brings it.
  test("refreshPresence() loads a new contact's presence, with the automatic loads turned off", async () => {
    const alice = client("alice", { loadPresence: false });
    await alice.connect();
    await group("alice", "dave");
    const daveId = tokens.dave.user.id;
    const snapshot = await server.rest(tokens.alice.token, "GET", "presence");
    const daves = snapshot.find((p) => p.user_id === daveId);
    assert.ok(daves, "dave is a contact now");
    assert.equal(alice.presence().get(daveId), undefined);
    await alice.refreshPresence();
    assert.equal(alice.presence().get(daveId)?.status, daves.status);
  });
});

describe("reconnecting", { timeout: 60000 }, () => {
  test("sends made offline are queued; after the reconnect everything arrives once and in order", async () => {
    const conversation = await group("alice", "bob");
    const alice = client("alice");
    const bob = client("bob");
    const seen = recordMessages(bob);
    await Promise.all([alice.connect(), bob.connect()]);
    await alice.send(conversation.id, "m1");

    proxy.refuse = true;
    proxy.cut();
    await until(() => alice.state === "waiting" || alice.state === "connecting", "alice to notice");
    const queued = ["m2", "m3", "m4"].map((body) => alice.send(conversation.id, body));
    assert.deepEqual(
      alice.pendingSends().map((p) => p.body),
      ["m2", "m3", "m4"],
    );
    // Bob's side sends meanwhile over REST: he catches up on it too.
    await server.rest(tokens.bob.token, "POST", `conversations/${conversation.id}/messages`, {
      client_msg_id: `rest-${conversation.id}`,
      body: "from rest",
    });
    await sleep(200);
    proxy.refuse = false;
    const results = await Promise.all(queued);
    assert.deepEqual(
      results.map((r) => r.duplicate),
      [false, false, false],
    );
    assert.deepEqual(alice.pendingSends(), []);
    await until(() => bodies(seen, conversation.id).length === 5, "bob's five messages");
    assert.deepEqual(bodies(seen, conversation.id), ["m1", "from rest", "m2", "m3", "m4"]);
    const seqs = seen.filter((m) => m.conversation_id === conversation.id).map((m) => m.seq);
    assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b));
  });

  test("a send whose reply was lost is sent again with the same id and written once", async () => {
    const conversation = await group("alice", "bob");
    const alice = client("alice");
    const bob = client("bob");
    const seen = recordMessages(bob);
    await Promise.all([alice.connect(), bob.connect()]);
    proxy.blackhole = true; // the server gets the send and commits it; alice never hears back
    const sending = alice.send(conversation.id, "only once", { clientMsgId: `lost-reply-${conversation.id}` });
    // Until the server has committed it (read over REST, past the proxy).
    await until(
      async () =>
        JSON.stringify(
          await server.rest(tokens.alice.token, "GET", `conversations/${conversation.id}/messages?after=0`),
        ).includes("only once"),
      "the send to commit",
    );
    proxy.blackhole = false;
    proxy.cut();
    const result = await sending;
    assert.equal(result.duplicate, true, "the retry found the committed message");
    await until(() => bodies(seen, conversation.id).length === 1, "bob's message");
    await sleep(300);
    assert.deepEqual(bodies(seen, conversation.id), ["only once"]);
  });

  test("a connection that goes silent is noticed by the heartbeat and replaced", async () => {
    const alice = client("alice", { heartbeatIntervalMs: 100, deadAfterMs: 400 });
    await alice.connect();
    const disconnected = nextEvent(alice, "disconnect");
    proxy.blackhole = true;
    const [{ code }] = await disconnected;
    proxy.blackhole = false;
    assert.equal(code, 4000);
    await until(() => alice.state === "online", "alice back");
  });

  test("a server going away (4503) is reconnected to, with a sync", async () => {
    const conversation = await group("alice", "bob");
    const alice = client("alice");
    const seen = recordMessages(alice);
    await alice.connect();
    const closes = [];
    alice.on("disconnect", ({ code }) => closes.push(code));
    const oldPort = server.port;
    const { killed } = await server.terminate();
    assert.equal(killed, false, "the server exits on SIGTERM, REST requests in flight or not");
    assert.ok(closes.includes(CloseCode.GOING_AWAY), `closes: ${closes}`);
    proxy.refuse = true; // no server until the new one is up
    await server.start();
    proxy.targetPort = server.port;
    assert.notEqual(server.port, oldPort);
    await server.rest(tokens.bob.token, "POST", `conversations/${conversation.id}/messages`, {
      client_msg_id: `after-restart-${conversation.id}`,
      body: "while you were away",
    });
    proxy.refuse = false;
    await until(() => bodies(seen, conversation.id).includes("while you were away"), "the missed message", 15000);
    await until(() => alice.state === "online", "alice online");
  });
});

describe("storage", { timeout: 60000 }, () => {
  test("a reload resumes from the stored cursors and sends what was left unsent", async () => {
    const conversation = await group("alice", "bob");
    const storage = new MemoryStorage();
    const first = client("alice", { storage, storageKey: "alice" });
    const firstSeen = recordMessages(first);
    await first.connect();
    await server.rest(tokens.bob.token, "POST", `conversations/${conversation.id}/messages`, {
      client_msg_id: `before-${conversation.id}`,
      body: "before the reload",
    });
    await until(() => bodies(firstSeen, conversation.id).length === 1, "the first message");
    proxy.refuse = true;
    proxy.cut();
    await until(() => first.state !== "online", "offline");
    first.send(conversation.id, "typed offline").catch(() => {});
    first.close(); // the page goes away with the message unsent

    await server.rest(tokens.bob.token, "POST", `conversations/${conversation.id}/messages`, {
      client_msg_id: `during-${conversation.id}`,
      body: "during the reload",
    });
    proxy.refuse = false;
    const second = client("alice", { storage, storageKey: "alice" });
    const secondSeen = recordMessages(second);
    const sent = nextEvent(second, "sent");
    await second.connect();
    const [result] = await sent;
    assert.equal(result.duplicate, false);
    await until(() => bodies(secondSeen, conversation.id).length === 2, "the rest");
    assert.deepEqual(bodies(secondSeen, conversation.id), ["during the reload", "typed offline"]);
    assert.deepEqual(second.pendingSends(), []);
    assert.ok(![...storage.map.keys()].some((key) => key.includes(":outbox:")), "the outbox is empty");
  });

  test("another user's stored state is dropped, never sent", async () => {
    const conversation = await group("alice", "bob");
    const storage = new MemoryStorage();
    storage.setItem("shared:user", JSON.stringify(tokens.bob.user.id));
    storage.setItem("shared:cursors", JSON.stringify({ [conversation.id]: 0 }));
    storage.setItem(
      `shared:outbox:x-${conversation.id}`,
      JSON.stringify({ conversation_id: conversation.id, client_msg_id: `x-${conversation.id}`, body: "not alice's" }),
    );
    const alice = client("alice", { storage, storageKey: "shared" });
    alice.on("error", () => {});
    await alice.connect();
    await sleep(300);
    const page = await server.rest(tokens.alice.token, "GET", `conversations/${conversation.id}/messages`);
    assert.deepEqual(page.results, []);
    assert.equal(storage.getItem("shared:user"), String(tokens.alice.user.id));
  });
});

describe("reset", { timeout: 60000 }, () => {
  test("a conversation too far behind is reset: the client calls back and follows from last_seq", async () => {
    const conversation = await group("alice", "bob");
    const alice = client("alice");
    await alice.connect();
    // sync_max_changes is 500 by default: a cursor past the end is the quick way to a reset.
    alice.setCursor(conversation.id, 10_000);
    const reset = nextEvent(alice, "reset", ({ conversationId }) => conversationId === conversation.id);
    await alice.resync();
    const [info] = await reset;
    assert.equal(info.reason, "cursor_ahead");
    assert.equal(info.lastSeq, conversation.last_seq);
    assert.equal(alice.cursor(conversation.id), conversation.last_seq);
    const seen = recordMessages(alice);
    await server.rest(tokens.bob.token, "POST", `conversations/${conversation.id}/messages`, {
      client_msg_id: `after-reset-${conversation.id}`,
      body: "after the reset",
    });
    await until(() => bodies(seen, conversation.id).length === 1, "the next message");
  });
});
