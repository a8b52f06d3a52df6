/**
 * Failure policy (after_ended) and changing the graph after the fact (rerun, replace), against the
 * real dhub through dquery and the Client.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { StateChange } from '../proto/src/types.js';
import { Client } from '../worker-kit/src/index.js';
import { stencilSpecs } from './support/workloads.js';
import { cleanTempDirs, dquery, startHub, tempDir, type RunningHub } from './helpers.js';

let hub: RunningHub;
let client: Client;

beforeEach(async () => {
  hub = await startHub();
  client = new Client({ hub: hub.endpoint, worker: 'w' });
});
afterEach(async () => {
  client.close();
  await hub.stop();
});
afterAll(() => cleanTempDirs());

/** Steals one task at a time and completes it (or fails it for good when `fail` names it), until nothing is left; the order run. */
async function drain(fail: ReadonlySet<string> = new Set()): Promise<string[]> {
  const ran: string[] = [];
  for (;;) {
    const { tasks } = await client.steal({ n: 1 });
    const task = tasks[0];
    if (task === undefined) return ran;
    ran.push(task.name);
    if (fail.has(task.name)) await client.fail(task.name, 'boom', { permanent: true });
    else await client.complete([{ name: task.name, result: Buffer.from(`r${task.name}`) }]);
  }
}

const runs = (log: readonly StateChange[]): StateChange[] => log.filter((c) => c.state === 'running');

function json<T>(stdout: string): T {
  return JSON.parse(stdout) as T;
}

describe('after: ended', () => {
  it('runs a task once its dependencies ended, one of them failed, and lookup names the failed one', async () => {
    const dir = tempDir();
    const file = join(dir, 'tasks.jsonl');
    writeFileSync(
      file,
      [
        '{"name":"ok","cmd":"true"}',
        '{"name":"bad","cmd":"false"}',
        '{"name":"report","deps":["ok","bad"],"cmd":"./report","after":"ended"}',
        '{"name":"plain","deps":["ok","bad"],"cmd":"./report"}',
      ].join('\n'),
    );
    const add = await dquery(hub, ['addfile', file]);
    expect(add.code, add.stderr).toBe(0);
    expect(await drain(new Set(['bad']))).toEqual(['ok', 'bad', 'report']);
    const lookup = await dquery(hub, ['lookup', 'report', '--json']);
    expect(json<{ state: string; failedDeps: string[]; spec: { afterEnded: boolean } }>(lookup.stdout)).toMatchObject({ state: 'done', failedDeps: ['bad'], spec: { afterEnded: true } });
    expect((await client.lookup('plain')).task.state).toBe('blocked');
    const list = await dquery(hub, ['list', '--prefix', 'report', '--json']);
    expect(json<{ failedDeps: number }>(list.stdout.split('\n')[0] as string).failedDeps).toBe(1);
  });

  it('is what dquery create --after-ended makes', async () => {
    await client.create([{ name: 'x', maxAttempts: 1 }]);
    const made = await dquery(hub, ['create', 'sum', 'x', '--cmd', 'true', '--after-ended']);
    expect(made.code, made.stderr).toBe(0);
    expect(await drain(new Set(['x']))).toEqual(['x', 'sum']);
  });
});

describe('rerun', () => {
  it('with --descendants reruns exactly the downstream cone of a finished 10x10 stencil, in dependency order', async () => {
    const specs = stencilSpecs(10, 10);
    await client.create(specs);
    expect((await drain()).length).toBe(100);
    const deps = new Map(specs.map((s) => [s.name, s.deps ?? []]));
    // The cone below task 34 (row 3, column 4): row r holds columns 4 - (r - 3) .. 4 + (r - 3).
    const cone = new Set(specs.filter((s) => {
      const n = Number(s.name);
      const r = Math.floor(n / 10);
      return r >= 3 && Math.abs((n % 10) - 4) <= r - 3;
    }).map((s) => s.name));
    const r = await dquery(hub, ['rerun', '34', '--descendants', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(json<{ rerun: number }>(r.stdout).rerun).toBe(cone.size);
    const again = await drain();
    expect(new Set(again)).toEqual(cone);
    for (const s of specs) {
      const { task } = await client.lookup(s.name);
      expect(task.state).toBe('done');
      expect(runs(task.log).length, s.name).toBe(cone.has(s.name) ? 2 : 1);
      if (!cone.has(s.name)) continue;
      expect(task.log.some((c) => /^rerun/.test(c.note)), s.name).toBe(true);
      // Its second run started after each of its dependencies in the cone was done again.
      const started = runs(task.log).at(-1)?.at ?? 0;
      for (const dep of deps.get(s.name) ?? []) {
        if (!cone.has(dep)) continue;
        const { task: d } = await client.lookup(dep);
        const doneAgain = d.log.filter((c) => c.state === 'done').at(-1)?.at ?? Infinity;
        expect(started, `${s.name} after ${dep}`).toBeGreaterThanOrEqual(doneAgain);
        expect(again.indexOf(s.name), `${s.name} after ${dep}`).toBeGreaterThan(again.indexOf(dep));
      }
    }
  });

  it('keeps the old result size in the log, answers per name, and exits 1 for a name it refuses', async () => {
    await client.create([{ name: 'a' }, { name: 'b', deps: ['a'] }]);
    await drain();
    const r = await dquery(hub, ['rerun', 'a', 'nope', '--json']);
    expect(r.code).toBe(1);
    expect(json<{ results: { name: string; outcome: string }[] }>(r.stdout).results.map((x) => x.outcome)).toEqual(['ACCEPTED', 'NOT_FOUND']);
    expect(r.stderr).toMatch(/rerun nope: NOT_FOUND/);
    const { task } = await client.lookup('a');
    expect(task).toMatchObject({ state: 'ready', attempts: 0 });
    expect(task.result.length).toBe(0);
    expect(task.log.at(-2)?.note).toBe('rerun; previous result 2 bytes');
    expect((await client.lookup('b')).task.state).toBe('done');
  });

  it('answers NOT_DONE for a task that has not run, and changes nothing', async () => {
    await client.create([{ name: 'a' }]);
    const r = await client.rerun(['a']);
    expect(r).toEqual({ rerun: 0, results: [{ name: 'a', outcome: 'NOT_DONE', message: 'task is ready, not done' }] });
  });
});

describe('replace', () => {
  it('of a done task with --rerun runs it, with the new command, and its descendants again', async () => {
    await client.create([{ name: 'a', payload: Buffer.from('old') }, { name: 'b', deps: ['a'] }, { name: 'c' }]);
    await drain();
    const r = await dquery(hub, ['replace', 'a', '--cmd', 'new', '--rerun']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('replaced a\n');
    const { tasks } = await client.steal({ n: 10 });
    expect(tasks.map((t) => [t.name, Buffer.from(t.payload).toString()])).toEqual([['a', 'new']]);
    await client.complete([{ name: 'a' }]);
    expect(await drain()).toEqual(['b']);
    expect(runs((await client.lookup('c')).task.log).length).toBe(1);
  });

  it('of a done task without --rerun is refused (ALREADY_DONE, exit 1), and nothing changes', async () => {
    await client.create([{ name: 'a', payload: Buffer.from('old') }]);
    await drain();
    const r = await dquery(hub, ['replace', 'a', '--cmd', 'new']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/replace a: ALREADY_DONE/);
    const { task } = await client.lookup('a');
    expect(task.state).toBe('done');
    expect(Buffer.from(task.spec.payload).toString()).toBe('old');
  });

  it('that would close a cycle is CYCLE, and nothing changes', async () => {
    await client.create([{ name: 'a' }, { name: 'b', deps: ['a'] }]);
    const r = await dquery(hub, ['replace', 'a', 'b']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/CYCLE/);
    expect((await client.lookup('a')).task).toMatchObject({ state: 'ready', spec: { deps: [] } });
  });

  it('of an unknown task is NOT_FOUND', async () => {
    const r = await client.replace([{ name: 'ghost' }]);
    expect(r.results).toEqual([{ name: 'ghost', outcome: 'NOT_FOUND', message: 'no task named "ghost"' }]);
    await expect(client.lookup('ghost')).rejects.toMatchObject({ code: 'UNKNOWN_TASK' });
  });

  it('addfile --replace replaces changed tasks, leaves identical ones alone and creates new ones', async () => {
    const dir = tempDir();
    const file = join(dir, 'tasks.jsonl');
    writeFileSync(file, '{"name":"a","cmd":"old"}\n{"name":"b","deps":["a"],"cmd":"b"}\n');
    expect((await dquery(hub, ['addfile', file])).code).toBe(0);
    writeFileSync(file, '{"name":"a","cmd":"fixed"}\n{"name":"b","deps":["a"],"cmd":"b"}\n{"name":"c","deps":["b"]}\n');
    const plain = await dquery(hub, ['addfile', file]);
    expect(plain.stderr).toMatch(/CONFLICT/);
    const r = await dquery(hub, ['addfile', '--replace', file, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(json<object>(r.stdout)).toMatchObject({ created: 1, unchanged: 1, replaced: 1 });
    expect(Buffer.from((await client.lookup('a')).task.spec.payload).toString()).toBe('fixed');
    expect(await drain()).toEqual(['a', 'b', 'c']);
  });
});
