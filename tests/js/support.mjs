// Support for the JS client's tests: a real Daphne server on a fresh SQLite
// database (the in-memory channel layer, one process), a TCP proxy in front of
// it that a test can cut or black-hole to play a network failure, REST log-ins,
// and small waiting helpers.
//
// Python: $PYTHON, else .venv/bin/python, else python3.

import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, copyFileSync, openSync, readFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
export const PASSWORD = "correct horse battery staple";

if (typeof globalThis.WebSocket !== "function") {
  throw new Error("No global WebSocket: run the tests with node --experimental-websocket (Node 20) or Node 22+.");
}

function python() {
  if (process.env.PYTHON) return process.env.PYTHON;
  const venv = path.join(ROOT, ".venv", "bin", "python");
  return existsSync(venv) ? venv : "python3";
}

// Short timings, so expiries and coalescing are quick to watch.
const SERVER_ENV = {
  TYPING_TIMEOUT: "1.5",
  RECEIPT_COALESCE_SECONDS: "0.1",
  PRESENCE_COALESCE_SECONDS: "0.2",
  WS_RECONCILE_SECONDS: "0.5",
  WS_SHUTDOWN_GRACE_SECONDS: "1",
  LOGIN_RATE_PER_ADDRESS: "10000/min",
  LOGIN_RATE_PER_USERNAME: "10000/min",
  LOG_LEVEL: "WARNING",
};

function djangoEnv(databaseUrl, extra = {}) {
  const env = { ...process.env };
  delete env.REDIS_URL;
  delete env.REDIS_SENTINELS;
  return {
    ...env,
    DJANGO_SETTINGS_MODULE: "realtime_sync.test_settings",
    DATABASE_URL: databaseUrl,
    ...SERVER_ENV,
    ...extra,
  };
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on("error", reject);
  });
}

async function waitForPort(port, child, logPath, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`server exited early:\n${readFileSync(logPath, "utf8")}`);
    const ok = await new Promise((resolve) => {
      const socket = net.connect(port, "127.0.0.1");
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`server did not listen in time:\n${readFileSync(logPath, "utf8")}`);
}

// Every server's log, printed when a test of this process failed: the logs
// live in the temporary directory, which is removed at exit.
const serverLogs = new Set();

const ACCESS_LOG_LINE = /^\S+ - - \[/;

function printServerLogs(lines = 200) {
  for (const logPath of serverLogs) {
    if (!existsSync(logPath)) continue;
    const kept = readFileSync(logPath, "utf8")
      .split("\n")
      .filter((line) => !ACCESS_LOG_LINE.test(line));
    const tail = kept.slice(-lines).join("\n");
    process.stderr.write(`\n--- server log ${path.basename(logPath)}, without access lines (last ${lines}) ---\n${tail}\n`);
  }
}

// One migrated database per test process, copied for each server.
let template = null;

function migratedTemplate() {
  if (template) return template;
  const dir = mkdtempSync(path.join(tmpdir(), "realtime-js-"));
  const file = path.join(dir, "template.sqlite3");
  const run = (args, input) => {
    const result = spawnSync(python(), ["manage.py", ...args], {
      cwd: ROOT,
      env: djangoEnv(`sqlite:///${file}`),
      input,
      encoding: "utf8",
    });
    if (result.status !== 0) throw new Error(`manage.py ${args.join(" ")} failed:\n${result.stdout}\n${result.stderr}`);
  };
  run(["migrate", "--noinput"]);
  for (const name of ["alice", "bob", "carol", "dave"]) run(["createuser", name, "--password-stdin"], `${PASSWORD}\n`);
  process.on("exit", () => {
    if (process.exitCode) printServerLogs();
    rmSync(dir, { recursive: true, force: true });
  });
  template = { dir, file };
  return template;
}

/** A Daphne process of the project on a fresh copy of the migrated database (users alice, bob, carol, dave). */
export class Server {
  constructor(env = {}) {
    this.env = env;
    this.child = null;
  }

  async start() {
    const { dir, file } = migratedTemplate();
    if (!this.db) {
      this.db = path.join(dir, `db-${process.pid}-${Math.random().toString(36).slice(2)}.sqlite3`);
      copyFileSync(file, this.db);
    }
    this.port = await freePort();
    this.logPath = `${this.db}.log`;
    serverLogs.add(this.logPath);
    const log = openSync(this.logPath, "a");
    this.child = spawn(
      python(),
      ["-m", "daphne", "-b", "127.0.0.1", "-p", String(this.port), "realtime_sync.asgi:application"],
      { cwd: ROOT, env: djangoEnv(`sqlite:///${this.db}?timeout=20&transaction_mode=IMMEDIATE`, this.env), stdio: ["ignore", log, log] },
    );
    await waitForPort(this.port, this.child, this.logPath);
    return this;
  }

  get http() {
    return `http://127.0.0.1:${this.port}`;
  }

  get ws() {
    return `ws://127.0.0.1:${this.port}/ws/v1/`;
  }

  /**
   * SIGTERM: the server closes every connection with 4503 and exits. A process
   * still there after `graceMs` is killed; `{killed: true}` says so.
   */
  async terminate(graceMs = 8000) {
    const exited = new Promise((resolve) => this.child.once("exit", resolve));
    this.child.kill("SIGTERM");
    let killed = false;
    const timer = setTimeout(() => {
      killed = true;
      this.child.kill("SIGKILL");
    }, graceMs);
    await exited;
    clearTimeout(timer);
    return { killed };
  }

  /** A new process on the same database (and a new port). */
  async restart() {
    if (this.child && this.child.exitCode === null) await this.terminate();
    return this.start();
  }

  /**
   * Kill the process, after it has written every thread's stack to its log
   * (SIGUSR1, realtime_sync/test_settings.py): printed if a test failed, it
   * shows where a server that stopped answering was stuck.
   */
  async stop() {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((resolve) => this.child.once("exit", resolve));
      const logged = this.log().length;
      this.child.kill("SIGUSR1");
      await until(() => /Thread 0x/.test(this.log().slice(logged)), "the stack dump", 2000).catch(() => {});
      this.child.kill("SIGKILL");
      await exited;
    }
  }

  log() {
    return existsSync(this.logPath) ? readFileSync(this.logPath, "utf8") : "";
  }

  /** POST /api/v1/auth/login: a new device; returns {token, user, device}. */
  async login(username, deviceName = "node test") {
    const response = await fetch(`${this.http}/api/v1/auth/login`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username, password: PASSWORD, device_name: deviceName }),
    });
    if (response.status !== 201) throw new Error(`login ${username}: ${response.status} ${await response.text()}`);
    return response.json();
  }

  /** A REST call with a token. */
  async rest(token, method, urlPath, body) {
    const response = await fetch(`${this.http}/api/v1/${urlPath}`, {
      method,
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`${method} ${urlPath}: ${response.status} ${text}`);
    return text ? JSON.parse(text) : null;
  }
}

/**
 * A TCP proxy to a server: `cut()` drops every connection (the client sees
 * 1006), `refuse` turns new connections away, `blackhole` swallows what the
 * server sends (the client hears nothing while the server works on).
 */
export class Proxy {
  constructor(targetPort) {
    this.targetPort = targetPort;
    this.refuse = false;
    this.blackhole = false;
    this.pairs = new Set();
  }

  async start() {
    this.server = net.createServer((client) => {
      if (this.refuse) {
        client.destroy();
        return;
      }
      const upstream = net.connect(this.targetPort, "127.0.0.1");
      const pair = { client, upstream };
      this.pairs.add(pair);
      client.on("data", (data) => upstream.write(data));
      upstream.on("data", (data) => {
        if (!this.blackhole) client.write(data);
      });
      const end = () => {
        this.pairs.delete(pair);
        client.destroy();
        upstream.destroy();
      };
      client.on("close", end);
      upstream.on("close", end);
      client.on("error", end);
      upstream.on("error", end);
    });
    await new Promise((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.port = this.server.address().port;
    return this;
  }

  get ws() {
    return `ws://127.0.0.1:${this.port}/ws/v1/`;
  }

  get http() {
    return `http://127.0.0.1:${this.port}`;
  }

  cut() {
    for (const { client, upstream } of this.pairs) {
      client.destroy();
      upstream.destroy();
    }
    this.pairs.clear();
  }

  async stop() {
    this.cut();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

/** A Storage (the localStorage API) kept in memory: give the same one to a second client to play a page reload. */
export class MemoryStorage {
  constructor() {
    this.map = new Map();
  }
  get length() {
    return this.map.size;
  }
  key(i) {
    return [...this.map.keys()][i] ?? null;
  }
  getItem(key) {
    return this.map.has(key) ? this.map.get(key) : null;
  }
  setItem(key, value) {
    this.map.set(key, String(value));
  }
  removeItem(key) {
    this.map.delete(key);
  }
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Wait until `predicate()` is true (polling), or fail with `what`. */
export async function until(predicate, what = "condition", timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await predicate()) return;
    await sleep(20);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** The next `name` event of a client whose arguments satisfy `predicate`. */
export function nextEvent(client, name, predicate = () => true, timeoutMs = 10000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`timed out waiting for ${name}`));
    }, timeoutMs);
    const off = client.on(name, (...args) => {
      if (!predicate(...args)) return;
      clearTimeout(timer);
      off();
      resolve(args);
    });
  });
}

/** Records a client's message events: ids/bodies in arrival order. */
export function recordMessages(client) {
  const seen = [];
  client.on("message", (message, frame) => seen.push({ kind: frame.kind, seq: frame.seq, ...message }));
  return seen;
}
