/**
 * A task's files in its scratch directory: its inputs fetched (through a FileCache, or straight
 * from the hub) and put in place, its param files written, its declared outputs checked and
 * uploaded. What dworker does around each command, for Node workers to do around their own work.
 *
 * ```ts
 * import { mkdtemp } from 'node:fs/promises';
 * import { Client, FileCache, defaultCacheDir, fetchInputs, runWorker, uploadOutputs } from 'dagwork/worker-kit';
 *
 * const files = new Client({ hub: 'tcp://hub-node:6125' });          // transfers on a socket of their own
 * const cache = new FileCache(files, { dir: defaultCacheDir() });
 * runWorker({
 *   hub: 'tcp://hub-node:6125',
 *   handler: async (task, { signal, params }) => {
 *     const dir = await mkdtemp('/scratch/job-');
 *     const inputs = await fetchInputs(files, task, dir, { cache, signal });   // inputs and param files
 *     try {
 *       await simulate(dir, Number(params.temperature));                     // writes dir/result.h5
 *       return { result: 'ok', outputs: await uploadOutputs(files, dir, task.outputs, { signal }) };
 *     } finally {
 *       inputs.release();
 *     }
 *   },
 * });
 * ```
 */
import { constants } from 'node:fs';
import { chmod, copyFile, link, lstat, mkdir, realpath, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, sep } from 'node:path';
import { DagworkError } from '../../proto/src/errors.js';
import { checkScratchPath } from '../../proto/src/spec.js';
import type { FileRef, LeasedTask, Param } from '../../proto/src/types.js';
import type { FileCache } from './cache.js';
import { downloadFile, uploadFile, type FileOps } from './files.js';

/** How one input got into the scratch directory. */
export interface InputReport {
  name: string;
  sha256: string;
  size: number;
  /** Downloaded for this task now; false: it came from the cache. */
  fetched: boolean;
}

export interface PreparedInputs {
  inputs: InputReport[];
  /** Lets the cache evict the inputs again (call once the task is over). */
  release(): void;
}

export interface FetchOptions {
  /** Fetch through this cache (each hash once per cache). Default: straight from the hub into the scratch directory. */
  cache?: FileCache;
  /**
   * Hard-link a non-executable input from the cache rather than copy it (it is read-only, 0444).
   * Default false: a command may make its input writable and change it in place (or run as root,
   * for whom read-only means nothing), and a linked input would change the cache's file under its
   * hash for every later task. A copy is a reflink where the file system has them.
   */
  link?: boolean;
  /** Stops waiting for a hub that is away (see HUB_RETRY). */
  signal?: AbortSignal;
  /** Told when the hub is away and a transfer waits to be tried again. */
  onRetry?: (error: Error, waitMs: number) => void;
}

/** Waits between tries of a transfer while the hub is away: the first, and the longest (it doubles). */
export const HUB_RETRY = { firstMs: 1_000, maxMs: 30_000 } as const;
/** Request-level errors that a later try may not meet (runWorker's TRANSIENT, and an unreachable hub). */
const AWAY = new Set(['UNREACHABLE', 'STORE_FAILED', 'SHUTTING_DOWN']);

const errno = (err: unknown): string | undefined => (err as { code?: unknown }).code as string | undefined;

/**
 * Runs `transfer` until it succeeds or fails for a reason of its own: while the hub is away
 * (unreachable, restarting, its store failing) it is tried again, 1 s later doubling up to 30 s,
 * until `signal` aborts (the lease was lost, the worker stops). Uploads resume where the hub got.
 */
export async function whileHubAway<T>(transfer: () => Promise<T>, options: Pick<FetchOptions, 'signal' | 'onRetry'> = {}): Promise<T> {
  let wait: number = HUB_RETRY.firstMs;
  for (;;) {
    try {
      return await transfer();
    } catch (err) {
      if (!AWAY.has(errno(err) ?? '') || options.signal?.aborted === true) throw err;
      options.onRetry?.(err as Error, wait);
      await abortableSleep(wait, options.signal);
      if (isAborted(options.signal)) throw err;
      wait = Math.min(wait * 2, HUB_RETRY.maxMs);
    }
  }
}

const isAborted = (signal: AbortSignal | undefined): boolean => signal?.aborted === true;

function abortableSleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** `PARAM_<name>` for each of the task's params: what dworker adds to a command's environment. */
export function paramEnv(params: readonly Param[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const p of params) env[`PARAM_${p.name}`] = p.value;
  return env;
}

/** The task's params as an object: { temperature: '300' }. */
export function paramsObject(params: readonly Param[]): Record<string, string> {
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const p of params) out[p.name] = p.value;
  return out;
}

/**
 * Puts the task's inputs into `dir` (subdirectories of their names made; executable ones with mode
 * 0755, others 0644: copies from the cache, or read-only links with `link`), then writes its param files (each
 * holding its param's value). An input the hub does not hold (UNKNOWN_FILE) or whose bytes do not
 * have its hash (HASH_MISMATCH) throws a DagworkError naming the input; a name that is not a
 * relative path inside `dir`, INVALID_ARGUMENT. Nothing is ever written outside `dir`.
 */
export async function fetchInputs(files: FileOps, task: Pick<LeasedTask, 'inputs' | 'params' | 'paramFiles'>, dir: string, options: FetchOptions = {}): Promise<PreparedInputs> {
  const held: (() => void)[] = [];
  const release = (): void => {
    for (const r of held.splice(0)) r();
  };
  const inputs: InputReport[] = [];
  try {
    for (const ref of task.inputs) {
      checkScratchPath(ref.name, 'input');
      const dest = join(dir, ref.name);
      await mkdir(dirname(dest), { recursive: true });
      let fetched: boolean;
      try {
        fetched = await whileHubAway(() => place(files, ref, dest, options, held), options);
      } catch (err) {
        if (err instanceof DagworkError) throw new DagworkError(err.code, `input "${ref.name}" (${ref.sha256}): ${err.message}`, { cause: err });
        throw err;
      }
      inputs.push({ name: ref.name, sha256: ref.sha256, size: ref.size, fetched });
    }
    const values = new Map(task.params.map((p) => [p.name, p.value]));
    for (const pf of task.paramFiles) {
      checkScratchPath(pf.name, 'param file');
      const value = values.get(pf.param);
      if (value === undefined) throw new DagworkError('INVALID_ARGUMENT', `param file "${pf.name}" holds the param "${pf.param}", which the task does not have`);
      const dest = join(dir, pf.name);
      await mkdir(dirname(dest), { recursive: true });
      // 'wx': never through an input of the same name (a link into the cache).
      await writeFile(dest, value, { flag: 'wx', mode: 0o644 });
    }
  } catch (err) {
    release();
    throw err;
  }
  return { inputs, release };
}

/** One input into `dest`; true when it was downloaded now. A cache file evicted by another node meanwhile is fetched again. */
async function place(files: FileOps, ref: FileRef, dest: string, options: FetchOptions, held: (() => void)[]): Promise<boolean> {
  const mode = ref.executable ? 0o755 : 0o644;
  if (options.cache === undefined) {
    await downloadFile(files, ref.sha256, dest, { mode });
    await chmod(dest, mode); // the umask may have taken bits
    return true;
  }
  const linkable = !ref.executable && options.link === true;
  for (let tries = 0; ; tries++) {
    const cached = await options.cache.acquire(ref.sha256);
    held.push(cached.release);
    try {
      // A file of another size than its hash's was changed after it was kept (through a link, or
      // by hand): it goes, and is fetched again.
      if ((await stat(cached.path)).size !== ref.size) {
        await rm(cached.path, { force: true });
        throw Object.assign(new Error(`the cached file ${ref.sha256} had the wrong size; fetched again`), { code: 'ENOENT' });
      }
      if (linkable) {
        try {
          await link(cached.path, dest);
          return cached.fetched;
        } catch (err) {
          if (errno(err) === 'ENOENT' || errno(err) === 'EEXIST') throw err;
          // EXDEV (another file system), EPERM (no links there): a copy.
        }
      }
      await copyFile(cached.path, dest, constants.COPYFILE_FICLONE);
      await chmod(dest, mode);
      return cached.fetched;
    } catch (err) {
      // Evicted by another process between the fetch and now: again, a few times.
      if (errno(err) !== 'ENOENT' || tries >= 3) throw err;
    }
  }
}

/** An upload of a declared output. */
export interface UploadedOutput extends FileRef {
  /** Bytes sent now (0 when the hub held the file already). */
  sent: number;
}

/**
 * Uploads the declared outputs `names` from `dir` (each a regular file inside `dir`, run bit kept)
 * and returns the FileRefs for the completion, named as declared. A missing one throws
 * `declared output "NAME" was not written`; a directory, a symbolic link or anything else, `... is
 * not a regular file`: a normal failure of the attempt. The hub being away is waited out (see
 * whileHubAway).
 */
export async function uploadOutputs(files: FileOps, dir: string, names: readonly string[], options: Pick<FetchOptions, 'signal' | 'onRetry'> = {}): Promise<UploadedOutput[]> {
  const root = await realpath(dir);
  const paths: string[] = [];
  for (const name of names) paths.push(await outputPath(root, name));
  const out: UploadedOutput[] = [];
  for (const [i, name] of names.entries()) {
    const path = paths[i] as string;
    out.push(await whileHubAway(() => uploadFile(files, path, { name }), options));
  }
  return out;
}

/** The path of a declared output, checked: written, a regular file, inside `root` (no link leads out). */
async function outputPath(root: string, name: string): Promise<string> {
  checkScratchPath(name, 'declared output');
  const path = join(root, name);
  let info;
  try {
    info = await lstat(path);
  } catch (err) {
    if (errno(err) === 'ENOENT' || errno(err) === 'ENOTDIR') throw new Error(`declared output "${name}" was not written`);
    throw err;
  }
  if (!info.isFile()) throw new Error(`declared output "${name}" is not a regular file (${info.isDirectory() ? 'a directory' : info.isSymbolicLink() ? 'a symbolic link' : 'a special file'})`);
  // A directory on the way may be a link the command made: the file must still lie inside the scratch directory.
  const real = await realpath(path);
  if (!real.startsWith(root + sep)) throw new Error(`declared output "${name}" lies outside the scratch directory (through a symbolic link)`);
  return real;
}
