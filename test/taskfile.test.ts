import { describe, expect, it } from 'vitest';
import { parseDuration } from '../proto/src/args.js';
import { parseTaskFile, TaskFileError } from '../query/src/taskfile.js';
import { stencil } from './helpers.js';

function lineError(text: string): string {
  try {
    parseTaskFile(text);
  } catch (err) {
    if (err instanceof TaskFileError) return err.message;
    throw err;
  }
  return 'no error';
}

describe('task files', () => {
  it("reads dwork's format and JSON Lines, mixed, skipping blanks and comments", () => {
    const specs = parseTaskFile(
      ['# a comment', '0', '1, 0', '', '{"name":"j","deps":["0","1"],"cmd":"echo hi","priority":2,"pool":"gpu","attempts":5,"lease":"10m"}'].join(
        '\n',
      ),
    );
    expect(specs.map((s) => [s.name, s.deps])).toEqual([
      ['0', []],
      ['1', ['0']],
      ['j', ['0', '1']],
    ]);
    expect(specs[2]).toMatchObject({ priority: 2, pool: 'gpu', maxAttempts: 5, leaseMs: 600_000 });
    expect(Buffer.from(specs[2]?.payload ?? []).toString()).toBe('echo hi');
  });

  it('reads a stencil file as gen_tasks.py writes it', () => {
    const specs = parseTaskFile(stencil(4, 3));
    expect(specs).toHaveLength(12);
    expect(specs.find((s) => s.name === '4')?.deps).toEqual(['0', '1']);
    expect(specs.find((s) => s.name === '5')?.deps).toEqual(['0', '1', '2']);
    expect(specs.find((s) => s.name === '7')?.deps).toEqual(['2', '3']);
  });

  it('names the line of every kind of bad input', () => {
    expect(lineError('a\nb,,a\n')).toBe('line 2: empty name in "b,,a" (expected name,dep1,dep2,...)');
    expect(lineError('a\n{"name": "b", "deps": "a"}')).toBe('line 2: "deps" must be a list of task names');
    expect(lineError('{"name": "b", "cmd": "x", "payload": "y"}')).toMatch(/^line 1: give "cmd" or "payload"/);
    expect(lineError('{"name": "b", "comand": "x"}')).toMatch(/^line 1: unknown field "comand"/);
    expect(lineError('{"name": "b",')).toMatch(/^line 1: not valid JSON/);
    expect(lineError('{"name": "b", "lease": "soon"}')).toMatch(/^line 1: "soon" is not a duration/);
    expect(lineError('a\nb,a\na,b\n')).toMatch(/^line 3: task "a" already exists with a different definition/);
    expect(lineError('a,c\nb,a\nc,b\n')).toMatch(/^line \d: task "\w" would close a cycle: /);
    expect(lineError('x\n{"name": "tab\\there"}')).toMatch(/^line 2: task name "tab\\there" holds a control character/);
  });

  it('accepts an identical duplicate line and forward references', () => {
    expect(parseTaskFile('b,a\na\nb,a\n').map((s) => s.name)).toEqual(['b', 'a', 'b']);
  });

  it('parses durations with units, plain numbers as seconds', () => {
    expect([parseDuration('90'), parseDuration('90s'), parseDuration('500ms'), parseDuration('10m'), parseDuration('2h'), parseDuration(1.5)]).toEqual([
      90_000, 90_000, 500, 600_000, 7_200_000, 1500,
    ]);
    expect(() => parseDuration('0')).toThrow(/positive/);
    expect(() => parseDuration('ten')).toThrow(/not a duration/);
  });
});
