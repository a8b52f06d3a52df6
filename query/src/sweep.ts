/**
 * `dquery sweep`: one task a parameter set of a parameter file (params.ts), its command filled
 * from a template (template.ts), and a barrier task named after the sweep that depends on every
 * one of them, so that later tasks can depend on the sweep by its name. Pure: it turns lines into
 * TaskSpecInputs for addfile.ts, which checks the whole file, plans batches and sends them.
 *
 * Names are deterministic (the sweep's name and the line number, or a template of the values),
 * and so are the specs: adding the same sweep again changes nothing.
 */
import { InvalidArgumentError } from 'commander';
import { DagworkError } from '../../proto/src/errors.js';
import { checkName, checkScratchPath, type SpecLimits } from '../../proto/src/spec.js';
import type { FileRef, ParamFile, TaskSpecInput } from '../../proto/src/types.js';
import type { LineParser } from './addfile.js';
import { UsageError } from './io.js';
import { ParamsParser } from './params.js';
import { Template, TemplateError, shellQuote } from './template.js';

/** A parameter file a sweep cannot be made of (no header, no parameter set). Options that do not fit it are UsageErrors. */
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
        // Options that do not fit the file's parameters: bad usage, found once the header is read.
        cmd = template(options.cmd, header, '--cmd');
        if (options.name !== undefined) name = template(options.name, header, '--name');
        for (const f of options.paramFiles ?? []) {
          if (!header.includes(f.param)) {
            throw new UsageError(`--param-file ${f.name}=${f.param}: no parameter "${f.param}"; the parameters are ${header.join(', ')}`);
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
    describe(task) {
      return task === options.sweep ? `the sweep's barrier task "${task}" (--sweep-name)` : `the sweep's sub-barrier task "${task}" (--sweep-name)`;
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

/** A template of `names`; an unknown placeholder, a lone brace, is bad usage. */
function template(source: string, names: readonly string[], what: string): Template {
  try {
    return new Template(source, names, what);
  } catch (err) {
    throw err instanceof TemplateError ? new UsageError(err.message) : err;
  }
}

/** `--param-file NAME=PARAM`, split (commander's option parser: a bad value is bad usage, exit 2). */
export function paramFileArg(value: string): ParamFile {
  const at = value.lastIndexOf('=');
  if (at <= 0 || at === value.length - 1) throw new InvalidArgumentError("write NAME=PARAM (the file's name in the scratch directory, the parameter it holds)");
  return { name: value.slice(0, at), param: value.slice(at + 1) };
}

/** What `sweep`'s options say, checked before the parameter file is read (checkSweepOptions). */
export interface SweepArgs {
  /** The sweep's name, and whether --sweep-name gave it (else it is PARAMS's base name). */
  sweep: string;
  sweepNamed: boolean;
  after: readonly string[];
  pool?: string;
  /** Each --input as given, and the name it takes in the scratch directory. */
  inputs: readonly { arg: string; name: string }[];
  outputs: readonly string[];
  paramFiles: readonly ParamFile[];
}

/**
 * Throws UsageError, naming the option, for what the options get wrong whatever the parameter
 * file holds: a scratch path the hub would refuse, two files at one place in the scratch
 * directory, an output that is also an input or a param file, a task name or pool the hub would
 * refuse, an --after naming the sweep's own barrier. (Otherwise the hub's refusal would name the
 * first line of the file, where nothing is wrong.)
 */
export function checkSweepOptions(a: SweepArgs, limits: SpecLimits): void {
  const usage = (f: () => void, prefix = ''): void => {
    try {
      f();
    } catch (err) {
      if (err instanceof DagworkError) throw new UsageError(`${prefix}${err.message}`);
      throw err;
    }
  };
  usage(() => checkName(a.sweep, limits, a.sweepNamed ? '--sweep-name: the name' : "the sweep's name (PARAMS's base name; give --sweep-name)"));
  for (const dep of a.after) {
    usage(() => checkName(dep, limits, '--after: the name'));
    if (dep === a.sweep) throw new UsageError(`--after ${dep}: that is this sweep's own barrier task, which waits for the sweep's tasks`);
  }
  if (a.pool !== undefined) usage(() => checkName(a.pool as string, limits, '--pool: the pool'));
  // Where each file goes in the scratch directory, and the option that puts it there.
  const placed = new Map<string, string>();
  const place = (name: string, option: string): void => {
    usage(() => checkScratchPath(name, `${option}:`));
    const earlier = placed.get(name);
    if (earlier !== undefined) throw new UsageError(`${option}: ${earlier} places a file at "${name}" already`);
    placed.set(name, option);
  };
  for (const i of a.inputs) place(i.name, `--input ${i.arg}`);
  for (const f of a.paramFiles) place(f.name, `--param-file ${f.name}=${f.param}`);
  const outputs = new Set<string>();
  for (const o of a.outputs) {
    usage(() => checkScratchPath(o, `--output ${o}:`));
    if (outputs.has(o)) throw new UsageError(`--output ${o}: given twice`);
    outputs.add(o);
    const from = placed.get(o);
    if (from !== undefined) throw new UsageError(`--output ${o}: ${from} places a file there: an output cannot be an input or a param file too`);
  }
}

/** `--input PATH[:NAME]`, split at the last `:` (a PATH holding `:` needs its NAME given); NAME defaults to PATH's base name. */
export function inputArg(value: string): { path: string; name: string | undefined } {
  const at = value.lastIndexOf(':');
  if (at <= 0 || at === value.length - 1) return { path: at === value.length - 1 ? value.slice(0, -1) : value, name: undefined };
  return { path: value.slice(0, at), name: value.slice(at + 1) };
}
