// Compatibility: `batchEvents` as the official `inngest` npm SDK (4.24.0) sends it, against a
// real coordinator on a private PostgreSQL cluster: events of a key are gathered into one
// run, which the SDK hands to the function as `events` (and `event`, the first).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Inngest } from 'inngest';
import { serve } from 'inngest/node';
import { chromium } from 'playwright-core';
import { getJson, listen, sleep, startCoordinator, stopAll, waitFor, workDir } from './harness.mjs';

const chromiumBin = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
after(stopAll);

test('inngest npm SDK: batchEvents runs a function once with the events of a batch', async () => {
  const coordinator = await startCoordinator(workDir());
  const base = coordinator.base;
  const ran = [];
  const inngest = new Inngest({ id: 'batch-app', isDev: true, baseUrl: base });
  const bulk = inngest.createFunction(
    { id: 'bulk', triggers: [{ event: 'log/api.call' }],
      batchEvents: { maxSize: 3, timeout: '2s', key: 'event.data.user' } },
    async ({ event, events }) => {
      ran.push({ first: event.data.n, all: events.map((e) => e.data.n) });
      return events.length;
    },
  );
  // An invocation runs alone, at once: its invoker waits for the end of its own run.
  const caller = inngest.createFunction(
    { id: 'caller', triggers: [{ event: 'test/call' }] },
    async ({ step }) => step.invoke('call', { function: bulk, data: { user: 'c', n: 99 }, timeout: '1m' }),
  );
  const handler = serve({ client: inngest, functions: [bulk, caller] });
  const { port } = await listen((req, res) => handler(req, res));
  const put = await fetch(`http://127.0.0.1:${port}/api/inngest`, { method: 'PUT' });
  assert.equal(put.status, 200, await put.text());
  const fns = await getJson(`${base}/v1/functions`);
  const synced = fns.body.data.find((f) => f.id === 'batch-app-bulk');
  assert.deepEqual(synced.config.batchEvents, { maxSize: 3, timeout: '2s', key: 'event.data.user' });

  // Three of user a fill a batch at once; two of user b wait for the timeout.
  const sent = await inngest.send([0, 1, 2].map((n) => ({ name: 'log/api.call', data: { user: 'a', n } })));
  await inngest.send([10, 11].map((n) => ({ name: 'log/api.call', data: { user: 'b', n } })));
  const runs = await waitFor(async () => {
    const r = await getJson(`${base}/v1/runs?function=batch-app-bulk`);
    return r.body.data.length === 2 && r.body.data.every((x) => x.status === 'completed')
      ? r.body.data : null;
  });
  assert.deepEqual(runs.map((r) => r.output).sort(), [2, 3]);
  await sleep(300);
  assert.deepEqual(ran.sort((x, y) => x.first - y.first),
    [{ first: 0, all: [0, 1, 2] }, { first: 10, all: [10, 11] }]);
  const full = runs.find((r) => r.output === 3);
  const one = (await getJson(`${base}/v1/runs/${full.id}`)).body.data;
  assert.deepEqual(one.event_ids, sent.ids);
  assert.deepEqual(one.events.map((e) => e.payload.data.n), [0, 1, 2]);

  // A replay of the batch's run gets all of its events.
  const replayed = await fetch(`${base}/v1/runs/${full.id}/replay`, { method: 'POST' });
  assert.equal(replayed.status, 201, await replayed.clone().text());
  const replayId = (await replayed.json()).data.id;
  await waitFor(async () => (await getJson(`${base}/v1/runs/${replayId}`)).body.data.status === 'completed');
  assert.deepEqual((await getJson(`${base}/v1/runs/${replayId}`)).body.data.event_ids, sent.ids);
  assert.deepEqual(ran.at(-1), { first: 0, all: [0, 1, 2] });

  // With a batch of user c open, an invocation for user c does not join it.
  await inngest.send({ name: 'log/api.call', data: { user: 'c', n: 50 } });
  await inngest.send({ name: 'test/call', data: {} });
  const called = await waitFor(async () => {
    const r = await getJson(`${base}/v1/runs?function=batch-app-caller`);
    return r.body.data.length === 1 && r.body.data[0].status === 'completed' ? r.body.data[0] : null;
  });
  assert.equal(called.output, 1);
  await waitFor(async () => ran.some((r) => r.first === 50));
  assert.deepEqual(ran.filter((r) => r.all.includes(50) || r.all.includes(99))
    .sort((x, y) => x.first - y.first), [{ first: 50, all: [50] }, { first: 99, all: [99] }]);

  // The dashboard's run page lists every event of the batch.
  const browser = await chromium.launch({ executablePath: chromiumBin, args: ['--no-sandbox'] });
  try {
    const page = await browser.newPage();
    await page.goto(`${base}/#/runs/${full.id}`);
    const rows = page.locator('[data-testid="run-events"] tr');
    await rows.first().waitFor();
    assert.equal(await rows.count(), 3);
    for (const id of sent.ids) {
      assert.equal(await page.locator(`[data-testid="run-events"] a[href="#/events/${id}"]`).count(), 1);
    }
  } finally {
    await browser.close();
  }
});
