/** python-example/ against the real dhub: the .proto is enough to write a client in another language. */
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Client, type TaskRecord } from '../worker-kit/src/index.js';
import { readFileSync, writeFileSync } from 'node:fs';
import { Router } from 'zeromq';
import { decodeRequest, encodeReply, type Request } from '../proto/src/codec.js';
import { readKeyFile } from '../proto/src/keys.js';
import { cleanTempDirs, DQUERY, roleEndpointsOf, ROOT, runNode, startHub, tempDir } from './helpers.js';

afterAll(cleanTempDirs);

const PYTHON = '/usr/bin/python3';
const hasPython = spawnSync(PYTHON, ['-c', 'import zmq, google.protobuf'], { stdio: 'ignore' }).status === 0 && spawnSync('protoc', ['--version']).status === 0;
// CI installs the packages (.ci/run), so there a missing one is a failure, not a skip.
const runIt = hasPython || process.env.CI === 'true';

function python(script: string, args: string[], env: NodeJS.ProcessEnv, onOutput?: (text: string) => void): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(PYTHON, [join(ROOT, 'python-example', script), ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const add = (c: Buffer): void => {
      out += c.toString();
      onOutput?.(out);
    };
    child.stdout.on('data', add);
    child.stderr.on('data', add);
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

describe.runIf(runIt)('python-example', () => {
  it('client.py submits a DAG and two worker.py processes run it to the end, in dependency order', async () => {
    const hub = await startHub();
    const env = { DAGWORK_HUB: hub.endpoint };
    try {
      let submitted!: () => void;
      const created = new Promise<void>((resolve) => (submitted = resolve));
      const client = python('client.py', [], env, (out) => out.includes('created 5 tasks') && submitted());
      await created; // workers that find nothing to do exit at once, as pilots do
      const workers = await Promise.all([python('worker.py', ['--worker', 'py-1'], env), python('worker.py', ['--worker', 'py-2'], env)]);
      const { code, out } = await client;
      expect(workers.map((w) => w.code)).toEqual([0, 0]);
      expect(workers.map((w) => w.out).join('')).toMatch(/worker py-\d: \d done, 0 failed/);
      expect(code).toBe(0);
      expect(out).toMatch(/done 5, failed 0, blocked 0/);
      expect(out).toMatch(/^report +DONE +py-\d +report by py-\d$/m);

      const c = new Client({ hub: hub.endpoint, worker: 'check' });
      const tasks = new Map<string, TaskRecord>();
      for (const name of ['fetch', 'left', 'right', 'merge', 'report']) tasks.set(name, (await c.lookup(name)).task);
      c.close();
      const at = (r: TaskRecord, state: string): number => r.log.find((s) => s.state === state)?.at ?? NaN;
      for (const task of tasks.values()) {
        expect(task.state).toBe('done');
        for (const dep of task.spec.deps) expect(at(task, 'running')).toBeGreaterThanOrEqual(at(tasks.get(dep) as TaskRecord, 'done'));
      }
    } finally {
      await hub.stop();
    }
  });

  it('works over CURVE with pyzmq: a submit key creates, a worker key runs', async () => {
    const dir = tempDir();
    for (const name of ['hub', 'alice', 'node1']) expect((await runNode([DQUERY, 'keygen', join(dir, name)])).code).toBe(0);
    const pub = (name: string): string => readKeyFile(join(dir, `${name}.pub`)).publicKey;
    writeFileSync(join(dir, 'keys'), `${pub('alice')} submit\n${pub('node1')} worker\n`);
    const hub = await startHub({ args: ['--curve-secret', join(dir, 'hub.key'), '--authorized-keys', join(dir, 'keys')] });
    try {
      const endpoints = await roleEndpointsOf(hub);
      const curve = { DAGWORK_CURVE_SERVER_KEY: join(dir, 'hub.pub') };
      let submitted!: () => void;
      const created = new Promise<void>((resolve) => (submitted = resolve));
      const client = python('client.py', ['--hub', endpoints.submit as string], { ...curve, DAGWORK_CURVE_KEY: join(dir, 'alice.key') }, (out) => out.includes('created 5 tasks') && submitted());
      await created;
      const worker = await python('worker.py', ['--hub', endpoints.worker as string, '--worker', 'py-secure'], { ...curve, DAGWORK_CURVE_KEY: join(dir, 'node1.key') });
      expect(worker).toMatchObject({ code: 0 });
      expect(worker.out).toMatch(/worker py-secure: 5 done, 0 failed/);
      expect(await client).toMatchObject({ code: 0 });
    } finally {
      await hub.stop();
    }
  });

  it('gets a clear error from the hub for a bad request', async () => {
    const hub = await startHub();
    try {
      const script = 'from dagwork import Hub, HubError, pb\nh = Hub()\ntry:\n    h.create([pb.TaskSpec(name="a", deps=["a"])])\nexcept HubError as e:\n    print(e.code, e)\n';
      const child = spawnSync(PYTHON, ['-c', script], { cwd: join(ROOT, 'python-example'), env: { ...process.env, DAGWORK_HUB: hub.endpoint }, encoding: 'utf8', timeout: 30_000 });
      expect(child.stdout.trim()).toBe('CYCLE CYCLE: task "a" would close a cycle: a -> a (each depends on the next)');
    } finally {
      await hub.stop();
    }
  });

  it('ships files: put_file uploads a program, worker.py fetches it, writes the param file, exports PARAM_, uploads the declared output; get_file brings it back', async () => {
    const hub = await startHub({ args: ['--max-chunk-bytes', '1000'] });
    const dir = tempDir();
    try {
      writeFileSync(join(dir, 'sim.sh'), '#!/bin/sh\nprintf "alpha=%s seed=%s\\n" "$PARAM_alpha" "$(cat seed.txt)" > out.txt\nhead -c 5000 /dev/zero | tr "\\0" x >> out.txt\necho ran\n', { mode: 0o755 });
      const submit = [
        'import sys',
        'from dagwork import Hub, pb',
        'h = Hub()',
        `program = h.put_file(${JSON.stringify(join(dir, 'sim.sh'))}, "bin/sim.sh")`,
        'again = h.put_file(' + JSON.stringify(join(dir, 'sim.sh')) + ', "bin/sim.sh")',
        'assert again == program',
        'h.create([pb.TaskSpec(name="p1", payload=b"./bin/sim.sh", params=[pb.Param(name="alpha", value="0.5"), pb.Param(name="seed", value="42")],',
        '    inputs=[program], outputs=["out.txt"], param_files=[pb.ParamFile(name="seed.txt", param="seed")]),',
        '    pb.TaskSpec(name="p2", payload=b"true", inputs=[program], outputs=["never.txt"], max_attempts=1)])',
        'print(program.executable, program.size)',
      ].join('\n');
      const env = { ...process.env, DAGWORK_HUB: hub.endpoint };
      const created = spawnSync(PYTHON, ['-c', submit], { cwd: join(ROOT, 'python-example'), env, encoding: 'utf8', timeout: 30_000 });
      expect(created.status, created.stderr).toBe(0);
      expect(created.stdout.trim()).toMatch(/^True \d+$/);
      const worker = await python('worker.py', ['--worker', 'py-files'], { DAGWORK_HUB: hub.endpoint });
      expect(worker.code, worker.out).toBe(0);
      expect(worker.out).toMatch(/worker py-files: 1 done, 1 failed/);

      const c = new Client({ hub: hub.endpoint, worker: 'check' });
      const p1 = (await c.lookup('p1')).task;
      const p2 = (await c.lookup('p2')).task;
      c.close();
      expect(p1.state).toBe('done');
      expect(Buffer.from(p1.result).toString()).toBe('ran\n');
      expect(p2).toMatchObject({ state: 'failed', lastError: expect.stringContaining("declared output 'never.txt' was not written") });
      const [out] = p1.outputs;
      expect(out).toMatchObject({ name: 'out.txt', size: 'alpha=0.5 seed=42\n'.length + 5000 });
      const fetch = `from dagwork import Hub\nHub().get_file(${JSON.stringify(out?.sha256)}, ${JSON.stringify(join(dir, 'back.txt'))})\n`;
      const got = spawnSync(PYTHON, ['-c', fetch], { cwd: join(ROOT, 'python-example'), env, encoding: 'utf8', timeout: 30_000 });
      expect(got.status, got.stderr).toBe(0);
      expect(readFileSync(join(dir, 'back.txt'), 'utf8')).toBe(`alpha=0.5 seed=42\n${'x'.repeat(5000)}`);
    } finally {
      await hub.stop();
    }
  });

  it('goes on from a standby to the active hub: client.py and worker.py with DAGWORK_HUB listing a standby first', async () => {
    // A ZeroMQ socket in the test playing a standby: answers every request STANDBY.
    const standby = new Router({ linger: 0 });
    await standby.bind('tcp://127.0.0.1:*');
    const seen: Request[] = [];
    void (async () => {
      for await (const [id, empty, body] of standby) {
        seen.push(decodeRequest(body as Buffer));
        await standby.send([id as Buffer, empty as Buffer, encodeReply({ op: 'error', error: { code: 'STANDBY', message: 'this hub is a standby', task: '' } })]);
      }
    })().catch(() => undefined);
    const hub = await startHub();
    const env = { DAGWORK_HUB: `${standby.lastEndpoint as string},${hub.endpoint}` };
    try {
      let submitted!: () => void;
      const created = new Promise<void>((resolve) => (submitted = resolve));
      const client = python('client.py', [], env, (out) => out.includes('created 5 tasks') && submitted());
      await created;
      const worker = await python('worker.py', ['--worker', 'py-moved'], env);
      expect(worker.code, worker.out).toBe(0);
      expect(worker.out).toMatch(/worker py-moved: 5 done, 0 failed/);
      const { code, out } = await client;
      expect(code, out).toBe(0);
      expect(out).toMatch(/done 5, failed 0, blocked 0/);
      // Each process asked the standby once, then kept to the hub that answered.
      expect(seen.map((r) => r.op)).toEqual(['create', 'steal']);

      const bad = await python('worker.py', ['--hub', `${hub.endpoint},localhost`], {});
      expect(bad.code).toBe(2);
      expect(bad.out).toContain('--hub: endpoint 2 of 2: \'localhost\' is not a ZeroMQ endpoint');
    } finally {
      standby.close();
      await hub.stop();
    }
  });
});
