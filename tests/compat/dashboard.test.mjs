// The dashboard in a real browser: playwright-core (pinned in package.json) drives Debian's
// Chromium, headless, against a coordinator with a dashboard token, the C++ test host and
// real runs (completed, retried, failed, sleeping, a blocked lane). Every page is also
// saved as a screenshot in FUNCKY_SCREENSHOTS (default build/screenshots/).
//
// Run by `make test` through CTest.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import {
  freePort, getJson, repo, spawnLogged, startCoordinator, stopAll, testHostBin, waitFor, workDir,
} from './harness.mjs';

const TOKEN = 'dashboard-test-token';
const shots = process.env.FUNCKY_SCREENSHOTS || join(repo, 'build', 'screenshots');
const chromiumBin = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
let base;
let browser;
let page;
const runs = {}; // name -> run id

const auth = { Authorization: `Bearer ${TOKEN}` };
const apiGet = async (path) => {
  const r = await fetch(`${base}${path}`, { headers: auth });
  return { status: r.status, body: await r.json() };
};

async function startRun(event) {
  const r = await fetch(`${base}/e/test`, { method: 'POST', body: JSON.stringify(event) });
  const { ids } = await r.json();
  return waitFor(async () => (await apiGet(`/v1/events/${ids[0]}`)).body.data.runs[0]?.id);
}

const runStatus = (id, statuses) => waitFor(async () => {
  const { body } = await apiGet(`/v1/runs/${id}`);
  return statuses.includes(body.data.status) ? body.data : null;
});

async function shot(name) {
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

before(async () => {
  mkdirSync(shots, { recursive: true });
  const work = workDir();
  const coordinator = await startCoordinator(work, ['--dashboard-token', TOKEN,
    '--retry-schedule', '100ms', '--retry-jitter', '0s']);
  base = coordinator.base;
  spawnLogged(testHostBin, ['--port', String(await freePort()), '--coordinator', base],
    join(work, 'host.log'));
  await waitFor(async () => (await apiGet('/v1/functions')).body.data.length > 0);
  runs.completed = await startRun({ name: 'test/two-steps', data: { n: 1 } });
  runs.retried = await startRun({ name: 'test/flaky', data: { fail_times: 2 } });
  runs.failed = await startRun({ name: 'test/fails', data: { order: 7 } });
  runs.sleeping = await startRun({ name: 'test/cancellable', data: { id: 1 } });
  runs.blocked = await startRun({ name: 'test/ordered', data: { key: 'acme', seq: 1, fail: true } });
  await runStatus(runs.completed, ['completed']);
  await runStatus(runs.retried, ['completed']);
  await runStatus(runs.failed, ['failed']);
  await runStatus(runs.sleeping, ['sleeping']);
  await runStatus(runs.blocked, ['blocked']);

  browser = await chromium.launch({ executablePath: chromiumBin, args: ['--no-sandbox'] });
  page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
});

after(async () => {
  await browser?.close();
  stopAll();
});

test('the token is required: without it or with a wrong one, only the token form', async () => {
  assert.equal((await fetch(`${base}/v1/runs`)).status, 401);
  assert.equal((await fetch(`${base}/v1/runs`, { headers: { Authorization: 'Bearer wrong' } })).status, 401);
  await page.goto(`${base}/#/runs`);
  await page.getByRole('heading', { name: 'Token required' }).waitFor();
  assert.equal(await page.locator('tr.run-row').count(), 0);
  await page.fill('#token', 'wrong');
  await page.click('#token-form button');
  await page.getByRole('heading', { name: 'Token required' }).waitFor();
  await shot('token');
  await page.fill('#token', TOKEN);
  await page.click('#token-form button');
  await page.locator('table[data-testid="runs"]').waitFor();
});

test('the runs list shows completed and failed runs, and filters them', async () => {
  await page.goto(`${base}/#/runs`);
  await page.locator(`tr[data-run="${runs.failed}"]`).waitFor();
  assert.equal(await page.locator(`tr[data-run="${runs.completed}"]`).getAttribute('data-status'), 'completed');
  assert.equal(await page.locator(`tr[data-run="${runs.failed}"]`).getAttribute('data-status'), 'failed');
  assert.match(await page.locator(`tr[data-run="${runs.completed}"]`).innerText(), /test\/two-steps/);
  await shot('runs');
  await page.selectOption('select[name="status"]', 'failed');
  await page.click('#filters button[type="submit"]');
  await page.waitForFunction(() => [...document.querySelectorAll('tr.run-row')]
    .every((r) => r.dataset.status === 'failed'));
  assert.ok(await page.locator(`tr[data-run="${runs.failed}"]`).count() === 1);
  assert.equal(await page.locator(`tr[data-run="${runs.completed}"]`).count(), 0);
});

test('the run page shows the step timeline with each attempt and its error', async () => {
  await page.goto(`${base}/#/runs/${runs.retried}`);
  const step = page.locator('[data-testid="step"][data-step="flaky"]');
  await step.waitFor();
  assert.equal(await step.locator('[data-testid="attempt"]').count(), 3);
  assert.match(await step.innerText(), /flaky failure 1/);
  assert.match(await step.innerText(), /3 attempts/);
  assert.equal(await page.locator('[data-testid="step"][data-step="before"]').count(), 1);
  await shot('run');
});

test('Replay starts a new run that appears in the list', async () => {
  await page.goto(`${base}/#/runs/${runs.completed}`);
  await page.click('#replay');
  await page.waitForFunction((old) => /^#\/runs\/[0-9A-Z]+$/.test(location.hash)
    && !location.hash.endsWith(old), runs.completed);
  const replay = decodeURIComponent(new URL(page.url()).hash.split('/')[2]);
  assert.notEqual(replay, runs.completed);
  await runStatus(replay, ['completed']);
  await page.goto(`${base}/#/runs`);
  await page.locator(`tr[data-run="${replay}"]`).waitFor();
});

// The page's Replay sends an Idempotency-Key, the same again after a failed request, also
// after a reload: a click made again after an answer lost on the way (the run started) shows
// the run the first request started, not a second one; once a replay was answered, the next
// is a new run.
test('Replay clicked again after its answer was lost shows the run the first click started', async () => {
  const openRun = (id) => page.waitForFunction((old) => /^#\/runs\/[0-9A-Z]+$/.test(location.hash)
    && !location.hash.endsWith(old), id);
  await page.goto(`${base}/#/runs/${runs.completed}`);
  await page.locator('#replay').waitFor();
  const keys = [];
  let started;
  await page.route('**/replay', async (route) => {
    keys.push(route.request().headers()['idempotency-key']);
    if (keys.length > 1) return route.continue();
    // The coordinator gets the first request and starts a run; its answer never arrives.
    started = (await (await route.fetch()).json()).data.id;
    return route.abort('connectionreset');
  });
  await page.click('#replay');
  await page.locator('#action-result', { hasText: 'Failed' }).waitFor();
  await page.reload();  // what one does after a failure: the key is the tab's, kept
  await page.locator('#replay').waitFor();
  await page.click('#replay');
  await openRun(runs.completed);
  await page.unroute('**/replay');
  assert.equal(keys.length, 2);
  assert.match(keys[0], /^[0-9a-f]{32}$/);
  assert.equal(keys[1], keys[0]);
  assert.equal(decodeURIComponent(new URL(page.url()).hash.split('/')[2]), started);

  await page.goto(`${base}/#/runs/${runs.completed}`);
  await page.locator(`h1:has-text("${runs.completed}")`).waitFor();
  await page.click('#replay');
  await openRun(runs.completed);
  const again = decodeURIComponent(new URL(page.url()).hash.split('/')[2]);
  assert.notEqual(again, started);
});

test('Cancel cancels a sleeping run', async () => {
  await page.goto(`${base}/#/runs/${runs.sleeping}`);
  await page.locator('.badge.sleeping').first().waitFor();
  await page.click('#cancel');
  try {
    await page.locator('h1 .badge.cancelled').waitFor({ timeout: 15000 });
  } catch (e) {
    const shown = await page.locator('#action-result').textContent().catch(() => '(none)');
    const api = (await apiGet(`/v1/runs/${runs.sleeping}`)).body.data.status;
    throw new Error(`not cancelled: the page says "${shown}", the API says ${api}`);
  }
  assert.equal((await apiGet(`/v1/runs/${runs.sleeping}`)).body.data.status, 'cancelled');
});

test('the event page shows the payload and links to the runs it started', async () => {
  const { body } = await apiGet(`/v1/runs/${runs.failed}`);
  await page.goto(`${base}/#/events`);
  await page.locator('tr.event-row').first().waitFor();
  await shot('events');
  await page.goto(`${base}/#/events/${body.data.event.internal_id}`);
  const link = page.locator(`[data-testid="event-runs"] a[href="#/runs/${runs.failed}"]`);
  await link.waitFor();
  assert.match(await page.locator('main').innerText(), /"order": 7/);
  await shot('event');
  await link.click();
  await page.waitForFunction((id) => location.hash === `#/runs/${id}`, runs.failed);
});

test('functions and lanes pages show config, apps and the blocked lane', async () => {
  await page.goto(`${base}/#/functions`);
  await page.locator('table[data-testid="functions"]').waitFor();
  assert.match(await page.locator('table[data-testid="functions"]').innerText(), /test-ordered/);
  assert.match(await page.locator('table[data-testid="apps"]').innerText(), /test/);
  await shot('functions');
  await page.goto(`${base}/#/lanes?blocked=true`);
  const lane = page.locator('tr.lane-row');
  await lane.waitFor();
  assert.match(await lane.innerText(), /acme/);
  assert.match(await lane.innerText(), /blocked/);
  await shot('lanes');
});

test('Skip head skips the lane of its row, whatever characters the key holds', async () => {
  // A key (event data) holding the character the page once joined function and key with:
  // split on it, the button of lane "acme\u001fdecoy" skipped the head of lane "acme".
  const decoy = await startRun({
    name: 'test/ordered', data: { key: 'acme\u001fdecoy', seq: 1, fail: true },
  });
  await runStatus(decoy, ['blocked']);
  await page.goto(`${base}/#/lanes?blocked=true`);
  const rows = page.locator('tr.lane-row');
  await waitFor(async () => (await rows.count()) === 2);
  const row = rows.filter({ hasText: 'decoy' });
  page.once('dialog', (dialog) => dialog.accept());
  await row.getByRole('button', { name: 'Skip head' }).click();
  const skipped = await runStatus(decoy, ['failed']);
  assert.equal(skipped.error.name, 'Skipped');
  assert.equal((await apiGet(`/v1/runs/${runs.blocked}`)).body.data.status, 'blocked');
});

test('Skip head of a lane waiting for a number gives up only that number, not a run that became head since', async () => {
  // Number 2 waits for 1 (gap_timeout 2 s). The operator clicks Skip head on the waiting lane;
  // while the confirm dialog is open the lane gives up on 1 itself and 2 becomes head and
  // blocks. The click, accepted then, must not fail run 2 (it sent no run id, and the
  // coordinator skipped whatever was head): it names the number it saw, and is refused.
  const waiting = await startRun({ name: 'test/versioned', data: { key: 'gap-wait', seq: 2, fail: true } });
  await page.goto(`${base}/#/lanes`);
  const row = page.locator('tr.lane-row').filter({ hasText: 'gap-wait' });
  await row.waitFor();
  assert.match(await row.innerText(), /waiting/);
  const said = [];
  const onDialog = async (dialog) => {
    said.push(dialog.message());
    if (dialog.type() === 'confirm') await runStatus(waiting, ['blocked']);
    await dialog.accept();
  };
  page.on('dialog', onDialog);
  try {
    await row.getByRole('button', { name: 'Skip head' }).click();
    await waitFor(async () => said.length === 2);
  } finally {
    page.off('dialog', onDialog);
  }
  assert.match(said[0], /Give up on number 1 of lane "gap-wait"/);
  assert.match(said[1], /no longer waits for number 1/);
  assert.equal((await apiGet(`/v1/runs/${waiting}`)).body.data.status, 'blocked');
});

test('a page answered late never replaces the page opened since, nor keeps refreshing', async () => {
  await page.goto(`${base}/#/runs`);
  await page.locator('table[data-testid="runs"]').waitFor();
  // The runs list's next refresh is held a second on its way; meanwhile the user opens a run.
  let listReads = 0;
  const hold = async (route) => {
    listReads += 1;
    await new Promise((resolve) => setTimeout(resolve, 1000));
    await route.continue().catch(() => {});  // the page may have aborted it
  };
  const isList = (url) => url.pathname === '/v1/runs';
  await page.route(isList, hold);
  try {
    await waitFor(async () => listReads > 0);
    await page.evaluate((id) => { location.hash = `#/runs/${id}`; }, runs.completed);
    await page.waitForTimeout(1500);
    assert.match(await page.locator('h1').innerText(), /^Run /);
    // A completed run's page refreshes nothing, the list least of all.
    const seen = listReads;
    await page.waitForTimeout(2500);
    assert.equal(listReads, seen);
    assert.match(await page.locator('h1').innerText(), /^Run /);
  } finally {
    await page.unroute(isList, hold);
  }
});

test('the dashboard will not load inside another page\'s frame', async () => {
  // Another port of the same host is the same site: without frame-ancestors its page could
  // frame the dashboard (the stored token in effect) and lay itself over Replay or Cancel.
  const index = await fetch(`${base}/`);
  assert.match(index.headers.get('content-security-policy'), /frame-ancestors 'none'/);
  assert.equal(index.headers.get('x-frame-options'), 'DENY');
  const framer = createServer((req, res) => {
    res.setHeader('Content-Type', 'text/html');
    res.end(`<!doctype html><iframe src="${base}/"></iframe>`);
  });
  await new Promise((resolve) => framer.listen(0, '127.0.0.1', resolve));
  const framed = await browser.newPage();
  try {
    await framed.goto(`http://127.0.0.1:${framer.address().port}/`, { waitUntil: 'load' });
    const frame = framed.frames().find((f) => f !== framed.mainFrame());
    assert.ok(frame, 'the iframe is there');
    assert.equal(await frame.locator('#main').count(), 0, 'the dashboard rendered inside the frame');
  } finally {
    await framed.close();
    framer.close();
  }
});

test('an event a sequence lane turned away says so on its page', async () => {
  const first = await fetch(`${base}/e/test`, {
    method: 'POST', body: JSON.stringify({ name: 'test/versioned', data: { key: 'dup-page', seq: 1 } }),
  });
  assert.equal(first.status, 200);
  const again = await fetch(`${base}/e/test`, {
    method: 'POST', body: JSON.stringify({ name: 'test/versioned', data: { key: 'dup-page', seq: 1 } }),
  });
  const { ids } = await again.json();
  await waitFor(async () => (await apiGet(`/v1/events/${ids[0]}`)).body.data.lanes.length === 1);
  await page.goto(`${base}/#/events/${ids[0]}`);
  const lanes = page.locator('table[data-testid="event-lanes"]');
  await lanes.waitFor();
  assert.match(await lanes.innerText(), /dup-page[\s\S]*number 1[\s\S]*duplicate/);
  assert.doesNotMatch(await page.locator('main').innerText(), /no function matched/);
});

test('the event page lists the runs flow control skipped; the functions page shows the options',
  async () => {
    const url = 'http://127.0.0.1:1/api';
    const reg = await fetch(`${base}/fn/register`, {
      method: 'POST',
      body: JSON.stringify({
        url, appName: 'gated', sdk: 'test:v0',
        functions: [{
          id: 'gated-once', name: 'gated-once', triggers: [{ event: 'test/gated' }],
          steps: { step: { id: 'step', name: 'step',
            runtime: { type: 'http', url: `${url}?fnId=gated-once` }, retries: { attempts: 1 } } },
          rateLimit: { limit: 1, period: '1h' },
          timeouts: { finish: '1h' },
        }],
      }),
    });
    assert.equal(reg.status, 200, await reg.text());
    const send = async () => (await (await fetch(`${base}/e/test`, {
      method: 'POST', body: JSON.stringify({ name: 'test/gated', data: {} }) })).json()).ids[0];
    await send();
    const skipped = await send();
    await page.goto(`${base}/#/events/${skipped}`);
    const skips = page.locator('[data-testid="event-skips"]');
    await skips.waitFor();
    assert.match(await skips.innerText(), /gated-once\s+rate_limit/);
    assert.match(await page.locator('main').innerText(), /flow control skipped it/);
    await shot('event-skipped');
    await page.goto(`${base}/#/functions`);
    const fns = page.locator('table[data-testid="functions"]');
    await fns.waitFor();
    assert.match(await fns.innerText(), /rateLimit/);
    assert.match(await fns.innerText(), /timeouts/);
  });

test('the function page shows each flow-control option in words and as configured, as text only',
  async () => {
    const url = 'http://127.0.0.1:2/api';
    // A key expression that is valid (a string literal) and also HTML: shown, never parsed.
    const hostile = `event.data.k + '<img src=x onerror="window.__pwned=1"><b id="pwn">x</b>'`;
    const fn = {
      id: 'flow-shown', name: 'flow-shown',
      triggers: [{ event: 'test/flow-shown' }, { cron: '*/5 * * * *', jitter: '30s' }],
      steps: { step: { id: 'step', name: 'step',
        runtime: { type: 'http', url: `${url}?fnId=flow-shown` }, retries: { attempts: 2 } } },
      concurrency: [{ limit: 3 }, { limit: 2, key: hostile }],
      throttle: { limit: 5, period: '1m', burst: 2, key: 'event.data.tenant' },
      debounce: { period: '10s', key: 'event.data.user', timeout: '2m' },
      rateLimit: { limit: 100, period: '1h' },
      timeouts: { start: '30s', finish: '5m' },
    };
    const reg = await fetch(`${base}/fn/register`, {
      method: 'POST',
      body: JSON.stringify({ url, appName: 'shown', sdk: 'test:v0', functions: [fn] }),
    });
    assert.equal(reg.status, 200, await reg.text());
    // Another hash than the page's (the last test ended on #/functions), so it renders anew.
    await page.goto(`${base}/#/functions?after=sync`);
    const link = page.locator('tr[data-function="flow-shown"] a[href="#/functions/flow-shown"]');
    await link.waitFor();
    await link.click();
    const table = page.locator('table[data-testid="flow-options"]');
    await table.waitFor();
    const row = async (name) => page.locator(`tr.option-row[data-option="${name}"]`).innerText();
    assert.match(await row('concurrency'), /at most 3 steps in flight for the function/);
    assert.match(await row('concurrency'), /at most 2 steps in flight per value of event\.data\.k \+/);
    assert.match(await row('throttle'), /at most 5 run starts per 1m per value of event\.data\.tenant/);
    assert.match(await row('throttle'), /2 more may start at once/);
    assert.match(await row('throttle'), /"burst": 2/);
    assert.match(await row('debounce'), /one run per burst of events per value of event\.data\.user, 10s after the last event/);
    assert.match(await row('debounce'), /at most 2m after the burst's first event/);
    assert.match(await row('rateLimit'), /at most 100 runs per 1h; events over the limit start no run/);
    assert.match(await row('timeouts'), /not started within 30s/);
    assert.match(await row('timeouts'), /not finished within 5m of its start/);
    assert.match(await row('triggers[1].jitter'), /up to 30s after its tick/);
    assert.match(await page.locator('[data-testid="triggers"]').innerText(),
      /cron \*\/5 \* \* \* \* \(each run up to 30s after its tick\)/);
    // The hostile key is text: the markup shows verbatim, and nothing of it became elements.
    assert.ok((await row('concurrency')).includes('<img src=x onerror="window.__pwned=1"><b id="pwn">x</b>'));
    assert.equal(await page.locator('#pwn').count(), 0);
    assert.equal(await page.locator('main img').count(), 0);
    assert.equal(await page.evaluate(() => window.__pwned), undefined);
    await shot('function');
  });
