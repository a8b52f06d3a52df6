/**
 * `dquery graph` against the real dhub: DOT that Graphviz renders, Mermaid with safe ids, JSON that
 * is the hub's view as is, the refusal of a view over the cap with its hint, --around and
 * --collapse on the wire, and names that need escaping.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DagworkError } from '../proto/src/errors.js';
import type { Collapse, GraphView } from '../proto/src/types.js';
import { renderGraph } from '../query/src/graph-render.js';
import { Client } from '../worker-kit/src/index.js';
import { cleanTempDirs, dquery, runCommand, startHub, stencil, tempDir, type RunningHub } from './helpers.js';

const DOT = '/usr/bin/dot';
const hasDot = existsSync(DOT);

let hub: RunningHub;
let client: Client;

/** The 200-task stencil (names 0..199, 20 wide, 10 deep), then a few prefixed tasks in pool gpu. */
beforeAll(async () => {
  hub = await startHub();
  client = new Client({ hub: hub.endpoint, worker: 'test' });
  const added = await dquery(hub, ['addfile', '-'], { input: stencil(20, 10) });
  expect(added, added.stderr).toMatchObject({ code: 0, stdout: 'added 200 tasks\n' });
});

afterAll(async () => {
  client?.close();
  await hub?.stop();
  cleanTempDirs();
});

const svgOf = async (dot: string): Promise<string> => {
  const run = await runCommand(DOT, ['-Tsvg'], { input: dot });
  expect(run.code, run.stderr).toBe(0);
  return run.stdout;
};
const xml = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const names = Array.from({ length: 200 }, (_, i) => String(i));

describe('dquery graph', () => {
  it.skipIf(!hasDot)('writes DOT that dot -Tsvg renders, holding every task', async () => {
    const run = await dquery(hub, ['graph', '--format', 'dot']);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^digraph dagwork \{\n/);
    const svg = await svgOf(run.stdout);
    for (const name of names) expect(svg).toContain(`>${name}</text>`);
    // Row 0 is ready (light blue), the rest waiting (grey).
    expect(run.stdout).toContain('"0" [label="0", fillcolor="#90caf9", tooltip="ready"];');
    expect(run.stdout).toContain('"199" [label="199", fillcolor="#e0e0e0", tooltip="waiting"];');
    expect(run.stdout).toContain('"0" -> "20";');
  });

  it('writes DOT by default, and to --output when asked', async () => {
    const plain = await dquery(hub, ['graph']);
    expect(plain.code, plain.stderr).toBe(0);
    const out = join(tempDir(), 'g.dot');
    const toFile = await dquery(hub, ['graph', '--output', out]);
    expect(toFile).toMatchObject({ code: 0, stdout: '' });
    expect(readFileSync(out, 'utf8')).toBe(plain.stdout);
  });

  it('writes JSON that is the hub\'s view as is: parsed, the same nodes and edges as Client.graphView', async () => {
    for (const collapse of ['none', 'pool', 'prefix'] as Collapse[]) {
      const run = await dquery(hub, ['graph', '--format', 'json', '--collapse', collapse]);
      expect(run.code, run.stderr).toBe(0);
      const parsed = JSON.parse(run.stdout) as GraphView;
      expect(parsed).toEqual(await client.graphView({ collapse }));
      expect(Object.keys(parsed)).toEqual(['nodes', 'edges', 'tasks']);
    }
    const alias = await dquery(hub, ['graph', '--json']);
    expect(alias.stdout).toBe((await dquery(hub, ['graph', '--format', 'json'])).stdout);
    const both = await dquery(hub, ['graph', '--json', '--format', 'mermaid']);
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('--json and --format mermaid: give one');
    const whole = JSON.parse((await dquery(hub, ['graph', '--format', 'json'])).stdout) as GraphView;
    expect(whole.nodes.map((n) => n.id)).toEqual(names);
    expect(whole.tasks).toBe(200);
    // 20 wide: each task of rows 1..9 on 3 of the row before, 2 at the sides.
    expect(whole.edges).toHaveLength(9 * (20 * 3 - 2));
  });

  it('writes Mermaid with ids n1, n2, ... and a class per state', async () => {
    const run = await dquery(hub, ['graph', '--format', 'mermaid']);
    expect(run.code, run.stderr).toBe(0);
    const lines = run.stdout.trimEnd().split('\n');
    expect(lines[0]).toBe('flowchart TD');
    const nodes = lines.filter((l) => /^ {2}n\d+\[/.test(l));
    expect(nodes).toHaveLength(200);
    expect(nodes[0]).toBe('  n1["0"]:::ready');
    expect(nodes[199]).toBe('  n200["199"]:::waiting');
    const edges = lines.filter((l) => l.includes('-->'));
    expect(edges).toHaveLength(9 * 58);
    expect(edges.every((l) => /^ {2}n\d+ --> n\d+$/.test(l))).toBe(true);
    expect(lines).toContain('  n1 --> n21');
  });

  it('refuses a view over --max-nodes with the hub\'s message and a hint, exit 1, writing nothing', async () => {
    const out = join(tempDir(), 'refused.dot');
    const run = await dquery(hub, ['graph', '--max-nodes', '150', '--output', out]);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain('TOO_LARGE: the view would have 200 nodes; the limit is 150 (max_nodes)');
    expect(run.stderr).toContain('--collapse prefix');
    expect(run.stderr).toContain('--collapse pool');
    expect(run.stderr).toContain('--around NAME');
    expect(existsSync(out)).toBe(false);
    expect((await dquery(hub, ['graph', '--max-nodes', '200'])).code).toBe(0);
  });

  it('--force asks for up to 100,000 nodes; with --max-nodes it is bad usage', async () => {
    expect(await client.graphView({ maxNodes: 100 }).catch((e: unknown) => (e as DagworkError).code)).toBe('TOO_LARGE');
    const forced = await dquery(hub, ['graph', '--force', '--format', 'json']);
    expect(forced.code, forced.stderr).toBe(0);
    expect((JSON.parse(forced.stdout) as GraphView).nodes).toHaveLength(200);
    const both = await dquery(hub, ['graph', '--force', '--max-nodes', '10']);
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('--force and --max-nodes');
    expect(await client.graphView({ maxNodes: 100_001 }).catch((e: unknown) => (e as DagworkError).code)).toBe('INVALID_ARGUMENT');
  });

  it('sends --around and --depth: a task with its ancestors and descendants', async () => {
    // 105 is row 5, column 5: on 84, 85, 86; 124, 125, 126 on it.
    const run = await dquery(hub, ['graph', '--around', '105', '--depth', '1', '--format', 'json']);
    expect(run.code, run.stderr).toBe(0);
    const view = JSON.parse(run.stdout) as GraphView;
    expect(view.nodes.map((n) => n.id)).toEqual(['84', '85', '86', '105', '124', '125', '126']);
    expect(view.edges.map((e) => `${e.from}>${e.to}`)).toEqual(['84>105', '85>105', '86>105', '105>124', '105>125', '105>126']);
    const deeper = JSON.parse((await dquery(hub, ['graph', '--around', '105', '--format', 'json'])).stdout) as GraphView;
    expect(deeper.nodes).toHaveLength(1 + 2 * (3 + 5));
  });

  it('says what is wrong with --around and --depth', async () => {
    const unknown = await dquery(hub, ['graph', '--around', 'nope']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('UNKNOWN_TASK: no task named "nope"');
    const alone = await dquery(hub, ['graph', '--depth', '3']);
    expect(alone.code).toBe(2);
    expect(alone.stderr).toContain('--depth goes with --around');
    const deep = await dquery(hub, ['graph', '--around', '5', '--depth', '101']);
    expect(deep.code).toBe(2);
    expect(deep.stderr).toContain('expected an integer from 1 to 100');
    const collapse = await dquery(hub, ['graph', '--collapse', 'name']);
    expect(collapse.code).toBe(2);
  });

  it('sends --collapse and --pool: groups labelled with their counts and coloured by their dominant state', async () => {
    await client.create([
      ...Array.from({ length: 5 }, (_, i) => ({ name: `sweep/a/${i}`, pool: 'gpu', deps: ['0'] })),
      { name: 'sweep/b/0', pool: 'gpu', deps: ['sweep/a/0', 'sweep/a/1'] },
      { name: 'lone', pool: 'gpu' },
    ]);
    try {
      const json = JSON.parse((await dquery(hub, ['graph', '--pool', 'gpu', '--collapse', 'prefix', '--format', 'json'])).stdout) as GraphView;
      expect(json.nodes.map((n) => [n.id, n.tasks, n.counts.waiting, n.counts.ready])).toEqual([
        ['sweep/a', 5, 5, 0],
        ['sweep/b', 1, 1, 0],
        ['lone', 1, 0, 1],
      ]);
      expect(json.edges).toEqual([{ from: 'sweep/a', to: 'sweep/b', count: 2 }]);
      const dot = await dquery(hub, ['graph', '--pool', 'gpu', '--collapse', 'prefix']);
      expect(dot.stdout).toContain('"sweep/a" [label="sweep/a (5: 5 waiting)", fillcolor="#e0e0e0", tooltip="mostly waiting", peripheries=2];');
      expect(dot.stdout).toContain('"sweep/a" -> "sweep/b" [label="2"];');
      if (hasDot) expect(await svgOf(dot.stdout)).toContain('sweep/a (5: 5 waiting)');
      const pools = JSON.parse((await dquery(hub, ['graph', '--collapse', 'pool', '--format', 'json'])).stdout) as GraphView;
      expect(pools.nodes.map((n) => [n.id, n.tasks, n.pool])).toEqual([
        ['default', 200, 'default'],
        ['gpu', 7, 'gpu'],
      ]);
      expect(pools.edges).toEqual([{ from: 'default', to: 'gpu', count: 5 }]);
    } finally {
      await client.deleteTasks(['sweep/b/0', ...Array.from({ length: 5 }, (_, i) => `sweep/a/${i}`), 'lone']);
    }
  });

  it('renders names with quotes, backslashes, markup and unicode', async () => {
    const odd = ['say "hi"', 'back\\slash\\', 'a<b>&c #1 `x`', 'ünï/cødé ✓', 'end"'];
    await client.create(odd.map((name, i) => ({ name, pool: 'odd', deps: i === 0 ? [] : [odd[i - 1] as string] })));
    try {
      const dot = await dquery(hub, ['graph', '--pool', 'odd']);
      expect(dot.code, dot.stderr).toBe(0);
      expect(dot.stdout).toContain('"say \\"hi\\"" -> "back\\\\slash\\\\";');
      if (hasDot) {
        const svg = await svgOf(dot.stdout);
        for (const name of odd) expect(svg).toContain(`>${xml(name)}</text>`);
      }
      const mermaid = await dquery(hub, ['graph', '--pool', 'odd', '--format', 'mermaid']);
      expect(mermaid.stdout).toContain('  n1["say #34;hi#34;"]:::ready');
      expect(mermaid.stdout).toContain('  n3["a#60;b#62;#38;c #35;1 #96;x#96;"]:::waiting');
      expect(mermaid.stdout).toContain('  n2["back\\slash\\"]:::waiting');
      expect(mermaid.stdout).toContain('  n4["ünï/cødé ✓"]:::waiting');
      // No label holds a quote of its own: each node line has exactly the two that enclose it.
      for (const line of mermaid.stdout.split('\n').filter((l) => /^ {2}n\d+\[/.test(l))) expect(line.split('"')).toHaveLength(3);
      const json = JSON.parse((await dquery(hub, ['graph', '--pool', 'odd', '--format', 'json'])).stdout) as GraphView;
      expect(json.nodes.map((n) => n.id)).toEqual(odd);
    } finally {
      await client.deleteTasks(odd);
    }
  });

  it.skipIf(!hasDot)('renders a name with a line break (a pool or a future name) as two lines', async () => {
    const view: GraphView = {
      nodes: ['two\nlines', 'plain'].map((id) => ({ id, counts: { waiting: 1, ready: 0, running: 0, done: 0, failed: 0, blocked: 0, cancelled: 0, verifying: 0 }, state: 'waiting', pool: 'p', tasks: 1 })),
      edges: [{ from: 'two\nlines', to: 'plain', count: 1 }],
      tasks: 2,
    };
    const svg = await svgOf(renderGraph(view, 'dot'));
    expect(svg).toContain('>two</text>');
    expect(svg).toContain('>lines</text>');
    expect(renderGraph(view, 'mermaid')).toContain('  n1["two<br/>lines"]:::waiting');
  });
});
