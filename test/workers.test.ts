/** dquery workers against the real dhub: the figures match what the workers did, also after a restart. */
import { afterAll, describe, expect, it } from 'vitest';
import { Client } from '../worker-kit/src/index.js';
import { cleanTempDirs, dquery, startHub } from './helpers.js';

afterAll(cleanTempDirs);

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('dquery workers', () => {
  it('shows per worker the tasks done and failed, run times and what it holds now, and keeps them across a restart', async () => {
    const hub = await startHub();
    const db = hub.db;
    const a = new Client({ hub: hub.endpoint, worker: 'node-a' });
    const b = new Client({ hub: hub.endpoint, worker: 'node-b' });
    try {
      await a.create(['t1', 't2', 't3', 't4'].map((name) => ({ name, maxAttempts: 1 })));
      await a.steal({ n: 2 });
      await pause(150);
      await a.complete([{ name: 't1' }]);
      await a.fail('t2', 'boom');
      const held = await b.steal({ n: 1 });
      const json = JSON.parse((await dquery(hub, ['workers', '--json'])).stdout) as { worker: string; done: number; failed: number; runs: number; busyMs: number; maxRunMs: number; running: number; tasks: string[] }[];
      const byId = new Map(json.map((w) => [w.worker, w]));
      expect(byId.get('node-a')).toMatchObject({ done: 1, failed: 1, runs: 2, running: 0, tasks: [] });
      expect(byId.get('node-a')?.maxRunMs).toBeGreaterThanOrEqual(140);
      expect(byId.get('node-b')).toMatchObject({ done: 0, failed: 0, runs: 0, running: 1, tasks: [held.tasks[0]?.name] });
      const table = (await dquery(hub, ['workers'])).stdout;
      expect(table).toMatch(/^worker +done +failed +busy +mean run +max run +last seen +running now$/m);
      expect(table).toMatch(new RegExp(`^node-b +0 +0 +- +- +- +.* ago +1: ${held.tasks[0]?.name}$`, 'm'));

      await hub.stop('SIGKILL');
      const again = await startHub({ db });
      try {
        const after = JSON.parse((await dquery(again, ['workers', '--json'])).stdout) as typeof json;
        const a2 = after.find((w) => w.worker === 'node-a');
        expect(a2).toMatchObject({ done: 1, failed: 1, runs: 2 });
        expect(a2?.busyMs).toBe(byId.get('node-a')?.busyMs);
        expect(after.find((w) => w.worker === 'node-b')).toMatchObject({ running: 1 });
      } finally {
        await again.stop();
      }
    } finally {
      a.close();
      b.close();
      await hub.stop();
    }
  });
});
