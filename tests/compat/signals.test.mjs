// step.waitForSignal and the signals API with the official `inngest` npm SDK (pinned in
// package.json) as the host: a run waits for a signal by name; inngest.sendSignal (POST
// /v1/signals) or a step.sendSignal of another run resumes it with {signal, data}; a wait
// times out with null; onConflict "fail" and "replace". One coordinator on a private
// PostgreSQL cluster; every assertion reads the coordinator's API.
//
// Run by `make test` through CTest; FUNCKY_BIN names the coordinator binary.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Inngest } from 'inngest';
import { serve } from 'inngest/node';
import { getJson, listen, runsOf, sleep, startCoordinator, stopAll, workDir } from './harness.mjs';

let base;
let inngest;
let startRun;
let runStatus;
let runEnd;

after(stopAll);

before(async () => {
  const coordinator = await startCoordinator(workDir());
  base = coordinator.base;
  inngest = new Inngest({ id: 'npm', isDev: true, baseUrl: base });
  ({ startRun, runStatus, runEnd } = runsOf(base, inngest));
  const fns = [
    inngest.createFunction({ id: 'approver', retries: 0, triggers: [{ event: 'npm/approve' }] },
      async ({ event, step }) => {
        try {
          const got = await step.waitForSignal('approval', {
            signal: event.data.signal, timeout: event.data.timeout,
            onConflict: event.data.conflict,
          });
          const after = await step.run('after', () => 'went on');
          return { got, after };
        } catch (e) {
          return { error: e.message };
        }
      }),
    inngest.createFunction({ id: 'signaller', retries: 0, triggers: [{ event: 'npm/signal' }] },
      async ({ event, step }) => step.sendSignal('send', {
        signal: event.data.signal, data: event.data.data,
      })),
  ];
  const handler = serve({ client: inngest, functions: fns });
  const { port } = await listen((req, res) => handler(req, res));
  const put = await fetch(`http://127.0.0.1:${port}/api/inngest`, { method: 'PUT' });
  assert.equal(put.status, 200, await put.text());
});

const waiting = async (runId) =>
  assert.equal((await runStatus(runId, ['waiting', 'completed', 'failed'])).status, 'waiting');

test('inngest.sendSignal resumes the waiting run with {signal, data}, once', async () => {
  const id = await startRun({ name: 'npm/approve', data: { signal: 'order-7', timeout: '30s' } });
  await waiting(id);
  // Another signal's name resumes nothing: no run waits for it (the SDK reads the 404 as none).
  assert.equal((await inngest.sendSignal({ signal: 'order-8', data: {} })).runId, undefined);
  await sleep(200);
  assert.equal((await getJson(`${base}/v1/runs/${id}`)).body.data.status, 'waiting');
  const sent = await inngest.sendSignal({ signal: 'order-7', data: { by: 'ada' } });
  assert.equal(sent.runId, id);
  const run = await runEnd(id);
  assert.equal(run.status, 'completed', JSON.stringify(run, null, 2));
  assert.deepEqual(run.output, { got: { signal: 'order-7', data: { by: 'ada' } }, after: 'went on' });
  assert.equal(run.steps.find((s) => s.name === 'approval').status, 'completed');
  // The wait is gone with its resume: the same signal again reaches no run.
  assert.equal((await inngest.sendSignal({ signal: 'order-7', data: {} })).runId, undefined);
});

test('a wait for a signal times out with null', async () => {
  const run = await runEnd(await startRun({
    name: 'npm/approve', data: { signal: 'never', timeout: '1s' },
  }));
  assert.equal(run.status, 'completed', JSON.stringify(run, null, 2));
  assert.deepEqual(run.output, { got: null, after: 'went on' });
});

test('step.sendSignal of another run resumes the waiting one', async () => {
  const waiter = await startRun({ name: 'npm/approve', data: { signal: 'from-step', timeout: '30s' } });
  await waiting(waiter);
  const sender = await runEnd(await startRun({
    name: 'npm/signal', data: { signal: 'from-step', data: { n: 1 } },
  }));
  assert.equal(sender.status, 'completed', JSON.stringify(sender, null, 2));
  assert.deepEqual(sender.output, { runId: waiter });
  const run = await runEnd(waiter);
  assert.deepEqual(run.output.got, { signal: 'from-step', data: { n: 1 } });
});

test('onConflict "fail": a second wait for a held signal fails its step; the first keeps it', async () => {
  const first = await startRun({ name: 'npm/approve', data: { signal: 'held', timeout: '30s', conflict: 'fail' } });
  await waiting(first);
  const second = await runEnd(await startRun({
    name: 'npm/approve', data: { signal: 'held', timeout: '30s', conflict: 'fail' },
  }));
  assert.equal(second.status, 'completed', JSON.stringify(second, null, 2));
  assert.match(second.output.error, /Signal conflict/);
  assert.equal(second.steps.find((s) => s.name === 'approval').status, 'failed');
  assert.equal((await inngest.sendSignal({ signal: 'held', data: 1 })).runId, first);
  assert.deepEqual((await runEnd(first)).output.got, { signal: 'held', data: 1 });
});

test('onConflict "replace": the later wait takes the signal; the earlier one times out', async () => {
  const first = await startRun({ name: 'npm/approve', data: { signal: 'moved', timeout: '3s', conflict: 'replace' } });
  await waiting(first);
  const second = await startRun({ name: 'npm/approve', data: { signal: 'moved', timeout: '30s', conflict: 'replace' } });
  await waiting(second);
  assert.equal((await inngest.sendSignal({ signal: 'moved', data: 2 })).runId, second);
  assert.deepEqual((await runEnd(second)).output.got, { signal: 'moved', data: 2 });
  const earlier = await runEnd(first);
  assert.equal(earlier.status, 'completed', JSON.stringify(earlier, null, 2));
  assert.equal(earlier.output.got, null);
});
