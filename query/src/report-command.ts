/** `dquery report`: what a run did (report.ts computes it), as text, JSON or one HTML file. */
import { writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { DagworkError } from '../../proto/src/errors.js';
import type { Param } from '../../proto/src/types.js';
import { paramsText, plural, runTime, shown } from './format.js';
import type { Context } from './main.js';
import { ReportBuilder, type Report } from './report.js';
import { loadChartLibrary, reportHtml } from './report-html.js';

/** Tasks a list page asks for: the most the hub gives. */
const PAGE = 1000;
/** Critical-path tasks the text summary shows at each end (the rest are counted). */
const TEXT_PATH_ENDS = 5;

export function registerReport(program: Command, ctx: Context): void {
  program
    .command('report')
    .description('what a run did: tasks per state, completions over time, run times per pool, the slowest tasks, the critical path, failures by reason, workers')
    .option('--pool <pool>', 'only tasks of this pool (the critical path then stops at dependencies of other pools)')
    .option('--json', 'print the report as one JSON object (fields below)')
    .option('--html <file>', 'write the report as one self-contained HTML page (a chart of the timeline, tables for the rest)')
    .addHelpText(
      'after',
      `
Reads the whole graph (list pages with deps, a status for the workers), so it costs a
few requests per thousand tasks. An unfinished run is reported as it stands, saying so.

Run times are from a task's last attempt's lease to done (barriers run nothing and are left
out). The critical path starts at the done task that finished last and steps back each
time to its dependency that finished last (ties: the first name), down to a task with no
done dependency; a task's wait is from that dependency's end (the first task: from its
creation) to its start.

--json fields: pool (null: every pool), now, finished (nothing waiting, ready, running or
verifying), tasks, counts (per state), span {start, end, ms} (first creation to last
completion or failure; null before any), timeline {start, stepMs, done[], failed[]} (per
bucket of stepMs from start: per minute, finer for a run under 30 minutes; failed: tasks
FAILED now, when they failed), pools [{pool, runs, minMs, medianMs, p95Ms, maxMs}]
(nearest rank), slowest [{name, pool, worker, runMs, startedAt, doneAt}] (at most 20),
criticalPath {totalMs, tasks [{name, waitMs, runMs, startedAt, doneAt}]} (first to last),
failures {total, groupsTotal, groups [{reason, count, examples [{name, params}]}]} (by
the first line of the last error, the most frequent 50, 3 examples each), workers {total,
listed [{worker, done, failed, runs, busyMs, meanRunMs, maxRunMs}]} (every pool, as
dquery workers lists them). Times are ms since the epoch, durations ms.

Examples:
  dquery report
  dquery report --html report.html      # open it in a browser: it needs nothing else
  dquery report --json | jq '.criticalPath.tasks[].name'`,
    )
    .action(async (o: { pool?: string; json?: boolean; html?: string }) => {
      const hub = ctx.hub();
      // Read before the requests: a missing package is said before any work.
      const library = o.html === undefined ? undefined : loadChartLibrary();
      // A pool that holds no task and has no settings is a typo: UNKNOWN_POOL, not an empty report.
      if (o.pool !== undefined) await hub.poolList(o.pool);
      const builder = new ReportBuilder(o.pool);
      for await (const t of hub.listAll({ withDeps: true, limit: PAGE, ...(o.pool === undefined ? {} : { pool: o.pool }) })) builder.add(t);
      const params = new Map<string, readonly Param[]>();
      for (const group of builder.failureGroups()) {
        for (const name of group.examples) {
          try {
            params.set(name, (await hub.lookup(name)).task.spec.params);
          } catch (err) {
            // Deleted since it was listed: shown without params.
            if (!(err instanceof DagworkError && err.code === 'UNKNOWN_TASK')) throw err;
          }
        }
      }
      const status = await hub.status();
      const report = builder.finish(status.now, { listed: status.workers, total: status.workersTotal }, params);
      if (library !== undefined && o.html !== undefined) {
        writeFileSync(o.html, reportHtml(report, library));
        const wrote = `wrote ${o.html}`;
        if (o.json === true) process.stderr.write(`${wrote}\n`);
        else console.log(wrote);
      }
      if (o.json === true) console.log(JSON.stringify(report));
      else if (o.html === undefined) console.log(reportText(report));
    });
}

/** The report as a short text summary. */
export function reportText(r: Report): string {
  const c = r.counts;
  const lines: string[] = [];
  const scope = r.pool === null ? '' : ` of pool ${shown(r.pool)}`;
  lines.push(`${plural(r.tasks, 'task')}${scope}: ${c.done} done, ${c.failed} failed, ${c.blocked} blocked, ${c.cancelled} cancelled`);
  if (!r.finished) lines.push(`the run is not finished: ${c.waiting} waiting, ${c.ready} ready, ${c.running} running, ${c.verifying} verifying`);
  if (r.span !== null) lines.push(`from the first creation to the last end: ${runTime(r.span.ms)}`);
  for (const p of r.pools) lines.push(`pool ${shown(p.pool)}: ${plural(p.runs, 'run')}, min ${runTime(p.minMs)}, median ${runTime(p.medianMs)}, p95 ${runTime(p.p95Ms)}, max ${runTime(p.maxMs)}`);
  const path = r.criticalPath.tasks;
  if (path.length > 0) {
    lines.push(`critical path: ${plural(path.length, 'task')}, ${runTime(r.criticalPath.totalMs)}`);
    const step = (t: (typeof path)[number]): string => `  ${shown(t.name)}  waited ${runTime(t.waitMs)}, ran ${runTime(t.runMs)}`;
    if (path.length <= 2 * TEXT_PATH_ENDS) for (const t of path) lines.push(step(t));
    else {
      for (const t of path.slice(0, TEXT_PATH_ENDS)) lines.push(step(t));
      lines.push(`  ... ${path.length - 2 * TEXT_PATH_ENDS} more`);
      for (const t of path.slice(-TEXT_PATH_ENDS)) lines.push(step(t));
    }
  }
  const slowest = r.slowest[0];
  if (slowest !== undefined) lines.push(`slowest task: ${shown(slowest.name)}, ${runTime(slowest.runMs)}`);
  for (const g of r.failures.groups.slice(0, 5)) {
    const example = g.examples[0];
    const params = example === undefined ? '' : paramsText(Object.entries(example.params).map(([name, value]) => ({ name, value })));
    lines.push(`failed ${g.count}x: ${shown(g.reason)}${example === undefined ? '' : `  (e.g. ${shown(example.name)}${params === '' ? '' : ` ${params}`})`}`);
  }
  if (r.failures.groupsTotal > 5) lines.push(`... ${r.failures.groupsTotal - 5} more failure reasons (--json or --html for them)`);
  if (r.workers.total > 0) lines.push(`${plural(r.workers.total, 'worker')}: ${r.workers.listed.reduce((n, w) => n + w.done, 0)} done, ${r.workers.listed.reduce((n, w) => n + w.failed, 0)} failed (dquery workers for each)`);
  return lines.join('\n');
}
