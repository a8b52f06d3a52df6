/**
 * Runs verifiers (Wagon's job and result verifiers): shell commands the hub starts on its own
 * machine, off its event loop, a bounded number at once and each for a bounded time. A verifier
 * gets the task as JSON on stdin and in a file (its first argument when the command is a program
 * alone, $1 in a shell command, and DAGWORK_TASK_FILE), in a fresh temporary directory that is
 * removed afterwards. Exit 0 passes; anything else rejects, with the tail of its stderr.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../log.js';
import { PLAIN_WORD } from './check.js';

export interface VerifierOptions {
  /** Verifiers running at once; the rest wait their turn. */
  jobs: number;
  /** A verifier running longer is killed (its process group, SIGKILL) and counts as a rejection. */
  timeoutMs: number;
  /** Where each run's temporary directory is made. */
  tmpDir: string;
  log: Logger;
}

export interface Verdict {
  passed: boolean;
  /** The hub could not run the verifier (no temporary directory, no sh): no verdict on the task. */
  fault?: true;
  /** Why it was rejected (the tail of its stderr, or how it ended); on a pass, what it said on stderr, if anything. */
  reason: string;
}

export interface VerifierRun {
  /** Which verifier: DAGWORK_VERIFY=job|result. */
  kind: 'job' | 'result';
  command: string;
  /** The task as JSON. */
  input: string;
  task: string;
  pool: string;
}

/** Characters of a verifier's stderr kept as its reason (the end: where the error usually is). */
export const REASON_CHARS = 4000;
/** After a verifier exits, how long its stderr may stay open before the verdict goes without the rest (ms). */
const EXIT_GRACE_MS = 200;
/** Bytes of stderr held while it runs (the tail of it); the rest is dropped as it comes. */
const STDERR_BYTES = 64 << 10;

interface Queued {
  /** Called when a slot frees: the run to start, or undefined when it is no longer wanted. */
  prepare: () => VerifierRun | undefined;
  settle: (verdict: Verdict | undefined) => void;
}

export class VerifierRunner {
  private readonly queue: Queued[] = [];
  private head = 0;
  private running = 0;
  /** Process groups of the verifiers running now, to kill at stop. */
  private readonly groups = new Set<number>();
  private stopped = false;

  constructor(readonly options: VerifierOptions) {}

  /** Runs waiting for a slot. */
  get waiting(): number {
    return this.queue.length - this.head;
  }

  /**
   * Runs what `prepare` gives when a slot frees (prepare then, so that a run no longer wanted by
   * then costs no process). Resolves with the verdict, or undefined when prepare gave nothing or
   * the runner stopped. Never rejects.
   */
  run(prepare: () => VerifierRun | undefined): Promise<Verdict | undefined> {
    if (this.stopped) return Promise.resolve(undefined);
    return new Promise((settle) => {
      this.queue.push({ prepare, settle });
      this.pump();
    });
  }

  /** Kills every verifier running and answers every waiting run with undefined. */
  stop(): void {
    this.stopped = true;
    for (const pgid of this.groups) killGroup(pgid);
    const waiting = this.queue.splice(this.head);
    this.head = 0;
    this.queue.length = 0;
    for (const q of waiting) q.settle(undefined);
  }

  private pump(): void {
    while (!this.stopped && this.running < this.options.jobs && this.head < this.queue.length) {
      const next = this.queue[this.head++] as Queued;
      if (this.head > 1024 && this.head * 2 > this.queue.length) {
        this.queue.splice(0, this.head);
        this.head = 0;
      }
      let run: VerifierRun | undefined;
      try {
        run = next.prepare();
      } catch (err) {
        this.options.log.error(`verifier: cannot prepare a run: ${(err as Error)?.stack ?? String(err)}`);
      }
      if (run === undefined) {
        next.settle(undefined);
        continue;
      }
      this.running++;
      this.execute(run)
        .catch((err: unknown): Verdict => ({ passed: false, reason: `the hub could not run the verifier: ${(err as Error)?.message ?? String(err)}`, fault: true }))
        .then((verdict) => {
          this.running--;
          next.settle(this.stopped ? undefined : verdict);
          this.pump();
        })
        .catch((err: unknown) => this.options.log.error(`verifier: ${(err as Error)?.stack ?? String(err)}`));
    }
  }

  private async execute(run: VerifierRun): Promise<Verdict> {
    const dir = await mkdtemp(join(this.options.tmpDir, 'dagwork-verify-'));
    try {
      const file = join(dir, 'task.json');
      await writeFile(file, run.input);
      return await this.spawnIn(dir, file, run);
    } finally {
      await rm(dir, { recursive: true, force: true }).catch((err: unknown) => this.options.log.warn(`verifier: cannot remove ${dir}: ${(err as Error).message}`));
    }
  }

  private spawnIn(dir: string, file: string, run: VerifierRun): Promise<Verdict> {
    return new Promise((resolve) => {
      // Stopped while its directory was being made: nothing starts (the verdict is dropped anyway).
      if (this.stopped) return resolve({ passed: false, reason: 'the hub is stopping', fault: true });
      // A program alone gets the file as its first argument (as Wagon's verifiers do); in a shell
      // command it is $1.
      const command = run.command.trim();
      const script = PLAIN_WORD.test(command) ? `${command} "$1"` : run.command;
      const child = spawn('/bin/sh', ['-c', script, 'verifier', file], {
        cwd: dir,
        // Its own process group: a timeout kills whatever it started, too.
        detached: true,
        stdio: ['pipe', 'ignore', 'pipe'],
        env: { ...process.env, DAGWORK_VERIFY: run.kind, DAGWORK_TASK: run.task, DAGWORK_POOL: run.pool, DAGWORK_TASK_FILE: file },
      });
      let stderr = Buffer.alloc(0);
      let timedOut = false;
      let settled = false;
      const pgid = child.pid;
      if (pgid !== undefined) this.groups.add(pgid);
      // The verdict comes when the verifier itself exits (or is killed at the timeout), not when
      // its stderr closes: something it started and left running (in its group or, by setsid or
      // timeout(1), outside it) may hold stderr open for ever.
      const finish = (verdict: Verdict): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        clearTimeout(grace);
        if (pgid !== undefined) {
          // What it left in its group goes with it.
          killGroup(pgid);
          this.groups.delete(pgid);
        }
        child.stderr.destroy();
        resolve(verdict);
      };
      const timer = setTimeout(() => {
        timedOut = true;
        if (pgid !== undefined) killGroup(pgid);
        this.options.log.warn(`verifier of ${run.kind} ${run.task} (pool ${run.pool}) ran past ${this.options.timeoutMs} ms: killed`);
      }, this.options.timeoutMs);
      let grace: NodeJS.Timeout | undefined;
      child.stderr.on('data', (chunk: Buffer) => {
        stderr = Buffer.concat([stderr, chunk]);
        if (stderr.length > STDERR_BYTES) stderr = stderr.subarray(stderr.length - STDERR_BYTES);
      });
      // A verifier that does not read its stdin (it reads $1) closes the pipe: not an error.
      child.stdin.on('error', () => undefined);
      child.stdin.end(run.input);
      child.on('error', (err) => finish({ passed: false, reason: `the hub could not start the verifier: ${err.message}`, fault: true }));
      // The verdict needs both: the exit, and what it wrote last (its stderr closed), or a moment
      // after the exit when something it left holds stderr open.
      let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
      let stderrClosed = false;
      const verdict = (): Verdict => {
        const { code, signal } = exited as { code: number | null; signal: NodeJS.Signals | null };
        const said = tail(stderr.toString('utf8'));
        if (timedOut) return { passed: false, reason: `the verifier ran past ${this.options.timeoutMs} ms and was killed${said === '' ? '' : `: ${said}`}` };
        if (code === 0) return { passed: true, reason: said };
        const how = signal !== null ? `killed by ${signal}` : `exit ${code}`;
        return { passed: false, reason: said === '' ? `the verifier ended with ${how} and said nothing on stderr` : `${said} (${how})` };
      };
      child.stderr.once('close', () => {
        stderrClosed = true;
        if (exited !== undefined) finish(verdict());
      });
      child.on('exit', (code, signal) => {
        exited = { code, signal };
        if (stderrClosed) return finish(verdict());
        grace = setTimeout(() => finish(verdict()), EXIT_GRACE_MS);
      });
    });
  }
}

function killGroup(pgid: number): void {
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch {
    // Gone already.
  }
}

/** The end of a verifier's stderr, trimmed: at most REASON_CHARS characters. */
function tail(text: string): string {
  const trimmed = text.trim();
  return trimmed.length <= REASON_CHARS ? trimmed : `...${trimmed.slice(trimmed.length - REASON_CHARS)}`;
}
