// A host served by the official `inngest` npm SDK (pinned in bench/package.json) with the
// same shape as the C++ hello host: one function, two steps, three calls a run. Syncs with the
// Funcky coordinator the way tests/compat does (PUT to the app: the SDK posts its functions to
// /fn/register), then prints "registered" and serves until SIGTERM. With BUFFERED_STEPS, the
// SDK's `checkpointing: { bufferedSteps }`: that many steps a checkpoint, and those still
// buffered at the end come in the call's reply (a step is durable only then).
//
//   node npm_host.mjs http://127.0.0.1:8288 [BUFFERED_STEPS]   # event name: bench/npm
import { createServer } from 'node:http';
import { Inngest } from 'inngest';
import { serve } from 'inngest/node';

const [coordinator, buffered] = process.argv.slice(2);
if (!coordinator) throw new Error('usage: npm_host.mjs COORDINATOR_URL [BUFFERED_STEPS]');

const inngest = new Inngest({ id: 'bench-npm', isDev: true, baseUrl: coordinator });
const twoSteps = inngest.createFunction(
  {
    id: 'two-steps',
    triggers: [{ event: 'bench/npm' }],
    ...(buffered ? { checkpointing: { bufferedSteps: Number(buffered) } } : {}),
  },
  async ({ step }) => {
    const a = await step.run('first', () => 'A');
    const b = await step.run('second', () => a + 'B');
    return { b };
  },
);
const handler = serve({ client: inngest, functions: [twoSteps] });
// Node's http server as it comes: it keeps an idle connection 5 s and says so
// (`Keep-Alive: timeout=5`); the coordinator pools connections for less than that.
const server = createServer(handler);
server.listen(0, '127.0.0.1', async () => {
  const put = await fetch(`http://127.0.0.1:${server.address().port}/api/inngest`, { method: 'PUT' });
  if (put.status !== 200) {
    console.error(`sync failed: HTTP ${put.status} ${await put.text()}`);
    process.exit(1);
  }
  console.log('registered');
});
process.on('SIGTERM', () => { server.closeAllConnections(); server.close(); process.exit(0); });
