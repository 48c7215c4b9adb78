// Browser test of the dashboard: starts the real `backprop` binary (with an API key) on an
// ephemeral port and a temporary data directory, drives Debian's Chromium through
// playwright-core, and asserts on the page at each step. Screenshots go to
// target/browser-screenshots/ (git-ignored), or $SCREENSHOT_DIR.
//
//   cargo build && (cd tests/browser && npm ci && npm test)
//
// Environment: BACKPROP_BIN (default target/debug/backprop), CHROMIUM (default
// /usr/bin/chromium), SCREENSHOT_DIR.

import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync, existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '../..');
const bin = process.env.BACKPROP_BIN || join(repo, 'target/debug/backprop');
const browserPath = process.env.CHROMIUM || '/usr/bin/chromium';
const shots = process.env.SCREENSHOT_DIR || join(repo, 'target/browser-screenshots');
const KEY = 'browser-test-secret';

const t0 = Date.now();
const log = (msg) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s] ${msg}`);

function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.unref();
    s.on('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

/** A deterministic two-feature set: class "inside" within a circle of radius 1.2, "outside" beyond. */
function circleCsv(n) {
  let s = 12345;
  const r = () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return (s / 2147483648) * 4 - 2;
  };
  const lines = ['x1,x2,label'];
  for (let i = 0; i < n; i++) {
    const x = r();
    const y = r();
    lines.push(`${x.toFixed(4)},${y.toFixed(4)},${x * x + y * y < 1.44 ? 'inside' : 'outside'}`);
  }
  return lines.join('\n') + '\n';
}

async function waitFor(what, fn, timeoutMs = 20000, everyMs = 100) {
  const start = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

async function main() {
  assert.ok(existsSync(bin), `no backprop binary at ${bin}; run cargo build first`);
  assert.ok(existsSync(browserPath), `no Chromium at ${browserPath}; apt-get install chromium`);
  mkdirSync(shots, { recursive: true });
  const data = mkdtempSync(join(tmpdir(), 'backprop-browser-'));
  const csvPath = join(data, 'circle.csv');
  writeFileSync(csvPath, circleCsv(300));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const server = spawn(bin, ['serve', '--listen', `127.0.0.1:${port}`, '--data-dir', data,
    '--api-keys', `browser:admin:${KEY}`, '--checkpoint-secs', '0.3'], {
    env: { ...process.env, RUST_LOG: 'warn' },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  let browser;
  const cleanup = async () => {
    await browser?.close().catch(() => {});
    server.kill('SIGTERM');
    rmSync(data, { recursive: true, force: true });
  };
  try {
    await waitFor('the server', async () => (await fetch(`${base}/healthz`).catch(() => null))?.ok, 20000);
    log(`server up on ${base}`);
    browser = await chromium.launch({
      executablePath: browserPath,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    await run(browser, base, csvPath);
    log('all steps passed');
  } finally {
    await cleanup();
  }
}

async function run(browser, base, csvPath) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 }, deviceScaleFactor: 1 });
  const page = await context.newPage();
  page.setDefaultTimeout(20000);
  // Every console error fails the test, except the failed-request lines Chromium logs for API
  // answers the steps provoke on purpose: the 401 that asks for the key, 422s for the bad spec
  // and the bad predict row, and 409s while a job has no
  // checkpoint yet for the decision boundary.
  const consoleErrors = [];
  const expected = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(`uncaught: ${e.message}`));
  page.on('response', (r) => {
    if (r.status() >= 400) expected.push(`${r.request().method()} ${new URL(r.url()).pathname} ${r.status()}`);
  });
  const shot = async (name) => {
    await page.evaluate(() => { document.querySelector('#toast').className = ''; });
    await page.waitForTimeout(250);
    await page.screenshot({ path: join(shots, `${name}.png`) });
  };

  // 1. The dashboard loads without a key, asks for one at the first 401, keeps it.
  await page.goto(`${base}/`);
  await page.locator('#key-dialog[open]').waitFor();
  await page.fill('#key-input', KEY);
  await page.press('#key-input', 'Enter');
  await page.getByText('No jobs yet.').waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem('backprop.key')), KEY);
  assert.equal(await page.locator('#key-button').textContent(), 'Key ✓');
  log('1. dashboard opened, key entered and kept in sessionStorage');

  // 2. Upload a two-feature CSV through the new-job form.
  await page.click('a[data-nav="new"]');
  await page.locator('#new-job').waitFor();
  await page.setInputFiles('#csv-file', csvPath);
  await page.locator('#csv-target').waitFor();
  assert.equal(await page.inputValue('#csv-target'), 'label');
  await page.click('#csv-upload');
  await waitFor('the dataset to be selected', async () => (await page.inputValue('#dataset')) !== '');
  const info = await page.textContent('#dataset-info');
  assert.match(info, /300 rows · 2 features \(x1, x2\)/);
  assert.match(info, /classes inside, outside/);
  assert.equal(await page.inputValue('#loss'), 'binary_crossentropy');
  log('2. CSV uploaded through the form; dataset selected, loss chosen from its classes');

  // 3. A bad spec: the API's validation errors appear next to their fields.
  await page.fill('#layer-0-units', '0');
  await page.fill('#learning-rate', '-1');
  await page.click('#submit-job');
  await page.locator('#form-errors .alert').waitFor();
  const unitsErr = await page.textContent('#layer-0-units-error');
  assert.ok(unitsErr.length > 0, 'no error under layer 1 units');
  assert.equal(await page.getAttribute('#layer-0-units', 'aria-invalid'), 'true');
  assert.ok((await page.textContent('#learning-rate-error')).length > 0, 'no error under the learning rate');
  assert.match(page.url(), /#\/new$/);
  await shot('new-job-errors');
  log(`3. bad spec refused; field errors: "${unitsErr}"`);

  // 4. Fix it and start training.
  await page.fill('#layer-0-units', '12');
  await page.fill('#layer-1-units', '8');
  await page.fill('#learning-rate', '0.01');
  await page.fill('#epochs', '3000');
  await page.fill('#job-name', 'circle');
  await page.click('#submit-job');
  await page.waitForURL(/#\/jobs\/[0-9a-f-]{36}$/);
  const jobUrl = page.url();
  log(`4. job created: ${jobUrl.split('#')[1]}`);

  // 5. The loss curve gains points while the job trains.
  const points = () => page.locator('#loss-chart').getAttribute('data-points').then((v) => Number(v || 0));
  const first = await waitFor('loss points', async () => { const n = await points(); return n > 0 ? n : 0; });
  const later = await waitFor('more loss points', async () => { const n = await points(); return n > first ? n : 0; });
  assert.ok(later > first);
  log(`5. loss curve grew from ${first} to ${later} points`);

  // 6. The decision boundary is drawn (non-blank, two colours) and redrawn as training goes.
  await waitFor('the decision boundary', async () => Number(await page.locator('#boundary').getAttribute('data-drawn') || 0) >= 1);
  await page.locator('#boundary').scrollIntoViewIfNeeded();
  await shot('decision-boundary');
  const pixels = await page.evaluate(() => {
    const c = document.querySelector('#boundary');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let painted = 0; let blue = 0; let orange = 0;
    for (let i = 0; i < d.length; i += 4) {
      if (d[i + 3] === 0) continue;
      painted++;
      if (d[i + 2] > d[i] + 40) blue++;
      if (d[i] > d[i + 2] + 40) orange++;
    }
    return { total: d.length / 4, painted, blue, orange };
  });
  assert.ok(pixels.painted > pixels.total * 0.5, `boundary mostly blank: ${JSON.stringify(pixels)}`);
  assert.ok(pixels.blue > 500 && pixels.orange > 500, `boundary lacks one class's colour: ${JSON.stringify(pixels)}`);
  assert.match(await page.textContent('#boundary-caption'), /after epoch \d+/);
  log(`6. decision boundary drawn (${JSON.stringify(pixels)})`);

  // 7. The job finishes; the page says so and links its model.
  await page.locator('h1 .badge.succeeded').waitFor({ timeout: 120000 });
  const modelLink = page.getByRole('link', { name: 'Open model' });
  await modelLink.waitFor();
  await page.locator('#boundary').scrollIntoViewIfNeeded();
  await waitFor('the final boundary', async () => /final model/.test(await page.textContent('#boundary-caption')));
  await shot('decision-boundary-final');
  log('7. job succeeded; model linked');

  // 8. A second job is cancelled from its page.
  await page.goto(`${base}/#/new`);
  await page.locator('#dataset option:nth-child(2)').waitFor({ state: 'attached' });
  await page.selectOption('#dataset', { index: 1 });
  await page.fill('#epochs', '100000');
  await page.fill('#job-name', 'to cancel');
  await page.click('#submit-job');
  await page.waitForURL(/#\/jobs\/[0-9a-f-]{36}$/);
  await waitFor('the second job to train', async () => Number(await page.locator('#loss-chart').getAttribute('data-points') || 0) > 600);
  await page.locator('h1 .badge.running').waitFor();
  // This job trains for long: its boundary is redrawn from newer checkpoints as it goes.
  const drawn = () => page.locator('#boundary').getAttribute('data-drawn').then((v) => Number(v || 0));
  const before = await waitFor('its boundary', async () => /latest checkpoint/.test(await page.textContent('#boundary-caption')) && drawn());
  const epochOf = async () => Number((await page.textContent('#boundary-caption')).match(/after epoch (\d+)/)[1]);
  const epochBefore = await epochOf();
  await waitFor('a redraw of the boundary', async () => (await drawn()) > before && (await epochOf()) > epochBefore, 30000);
  log(`   boundary redrawn while training: epoch ${epochBefore} → ${await epochOf()}`);
  await page.evaluate(() => window.scrollTo(0, 0));
  await shot('job-running');
  await page.locator('#boundary').scrollIntoViewIfNeeded();
  await shot('decision-boundary-running');
  await page.getByRole('button', { name: 'Cancel' }).click();
  await page.locator('h1 .badge.cancelled').waitFor();
  assert.equal(await page.getByRole('button', { name: 'Cancel' }).count(), 0);
  log('8. second job cancelled');

  // 9. The job list: both jobs, live status, filter by status.
  await page.click('a[data-nav="jobs"]');
  await page.locator('tr[data-status="succeeded"]').waitFor();
  await page.locator('tr[data-status="cancelled"]').waitFor();
  await shot('jobs');
  await page.click('.chips a:has-text("cancelled")');
  await page.waitForURL(/status=cancelled/);
  await waitFor('the filtered list', async () => (await page.locator('tr[data-status]').count()) === 1
    && (await page.locator('tr[data-status="cancelled"]').count()) === 1);
  log('9. job list shows both; the status filter works');

  // 10. Predict from the model page.
  await page.goto(jobUrl);
  await page.getByRole('link', { name: 'Open model' }).click();
  await page.waitForURL(/#\/models\/[0-9a-f-]{36}$/);
  await page.fill('#predict-input', 'x1,x2\n0,0\n1.9,-1.8\n0.3,0.2');
  await page.click('#predict-submit');
  await page.locator('table.predictions tbody tr').nth(2).waitFor();
  const labels = await page.locator('table.predictions td.label-cell').allTextContents();
  assert.deepEqual(labels, ['inside', 'outside', 'inside']);
  await shot('model');
  // A bad row is refused with the API's explanation.
  await page.fill('#predict-input', '1,2,3');
  await page.click('#predict-submit');
  await page.locator('#predict-output .alert.error').waitFor();
  assert.match(await page.textContent('#predict-output'), /model takes 2 inputs/);
  log(`10. predicted from the model page: ${labels.join(', ')}`);

  // 11. Datasets: list, shape, classes, preview.
  await page.click('a[data-nav="datasets"]');
  await page.getByRole('link', { name: 'circle' }).click();
  await page.locator('table.preview tbody tr').first().waitFor();
  assert.equal(await page.locator('table.preview tbody tr').count(), 20);
  assert.match(await page.textContent('main'), /First 20 of 300 rows/);
  await shot('dataset');
  log('11. dataset page shows shape and a preview');

  // 14. A tabular dataset: its profile (types, gaps, categories, class balance) and a
  // column type changed for one job in the new-job form.
  const tabular = ['island,size,year,label'];
  for (let i = 0; i < 120; i++) {
    const island = ['Biscoe', 'Dream', 'Torgersen'][i % 3];
    tabular.push(`${island},${i % 11 === 0 ? '' : (i % 17) + 0.5},${2007 + (i % 3)},${i % 3 === 0 ? 'yes' : 'no'}`);
  }
  const created = await fetch(`${base}/v1/datasets?name=islands&target=label`, {
    method: 'POST', headers: { authorization: `Bearer ${KEY}`, 'content-type': 'text/csv' }, body: tabular.join('\n') + '\n',
  }).then((r) => r.json());
  await page.goto(`${base}/#/datasets/${created.id}`);
  await page.locator('table.profile tbody tr').first().waitFor();
  assert.equal(await page.locator('table.profile tbody tr').count(), 3);
  assert.equal(await page.textContent('tr[data-column="island"] .chip'), 'categorical');
  assert.equal(await page.textContent('tr[data-column="size"] .chip'), 'numeric');
  assert.equal(await page.locator('tr[data-column="island"] .counts .count').count(), 3);
  assert.equal(await page.locator('tr[data-column="size"] .bar.missing').count(), 1, 'a bar for the missing cells');
  assert.equal(await page.locator('#class-balance .count').count(), 2);
  const barWidth = await page.locator('#class-balance .count .bar span').first().evaluate((el) => el.style.width);
  assert.ok(Math.abs(parseFloat(barWidth) - (100 * 80) / 120) < 0.01, `the larger class fills two thirds: ${barWidth}`);
  await shot('dataset-profile');
  await page.click('a.button.primary');
  await page.locator('#column-types details').waitFor();
  await page.click('#column-types summary');
  await page.selectOption('select[data-column="year"]', 'categorical');
  await page.fill('#epochs', '3');
  await page.click('#dry-run');
  await waitFor('the dry run', async () => /^Valid:/.test(await page.textContent('#estimate')));
  await page.click('#submit-job');
  await page.waitForURL(/#\/jobs\/[0-9a-f-]{36}$/);
  const tabJob = await fetch(`${base}/v1/jobs/${page.url().split('/').pop()}`, { headers: { authorization: `Bearer ${KEY}` } }).then((r) => r.json());
  assert.deepEqual(tabJob.spec.columns, { year: 'categorical' });
  log('14. tabular dataset profiled; a column type changed for one job');

  // 15. An export as a German spreadsheet writes it, through the upload form: semicolons,
  // decimal commas, money, dates, an empty column. The page says how the file was read, why
  // each column has its type, and what deserves a look.
  const kunden = ['Kunde;Umsatz;Seit;Notiz;Klasse'];
  for (let i = 0; i < 40; i++) {
    kunden.push(`K${100 + i};${1 + (i % 9)}.${String((i * 37) % 1000).padStart(3, '0')},${String(i % 100).padStart(2, '0')} €;${String(1 + (i % 28)).padStart(2, '0')}.${String(1 + (i % 12)).padStart(2, '0')}.2023;;${i % 2 ? 'ja' : 'nein'}`);
  }
  await page.goto(`${base}/#/datasets`);
  await page.locator('#csv-file').setInputFiles({ name: 'kunden.csv', mimeType: 'text/csv', buffer: Buffer.from(kunden.join('\n') + '\n') });
  await page.selectOption('#csv-target', 'Klasse');
  await page.click('#csv-upload');
  await page.waitForURL(/#\/datasets\/[0-9a-f-]{36}$/);
  await page.locator('table.profile tbody tr').first().waitFor();
  assert.match(await page.textContent('main'), /Read as\s*semicolons/);
  assert.equal(await page.textContent('tr[data-column="Umsatz"] .chip'), 'numeric');
  assert.match(await page.textContent('tr[data-column="Umsatz"] td.reason'), /currency, `€`/);
  assert.equal(await page.textContent('tr[data-column="Seit"] .chip'), 'date');
  assert.match(await page.textContent('tr[data-column="Seit"] td.reason'), /day\/month\/year/);
  assert.match(await page.textContent('tr[data-column="Kunde"] td.reason'), /identifier/);
  assert.equal(await page.locator('#dataset-warnings li[data-code="empty_column"][data-column="Notiz"]').count(), 1);
  await shot('dataset-reasons-and-warnings');
  log('15. an export read with its dialect, each column with its reason, the warnings listed');

  // 16. Change a kind and re-check: a kind whose cells do not read names the first one; one
  // that reads replaces the dataset with the file read again.
  const replaced = page.url().split("/").pop();
  await page.selectOption('select.kind[data-column="Umsatz"]', 'date');
  await page.click('#recheck');
  await waitFor('the refusal', async () => /Umsatz/.test(await page.textContent('#recheck-status')));
  assert.match(await page.textContent('#recheck-status'), /data row 1's cell "1\.000,00 €" does not read as a date/);
  await page.selectOption('select.kind[data-column="Umsatz"]', 'categorical');
  await page.click('#recheck');
  await waitFor('the new dataset', async () => !page.url().endsWith(replaced));
  await page.locator('tr[data-column="Umsatz"] .chip').waitFor();
  assert.equal(await page.textContent('tr[data-column="Umsatz"] .chip'), 'categorical');
  assert.match(await page.textContent('main'), /Read as\s*semicolons/);
  const gone = await fetch(`${base}/v1/datasets/${replaced}`, { headers: { authorization: `Bearer ${KEY}` } });
  assert.equal(gone.status, 404);
  log('16. a kind changed and re-checked: a bad one names its cell, a good one replaces the dataset');

  // 12. Keyboard: the first Tab reaches the skip link, Enter on a nav link navigates.
  await page.goto(`${base}/#/jobs`);
  await page.reload();
  await page.locator('tr[data-status]').first().waitFor();
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement?.className), 'skip');
  await page.focus('a[data-nav="models"]');
  await page.keyboard.press('Enter');
  await page.waitForURL(/#\/models$/);
  log('12. keyboard navigation works');

  // 13. A phone: nothing wider than the screen.
  await page.setViewportSize({ width: 390, height: 844 });
  for (const route of ['#/jobs', jobUrl.split('#')[1] ? `#${jobUrl.split('#')[1]}` : '#/jobs', '#/new']) {
    await page.goto(`${base}/${route}`);
    await page.locator('main > *').first().waitFor();
    await page.waitForTimeout(300);
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 390, `${route} is ${width}px wide on a 390px screen`);
  }
  await page.goto(`${base}/#/jobs`);
  await page.locator('tr[data-status]').first().waitFor();
  await shot('jobs-phone');
  log('13. readable at 390px');

  // 15. A sweep (issue 14): its trials table sorts by a column, the best trial is marked,
  // the summary says it cross-validates and refits (with a link to the refit job), and the
  // chosen trial's model shows its evaluation on the validation rows (confusion matrix,
  // importance).
  await page.setViewportSize({ width: 1280, height: 860 });
  const call = async (method, path, body) => {
    const r = await fetch(`${base}${path}`, { method, headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' }, body: body && JSON.stringify(body) });
    const text = await r.text();
    assert.ok(r.ok, `${method} ${path}: ${r.status} ${text}`);
    return JSON.parse(text);
  };
  const datasets = await call('GET', '/v1/datasets');
  const sweep = await call('POST', '/v1/sweeps', {
    dataset_id: datasets.items.find((d) => d.name === 'circle').id, method: 'grid', seed: 1, name: 'widths',
    base: { layers: [{ units: 4, activation: 'tanh' }, {}], loss: 'binary_crossentropy', epochs: 4, validation_split: 0.25, seed: 2 },
    space: { '/layers/0/units': { choice: [2, 4, 8] } }, folds: 2, refit: true,
  });
  await waitFor('the sweep', async () => (await call('GET', `/v1/sweeps/${sweep.id}`)).status === 'succeeded', 60000);
  await page.click('a[data-nav="sweeps"]');
  await page.getByRole('link', { name: 'widths' }).click();
  await page.locator('#trials tbody tr').nth(2).waitFor();
  const metrics = async () => (await page.locator('#trials tbody tr td:nth-child(5)').allTextContents()).map(Number);
  const asc = await metrics();
  assert.deepEqual(asc, [...asc].sort((a, b) => a - b), `sorted by the metric: ${asc}`);
  await page.click('button.sort[data-col="4"]');
  const desc = await metrics();
  assert.deepEqual(desc, [...asc].reverse(), `sorted the other way: ${desc}`);
  assert.equal(await page.locator('#trials tr.best').count(), 1);
  assert.match(await page.locator('#sweep-folds').textContent(), /2-fold cross-validation/);
  assert.equal(await page.locator('#sweep-refit a[href^="#/jobs/"]').count(), 1);
  assert.deepEqual(await page.locator('#trials tbody tr td:nth-child(7)').allTextContents(), ['2 of 2', '2 of 2', '2 of 2']);
  await shot('sweep');
  // The sweep's model is the refit (no validation rows left to score it on); the chosen
  // trial's own model carries the evaluation.
  await page.click('#trial-model');
  await page.locator('#evaluation table.confusion tbody tr').nth(1).waitFor();
  assert.equal(await page.locator('#evaluation table.importance tbody tr').count(), 2);
  await shot('evaluation');
  log('15. a sweep: trials sorted both ways, folds and refit shown, the chosen trial\'s evaluation shown');

  // 16. A job with "learning_rate": "auto": its page draws the range test's curve with the
  // chosen rate marked, and says which rate it trains at.
  const autoJob = await call('POST', '/v1/jobs', {
    dataset_id: datasets.items.find((d) => d.name === 'circle').id, name: 'auto rate',
    layers: [{ units: 8, activation: 'tanh' }, {}], loss: 'binary_crossentropy', epochs: 5, seed: 4,
    optimizer: { type: 'adam', learning_rate: 'auto' },
  });
  const tested = await waitFor('the range test', async () => {
    const j = await call('GET', `/v1/jobs/${autoJob.id}`);
    return j.lr_range_test?.learning_rate ? j : null;
  }, 60000);
  await page.goto(`${base}/#/jobs/${autoJob.id}`);
  await waitFor('the range-test curve', async () => Number(await page.locator('#lr-range-chart').getAttribute('data-points') || 0) > 10);
  assert.equal(Number(await page.locator('#lr-range-chart').getAttribute('data-points')),
    tested.lr_range_test.points.length);
  const markX = Number(await page.locator('#lr-range-chart').getAttribute('data-marked-x'));
  const box = await page.locator('#lr-range-chart').boundingBox();
  // The plot's left edge fits the widest loss label (at least 48 px).
  const left = Number(await page.locator('#lr-range-chart').getAttribute('data-left-margin'));
  assert.ok(left >= 48, `left margin ${left}`);
  assert.ok(markX > left && markX < box.width - 12, `the chosen rate is marked inside the plot: x = ${markX} of ${box.width}`);
  const rate = tested.lr_range_test.learning_rate;
  const lrs = tested.lr_range_test.points.map((p) => p.learning_rate);
  // The marker sits where the rate falls on the log axis (the plot spans left … width − 12 px).
  const expectX = left + ((Math.log10(rate) - Math.log10(Math.min(...lrs))) / (Math.log10(Math.max(...lrs)) - Math.log10(Math.min(...lrs)))) * (box.width - left - 12);
  assert.ok(Math.abs(markX - expectX) <= 1.5, `marker at ${markX}, the rate ${rate} is at ${expectX}`);
  const caption = await page.textContent('#lr-range-caption');
  const steepest = tested.lr_range_test.steepest;
  assert.match(caption, steepest != null && Math.abs(rate - steepest) <= 1e-6 * steepest
    ? /^Trains at \S+: the steepest descent/ : /^Trains at \S+: the (minimum ÷ 10|optimizer's default)/, caption);
  await page.locator('#lr-range-chart').scrollIntoViewIfNeeded();
  await shot('lr-range-test');
  log(`16. the range test's curve drawn (${lrs.length} batches), the chosen rate ${rate} marked`);

  // 17. A tabular model's predict form takes its raw columns: one field per column, the
  // categories offered as choices, and pasted rows keep their text cells.
  const penguinsUpload = await fetch(`${base}/v1/datasets?name=penguins&target=species`, {
    method: 'POST', headers: { authorization: `Bearer ${KEY}`, 'content-type': 'text/csv' },
    body: readFileSync(join(repo, 'tests/data/penguins.csv')),
  });
  assert.equal(penguinsUpload.status, 201, await penguinsUpload.clone().text());
  const penguins = await penguinsUpload.json();
  const penguinJob = await call('POST', '/v1/jobs', {
    dataset_id: penguins.id, name: 'penguins', layers: [{ units: 16, activation: 'relu' }, {}],
    loss: 'categorical_crossentropy', optimizer: { type: 'adam', learning_rate: 0.01 },
    epochs: 60, batch_size: 16, validation_split: 0.25, seed: 3,
  });
  const trained = await waitFor('the penguins model', async () => {
    const j = await call('GET', `/v1/jobs/${penguinJob.id}`);
    assert.ok(!['failed', 'cancelled'].includes(j.status), JSON.stringify(j.error));
    return j.status === 'succeeded' ? j : null;
  }, 120000, 250);
  await page.goto(`${base}/#/models/${trained.model_id}`);
  await page.locator('#predict-form select[data-column="island"]').waitFor();
  // The choices are the training categories; no "15 values each".
  const islands = await page.locator('#predict-form select[data-column="island"] option').allTextContents();
  assert.deepEqual(islands.slice(1).sort(), ['Biscoe', 'Dream', 'Torgersen']);
  assert.doesNotMatch(await page.textContent('#predict-form'), /15 values/);
  // Nothing between the cards reads "null" (this model has no evaluation).
  assert.doesNotMatch(await page.locator('#main').innerText(), /\bnull\b/);
  await page.selectOption('select[data-column="island"]', 'Biscoe');
  await page.fill('input[data-column="bill_length_mm"]', '48.6');
  await page.fill('input[data-column="bill_depth_mm"]', '16.0');
  await page.fill('input[data-column="flipper_length_mm"]', '230');
  await page.fill('input[data-column="body_mass_g"]', '5800');
  await page.selectOption('select[data-column="sex"]', 'male');
  await page.fill('input[data-column="year"]', '2009');
  await page.click('#predict-submit');
  await page.locator('table.predictions tbody tr').first().waitFor();
  assert.deepEqual(await page.locator('table.predictions td.label-cell').allTextContents(), ['Gentoo']);
  assert.deepEqual((await page.locator('table.predictions thead th').allTextContents()).slice(1, 3), ['island', 'bill_length_mm']);
  // The row the attacker pasted: its text cells are kept and land under their columns.
  await page.fill('#predict-input', 'Biscoe,48.6,16.0,230,5800,male,2009\nDream,39.5,18.8,,3650,female,2008');
  await page.click('#predict-submit');
  await page.locator('table.predictions tbody tr').nth(1).waitFor();
  assert.deepEqual(await page.locator('table.predictions td.label-cell').allTextContents(), ['Gentoo', 'Adelie']);
  assert.equal(await page.locator('table.predictions tbody tr').first().locator('td').nth(1).textContent(), 'Biscoe');
  // A header line of column names may reorder them; a left-out column is missing.
  await page.fill('#predict-input', 'sex,island,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g\nfemale,Dream,39.5,18.8,,3650');
  await page.click('#predict-submit');
  await waitFor('the reordered row', async () => (await page.locator('table.predictions td.label-cell').allTextContents()).join() === 'Adelie');
  await shot('model-tabular');
  log('17. a penguin predicted through the tabular form, by fields and by pasted rows');

  // 18. "Find the best model" from a dataset page (issue 26): the dry run's estimate, the
  // sweep's page following it live to the end with its pictures drawn, the leaderboard on
  // the dataset page, and the best model's out-of-fold evaluation.
  const circleId = datasets.items.find((d) => d.name === 'circle').id;
  await page.goto(`${base}/#/datasets/${circleId}`);
  await page.locator('#find-best-form').waitFor();
  await page.fill('#find-trials', '4');
  await page.fill('#find-seconds', '120');
  await page.click('#find-estimate-button');
  await waitFor('the estimate', async () => /at most \d+ jobs and \d+ epochs/.test(await page.textContent('#find-estimate')));
  // The leaderboard already ranks what was trained on the circle by hand.
  await page.locator('#leaderboard table tbody tr').first().waitFor();
  const boardBefore = await page.locator('#leaderboard table tbody tr').count();
  await page.click('#find-best');
  await page.waitForURL(/#\/sweeps\/[0-9a-f-]+$/);
  const sweepId = page.url().split('/').pop();
  await page.locator('#sweep-progress').waitFor();
  await shot('sweep-running');
  await waitFor('the sweep to end', async () => (await page.locator('#sweep-progress').getAttribute('data-phase')) === 'done', 180000, 250);
  const finished = await call('GET', `/v1/sweeps/${sweepId}`);
  assert.equal(finished.status, 'succeeded', JSON.stringify(finished));
  assert.equal(finished.spec.automatic, true);
  assert.equal(finished.progress.done, 4);
  // The pictures: each trial result in finishing order, the metric against each searched
  // value, and the validation curves of every trial.
  const results = await waitFor('the trial results', async () => Number(await page.locator('#sweep-history-chart').getAttribute('data-results') || 0) || null, 20000);
  assert.equal(Number(await page.locator('#sweep-history-chart').getAttribute('data-points')) >= results, true);
  const params = Object.keys(finished.spec.space);
  assert.equal(await page.locator('canvas.param-chart').count(), params.length);
  for (const c of await page.locator('canvas.param-chart').all()) assert.ok(Number(await c.getAttribute('data-points')) > 0, await c.getAttribute('data-param'));
  await waitFor('the validation curves', async () => Number(await page.locator('#sweep-curves-chart').getAttribute('data-series') || 0) === 4);
  // Layers as people say them, not JSON.
  const tableText = await page.locator('#trials').innerText();
  assert.match(tableText, /output/);
  assert.doesNotMatch(tableText, /\{"/);
  // Cross-validated: each trial's metric says the epoch its folds share.
  if (finished.spec.folds > 1) {
    const best = finished.trials.find((t) => t.trial === finished.best.trial);
    const title = await page.locator(`#trials tbody tr[data-trial="${best.trial}"] td:nth-child(${4 + params.length})`).getAttribute('title');
    assert.equal(title, `the folds' mean at epoch ${best.metric_epoch}, the one they share`);
  }
  await page.locator('#sweep-curves-chart').scrollIntoViewIfNeeded();
  await shot('sweep-pictures');
  // The Sweeps list names the dataset and the best metric.
  await page.click('a[data-nav="sweeps"]');
  const row = page.locator(`tr[data-sweep="${sweepId}"]`);
  await row.waitFor();
  assert.match(await row.innerText(), /circle/);
  // The dataset page's leaderboard now has the sweep's trials and its refit.
  await page.goto(`${base}/#/datasets/${circleId}`);
  await page.locator('#leaderboard table tbody tr').first().waitFor();
  assert.ok(await page.locator('#leaderboard table tbody tr').count() > boardBefore);
  assert.match(await page.locator('#leaderboard').innerText(), /sweep's refit/);
  assert.match(await page.locator('#leaderboard').innerText(), /out-of-fold/);
  await page.locator('#leaderboard').scrollIntoViewIfNeeded();
  await shot('leaderboard');
  // The best model's evaluation, and where it comes from.
  await page.goto(`${base}/#/models/${finished.best.model_id}`);
  await page.locator('#evaluation table.confusion tbody tr').nth(1).waitFor();
  assert.match(await page.textContent('#scored-on'), /out-of-fold/);
  assert.match(await page.textContent('#model-sweep'), /handed over/);
  // Its architecture names the TabM ensemble's adapters (not a dense layer of no units).
  const layers = await page.locator('table:has(th:text-is("Layer")) tbody').innerText();
  assert.match(layers, /ensemble\s+4 members/);
  assert.doesNotMatch(layers, /undefined/);
  await shot('best-model');
  // The Jobs list leaves the trials out: the refit is there, no trial of this sweep is.
  await page.goto(`${base}/#/jobs`);
  await page.locator('tr[data-job]').first().waitFor();
  assert.equal(await page.locator(`tr[data-job="${finished.best.job_id}"]`).count(), 1);
  assert.equal(await page.locator(`tr[data-job="${finished.trials[0].job_id}"]`).count(), 0);
  log(`18. the best model found from a dataset page: ${results} trial results drawn, the leaderboard and the out-of-fold evaluation shown`);

  const unexpected = consoleErrors.filter((e) => !/^Failed to load resource: the server responded with a status of (401|409|422)/.test(e));
  const failedRequests = expected.filter((r) => !/^POST \/v1\/jobs 422$|^POST \/v1\/datasets 422$|^POST \/v1\/jobs\/[0-9a-f-]+\/predict (409|422)$|^POST \/v1\/models\/[0-9a-f-]+\/predict 422$|^GET \/v1\/jobs 401$/.test(r));
  assert.deepEqual(unexpected, [], `console errors:\n${unexpected.join('\n')}`);
  assert.deepEqual(failedRequests, [], `unexpected failed requests:\n${failedRequests.join('\n')}`);
  log(`no console errors (${consoleErrors.length} expected failed-request lines)`);
  await context.close();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
