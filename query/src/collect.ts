/**
 * `dquery collect`: what tasks left behind, fetched from the hub to local files.
 *
 *   --dir D:     each done task's output files into D/TASK/NAME, and its result (stdout) into
 *                D/TASK/stdout (D/TASK/dagwork.stdout when one of its outputs is named stdout).
 *                Every file is written through a temporary name and renamed when complete, so a
 *                file that exists is whole: run again, only files that are missing, or whose size
 *                differs, are fetched.
 *   --concat F:  every done task's result, joined in creation order (bytes as they are: nothing
 *                added between them).
 *   --jsonl F:   one JSON object a task, every matching task, whatever its state.
 *
 * Barrier tasks (a sweep's) are skipped by all three: they run nothing and leave nothing.
 *
 * TASK is the task's name made safe as one directory name (taskDirName). One pass over the tasks,
 * a page at a time (Client.listAll with results): memory holds a page, never the whole run.
 */
import { createHash } from 'node:crypto';
import { closeSync, lstatSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { checkScratchPath } from '../../proto/src/spec.js';
import type { FileRef, ListQuery, TaskSummary } from '../../proto/src/types.js';

/** Longest file name most file systems take (NAME_MAX), in bytes. */
const NAME_MAX = 255;
/** Escaped characters kept of a name too long for NAME_MAX, before its digest. */
const KEPT_OF_LONG_NAME = 200;

/**
 * A task name as one safe directory name: letters, digits, `-`, `_` and `.` are kept, every other
 * byte of its UTF-8 is `%XX` (as in a URL), and so is a leading `.`: `fetch/7 b` is `fetch%2F7%20b`,
 * `..` is `%2E.`, `%` is `%25`; so no name gives `.`, `..`, a hidden directory or a path, and
 * two names never give the same directory. (dworker names the files of --deps-results the same way.)
 * A name whose escaped form is over 255 bytes is cut to its first 200 characters (never inside a
 * `%XX`), followed by `~` and the first 16 hex digits of the name's SHA-256 (`~` is never kept
 * as such, so this cannot be another name's escaped form).
 */
export function taskDirName(name: string): string {
  let out = '';
  for (const byte of Buffer.from(name, 'utf8')) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9_.-]/.test(c) && !(c === '.' && out === '') ? c : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  if (out.length <= NAME_MAX) return out;
  let cut = KEPT_OF_LONG_NAME;
  const percent = out.lastIndexOf('%', cut - 1);
  if (percent > cut - 3) cut = percent;
  return `${out.slice(0, cut)}~${createHash('sha256').update(name, 'utf8').digest('hex').slice(0, 16)}`;
}

/** The file in a task's directory that holds its result: `stdout`, unless an output takes that place. */
export function resultFileName(outputs: readonly FileRef[]): string {
  const taken = (name: string): boolean => outputs.some((f) => f.name === name || f.name.startsWith(`${name}/`));
  for (const name of ['stdout', 'dagwork.stdout']) if (!taken(name)) return name;
  let n = 1;
  while (taken(`dagwork.stdout.${n}`)) n++;
  return `dagwork.stdout.${n}`;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** One task as `--jsonl` writes it. */
export function taskJson(t: TaskSummary): object {
  const done = t.state === 'done';
  let result: string | null = null;
  let resultEncoding: 'utf8' | 'base64' | null = null;
  if (done) {
    try {
      result = utf8.decode(t.result);
      resultEncoding = 'utf8';
    } catch {
      result = Buffer.from(t.result).toString('base64');
      resultEncoding = 'base64';
    }
  }
  return {
    name: t.name,
    state: t.state,
    pool: t.pool,
    params: Object.fromEntries(t.params.map((p) => [p.name, p.value])),
    attempts: t.attempts,
    worker: t.worker,
    createdAt: t.createdAt,
    startedAt: t.startedAt === 0 ? null : t.startedAt,
    changedAt: t.changedAt,
    lastError: t.lastError,
    result,
    resultEncoding,
    outputs: t.outputs.map((f) => ({ name: f.name, sha256: f.sha256, size: f.size, executable: f.executable })),
  };
}

/** What collect needs of a Client. */
export interface CollectHub {
  listAll(query: Partial<Omit<ListQuery, 'after'>>): AsyncIterable<TaskSummary>;
  downloadFile(sha256: string, dest: string, options: { mode?: number }): Promise<number>;
}

export interface CollectTargets {
  /** Where each done task's files go. */
  dir?: string;
  /** Where the results go, joined (`-`: standard output). */
  concat?: string;
  /** Where one JSON object a task goes (`-`: standard output). */
  jsonl?: string;
}

export interface CollectSummary {
  /** Tasks matching the filter, and how many of them are done. */
  tasks: number;
  done: number;
  /** --dir: files written now, their bytes, and files that were there already. */
  fetched: number;
  fetchedBytes: number;
  present: number;
}

/** A file written through a temporary name beside it, renamed over `path` by `commit`; standard output for `-`. */
class Output {
  private readonly fd: number;
  private readonly temp: string | undefined;

  constructor(readonly path: string) {
    if (path === '-') {
      this.fd = 1;
      return;
    }
    this.temp = join(dirname(path), `.${basename(path)}.part-${process.pid}`);
    this.fd = openSync(this.temp, 'w', 0o644);
  }

  write(data: Uint8Array | string): void {
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    for (let at = 0; at < bytes.length; ) at += writeSync(this.fd, bytes, at);
  }

  commit(): void {
    if (this.temp === undefined) return;
    closeSync(this.fd);
    renameSync(this.temp, this.path);
  }

  abandon(): void {
    if (this.temp === undefined) return;
    closeSync(this.fd);
    rmSync(this.temp, { force: true });
  }
}

/** The size of the regular file at `path`, or undefined when there is none. */
function sizeOf(path: string): number | undefined {
  try {
    const info = lstatSync(path);
    return info.isFile() ? info.size : undefined;
  } catch {
    return undefined;
  }
}

/** Writes `data` to `path` through a temporary name. */
function writeWhole(path: string, data: Uint8Array): void {
  const out = new Output(path);
  try {
    out.write(data);
    out.commit();
  } catch (err) {
    out.abandon();
    throw err;
  }
}

/** Fetches what `targets` ask of the tasks matching `filter`. */
export async function collect(hub: CollectHub, filter: { pool?: string; prefix?: string }, targets: CollectTargets): Promise<CollectSummary> {
  const summary: CollectSummary = { tasks: 0, done: 0, fetched: 0, fetchedBytes: 0, present: 0 };
  const outputs = [targets.concat === undefined ? undefined : new Output(targets.concat), targets.jsonl === undefined ? undefined : new Output(targets.jsonl)] as const;
  const [concat, jsonl] = outputs;
  if (targets.dir !== undefined) mkdirSync(targets.dir, { recursive: true });
  try {
    const query = { ...filter, limit: 1000, withResults: true, withParams: jsonl !== undefined };
    for await (const t of hub.listAll(query)) {
      if (t.barrier) continue;
      summary.tasks++;
      jsonl?.write(`${JSON.stringify(taskJson(t))}\n`);
      if (t.state !== 'done') continue;
      summary.done++;
      concat?.write(t.result);
      if (targets.dir !== undefined) await fetchTask(hub, targets.dir, t, summary);
    }
    for (const out of outputs) out?.commit();
  } catch (err) {
    for (const out of outputs) out?.abandon();
    throw err;
  }
  return summary;
}

/** A done task's outputs and result into DIR/TASK, each unless a file of its size is there. */
async function fetchTask(hub: CollectHub, dir: string, t: TaskSummary, summary: CollectSummary): Promise<void> {
  const taskDir = join(dir, taskDirName(t.name));
  mkdirSync(taskDir, { recursive: true });
  for (const f of t.outputs) {
    checkScratchPath(f.name, `output of task "${t.name}"`); // the hub checks it too: never write outside taskDir
    const dest = join(taskDir, f.name);
    if (sizeOf(dest) === f.size) {
      summary.present++;
      continue;
    }
    mkdirSync(dirname(dest), { recursive: true });
    summary.fetchedBytes += await hub.downloadFile(f.sha256, dest, { mode: f.executable ? 0o755 : 0o644 });
    summary.fetched++;
  }
  const stdout = join(taskDir, resultFileName(t.outputs));
  if (sizeOf(stdout) === t.result.length) {
    summary.present++;
    return;
  }
  writeWhole(stdout, t.result);
  summary.fetched++;
  summary.fetchedBytes += t.result.length;
}
