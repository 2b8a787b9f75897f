// The Funcky dashboard: a single page over the coordinator's JSON API (/v1/*). No build
// step and no dependencies; the coordinator serves this file from its binary.
'use strict';

const main = document.getElementById('main');
const TOKEN_KEY = 'funcky-dashboard-token';
const TERMINAL = ['completed', 'failed', 'cancelled'];
const STATUSES = ['queued', 'running', 'sleeping', 'waiting', 'blocked', 'completed', 'failed',
  'cancelled'];
let refreshTimer = null;
// The page being loaded: a render that starts aborts the one before it, whose answers would
// otherwise replace the newer page (a refresh answered after a click on a link) and leave a
// second refresh timer running.
let pageLoad = null;

class AuthError extends Error {}

const esc = (v) => String(v ?? '').replace(/[&<>"']/g,
  (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
const json = (v) => `<pre>${esc(JSON.stringify(v, null, 2))}</pre>`;
const badge = (status) => `<span class="badge ${esc(status)}">${esc(status)}</span>`;
const time = (t) => (t ? new Date(t).toLocaleString() : '—');
const ms = (n) => (n == null ? '—' : n < 1000 ? `${n} ms` : `${(n / 1000).toFixed(n < 10000 ? 2 : 1)} s`);
const enc = encodeURIComponent;

// A page's reads (GETs) belong to its load and end with it; an action (a POST) is never
// aborted: sent, it may have been done.
async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  const token = localStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  if (options.body) headers['Content-Type'] = 'application/json';
  const signal = options.method ? undefined : pageLoad?.signal;
  const r = await fetch(path, { ...options, headers, signal });
  if (r.status === 401) throw new AuthError('a token is required');
  const body = await r.json().catch(() => null);
  signal?.throwIfAborted();
  if (!r.ok) throw new Error(body?.error?.message || `HTTP ${r.status}`);
  return body;
}

function route() {
  const [path, query] = (location.hash.slice(1) || '/runs').split('?');
  const parts = path.split('/').filter(Boolean);
  return { parts, params: new URLSearchParams(query || '') };
}

function setHash(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v) q.set(k, v);
  const s = q.toString();
  location.hash = `#${path}${s ? `?${s}` : ''}`;
}

async function render() {
  clearInterval(refreshTimer);
  pageLoad?.abort();
  const load = new AbortController();
  pageLoad = load;
  const { parts, params } = route();
  for (const a of document.querySelectorAll('nav a')) {
    a.classList.toggle('active', a.dataset.nav === parts[0]);
  }
  document.getElementById('signout').hidden = !localStorage.getItem(TOKEN_KEY);
  try {
    if (parts[0] === 'runs' && parts[1]) await renderRun(decodeURIComponent(parts[1]));
    else if (parts[0] === 'events' && parts[1]) await renderEvent(decodeURIComponent(parts[1]));
    else if (parts[0] === 'events') await renderEvents(params);
    else if (parts[0] === 'functions' && parts[1]) await renderFunction(decodeURIComponent(parts[1]));
    else if (parts[0] === 'functions') await renderFunctions();
    else if (parts[0] === 'lanes') await renderLanes(params);
    else await renderRuns(params);
  } catch (e) {
    if (load.signal.aborted) return;  // a newer render owns the page
    if (e instanceof AuthError) renderTokenForm();
    else {
      main.innerHTML = `<div class="error" data-testid="error">Could not load this page: ${esc(e.message)}.
        Is the coordinator running? <button class="link" id="retry">Try again</button></div>`;
      document.getElementById('retry').addEventListener('click', render);
    }
  }
}

function renderTokenForm() {
  main.innerHTML = `<form class="token" id="token-form">
    <h1>Token required</h1>
    <p class="muted">This coordinator asks for its dashboard token (<code>--dashboard-token</code>).</p>
    <input type="password" id="token" placeholder="Token" autocomplete="current-password" required>
    <button class="primary" type="submit">Open the dashboard</button></form>`;
  document.getElementById('token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    localStorage.setItem(TOKEN_KEY, document.getElementById('token').value);
    render();
  });
}

// Runs: filters, a page of runs and live refresh of the first page.
async function renderRuns(params) {
  const q = new URLSearchParams();
  for (const k of ['function', 'status', 'key', 'cursor']) if (params.get(k)) q.set(k, params.get(k));
  for (const k of ['from', 'to']) if (params.get(k)) q.set(k, new Date(params.get(k)).toISOString());
  const [runs, functions] = await Promise.all([api(`/v1/runs?${q}`), api('/v1/functions')]);
  const option = (value, label, selected) =>
    `<option value="${esc(value)}"${selected ? ' selected' : ''}>${esc(label)}</option>`;
  const rows = runs.data.map((r) => `<tr class="run-row" data-status="${esc(r.status)}" data-run="${esc(r.id)}">
      <td>${badge(r.status)}</td>
      <td><a class="mono" href="#/runs/${enc(r.id)}">${esc(r.id)}</a></td>
      <td>${esc(r.function_id)}</td><td>${esc(r.key ?? '')}</td>
      <td><a href="#/events/${enc(r.event_id)}">${esc(r.event_name)}</a></td>
      <td>${time(r.started_at || r.created_at)}</td><td>${ms(r.duration_ms)}</td></tr>`).join('');
  const filtered = ['function', 'status', 'key', 'from', 'to'].some((k) => params.get(k));
  main.innerHTML = `<h1>Runs</h1>
    <form class="filters" id="filters">
      <label>Function<select name="function">${option('', 'All functions', false)}
        ${functions.data.map((f) => option(f.id, f.id, f.id === params.get('function'))).join('')}</select></label>
      <label>Status<select name="status">${option('', 'Any status', false)}
        ${STATUSES.map((s) => option(s, s, s === params.get('status'))).join('')}</select></label>
      <label>Key<input name="key" value="${esc(params.get('key') || '')}" placeholder="lane key"></label>
      <label>From<input type="datetime-local" name="from" value="${esc(params.get('from') || '')}"></label>
      <label>To<input type="datetime-local" name="to" value="${esc(params.get('to') || '')}"></label>
      <button class="primary" type="submit">Filter</button>
      <label class="muted"><span><input type="checkbox" id="live" ${params.get('cursor') ? '' : 'checked'}> Live</span></label>
    </form>
    ${runs.data.length ? `<table data-testid="runs"><thead><tr><th>Status</th><th>Run</th><th>Function</th>
      <th>Key</th><th>Event</th><th>Started</th><th>Duration</th></tr></thead><tbody>${rows}</tbody></table>`
    : `<div class="empty" data-testid="empty">${filtered ? 'No runs match these filters.'
      : functions.data.length ? 'No runs yet: send an event to start one.'
        : 'No functions yet: start a host or sync an app (Functions page).'}</div>`}
    <div class="pager">${params.get('cursor') ? '<button class="link" id="newest">Newest</button>' : ''}
      ${runs.cursor ? `<button id="older">Older runs</button>` : ''}</div>`;
  const form = document.getElementById('filters');
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    setHash('/runs', Object.fromEntries(new FormData(form)));
  });
  document.getElementById('older')?.addEventListener('click', () =>
    setHash('/runs', { ...Object.fromEntries(params), cursor: runs.cursor }));
  // The first page of the same filters.
  document.getElementById('newest')?.addEventListener('click', () =>
    setHash('/runs', { ...Object.fromEntries(params), cursor: '' }));
  if (!params.get('cursor')) {
    refreshTimer = setInterval(() => {
      // Not while a filter is being edited (the Live box itself aside).
      const editing = document.activeElement?.closest('form') && document.activeElement.id !== 'live';
      if (document.getElementById('live')?.checked && !editing) render();
    }, 2000);
  }
}

// The Idempotency-Key of each run's next replay: a click made again after a failed request
// (whose answer may have been lost on the way, the run started) sends it again and gets the run
// the first started; dropped once a replay is answered, so the next click replays anew. Kept in
// the tab's sessionStorage, so a reload keeps it too. (crypto.getRandomValues, unlike
// randomUUID, works on plain http:// too.)
const replayKeyName = (runId) => `funcky-replay-key:${runId}`;
function replayKey(runId) {
  let key = sessionStorage.getItem(replayKeyName(runId));
  if (!key) {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    key = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
    sessionStorage.setItem(replayKeyName(runId), key);
  }
  return key;
}

// One run: its event, a timeline of steps with attempts, its output; Replay and Cancel.
async function renderRun(id) {
  const { data: run } = await api(`/v1/runs/${enc(id)}`);
  const start = Date.parse(run.started_at || run.created_at);
  const end = run.ended_at ? Date.parse(run.ended_at) : Date.now();
  const span = Math.max(end - start, 1);
  const bar = (a, b) => {
    if (!a) return '';
    const left = Math.max(0, (Date.parse(a) - start) / span * 100);
    const width = Math.max(0.5, ((b ? Date.parse(b) : end) - Date.parse(a)) / span * 100);
    return `<div class="bar"><span style="left:${left.toFixed(2)}%;width:${Math.min(width, 100 - left).toFixed(2)}%"></span></div>`;
  };
  const steps = run.steps.map((s) => `<div class="step" data-testid="step" data-step="${esc(s.name)}">
      <div class="head">${badge(s.status)}<strong>${esc(s.name)}</strong>
        <span class="muted">${s.attempts} attempt${s.attempts === 1 ? '' : 's'}</span></div>
      ${bar(s.started_at || s.ended_at, s.ended_at)}
      ${s.attempt_log.length ? `<ol class="attempts" start="1">${s.attempt_log.map((a) =>
        `<li data-testid="attempt">${esc(a.outcome)} · ${ms(a.duration_ms)} · ${time(a.started_at)}${a.error
          ? ` — <span class="error-text">${esc(a.error.name || 'Error')}: ${esc(a.error.message || '')}</span>` : ''}</li>`).join('')}</ol>` : ''}
      ${s.output != null ? `<details><summary>Output</summary>${json(s.output)}</details>` : ''}
      ${s.error ? `<details open><summary>Error</summary>${json(s.error)}</details>` : ''}</div>`).join('');
  main.innerHTML = `<h1>Run <span class="mono">${esc(run.id)}</span> ${badge(run.status)}</h1>
    <div class="actions">
      <button class="primary" id="replay">Replay</button>
      ${TERMINAL.includes(run.status) ? '' : '<button class="danger" id="cancel">Cancel</button>'}
      <span class="muted" id="action-result" data-testid="action-result"></span>
    </div>
    <dl class="meta">
      <dt>Function</dt><dd>${esc(run.function_id)}</dd>
      <dt>Key</dt><dd>${esc(run.key ?? '—')}</dd>
      <dt>Event</dt><dd><a href="#/events/${enc(run.event.internal_id)}">${esc(run.event.name)}</a>${run.events ? ` and ${run.events.length - 1} more (a batch)` : ''}</dd>
      <dt>Created</dt><dd>${time(run.created_at)}</dd>
      <dt>Started</dt><dd>${time(run.started_at)}</dd>
      <dt>Ended</dt><dd>${time(run.ended_at)}</dd>
      <dt>Duration</dt><dd>${ms(run.duration_ms)}</dd>
    </dl>
    <h2>Steps</h2>
    <div class="timeline" data-testid="timeline">${steps || '<div class="empty">No step has run yet.</div>'}</div>
    ${run.output != null ? `<h2>Output</h2>${json(run.output)}` : ''}
    ${run.error ? `<h2>Error</h2>${json(run.error)}` : ''}
    ${run.events ? `<h2>Batch of ${run.events.length} events</h2><table data-testid="run-events"><tbody>${run.events.map((e, i) => `<tr><td>${i + 1}</td>
      <td><a href="#/events/${enc(e.internal_id)}">${esc(e.name)}</a></td><td>${json(e.payload)}</td></tr>`).join('')}</tbody></table>`
    : `<h2>Trigger event</h2>${json(run.event.payload)}`}`;
  // An action's failure is shown next to the buttons, never swallowed.
  const act = (fn) => async () => {
    clearInterval(refreshTimer);  // no refresh may replace the page under the action
    try {
      await fn();
    } catch (e) {
      document.getElementById('action-result').textContent = `Failed: ${e.message}`;
    }
  };
  const replay = document.getElementById('replay');
  replay.addEventListener('click', act(async () => {
    // One replay request at a time; after an answer, the button stays off until the new
    // run's page replaces this one.
    replay.disabled = true;
    let data;
    try {
      ({ data } = await api(`/v1/runs/${enc(run.id)}/replay`,
        { method: 'POST', headers: { 'Idempotency-Key': replayKey(run.id) } }));
    } catch (e) {
      replay.disabled = false;
      throw e;
    }
    sessionStorage.removeItem(replayKeyName(run.id));
    location.hash = `#/runs/${enc(data.id)}`;
  }));
  const cancel = document.getElementById('cancel');
  cancel?.addEventListener('click', act(async () => {
    cancel.disabled = true;  // one cancel request at a time
    try {
      await api(`/v1/runs/${enc(run.id)}/cancel`, { method: 'POST' });
    } catch (e) {
      cancel.disabled = false;
      throw e;
    }
    await render();
  }));
  if (!TERMINAL.includes(run.status)) refreshTimer = setInterval(render, 2000);
}

async function renderEvents(params) {
  const q = new URLSearchParams();
  for (const k of ['name', 'cursor']) if (params.get(k)) q.set(k, params.get(k));
  const events = await api(`/v1/events?${q}`);
  main.innerHTML = `<h1>Events</h1>
    <form class="filters" id="filters"><label>Name<input name="name" value="${esc(params.get('name') || '')}"
      placeholder="e.g. app/user.created"></label><button class="primary" type="submit">Filter</button></form>
    ${events.data.length ? `<table data-testid="events"><thead><tr><th>Name</th><th>Id</th><th>Received</th></tr></thead>
      <tbody>${events.data.map((e) => `<tr class="event-row"><td><a href="#/events/${enc(e.internal_id)}">${esc(e.name)}</a></td>
        <td class="mono">${esc(e.id)}</td><td>${time(e.received_at)}</td></tr>`).join('')}</tbody></table>`
    : '<div class="empty">No events yet: send one with POST /e/{event key}.</div>'}
    <div class="pager">${events.cursor ? '<button id="older">Older events</button>' : ''}</div>`;
  const form = document.getElementById('filters');
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    setHash('/events', Object.fromEntries(new FormData(form)));
  });
  document.getElementById('older')?.addEventListener('click', () =>
    setHash('/events', { ...Object.fromEntries(params), cursor: events.cursor }));
}

async function renderEvent(id) {
  const { data: e } = await api(`/v1/events/${enc(id)}`);
  main.innerHTML = `<h1>Event ${esc(e.name)}</h1>
    <dl class="meta"><dt>Id</dt><dd class="mono">${esc(e.id)}</dd><dt>Internal id</dt><dd class="mono">${esc(e.internal_id)}</dd>
      <dt>Received</dt><dd>${time(e.received_at)}</dd></dl>
    <h2>Runs it started</h2>
    ${e.runs.length ? `<table data-testid="event-runs"><tbody>${e.runs.map((r) => `<tr><td>${badge(r.status)}</td>
      <td><a class="mono" href="#/runs/${enc(r.id)}">${esc(r.id)}</a></td><td>${esc(r.function_id)}</td></tr>`).join('')}</tbody></table>`
    : `<div class="empty">This event started no run (${(e.skipped || []).length ? 'flow control skipped it'
      : (e.lanes || []).length ? 'a sequence lane turned its number away' : 'no function matched it'}).</div>`}
    ${(e.lanes || []).length ? `<h2>Sequence lanes</h2><table data-testid="event-lanes"><tbody>${e.lanes.map((l) =>
      `<tr><td>${esc(l.function_id)}</td><td class="mono">${esc(l.key)}</td><td>number ${esc(l.number)}</td><td>${esc(l.outcome)}</td>
        <td>${l.run_id ? `<a class="mono" href="#/runs/${enc(l.run_id)}">${esc(l.run_id)}</a>` : ''}</td></tr>`).join('')}</tbody></table>` : ''}
    ${(e.skipped || []).length ? `<h2>Runs flow control skipped</h2><table data-testid="event-skips"><tbody>${e.skipped.map((s) =>
      `<tr><td>${esc(s.function_id)}</td><td>${esc(s.reason)}</td><td class="mono">${esc(s.key)}</td><td>${time(s.at)}</td></tr>`).join('')}</tbody></table>` : ''}
    <h2>Payload</h2>${json(e.payload)}`;
}

// The parts of a function config that are not flow control: shown on their own.
const NOT_FLOW = ['id', 'name', 'triggers', 'steps'];

const triggerText = (t) => (t.cron
  ? `cron ${t.cron}${t.jitter ? ` (each run up to ${t.jitter} after its tick)` : ''}`
  : `${t.event}${t.expression ? ` if ${t.expression}` : ''}`);
const triggersText = (c) => (c.triggers || []).map(triggerText).join(', ') || 'invoke only';
const retriesText = (c) => {
  const n = c.steps?.step?.retries?.attempts;
  return n == null ? 'default (4 retries)' : `${n} retr${n === 1 ? 'y' : 'ies'} per step`;
};
// Every option of the config that is set, flow control or not yet known to this page.
const flowOptions = (c) => Object.entries(c || {}).filter(([k, v]) => !NOT_FLOW.includes(k) && v != null);

// The options of a lane besides its key (on `ordering` or on a {limit: 1, key} concurrency).
function laneWords(o) {
  const out = [];
  if (o.sequence) {
    out.push(`runs start in the order of the producer's number ${o.sequence}, not of arrival`);
    if (o.gap_timeout) out.push(`a missing number is waited for ${o.gap_timeout}, then given up on`);
    if (o.start != null) out.push(`a new lane expects number ${o.start} first`);
    out.push(`a number below the next one is ${o.stale === 'run' ? 'run after the head' : 'skipped'}`);
  }
  if (o.head_timeout) out.push(`a run holding its lane longer than ${o.head_timeout} fails and the lane moves on`);
  if (o.bypass) out.push(`events for which ${o.bypass} is true run at once, outside their lane`);
  return out;
}

// An option in words: one sentence a line. Every value is a string to be escaped by the
// caller; an option this page does not know is shown by its name and JSON.
function optionWords(name, v) {
  const per = (key) => (key ? ` per value of ${key}` : '');
  switch (name) {
    case 'concurrency':
      return (Array.isArray(v) ? v : [v]).flatMap((e) => {
        const c = typeof e === 'number' ? { limit: e } : (e || {});
        const scope = c.scope && c.scope !== 'fn' ? ` (scope ${c.scope})` : '';
        if (c.limit === 1 && c.key) {
          return [`one run at a time per value of ${c.key}, in the order the events arrived (a lane)${scope}`,
            ...laneWords(c)];
        }
        if (!c.limit) return [`no limit on steps in flight${per(c.key)}${scope}`];
        return [`at most ${c.limit} step${c.limit === 1 ? '' : 's'} in flight${c.key ? per(c.key) : ' for the function'}${scope}`];
      });
    case 'ordering':
      return [`runs of each value of ${v.key} start one after another, each when the one before it has finished`,
        ...laneWords(v)];
    case 'rateLimit':
      return [`at most ${v.limit} run${v.limit === 1 ? '' : 's'} per ${v.period}${per(v.key)}; `
        + 'events over the limit start no run'];
    case 'idempotency':
      return [`one run per value of ${v} per 24 h; later events of a value start no run`];
    case 'singleton':
      return [`one active run at a time${per(v.key)}; `
        + (v.mode === 'cancel' ? 'a new event cancels the active run and starts its own'
          : 'an event while one is active starts no run')];
    case 'timeouts':
      return [v.start && `a run not started within ${v.start} of its event is cancelled`,
        v.finish && `a run not finished within ${v.finish} of its start is cancelled`].filter(Boolean);
    case 'throttle':
      return [`at most ${v.limit} run start${v.limit === 1 ? '' : 's'} per ${v.period}${per(v.key)}, evenly paced; `
        + 'runs over the limit wait their turn in order (none is dropped)',
      v.burst ? `after a quiet spell, ${v.burst} more may start at once` : null].filter(Boolean);
    case 'debounce':
      return [`one run per burst of events${per(v.key)}, ${v.period} after the last event, with that event`
        + (v.timeout ? `; at most ${v.timeout} after the burst's first event` : '')];
    case 'cancel':
      return (Array.isArray(v) ? v : [v]).map((c) => `a run is cancelled by event ${c?.event}`
        + (c?.if ? ` if ${c.if}` : '') + (c?.timeout ? ` within ${c.timeout} of its start` : ''));
    case 'batchEvents':
      return [`runs take batches of up to ${v.maxSize} events, or what arrived within ${v.timeout}${per(v.key)}`];
    case 'priority':
      return [`runs are prioritised by ${v.run}`];
    default:
      return [`${name}: ${JSON.stringify(v)}`];
  }
}

// The rows of a function's options: each set option, and each cron trigger's jitter.
function optionRows(c) {
  const rows = flowOptions(c).map(([k, v]) => {
    let words;
    try {
      words = optionWords(k, v);
    } catch (e) {
      words = [`${k}: ${JSON.stringify(v)}`];  // a shape this page did not expect
    }
    return { name: k, words, raw: v };
  });
  (c.triggers || []).forEach((t, i) => {
    if (t && t.cron && t.jitter) {
      rows.push({ name: `triggers[${i}].jitter`, words: [`each run of cron ${t.cron} starts at a random time up to ${t.jitter} after its tick`], raw: t });
    }
  });
  return rows;
}

async function renderFunction(id) {
  const { data: functions } = await api('/v1/functions');
  const f = functions.find((x) => x.id === id);
  if (!f) {
    main.innerHTML = `<div class="empty" data-testid="error">No active function ${esc(id)}. <a href="#/functions">All functions</a></div>`;
    return;
  }
  const c = f.config || {};
  const rows = optionRows(c);
  main.innerHTML = `<h1>Function <span class="mono">${esc(f.id)}</span></h1>
    <dl class="meta">
      <dt>Name</dt><dd>${esc(c.name ?? f.id)}</dd>
      <dt>App</dt><dd>${esc(f.app_id)}</dd>
      <dt>Triggers</dt><dd data-testid="triggers">${(c.triggers || []).map((t) => `<div>${esc(triggerText(t))}</div>`).join('') || 'invoke only'}</dd>
      <dt>Retries</dt><dd>${esc(retriesText(c))}</dd>
      <dt>Runs</dt><dd><a href="#/runs?function=${enc(f.id)}">Runs of this function</a></dd>
    </dl>
    <h2>Flow control</h2>
    ${rows.length ? `<table data-testid="flow-options"><thead><tr><th>Option</th><th>What it does</th><th>As configured</th></tr></thead>
      <tbody>${rows.map((r) => `<tr class="option-row" data-option="${esc(r.name)}"><td class="mono">${esc(r.name)}</td>
        <td>${r.words.map((w) => `<div>${esc(w)}</div>`).join('')}</td><td>${json(r.raw)}</td></tr>`).join('')}</tbody></table>`
    : '<div class="empty" data-testid="no-options">No flow control: every event starts a run at once.</div>'}
    <h2>Config</h2>${json(c)}`;
}

async function renderFunctions() {
  const [functions, apps] = await Promise.all([api('/v1/functions'), api('/v1/apps')]);
  const config = (c) => {
    const out = Object.fromEntries(flowOptions(c));
    out.retries = c.steps?.step?.retries?.attempts ?? 'default (4)';
    return out;
  };
  main.innerHTML = `<h1>Functions and apps</h1>
    <form class="filters" id="sync"><label>App URL<input name="url" size="50" required
      placeholder="http://127.0.0.1:3000/api/funcky"></label><button class="primary" type="submit">Sync app</button>
      <span id="sync-result" class="muted"></span></form>
    ${apps.data.length ? `<h2>Apps</h2><table data-testid="apps"><thead><tr><th>App</th><th>URL</th><th>SDK</th><th>Last sync</th><th></th></tr></thead>
      <tbody>${apps.data.map((a) => `<tr><td>${esc(a.id)}</td><td class="mono">${esc(a.url)}</td><td>${esc(a.sdk)}</td>
        <td>${time(a.synced_at)}</td><td><button data-sync="${esc(a.url)}">Sync</button></td></tr>`).join('')}</tbody></table>` : ''}
    <h2>Functions</h2>
    ${functions.data.length ? `<table data-testid="functions"><thead><tr><th>Function</th><th>App</th><th>Triggers</th><th>Config</th></tr></thead>
      <tbody>${functions.data.map((f) => `<tr class="function-row" data-function="${esc(f.id)}"><td><a href="#/functions/${enc(f.id)}">${esc(f.id)}</a>
        <div><a class="muted" href="#/runs?function=${enc(f.id)}">runs</a></div></td><td>${esc(f.app_id)}</td>
        <td>${esc(triggersText(f.config || {}))}</td><td>${json(config(f.config || {}))}</td></tr>`).join('')}</tbody></table>`
    : '<div class="empty">No functions yet: start a host, or sync an app by its URL above.</div>'}`;
  const sync = async (url) => {
    const out = document.getElementById('sync-result');
    out.textContent = 'Syncing…';
    try {
      const { data } = await api('/v1/apps/sync', { method: 'POST', body: JSON.stringify({ url }) });
      out.textContent = data.sync_kind === 'in_band'
        ? `Synced ${data.app_id}: ${data.functions} function(s)${data.modified ? '' : ', unchanged'}.`
        : 'The app registered itself (out of band).';
      setTimeout(render, 800);
    } catch (e) {
      out.textContent = `Sync failed: ${e.message}`;
    }
  };
  document.getElementById('sync').addEventListener('submit', (ev) => {
    ev.preventDefault();
    sync(new FormData(ev.target).get('url'));
  });
  for (const b of document.querySelectorAll('[data-sync]')) b.addEventListener('click', () => sync(b.dataset.sync));
}

// A sequence lane: the number it expects next, the numbers waiting, since when it waits for a
// missing one and when it gives up, and the gaps, stale and duplicate numbers it recorded.
function sequenceCell(seq) {
  if (!seq) return '<span class="muted">acceptance order</span>';
  const parts = [`next #${seq.next ?? '—'}`];
  if (seq.waiting.length) parts.push(`waiting ${seq.waiting.map((n) => `#${n}`).join(', ')}`);
  if (seq.gives_up_at) parts.push(`gives up on #${seq.next} at ${esc(seq.gives_up_at)}`);
  parts.push(`${seq.gaps_total} gap(s), ${seq.stale_total} stale, ${seq.duplicates_total} duplicate(s)`);
  if (seq.last_gap) {
    const g = seq.last_gap;
    parts.push(`last gap #${g.first}${g.last !== g.first ? `–#${g.last}` : ''} (${esc(g.reason)})`);
  }
  return parts.map((p) => `<div>${p}</div>`).join('');
}

async function renderLanes(params) {
  const q = new URLSearchParams();
  if (params.get('blocked')) q.set('blocked', 'true');
  if (params.get('cursor')) q.set('cursor', params.get('cursor'));
  const lanes = await api(`/v1/lanes?${q}`);
  main.innerHTML = `<h1>Lanes</h1>
    <p class="muted">Per ordered function, each key with unfinished runs: its depth, its head run and how
      long the head has blocked the key.</p>
    <div class="filters"><label><span><input type="checkbox" id="blocked" ${params.get('blocked') ? 'checked' : ''}>
      Blocked lanes only</span></label></div>
    ${lanes.data.length ? `<table data-testid="lanes"><thead><tr><th>Function</th><th>Key</th><th>Depth</th><th>Head</th>
      <th>Blocked for</th><th>Sequence</th><th></th></tr></thead><tbody>${lanes.data.map((l) => `<tr class="lane-row">
        <td>${esc(l.function_id)}</td><td class="mono">${esc(l.key)}</td><td>${l.depth}</td>
        <td>${badge(l.head.status)} ${l.head.run_id ? `<a class="mono" href="#/runs/${enc(l.head.run_id)}">${esc(l.head.run_id)}</a>` : ''}</td>
        <td>${l.head.status === 'blocked' ? ms(l.blocked_ms) : '—'}</td>
        <td class="sequence">${sequenceCell(l.sequence)}</td>
        <td><button class="danger" data-skip-function="${esc(l.function_id)}" data-skip-key="${esc(l.key)}" data-skip-run="${esc(l.head.run_id || '')}" data-skip-waiting="${esc(l.head.run_id ? '' : String(l.sequence?.next ?? ''))}" ${l.head.run_id || l.sequence?.next != null ? '' : 'disabled'}>Skip head</button></td></tr>`).join('')}</tbody></table>`
    : `<div class="empty">${params.get('blocked') ? 'No lane is blocked.' : 'No lanes: ordered functions have no unfinished runs.'}</div>`}
    <div class="pager">${lanes.cursor ? '<button id="older">More lanes</button>' : ''}</div>`;
  document.getElementById('blocked').addEventListener('change', (ev) =>
    setHash('/lanes', { blocked: ev.target.checked ? 'true' : '' }));
  document.getElementById('older')?.addEventListener('click', () =>
    setHash('/lanes', { ...Object.fromEntries(params), cursor: lanes.cursor }));
  // The function and the key apart: a key (event data) may hold any character, a separator
  // too, and split on it named another lane.
  for (const b of document.querySelectorAll('[data-skip-key]')) {
    b.addEventListener('click', async () => {
      const { skipFunction: fn, skipKey: key, skipRun: run, skipWaiting: waiting } = b.dataset;
      const question = run
        ? `Skip the head of lane "${key}"? It is failed as skipped and the next run starts.`
        : `Give up on number ${waiting} of lane "${key}"? The next number waiting runs.`;
      if (!confirm(question)) return;
      try {
        // The head shown, or the missing number shown, and only it: the page may be older
        // than the lane, and a run that became head meanwhile must not be skipped instead.
        const only = run ? `?run_id=${enc(run)}` : `?waiting_for=${enc(waiting)}`;
        await api(`/v1/lanes/${enc(fn)}/${enc(key)}/skip-head${only}`, { method: 'POST' });
      } catch (e) {
        alert(`Skipping the head of lane "${key}" failed: ${e.message}`);
      }
      render();
    });
  }
  refreshTimer = setInterval(render, 3000);
}

document.getElementById('signout').addEventListener('click', () => {
  localStorage.removeItem(TOKEN_KEY);
  render();
});
window.addEventListener('hashchange', render);
render();
