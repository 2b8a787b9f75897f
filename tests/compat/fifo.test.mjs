// The ordering promise for users of the official inngest npm SDK, as a smaller version of the
// C++ chaos test (tests/e2e/chaos_test.cc): `concurrency: {limit: 1, key}` makes each key a
// strict FIFO lane. Two coordinators share one database; three clients send 20 keys x 5
// events in a known per-key order to both; the host answers 20 % of calls with a 500 and
// stalls 5 % past the call timeout; one coordinator is killed with SIGKILL midway and
// restarted. Per key, the mutations must be applied in the order sent, each once.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Inngest } from 'inngest';
import { serve } from 'inngest/node';
import { getJson, listen, serveOn, sleep, startCoordinator, stopAll, waitFor, workDir }
  from './harness.mjs';

after(stopAll);

test('inngest npm SDK: concurrency {limit: 1, key} keeps per-key order through chaos', async () => {
  const keys = 20, perKey = 5, total = keys * perKey;
  const args = ['--retry-schedule', '20ms', '--retry-jitter', '0s', '--call-timeout', '1s',
    '--lease', '3s'];
  const work = workDir();
  const c1 = await startCoordinator(work, args);
  const c2 = await serveOn(c1.db, work, args, 'funcky-2');

  const inngest = new Inngest({ id: 'fifo-app', isDev: true, baseUrl: c1.base });
  const applied = new Map();  // key -> [seq...] in the order applied
  const seen = new Set();     // run ids applied: the third party's idempotency keys
  const fn = inngest.createFunction(
    { id: 'replicate', retries: 10, concurrency: { limit: 1, key: 'event.data.k' },
      triggers: [{ event: 'fifo/mutation' }] },
    async ({ event, step, runId }) => {
      await step.run('apply', async () => {
        if (!seen.has(runId)) {
          seen.add(runId);
          const list = applied.get(event.data.k) ?? [];
          list.push(event.data.seq);
          applied.set(event.data.k, list);
        }
        return event.data.seq;
      });
    },
  );
  const handler = serve({ client: inngest, functions: [fn] });
  let failed = 0, stalled = 0;
  const { port } = await listen(async (req, res) => {
    if (req.method === 'POST') {
      const roll = Math.random();
      if (roll < 0.2) {
        failed++;
        res.writeHead(500, { 'Content-Type': 'application/json' });
        res.end('{"error":"chaos"}');
        return;
      }
      if (roll < 0.25) {
        stalled++;
        await sleep(1500);  // past the 1 s call timeout: the coordinator retries
      }
    }
    handler(req, res);
  });
  const put = await fetch(`http://127.0.0.1:${port}/api/inngest`, { method: 'PUT' });
  assert.equal(put.status, 200, await put.text());

  // Three clients at once, to both coordinators; each owns some keys and sends their events
  // in seq order.
  const senders = [c1, c2, c1].map((c) => new Inngest({ id: 'fifo-app', isDev: true, baseUrl: c.base }));
  await Promise.all(senders.map(async (sender, client) => {
    for (let seq = 1; seq <= perKey; seq++) {
      for (let k = client; k < keys; k += 3) {
        await sender.send({ name: 'fifo/mutation', data: { k: `k${k}`, seq } });
      }
    }
  }));

  const completed = async () =>
    (await getJson(`${c1.base}/v1/runs?limit=500&status=completed`)).body.data.length;
  await waitFor(async () => (await completed()) >= total / 3, 60000);
  c2.kill9();
  const atKill = await completed();
  await sleep(1000);
  await c2.restart();

  await waitFor(async () => (await completed()) === total, 120000);
  for (let k = 0; k < keys; k++) {
    assert.deepEqual(applied.get(`k${k}`), [1, 2, 3, 4, 5], `key k${k} out of order`);
  }
  assert.ok(failed > 0 && stalled > 0, `the chaos did not happen: ${failed} failed, ${stalled} stalled`);
  console.log(`fifo: ${total} runs over ${keys} keys in order; ${failed} calls failed, ` +
    `${stalled} stalled; coordinator 2 killed at ${atKill} completed`);
});
