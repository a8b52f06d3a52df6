/** `dquery report`: the critical path and the figures (pure), list with deps, and the report of a real run as JSON and as a page in Chromium. */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import puppeteer from 'puppeteer-core';
import { afterAll, describe, expect, it } from 'vitest';
import { Graph } from '../hub/src/graph/graph.js';
import { decodeReply, decodeRequest, encodeReply, encodeRequest } from '../proto/src/codec.js';
import type { TaskSummary, WorkerStatus } from '../proto/src/types.js';
import { escape, reportHtml, scriptJson } from '../query/src/report-html.js';
import { criticalPath, ReportBuilder, runStats, timelineStep, type DoneTask } from '../query/src/report.js';
import { Client } from '../worker-kit/src/index.js';
import { cleanTempDirs, dquery, ROOT, startHub, stencil, tempDir, withHub } from './helpers.js';

const T0 = 1_700_000_000_000;

afterAll(() => cleanTempDirs());

/** Done tasks from [name, created, start, end, deps] rows. */
function doneTasks(rows: [string, number, number, number, string[]][]): Map<string, DoneTask> {
  return new Map(rows.map(([name, created, start, end, deps]) => [name, { created: T0 + created, start: T0 + start, end: T0 + end, deps }]));
}

describe('the critical path', () => {
  it('steps back from the task that finished last to the dependency that finished last', () => {
    // a -> b (slow), a -> c (fast), b and c -> d.
    const done = doneTasks([
      ['a', 0, 10, 20, []],
      ['b', 0, 25, 80, ['a']],
      ['c', 0, 22, 30, ['a']],
      ['d', 0, 90, 100, ['b', 'c']],
    ]);
    const path = criticalPath(done);
    expect(path.tasks.map((t) => t.name)).toEqual(['a', 'b', 'd']);
    expect(path.tasks.map((t) => [t.waitMs, t.runMs])).toEqual([
      [10, 10],
      [5, 55],
      [10, 10],
    ]);
    expect(path.totalMs).toBe(100);
  });

  it('breaks ties by name, for the last task and for the dependency waited for', () => {
    const done = doneTasks([
      ['r', 0, 0, 10, []],
      ['y', 0, 10, 20, ['r']],
      ['x', 0, 10, 20, ['r']],
      ['m2', 0, 20, 30, ['y', 'x']],
      ['m1', 0, 20, 30, ['x', 'y']],
    ]);
    expect(criticalPath(done).tasks.map((t) => t.name)).toEqual(['r', 'x', 'm1']);
  });

  it('stops at a task whose dependencies are not done, and never walks in a circle', () => {
    const open = doneTasks([
      ['b', 5, 10, 20, ['a-not-done']],
      ['c', 5, 20, 30, ['b']],
    ]);
    expect(criticalPath(open)).toMatchObject({ totalMs: 25, tasks: [{ name: 'b', waitMs: 5 }, { name: 'c' }] });
    // A dependency rerun after its dependent finished ends later than it.
    const rerun = doneTasks([
      ['p', 0, 50, 60, ['q']],
      ['q', 0, 61, 70, ['p']],
    ]);
    expect(criticalPath(rerun).tasks.map((t) => t.name)).toEqual(['p', 'q']);
  });

  it('is empty when nothing is done', () => {
    expect(criticalPath(new Map())).toEqual({ totalMs: 0, tasks: [] });
  });
});

describe('the figures', () => {
  it('takes min, median, p95 and max by nearest rank', () => {
    expect(runStats(Array.from({ length: 20 }, (_, i) => 20 - i))).toEqual({ runs: 20, minMs: 1, medianMs: 10, p95Ms: 19, maxMs: 20 });
    expect(runStats([7])).toEqual({ runs: 1, minMs: 7, medianMs: 7, p95Ms: 7, maxMs: 7 });
    expect(runStats([])).toBeUndefined();
  });

  it('counts per minute, finer for a short run', () => {
    expect(timelineStep(3_000)).toBe(100);
    expect(timelineStep(30_000)).toBe(500);
    expect(timelineStep(20 * 60_000)).toBe(15_000);
    expect(timelineStep(3 * 3_600_000)).toBe(60_000);
    expect(timelineStep(3 * 86_400_000)).toBe(300_000);
  });

  const summary = (t: Partial<TaskSummary> & { name: string }): TaskSummary => ({
    state: 'done',
    pool: 'default',
    attempts: 1,
    worker: 'w',
    lastError: '',
    seq: 0,
    resultBytes: 0,
    changedAt: 0,
    createdAt: T0,
    startedAt: 0,
    params: [],
    result: new Uint8Array(0),
    outputs: [],
    barrier: false,
    failedDeps: 0,
    ...t,
  });
  const worker: WorkerStatus = { worker: 'w', lastSeen: T0, running: 0, done: 3, failed: 1, exited: false, runs: 4, busyMs: 1000, maxRunMs: 400, tasks: [] };

  function sample(): ReportBuilder {
    const b = new ReportBuilder(undefined);
    b.add(summary({ name: 'a', startedAt: T0 + 100, changedAt: T0 + 300 }));
    b.add(summary({ name: 'b', startedAt: T0 + 300, changedAt: T0 + 1300, deps: ['a'], pool: 'gpu' }));
    // A barrier: done, but it ran nothing.
    b.add(summary({ name: 'all', barrier: true, changedAt: T0 + 1300, deps: ['a', 'b'] }));
    b.add(summary({ name: 'f1', state: 'failed', changedAt: T0 + 900, lastError: 'exit 2: no such file\ndetail one' }));
    b.add(summary({ name: 'f2', state: 'failed', changedAt: T0 + 950, lastError: 'exit 2: no such file\ndetail two' }));
    b.add(summary({ name: 'f3', state: 'failed', changedAt: T0 + 990, lastError: 'killed' }));
    b.add(summary({ name: 'later', state: 'waiting', deps: ['f1'] }));
    return b;
  }

  it('leaves barriers out of the run times and the slowest tasks, but follows them on the critical path', () => {
    const report = sample().finish(T0 + 2000, { listed: [worker], total: 1 }, new Map());
    expect(report.pools).toEqual([
      { pool: 'default', runs: 1, minMs: 200, medianMs: 200, p95Ms: 200, maxMs: 200 },
      { pool: 'gpu', runs: 1, minMs: 1000, medianMs: 1000, p95Ms: 1000, maxMs: 1000 },
    ]);
    expect(report.slowest.map((t) => t.name)).toEqual(['b', 'a']);
    expect(report.criticalPath.tasks.map((t) => t.name)).toEqual(['a', 'b', 'all']);
  });

  it('groups failures by the first line of their reason, most frequent first, with examples and their params', () => {
    const b = sample();
    expect(b.failureGroups().map((g) => g.examples)).toEqual([['f1', 'f2'], ['f3']]);
    const report = b.finish(T0 + 2000, { listed: [worker], total: 1 }, new Map([['f1', [{ name: 'x', value: '1' }]]]));
    expect(report.failures).toEqual({
      total: 3,
      groupsTotal: 2,
      groups: [
        { reason: 'exit 2: no such file', count: 2, examples: [{ name: 'f1', params: { x: '1' } }, { name: 'f2', params: {} }] },
        { reason: 'killed', count: 1, examples: [{ name: 'f3', params: {} }] },
      ],
    });
  });

  it('says the run is not finished, counts per state, and puts completions and failures on the timeline', () => {
    const report = sample().finish(T0 + 2000, { listed: [worker], total: 1 }, new Map());
    expect(report.finished).toBe(false);
    expect(report.counts).toMatchObject({ done: 3, failed: 3, waiting: 1 });
    expect(report.span).toEqual({ start: T0, end: T0 + 1300, ms: 1300 });
    expect(report.timeline.stepMs).toBe(100);
    expect(report.timeline.done).toHaveLength(14);
    expect(report.timeline.done[3]).toBe(1);
    expect(report.timeline.done[13]).toBe(2);
    expect(report.timeline.failed.reduce((a, b) => a + b, 0)).toBe(3);
    expect(report.workers.listed).toEqual([{ worker: 'w', done: 3, failed: 1, runs: 4, busyMs: 1000, meanRunMs: 250, maxRunMs: 400 }]);
  });

  it('shows the ends of a long critical path on the page, the whole of it in the JSON', () => {
    const b = new ReportBuilder(undefined);
    for (let i = 0; i < 250; i++) b.add(summary({ name: `c${i}`, startedAt: T0 + 10 * i, changedAt: T0 + 10 * i + 5, deps: i === 0 ? [] : [`c${i - 1}`] }));
    const report = b.finish(T0 + 5000, { listed: [], total: 0 }, new Map());
    expect(report.criticalPath.tasks).toHaveLength(250);
    const page = reportHtml(report, { js: '', css: '' });
    const table = page.slice(page.indexOf('<table id="critical-path">'), page.indexOf('</table>', page.indexOf('<table id="critical-path">')));
    expect(table.match(/<tr>/g)).toHaveLength(1 + 201);
    expect(table).toContain('<td>50 more (--json lists them all)</td>');
    expect(table).toContain('<code>c249</code>');
    expect(table).not.toContain('<code>c100</code>');
  });

  it('writes HTML text and script data that no name can break out of', () => {
    expect(escape(`<b a="1">'&'</b>`)).toBe('&lt;b a=&quot;1&quot;&gt;&#39;&amp;&#39;&lt;/b&gt;');
    expect(escape('\x1b[31mred\x1b[0m\tand\nlines')).toBe('\\x1b[31mred\\x1b[0m\tand\nlines'); // a terminal's escapes shown, not sent
    const json = scriptJson({ name: '</script><script>alert(1)</script>' });
    expect(json).not.toContain('<');
    expect(JSON.parse(json)).toEqual({ name: '</script><script>alert(1)</script>' });
  });
});

describe('list with deps', () => {
  it('fills deps only when asked', () => {
    const g = new Graph();
    g.create([{ name: 'a' }, { name: 'b', deps: ['a', 'x'] }], T0);
    const query = { states: [], pool: '', prefix: '', limit: 0, after: 0, withParams: false, withResults: false };
    expect(g.list({ ...query, withDeps: true }, T0).tasks.map((t) => t.deps)).toEqual([[], ['a', 'x']]);
    expect(g.list(query, T0).tasks.map((t) => t.deps)).toEqual([undefined, undefined]);
  });

  it("ends a page once its deps' names pass 16 MiB, holding one task at least", () => {
    const big = (c: string): string => c.repeat(6 << 20);
    const g = new Graph({ maxNameBytes: 7 << 20 });
    const deps = [big('x'), big('y'), big('z')];
    g.create([{ name: 'a', deps }, { name: 'b', deps }, { name: 'c' }], T0);
    const query = { states: [], pool: '', prefix: '', limit: 0, after: 0, withParams: false, withResults: false, withDeps: true };
    const first = g.list(query, T0);
    expect(first.tasks.map((t) => t.name)).toEqual(['a']);
    const second = g.list({ ...query, after: first.next }, T0);
    expect(second.tasks.map((t) => t.name)).toEqual(['b']);
    expect(g.list({ ...query, after: second.next }, T0)).toMatchObject({ tasks: [{ name: 'c' }], next: 0 });
    // Without deps the same tasks fit one page.
    expect(g.list({ ...query, withDeps: false }, T0).tasks).toHaveLength(3);
  });

  it('carries with_deps and deps over the wire', () => {
    const request = { op: 'list' as const, states: [], pool: '', prefix: '', limit: 5, after: 0, withParams: false, withResults: false, withDeps: true };
    expect(decodeRequest(encodeRequest(request))).toEqual(request);
    const g = new Graph();
    g.create([{ name: 'a' }, { name: 'b', deps: ['a', 'x'] }], T0);
    const listed = g.list(request, T0);
    const decoded = decodeReply(encodeReply({ op: 'list', ...listed }));
    expect(decoded.op === 'list' && decoded.tasks.map((t) => t.deps)).toEqual([undefined, ['a', 'x']]);
  });
});

interface ReportJson {
  finished: boolean;
  tasks: number;
  counts: Record<string, number>;
  pools: { pool: string; runs: number; maxMs: number }[];
  slowest: { name: string; runMs: number }[];
  criticalPath: { totalMs: number; tasks: { name: string; waitMs: number; runMs: number }[] };
  failures: { total: number; groups: { reason: string; count: number; examples: { name: string; params: Record<string, string> }[] }[] };
  workers: { total: number; listed: { worker: string; done: number }[] };
  timeline: { done: number[] };
}

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('dquery report on a real run', () => {
  it('names the critical path of a 2,000-task stencil, as JSON and on an HTML page in Chromium', { timeout: 180_000 }, async () => {
    const columns = 20;
    const rows = 100;
    // Column 10's tasks are held 20 ms longer: the chain down that column decides the total time.
    const slowColumn = 10;
    const hub = await startHub();
    const clients = [0, 1, 2, 3].map((i) => new Client({ hub: hub.endpoint, worker: `w${i}` }));
    try {
      const file = join(tempDir(), 'stencil.txt');
      writeFileSync(file, stencil(columns, rows));
      expect((await dquery(hub, ['addfile', file])).code).toBe(0);
      await Promise.all(
        clients.map(async (client) => {
          for (;;) {
            const { tasks, finished } = await client.steal({ waitMs: 1000 });
            if (finished) return;
            for (const task of tasks) {
              if (Number(task.name) % columns === slowColumn) await pause(20);
              await client.complete([{ name: task.name }]);
            }
          }
        }),
      );
      const observer = clients[0] as Client;

      // The critical path found independently, from every task's state log.
      const done = new Map<string, { end: number; deps: readonly string[] }>();
      for (let n = 0; n < columns * rows; n++) {
        const { task } = await observer.lookup(String(n));
        const end = task.log.filter((c) => c.state === 'done').at(-1)?.at ?? 0;
        done.set(task.spec.name, { end, deps: task.spec.deps });
      }
      const later = (a: [string, number], b: [string, number]): boolean => a[1] > b[1] || (a[1] === b[1] && a[0] < b[0]);
      let last: [string, number] = ['', -1];
      for (const [name, t] of done) if (later([name, t.end], last)) last = [name, t.end];
      const expected: string[] = [];
      for (let name: string | undefined = last[0]; name !== undefined; ) {
        expected.unshift(name);
        let waited: [string, number] | undefined;
        for (const dep of done.get(name)?.deps ?? []) {
          const d: [string, number] = [dep, done.get(dep)?.end ?? -1];
          if (waited === undefined || later(d, waited)) waited = d;
        }
        name = waited?.[0];
      }
      // Unambiguous: it runs down the slow column nearly all the way.
      expect(expected.filter((name) => Number(name) % columns === slowColumn).length).toBeGreaterThanOrEqual(rows - 5);

      const run = await dquery(hub, ['report', '--json']);
      expect(run).toMatchObject({ code: 0, stderr: '' });
      const report = JSON.parse(run.stdout) as ReportJson;
      expect(report.criticalPath.tasks.map((t) => t.name)).toEqual(expected);
      expect(report).toMatchObject({ finished: true, tasks: 2000, counts: { done: 2000, failed: 0, waiting: 0 }, workers: { total: 4 } });
      expect(report.pools).toMatchObject([{ pool: 'default', runs: 2000 }]);
      expect(report.workers.listed.reduce((n, w) => n + w.done, 0)).toBe(2000);
      expect(report.timeline.done.reduce((a, b) => a + b, 0)).toBe(2000);
      // Each slow task ran at least the 20 ms it was held; the slowest are slow-column ones.
      expect(Number(report.slowest[0]?.name) % columns).toBe(slowColumn);
      expect(report.slowest[0]?.runMs).toBeGreaterThanOrEqual(20);

      const text = await dquery(hub, ['report']);
      expect(text.code).toBe(0);
      mkdirSync(join(ROOT, 'test-output'), { recursive: true });
      writeFileSync(join(ROOT, 'test-output/report.txt'), text.stdout);
      expect(text.stdout).toMatch(/^2000 tasks: 2000 done, 0 failed, 0 blocked, 0 cancelled$/m);
      expect(text.stdout).toContain(`critical path: ${expected.length} tasks`);
      expect(text.stdout).not.toContain('not finished');

      const html = join(tempDir(), 'report.html');
      const written = await dquery(hub, ['report', '--html', html]);
      expect(written).toMatchObject({ code: 0, stdout: `wrote ${html}\n` });
      const page = readFileSync(html, 'utf8');
      // Self-contained: nothing fetched from anywhere.
      expect(page).not.toMatch(/\b(src|href)\s*=/i);

      const browser = await puppeteer.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox', '--headless=new'] });
      try {
        const tab = await browser.newPage();
        const errors: string[] = [];
        tab.on('console', (m) => void (m.type() === 'error' && errors.push(m.text())));
        tab.on('pageerror', (e) => void errors.push(String(e)));
        tab.on('requestfailed', (r) => void errors.push(`request failed: ${r.url()}`));
        await tab.setViewport({ width: 1200, height: 900 });
        await tab.goto(pathToFileURL(html).href, { waitUntil: 'load' });
        const counts = await tab.$eval('#counts', (e) => e.textContent ?? '');
        expect(counts).toContain('2000');
        const path = await tab.$$eval('#critical-path tbody tr td:nth-child(2)', (cells) => cells.map((c) => c.textContent ?? ''));
        expect(path).toEqual(expected);
        expect(await tab.$$eval('#timeline canvas', (c) => c.length)).toBeGreaterThan(0);
        await tab.screenshot({ path: join(ROOT, 'test-output/report.png'), fullPage: false });
        expect(errors).toEqual([]);
      } finally {
        await browser.close();
      }
    } finally {
      for (const client of clients) client.close();
      await hub.stop();
    }
  });

  it('reports an unfinished run as it stands, failures with their params, names escaped in HTML', async () => {
    await withHub([], async (hub, client) => {
      await client.create([
        { name: '<b>bad</b>', params: [{ name: 'size', value: '7' }], maxAttempts: 1 },
        { name: 'after', deps: ['<b>bad</b>'] },
        { name: 'open', pool: 'later' },
      ]);
      const stolen = await client.steal({ pools: ['default'] });
      expect(stolen.tasks.map((t) => t.name)).toEqual(['<b>bad</b>']);
      await client.fail('<b>bad</b>', '</script><script>alert(1)</script>\nmore');

      const run = await dquery(hub, ['report', '--json']);
      expect(run.code).toBe(0);
      const report = JSON.parse(run.stdout) as ReportJson;
      expect(report).toMatchObject({ finished: false, counts: { ready: 1, failed: 1, blocked: 1 } });
      expect(report.failures.groups).toEqual([{ reason: '</script><script>alert(1)</script>', count: 1, examples: [{ name: '<b>bad</b>', params: { size: '7' } }] }]);

      const text = await dquery(hub, ['report']);
      expect(text.stdout).toContain('the run is not finished: 0 waiting, 1 ready, 0 running, 0 verifying');
      expect(text.stdout).toContain('failed 1x: </script><script>alert(1)</script>  (e.g. <b>bad</b> size=7)');

      const html = join(tempDir(), 'open.html');
      expect((await dquery(hub, ['report', '--html', html])).code).toBe(0);
      const page = readFileSync(html, 'utf8');
      expect(page).toContain('id="unfinished"');
      expect(page).toContain('<code>&lt;b&gt;bad&lt;/b&gt;</code> size=7');
      expect(page).not.toContain('<b>bad</b>');
      expect(page).not.toContain('<script>alert(1)');

      const both = await dquery(hub, ['report', '--json', '--html', html]);
      expect(both).toMatchObject({ code: 0, stderr: `wrote ${html}\n` });
      expect(JSON.parse(both.stdout)).toMatchObject({ tasks: 3, finished: false });
    });
  });

  it("lists each task's deps with dquery list --json --deps, and refuses --deps without --json", async () => {
    await withHub([], async (hub, client) => {
      await client.create([{ name: 'a' }, { name: 'b', deps: ['a', 'later'] }]);
      const run = await dquery(hub, ['list', '--json', '--deps']);
      expect(run.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { name: string; deps: string[] }).deps)).toEqual([[], ['a', 'later']]);
      const plain = await dquery(hub, ['list', '--json']);
      expect(plain.stdout).not.toContain('"deps"');
      const text = await dquery(hub, ['list', '--deps']);
      expect(text).toMatchObject({ code: 2, stdout: '' });
      expect(text.stderr).toMatch(/--deps goes with --json/);
    });
  });

  it('reports one pool, and refuses a pool that does not exist', async () => {
    await withHub([], async (hub, client) => {
      await client.create([{ name: 'a', pool: 'gpu' }, { name: 'b', deps: ['a'] }]);
      const [task] = (await client.steal({ pools: ['gpu'] })).tasks;
      await client.complete([{ name: task?.name ?? '' }]);
      const run = await dquery(hub, ['report', '--json', '--pool', 'gpu']);
      expect(JSON.parse(run.stdout)).toMatchObject({ pool: 'gpu', tasks: 1, finished: true, pools: [{ pool: 'gpu', runs: 1 }], criticalPath: { tasks: [{ name: 'a' }] } });
      const typo = await dquery(hub, ['report', '--pool', 'gpus']);
      expect(typo).toMatchObject({ code: 1, stdout: '' });
      expect(typo.stderr).toMatch(/UNKNOWN_POOL: .*gpus/);
    });
  });

  it('fails with the reason when the HTML file cannot be written', async () => {
    await withHub([], async (hub) => {
      const run = await dquery(hub, ['report', '--html', join(tempDir(), 'no-such-dir', 'r.html')]);
      expect(run.code).toBe(1);
      expect(run.stderr).toMatch(/ENOENT/);
    });
  });
});
