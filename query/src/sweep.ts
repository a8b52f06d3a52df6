/**
 * `dquery sweep`: one task a parameter set of a parameter file (params.ts), its command filled
 * from a template (template.ts), and a barrier task named after the sweep that depends on every
 * one of them, so that later tasks can depend on the sweep by its name. Pure: it turns lines into
 * TaskSpecInputs for addfile.ts, which checks the whole file, plans batches and sends them.
 *
 * Names are deterministic (the sweep's name and the line number, or a template of the values),
 * and so are the specs: adding the same sweep again changes nothing.
 */
import type { FileRef, ParamFile, TaskSpecInput } from '../../proto/src/types.js';
import type { LineParser } from './addfile.js';
import { ParamsParser } from './params.js';
import { Template, TemplateError, shellQuote } from './template.js';

/** A sweep that cannot be made as asked (a param file naming no parameter, a file with no parameter set). */
export class SweepError extends Error {
  override name = 'SweepError';
}

export interface SweepOptions {
  /** The barrier's name, and the prefix of the default task names (`NAME/LINE`). */
  sweep: string;
  /** The command template (`{param}` placeholders, values shell-quoted). */
  cmd: string;
  /** The task-name template (`{param}` placeholders, values as they are); default `SWEEP/LINE`. */
  name?: string;
  /** Cell separator (default `|`). */
  separator?: string;
  /** Tasks every task of the sweep depends on. */
  after?: readonly string[];
  pool?: string;
  priority?: number;
  maxAttempts?: number;
  leaseMs?: number;
  /** Files written from a parameter's value into each task's scratch directory. */
  paramFiles?: readonly ParamFile[];
  /** Every task's input files: asked for each task, since their hashes are known only once uploaded. */
  inputs?: () => FileRef[];
  outputs?: readonly string[];
  /** Most dependencies of one task (the barrier's): more tasks than this get sub-barriers. */
  maxDeps: number;
}

/** The sweep's tasks, a reading of the parameter file at a time (a new parser for each reading). */
export function sweepParser(options: SweepOptions): LineParser {
  const params = new ParamsParser(options.separator ?? '|');
  let cmd: Template | undefined;
  let name: Template | undefined;
  const names: string[] = [];
  const seen = new Set<string>();
  const common: Omit<TaskSpecInput, 'name'> = {
    ...(options.after === undefined || options.after.length === 0 ? {} : { deps: [...options.after] }),
    ...(options.pool === undefined ? {} : { pool: options.pool }),
    ...(options.priority === undefined ? {} : { priority: options.priority }),
    ...(options.maxAttempts === undefined ? {} : { maxAttempts: options.maxAttempts }),
    ...(options.leaseMs === undefined ? {} : { leaseMs: options.leaseMs }),
    ...(options.outputs === undefined || options.outputs.length === 0 ? {} : { outputs: [...options.outputs] }),
    ...(options.paramFiles === undefined || options.paramFiles.length === 0 ? {} : { paramFiles: [...options.paramFiles] }),
  };
  return {
    parse(text, line) {
      const set = params.parse(text, line);
      const header = params.header;
      if (header === undefined) return undefined;
      if (cmd === undefined) {
        cmd = new Template(options.cmd, header, '--cmd');
        if (options.name !== undefined) name = new Template(options.name, header, '--name');
        for (const f of options.paramFiles ?? []) {
          if (!header.includes(f.param)) {
            throw new SweepError(`--param-file ${f.name}=${f.param}: no parameter "${f.param}"; the parameters are ${header.join(', ')}`);
          }
        }
      }
      if (set === undefined) return undefined;
      const inputs = options.inputs?.() ?? [];
      const task: TaskSpecInput = {
        name: name === undefined ? `${options.sweep}/${line}` : name.fill(set.values),
        ...common,
        payload: Buffer.from(cmd.fill(set.values, shellQuote), 'utf8'),
        params: header.map((n, i) => ({ name: n, value: set.values[i] as string })),
        ...(inputs.length === 0 ? {} : { inputs }),
      };
      if (!seen.has(task.name)) {
        seen.add(task.name);
        names.push(task.name);
      }
      return task;
    },
    end() {
      if (params.header === undefined) throw new SweepError('the parameter file has no header line (the parameter names, separated as the sets are)');
      if (names.length === 0) throw new SweepError(`the parameter file has a header (line ${params.headerLine}) and no parameter set`);
      return barriers(options.sweep, names, options.maxDeps, options.pool);
    },
  };
}

/**
 * The barrier `sweep` depending on every one of `names`; past `maxDeps` names, through levels of
 * sub-barriers `SWEEP/barrier-LEVEL-K`, each depending on at most `maxDeps` tasks or sub-barriers
 * of the level below. In the order they must be created (a barrier after what it depends on;
 * not required by the hub, but a reader of `list` sees them in that order).
 */
export function barriers(sweep: string, names: readonly string[], maxDeps: number, pool?: string): TaskSpecInput[] {
  if (maxDeps < 2) throw new TypeError('a barrier tree needs maxDeps of 2 at least');
  const out: TaskSpecInput[] = [];
  const inPool = pool === undefined ? {} : { pool };
  let level: readonly string[] = names;
  for (let depth = 1; level.length > maxDeps; depth++) {
    const next: string[] = [];
    for (let i = 0; i < level.length; i += maxDeps) {
      const barrier = `${sweep}/barrier-${depth}-${next.length + 1}`;
      out.push({ name: barrier, deps: level.slice(i, i + maxDeps), barrier: true, ...inPool });
      next.push(barrier);
    }
    level = next;
  }
  out.push({ name: sweep, deps: [...level], barrier: true, ...inPool });
  return out;
}

/** `--param-file NAME=PARAM`, split. */
export function paramFileArg(value: string): ParamFile {
  const at = value.lastIndexOf('=');
  if (at <= 0 || at === value.length - 1) throw new TemplateError(`--param-file ${value}: write NAME=PARAM (the file's name in the scratch directory, the parameter it holds)`);
  return { name: value.slice(0, at), param: value.slice(at + 1) };
}

/** `--input PATH[:NAME]`, split at the last `:` (a PATH holding `:` needs its NAME given); NAME defaults to PATH's base name. */
export function inputArg(value: string): { path: string; name: string | undefined } {
  const at = value.lastIndexOf(':');
  if (at <= 0 || at === value.length - 1) return { path: at === value.length - 1 ? value.slice(0, -1) : value, name: undefined };
  return { path: value.slice(0, at), name: value.slice(at + 1) };
}
