/**
 * A throwaway PostgreSQL cluster for the tests that run against the PostgreSQL store: initdb into
 * a temporary directory, `postgres` on a free loopback port (as the unprivileged `postgres` user
 * when we are root: PostgreSQL refuses root), a database per test, stopped by its PID.
 *
 * Without PostgreSQL installed, `postgresMissing` says why and the PostgreSQL variants skip;
 * with DAGWORK_TEST_POSTGRES=required they fail instead.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { freePort } from './proc.js';

/** How long the cluster may take to start, and to stop after SIGINT before SIGKILL (ms). */
const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 10_000;
export const PG_USER = 'dagwork';

function findBin(): string | undefined {
  const inPath = spawnSync('sh', ['-c', 'command -v initdb'], { encoding: 'utf8' }).stdout.trim();
  if (inPath !== '' && existsSync(join(inPath, '..', 'postgres'))) return join(inPath, '..');
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((v) => existsSync(join(root, v, 'bin', 'initdb')) && existsSync(join(root, v, 'bin', 'postgres')))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] === undefined ? undefined : join(root, versions[0], 'bin');
}

const BIN = findBin();
const AS_ROOT = process.getuid?.() === 0;
const PG_UID = AS_ROOT ? Number(spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).stdout.trim() || NaN) : undefined;
const PG_GID = AS_ROOT ? Number(spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).stdout.trim() || NaN) : undefined;
const required = process.env.DAGWORK_TEST_POSTGRES === 'required';

/** Why the PostgreSQL variants cannot run here (undefined: they can). */
export const postgresMissing: string | undefined =
  BIN === undefined
    ? 'PostgreSQL is not installed (no initdb/postgres in PATH or /usr/lib/postgresql/*/bin): apt-get install postgresql'
    : AS_ROOT && !Number.isInteger(PG_UID)
      ? 'running as root and there is no postgres system user to run PostgreSQL as'
      : undefined;

if (postgresMissing !== undefined) {
  if (required) throw new Error(`DAGWORK_TEST_POSTGRES=required, but ${postgresMissing}`);
  process.stderr.write(`skipping the PostgreSQL variants: ${postgresMissing}\n`);
}

/** The store kinds a test runs against: LevelDB always, PostgreSQL when it can. */
export const storeKinds = (postgresMissing === undefined ? ['leveldb', 'postgres'] : ['leveldb']) as ('leveldb' | 'postgres')[];
export type StoreKind = 'leveldb' | 'postgres';

/** argv run as the postgres user when we are root (setpriv execs: the PID is the program's). */
function asPostgres(argv: string[]): string[] {
  if (!AS_ROOT) return argv;
  return ['setpriv', `--reuid=${PG_UID}`, `--regid=${PG_GID}`, '--clear-groups', ...argv];
}

export interface PgCluster {
  port: number;
  password: string;
  /** The URL of database `db` (as the cluster's superuser, with the password). */
  url(db: string): string;
  /** A new empty database; resolves with its URL. */
  createDatabase(): Promise<string>;
  /** Runs one statement as the superuser in database `db` (default postgres). */
  query<T extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[], db?: string): Promise<T[]>;
  stop(): Promise<void>;
}

let databases = 0;

/** Starts a cluster (one per test file: reuse it); `durable` keeps fsync on (the benchmark's). */
export async function startPostgres(options: { durable?: boolean } = {}): Promise<PgCluster> {
  if (BIN === undefined || postgresMissing !== undefined) throw new Error(postgresMissing);
  const dir = mkdtempSync(join(tmpdir(), 'dagwork-pg-'));
  const data = join(dir, 'data');
  const sock = join(dir, 'sock');
  mkdirSync(sock);
  const password = randomBytes(12).toString('hex');
  writeFileSync(join(dir, 'pw'), `${password}\n`);
  if (AS_ROOT) for (const p of [dir, sock, join(dir, 'pw')]) chownSync(p, PG_UID as number, PG_GID as number);
  const [cmd, ...args] = asPostgres([
    join(BIN, 'initdb'),
    '-D',
    data,
    '-U',
    PG_USER,
    `--pwfile=${join(dir, 'pw')}`,
    '--auth-local=trust',
    '--auth-host=scram-sha-256',
    '-E',
    'UTF8',
    '--locale=C',
    '--no-sync',
    '--no-instructions',
  ]);
  const init = spawnSync(cmd as string, args, { encoding: 'utf8', timeout: START_TIMEOUT_MS });
  if (init.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`initdb failed (${init.status ?? init.signal}): ${init.stderr}${init.stdout}`);
  }
  const port = await freePort();
  const settings = ['-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=100', '-c', 'shared_buffers=64MB'];
  if (options.durable !== true) settings.push('-c', 'fsync=off', '-c', 'full_page_writes=off');
  const [pgCmd, ...pgArgs] = asPostgres([join(BIN, 'postgres'), '-D', data, '-p', String(port), '-k', sock, ...settings]);
  const proc: ChildProcess = spawn(pgCmd as string, pgArgs, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr?.on('data', (c: Buffer) => {
    if (stderr.length < 100_000) stderr += c.toString();
  });
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const url = (db: string): string => `postgres://${PG_USER}:${password}@127.0.0.1:${port}/${db}`;

  const stop = async (): Promise<void> => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGINT'); // fast shutdown
      const timer = setTimeout(() => proc.kill('SIGKILL'), STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };

  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    const client = new pg.Client({ connectionString: url('postgres'), connectionTimeoutMillis: 1000 });
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.end();
      break;
    } catch (err) {
      await client.end().catch(() => undefined);
      if (proc.exitCode !== null || proc.signalCode !== null || Date.now() > deadline) {
        await stop();
        throw new Error(`PostgreSQL did not start (${(err as Error).message}):\n${stderr}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  const query = async <T extends pg.QueryResultRow>(text: string, values: unknown[] = [], db = 'postgres'): Promise<T[]> => {
    const client = new pg.Client({ connectionString: url(db) });
    client.on('error', () => undefined);
    await client.connect();
    try {
      return (await client.query<T>(text, values)).rows;
    } finally {
      await client.end();
    }
  };

  return {
    port,
    password,
    url,
    query,
    createDatabase: async () => {
      const name = `test_${process.pid}_${++databases}`;
      await query(`CREATE DATABASE ${name}`);
      return url(name);
    },
    stop,
  };
}
