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

  it.each([
    ['an empty name in dwork\'s form', 'a\nb,,a\n', /^line 2: empty name in "b,,a" \(expected name,dep1,dep2,...\)$/],
    ['deps that are not a list', 'a\n{"name": "b", "deps": "a"}', /^line 2: "deps" must be a list of task names$/],
    ['both cmd and payload', '{"name": "b", "cmd": "x", "payload": "y"}', /^line 1: give "cmd" or "payload"/],
    ['an unknown field', '{"name": "b", "comand": "x"}', /^line 1: unknown field "comand"/],
    ['JSON that does not parse', '{"name": "b",', /^line 1: not valid JSON/],
    ['a lease that is not a duration', '{"name": "b", "lease": "soon"}', /^line 1: "soon" is not a duration/],
    ['a second, different definition of a name', 'a\nb,a\na,b\n', /^line 3: task "a" already exists with a different definition/],
    ['a cycle', 'a,c\nb,a\nc,b\n', /^line \d: task "\w" would close a cycle: /],
    ['a control character in a name', 'x\n{"name": "tab\\there"}', /^line 2: task name "tab\\there" holds a control character/],
  ])('names the line of %s', (_what, text, message) => {
    expect(lineError(text)).toMatch(message);
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
