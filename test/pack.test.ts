/**
 * The packed dworker: what `npm pack` ships, with only the production dependencies beside it (no
 * sources, no tests, no devDependencies), runs real work. Guards against dworker reaching for a
 * file or a package that only a clone has.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '../worker-kit/src/index.js';
import { cleanTempDirs, ROOT, runNode, startHub, tempDir } from './helpers.js';

afterAll(cleanTempDirs);

/** Where `name` resolves from `from` (a package directory), as Node looks it up: nearest node_modules first. */
function locate(name: string, from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    const candidate = join(dir, 'node_modules', name);
    if (existsSync(join(candidate, 'package.json'))) return candidate;
    if (dirname(dir) === dir) throw new Error(`${name} not found from ${from}`);
  }
}

/** The production dependency closure of the repository: package name -> its directory. */
function productionPackages(): Map<string, string> {
  const found = new Map<string, string>();
  const queue: [string, string][] = [];
  const enqueue = (dir: string): void => {
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { dependencies?: Record<string, string>; optionalDependencies?: Record<string, string> };
    for (const name of Object.keys({ ...pkg.dependencies, ...pkg.optionalDependencies })) queue.push([name, dir]);
  };
  enqueue(ROOT);
  while (queue.length > 0) {
    const [name, from] = queue.pop() as [string, string];
    if (found.has(name)) continue;
    let dir: string;
    try {
      dir = locate(name, from);
    } catch {
      continue; // an optional dependency not installed on this platform
    }
    found.set(name, dir);
    enqueue(dir);
  }
  return found;
}

let dworker: string;
beforeAll(() => {
  const out = tempDir();
  execFileSync('npm', ['pack', '--ignore-scripts', '--pack-destination', out], { cwd: ROOT, stdio: 'ignore' });
  const tarball = readdirSync(out).find((f) => f.endsWith('.tgz')) as string;
  execFileSync('tar', ['xzf', join(out, tarball)], { cwd: out });
  const modules = join(out, 'package', 'node_modules');
  for (const [name, dir] of productionPackages()) {
    mkdirSync(dirname(join(modules, name)), { recursive: true });
    symlinkSync(dir, join(modules, name));
  }
  dworker = join(out, 'package', 'dist', 'worker-kit', 'src', 'dworker.js');
}, 60_000);

describe('the packed dworker', () => {
  it('ships without the sources, the tests or the devDependencies', () => {
    const pkg = dirname(dirname(dirname(dirname(dworker))));
    expect(existsSync(join(pkg, 'worker-kit'))).toBe(false);
    expect(existsSync(join(pkg, 'test'))).toBe(false);
    expect(existsSync(join(pkg, 'node_modules', 'vitest'))).toBe(false);
  });

  it('prints its version', async () => {
    const run = await runNode([dworker, '--version']);
    expect(run).toMatchObject({ code: 0, stdout: `${(JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version}\n` });
  });

  it('runs a task against the real hub and exits 0', async () => {
    const hub = await startHub();
    const client = new Client({ hub: hub.endpoint, worker: 'pack-test' });
    try {
      await client.create([{ name: 'packed', payload: 'echo from the tarball' }]);
      const run = await runNode([dworker, '--hub', hub.endpoint, '--worker', 'packed-dw'], { timeoutMs: 30_000 });
      expect(run.stderr).toBe('');
      expect(run.code).toBe(0);
      expect(Buffer.from((await client.lookup('packed')).task.result).toString()).toBe('from the tarball\n');
    } finally {
      client.close();
      await hub.stop();
    }
  });
});
