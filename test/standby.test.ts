/**
 * Several dhub processes on one PostgreSQL store: one active, the others standby (answering
 * STANDBY), taking over when the active hub exits, is killed, or loses its database session (it
 * is fenced: it stops serving and exits 1). Real dhub processes, a real PostgreSQL.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { Client, HubUnreachableError } from '../worker-kit/src/index.js';
import { RawClient } from './support/raw.js';
import { cleanTempDirs, DHUB, freePort, tempDir } from './helpers.js';
import { killDworkers, spawnDworker, type Dworker } from './support/dworker.js';
import { stencilFile } from './support/workloads.js';
import { newStore, pgCluster, postgresMissing, runProblems, stopPgCluster, storedTasks } from './support/stores.js';
import { DQUERY, runNode } from './helpers.js';
import { writeFileSync } from 'node:fs';

/**
 * The failover test runs dworker with both hubs' endpoints (--hub tcp://A,tcp://B), which needs
 * clients that take several endpoints and move to the one that answers.
 */
/** The stencil as JSON Lines: a command that succeeds, leases of 5 s, attempts enough for kills. */
const stencilJson = (columns: number, rows: number): string =>
  stencilFile(columns, rows)
    .trim()
    .split('\n')
    .map((line) => {
      const [name, ...deps] = line.split(',');
      return JSON.stringify({ name, deps, cmd: 'true', lease: '5s', attempts: 1000 });
    })
    .join('\n');

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

interface HubProc {
  endpoint: string;
  proc: ChildProcess;
  log(): string;
  exited: Promise<number | null>;
  /** Resolves once the hub's log matches `pattern`; rejects after `ms` or if it exits first. */
  waitFor(pattern: RegExp, ms: number): Promise<void>;
}

const procs: ChildProcess[] = [];

/** dhub on `port` over the store at `url`, its own --db, all sharing `files`. */
function hub(url: string, port: number, files: string): HubProc {
  const endpoint = `tcp://127.0.0.1:${port}`;
  const proc = spawn(process.execPath, [DHUB, '--bind', endpoint, '--db', join(tempDir(), 'db'), '--files', files, '--store', url, '--log-level', 'debug'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  procs.push(proc);
  let stderr = '';
  proc.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const waitFor = async (pattern: RegExp, ms: number): Promise<void> => {
    const end = Date.now() + ms;
    let gone = false;
    void exited.then(() => (gone = true));
    while (!pattern.test(stderr)) {
      if (gone) throw new Error(`dhub exited before logging ${pattern}:\n${stderr}`);
      if (Date.now() > end) throw new Error(`dhub did not log ${pattern} in ${ms} ms:\n${stderr}`);
      await pause(20);
    }
  };
  return { endpoint, proc, log: () => stderr, exited, waitFor };
}

const kill = async (h: HubProc, signal: NodeJS.Signals): Promise<number | null> => {
  if (h.proc.exitCode === null && h.proc.signalCode === null) h.proc.kill(signal);
  return h.exited;
};

afterEach(() => {
  for (const p of procs.splice(0)) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  killDworkers();
});
afterAll(async () => {
  await stopPgCluster();
  cleanTempDirs();
});

/** What the hub at `endpoint` answers a status with: its counts, or the error code. */
async function ask(endpoint: string): Promise<string> {
  const c = new Client({ hub: endpoint, worker: 'probe', timeoutMs: 1000, retries: 0 });
  try {
    const s = await c.status();
    return `active ${s.total}`;
  } catch (err) {
    // A Client moves on from STANDBY while its budget lasts, then says only STANDBY came back.
    return err instanceof HubUnreachableError && err.standby ? 'STANDBY' : 'no answer';
  } finally {
    c.close();
  }
}

describe.skipIf(postgresMissing !== undefined)('standby hubs on one PostgreSQL store', () => {
  it('a standby answers STANDBY, and takes over within a few seconds when the active hub exits, with the tasks and leases', async () => {
    const url = await newStore('postgres');
    const files = tempDir();
    const a = hub(url, await freePort(), files);
    await a.waitFor(/listening on/, 15_000);
    const b = hub(url, await freePort(), files);
    await b.waitFor(/standby: another hub is active/, 15_000);
    const c = new Client({ hub: a.endpoint, worker: 'w1' });
    try {
      await c.create([{ name: 'x' }, { name: 'y', deps: ['x'] }]);
      expect((await c.steal()).tasks.map((t) => t.name)).toEqual(['x']);
    } finally {
      c.close();
    }
    // On the wire: every request answered STANDBY, saying why.
    const raw = new RawClient(b.endpoint);
    const reply = await raw.call({ op: 'status' });
    raw.close();
    expect(reply).toMatchObject({ op: 'error', error: { code: 'STANDBY' } });
    expect(reply.op === 'error' ? reply.error.message : '').toMatch(/another hub is active/);
    // A Client given only the standby tries again while its budget lasts, then says so.
    const refused = new Client({ hub: b.endpoint, worker: 'w1', timeoutMs: 1000, retries: 0 });
    const err = await refused.status().catch((e: unknown) => e);
    refused.close();
    expect(err).toBeInstanceOf(HubUnreachableError);
    expect(err).toMatchObject({ standby: true });
    expect((err as Error).message).toMatch(/STANDBY/);

    const t0 = Date.now();
    expect(await kill(a, 'SIGTERM')).toBe(0);
    await b.waitFor(/active: took over .* recovered 2 tasks in \d+ ms/, 5000);
    expect(Date.now() - t0).toBeLessThan(5000);
    const d = new Client({ hub: b.endpoint, worker: 'w1' });
    try {
      // w1's lease on x survived the switch: it completes x on the new hub, and y follows.
      const { results, next } = await d.complete([{ name: 'x' }], { n: 1 });
      expect(results[0]?.outcome).toBe('ACCEPTED');
      expect(next?.tasks.map((t) => t.name)).toEqual(['y']);
    } finally {
      d.close();
    }
    expect(await kill(b, 'SIGTERM')).toBe(0);
  }, 60_000);

  it('fences a hub cut off from the database: it stops answering and exits 1, and the standby takes over', async () => {
    const cluster = await pgCluster();
    const url = await newStore('postgres');
    const files = tempDir();
    const a = hub(url, await freePort(), files);
    await a.waitFor(/listening on/, 15_000);
    const b = hub(url, await freePort(), files);
    await b.waitFor(/standby:/, 15_000);
    expect(await ask(a.endpoint)).toBe('active 0');
    const db = new URL(url).pathname.slice(1);
    // The backend holding the leader lock is the active hub's session: cut it, as a failed network would.
    const cut = await cluster.query<{ ok: boolean }>(
      `SELECT pg_terminate_backend(pid) AS ok FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = $1)`,
      [db],
    );
    expect(cut.map((r) => r.ok)).toEqual([true]);
    const t0 = Date.now();
    expect(await Promise.race([a.exited, pause(5000).then(() => 'still running')])).toBe(1);
    expect(a.log()).toMatch(/dhub: lost the session with the store .*stops at once \(fenced\)/);
    await b.waitFor(/active: took over/, 5000);
    expect(Date.now() - t0).toBeLessThan(6000);
    expect(await ask(b.endpoint)).toBe('active 0');
    expect(await ask(a.endpoint)).toBe('no answer');
  }, 60_000);

  it('fences a hub whose database stops answering (its backend frozen): exit 1 within seconds', async () => {
    const cluster = await pgCluster();
    const url = await newStore('postgres');
    const a = hub(url, await freePort(), tempDir());
    await a.waitFor(/listening on/, 15_000);
    const [backend] = await cluster.query<{ pid: number }>(
      `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = $1)`,
      [new URL(url).pathname.slice(1)],
    );
    expect(backend?.pid).toBeGreaterThan(0);
    // Frozen, not gone: the TCP connection stays up and the server still holds the lock for it.
    process.kill(backend?.pid as number, 'SIGSTOP');
    try {
      const t0 = Date.now();
      expect(await Promise.race([a.exited, pause(10_000).then(() => 'still running')])).toBe(1);
      expect(Date.now() - t0).toBeLessThan(8000);
      expect(a.log()).toMatch(/lost the session with the store \(the database answered nothing for \d+ ms\)/);
    } finally {
      process.kill(backend?.pid as number, 'SIGCONT');
    }
  }, 60_000);

  it('never has two active hubs: of three started at once, one serves and two answer STANDBY', async () => {
    const url = await newStore('postgres');
    const files = tempDir();
    const hubs = await Promise.all([0, 1, 2].map(async () => hub(url, await freePort(), files)));
    await Promise.all(hubs.map((h) => h.waitFor(/listening on|standby:/, 20_000)));
    const answers = await Promise.all(hubs.map((h) => ask(h.endpoint)));
    expect(answers.sort()).toEqual(['STANDBY', 'STANDBY', 'active 0']);
    // A standby stops on SIGTERM as the active hub does.
    expect(await Promise.all(hubs.map((h) => kill(h, 'SIGTERM')))).toEqual([0, 0, 0]);
  }, 60_000);

  it('fails over three times under load with workers that move to the hub that answers: every task done once, in order', async () => {
    const url = await newStore('postgres');
    const files = tempDir();
    const ports = [await freePort(), await freePort()];
    const endpoints = ports.map((p) => `tcp://127.0.0.1:${p}`);
    let active = hub(url, ports[0] as number, files);
    await active.waitFor(/listening on/, 15_000);
    let standby = hub(url, ports[1] as number, files);
    await standby.waitFor(/standby:/, 15_000);
    const total = 2000;
    const setup = new Client({ hub: active.endpoint, worker: 'setup' });
    const specs = stencilFile(20, 100).trim().split('\n').map((line) => {
      const [name, ...deps] = line.split(',');
      return { name: name as string, deps, leaseMs: 5000, maxAttempts: 1000 };
    });
    for (let i = 0; i < specs.length; i += 500) await setup.create(specs.slice(i, i + 500));
    setup.close();
    // Workers that keep the tasks they hold; their Client, given both endpoints, moves to the one
    // that answers. A call that gives up (no hub active within its budget) is made again.
    let stop = false;
    const unanswered: number[] = [0, 0, 0];
    const loops = [0, 1, 2].map(async (i) => {
      let held: string[] = [];
      // Half of them start on the standby's endpoint.
      const client = new Client({ hub: (i % 2 === 0 ? endpoints : [...endpoints].reverse()).join(','), worker: `w${i}`, timeoutMs: 1000, retries: 1 });
      try {
        while (!stop) {
          try {
            const { next } = await client.complete(held.map((name) => ({ name })), { n: 4 });
            held = next?.tasks.map((t) => t.name) ?? [];
            if (held.length === 0 && next?.finished === true) return;
            if (held.length === 0) await pause(20);
          } catch (err) {
            if (!(err instanceof HubUnreachableError)) throw err;
            unanswered[i] = (unanswered[i] as number) + 1;
          }
        }
      } finally {
        client.close();
      }
    });
    const done = async (): Promise<number> => {
      const c = new Client({ hub: active.endpoint, worker: 'observer', timeoutMs: 500, retries: 0 });
      const s = await c.status().catch(() => undefined);
      c.close();
      return s?.counts.done ?? -1;
    };
    const deadline = Date.now() + 120_000;
    const kills: number[] = [];
    try {
      for (const fraction of [0.2, 0.45, 0.7]) {
        while ((await done()) < fraction * total && Date.now() < deadline) await pause(20);
        kills.push(await done());
        expect(await kill(active, 'SIGKILL')).toBe(null);
        await standby.waitFor(/active: took over/, 10_000);
        // The killed hub comes back as the new standby (as its supervisor would restart it).
        const port = Number(/:(\d+)$/.exec(active.endpoint)?.[1]);
        [active, standby] = [standby, hub(url, port, files)];
        await standby.waitFor(/standby:/, 15_000);
      }
      await Promise.race([Promise.all(loops), pause(Math.max(0, deadline - Date.now()))]);
    } finally {
      stop = true;
      await Promise.all(loops);
      await kill(active, 'SIGTERM');
      await kill(standby, 'SIGTERM');
    }
    const tasks = await storedTasks('postgres', url);
    expect(tasks.size).toBe(total);
    const problems = runProblems(tasks);
    expect(problems.slice(0, 20)).toEqual([]);
    expect(kills.every((d) => d > 0 && d < total), `killed at ${kills.join(', ')} tasks done`).toBe(true);
    // Each takeover is a second or two: a call's budget (2 s) mostly spans it.
    expect(unanswered.every((n) => n <= 6), `calls that found no active hub: ${unanswered.join(', ')}`).toBe(true);
  }, 180_000);

  it(
    'fails over three times under load: 3 dworkers, a 2,000-task stencil, every task done once in order, the workers never stopped',
    async () => {
      const url = await newStore('postgres');
      const files = tempDir();
      const ports = [await freePort(), await freePort()];
      const endpoints = ports.map((p) => `tcp://127.0.0.1:${p}`).join(',');
      let active = hub(url, ports[0] as number, files);
      await active.waitFor(/listening on/, 15_000);
      let standby = hub(url, ports[1] as number, files);
      await standby.waitFor(/standby:/, 15_000);
      const file = join(tempDir(), 'stencil.txt');
      writeFileSync(file, stencilJson(20, 100));
      expect((await runNode([DQUERY, 'addfile', file], { env: { DAGWORK_HUB: active.endpoint, DAGWORK_WORKER: 'setup' }, timeoutMs: 60_000 })).code).toBe(0);
      const workers: Dworker[] = [1, 2, 3].map((i) => spawnDworker(['--hub', endpoints, '--worker', `w${i}`, '-c', '2', '--idle-timeout', '120s'], { killAfterMs: 170_000 }));
      const done = async (): Promise<number> => {
        for (const e of endpoints.split(',')) {
          const c = new Client({ hub: e, worker: 'observer', timeoutMs: 500, retries: 0 });
          const s = await c.status().catch(() => undefined);
          c.close();
          if (s !== undefined) return s.counts.done;
        }
        return -1;
      };
      const deadline = Date.now() + 150_000;
      // A worker that stopped fails the test at once, not at the deadline.
      const running = (): boolean => workers.every((w) => w.proc.exitCode === null && w.proc.signalCode === null);
      for (const fraction of [0.2, 0.45, 0.7]) {
        while ((await done()) < fraction * 2000 && Date.now() < deadline && running()) await pause(20);
        if (!running()) break;
        expect(await kill(active, 'SIGKILL')).toBe(null);
        await standby.waitFor(/active: took over/, 10_000);
        // The killed hub comes back as the new standby (as its supervisor would restart it).
        const port = Number(/:(\d+)$/.exec(active.endpoint)?.[1]);
        [active, standby] = [standby, hub(url, port, files)];
        await standby.waitFor(/standby:/, 15_000);
      }
      let finished = -1;
      while ((finished = await done()) < 2000 && Date.now() < deadline && running()) await pause(200);
      // Every worker ran until the graph was done; then each exits 0 by itself (the hub says finished).
      const exits = await Promise.all(workers.map((w) => Promise.race([w.exit, pause(30_000).then(() => undefined)])));
      for (const [i, e] of exits.entries()) expect(e?.code, `worker w${i + 1}:\n${workers[i]?.stderr() ?? ''}`).toBe(0);
      expect(finished).toBe(2000);
      await kill(active, 'SIGTERM');
      await kill(standby, 'SIGTERM');

      const tasks = await storedTasks('postgres', url);
      expect(tasks.size).toBe(2000);
      const problems = runProblems(tasks);
      expect(problems.slice(0, 20)).toEqual([]);
    },
    180_000,
  );
});
