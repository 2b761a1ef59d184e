// The JS client against a server whose per-connection rate is tight: the
// client's own requests, refused for the moment, are sent again.
// Run: node --experimental-websocket --test tests/js/   (Node 22+: no flag needed)

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { RealtimeClient } from "../../web/static/realtime/client.js";
import { Server } from "./support.mjs";

let server;
let client;

before(async () => {
  // One request of burst, two a second: the second of two syncs at once is refused with a hint.
  server = await new Server({ WS_RATE_PER_CONNECTION: "2", WS_RATE_BURST_PER_CONNECTION: "1" }).start();
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
