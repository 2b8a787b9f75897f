// Compatibility: the official `inngest` npm SDK (pinned in package.json) as a host against a
// real Funcky coordinator on a private PostgreSQL cluster. The SDK syncs through
// /fn/register and a two-step function runs to completion.
//
// Run by `make test` through CTest; FUNCKY_BIN names the coordinator binary.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Inngest } from 'inngest';
import { serve } from 'inngest/node';
import { getJson, listen, startCoordinator, stopAll, waitFor, workDir } from './harness.mjs';

after(stopAll);

// Syncs a two-step function of the npm SDK with a coordinator started with `args`, runs it
// once and returns the ended run and the host's calls.
async function twoStepRun(args, serveOptions = {}) {
  const coordinator = await startCoordinator(workDir(), args);
  const base = coordinator.base;

  const inngest = new Inngest({ id: 'compat-app', isDev: true, baseUrl: base });
  const calls = [];
  const fn = inngest.createFunction(
    { id: 'two-steps', triggers: [{ event: 'demo/go' }] },
    async ({ step }) => {
      const a = await step.run('first', () => 'A');
      const b = await step.run('second', () => a + 'B');
      return { b };
    },
  );
  const handler = serve({ client: inngest, functions: [fn], ...serveOptions });
  const { port } = await listen((req, res) => {
    if (req.method === 'POST') calls.push(req.url);
    return handler(req, res);
  });
  const appUrl = `http://127.0.0.1:${port}/api/inngest`;

  // Out-of-band sync: PUT to the app makes the SDK POST its functions to /fn/register.
  const put = await fetch(appUrl, { method: 'PUT' });
  assert.equal(put.status, 200, await put.text());
  const fns = await getJson(`${base}/v1/functions`);
  assert.deepEqual(fns.body.data.map((f) => f.id), ['compat-app-two-steps']);

  const sent = await inngest.send({ name: 'demo/go', data: { x: 1 } });
  assert.equal(sent.ids.length, 1);
  const runId = await waitFor(async () => {
    const ev = await getJson(`${base}/v1/events/${sent.ids[0]}`);
    return ev.body.data.runs[0]?.id;
  });
  const run = await waitFor(async () => {
    const r = await getJson(`${base}/v1/runs/${runId}`);
    return ['completed', 'failed'].includes(r.body.data.status) ? r.body.data : null;
  });
  assert.equal(run.status, 'completed', JSON.stringify(run, null, 2) + coordinator.log());
  assert.deepEqual(run.output, { b: 'AB' });
  assert.deepEqual(run.steps.map((s) => [s.name, s.output]), [['first', 'A'], ['second', 'AB']]);
  return { run, calls };
}

test('inngest npm SDK: sync via /fn/register and a two-step function completes in one call, checkpointing its steps', async () => {
  const { calls } = await twoStepRun([]);
  assert.deepEqual(calls, ['/api/inngest?fnId=compat-app-two-steps&stepId=step']);
});

test('inngest npm SDK: with --sdk-checkpointing=false each step is a call of its own', async () => {
  const { calls } = await twoStepRun(['--sdk-checkpointing=false']);
  assert.equal(calls.length, 3, `calls: ${calls.join(', ')}`);
});

// With `streaming` the SDK answers each call 201 at once and the answer at the stream's end
// (docs/protocol.md §5.1): read as that answer, not as a failed attempt (which ran the step
// again at every retry, and failed the run).
test('inngest npm SDK: a host that streams its answers runs each step once', async () => {
  const { calls } = await twoStepRun(['--sdk-checkpointing=false'], { streaming: true });
  assert.equal(calls.length, 3, `calls: ${calls.join(', ')}`);
});

test('inngest npm SDK: an option Funcky does not implement is refused at sync, naming it', async () => {
  const coordinator = await startCoordinator(workDir());
  const base = coordinator.base;
  const inngest = new Inngest({ id: 'limited-app', isDev: true, baseUrl: base });
  const fn = inngest.createFunction(
    { id: 'paced', triggers: [{ event: 'demo/paced' }],
      concurrency: { limit: 2, key: 'event.data.k', scope: 'account' } },
    async () => 'ran',
  );
  const handler = serve({ client: inngest, functions: [fn] });
  const { port } = await listen((req, res) => handler(req, res));
  const put = await fetch(`http://127.0.0.1:${port}/api/inngest`, { method: 'PUT' });
  const text = await put.text();
  assert.notEqual(put.status, 200, text);
  assert.match(text, /concurrency\.scope \\*"account\\*" \(a limit shared across functions\) is not implemented/);
  const fns = await getJson(`${base}/v1/functions`);
  assert.deepEqual(fns.body.data, []);
});
