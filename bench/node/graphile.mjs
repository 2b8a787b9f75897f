// graphile-worker (pinned in bench/package.json) on the bench's private PostgreSQL cluster, in
// the shape of Funcky's live load: producers add jobs one at a time (one commit per job) while
// one worker process runs them (concurrency 24, no local queue, no batched completion: the
// library's defaults), then one job at a time for the idle add -> start latency.
// Prints one JSON line.
//
//   node graphile.mjs DATABASE_URL JOBS IDLE_SAMPLES
import { run, runMigrations, Logger } from 'graphile-worker';
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { nowMs, percentiles, sleep } from './stats.mjs';

const [url, jobsArg, idleArg] = process.argv.slice(2);
const JOBS = Number(jobsArg), IDLE = Number(idleArg), WARMUP = 20;
const PRODUCERS = 10, CONCURRENCY = 24;
const quiet = new Logger(() => () => {});

const pool = new pg.Pool({ connectionString: url, max: PRODUCERS });
await runMigrations({ connectionString: url, logger: quiet });

const addedAt = new Map();
const startLag = [];
let started = 0, onStart = null;
const taskList = {
  noop: async ({ id }) => {
    const t = addedAt.get(id);
    if (t !== undefined) { startLag.push(nowMs() - t); addedAt.delete(id); }
    started++;
    if (onStart) onStart();
  },
};

let succeeded = 0, lastDone = 0, onDone = null;
const runner = await run({
  connectionString: url, concurrency: CONCURRENCY, maxPoolSize: CONCURRENCY + 1,
  noHandleSignals: true, logger: quiet, taskList,
  preset: { worker: { localQueue: { size: -1 }, completeJobBatchDelay: -1, failJobBatchDelay: -1 } },
});
runner.events.on('job:success', () => { succeeded++; lastDone = nowMs(); if (onDone) onDone(); });
await sleep(500); // the worker's connections and LISTEN are up

const addJob = (client, id) =>
  client.query("select graphile_worker.add_job('noop', json_build_object('id', $1::int))", [id]);

// Live: PRODUCERS connections add JOBS jobs, each in its own transaction.
let next = 0;
const t0 = nowMs();
const allDone = new Promise((resolve) => { onDone = () => { if (succeeded >= JOBS) resolve(); }; });
await Promise.all(Array.from({ length: PRODUCERS }, async () => {
  const client = await pool.connect();
  try {
    for (let id = next++; id < JOBS; id = next++) {
      addedAt.set(id, nowMs());
      await addJob(client, id);
    }
  } finally { client.release(); }
}));
await allDone;
const live = {
  jobs: JOBS, producers: PRODUCERS, concurrency: CONCURRENCY,
  jobs_per_s: Math.round(JOBS / ((lastDone - t0) / 1000)), add_to_start_ms: percentiles(startLag),
};
onDone = null;

// Idle: add one job, wait until its task starts, repeat.
startLag.length = 0;
const client = await pool.connect();
for (let i = 0; i < WARMUP + IDLE; i++) {
  const id = JOBS + i;
  const began = new Promise((resolve) => { onStart = resolve; });
  addedAt.set(id, nowMs());
  await addJob(client, id);
  await began;
  if (i === WARMUP - 1) startLag.length = 0;
}
client.release();
onStart = null;

await runner.stop();
await pool.end();
console.log(JSON.stringify({
  version: JSON.parse(readFileSync(new URL('../node_modules/graphile-worker/package.json', import.meta.url))).version,
  live, idle_add_to_start_ms: percentiles(startLag),
}));
