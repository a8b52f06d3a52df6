// The dashboard's pages: one document, pages chosen by the address's #fragment, kept live by the
// hub's /events stream (a snapshot a second). Data reaches the DOM as text only (textContent).
'use strict';

const STATES = ['waiting', 'ready', 'running', 'verifying', 'done', 'failed', 'blocked', 'cancelled'];
/** Tasks still to run: what an ETA waits for. */
const LEFT = ['waiting', 'ready', 'running', 'verifying'];
/** Graphs of at most this many tasks are drawn a node per task. */
const MAX_DRAWN = 2000;

const live = { snap: undefined, admin: false, history: { t: [], done: [], failed: [] }, chart: undefined, page: '' };

// --- helpers ------------------------------------------------------------------------------

/** An element with attributes and children; strings become text nodes, never markup. */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else if (key === 'style') node.style.cssText = value;
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}
/** Replaces `node`'s children with `items` (nested lists flattened, absent ones left out). */
function fill(node, ...items) {
  node.replaceChildren(...items.flat(Infinity).filter((x) => x !== undefined && x !== null && x !== false));
}
const svg = (tag, attrs) => {
  const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [key, value] of Object.entries(attrs ?? {})) node.setAttribute(key, String(value));
  return node;
};
const sum = (counts, states) => states.reduce((n, s) => n + (counts[s] ?? 0), 0);
const fmt = (n) => (n >= 100 || Number.isInteger(n) ? Math.round(n).toLocaleString('en') : n.toFixed(n >= 10 ? 1 : 2));
function duration(seconds) {
  if (!Number.isFinite(seconds)) return '—';
  if (seconds < 60) return `${Math.ceil(seconds)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} min`;
  return `${(seconds / 86400).toFixed(1)} days`;
}
function ago(ms, now) {
  if (!ms) return '—';
  const s = Math.max(0, (now - ms) / 1000);
  return s < 1 ? 'now' : `${duration(s)} ago`;
}
const when = (ms) => (ms ? new Date(ms).toLocaleString('en-GB', { hour12: false }) : '—');
const stateTag = (state) => el('span', { class: `state s-${state}` }, state);
const taskLink = (name) => el('a', { href: `#task/${encodeURIComponent(name)}` }, name);
function eta(counts, perSecond) {
  const left = sum(counts, LEFT);
  if (left === 0) return 'finished';
  return perSecond > 0 ? duration(left / perSecond) : '—';
}
function bar(counts) {
  const total = sum(counts, STATES);
  return el(
    'div',
    { class: 'bar', title: STATES.filter((s) => counts[s]).map((s) => `${s} ${counts[s]}`).join(', ') },
    STATES.filter((s) => counts[s] > 0).map((s) => el('span', { class: `s-${s}`, style: `width:${(100 * counts[s]) / total}%` })),
  );
}
function notice(text) {
  const box = document.getElementById('notice');
  box.textContent = text;
  box.hidden = text === '';
}
async function getJson(url) {
  const res = await fetch(url, { headers: { Accept: 'application/json' } });
  const body = await res.json().catch(() => ({ error: `${res.status} ${res.statusText}` }));
  if (!res.ok) throw Object.assign(new Error(body.error ?? res.statusText), { status: res.status });
  return body;
}
async function postJson(url, value) {
  const res = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(value) });
  const body = await res.json().catch(() => ({ error: `${res.status} ${res.statusText}` }));
  if (!res.ok) throw new Error(body.error ?? res.statusText);
  return body;
}
function table(headers, rows) {
  return el(
    'table',
    {},
    el('thead', {}, el('tr', {}, headers.map((h) => el('th', { class: h.startsWith('#') ? 'num' : undefined }, h.replace(/^#/, ''))))),
    el('tbody', {}, rows),
  );
}
const num = (value) => el('td', { class: 'num' }, value);

// --- pages --------------------------------------------------------------------------------

function overview(snap) {
  const c = snap.counts;
  const cards = [
    ['tasks', fmt(snap.total)],
    ...STATES.map((s) => [s, fmt(c[s])]),
    ['done per second', fmt(snap.donePerSecond)],
    ['time left', eta(c, snap.donePerSecond)],
    ['workers', fmt(snap.workersTotal)],
  ];
  const rows = snap.pools.map((p) =>
    el(
      'tr',
      { 'data-pool': p.pool },
      el('td', {}, p.pool || '(default)'),
      STATES.map((s) => num(fmt(p.counts[s]))),
      el('td', {}, bar(p.counts)),
      num(fmt(p.donePerSecond)),
      el('td', {}, eta(p.counts, p.donePerSecond)),
    ),
  );
  return [
    el('h2', {}, 'Totals'),
    el('div', { class: 'cards', id: 'totals' }, cards.map(([label, value]) => el('div', { class: 'card', 'data-key': label }, el('div', { class: 'value' }, value), el('div', { class: 'label' }, label)))),
    el('div', {}, bar(c)),
    el('h2', {}, 'Pools'),
    table(['pool', ...STATES.map((s) => `#${s}`), 'progress', '#done/s', 'time left'], rows),
    snap.poolsTotal > snap.pools.length ? el('p', { class: 'muted' }, `${snap.pools.length} of ${snap.poolsTotal} pools shown`) : null,
    snap.waitingOnMissing > 0 ? el('p', { class: 'muted' }, `${snap.waitingOnMissing} tasks wait on names that do not exist`) : null,
  ];
}

async function act(what, names) {
  try {
    const body = what === 'retry' ? { names } : { names, reason: 'cancelled from the dashboard' };
    const reply = await postJson(`/api/${what}`, body);
    const refused = reply.results.filter((r) => r.outcome !== 'ACCEPTED');
    notice(`${what}: ${reply.retried ?? reply.cancelled} of ${names.length} accepted${refused.length ? `; ${refused.map((r) => `${r.name}: ${r.outcome}`).join(', ')}` : ''}`);
  } catch (err) {
    notice(`${what} failed: ${err.message}`);
  }
}

function failed(snap) {
  const groups = new Map();
  for (const t of snap.failed) {
    const list = groups.get(t.lastError) ?? [];
    list.push(t);
    groups.set(t.lastError, list);
  }
  const sorted = [...groups.entries()].sort((a, b) => b[1].length - a[1].length);
  const out = [el('h2', {}, `Failed tasks: ${snap.counts.failed}`)];
  if (snap.failedMore) out.push(el('p', { class: 'muted' }, `the first ${snap.failed.length} shown`));
  if (sorted.length === 0) out.push(el('p', { class: 'muted' }, 'No task has failed.'));
  for (const [reason, tasks] of sorted) {
    const names = tasks.map((t) => t.name);
    out.push(
      el(
        'div',
        { class: 'group' },
        el(
          'div',
          { class: 'group-head' },
          el('pre', { class: 'reason' }, reason || '(no reason given)'),
          el('span', { class: 'muted' }, `${tasks.length} task${tasks.length === 1 ? '' : 's'}`),
          live.admin ? el('button', { class: 'retry-group', onclick: () => act('retry', names) }, 'Retry all') : null,
        ),
        table(
          ['task', 'pool', '#attempts', 'worker', 'failed at', live.admin ? '' : null].filter((h) => h !== null),
          tasks.map((t) =>
            el(
              'tr',
              { 'data-task': t.name },
              el('td', {}, taskLink(t.name)),
              el('td', {}, t.pool),
              num(t.attempts),
              el('td', {}, t.worker),
              el('td', {}, when(t.changedAt)),
              live.admin
                ? el('td', {}, el('button', { class: 'retry', onclick: () => act('retry', [t.name]) }, 'Retry'), ' ', el('button', { class: 'cancel danger', onclick: () => act('cancel', [t.name]) }, 'Cancel'))
                : null,
            ),
          ),
        ),
      ),
    );
  }
  return out;
}

function workers(snap) {
  const uptime = Math.max(1, snap.now - snap.startedMs);
  const rows = snap.workers.map((w) =>
    el(
      'tr',
      { 'data-worker': w.worker },
      el('td', {}, w.worker),
      num(w.running),
      num(w.done),
      num(w.failed),
      el('td', {}, w.exited ? 'exited' : ago(w.lastSeen, snap.now)),
      num(`${Math.round((100 * w.busyMs) / uptime)}%`),
      el('td', {}, w.tasks.map((t, i) => [i > 0 ? ', ' : '', taskLink(t)])),
    ),
  );
  return [
    el('h2', {}, `Workers: ${snap.workersTotal}`),
    snap.workersTotal > snap.workers.length ? el('p', { class: 'muted' }, `${snap.workers.length} shown (those holding leases first)`) : null,
    table(['worker', '#leases held', '#done', '#failed', 'last seen', '#busy', 'holding'], rows),
    el('p', { class: 'muted' }, 'busy: its run time since the hub started, over that time (over 100% for a worker running several tasks at once)'),
  ];
}

function mergeHistory(tail) {
  const h = live.history;
  for (let i = 0; i < tail.t.length; i++) {
    const t = tail.t[i];
    const at = h.t.lastIndexOf(t);
    if (at >= 0) {
      h.done[at] = tail.done[i];
      h.failed[at] = tail.failed[i];
    } else if (h.t.length === 0 || t > h.t[h.t.length - 1]) {
      h.t.push(t);
      h.done.push(tail.done[i]);
      h.failed.push(tail.failed[i]);
    }
  }
}

/** The x range: every minute of the history, and at least the last half hour (uPlot would show a single point over years). */
function minutesShown(u) {
  const t = u.data[0];
  if (t.length === 0) return [Date.now() / 1000 - 30 * 60, Date.now() / 1000];
  return [Math.min(t[0], t[t.length - 1] - 30 * 60), t[t.length - 1] + 60];
}

function throughput() {
  const box = el('div', { id: 'chart' });
  const h = live.history;
  const total = (xs) => xs.reduce((a, b) => a + b, 0);
  const page = [
    el('h2', {}, 'Throughput per minute since the hub started'),
    el('p', { class: 'muted', id: 'throughput-totals' }, `${fmt(total(h.done))} completions, ${fmt(total(h.failed))} failed attempts over ${h.t.length} minute${h.t.length === 1 ? '' : 's'}`),
    box,
  ];
  requestAnimationFrame(() => {
    live.chart?.destroy();
    live.chart = new uPlot(
      {
        width: Math.max(400, box.clientWidth - 16),
        height: 320,
        // At least the last half hour across: one minute of history is a point, not years of axis.
        scales: { x: { time: true, range: minutesShown }, y: { range: (u, min, max) => [0, Math.max(5, max * 1.1)] } },
        series: [{}, { label: 'completions', stroke: '#3fae5a', fill: 'rgba(63,174,90,0.12)', width: 2 }, { label: 'failed attempts', stroke: '#e05252', width: 2 }],
        axes: [{}, { label: 'per minute' }],
      },
      [h.t, h.done, h.failed],
      box,
    );
  });
  return page;
}

// The graph page keeps its drawing between snapshots; it asks the hub again every few seconds.
const graphState = { query: undefined, signature: '', timer: undefined };
const FILL = Object.fromEntries(STATES.map((s) => [s, getComputedStyle(document.documentElement).getPropertyValue(`--${s}`).trim()]));

function graphPage(params) {
  const form = el('form', { class: 'controls', id: 'graph-form' });
  const field = (label, input) => el('label', {}, label, input);
  const pools = live.snap?.pools ?? [];
  const poolSelect = el('select', { name: 'pool' }, el('option', { value: '' }, 'every pool'), pools.map((p) => el('option', { value: p.pool, selected: params.get('pool') === p.pool }, p.pool || '(default)')));
  const collapse = el('select', { name: 'collapse' }, ['auto', 'none', 'prefix', 'pool'].map((c) => el('option', { value: c, selected: (params.get('collapse') ?? 'auto') === c }, c)));
  form.append(
    field('pool', poolSelect),
    field('around task', el('input', { name: 'around', value: params.get('around') ?? '', placeholder: 'task name', size: 24 })),
    field('depth', el('input', { name: 'depth', type: 'number', min: 1, max: 100, value: params.get('depth') ?? '2', style: 'width:5em' })),
    field('collapse', collapse),
    el('button', { type: 'submit' }, 'Show'),
  );
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v !== '' && !(k === 'collapse' && v === 'auto')) q.set(k, v);
    if (!q.get('around')) q.delete('depth');
    location.hash = `graph?${q}`;
  });
  const legend = el('div', { class: 'legend' }, STATES.map((s) => stateTag(s)));
  const info = el('p', { class: 'muted', id: 'graph-info' }, 'loading…');
  const box = el('div', { id: 'graph-box' });
  graphState.signature = '';
  clearInterval(graphState.timer);
  const load = () => drawGraph(params, box, info).catch((err) => (info.textContent = `the graph could not be shown: ${err.message}`));
  load();
  graphState.timer = setInterval(() => (live.page === 'graph' ? load() : clearInterval(graphState.timer)), 5000);
  return [el('h2', {}, 'Graph'), form, legend, info, box];
}

async function drawGraph(params, box, info) {
  const base = new URLSearchParams();
  for (const k of ['pool', 'around', 'depth']) if (params.get(k)) base.set(k, params.get(k));
  // collapse=auto (the hub's default): a node per task while at most MAX_DRAWN, else grouped by prefix, else by pool.
  base.set('collapse', params.get('collapse') ?? 'auto');
  base.set('max_nodes', String(MAX_DRAWN));
  const view = await getJson(`/api/graph?${base}`);
  const used = view.collapse;
  const collapsed = used !== 'none';
  info.textContent = `${view.tasks} task${view.tasks === 1 ? '' : 's'}, ${view.nodes.length} node${view.nodes.length === 1 ? '' : 's'}${collapsed ? `, grouped by ${used} (counts per state on each)` : ''}`;
  const signature = JSON.stringify([used, view.nodes.map((n) => n.id), view.edges.map((e) => [e.from, e.to])]);
  if (signature === graphState.signature) {
    // Same shape: only the colours and counts change.
    for (const n of view.nodes) {
      const g = box.querySelector(`g[data-id="${CSS.escape(n.id)}"]`);
      if (g !== null) paintNode(g, n, collapsed);
    }
    return;
  }
  graphState.signature = signature;
  const g = new dagre.graphlib.Graph({ multigraph: false });
  g.setGraph({ rankdir: 'LR', nodesep: 12, ranksep: 40, marginx: 10, marginy: 10 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const n of view.nodes) {
    const chars = Math.max(Math.min(n.id.length, 36), collapsed ? countsText(n).length : 0);
    g.setNode(n.id, { width: Math.min(320, 16 + 7 * chars), height: collapsed ? 40 : 22, node: n });
  }
  for (const e of view.edges) if (g.hasNode(e.from) && g.hasNode(e.to)) g.setEdge(e.from, e.to, { count: e.count });
  dagre.layout(g);
  const { width, height } = g.graph();
  const root = svg('svg', { width: Math.max(width, 100), height: Math.max(height, 40), viewBox: `0 0 ${Math.max(width, 100)} ${Math.max(height, 40)}` });
  const defs = svg('defs');
  const marker = svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 6, markerHeight: 6, orient: 'auto' });
  marker.append(svg('path', { d: 'M0,0 L10,5 L0,10 z', style: 'fill:#8896a6;stroke:none' }));
  defs.append(marker);
  root.append(defs);
  for (const e of g.edges()) {
    const pts = g.edge(e).points;
    root.append(svg('path', { d: `M${pts.map((p) => `${p.x},${p.y}`).join(' L')}`, 'marker-end': 'url(#arrow)' }));
  }
  for (const id of g.nodes()) {
    const { x, y, width: w, height: h, node } = g.node(id);
    const group = svg('g', { class: 'node', 'data-id': id, transform: `translate(${x - w / 2},${y - h / 2})` });
    group.append(svg('rect', { width: w, height: h, rx: 4 }));
    const label = svg('text', { x: 6, y: collapsed ? 15 : 15 });
    label.textContent = id.length > 36 ? `${id.slice(0, 35)}…` : id;
    group.append(label);
    if (collapsed) group.append(svg('text', { x: 6, y: 32, class: 'counts' }));
    const title = svg('title');
    group.append(title);
    paintNode(group, node, collapsed);
    // A task opens its page; a group, the tasks around it are too many: it opens the view of its pool.
    group.addEventListener('click', () => {
      if (!collapsed) location.hash = `task/${encodeURIComponent(id)}`;
      else if (used === 'pool') location.hash = `graph?pool=${encodeURIComponent(id)}`;
    });
    root.append(group);
  }
  box.replaceChildren(root);
}

const countsText = (node) => STATES.filter((s) => node.counts[s] > 0).map((s) => `${s} ${node.counts[s]}`).join(' · ');

function paintNode(group, node, collapsed) {
  const rect = group.querySelector('rect');
  const title = group.querySelector('title');
  if (!collapsed) {
    rect.style.fill = FILL[node.state] ?? '#ccc';
    title.textContent = `${node.id}: ${node.state} (pool ${node.pool || 'default'})`;
    return;
  }
  // A group: filled by how far it got, its counts written under its name.
  const done = node.counts.done / Math.max(1, node.tasks);
  rect.style.fill = node.counts.failed > 0 ? '#f6c9c9' : done === 1 ? '#c5e8cf' : '#e4ecf5';
  const text = countsText(node);
  group.querySelector('text.counts').textContent = text;
  title.textContent = `${node.id}: ${node.tasks} tasks; ${text}`;
}

// The task page: what `dquery lookup` shows, the state log as a timeline.
const taskState = { name: '', timer: undefined };
function taskPage(name) {
  const box = el('div', { id: 'task' }, el('p', { class: 'muted' }, 'loading…'));
  taskState.name = name;
  clearInterval(taskState.timer);
  const load = () =>
    getJson(`/api/task?name=${encodeURIComponent(name)}`)
      .then((found) => fill(box, taskView(found)))
      .catch((err) => fill(box, el('p', { class: 'notice' }, `task ${name}: ${err.message}`)));
  load();
  taskState.timer = setInterval(() => (live.page === 'task' && taskState.name === name ? load() : clearInterval(taskState.timer)), 2000);
  return [el('h2', {}, 'Task ', el('code', {}, name)), box];
}

function bytesView(b) {
  if (!b || b.bytes === 0) return el('span', { class: 'muted' }, 'none');
  return el('div', {}, el('span', { class: 'muted' }, `${b.bytes} bytes${b.cut ? ' (first 64 KiB shown)' : ''}`), el('pre', { class: 'bytes' }, b.text));
}

function outputText(name, kept) {
  const f = kept.find((k) => k.name === name);
  return f === undefined ? `${name} (not yet uploaded)` : `${name} (${f.size} B, ${f.sha256.slice(0, 12)}…)`;
}

function taskView({ task, dependents, missingDeps, failedDeps }) {
  const s = task.spec;
  const rows = [
    ['state', stateTag(task.state)],
    ['pool', s.pool || '(default)'],
    ['attempts', `${task.attempts} of ${s.maxAttempts}`],
    ['worker', task.worker || '—'],
    ['lease ends', task.leaseDeadline ? when(task.leaseDeadline) : '—'],
    ['not before', task.notBefore ? when(task.notBefore) : '—'],
    ['priority', s.priority],
    ['lease', `${s.leaseMs} ms`],
    ['kind', s.barrier ? 'barrier' : s.afterEnded ? 'runs after its dependencies ended' : 'task'],
    ['depends on', s.deps.length ? s.deps.map((d, i) => [i > 0 ? ', ' : '', taskLink(d)]) : '—'],
    ['dependents', dependents.length ? dependents.map((d, i) => [i > 0 ? ', ' : '', taskLink(d)]) : '—'],
    ['missing dependencies', missingDeps.length ? missingDeps.join(', ') : '—'],
    ['failed dependencies', failedDeps.length ? failedDeps.map((d, i) => [i > 0 ? ', ' : '', taskLink(d)]) : '—'],
    ['params', s.params.length ? s.params.map((p) => `${p.name}=${p.value}`).join('  ') : '—'],
    ['input files', s.inputs.length ? s.inputs.map((f) => `${f.name} (${f.size} B)`).join(', ') : '—'],
    ['param files', s.paramFiles.length ? s.paramFiles.map((f) => `${f.name} (holds param ${f.param})`).join(', ') : '—'],
    ['outputs', s.outputs.length ? s.outputs.map((name) => outputText(name, task.outputs)).join(', ') : '—'],
    ['last error', task.lastError ? el('pre', { class: 'reason' }, task.lastError) : '—'],
    ['payload', bytesView(s.payload)],
    ['result', bytesView(task.result)],
  ];
  const kv = el('dl', { class: 'kv' }, rows.map(([k, v]) => [el('dt', {}, k), el('dd', { 'data-key': k }, v)]));
  const timeline = el(
    'ol',
    { class: 'timeline' },
    task.log.map((c) =>
      el('li', { style: `--dot: var(--${c.state})` }, stateTag(c.state), ' ', el('span', { class: 'muted' }, when(c.at)), c.worker ? ` by ${c.worker}` : '', c.note ? el('div', {}, c.note) : null),
    ),
  );
  const buttons = live.admin
    ? el('p', {}, el('button', { class: 'retry', onclick: () => act('retry', [s.name]) }, 'Retry'), ' ', el('button', { class: 'cancel danger', onclick: () => act('cancel', [s.name]) }, 'Cancel'))
    : null;
  return [buttons, kv, el('h2', {}, 'State log'), timeline];
}

// --- routing and the live stream --------------------------------------------------------

function route() {
  const hash = location.hash.slice(1);
  if (hash.startsWith('task/')) return { page: 'task', rest: hash.slice(5) };
  const [page, rest] = hash.split('?');
  return { page: page || 'overview', rest: rest ?? '' };
}
function decoded(text) {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** Draws the page the address names; pages that follow the stream are drawn again at each snapshot. */
function render(fromSnapshot) {
  const { page, rest } = route();
  const changed = page !== live.page || !fromSnapshot;
  live.page = page;
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.page === page);
  const main = document.getElementById('main');
  const snap = live.snap;
  switch (page) {
    case 'overview':
    case 'failed':
    case 'workers':
      if (snap === undefined) return;
      fill(main, page === 'overview' ? overview(snap) : page === 'failed' ? failed(snap) : workers(snap));
      return;
    case 'throughput':
      if (changed) fill(main, throughput());
      else if (live.chart) {
        live.chart.setData([live.history.t, live.history.done, live.history.failed]);
        const h = live.history;
        const total = (xs) => xs.reduce((a, b) => a + b, 0);
        document.getElementById('throughput-totals').textContent = `${fmt(total(h.done))} completions, ${fmt(total(h.failed))} failed attempts over ${h.t.length} minute${h.t.length === 1 ? '' : 's'}`;
      }
      return;
    case 'graph':
      if (changed) fill(main, graphPage(new URLSearchParams(rest)));
      return;
    case 'task':
      if (changed) fill(main, taskPage(decoded(rest)));
      return;
    default:
      fill(main, el('p', {}, `No page "${page}": `, el('a', { href: '#overview' }, 'the overview')));
  }
}

function connect() {
  const status = document.getElementById('live');
  const events = new EventSource('/events');
  events.onopen = () => {
    status.textContent = 'live';
    status.className = 'live on';
  };
  events.onerror = () => {
    status.textContent = 'reconnecting';
    status.className = 'live off';
  };
  events.onmessage = (e) => {
    const snap = JSON.parse(e.data);
    live.snap = snap;
    mergeHistory(snap.throughput);
    document.getElementById('failed-count').textContent = snap.counts.failed > 0 ? String(snap.counts.failed) : '';
    render(true);
  };
}

window.addEventListener('hashchange', () => render(false));
Promise.all([getJson('/api/session'), getJson('/api/throughput')])
  .then(([session, history]) => {
    live.admin = session.admin;
    live.history = history;
  })
  .catch((err) => notice(`the dashboard could not load: ${err.message}`))
  .finally(() => {
    render(false);
    connect();
  });
