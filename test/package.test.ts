/**
 * The package as a user installs it: `npm pack`, then installed into a project of its own, used
 * from ESM JavaScript and from TypeScript (modern and node10 resolution), and its three commands
 * run through npx there.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '../worker-kit/src/index.js';
import { cleanTempDirs, ROOT, runNode, startHub, tempDir } from './helpers.js';

let project: string;

beforeAll(() => {
  const packed = tempDir('dagwork-pack-');
  // --ignore-scripts: dist/ is built already (npm test builds first); no rebuild under running tests.
  execFileSync('npm', ['pack', '--ignore-scripts', '--pack-destination', packed], { cwd: ROOT, stdio: 'pipe' });
  const tarball = readdirSync(packed).find((f) => f.endsWith('.tgz'));
  if (tarball === undefined) throw new Error('npm pack wrote no tarball');
  project = tempDir('dagwork-user-');
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'user-project', private: true, type: 'module' }));
  execFileSync('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', join(packed, tarball)], { cwd: project, stdio: 'pipe', timeout: 120_000 });
}, 180_000);

afterAll(cleanTempDirs);

const run = (command: string, args: string[]): { status: number | null; out: string } => {
  const r = spawnSync(command, args, { cwd: project, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
};

describe('the commands from a clone', () => {
  it('are put on PATH by npm link, as README says', () => {
    const prefix = tempDir('dagwork-prefix-');
    // --ignore-scripts: no rebuild under running tests (a user's `npm link` rebuilds dist/ first).
    execFileSync('npm', ['link', '--ignore-scripts'], { cwd: ROOT, stdio: 'pipe', env: { ...process.env, npm_config_prefix: prefix } });
    const r = spawnSync('dhub', ['--version'], { encoding: 'utf8', env: { ...process.env, PATH: `${join(prefix, 'bin')}:${process.env.PATH ?? ''}` } });
    expect({ status: r.status, out: r.stdout }).toEqual({ status: 0, out: '0.1.0\n' });
  });
});

describe('the installed package', () => {
  it("ships the built code, the contract, the dashboard's pages and the licence, and neither the bench nor the tests", () => {
    const root = join(project, 'node_modules/dagwork');
    expect(readdirSync(root).sort()).toEqual(['LICENSE', 'README.md', 'dist', 'hub', 'package.json', 'proto']);
    expect(readdirSync(join(root, 'hub'))).toEqual(['static']);
    expect(readdirSync(join(root, 'hub/static')).sort()).toEqual(readdirSync(join(ROOT, 'hub/static')).sort());
    expect(readdirSync(join(root, 'dist')).sort()).toEqual(['hub', 'proto', 'query', 'worker-kit']);
  });

  it('is imported from ESM JavaScript, at its root and as dagwork/worker-kit', () => {
    writeFileSync(
      join(project, 'use.mjs'),
      "import { Client } from 'dagwork';\nimport { runWorker, DagworkError } from 'dagwork/worker-kit';\n" +
        "const c = new Client({ hub: 'tcp://127.0.0.1:9' });\nc.close();\nconsole.log(typeof runWorker, typeof DagworkError);\n",
    );
    expect(run(process.execPath, ['use.mjs'])).toEqual({ status: 0, out: 'function function\n' });
  });

  it('type-checks from TypeScript with nodenext resolution', () => {
    writeFileSync(
      join(project, 'use.ts'),
      "import { Client, type TaskSpecInput } from 'dagwork/worker-kit';\n" +
        "const tasks: TaskSpecInput[] = [{ name: 'a', deps: [] }];\nexport const n: number = tasks.length;\nexport const c = new Client();\n",
    );
    const tsc = join(ROOT, 'node_modules/typescript/bin/tsc');
    const r = run(process.execPath, [tsc, '--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', 'use.ts']);
    expect(r).toEqual({ status: 0, out: '' });
  });

  it('type-checks from TypeScript with node10 resolution', () => {
    writeFileSync(join(project, 'old.ts'), "import { Client } from 'dagwork/worker-kit';\nexport const c: Client | undefined = undefined;\n");
    const tsc = join(ROOT, 'node_modules/typescript/bin/tsc');
    const r = run(process.execPath, [tsc, '--noEmit', '--strict', '--module', 'commonjs', '--moduleResolution', 'node10', 'old.ts']);
    expect(r).toEqual({ status: 0, out: '' });
  });

  it('runs a task with its dworker against the real hub, exiting 0', async () => {
    const hub = await startHub();
    const client = new Client({ hub: hub.endpoint, worker: 'package-test' });
    try {
      await client.create([{ name: 'packed', payload: 'echo from the tarball' }]);
      const dworker = join(project, 'node_modules/dagwork/dist/worker-kit/src/dworker.js');
      const run = await runNode([dworker, '--hub', hub.endpoint, '--worker', 'packed-dw'], { timeoutMs: 30_000 });
      expect(run).toMatchObject({ code: 0, stderr: '' });
      expect(Buffer.from((await client.lookup('packed')).task.result).toString()).toBe('from the tarball\n');
    } finally {
      client.close();
      await hub.stop();
    }
  });

  it('runs dhub, dquery and dworker through npx', () => {
    for (const bin of ['dhub', 'dquery', 'dworker']) {
      const r = run('npx', ['--no-install', bin, '--version']);
      expect(r, bin).toEqual({ status: 0, out: '0.1.0\n' });
    }
  });
});
