/** `dquery addfile`: the command around addfile.ts: progress on a terminal, Ctrl-C, warnings, --strict, --json. */
import { dirname, resolve } from 'node:path';
import type { Command } from 'commander';
import { positiveArg } from '../../proto/src/args.js';
import { AddFileError, AddProgress, Interrupted, missingText, type AddFileOptions, type AddResult, type Missing } from './addfile.js';
import type { LocalFiles } from './files.js';
import type { FileLines } from './lines.js';
import { complain, EXIT, plural, UsageError } from './io.js';
import type { Context } from './main.js';

/** Progress lines are redrawn at most this often (ms). */
const PROGRESS_EVERY_MS = 200;

/** The progress line for a terminal. */
function progressLine(p: AddProgress): string {
  switch (p.phase) {
    case 'checking':
      return `checking: line ${p.lines}`;
    case 'looking up':
      return `looking up the dependencies the file does not define: ${p.lookedUp} of ${p.toLookUp}`;
    case 'uploading':
      return `uploading input files: ${p.uploaded} of ${p.toUpload}`;
    case 'sending':
      return `adding: ${p.sent} of ${plural(p.total, 'task')} (batch ${Math.min(p.done + 1, p.batches.length)} of ${p.batches.length})`;
  }
}

const again = (command: string): string => `Run the same ${command} again to add the rest: tasks added already are left alone.`;

export function registerAddfile(program: Command, ctx: Context): void {
  program
    .command('addfile')
    .description('add every task of a file (or - for stdin): all lines are checked before any is sent, then sent in batches')
    .argument('<file>', 'task file (UTF-8), or - for standard input')
    .option('--batch <n>', "most tasks per request (fewer when the hub's --max-batch or --max-message-bytes say so)", positiveArg, 5000)
    .option('--strict', 'refuse the file, sending nothing, if it depends on a name that exists neither in it nor in the hub (one lookup per such name)')
    .option('--replace', 'a task that exists with another definition is replaced (admin: see dquery replace) instead of refused; identical ones are left alone')
    .option('--rerun', 'with --replace: also replace done and running tasks, running them and their descendants again')
    .option('--json', 'print {"created", "unchanged", "replaced", "missingDeps", "missingDepsTotal", "missingDepsAtLeast"}')
    .addHelpText(
      'after',
      `
Lines (both forms may be mixed; blank lines are skipped, and so is a line whose first character is #):
  name,dep1,dep2,...                                   dwork's format, no payload
  {"name":"b","deps":["a"],"cmd":"echo b","priority":1,"pool":"default","attempts":3,"lease":"10m"}
  {"name":"fold-7","cmd":"./fold seq.txt > out.pdb","params":{"seq":"ACGT","temp":"300"},"inputs":{"fold":"bin/fold"},"param_files":{"seq.txt":"seq"},"outputs":["out.pdb"]}
A task whose name starts with # is written as JSON: {"name":"#b"}.
Files and params: "inputs" are local files copied into the task's scratch directory,
{"name_in_scratch": "local/path"} (paths relative to the task file; each uploaded once);
"outputs" are files the task leaves there, uploaded when it is done; "params" are the task's
parameters, values as strings ("1.0", not 1.0: a JSON number loses its form); "param_files"
writes a param's value into a file of the scratch directory, {"name_in_scratch": "param"}.
"after": "ended" runs a task once every dependency has ended, done or failed (a report on what
succeeded), instead of blocking it when one failed ("after": "done", the default).

Every line is checked first (syntax, names, numbers, duplicates, cycles, the hub's size limits);
a bad line is reported with its number and nothing is sent. The tasks then go in batches sized to
the hub's limits: each batch is added all or nothing; a file of several batches is not. If the hub
refuses a later batch (a task that exists with another definition, say), the error names its line
and says which batches were added. Re-adding the same file is safe: identical tasks are left alone.

A dependency defined neither in the file nor in the hub is allowed (the tasks that need it wait
until a task of that name is created) and named in a warning on stderr; --strict refuses the file.
The file is read twice (check, then send), never held whole in memory; standard input is copied to
a temporary file for the second reading. On a terminal, progress is shown on stderr. Ctrl-C stops
after the batch in flight and says what was added (a second Ctrl-C stops at once).

A fixed file: --replace gives tasks that exist with another definition their new one (those not
run yet; with --rerun also done ones, which run again with everything downstream of them). A task
it may not replace (done or running, without --rerun) is named on stderr, and the exit status is 1.

Examples:
  python3 gen_tasks.py 100 1000 | dquery addfile -
  dquery addfile --replace --rerun tasks-fixed.jsonl`,
    )
    .action(async (file: string, o: { batch: number; strict?: boolean; replace?: boolean; rerun?: boolean; json?: boolean }) => {
      if (o.rerun === true && o.replace !== true) throw new UsageError('--rerun goes with --replace');
      const { FileLines } = await import('./lines.js');
      const { LocalFiles } = await import('./files.js');
      const { parseLine } = await import('./taskfile.js');
      const source = new FileLines(file);
      // Input paths are relative to the task file (to the working directory for standard input).
      const files = new LocalFiles(file === '-' ? process.cwd() : dirname(resolve(file)));
      const resolveInput = files.ref.bind(files);
      const result = await addWithProgress(ctx, 'addfile', source, {
        batch: o.batch,
        strict: o.strict === true,
        parser: () => ({ parse: (text, line) => parseLine(text, line, resolveInput) }),
        prepare: uploadStep(ctx, files),
        ...(o.replace === true ? { replace: { rerun: o.rerun === true } } : {}),
      });
      if (result === undefined) return;
      const { created, unchanged, replaced, refused, missing } = result;
      if (o.json === true) {
        console.log(JSON.stringify({ created, unchanged, ...(o.replace === true ? { replaced } : {}), missingDeps: missing.examples, missingDepsTotal: missing.total, missingDepsAtLeast: missing.atLeast }));
      } else {
        console.log(
          `added ${plural(created, 'task')}${o.replace === true ? `, replaced ${replaced}` : ''}${unchanged > 0 ? ` (${unchanged} ${unchanged === 1 ? 'was' : 'were'} there already)` : ''}`,
        );
      }
      for (const r of refused) complain(`replace ${r.name}: ${r.outcome}: ${r.message}`);
      if (refused.length > 0) process.exitCode = EXIT.error;
      warnMissing(missing);
    });
}

/** The step that uploads `files` once the file is checked (nothing when it names none). */
export function uploadStep(ctx: Context, files: LocalFiles): NonNullable<AddFileOptions['prepare']> {
  return async (progress, tick) => {
    if (files.count === 0) return;
    progress.toUpload = files.count;
    await files.upload(ctx.hub(), (done) => {
      progress.uploaded = done;
      tick();
    });
    // (Client.uploadFile's `sent` leaves out the last chunk, so it cannot say which were sent now.)
    complain(`${plural(files.count, 'input file')} in the hub (each uploaded unless it held it already)`);
  };
}

/** Warns about the dependencies a file names that exist nowhere (`where`: where each came from, default its line). */
export function warnMissing(missing: Missing, where?: (line: number) => string): void {
  if (missing.total > 0) {
    complain(
      `warning: ${missingText(missing, where)}; the tasks that need them wait until tasks of those names are created ` +
        '(dquery status counts them; --strict refuses such a file)',
    );
  }
}

/**
 * addFile with what a command adds around it: progress on a terminal (stderr), Ctrl-C (stop after
 * the batch in flight, say what was added; twice: stop now), errors said with what was added.
 * Returns undefined when it stopped (process.exitCode set, the reason said on stderr).
 */
export async function addWithProgress(
  ctx: Context,
  command: string,
  source: FileLines,
  options: Omit<AddFileOptions, 'progress' | 'onProgress' | 'stopped'>,
): Promise<AddResult | undefined> {
  const { addFile } = await import('./addfile.js');
  const progress = new AddProgress();
  const tty = process.stderr.isTTY === true;
  let shownAt = 0;
  let drawn = false;
  const clear = (): void => {
    if (drawn) process.stderr.write('\r\x1b[K');
    drawn = false;
  };
  const onProgress = (): void => {
    const now = Date.now();
    if (!tty || now - shownAt < PROGRESS_EVERY_MS) return;
    shownAt = now;
    process.stderr.write(`\r\x1b[K${progressLine(progress)}`);
    drawn = true;
  };
  let interrupts = 0;
  // Nothing is sent while the file is checked, and between batches what was added is known:
  // Ctrl-C stops at once. With a batch in flight it waits for the hub's answer, to say for sure.
  const onInterrupt = (): void => {
    interrupts++;
    clear();
    if (interrupts === 1 && progress.phase === 'sending' && progress.inFlight) {
      complain('stopping after the batch in flight (Ctrl-C again to stop now)');
      return;
    }
    const added = progress.phase === 'sending' ? progress.added() : undefined;
    complain(added === undefined ? 'interrupted: nothing was added.' : `interrupted: ${added}. ${again(command)}`);
    source.close();
    process.exit(EXIT.interrupted);
  };
  process.on('SIGINT', onInterrupt);
  try {
    const result = await addFile(ctx.hub(), source, { ...options, progress, onProgress, stopped: () => interrupts > 0 });
    clear();
    return result;
  } catch (err) {
    clear();
    if (err instanceof Interrupted) {
      complain('interrupted: nothing was added.');
      process.exitCode = EXIT.interrupted;
      return undefined;
    }
    if (!(err instanceof AddFileError)) throw err;
    if (err.cause instanceof Interrupted) {
      complain(`interrupted: ${err.added ?? 'nothing was added'}. ${again(command)}`);
      process.exitCode = EXIT.interrupted;
      return undefined;
    }
    process.exitCode = ctx.fail(err.cause);
    if (err.added !== undefined) complain(`${err.added}. Fix the file and run ${command} again: tasks added already are left alone.`);
    return undefined;
  } finally {
    process.off('SIGINT', onInterrupt);
    source.close();
  }
}
