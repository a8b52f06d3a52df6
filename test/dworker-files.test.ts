/**
 * Tasks with files against the real dhub: dworkers sharing one cache directory fetch a program
 * once, give each command its params (PARAM_ and param files), upload its declared outputs; a
 * missing output fails the attempt. And runWorker's Node handlers with fetchInputs/uploadOutputs.
 */
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fetchInputs, runWorker, uploadOutputs, type FileRef, type TaskInput } from '../worker-kit/src/index.js';
import { cleanTempDirs, tempDir, withHub } from './helpers.js';
import { killDworkers, spawnDworker } from './support/dworker.js';

afterAll(() => {
  killDworkers();
  cleanTempDirs();
});

/** "files: 1 fetched (109 B), 5 cache hits, 5 uploaded (85 B sent)" of a dworker's summary line (small files: bytes in B). */
function fileCounts(stdout: string): { fetched: number; fetchedBytes: number; hits: number; uploaded: number; sentBytes: number } {
  const m = /; files: (\d+) fetched \((\d+) B\), (\d+) cache hits, (\d+) uploaded \((\d+) B sent\)$/m.exec(stdout);
  if (m === null) return { fetched: 0, fetchedBytes: 0, hits: 0, uploaded: 0, sentBytes: 0 };
  return { fetched: Number(m[1]), fetchedBytes: Number(m[2]), hits: Number(m[3]), uploaded: Number(m[4]), sentBytes: Number(m[5]) };
}
const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);

describe('dworker and task files', () => {
  it('fetches a shared program once per cache, gives commands PARAM_ variables and param files, uploads declared outputs and fails a run whose output is missing', async () => {
    const work = tempDir();
    const cacheDir = join(tempDir(), 'cache');
    const sim = join(work, 'sim');
    // The program every task runs: reads its param file, writes its declared output, prints a line.
    writeFileSync(sim, '#!/bin/sh\nsleep 0.2\nprintf "x=%s cfg=%s\\n" "$PARAM_x" "$(cat conf/run.cfg)" > result.txt\necho "ran $PARAM_x"\n');
    chmodSync(sim, 0o755);
    await withHub([], async (hub, client) => {
      const prog = await client.uploadFile(sim, { name: 'sim' });
      expect(prog.executable).toBe(true);
      const tasks: TaskInput[] = [];
      for (let i = 0; i < 8; i++) {
        tasks.push({
          name: `line/${i}`,
          payload: './sim',
          params: { x: i, cfg: `config ${i}` },
          inputs: [prog],
          paramFiles: [{ name: 'conf/run.cfg', param: 'cfg' }],
          outputs: ['result.txt'],
        });
      }
      tasks.push({ name: 'forgetful', payload: './sim; echo forgot it >&2; rm result.txt', params: { x: 'f', cfg: 'c' }, inputs: [prog], paramFiles: [{ name: 'conf/run.cfg', param: 'cfg' }], outputs: ['result.txt'], maxAttempts: 1 });
      await client.create(tasks);

      const scratch = tempDir();
      const workers = ['dwA', 'dwB'].map((id) => spawnDworker(['--hub', hub.endpoint, '--worker', id, '-c', '3', '--cache', cacheDir, '--verbose', '--keep-failed', '--scratch', scratch]));
      const exits = await Promise.all(workers.map((w) => w.exit));
      for (const e of exits) expect(e.code).toBe(3); // the pool finished with one failed task

      const counts = exits.map((e) => fileCounts(e.stdout));
      expect(sum(counts.map((c) => c.fetched))).toBe(1); // one download for 9 runs on two workers
      expect(sum(counts.map((c) => c.fetchedBytes))).toBe(prog.size);
      expect(sum(counts.map((c) => c.hits))).toBe(8);
      expect(sum(counts.map((c) => c.uploaded))).toBe(8);
      expect(sum(counts.map((c) => c.sentBytes))).toBe(8 * 'x=0 cfg=config 0\n'.length);
      expect(exits.map((e) => e.stderr.match(/fetch \S+: sim \(.*\) fetched from the hub/g)?.length ?? 0).reduce((a, b) => a + b)).toBe(1);

      for (let i = 0; i < 8; i++) {
        const { task } = await client.lookup(`line/${i}`);
        expect(task.state).toBe('done');
        expect(Buffer.from(task.result).toString()).toBe(`ran ${i}\n`);
        expect(task.outputs).toEqual([{ name: 'result.txt', sha256: expect.stringMatching(/^[0-9a-f]{64}$/) as unknown, size: `x=${i} cfg=config ${i}\n`.length, executable: false }]);
        const dest = join(work, `result-${i}.txt`);
        await client.downloadFile((task.outputs[0] as FileRef).sha256, dest);
        expect(readFileSync(dest, 'utf8')).toBe(`x=${i} cfg=config ${i}\n`);
      }
      const forgetful = (await client.lookup('forgetful')).task;
      expect(forgetful.state).toBe('failed');
      // The reason, and the kept scratch directory, show what the command printed, as for a failed exit.
      expect(forgetful.lastError).toMatch(/^declared output "result.txt" was not written\n--- stderr \(\d+ bytes\) ---\nforgot it\n--- stdout \(\d+ bytes\) ---\nran f$/);
      const kept = /kept the scratch directory of failed task forgetful .*: (\S+)$/m.exec(exits.map((e) => e.stderr + e.stdout).join('\n'))?.[1];
      expect(kept).toBeDefined();
      expect(readFileSync(join(kept as string, 'dagwork.stdout'), 'utf8')).toBe('ran f\n');
      expect(readFileSync(join(kept as string, 'dagwork.stderr'), 'utf8')).toBe('forgot it\n');
    });
  });

  it('fails the attempt naming the input when the hub does not hold it any more', async () => {
    const work = tempDir();
    const file = join(work, 'data');
    writeFileSync(file, 'soon gone');
    await withHub([], async (hub, client) => {
      const ref = await client.uploadFile(file);
      await client.create([{ name: 'needs-data', payload: 'cat data', inputs: [ref], maxAttempts: 1 }]);
      // Gone from under it: the hub's file store lost it (a disk replaced, an operator's rm).
      await rm(join(hub.db, 'files', ref.sha256.slice(0, 2), ref.sha256), { force: true });
      const run = await spawnDworker(['--hub', hub.endpoint, '--cache', join(tempDir(), 'cache')]).exit;
      expect(run.code).toBe(3);
      expect((await client.lookup('needs-data')).task.lastError).toMatch(new RegExp(`^input "data" \\(${ref.sha256}\\): `));
    });
  });
});

describe('runWorker and task files', () => {
  it('records the outputs a handler uploads and returns, and fails a task whose handler returns none of its declared outputs', async () => {
    const work = tempDir();
    const input = join(work, 'numbers');
    writeFileSync(input, '1 2 3 4\n');
    await withHub([], async (hub, client) => {
      const ref = await client.uploadFile(input);
      await client.create([
        { name: 'sum', inputs: [ref], params: { scale: 10 }, outputs: ['sum.txt'] },
        { name: 'lazy', inputs: [ref], outputs: ['sum.txt'], maxAttempts: 1 },
      ]);
      const worker = runWorker({
        hub: hub.endpoint,
        handleSignals: false,
        handler: async (task, { signal, params }) => {
          const dir = await mkdtemp(join(work, 'run-'));
          const inputs = await fetchInputs(client, task, dir, { signal });
          try {
            if (task.name === 'lazy') return 'did nothing';
            const numbers = readFileSync(join(dir, 'numbers'), 'utf8').trim().split(' ').map(Number);
            await writeFile(join(dir, 'sum.txt'), `${numbers.reduce((a, b) => a + b) * Number(params.scale)}\n`);
            return { result: 'summed', outputs: await uploadOutputs(client, dir, task.outputs, { signal }) };
          } finally {
            inputs.release();
          }
        },
      });
      const summary = await worker.done;
      expect(summary).toMatchObject({ done: 1, failed: 1 });
      const sum = (await client.lookup('sum')).task;
      expect(sum.state).toBe('done');
      const dest = join(work, 'got');
      await client.downloadFile((sum.outputs[0] as FileRef).sha256, dest);
      expect(readFileSync(dest, 'utf8')).toBe('100\n');
      expect((await client.lookup('lazy')).task.lastError).toMatch(/^declared output "sum.txt" was not written/);
    });
  });
});
