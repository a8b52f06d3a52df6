/**
 * README's quick start and shell sections, run as written under sh: their code blocks are read
 * from README.md here, so the text and what is tested cannot drift apart. Against a real dhub on
 * a free port, given to the blocks as DAGWORK_HUB.
 */
import { existsSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '../worker-kit/src/index.js';
import { cleanTempDirs, DQUERY, ROOT, runCommand, runNode, startHub, tempDir, type Run, type RunningHub } from './helpers.js';

/** The ```sh blocks of the README section headed `heading`, in order. */
function shBlocks(heading: string): string[] {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const start = readme.indexOf(`\n${heading}\n`);
  if (start === -1) throw new Error(`README.md has no section "${heading}"`);
  const end = readme.indexOf('\n## ', start + heading.length + 2);
  const section = readme.slice(start, end === -1 ? undefined : end);
  return [...section.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((m) => m[1] as string);
}

/** Runs `script` with sh in the clone, as a user would there, bounded. */
function sh(script: string, env: NodeJS.ProcessEnv, timeoutMs = 60_000): Promise<Run> {
  return runCommand('sh', ['-c', script], { cwd: ROOT, env, timeoutMs });
}

afterAll(cleanTempDirs);

describe('README: Quick start', () => {
  const blocks = shBlocks('## Quick start');

  const [first, second] = (blocks[0] as string).split('\n') as [string, string];

  it('is two commands: install and the demo, then the tests', () => {
    expect(first).toMatch(/^npm ci && npm run demo +#/);
    expect(second).toMatch(/^npm test +#/);
  });

  it('runs the demo as written: 41 tasks, all done, in a store of its own', async () => {
    // All but `npm ci &&`: it would reinstall the tree these tests run from.
    const demo = first.replace(/^npm ci && /, '');
    expect(demo).toMatch(/^npm run demo /);
    const store = join(ROOT, 'dagwork-demo-db');
    const existed = existsSync(store);
    const usersStore = existsSync(join(ROOT, 'dagwork-db'));
    try {
      const run = await sh(demo, {}, 120_000);
      expect(run.code, run.stderr).toBe(0);
      expect(run.stdout).toMatch(/store in \.\/dagwork-demo-db/);
      expect(run.stdout).toMatch(/^41 tasks, 41 done \(100\.0%\)/m);
      expect(existsSync(join(ROOT, 'dagwork-db'))).toBe(usersStore); // the demo leaves a user's store alone
    } finally {
      if (!existed) rmSync(store, { recursive: true, force: true });
    }
  }, 150_000);
});

describe('README: Use it from the shell', () => {
  const [start, add, loop, watch] = shBlocks('## Use it from the shell') as [string, string, string, string];
  let hub: RunningHub;
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    hub = await startHub();
    // `dquery` on the PATH, as `npm link` would put it.
    const bin = tempDir();
    symlinkSync(DQUERY, join(bin, 'dquery'));
    env = { DAGWORK_HUB: hub.endpoint, PATH: `${bin}:${process.env.PATH ?? ''}` };
  });
  afterAll(async () => {
    await hub.stop();
  });

  async function record(name: string): Promise<{ state: string; result: string; lastError: string }> {
    const client = new Client({ hub: hub.endpoint });
    try {
      const { task } = await client.lookup(name);
      return { state: task.state, result: Buffer.from(task.result).toString(), lastError: task.lastError };
    } finally {
      client.close();
    }
  }

  it('starts the hub with npx dhub (the test starts its own on a free port instead)', () => {
    expect(start).toMatch(/^npx dhub & +#[^\n]*\n$/);
  });

  it('adds the example tasks as written', async () => {
    const run = await sh(add, env);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^added 3 tasks$/m);
    expect(run.stdout).toMatch(/^3 tasks, 0 done/m);
  });

  it('runs them with the shell loop as written, under sh: payloads intact, stderr as the reason of a failure', async () => {
    const client = new Client({ hub: hub.endpoint });
    try {
      await client.create([
        { name: 'it fails', payload: Buffer.from('echo partial; echo oops >&2; exit 3'), maxAttempts: 1 },
        { name: 'no command' },
      ]);
    } finally {
      client.close();
    }
    const run = await sh(loop, env);
    expect(run.code, run.stderr).toBe(0);
    expect(await record('two-lines')).toMatchObject({ state: 'done', result: 'one\ntwo' });
    expect(await record('hello')).toMatchObject({ state: 'done', result: 'hello' });
    expect(await record('it fails')).toMatchObject({ state: 'failed', lastError: 'exit 3: oops' });
    expect(await record('no command')).toMatchObject({ state: 'done' });
  });

  it('follows the run with status --watch as written: finished, exit 3 since a task failed', async () => {
    const run = await sh(watch, env);
    expect(run.code).toBe(3);
    expect(run.stdout).toMatch(/^finished, not all done: 4 done, 1 failed \(of 5 tasks\)$/m);
  });

  it('shows the same loop in dquery --help', async () => {
    const help = (await runNode([DQUERY, '--help'])).stdout;
    expect(help).toContain(loop.trimEnd().replace(/^/gm, '  '));
  });
});

describe('README: Parameter sweeps and files', () => {
  const [setup, workers, collect] = shBlocks('## Parameter sweeps and files') as [string, string, string];
  let hub: RunningHub;
  let env: NodeJS.ProcessEnv;
  let home: string;

  beforeAll(async () => {
    hub = await startHub();
    const bin = tempDir();
    symlinkSync(DQUERY, join(bin, 'dquery'));
    symlinkSync(join(ROOT, 'dist/worker-kit/src/dworker.js'), join(bin, 'dworker'));
    env = { DAGWORK_HUB: hub.endpoint, PATH: `${bin}:${process.env.PATH ?? ''}` };
    home = tempDir();
  });
  afterAll(async () => {
    await hub.stop();
  });

  it('walks through a sweep of 100 parameter sets with a shipped program, param files and outputs, two dworkers on one cache, then collects', async () => {
    const demo = join(home, 'sweep-demo');
    const made = await runCommand('sh', ['-c', setup], { cwd: home, env });
    expect(made.code, made.stderr).toBe(0);
    expect(made.stdout).toMatch(/^sweep points\.txt: added 101 tasks, the barrier points\.txt among them/m);

    const ran = await runCommand('sh', ['-c', workers], { cwd: demo, env, timeoutMs: 120_000 });
    expect(ran.code, ran.stderr).toBe(0);
    const summaries = `${ran.stdout}\n${ran.stderr}`.match(/^dworker .*$/gm) ?? [];
    expect(summaries).toHaveLength(2);
    // The program is fetched once for the shared cache; every other use of it is a hit.
    const count = (re: RegExp): number => summaries.reduce((sum, line) => sum + Number(re.exec(line)?.[1] ?? 0), 0);
    expect(count(/files: (\d+) fetched/)).toBe(1);
    expect(count(/(\d+) cache hits/)).toBe(100);
    expect(count(/(\d+) uploaded/)).toBe(100);

    const client = new Client({ hub: hub.endpoint });
    try {
      expect((await client.lookup('summary')).task).toMatchObject({ state: 'done', result: Buffer.from('all 100 points done\n') });
      expect((await client.lookup('points.txt')).task.state).toBe('done');
      expect((await client.lookup('bad-point')).task).toMatchObject({ state: 'failed', lastError: expect.stringContaining('alpha must not be negative: -1') });
    } finally {
      client.close();
    }

    const seen = await runCommand('sh', ['-c', collect], { cwd: demo, env });
    expect(seen.code, seen.stderr).toBe(0);
    expect(seen.stdout).toMatch(/^bad-point +failed .*alpha must not be negative: -1/m);
    expect(seen.stdout).toMatch(/^ *100$/m);
    const lines = readFileSync(join(demo, 'results.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toHaveLength(100);
    for (const [i, line] of lines.entries()) {
      const alpha = ((i + 1) / 100).toFixed(2);
      const seed = (i + 1) * 31;
      expect(line).toMatchObject({ name: `points.txt/${i + 2}`, state: 'done', params: { alpha, seed: String(seed) }, result: `point ${alpha} done\n` });
      const dir = join(demo, 'results', `points.txt%2F${i + 2}`);
      expect(readFileSync(join(dir, 'result.txt'), 'utf8')).toBe(`alpha=${alpha} seed=${seed} score=${(seed * 7919) % 1000}\n`);
      expect(readFileSync(join(dir, 'stdout'), 'utf8')).toBe(`point ${alpha} done\n`);
    }
  }, 180_000);
});
