// Sequence lanes from the official inngest npm SDK (docs/ordering.md "Sequence lanes"). The
// SDK's getConfig copies only the top-level options it knows, so `ordering` never reaches
// the coordinator; but it passes the `concurrency` value through as it is. Funcky's lane
// options therefore ride on the lane's entry: `concurrency: {limit: 1, key, sequence,
// gap_timeout, start, stale, bypass}`. This test syncs such a function through the real SDK
// and checks what the coordinator understood (GET /v1/functions), that an event without a
// number is refused at intake, that a bypassing event gets a run outside the lane, and that
// versions 1, 3, 2 of one tenant run 1, 2, 3.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Inngest } from 'inngest';
import { serve } from 'inngest/node';
import { getJson, listen, startCoordinator, stopAll, waitFor, workDir }
  from './harness.mjs';

after(stopAll);

const lane = {
  limit: 1,
  key: 'event.data.tenant',
  sequence: 'event.data.version',
  gap_timeout: '2s',
  start: 1,
  stale: 'skip',
  bypass: 'event.data.unordered == true',
};

// "<tenant>:<version>" of each apply step, in the order the host ran them.
const applied = [];

// An app with one function on `crm/updated` whose lane is `lane`, served on a free port.
async function serveApp(base) {
  const inngest = new Inngest({ id: 'seq-app', isDev: true, baseUrl: base });
  const fn = inngest.createFunction(
    { id: 'replicate', concurrency: lane, triggers: [{ event: 'crm/updated' }] },
    async ({ event, step }) => step.run('apply', () => {
      applied.push(`${event.data.tenant}:${event.data.version ?? '-'}`);
      return event.data.version ?? null;
    }),
  );
  const handler = serve({ client: inngest, functions: [fn] });
  const { port } = await listen((req, res) => handler(req, res));
  return `http://127.0.0.1:${port}/api/inngest`;
}

const send = (base, events) => fetch(`${base}/e/any-key`, {
  method: 'POST',
  headers: { 'Content-Type': 'application/json' },
  body: JSON.stringify(events),
});

test('inngest npm SDK: a sequence lane on the concurrency entry orders by version', async () => {
  const work = workDir();
  const preview = await startCoordinator(work);

  // It syncs, and GET /v1/functions shows the lane as parsed.
  const put = await fetch(await serveApp(preview.base), { method: 'PUT' });
  assert.equal(put.status, 200, await put.text());
  const fns = (await getJson(`${preview.base}/v1/functions`)).body.data;
  assert.equal(fns.length, 1);
  const [fn] = fns;
  assert.equal(fn.id, 'seq-app-replicate');
  assert.deepEqual(fn.config.concurrency, lane, 'the SDK sent the entry as written');
  assert.deepEqual(fn.lane, {
    from: 'concurrency',
    key: 'event.data.tenant',
    head_timeout: null,
    bypass: 'event.data.unordered == true',
    sequence: {
      expression: 'event.data.version',
      gap_timeout: '2s',
      gap_timeout_ms: 2000,
      start: 1,
      stale: 'skip',
    },
  });

  // An event whose sequence expression yields no number is refused, with the whole request.
  const bad = await send(preview.base, [
    { name: 'crm/updated', data: { tenant: 't1', version: 1 } },
    { name: 'crm/updated', data: { tenant: 't1' } },
  ]);
  const badBody = await bad.json();
  assert.equal(bad.status, 400, JSON.stringify(badBody));
  assert.equal(badBody.status, 400);
  assert.equal(badBody.error,
    'event 1 ("crm/updated"): function "seq-app-replicate" cannot order it: its sequence ' +
    'number "event.data.version" is null (a missing field?)');
  assert.deepEqual((await getJson(`${preview.base}/v1/events`)).body.data, [],
    'nothing of the refused request was stored');

  // A numbered event joins its lane; a bypassing one needs no number and has no lane.
  const ok = await send(preview.base, [
    { name: 'crm/updated', data: { tenant: 't1', version: 1 } },
    { name: 'crm/updated', data: { tenant: 't1', unordered: true } },
  ]);
  const okBody = await ok.json();
  assert.equal(ok.status, 200, JSON.stringify(okBody));
  const runOf = (id) => waitFor(async () =>
    (await getJson(`${preview.base}/v1/events/${id}`)).body.data.runs[0]);
  const [ordered, bypassed] = await Promise.all(okBody.ids.map(runOf));
  assert.equal(ordered.key, 't1');
  assert.equal(bypassed.key, null);
  for (const run of [ordered, bypassed]) {
    const done = await waitFor(async () => {
      const r = (await getJson(`${preview.base}/v1/runs/${run.id}`)).body.data;
      return ['completed', 'failed'].includes(r.status) ? r : null;
    });
    assert.equal(done.status, 'completed', JSON.stringify(done) + preview.log());
  }
});

test('inngest npm SDK: versions 1, 3, 2 of a tenant run 1, 2, 3', async () => {
  const work = workDir();
  const c = await startCoordinator(work);
  const put = await fetch(await serveApp(c.base), { method: 'PUT' });
  assert.equal(put.status, 200, await put.text());
  for (const version of [1, 3, 2]) {
    const r = await send(c.base, [{ name: 'crm/updated', data: { tenant: 'v', version } }]);
    assert.equal(r.status, 200, await r.text());
  }
  await waitFor(async () => applied.filter((a) => a.startsWith('v:')).length === 3 || null);
  assert.deepEqual(applied.filter((a) => a.startsWith('v:')), ['v:1', 'v:2', 'v:3'], c.log());
});
