/** `dquery sweep`: a parameter file made into tasks and a barrier (sweep.ts), sent as addfile sends a file. */
import { basename, resolve } from 'node:path';
import type { Command } from 'commander';
import { countArg, int32Arg, leaseArg, positiveArg } from '../../proto/src/args.js';
import { defaultSpecLimits } from '../../proto/src/spec.js';
import type { ParamFile } from '../../proto/src/types.js';
import { addWithProgress, uploadStep, warnMissing } from './addfile-command.js';
import { LocalFiles } from './files.js';
import { plural, UsageError } from './io.js';
import type { Context } from './main.js';
import { SEPARATORS } from './params.js';
import { checkSweepOptions, inputArg, paramFileArg, sweepParser } from './sweep.js';
import { shellQuote } from './template.js';

/** The separators --sep takes, as help and errors say them. */
const SEP_CHOICES = '"|" (default), ",", ";" or tab';

const collect = <T>(parse: (v: string) => T) => (value: string, previous: T[] = []): T[] => [...previous, parse(value)];

interface SweepFlags {
  cmd: string;
  name?: string;
  sweepName?: string;
  after?: string[];
  pool?: string;
  priority?: number;
  attempts?: number;
  lease?: number;
  paramFile?: ParamFile[];
  input?: { path: string; name: string | undefined }[];
  output?: string[];
  sep?: string;
  batch: number;
  strict?: boolean;
  json?: boolean;
}

/** A sweep's tasks depend on no name of their own but the --after ones: what a missing dependency came from. */
const fromAfter = (): string => '--after';

export function registerSweep(program: Command, ctx: Context): void {
  program
    .command('sweep')
    .description('one task per parameter set of a parameter file (header of names, then one set a line), and a barrier task named after the sweep that depends on them all')
    .argument('<params>', 'parameter file (UTF-8), or - for standard input (then give --sweep-name)')
    .requiredOption('--cmd <template>', 'the command of each task: {name} is the value of parameter name, shell-quoted; {{ and }} are literal braces')
    .option('--name <template>', 'task names, {name} placeholders filled with the values as they are (default: SWEEP/LINE, the sweep\'s name and the set\'s line number)')
    .option('--sweep-name <name>', "the sweep's name: its barrier task's, and the prefix of the default task names (default: the base name of PARAMS)")
    .option('--after <task...>', 'tasks every task of the sweep depends on (give them after PARAMS)')
    .option('--pool <pool>', "pool of workers that may take the sweep's tasks (default: the hub's)")
    .option('--priority <n>', 'higher runs first (default: 0)', int32Arg)
    .option('--attempts <n>', "runs before a task counts as failed (default: the hub's)", countArg)
    .option('--lease <duration>', "how long a worker may hold a task without a heartbeat (default: the hub's)", leaseArg)
    .option('--param-file <name=param>', "write the value of parameter PARAM into the file NAME of each task's scratch directory (repeatable)", collect(paramFileArg))
    .option('--input <path[:name]>', "ship a local file to every task's scratch directory, as NAME (default: its base name; the run bit kept); uploaded once (repeatable)", collect(inputArg))
    .option('--output <name>', "a file each task leaves in its scratch directory, uploaded when it is done (dquery collect --dir fetches them; repeatable)", collect((v) => v))
    .option('--sep <sep>', `cell separator: ${SEP_CHOICES}`)
    .option('--batch <n>', 'most tasks per request (fewer when the hub says so)', positiveArg, 5000)
    .option('--strict', 'refuse the sweep, sending nothing, if an --after task does not exist')
    .option('--json', 'print {"sweep", "tasks", "created", "unchanged"}')
    .addHelpText(
      'after',
      `
PARAMS, as Simple Parallel Exec has it: a header line of parameter names (letters, digits and _,
not starting with a digit), then one parameter set a line, cells separated by | (--sep , ; or tab).
Blank lines are skipped, and so is a line whose first character is # (a comment); spaces (and
tabs, unless tab is the separator) around a cell are trimmed; there is no quoting. A line with
another number of cells than the header is refused with its line number, and nothing is added:
the whole file is checked before anything is sent, then sent in batches, as addfile does.

Each task keeps its parameter set (dquery list --params; dworker exports PARAM_<name>). Its name
is SWEEP/LINE (--sweep-name, default the file's base name; LINE its line in the file), or --name.
The barrier task SWEEP depends on every task of the sweep (past 10,000 tasks, through
sub-barriers SWEEP/barrier-1-K), and the hub marks it done once they all are: depend on the sweep
by its name. Adding the same sweep again changes nothing: names and definitions are the same.

Examples:
  printf 'seq|temp\\nACGT|300\\nTTGA|310\\n' > runs.txt
  dquery sweep runs.txt --cmd './fold --temp {temp} seq.txt > out.pdb' --param-file seq.txt=seq \\
      --input ./fold --output out.pdb --after build
  dquery create report --after runs.txt --cmd './report'      # runs once the whole sweep is done
  dquery collect --prefix runs.txt/ --dir results`,
    )
    .action(async (file: string, o: SweepFlags) => {
      const separator = SEPARATORS[o.sep ?? '|'];
      if (separator === undefined) throw new UsageError(`--sep ${JSON.stringify(o.sep)}: give ${SEP_CHOICES}`);
      if (file === '-' && o.sweepName === undefined) throw new UsageError('give --sweep-name with PARAMS from standard input: the sweep is named after its file');
      const sweep = o.sweepName ?? basename(resolve(file));
      // What the options alone get wrong is bad usage, said naming the option, before the file is read.
      checkSweepOptions(
        {
          sweep,
          sweepNamed: o.sweepName !== undefined,
          after: o.after ?? [],
          ...(o.pool === undefined ? {} : { pool: o.pool }),
          inputs: (o.input ?? []).map((i) => ({ arg: i.name === undefined ? i.path : `${i.path}:${i.name}`, name: i.name ?? basename(i.path) })),
          outputs: o.output ?? [],
          paramFiles: o.paramFile ?? [],
        },
        defaultSpecLimits(),
      );
      const { FileLines } = await import('./lines.js');
      const files = new LocalFiles();
      // Every input found before the file is read: a missing one stops the sweep before anything is sent.
      for (const i of o.input ?? []) files.ref(i.path, i.name ?? basename(i.path));
      const inputs = (): ReturnType<LocalFiles['ref']>[] => (o.input ?? []).map((i) => files.ref(i.path, i.name ?? basename(i.path)));
      const source = new FileLines(file, 'PARAMS file');
      const options = {
        sweep,
        cmd: o.cmd,
        separator,
        maxDeps: defaultSpecLimits().maxDeps,
        inputs,
        ...(o.name === undefined ? {} : { name: o.name }),
        ...(o.after === undefined ? {} : { after: o.after }),
        ...(o.pool === undefined ? {} : { pool: o.pool }),
        ...(o.priority === undefined ? {} : { priority: o.priority }),
        ...(o.attempts === undefined ? {} : { maxAttempts: o.attempts }),
        ...(o.lease === undefined ? {} : { leaseMs: o.lease }),
        ...(o.paramFile === undefined ? {} : { paramFiles: o.paramFile }),
        ...(o.output === undefined ? {} : { outputs: o.output }),
      };
      const result = await addWithProgress(ctx, 'sweep', source, {
        batch: o.batch,
        strict: o.strict === true,
        parser: () => sweepParser(options),
        prepare: uploadStep(ctx, files),
        where: fromAfter,
      });
      if (result === undefined) return;
      const { created, unchanged, missing } = result;
      if (o.json === true) console.log(JSON.stringify({ sweep, tasks: created + unchanged, created, unchanged }));
      else {
        console.log(
          `sweep ${sweep}: added ${plural(created, 'task')}${unchanged > 0 ? ` (${unchanged} ${unchanged === 1 ? 'was' : 'were'} there already)` : ''}, ` +
            `the barrier ${sweep} among them; depend on the whole sweep with --after ${shellQuote(sweep)}`,
        );
      }
      warnMissing(missing, fromAfter);
    });
}
