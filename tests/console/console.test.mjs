// Drives headless Chromium through the console of a running daemon
// (started by tests/e2e/test_console.py, which passes BASE, TOKEN,
// CHROMIUM, SHOTS). Prints "ok   what" / "FAIL what: detail" per check and
// a last line of JSON figures; exits 1 when a check failed.
import puppeteer from 'puppeteer-core';
import { mkdirSync } from 'node:fs';

const { BASE, TOKEN, CHROMIUM, SHOTS, MEMCG } = process.env;
const failures = [];
function check(cond, what, detail) {
  if (cond) console.log('ok   ' + what);
  else { console.log('FAIL ' + what + (detail === undefined ? '' : ': ' + JSON.stringify(detail).slice(0, 400))); failures.push(what); }
}
mkdirSync(SHOTS, { recursive: true });

const browser = await puppeteer.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-default-apps', '--disable-sync', '--disable-dev-shm-usage'],
});
const figures = {};
try {
  const page = await browser.newPage();
  // tall enough for a whole function page: no scrolling, and screenshots of
  // the viewport (a fullPage screenshot before a click made it miss)
  await page.setViewport({ width: 1360, height: 1900 });
  const requests = [], failed = [];
  page.on('request', (r) => requests.push(r.url()));
  const answers = [];
  page.on('response', async (r) => { if (r.request().method() === 'POST') answers.push(r.status() + ' ' + r.url() + ' ' + (await r.text().catch(() => '')).slice(0, 200)); });
  page.on('requestfailed', (r) => failed.push(r.url() + ' ' + (r.failure() && r.failure().errorText)));
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  // CSP violations are reported here (a 401 the test asks for is not an error of the page)
  page.on('console', (m) => { if (m.type() === 'error' && !/status of 401/.test(m.text())) errors.push('console: ' + m.text()); });
  page.on('dialog', (d) => { errors.push('dialog: ' + d.message()); d.dismiss(); });

  // the page without a token: the prompt, no data
  const resp = await page.goto(BASE + '/console/', { waitUntil: 'networkidle0' });
  check(resp.status() === 200, '/console/ is served without a token', resp.status());
  const csp = resp.headers()['content-security-policy'] || '';
  check(/default-src 'none'/.test(csp) && /connect-src 'self'/.test(csp) && /script-src 'self'/.test(csp),
    'strict CSP on /console/', csp);
  check(await page.$eval('#login', (e) => !e.hidden), 'the token prompt shows');
  check(!requests.some((u) => u.includes('/admin/')), 'no data call before a token', requests);
  await page.screenshot({ path: SHOTS + '/1-token-prompt.png' });

  // without the token (or with a wrong one) every data call is 401
  const paths = ['/admin/functions', '/admin/functions/echo', '/admin/functions/echo/history',
    '/admin/functions/echo/logs?tail=5', '/admin/functions/noisy/logs?grep=fault', '/admin/gpus'];
  const noToken = await page.evaluate(async (paths) => {
    const out = {};
    for (const p of paths) out[p] = (await fetch(p)).status;
    out['POST rollback'] = (await fetch('/admin/functions/echo/rollback', { method: 'POST', body: '{"version":1}' })).status;
    out['wrong token'] = (await fetch('/admin/functions', { headers: { Authorization: 'Bearer nope' } })).status;
    return out;
  }, paths);
  check(Object.values(noToken).every((s) => s === 401), 'without the token every data call is 401', noToken);
  await page.type('#token', 'not-the-token');
  await page.click('#login button[type=submit]');
  await page.waitForFunction(() => document.querySelector('#login-error').textContent.includes('401'), { timeout: 5000 });
  check(await page.evaluate(() => sessionStorage.length === 0), 'a refused token is not kept');

  // the token: the functions table with figures
  await page.type('#token', TOKEN);
  await page.click('#login button[type=submit]');
  await page.waitForSelector('#functions tr[data-fn="echo"]', { timeout: 10000 });
  // req/s and p50 need a history point with traffic in it: at most a step or two
  await page.waitForFunction(() => {
    const c = document.querySelectorAll('#functions tr[data-fn="echo"] td');
    return c.length > 7 && parseFloat(c[5].textContent) > 0 && c[6].textContent !== '–';
  }, { timeout: 20000 }).catch(() => {});
  const row = await page.$$eval('#functions tr[data-fn="echo"] td', (tds) => tds.map((t) => t.textContent));
  check(row[1] === 'ready' && row[2].startsWith('v2'), 'functions table: echo ready, serving v2', row);
  check(parseFloat(row[5]) > 0, 'functions table: echo has req/s', row);
  check(/(µs|ms|s)$/.test(row[6]) && /(µs|ms|s)$/.test(row[7]), 'functions table: echo has p50 and p99', row);
  check(/^\d+ \/ \d+ \/ \d+ \/ \d+$/.test(row[3]), 'functions table: instances by state (busy / idle / spare / starting)', row);
  // memory per instance: a size where instances have memory cgroups, else unknown ('–', not 0)
  check(MEMCG === '1' ? /^\d+(\.\d+)? (MiB|GiB)$/.test(row[12]) && parseFloat(row[12]) > 0 : row[12] === '–',
    'functions table: memory per instance', row);
  const noisy = await page.$$eval('#functions tr[data-fn="noisy"] td', (tds) => tds.map((t) => t.textContent));
  check(noisy[1] === 'ready' && /^v1 of 2v2 failed$/.test(noisy[2]), 'functions table: noisy serves v1, its v2 failed', noisy);
  await page.waitForFunction(() => !document.querySelector('#gpus').hidden, { timeout: 10000 }).catch(() => {});
  const gpuLine = await page.$eval('#gpus', (e) => e.textContent);
  check(/42 %.*12 \/ 80 GiB.*Fake GPU/.test(gpuLine), 'functions page: the GPU line', gpuLine);
  await page.screenshot({ path: SHOTS + '/2-functions.png' });

  // one function: a chart with points after traffic
  await page.click('#functions tr[data-fn="echo"] a');
  await page.waitForSelector('#charts .chart', { timeout: 10000 });
  const pts = await page.waitForFunction(() => {
    const c = document.querySelector('#charts .chart');
    return c && +c.dataset.points > 0 && c.querySelector('path.line').getAttribute('d').length > 0 && +c.dataset.points;
  }, { timeout: 20000 }).then((h) => h.jsonValue()).catch(() => 0);
  check(pts > 0, 'requests chart has points after traffic', pts);
  const gpu = await page.waitForFunction(() => [...document.querySelectorAll('#charts .chart')]
    .find((c) => c.querySelector('h2').textContent.startsWith('GPU utilisation') && +c.dataset.points > 0)
    ?.querySelector('.legend').textContent, { timeout: 15000 }).then((h) => h.jsonValue()).catch(() => null);
  check(gpu && gpu.includes('Fake GPU 42'), 'GPU utilisation chart (fake NVML) with points', gpu);
  figures.chart_points = pts;
  // the instances chart has a spare line; the memory chart points where instances have memory cgroups
  const spareLine = await page.$$eval('#charts .chart', (cs) => cs.filter((c) => c.querySelector('h2').textContent.startsWith('Instances'))
    .map((c) => c.querySelector('.legend').textContent));
  check(spareLine.length === 1 && /spare \d+/.test(spareLine[0]), 'instances chart shows spares', spareLine);
  const memPts = await page.waitForFunction((memcg) => {
    const c = [...document.querySelectorAll('#charts .chart')].find((e) => e.querySelector('h2').textContent.startsWith('Memory per instance'));
    if (!c) return false;
    return memcg === '1' ? +c.dataset.points > 0 && c.querySelector('.legend').textContent : 'none';
  }, { timeout: 20000 }, MEMCG).then((h) => h.jsonValue()).catch(() => null);
  if (MEMCG === '1') check(memPts && /mean [\d.]+\s*all instances [\d.]+/.test(memPts) && parseFloat(memPts.slice(5)) > 0, 'memory per instance chart has points', memPts);
  else check(await page.$$eval('#charts .chart', (cs) => cs.filter((c) => c.querySelector('h2').textContent.startsWith('Memory per instance'))
    .every((c) => +c.dataset.points === 0)), 'no memory cgroup: the memory chart has no points (unknown, not 0)');
  figures.memory_chart = memPts;
  await page.hover('#charts .chart svg');
  const hover = await page.$eval('#charts .chart .legend', (e) => e.textContent);
  check(/\d\d:\d\d:\d\d$/.test(hover), 'hovering a chart shows the time of the point under the pointer', hover);

  // invoke: echo's answer
  await page.select('#inv-method', 'POST');
  await page.$eval('#inv-path', (e) => { e.value = '/hello'; });
  await page.type('#inv-headers', 'Content-Type: text/plain');
  await page.type('#inv-body', 'ping from the console');
  await page.click('#inv-send');
  await page.waitForSelector('#inv-status', { timeout: 10000 });
  const inv = await page.evaluate(() => ({
    status: document.querySelector('#inv-status').textContent,
    body: document.querySelector('#inv-resp-body').textContent,
    headers: document.querySelector('#inv-resp-headers').textContent,
    reqid: document.querySelector('#inv-reqid').textContent,
    duration: document.querySelector('#inv-duration').textContent,
  }));
  check(inv.status.startsWith('200'), 'invoke: status 200', inv);
  check(inv.body === 'ping from the console', "invoke: echo's body", inv);
  check(/x-echo-path: \/hello/.test(inv.headers), 'invoke: response headers shown', inv);
  check(/^[0-9a-f]+-[0-9a-f]+$/.test(inv.reqid), 'invoke: request id shown', inv);
  check(/^\d+\.\d ms$/.test(inv.duration), 'invoke: duration shown', inv);
  await page.screenshot({ path: SHOTS + '/3-function.png' });

  // rollback: the serving version changes
  check(await page.$eval('#stat-serving', (e) => e.textContent) === 'v2', 'echo serves v2 before the rollback');
  const rb = '#versions tr[data-version="1"] button.rollback';
  await page.click(rb);
  const serving = await page.waitForFunction(() => document.querySelector('#stat-serving')?.textContent === 'v1' && 'v1',
    { timeout: 10000 }).then((h) => h.jsonValue()).catch(() => null);
  check(serving === 'v1', 'rollback button: echo serves v1',
    { posted: requests.filter((u) => u.includes('/rollback')), answers, errors, button: await page.$$eval('button.rollback', (b) => b.map((x) => x.outerHTML)) });
  const current = await page.evaluate(async (t) => (await (await fetch('/admin/functions/echo', { headers: { Authorization: 'Bearer ' + t } })).json()).current, TOKEN);
  check(current === 1, 'the daemon serves echo v1 after the rollback', current);
  await page.screenshot({ path: SHOTS + '/4-rolled-back.png' });

  // logs: a keyword search finds the line the test caused
  await page.goto(BASE + '/console/#/fn/noisy', { waitUntil: 'networkidle0' });
  // a hash change: the echo page's form stays until the noisy page replaces it
  await page.waitForFunction(() => document.querySelector('#view h1')?.textContent.startsWith('noisy'), { timeout: 10000 });
  await page.type('#log-grep', 'line 37 of 37');
  await page.click('#log-search');
  // the unfiltered lines shown first hold that line too: wait for the filtered answer
  const found = await page.waitForFunction(() => {
    const t = document.querySelector('#log-lines').textContent;
    return t.includes('fault log line 37 of 37') && !t.includes('line 36 of 37');
  },
    { timeout: 10000 }).then(() => true).catch(() => false);
  const logText = await page.$eval('#log-lines', (e) => e.textContent);
  check(found && !logText.includes('line 36 of 37'), 'log search finds the line the test caused, only it',
    { grep: await page.$eval('#log-grep', (e) => e.value), asked: requests.filter((u) => u.includes('/noisy/logs')), logText: logText.slice(-200) });
  // follow: a line logged after the search appears by itself
  await page.$eval('#log-grep', (e) => { e.value = ''; });
  await page.type('#log-grep', 'of 5');
  await page.click('#log-search');
  await page.waitForFunction(() => document.querySelector('#log-lines').textContent.startsWith('no line contains'), { timeout: 10000 }).catch(() => {});
  await page.click('#log-follow');
  await page.evaluate(() => fetch('/noisy/log?n=5'));
  const followed = await page.waitForFunction(() => document.querySelector('#log-lines').textContent.includes('fault log line 5 of 5'),
    { timeout: 10000 }).then(() => true).catch(() => false);
  const fol = await page.$eval('#log-lines', (e) => e.textContent);
  check(followed && (fol.match(/of 5/g) || []).length === 5, 'follow shows the new lines, once each', fol);
  await page.screenshot({ path: SHOTS + '/5-logs.png' });

  // every request of the page went to the daemon's origin
  const origin = new URL(BASE).origin;
  const foreign = requests.filter((u) => !u.startsWith(origin + '/') && !u.startsWith('data:'));
  check(foreign.length === 0, 'no request leaves the origin', foreign);
  check(failed.length === 0, 'no request failed', failed);
  check(errors.length === 0, 'no script error, no CSP violation', errors);
  figures.requests = requests.length;

  // size and first paint on loopback: cold loads, each in a fresh context
  // (empty cache), with the pages above closed; the median of 5
  await page.close();
  const fcps = [];
  for (let i = 0; i < 5; i++) {
    const ctx = await browser.createBrowserContext();
    const p2 = await ctx.newPage();
    let bytes = 0;
    p2.on('response', (r) => { bytes += +(r.headers()['content-length'] || 0); });
    await p2.goto(BASE + '/console/', { waitUntil: 'load' });
    // paint entries are recorded once the frame is painted, maybe after load
    await p2.waitForFunction(() => performance.getEntriesByType('paint').length > 1, { timeout: 5000 }).catch(() => {});
    const paint = await p2.evaluate(() => Object.fromEntries(performance.getEntriesByType('paint').map((e) => [e.name, e.startTime])));
    fcps.push(paint['first-contentful-paint']);
    figures.page_bytes = bytes;
    await ctx.close();
  }
  fcps.sort((a, b) => a - b);
  figures.first_contentful_paint_ms = { median: fcps[2], min: fcps[0], max: fcps[4] };
  check(figures.page_bytes > 0 && figures.page_bytes < 300 * 1024, 'the console is under 300 KB', figures.page_bytes);
  check(fcps.every((v) => v > 0), 'first paint measured', fcps);
} catch (e) {
  check(false, 'no exception', String(e.stack || e));
} finally {
  await browser.close();
}
console.log(JSON.stringify(figures));
process.exit(failures.length ? 1 : 0);
