// Compatibility in cloud mode: the official `inngest` npm SDK with a signing key, against a
// coordinator started with the same key. The coordinator syncs the app in-band (its PUT is
// signed, so the app's host is in --sync-allow, and it takes the SDK's reply only because the
// SDK signed it with the key), and
// every call of a run is signed so that the SDK's own check passes: the SDK parses the body
// and signs its RFC 8785 form again, so values a JavaScript parser changes (an integer above
// 2^53) and keys whose orders differ (integer-like keys, UTF-16 against code point order)
// must be signed as the SDK rebuilds them. The event is stored with every digit it came with.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Inngest } from 'inngest';
import { serve } from 'inngest/node';
import { getJson, listen, startCoordinator, stopAll, waitFor, workDir } from './harness.mjs';

after(stopAll);

const signingKey = 'signkey-test-0f1e2d3c4b5a69788796a5b4c3d2e1f0';
const eventKey = 'cloud-event-key';

// The event's data as text: a JavaScript client could not send these integers exactly.
const dataText = '{"big":12345678901234567890,"negative":-9007199254740993,"edge":9007199254740992,' +
  '"tiny":1e-7,"float":0.1,"huge":1e21,' +
  '"keys":{"10":"ten","2":"two","a":"a","\\ue000":"private","\\ud83d\\ude00":"emoji"},' +
  '"text":"caf\\u00e9\\n\\u2028 \\"quoted\\""}';

test('inngest npm SDK in cloud mode: a signed in-band sync and a run whose event holds values JavaScript parses differently', async () => {
  const coordinator = await startCoordinator(
    workDir(), ['--signing-key', signingKey, '--event-key', eventKey, '--sync-allow', '127.0.0.1']);
  const base = coordinator.base;

  const inngest = new Inngest({ id: 'cloud-app', isDev: false, baseUrl: base, signingKey, eventKey });
  const calls = [];
  const fn = inngest.createFunction(
    { id: 'echo', triggers: [{ event: 'demo/cloud' }] },
    async ({ event, step }) => {
      const seen = await step.run('see', () => event.data);
      const keys = await step.run('keys', () => Object.keys(seen.keys).join(','));
      return { seen, keys };
    },
  );
  const handler = serve({ client: inngest, functions: [fn] });
  const { port } = await listen((req, res) => {
    if (req.method === 'POST') calls.push(req.url);
    return handler(req, res);
  });
  const appUrl = `http://127.0.0.1:${port}/api/inngest`;

  // Unsigned, the SDK refuses the request outright: it is in cloud mode.
  const unsigned = await fetch(`${appUrl}?fnId=cloud-app-echo&stepId=step`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' });
  assert.equal(unsigned.status, 401, await unsigned.text());

  const synced = await fetch(`${base}/v1/apps/sync`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ url: appUrl }) });
  const syncText = await synced.text();
  assert.equal(synced.status, 200, syncText + coordinator.log());
  assert.equal(JSON.parse(syncText).data.sync_kind, 'in_band');
  const fns = await getJson(`${base}/v1/functions`);
  assert.deepEqual(fns.body.data.map((f) => f.id), ['cloud-app-echo']);

  const sent = await fetch(`${base}/e/${eventKey}`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: `[{"name":"demo/cloud","data":${dataText}}]` });
  const sentText = await sent.text();
  assert.equal(sent.status, 200, sentText);
  const eventId = JSON.parse(sentText).ids[0];

  // The stored event keeps every digit; the host got them too and parsed them as JavaScript does.
  const eventText = await (await fetch(`${base}/v1/events/${eventId}`)).text();
  assert.match(eventText, /"big":12345678901234567890\b/);
  assert.match(eventText, /"negative":-9007199254740993\b/);

  const runId = await waitFor(async () => (await getJson(`${base}/v1/events/${eventId}`)).body.data.runs[0]?.id);
  const run = await waitFor(async () => {
    const r = await getJson(`${base}/v1/runs/${runId}`);
    return ['completed', 'failed'].includes(r.body.data.status) ? r.body.data : null;
  });
  assert.equal(run.status, 'completed', JSON.stringify(run, null, 2) + coordinator.log());
  assert.deepEqual(run.output.seen, JSON.parse(dataText));
  assert.deepEqual(run.output.keys.split(',').sort(), Object.keys(JSON.parse(dataText).keys).sort());
  // No call was refused: a refused signature would be a failed attempt in the run's log.
  assert.ok(calls.length >= 1, `calls: ${calls.join(', ')}`);
  assert.ok(run.steps.length >= 1, JSON.stringify(run.steps));
  for (const step of run.steps) {
    assert.ok(step.attempt_log.length >= 1, JSON.stringify(step));
    for (const a of step.attempt_log) assert.equal(a.error, null, JSON.stringify(step));
  }
});
