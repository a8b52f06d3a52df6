/** dquery collect (--dir, --concat, --jsonl) and dquery gc, against the real dhub; tasks done by the Client. */
import { existsSync, readdirSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Client } from '../worker-kit/src/index.js';
import { cleanTempDirs, dquery, startHub, tempDir, type RunningHub } from './helpers.js';

let hub: RunningHub;
let client: Client;
let dir: string;

beforeEach(async () => {
  hub = await startHub();
  client = new Client({ hub: hub.endpoint, worker: 'w' });
  dir = tempDir();
  writeFileSync(join(dir, 'runs.txt'), 'n\n1\n2\n3\n');
  const run = await dquery(hub, ['sweep', join(dir, 'runs.txt'), '--cmd', 'sim {n}', '--output', 'out.txt']);
  expect(run.code).toBe(0);
});

afterEach(async () => {
  client.close();
  await hub.stop();
});

afterAll(() => cleanTempDirs());

/** Takes `name` and completes it as a worker would: its output uploaded, `result` as its stdout. */
async function finish(name: string, out: string, result: string | Uint8Array): Promise<void> {
  const { tasks } = await client.steal({ n: 1 });
  expect(tasks[0]?.name).toBe(name);
  const path = join(dir, `out-${name.replace(/\//g, '_')}`);
  writeFileSync(path, out);
  const ref = await client.uploadFile(path, { name: 'out.txt' });
  const { results } = await client.complete([{ name, result, outputs: [{ name: ref.name, sha256: ref.sha256, size: ref.size, executable: ref.executable }] }]);
  expect(results[0]?.outcome).toBe('ACCEPTED');
}

describe('dquery collect', () => {
  it('--dir writes each done task\'s outputs and stdout under a safe directory name, and fetches only what is new', async () => {
    await finish('runs.txt/2', 'one', 'r1\n');
    await finish('runs.txt/3', 'two', 'r2\n');
    const out = join(dir, 'results');
    const first = await dquery(hub, ['collect', '--prefix', 'runs.txt/', '--dir', out]);
    expect(first).toMatchObject({ code: 0, stdout: '3 tasks, 2 done; fetched 4 files (12 bytes), 0 there already\n' });
    expect(readdirSync(out).sort()).toEqual(['runs.txt%2F2', 'runs.txt%2F3']);
    expect(readFileSync(join(out, 'runs.txt%2F2', 'out.txt'), 'utf8')).toBe('one');
    expect(readFileSync(join(out, 'runs.txt%2F3', 'stdout'), 'utf8')).toBe('r2\n');

    const second = await dquery(hub, ['collect', '--prefix', 'runs.txt/', '--dir', out]);
    expect(second.stdout).toBe('3 tasks, 2 done; fetched 0 files (0 bytes), 4 there already\n');

    await finish('runs.txt/4', 'three', 'r3\n');
    const third = await dquery(hub, ['collect', '--prefix', 'runs.txt/', '--dir', out]);
    expect(third.stdout).toBe('3 tasks, 3 done; fetched 2 files (8 bytes), 4 there already\n');
  });

  it('--dir fetches again a file whose size is not the output\'s (cut short), and leaves no temporary file', async () => {
    await finish('runs.txt/2', 'complete', 'r\n');
    const out = join(dir, 'results');
    await dquery(hub, ['collect', '--dir', out]);
    writeFileSync(join(out, 'runs.txt%2F2', 'out.txt'), 'comp');
    const again = await dquery(hub, ['collect', '--dir', out]);
    expect(again.stdout).toBe('3 tasks, 1 done; fetched 1 file (8 bytes), 1 there already\n');
    expect(readFileSync(join(out, 'runs.txt%2F2', 'out.txt'), 'utf8')).toBe('complete');
    expect(readdirSync(join(out, 'runs.txt%2F2')).sort()).toEqual(['out.txt', 'stdout']);
  });

  it('--concat joins the results of the done tasks in creation order', async () => {
    await finish('runs.txt/2', 'a', 'first\n');
    await finish('runs.txt/3', 'b', 'second\n');
    const all = join(dir, 'all.txt');
    const run = await dquery(hub, ['collect', '--prefix', 'runs.txt/', '--concat', all]);
    expect(run.code).toBe(0);
    expect(readFileSync(all, 'utf8')).toBe('first\nsecond\n');
  });

  it('--jsonl writes every task (barriers excepted), any state, with params, times, and a result that is not UTF-8 in base64', async () => {
    await finish('runs.txt/2', 'a', 'text');
    await finish('runs.txt/3', 'b', new Uint8Array([0xff, 0x00]));
    const path = join(dir, 'runs.jsonl');
    expect((await dquery(hub, ['collect', '--jsonl', path])).code).toBe(0);
    const rows = readFileSync(path, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(rows.map((r) => [r.name, r.state])).toEqual([
      ['runs.txt/2', 'done'],
      ['runs.txt/3', 'done'],
      ['runs.txt/4', 'ready'],
    ]);
    expect(rows[0]).toMatchObject({ params: { n: '1' }, attempts: 1, worker: 'w', result: 'text', resultEncoding: 'utf8', outputs: [{ name: 'out.txt', size: 1 }] });
    expect(rows[0]?.startedAt).toEqual(expect.any(Number));
    expect(rows[1]).toMatchObject({ result: '/wA=', resultEncoding: 'base64' });
    expect(rows[2]).toMatchObject({ params: { n: '3' }, startedAt: null, result: null, resultEncoding: null, outputs: [] });
  });

  it('skips barriers, done or not: --prefix without the slash collects the sweep, not an empty result for its barrier', async () => {
    const early = join(dir, 'early.jsonl');
    expect((await dquery(hub, ['collect', '--prefix', 'runs.txt', '--jsonl', early])).code).toBe(0);
    expect(readFileSync(early, 'utf8').trimEnd().split('\n').map((l) => (JSON.parse(l) as { name: string }).name)).toEqual(['runs.txt/2', 'runs.txt/3', 'runs.txt/4']);
    await finish('runs.txt/2', 'a', 'r1\n');
    await finish('runs.txt/3', 'b', 'r2\n');
    await finish('runs.txt/4', 'c', 'r3\n');
    expect((await client.lookup('runs.txt')).task.state).toBe('done');
    const out = join(dir, 'results');
    const all = join(dir, 'all.txt');
    const jsonl = join(dir, 'runs.jsonl');
    const run = await dquery(hub, ['collect', '--prefix', 'runs.txt', '--dir', out, '--concat', all, '--jsonl', jsonl]);
    expect(run).toMatchObject({ code: 0, stdout: '3 tasks, 3 done; fetched 6 files (12 bytes), 0 there already\n' });
    expect(readdirSync(out).sort()).toEqual(['runs.txt%2F2', 'runs.txt%2F3', 'runs.txt%2F4']);
    expect(readFileSync(all, 'utf8')).toBe('r1\nr2\nr3\n');
    expect(readFileSync(jsonl, 'utf8').trimEnd().split('\n').map((l) => (JSON.parse(l) as { name: string }).name)).toEqual(['runs.txt/2', 'runs.txt/3', 'runs.txt/4']);
  });

  it('says so in --help', async () => {
    const help = (await dquery(hub, ['collect', '--help'])).stdout;
    expect(help).toContain("A sweep's barrier tasks (SWEEP, SWEEP/barrier-L-K) run nothing and leave nothing: they are\nskipped by --dir, --concat and --jsonl alike, and not counted.");
  });

  it('asks for a target', async () => {
    expect(await dquery(hub, ['collect'])).toMatchObject({ code: 2, stderr: 'dquery: give --dir, --concat or --jsonl (or several)\n' });
  });
});

describe('dquery gc', () => {
  it('--help says which files are kept as the hub keeps them: uploaded, or asked about, in the last hour', async () => {
    const help = (await dquery(hub, ['gc', '--help'])).stdout;
    expect(help).toContain('Files uploaded, or asked about (stat, put, get), in the last hour are kept even when no task\nnames them yet');
    expect(help).not.toContain('held or uploaded');
  });

  it('keeps files tasks name and removes the others once they are over an hour old', async () => {
    await finish('runs.txt/2', 'kept output', 'r');
    const orphan = join(dir, 'orphan');
    writeFileSync(orphan, 'no task names me');
    const { sha256 } = await client.uploadFile(orphan, {});
    expect((await dquery(hub, ['gc', '--dry-run'])).stdout).toBe('would remove 0 files (0 bytes); would keep 2 files (27 bytes)\n');

    // Files count as touched when the hub last saw them: a restarted hub reads it from the file's time.
    client.close();
    await hub.stop();
    const filesDir = join(hub.db, 'files');
    const twoHoursAgo = new Date(Date.now() - 2 * 3600_000);
    for (const sub of readdirSync(filesDir)) {
      const inner = join(filesDir, sub);
      if (!statSync(inner).isDirectory()) continue;
      for (const f of readdirSync(inner)) utimesSync(join(inner, f), twoHoursAgo, twoHoursAgo);
    }
    hub = await startHub({ db: hub.db });
    client = new Client({ hub: hub.endpoint, worker: 'w' });

    expect((await dquery(hub, ['gc', '--dry-run'])).stdout).toBe('would remove 1 file (16 bytes); would keep 1 file (11 bytes)\n');
    // (A file_stat would count as touching it: gc would keep it another hour.)
    const gc = await dquery(hub, ['gc', '--json']);
    expect(JSON.parse(gc.stdout)).toEqual({ removed: 1, removedBytes: 16, kept: 1, keptBytes: 11, dryRun: false });
    expect((await client.fileStat([sha256]))[0]?.held).toBe(false);
    expect(existsSync(join(dir, 'orphan'))).toBe(true);
  });
});
