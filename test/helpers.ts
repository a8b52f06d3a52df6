/** Test helpers: start the real dhub on a free loopback port with its own store, run dquery. */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { Client } from '../worker-kit/src/index.js';
import { DQUERY, spawnHub, tempDir } from './support/proc.js';

export { cleanTempDirs, DHUB, DQUERY, freePort, ROOT, tempDir } from './support/proc.js';

export interface RunningHub {
  endpoint: string;
  db: string;
  /** Where its store is: `db` (LevelDB), or the PostgreSQL URL it was given (--store). */
  store: string;
  proc: ChildProcess;
  /** Everything the hub wrote to stderr so far. */
  log(): string;
  /** Sends `signal` and resolves with the exit code (null if killed by a signal). */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * Starts dhub on 127.0.0.1 (a free port unless `bind` says); resolves once it listens. `store`: a
 * PostgreSQL URL (--store), the hub's local files still in `db`.
 */
export async function startHub(options: { db?: string; args?: string[]; bind?: string; store?: string } = {}): Promise<RunningHub> {
  const db = options.db ?? join(tempDir(), 'db');
  const storeArgs = options.store === undefined ? [] : ['--store', options.store];
  const { endpoint, proc, log, exited } = await spawnHub(['--bind', options.bind ?? 'tcp://127.0.0.1:*', '--db', db, ...storeArgs, ...(options.args ?? [])]);
  return {
    endpoint,
    db,
    store: options.store ?? db,
    proc,
    log,
    stop: (signal = 'SIGTERM') => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
}

/** With CURVE, the endpoint of each role, as the hub logged them at start. */
export async function roleEndpointsOf(hub: RunningHub): Promise<Record<string, string>> {
  const endpoints: Record<string, string> = {};
  for (let i = 0; i < 100 && Object.keys(endpoints).length < 3; i++) {
    for (const m of hub.log().matchAll(/listening on (\S+) \(CURVE, role (\w+)\)/g)) endpoints[m[2] as string] = m[1] as string;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return endpoints;
}

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a node script to the end (bounded by `timeoutMs`), feeding it `input`. */
export function runNode(args: string[], options: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<Run> {
  return runCommand(process.execPath, args, options);
}

/** Runs `command` to the end (bounded by `timeoutMs`), feeding it `input`, in `cwd`. */
export function runCommand(command: string, args: string[], options: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number; cwd?: string } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd, env: { ...process.env, ...options.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`timed out: ${command} ${args.join(' ')}\n${stderr}`));
    }, options.timeoutMs ?? 60_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(options.input ?? '');
  });
}

/** Runs dquery against `hub` as worker `worker`. */
export function dquery(hub: RunningHub, args: string[], options: { input?: string; worker?: string } = {}): Promise<Run> {
  return runNode([DQUERY, ...args], {
    ...(options.input === undefined ? {} : { input: options.input }),
    env: { DAGWORK_HUB: hub.endpoint, DAGWORK_WORKER: options.worker ?? 'test-worker' },
  });
}

/** dwork's tests/gen_tasks.py stencil in its file format: the bench's, so both run the same graph. */
export { stencilFile as stencil } from './support/workloads.js';

/** Runs `body` with a fresh dhub (started with `args`) and a Client of it; stops both after. */
export async function withHub(args: string[], body: (hub: RunningHub, client: Client) => Promise<void>): Promise<void> {
  const hub = await startHub({ args });
  const client = new Client({ hub: hub.endpoint, worker: 'test' });
  try {
    await body(hub, client);
  } finally {
    client.close();
    await hub.stop();
  }
}
