/** The contract's rules for a task's params and files (normalizeSpec), as the hub and dquery apply them. */
import { describe, expect, it } from 'vitest';
import { defaultSpecLimits, normalizeSpec } from '../proto/src/spec.js';
import type { TaskSpecInput } from '../proto/src/types.js';

const SHA = 'a'.repeat(64);
const file = (name: string): { name: string; sha256: string; size: number; executable: boolean } => ({ name, sha256: SHA, size: 1, executable: false });
const refusal = (input: Omit<TaskSpecInput, 'name'>): string => {
  try {
    normalizeSpec({ name: 't', ...input }, defaultSpecLimits());
  } catch (err) {
    return `${(err as { code: string }).code}: ${(err as Error).message}`;
  }
  return 'accepted';
};

describe('task params and files', () => {
  it('keeps params, inputs, outputs and param files as given, in order', () => {
    const spec = normalizeSpec(
      {
        name: 't',
        params: [{ name: 'seq', value: 'ACGT' }, { name: 'temp', value: '300' }],
        inputs: [{ ...file('bin/fold'), executable: true }, file('data/db.sqlite')],
        outputs: ['out/result.pdb', 'log.txt'],
        paramFiles: [{ name: 'seq.txt', param: 'seq' }],
      },
      defaultSpecLimits(),
    );
    expect(spec.params.map((p) => p.name)).toEqual(['seq', 'temp']);
    expect(spec.inputs.map((f) => [f.name, f.executable])).toEqual([['bin/fold', true], ['data/db.sqlite', false]]);
    expect(spec.outputs).toEqual(['out/result.pdb', 'log.txt']);
    expect(spec.paramFiles).toEqual([{ name: 'seq.txt', param: 'seq' }]);
  });

  it('refuses params no worker could use: bad or repeated names, a NUL in a value', () => {
    expect(refusal({ params: [{ name: '1x', value: '' }] })).toMatch(/^INVALID_ARGUMENT: task "t" has a param named "1x"; a param name is letters/);
    expect(refusal({ params: [{ name: 'a', value: '1' }, { name: 'a', value: '2' }] })).toBe('INVALID_ARGUMENT: task "t" has the param "a" twice');
    expect(refusal({ params: [{ name: 'v', value: 'x\0y' }] })).toBe('INVALID_ARGUMENT: param "v" of task "t" holds a NUL character, which no environment variable can');
  });

  it('refuses paths outside the scratch directory, segments no file system takes, and bad hashes', () => {
    expect(refusal({ inputs: [file('/etc/passwd')] })).toMatch(/^INVALID_ARGUMENT: input of task "t" "\/etc\/passwd" is absolute/);
    expect(refusal({ outputs: ['a/../../x'] })).toMatch(/^INVALID_ARGUMENT: output of task "t" "a\/..\/..\/x" has an empty, "." or ".." segment$/);
    expect(refusal({ outputs: ['a//b'] })).toMatch(/has an empty, "." or ".." segment$/);
    expect(refusal({ outputs: ['a\\b'] })).toMatch(/holds a control character or a backslash$/);
    expect(refusal({ outputs: [`d/${'z'.repeat(256)}`] })).toMatch(/has a segment longer than 255 bytes \(no file system takes it\)$/);
    expect(refusal({ outputs: [`d/${'z'.repeat(255)}`] })).toBe('accepted');
    expect(refusal({ inputs: [{ ...file('x'), sha256: SHA.toUpperCase() }] })).toMatch(/is not a SHA-256 \(64 lowercase hex digits\)$/);
  });

  it('refuses two files at one place, and a file inside another: a path cannot be a file and a directory', () => {
    expect(refusal({ inputs: [file('a'), file('a')] })).toBe('INVALID_ARGUMENT: task "t" names the input "a" twice');
    expect(refusal({ inputs: [file('x')], outputs: ['x'] })).toBe('INVALID_ARGUMENT: output "x" of task "t" is also one of its inputs or param files');
    expect(refusal({ inputs: [file('a'), file('a/b')] })).toBe('INVALID_ARGUMENT: task "t" has a file "a" and a file "a/b" inside it: a path cannot be both a file and a directory');
    expect(refusal({ inputs: [file('x/y')], outputs: ['x'] })).toMatch(/has a file "x" and a file "x\/y" inside it/);
    expect(refusal({ inputs: [file('x')], outputs: ['x/y/z'] })).toMatch(/has a file "x" and a file "x\/y\/z" inside it/);
    expect(refusal({ inputs: [file('p')], params: [{ name: 'q', value: '' }], paramFiles: [{ name: 'p/q', param: 'q' }] })).toMatch(/has a file "p" and a file "p\/q" inside it/);
    expect(refusal({ outputs: ['o', 'o/z'] })).toMatch(/has a file "o" and a file "o\/z" inside it/);
    expect(refusal({ inputs: [file('a/b'), file('a/c')], outputs: ['ab', 'a/d'] })).toBe('accepted');
  });

  it('refuses a param file of a param the task does not have, and a barrier that would run something', () => {
    expect(refusal({ paramFiles: [{ name: 'f', param: 'nope' }] })).toBe('INVALID_ARGUMENT: param file "f" of task "t" holds param "nope", which the task does not have');
    expect(refusal({ barrier: true, payload: new TextEncoder().encode('echo') })).toMatch(/is a barrier: it runs nothing/);
  });
});
