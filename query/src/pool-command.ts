/** `dquery pool list | show | set | delete`: pools as things an operator manages (see the .proto's "Pools"). */
import type { Command } from 'commander';
import { poolLimitArg } from '../../proto/src/args.js';
import { TASK_STATES, type PoolInfo } from '../../proto/src/types.js';
import { shown } from './format.js';
import { plural, UsageError } from './io.js';
import type { Context } from './main.js';

/** A pool's settings in words: "max running 3, paused", or "no settings". */
function settingsText(p: PoolInfo): string {
  const parts: string[] = [];
  if (p.maxRunning > 0) parts.push(`max running ${p.maxRunning}`);
  if (p.paused) parts.push('paused');
  if (p.jobVerifier !== '') parts.push('a job verifier');
  if (p.resultVerifier !== '') parts.push('a result verifier');
  return parts.length === 0 ? 'no settings' : parts.join(', ');
}

/** The states worth a column or a count: every one but verifying, unless a pool verifies results. */
function statesOf(pools: readonly PoolInfo[]): readonly (typeof TASK_STATES)[number][] {
  return pools.some((p) => p.counts.verifying > 0 || p.resultVerifier !== '') ? TASK_STATES : TASK_STATES.filter((s) => s !== 'verifying');
}

const rate = (perSecond: number): string => `${perSecond.toFixed(perSecond < 10 ? 2 : 1)}/s`;

/** One pool, several lines: what `pool show` prints. */
function formatPool(p: PoolInfo): string {
  const counts = statesOf([p]).map((s) => `${p.counts[s]} ${s}`).join(', ');
  return [
    `pool ${shown(p.pool)}`,
    `  settings:   ${settingsText(p)}`,
    ...(p.jobVerifier === '' ? [] : [`  job verifier:    ${shown(p.jobVerifier)}`]),
    ...(p.resultVerifier === '' ? [] : [`  result verifier: ${shown(p.resultVerifier)}`]),
    `  tasks:      ${counts}`,
    `  throughput: ${rate(p.donePerSecond)} (completions over the last minute)`,
  ].join('\n');
}

/** Pools as a table: what `pool list` prints. */
function formatPools(pools: readonly PoolInfo[], total: number): string {
  const states = statesOf(pools);
  const verifiers = (p: PoolInfo): string => [p.jobVerifier === '' ? '' : 'job', p.resultVerifier === '' ? '' : 'result'].filter((v) => v !== '').join('+') || '-';
  const header = ['POOL', 'MAX-RUNNING', 'PAUSED', 'VERIFIERS', ...states.map((s) => s.toUpperCase()), 'DONE/S'];
  const rows = pools.map((p) => [shown(p.pool), p.maxRunning === 0 ? '-' : String(p.maxRunning), p.paused ? 'yes' : 'no', verifiers(p), ...states.map((s) => String(p.counts[s])), rate(p.donePerSecond)]);
  const widths = header.map((h) => h.length);
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] as number, cell.length)));
  const line = (cells: readonly string[]): string => cells.map((c, i) => c.padEnd(widths[i] as number)).join('  ').trimEnd();
  const lines = [line(header), ...rows.map(line)];
  if (total > pools.length) lines.push(`(${pools.length} of ${plural(total, 'pool')} listed)`);
  return lines.join('\n');
}

export function registerPool(program: Command, ctx: Context): void {
  const pool = program
    .command('pool')
    .description('pools an operator manages: list them, show one, limit or pause one, delete one (set and delete: admin)')
    .addHelpText(
      'after',
      `
A pool is named by its tasks (--pool of create, addfile, sweep; "default" otherwise). Its
settings are kept by the hub across restarts, and may be given before it holds any task:
  --max-running N  at most N of its tasks leased at once, whoever asks (0: no limit)
  --paused         nothing of it handed out until --unpaused; tasks running go on
  --job-verifier CMD, --result-verifier CMD
                   shell commands the hub runs on each new task of the pool, and on each
                   completion (dquery pool set --help tells how)
A paused pool holding ready tasks is never finished to workers: dworker and steal --wait
wait for it to be unpaused rather than exit.

Examples:
  dquery pool list
  dquery pool set licensed --max-running 20     # a licence for 20 at once
  dquery pool set gpu --paused                  # drain the GPUs for maintenance
  dquery pool set gpu --unpaused
  dquery pool set render --result-verifier /opt/checks/frame-ok.sh
  dquery pool show gpu --json
  dquery pool delete scratch --force`,
    );

  pool
    .command('list')
    .description('every pool holding a task or with settings: its settings, tasks per state, completions per second')
    .option('--json', 'print {"pools": [{"pool", "counts", "maxRunning", "paused", "donePerSecond", "jobVerifier", "resultVerifier"}], "poolsTotal"}')
    .addHelpText('after', '\nExample:\n  dquery pool list --json | jq \'.pools[] | select(.paused)\'')
    .action(async (o: { json?: boolean }) => {
      const { pools, poolsTotal } = await ctx.hub({ interactive: true }).poolList();
      if (o.json === true) console.log(JSON.stringify({ pools, poolsTotal }));
      else if (pools.length === 0) console.log('no pools');
      else console.log(formatPools(pools, poolsTotal));
    });

  pool
    .command('show')
    .argument('<pool>')
    .description("one pool: its settings, tasks per state, completions per second over the last minute (UNKNOWN_POOL if it holds no task and has no settings)")
    .option('--json', 'print {"pool", "counts", "maxRunning", "paused", "donePerSecond", "jobVerifier", "resultVerifier"}')
    .addHelpText('after', '\nExample:\n  dquery pool show gpu')
    .action(async (name: string, o: { json?: boolean }) => {
      const [info] = (await ctx.hub({ interactive: true }).poolList(name === '' ? 'default' : name)).pools;
      if (info === undefined) throw new UsageError(`the hub did not answer for pool ${name}`);
      console.log(o.json === true ? JSON.stringify(info) : formatPool(info));
    });

  pool
    .command('set')
    .argument('<pool>')
    .description("change a pool's settings (admin); settings not given are kept")
    .option('--max-running <n>', 'at most N of its tasks leased at once, whoever asks; 0: no limit', poolLimitArg)
    .option('--paused', 'hand out nothing of it (tasks running go on)')
    .option('--unpaused', 'hand out its tasks again')
    .option('--job-verifier <cmd>', 'a shell command that must pass each new task of the pool before it is created ("" removes it)')
    .option('--result-verifier <cmd>', 'a shell command that must pass each completion before the task is done ("" removes it)')
    .option('--json', 'print the pool afterwards, as pool show --json')
    .addHelpText(
      'after',
      `
Lowering --max-running below what runs now takes no lease away: no new task of the pool is
handed out until fewer run.

Verifiers (Wagon's job and result verifiers) run on the hub's machine, as the hub's user, with
sh -c, in a fresh temporary directory. Each gets the task as JSON on stdin and in a file (name,
pool, deps, payload, params as {name: value}, inputs, outputs, ...; a result verifier's adds
attempt, worker, result and each output file's path in the hub's file store): a program alone
(/opt/checks/ok.sh) gets the file's path as its first argument, a longer command finds it in $1;
DAGWORK_TASK_FILE, DAGWORK_VERIFY=job|result, DAGWORK_TASK and DAGWORK_POOL are set. Exit 0 passes;
anything else rejects, with the end of its stderr as the reason:
  - job verifier: a create (addfile, sweep, create) with a task it rejects is refused whole,
    naming the task (REJECTED); nothing of that batch is created.
  - result verifier: the task is "verifying" until it ends; passed, it is done and what depends
    on it goes on; rejected, the attempt fails ("result rejected: ..."), retried as any failure.
At most dhub --verifier-jobs run at once; one running past --verifier-timeout-ms is killed and
counts as a rejection. A hub restart verifies again what it was verifying. The command is
refused when set if sh cannot parse it or its program does not exist (give an absolute path, or
a program on the hub's PATH); a hub serving a non-local address without CURVE refuses verifiers.

Examples:
  dquery pool set db-load --max-running 20
  dquery pool set db-load --max-running 0       # no limit any more
  dquery pool set gpu --paused && dquery pool set gpu --unpaused
  dquery pool set sims --job-verifier /opt/checks/valid-params.sh
  dquery pool set sims --result-verifier /opt/checks/converged.sh
  dquery pool set sims --result-verifier ''     # no result verifier any more`,
    )
    .action(async (name: string, o: { maxRunning?: number; paused?: boolean; unpaused?: boolean; jobVerifier?: string; resultVerifier?: string; json?: boolean }) => {
      if (o.paused === true && o.unpaused === true) throw new UsageError('give --paused or --unpaused, not both');
      const paused = o.paused === true ? true : o.unpaused === true ? false : undefined;
      if (o.maxRunning === undefined && paused === undefined && o.jobVerifier === undefined && o.resultVerifier === undefined) {
        throw new UsageError('give --max-running N, --paused, --unpaused, --job-verifier CMD or --result-verifier CMD');
      }
      const info = await ctx.hub().poolSet({ pool: name, maxRunning: o.maxRunning, paused, jobVerifier: o.jobVerifier, resultVerifier: o.resultVerifier });
      console.log(o.json === true ? JSON.stringify(info) : `pool ${shown(info.pool)}: ${settingsText(info)}`);
    });

  pool
    .command('delete')
    .argument('<pool>')
    .description("remove a pool's tasks, whatever their state, and its settings (admin)")
    .option('--force', 'also when tasks of other pools depend on its tasks: those not started are blocked ("dependency deleted with pool P")')
    .option('--json', 'print {"deleted", "blocked"}')
    .addHelpText(
      'after',
      `
Without --force a pool whose tasks other pools' tasks depend on is not deleted (CONFLICT, naming
one). With it, those dependents (waiting or ready) and their descendants are blocked; each waits,
as on a name never created, for a task of the deleted name: cancel and retry one to bring it back.
A running task's worker learns at its next heartbeat that the task is gone.

Examples:
  dquery pool delete scratch
  dquery pool delete stage1 --force`,
    )
    .action(async (name: string, o: { force?: boolean; json?: boolean }) => {
      const r = await ctx.hub().poolDelete(name, { force: o.force === true });
      if (o.json === true) console.log(JSON.stringify(r));
      else console.log(`deleted pool ${shown(name)}: ${plural(r.deleted, 'task')} removed${r.blocked > 0 ? `, ${plural(r.blocked, 'task')} of other pools blocked` : ''}`);
    });

  for (const sub of pool.commands as Command[]) sub.exitOverride();
}
