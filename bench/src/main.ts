#!/usr/bin/env node
/** npm run bench: every scenario against a real dhub on 127.0.0.1; a table on stdout, JSON on request. */
import { writeFileSync } from 'node:fs';
import { availableParallelism, cpus, totalmem } from 'node:os';
import { Command, Option } from 'commander';
import { positiveArg } from '../../proto/src/args.js';
import { cleanTempDirs } from './proc.js';
import { DEFAULT_SCENARIOS, FULL, HUGE_DRAIN_SECONDS, HUGE_TASKS, QUICK, SCENARIOS, type Context, type Figure, type ScenarioName } from './scenarios.js';

const names = DEFAULT_SCENARIOS;

const program = new Command('bench')
  .description('Measure dagwork: throughput, latency, memory and scale, against the raw ZeroMQ limit and peers (BullMQ, when redis-server is there; dwork, when its build is: bench/README.md).')
  .option('--quick', 'every scenario but huge at a small size (about a minute on a quiet machine): checks that the benchmark runs, not the figures')
  .option('--runs <n>', 'runs per figure; the median is reported', positiveArg, 3)
  .option('--only <scenarios...>', `run only these: ${names.join(', ')}`)
  .option('--huge', `only the huge scenario: ${HUGE_TASKS.toLocaleString('en-US')} independent tasks and a stencil as large, load, memory, status, restart and a drain of each stopped after ${HUGE_DRAIN_SECONDS} s (many GiB of memory and disk; not with --quick or --only)`)
  // Hidden: the huge scenario at another size, to try it out.
  .addOption(new Option('--huge-size <tasks>', 'tasks of each graph of --huge').argParser(positiveArg).hideHelp())
  .option('--json <file>', 'also write the figures as JSON')
  .action(async (o: { quick?: boolean; runs: number; only?: string[]; huge?: boolean; hugeSize?: number; json?: string }) => {
    if (o.huge === true && (o.quick === true || o.only !== undefined)) program.error('--huge runs the huge scenario alone: not with --quick or --only');
    if (o.hugeSize !== undefined && o.huge !== true) program.error('--huge-size goes with --huge');
    const chosen = o.huge === true ? (['huge'] as ScenarioName[]) : ((o.only ?? names) as ScenarioName[]);
    const unknown = chosen.filter((n) => !(o.huge === true ? ['huge'] : names).includes(n));
    if (unknown.length > 0) program.error(`unknown scenario ${unknown.join(', ')}; known: ${names.join(', ')} (and huge, with --huge)`);
    // Ratios need the raw echo, so it always runs first (not before huge, which has none).
    const order = o.huge === true ? chosen : ['raw' as ScenarioName, ...chosen.filter((n) => n !== 'raw')];
    const failures: string[] = [];
    const ctx: Context = {
      sizes: o.quick === true ? QUICK : FULL,
      runs: o.runs,
      log: (line) => process.stderr.write(`${line}\n`),
      failed: (message) => {
        failures.push(message);
        ctx.log(`failed: ${message}`);
      },
      ...(o.hugeSize === undefined ? {} : { hugeTasks: o.hugeSize }),
    };
    const machine = { cores: availableParallelism(), cpu: cpus()[0]?.model ?? 'unknown', memoryGiB: Math.round(totalmem() / 2 ** 30), node: process.version };
    ctx.log(`dagwork bench${o.quick === true ? ' --quick' : ''}${o.huge === true ? ` --huge (${(ctx.hugeTasks ?? HUGE_TASKS).toLocaleString('en-US')} tasks)` : ''}: ${machine.cores} cores (${machine.cpu}), ${machine.memoryGiB} GiB, node ${machine.node}, ${o.huge === true ? 'one run' : `median of ${o.runs} runs`}`);
    const figures: Figure[] = [];
    for (const name of order) {
      const started = Date.now();
      ctx.log(`${name}...`);
      try {
        figures.push(...(await SCENARIOS[name](ctx)));
      } catch (err) {
        failures.push(`${name}: ${(err as Error).message}`);
        ctx.log(`${name} failed: ${(err as Error).message}`);
      }
      ctx.log(`${name} took ${((Date.now() - started) / 1000).toFixed(1)} s`);
    }
    cleanTempDirs();
    console.log(render(figures, machine.cores));
    for (const f of failures) console.log(`FAILED ${f}`);
    if (o.json !== undefined) writeFileSync(o.json, JSON.stringify({ machine, quick: o.quick === true, huge: o.huge === true ? (ctx.hugeTasks ?? HUGE_TASKS) : false, runs: o.runs, figures, failures }, null, 2));
    process.exitCode = failures.length === 0 ? 0 : 1;
  });

function format(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  if (Math.abs(value) >= 100) return Math.round(value).toLocaleString('en-US');
  return value.toFixed(value >= 10 ? 1 : 2);
}

function render(figures: Figure[], cores: number): string {
  const rows = [['scenario', 'figure', 'value', 'unit', 'x raw', 'runs', 'target', 'note']];
  for (const f of figures) {
    rows.push([f.scenario, f.figure, format(f.value), f.unit, f.ratio === undefined ? '' : f.ratio.toFixed(2), String(f.runs), f.target ?? '', f.note ?? '']);
  }
  const widths = (rows[0] as string[]).map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]): string => r.map((c, i) => (i === 2 || i === 4 || i === 5 ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0))).join('  ').trimEnd();
  return [`${cores} cores; medians of the runs shown; "x raw" = throughput / raw echo round trips per second`, '', line(rows[0] as string[]), ...rows.slice(1).map(line)].join('\n');
}

await program.parseAsync();
