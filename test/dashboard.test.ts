/**
 * dhub --http: the dashboard in a real browser (Chromium through puppeteer-core) against the real
 * dhub and dworker; its tokens, and the bounds of its HTTP shell.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { request, type IncomingMessage } from 'node:http';
import { join } from 'node:path';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '../worker-kit/src/index.js';
import { accessOf, httpBindProblem, isLoopbackHost, parseHttpAddress, presentedToken } from '../hub/src/http/access.js';
import { ThroughputHistory } from '../hub/src/http/history.js';
import { DashboardServer, type DashboardSource } from '../hub/src/http/server.js';
import { silentLogger } from '../hub/src/log.js';
import { emptyCounts, type Status } from '../proto/src/types.js';
import { http, type Answer } from './support/http.js';
import { cleanTempDirs, DHUB, freePort, ROOT, runNode, startHub, tempDir, type RunningHub } from './helpers.js';
import { eventually, killDworkers, spawnDworker } from './support/dworker.js';

const OUT = join(ROOT, 'test-output');
const ADMIN_TOKEN = 'admin-0123456789abcdef';
const READ_TOKEN = 'read-0123456789abcdef';

afterAll(() => {
  killDworkers();
  cleanTempDirs();
});

/** A file holding `token`, readable by its owner only. */
function tokenFile(token: string): string {
  const path = join(tempDir(), 'token');
  writeFileSync(path, `${token}\n`, { mode: 0o600 });
  return path;
}


describe('where the dashboard may listen', () => {
  it('needs a token on any address but loopback', () => {
    expect(httpBindProblem('127.0.0.1', false)).toBeUndefined();
    expect(httpBindProblem('::1', false)).toBeUndefined();
    expect(httpBindProblem('localhost', false)).toBeUndefined();
    expect(httpBindProblem('0.0.0.0', false)).toMatch(/needs --http-token FILE/);
    expect(httpBindProblem('::', false)).toMatch(/--http \[::\]: .*needs --http-token/);
    expect(httpBindProblem('192.168.1.20', false)).toMatch(/needs --http-token/);
    expect(httpBindProblem('0.0.0.0', true)).toBeUndefined();
    expect(isLoopbackHost('127.0.0.5')).toBe(true);
    expect(isLoopbackHost('10.0.0.1')).toBe(false);
  });

  it('grants reading with the read token (or to all without one), the buttons with the admin token only', () => {
    const both = { read: READ_TOKEN, admin: ADMIN_TOKEN };
    expect([undefined, 'wrong', READ_TOKEN, ADMIN_TOKEN].map((t) => accessOf(both, t))).toEqual(['none', 'none', 'read', 'admin']);
    const adminOnly = { read: undefined, admin: ADMIN_TOKEN };
    expect([undefined, 'wrong', ADMIN_TOKEN].map((t) => accessOf(adminOnly, t))).toEqual(['read', 'read', 'admin']);
    expect(presentedToken('Bearer abc', 'dagwork_token=def')).toBe('abc');
    expect(presentedToken(undefined, 'a=1; dagwork_token=def; b=2')).toBe('def');
    expect(presentedToken('Basic xyz', undefined)).toBeUndefined();
  });

  it('reads HOST:PORT, brackets around an IPv6 host, and names what is wrong otherwise', () => {
    expect(parseHttpAddress('127.0.0.1:8080')).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(parseHttpAddress('[::1]:0')).toEqual({ host: '::1', port: 0 });
    expect(() => parseHttpAddress('8080')).toThrow(/expected HOST:PORT/);
    expect(() => parseHttpAddress('host:70000')).toThrow(/expected HOST:PORT/);
  });

  it('dhub refuses --http 0.0.0.0:PORT without --http-token before it binds or opens anything', async () => {
    const db = join(tempDir(), 'db');
    const port = await freePort();
    const run = await runNode([DHUB, '--bind', 'tcp://127.0.0.1:*', '--db', db, '--http', `0.0.0.0:${port}`], { timeoutMs: 15_000 });
    expect(run.code).toBe(2); // bad usage
    expect(run.stderr).toContain(`--http 0.0.0.0: the dashboard on an address other hosts can reach needs --http-token FILE`);
    expect(run.stderr).not.toContain('listening on');
    expect(existsSync(db)).toBe(false);
  });

  it('dhub refuses a token file holding too short a token', async () => {
    const short = join(tempDir(), 'short');
    writeFileSync(short, 'abc\n', { mode: 0o600 });
    const db = join(tempDir(), 'db');
    const run = await runNode([DHUB, '--bind', 'tcp://127.0.0.1:*', '--db', db, '--http', '127.0.0.1:0', '--http-token', short], { timeoutMs: 15_000 });
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`--http-token ${short}: the token must be 16 to 512 characters, it is 3`);
    expect(existsSync(db)).toBe(false);
  });
});

describe('the throughput history', () => {
  it('counts what the totals gained into the minute it was seen, empty minutes as 0, the oldest dropped', () => {
    const start = 60_000 * 1_000;
    const history = new ThroughputHistory(start, 3);
    const totals = { done: 0, failed: 0 };
    history.observe(totals, start);
    totals.done = 5;
    history.observe(totals, start + 10_000);
    totals.failed = 1;
    history.observe(totals, start + 130_000);
    expect(history.series(start + 130_000)).toEqual({ t: [60_000, 60_060, 60_120], done: [5, 0, 0], failed: [0, 0, 1] });
    totals.done = 7;
    history.observe(totals, start + 190_000);
    expect(history.series(start + 190_000)).toEqual({ t: [60_060, 60_120, 60_180], done: [0, 0, 2], failed: [0, 1, 0] });
    // Other totals (a reloaded graph): counted from their values then.
    history.observe({ done: 100, failed: 0 }, start + 191_000);
    expect(history.series(start + 191_000, 1)).toEqual({ t: [60_180], done: [2], failed: [0] });
  });
});

describe('the HTTP shell and its bounds', () => {
  const status: Status = {
    counts: emptyCounts(), pools: [], poolsTotal: 0, workers: [], workersTotal: 0, waitingOnMissing: 0, missingNames: 0, missingExamples: [],
    donePerSecond: 0, now: 0, total: 0, limits: {} as Status['limits'], storeId: 's', startedMs: 0, files: 0, filesBytes: 0,
  };
  let statusCalls = 0;
  const source: DashboardSource = {
    status: () => (statusCalls++, status),
    workers: () => [],
    list: () => ({ tasks: [], next: 0 }),
    lookup: () => {
      throw new TypeError('a bug in a read');
    },
    throughput: () => ({ t: [], done: [], failed: [] }),
    graphView: () => ({ nodes: [], edges: [], tasks: 0 }),
    retry: (names) => Promise.resolve({ retried: names.length, results: [] }),
    cancel: () => Promise.resolve({ cancelled: 0, results: [] }),
  };
  let server: DashboardServer;
  let port: number;
  beforeAll(async () => {
    server = await DashboardServer.start(source, {
      host: '127.0.0.1', port: 0, tokens: { read: undefined, admin: ADMIN_TOKEN }, maxConnections: 6, maxSubscribers: 2, maxBodyBytes: 1_000, tickMs: 200,
      log: silentLogger, metrics: undefined,
    });
    port = Number(new URL(server.url).port);
  });
  afterAll(() => server.close());
  const admin = { Authorization: `Bearer ${ADMIN_TOKEN}`, 'Content-Type': 'application/json' };

  it('answers a body over the limit 413, a bad query value 400, an unknown path 404, a bug in a read 500', async () => {
    expect(await http(port, '/api/retry', { method: 'POST', headers: admin, body: JSON.stringify({ names: ['x'.repeat(2_000)] }) })).toMatchObject({ status: 413, body: expect.stringContaining('at most 1000') });
    expect(await http(port, '/api/failed?limit=0')).toMatchObject({ status: 400, body: expect.stringContaining('limit=0: expected a whole number from 1 to 1000') });
    expect(await http(port, '/api/graph?collapse=sideways')).toMatchObject({ status: 400, body: expect.stringContaining('collapse=sideways') });
    expect(await http(port, '/nothing')).toMatchObject({ status: 404 });
    expect(await http(port, '/metrics')).toMatchObject({ status: 404, body: expect.stringContaining('no metrics') });
    expect(await http(port, '/api/task?name=a')).toMatchObject({ status: 500, body: expect.stringContaining('a bug in a read') });
    expect(await http(port, '/api/retry', { method: 'POST', headers: admin, body: '{"names": [' })).toMatchObject({ status: 400, body: expect.stringContaining('not JSON') });
    expect(await http(port, '/api/retry', { method: 'POST', headers: admin, body: '{"names": []}' })).toMatchObject({ status: 400 });
    expect(await http(port, '/api/retry', { method: 'POST', headers: { ...admin, 'Content-Type': 'text/plain' }, body: '{"names": ["a"]}' })).toMatchObject({ status: 415 });
    expect(await http(port, '/api/retry', { method: 'POST', headers: { ...admin, Origin: 'http://evil.example' }, body: '{"names": ["a"]}' })).toMatchObject({ status: 403 });
    expect(await http(port, '/api/retry', { method: 'POST', headers: admin, body: '{"names": ["a"]}' })).toMatchObject({ status: 200, body: '{"retried":1,"results":[]}' });
  });

  it('refuses the buttons without the admin token', async () => {
    const answer = await http(port, '/api/retry', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"names": ["a"]}' });
    expect(answer).toMatchObject({ status: 403, body: expect.stringContaining('needs the admin token') });
  });

  it('streams to maxSubscribers pages and answers the next 503, computing one snapshot a tick for all', async () => {
    const streams: IncomingMessage[] = [];
    const open = (): Promise<IncomingMessage> =>
      new Promise((resolve, reject) => request({ host: '127.0.0.1', port, path: '/events' }, resolve).on('error', reject).end());
    for (let i = 0; i < 2; i++) streams.push(await open());
    expect(streams.map((s) => s.statusCode)).toEqual([200, 200]);
    const third = await open();
    expect(third.statusCode).toBe(503);
    third.resume();
    const before = statusCalls;
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    // About 5 ticks of 200 ms: a snapshot each, not one per subscriber.
    expect(statusCalls - before).toBeGreaterThanOrEqual(2);
    expect(statusCalls - before).toBeLessThanOrEqual(6);
    for (const s of streams) s.destroy();
  });

  it('answers a connection past maxConnections 503 and closes it', async () => {
    const sockets: Socket[] = [];
    for (let i = 0; i < 6; i++) {
      const s = connect(port, '127.0.0.1');
      await new Promise((resolve) => s.once('connect', resolve));
      sockets.push(s);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
    const extra = connect(port, '127.0.0.1');
    const answer = await new Promise<string>((resolve) => {
      let text = '';
      extra.on('data', (c: Buffer) => (text += c.toString()));
      extra.on('close', () => resolve(text));
    });
    expect(answer).toMatch(/^HTTP\/1\.1 503 Service Unavailable/);
    expect(answer).toContain('the dashboard has 6 connections open, its limit');
    for (const s of sockets) s.destroy();
  });
});

describe('the dashboard with a read token', () => {
  let hub: RunningHub;
  let port: number;
  beforeAll(async () => {
    port = await freePort();
    hub = await startHub({ args: ['--http', `127.0.0.1:${port}`, '--http-token', tokenFile(READ_TOKEN)] });
  });
  afterAll(() => hub.stop());

  it('answers 401 without it, and keeps it in an HttpOnly SameSite=Strict cookie once given as ?token=', async () => {
    expect(await http(port, '/')).toMatchObject({ status: 401, body: expect.stringContaining('this dashboard needs its token') });
    expect(await http(port, '/events')).toMatchObject({ status: 401 });
    expect(await http(port, '/?token=wrong-token-0123456789')).toMatchObject({ status: 401 });
    const given = await http(port, `/api/status?token=${READ_TOKEN}`);
    expect(given.status).toBe(303);
    expect(given.headers.location).toBe('/api/status');
    expect(given.headers['set-cookie']).toEqual([`dagwork_token=${READ_TOKEN}; HttpOnly; SameSite=Strict; Path=/`]);
    // Never to another site: '//host' in the path stays on this one.
    expect((await http(port, `//evil.example/x?token=${READ_TOKEN}`)).headers.location).toBe('/x');
    expect(await http(port, '/api/status', { headers: { Cookie: `dagwork_token=${READ_TOKEN}` } })).toMatchObject({ status: 200 });
    expect(await http(port, '/api/status', { headers: { Authorization: `Bearer ${READ_TOKEN}` } })).toMatchObject({ status: 200 });
  });

  it('has no buttons without an admin token: the POST routes answer 403', async () => {
    const answer = await http(port, '/api/retry', { method: 'POST', headers: { Authorization: `Bearer ${READ_TOKEN}`, 'Content-Type': 'application/json' }, body: '{"names": ["a"]}' });
    expect(answer).toMatchObject({ status: 403, body: expect.stringContaining('no admin token') });
  });
});

describe('the buttons go through the hub as requests do', () => {
  it('answers a retry once it is written: it survives a kill -9 right after', async () => {
    const port = await freePort();
    const args = ['--http', `127.0.0.1:${port}`, '--http-admin-token', tokenFile(ADMIN_TOKEN)];
    const hub = await startHub({ args });
    const client = new Client({ hub: hub.endpoint, worker: 'w' });
    try {
      await client.create([{ name: 'flaky', maxAttempts: 1 }, { name: 'idle' }]);
      const [leased] = (await client.steal({ n: 1 })).tasks;
      expect(leased?.name).toBe('flaky');
      await client.fail('flaky', 'no luck');
      const post = (what: string, body: object): Promise<Answer> =>
        http(port, `/api/${what}`, { method: 'POST', headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
      expect(await post('retry', { names: ['flaky', 'nobody'] })).toMatchObject({ status: 200, body: expect.stringContaining('"retried":1') });
      expect(JSON.parse((await post('cancel', { names: ['idle'], reason: 'not wanted' })).body)).toMatchObject({ cancelled: 1, results: [{ name: 'idle', outcome: 'ACCEPTED' }] });
      client.close();
      expect(await hub.stop('SIGKILL')).toBeNull();
      const again = await startHub({ db: hub.db, args });
      const after = new Client({ hub: again.endpoint, worker: 'w' });
      try {
        expect((await after.lookup('flaky')).task.state).toBe('ready');
        expect((await after.lookup('idle')).task).toMatchObject({ state: 'cancelled' });
      } finally {
        after.close();
        await again.stop();
      }
    } finally {
      client.close();
      await hub.stop();
    }
  });
});

describe('the dashboard in a browser', () => {
  let hub: RunningHub;
  let client: Client;
  let browser: Browser;
  let port: number;
  let base: string;
  const errors: string[] = [];
  const BAD = '<img src=x onerror="window.__injected=1">';
  const FAILING = `echo '<b>disk</b> full on /scratch' >&2; exit 1`;

  beforeAll(async () => {
    mkdirSync(OUT, { recursive: true });
    port = await freePort();
    base = `http://127.0.0.1:${port}`;
    hub = await startHub({ args: ['--http', `127.0.0.1:${port}`, '--http-admin-token', tokenFile(ADMIN_TOKEN)] });
    client = new Client({ hub: hub.endpoint, worker: 'submitter' });
    const steps = Array.from({ length: 12 }, (_, i) => ({ name: `render-${i}`, pool: 'render', payload: Buffer.from('sleep 0.4; echo ok') }));
    await client.create([
      ...steps,
      { name: 'merge', pool: 'render', deps: steps.map((s) => s.name), payload: Buffer.from('echo merged') },
      { name: 'broken', pool: 'render', payload: Buffer.from(FAILING), maxAttempts: 1 },
      { name: BAD, pool: 'render', payload: Buffer.from(FAILING), maxAttempts: 1 },
      { name: 'after-broken', pool: 'render', deps: ['broken'], payload: Buffer.from('echo never') },
    ]);
    browser = await puppeteer.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox', '--headless=new'] });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    client?.close();
    await hub?.stop();
  });

  async function open(path: string): Promise<Page> {
    const page = await browser.newPage();
    await page.setViewport({ width: 1280, height: 800 });
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(`${path}: ${m.text()}`);
    });
    page.on('pageerror', (e) => errors.push(`${path}: ${(e as Error).message}`));
    await page.goto(`${base}${path}`);
    return page;
  }
  const shot = (page: Page, name: string): Promise<unknown> => page.screenshot({ path: join(OUT, `dashboard-${name}.png`), fullPage: true });
  const cardValue = (page: Page, key: string): Promise<string> => page.$eval(`#totals .card[data-key="${key}"] .value`, (e) => e.textContent ?? '');

  it('shows the overview, and updates it live while a worker runs, without reloading', async () => {
    const page = await open('/#overview');
    await page.waitForSelector('#totals');
    expect(await cardValue(page, 'tasks')).toBe('16');
    expect(await cardValue(page, 'done')).toBe('0');
    await page.evaluate(() => ((window as unknown as { __stayed: boolean }).__stayed = true));
    const worker = spawnDworker(['--hub', hub.endpoint, '--worker', 'w1', '--concurrency', '2']);
    // Seen part-way: some done, not all.
    await page.waitForFunction(() => {
      const done = Number(document.querySelector('#totals .card[data-key="done"] .value')?.textContent);
      return done > 0 && done < 13;
    }, { timeout: 20_000 });
    await shot(page, 'overview-running');
    await page.waitForFunction(() => document.querySelector('#totals .card[data-key="done"] .value')?.textContent === '13', { timeout: 30_000 });
    expect((await worker.exit).code).toBe(3); // its pool finished with failed tasks
    await page.waitForFunction(() => document.querySelector('#totals .card[data-key="time left"] .value')?.textContent === 'finished', { timeout: 5_000 });
    expect(await page.evaluate(() => (window as unknown as { __stayed?: boolean }).__stayed)).toBe(true);
    expect(await cardValue(page, 'failed')).toBe('2');
    expect(await cardValue(page, 'blocked')).toBe('1');
    const row = await page.$eval('tr[data-pool="render"]', (tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent));
    expect(row.slice(0, 9)).toEqual(['render', '0', '0', '0', '0', '13', '2', '1', '0']);
    expect(await page.$('tr[data-pool="render"] .bar .s-done')).not.toBeNull();
    await shot(page, 'overview');
    await page.close();
  }, 60_000);

  it('lists the failed tasks grouped by reason, the reason shown as text, with no buttons without the admin token', async () => {
    const page = await open('/#failed');
    await page.waitForSelector('.group');
    const groups = await page.$$eval('.group', (gs) => gs.map((g) => ({ reason: g.querySelector('pre.reason')?.textContent, tasks: [...g.querySelectorAll('tr[data-task]')].map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent)) })));
    expect(groups).toHaveLength(1);
    expect(groups[0]?.reason).toContain('<b>disk</b> full on /scratch');
    const rows = (groups[0]?.tasks ?? []).sort();
    expect(rows.map((r) => [r[0], r[1], r[2], r[3]])).toEqual([[BAD, 'render', '1', 'w1'], ['broken', 'render', '1', 'w1']].sort());
    expect(await page.$('pre.reason b')).toBeNull();
    expect(await page.$('main img')).toBeNull();
    expect(await page.evaluate(() => (window as unknown as { __injected?: number }).__injected)).toBeUndefined();
    expect(await page.$('button.retry')).toBeNull();
    expect(await page.$eval('#failed-count', (e) => e.textContent)).toBe('2');
    await shot(page, 'failed');
    await page.close();
  });

  it('shows the workers: leases held, done, failed, last seen, busy share', async () => {
    const page = await open('/#workers');
    await page.waitForSelector('tr[data-worker="w1"]');
    const cells = await page.$eval('tr[data-worker="w1"]', (tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent ?? ''));
    expect(cells.slice(0, 5)).toEqual(['w1', '0', '13', '2', 'exited']);
    expect(cells[5]).toMatch(/^\d+%$/);
    await shot(page, 'workers');
    await page.close();
  });

  it('charts completions and failures per minute since the hub started, history kept across a reload', async () => {
    const page = await open('/#throughput');
    await page.waitForSelector('#chart canvas');
    await page.waitForFunction(() => /^13 completions, 2 failed attempts over/.test(document.getElementById('throughput-totals')?.textContent ?? ''), { timeout: 5_000 });
    expect(await page.$$eval('.u-legend .u-series', (s) => s.map((e) => e.textContent))).toEqual(expect.arrayContaining([expect.stringContaining('completions'), expect.stringContaining('failed attempts')]));
    await page.reload();
    await page.waitForFunction(() => /^13 completions, 2 failed attempts/.test(document.getElementById('throughput-totals')?.textContent ?? ''), { timeout: 5_000 });
    await shot(page, 'throughput');
    await page.close();
  });

  it('shows a task with everything lookup shows and its state log as a timeline', async () => {
    const page = await open('/#task/broken');
    await page.waitForSelector('dl.kv');
    const field = (key: string): Promise<string> => page.$eval(`dd[data-key="${key}"]`, (e) => e.textContent ?? '');
    expect(await field('state')).toBe('failed');
    expect(await field('pool')).toBe('render');
    expect(await field('attempts')).toBe('1 of 1');
    expect(await field('worker')).toBe('w1');
    expect(await field('dependents')).toBe('after-broken');
    expect(await field('last error')).toContain('<b>disk</b> full on /scratch');
    expect(await field('payload')).toContain(FAILING);
    const log = await page.$$eval('.timeline li .state', (s) => s.map((e) => e.textContent));
    expect(log[0]).toBe('ready');
    expect(log).toContain('running');
    expect(log[log.length - 1]).toBe('failed');
    expect(await page.$('button.retry')).toBeNull();
    await shot(page, 'task');
    await page.close();
  });

  it('draws the graph left to right, a node per task coloured by state, an edge per dependency', async () => {
    const page = await open('/#graph');
    await page.waitForSelector('#graph-box svg g.node');
    expect(await page.$eval('#graph-info', (e) => e.textContent)).toBe('16 tasks, 16 nodes');
    expect(await page.$$eval('#graph-box svg > path', (p) => p.length)).toBe(13);
    const fill = (id: string): Promise<string> => page.$eval(`g.node[data-id="${id}"] rect`, (r) => getComputedStyle(r).fill);
    expect(await fill('broken')).toBe('rgb(224, 82, 82)');
    expect(await fill('merge')).toBe('rgb(63, 174, 90)');
    expect(await fill('after-broken')).toBe('rgb(138, 90, 68)');
    // Left to right: a dependency stands left of its dependent.
    const x = (id: string): Promise<number> => page.$eval(`g.node[data-id="${id}"]`, (g) => g.getBoundingClientRect().x);
    expect(await x('render-0')).toBeLessThan(await x('merge'));
    await shot(page, 'graph');
    await page.close();
  });

  it('draws the view around one task, and the graph collapsed by pool with counts per state', async () => {
    const page = await open('/#graph?around=broken&depth=1');
    await page.waitForSelector('#graph-box svg g.node');
    expect((await page.$$eval('g.node', (gs) => gs.map((g) => g.getAttribute('data-id')))).sort()).toEqual(['after-broken', 'broken']);
    await page.evaluate(() => (location.hash = 'graph?collapse=pool'));
    await page.waitForFunction(() => document.getElementById('graph-info')?.textContent === '16 tasks, 1 node, grouped by pool (counts per state on each)');
    expect(await page.$eval('g.node[data-id="render"] text.counts', (t) => t.textContent)).toBe('done 13 · failed 2 · blocked 1');
    await shot(page, 'graph-pool');
    await page.close();
  });

  it('opens a task page from its node in the graph', async () => {
    const page = await open('/#graph');
    await page.waitForSelector('g.node[data-id="merge"]');
    await page.click('g.node[data-id="merge"]');
    await page.waitForSelector('dd[data-key="state"]');
    expect(page.url()).toBe(`${base}/#task/merge`);
    expect(await page.$eval('dd[data-key="state"]', (e) => e.textContent)).toBe('done');
    await page.close();
  });

  it('retries a failed task with the admin token (given once as ?token=), written before the answer', async () => {
    const page = await open(`/?token=${ADMIN_TOKEN}#failed`);
    expect(page.url()).toBe(`${base}/#failed`);
    await page.waitForSelector('tr[data-task="broken"] button.retry');
    await page.click('tr[data-task="broken"] button.retry');
    await page.waitForFunction(() => /^retry: 1 of 1 accepted/.test(document.getElementById('notice')?.textContent ?? ''), { timeout: 5_000 });
    // The answer came after the write: the hub already holds the task retried.
    const { task } = await client.lookup('broken');
    expect(task.state).toBe('ready');
    await page.waitForFunction(() => document.querySelectorAll('tr[data-task]').length === 1, { timeout: 5_000 });
    await shot(page, 'failed-admin');
    await page.close();
  });

  it('groups a graph of more than 2,000 tasks by name prefix', async () => {
    const bulk = Array.from({ length: 2_100 }, (_, i) => ({ name: `sweep/${i}`, pool: 'bulk' }));
    for (let i = 0; i < bulk.length; i += 1_000) await client.create(bulk.slice(i, i + 1_000));
    const page = await open('/#graph');
    await page.waitForFunction(() => /grouped by prefix/.test(document.getElementById('graph-info')?.textContent ?? ''), { timeout: 10_000 });
    expect(await page.$eval('#graph-info', (e) => e.textContent)).toBe('2116 tasks, 17 nodes, grouped by prefix (counts per state on each)');
    expect(await page.$eval('g.node[data-id="sweep"] text.counts', (t) => t.textContent)).toBe('ready 2100');
    await shot(page, 'graph-prefix');
    await page.close();
  });

  it('has no console errors in any page', () => {
    expect(errors).toEqual([]);
  });
});
