// Compatibility: the official `inngest` npm SDK (pinned in package.json) as a host against a
// real Funcky coordinator on a private PostgreSQL cluster. The SDK syncs through
// /fn/register and a two-step function runs to completion.
//
// Run by `make test` through CTest; FUNCKY_BIN names the coordinator binary.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { createServer as createNetServer } from 'node:net';
import { createServer } from 'node:http';
import { chmodSync, mkdtempSync, openSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Inngest } from 'inngest';
import { serve } from 'inngest/node';

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..', '..');
const funckyBin = process.env.FUNCKY_BIN || join(repo, 'build', 'coordinator', 'funcky');
const work = mkdtempSync(join(tmpdir(), 'funcky-compat-'));
chmodSync(work, 0o755); // the postgres user must reach the cluster folder
const children = [];
let pgDir = null;

const freePort = () => new Promise((resolve) => {
  const s = createNetServer();
  s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
});
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function waitFor(fn, timeoutMs = 20000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try { const v = await fn(); if (v) return v; } catch { /* not yet */ }
    if (Date.now() > end) throw new Error('timed out waiting');
    await sleep(50);
  }
}
const getJson = async (url) => { const r = await fetch(url); return { status: r.status, body: await r.json() }; };

after(async () => {
  for (const c of children) { try { process.kill(c.pid, 'SIGTERM'); } catch { /* gone */ } }
  if (pgDir) execFileSync(join(repo, 'scripts', 'pg.sh'), ['stop', pgDir]);
});

test('inngest npm SDK: sync via /fn/register and a two-step function completes', async () => {
  const pgPort = await freePort();
  pgDir = join(work, 'pg');
  const db = execFileSync(join(repo, 'scripts', 'pg.sh'), ['start', pgDir, String(pgPort)]).toString().trim();

  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const log = openSync(join(work, 'funcky.log'), 'a');
  children.push(spawn(funckyBin, ['serve', '--db', db, '--port', String(port)], { stdio: ['ignore', log, log] }));
  await waitFor(async () => (await fetch(`${base}/healthz`)).ok);

  const inngest = new Inngest({ id: 'compat-app', isDev: true, baseUrl: base });
  const calls = [];
  const fn = inngest.createFunction(
    { id: 'two-steps', triggers: [{ event: 'demo/go' }] },
    async ({ step }) => {
      const a = await step.run('first', () => 'A');
      const b = await step.run('second', () => a + 'B');
      return { b };
    },
  );
  const handler = serve({ client: inngest, functions: [fn] });
  const app = createServer((req, res) => { if (req.method === 'POST') calls.push(req.url); return handler(req, res); });
  const appPort = await freePort();
  await new Promise((r) => app.listen(appPort, '127.0.0.1', r));
  after(() => app.close());
  const appUrl = `http://127.0.0.1:${appPort}/api/inngest`;

  // Out-of-band sync: PUT to the app makes the SDK POST its functions to /fn/register.
  const put = await fetch(appUrl, { method: 'PUT' });
  assert.equal(put.status, 200, await put.text());
  const fns = await getJson(`${base}/v1/functions`);
  assert.deepEqual(fns.body.data.map((f) => f.id), ['compat-app-two-steps']);

  const sent = await inngest.send({ name: 'demo/go', data: { x: 1 } });
  assert.equal(sent.ids.length, 1);
  const runId = await waitFor(async () => {
    const ev = await getJson(`${base}/v1/events/${sent.ids[0]}`);
    return ev.body.data.runs[0]?.id;
  });
  const run = await waitFor(async () => {
    const r = await getJson(`${base}/v1/runs/${runId}`);
    return ['completed', 'failed'].includes(r.body.data.status) ? r.body.data : null;
  });
  assert.equal(run.status, 'completed', JSON.stringify(run, null, 2) + readFileSync(join(work, 'funcky.log'), 'utf8'));
  assert.deepEqual(run.output, { b: 'AB' });
  assert.deepEqual(run.steps.map((s) => [s.name, s.output]), [['first', 'A'], ['second', 'AB']]);
  assert.equal(calls.length, 3, `calls: ${calls.join(', ')}`);
  app.closeAllConnections();
});
