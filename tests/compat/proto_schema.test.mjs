// proto-schema/: the JSON Schemas of the wire protocol, checked against payloads that both
// sides really produce. Recording proxies sit between the hosts and the coordinator, so what
// is validated is exactly what crossed the wire:
//   hosts -> coordinator: register bodies, event bodies (C++ SDK and inngest npm SDK)
//   coordinator -> hosts: call requests; hosts -> coordinator: op lists and errors
//   coordinator replies: register replies, event replies, API errors
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import Ajv2020 from 'ajv/dist/2020.js';
import { Inngest, NonRetriableError } from 'inngest';
import { serve } from 'inngest/node';
import {
  freePort, getJson, listen, recordingProxy, repo, spawnLogged, startCoordinator, stopAll,
  testHostBin, waitFor, workDir,
} from './harness.mjs';

after(stopAll);

const ajv = new Ajv2020({ allErrors: true, strict: true, strictRequired: false });
const schemaDir = join(repo, 'proto-schema');
for (const f of readdirSync(schemaDir).filter((f) => f.endsWith('.schema.json'))) {
  ajv.addSchema(JSON.parse(readFileSync(join(schemaDir, f), 'utf8')), f);
}

// Asserts that `payload` satisfies schema `name` and returns it.
function check(name, payload, where) {
  const validate = ajv.getSchema(name);
  assert.ok(validate, `no schema ${name}`);
  const ok = validate(payload);
  assert.ok(ok, `${where} does not match ${name}: ${ajv.errorsText(validate.errors)}\n` +
    JSON.stringify(payload, null, 2));
  return payload;
}

const parse = (s) => JSON.parse(s);

test('payloads of the coordinator, the C++ SDK and the inngest npm SDK match proto-schema', async () => {
  const work = workDir();
  const coordinator = await startCoordinator(work, ['--retry-schedule', '10ms', '--retry-jitter', '0s']);
  const toCoordinator = await recordingProxy(coordinator.base);

  // The npm host, behind its own recording proxy (it registers the URL it was reached at).
  const inngest = new Inngest({ id: 'schema-app', isDev: true, baseUrl: toCoordinator.url });
  const fns = [
    inngest.createFunction({ id: 'two-steps', triggers: [{ event: 'schema/go' }] },
      async ({ step }) => {
        const a = await step.run('first', () => 'A');
        return { b: await step.run('second', () => a + 'B') };
      }),
    inngest.createFunction({ id: 'fails', retries: 1, triggers: [{ event: 'schema/fail' }] },
      async ({ step }) => step.run('boom', () => { throw new Error('boom'); })),
    inngest.createFunction({ id: 'refuses', triggers: [{ event: 'schema/refuse' }] },
      async () => { throw new NonRetriableError('no'); }),
    inngest.createFunction(
      { id: 'keyed', concurrency: { limit: 1, key: 'event.data.k' }, triggers: [{ event: 'schema/keyed' }] },
      async () => 'ok'),
  ];
  const npmHost = await listen(serve({ client: inngest, functions: fns }));
  const toNpm = await recordingProxy(`http://127.0.0.1:${npmHost.port}`);
  const put = await fetch(`${toNpm.url}/api/inngest`, { method: 'PUT' });
  assert.equal(put.status, 200, await put.text());

  // The C++ host, behind its proxy; it registers, then sends one event with Client::send.
  const cppPort = await freePort();
  const toCpp = await recordingProxy(`http://127.0.0.1:${cppPort}`);
  spawnLogged(testHostBin, ['--port', String(cppPort), '--coordinator', toCoordinator.url,
    '--serve-url', `${toCpp.url}/api/funcky`,
    '--send-on-start', JSON.stringify({ name: 'test/flaky', data: { fail_times: 1 } })],
  join(work, 'host.log'));
  await waitFor(() => toCoordinator.exchanges.some((e) => e.url.startsWith('/e/')));

  await inngest.send([{ name: 'schema/go', data: { x: 1 } }, { name: 'schema/fail' },
    { name: 'schema/refuse' }, { name: 'schema/keyed', data: { k: 'a' } }]);
  await fetch(`${toCoordinator.url}/v1/events`, { method: 'POST',
    body: JSON.stringify({ name: 'test/two-steps', id: 'schema-1', ts: Date.now(), data: {} }) });

  // Every run ends.
  await waitFor(async () => {
    const runs = (await getJson(`${coordinator.base}/v1/runs?limit=100`)).body.data;
    return runs.length === 6 && runs.every((r) => ['completed', 'failed'].includes(r.status));
  }, 30000);

  // Bad input, for the error bodies.
  const bad = [
    ['/e/dev', '{"name":'], ['/e/dev', '{"data":{}}'], ['/v1/events', '[1,2]'],
    ['/fn/register', '{"url":7}'], ['/no/such/route', '{}'],
  ];
  for (const [path, body] of bad) await fetch(toCoordinator.url + path, { method: 'POST', body });

  // hosts -> coordinator, and the coordinator's replies.
  const sdks = new Set();
  let registers = 0, eventPosts = 0, eventErrors = 0, errors = 0, registerErrors = 0;
  let checkpoints = 0;
  for (const e of toCoordinator.exchanges) {
    const where = `${e.method} ${e.url} -> ${e.status}`;
    if (e.url.startsWith('/v1/checkpoint/')) {
      assert.equal(e.status, 200, where + e.resBody);
      const body = check('checkpoint.schema.json', parse(e.reqBody), where);
      assert.equal(e.url, `/v1/checkpoint/${body.run_id}/async`);
      checkpoints++;
    } else if (e.url === '/fn/register') {
      if (e.status === 200) {
        sdks.add(check('register.schema.json', parse(e.reqBody), where).sdk.split(':')[0]);
        registers++;
      } else {
        registerErrors++;
      }
      check('register-reply.schema.json', parse(e.resBody), where);
    } else if (e.url.startsWith('/e/') || e.url === '/v1/events') {
      check('events-reply.schema.json', parse(e.resBody), where);
      if (e.status === 200) {
        check('event-batch.schema.json', parse(e.reqBody), where);
        eventPosts++;
      } else {
        eventErrors++;
      }
    } else if (e.status >= 400) {
      check('error.schema.json', parse(e.resBody), where);
      errors++;
    }
  }
  assert.deepEqual([...sdks].sort(), ['cpp', 'js']);
  assert.equal(registers, 2);
  assert.equal(registerErrors, 1);
  assert.equal(eventPosts, 3);
  assert.equal(eventErrors, 3);
  assert.equal(errors, 1);
  // two-steps (schema/go) checkpoints each of its two steps; the C++ SDK does not checkpoint.
  assert.equal(checkpoints, 2);

  // coordinator -> hosts, and the hosts' replies.
  const seen = {};
  for (const [side, proxy] of [['npm', toNpm], ['cpp', toCpp]]) {
    for (const e of proxy.exchanges.filter((x) => x.method === 'POST')) {
      const where = `${side} ${e.url} -> ${e.status}`;
      check('call-request.schema.json', parse(e.reqBody), where);
      const res = parse(e.resBody);
      let kind = `${side}:${e.status}`;
      if (e.status === 206) {
        for (const op of check('ops.schema.json', res, where)) seen[`${side}:${op.op}`] = true;
      } else if (e.status >= 400) {
        check('error.schema.json#/$defs/serialized_error', res, where);
      }
      seen[kind] = true;
    }
  }
  // Both sides produced calls that completed, step ops and errors. Both end these runs with a
  // RunComplete op: the npm SDK as it checkpoints, the C++ SDK with the step its last call ran.
  for (const k of ['npm:206', 'npm:RunComplete', 'npm:StepError', 'npm:400',
    'cpp:206', 'cpp:StepRun', 'cpp:RunComplete', 'cpp:StepError']) {
    assert.ok(seen[k], `no ${k} exchange was recorded; saw ${Object.keys(seen).join(', ')}`);
  }
});
