/**
 * Chaos, bounded in time: a stencil DAG run by several worker processes while the hub is killed
 * with SIGKILL and restarted (once after longer than a lease), and workers are killed too. At the end every task is done, recorded
 * once, in dependency order, and every completion a worker saw acknowledged is in the store.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort } from './support/proc.js';
import { Client } from '../worker-kit/src/index.js';
import { cleanTempDirs, ROOT, startHub, stencil, tempDir, dquery, type RunningHub } from './helpers.js';
import { writeFileSync } from 'node:fs';
import { newStore, runProblems, stopPgCluster, storedTasks, storeKinds } from './support/stores.js';

afterAll(async () => {
  await stopPgCluster();
  cleanTempDirs();
});

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

interface WorkerProc {
  name: string;
  proc: ChildProcess;
  out: string;
  exited: Promise<void>;
}

function startWorker(endpoint: string, name: string): WorkerProc {
  const proc = spawn(process.execPath, [join(ROOT, 'test/chaos-worker.mjs'), endpoint, name], { stdio: ['ignore', 'pipe', 'ignore'] });
  const w: WorkerProc = { name, proc, out: '', exited: new Promise((resolve) => proc.once('exit', () => resolve())) };
  proc.stdout?.on('data', (c: Buffer) => (w.out += c.toString()));
  return w;
}

describe.each(storeKinds)('chaos (%s store)', (kind) => {
  it('loses nothing while the hub and workers are killed with SIGKILL at random moments', async () => {
    const port = await freePort();
    const endpoint = `tcp://127.0.0.1:${port}`;
    const db = join(tempDir(), 'db');
    const location = kind === 'leveldb' ? db : await newStore(kind);
    const args = ['--retry-backoff-ms', '50', ...(kind === 'leveldb' ? [] : ['--store', location])];
    const columns = 30;
    const rows = 100;
    let hub: RunningHub = await startHub({ db, bind: endpoint, args });
    const file = join(tempDir(), 'stencil.txt');
    // Short leases, so that the tasks of killed workers come back quickly.
    writeFileSync(file, stencil(columns, rows).trim().split('\n').map((line) => {
      const [name, ...deps] = line.split(',');
      return JSON.stringify({ name, deps, lease: '1s', attempts: 1000 });
    }).join('\n'));
    expect((await dquery(hub, ['addfile', file])).code).toBe(0);

    const workers: WorkerProc[] = [1, 2, 3].map((i) => startWorker(endpoint, `w${i}`));
    let next = 4;
    const kills: number[] = [];
    const deadline = Date.now() + 120_000;
    const status = new Client({ hub: endpoint, worker: 'observer', timeoutMs: 500, retries: 0 });
    const done = async (): Promise<number> => (await status.status().catch(() => undefined))?.counts.done ?? -1;
    try {
      // Kill mid-flight: once 15%, 35%, 55% and 75% of the work is done, at a random moment after.
      for (const fraction of [0.15, 0.35, 0.55, 0.75]) {
        while ((await done()) < fraction * columns * rows && Date.now() < deadline) await pause(20);
        await pause(Math.random() * 100);
        kills.push(await done());
        // Kill the hub mid-flight, then bring it back on the same store and port.
        await hub.stop('SIGKILL');
        // Once, away longer than the leases last: a restart must renew them, not expire them.
        await pause(fraction === 0.55 ? 1500 : Math.random() * 300);
        hub = await startHub({ db, bind: endpoint, args });
        // And one worker, replaced by a new one.
        const victim = workers[Math.floor(Math.random() * workers.length)] as WorkerProc;
        victim.proc.kill('SIGKILL');
        workers.push(startWorker(endpoint, `w${next++}`));
      }
      while ((await done()) < columns * rows && Date.now() < deadline) await pause(200);
      await Promise.race([Promise.all(workers.map((w) => w.exited)), pause(Math.max(0, deadline - Date.now()))]);
    } finally {
      status.close();
      for (const w of workers) w.proc.kill('SIGKILL');
      await hub.stop();
    }

    const tasks = await storedTasks(kind, location);
    expect(tasks.size).toBe(columns * rows);
    const problems = runProblems(tasks);
    // Every acknowledged completion is in the store, by the worker that was told so, and only once.
    const ackedBy = new Map<string, string[]>();
    for (const w of workers) {
      for (const line of w.out.split('\n')) {
        if (line.startsWith('ack ')) ackedBy.set(line.slice(4), [...(ackedBy.get(line.slice(4)) ?? []), w.name]);
      }
    }
    for (const [name, by] of ackedBy) {
      if (by.length !== 1) problems.push(`${name} acknowledged to ${by.join(', ')}`);
      if (tasks.get(name)?.worker !== by[0]) problems.push(`${name} acknowledged to ${by[0]} but recorded for ${tasks.get(name)?.worker}`);
    }
    expect(problems.slice(0, 20)).toEqual([]);
    expect(kills.every((d) => d < columns * rows), `killed at ${kills.join(', ')} tasks done`).toBe(true);
    expect(ackedBy.size).toBeGreaterThan(columns * rows * 0.5); // most acks made it to stdout
  }, 180_000);
});
