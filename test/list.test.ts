/** Listing tasks against the real dhub: the Client's pages, and `dquery list`. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '../worker-kit/src/index.js';
import { cleanTempDirs, dquery, startHub, type RunningHub } from './helpers.js';

let hub: RunningHub;
let client: Client;

beforeAll(async () => {
  hub = await startHub();
  client = new Client({ hub: hub.endpoint, worker: 'w' });
  await client.create([...Array.from({ length: 250 }, (_, i) => ({ name: `t${i}` })), { name: 'bad', maxAttempts: 1, pool: 'other' }]);
  await client.steal({ pools: ['other'] });
  await client.fail('bad', 'exit 2: no such file\nmore detail');
});

afterAll(async () => {
  client.close();
  await hub.stop();
  cleanTempDirs();
});

describe('listing tasks', () => {
  it('pages through every task with the Client', async () => {
    const names: string[] = [];
    for await (const t of client.listAll({ pool: 'default' })) names.push(t.name);
    expect(names).toEqual(Array.from({ length: 250 }, (_, i) => `t${i}`));
  });

  it('refuses a state that is not one, before sending anything', async () => {
    await expect(client.list({ states: ['READY' as never] })).rejects.toThrow(TypeError);
  });

  it('shows which tasks failed and why with dquery list --state failed', async () => {
    const run = await dquery(hub, ['list', '--state', 'failed']);
    expect(run).toMatchObject({ code: 0, stderr: '' });
    expect(run.stdout.split('\n')[0]).toMatch(/^name +state +attempts +worker +last error$/);
    expect(run.stdout.split('\n')[1]).toMatch(/^bad +failed +1 +w +exit 2: no such file$/);
  });

  it('prints one JSON object a line, at most --limit of them, across pages', async () => {
    const run = await dquery(hub, ['list', '--json', '--limit', '120']);
    const lines = run.stdout.trim().split('\n').map((l) => JSON.parse(l) as { name: string; state: string });
    expect(lines).toHaveLength(120);
    expect(lines[119]).toMatchObject({ name: 't119', state: 'ready' });
  });

  it('refuses a state that is not one as bad usage', async () => {
    const run = await dquery(hub, ['list', '--state', 'finished']);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/--state finished: not a state/);
  });
});
