/** `dquery graph`: the graph as a picture (Graphviz DOT, Mermaid or JSON), coloured by state. */
import { writeFileSync } from 'node:fs';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { checkRange, integerArg } from '../../proto/src/args.js';
import { DagworkError } from '../../proto/src/errors.js';
import { VIEW_DEFAULT_DEPTH, VIEW_DEFAULT_NODES, VIEW_MAX_DEPTH, VIEW_MAX_NODES } from '../../proto/src/graph-view.js';
import { TASK_STATES, type Collapse, type GraphView, type TaskState } from '../../proto/src/types.js';
import { GRAPH_FORMATS, renderGraph, STATE_COLOURS, type GraphFormat } from './graph-render.js';
import { complain, EXIT, UsageError } from './io.js';
import type { Context } from './main.js';

const COLLAPSES: readonly Collapse[] = ['none', 'pool', 'prefix'];
/** STATE_COLOURS in words, for the legend. */
const COLOUR_NAMES: Record<TaskState, string> = {
  waiting: 'grey',
  ready: 'light blue',
  running: 'yellow',
  done: 'green',
  failed: 'red',
  blocked: 'orange',
  cancelled: 'blue-grey',
  verifying: 'purple',
};

/**
 * 100000 as 100,000. Not toLocaleString: its first call loads ICU's data, some 20 ms of every
 * dquery start, since this hint is made when the command is registered.
 */
function thousands(n: number): string {
  return String(n).replace(/\B(?=(\d{3})+$)/g, ',');
}

/** Shown after the hub's TOO_LARGE: the options that narrow a view. */
export const NARROW_HINT = `narrow it: --collapse prefix (a node per name prefix), --collapse pool (a node per pool), --around NAME [--depth K] (a task's neighbourhood), --pool P; or --force for up to ${thousands(VIEW_MAX_NODES)} nodes`;

const between = (min: number, max: number) => (value: string): number => {
  try {
    return checkRange(integerArg(value), min, max, value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
};

interface GraphOptions {
  pool?: string;
  around?: string;
  depth?: number;
  collapse: Collapse;
  format: GraphFormat;
  json?: boolean;
  maxNodes?: number;
  force?: boolean;
  output?: string;
}

export function registerGraph(program: Command, ctx: Context): void {
  program
    .command('graph')
    .description('the graph as a picture: tasks (or groups of them) and their dependencies, coloured by state, as Graphviz DOT, Mermaid or JSON')
    .option('--pool <pool>', 'only tasks of this pool')
    .option('--around <name>', 'only this task, its ancestors and its descendants (up to --depth steps)')
    .option('--depth <k>', `with --around: steps up and down, 1 to ${VIEW_MAX_DEPTH} (default ${VIEW_DEFAULT_DEPTH})`, between(1, VIEW_MAX_DEPTH))
    .addOption(new Option('--collapse <how>', 'none: a node per task; pool: a node per pool; prefix: a node per name prefix (the name up to its last "/")').choices(COLLAPSES).default('none'))
    .addOption(new Option('--format <format>', 'dot (Graphviz), mermaid, or json (the view as the hub sends it)').choices(GRAPH_FORMATS).default('dot'))
    .option('--json', 'the same as --format json')
    .option('--max-nodes <n>', `most nodes, 1 to ${VIEW_MAX_NODES} (default ${VIEW_DEFAULT_NODES}); a bigger view is refused`, between(1, VIEW_MAX_NODES))
    .option('--force', `allow up to ${VIEW_MAX_NODES} nodes (more than Graphviz lays out in reasonable time; collapsed views read better)`)
    .option('--output <file>', 'write to FILE instead of stdout')
    .addHelpText(
      'after',
      `
Colours (fill, one per state; a group takes the state most of its tasks are in, and its label
counts them, e.g. "sweep/a (120: 100 done, 20 failed)"; a group has a double border in DOT, a
subroutine box in Mermaid):
${TASK_STATES.map((s) => `  ${s.padEnd(10)} ${STATE_COLOURS[s]}  ${COLOUR_NAMES[s]}`).join('\n')}

Edges run from a dependency to the task that depends on it. Collapsed, an edge between two
groups is labelled with how many dependencies it stands for; a group's edges to itself are left
out. A view with more than --max-nodes nodes is refused (exit 1) with the count and the ways to
narrow it; so is one of more than 1,000,000 edges, or with a reply of more than about 64 MiB. JSON is {"nodes":[{"id","counts","state","pool","tasks"}],"edges":[{"from","to","count"}],"tasks":N}
(a group has no "state"). Mermaid renderers refuse big diagrams unless configured otherwise
(by default more than 500 edges or 50,000 characters): collapse or narrow the view for them.

Examples:
  dquery graph --collapse prefix | dot -Tsvg > graph.svg
  dquery graph --around sweep/a/3 --depth 1 | dot -Tpng > around.png
  dquery graph --pool gpu --format mermaid --output gpu.mmd
  dquery graph --collapse pool --format json | jq '.nodes[] | {id, tasks}'
  dquery graph --force --output all.dot`,
    )
    .action(async (o: GraphOptions, command: Command) => {
      if (o.depth !== undefined && o.around === undefined) throw new UsageError('--depth goes with --around');
      if (o.json === true && o.format !== 'json' && command.getOptionValueSource('format') === 'cli') {
        throw new UsageError(`--json and --format ${o.format}: give one`);
      }
      const format: GraphFormat = o.json === true ? 'json' : o.format;
      if (o.force === true && o.maxNodes !== undefined) throw new UsageError(`--force and --max-nodes: give one (--force is --max-nodes ${VIEW_MAX_NODES})`);
      let view: GraphView;
      try {
        view = await ctx.hub().graphView({
          pool: o.pool ?? '',
          around: o.around ?? '',
          depth: o.depth ?? 0,
          collapse: o.collapse,
          maxNodes: o.force === true ? VIEW_MAX_NODES : (o.maxNodes ?? 0),
        });
      } catch (err) {
        if (!(err instanceof DagworkError) || err.code !== 'TOO_LARGE') throw err;
        complain(`TOO_LARGE: ${err.message}`);
        complain(NARROW_HINT);
        process.exitCode = EXIT.error;
        return;
      }
      const text = renderGraph(view, format);
      if (o.output === undefined) process.stdout.write(text);
      else writeFileSync(o.output, text);
    });
}
