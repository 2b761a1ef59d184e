// The JS client against a server whose per-connection rate is tight: the
// client's own requests, refused for the moment, are sent again.
// Run: node --experimental-websocket --test tests/js/   (Node 22+: no flag needed)

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { RealtimeClient } from "../../web/static/realtime/client.js";
import { Server } from "./support.mjs";

const METRICS_TOKEN = "rate-limit-test";
let server;
let client;

/** realtime_frames_refused_total from the server's /metrics. */
async function framesRefused() {
  const response = await fetch(`${server.http}/metrics`, { headers: { Authorization: `Bearer ${METRICS_TOKEN}` } });
  const line = (await response.text()).split("\n").find((l) => l.startsWith("realtime_frames_refused_total "));
  return Number(line.split(" ")[1]);
}

before(async () => {
  // One request of burst, two a second: the second of two syncs at once is refused with a hint.
  server = await new Server({
    WS_RATE_PER_CONNECTION: "2",
    WS_RATE_BURST_PER_CONNECTION: "1",
    METRICS_TOKEN: METRICS_TOKEN,
  }).start();
});

after(async () => {
  client?.close();
  await server?.stop();
});

test("a sync refused with rate_limited is sent again after the hint", { timeout: 30000 }, async () => {
  const { token } = await server.login("alice");
  client = new RealtimeClient({ url: server.ws, token, backoff: { initial: 50, max: 400 } });
  await client.connect();
  const refused = [];
  client.on("error", (error) => refused.push(error.code));
  const results = await Promise.all([client.resync(), client.resync()]);
  for (const result of results) assert.ok(result.cursors, JSON.stringify(result));
  assert.equal(client.state, "online");
  assert.deepEqual(refused, []);
});

test("sends refused for the moment are written in the order they were made", { timeout: 30000 }, async () => {
  const alice = await server.login("alice");
  const bob = await server.login("bob");
  const conversation = await server.rest(alice.token, "POST", "conversations", {
    kind: "group",
    title: "t",
    member_ids: [bob.user.id],
  });
  // What the client puts on the wire: a send must never go out while an
  // earlier one of its conversation is unanswered, or a refusal of the earlier
  // one would let the later one be written first.
  const sentBodies = [];
  class RecordingWebSocket extends WebSocket {
    send(data) {
      const frame = JSON.parse(data);
      if (frame.type === "send") sentBodies.push(frame.body);
      super.send(data);
    }
  }
  client?.close();
  client = new RealtimeClient({
    url: server.ws,
    token: alice.token,
    backoff: { initial: 50, max: 400 },
    WebSocket: RecordingWebSocket,
  });
  await client.connect();
  const refusedBefore = await framesRefused();
  const bodies = ["one", "two", "three", "four", "five"];
  const results = await Promise.all(bodies.map((body) => client.send(conversation.id, body)));
  assert.ok((await framesRefused()) > refusedBefore, "the rate limit refused some of the sends");
  const seqs = results.map((r) => r.seq);
  assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), `seqs in the order made: ${seqs}`);
  const page = await server.rest(alice.token, "GET", `conversations/${conversation.id}/messages?after=0`);
  const written = page.results.map((m) => m.body);
  assert.deepEqual(written, bodies);
  // Retries repeat a body; none goes back to an earlier one.
  const firstSent = sentBodies.map((body) => bodies.indexOf(body));
  assert.deepEqual(firstSent, [...firstSent].sort((a, b) => a - b), `sent: ${sentBodies}`);
});
