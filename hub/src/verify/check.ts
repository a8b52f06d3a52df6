/**
 * Whether the hub can run a verifier command, checked when an admin sets it (pool_set) so that a
 * typo is refused then, not found at the first task: sh must parse it (sh -n), and its program
 * must exist: an absolute path to an executable file, or a name the hub's sh finds (a builtin or
 * a program on its PATH). A command that starts with something else (a variable, a quote, a
 * subshell) is taken once sh parses it.
 */
import { execFile } from 'node:child_process';
import { access, constants, stat } from 'node:fs/promises';
import { DagworkError } from '../../../proto/src/errors.js';

const CHECK_TIMEOUT_MS = 5_000;
/**
 * A plain word of a command: a path or a name, nothing sh would expand or split. A command that is
 * one such word is a program alone (it gets the task file as its argument); a command's first such
 * word is the program checked to exist.
 */
export const PLAIN_WORD = /^[A-Za-z0-9_./:@,+-]+$/;

export async function checkVerifierCommand(what: string, command: string): Promise<void> {
  const parse = await sh(['-n', '-c', command]);
  if (parse.code !== 0) throw new DagworkError('INVALID_ARGUMENT', `${what}: sh cannot parse it: ${parse.stderr.trim() || `exit ${parse.code}`}`);
  const program = firstWord(command);
  if (program === undefined) return;
  if (program.includes('/')) {
    if (!program.startsWith('/')) {
      throw new DagworkError('INVALID_ARGUMENT', `${what}: "${program}" is a relative path, and verifiers run in a temporary directory: give its absolute path`);
    }
    const info = await stat(program).catch(() => undefined);
    if (info === undefined || !info.isFile()) throw new DagworkError('INVALID_ARGUMENT', `${what}: ${program} does not exist on the hub's machine (or is not a file)`);
    const runnable = await access(program, constants.X_OK).then(() => true, () => false);
    if (!runnable) throw new DagworkError('INVALID_ARGUMENT', `${what}: ${program} is not executable: chmod +x it, or give sh ${program} "$1" (the task file is $1 of a longer command)`);
    return;
  }
  const found = await sh(['-c', 'command -v -- "$1"', 'check', program]);
  if (found.code !== 0) throw new DagworkError('INVALID_ARGUMENT', `${what}: "${program}" is neither a shell builtin nor a program on the hub's PATH`);
}

/** The command's first word when it is a plain one (letters, digits, and . _ - + / : @ ,), skipping VAR=value assignments. */
function firstWord(command: string): string | undefined {
  for (const word of command.trim().split(/\s+/)) {
    if (/^[A-Za-z_][A-Za-z0-9_]*=[A-Za-z0-9_./:@,+-]*$/.test(word)) continue;
    return PLAIN_WORD.test(word) ? word : undefined;
  }
  return undefined;
}

function sh(args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile('/bin/sh', args, { timeout: CHECK_TIMEOUT_MS, maxBuffer: 64 << 10 }, (err, _stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1;
      resolve({ code, stderr: String(stderr) });
    });
  });
}
