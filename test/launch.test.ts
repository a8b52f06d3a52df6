/**
 * dquery launch, with a fake ssh: a sh script that records its argv (one file per call) and fails
 * for the host `bad`; with FAKE_SSH_RUN=1 it runs the remote command locally with `sh -c`, as sshd
 * would, so that real dworkers drain a real hub (the quoting proved end to end).
 */
import { chmodSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { execFileSync, spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { Client } from '../worker-kit/src/index.js';
import { cleanTempDirs, DQUERY, ROOT, runNode, startHub, tempDir, type Run } from './helpers.js';
import { parseHosts, shellQuote, splitWords } from '../query/src/launch.js';

const FAKE_SSH = `#!/bin/sh
# Records this call's argv, NUL-separated, in $FAKE_SSH_DIR/calls/PID; the host is the word before --.
printf '%s\\0' "$@" > "$FAKE_SSH_DIR/calls/$$"
host=; prev=; remote=
while [ $# -gt 0 ]; do
  if [ "$1" = -- ]; then host=$prev; remote=$2; break; fi
  prev=$1; shift
done
if [ "$host" = hang ]; then exec sleep 30; fi
if [ -n "$FAKE_SSH_SLOW" ]; then
  # How many calls run at once: each marks itself in running/ while it lasts, the most seen kept.
  touch "$FAKE_SSH_DIR/running/$$"; n=$(ls "$FAKE_SSH_DIR/running" | wc -l); echo "$n" >> "$FAKE_SSH_DIR/at-once"
  sleep "$FAKE_SSH_SLOW"; rm "$FAKE_SSH_DIR/running/$$"
fi
if [ "$host" = bad ]; then echo "ssh: connect to host bad port 22: No route to host" >&2; exit 255; fi
[ "$FAKE_SSH_RUN" = 1 ] && exec sh -c "$remote"
exit 0
`;

let dir: string;
let ssh: string;

beforeEach(() => {
  dir = tempDir();
  mkdirSync(join(dir, 'calls'));
  mkdirSync(join(dir, 'running'));
  ssh = join(dir, 'fake ssh'); // a space in its path: --ssh is split as shell words
  writeFileSync(ssh, FAKE_SSH);
  chmodSync(ssh, 0o755);
});

afterAll(() => cleanTempDirs());

/** Each call the fake ssh got: its argv (program excluded). */
function calls(): string[][] {
  return readdirSync(join(dir, 'calls')).map((f) => readFileSync(join(dir, 'calls', f), 'utf8').split('\0').slice(0, -1));
}

function hostsFile(text: string): string {
  const path = join(dir, 'hosts');
  writeFileSync(path, text);
  return path;
}

function launch(args: string[], options: { env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number } = {}): Promise<Run> {
  return runNode([DQUERY, 'launch', ...args], { env: { DAGWORK_HUB: 'tcp://hub-node:6125', FAKE_SSH_DIR: dir, ...options.env }, ...(options.input === undefined ? {} : { input: options.input }), timeoutMs: options.timeoutMs ?? 30_000 });
}

describe('launch: the pieces', () => {
  it('quotes a word for the remote shell so that sh gives it back intact', () => {
    const word = `it's a "pool" $HOME \`x\` \\ ;|&`;
    expect(execFileSync('sh', ['-c', `printf %s ${shellQuote(word)}`], { encoding: 'utf8' })).toBe(word);
    expect(shellQuote('tcp://hub-node:6125')).toBe('tcp://hub-node:6125');
  });

  it('splits --ssh as a shell splits words', () => {
    expect(splitWords(`ssh -p 2222 -o 'ProxyJump gate' "a \\"b\\"" c\\ d`)).toEqual(['ssh', '-p', '2222', '-o', 'ProxyJump gate', 'a "b"', 'c d']);
    expect(() => splitWords(`ssh 'open`)).toThrow(/unclosed/);
  });

  it('reads hosts: user@host, comments, blank lines, their line numbers', () => {
    expect(parseHosts('# cluster\nnode1\n\n  bob@node2   # gpu\n')).toEqual([
      { target: 'node1', name: 'node1', line: 2 },
      { target: 'bob@node2', name: 'node2', line: 4 },
    ]);
    expect(() => parseHosts('node1\nnode1\n')).toThrow('line 2: "node1": listed already on line 1');
  });
});

describe('dquery launch', () => {
  it('runs one ssh command a host: -o BatchMode, the host, --, dworker with --hub, --worker and the options after --, quoted', async () => {
    const run = await launch([hostsFile('alpha\nbob@beta\n'), '--ssh', `'${ssh}' -p 2222`, '--', '--pool', `it's "big"`, '-c', '4']);
    expect(run).toMatchObject({ code: 0, stdout: 'started 2 of 2 workers on 2 hosts\n' });
    const got = calls().sort((a, b) => a.join().localeCompare(b.join()));
    expect(got.map((c) => c.slice(0, 4))).toEqual([
      ['-p', '2222', 'alpha', '--'],
      ['-p', '2222', 'bob@beta', '--'],
    ]);
    expect(got[0]?.[4]).toContain(`nohup dworker --hub tcp://hub-node:6125 --worker alpha-1 --pool 'it'\\''s "big"' -c 4 >./dworker-alpha-1.log 2>&1 </dev/null &`);
    expect(got[1]?.[4]).toContain('--worker beta-1 ');
  });

  it('reports the host that failed, with the ssh exit status and its stderr, and exits 1', async () => {
    const run = await launch([hostsFile('alpha\nbad\ngamma\n'), '--ssh', `'${ssh}'`]);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('started 2 of 3 workers on 3 hosts; failed on 1 host: bad\n');
    expect(run.stderr).toBe('dquery: launch: bad-1 on bad (line 2): exit 255: ssh: connect to host bad port 22: No route to host\n');
    expect(calls()).toHaveLength(3);
  });

  it('--json reports each worker', async () => {
    const run = await launch([hostsFile('alpha\nbad\n'), '--ssh', `'${ssh}'`, '--json']);
    expect(run.code).toBe(1);
    const report = JSON.parse(run.stdout) as { workers: { worker: string; ok: boolean; code: number; reason: string }[]; failedHosts: string[] };
    expect(report.failedHosts).toEqual(['bad']);
    expect(report.workers.map((w) => [w.worker, w.ok, w.code])).toEqual([
      ['alpha-1', true, 0],
      ['bad-1', false, 255],
    ]);
    expect(report.workers[1]?.reason).toContain('No route to host');
  });

  it('--parallel N: at most N ssh commands at once', async () => {
    const run = await launch([hostsFile('h1\nh2\nh3\nh4\nh5\nh6\n'), '--ssh', `'${ssh}'`, '--parallel', '2'], { env: { FAKE_SSH_SLOW: '0.3' } });
    expect(run.code).toBe(0);
    const seen = readFileSync(join(dir, 'at-once'), 'utf8').trim().split('\n').map(Number);
    expect(seen).toHaveLength(6);
    expect(Math.max(...seen)).toBeLessThanOrEqual(2);
  });

  it('--start-timeout: a start that hangs is killed and reported, the others started', async () => {
    const run = await launch([hostsFile('alpha\nhang\n'), '--ssh', `'${ssh}'`, '--start-timeout', '1']);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('started 1 of 2 workers on 2 hosts; failed on 1 host: hang\n');
    expect(run.stderr).toContain('hang-1 on hang (line 2): timed out after 1 s: killed by SIGTERM');
    const pid = Number(readdirSync(join(dir, 'calls')).find((f) => readFileSync(join(dir, 'calls', f), 'utf8').includes('hang\0')));
    expect(alive(pid)).toBe(false);
  });

  it('--per-host N starts N workers a host, each with its own id', async () => {
    const run = await launch([hostsFile('alpha\nbeta\n'), '--ssh', `'${ssh}'`, '--per-host', '3']);
    expect(run.code).toBe(0);
    const ids = calls().map((c) => /--worker (\S+)/.exec(c[c.length - 1] as string)?.[1]);
    expect(ids.sort()).toEqual(['alpha-1', 'alpha-2', 'alpha-3', 'beta-1', 'beta-2', 'beta-3']);
  });

  it('--dry-run prints the commands and runs nothing', async () => {
    const run = await launch([hostsFile('alpha\nbad\n'), '--ssh', `'${ssh}'`, '--dry-run', '--', '--max-time', '1h']);
    expect(run.code).toBe(0);
    const lines = run.stdout.trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^'.*fake ssh' alpha -- '.*--worker alpha-1 --max-time 1h .*'$/);
    expect(calls()).toEqual([]);
  });

  it('refuses a bad hosts line with its number, and starts nothing', async () => {
    const run = await launch([hostsFile('alpha\n# fine\nbeta; rm -rf /\n'), '--ssh', `'${ssh}'`]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('line 3: "beta; rm -rf /": one host a line, without spaces; nothing started');
    const metachar = await launch(['-', '--ssh', `'${ssh}'`], { input: 'alpha\n$(reboot)\n' });
    expect(metachar.code).toBe(2);
    expect(metachar.stderr).toContain('line 2: "$(reboot)": not a host name');
    expect(calls()).toEqual([]);
  });

  it('refuses --worker after -- (each worker gets its own), and a launch without a hub', async () => {
    const worker = await launch([hostsFile('alpha\n'), '--ssh', `'${ssh}'`, '--', '--worker', 'x']);
    expect(worker).toMatchObject({ code: 2 });
    expect(worker.stderr).toContain('--worker after --');
    const noHub = await launch([hostsFile('alpha\n'), '--ssh', `'${ssh}'`], { env: { DAGWORK_HUB: '' } });
    expect(noHub.code).toBe(2);
    expect(noHub.stderr).toContain('give the hub');
    expect(calls()).toEqual([]);
  });

  it('--wait: dworkers started through the fake ssh drain a real hub, the options after -- reaching them intact', async () => {
    const hub = await startHub();
    const client = new Client({ hub: hub.endpoint, worker: 'test' });
    try {
      const names = ['t1', 't2', 't3', 't4', 't5', 't6'];
      await client.create(names.map((name) => ({ name, payload: 'printf "%s|%s" "$DAGWORK_WORKER" "$(pwd)"' })));
      const bin = join(dir, 'bin');
      mkdirSync(bin);
      writeFileSync(join(bin, 'dworker'), `#!/bin/sh\nexec '${process.execPath}' '${join(ROOT, 'dist/worker-kit/src/dworker.js')}' "$@"\n`);
      chmodSync(join(bin, 'dworker'), 0o755);
      const scratch = join(dir, `scratch it's "here"`);
      mkdirSync(scratch);
      const run = await launch([hostsFile('alpha\nbeta\n'), '--ssh', `'${ssh}'`, '--per-host', '2', '--wait', '--', '--scratch', scratch, '-c', '1'], {
        env: { DAGWORK_HUB: hub.endpoint, FAKE_SSH_RUN: '1', PATH: `${bin}:${process.env.PATH ?? ''}` },
        timeoutMs: 50_000,
      });
      expect(run.stderr).not.toContain('dquery:');
      expect(run.code).toBe(0);
      expect(run.stdout).toContain('4 workers on 2 hosts: 4 ended with 0 or 3, 0 failed');
      for (const id of ['alpha-1', 'alpha-2', 'beta-1', 'beta-2']) expect(run.stdout).toContain(`${id}: exit 0`);
      const ids = new Set<string>();
      for (const name of names) {
        const { task } = await client.lookup(name);
        expect(task.state).toBe('done');
        const [worker, pwd] = Buffer.from(task.result).toString('utf8').split('|') as [string, string];
        expect(['alpha-1', 'alpha-2', 'beta-1', 'beta-2']).toContain(worker);
        expect(task.worker).toBe(worker);
        expect(pwd.startsWith(scratch)).toBe(true);
        ids.add(worker);
      }
      expect(ids.size).toBeGreaterThan(0);
    } finally {
      client.close();
      await hub.stop();
    }
  });

  it('--wait: a session that fails to connect is reported with its status, the rest still followed', async () => {
    const run = await launch([hostsFile('alpha\nbad\n'), '--ssh', `'${ssh}'`, '--wait', '--dworker', 'true'], { env: { FAKE_SSH_RUN: '1' } });
    expect(run.code).toBe(1);
    expect(run.stdout).toContain('alpha-1: exit 0\nbad-1: exit 255\n');
    expect(run.stderr).toContain('dquery: launch: bad-1 on bad (line 2): exit 255: ssh: connect to host bad port 22: No route to host');
  });

  it('--wait: SIGINT kills the ssh sessions, leaves none running, and exits 130', async () => {
    const child = spawn(process.execPath, [DQUERY, 'launch', hostsFile('alpha\nbeta\n'), '--ssh', `'${ssh}'`, '--wait', '--dworker', `sh -c 'exec sleep 60' sh`], {
      env: { ...process.env, DAGWORK_HUB: 'tcp://hub-node:6125', FAKE_SSH_DIR: dir, FAKE_SSH_RUN: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    // Both sessions are up (each call file is named after the PID that becomes `sleep`).
    for (let i = 0; i < 200 && calls().length < 2; i++) await new Promise((r) => setTimeout(r, 25));
    const pids = readdirSync(join(dir, 'calls')).map(Number);
    expect(pids).toHaveLength(2);
    child.kill('SIGINT');
    expect(await exited).toBe(130);
    expect(stdout).toContain('alpha-1: killed by SIGTERM');
    for (const pid of pids) expect(alive(pid)).toBe(false);
  });
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
