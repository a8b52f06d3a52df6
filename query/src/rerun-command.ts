/**
 * dquery's commands that change the graph after the fact (admin): rerun, replace and delete. The hub does
 * the work in one step each; these only say what to ask and print what happened.
 */
import type { Command } from 'commander';
import { specFromOptions, specOptions, uploadInputs, type SpecOptions } from './commands.js';
import { LocalFiles } from './files.js';
import { EXIT, plural, reportResults, UsageError } from './io.js';
import type { Context } from './main.js';


export function registerRerun(program: Command, ctx: Context): void {
  program
    .command('rerun')
    .description('put done tasks back to work with fresh attempts (admin); what depends on them waits for them again')
    .argument('[names...]', 'done tasks')
    .option('--descendants', 'rerun everything downstream of them too, whatever its state (a running one loses its lease)')
    .option('--prefix <text>', 'also every done task whose name starts with this')
    .option('--pool <pool>', 'also every done task of this pool (with --prefix: of this pool and prefix)')
    .option('--json', 'print {"rerun", "results"}')
    .addHelpText(
      'after',
      `
A rerun task's result and output files are cleared (the state log notes the old result's size);
it runs again once its dependencies are done, and the tasks that depend on it wait for it again.
Without --descendants, done tasks downstream stay done (their results came from the old run):
use --descendants to run the whole downstream cone again, in dependency order. A named task that
is not done is NOT_DONE (failed or cancelled ones: use retry). Exit 1 when a name is refused.

Examples:
  dquery rerun stencil/0/0 --descendants      # everything computed from it, again
  dquery rerun --prefix render- --pool gpu    # every done render-* task of pool gpu`,
    )
    .action(async (names: string[], o: { descendants?: boolean; prefix?: string; pool?: string; json?: boolean }) => {
      if (names.length === 0 && o.prefix === undefined && o.pool === undefined) throw new UsageError('give task names, --prefix or --pool');
      if (o.prefix === '') throw new UsageError('--prefix is empty: give text, or name the tasks');
      const r = await ctx.hub().rerun(names, { descendants: o.descendants === true, prefix: o.prefix ?? '', pool: o.pool ?? '' });
      if (o.json === true) console.log(JSON.stringify(r));
      else console.log(`rerun ${plural(r.rerun, 'task')}`);
      if (!reportResults(r.results, 'rerun')) process.exitCode = EXIT.error;
    });

  specOptions(
    program
      .command('replace')
      .description("give a task a new definition (admin): one that has not run yet, or with --rerun one that is done or running (and its descendants run again)")
      .argument('<name>', 'an existing task')
      .argument('[deps...]', 'its new dependencies'),
  )
    .option('--rerun', 'also replace a done task (it and everything downstream run again) or a running one (its lease is taken away)')
    .option('--json', 'print {"replaced", "unchanged", "results"}')
    .addHelpText(
      'after',
      `
The new definition replaces the whole old one: give every option again (what is left out takes
its default). The task's attempts start afresh; its state follows from its new dependencies, and
tasks blocked by it (when it had failed) are unblocked. New dependencies that would make a cycle
are refused (CYCLE) and nothing changes. Without --rerun a done task is refused (ALREADY_DONE) and
a running one too (TASK_RUNNING); exit 1 then. A fixed task file: dquery addfile --replace FILE.

Examples:
  dquery replace render-7 fetch-7 --cmd "./render --fixed 7"
  dquery replace render-7 fetch-7 --cmd "./render --fixed 7" --rerun   # it ran already: again`,
    )
    .action(async (name: string, deps: string[], o: SpecOptions & { rerun?: boolean; json?: boolean }) => {
      const files = new LocalFiles();
      const spec = specFromOptions(name, deps, o, files);
      await uploadInputs(spec, o, files, ctx);
      const r = await ctx.hub().replace([spec], { rerun: o.rerun === true });
      if (o.json === true) console.log(JSON.stringify(r));
      else if (r.replaced === 1) console.log(`replaced ${name}`);
      else if (r.unchanged === 1) console.log(`${name} has that definition already, unchanged`);
      if (!reportResults(r.results, 'replace')) process.exitCode = EXIT.error;
    });

  program
    .command('delete')
    .description('remove tasks from the graph, whatever their state (admin); refused while other tasks depend on them')
    .argument('<names...>', 'tasks')
    .option('--descendants', 'delete everything downstream of them too (a running one\'s worker hears NOT_FOUND)')
    .option('--json', 'print {"deleted", "results"}')
    .addHelpText(
      'after',
      `
Deleted tasks are gone from the store, results and log with them, and their names are free again.
A running one loses its lease: its worker hears NOT_FOUND at its next heartbeat, and its completion
is refused. A task another task depends on is refused (HAS_DEPENDENTS, naming a dependent) unless
that dependent is named too, or with --descendants, which deletes the whole downstream cone.
Exit 1 when a name is refused.

Examples:
  dquery delete render-7 render-8             # two tasks nothing depends on
  dquery delete fetch-7 --descendants         # it and everything computed from it`,
    )
    .action(async (names: string[], o: { descendants?: boolean; json?: boolean }) => {
      const r = await ctx.hub().deleteTasks(names, { descendants: o.descendants === true });
      if (o.json === true) console.log(JSON.stringify(r));
      else console.log(`deleted ${plural(r.deleted, 'task')}`);
      if (!reportResults(r.results, 'delete')) process.exitCode = EXIT.error;
    });
}
