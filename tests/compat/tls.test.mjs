// Compatibility over HTTPS: the official `inngest` npm SDK serves its functions from a Node
// https server with a certificate from a CA made here with the openssl CLI. The coordinator
// trusts that CA through --host-ca, syncs the app and completes a two-step run over TLS;
// without the CA every call fails certificate verification and nothing reaches the host.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createServer, request } from 'node:https';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Inngest } from 'inngest';
import { serve } from 'inngest/node';
import { getJson, startCoordinator, stopAll, waitFor, workDir } from './harness.mjs';

after(stopAll);

let work;
before(() => {
  work = workDir();
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const openssl = (args) => execFileSync('openssl', args, { cwd: work, stdio: 'ignore' });
  openssl(['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2',
    '-subj', '/CN=Funcky Compat CA']);
  writeFileSync(join(work, 'host.ext'), 'subjectAltName=IP:127.0.0.1\n');
  openssl(['req', ...ec, '-keyout', 'host.key', '-out', 'host.csr', '-subj', '/CN=host']);
  openssl(['x509', '-req', '-in', 'host.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key',
    '-CAcreateserial', '-days', '2', '-out', 'host.pem', '-extfile', 'host.ext']);
});

// An https server for the SDK's `serve` handler of `inngest`; the SDK is told its own
// https:// URL (serveHost) once the port is known. Resolves with the URL and the calls seen.
function httpsHost(inngest, functions) {
  const calls = [];
  let handler = null;
  const server = createServer(
    { key: readFileSync(join(work, 'host.key')), cert: readFileSync(join(work, 'host.pem')) },
    (req, res) => {
      if (req.method === 'POST') calls.push(req.url);
      return handler(req, res);
    });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const origin = `https://127.0.0.1:${server.address().port}`;
      handler = serve({ client: inngest, functions, serveHost: origin, servePath: '/api/inngest' });
      resolve({
        url: `${origin}/api/inngest`,
        calls,
        close: () => { server.closeAllConnections(); server.close(); },
      });
    });
  });
}

// PUT to the app over TLS (trusting the test CA): the SDK then registers with the coordinator.
function put(url) {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'PUT', ca: readFileSync(join(work, 'ca.pem')) }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('error', reject);
    req.end();
  });
}

function twoSteps(inngest) {
  return inngest.createFunction(
    { id: 'two-steps', triggers: [{ event: 'demo/tls' }] },
    async ({ step }) => {
      const a = await step.run('first', () => 'A');
      const b = await step.run('second', () => a + 'B');
      return { b };
    },
  );
}

async function runOf(base, eventId) {
  return waitFor(async () => {
    const ev = await getJson(`${base}/v1/events/${eventId}`);
    return ev.body.data.runs[0]?.id;
  });
}

test('inngest npm SDK behind HTTPS: syncs and completes a two-step run with --host-ca', async () => {
  const coordinator = await startCoordinator(work, ['--host-ca', join(work, 'ca.pem')]);
  const base = coordinator.base;
  const inngest = new Inngest({ id: 'tls-app', isDev: true, baseUrl: base });
  const host = await httpsHost(inngest, [twoSteps(inngest)]);

  assert.equal(await put(host.url), 200);
  const fns = await getJson(`${base}/v1/functions`);
  assert.deepEqual(fns.body.data.map((f) => f.id), ['tls-app-two-steps']);
  assert.ok(fns.body.data[0].app.url.startsWith('https://127.0.0.1:'), fns.body.data[0].app.url);

  const sent = await inngest.send({ name: 'demo/tls', data: {} });
  const runId = await runOf(base, sent.ids[0]);
  const run = await waitFor(async () => {
    const r = await getJson(`${base}/v1/runs/${runId}`);
    return ['completed', 'failed'].includes(r.body.data.status) ? r.body.data : null;
  });
  assert.equal(run.status, 'completed', JSON.stringify(run, null, 2) + coordinator.log());
  assert.deepEqual(run.output, { b: 'AB' });
  // One call: the SDK ran both steps in it, checkpointing each (over plain HTTP to the
  // coordinator, its API base URL).
  assert.equal(host.calls.length, 1, `calls: ${host.calls.join(', ')}`);
  host.close();
});

test('without the CA the coordinator refuses the host certificate and retries', async () => {
  const coordinator = await startCoordinator(workDir());
  const base = coordinator.base;
  const inngest = new Inngest({ id: 'untrusted-app', isDev: true, baseUrl: base });
  const host = await httpsHost(inngest, [twoSteps(inngest)]);
  assert.equal(await put(host.url), 200);
  const sent = await inngest.send({ name: 'demo/tls', data: {} });
  const runId = await runOf(base, sent.ids[0]);
  const error = await waitFor(async () => {
    const r = await getJson(`${base}/v1/runs/${runId}`);
    return r.body.data.steps.find((s) => s.status === 'retrying')?.error?.message;
  });
  assert.match(error, /certificate verify failed/);
  assert.equal(host.calls.length, 0, 'nothing may reach the host unverified');
  host.close();
});
