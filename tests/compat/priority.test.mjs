// Compatibility: `priority` as the official `inngest` npm SDK (4.24.0) sends it, against a
// real coordinator on a private PostgreSQL cluster (docs/flow-control.md "priority"): under
// `concurrency: 1`, a later run with a positive priority starts before the backlog that is
// still waiting; and the npm form of two keyed concurrency limits is accepted and held.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Inngest } from 'inngest';
import { serve } from 'inngest/node';
import { getJson, listen, sleep, startCoordinator, stopAll, waitFor, workDir } from './harness.mjs';

after(stopAll);

async function syncApp(inngest, functions) {
  const handler = serve({ client: inngest, functions });
  const { port } = await listen((req, res) => handler(req, res));
  const put = await fetch(`http://127.0.0.1:${port}/api/inngest`, { method: 'PUT' });
  assert.equal(put.status, 200, await put.text());
}

async function waitCompleted(base, ids, timeoutMs) {
  return waitFor(async () => {
    const v = await Promise.all(
      ids.map(async (id) => (await getJson(`${base}/v1/events/${id}`)).body.data));
    return v.every((e) => e.runs.length === 1 && e.runs[0].status === 'completed') ? v : null;
  }, timeoutMs);
}

test('inngest npm SDK: a high-priority run starts before the waiting backlog', async () => {
  const coordinator = await startCoordinator(workDir());
  const base = coordinator.base;
  const inngest = new Inngest({ id: 'priority-app', isDev: true, baseUrl: base });
  const started = [];  // n of each run, in the order their first call arrived
  const seen = new Set();
  // Job 0 holds the one slot until every event, the boosted one last, has been sent: the
  // order the others start in is then the claim's alone, however slowly the sends go.
  let release;
  const allSent = new Promise((resolve) => { release = resolve; });
  const fn = inngest.createFunction(
    { id: 'jobs', triggers: [{ event: 'api/job' }], concurrency: 1,
      priority: { run: 'event.data.boost' } },
    async ({ event, runId }) => {
      if (!seen.has(runId)) { seen.add(runId); started.push(event.data.n); }
      if (event.data.n === 0) await allSent;
      await sleep(50);
      return event.data.n;
    },
  );
  await syncApp(inngest, [fn]);
  const fns = await getJson(`${base}/v1/functions`);
  const jobs = fns.body.data.find((f) => f.id === 'priority-app-jobs');
  assert.deepEqual(jobs.config.priority, { run: 'event.data.boost' });

  const ids = [];
  ids.push((await inngest.send({ name: 'api/job', data: { n: 0, boost: 0 } })).ids[0]);
  await waitFor(async () => started.length === 1, 10000);
  for (let n = 1; n < 6; n++) {
    ids.push((await inngest.send({ name: 'api/job', data: { n, boost: 0 } })).ids[0]);
  }
  ids.push((await inngest.send({ name: 'api/job', data: { n: 99, boost: 600 } })).ids[0]);
  release();
  await waitCompleted(base, ids, 30000);
  assert.equal(started.length, 7);
  // The boosted run, sent last, starts first of those that waited; the backlog in its order.
  assert.deepEqual(started, [0, 99, 1, 2, 3, 4, 5]);
});

test('inngest npm SDK: two keyed concurrency limits are each held', async () => {
  const coordinator = await startCoordinator(workDir());
  const base = coordinator.base;
  const inngest = new Inngest({ id: 'keys-app', isDev: true, baseUrl: base });
  const running = { a: new Map(), b: new Map() };
  let maxA = 0;
  let maxB = 0;
  const fn = inngest.createFunction(
    { id: 'work', triggers: [{ event: 'api/work' }],
      concurrency: [{ limit: 2, key: 'event.data.a' }, { limit: 3, key: 'event.data.b' }] },
    async ({ event, step }) => step.run('work', async () => {
      const { a, b } = event.data;
      running.a.set(a, (running.a.get(a) ?? 0) + 1);
      running.b.set(b, (running.b.get(b) ?? 0) + 1);
      maxA = Math.max(maxA, running.a.get(a));
      maxB = Math.max(maxB, running.b.get(b));
      await sleep(800);
      running.a.set(a, running.a.get(a) - 1);
      running.b.set(b, running.b.get(b) - 1);
      return a + b;
    }),
  );
  await syncApp(inngest, [fn]);
  const ids = [];
  for (let i = 0; i < 12; i++) {
    const data = { a: `a${i % 3}`, b: `b${i % 2}` };
    ids.push((await inngest.send({ name: 'api/work', data })).ids[0]);
  }
  await waitCompleted(base, ids, 60000);
  assert.ok(maxA <= 2, `${maxA} steps of one event.data.a ran at once`);
  assert.ok(maxB <= 3, `${maxB} steps of one event.data.b ran at once`);
  assert.equal(maxA, 2);
  assert.equal(maxB, 3);
});
