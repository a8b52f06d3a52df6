/**
 * Finding what a command left behind, on Linux: the processes of its session (everything it started
 * that did not call setsid), and every process whose environment carries the run's mark
 * (DAGWORK_RUN_ID, inherited by whatever the command started, daemons included, unless it cleared
 * its environment). Elsewhere (no /proc) only the process group is reached.
 */
import { readdir, readFile } from 'node:fs/promises';

/** The environment variable that marks every process of one run of a command. */
export const RUN_MARK = 'DAGWORK_RUN_ID';

/** Sends `signal` to the process group `pgid` (the command, as its leader, and what it did not move elsewhere). */
export function killGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // the group is gone already
  }
}

/** The session id of a process, from /proc/PID/stat (field 6, after the command name in parentheses). */
function sessionOf(stat: string): number | undefined {
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const sid = Number(fields[3]);
  return Number.isInteger(sid) ? sid : undefined;
}

/**
 * Sends `signal` to every process in session `sid` or marked with `mark`, this process excepted.
 * Returns how many were signalled. Never throws: a process that ends meanwhile is skipped.
 */
export async function sweep(sid: number, mark: string, signal: NodeJS.Signals): Promise<number> {
  let pids: string[];
  try {
    pids = (await readdir('/proc')).filter((p) => /^\d+$/.test(p));
  } catch {
    return 0; // no /proc: the process group was all we could reach
  }
  const needle = Buffer.from(`${RUN_MARK}=${mark}\0`);
  let hit = 0;
  for (const p of pids) {
    const pid = Number(p);
    if (pid === process.pid) continue;
    try {
      let ours = sessionOf(await readFile(`/proc/${p}/stat`, 'utf8')) === sid;
      if (!ours) {
        const env = await readFile(`/proc/${p}/environ`);
        const at = env.indexOf(needle);
        ours = at === 0 || (at > 0 && env[at - 1] === 0);
      }
      if (ours) {
        process.kill(pid, signal);
        hit++;
      }
    } catch {
      // gone, or not ours to read
    }
  }
  return hit;
}
