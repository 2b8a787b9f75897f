// The Restate peer's service (SDK pinned in bench/package.json): a Virtual Object `lane` whose
// exclusive handler `apply` does two durable ctx.run steps and returns, the shape of the Funcky
// hosts' two-step function. It counts the invocations that ran to their end (once each: a
// replay re-runs the handler body) and serves the count on a small HTTP/1.1 port.
//
//   node restate_service.mjs SERVICE_PORT STATS_PORT        # both on 127.0.0.1
import http from 'node:http';
import http2 from 'node:http2';
import * as restate from '@restatedev/restate-sdk';
import { nowMs } from './stats.mjs';

const [servicePort, statsPort] = process.argv.slice(2).map(Number);
const finished = new Set();
let lastAt = 0;

const lane = restate.object({
  name: 'lane',
  handlers: {
    apply: async (ctx) => {
      const a = await ctx.run('first', () => 'A');
      const b = await ctx.run('second', () => a + 'B');
      if (!finished.has(ctx.request().id)) { finished.add(ctx.request().id); lastAt = nowMs(); }
      return { b };
    },
  },
});

const endpoint = http2.createServer(restate.createEndpointHandler({ services: [lane] }));
endpoint.listen(servicePort, '127.0.0.1');
const stats = http.createServer((req, res) => {
  if (req.url === '/reset') finished.clear();
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ done: finished.size, lastAt }));
});
stats.listen(statsPort, '127.0.0.1');
process.on('SIGTERM', () => { endpoint.close(); stats.close(); process.exit(0); });
