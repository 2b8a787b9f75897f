// Compatibility: flow-control admission gates as the official `inngest` npm SDK (4.24.0)
// sends them — idempotency, rateLimit and singleton — against a real coordinator on a
// private PostgreSQL cluster. A skipped event is stored and says why on GET /v1/events/{id}.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Inngest } from 'inngest';
import { serve } from 'inngest/node';
import { getJson, listen, sleep, startCoordinator, stopAll, waitFor, workDir } from './harness.mjs';

after(stopAll);

// Serves `functions` of a fresh client and syncs them; returns the client.
async function syncApp(base, id, makeFunctions) {
  const inngest = new Inngest({ id, isDev: true, baseUrl: base });
  const handler = serve({ client: inngest, functions: makeFunctions(inngest) });
  const { port } = await listen((req, res) => handler(req, res));
  const put = await fetch(`http://127.0.0.1:${port}/api/inngest`, { method: 'PUT' });
  assert.equal(put.status, 200, await put.text());
  return inngest;
}

const eventView = async (base, id) => (await getJson(`${base}/v1/events/${id}`)).body.data;

test('inngest npm SDK: idempotency and rateLimit start one run per key and record the skips',
  async () => {
    const coordinator = await startCoordinator(workDir());
    const base = coordinator.base;
    const ran = [];
    const inngest = await syncApp(base, 'flow-app', (client) => [
      client.createFunction(
        { id: 'once', triggers: [{ event: 'shop/order' }], idempotency: 'event.data.order' },
        async ({ event }) => { ran.push(['once', event.data.order]); return 'charged'; },
      ),
      client.createFunction(
        { id: 'paced', triggers: [{ event: 'shop/order' }],
          rateLimit: { limit: 2, period: '1m', key: 'event.data.user' } },
        async ({ event }) => { ran.push(['paced', event.data.user]); return 'ok'; },
      ),
    ]);
    const fns = await getJson(`${base}/v1/functions`);
    const once = fns.body.data.find((f) => f.id === 'flow-app-once');
    assert.equal(once.config.idempotency, 'event.data.order');

    const sends = [
      { order: 'o-1', user: 'a' }, { order: 'o-1', user: 'a' }, { order: 'o-2', user: 'a' },
      { order: 'o-1', user: 'b' },
    ];
    const ids = [];
    for (const data of sends) ids.push((await inngest.send({ name: 'shop/order', data })).ids[0]);

    // once: o-1 and o-2 (events 0 and 2); paced: a twice (events 0, 1), then b (event 3).
    const views = await waitFor(async () => {
      const v = await Promise.all(ids.map((id) => eventView(base, id)));
      const done = v.every((e) => e.runs.every((r) => r.status === 'completed'));
      return done && v.reduce((n, e) => n + e.runs.length, 0) === 5 ? v : null;
    });
    const fnsOf = (e) => e.runs.map((r) => r.function_id).sort();
    assert.deepEqual(fnsOf(views[0]), ['flow-app-once', 'flow-app-paced']);
    assert.deepEqual(fnsOf(views[1]), ['flow-app-paced']);
    assert.deepEqual(fnsOf(views[2]), ['flow-app-once']);
    assert.deepEqual(fnsOf(views[3]), ['flow-app-paced']);
    const skipsOf = (e) => e.skipped.map((s) => [s.function_id, s.reason, s.key]);
    assert.deepEqual(skipsOf(views[0]), []);
    assert.deepEqual(skipsOf(views[1]), [['flow-app-once', 'idempotency', 'o-1']]);
    assert.deepEqual(skipsOf(views[2]), [['flow-app-paced', 'rate_limit', 'a']]);
    assert.deepEqual(skipsOf(views[3]), [['flow-app-once', 'idempotency', 'o-1']]);
    await sleep(300);  // nothing more runs late
    assert.deepEqual(ran.filter(([f]) => f === 'once').map(([, k]) => k).sort(), ['o-1', 'o-2']);
    assert.equal(ran.filter(([f]) => f === 'paced').length, 3);
  });

test('inngest npm SDK: singleton skip drops an event while its key runs; cancel replaces the run',
  async () => {
    const coordinator = await startCoordinator(workDir());
    const base = coordinator.base;
    const inngest = await syncApp(base, 'single-app', (client) => [
      client.createFunction(
        { id: 'skip', triggers: [{ event: 'acct/sync' }],
          singleton: { mode: 'skip', key: 'event.data.acct' } },
        async ({ step }) => { await step.sleep('hold', '2s'); return 'synced'; },
      ),
      client.createFunction(
        { id: 'latest', triggers: [{ event: 'acct/sync' }],
          singleton: { mode: 'cancel', key: 'event.data.acct' } },
        async ({ step }) => { await step.sleep('hold', '2s'); return 'latest'; },
      ),
    ]);
    const send = async (acct) => (await inngest.send({ name: 'acct/sync', data: { acct } })).ids[0];
    const runOf = async (eventId, fn) =>
      (await eventView(base, eventId)).runs.find((r) => r.function_id === fn);

    const first = await send('a');
    const firstRuns = await waitFor(async () => {
      const v = await eventView(base, first);
      return v.runs.length === 2 && v.runs.every((r) => r.status === 'sleeping') ? v.runs : null;
    });
    const second = await send('a');
    const other = await send('b');
    const secondView = await waitFor(async () => {
      const v = await eventView(base, second);
      return v.runs.length === 1 ? v : null;
    });
    // skip: the key is busy, so the second event starts no run of it.
    assert.deepEqual(secondView.skipped.map((s) => [s.function_id, s.reason, s.key]),
      [['single-app-skip', 'singleton', 'a']]);
    // cancel: the second event's run replaces the first one's.
    assert.equal(secondView.runs[0].function_id, 'single-app-latest');
    const cancelledId = firstRuns.find((r) => r.function_id === 'single-app-latest').id;
    const cancelled = await waitFor(async () => {
      const r = (await getJson(`${base}/v1/runs/${cancelledId}`)).body.data;
      return r.status === 'cancelled' ? r : null;
    });
    assert.match(cancelled.error.message, /singleton/);
    // With its inngest/function.cancelled, like any cancellation.
    await waitFor(async () => {
      const evs = (await getJson(`${base}/v1/events?name=inngest/function.cancelled`)).body.data;
      return evs.some((e) => e.payload?.data?.run_id === cancelledId);
    });
    // Another key is not held back by either mode.
    const otherView = await waitFor(async () => {
      const v = await eventView(base, other);
      return v.runs.length === 2 ? v : null;
    });
    assert.deepEqual(otherView.skipped, []);
    // Once the key's run ended, skip admits the key again.
    const skipRun = firstRuns.find((r) => r.function_id === 'single-app-skip').id;
    await waitFor(async () =>
      (await getJson(`${base}/v1/runs/${skipRun}`)).body.data.status === 'completed', 20000);
    const third = await send('a');
    const thirdRun = await waitFor(async () => runOf(third, 'single-app-skip'));
    assert.ok(thirdRun.id);
  });

test('inngest npm SDK: timeouts cancel a run not finished, or not started, in time', async () => {
  const coordinator = await startCoordinator(workDir());
  const base = coordinator.base;
  const inngest = await syncApp(base, 'deadline-app', (client) => [
    client.createFunction(
      { id: 'slow', triggers: [{ event: 'job/slow' }], timeouts: { finish: '1s' } },
      async ({ step }) => { await step.sleep('hold', '5s'); return 'late'; },
    ),
    // concurrency 1 holds the second run's first call back while the first one's step works.
    client.createFunction(
      { id: 'busy', triggers: [{ event: 'job/busy' }], concurrency: 1, timeouts: { start: '1s' } },
      async ({ step }) => { await step.run('work', () => sleep(3000)); return 'done'; },
    ),
  ]);
  const fns = await getJson(`${base}/v1/functions`);
  assert.deepEqual(fns.body.data.find((f) => f.id === 'deadline-app-slow').config.timeouts,
    { finish: '1s' });
  const runOfEvent = async (id) => waitFor(async () => (await eventView(base, id)).runs[0]?.id);
  const slow = await runOfEvent((await inngest.send({ name: 'job/slow', data: {} })).ids[0]);
  const busy1 = await runOfEvent((await inngest.send({ name: 'job/busy', data: { n: 1 } })).ids[0]);
  await sleep(200);  // the first run's call is in flight
  const busy2 = await runOfEvent((await inngest.send({ name: 'job/busy', data: { n: 2 } })).ids[0]);
  const ended = async (id) => waitFor(async () => {
    const r = (await getJson(`${base}/v1/runs/${id}`)).body.data;
    return ['completed', 'failed', 'cancelled'].includes(r.status) ? r : null;
  }, 20000);
  const slowRun = await ended(slow);
  assert.equal(slowRun.status, 'cancelled', JSON.stringify(slowRun));
  assert.equal(slowRun.error.name, 'Timeout');
  assert.match(slowRun.error.message, /timeouts.finish/);
  const late = await ended(busy2);
  assert.equal(late.status, 'cancelled', JSON.stringify(late));
  assert.match(late.error.message, /timeouts.start/);
  assert.equal(late.started_at, null);
  assert.equal((await ended(busy1)).status, 'completed');
  // Each with its inngest/function.cancelled.
  await waitFor(async () => {
    const evs = (await getJson(`${base}/v1/events?name=inngest/function.cancelled`)).body.data;
    const ids = evs.map((e) => e.payload?.data?.run_id);
    return ids.includes(slow) && ids.includes(busy2);
  });
});
