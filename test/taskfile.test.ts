import { describe, expect, it } from 'vitest';
import { parseDuration } from '../proto/src/args.js';
import { splitLines } from '../query/src/lines.js';
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
    const { specs } = parseTaskFile(
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
    const { specs } = parseTaskFile(stencil(4, 3));
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
    ['a second, different definition of a name', 'a\nb,a\na,b\n', /^line 3: task "a" is defined differently on line 1$/],
    ['a cycle', 'a,c\nb,a\nc,b\n', /^line \d: task "\w" would close a cycle: /],
    ['a name that is not valid, on its own line though a later line repeats it', '{"name": "tab\\there"}\n{"name": "tab\\there"}', /^line 1: task name "tab\\there" holds a control character/],
    ['a control character in a name', 'x\n{"name": "tab\\there"}', /^line 2: task name "tab\\there" holds a control character/],
    ['a lone surrogate in a name (a JSON escape)', 'x\n{"name": "a\\ud800"}', /^line 2: task name "a\\ud800" holds a lone surrogate/],
    ['a lone surrogate in a dependency', '{"name": "b", "deps": ["\\udc00"]}', /^line 1: dependency of task "b" "\\udc00" holds a lone surrogate/],
    ['a lone surrogate in a param value', '{"name": "p", "params": {"x": "\\ud800"}}', /^line 1: param "x" of task "p" holds a lone surrogate/],
    ['a lone surrogate in an output', '{"name": "o", "outputs": ["out\\ud800"]}', /^line 1: output of task "o" "out\\ud800" holds a lone surrogate/],
  ])('names the line of %s', (_what, text, message) => {
    expect(lineError(text)).toMatch(message);
  });

  it('tells a repeated definition from a different one, field by field', () => {
    const base = '{"name": "t", "deps": ["a", "b", "c"], "cmd": "run", "priority": 2, "pool": "p", "attempts": 3, "lease": "10m", "params": {"x": "1"}, "outputs": ["o"], "param_files": {"x.txt": "x"}}';
    const same = [
      '{"name": "t", "deps": ["c", "b", "a"], "cmd": "run", "priority": 2, "pool": "p", "attempts": 3, "lease": "10m", "params": {"x": "1"}, "outputs": ["o"], "param_files": {"x.txt": "x"}}',
      '{"name": "t", "deps": ["b", "a", "c", "a"], "cmd": "run", "priority": 2, "pool": "p", "attempts": 3, "lease": "600s", "params": {"x": "1"}, "outputs": ["o"], "param_files": {"x.txt": "x"}}',
    ];
    for (const line of same) expect(parseTaskFile(`a\nb\nc\n${base}\n${line}`).specs.map((s) => s.name)).toEqual(['a', 'b', 'c', 't', 't']);
    const different = [
      base.replace('"c"]', '"d"]'),
      base.replace('["a", "b", "c"]', '["a", "b"]'),
      base.replace('["a", "b", "c"]', '["ab", "c"]'),
      base.replace('"run"', '"runs"'),
      base.replace('"priority": 2', '"priority": 3'),
      base.replace('"pool": "p"', '"pool": "q"'),
      base.replace('"attempts": 3', '"attempts": 4'),
      base.replace('"10m"', '"11m"'),
      base.replace('"x": "1"', '"x": "2"'),
      base.replace('"outputs": ["o"]', '"outputs": ["o2"]'),
      base.replace('"x.txt": "x"', '"y.txt": "x"'),
      base.replace('"cmd": "run", ', '"cmd": "run", "after": "ended", '),
    ];
    for (const line of different) {
      const text = `a\nb\nc\nd\nab\n${base}\n${line}`;
      expect(lineError(text), line).toBe('line 7: task "t" is defined differently on line 6');
    }
  });

  it('refuses a param value that is not a string, quoting it as written, since a JSON number loses its form', () => {
    const text = '{"name":"n","cmd":"true","params":{"s":"x","a":1.0,"b":1e-7,"c":12345678901234567890,"d":0.10}}';
    expect(lineError(text)).toBe('line 1: params "a": write the value as a string, "1.0": a JSON number loses its form (1.0 becomes 1, big integers are rounded)');
    expect(lineError('x\n{"name":"n","params":{"c": 12345678901234567890 }}')).toBe(
      'line 2: params "c": write the value as a string, "12345678901234567890": a JSON number loses its form (1.0 becomes 1, big integers are rounded)',
    );
    expect(lineError('{"name":"n","params":{"o":{"a":1},"d":0.10}}')).toMatch(/^line 1: params "o": a param's value is a string, not an object$/);
    expect(lineError('{"name":"n","params":{"t":"[1]","d":0.10}}')).toMatch(/^line 1: params "d": write the value as a string, "0\.10"/);
    expect(lineError('{"name":"n","params":{"f":true}}')).toBe('line 1: params "f": write the value as a string, "true": param values are text');
    expect(lineError('{"name":"n","params":{"z":null}}')).toBe('line 1: params "z": a param\'s value is a string, not null');
    expect(parseTaskFile('{"name":"n","params":{"a":"1.0","c":"12345678901234567890"}}').specs[0]?.params).toEqual([
      { name: 'a', value: '1.0' },
      { name: 'c', value: '12345678901234567890' },
    ]);
  });

  it('reads param_files, and refuses paramFiles naming the field to write', () => {
    const { specs } = parseTaskFile('{"name":"n","params":{"seq":"ACGT"},"param_files":{"in/seq.txt":"seq"}}');
    expect(specs[0]?.paramFiles).toEqual([{ name: 'in/seq.txt', param: 'seq' }]);
    expect(lineError('{"name":"n","params":{"seq":"A"},"paramFiles":{"s":"seq"}}')).toBe('line 1: unknown field "paramFiles": write "param_files"');
    expect(lineError('{"name":"n","param_files":["seq"]}')).toBe('line 1: "param_files" must be an object: {"name_in_scratch": "param", ...}');
    expect(lineError('{"name":"n","params":{"seq":"A"},"param_files":{"s":"nope"}}')).toMatch(/^line 1: param file "s" of task "n" holds param "nope", which the task does not have/);
  });

  it('reads "after": "ended" (and "done", the default), refusing anything else with its line', () => {
    const { specs } = parseTaskFile('{"name":"r","deps":["a"],"after":"ended"}\n{"name":"s","deps":["a"],"after":"done"}');
    expect(specs.map((s) => s.afterEnded)).toEqual([true, undefined]);
    expect(lineError('{"name":"r","after":"failed"}')).toMatch(/^line 1: "after" must be "done" .* or "ended"/);
    // A file that defines a task twice, once after ended and once not, defines it differently.
    expect(lineError('{"name":"r","after":"ended"}\n{"name":"r"}')).toMatch(/^line 2: /);
  });

  it('accepts an identical duplicate line and forward references', () => {
    expect(parseTaskFile('b,a\na\nb,a\n').specs.map((s) => s.name)).toEqual(['b', 'a', 'b']);
  });

  it('parses durations with units, plain numbers as seconds', () => {
    expect([parseDuration('90'), parseDuration('90s'), parseDuration('500ms'), parseDuration('10m'), parseDuration('2h'), parseDuration(1.5)]).toEqual([
      90_000, 90_000, 500, 600_000, 7_200_000, 1500,
    ]);
    expect(() => parseDuration('0')).toThrow(/positive/);
    expect(() => parseDuration('ten')).toThrow(/not a duration/);
  });

  it('reads compound and H:MM:SS leases', () => {
    const { specs } = parseTaskFile('{"name": "a", "lease": "1d2h"}\n{"name": "b", "lease": "01:30:00"}\n');
    expect(specs.map((s) => s.leaseMs)).toEqual([93_600_000, 5_400_000]);
  });
});

describe('task files: numbers the wire cannot carry are refused, not wrapped', () => {
  it.each([
    ['a lease over 2^32 ms (1200h would arrive as 7 h)', '{"name": "a", "lease": "1200h"}', /^line 1: "lease" 1200h is 4320000000 ms, over the longest lease the wire carries/],
    ['a lease in seconds over 2^32 ms', '{"name": "a", "lease": 4294968}', /^line 1: "lease" 4294968 is 4294968000 ms, over/],
    ['attempts over 2^32 (4294967297 would arrive as 1)', '{"name": "a", "attempts": 4294967297}', /^line 1: "attempts" 4294967297 is out of range: expected an integer from 1 to 4294967295$/],
    ['attempts 0', '{"name": "a", "attempts": 0}', /^line 1: "attempts" 0 is out of range/],
    ['priority 2^31 (would arrive as the lowest)', 'x\n{"name": "a", "priority": 2147483648}', /^line 2: "priority" 2147483648 is out of range: expected an integer from -2147483648 to 2147483647$/],
    ['priority below -2^31', '{"name": "a", "priority": -2147483649}', /^line 1: "priority" -2147483649 is out of range/],
  ])('%s', (_what, text, message) => {
    expect(lineError(text)).toMatch(message);
  });

  it('takes the extremes the wire carries', () => {
    const { specs } = parseTaskFile('{"name": "a", "priority": -2147483648, "attempts": 4294967295, "lease": "1193h"}\n{"name": "b", "priority": 2147483647}');
    expect(specs.map((s) => [s.priority, s.maxAttempts, s.leaseMs])).toEqual([
      [-2147483648, 4294967295, 4_294_800_000],
      [2147483647, undefined, undefined],
    ]);
  });
});

describe('task files: text must be UTF-8', () => {
  const latin1 = (text: string): Uint8Array => Buffer.from(text, 'latin1');

  /** The lines of `bytes` read `chunk` bytes at a time, joined by newlines. */
  async function decodeTaskFile(bytes: Uint8Array, chunk = 1 << 20): Promise<string> {
    const all = Buffer.from(bytes);
    const out: string[] = [];
    const chunks = (async function* () {
      for (let at = 0; at < all.length; at += chunk) yield all.subarray(at, at + chunk);
    })();
    for await (const lines of splitLines(chunks)) for (const l of lines) out.push(l.text);
    return out.join('\n');
  }

  it('refuses Latin-1 text, naming the first line that is not UTF-8, instead of merging names', async () => {
    // "café" and "cafè" in Latin-1 both decode lossily to "caf\ufffd": one task instead of two.
    await expect(decodeTaskFile(latin1('ok\ncafé\ncafè,café\n'))).rejects.toThrow(
      new TaskFileError(2, 'not valid UTF-8 (byte 0xe9 at byte 4 of the line); save the file as UTF-8, e.g. iconv -f latin1 -t utf-8'),
    );
  });

  it('names the line of a bad byte after many good lines, and of a sequence cut at the end', async () => {
    await expect(decodeTaskFile(Buffer.concat([Buffer.from('a\n'.repeat(1000)), Buffer.from([0x62, 0xff, 0x0a])]))).rejects.toThrow(/^line 1001: not valid UTF-8 \(byte 0xff/);
    await expect(decodeTaskFile(Buffer.from([0x61, 0x0a, 0x62, 0xc3]))).rejects.toThrow(/^line 2: not valid UTF-8 \(byte 0xc3 at byte 2/);
  });

  it('reads UTF-8, dropping a byte order mark at the start only', async () => {
    expect(await decodeTaskFile(Buffer.from('\ufeffcafé\nnaïve,café\n\ufeffx\n', 'utf8'))).toBe('café\nnaïve,café\n\ufeffx');
  });

  it('reads lines and characters split across chunks, 2 bytes at a time, and CRLF line ends', async () => {
    expect(await decodeTaskFile(Buffer.from('\ufeffcafé,naïve\r\n{"name": "日本"}\nlast', 'utf8'), 2)).toBe('café,naïve\n{"name": "日本"}\nlast');
  });
});

describe('task files: lines read a chunk at a time', () => {
  /** Every line of `all` with its number, read `chunk` bytes at a time; or the error. */
  async function read(all: Buffer, chunk: number): Promise<string> {
    const out: string[] = [];
    const chunks = (async function* () {
      for (let at = 0; at < all.length; at += chunk) yield all.subarray(at, at + chunk);
    })();
    try {
      for await (const lines of splitLines(chunks)) for (const l of lines) out.push(`${l.line}:${l.text}`);
    } catch (err) {
      out.push(`error ${(err as Error).message}`);
    }
    return out.join('\n');
  }

  /** The same, a line at a time, as the rules say: split at LF, a CR before it and a BOM at the start dropped, each line UTF-8. */
  function expected(all: Buffer): string {
    const out: string[] = [];
    const rows: Buffer[] = [];
    for (let from = 0; from <= all.length; ) {
      const newline = all.indexOf(0x0a, from);
      rows.push(all.subarray(from, newline === -1 ? all.length : newline));
      from = newline === -1 ? all.length + 1 : newline + 1;
    }
    if ((rows[rows.length - 1] as Buffer).length === 0) rows.pop();
    const strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
    for (const [i, row] of rows.entries()) {
      let bytes = i === 0 && row.subarray(0, 3).equals(Buffer.from([0xef, 0xbb, 0xbf])) ? row.subarray(3) : row;
      if (bytes[bytes.length - 1] === 0x0d) bytes = bytes.subarray(0, -1);
      try {
        out.push(`${i + 1}:${strict.decode(bytes)}`);
      } catch {
        out.push(`error line ${i + 1}: not valid UTF-8`);
        break;
      }
    }
    return out.join('\n');
  }

  it('gives every line and its number as a line-at-a-time reading would, whatever the chunks, and names the first bad line', async () => {
    const pieces = ['a', 'b,c', 'é', '日本', '\r', '\n', '\n', ',', ' ', '\ufeff', '\r\n'];
    let seed = 7;
    const random = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    for (let round = 0; round < 300; round++) {
      const parts: Buffer[] = [];
      if (random(4) === 0) parts.push(Buffer.from('\ufeff'));
      const length = random(60);
      for (let i = 0; i < length; i++) parts.push(Buffer.from(pieces[random(pieces.length)] as string));
      // Now and then a byte that is never UTF-8, or a character cut short.
      if (random(3) === 0) parts.splice(random(parts.length + 1), 0, Buffer.from([random(2) === 0 ? 0xff : 0xc3]));
      const all = Buffer.concat(parts);
      const got = await read(all, 1 + random(12));
      const want = expected(all);
      // The error's wording after the line number is the reader's own (which byte, where); the
      // lines before it come a chunk at a time, and those of the bad line's chunk not at all.
      const apart = (text: string): [string, string | undefined] => {
        const at = text.indexOf('error ');
        return at === -1 ? [text, undefined] : [text.slice(0, at), text.slice(at)];
      };
      const [gotLines, gotError] = apart(got.replace(/(error line \d+: not valid UTF-8).*/, '$1'));
      const [wantLines, wantError] = apart(want);
      expect(gotError, JSON.stringify(all.toString('latin1'))).toBe(wantError);
      if (wantError === undefined) expect(gotLines).toBe(wantLines);
      else expect(wantLines.startsWith(gotLines)).toBe(true);
    }
  });
});

describe('task files: comments', () => {
  it('skips a line whose first character is #, even one that looks like a task', () => {
    expect(parseTaskFile('#x,a\na\n# a note\n').specs.map((s) => s.name)).toEqual(['a']);
  });

  it('reads a task whose name starts with # when written as JSON', () => {
    expect(parseTaskFile('{"name": "#x", "deps": ["a"]}\na').specs.map((s) => [s.name, s.deps])).toEqual([
      ['#x', ['a']],
      ['a', []],
    ]);
  });

  it('takes # inside a dwork line as part of a name', () => {
    expect(parseTaskFile('a#1,b#2\nb#2').specs.map((s) => [s.name, s.deps])).toEqual([
      ['a#1', ['b#2']],
      ['b#2', []],
    ]);
  });

  it('refuses an indented # line instead of guessing whether it is a comment or a task', () => {
    expect(lineError('a\n  #x,a\n')).toBe(
      'line 2: a task name in dwork\'s form may not start with # (a comment starts with # as the line\'s first character; write a task named "#x" as JSON: {"name": "#x"})',
    );
  });
});
