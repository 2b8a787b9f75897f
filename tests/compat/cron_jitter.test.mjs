// Compatibility: a cron trigger's `jitter` as the official `inngest` npm SDK (4.24.0) sends it,
// against a real coordinator (docs/flow-control.md "cron jitter"): each tick's run starts at a
// random time up to `jitter` after its tick, not all at the tick.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Inngest } from 'inngest';
import { serve } from 'inngest/node';
import { getJson, listen, sleep, startCoordinator, stopAll, workDir } from './harness.mjs';

after(stopAll);

test('inngest npm SDK: a cron trigger with jitter starts each tick within the jitter', async () => {
  const coordinator = await startCoordinator(workDir());
  const base = coordinator.base;
  const inngest = new Inngest({ id: 'jitter-app', isDev: true, baseUrl: base });
  const delays = new Map();  // tick -> first call time - tick, ms
  const fn = inngest.createFunction(
    { id: 'ticker', triggers: [{ cron: '* * * * * *', jitter: '900ms' }] },
    async ({ event }) => {
      const tick = event.data.scheduledAt;
      if (!delays.has(tick)) delays.set(tick, Date.now() - Date.parse(tick));
      return tick;
    },
  );
  const handler = serve({ client: inngest, functions: [fn] });
  const { port } = await listen((req, res) => handler(req, res));
  const put = await fetch(`http://127.0.0.1:${port}/api/inngest`, { method: 'PUT' });
  assert.equal(put.status, 200, await put.text());
  const fns = await getJson(`${base}/v1/functions`);
  const ticker = fns.body.data.find((f) => f.id === 'jitter-app-ticker');
  assert.deepEqual(ticker.config.triggers, [{ cron: '* * * * * *', jitter: '900ms' }]);

  await sleep(9000);
  const sorted = [...delays.values()].sort((x, y) => x - y);
  assert.ok(sorted.length >= 6, `only ${sorted.length} ticks ran: ${sorted}`);
  assert.ok(sorted[0] >= 0, `a run started before its tick: ${sorted}`);
  // 900 ms, plus the ticker's 200 ms step and a loaded machine's scheduling.
  assert.ok(sorted[sorted.length - 1] <= 900 + 1000, `a run started past its jitter: ${sorted}`);
  // Not all at the tick: with uniform delays, all of 6 below 100 ms has odds (1/9)^6.
  assert.ok(sorted[sorted.length - 1] > 100, `no run was delayed: ${sorted}`);
});
