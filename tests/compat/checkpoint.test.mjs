// Compatibility: the inngest npm SDK's async checkpointing against a real coordinator. Calls
// carry ctx.fn_id and ctx.qi_id, so the SDK runs steps back to back within one call and posts
// each to POST /v1/checkpoint/{run}/async before it goes on; a failed step, a sleep and the
// run's end still come back in the call's reply; a coordinator killed mid-call loses none of
// the checkpointed steps, and the killed call's late checkpoint is refused; checkpoints that
// cannot reach the coordinator cost time, not runs; buffered checkpoints (the SDK's
// `bufferedSteps`) carry several steps, and the steps left in the buffer come with the reply. A
// recording proxy between the SDK and the coordinator shows what was posted.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Inngest } from 'inngest';
import { serve } from 'inngest/node';
import {
  getJson, listen, recordingProxy, startCoordinator, stopAll, waitFor, workDir,
} from './harness.mjs';

after(stopAll);

// Serves `fn` of `inngest` on a new port and syncs it; returns the URLs of the calls the host
// receives, as they come.
async function serveAndSync(inngest, fn) {
  const calls = [];
  const handler = serve({ client: inngest, functions: [fn] });
  const { port } = await listen((req, res) => {
    if (req.method === 'POST') calls.push(req.url);
    return handler(req, res);
  });
  const put = await fetch(`http://127.0.0.1:${port}/api/inngest`, { method: 'PUT' });
  assert.equal(put.status, 200, await put.text());
  return calls;
}

// The id of the run the event `eventId` started on the coordinator at `base`.
const runOf = (base, eventId) => waitFor(async () =>
  (await getJson(`${base}/v1/events/${eventId}`)).body.data.runs[0]?.id);

// The run `runId` once it has ended.
const ended = (base, runId) => waitFor(async () => {
  const r = await getJson(`${base}/v1/runs/${runId}`);
  return ['completed', 'failed'].includes(r.body.data.status) ? r.body.data : null;
});

test('checkpointed steps are recorded once, survive a retried step and a sleep, in order', async () => {
  const coordinator = await startCoordinator(workDir(),
    ['--retry-schedule', '10ms', '--retry-jitter', '0s']);
  const base = coordinator.base;
  const toCoordinator = await recordingProxy(base);

  const inngest = new Inngest({ id: 'cp-app', isDev: true, baseUrl: toCoordinator.url });
  const ran = { a: 0, b: 0, c: 0 };
  const fn = inngest.createFunction(
    { id: 'replicate', retries: 2, triggers: [{ event: 'cp/go' }] },
    async ({ step }) => {
      const a = await step.run('a', () => { ran.a++; return 1; });
      const b = await step.run('b', () => {
        ran.b++;
        if (ran.b === 1) throw new Error('third party busy');
        return a + 1;
      });
      await step.sleep('pause', '1s');
      const c = await step.run('c', () => { ran.c++; return b + 1; });
      return { a, b, c };
    },
  );
  const calls = await serveAndSync(inngest, fn);

  const sent = await inngest.send({ name: 'cp/go', data: {} });
  const runId = await runOf(base, sent.ids[0]);
  const run = await ended(base, runId);
  assert.equal(run.status, 'completed', JSON.stringify(run, null, 2) + coordinator.log());
  assert.deepEqual(run.output, { a: 1, b: 2, c: 3 });
  assert.deepEqual(run.steps.map((s) => [s.name, s.output]),
    [['a', 1], ['b', 2], ['pause', null], ['c', 3]]);
  // `a` ran once: the retry of the call was given its checkpointed record.
  assert.deepEqual(ran, { a: 1, b: 2, c: 1 });

  // a and c were checkpointed (b's retry answers as usual), each accepted.
  const checkpoints = toCoordinator.exchanges.filter((e) => e.url.startsWith('/v1/checkpoint/'));
  assert.deepEqual(checkpoints.map((e) => [e.url, e.status]),
    [[`/v1/checkpoint/${runId}/async`, 200], [`/v1/checkpoint/${runId}/async`, 200]]);
  assert.deepEqual(checkpoints.map((e) => JSON.parse(e.reqBody).steps.map((s) => s.op)),
    [['StepRun'], ['StepRun']]);
  // a + b's failure, b's retry, the sleep, c + the end: four calls where one a step would be
  // seven.
  assert.equal(calls.length, 4, `calls: ${calls.join(', ')}`);
});

test('a coordinator killed during a checkpointing call: the step checkpointed before stays, the cut-off step is made again, the stale call is refused', async () => {
  const coordinator = await startCoordinator(workDir(), ['--lease', '1s']);
  const base = coordinator.base;
  const toCoordinator = await recordingProxy(base);

  const inngest = new Inngest({ id: 'cp-kill-app', isDev: true, baseUrl: toCoordinator.url });
  const ran = { a: 0, b: 0 };
  let release;
  const gate = new Promise((resolve) => { release = resolve; });
  const fn = inngest.createFunction(
    { id: 'cut-off', triggers: [{ event: 'cp/kill' }] },
    async ({ step }) => {
      const a = await step.run('a', () => { ran.a++; return `A${ran.a}`; });
      const b = await step.run('b', async () => {
        const mine = ++ran.b;
        if (mine === 1) await gate; // the first call's b outlives its coordinator
        return `B${mine}`;
      });
      return { a, b };
    },
  );
  const calls = await serveAndSync(inngest, fn);

  const sent = await inngest.send({ name: 'cp/kill', data: {} });
  const runId = await runOf(base, sent.ids[0]);
  // `a` is checkpointed and `b` runs in the first call: kill its coordinator, start another
  // on the same database and port. It makes the call again once the lease expired.
  await waitFor(async () => ran.b === 1 &&
    (await getJson(`${base}/v1/runs/${runId}`)).body.data.steps.length === 1);
  coordinator.kill9();
  await coordinator.restart();
  const run = await ended(base, runId);
  assert.equal(run.status, 'completed', JSON.stringify(run, null, 2) + coordinator.log());
  assert.equal(calls.length, 2, `calls: ${calls.join(', ')}`);
  // The second call was given a's record (a ran once) and made b again.
  assert.deepEqual(run.output, { a: 'A1', b: 'B2' });
  assert.deepEqual(run.steps.map((s) => [s.name, s.output]), [['a', 'A1'], ['b', 'B2']]);
  assert.deepEqual(ran, { a: 1, b: 2 });

  // The first call's b ends now: its checkpoint names a lease that is gone, 409, and the SDK
  // stops there; nothing of it is recorded.
  release();
  const stale = await waitFor(() => toCoordinator.exchanges.find((e) =>
    e.url.startsWith('/v1/checkpoint/') && JSON.parse(e.reqBody).steps[0].data === 'B1'));
  assert.equal(stale.status, 409, stale.resBody);
  const after = (await getJson(`${base}/v1/runs/${runId}`)).body.data;
  assert.deepEqual(after.steps.map((s) => [s.name, s.output]), [['a', 'A1'], ['b', 'B2']]);
  assert.deepEqual(after.output, { a: 'A1', b: 'B2' });
});

test('checkpoints that cannot reach the coordinator: the SDK falls back to one call a step and the run completes', async () => {
  const coordinator = await startCoordinator(workDir());
  const base = coordinator.base;
  // The SDK's API base URL passes everything on but its checkpoints (a proxy that does not
  // route /v1/checkpoint/, or an SDK pointed at the wrong place).
  const toCoordinator = await recordingProxy(base, {
    refuse: (method, url) => (url.startsWith('/v1/checkpoint/') ? 503 : undefined),
  });
  const inngest = new Inngest({ id: 'cp-lost-app', isDev: true, baseUrl: toCoordinator.url });
  const ran = { a: 0, b: 0 };
  const fn = inngest.createFunction(
    { id: 'two-steps', triggers: [{ event: 'cp/lost' }] },
    async ({ step }) => {
      const a = await step.run('a', () => { ran.a++; return 'A'; });
      const b = await step.run('b', () => { ran.b++; return a + 'B'; });
      return { b };
    },
  );
  const calls = await serveAndSync(inngest, fn);

  const started = Date.now();
  const sent = await inngest.send({ name: 'cp/lost', data: {} });
  const runId = await runOf(base, sent.ids[0]);
  const run = await ended(base, runId);
  const took = Date.now() - started;
  assert.equal(run.status, 'completed', JSON.stringify(run, null, 2) + coordinator.log());
  assert.deepEqual(run.output, { b: 'AB' });
  assert.deepEqual(run.steps.map((s) => [s.name, s.output]), [['a', 'A'], ['b', 'AB']]);
  assert.deepEqual(ran, { a: 1, b: 1 });
  // Each step's checkpoint was tried five times, then the step came back in the call's reply:
  // a call a step and one for the end, and the tries' backoff (about 1.5 s a step).
  const tries = toCoordinator.exchanges.filter((e) => e.url.startsWith('/v1/checkpoint/'));
  assert.equal(tries.length, 10);
  assert.equal(calls.length, 3, `calls: ${calls.join(', ')}`);
  assert.ok(took >= 3000, `took ${took} ms`);
  // Nothing reached the coordinator's checkpoint endpoint.
  const metrics = await (await fetch(`${base}/metrics`)).text();
  assert.doesNotMatch(metrics, /funcky_checkpoints_total\{/);
});

test('buffered checkpoints (bufferedSteps): several steps a checkpoint, the last in the reply, a failed step after buffered ones, each recorded once in order', async () => {
  const coordinator = await startCoordinator(workDir(),
    ['--retry-schedule', '10ms', '--retry-jitter', '0s']);
  const base = coordinator.base;
  const toCoordinator = await recordingProxy(base);

  const inngest = new Inngest({ id: 'cp-buffer-app', isDev: true, baseUrl: toCoordinator.url });
  const ran = { a: 0, b: 0, c: 0, d: 0, e: 0 };
  const fn = inngest.createFunction(
    { id: 'buffered', retries: 2, checkpointing: { bufferedSteps: 2 },
      triggers: [{ event: 'cp/buffer' }] },
    async ({ step }) => {
      const a = await step.run('a', () => { ran.a++; return 1; });
      const b = await step.run('b', () => { ran.b++; return a + 1; });
      const c = await step.run('c', () => { ran.c++; return b + 1; });
      const d = await step.run('d', () => {
        ran.d++;
        if (ran.d === 1) throw new Error('third party busy');
        return c + 1;
      });
      const e = await step.run('e', () => { ran.e++; return d + 1; });
      return { a, b, c, d, e };
    },
  );
  const calls = await serveAndSync(inngest, fn);

  const sent = await inngest.send({ name: 'cp/buffer', data: {} });
  const runId = await runOf(base, sent.ids[0]);
  const run = await ended(base, runId);
  assert.equal(run.status, 'completed', JSON.stringify(run, null, 2) + coordinator.log());
  assert.deepEqual(run.output, { a: 1, b: 2, c: 3, d: 4, e: 5 });
  assert.deepEqual(run.steps.map((s) => [s.name, s.output]),
    [['a', 1], ['b', 2], ['c', 3], ['d', 4], ['e', 5]]);
  // Only d ran twice: c, buffered when d failed, was recorded, and the retry was given a, b
  // and c.
  assert.deepEqual(ran, { a: 1, b: 1, c: 1, d: 2, e: 1 });

  // a and b in one checkpoint; c alone, flushed when d failed (the SDK posts what it buffered
  // before it answers with a failure); e never: it came in the last call's reply with the end.
  const checkpoints = toCoordinator.exchanges.filter((e) => e.url.startsWith('/v1/checkpoint/'));
  assert.deepEqual(checkpoints.map((e) => [e.status, JSON.parse(e.reqBody).steps.map((s) => [s.op, s.data])]),
    [[200, [['StepRun', 1], ['StepRun', 2]]], [200, [['StepRun', 3]]]]);
  // Three calls: a to d's failure; d's retry, which the SDK answers with d alone (as it does
  // any retried step); e with the end.
  assert.equal(calls.length, 3, `calls: ${calls.join(', ')}`);
});

test('a run that would pass --max-steps-per-run fails with InngestErrFunctionOverflowed: its checkpoint past the limit is refused, the step the reply carries is the last', async () => {
  const coordinator = await startCoordinator(workDir(), ['--max-steps-per-run', '3']);
  const base = coordinator.base;
  const toCoordinator = await recordingProxy(base);
  const inngest = new Inngest({ id: 'cp-limit-app', isDev: true, baseUrl: toCoordinator.url });
  let ran = 0;
  const fn = inngest.createFunction(
    { id: 'endless', triggers: [{ event: 'cp/endless' }] },
    async ({ step }) => {
      for (let i = 0; ; i++) await step.run(`s${i}`, () => { ran++; return i; });
    },
  );
  const calls = await serveAndSync(inngest, fn);

  const sent = await inngest.send({ name: 'cp/endless', data: {} });
  const runId = await runOf(base, sent.ids[0]);
  const run = await ended(base, runId);
  assert.equal(run.status, 'failed', JSON.stringify(run, null, 2) + coordinator.log());
  assert.equal(run.error.name, 'InngestErrFunctionOverflowed');
  // s0–s2 were checkpointed; s3's checkpoint was refused (422) on each of the SDK's tries, so
  // its call's reply carried it, and the run failed before it was called again.
  const checkpoints = toCoordinator.exchanges.filter((e) => e.url.startsWith('/v1/checkpoint/'));
  assert.deepEqual(checkpoints.map((e) => e.status), [200, 200, 200, 422, 422, 422, 422, 422]);
  assert.match(checkpoints[3].resBody, /step limit of 3/);
  assert.deepEqual(run.steps.filter((s) => s.status === 'completed').map((s) => s.name),
    ['s0', 's1', 's2', 's3']);
  assert.equal(ran, 4);
  assert.equal(calls.length, 1, `calls: ${calls.join(', ')}`);
  const metrics = await (await fetch(`${base}/metrics`)).text();
  assert.match(metrics, /funcky_checkpoints_total\{outcome="step_limit"\} 5/);
});
