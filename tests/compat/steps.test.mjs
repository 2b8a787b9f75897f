// Compatibility of the step kinds with the official `inngest` npm SDK (pinned in
// package.json) as the host: step.sleep, step.waitForEvent (match, `if`, timeout),
// step.sendEvent, step.invoke, Promise.all parallel steps, cancelOn, onFailure, and the
// inngest/function.finished event every run end emits. One coordinator on a private
// PostgreSQL cluster; every assertion reads the coordinator's API.
//
// Run by `make test` through CTest; FUNCKY_BIN names the coordinator binary.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Inngest, NonRetriableError } from 'inngest';
import { serve } from 'inngest/node';
import {
  getJson, listen, runsOf, sleep, startCoordinator, stopAll, waitFor, workDir,
} from './harness.mjs';

let base;
let coordinator;
let inngest;
let startRun;
let runStatus;
let runEnd;
const executed = []; // [function, step] for each step body the host ran

after(stopAll);

const ran = (fn, step) => executed.filter(([f, s]) => f === fn && s === step).length;

before(async () => {
  coordinator = await startCoordinator(workDir());
  base = coordinator.base;
  inngest = new Inngest({ id: 'npm', isDev: true, baseUrl: base });
  ({ startRun, runStatus, runEnd } = runsOf(base, inngest));
  const callee = inngest.createFunction(
    { id: 'callee', retries: 0, triggers: [{ event: 'npm/callee' }] },
    async ({ event }) => {
      if (event.data.fail) throw new NonRetriableError('callee refused');
      return { doubled: 2 * event.data.n };
    },
  );
  const fns = [
    inngest.createFunction({ id: 'sleeper', triggers: [{ event: 'npm/sleep' }] },
      async ({ step }) => {
        const before = await step.run('before', () => Date.now());
        await step.sleep('nap', '1s');
        const after = await step.run('after', () => { executed.push(['sleeper', 'after']); return Date.now(); });
        return { slept: after - before };
      }),
    inngest.createFunction({ id: 'waiter', triggers: [{ event: 'npm/wait' }] },
      async ({ event, step }) => {
        const approval = await step.waitForEvent('approval', {
          event: 'npm/approved', timeout: event.data.timeout,
          if: 'async.data.order == event.data.order',
        });
        return { approval };
      }),
    inngest.createFunction({ id: 'sender', triggers: [{ event: 'npm/send' }] },
      async ({ step }) => {
        const sent = await step.sendEvent('fan', [{ name: 'npm/child', data: { i: 1 } },
          { name: 'npm/child', data: { i: 2 } }]);
        return sent;
      }),
    inngest.createFunction({ id: 'child', triggers: [{ event: 'npm/child' }] },
      async ({ event }) => ({ child: event.data.i })),
    callee,
    inngest.createFunction({ id: 'caller', triggers: [{ event: 'npm/invoke' }] },
      async ({ event, step }) => {
        try {
          return { result: await step.invoke('call', { function: callee, data: event.data }) };
        } catch (e) {
          return { error: e.message };
        }
      }),
    inngest.createFunction({ id: 'parallel', triggers: [{ event: 'npm/parallel' }] },
      async ({ step }) => {
        const parts = await Promise.all(['a', 'b', 'c'].map((n) => step.run(n, () => {
          executed.push(['parallel', n]);
          return n + '!';
        })));
        return parts.join('');
      }),
    inngest.createFunction({
      id: 'cancellable', triggers: [{ event: 'npm/cancellable' }],
      cancelOn: [{ event: 'npm/cancel', match: 'data.id' }],
    }, async ({ step }) => {
      await step.run('start', () => true);
      await step.sleep('long', '30s');
      await step.run('after', () => { executed.push(['cancellable', 'after']); return true; });
    }),
    inngest.createFunction({
      id: 'fails', retries: 0, triggers: [{ event: 'npm/fails' }],
      onFailure: async ({ error, event, step }) => step.run('compensate', () => ({
        handled: error.message, original: event.data.event.data,
      })),
    }, async () => { throw new NonRetriableError('it broke'); }),
  ];
  const handler = serve({ client: inngest, functions: fns });
  const { port } = await listen((req, res) => handler(req, res));
  const put = await fetch(`http://127.0.0.1:${port}/api/inngest`, { method: 'PUT' });
  assert.equal(put.status, 200, await put.text());
});


test('step.sleep pauses the run and resumes it after the duration', async () => {
  const id = await startRun({ name: 'npm/sleep' });
  assert.equal((await runStatus(id, ['sleeping', 'completed'])).status, 'sleeping');
  const run = await runEnd(id);
  assert.equal(run.status, 'completed', JSON.stringify(run, null, 2));
  assert.ok(run.output.slept >= 1000, `slept ${run.output.slept} ms`);
  assert.equal(run.steps.find((s) => s.name === 'nap').status, 'completed');
});

test('step.waitForEvent resumes with the matching event and ignores others', async () => {
  const id = await startRun({ name: 'npm/wait', data: { order: 7, timeout: '20s' } });
  assert.equal((await runStatus(id, ['waiting', 'completed'])).status, 'waiting');
  await inngest.send({ name: 'npm/approved', data: { order: 8 } });
  await sleep(300);
  assert.equal((await getJson(`${base}/v1/runs/${id}`)).body.data.status, 'waiting');
  await inngest.send({ name: 'npm/approved', data: { order: 7, by: 'ada' } });
  const run = await runEnd(id);
  assert.equal(run.status, 'completed');
  assert.equal(run.output.approval.name, 'npm/approved');
  assert.equal(run.output.approval.data.by, 'ada');
});

test('step.waitForEvent times out with null', async () => {
  const run = await runEnd(await startRun({ name: 'npm/wait', data: { order: 1, timeout: '1s' } }));
  assert.equal(run.status, 'completed');
  assert.equal(run.output.approval, null);
});

test('step.sendEvent is memoized and its events start runs', async () => {
  const run = await runEnd(await startRun({ name: 'npm/send' }));
  assert.equal(run.status, 'completed', JSON.stringify(run, null, 2));
  assert.equal(run.output.ids.length, 2);
  assert.deepEqual(run.steps.find((s) => s.name === 'fan').output.ids, run.output.ids);
  for (const eventId of run.output.ids) {
    const child = await waitFor(async () => (await getJson(`${base}/v1/events/${eventId}`)).body.data.runs[0]?.id);
    assert.equal((await runEnd(child)).status, 'completed');
  }
});

test('step.invoke resumes with the invoked function\'s result or error', async () => {
  const ok = await runEnd(await startRun({ name: 'npm/invoke', data: { n: 21 } }));
  assert.equal(ok.status, 'completed', JSON.stringify(ok, null, 2));
  assert.deepEqual(ok.output.result, { doubled: 42 });
  const failed = await runEnd(await startRun({ name: 'npm/invoke', data: { n: 1, fail: true } }));
  assert.equal(failed.status, 'completed', JSON.stringify(failed, null, 2));
  assert.match(failed.output.error, /callee refused/);
});

test('Promise.all steps run as separate calls and the function continues once', async () => {
  const run = await runEnd(await startRun({ name: 'npm/parallel' }));
  assert.equal(run.status, 'completed', JSON.stringify(run, null, 2));
  assert.equal(run.output, 'a!b!c!');
  for (const n of ['a', 'b', 'c']) assert.equal(ran('parallel', n), 1, `step ${n}`);
});

test('cancelOn cancels the matching run; the cancel API cancels another', async () => {
  const one = await startRun({ name: 'npm/cancellable', data: { id: 1 } });
  const two = await startRun({ name: 'npm/cancellable', data: { id: 2 } });
  for (const id of [one, two]) assert.equal((await runStatus(id, ['sleeping', 'completed'])).status, 'sleeping');
  await inngest.send({ name: 'npm/cancel', data: { id: 1 } });
  assert.equal((await runEnd(one)).status, 'cancelled');
  assert.equal((await getJson(`${base}/v1/runs/${two}`)).body.data.status, 'sleeping');
  const r = await fetch(`${base}/v1/runs/${two}/cancel`, { method: 'POST' });
  assert.equal(r.status, 200);
  assert.equal((await runEnd(two)).status, 'cancelled');
  await sleep(300);
  assert.equal(ran('cancellable', 'after'), 0);
});

test('onFailure runs with the failure, and inngest/function.finished announces every end', async () => {
  const id = await startRun({ name: 'npm/fails', data: { order: 99 } });
  const run = await runEnd(id);
  assert.equal(run.status, 'failed', JSON.stringify(run, null, 2));
  const handled = await waitFor(async () => {
    const runs = await getJson(`${base}/v1/runs?function=npm-fails-failure&status=completed`);
    return runs.body.data[0];
  });
  assert.deepEqual(handled.output, { handled: 'it broke', original: { order: 99 } });
  const finished = await getJson(`${base}/v1/events?name=inngest/function.finished&limit=200`);
  const mine = finished.body.data.filter((e) => e.payload.data.run_id === id);
  assert.equal(mine.length, 1);
  assert.equal(mine[0].payload.data._inngest.status, 'failed');
});
