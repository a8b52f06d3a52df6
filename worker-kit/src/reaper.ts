/**
 * dworker's reaper: a small process that cleans up after dworker if it dies without a chance to
 * (SIGKILL, the OOM killer). Node has no PR_SET_PDEATHSIG, so dworker starts this in a session of
 * its own with a pipe on its stdin, and writes one JSON line per event:
 *
 *   {"op":"dir","id":ID,"dir":PATH}               a run's scratch directory exists
 *   {"op":"started","id":ID,"pgid":N,"mark":M}    its command started (process group = session N)
 *   {"op":"ended","id":ID}                        the run is over and cleaned up by dworker
 *
 * When the pipe ends (dworker exited, however) it SIGKILLs every run still listed (its process
 * group, its session, every process carrying its mark) and removes their directories, then exits.
 * Bounded: at most MAX_RUNS runs and MAX_LINE bytes a line; anything else is ignored.
 */
import { rmSync } from 'node:fs';
import { killGroup, sweep } from './procs.js';

const MAX_RUNS = 100_000;
const MAX_LINE = 64 * 1024;

interface Run {
  dir?: string;
  pgid?: number;
  mark?: string;
}

/** The runs a stream of reaper lines leaves listed. */
export class RunList {
  readonly runs = new Map<string, Run>();

  apply(line: string): void {
    if (line.length > MAX_LINE) return;
    let m: { op?: unknown; id?: unknown; dir?: unknown; pgid?: unknown; mark?: unknown };
    try {
      m = JSON.parse(line) as typeof m;
    } catch {
      return;
    }
    if (typeof m.id !== 'string') return;
    if (m.op === 'ended') {
      this.runs.delete(m.id);
      return;
    }
    const run = this.runs.get(m.id) ?? {};
    if (m.op === 'dir' && typeof m.dir === 'string') run.dir = m.dir;
    else if (m.op === 'started' && Number.isInteger(m.pgid) && (m.pgid as number) > 1 && typeof m.mark === 'string') {
      run.pgid = m.pgid as number;
      run.mark = m.mark;
    } else return;
    if (this.runs.has(m.id) || this.runs.size < MAX_RUNS) this.runs.set(m.id, run);
  }
}

async function reap(list: RunList): Promise<void> {
  for (const run of list.runs.values()) {
    if (run.pgid !== undefined && run.mark !== undefined) {
      killGroup(run.pgid, 'SIGKILL');
      await sweep(run.pgid, run.mark, 'SIGKILL');
    }
    if (run.dir !== undefined) {
      try {
        rmSync(run.dir, { recursive: true, force: true });
      } catch {
        // nothing more to do
      }
    }
  }
}

function main(): void {
  // A Ctrl-C or a TERM to dworker's terminal or group is dworker's business: the reaper goes on
  // until its pipe ends.
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => undefined);
  const list = new RunList();
  let pending = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (chunk: string) => {
    pending += chunk;
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      list.apply(pending.slice(0, nl));
      pending = pending.slice(nl + 1);
    }
    if (pending.length > MAX_LINE) pending = '';
  });
  let reaping = false;
  const end = (): void => {
    if (reaping) return;
    reaping = true;
    void reap(list).finally(() => process.exit(0));
  };
  process.stdin.once('end', end);
  process.stdin.once('error', end);
  process.stdin.once('close', end);
}

main();
