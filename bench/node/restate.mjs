// The Restate peer, started and stopped here: restate-server (pinned in bench/package.json, its
// durability as shipped: every log write batch fsynced), the service of restate_service.mjs,
// registration, then
//   throughput: RUNS invocations of lane/{k}/apply over RUNS/10 keys, sent with /send (202 once
//     the invocation is in the log), 16 in flight, timed from the first send until Restate
//     reports none of them still pending (its own sys_invocation table);
//   idle: IDLE request -> result calls, one at a time.
// Prints one JSON line, with the server's peak RSS. Every process is stopped by its PID.
//
// side_by_side.py runs this in a private network namespace: restate-server asks a public
// release API for updates at start, and there no packet of that can leave the machine.
//
//   node restate.mjs RUNS IDLE
import { spawn } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nowMs, percentiles, sleep } from './stats.mjs';

const RUNS = Number(process.argv[2]), IDLE = Number(process.argv[3]);
const KEYS = Math.max(1, Math.floor(RUNS / 10)), IN_FLIGHT = 16, WARMUP = 20;
const here = fileURLToPath(new URL('.', import.meta.url));
const serverBin = join(here, '..', 'node_modules', '@restatedev', 'restate-server-linux-x64', 'bin',
  'restate-server');

const freePort = () => new Promise((resolve) => {
  const s = createServer();
  s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
});

const agent = new http.Agent({ keepAlive: true, maxSockets: IN_FLIGHT + 2 });
function request(method, url, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = http.request(url, {
      method, agent,
      headers: data ? { 'content-type': 'application/json', 'content-length': data.length, ...headers } : headers,
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(30_000, () => req.destroy(new Error(`timeout: ${method} ${url}`)));
    req.end(data);
  });
}
async function waitOk(url, seconds) {
  const end = Date.now() + seconds * 1000;
  for (;;) {
    try { if ((await request('GET', url)).status === 200) return; } catch { /* not yet */ }
    if (Date.now() > end) throw new Error(`no answer from ${url}`);
    await sleep(100);
  }
}

const base = mkdtempSync(join(tmpdir(), 'funcky-bench-restate-'));
const children = [];
function start(bin, args, log) {
  const fd = openSync(join(base, log), 'a');
  const child = spawn(bin, args, { stdio: ['ignore', fd, fd] });
  children.push(child);
  return child;
}
async function stopAll() {
  for (const child of children.reverse()) {
    if (child.exitCode !== null || child.signalCode !== null) continue;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    process.kill(child.pid, 'SIGTERM');
    if (await Promise.race([exited.then(() => true), sleep(10_000).then(() => false)]) === false) {
      process.kill(child.pid, 'SIGKILL');
    }
  }
}
process.on('SIGTERM', async () => { await stopAll(); rmSync(base, { recursive: true, force: true }); process.exit(143); });
const peakRssMb = (pid) =>
  Math.round(Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024);

async function pending(admin) {
  const r = await request('POST', `${admin}/query`, {
    query: "SELECT count(*) AS n FROM sys_invocation WHERE target_service_name = 'lane' AND status <> 'completed'",
  }, { accept: 'application/json' });
  if (r.status !== 200) throw new Error(`admin query: HTTP ${r.status} ${r.body.slice(0, 200)}`);
  return Number(JSON.parse(r.body).rows[0].n);
}

async function main() {
  const [ingressPort, adminPort, fabricPort, servicePort, statsPort] =
    await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort()]);
  const config = join(base, 'restate.toml');
  writeFileSync(config, [
    'node-name = "bench"', 'cluster-name = "funcky-bench"', `base-dir = "${join(base, 'data')}"`,
    'bind-ip = "127.0.0.1"', `bind-port = ${fabricPort}`, 'listen-mode = "tcp"',
    'disable-telemetry = true', 'auto-provision = true',
    '[ingress]', `bind-port = ${ingressPort}`, '[admin]', `bind-port = ${adminPort}`, ''].join('\n'));
  const server = start(serverBin, ['--config-file', config, '--no-logo', '--log-disable-ansi-codes', 'true'],
    'restate.log');
  const service = start(process.execPath, [join(here, 'restate_service.mjs'), String(servicePort),
    String(statsPort)], 'service.log');
  const ingress = `http://127.0.0.1:${ingressPort}`, admin = `http://127.0.0.1:${adminPort}`;
  const stats = `http://127.0.0.1:${statsPort}`;
  await waitOk(`${admin}/health`, 60);
  await waitOk(`${ingress}/restate/health`, 60);
  await waitOk(`${stats}/stats`, 20);
  const reg = await request('POST', `${admin}/deployments`, { uri: `http://127.0.0.1:${servicePort}` });
  if (reg.status !== 200 && reg.status !== 201) throw new Error(`registration: HTTP ${reg.status} ${reg.body}`);

  const call = async (key) => {
    for (let attempt = 0; ; attempt++) { // the new schema takes a moment to reach the ingress
      const r = await request('POST', `${ingress}/lane/${key}/apply`, {});
      if (r.status === 200) return;
      if (attempt === 50) throw new Error(`call: HTTP ${r.status} ${r.body.slice(0, 200)}`);
      await sleep(100);
    }
  };
  for (let i = 0; i < WARMUP; i++) await call(`warm-${i % 4}`);
  await request('GET', `${stats}/reset`);

  let next = 0;
  const t0 = nowMs();
  await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
    for (let i = next++; i < RUNS; i = next++) {
      const r = await request('POST', `${ingress}/lane/k${i % KEYS}/apply/send`, {});
      if (r.status !== 202 && r.status !== 200) throw new Error(`send: HTTP ${r.status} ${r.body.slice(0, 200)}`);
    }
  }));
  const deadline = Date.now() + 600_000;
  let st;
  while ((st = JSON.parse((await request('GET', `${stats}/stats`)).body)).done < RUNS) {
    if (Date.now() > deadline) throw new Error(`only ${st.done} of ${RUNS} invocations ran`);
    await sleep(10);
  }
  while (await pending(admin) > 0) {
    if (Date.now() > deadline) throw new Error('invocations still pending in Restate');
    await sleep(10);
  }
  const tCompleted = nowMs();

  const lat = [];
  for (let i = 0; i < WARMUP + IDLE; i++) {
    const t = nowMs();
    await call(`idle-${i % 10}`);
    if (i >= WARMUP) lat.push(nowMs() - t);
  }
  const out = {
    version: JSON.parse(readFileSync(join(here, '..', 'node_modules', '@restatedev', 'restate-server',
      'package.json'))).version,
    runs: RUNS, keys: KEYS, in_flight: IN_FLIGHT,
    runs_per_s: Math.round(RUNS / ((tCompleted - t0) / 1000)),
    runs_per_s_handler_end: Math.round(RUNS / ((st.lastAt - t0) / 1000)),
    idle_request_to_result_ms: percentiles(lat),
    server_peak_rss_mb: peakRssMb(server.pid), service_peak_rss_mb: peakRssMb(service.pid),
  };
  console.log(JSON.stringify(out));
}

try {
  await main();
} finally {
  agent.destroy();
  await stopAll();
  rmSync(base, { recursive: true, force: true });
}
