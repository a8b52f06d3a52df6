/** Pure parts of sweeps and collect: parameter files, templates, barriers, directory names. */
import { describe, expect, it } from 'vitest';
import { defaultSpecLimits } from '../proto/src/spec.js';
import { resultFileName, taskDirName } from '../query/src/collect.js';
import { UsageError } from '../query/src/io.js';
import { parseParams } from '../query/src/params.js';
import { barriers, checkSweepOptions, inputArg, sweepParser, type SweepArgs, type SweepOptions } from '../query/src/sweep.js';
import { TaskFileError } from '../query/src/taskfile.js';
import { shellQuote, Template, TemplateError } from '../query/src/template.js';

function error(f: () => unknown): Error {
  try {
    f();
  } catch (err) {
    return err as Error;
  }
  throw new Error('no error');
}

describe('parameter files', () => {
  it('reads a header and one set a line, cells separated by |, trimmed', () => {
    const { header, sets } = parseParams('seq | temp\nACGT | 300\nTTGA|310\n');
    expect(header).toEqual(['seq', 'temp']);
    expect(sets).toEqual([
      { line: 2, values: ['ACGT', '300'] },
      { line: 3, values: ['TTGA', '310'] },
    ]);
  });

  it('refuses a ragged line with its line number', () => {
    const err = error(() => parseParams('a|b\n1|2\n\n1|2|3\n'));
    expect(err).toBeInstanceOf(TaskFileError);
    expect(err.message).toBe('line 4: 3 cells, but the header (line 1) has 2: a | b');
  });

  it('skips blank lines and # comments, before and after the header', () => {
    const { header, sets } = parseParams('# made by gen.py\n\nx\n# first\n1\n   \n2\n');
    expect(header).toEqual(['x']);
    expect(sets.map((s) => [s.line, s.values])).toEqual([
      [5, ['1']],
      [7, ['2']],
    ]);
  });

  it('keeps a value starting with # when the line does not start with it', () => {
    expect(parseParams('x|y\n #1|2\n').sets[0]?.values).toEqual(['#1', '2']);
  });

  it('takes another separator, and then | is part of a value', () => {
    expect(parseParams('a,b\nx|y, z\n', ',').sets[0]?.values).toEqual(['x|y', 'z']);
    expect(parseParams('a\tb\n x y \t\n', '\t').sets[0]?.values).toEqual(['x y', '']);
  });

  it('refuses a header whose names are not identifiers, or repeat', () => {
    expect(error(() => parseParams('a|2b\n')).message).toMatch(/^line 1: the header names a parameter "2b": a parameter name is letters, digits and _/);
    expect(error(() => parseParams('a|a\n')).message).toBe('line 1: the header names the parameter "a" twice');
  });

  it('hints at --sep when a comma-separated file is read with |', () => {
    expect(error(() => parseParams('a,b\n')).message).toMatch(/see --sep/);
  });
});

describe('templates', () => {
  it('fills placeholders with shell-quoted values', () => {
    const t = new Template('run --name {name} --n {n}', ['n', 'name'], '--cmd');
    expect(t.fill(['3', "it's a b"], shellQuote)).toBe(`run --name 'it'\\''s a b' --n 3`);
  });

  it('quotes what the shell would read: spaces, quotes, $, globs, the empty value', () => {
    expect(['plain-1.5/x', 'a b', 'a"b', '$HOME', '*', '', 'x;y'].map(shellQuote)).toEqual(['plain-1.5/x', "'a b'", `'a"b'`, "'$HOME'", "'*'", "''", "'x;y'"]);
    // First in a command, NAME=value would set a variable for the rest of it.
    expect(shellQuote('PATH=/tmp/evil')).toBe("'PATH=/tmp/evil'");
  });

  it('refuses an unknown placeholder, naming it and the known ones', () => {
    const err = error(() => new Template('echo {sed}', ['seq', 'temp'], '--cmd'));
    expect(err).toBeInstanceOf(TemplateError);
    expect(err.message).toBe('--cmd: unknown placeholder {sed}; the parameters are {seq}, {temp} (write {{ and }} for literal braces)');
  });

  it('writes {{ and }} as literal braces', () => {
    expect(new Template("awk '{{print ${n}}}'", ['n'], '--cmd').fill(['2'])).toBe("awk '{print $2}'");
  });

  it('refuses an unclosed { and a lone }', () => {
    expect(error(() => new Template('echo {n', ['n'], '--cmd')).message).toMatch(/^--cmd: "\{" at character 6 is not closed/);
    expect(error(() => new Template('echo }', ['n'], '--cmd')).message).toMatch(/^--cmd: a lone "\}" at character 6/);
  });
});

describe('sweep tasks', () => {
  const options: SweepOptions = { sweep: 'runs.txt', cmd: './fold {seq} {temp}', maxDeps: 10_000, after: ['build'], paramFiles: [{ name: 'seq.txt', param: 'seq' }] };
  const run = (text: string, o: SweepOptions = options): ReturnType<NonNullable<ReturnType<typeof sweepParser>['end']>> => {
    const parser = sweepParser(o);
    const lines = text.split('\n');
    const tasks = lines.map((l, i) => parser.parse(l, i + 1)).filter((t) => t !== undefined);
    return [...tasks, ...(parser.end?.(lines.length) ?? [])];
  };

  it('makes a task a set, named SWEEP/LINE, keeping its params, and a barrier on them all', () => {
    const tasks = run('seq|temp\nA C|300\n# skip\nG|310');
    expect(tasks.map((t) => t.name)).toEqual(['runs.txt/2', 'runs.txt/4', 'runs.txt']);
    expect(Buffer.from(tasks[0]?.payload ?? []).toString()).toBe("./fold 'A C' 300");
    expect(tasks[0]).toMatchObject({ deps: ['build'], params: [{ name: 'seq', value: 'A C' }, { name: 'temp', value: '300' }], paramFiles: [{ name: 'seq.txt', param: 'seq' }] });
    expect(tasks[2]).toEqual({ name: 'runs.txt', deps: ['runs.txt/2', 'runs.txt/4'], barrier: true });
  });

  it('names tasks by --name, values as they are', () => {
    expect(run('seq|temp\nA|300', { ...options, name: 'fold-{seq}-{temp}' }).map((t) => t.name)).toEqual(['fold-A-300', 'runs.txt']);
  });

  it('refuses a --param-file naming no parameter, and an unknown placeholder, as bad usage', () => {
    const err = error(() => run('x|temp\n1|2', { ...options, cmd: './fold {x}' }));
    expect(err).toBeInstanceOf(UsageError);
    expect(err.message).toBe('--param-file seq.txt=seq: no parameter "seq"; the parameters are x, temp');
    expect(error(() => run('seq|temp\n1|2', { ...options, cmd: 'echo {pressur}' }))).toBeInstanceOf(UsageError);
    expect(error(() => run('seq|temp\n1|2', { ...options, name: 'r-{tmp}' }))).toBeInstanceOf(UsageError);
  });

  it('says what a barrier is, for errors about it in place of a line', () => {
    const parser = sweepParser(options);
    expect(parser.describe?.('runs.txt')).toBe('the sweep\'s barrier task "runs.txt" (--sweep-name)');
    expect(parser.describe?.('runs.txt/barrier-1-2')).toBe('the sweep\'s sub-barrier task "runs.txt/barrier-1-2" (--sweep-name)');
  });

  it('refuses a file with a header and no set', () => {
    expect(error(() => run('seq|temp\n')).message).toBe('the parameter file has a header (line 1) and no parameter set');
  });

  it('chains sub-barriers past the most dependencies a task may have', () => {
    const names = Array.from({ length: 7 }, (_, i) => `t${i}`);
    expect(barriers('s', names, 3)).toEqual([
      { name: 's/barrier-1-1', deps: ['t0', 't1', 't2'], barrier: true },
      { name: 's/barrier-1-2', deps: ['t3', 't4', 't5'], barrier: true },
      { name: 's/barrier-1-3', deps: ['t6'], barrier: true },
      { name: 's', deps: ['s/barrier-1-1', 's/barrier-1-2', 's/barrier-1-3'], barrier: true },
    ]);
    expect(barriers('s', names, 2).filter((b) => b.deps !== undefined && b.deps.length > 2)).toEqual([]);
  });

  it('splits --input PATH:NAME at the last colon', () => {
    expect(inputArg('bin/fold:tools/fold')).toEqual({ path: 'bin/fold', name: 'tools/fold' });
    expect(inputArg('data.csv')).toEqual({ path: 'data.csv', name: undefined });
  });
});

describe('sweep options, checked before the file is read', () => {
  const args: SweepArgs = { sweep: 'runs.txt', sweepNamed: false, after: [], inputs: [{ arg: 'prog.py', name: 'prog.py' }], outputs: [], paramFiles: [] };
  const usage = (a: Partial<SweepArgs>): string => {
    const err = error(() => checkSweepOptions({ ...args, ...a }, defaultSpecLimits()));
    expect(err).toBeInstanceOf(UsageError);
    return err.message;
  };

  it('takes good options', () => {
    expect(() => checkSweepOptions({ ...args, outputs: ['out/x.pdb'], paramFiles: [{ name: 'in/seq.txt', param: 'seq' }], after: ['build'], pool: 'gpu' }, defaultSpecLimits())).not.toThrow();
  });

  it('names the option of a scratch path the hub would refuse', () => {
    expect(usage({ inputs: [{ arg: 'prog.py:../x', name: '../x' }] })).toBe('--input prog.py:../x: "../x" has an empty, "." or ".." segment');
    expect(usage({ outputs: ['/abs'] })).toBe('--output /abs: "/abs" is absolute; give a path relative to the scratch directory');
    expect(usage({ paramFiles: [{ name: 'a//b', param: 'p' }] })).toBe('--param-file a//b=p: "a//b" has an empty, "." or ".." segment');
  });

  it('refuses two files at one place, and an output that is an input or a param file', () => {
    expect(usage({ inputs: [{ arg: 'a/prog.py', name: 'prog.py' }, { arg: 'b/prog.py', name: 'prog.py' }] })).toBe('--input b/prog.py: --input a/prog.py places a file at "prog.py" already');
    expect(usage({ paramFiles: [{ name: 'prog.py', param: 'a' }] })).toBe('--param-file prog.py=a: --input prog.py places a file at "prog.py" already');
    expect(usage({ outputs: ['prog.py'] })).toBe('--output prog.py: --input prog.py places a file there: an output cannot be an input or a param file too');
    expect(usage({ outputs: ['o', 'o'] })).toBe('--output o: given twice');
  });

  it('refuses names the hub would refuse, and --after naming the sweep itself', () => {
    expect(usage({ after: ['runs.txt'] })).toBe("--after runs.txt: that is this sweep's own barrier task, which waits for the sweep's tasks");
    expect(usage({ after: ['a\tb'] })).toBe('--after: the name "a\\tb" holds a control character');
    expect(usage({ sweep: '', sweepNamed: true })).toBe('--sweep-name: the name is empty');
    expect(usage({ pool: '' })).toBe('--pool: the pool is empty');
  });
});

describe('collect directory names', () => {
  it('keeps plain names and escapes /, .., %, spaces and non-ASCII', () => {
    expect(taskDirName('render-7_a.b')).toBe('render-7_a.b');
    expect(taskDirName('fetch/7 b')).toBe('fetch%2F7%20b');
    expect(taskDirName('..')).toBe('%2E.');
    expect(taskDirName('../../etc')).toBe('%2E.%2F..%2Fetc');
    expect(taskDirName('100%')).toBe('100%25');
    expect(taskDirName('é')).toBe('%C3%A9');
  });

  it('never gives the same directory to two names that differ', () => {
    const names = ['a/b', 'a%2Fb', 'a_b', '.a', '%2Ea', 'a b'];
    expect(new Set(names.map(taskDirName)).size).toBe(names.length);
  });

  it('cuts a name too long for a file name, ending it with a digest', () => {
    const long = '/'.repeat(500);
    const dir = taskDirName(long);
    expect(dir.length).toBeLessThanOrEqual(255);
    expect(dir).toMatch(/^(%2F)+~[0-9a-f]{16}$/);
    expect(taskDirName(`${long}x`)).not.toBe(dir);
  });

  it('puts the result in dagwork.stdout when an output is named stdout', () => {
    expect(resultFileName([])).toBe('stdout');
    expect(resultFileName([{ name: 'stdout', sha256: '0'.repeat(64), size: 0, executable: false }])).toBe('dagwork.stdout');
    const out = (name: string): { name: string; sha256: string; size: number; executable: boolean } => ({ name, sha256: '0'.repeat(64), size: 0, executable: false });
    expect(resultFileName([out('stdout'), out('dagwork.stdout')])).toBe('dagwork.stdout.1');
    expect(resultFileName([out('stdout/a'), out('dagwork.stdout'), out('dagwork.stdout.1/b')])).toBe('dagwork.stdout.2');
  });
});
