/**
 * dworker as a new user meets it: exit statuses that say how the run went, a wrong or dead hub
 * said at once, workers started before their tasks, what a failed command printed, what a command
 * gets in its environment, and the command line itself (--version, signals, exit codes).
 */
import { lstatSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Client, PermanentError, shellHandler, type LeasedTask, type LookupResult, type TaskRecord } from '../worker-kit/src/index.js';
import { depFileName } from '../worker-kit/src/shell.js';
import { cleanTempDirs, freePort, ROOT, startHub, tempDir, type RunningHub, withHub } from './helpers.js';
import { eventually, killDworkers, pause, spawnDworker, stateWithin, type Dworker } from './support/dworker.js';
import { leasedTask, taskRecord } from './support/records.js';

afterAll(() => {
  killDworkers();
  cleanTempDirs();
});

const text = (b: Uint8Array): string => Buffer.from(b).toString('utf8');

/** dworker with `args` (no --hub added, DAGWORK_HUB emptied unless `env` sets it); killed after 40 s at most. */
function dworker(args: string[], env: NodeJS.ProcessEnv = {}): Dworker {
  return spawnDworker(args, { env: { DAGWORK_HUB: '', ...env }, killAfterMs: 40_000 });
}


describe('dworker exit status', () => {
  it('is 0 when its pools finished with every task done', async () => {
    await withHub([], async (hub, client) => {
      await client.create([{ name: 'fine', payload: 'true' }]);
      expect((await dworker(['--hub', hub.endpoint]).exit).code).toBe(0);
    });
  });

  it('is 3, saying what, when its pools finished with a failed task', async () => {
    await withHub([], async (hub, client) => {
      await client.create([{ name: 'broken', payload: 'exit 1', maxAttempts: 1 }, { name: 'after', deps: ['broken'] }]);
      const { code, stderr } = await dworker(['--hub', hub.endpoint]).exit;
      expect(code).toBe(3);
      expect(stderr).toMatch(/dworker: the pools finished with 1 failed, 1 blocked and 0 cancelled tasks \(dquery list --state failed --state blocked --state cancelled names them\)\n$/);
    });
  });

  it('is 1 when the hub stayed unreachable until it stopped', async () => {
    const port = await freePort();
    const { code, stderr } = await dworker(['--hub', `tcp://127.0.0.1:${port}`, '--idle-timeout', '1s']).exit;
    expect(code).toBe(1);
    expect(stderr).toContain(`dworker: connection refused at tcp://127.0.0.1:${port}: is dhub running there?`);
    expect(stderr).toContain(`dworker: the hub at tcp://127.0.0.1:${port} did not answer at the end`);
  });

  it('is 2 on an unknown option, with a message', async () => {
    const { code, stderr } = await dworker(['--bogus']).exit;
    expect(code).toBe(2);
    expect(stderr).toBe("error: unknown option '--bogus'\n");
  });

  it('is 2 at once on a hub address without tcp://, with the endpoint to write', async () => {
    const { code, stderr, took } = await dworker(['--hub', '127.0.0.1:6125']).exit;
    expect(code).toBe(2);
    expect(stderr).toContain('"127.0.0.1:6125" is not a ZeroMQ endpoint: write tcp://HOST:PORT, e.g. tcp://127.0.0.1:6125');
    expect(took).toBeLessThan(3_000);
  });

  it('is 2 on a malformed DAGWORK_HUB, naming the variable', async () => {
    const { code, stderr } = await dworker([], { DAGWORK_HUB: 'localhost' }).exit;
    expect(code).toBe(2);
    expect(stderr).toBe('dworker: DAGWORK_HUB: "localhost" is not a ZeroMQ endpoint: write tcp://HOST:PORT, e.g. tcp://localhost:6125\n');
  });
});

describe('dworker and a hub that goes away', () => {
  it('exits within --grace after SIGTERM though the hub is gone, with status 1', async () => {
    await withHub([], async (hub, client) => {
      await client.create([{ name: 'stuck', payload: 'sleep 30', leaseMs: 600_000 }]);
      const run = dworker(['--hub', hub.endpoint, '--grace', '3s']);
      await stateWithin(client, 'stuck', (t) => t.state === 'running', 8_000);
      await hub.stop('SIGKILL');
      const signalled = Date.now();
      run.proc.kill('SIGTERM');
      const { code } = await run.exit;
      expect(Date.now() - signalled).toBeLessThan(3_500);
      expect(code).toBe(1);
    });
  });
});

describe('dworker started before its tasks', () => {
  it('waits for tasks created after it started, saying why, and runs them', async () => {
    await withHub([], async (hub, client) => {
      const run = dworker(['--hub', hub.endpoint, '--worker', 'early']);
      expect(await eventually(() => run.stderr().includes('dworker: the hub holds no task yet; pools that exist: none; waiting up to 60 s from the start for tasks (--idle-timeout)'), 8_000)).toBe(true);
      await client.create([{ name: 'late', payload: 'echo late' }]);
      const { code, stdout } = await run.exit;
      expect(code).toBe(0);
      expect(stdout).toMatch(/^dworker early: finished: 1 done, 0 failed/);
    });
  });

  it('with --pool naming an empty pool, lists the pools that exist and leaves after --idle-timeout, taking nothing', async () => {
    await withHub([], async (hub, client) => {
      await client.create([{ name: 'cpu-job', payload: 'true' }]);
      const { code, stdout, stderr } = await dworker(['--hub', hub.endpoint, '--worker', 'gpu', '--pool', 'GPU', '--idle-timeout', '1s']).exit;
      expect(stderr).toContain('dworker: no tasks in pool GPU yet; pools that exist: default (1 ready, 0 waiting, 0 running, 0 done); waiting up to 1 s from the start for tasks\n');
      expect(stdout).toMatch(/^dworker gpu: no-tasks: 0 done/);
      expect(code).toBe(0);
      expect((await client.lookup('cpu-job')).task).toMatchObject({ state: 'ready', attempts: 0 });
    });
  });

  it('exits at once when its pools hold tasks that are all done', async () => {
    await withHub([], async (hub, client) => {
      await client.create([{ name: 'old', payload: 'true' }]);
      expect((await dworker(['--hub', hub.endpoint]).exit).code).toBe(0);
      const again = await dworker(['--hub', hub.endpoint, '--worker', 'again']).exit;
      expect(again.stdout).toMatch(/^dworker again: finished: 0 done/);
      expect(again.took).toBeLessThan(5_000);
    });
  });
});

describe('what a failed command printed', () => {
  it('keeps the end of a long stderr in the reason, saying how much was cut', async () => {
    await withHub([], async (hub, client) => {
      await client.create([{ name: 'loud', payload: 'head -c 10000 /dev/zero | tr "\\0" e >&2; echo >&2; echo last words >&2; exit 5', maxAttempts: 1 }]);
      await dworker(['--hub', hub.endpoint]).exit;
      const { lastError } = (await client.lookup('loud')).task;
      expect(lastError).toMatch(/^exit 5: last words\n--- stderr \(last 4096 of 10012 bytes\) ---\ne{4084}\nlast words$/);
    });
  });

  it('writes stdout and stderr as files into a scratch directory kept by --keep-failed', async () => {
    const scratch = tempDir();
    await withHub([], async (hub, client) => {
      await client.create([{ name: 'kept', payload: 'echo to stdout; echo to stderr >&2; exit 1', maxAttempts: 1 }]);
      const { stderr } = await dworker(['--hub', hub.endpoint, '--keep-failed', '--scratch', scratch]).exit;
      const dir = /kept the scratch directory of failed task kept \(its output in dagwork\.stdout, dagwork\.stderr\): (\S+)/.exec(stderr)?.[1] as string;
      expect(readFileSync(join(dir, 'dagwork.stdout'), 'utf8')).toBe('to stdout\n');
      expect(readFileSync(join(dir, 'dagwork.stderr'), 'utf8')).toBe('to stderr\n');
    });
  });

  it('writes them into the scratch directory only, never through a link the command left under their names', async () => {
    const scratch = tempDir();
    const victim = join(tempDir(), 'victim.txt');
    writeFileSync(victim, 'untouched\n');
    await withHub([], async (hub, client) => {
      await client.create([{ name: 'sly', payload: `ln -s ${victim} dagwork.stdout; echo OVERWRITE; exit 1`, maxAttempts: 1 }]);
      const { stderr } = await dworker(['--hub', hub.endpoint, '--keep-failed', '--scratch', scratch]).exit;
      const dir = /kept the scratch directory of failed task sly .*: (\S+)/.exec(stderr)?.[1] as string;
      expect(readFileSync(victim, 'utf8')).toBe('untouched\n');
      expect(lstatSync(join(dir, 'dagwork.stdout')).isFile()).toBe(true);
      expect(readFileSync(join(dir, 'dagwork.stdout'), 'utf8')).toBe('OVERWRITE\n');
    });
  });
});

describe("a command's environment", () => {
  it('holds DAGWORK_HUB, the endpoint dworker was given, so that dquery in a task talks to the same hub', async () => {
    await withHub([], async (hub, client) => {
      await client.create([{ name: 'where', payload: 'printf %s "$DAGWORK_HUB"' }]);
      await dworker(['--hub', hub.endpoint], { DAGWORK_HUB: 'tcp://elsewhere:1' }).exit;
      expect(text((await client.lookup('where')).task.result)).toBe(hub.endpoint);
    });
  });

  it("with --deps-results, holds DEPS_RESULTS_DIR with one file per dependency's result, names escaped", async () => {
    await withHub([], async (hub, client) => {
      await client.create([
        { name: 'fetch/1', payload: 'echo one' },
        { name: 'fetch 2', payload: 'echo two' },
        { name: 'join', deps: ['fetch/1', 'fetch 2'], payload: 'cat "$DEPS_RESULTS_DIR/fetch%2F1" "$DEPS_RESULTS_DIR/fetch%202"; ls "$DEPS_RESULTS_DIR" | wc -l' },
      ]);
      expect((await dworker(['--hub', hub.endpoint, '--deps-results']).exit).code).toBe(0);
      expect(text((await client.lookup('join')).task.result).replace(/ +/g, '')).toBe('one\ntwo\n2\n');
    });
  });

  it('without --deps-results, has no DEPS_RESULTS_DIR', async () => {
    await withHub([], async (hub, client) => {
      await client.create([{ name: 'a', payload: 'true' }, { name: 'b', deps: ['a'], payload: 'printf %s "${DEPS_RESULTS_DIR-unset}"' }]);
      await dworker(['--hub', hub.endpoint]).exit;
      expect(text((await client.lookup('b')).task.result)).toBe('unset');
    });
  });
});

describe("dependencies' results and their cap", () => {
  const task = leasedTask('big-join', { payload: new TextEncoder().encode('true') });
  const record = (deps: string[], result: Uint8Array, state: TaskRecord['state'] = 'done'): LookupResult => ({
    task: { ...taskRecord(''), spec: { ...taskRecord('').spec, deps }, state, attempts: 1, result, seq: 0 },
    dependents: [],
    missingDeps: [],
    failedDeps: [],
  });

  it('fails the task permanently, without running it, when the results are over the cap', async () => {
    const lookup = async (name: string): Promise<LookupResult> => (name === 'big-join' ? record(['x', 'y'], new Uint8Array(0)) : record([], new Uint8Array(600)));
    const handler = shellHandler({ scratchRoot: tempDir(), depsResults: { lookup, maxBytes: 1000 } });
    const err = await Promise.resolve(handler(task, { signal: new AbortController().signal, worker: 'w' })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PermanentError);
    expect((err as Error).message).toBe('the results of its dependencies are over 1000 bytes (reached at y, of 2 dependencies): not run; DEPS_RESULTS_DIR holds at most that much');
  });

  it('fails the attempt, naming the dependency, when one is no longer done', async () => {
    const lookup = async (name: string): Promise<LookupResult> => (name === 'big-join' ? record(['x'], new Uint8Array(0)) : record([], new Uint8Array(0), 'cancelled'));
    const handler = shellHandler({ scratchRoot: tempDir(), depsResults: { lookup } });
    await expect(Promise.resolve(handler(task, { signal: new AbortController().signal, worker: 'w' }))).rejects.toThrow('dependency x is cancelled, not done');
  });

  it('escapes names into file names: / and spaces and a leading dot as %XX, the rest kept', () => {
    expect([depFileName('fetch/7 b'), depFileName('..'), depFileName('a.b-c_d'), depFileName('é')]).toEqual(['fetch%2F7%20b', '%2E.', 'a.b-c_d', '%C3%A9']);
  });
});

describe('dworker on the command line', () => {
  it('prints its version from package.json', async () => {
    const version = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
    expect(await dworker(['--version']).exit).toMatchObject({ code: 0, stdout: `${version}\n` });
  });

  it('says what the first Ctrl-C does, and stops at once on the second, releasing the task', async () => {
    await withHub([], async (hub, client) => {
      await client.create([{ name: 'long', payload: 'sleep 30', leaseMs: 600_000 }]);
      const run = dworker(['--hub', hub.endpoint, '--grace', '20s']);
      await stateWithin(client, 'long', (t) => t.state === 'running', 8_000);
      run.proc.kill('SIGINT');
      expect(await eventually(() => run.stderr().includes('dworker: stopping: waiting up to 20 s for 1 running command; Ctrl-C again to stop now\n'), 3_000)).toBe(true);
      const second = Date.now();
      run.proc.kill('SIGINT');
      const { code, stdout } = await run.exit;
      expect(Date.now() - second).toBeLessThan(3_000);
      expect(code).toBe(0);
      expect(stdout).toMatch(/: signal: 0 done, 0 failed, 0 lost, 1 released/);
      expect((await client.lookup('long')).task).toMatchObject({ state: 'ready', attempts: 0 });
    });
  });

  it('fails a task for good, after one attempt, when its command exits with a --permanent-exit-codes status', async () => {
    await withHub([], async (hub, client) => {
      await client.create([{ name: 'bad-input', payload: 'exit 43', maxAttempts: 5 }]);
      expect((await dworker(['--hub', hub.endpoint, '--permanent-exit-codes', '42,43']).exit).code).toBe(3);
      expect((await client.lookup('bad-input')).task).toMatchObject({ state: 'failed', attempts: 1, lastError: 'exit 43 (a permanent exit status: no more attempts)' });
    });
  });

  it('refuses --permanent-exit-codes that are not statuses with exit 2', async () => {
    const { code, stderr } = await dworker(['--permanent-exit-codes', '42,x']).exit;
    expect(code).toBe(2);
    expect(stderr).toContain('"42,x": expected exit statuses from 1 to 255, separated by commas (e.g. 42,43)');
  });
});
