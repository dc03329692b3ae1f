// thaw console: one page, no framework. Every data call goes to this
// daemon's admin API with the token kept in sessionStorage; the page itself
// holds no data. Untrusted text (logs, bodies, changes) is only ever set as
// textContent, never as markup.
'use strict';

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = 'thaw-admin-token';
let timer = null; // the current view's refresh
let follow = null; // the log follower

// h('td', {class: 'num'}, 'text', childNode, ...)
function h(tag, attrs, ...kids) {
  const el = tag.startsWith('svg:')
    ? document.createElementNS('http://www.w3.org/2000/svg', tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) el.setAttribute(k, v === true ? '' : v);
  }
  for (const k of kids.flat()) if (k !== null && k !== undefined) el.append(k instanceof Node ? k : String(k));
  return el;
}

class Unauthorized extends Error {}

async function api(path, opts = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY) || '';
  const headers = Object.assign({ Authorization: 'Bearer ' + token }, opts.headers || {});
  const r = await fetch(path, Object.assign({}, opts, { headers }));
  if (r.status === 401) throw new Unauthorized();
  return r;
}

async function apiJSON(path, opts) {
  const r = await api(path, opts);
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || r.status + ' ' + r.statusText);
  return body;
}

// --- formatting ---------------------------------------------------------
const fmt = {
  num(v, d = 1) { return v === null || v === undefined || Number.isNaN(+v) ? '–' : String(parseFloat((+v).toFixed(d))); },
  ms(v) {
    if (v === null || v === undefined || Number.isNaN(v) || v === 0) return '–';
    return v < 1 ? (v * 1000).toFixed(0) + ' µs' : v < 1000 ? (+v).toFixed(v < 10 ? 2 : 1) + ' ms' : (v / 1000).toFixed(2) + ' s';
  },
  mib(v) { return v === null || v === undefined ? '–' : v < 1024 ? fmt.num(v, 1) + ' MiB' : fmt.num(v / 1024, 2) + ' GiB'; },
  time(ms) { return new Date(ms).toLocaleTimeString([], { hour12: false }); },
  date(s) { return new Date(s * 1000).toLocaleString([], { hour12: false }); },
};
const last = (arr) => { for (let i = arr.length - 1; i >= 0; i--) if (arr[i] !== null) return arr[i]; return null; };

// the mean memory per measured instance in MiB, null when none has a memory cgroup (unknown)
const memPer = (n) => (n.memory_instances > 0 && n.memory_bytes !== null ? n.memory_bytes / n.memory_instances / 1048576 : null);
const byState = (n) => `${n.busy} / ${n.idle} / ${n.spare} / ${n.starting}`;

// --- charts: SVG lines, gaps where a value is null -----------------------
const COLORS = ['#1f9d55', '#2f6fde', '#d98a00', '#d64545', '#8e5bd6', '#3aa6b9'];

function chart(title, t, series, unit) {
  const W = 600, H = 170, L = 44, R = 8, T = 8, B = 20;
  const svg = h('svg:svg', { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', role: 'img', 'aria-label': title });
  let max = 0;
  for (const s of series) for (const v of s.values) if (v !== null && v > max) max = v;
  max = niceMax(max);
  const t0 = t.length ? t[0] : 0, t1 = t.length > 1 ? t[t.length - 1] : t0 + 1;
  const x = (ms) => L + (W - L - R) * (t.length > 1 ? (ms - t0) / (t1 - t0) : 1);
  const y = (v) => T + (H - T - B) * (1 - v / max);
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    svg.append(h('svg:line', { class: 'grid-line', x1: L, x2: W - R, y1: y(v), y2: y(v) }),
      h('svg:text', { x: L - 4, y: y(v) + 3, 'text-anchor': 'end' }, fmt.num(v, 2)));
  }
  if (t.length) {
    svg.append(h('svg:text', { x: L, y: H - 5 }, fmt.time(t0)),
      h('svg:text', { x: W - R, y: H - 5, 'text-anchor': 'end' }, fmt.time(t1)));
  }
  let points = 0;
  series.forEach((s, k) => {
    let d = '', pen = false;
    s.values.forEach((v, i) => {
      if (v === null) { pen = false; return; }
      d += (pen ? 'L' : 'M') + x(t[i]).toFixed(1) + ' ' + y(v).toFixed(1);
      pen = true;
      points++;
    });
    // a lone point still shows
    svg.append(h('svg:path', { class: 'line', d, stroke: s.color || COLORS[k] }));
    // few points: each one marked, so that a lone one shows
    if (t.length <= 60) s.values.forEach((v, i) => v !== null && svg.append(
      h('svg:circle', { cx: x(t[i]).toFixed(1), cy: y(v).toFixed(1), r: 2.2, fill: s.color || COLORS[k] })));
  });
  // the legend shows the newest values, or those under the pointer
  const vals = series.map(() => h('b'));
  const at = h('span', { class: 'at' });
  const cursor = h('svg:line', { class: 'cursor', y1: T, y2: H - B, x1: -10, x2: -10 });
  svg.append(cursor);
  const show = (i) => {
    series.forEach((s, k) => { vals[k].textContent = fmt.num(i === null ? last(s.values) : s.values[i], 2); });
    at.textContent = i === null ? '' : fmt.time(t[i]);
    const cx = i === null ? -10 : x(t[i]);
    cursor.setAttribute('x1', cx); cursor.setAttribute('x2', cx);
  };
  svg.addEventListener('mousemove', (e) => {
    if (!t.length) return;
    const r = svg.getBoundingClientRect(), ms = t0 + ((e.clientX - r.left) / r.width * W - L) / (W - L - R) * (t1 - t0);
    let i = 0;
    while (i < t.length - 1 && Math.abs(t[i + 1] - ms) < Math.abs(t[i] - ms)) i++;
    show(i);
  });
  svg.addEventListener('mouseleave', () => show(null));
  show(null);
  const legend = h('div', { class: 'legend' }, series.map((s, k) => {
    const sw = h('i'); sw.style.background = s.color || COLORS[k];
    return h('span', {}, sw, s.name + ' ', vals[k]);
  }), at);
  return h('div', { class: 'card chart', 'data-points': points },
    h('h2', {}, title, h('span', { class: 'muted' }, unit ? ` (${unit})` : '')), svg, legend);
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

// --- views ----------------------------------------------------------------
function stop() {
  if (timer) clearInterval(timer);
  if (follow) clearInterval(follow);
  timer = follow = null;
}

// runs fn now and every ms; a refused token goes back to the prompt
function every(ms, fn) {
  const run = () => fn().catch(fail);
  run();
  timer = setInterval(run, ms);
}

function stamp() { $('updated').textContent = 'updated ' + fmt.time(Date.now()); }

async function functionsView(view) {
  const tbody = h('tbody'), gpus = h('div', { class: 'stats', id: 'gpus', hidden: true });
  view.replaceChildren(h('div', { class: 'card' }, h('h1', {}, 'Functions'),
    h('table', { id: 'functions' },
      h('thead', {}, h('tr', {}, ['function', 'state', 'serving', 'instances (busy/idle/spare/starting)', 'queue', 'req/s',
        'p50', 'p99', '4xx', '5xx', 'cold start', 'restore', 'memory / instance'].map((c, i) => h('th', { class: i > 2 ? 'num' : null }, c)))),
      tbody), gpus));
  every(5000, async () => {
    const fns = await apiJSON('/admin/functions');
    const hist = await Promise.all(fns.map((f) => apiJSON(`/admin/functions/${encodeURIComponent(f.name)}/history?since=${Date.now() - 30000}`)));
    tbody.replaceChildren(...fns.map((f, i) => {
      const s = hist[i], n = s.now;
      const rps = ['rps_2xx', 'rps_3xx', 'rps_4xx', 'rps_5xx'].reduce((a, k) => a + (last(s[k]) || 0), 0);
      const serving = f.versions.find((v) => v.version === f.current) || f;
      const newest = f.versions[f.versions.length - 1] || f;
      return h('tr', { 'data-fn': f.name },
        h('td', {}, h('a', { href: '#/fn/' + encodeURIComponent(f.name) }, f.name)),
        h('td', {}, h('span', { class: 'badge ' + f.state }, f.state)),
        h('td', {}, f.current === null ? '–' : 'v' + f.current, h('span', { class: 'muted' }, ` of ${f.versions.length}`),
          // a newer deploy that failed to initialize, while an older one serves
          newest.state === 'failed' && newest.version !== f.current
            ? h('span', { class: 'badge failed', title: newest.error || '' }, `v${newest.version} failed`) : null),
        h('td', { class: 'num' }, byState(n)),
        h('td', { class: 'num' }, n.queue),
        h('td', { class: 'num' }, fmt.num(rps, 1)),
        h('td', { class: 'num' }, fmt.ms(last(s.p50_ms))),
        h('td', { class: 'num' }, fmt.ms(last(s.p99_ms))),
        h('td', { class: 'num' }, n.requests_4xx),
        h('td', { class: 'num' + (n.requests_5xx ? ' bad' : '') }, n.requests_5xx),
        h('td', { class: 'num' }, fmt.ms(serving.init_ms)),
        h('td', { class: 'num' }, fmt.ms(serving.restore_ms)),
        h('td', { class: 'num' }, fmt.mib(memPer(n))));
    }));
    if (!fns.length) tbody.append(h('tr', {}, h('td', { colspan: 13, class: 'muted' }, 'No functions yet: thaw deploy a folder.')));
    const g = await apiJSON('/admin/gpus');
    gpus.replaceChildren(...g.gpus.map((d) => h('div', { class: 'stat' },
      h('b', {}, `${fmt.num(last(d.utilization.map((v) => (v === null ? null : v * 100))), 0)} %  ·  ${fmt.num(last(d.memory_used_bytes) / 1073741824, 1)} / ${fmt.num(d.memory_total_bytes / 1073741824, 0)} GiB`),
      h('span', {}, `gpu ${d.gpu}: ${d.name}`))));
    gpus.hidden = !g.gpus.length;
    stamp();
  });
}

async function functionView(view, name) {
  const enc = encodeURIComponent(name);
  const head = h('div', { class: 'card' }), charts = h('div', { class: 'grid', id: 'charts' });
  const versions = h('div', { class: 'card', id: 'versions' });
  view.replaceChildren(head, charts, h('div', { class: 'two' }, logsCard(name), invokeCard(name)), versions);

  let versionsKey = '';
  async function refresh() {
    const [f, s, g] = await Promise.all([apiJSON(`/admin/functions/${enc}`), apiJSON(`/admin/functions/${enc}/history`),
      apiJSON('/admin/gpus')]);
    const n = s.now;
    head.replaceChildren(h('h1', {}, name, ' ', h('span', { class: 'badge ' + f.state }, f.state)),
      h('p', { class: 'error' }, f.error || ''),
      h('div', { class: 'stats' },
        [['serving', f.current === null ? '–' : 'v' + f.current, 'serving'],
          ['busy / idle / spare / starting', byState(n)],
          ['memory per instance', fmt.mib(memPer(n))],
          ['queued', n.queue],
          ['requests 2xx / 4xx / 5xx', `${n.requests_2xx + n.requests_3xx} / ${n.requests_4xx} / ${n.requests_5xx}`],
          ['cold starts / restores', `${n.cold_starts} / ${n.restores}`],
          ['cold start', fmt.ms(f.init_ms)], ['restore', fmt.ms(f.restore_ms)],
          ['timeout', f.timeout + ' s']].map(([k, v, id]) =>
          h('div', { class: 'stat' }, h('b', { id: id ? 'stat-' + id : null }, v), h('span', {}, k)))));
    charts.replaceChildren(
      chart('Requests', s.t, [{ name: '2xx', values: s.rps_2xx }, { name: '3xx', values: s.rps_3xx, color: COLORS[4] },
        { name: '4xx', values: s.rps_4xx, color: COLORS[2] }, { name: '5xx', values: s.rps_5xx, color: COLORS[3] }], 'per second'),
      chart('Latency', s.t, [{ name: 'p50', values: s.p50_ms }, { name: 'p90', values: s.p90_ms, color: COLORS[2] },
        { name: 'p99', values: s.p99_ms, color: COLORS[3] }], 'ms'),
      chart('Instances', s.t, [{ name: 'busy', values: s.busy, color: COLORS[1] }, { name: 'idle', values: s.idle, color: COLORS[0] },
        { name: 'spare', values: s.spare, color: COLORS[5] }, { name: 'starting', values: s.starting, color: COLORS[2] }, { name: 'queued', values: s.queue, color: COLORS[3] }]),
      chart('Starts', s.t, [{ name: 'restores', values: s.restores, color: COLORS[0] }, { name: 'cold', values: s.cold_starts, color: COLORS[2] }], 'per 5 s'),
      chart('Start durations', s.t, [{ name: 'restore', values: s.restore_ms, color: COLORS[0] }, { name: 'init', values: s.init_ms, color: COLORS[2] }], 'ms'),
      // gaps where no instance had a memory cgroup: unknown, not 0
      chart('Memory per instance', s.t, [{ name: 'mean', values: s.mem_mb, color: COLORS[4] },
        { name: 'all instances', values: s.mem_total_mb, color: COLORS[5] }], 'MiB'),
      ...gpuCharts(g));
    // redrawn only when it changed: a click on a button must not race a refresh
    const key = JSON.stringify([f.current, f.versions]);
    if (key !== versionsKey) versionsKey = key, versions.replaceChildren(h('h2', {}, 'Versions'), h('table', {},
      h('thead', {}, h('tr', {}, ['version', 'state', 'deployed', 'cold start', 'snapshot', 'restore', 'changes', ''].map((c) => h('th', {}, c)))),
      h('tbody', {}, f.versions.slice().reverse().map((v) => h('tr', { 'data-version': v.version },
        h('td', {}, 'v' + v.version, ' ', v.version === f.current ? h('span', { class: 'badge serving' }, 'serving') : null),
        h('td', {}, h('span', { class: 'badge ' + v.state }, v.state)),
        h('td', {}, fmt.date(v.deployed_at)),
        h('td', {}, fmt.ms(v.init_ms)),
        h('td', {}, v.snapshot_bytes ? (v.snapshot_bytes / 1048576).toFixed(1) + ' MiB' : '–'),
        h('td', {}, fmt.ms(v.restore_ms)),
        h('td', {}, v.error ? h('span', { class: 'error' }, v.error)
          : (v.changes && v.changes.length ? h('ul', { class: 'changes' }, v.changes.map((c) => h('li', {}, c))) : h('span', { class: 'muted' }, v.version === 1 ? 'first version' : 'no change'))),
        h('td', {}, v.version !== f.current && v.state === 'ready'
          ? h('button', { class: 'small rollback', onclick: (e) => rollback(name, v.version, e.target) }, `Roll back to v${v.version}`) : null))))));
    stamp();
  }
  every(5000, refresh);
}

// the daemon's GPUs (all functions together); none without a GPU
function gpuCharts(g) {
  if (!g.gpus.length) return [];
  const pct = (v) => (v === null ? null : v * 100), gib = (v) => (v === null ? null : v / 1073741824);
  return [
    chart('GPU utilisation', g.t, g.gpus.map((d) => ({ name: `gpu ${d.gpu} ${d.name}`, values: d.utilization.map(pct) })), '%, all functions'),
    chart('GPU memory', g.t, g.gpus.map((d) => ({ name: `gpu ${d.gpu} of ${gib(d.memory_total_bytes).toFixed(0)} GiB`, values: d.memory_used_bytes.map(gib) })), 'GiB used, all functions'),
  ];
}

async function rollback(name, version, btn) {
  btn.disabled = true;
  try {
    await apiJSON(`/admin/functions/${encodeURIComponent(name)}/rollback`, { method: 'POST', body: JSON.stringify({ version }) });
    route();
  } catch (e) {
    if (e instanceof Unauthorized) return fail(e);
    btn.disabled = false;
    alert('rollback failed: ' + e.message);
  }
}

function logsCard(name) {
  const q = h('input', { id: 'log-grep', placeholder: 'keyword', 'aria-label': 'keyword' });
  const fol = h('input', { type: 'checkbox', id: 'log-follow' });
  const out = h('pre', { id: 'log-lines' });
  let offset = 0;
  const show = (text, append) => {
    const word = q.value;
    const frag = document.createDocumentFragment();
    for (const line of text.split('\n')) {
      if (!line) continue;
      if (word) {
        const parts = line.split(word);
        parts.forEach((p, i) => { frag.append(p); if (i < parts.length - 1) frag.append(h('mark', {}, word)); });
      } else frag.append(line);
      frag.append('\n');
    }
    if (!append) out.replaceChildren();
    out.append(frag);
    if (!out.textContent) out.textContent = word ? `no line contains "${word}"` : 'no lines yet';
    out.scrollTop = out.scrollHeight;
  };
  let seq = 0; // the answer of an older search or poll must not land after a newer one's
  const get = async (append) => {
    const my = append ? seq : ++seq;
    const qs = new URLSearchParams({ tail: append ? 1000 : 200 });
    if (q.value) qs.set('grep', q.value);
    if (append) qs.set('offset', offset);
    const r = await api(`/admin/functions/${encodeURIComponent(name)}/logs?${qs}`);
    const text = await r.text();
    if (my !== seq) return;
    if (!r.ok) { out.textContent = text; return; }
    offset = +r.headers.get('x-thaw-log-offset') || offset;
    if (append && !text) return;
    if (append && /^(no line|no lines)/.test(out.textContent)) out.replaceChildren();
    show(text, append);
  };
  const search = (e) => { e && e.preventDefault(); get(false).catch(fail); };
  fol.addEventListener('change', () => {
    if (follow) clearInterval(follow);
    follow = fol.checked ? setInterval(() => get(true).catch(fail), 1000) : null;
  });
  setTimeout(search, 0);
  return h('div', { class: 'card' }, h('h2', {}, 'Logs'),
    h('form', { class: 'row', onsubmit: search }, q, h('button', { type: 'submit', id: 'log-search' }, 'Search'),
      h('label', { class: 'row' }, fol, 'follow')), out);
}

function invokeCard(name) {
  const method = h('select', { id: 'inv-method' }, ['POST', 'GET', 'PUT', 'DELETE', 'PATCH'].map((m) => h('option', {}, m)));
  const path = h('input', { id: 'inv-path', value: '/', 'aria-label': 'path' });
  const headers = h('textarea', { id: 'inv-headers', rows: 3, placeholder: 'Content-Type: application/json' });
  const body = h('textarea', { id: 'inv-body', rows: 5, placeholder: 'request body' });
  const result = h('div', { class: 'result', id: 'inv-result' });
  const send = async (e) => {
    e.preventDefault();
    const hdrs = {};
    for (const line of headers.value.split('\n')) {
      const i = line.indexOf(':');
      if (i > 0) hdrs[line.slice(0, i).trim()] = line.slice(i + 1).trim();
    }
    const p = path.value.startsWith('/') ? path.value : '/' + path.value;
    const t0 = performance.now();
    try {
      // the function itself, not the admin API: the token is not sent to it
      const r = await fetch(`/${encodeURIComponent(name)}${p}`, { method: method.value, headers: hdrs,
        body: ['GET', 'HEAD'].includes(method.value) ? undefined : body.value });
      const text = await r.text();
      const ms = performance.now() - t0;
      result.replaceChildren(
        h('div', { class: 'row' }, h('span', { class: 'badge ' + (r.ok ? 'ready' : 'failed'), id: 'inv-status' }, r.status + ' ' + r.statusText),
          h('span', { id: 'inv-duration' }, ms.toFixed(1) + ' ms'),
          h('span', { class: 'muted' }, 'request id ', h('code', { id: 'inv-reqid' }, r.headers.get('x-fc-request-id') || '–'))),
        h('label', {}, 'headers'), h('pre', { id: 'inv-resp-headers' }, [...r.headers].map(([k, v]) => `${k}: ${v}`).join('\n')),
        h('label', {}, 'body'), h('pre', { id: 'inv-resp-body' }, text));
    } catch (err) {
      result.replaceChildren(h('p', { class: 'error' }, String(err)));
    }
  };
  return h('div', { class: 'card' }, h('h2', {}, 'Invoke'),
    h('form', { id: 'invoke', onsubmit: send },
      h('div', { class: 'row' }, method, h('code', {}, '/' + name), path, h('button', { type: 'submit', id: 'inv-send' }, 'Send')),
      h('label', {}, 'headers, one "Name: value" a line'), headers, h('label', {}, 'body'), body), result);
}

// --- token and routing ------------------------------------------------------
function fail(e) {
  if (e instanceof Unauthorized) {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin('The token was refused.');
  } else {
    $('updated').textContent = 'error: ' + e.message;
  }
}

function showLogin(msg) {
  stop();
  $('view').replaceChildren();
  $('login').hidden = false;
  $('logout').hidden = true;
  $('login-error').textContent = msg || '';
  $('token').focus();
}

function route() {
  stop();
  if (!sessionStorage.getItem(TOKEN_KEY)) return showLogin();
  $('login').hidden = true;
  $('logout').hidden = false;
  const view = $('view');
  const m = location.hash.match(/^#\/fn\/([^/]+)$/);
  const p = m ? functionView(view, decodeURIComponent(m[1])) : functionsView(view);
  p.catch(fail);
}

$('login').addEventListener('submit', async (e) => {
  e.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $('token').value.trim());
  $('token').value = '';
  try {
    await apiJSON('/admin/functions');
    route();
  } catch (err) {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin(err instanceof Unauthorized ? 'The daemon refused this token (401).' : err.message);
  }
});
$('logout').addEventListener('click', () => { sessionStorage.removeItem(TOKEN_KEY); showLogin(); });
window.addEventListener('hashchange', route);
route();
