/**
 * Processes the tests and the benchmark share: the real dhub started on a free loopback port with
 * its own store, temporary directories, free ports. Runs from the sources (vitest) and compiled
 * (the bench), so it finds the repository by its package.json.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function repositoryRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) || dir.endsWith('/dist')) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error('package.json not found above test/support');
    dir = parent;
  }
  return dir;
}

export const ROOT = repositoryRoot();
export const DHUB = join(ROOT, 'dist/hub/src/main.js');
export const DQUERY = join(ROOT, 'dist/query/src/main.js');

const made: string[] = [];

/** A fresh temporary directory, removed by `cleanTempDirs`. */
export function tempDir(prefix = 'dagwork-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}

export function cleanTempDirs(): void {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
}

export interface SpawnedHub {
  /** The first endpoint the hub logged ("listening on ..."). */
  endpoint: string;
  proc: ChildProcess;
  /** Everything the hub wrote to stderr so far. */
  log(): string;
  /** Resolves with the exit code (null if killed by a signal). */
  exited: Promise<number | null>;
}

/** Spawns dhub with `args`; resolves once it listens, rejects if it exits first or takes over `timeoutMs`. */
/** `nodeArgs`: options of node itself (a bigger heap for a huge graph). */
export async function spawnHub(args: string[], timeoutMs = 10_000, nodeArgs: readonly string[] = []): Promise<SpawnedHub> {
  const proc = spawn(process.execPath, [...nodeArgs, DHUB, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const endpoint = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`dhub did not start in ${timeoutMs} ms:\n${stderr}`));
    }, timeoutMs);
    proc.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      const match = /listening on (\S+)/.exec(stderr);
      if (match?.[1] !== undefined) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`dhub exited with ${code} before listening:\n${stderr}`));
    });
  });
  return { endpoint, proc, log: () => stderr, exited };
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address !== null ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}
