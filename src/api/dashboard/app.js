// Backprop's dashboard: one page, hash routes, plain DOM. Every number on it comes from the
// public /v1 API (api.js); charts are drawn on canvases (charts.js).

import { api, ApiError, followEvents, getKey, onOpenServer, onUnauthorized, setKey } from './api.js';
import { LineChart, drawBoundary, drawFit, drawPlot, drawRangeTest, fmt, bounds, CLASS_COLORS } from './charts.js';

const STATUSES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'];
const ACTIVATIONS = ['relu', 'tanh', 'sigmoid', 'leaky_relu', 'elu', 'gelu', 'softplus', 'linear', 'softmax'];
const LOSSES = ['binary_crossentropy', 'categorical_crossentropy', 'sparse_categorical_crossentropy', 'mse', 'mae', 'huber'];
const OPTIMIZERS = ['adam', 'adamw', 'sgd', 'rmsprop', 'adagrad', 'adadelta'];

// ---------- DOM helpers ----------

/** `h('a', {href: '#/'}, 'text', child)`; `on*` attributes become listeners. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'value') el.value = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const $ = (sel, root = document) => root.querySelector(sel);
const main = () => $('#main');
const shortId = (id) => (id ? String(id).slice(0, 8) : '');

function toast(msg, kind = 'info') {
  const t = $('#toast');
  t.textContent = msg;
  t.className = `show ${kind}`;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.className = ''; }, 4000);
}

function ago(iso) {
  if (!iso) return '–';
  const s = (Date.now() - Date.parse(iso)) / 1000;
  if (s < 45) return 'just now';
  if (s < 90) return '1 min ago';
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

function duration(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '–';
  if (ms < 10) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 59950) return `${(ms / 1000).toFixed(1)} s`;
  // Rounded once, then split: never "29 min 60 s".
  const s = Math.round(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  const m = Math.round(s / 60);
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

/** A running job's time left, in ms: its epochs to go at its last epoch's time. The job list
 * and the job page both use this, from the same record, so they agree. */
function timeLeft(j) {
  const per = j.metrics?.elapsed_ms;
  return j.status === 'running' && Number.isFinite(per) ? Math.max(0, j.epochs - j.epoch) * per : null;
}

const badge = (status) => h('span', { class: `badge ${status}` }, status);
/** A job's status as a badge, with why it ended when that was not its last epoch. */
const STOP_WORDS = { early_stopping: 'early stopped', stopped_by_user: 'stopped by user' };
const jobBadge = (j) => {
  const why = j.status === 'succeeded' && STOP_WORDS[j.stop_reason];
  return why ? h('span', {}, badge(j.status), h('span', { class: 'sub stop-reason', dataset: { stopReason: j.stop_reason } }, ` · ${why}`)) : badge(j.status);
};

function progress(epoch, epochs, status) {
  const bar = h('div', { class: `bar ${status || ''}`, role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': epochs || 0, 'aria-valuenow': epoch || 0, 'aria-label': 'epochs done' }, h('span'));
  bar.firstChild.style.width = `${epochs ? Math.min(100, (100 * epoch) / epochs) : 0}%`;
  return bar;
}

function errorBox(e) {
  const p = e instanceof ApiError ? e.problem : { title: 'Error', detail: String(e.message || e) };
  return h('div', { class: 'alert error', role: 'alert' }, h('strong', {}, p.title || 'Error'), p.detail ? h('div', {}, p.detail) : null);
}

/** Legend swatches take their colour from data-color (the CSP allows no inline styles). */
function paintLegends(root) {
  for (const i of root.querySelectorAll('.legend i')) {
    if (i.classList.contains('dashed')) i.style.borderTopColor = i.dataset.color;
    else i.style.background = i.dataset.color;
  }
}

function jobName(j) {
  return j.spec?.name || `Job ${shortId(j.id)}`;
}

function section(title, ...body) {
  return h('section', { class: 'card' }, title ? h('h2', {}, title) : null, ...body);
}

function kv(pairs) {
  return h('dl', { class: 'kv' }, pairs.filter(Boolean).map(([k, v]) => [h('dt', {}, k), h('dd', {}, v ?? '–')]));
}

function table(headers, rows, cls = '') {
  return h('div', { class: 'table-wrap' }, h('table', { class: cls },
    h('thead', {}, h('tr', {}, headers.map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, rows)));
}

// ---------- the key ----------

function askKey(why) {
  const d = $('#key-dialog');
  if (d.open) return;
  $('#key-why').textContent = why || 'This server wants an API key. It is kept in this tab\u2019s session storage only and sent as Authorization: Bearer.';
  $('#key-input').value = getKey();
  d.showModal();
  $('#key-input').focus();
}

function setupKeyDialog() {
  const d = $('#key-dialog');
  $('#key-form').addEventListener('submit', (e) => {
    e.preventDefault();
    setKey($('#key-input').value.trim());
    d.close();
    updateKeyButton();
    route();
  });
  $('#key-clear').addEventListener('click', () => { setKey(''); d.close(); updateKeyButton(); route(); });
  $('#key-cancel').addEventListener('click', () => d.close());
  $('#key-button').addEventListener('click', () => askKey('Enter the API key to use from this tab (kept in session storage until the tab closes).'));
  onUnauthorized(() => askKey(getKey() ? 'The server refused this key. Enter a valid API key.' : undefined));
  updateKeyButton();
  // A server without keys answers the page's keyless requests: then there is no key to ask
  // for, and the button would only confuse.
  onOpenServer(() => { $('#key-button').hidden = true; });
}

function updateKeyButton() {
  $('#key-button').textContent = getKey() ? 'Key \u2713' : 'API key';
}

// ---------- routing ----------

let cleanup = [];

function onLeave(fn) {
  cleanup.push(fn);
}

function every(ms, fn) {
  const t = setInterval(fn, ms);
  onLeave(() => clearInterval(t));
}

function aborter() {
  const c = new AbortController();
  onLeave(() => c.abort());
  return c.signal;
}

const routes = [
  [/^#?\/?$/, () => { location.replace('#/jobs'); }],
  [/^#\/jobs$/, viewJobs],
  [/^#\/jobs\/([\w-]+)$/, viewJob],
  [/^#\/new$/, viewNew],
  [/^#\/models$/, viewModels],
  [/^#\/models\/([\w-]+)$/, viewModel],
  [/^#\/datasets$/, viewDatasets],
  [/^#\/datasets\/([\w-]+)$/, viewDataset],
  [/^#\/sweeps$/, viewSweeps],
  [/^#\/sweeps\/([\w-]+)$/, viewSweep],
];

function route() {
  for (const f of cleanup) f();
  cleanup = [];
  const [path, query] = location.hash.split('?');
  const params = new URLSearchParams(query || '');
  const top = (path.split('/')[1] || 'jobs');
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === top) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  for (const [re, view] of routes) {
    const m = path.match(re);
    if (m) {
      const root = main();
      root.replaceChildren();
      Promise.resolve(view(root, ...m.slice(1), params)).catch((e) => {
        if (e?.name === 'AbortError') return;
        root.replaceChildren(errorBox(e));
      });
      return;
    }
  }
  main().replaceChildren(h('h1', {}, 'Not found'), h('p', {}, h('a', { href: '#/jobs' }, 'Back to the jobs')));
}

// ---------- jobs ----------

async function viewJobs(root, params) {
  const filter = params.get('status') || '';
  // One sweep's jobs (its trials included), from its page.
  const sweep = /^[\w-]+$/.test(params.get('sweep_id') || '') ? params.get('sweep_id') : '';
  document.title = 'Jobs · Backprop';
  const chips = h('div', { class: 'chips', role: 'group', 'aria-label': 'Filter by status' },
    ['', ...STATUSES].map((s) => h('a', { class: 'chip', href: `#/jobs?${new URLSearchParams({ ...(s ? { status: s } : {}), ...(sweep ? { sweep_id: sweep } : {}) })}`, 'aria-current': s === filter ? 'true' : null }, s || 'all')));
  const body = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  root.append(h('div', { class: 'page-head' }, h('h1', {}, sweep ? ['Jobs of ', h('a', { href: `#/sweeps/${sweep}` }, `sweep ${shortId(sweep)}`)] : 'Jobs'), h('a', { class: 'button primary', href: '#/new' }, 'New job')),
    ...(sweep ? [] : [h('p', { class: 'muted small' }, 'Sweeps\' trial jobs are listed on their sweep\'s page.')]), chips, body);
  const signal = aborter();
  const load = async () => {
    const page = await api('GET', `/v1/jobs?limit=100${filter ? `&status=${filter}` : ''}${sweep ? `&sweep_id=${sweep}` : ''}`, { signal });
    if (!page.items.length) {
      body.replaceChildren(h('div', { class: 'empty' }, h('p', {}, filter ? `No ${filter} jobs.` : 'No jobs yet.'), h('a', { class: 'button primary', href: '#/new' }, 'Train a model')));
      return;
    }
    body.replaceChildren(table(['Job', 'Status', 'Progress', 'Loss', 'Validation', 'Created'], page.items.map((j) => {
      const m = j.metrics || {};
      return h('tr', { dataset: { job: j.id, status: j.status } },
        h('td', { 'data-label': 'Job' }, h('a', { href: `#/jobs/${j.id}` }, jobName(j)), h('div', { class: 'sub mono' }, shortId(j.id),
          j.sweep ? [' · ', h('a', { href: `#/sweeps/${j.sweep.id}`, class: 'sweep-role' }, j.sweep.role === 'refit' ? `refit of sweep ${shortId(j.sweep.id)}` : `trial ${j.sweep.trial}, rung ${j.sweep.rung + 1}, fold ${j.sweep.fold}`)] : null)),
        h('td', { 'data-label': 'Status' }, jobBadge(j)),
        h('td', { 'data-label': 'Progress', class: 'progress-cell' }, progress(j.epoch, j.epochs, j.status), h('span', { class: 'sub' }, `${j.epoch}/${j.epochs}`, timeLeft(j) != null ? ` · ${duration(timeLeft(j))} left` : '')),
        h('td', { 'data-label': 'Loss', class: 'num' }, fmt(m.loss)),
        h('td', { 'data-label': 'Validation', class: 'num' }, m.val_loss != null ? fmt(m.val_loss) : '–'),
        h('td', { 'data-label': 'Created', title: j.created_at }, ago(j.created_at)));
    }), 'jobs'));
  };
  await load();
  every(2000, () => load().catch(() => {}));
}

function metricSeries(records) {
  const has = (k) => records.some((r) => r[k] != null);
  if (has('accuracy') || has('val_accuracy')) return { title: 'Accuracy', keys: ['accuracy', 'val_accuracy'] };
  if (has('mae') || has('val_mae')) return { title: 'Mean absolute error', keys: ['mae', 'val_mae'] };
  return null;
}

async function viewJob(root, id) {
  const signal = aborter();
  let job = await api('GET', `/v1/jobs/${id}`, { signal });
  // The history comes in pages (`next_since`).
  const history = [];
  for (let since = 0; since != null;) {
    const page = await api('GET', `/v1/jobs/${id}/history?since=${since}`, { signal });
    history.push(...page.epochs);
    since = page.next_since;
  }
  document.title = `${jobName(job)} · Backprop`;

  const head = h('div', { class: 'page-head' });
  const summary = h('div', { class: 'tiles' });
  const errorSlot = h('div');
  const legend = (items) => h('div', { class: 'legend' }, items.map(([label, color, dashed]) => h('span', {}, h('i', { class: dashed ? 'dashed' : '', dataset: { color } }), label)));
  const lossCanvas = h('canvas', { id: 'loss-chart', role: 'img', 'aria-label': 'training and validation loss by epoch' });
  const metricCanvas = h('canvas', { id: 'metric-chart', role: 'img', 'aria-label': 'accuracy or error by epoch' });
  const lrCanvas = h('canvas', { id: 'lr-chart', role: 'img', 'aria-label': 'learning rate by epoch' });
  const metricTitle = h('h2', {}, 'Accuracy');
  const metricCard = section(null, metricTitle, legend([['training', CLASS_COLORS[0]], ['validation', CLASS_COLORS[1], true]]), h('div', { class: 'chart' }, metricCanvas));
  const charts = h('div', { class: 'grid charts' },
    section('Loss', legend([['training', CLASS_COLORS[0]], ['validation', CLASS_COLORS[1], true]]), h('div', { class: 'chart' }, lossCanvas)),
    metricCard,
    section('Learning rate', h('div', { class: 'chart small' }, lrCanvas)));
  const boundarySlot = h('div');
  const rangeSlot = h('div');
  const details = h('div', { class: 'grid two' });
  const liveDot = h('span', { class: 'live', title: 'live' });
  root.append(head, errorSlot, summary, charts, rangeSlot, boundarySlot, details);
  paintLegends(root);

  const records = [...history];
  const lossChart = new LineChart(lossCanvas, { series: [{ key: 'loss', color: CLASS_COLORS[0] }, { key: 'val_loss', color: CLASS_COLORS[1], dashed: true }] });
  const metricChart = new LineChart(metricCanvas, { series: [{ key: 'accuracy', color: CLASS_COLORS[0] }, { key: 'val_accuracy', color: CLASS_COLORS[1], dashed: true }] });
  const lrChart = new LineChart(lrCanvas, { series: [{ key: 'learning_rate', color: CLASS_COLORS[4] }] });
  onLeave(() => [lossChart, metricChart, lrChart].forEach((c) => c.destroy()));

  const drawCharts = () => {
    lossChart.set(records);
    const ms = metricSeries(records);
    metricCard.hidden = !ms && records.length > 0;
    if (ms) {
      metricTitle.textContent = ms.title;
      metricChart.series = [{ key: ms.keys[0], color: CLASS_COLORS[0] }, { key: ms.keys[1], color: CLASS_COLORS[1], dashed: true }];
    }
    metricChart.set(records);
    lrChart.set(records);
  };
  // A job that ended before its first epoch (a diverged loss, a refusal) says so on its
  // charts, and shows no metric chart it never had.
  const endedEmpty = () => {
    if (!terminal() || records.length) return;
    const why = job.status === 'succeeded' ? 'no epoch recorded' : `no epoch finished: the job ${job.status}`;
    for (const c of [lossChart, metricChart, lrChart]) { c.emptyText = why; c.schedule(); }
    metricCard.hidden = true;
  };

  const terminal = (j = job) => ['succeeded', 'failed', 'cancelled'].includes(j.status);
  // A poll answered after a newer state arrived (a Cancel's answer, a status event) must not
  // put the page back to that older state: each status change bumps `changed`, a poll whose
  // answer comes back after a bump is dropped, and a terminal job never turns non-terminal.
  let changed = 0;
  const setJob = (j) => {
    if (terminal() && !terminal(j)) return;
    if (j.status !== job.status) changed += 1;
    job = j;
  };

  const act = (label, cls, path, confirmText) => h('button', { type: 'button', class: cls, onclick: async (e) => {
    if (confirmText && !window.confirm(confirmText)) return;
    e.target.disabled = true;
    try {
      setJob(await api('POST', `/v1/jobs/${id}/${path}`, { signal }));
      renderHead();
      toast(`${label} requested`);
    } catch (err) {
      if (err.name !== 'AbortError') toast(err.message, 'error');
    } finally { e.target.disabled = false; }
  } }, label);

  // A deleted dataset keeps its id in the job; the page says so instead of linking to a 404.
  let datasetGone = false;
  let headKey = '';
  const renderHead = () => {
    // Rebuild the title and buttons only when they change, so a focused or hovered button
    // is not replaced under the user's hand on every epoch.
    const key = `${job.status}|${job.model_id}|${jobName(job)}`;
    if (key !== headKey) {
      headKey = key;
      renderTitle();
    }
    renderBody();
  };
  const renderTitle = () => {
    const actions = h('div', { class: 'actions' });
    if (job.status === 'running') actions.append(act('Stop', 'ghost', 'stop'));
    if (job.status === 'running' || job.status === 'queued') actions.append(act('Cancel', 'danger', 'cancel'));
    if (job.model_id) actions.append(h('a', { class: 'button primary', href: `#/models/${job.model_id}` }, 'Open model'));
    head.replaceChildren(
      h('div', {}, h('div', { class: 'crumbs' }, h('a', { href: '#/jobs' }, 'Jobs'), ' / ', h('span', { class: 'mono' }, shortId(job.id))),
        h('h1', {}, jobName(job), ' ', jobBadge(job), job.status === 'running' ? liveDot : null)),
      actions);
  };
  // The learning-rate range test a job with "learning_rate": "auto" ran first: its curve
  // and the rate it chose. Drawn once it exists (the job records it before epoch 1).
  let rangeDrawn = false;
  const renderRange = () => {
    const t = job.lr_range_test;
    if (rangeDrawn || !t || !Array.isArray(t.points)) return;
    rangeDrawn = true;
    const chosen = t.learning_rate ?? t.suggested;
    const canvas = h('canvas', { id: 'lr-range-chart', role: 'img', 'aria-label': 'loss against learning rate in the range test, the chosen rate marked' });
    // (single-precision rates: equal to 6 significant digits is the same rate)
    const same = (a) => a != null && Math.abs(chosen - a) <= 1e-6 * Math.abs(a);
    const how = same(t.steepest) ? 'the steepest descent of the smoothed loss'
      : same(t.minimum_over_10) ? 'the minimum ÷ 10' : 'the optimizer\'s default';
    rangeSlot.replaceChildren(section('Learning-rate range test',
      h('p', { class: 'muted', id: 'lr-range-caption' },
        `Trains at ${fmt(chosen, 3)}: ${how}. Steepest ${fmt(t.steepest, 3)} · minimum ${fmt(t.minimum, 3)} · minimum ÷ 10 ${fmt(t.minimum_over_10, 3)} · ${t.points.length} batches, ended ${t.end}.`),
      t.note ? h('p', { class: 'muted', id: 'lr-range-note' }, `No steepest descent: ${t.note}.`) : null,
      h('div', { class: 'chart' }, canvas)));
    const draw = () => drawRangeTest(canvas, { points: t.points, marked: chosen });
    requestAnimationFrame(draw);
    const observer = new ResizeObserver(() => requestAnimationFrame(draw));
    observer.observe(canvas);
    onLeave(() => observer.disconnect());
  };
  const renderBody = () => {
    renderRange();
    const m = records.at(-1) || job.metrics || {};
    const ms = metricSeries(records);
    const tiles = [
      ['Epoch', `${job.epoch} / ${job.epochs}`, progress(job.epoch, job.epochs, job.status)],
      ['Loss', fmt(m.loss)],
      ['Validation loss', fmt(m.val_loss)],
      // Training and validation figures side by side: one tile each, never one under the
      // other's name.
      ms && m[ms.keys[0]] != null ? [ms.keys[0] === 'accuracy' ? 'Accuracy' : 'MAE', fmt(m[ms.keys[0]])] : null,
      ms && m[ms.keys[1]] != null ? [ms.keys[1] === 'val_accuracy' ? 'Validation accuracy' : 'Validation MAE', fmt(m[ms.keys[1]])] : null,
      ['Time per epoch', duration(m.elapsed_ms)],
      [job.status === 'running' ? 'Time left' : 'Queue', job.status === 'running' ? duration(timeLeft(job) ?? NaN) : (job.queue_position != null ? `#${job.queue_position}` : '–')],
    ].filter(Boolean);
    summary.replaceChildren(...tiles.map(([k, v, extra]) => h('div', { class: 'tile' }, h('div', { class: 'k' }, k), h('div', { class: 'v', dataset: { tile: k } }, v), extra)));
    errorSlot.replaceChildren();
    if (job.error) errorSlot.append(h('div', { class: 'alert error', role: 'alert', id: 'job-error' }, h('strong', {}, job.error.title || 'Failed'), h('div', {}, job.error.detail || JSON.stringify(job.error))));
    if (job.stop_reason && job.stop_reason !== 'completed') errorSlot.append(h('div', { class: 'alert info' }, `Stopped: ${job.stop_reason.replaceAll('_', ' ')}`));
    const started = job.started_at ? Date.parse(job.started_at) : null;
    const finished = job.finished_at ? Date.parse(job.finished_at) : null;
    const trainMs = records.reduce((s, r) => s + (r.elapsed_ms || 0), 0);
    details.replaceChildren(
      section('Timings', kv([
        ['Created', new Date(job.created_at).toLocaleString()],
        ['Started', started ? new Date(started).toLocaleString() : '–'],
        ['Finished', finished ? new Date(finished).toLocaleString() : '–'],
        ['Waited in queue', started ? duration(started - Date.parse(job.created_at)) : '–'],
        ['Wall time', started ? duration((finished || Date.now()) - started) : '–'],
        ['Training time', duration(trainMs)],
        ['Samples / s', fmt(m.samples_per_second, 3)],
        ['Attempt', String(job.attempt)],
        ['Dataset', !job.dataset_id ? '–' : datasetGone ? h('span', { class: 'muted', id: 'dataset-gone' }, `${shortId(job.dataset_id)} (deleted)`) : h('a', { href: `#/datasets/${job.dataset_id}` }, shortId(job.dataset_id))],
      ])),
      section('Spec', h('pre', { class: 'spec', tabindex: 0 }, JSON.stringify(job.spec, null, 2))));
  };

  renderHead();
  drawCharts();
  endedEmpty();
  const boundary = await setupBoundary(boundarySlot, job, signal).catch((e) => {
    if (e.status === 404) { datasetGone = true; renderHead(); }
    return null;
  });
  boundary?.update(job);

  let headTimer = null;
  const refreshHead = () => {
    if (headTimer) return;
    headTimer = setTimeout(() => { headTimer = null; renderHead(); }, 250);
  };
  every(3000, async () => {
    if (terminal()) return;
    const at = changed;
    try {
      const j = await api('GET', `/v1/jobs/${id}`, { signal });
      if (at === changed) { setJob(j); refreshHead(); endedEmpty(); }
    } catch { /* the stream will tell */ }
  });
  if (!terminal()) {
    followEvents(`/v1/jobs/${id}/events`, {
      since: records.at(-1)?.epoch || 0,
      signal,
      onState: (s) => liveDot.classList.toggle('stale', s !== 'live'),
      onEvent: (name, data) => {
        if (name === 'epoch' && data && typeof data === 'object') {
          if (records.length && data.epoch <= records.at(-1).epoch) return;
          records.push(data);
          job.epoch = data.epoch;
          job.metrics = data;
          if (job.status === 'queued') job.status = 'running';
          drawCharts();
          refreshHead();
          boundary?.update(job);
        } else if (name === 'status') {
          setJob(data);
          renderHead();
          endedEmpty();
          boundary?.update(job, true);
        }
      },
    }).catch((e) => { if (e.name !== 'AbortError') toast(`live updates stopped: ${e.message}`, 'error'); });
  }
}

/** The decision boundary (2 inputs, classifier) or fitted curve (1 input, regression). */
async function setupBoundary(slot, job, signal) {
  if (!job.dataset_id) return null;
  const ds = await api('GET', `/v1/datasets/${job.dataset_id}`, { signal });
  const classes = ds.classes && ds.target_kind === 'labels' ? ds.classes : (ds.classes && ['binary_crossentropy', 'categorical_crossentropy', 'sparse_categorical_crossentropy'].includes(job.spec.loss) ? ds.classes : null);
  // Drawn over the raw rows, so only for columns that are all numbers the model reads.
  if ((ds.columns || []).some((c) => c.type !== 'numeric')) return null;
  const mode = ds.inputs === 2 && classes ? 'boundary' : (ds.inputs === 1 && ds.outputs === 1 && !classes ? 'fit' : null);
  if (!mode) return null;
  const sample = await api('GET', `/v1/datasets/${job.dataset_id}/rows?limit=2000`, { signal });
  const names = ds.feature_names || [];
  const canvas = h('canvas', { id: 'boundary', role: 'img', 'aria-label': mode === 'boundary' ? 'decision boundary: the model output over the input plane, with the training points' : 'the fitted curve over the data' });
  const caption = h('p', { class: 'muted small', id: 'boundary-caption' }, 'Waiting for the first checkpoint…');
  const key = mode === 'boundary'
    ? h('div', { class: 'legend' }, classes.map((c, i) => h('span', {}, h('i', { dataset: { color: CLASS_COLORS[i % CLASS_COLORS.length] } }), String(c))))
    : h('div', { class: 'legend' }, h('span', {}, h('i', { dataset: { color: CLASS_COLORS[0] } }), 'data'), h('span', {}, h('i', { dataset: { color: CLASS_COLORS[1] } }), 'model'));
  slot.append(section(mode === 'boundary' ? 'Decision boundary' : 'Fitted curve', key, h('div', { class: 'boundary-wrap' }, canvas), caption));
  paintLegends(slot);

  const index = new Map((classes || []).map((c, i) => [String(c), i]));
  const rows = sample.rows;
  let domain;
  let query;
  let points;
  const N = 56;
  if (mode === 'boundary') {
    const [x0, x1] = bounds(rows.map((r) => r.features[0]));
    const [y0, y1] = bounds(rows.map((r) => r.features[1]));
    domain = { x0, x1, y0, y1 };
    points = rows.map((r) => ({ x: r.features[0], y: r.features[1], cls: index.get(String(r.target)) ?? 0 }));
    query = [];
    for (let i = 0; i < N; i++) {
      for (let j = 0; j < N; j++) {
        query.push([x0 + ((j + 0.5) / N) * (x1 - x0), y1 - ((i + 0.5) / N) * (y1 - y0)]);
      }
    }
  } else {
    const [x0, x1] = bounds(rows.map((r) => r.features[0]));
    const [y0, y1] = bounds(rows.map((r) => Number(r.target)));
    domain = { x0, x1, y0, y1 };
    points = rows.map((r) => ({ x: r.features[0], y: Number(r.target) }));
    query = Array.from({ length: 200 }, (_, i) => [x0 + (i / 199) * (x1 - x0)]);
  }

  let busy = false;
  let lastAt = 0;
  let drawnEpoch = -1;
  let again = false;
  let lastModel = null;
  const redraw = async (final) => {
    if (busy) { again = true; return; }
    busy = true;
    try {
      const r = await api('POST', `/v1/jobs/${job.id}/predict`, { json: { inputs: query }, signal });
      lastAt = Date.now();
      if (r.epoch !== drawnEpoch || r.source !== lastModel || final) {
        drawnEpoch = r.epoch;
        lastModel = r.source;
        const ep = `after epoch ${r.epoch}` + (r.source === 'model' ? ' (the final model)' : ' (latest checkpoint)');
        if (mode === 'boundary') {
          drawBoundary(canvas, { n: N, cells: r.outputs, domain, points, names });
          caption.textContent = `Model output over the plane of ${names[0] || 'x₁'} and ${names[1] || 'x₂'}, ${ep}; dots are the training data (${points.length}${sample.total > points.length ? ` of ${sample.total}` : ''}).`;
        } else {
          drawFit(canvas, { points, curve: query.map((q, i) => [q[0], r.outputs[i][0]]), domain, names });
          caption.textContent = `Prediction over ${names[0] || 'x'}, ${ep}.`;
        }
      }
    } catch (e) {
      if (e.name === 'AbortError') return;
      if (!(e instanceof ApiError && e.status === 409)) caption.textContent = `Cannot draw: ${e.message}`;
    } finally {
      busy = false;
      if (again) { again = false; setTimeout(() => redraw(), 600); }
    }
  };
  return {
    update(j, final = false) {
      job = j;
      if (j.status === 'queued' || j.epoch < 1) return;
      if (final || Date.now() - lastAt > 700) redraw(final);
      else if (!again) { again = true; setTimeout(() => { again = false; redraw(); }, 700); }
    },
  };
}

// ---------- new job ----------

function field(label, input, hint) {
  const id = input.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  input.id = id;
  const err = h('div', { class: 'field-error', id: `${id}-error`, role: 'alert' });
  input.setAttribute('aria-describedby', `${id}-error`);
  return h('div', { class: 'field' }, h('label', { for: id }, label), input, hint ? h('div', { class: 'hint' }, hint) : null, err);
}

const select = (options, value, attrs = {}) => h('select', attrs, options.map((o) => {
  const [v, label] = Array.isArray(o) ? o : [o, o];
  return h('option', { value: v, selected: v === value ? true : null }, label);
}));

/** The file behind the dataset uploaded last in this tab: its bytes, media type and query, so
 * the dataset's page can send it again with other column kinds ("re-check"). */
let lastUpload = null;

/** A file's media type, by its name: Parquet, JSON Lines, tab-separated, else CSV. */
function uploadType(name) {
  if (/\.parquet$/i.test(name)) return 'application/vnd.apache.parquet';
  if (/\.(jsonl|ndjson)$/i.test(name)) return 'application/x-ndjson';
  if (/\.tsv$/i.test(name)) return 'text/tab-separated-values';
  return 'text/csv';
}

/** A drop zone that uploads a file (CSV, TSV, JSON Lines or Parquet) as a dataset; calls
 * `done(dataset)`. */
function uploader(done) {
  const file = h('input', { type: 'file', accept: '.csv,.tsv,.txt,.jsonl,.ndjson,.parquet,text/csv,text/tab-separated-values', id: 'csv-file', class: 'visually-hidden' });
  const status = h('div', { class: 'muted small', role: 'status' });
  const targetSel = h('select', { id: 'csv-target' });
  const nameIn = h('input', { id: 'csv-name', type: 'text', placeholder: 'dataset name' });
  const noTarget = h('input', { id: 'csv-no-target', type: 'checkbox' });
  noTarget.addEventListener('change', () => { targetSel.disabled = noTarget.checked; });
  const go = h('button', { type: 'button', class: 'primary', id: 'csv-upload', disabled: true }, 'Upload');
  const opts = h('div', { class: 'upload-options', hidden: true }, field('Target column', targetSel),
    h('div', { class: 'field check' }, h('label', {}, noTarget, ' No target: a file to score')), field('Name', nameIn), go);
  let blob = null;
  let type = 'text/csv';
  const zone = h('label', { class: 'drop', for: 'csv-file', tabindex: 0 },
    h('strong', {}, 'Drop a file here'), h('span', { class: 'muted' }, ' or press to choose one'),
    h('div', { class: 'hint' }, 'CSV or TSV with a header row (commas, semicolons, tabs or pipes), JSON Lines, or Parquet; numbers, text, money, percentages and dates; the target column holds labels or numbers.'));
  zone.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); file.click(); } });
  const read = async (f) => {
    if (!f) return;
    blob = f;
    type = uploadType(f.name);
    let header = [];
    let rows = null;
    if (type === 'application/x-ndjson') {
      const text = await f.text();
      const lines = text.split(/\r?\n/).filter((l) => l.trim());
      try { header = Object.keys(JSON.parse(lines[0] || '{}')); } catch { header = []; }
      rows = lines.length;
    } else if (type !== 'application/vnd.apache.parquet') {
      const text = await f.text();
      const first = text.split(/\r?\n/)[0] || '';
      // The delimiter the header uses most (the server sniffs the file's own).
      const delim = ['\t', ';', '|', ','].map((d) => [d, first.split(d).length]).sort((a, b) => b[1] - a[1])[0][0];
      header = first.split(delim).map((c) => c.trim().replace(/^"|"$/g, ''));
      rows = text.split(/\r?\n/).filter(Boolean).length - 1;
    }
    // A Parquet file's columns are read by the server: the target is its last unless named.
    targetSel.replaceChildren(h('option', { value: '' }, 'the last column'), ...header.map((c) => h('option', { value: c }, c)));
    targetSel.value = header.length ? header.at(-1) : '';
    nameIn.value = f.name.replace(/\.(csv|tsv|txt|jsonl|ndjson|parquet)$/i, '');
    opts.hidden = false;
    go.disabled = false;
    status.textContent = rows === null ? `${f.name}: Parquet, ${fmt(f.size / 1024, 3)} KiB` : `${f.name}: ${rows} rows, ${header.length} columns`;
  };
  file.addEventListener('change', () => read(file.files[0]));
  zone.addEventListener('dragover', (e) => { e.preventDefault(); zone.classList.add('over'); });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (e) => { e.preventDefault(); zone.classList.remove('over'); read(e.dataTransfer.files[0]); });
  go.addEventListener('click', async () => {
    go.disabled = true;
    status.textContent = 'Uploading…';
    try {
      const query = { name: nameIn.value || 'dataset' };
      if (noTarget.checked) query.labels = 'none';
      else if (targetSel.value) query.target = targetSel.value;
      // The file's bytes as they are (a Windows-1252 export stays readable).
      const d = await api('POST', `/v1/datasets?${new URLSearchParams(query)}`, { body: blob, type });
      lastUpload = { id: d.id, blob, type, query };
      const warned = (d.warnings || []).length ? ` ${d.warnings.length} warning(s): see the dataset's page.` : '';
      const how = d.dialect ? `, read as ${dialectText(d.dialect)}` : '';
      status.textContent = `Uploaded ${d.name}: ${d.rows} rows × ${d.inputs} features${how}.${warned}`;
      opts.hidden = true;
      done(d);
    } catch (e) {
      status.replaceChildren(errorBox(e));
      go.disabled = false;
    }
  });
  return h('div', { class: 'uploader' }, file, zone, opts, status);
}

async function viewNew(root, params) {
  document.title = 'New job · Backprop';
  const signal = aborter();
  const datasets = (await api('GET', '/v1/datasets?limit=200', { signal })).items;
  const dsSel = h('select', { id: 'dataset', 'data-pointer': '/dataset_id' }, h('option', { value: '' }, '— choose a dataset —'),
    datasets.map((d) => h('option', { value: d.id }, `${d.name} (${d.rows}×${d.inputs}${d.classes ? `, ${d.classes.length} classes` : ''})`)));
  const dsInfo = h('div', { class: 'muted small', id: 'dataset-info' });
  const byId = new Map(datasets.map((d) => [d.id, d]));

  const layersBox = h('div', { class: 'layers', id: 'layers' });
  const layers = [{ units: 8, activation: 'tanh' }, { units: 8, activation: 'tanh' }, { units: '', activation: '' }];
  const loss = select(LOSSES, 'binary_crossentropy', { id: 'loss', 'data-pointer': '/loss' });
  const optimizer = select(OPTIMIZERS, 'adam', { id: 'optimizer', 'data-pointer': '/optimizer/type' });
  const lr = h('input', { id: 'learning-rate', type: 'number', step: 'any', value: '0.03', 'data-pointer': '/optimizer/learning_rate', inputmode: 'decimal' });
  const batch = h('input', { id: 'batch-size', type: 'number', value: '16', 'data-pointer': '/batch_size', inputmode: 'numeric' });
  const epochs = h('input', { id: 'epochs', type: 'number', value: '100', 'data-pointer': '/epochs', inputmode: 'numeric' });
  const vsplit = h('input', { id: 'validation-split', type: 'number', step: 'any', value: '0.2', 'data-pointer': '/validation_split', inputmode: 'decimal' });
  const seed = h('input', { id: 'seed', type: 'number', placeholder: 'random', 'data-pointer': '/seed', inputmode: 'numeric' });
  const name = h('input', { id: 'job-name', type: 'text', placeholder: 'optional', 'data-pointer': '/name' });
  const esOn = h('input', { id: 'early-stopping', type: 'checkbox' });
  const esMonitor = select(['val_loss', 'loss', 'val_accuracy', 'accuracy'], 'val_loss', { id: 'es-monitor', 'data-pointer': '/early_stopping/monitor' });
  const esPatience = h('input', { id: 'es-patience', type: 'number', value: '20', 'data-pointer': '/early_stopping/patience' });
  const esRestore = h('input', { id: 'es-restore', type: 'checkbox', checked: true, 'data-pointer': '/early_stopping/restore_best_weights' });
  const esBox = h('div', { class: 'row', hidden: true }, field('Monitor', esMonitor), field('Patience (epochs)', esPatience), h('div', { class: 'field check' }, h('label', {}, esRestore, ' Restore the best weights')));
  esOn.addEventListener('change', () => { esBox.hidden = !esOn.checked; });
  // Per-job column types: the dataset's inferred ones, each overridable.
  const columnsBox = h('div', { class: 'column-types', id: 'column-types' });
  let columnTypes = {};
  const renderColumns = (d) => {
    columnTypes = {};
    const cols = (d && d.columns) || [];
    columnsBox.replaceChildren(...(cols.length ? [h('details', {}, h('summary', {}, `Column types (${cols.length})`),
      h('p', { class: 'muted small' }, 'Inferred at upload; change one to train this job on it differently.'),
      h('div', { class: 'row wrap' }, cols.map((c, i) => {
        const sel = select([['', `${c.type} (inferred)`], ...['numeric', 'categorical', 'boolean', 'ignore'].filter((t) => t !== c.type)], '',
          { id: `column-${i}-type`, 'data-pointer': `/columns/${c.name.replaceAll('~', '~0').replaceAll('/', '~1')}`, 'data-column': c.name,
            onchange: (e) => { if (e.target.value) columnTypes[c.name] = e.target.value; else delete columnTypes[c.name]; } });
        return field(c.name, sel);
      })))] : []));
  };
  const summary = h('div', { id: 'form-errors' });
  const estimate = h('div', { class: 'muted small', id: 'estimate', role: 'status' });

  const pickDataset = (d) => {
    renderColumns(d);
    if (!d) { dsInfo.textContent = ''; return; }
    dsInfo.textContent = `${d.rows} rows · ${d.inputs} features (${(d.feature_names || []).join(', ')}) · ${d.classes ? `classes ${d.classes.join(', ')}` : `${d.outputs} numeric target${d.outputs > 1 ? 's' : ''}`}`;
    if (d.classes && d.target_kind === 'labels' && d.classes.length > 2) loss.value = 'categorical_crossentropy';
    else if (d.classes && d.classes.length === 2) loss.value = 'binary_crossentropy';
    else if (!d.classes) loss.value = 'mse';
  };
  dsSel.addEventListener('change', () => pickDataset(byId.get(dsSel.value)));

  const renderLayers = () => {
    layersBox.replaceChildren(...layers.map((l, i) => {
      const last = i === layers.length - 1;
      const remove = h('button', { type: 'button', class: 'ghost icon', 'aria-label': `remove layer ${i + 1}`, disabled: layers.length < 2 ? true : null, onclick: () => { layers.splice(i, 1); renderLayers(); } }, '×');
      if ('dropout' in l) {
        const rate = h('input', { type: 'number', step: 'any', value: l.dropout, id: `layer-${i}-dropout`, 'data-pointer': `/layers/${i}/dropout`, oninput: (e) => { l.dropout = e.target.value; } });
        return h('div', { class: 'layer dropout' }, h('span', { class: 'layer-tag' }, `${i + 1} · dropout`), field('Rate', rate), remove);
      }
      const units = h('input', { type: 'number', value: l.units, placeholder: last ? 'from data' : '', id: `layer-${i}-units`, 'data-pointer': `/layers/${i}/units`, oninput: (e) => { l.units = e.target.value; } });
      const act = select([['', last ? 'for the loss' : 'linear'], ...ACTIVATIONS], l.activation, { id: `layer-${i}-activation`, 'data-pointer': `/layers/${i}/activation`, onchange: (e) => { l.activation = e.target.value; } });
      return h('div', { class: 'layer' }, h('span', { class: 'layer-tag' }, `${i + 1} · ${last ? 'output' : 'dense'}`), field('Units', units), field('Activation', act), remove);
    }));
  };
  renderLayers();
  const addDense = h('button', { type: 'button', class: 'ghost', onclick: () => { layers.splice(layers.length - 1, 0, { units: 8, activation: 'relu' }); renderLayers(); } }, '+ Dense layer');
  const addDropout = h('button', { type: 'button', class: 'ghost', onclick: () => { layers.splice(layers.length - 1, 0, { dropout: 0.2 }); renderLayers(); } }, '+ Dropout');

  const num = (el) => (el.value === '' ? undefined : Number(el.value));
  const spec = () => {
    const s = {
      dataset_id: dsSel.value || undefined,
      layers: layers.map((l) => ('dropout' in l ? { dropout: l.dropout === '' ? undefined : Number(l.dropout) } : {
        units: l.units === '' || l.units === undefined ? undefined : Number(l.units),
        activation: l.activation || undefined,
      })),
      loss: loss.value,
      optimizer: { type: optimizer.value, learning_rate: num(lr) },
      epochs: num(epochs),
      batch_size: num(batch),
      validation_split: num(vsplit),
      seed: num(seed),
      name: name.value || undefined,
      columns: Object.keys(columnTypes).length ? { ...columnTypes } : undefined,
    };
    if (esOn.checked) s.early_stopping = { monitor: esMonitor.value, patience: num(esPatience), restore_best_weights: esRestore.checked };
    return s;
  };

  const form = h('form', { id: 'new-job', novalidate: true });
  const clearErrors = () => {
    summary.replaceChildren();
    for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
    for (const el of form.querySelectorAll('.field-error')) el.textContent = '';
  };
  /** Puts each error under the field its pointer names (or the closest parent's). */
  const showErrors = (e) => {
    const errs = e.errors.length ? e.errors : [{ pointer: '', detail: e.message }];
    const fields = [...form.querySelectorAll('[data-pointer]')];
    const unplaced = [];
    let first = null;
    for (const err of errs) {
      const p = err.pointer || '';
      let el = fields.find((f) => f.dataset.pointer === p);
      if (!el) el = fields.filter((f) => p && f.dataset.pointer.startsWith(`${p}/`))[0];
      if (!el) el = fields.filter((f) => p.startsWith(`${f.dataset.pointer}/`)).sort((a, b) => b.dataset.pointer.length - a.dataset.pointer.length)[0];
      if (el) {
        el.setAttribute('aria-invalid', 'true');
        const slot = document.getElementById(`${el.id}-error`) || el.closest('.field')?.querySelector('.field-error');
        if (slot) slot.textContent = slot.textContent ? `${slot.textContent}; ${err.detail}` : err.detail;
        first ||= el;
      } else unplaced.push(err);
    }
    summary.append(h('div', { class: 'alert error', role: 'alert' },
      h('strong', {}, `The server did not accept this job (${errs.length} problem${errs.length > 1 ? 's' : ''})`),
      h('ul', {}, errs.map((er) => h('li', {}, h('code', {}, er.pointer || '/'), ' ', er.detail)))));
    (first || summary).focus?.();
    if (!first) summary.scrollIntoView({ block: 'center' });
    return unplaced;
  };

  const submit = async (dry) => {
    clearErrors();
    estimate.textContent = '';
    try {
      const r = await api('POST', `/v1/jobs${dry ? '?dry_run=true' : ''}`, { json: spec(), signal });
      if (dry) {
        const perEpoch = r.estimated_seconds_per_epoch;
        estimate.textContent = `Valid: ${r.parameter_count} parameters, ${r.train_rows} training rows, ${r.validation_rows} validation rows` + (perEpoch != null ? `, about ${duration(perEpoch * 1000 * (r.spec?.epochs || 1))} for ${r.spec?.epochs || 1} epochs` : '') + '.';
      } else {
        toast('Job queued');
        location.hash = `#/jobs/${r.id}`;
      }
    } catch (e) {
      if (e.name === 'AbortError') return;
      showErrors(e);
    }
  };
  form.addEventListener('submit', (e) => { e.preventDefault(); submit(false); });

  form.append(
    section('1 · Data', h('div', { class: 'row' }, field('Dataset', dsSel)), dsInfo, columnsBox,
      h('details', { class: 'upload-details', open: datasets.length ? null : true }, h('summary', {}, 'Upload a CSV'),
        uploader((d) => { datasets.push(d); byId.set(d.id, d); dsSel.append(h('option', { value: d.id }, `${d.name} (${d.rows}×${d.inputs})`)); dsSel.value = d.id; pickDataset(d); }))),
    section('2 · Layers', h('p', { class: 'muted small' }, 'Dense layers in order; the output layer’s units and activation can be left to the data and the loss.'),
      layersBox, h('div', { class: 'actions left' }, addDense, addDropout)),
    section('3 · Training', h('div', { class: 'row' }, field('Loss', loss), field('Optimizer', optimizer), field('Learning rate', lr)),
      h('div', { class: 'row' }, field('Batch size', batch), field('Epochs', epochs), field('Validation split', vsplit, 'fraction held out, 0 to <1')),
      h('div', { class: 'row' }, field('Seed', seed), field('Name', name)),
      h('div', { class: 'field check' }, h('label', {}, esOn, ' Early stopping')), esBox),
    summary,
    h('div', { class: 'actions sticky' }, estimate, h('button', { type: 'button', class: 'ghost', id: 'dry-run', onclick: () => submit(true) }, 'Check'), h('button', { type: 'submit', class: 'primary', id: 'submit-job' }, 'Start training')));
  summary.tabIndex = -1;
  root.append(h('div', { class: 'page-head' }, h('h1', {}, 'New job')), form);
  const want = params.get('dataset');
  if (want && byId.has(want)) { dsSel.value = want; pickDataset(byId.get(want)); }
}

// ---------- models ----------

async function viewModels(root) {
  document.title = 'Models · Backprop';
  const signal = aborter();
  const page = await api('GET', '/v1/models?limit=200', { signal });
  root.append(h('div', { class: 'page-head' }, h('h1', {}, 'Models')));
  if (!page.items.length) { root.append(h('div', { class: 'empty' }, h('p', {}, 'No models yet: a job that succeeds makes one.'))); return; }
  root.append(table(['Model', 'Shape', 'Parameters', 'Loss', 'Final metrics', 'Created'], page.items.map((m) => {
    const f = m.metrics?.final || {};
    return h('tr', {},
      h('td', { 'data-label': 'Model' }, h('a', { href: `#/models/${m.id}` }, m.name || `Model ${shortId(m.id)}`), h('div', { class: 'sub mono' }, shortId(m.id))),
      h('td', { 'data-label': 'Shape' }, `${m.input_dim} → ${m.output_dim}`),
      h('td', { 'data-label': 'Parameters', class: 'num' }, String(m.parameter_count)),
      h('td', { 'data-label': 'Loss' }, m.loss || '–'),
      h('td', { 'data-label': 'Final metrics' }, f.loss != null ? `loss ${fmt(f.loss)}${f.accuracy != null ? ` · acc ${fmt(f.accuracy, 3)}` : ''}${f.val_accuracy != null ? ` · val acc ${fmt(f.val_accuracy, 3)}` : ''}` : '–'),
      h('td', { 'data-label': 'Created', title: m.created_at }, ago(m.created_at)));
  })));
}

/** Rows from pasted text: a JSON array of rows (or one row), or CSV/whitespace lines; a header line is skipped. */
export function parseRows(text) {
  const t = text.trim();
  if (!t) return [];
  if (t.startsWith('[')) {
    const v = JSON.parse(t);
    return Array.isArray(v[0]) ? v : [v];
  }
  return t.split(/\r?\n/).map((l) => l.trim()).filter(Boolean)
    .map((l) => l.split(/[,;\t ]+/).filter(Boolean))
    .filter((cells, i) => !(i === 0 && cells.some((c) => Number.isNaN(Number(c)))))
    .map((cells) => cells.map(Number));
}

const MISSING_CELLS = new Set(['', 'NA', 'N/A', 'NaN', 'null', '?']);

/**
 * Rows of a tabular model (its raw `columns`) from pasted text: a JSON array of records or
 * rows, or CSV lines (comma, semicolon or tab) whose first line may be a header of column
 * names; without one, cells are in the training column order. Returns records keyed by column
 * (an empty or NA cell left out: a missing value), or, for a row whose width is not the
 * model's, the raw cells, so the server's answer says what is wrong with it.
 */
export function parseRecords(text, columns) {
  const t = text.trim();
  if (!t) return [];
  if (t.startsWith('[') || t.startsWith('{')) {
    const v = JSON.parse(t);
    return Array.isArray(v) ? (Array.isArray(v[0]) || (v[0] && typeof v[0] === 'object') ? v : [v]) : [v];
  }
  const byName = new Map(columns.map((c) => [c.name.toLowerCase(), c]));
  const used = columns.filter((c) => c.type !== 'ignore');
  const lines = t.split(/\r?\n/).filter((l) => l.trim()).map((l) => l.split(/[,;\t]/).map((c) => c.trim().replace(/^"(.*)"$/, '$1')));
  let order = null;
  if (lines[0].every((c) => byName.has(c.toLowerCase()))) order = lines.shift().map((c) => byName.get(c.toLowerCase()));
  return lines.map((cells) => {
    const cols = order || (cells.length === columns.length ? columns : cells.length === used.length ? used : null);
    if (!cols || cols.length !== cells.length) return cells.map((c) => (MISSING_CELLS.has(c) ? null : (c !== '' && Number.isFinite(Number(c)) ? Number(c) : c)));
    const record = {};
    cols.forEach((col, i) => {
      const c = cells[i];
      if (col.type === 'ignore' || MISSING_CELLS.has(c)) return;
      record[col.name] = col.type !== 'categorical' && Number.isFinite(Number(c)) ? Number(c) : c;
    });
    return record;
  });
}

// A model's layer as the architecture table shows it: its kind and its size.
function layerKind(l) {
  if (l.dropout != null) return 'dropout';
  if (l.ensemble != null) return 'ensemble';
  if (l.periodic != null) return 'periodic';
  if (l.parametric != null) return 'parametric activation';
  return 'dense';
}

function layerSize(l) {
  if (l.dropout != null) return `rate ${l.dropout}`;
  if (l.ensemble != null) return `${l.ensemble} members`;
  if (l.periodic != null) return `${l.periodic.inputs} inputs × ${l.periodic.frequencies} frequencies`;
  if (l.parametric != null) return String(l.parametric);
  return String(l.units);
}

/** One field per raw column of a tabular model: its categories offered as choices. */
function recordFields(columns) {
  const inputs = [];
  const fields = columns.filter((c) => c.type !== 'ignore').map((c) => {
    const attrs = { name: c.name, dataset: { column: c.name } };
    let input;
    if (c.type === 'categorical') input = select([['', '(missing)'], ...(c.categories || []).map((v) => [v, v])], '', attrs);
    else if (c.type === 'boolean') input = select([['', '(missing)'], ['yes', 'yes'], ['no', 'no']], '', attrs);
    else input = h('input', { ...attrs, type: 'text', inputmode: 'decimal', autocomplete: 'off', placeholder: 'missing' });
    inputs.push([c, input]);
    return field(c.name, input);
  });
  const record = () => {
    const r = {};
    for (const [c, input] of inputs) {
      const v = input.value.trim();
      if (v === '') continue;
      r[c.name] = c.type === 'numeric' ? (Number.isFinite(Number(v)) ? Number(v) : v) : v;
    }
    return r;
  };
  return { box: h('div', { class: 'record-fields' }, fields), record, used: inputs.map(([c]) => c) };
}

async function viewModel(root, id) {
  const signal = aborter();
  const m = await api('GET', `/v1/models/${id}`, { signal });
  document.title = `${m.name || 'Model'} · Backprop`;
  const f = m.metrics?.final || {};
  const features = m.feature_names || Array.from({ length: m.input_dim }, (_, i) => `x${i + 1}`);
  const exportBtn = h('button', { type: 'button', class: 'ghost', id: 'export', onclick: async () => {
    try {
      const r = await api('GET', `/v1/models/${id}/export`, { raw: true, signal });
      const url = URL.createObjectURL(await r.blob());
      const a = h('a', { href: url, download: `model-${id}.json` });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 1000);
    } catch (e) { if (e.name !== 'AbortError') toast(e.message, 'error'); }
  } }, 'Export JSON');
  // A tabular model takes its raw columns (text cells included); a model on plain numbers
  // takes rows of `input_dim` numbers.
  const tabular = Array.isArray(m.columns) && m.columns.length > 0;
  const form = tabular ? recordFields(m.columns) : null;
  const shown = tabular ? form.used.map((c) => c.name) : features;
  const input = h('textarea', { id: 'predict-input', rows: tabular ? 3 : 6, spellcheck: 'false', placeholder: `${shown.join(',')}\n${tabular ? form.used.map((c) => (c.type === 'categorical' ? (c.categories || ['…'])[0] : '0')).join(',') : features.map(() => '0').join(',')}` });
  const out = h('div', { id: 'predict-output', 'aria-live': 'polite' });
  const cell = (v) => (typeof v === 'number' ? h('td', { class: 'num' }, fmt(v)) : h('td', {}, v == null ? '–' : String(v)));
  const predict = async (e) => {
    e.preventDefault();
    out.replaceChildren();
    let rows;
    try {
      rows = tabular ? (input.value.trim() ? parseRecords(input.value, m.columns) : [form.record()]) : parseRows(input.value);
    } catch (err) { out.append(errorBox(new Error(`not JSON: ${err.message}`))); return; }
    if (!rows.length) { out.append(errorBox(new Error('paste at least one row'))); return; }
    try {
      const r = await api('POST', `/v1/models/${id}/predict`, { json: { inputs: rows }, signal });
      const width = r.outputs[0]?.length || 0;
      const heads = width === 1 ? [m.classes && m.classes.length === 1 ? `p(${m.classes[0]})` : 'output'] : (m.classes && m.classes.length === width ? m.classes.map((c) => `p(${c})`) : Array.from({ length: width }, (_, i) => `y${i + 1}`));
      const values = (row) => (Array.isArray(row) ? row : shown.map((n) => row[n]));
      out.append(table(['#', ...shown, ...heads, ...(r.labels ? ['label'] : [])], rows.map((row, i) => h('tr', {},
        h('td', { class: 'num' }, String(i + 1)),
        values(row).map(cell),
        r.outputs[i].map((v) => h('td', { class: 'num' }, fmt(v))),
        r.labels ? h('td', { class: 'label-cell' }, String(r.labels[i])) : null)), 'predictions'));
    } catch (err) {
      if (err.name !== 'AbortError') out.append(errorBox(err));
    }
  };
  const csvFile = h('input', { type: 'file', accept: '.csv,text/csv', id: 'predict-file', class: 'visually-hidden', onchange: async (e) => { const file = e.target.files[0]; if (file) input.value = await file.text(); } });
  root.append(
    h('div', { class: 'page-head' },
      h('div', {}, h('div', { class: 'crumbs' }, h('a', { href: '#/models' }, 'Models'), ' / ', h('span', { class: 'mono' }, shortId(m.id))), h('h1', {}, m.name || `Model ${shortId(m.id)}`)),
      h('div', { class: 'actions' }, m.job_id ? h('a', { class: 'button ghost', href: `#/jobs/${m.job_id}` }, 'Training job') : null, exportBtn)),
    h('div', { class: 'grid two' },
      section('Architecture', table(['#', 'Layer', 'Units', 'Activation'], [
        h('tr', {}, h('td', {}, '0'), h('td', {}, 'input'), h('td', { class: 'num' }, String(m.input_dim)), h('td', {}, m.standardized ? 'standardised' : '–')),
        ...m.architecture.map((l, i) => h('tr', {}, h('td', {}, String(i + 1)), h('td', {}, layerKind(l)), h('td', { class: 'num' }, layerSize(l)), h('td', {}, l.activation || '–')))]),
        kv([['Parameters', String(m.parameter_count)], ['Loss', m.loss || '–'], ['Features', features.join(', ')], m.classes ? ['Classes', m.classes.join(', ')] : null])),
      section('Metrics', kv([
        ['Loss', fmt(f.loss)], ['Validation loss', fmt(f.val_loss)],
        f.accuracy != null ? ['Accuracy', fmt(f.accuracy, 3)] : null, f.val_accuracy != null ? ['Validation accuracy', fmt(f.val_accuracy, 3)] : null,
        f.mae != null ? ['MAE', fmt(f.mae)] : null, f.val_mae != null ? ['Validation MAE', fmt(f.val_mae)] : null,
        ['Epochs run', m.metrics?.epochs_run ?? '–'], ['Best epoch', m.metrics?.best_epoch ?? '–'], ['Stopped because', (m.metrics?.stop_reason || '–').replaceAll('_', ' ')],
        ['Created', new Date(m.created_at).toLocaleString()]]))),
    ...(m.metrics?.evaluation
      ? [evaluationSection(m.metrics.evaluation, m.scored_on?.kind === 'out_of_fold' ? 'Evaluation on out-of-fold predictions' : m.scored_on?.kind === 'chosen_trial_validation' ? 'Evaluation of the chosen trial on its validation rows' : 'Evaluation on the validation rows')]
      : []),
    ...(m.scored_on ? [h('p', { class: 'muted', id: 'scored-on' }, `Scores: ${scoredOnText(m.scored_on)}${m.scored_on.detail ? ` — ${m.scored_on.detail}` : ''}.`)] : []),
    ...(m.sweep ? [h('p', { class: 'muted', id: 'model-sweep' }, m.sweep.role === 'refit' ? 'The model a ' : `Trial ${m.sweep.trial} (rung ${m.sweep.rung + 1}, fold ${m.sweep.fold}) of a `, h('a', { href: `#/sweeps/${m.sweep.id}` }, 'sweep'), m.sweep.role === 'refit' ? ' handed over: its chosen trial trained again on every row.' : '.')] : []),
    section('Predict', h('form', { id: 'predict-form', onsubmit: predict },
      tabular ? form.box : null,
      tabular
        ? field('Or paste rows', input, `One row per line with the ${shown.length} columns above (comma, semicolon or tab separated; a header line of column names may give another order; an empty cell is missing), or a JSON array of records. Left empty, the fields above are the row.`)
        : field('Rows', input, `One row per line, ${m.input_dim} value${m.input_dim > 1 ? 's' : ''} each (comma or space separated; a header line is skipped), or a JSON array of rows.`),
      h('div', { class: 'actions left' }, h('button', { type: 'submit', class: 'primary', id: 'predict-submit' }, 'Predict'),
        csvFile, h('label', { for: 'predict-file', class: 'button ghost', tabindex: 0, onkeydown: (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); csvFile.click(); } } }, 'Load a CSV'))), out));
}

// ---------- evaluation ----------

/** A bar of `share` (0..1) of the cell's width (set through the CSSOM: the CSP allows no inline styles). */
/** An evaluation (POST /v1/models/{id}/evaluate, or a model's metrics.evaluation): the
 * headline metrics, the confusion matrix as a heat map, per-class scores, importance bars. */
function evaluationSection(e, title) {
  const parts = [];
  if (e.task === 'classification') {
    parts.push(kv([['Rows', String(e.rows)], ['Accuracy', fmt(e.accuracy, 3)], ['Log loss', fmt(e.log_loss)], ['ROC AUC', e.roc_auc == null ? '–' : fmt(e.roc_auc, 3)]]));
    const cm = e.confusion_matrix;
    const most = Math.max(1, ...cm.matrix.flat());
    parts.push(h('h3', {}, 'Confusion matrix (rows true, columns predicted)'), table(['', ...cm.labels.map(String)], cm.matrix.map((row, i) => h('tr', {},
      h('th', { scope: 'row' }, String(cm.labels[i])),
      row.map((n) => {
        const td = h('td', { class: 'num heat' }, String(n));
        td.style.background = `color-mix(in srgb, var(--ok) ${Math.round((100 * n) / most)}%, transparent)`;
        return td;
      }))), 'confusion'));
    parts.push(table(['Class', 'Precision', 'Recall', 'F1', 'Support'], e.per_class.map((c) => h('tr', {},
      h('td', {}, String(c.label)), h('td', { class: 'num' }, fmt(c.precision, 3)), h('td', { class: 'num' }, fmt(c.recall, 3)),
      h('td', { class: 'num' }, fmt(c.f1, 3)), h('td', { class: 'num' }, String(c.support)))), 'per-class'));
  } else {
    parts.push(kv([['Rows', String(e.rows)], ['R²', fmt(e.r2, 3)], ['MAE', fmt(e.mae)], ['RMSE', fmt(e.rmse)]]));
  }
  const imp = [...(e.permutation_importance || [])].sort((a, b) => b.importance - a.importance);
  const top = Math.max(1e-12, ...imp.map((i) => i.importance));
  parts.push(h('h3', {}, 'Permutation importance'), table(['Column', 'Importance', ''], imp.map((i) => h('tr', {},
    h('td', {}, i.column), h('td', { class: 'num' }, `${fmt(i.importance, 3)} ± ${fmt(i.std, 2)}`), h('td', {}, shareBar(i.importance / top, `${i.column}: importance ${fmt(i.importance, 3)}`, 'succeeded')))), 'importance'));
  return h('section', { class: 'card', id: 'evaluation' }, h('h2', {}, title), ...parts);
}

// ---------- sweeps ----------

async function viewSweeps(root) {
  document.title = 'Sweeps · Backprop';
  const signal = aborter();
  const [page, datasets] = await Promise.all([
    api('GET', '/v1/sweeps?limit=100', { signal }),
    api('GET', '/v1/datasets?limit=500', { signal }),
  ]);
  const names = new Map(datasets.items.map((d) => [d.id, d.name]));
  // An unfinished sweep's progress is in its own record.
  const open = page.items.filter((s) => !['succeeded', 'failed', 'cancelled'].includes(s.status));
  const progressOf = new Map(await Promise.all(open.map(async (s) => [s.id, (await api('GET', `/v1/sweeps/${s.id}`, { signal })).progress])));
  root.append(h('div', { class: 'page-head' }, h('h1', {}, 'Sweeps')),
    page.items.length === 0
      ? h('div', { class: 'empty' }, h('p', {}, 'No sweeps yet. Open a ', h('a', { href: '#/datasets' }, 'dataset'), ' and press “Find the best model”.'))
      : table(['Sweep', 'Dataset', 'Status', 'Progress', 'Metric', 'Best', 'Created'], page.items.map((s) => {
        const p = progressOf.get(s.id);
        return h('tr', { 'data-status': s.status, 'data-sweep': s.id },
          h('td', { 'data-label': 'Sweep' }, h('a', { href: `#/sweeps/${s.id}` }, s.spec?.name || `Sweep ${shortId(s.id)}`), h('div', { class: 'sub mono' }, shortId(s.id))),
          h('td', { 'data-label': 'Dataset' }, names.has(s.dataset_id) ? h('a', { href: `#/datasets/${s.dataset_id}` }, names.get(s.dataset_id)) : h('span', { class: 'mono' }, shortId(s.dataset_id))),
          h('td', {}, badge(s.status)),
          h('td', { 'data-label': 'Progress', class: 'sweep-progress-cell' }, p
            ? [progress(p.epochs_done, p.epochs_planned, s.status), h('div', { class: 'sub' }, `${p.done} of ${p.trials} trials${p.eta_seconds != null ? ` · ~${duration(p.eta_seconds * 1000)} left` : ''}`)]
            : `${s.spec?.max_trials ?? '–'} trials`),
          h('td', {}, s.spec?.metric || '–'),
          h('td', { class: 'num' }, s.best ? fmt(s.best.metric) : '–'), h('td', {}, ago(s.created_at)));
      }), 'sweeps'));
}

/** Layers as people say them: "256 relu → dropout 0.2 → 128 relu → output". */
function layersText(layers) {
  if (!Array.isArray(layers)) return null;
  return layers.map((l) => {
    if (l && l.dropout != null) return `dropout ${l.dropout}`;
    if (l && l.units != null) return `${l.units} ${l.activation || 'linear'}`;
    return l && l.activation ? `output ${l.activation}` : 'output';
  }).join(' → ');
}

/** A searched value as people read it: layers spelled out, numbers rounded. */
function paramText(v) {
  if (typeof v === 'number') return fmt(v, 4);
  const layers = layersText(v);
  if (layers && Array.isArray(v) && v.every((l) => l && typeof l === 'object')) return layers;
  return JSON.stringify(v);
}

const METRIC_NAMES = { val_loss: 'validation loss', val_accuracy: 'validation accuracy', val_mae: 'validation MAE', val_log_loss: 'validation log loss', val_rmse: 'validation RMSE' };

async function viewSweep(root, id) {
  const signal = aborter();
  let s = await api('GET', `/v1/sweeps/${id}`, { signal });
  document.title = `Sweep ${shortId(s.id)} · Backprop`;
  const dataset = await api('GET', `/v1/datasets/${s.dataset_id}`, { signal }).catch((e) => {
    if (e.name === 'AbortError') throw e;
    return null;
  });
  const ended = () => ['succeeded', 'failed', 'cancelled'].includes(s.status);
  const maximise = s.metric.endsWith('accuracy');
  const better = (a, b) => (maximise ? a > b : a < b);
  const keys = [...new Set(s.trials.flatMap((t) => Object.keys(t.params || {})))].sort();
  const folds = s.spec?.folds > 1 ? s.spec.folds : 0;
  const metricName = METRIC_NAMES[s.metric] || s.metric;

  // ---- progress ----
  const progressSlot = h('div', { id: 'sweep-progress' });
  const paintProgress = (p) => {
    if (!p) return;
    const parts = [`${p.done} of ${p.trials} trials done`];
    if (p.running) parts.push(`${p.running} running`);
    if (p.queued) parts.push(`${p.queued} queued`);
    if (p.waiting) parts.push(`${p.waiting} waiting`);
    if (p.stopped_early) parts.push(`${p.stopped_early} stopped early by halving`);
    progressSlot.dataset.phase = p.phase;
    progressSlot.dataset.done = String(p.done);
    progressSlot.replaceChildren(
      progress(p.epochs_done, p.epochs_planned, s.status),
      h('p', { class: 'muted' }, `${p.phase === 'refitting' ? 'Refitting the chosen trial on every row' : p.phase === 'done' ? 'Done' : 'Searching'} · ${parts.join(' · ')} · rung ${p.rung + 1} of ${s.rungs.length} (${p.rung_epochs} epochs) · ${p.epochs_done} of at most ${p.epochs_planned} epochs · ${duration(p.elapsed_seconds * 1000)} so far${p.eta_seconds ? ` · about ${duration(p.eta_seconds * 1000)} left` : ''}`));
  };
  paintProgress(s.progress);

  // ---- why the best is the best ----
  const whySlot = h('div');
  const paintWhy = () => {
    whySlot.replaceChildren();
    if (!s.best || s.best.metric == null) return;
    const top = s.rungs.length - 1;
    const beat = s.trials.filter((t) => t.trial !== s.best.trial && t.metric != null && better(t.metric, s.best.metric));
    const lines = beat.map((t) => {
      const rung = (t.jobs || []).length - 1;
      if (t.stopped_early || rung < top) {
        return `Trial ${t.trial}'s ${fmt(t.metric)} is from rung ${rung + 1} (${t.epochs} epochs): successive halving compares trials at the same rung, and trials it did not carry to the last rung (${s.rungs[top]} epochs) are not candidates — the metric of a short run is not comparable with a long one's.`;
      }
      return `Trial ${t.trial}'s ${fmt(t.metric)} ${t.status === 'succeeded' ? 'did not finish every fold' : `ended ${t.status}`}.`;
    });
    if (s.best.refit_job_id) {
      lines.push(`The model handed over is the refit: trial ${s.best.trial} trained again on every training row; its scores are the trial's out-of-fold predictions (each fold's model on the rows it held out).`);
    }
    if (lines.length) whySlot.append(h('div', { class: 'note', id: 'sweep-why' }, lines.map((l) => h('p', {}, l))));
  };
  paintWhy();

  // ---- the trials table ----
  const columns = [
    ['Trial', (t) => t.trial], ...keys.map((k) => [k, (t) => t.params?.[k]]),
    ['Status', (t) => t.status], ['Epochs', (t) => t.epochs], [s.metric, (t) => t.metric], ['Stopped early', (t) => t.stopped_early],
    ...(folds ? [['Folds', (t) => 1 + (t.fold_jobs || []).length]] : []),
  ];
  let order = { col: 3 + keys.length, dir: maximise ? -1 : 1 };
  const body = h('tbody');
  const paintTable = () => {
    const get = columns[order.col][1];
    const cmp = (a, b) => {
      const x = get(a), y = get(b);
      if (x == null) return 1;
      if (y == null) return -1;
      return (typeof x === 'number' && typeof y === 'number' ? x - y : String(JSON.stringify(x)).localeCompare(JSON.stringify(y))) * order.dir;
    };
    body.replaceChildren(...[...s.trials].sort(cmp).map((t) => h('tr', { 'data-status': t.status, 'data-trial': t.trial, class: s.best?.trial === t.trial ? 'best' : null },
      h('td', { class: 'num' }, t.job_id ? h('a', { href: `#/jobs/${t.job_id}` }, String(t.trial)) : String(t.trial)),
      keys.map((k) => h('td', { class: typeof t.params?.[k] === 'number' ? 'num' : 'param' }, t.params?.[k] === undefined ? '–' : paramText(t.params[k]))),
      h('td', {}, badge(t.status)), h('td', { class: 'num' }, t.epochs ?? '–'),
      h('td', { class: 'num', title: t.metric_epoch ? `the folds' mean at epoch ${t.metric_epoch}, the one they share` : null }, t.metric == null ? '–' : fmt(t.metric)), h('td', {}, t.stopped_early ? 'yes' : ''),
      folds ? h('td', { class: 'num', title: 'validation folds trained at its last rung' }, `${1 + (t.fold_jobs || []).length} of ${folds}`) : null)));
  };
  const head = h('tr', {}, columns.map(([name], i) => h('th', { scope: 'col' }, h('button', { type: 'button', class: 'ghost sort', 'data-col': i, onclick: () => {
    order = { col: i, dir: order.col === i ? -order.dir : 1 };
    paintTable();
  } }, name))));
  paintTable();

  // ---- pictures ----
  const historyCanvas = h('canvas', { id: 'sweep-history-chart', role: 'img', 'aria-label': `each trial's ${metricName} in the order the trials finished, and the best so far` });
  const curvesCanvas = h('canvas', { id: 'sweep-curves-chart', role: 'img', 'aria-label': 'the trials\' validation loss by epoch, the promoted ones and the best highlighted' });
  const paramSlot = h('div', { class: 'grid two', id: 'sweep-params' });
  const results = [];
  const drawHistory = () => {
    const pts = results.filter((r) => r.metric != null);
    const rungColors = [CLASS_COLORS[0], CLASS_COLORS[1], CLASS_COLORS[2], CLASS_COLORS[3]];
    let bestSoFar = null;
    const running = pts.map((r, i) => {
      if (bestSoFar == null || better(r.metric, bestSoFar)) bestSoFar = r.metric;
      return [i + 1, bestSoFar];
    });
    const byRung = s.rungs.map((_, k) => ({ points: pts.map((r, i) => [i + 1, r.metric, r.rung]).filter((p) => p[2] === k).map(([x, y]) => [x, y]), color: rungColors[k % rungColors.length], dots: 4 }));
    drawPlot(historyCanvas, { series: [...byRung, { points: running, color: CLASS_COLORS[5], width: 2, dashed: true }], xLabel: 'trial results in the order they finished', yLabel: metricName });
  };
  const drawParams = () => {
    paramSlot.replaceChildren();
    const spaceOf = (k) => s.spec?.space?.[k] || {};
    for (const k of keys) {
      const canvas = h('canvas', { class: 'param-chart', 'data-param': k, role: 'img', 'aria-label': `${metricName} against ${k}` });
      const trials = s.trials.filter((t) => t.metric != null && t.params?.[k] !== undefined);
      const numeric = trials.every((t) => typeof t.params[k] === 'number');
      const log = numeric && spaceOf(k).log_uniform != null;
      let labels = null;
      const xOf = (t) => {
        if (numeric) return t.params[k];
        labels = labels || [...new Set(s.trials.map((u) => paramText(u.params?.[k])))];
        return labels.indexOf(paramText(t.params[k]));
      };
      const point = (t) => [xOf(t), t.metric];
      const series = [
        { points: trials.filter((t) => t.stopped_early).map(point), color: CLASS_COLORS[0], dots: 3.5, alpha: 0.5 },
        { points: trials.filter((t) => !t.stopped_early && t.trial !== s.best?.trial).map(point), color: CLASS_COLORS[1], dots: 4.5 },
        { points: trials.filter((t) => t.trial === s.best?.trial).map(point), color: CLASS_COLORS[5], dots: 6 },
      ];
      paramSlot.append(h('div', { class: 'chart-card' }, h('h3', {}, k), h('div', { class: 'chart small' }, canvas)));
      requestAnimationFrame(() => drawPlot(canvas, { series, logX: log, xLabels: numeric ? null : labels, xLabel: k, yLabel: metricName }));
    }
  };
  const curves = new Map();
  const drawCurves = async () => {
    // Each trial's last job holds its whole history (a promoted trial's continues the rung below's).
    await Promise.all(s.trials.filter((t) => t.job_id && !curves.has(`${t.job_id}:${t.status}`)).map(async (t) => {
      try {
        const hist = await api('GET', `/v1/jobs/${t.job_id}/history`, { signal });
        curves.set(`${t.job_id}:${t.status}`, hist.epochs || []);
      } catch (e) { if (e.name === 'AbortError') throw e; }
    }));
    const series = s.trials.map((t) => {
      const recs = curves.get(`${t.job_id}:${t.status}`) || [];
      const best = t.trial === s.best?.trial;
      const promoted = (t.jobs || []).length > 1;
      return { points: recs.map((r) => [r.epoch, r.val_loss]), color: best ? CLASS_COLORS[5] : promoted ? CLASS_COLORS[1] : CLASS_COLORS[0], width: best ? 3 : promoted ? 2 : 1, alpha: best || promoted ? 1 : 0.35, best };
    }).sort((a, b) => Number(a.best) - Number(b.best));
    drawPlot(curvesCanvas, { series, xLabel: 'epoch', yLabel: 'validation loss (fold 0)' });
  };
  const legendRow = (items) => h('div', { class: 'legend' }, items.map(([label, color]) => h('span', {}, h('i', { dataset: { color } }), label)));
  const pictures = section('How the search went',
    h('p', { class: 'muted' }, `Each dot is a trial's ${metricName} at a rung${folds ? ` (the mean of its ${folds} folds)` : ''}, in the order they finished; the dashed line is the best so far.`),
    legendRow([...s.rungs.map((e, k) => [`rung ${k + 1} (${e} epochs)`, [CLASS_COLORS[0], CLASS_COLORS[1], CLASS_COLORS[2], CLASS_COLORS[3]][k % 4]]), ['best so far', CLASS_COLORS[5]]]),
    h('div', { class: 'chart' }, historyCanvas),
    keys.length ? h('h3', {}, `${metricName} against each searched value`) : null,
    keys.length ? legendRow([['stopped early', CLASS_COLORS[0]], ['carried to the end', CLASS_COLORS[1]], ['chosen', CLASS_COLORS[5]]]) : null,
    paramSlot,
    h('h3', {}, 'Validation curves'),
    legendRow([['stopped early', CLASS_COLORS[0]], ['promoted', CLASS_COLORS[1]], ['chosen', CLASS_COLORS[5]]]),
    h('div', { class: 'chart' }, curvesCanvas));

  const actions = h('div', { class: 'actions' });
  if (!ended()) {
    actions.append(h('button', { type: 'button', class: 'danger', id: 'sweep-cancel', onclick: async () => {
      try { await api('POST', `/v1/sweeps/${id}/cancel`, { json: {}, signal }); toast('Cancelling the sweep'); } catch (e) { if (e.name !== 'AbortError') toast(e.message, 'error'); }
    } }, 'Cancel'));
  }
  if (s.best?.model_id) actions.append(h('a', { class: 'button primary', href: `#/models/${s.best.model_id}`, id: 'sweep-best-model' }, 'Open the best model'));
  root.append(
    h('div', { class: 'page-head' },
      h('div', {}, h('div', { class: 'crumbs' }, h('a', { href: '#/sweeps' }, 'Sweeps'), ' / ', h('span', { class: 'mono' }, shortId(s.id))),
        h('h1', {}, s.spec?.name || `Sweep ${shortId(s.id)}`, ' ', badge(s.status))),
      actions),
    section('Progress', progressSlot),
    section('Summary', kv([
      ['Dataset', dataset ? h('a', { href: `#/datasets/${s.dataset_id}`, id: 'sweep-dataset' }, dataset.name) : h('span', { class: 'mono' }, `${shortId(s.dataset_id)} (deleted)`)],
      ['Metric', `${s.metric} (${maximise ? 'higher' : 'lower'} is better)`], ['Rungs (epochs)', s.rungs.join(' → ')], ['Trials', String(s.spec?.max_trials ?? s.trials.length)],
      ['Best', s.best ? h('span', {}, fmt(s.best.metric), ' · trial ', String(s.best.trial), s.best.model_id ? [' · ', h('a', { href: `#/models/${s.best.model_id}`, id: 'best-model' }, 'model')] : null) : '–'],
      ['Mode', s.spec?.automatic ? 'automatic' : `${s.spec?.method || 'random'} search`],
      ['Validation', folds ? h('span', { id: 'sweep-folds' }, `${folds}-fold cross-validation: each trial's metric is the mean over its folds`) : 'one validation split per trial'],
      ['Refit', s.spec?.refit
        ? h('span', { id: 'sweep-refit' }, 'the best trial retrained on every training row',
          s.best?.refit_job_id ? [' · ', h('a', { href: `#/jobs/${s.best.refit_job_id}` }, 'refit job')] : null,
          s.best?.trial_model_id ? [' · ', h('a', { href: `#/models/${s.best.trial_model_id}`, id: 'trial-model' }, 'the trial\'s own model (evaluated on its validation rows)')] : null)
        : 'no (the best trial\'s model is the sweep\'s)']]), whySlot),
    pictures,
    section('Trials', h('div', { class: 'table-wrap' }, h('table', { class: 'trials', id: 'trials' }, h('thead', {}, head), body)),
      h('p', { class: 'muted' }, 'The trials\' jobs and models are left out of the Jobs and Models lists; ', h('a', { href: `#/jobs?sweep_id=${s.id}`, id: 'sweep-jobs' }, 'list this sweep\'s jobs'), '.')));
  paintLegends(root);
  const redraw = () => { drawHistory(); drawParams(); drawCurves().catch(() => {}); };
  requestAnimationFrame(redraw);
  const observer = new ResizeObserver(() => requestAnimationFrame(() => { drawHistory(); drawCurves().catch(() => {}); }));
  observer.observe(historyCanvas);
  onLeave(() => observer.disconnect());

  // The event stream: results as trials finish, progress as it moves; the record again when
  // a job ends, and the whole page once the sweep has.
  let refreshing = null;
  const refresh = () => {
    if (refreshing) return;
    refreshing = setTimeout(async () => {
      refreshing = null;
      try {
        s = await api('GET', `/v1/sweeps/${id}`, { signal });
        paintProgress(s.progress); paintTable(); paintWhy(); drawParams(); drawCurves().catch(() => {});
      } catch (e) { if (e.name !== 'AbortError') toast(e.message, 'error'); }
    }, 1000);
  };
  const wasEnded = ended();
  followEvents(`/v1/sweeps/${id}/events`, { signal, onEvent: (name, data) => {
    if (name === 'trial_result') { results.push(data); drawHistory(); historyCanvas.dataset.results = String(results.length); }
    else if (name === 'progress') paintProgress(data);
    else if (name === 'ended' || name === 'promoted') { if (!wasEnded) refresh(); }
    else if (name === 'status' && !wasEnded) route();
  } }).catch((e) => { if (e.name !== 'AbortError') toast(e.message, 'error'); });
}

// ---------- datasets ----------

async function viewDatasets(root) {
  document.title = 'Datasets · Backprop';
  const signal = aborter();
  const page = await api('GET', '/v1/datasets?limit=200', { signal });
  root.append(h('div', { class: 'page-head' }, h('h1', {}, 'Datasets')),
    section('Upload a CSV', uploader((d) => { location.hash = `#/datasets/${d.id}`; })));
  if (!page.items.length) { root.append(h('div', { class: 'empty' }, h('p', {}, 'No datasets yet.'))); return; }
  root.append(table(['Dataset', 'Rows', 'Features', 'Target', 'Size', 'Created'], page.items.map((d) => h('tr', {},
    h('td', { 'data-label': 'Dataset' }, h('a', { href: `#/datasets/${d.id}` }, d.name), h('div', { class: 'sub mono' }, shortId(d.id))),
    h('td', { 'data-label': 'Rows', class: 'num' }, String(d.rows)),
    h('td', { 'data-label': 'Features', class: 'num' }, String(d.inputs)),
    h('td', { 'data-label': 'Target' }, d.classes ? `${d.classes.length} classes: ${d.classes.slice(0, 6).join(', ')}${d.classes.length > 6 ? '…' : ''}` : `${d.outputs} numeric`),
    h('td', { 'data-label': 'Size', class: 'num' }, `${fmt(d.size_bytes / 1024, 3)} KiB`),
    h('td', { 'data-label': 'Created', title: d.created_at }, ago(d.created_at))))));
}

/** A small horizontal bar: `share` of the full width (0..1), labelled for screen readers. */
function shareBar(share, label, cls = '') {
  const bar = h('div', { class: `bar share ${cls}`, role: 'img', 'aria-label': label }, h('span'));
  bar.firstChild.style.width = `${Math.max(0, Math.min(100, 100 * share))}%`;
  return bar;
}

const KINDS = ['numeric', 'categorical', 'boolean', 'date', 'ignore'];

/** What a user looks at before training: each column's type, gaps, spread or categories.
 * With `kinds` (a column → kind map, when the file is at hand), each type is a choice. */
function profileTable(profile, kinds = null) {
  const rows = profile.rows || 1;
  return table(['Column', 'Type', 'Why', 'Missing', 'Distinct', 'Values'], profile.columns.map((c) => {
    let values;
    if (c.dates) {
      values = h('span', { class: 'mono small' }, `${c.dates[0]} … ${c.dates[1]}`);
    } else if (c.top && c.top.length) {
      values = h('div', { class: 'counts' }, c.top.slice(0, 5).map((t) => h('div', { class: 'count' },
        h('span', { class: 'count-label' }, t.value), shareBar(t.count / rows, `${t.value}: ${t.count} rows`), h('span', { class: 'num small' }, String(t.count)))),
      c.distinct > 5 ? h('div', { class: 'muted small' }, `and ${c.distinct - 5} more`) : null);
    } else if (c.stats) {
      values = h('span', { class: 'mono small' }, `${fmt(c.stats.min)} … ${fmt(c.stats.max)} · mean ${fmt(c.stats.mean)} ± ${fmt(c.stats.std)}`);
    } else values = '–';
    return h('tr', { 'data-column': c.name },
      h('td', { 'data-label': 'Column' }, c.name),
      h('td', { 'data-label': 'Type' }, h('span', { class: `chip type-${c.type}` }, c.type), kinds
        ? select([['', 'keep'], ...KINDS.filter((k) => k !== c.type).map((k) => [k, `→ ${k}`])], '', { class: 'kind', 'data-column': c.name, 'aria-label': `read ${c.name} as`,
          onchange: (e) => { if (e.target.value) kinds[c.name] = e.target.value; else delete kinds[c.name]; } })
        : null),
      h('td', { 'data-label': 'Why', class: 'small reason' }, c.reason || '–'),
      h('td', { 'data-label': 'Missing', class: 'num' }, String(c.missing), c.missing ? shareBar(c.missing / rows, `${c.missing} of ${rows} missing`, 'missing') : null),
      h('td', { 'data-label': 'Distinct', class: 'num' }, `${c.distinct}${c.distinct_more ? '+' : ''}`),
      h('td', { 'data-label': 'Values' }, values));
  }), 'profile');
}

/** What deserves a look before training: the dataset's warnings, each naming its column. */
function warningList(warnings) {
  return h('ul', { class: 'warnings', id: 'dataset-warnings' }, warnings.map((w) => h('li', { 'data-code': w.code, 'data-column': w.column || '' },
    h('span', { class: 'chip warn' }, w.code.replaceAll('_', ' ')), ' ', w.message)));
}

/** How a CSV was read: "semicolons, decimal comma, windows-1252 (sniffed: …)". */
function dialectText(d) {
  if (!d) return null;
  const names = { ',': 'commas', ';': 'semicolons', '\t': 'tabs', '|': 'pipes' };
  const sniffed = (d.sniffed || []).length ? ` (sniffed: ${d.sniffed.join(', ')})` : '';
  return `${names[d.delimiter] || JSON.stringify(d.delimiter)}, decimal ${d.decimal === ',' ? 'comma' : 'point'}, ${d.encoding}${sniffed}`;
}

/** The target's class balance (or spread, for numbers). */
function targetBalance(profile) {
  const t = profile.target || {};
  if (t.classes) {
    const total = t.classes.reduce((a, c) => a + c.count, 0) || 1;
    return h('div', { class: 'counts', id: 'class-balance' }, t.classes.map((c) => h('div', { class: 'count' },
      h('span', { class: 'count-label' }, c.value), shareBar(c.count / total, `${c.value}: ${c.count} rows`), h('span', { class: 'num small' }, `${c.count} (${fmt((100 * c.count) / total, 3)}%)`))));
  }
  if (t.stats) return h('p', { class: 'mono small', id: 'class-balance' }, `${fmt(t.stats.min)} … ${fmt(t.stats.max)} · mean ${fmt(t.stats.mean)} ± ${fmt(t.stats.std)}`);
  return h('p', { class: 'muted' }, '–');
}

/** The dataset's columns; when its file was uploaded in this tab, each kind can be changed
 * and the file read again with them (the new dataset replaces this one). */
function columnsSection(d) {
  if (!lastUpload || lastUpload.id !== d.id) {
    return h('div', {}, profileTable(d.profile),
      h('p', { class: 'muted small' }, 'To read a column as another kind, upload the file again here and change it on this page, or set it for one job under "Column types" when you train.'));
  }
  const kinds = {};
  const out = h('div', { id: 'recheck-status', role: 'status' });
  const go = h('button', { type: 'button', class: 'primary', id: 'recheck' }, 'Re-check with these kinds');
  go.addEventListener('click', async () => {
    if (!Object.keys(kinds).length) { out.textContent = 'Change a kind first.'; return; }
    go.disabled = true;
    out.textContent = 'Reading the file again…';
    const prior = lastUpload.query.columns ? JSON.parse(lastUpload.query.columns) : {};
    const query = { ...lastUpload.query, columns: JSON.stringify({ ...prior, ...kinds }) };
    try {
      const fresh = await api('POST', `/v1/datasets?${new URLSearchParams(query)}`, { body: lastUpload.blob, type: lastUpload.type });
      await api('DELETE', `/v1/datasets/${d.id}`).catch(() => null);
      lastUpload = { ...lastUpload, id: fresh.id, query };
      location.hash = `#/datasets/${fresh.id}`;
    } catch (e) {
      out.replaceChildren(errorBox(e));
      go.disabled = false;
    }
  });
  return h('div', {}, h('p', { class: 'muted small' }, 'Change a kind and re-check: the file is read again with it, and the new reading replaces this one (or says the first cell that does not read).'),
    profileTable(d.profile, kinds), h('div', { class: 'actions' }, go), out);
}

async function viewDataset(root, id) {
  const signal = aborter();
  const d = await api('GET', `/v1/datasets/${id}`, { signal });
  const rows = await api('GET', `/v1/datasets/${id}/rows?limit=20`, { signal });
  document.title = `${d.name} · Backprop`;
  // DOM append writes null as text: what a dataset does not have is left out.
  const append = (...parts) => root.append(...parts.filter((x) => x != null));
  append(
    h('div', { class: 'page-head' },
      h('div', {}, h('div', { class: 'crumbs' }, h('a', { href: '#/datasets' }, 'Datasets'), ' / ', h('span', { class: 'mono' }, shortId(d.id))), h('h1', {}, d.name)),
      h('div', { class: 'actions' }, h('a', { class: 'button primary', href: `#/new?dataset=${d.id}` }, 'Train on it'))),
    section('Shape', kv([['Rows', String(d.rows)], ['Features', `${d.inputs}: ${(d.feature_names || []).join(', ')}`],
      ['Target', `${(d.target_names || []).join(', ')} (${d.target_kind})`], d.classes ? ['Classes', d.classes.join(', ')] : null,
      d.task ? ['Task', `${d.task} (said at upload)`] : null,
      d.dialect ? ['Read as', dialectText(d.dialect)] : null,
      ['Stored', `${fmt(d.size_bytes / 1024, 3)} KiB`], ['Created', new Date(d.created_at).toLocaleString()],
      d.dropped_rows ? ['Left out', `${d.dropped_rows} rows without a target`] : null])),
    d.warnings && d.warnings.length ? section(`Warnings (${d.warnings.length})`, warningList(d.warnings)) : null,
    d.profile ? section('Columns', columnsSection(d)) : null,
    d.profile ? section(`Target: ${(d.target_names || []).join(', ')}`, targetBalance(d.profile)) : null,
    d.target_kind !== 'none' ? findBestSection(d, signal) : null,
    d.target_kind !== 'none' ? await leaderboardSection(d, signal) : null,
    section(`First ${rows.rows.length} of ${rows.total} rows`, table(['#', ...rows.feature_names, ...rows.target_names],
      rows.rows.map((r, i) => h('tr', {}, h('td', { class: 'num' }, String(i + 1)), r.features.map((v) => h('td', { class: 'num' }, v == null ? '' : String(v))),
        (r.target == null ? [] : Array.isArray(r.target) ? r.target : [r.target]).map((v) => h('td', { class: 'num' }, String(v))))), 'preview')));
}

/** "Find the best model": the automatic mode on this dataset, with a time budget and the
 * metric to compare on; "Estimate" asks for a dry run first. */
function findBestSection(d, signal) {
  const seconds = h('input', { type: 'number', id: 'find-seconds', min: 5, step: 5, value: 120, inputmode: 'numeric' });
  const trials = h('input', { type: 'number', id: 'find-trials', min: 1, max: 200, value: 20, inputmode: 'numeric' });
  const classifier = d.target_kind === 'labels' || (d.classes && d.classes.length > 0);
  const metrics = classifier ? [['', 'automatic (validation log loss)'], ['val_accuracy', 'validation accuracy'], ['val_log_loss', 'validation log loss'], ['val_loss', 'validation loss']]
    : [['', 'automatic (validation RMSE)'], ['val_rmse', 'validation RMSE'], ['val_mae', 'validation MAE'], ['val_loss', 'validation loss']];
  const metric = h('select', { id: 'find-metric' }, metrics.map(([v, label]) => h('option', { value: v }, label)));
  const out = h('div', { id: 'find-estimate', 'aria-live': 'polite', class: 'muted' });
  const body = () => {
    const b = { dataset_id: d.id, name: `best model for ${d.name}`, max_trials: Number(trials.value) || 20 };
    if (Number(seconds.value) > 0) b.max_seconds = Number(seconds.value);
    if (metric.value) b.metric = metric.value;
    return b;
  };
  const estimate = async () => {
    out.replaceChildren('Estimating…');
    try {
      const e = await api('POST', '/v1/sweeps?dry_run=true', { json: body(), signal });
      out.replaceChildren(`Up to ${e.trials} trials (${e.trials_per_rung.join(' → ')} over rungs of ${e.rungs.join(' → ')} epochs${e.folds > 1 ? `, each on ${e.folds} folds` : ''}${e.refit ? ', then the chosen one refitted' : ''}): at most ${e.jobs} jobs and ${e.epochs} epochs, about ${duration(e.estimated_seconds * 1000)} on this node one job at a time (early stopping shortens it; the time budget ends it sooner).`);
    } catch (err) { if (err.name !== 'AbortError') out.replaceChildren(errorBox(err)); }
  };
  const start = async (e) => {
    e.preventDefault();
    try {
      const s = await api('POST', '/v1/sweeps', { json: body(), signal });
      location.hash = `#/sweeps/${s.id}`;
    } catch (err) { if (err.name !== 'AbortError') out.replaceChildren(errorBox(err)); }
  };
  return section('Find the best model', h('p', { class: 'muted' }, 'The automatic mode: Backprop picks the loss from the target, searches the architecture, learning rate, batch size and L2 with cross-validation and successive halving, and refits the best on every row.'),
    h('form', { id: 'find-best-form', onsubmit: start },
      h('div', { class: 'grid three' }, field('Time budget (seconds)', seconds, 'Ends the search then; the best trial so far wins.'), field('Trials', trials, 'At most this many.'), field('Compare on', metric, 'What “best” means.')),
      h('div', { class: 'actions left' }, h('button', { type: 'submit', class: 'primary', id: 'find-best' }, 'Find the best model'),
        h('button', { type: 'button', class: 'ghost', id: 'find-estimate-button', onclick: estimate }, 'Estimate'))),
    out);
}

const LEADERBOARD_METRICS = { log_loss: 'log loss', accuracy: 'accuracy', roc_auc: 'ROC AUC', rmse: 'RMSE', mae: 'MAE', r2: 'R²' };

/** Every model trained on the dataset, ranked (GET /v1/datasets/{id}/leaderboard). */
async function leaderboardSection(d, signal, metric = '') {
  const slot = h('div', { id: 'leaderboard' });
  const load = async (m) => {
    const b = await api('GET', `/v1/datasets/${d.id}/leaderboard${m ? `?metric=${m}` : ''}`, { signal });
    if (!b.entries.length) { slot.replaceChildren(h('p', { class: 'muted' }, 'No model has been trained on it yet.')); return; }
    const shown = Object.keys(LEADERBOARD_METRICS).filter((k) => b.entries.some((e) => e.scores[k] != null));
    const pick = h('select', { id: 'leaderboard-metric', 'aria-label': 'rank by', onchange: (e) => load(e.target.value).catch((err) => slot.replaceChildren(errorBox(err))) },
      shown.map((k) => h('option', { value: k, selected: k === b.metric ? '' : null }, LEADERBOARD_METRICS[k])));
    const what = (e) => {
      if (!e.sweep) return 'job';
      if (e.sweep.role === 'refit') return h('a', { href: `#/sweeps/${e.sweep.id}` }, 'sweep\'s refit');
      return h('a', { href: `#/sweeps/${e.sweep.id}` }, `trial ${e.sweep.trial}, rung ${e.sweep.rung + 1}`);
    };
    slot.replaceChildren(h('div', { class: 'actions left' }, h('span', { class: 'muted' }, `Ranked by ${LEADERBOARD_METRICS[b.metric]} (${b.higher_is_better ? 'higher' : 'lower'} is better):`), pick),
      table(['#', 'Model', 'From', ...shown.map((k) => LEADERBOARD_METRICS[k]), 'Scored on'], b.entries.map((e) => h('tr', { 'data-rank': e.rank ?? '', 'data-model': e.model_id },
        h('td', { class: 'num' }, e.rank == null ? '–' : String(e.rank)),
        h('td', {}, h('a', { href: `#/models/${e.model_id}` }, e.name || shortId(e.model_id))),
        h('td', {}, what(e)),
        shown.map((k) => h('td', { class: `num${k === b.metric ? ' strong' : ''}` }, fmt(e.scores[k], 4))),
        h('td', { class: 'small', title: e.scored_on.detail || '' }, scoredOnText(e.scored_on)))), 'leaderboard'));
  };
  await load(metric).catch((err) => slot.replaceChildren(errorBox(err)));
  return section('Leaderboard', slot);
}

/** Where a model's scores come from, in a few words. */
function scoredOnText(s) {
  if (!s) return '–';
  const rows = s.rows != null ? ` (${s.rows} rows)` : '';
  switch (s.kind) {
    case 'validation': return `held-out rows${rows}`;
    case 'cross_validation': return `${s.folds}-fold cross-validation${rows}`;
    case 'out_of_fold': return `out-of-fold predictions of ${s.folds} folds${rows}`;
    case 'chosen_trial_validation': return `the chosen trial's held-out rows${rows}`;
    default: return 'not scored';
  }
}

// ---------- start ----------

setupKeyDialog();
window.addEventListener('hashchange', route);
route();
