/** The benchmark's own parts: /proc readings, finding dwork, the stencil's shape, the drain role's time bound, its options. */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { findDwork, type Probe } from '../bench/src/dwork.js';
import { memory, parseStatCpuMs, parseStatus, resetPeak } from '../bench/src/proc.js';
import { Client } from '../worker-kit/src/index.js';
import { cleanTempDirs, ROOT, runNode, startHub } from './helpers.js';
import { stencilFile } from './support/workloads.js';

const BENCH = join(ROOT, 'dist/bench/src/main.js');
const ROLES = join(ROOT, 'dist/bench/src/roles.js');

afterAll(() => cleanTempDirs());

describe('/proc readings', () => {
  it('reads VmRSS and VmHWM from /proc/PID/status, in bytes', () => {
    const status = 'Name:\tnode\nVmPeak:\t 1000000 kB\nVmHWM:\t  250000 kB\nVmRSS:\t  200000 kB\nRssAnon:\t 150000 kB\n';
    expect(parseStatus(status)).toEqual({ rss: 200000 * 1024, peak: 250000 * 1024 });
    expect(() => parseStatus('Name:\tnode\nVmRSS:\t 1 kB\n')).toThrow(/VmHWM/);
  });

  it('reads user + system CPU time from /proc/PID/stat, past a command name with spaces and parentheses', () => {
    // Fields after the name: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
    const stat = '4242 (odd) name (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 11 0 1 2 3';
    expect(parseStatCpuMs(stat)).toBe((250 + 75) * 10);
    expect(() => parseStatCpuMs('4242 (short) S 1')).toThrow(/utime/);
  });

  it('resets a process peak (VmHWM) to what it holds now', async () => {
    // 200 MiB touched then freed: the peak stays up until reset.
    const child = spawn('/usr/bin/python3', ['-c', "import time\nb = b'\\x01' * (200 * 2**20)\ndel b\nprint('ready', flush=True)\ntime.sleep(30)"], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve) => child.stdout.on('data', (c: Buffer) => c.toString().includes('ready') && resolve()));
      const pid = child.pid as number;
      const before = memory(pid);
      expect(before.peak - before.rss).toBeGreaterThan(150 * 2 ** 20);
      expect(resetPeak(pid)).toBe(true);
      const after = memory(pid);
      expect(after.peak - after.rss).toBeLessThan(16 * 2 ** 20);
    } finally {
      child.kill('SIGKILL');
    }
  });
});

describe('finding dwork', () => {
  const probe = (env: NodeJS.ProcessEnv, elf: string[], files: string[] = []): Probe => ({ env, isElf: (p) => elf.includes(p), exists: (p) => files.includes(p) });

  it("passes over dagwork's own dhub on the PATH and takes the first native one", () => {
    const found = findDwork(probe({ PATH: '/opt/dagwork/bin:/opt/dwork/bin:/usr/bin', DWORK_PROTO: '/src/dwork/proto/TaskMsg.proto' }, ['/opt/dwork/bin/dhub', '/usr/bin/dhub'], ['/src/dwork/proto/TaskMsg.proto']));
    expect(found).toEqual({ dhub: '/opt/dwork/bin/dhub', proto: '/src/dwork/proto/TaskMsg.proto' });
  });

  it('says why it skips', () => {
    expect(findDwork(probe({ PATH: '/usr/bin' }, []))).toEqual({ skip: expect.stringMatching(/no native `dhub` on the PATH and DWORK_DHUB unset/) });
    expect(findDwork(probe({ PATH: '/usr/bin', DWORK_DHUB: '/x/dhub' }, ['/usr/bin/dhub']))).toEqual({ skip: 'DWORK_DHUB=/x/dhub is not a native executable' });
    expect(findDwork(probe({ PATH: '/usr/bin' }, ['/usr/bin/dhub']))).toEqual({ skip: expect.stringMatching(/DWORK_PROTO is unset/) });
    expect(findDwork(probe({ PATH: '/usr/bin', DWORK_PROTO: '/nope.proto' }, ['/usr/bin/dhub']))).toEqual({ skip: 'DWORK_PROTO=/nope.proto does not exist' });
  });

  it('takes DWORK_DHUB before the PATH', () => {
    const found = findDwork(probe({ PATH: '/usr/bin', DWORK_DHUB: '/build/dhub', DWORK_PROTO: '/p.proto' }, ['/usr/bin/dhub', '/build/dhub'], ['/p.proto']));
    expect(found).toEqual({ dhub: '/build/dhub', proto: '/p.proto' });
  });
});

it("makes the stencil of dwork's tests/gen_tasks.py (N=4, T=3)", () => {
  const lines = ['0', '1', '2', '3', '4,0,1', '5,0,1,2', '6,1,2,3', '7,2,3', '8,4,5', '9,4,5,6', '10,5,6,7', '11,6,7'];
  expect(stencilFile(4, 3)).toBe(lines.join('\n') + '\n');
});

it('a drain role given seconds stops then, and completes what it held', async () => {
  const hub = await startHub();
  try {
    const created = await runNode([ROLES, 'create', JSON.stringify({ hub: hub.endpoint, count: 20_000, batch: 10_000 })], { timeoutMs: 60_000 });
    expect(created.code).toBe(0);
    const drained = await runNode([ROLES, 'drain', JSON.stringify({ hub: hub.endpoint, n: 1, seconds: 0.3 })], { timeoutMs: 30_000 });
    expect(drained.code).toBe(0);
    const { count } = JSON.parse(drained.stdout) as { count: number };
    expect(count).toBeGreaterThan(0);
    expect(count).toBeLessThan(20_000);
    const client = new Client({ hub: hub.endpoint, worker: 'check' });
    const status = await client.status();
    client.close();
    // Nothing left leased: what it held at the end was completed (and not counted).
    expect(status.counts.running).toBe(0);
    expect(status.counts.done).toBeGreaterThanOrEqual(count);
    expect(status.counts.done).toBeLessThanOrEqual(count + 1);
  } finally {
    await hub.stop();
  }
});

describe('options', () => {
  it('refuses --huge with --quick or --only, --only huge, and --huge-size alone; hides --huge-size', async () => {
    for (const [args, message] of [
      [['--huge', '--quick'], /--huge runs the huge scenario alone/],
      [['--huge', '--only', 'drain'], /--huge runs the huge scenario alone/],
      [['--only', 'huge'], /unknown scenario huge/],
      [['--huge-size', '5'], /--huge-size goes with --huge/],
    ] as const) {
      const run = await runNode([BENCH, ...args]);
      expect(run.code, args.join(' ')).toBe(1);
      expect(run.stderr).toMatch(message);
    }
    const help = await runNode([BENCH, '--help']);
    expect(help.stdout).toMatch(/--huge /);
    expect(help.stdout).not.toMatch(/--huge-size/);
  });
});
