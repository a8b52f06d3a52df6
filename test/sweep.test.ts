/** dquery sweep, and create/addfile with input files, against the real dhub. */
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Client } from '../worker-kit/src/index.js';
import { cleanTempDirs, dquery, startHub, tempDir, type RunningHub } from './helpers.js';

let hub: RunningHub;
let client: Client;
let dir: string;

beforeEach(async () => {
  hub = await startHub();
  client = new Client({ hub: hub.endpoint, worker: 'w' });
  dir = tempDir();
});

afterEach(async () => {
  client.close();
  await hub.stop();
});

afterAll(() => cleanTempDirs());

/** Writes `text` into `name` in the test's directory; returns its path. */
function file(name: string, text: string, mode = 0o644): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  chmodSync(path, mode);
  return path;
}

async function names(): Promise<string[]> {
  const out: string[] = [];
  for await (const t of client.listAll({})) out.push(t.name);
  return out;
}

/** Steals and completes every ready task, until none is ready. */
async function runAll(): Promise<string[]> {
  const ran: string[] = [];
  for (;;) {
    const { tasks } = await client.steal({ n: 100 });
    if (tasks.length === 0) return ran;
    await client.complete(tasks.map((t) => ({ name: t.name, result: `ran ${t.name}` })));
    ran.push(...tasks.map((t) => t.name));
  }
}

const SWEEP = 'seq | temp\n# a comment\nACGT | 300\n\nit\'s "x" | 310\n';

describe('dquery sweep', () => {
  it('makes one task a parameter set, with its params and a command with quoted values, and a barrier', async () => {
    const params = file('runs.txt', SWEEP);
    const run = await dquery(hub, ['sweep', params, '--cmd', 'fold --temp {temp} {seq}', '--param-file', 'seq.txt=seq']);
    expect(run).toMatchObject({ code: 0, stdout: 'sweep runs.txt: added 3 tasks, the barrier runs.txt among them; depend on the whole sweep with --after runs.txt\n' });
    expect(await names()).toEqual(['runs.txt/3', 'runs.txt/5', 'runs.txt']);
    const { task } = await client.lookup('runs.txt/5');
    expect(Buffer.from(task.spec.payload).toString()).toBe(`fold --temp 310 'it'\\''s "x"'`);
    expect(task.spec.params).toEqual([
      { name: 'seq', value: `it's "x"` },
      { name: 'temp', value: '310' },
    ]);
    expect(task.spec.paramFiles).toEqual([{ name: 'seq.txt', param: 'seq' }]);
    expect((await client.lookup('runs.txt')).task.spec).toMatchObject({ barrier: true, deps: ['runs.txt/3', 'runs.txt/5'] });
  });

  it('changes nothing when the same sweep is added again', async () => {
    const params = file('runs.txt', SWEEP);
    const args = ['sweep', params, '--cmd', 'fold {seq}', '--input', `${file('fold', '#!/bin/sh\n', 0o755)}:bin/fold`];
    expect((await dquery(hub, args)).code).toBe(0);
    const before = (await client.list({ withParams: true })).tasks;
    const again = await dquery(hub, args);
    expect(again).toMatchObject({ code: 0, stdout: 'sweep runs.txt: added 0 tasks (3 were there already), the barrier runs.txt among them; depend on the whole sweep with --after runs.txt\n' });
    expect((await client.list({ withParams: true })).tasks).toEqual(before);
  });

  it('makes the tasks wait for --after, and a task after the sweep waits for all of it', async () => {
    await client.create([{ name: 'build' }]);
    expect((await dquery(hub, ['sweep', file('runs.txt', SWEEP), '--cmd', 'fold {seq}', '--after', 'build'])).code).toBe(0);
    const report = await dquery(hub, ['create', 'report', '--after', 'runs.txt', '--cmd', 'cat']);
    expect(report).toMatchObject({ code: 0, stderr: '' });
    expect(await runAll()).toEqual(['build', 'runs.txt/3', 'runs.txt/5', 'report']);
    expect((await client.lookup('runs.txt')).task.state).toBe('done');
  });

  it('refuses a ragged line with its number, adding nothing', async () => {
    const run = await dquery(hub, ['sweep', file('runs.txt', 'a|b\n1|2\n1|2|3\n'), '--cmd', 'echo {a}']);
    expect(run.code).toBe(1);
    expect(run.stderr).toBe('dquery: line 3: 3 cells, but the header (line 1) has 2: a | b\n');
    expect(await names()).toEqual([]);
  });

  it('refuses an unknown placeholder, naming it and the parameters (bad usage)', async () => {
    const run = await dquery(hub, ['sweep', file('runs.txt', 'a|b\n1|2\n'), '--cmd', 'echo {c}']);
    expect(run).toMatchObject({ code: 2, stderr: 'dquery: --cmd: unknown placeholder {c}; the parameters are {a}, {b} (write {{ and }} for literal braces)\n' });
    expect(await names()).toEqual([]);
  });

  it('adds nothing when an --input path does not exist', async () => {
    const missing = join(dir, 'no-such-file');
    const run = await dquery(hub, ['sweep', file('runs.txt', SWEEP), '--cmd', 'fold {seq}', '--input', missing]);
    expect(run.code).toBe(1);
    expect(run.stderr).toBe(`dquery: input file ${missing} does not exist; nothing was sent\n`);
    expect(await names()).toEqual([]);
    expect((await client.status()).files).toBe(0);
  });

  it('ships an --input to every task, uploaded once, its run bit kept', async () => {
    const fold = file('fold', '#!/bin/sh\necho folded\n', 0o755);
    expect((await dquery(hub, ['sweep', file('runs.txt', SWEEP), '--cmd', './fold {seq}', '--input', fold, '--output', 'out.pdb'])).code).toBe(0);
    const { tasks } = await client.steal({ n: 10 });
    expect(tasks).toHaveLength(2);
    for (const t of tasks) {
      expect(t.inputs).toEqual([{ name: 'fold', sha256: expect.stringMatching(/^[0-9a-f]{64}$/), size: 22, executable: true }]);
      expect(t.outputs).toEqual(['out.pdb']);
    }
    expect((await client.status()).files).toBe(1);
  });

  it('cuts batches by their params, inputs, outputs and param files too (the hub\'s --max-batch)', async () => {
    await hub.stop();
    hub = await startHub({ args: ['--max-batch', '10'] });
    client.close();
    client = new Client({ hub: hub.endpoint, worker: 'w' });
    // 6 items a task (3 params, a param file, an input, an output): 10 items a request is one task.
    const rows = Array.from({ length: 5 }, (_, i) => `${i}|x|y`).join('\n');
    const run = await dquery(hub, ['sweep', file('big.txt', `a|b|c\n${rows}\n`), '--cmd', 'echo {a}', '--param-file', 'a.txt=a', '--input', file('in', 'i'), '--output', 'o']);
    expect(run).toMatchObject({ code: 0, stdout: 'sweep big.txt: added 6 tasks, the barrier big.txt among them; depend on the whole sweep with --after big.txt\n' });
  });

  it('names a sweep read from standard input by --sweep-name', async () => {
    const run = await dquery(hub, ['sweep', '-', '--sweep-name', 'mc', '--cmd', 'sim {n}', '--name', 'mc-{n}'], { input: 'n\n1\n2\n' });
    expect(run.code).toBe(0);
    expect(await names()).toEqual(['mc-1', 'mc-2', 'mc']);
  });
});

describe('list --params and lookup', () => {
  it('list --params shows each task\'s parameters, in the table and in JSON', async () => {
    await dquery(hub, ['sweep', file('runs.txt', SWEEP), '--cmd', 'fold {seq}']);
    const table = await dquery(hub, ['list', '--params', '--prefix', 'runs.txt/']);
    expect(table.stdout.split('\n')[0]).toMatch(/^name +state +attempts +worker +params +last error$/);
    expect(table.stdout.split('\n')[2]).toMatch(/^runs\.txt\/5 +ready +0 +seq="it's \\"x\\"" temp=310$/);
    const json = await dquery(hub, ['list', '--params', '--json', '--prefix', 'runs.txt/3']);
    expect(JSON.parse(json.stdout)).toMatchObject({ name: 'runs.txt/3', params: { seq: 'ACGT', temp: '300' }, createdAt: expect.any(Number), startedAt: 0 });
  });

  it('lookup shows params, inputs with their hashes and sizes, and outputs', async () => {
    const tool = file('tool', 'abc', 0o755);
    await dquery(hub, ['sweep', file('runs.txt', 'n\n7\n'), '--cmd', './tool {n}', '--input', tool, '--output', 'o.txt', '--param-file', 'n.txt=n']);
    const run = await dquery(hub, ['lookup', 'runs.txt/2']);
    expect(run.stdout).toContain('params:      n=7\n');
    expect(run.stdout).toMatch(/\ninput: +tool  3 bytes, executable  sha256:[0-9a-f]{64}\n/);
    expect(run.stdout).toContain('param file:  n.txt (holds param n)\n');
    expect(run.stdout).toContain('output:      o.txt  (not yet uploaded)\n');
  });
});

describe('create and addfile with input files', () => {
  it('create --input uploads the file and names it in the task; --output declares one', async () => {
    const tool = file('tool.sh', 'echo hi\n', 0o755);
    const run = await dquery(hub, ['create', 'one', '--cmd', './t', '--input', `${tool}:t`, '--output', 'res.txt']);
    expect(run).toMatchObject({ code: 0, stdout: 'created one\n' });
    const { task } = await client.lookup('one');
    expect(task.spec.inputs).toEqual([{ name: 't', sha256: expect.stringMatching(/^[0-9a-f]{64}$/), size: 8, executable: true }]);
    expect(task.spec.outputs).toEqual(['res.txt']);
    const got = await client.fileGet(task.spec.inputs[0]?.sha256 ?? '', 0);
    expect(Buffer.from(got.data).toString()).toBe('echo hi\n');
  });

  it('create refuses a missing --input, creating nothing', async () => {
    const run = await dquery(hub, ['create', 'one', '--input', join(dir, 'nope')]);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/nope does not exist; nothing was sent/);
    expect(await names()).toEqual([]);
  });

  it('addfile takes inputs (paths relative to the file, each uploaded once), outputs and params', async () => {
    file('data.csv', '1,2\n');
    const tasks = file(
      'tasks.jsonl',
      ['{"name":"a","cmd":"wc data","inputs":{"data":"data.csv"},"outputs":["n.txt"],"params":{"k":"1"}}', '{"name":"b","inputs":{"in/d.csv":"./data.csv"}}'].join('\n'),
    );
    const run = await dquery(hub, ['addfile', tasks]);
    expect(run).toMatchObject({ code: 0, stdout: 'added 2 tasks\n' });
    const a = (await client.lookup('a')).task.spec;
    const b = (await client.lookup('b')).task.spec;
    expect(a).toMatchObject({ outputs: ['n.txt'], params: [{ name: 'k', value: '1' }] });
    expect(a.inputs[0]).toMatchObject({ name: 'data', size: 4 });
    expect(b.inputs[0]).toMatchObject({ name: 'in/d.csv', sha256: a.inputs[0]?.sha256 });
    expect((await client.status()).files).toBe(1);
  });

  it('addfile refuses a missing input path, naming the line, adding nothing', async () => {
    const tasks = file('tasks.jsonl', '{"name":"a"}\n{"name":"b","inputs":{"x":"missing.bin"}}\n');
    const run = await dquery(hub, ['addfile', tasks]);
    expect(run.code).toBe(1);
    expect(run.stderr).toBe(`dquery: line 2: input file missing.bin (${join(dir, 'missing.bin')}) does not exist\n`);
    expect(await names()).toEqual([]);
  });
});

describe('sweep: bad options are bad usage, named as options, before the file is read', () => {
  const PARAMS = 'a|b\n1|2\n';

  it.each([
    ['an --input name with ..', ['--input', 'PROG:../x'], '--input PROG:../x: "../x" has an empty, "." or ".." segment'],
    ['an --output that is also an --input', ['--input', 'PROG', '--output', 'prog.py'], '--output prog.py: --input PROG places a file there: an output cannot be an input or a param file too'],
    ['two --inputs at one name', ['--input', 'PROG', '--input', 'PROG:prog.py'], '--input PROG:prog.py: --input PROG places a file at "prog.py" already'],
    ['a --param-file at an --input', ['--input', 'PROG', '--param-file', 'prog.py=a'], '--param-file prog.py=a: --input PROG places a file at "prog.py" already'],
  ])('refuses %s, exit 2, adding nothing', async (_what, options, message) => {
    const prog = file('prog.py', 'print(1)\n');
    const args = options.map((o) => o.replace('PROG', prog));
    const run = await dquery(hub, ['sweep', file('f.txt', PARAMS), '--cmd', 'echo {a}', ...args]);
    expect(run).toMatchObject({ code: 2, stderr: `dquery: ${message.replace('PROG', prog).replace('PROG', prog)}\n` });
    expect(await names()).toEqual([]);
  });

  it('checks the options even when PARAMS does not exist', async () => {
    const run = await dquery(hub, ['sweep', join(dir, 'nosuch.txt'), '--cmd', 'echo', '--output', '../x']);
    expect(run).toMatchObject({ code: 2, stderr: 'dquery: --output ../x: "../x" has an empty, "." or ".." segment\n' });
  });

  it.each([
    ['a malformed --param-file', ['--cmd', 'echo {a}', '--param-file', 'a'], /^error: option '--param-file <name=param>' argument 'a' is invalid\. write NAME=PARAM/],
    ['a --param-file naming no parameter', ['--cmd', 'echo {a}', '--param-file', 'x.cfg=nope'], /^dquery: --param-file x\.cfg=nope: no parameter "nope"; the parameters are a, b\n$/],
    ['an unknown placeholder in --cmd', ['--cmd', 'echo {pressur}'], /^dquery: --cmd: unknown placeholder \{pressur\}/],
    ['an unknown placeholder in --name', ['--cmd', 'echo', '--name', 'r-{tmp}'], /^dquery: --name: unknown placeholder \{tmp\}/],
    ['a --sep it does not know', ['--cmd', 'echo', '--sep', ':'], /^dquery: --sep ":": give "\|" \(default\), ",", ";" or tab\n$/],
  ])('exits 2 for %s', async (_what, options, message) => {
    const run = await dquery(hub, ['sweep', file('f.txt', PARAMS), ...options]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(message);
    expect(await names()).toEqual([]);
  });

  it('names --after, not a line, in the warning about a dependency that exists nowhere', async () => {
    const run = await dquery(hub, ['sweep', file('f.txt', PARAMS), '--cmd', 'echo {a}', '--after', 'nosuchtask']);
    expect(run.code).toBe(0);
    expect(run.stderr).toBe(
      'dquery: warning: 1 name the file depends on exists neither in it nor in the hub: nosuchtask (--after); the tasks that need them wait until tasks of those names are created (dquery status counts them; --strict refuses such a file)\n',
    );
    const strict = await dquery(hub, ['sweep', file('g.txt', PARAMS), '--cmd', 'echo {a}', '--after', 'nosuchtask', '--strict']);
    expect(strict.stderr).toBe('dquery: 1 name the file depends on exists neither in it nor in the hub: nosuchtask (--after); nothing was added (--strict)\n');
  });

  it("names the sweep's barrier, not a line past the file's end, when the hub refuses it", async () => {
    await client.create([{ name: 'summary', payload: Buffer.from('echo') }]);
    const run = await dquery(hub, ['sweep', file('f.txt', PARAMS), '--cmd', 'echo {a}', '--sweep-name', 'summary']);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^dquery: the sweep's barrier task "summary" \(--sweep-name\): CONFLICT: /);
    expect(run.stderr).not.toMatch(/line 3/);
  });

  it("names the sweep's barrier when it clashes with a task of the sweep", async () => {
    const run = await dquery(hub, ['sweep', file('f.txt', PARAMS), '--cmd', 'echo {a}', '--name', 'x{a}', '--sweep-name', 'x1']);
    expect(run).toMatchObject({ code: 1, stderr: 'dquery: the sweep\'s barrier task "x1" (--sweep-name): task "x1" is defined differently on line 2\n' });
    expect(await names()).toEqual([]);
  });

  it('says --sep plainly in --help', async () => {
    const help = (await dquery(hub, ['sweep', '--help'])).stdout.replace(/\s+/g, ' ');
    expect(help).toContain('--sep <sep> cell separator: "|" (default), ",", ";" or tab ');
    expect(help).toContain('cells separated by | (--sep , ; or tab)');
  });

  it('shell-quotes the sweep name in its message when it needs it', async () => {
    const run = await dquery(hub, ['sweep', file('we ird name.txt', PARAMS), '--cmd', 'echo {a}']);
    expect(run.stdout).toBe("sweep we ird name.txt: added 2 tasks, the barrier we ird name.txt among them; depend on the whole sweep with --after 'we ird name.txt'\n");
  });
});

describe('missing files', () => {
  it('says a PARAMS file or a task file does not exist, or is a directory, without a raw system error', async () => {
    const sweep = await dquery(hub, ['sweep', join(dir, 'nosuchfile.txt'), '--cmd', 'echo']);
    expect(sweep).toMatchObject({ code: 1, stderr: `dquery: PARAMS file ${join(dir, 'nosuchfile.txt')} does not exist\n` });
    const addfile = await dquery(hub, ['addfile', join(dir, 'nosuch.jsonl')]);
    expect(addfile).toMatchObject({ code: 1, stderr: `dquery: task file ${join(dir, 'nosuch.jsonl')} does not exist\n` });
    expect(await dquery(hub, ['addfile', dir])).toMatchObject({ code: 1, stderr: `dquery: task file ${dir} is a directory\n` });
    expect(await dquery(hub, ['sweep', dir, '--cmd', 'echo'])).toMatchObject({ code: 1, stderr: `dquery: PARAMS file ${dir} is a directory\n` });
  });
});

describe('task files with params and param files', () => {
  it('addfile refuses a param written as a JSON number, naming the line, and takes param_files', async () => {
    const bad = file('bad.jsonl', '{"name":"m"}\n{"name":"n","cmd":"true","params":{"a":1.0}}\n');
    const run = await dquery(hub, ['addfile', bad]);
    expect(run).toMatchObject({
      code: 1,
      stderr: 'dquery: line 2: params "a": write the value as a string, "1.0": a JSON number loses its form (1.0 becomes 1, big integers are rounded)\n',
    });
    const good = file('good.jsonl', '{"name":"n","cmd":"cat a.txt","params":{"a":"1.0"},"param_files":{"a.txt":"a"}}\n');
    expect((await dquery(hub, ['addfile', good])).code).toBe(0);
    expect((await client.lookup('n')).task.spec).toMatchObject({ params: [{ name: 'a', value: '1.0' }], paramFiles: [{ name: 'a.txt', param: 'a' }] });
  });

  it('addfile --help shows inputs, outputs, params and param_files', async () => {
    const help = (await dquery(hub, ['addfile', '--help'])).stdout;
    expect(help).toContain('"params":{"seq":"ACGT","temp":"300"},"inputs":{"fold":"bin/fold"},"param_files":{"seq.txt":"seq"},"outputs":["out.pdb"]}');
    expect(help).toContain('"1.0", not 1.0');
  });
});
