// Compatibility: `throttle` as the official `inngest` npm SDK (4.24.0) sends it, against a
// real coordinator on a private PostgreSQL cluster (docs/flow-control.md "throttle"): the
// runs of a key start one per period / limit, in order, none dropped; keys are paced apart.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Inngest } from 'inngest';
import { serve } from 'inngest/node';
import { getJson, listen, startCoordinator, stopAll, waitFor, workDir } from './harness.mjs';

after(stopAll);

// Polling and a loaded machine can make a measured gap look this much shorter than its slot.
const EARLY_MS = 300;

test('inngest npm SDK: throttle paces the starts per key and drops none', async () => {
  const coordinator = await startCoordinator(workDir());
  const base = coordinator.base;
  const inngest = new Inngest({ id: 'throttle-app', isDev: true, baseUrl: base });
  const started = new Map();  // run id -> [user, n, first call time]
  const fn = inngest.createFunction(
    { id: 'paced', triggers: [{ event: 'api/call' }],
      throttle: { limit: 2, period: '2s', key: 'event.data.user' } },
    async ({ event, runId }) => {
      if (!started.has(runId)) started.set(runId, [event.data.user, event.data.n, Date.now()]);
      return event.data.n;
    },
  );
  const handler = serve({ client: inngest, functions: [fn] });
  const { port } = await listen((req, res) => handler(req, res));
  const put = await fetch(`http://127.0.0.1:${port}/api/inngest`, { method: 'PUT' });
  assert.equal(put.status, 200, await put.text());
  const fns = await getJson(`${base}/v1/functions`);
  const paced = fns.body.data.find((f) => f.id === 'throttle-app-paced');
  assert.equal(paced.config.throttle.limit, 2);
  assert.equal(paced.config.throttle.period, '2s');
  assert.equal(paced.config.throttle.key, 'event.data.user');

  const sends = [];
  for (let n = 0; n < 5; n++) sends.push({ user: 'a', n });
  sends.push({ user: 'b', n: 0 }, { user: 'b', n: 1 });
  // One request: the slots do not depend on how fast the sends go.
  const { ids } = await inngest.send(sends.map((data) => ({ name: 'api/call', data })));
  assert.equal(ids.length, 7);

  const views = await waitFor(async () => {
    const v = await Promise.all(
      ids.map(async (id) => (await getJson(`${base}/v1/events/${id}`)).body.data));
    return v.every((e) => e.runs.length === 1 && e.runs[0].status === 'completed') ? v : null;
  }, 30000);
  assert.equal(views.length, 7);
  for (const v of views) assert.deepEqual(v.skipped, []);  // nothing is dropped

  const of = (user) => [...started.values()].filter(([u]) => u === user);
  const a = of('a');
  const b = of('b');
  assert.equal(a.length, 5);
  assert.equal(b.length, 2);
  // In order (FIFO per key), one a second: each no earlier than its slot, i s after the first
  // (compared with the first, not the one before: a start that ran late does not move the
  // next slot).
  assert.deepEqual(a.map(([, n]) => n), [0, 1, 2, 3, 4]);
  for (let i = 1; i < a.length; i++) {
    assert.ok(a[i][2] - a[0][2] >= i * 1000 - EARLY_MS, `user a: start ${i} before its slot`);
  }
  // Key b has a pace of its own: its first run did not wait behind a's.
  assert.ok(b[0][2] - a[0][2] < 1000, `user b started ${b[0][2] - a[0][2]} ms after a`);
  assert.ok(b[1][2] - b[0][2] >= 1000 - EARLY_MS);
});
