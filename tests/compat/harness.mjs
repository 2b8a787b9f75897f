// Shared pieces of the node tests: free ports, polling, a Funcky coordinator on a private
// PostgreSQL cluster, and a recording proxy. Every process started here is stopped by PID
// in `stopAll()`.
import { spawn, execFileSync } from 'node:child_process';
import { createServer as createNetServer } from 'node:net';
import { createServer, request as httpRequest } from 'node:http';
import {
  chmodSync, closeSync, constants, mkdtempSync, openSync, readFileSync, rmSync, writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const funckyBin = process.env.FUNCKY_BIN || join(repo, 'build', 'coordinator', 'funcky');
export const testHostBin =
  process.env.FUNCKY_TEST_HOST_BIN || join(repo, 'build', 'tests', 'funcky_test_host');

const children = [];
const servers = [];
const pgDirs = [];
const workDirs = [];

// A test file's work folders (clusters, logs) go when it exits with every test passed; after
// a failure they stay for its logs, and so they do with FUNCKY_KEEP_TEST_DIRS set.
process.on('exit', (code) => {
  if (code !== 0 || process.env.FUNCKY_KEEP_TEST_DIRS) return;
  for (const d of workDirs) rmSync(d, { recursive: true, force: true });
});

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export const freePort = () => new Promise((resolve) => {
  const s = createNetServer();
  s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
});

// Polls `fn` until it returns something truthy.
export async function waitFor(fn, timeoutMs = 20000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try { const v = await fn(); if (v) return v; } catch { /* not yet */ }
    if (Date.now() > end) throw new Error('timed out waiting');
    await sleep(50);
  }
}

export const getJson = async (url) => {
  const r = await fetch(url);
  return { status: r.status, body: await r.json() };
};

// Runs of the coordinator at `base`, started by events that `inngest` (an SDK client) sends:
// startRun(event) gives the id of the event's first run; runStatus(id, statuses) waits until
// the run has one of them and gives the run; runEnd(id) waits for its end.
export function runsOf(base, inngest) {
  const startRun = async (event) => {
    const sent = await inngest.send(event);
    return waitFor(async () => (await getJson(`${base}/v1/events/${sent.ids[0]}`)).body.data.runs[0]?.id);
  };
  const runStatus = (runId, statuses, timeoutMs = 20000) => waitFor(async () => {
    const r = await getJson(`${base}/v1/runs/${runId}`);
    return statuses.includes(r.body.data.status) ? r.body.data : null;
  }, timeoutMs);
  const runEnd = (runId) => runStatus(runId, ['completed', 'failed', 'cancelled']);
  return { startRun, runStatus, runEnd };
}

export function workDir() {
  const work = mkdtempSync(join(tmpdir(), 'funcky-compat-'));
  chmodSync(work, 0o755); // the postgres user must reach the cluster folder
  workDirs.push(work);
  return work;
}

export function spawnLogged(bin, args, logPath) {
  const log = openSync(logPath, 'a');
  const child = spawn(bin, args, { stdio: ['ignore', log, log] });
  children.push(child);
  return child;
}

const pgScript = join(repo, 'scripts', 'pg.sh');

// pg_ctl leaves the postmaster detached from this process: if the test process dies before
// stopAll() (ctest's timeout kills it with its process tree), the cluster would outlive it. A
// watchdog per cluster, out of that tree (started by a shell that exits at once, in a session
// of its own), reads a FIFO that only this process holds open for writing: at its end (this
// process gone) without the word "done", it stops the cluster by its PID, as stopAll() does.
function watchCluster(work, pgDir) {
  const fifo = join(work, 'pg-watchdog');
  execFileSync('mkfifo', [fifo]);
  const dog = 'read -r word < "$2"; [ "$word" = done ] || exec "$0" stop "$1"';
  spawn('bash', ['-c', `setsid bash -c '${dog}' "$0" "$1" "$2" &`, pgScript, pgDir, fifo],
        { stdio: 'ignore' });
  // Opened for writing only once the watchdog has it open for reading (until then the open
  // fails with ENXIO): so it reads from the start, whatever this process does next. A
  // watchdog that never comes fails the test here, not by a hang. (Close-on-exec, from libuv:
  // no child of this process holds it.)
  const give_up = Date.now() + 10000;
  for (;;) {
    try {
      return openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK);
    } catch (e) {
      if (e.code !== 'ENXIO' || Date.now() > give_up) {
        throw new Error(`the watchdog of ${pgDir} did not start: ${e.message}`);
      }
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);  // 10 ms
    }
  }
}

// Starts a private PostgreSQL cluster and `funcky serve` on it; resolves once /healthz answers.
export async function startCoordinator(work, extraArgs = []) {
  const pgDir = join(work, 'pg');
  pgDirs.push({ dir: pgDir, watchdog: watchCluster(work, pgDir) });
  // A port found free can be taken by another test's server before PostgreSQL binds it
  // ("Address already in use"): start again on another port.
  for (let tries = 1; ; tries++) {
    try {
      const db = execFileSync(pgScript, ['start', pgDir, String(await freePort())])
        .toString().trim();
      return serveOn(db, work, extraArgs);
    } catch (e) {
      if (tries >= 5) throw e;
    }
  }
}

// Starts another `funcky serve` on database `db`. The result can be killed with SIGKILL and
// restarted on the same port.
export async function serveOn(db, work, extraArgs = [], name = 'funcky') {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const logPath = join(work, `${name}.log`);
  let child = null;
  const start = async () => {
    child = spawnLogged(funckyBin, ['serve', '--db', db, '--port', String(port), ...extraArgs],
      logPath);
    await waitFor(async () => (await fetch(`${base}/healthz`)).ok);
  };
  await start();
  return {
    base,
    db,
    log: () => readFileSync(logPath, 'utf8'),
    pid: () => child.pid,
    kill9: () => process.kill(child.pid, 'SIGKILL'),
    restart: start,
  };
}

export function listen(handler) {
  return new Promise((resolve) => {
    const server = createServer(handler);
    servers.push(server);
    server.listen(0, '127.0.0.1', () => resolve({ server, port: server.address().port }));
  });
}

// A reverse proxy to `target` (http://host:port) that records every exchange:
// {method, url, reqBody, status, resBody}. A request for which `refuse(method, url)` gives a
// status is answered with it (an empty body) instead of being passed on.
export async function recordingProxy(target, { refuse = () => undefined } = {}) {
  const exchanges = [];
  const { port } = await listen((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const reqBody = Buffer.concat(chunks);
      const refused = refuse(req.method, req.url);
      if (refused) {
        exchanges.push({ method: req.method, url: req.url, reqBody: reqBody.toString(),
          status: refused, resBody: '' });
        res.writeHead(refused);
        res.end();
        return;
      }
      const up = httpRequest(target + req.url, { method: req.method, headers: req.headers }, (r) => {
        const out = [];
        r.on('data', (c) => out.push(c));
        r.on('end', () => {
          const resBody = Buffer.concat(out);
          exchanges.push({ method: req.method, url: req.url, reqBody: reqBody.toString(),
            status: r.statusCode, resBody: resBody.toString() });
          res.writeHead(r.statusCode, r.headers);
          res.end(resBody);
        });
      });
      up.on('error', () => { res.writeHead(502); res.end(); });
      up.end(reqBody);
    });
  });
  return { url: `http://127.0.0.1:${port}`, exchanges };
}

export function stopAll() {
  for (const s of servers) { s.closeAllConnections(); s.close(); }
  for (const c of children) { try { process.kill(c.pid, 'SIGTERM'); } catch { /* gone */ } }
  for (const { dir, watchdog } of pgDirs) {
    try {
      writeSync(watchdog, 'done\n');
      closeSync(watchdog);
    } catch { /* the watchdog is gone: the cluster is stopped below all the same */ }
    execFileSync(pgScript, ['stop', dir]);
  }
}
