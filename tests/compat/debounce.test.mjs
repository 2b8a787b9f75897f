// Compatibility: `debounce` as the official `inngest` npm SDK (4.24.0) sends it, against a
// real coordinator on a private PostgreSQL cluster: a burst of events of a key runs the
// function once, with the last event, `period` after it.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Inngest } from 'inngest';
import { serve } from 'inngest/node';
import { getJson, listen, sleep, startCoordinator, stopAll, waitFor, workDir } from './harness.mjs';

after(stopAll);

test('inngest npm SDK: debounce runs once with the last event of a burst', async () => {
  const coordinator = await startCoordinator(workDir());
  const base = coordinator.base;
  const ran = [];
  const inngest = new Inngest({ id: 'debounce-app', isDev: true, baseUrl: base });
  const handler = serve({
    client: inngest,
    functions: [
      inngest.createFunction(
        { id: 'quiet', triggers: [{ event: 'doc/edited' }],
          debounce: { period: '2s', key: 'event.data.doc', timeout: '1m' } },
        async ({ event }) => { ran.push([event.data.doc, event.data.n]); return event.data.n; },
      ),
    ],
  });
  const { port } = await listen((req, res) => handler(req, res));
  const put = await fetch(`http://127.0.0.1:${port}/api/inngest`, { method: 'PUT' });
  assert.equal(put.status, 200, await put.text());
  const fns = await getJson(`${base}/v1/functions`);
  const quiet = fns.body.data.find((f) => f.id === 'debounce-app-quiet');
  assert.deepEqual(quiet.config.debounce, { period: '2s', key: 'event.data.doc', timeout: '1m' });

  const ids = [];
  for (let n = 0; n < 3; n++) {
    if (n > 0) await sleep(700);
    ids.push((await inngest.send({ name: 'doc/edited', data: { doc: 'd', n } })).ids[0]);
  }
  await sleep(1000);
  assert.deepEqual(ran, []);  // 1 s after the last event: still debouncing
  const runs = await waitFor(async () => {
    const r = await getJson(`${base}/v1/runs?function=debounce-app-quiet`);
    return r.body.data.length === 1 && r.body.data[0].status === 'completed' ? r.body.data : null;
  });
  assert.equal(runs[0].event_id, ids[2]);
  assert.equal(runs[0].output, 2);
  await sleep(500);  // nothing more runs late
  assert.deepEqual(ran, [['d', 2]]);
  const first = (await getJson(`${base}/v1/events/${ids[0]}`)).body.data;
  assert.deepEqual(first.skipped.map((s) => [s.function_id, s.reason, s.key]),
    [['debounce-app-quiet', 'debounce', 'd']]);
});
