/** CURVE: encryption, authentication in the handshake, and roles by endpoint, against the real dhub. */
import { spawn } from 'node:child_process';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readKeyFile } from '../proto/src/keys.js';
import { Client, curveOptions, HubUnreachableError, type CurveOptions } from '../worker-kit/src/index.js';
import { cleanTempDirs, DQUERY, roleEndpointsOf, ROOT, runNode, startHub, tempDir, type RunningHub } from './helpers.js';

const dir = tempDir();
let hub: RunningHub;
let endpoints: Record<string, string> = {};
const key = (name: string): CurveOptions => curveOptions(join(dir, 'hub.pub'), join(dir, `${name}.key`));

async function keygen(name: string): Promise<void> {
  const run = await runNode([DQUERY, 'keygen', join(dir, name)]);
  expect(run.code, run.stderr).toBe(0);
}

function client(role: string, name: string | undefined): Client {
  return new Client({ hub: endpoints[role] as string, worker: name ?? 'plain', timeoutMs: 500, retries: 0, curve: name === undefined ? undefined : key(name) });
}

async function errorOf(call: Promise<unknown>): Promise<unknown> {
  return call.then(
    () => 'no error',
    (err: unknown) => err,
  );
}

beforeAll(async () => {
  for (const name of ['hub', 'w1', 'alice', 'root', 'stranger']) await keygen(name);
  const pub = (name: string): string => readKeyFile(join(dir, `${name}.pub`)).publicKey;
  writeFileSync(join(dir, 'authorized-keys'), `# dagwork clients\n${pub('w1')} worker node 1\n${pub('alice')} submit\n${pub("root")}   admin  ops team\n`);
  hub = await startHub({ args: ['--curve-secret', join(dir, 'hub.key'), '--authorized-keys', join(dir, 'authorized-keys')] });
  endpoints = await roleEndpointsOf(hub);
});

afterAll(async () => {
  await hub.stop();
  cleanTempDirs();
});

describe('CURVE', () => {
  it('writes key pairs the hub and clients read, and refuses to overwrite one', async () => {
    expect(Object.keys(endpoints).sort()).toEqual(['admin', 'submit', 'worker']);
    const text = readFileSync(join(dir, 'w1.key'), 'utf8');
    expect(text).toMatch(/^# dagwork CURVE key pair: keep this file secret\npublic-key = .{40}\nsecret-key = .{40}\n$/);
    const again = await runNode([DQUERY, 'keygen', join(dir, 'w1')]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/EEXIST/);
  });

  it('lets each role do exactly its operations', async () => {
    const submitter = client('submit', 'alice');
    const worker = client('worker', 'w1');
    const admin = client('admin', 'root');
    try {
      expect(await submitter.create([{ name: 'a', maxAttempts: 1 }, { name: 'b', deps: ['a'] }])).toMatchObject({ created: 2, unchanged: 0 });
      expect(await errorOf(submitter.retry('all-failed'))).toMatchObject({ code: 'FORBIDDEN', message: `retry is not allowed on the submit endpoint; it needs the admin role, on ${endpoints.admin}` });

      expect(await errorOf(worker.create([{ name: 'x' }]))).toMatchObject({ code: 'FORBIDDEN', message: `create is not allowed on the worker endpoint; it needs the submit role, on ${endpoints.submit}` });
      expect(await errorOf(worker.retry(['a']))).toMatchObject({ code: 'FORBIDDEN' });
      expect((await worker.steal()).tasks.map((t) => t.name)).toEqual(['a']);
      expect((await worker.heartbeat(['a'])).length).toBe(0);
      expect((await worker.fail('a', 'broken')).state).toBe('failed');
      expect((await worker.status()).counts).toMatchObject({ failed: 1, blocked: 1 });
      expect((await worker.lookup('a')).task.lastError).toBe('broken');

      expect(await errorOf(submitter.cancel(['b']))).toMatchObject({ code: 'FORBIDDEN', message: `cancel is not allowed on the submit endpoint; it needs the admin role, on ${endpoints.admin}` });
      expect(await errorOf(worker.cancel(['b']))).toMatchObject({ code: 'FORBIDDEN' });
      expect((await admin.retry(['a'])).retried).toBe(1);
      expect((await admin.cancel(['b'], 'not needed')).cancelled).toBe(1);
      expect((await admin.create([{ name: 'c' }])).created).toBe(1);
    } finally {
      submitter.close();
      worker.close();
      admin.close();
    }
  });

  it('allows rerun and replace to admin only: a submit key gets FORBIDDEN, and nothing changes', async () => {
    const submitter = client('submit', 'alice');
    const worker = client('worker', 'w1');
    const admin = client('admin', 'root');
    try {
      // Its own pool: the tasks earlier tests left stay where they are.
      await submitter.create([{ name: 'rr', payload: Buffer.from('old'), pool: 'rerun' }]);
      expect((await worker.steal({ pools: ['rerun'] })).tasks.map((t) => t.name)).toEqual(['rr']);
      await worker.complete([{ name: 'rr' }]);
      expect(await errorOf(submitter.rerun(['rr']))).toMatchObject({ code: 'FORBIDDEN', message: `rerun is not allowed on the submit endpoint; it needs the admin role, on ${endpoints.admin}` });
      expect(await errorOf(submitter.replace([{ name: 'rr', payload: Buffer.from('new'), pool: 'rerun' }], { rerun: true }))).toMatchObject({ code: 'FORBIDDEN' });
      expect(await errorOf(worker.rerun(['rr']))).toMatchObject({ code: 'FORBIDDEN' });
      expect((await admin.lookup('rr')).task).toMatchObject({ state: 'done' });
      expect(Buffer.from((await admin.lookup('rr')).task.spec.payload).toString()).toBe('old');
      expect((await admin.rerun(['rr'])).rerun).toBe(1);
      expect((await admin.replace([{ name: 'rr', payload: Buffer.from('new'), pool: 'rerun' }])).replaced).toBe(1);
      await admin.cancel(['rr'], 'done with it'); // leaves nothing ready for the tests after
    } finally {
      submitter.close();
      worker.close();
      admin.close();
    }
  });

  it('allows delete to admin only: a submit key gets FORBIDDEN, and nothing is deleted', async () => {
    const submitter = client('submit', 'alice');
    const worker = client('worker', 'w1');
    const admin = client('admin', 'root');
    try {
      // Its own pool, kept paused: nothing here is handed to the tests after.
      await admin.poolSet({ pool: 'deleting', maxRunning: undefined, paused: true });
      await submitter.create([{ name: 'del-me', pool: 'deleting' }]);
      expect(await errorOf(submitter.deleteTasks(['del-me']))).toMatchObject({ code: 'FORBIDDEN', message: `delete is not allowed on the submit endpoint; it needs the admin role, on ${endpoints.admin}` });
      expect(await errorOf(worker.deleteTasks(['del-me']))).toMatchObject({ code: 'FORBIDDEN' });
      expect((await admin.lookup('del-me')).task.state).toBe('ready');
      expect((await admin.deleteTasks(['del-me'])).deleted).toBe(1);
      expect(await errorOf(admin.lookup('del-me'))).toMatchObject({ code: 'UNKNOWN_TASK' });
    } finally {
      submitter.close();
      worker.close();
      admin.close();
    }
  });

  it('refuses unknown keys, keys on an endpoint above their role, and plain clients, in the handshake', async () => {
    for (const [role, name] of [
      ['worker', 'stranger'],
      ['submit', 'w1'],
      ['admin', 'alice'],
      ['worker', undefined],
    ] as const) {
      const c = client(role, name);
      const err = await errorOf(c.status());
      c.close();
      expect(err, `${name ?? 'a plain client'} on ${role}`).toBeInstanceOf(HubUnreachableError);
    }
    expect(hub.log()).toMatch(/refused a client from 127\.0\.0\.1 on the worker endpoint: key \S+ is not authorized/);
    expect(hub.log()).toMatch(/refused a client from 127\.0\.0\.1 on the submit endpoint: key \S+ has role worker/);
  });

  it('checks the role before reading the body: a worker key’s oversized create is FORBIDDEN, not TOO_LARGE', async () => {
    const worker = new Client({ hub: endpoints.worker as string, worker: 'w1', timeoutMs: 20_000, retries: 0, curve: key('w1') });
    const names = Array.from({ length: 200_000 }, (_, i) => ({ name: `n${i}` }));
    expect(await errorOf(worker.create(names))).toMatchObject({ code: 'FORBIDDEN' });
    worker.close();
  });

  it('warns of a secret key others can read and of an authorized-keys file that authorizes nobody', async () => {
    writeFileSync(join(dir, 'nobody'), '# no keys yet\n');
    chmodSync(join(dir, 'hub.key'), 0o644);
    const lax = await startHub({ args: ['--curve-secret', join(dir, 'hub.key'), '--authorized-keys', join(dir, 'nobody')] });
    chmodSync(join(dir, 'hub.key'), 0o600);
    await lax.stop();
    expect(lax.log()).toMatch(/hub\.key can be read by other users: whoever reads it can pose as this hub \(chmod 600 it\)/);
    expect(lax.log()).toMatch(/nobody authorizes no key: every client will be refused/);
  });

  it('runs work end to end over CURVE with dworker', async () => {
    const admin = client('admin', 'root');
    await admin.create([{ name: 'shell', payload: Buffer.from('echo secret work'), pool: 'secure' }]);
    const run = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn(
        process.execPath,
        [join(ROOT, 'dist/worker-kit/src/dworker.js'), '--hub', endpoints.worker as string, '--worker', 'w1', '--curve-server-key', join(dir, 'hub.pub'), '--curve-key', join(dir, 'w1.key'), '--pool', 'secure'],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let out = '';
      child.stdout.on('data', (c: Buffer) => (out += c.toString()));
      child.stderr.on('data', (c: Buffer) => (out += c.toString()));
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      child.once('exit', (code) => {
        clearTimeout(timer);
        resolve({ code, out });
      });
    });
    expect(run.code, run.out).toBe(0);
    expect(Buffer.from((await admin.lookup('shell')).task.result).toString()).toBe('secret work\n');
    admin.close();
  });
});
