// The ordering promise for users of the official inngest npm SDK: `concurrency: {limit: 1,
// key}` makes each key a strict FIFO lane on Funcky (a smaller version of the C++ chaos
// test): steps fail at random and are retried, yet per key the mutations are applied in
// the order their events were sent, each once.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Inngest } from 'inngest';
import { serve } from 'inngest/node';
import { getJson, listen, startCoordinator, stopAll, waitFor, workDir } from './harness.mjs';

after(stopAll);

test('inngest npm SDK: concurrency {limit: 1, key} keeps per-key order through retries', async () => {
  const keys = 20, perKey = 5, total = keys * perKey;
  const coordinator = await startCoordinator(workDir(), ['--retry-schedule', '20ms', '--retry-jitter', '0s']);
  const base = coordinator.base;

  const inngest = new Inngest({ id: 'fifo-app', isDev: true, baseUrl: base });
  const applied = new Map();  // key -> [seq...] in the order applied
  const idempotency = new Set();
  let failures = 0;
  const fn = inngest.createFunction(
    { id: 'replicate', retries: 10, concurrency: { limit: 1, key: 'event.data.k' },
      triggers: [{ event: 'fifo/mutation' }] },
    async ({ event, step, runId }) => {
      await step.run('apply', async () => {
        await new Promise((r) => setTimeout(r, Math.random() * 10));
        if (Math.random() < 0.2) { failures++; throw new Error('third party is down'); }
        if (!idempotency.has(runId)) {
          idempotency.add(runId);
          const list = applied.get(event.data.k) ?? [];
          list.push(event.data.seq);
          applied.set(event.data.k, list);
        }
        return event.data.seq;
      });
    },
  );
  const { port } = await listen(serve({ client: inngest, functions: [fn] }));
  const put = await fetch(`http://127.0.0.1:${port}/api/inngest`, { method: 'PUT' });
  assert.equal(put.status, 200, await put.text());

  const t0 = Date.now();
  // Three clients at once; each owns some keys and sends their events in seq order.
  await Promise.all([0, 1, 2].map(async (client) => {
    for (let seq = 1; seq <= perKey; seq++) {
      for (let k = client; k < keys; k += 3) {
        await inngest.send({ name: 'fifo/mutation', data: { k: `k${k}`, seq } });
      }
    }
  }));
  const sentMs = Date.now() - t0;

  await waitFor(async () => {
    const runs = (await getJson(`${base}/v1/runs?limit=500&status=completed`)).body.data;
    return runs.length === total;
  }, 90000);

  for (let k = 0; k < keys; k++) {
    assert.deepEqual(applied.get(`k${k}`), [1, 2, 3, 4, 5], `key k${k} out of order`);
  }
  assert.ok(failures > 0, 'no step failed, so no retry was exercised');
  console.log(`fifo: ${total} runs over ${keys} keys in order in ${Date.now() - t0} ms ` +
    `(sending took ${sentMs} ms); ${failures} step failures retried`);
});
