// The harness itself: a private PostgreSQL cluster does not outlive a test process that dies
// before stopAll() (as one killed by ctest's timeout does): its watchdog stops it by its PID.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { waitFor } from './harness.mjs';

const alive = (pid) => {
  try { process.kill(pid, 0); return true; } catch { return false; }
};

test('a cluster whose test process was killed is stopped by its watchdog', async () => {
  // A test process that starts a coordinator on a cluster, says where, and waits to be killed.
  const script = `
    import { startCoordinator, workDir } from ${JSON.stringify(new URL('./harness.mjs', import.meta.url).href)};
    const work = workDir();
    const c = await startCoordinator(work);
    console.log(JSON.stringify({ work, funcky: c.pid() }));
    setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script],
                      { env: process.env, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  const started = await waitFor(() => out.includes('\n') && JSON.parse(out), 60000);
  const pidFile = `${started.work}/pg/postmaster.pid`;
  const postmaster = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
  assert.ok(alive(postmaster));

  child.kill('SIGKILL');
  // ctest would have killed the coordinator with its tree; here, by its PID.
  process.kill(started.funcky, 'SIGKILL');
  await waitFor(() => !alive(postmaster), 20000);
  assert.equal(existsSync(pidFile), false, 'stopped cleanly, as pg.sh stop does');
  rmSync(started.work, { recursive: true, force: true });  // its process had no exit to do it
});
