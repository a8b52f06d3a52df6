/** `dquery launch HOSTS -- [dworker options]`: dworker started on each host of a file, over ssh (launch.ts, launch-run.ts). */
import { readFileSync } from 'node:fs';
import { InvalidArgumentError, type Command } from 'commander';
import { shown } from './format.js';
import { complain, EXIT, plural, UsageError } from './io.js';
import { commandLine, HostsError, parseHosts, plan, splitWords, type Unit } from './launch.js';
import { runUnits, type Outcome } from './launch-run.js';
import type { Context } from './main.js';

/** The ssh command when --ssh is not given: never a password prompt, a dead host said within 10 s. */
export const DEFAULT_SSH = 'ssh -o BatchMode=yes -o ConnectTimeout=10';
/** ssh commands starting at once, by default. */
export const DEFAULT_PARALLEL = 16;
/** Seconds a background start may take, by default. */
export const DEFAULT_START_TIMEOUT_S = 60;
/** dworker's exit status when its pools finished with tasks failed, blocked or cancelled. */
const DWORKER_NOT_ALL_DONE = 3;

interface LaunchOptions {
  perHost: number;
  ssh: string;
  dworker: string;
  parallel: number;
  startTimeout: number;
  logDir: string;
  wait?: boolean;
  dryRun?: boolean;
  json?: boolean;
}

function wholeArg(min: number): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min) throw new InvalidArgumentError(`a whole number from ${min}`);
    return n;
  };
}

export function registerLaunch(program: Command, ctx: Context): void {
  program
    .command('launch')
    .description('start dworker on each host of a file, over ssh (or the command --ssh gives); say which hosts failed and why')
    .argument('<hosts>', 'a file of hosts, one a line: host or user@host; # comments; - for standard input')
    .argument('[dworker-options...]', 'after --: options for every dworker (--pool, -c, --max-time, ...)')
    .option('--per-host <n>', 'workers per host, each its own --worker id: HOST-1, HOST-2, ...', wholeArg(1), 1)
    .option('--ssh <command>', 'the ssh command: a program and its options, split as a shell splits words', DEFAULT_SSH)
    .option('--dworker <command>', 'dworker on the hosts: a path, or words before its options', 'dworker')
    .option('--parallel <n>', 'ssh commands starting at once', wholeArg(1), DEFAULT_PARALLEL)
    .option('--start-timeout <seconds>', 'a start still running after this long is killed and counts as failed', wholeArg(1), DEFAULT_START_TIMEOUT_S)
    .option('--log-dir <dir>', "where each worker's output goes on its host: DIR/dworker-ID.log (relative: to the remote home)", '.')
    .option('--wait', 'run each dworker in the foreground of its ssh session, show its lines, and report how each exited')
    .option('--dry-run', 'print the commands, run nothing')
    .option('--json', 'print the report as one JSON object')
    .addHelpText(
      'after',
      `
Each worker is one ssh command: HOST -- REMOTE, REMOTE being
  nohup dworker --hub HUB --worker HOST-K OPTIONS... >DIR/dworker-HOST-K.log 2>&1 </dev/null &
(after a check that dworker is on the remote PATH), or with --wait: exec dworker ... (its exit
status is the session's). Every word is quoted for the remote shell. The hub is --hub or
DAGWORK_HUB (or a --hub after --): an address the hosts can reach, not 127.0.0.1.
--worker after -- is refused: each worker gets its own.

Exit status: 0 every worker started (--wait: every dworker exited 0); 1 a host failed to start
(--wait: a session ended with another status), each said on stderr with the ssh command's exit
status and the end of its stderr; 2 bad usage or a bad hosts line (nothing started);
--wait: 3 every session exited 0 or 3, some 3 (tasks failed, blocked or cancelled); 130 interrupted
(Ctrl-C kills the ssh commands).

Examples:
  dquery --hub tcp://hub-node:6125 launch nodes.txt -- -c 16 --max-time 3h50m
  dquery launch nodes.txt --per-host 2 --ssh 'ssh -p 2222 -o BatchMode=yes' -- -c 8 --pool gpu
  dquery launch nodes.txt --dry-run -- --pool big      # print the ssh commands only
  grep gpu all-nodes.txt | dquery launch - --wait --json -- --idle-timeout 5m`,
    )
    .action(async (hostsFile: string, dworkerArgs: string[], o: LaunchOptions) => {
      const hub = hubFor(program, ctx, dworkerArgs);
      let ssh: string[];
      let dworker: string[];
      try {
        ssh = splitWords(o.ssh);
        dworker = splitWords(o.dworker);
      } catch (err) {
        throw new UsageError(`--ssh/--dworker: ${(err as Error).message}`);
      }
      let units: Unit[];
      try {
        const hosts = parseHosts(readFileSync(hostsFile === '-' ? 0 : hostsFile, 'utf8'));
        if (hosts.length === 0) throw new UsageError(`${hostsFile}: no hosts`);
        units = plan(hosts, { ssh, dworker, hub, args: dworkerArgs, perHost: o.perHost, foreground: o.wait === true, logDir: o.logDir });
      } catch (err) {
        if (err instanceof HostsError) throw new UsageError(`${hostsFile}: ${err.message}; nothing started`);
        if (err instanceof RangeError) throw new UsageError(err.message);
        throw err;
      }
      if (o.dryRun === true) {
        if (o.json === true) console.log(JSON.stringify({ dryRun: true, commands: units.map((u) => ({ host: u.host.target, worker: u.worker, argv: u.argv })) }));
        else for (const u of units) console.log(commandLine(u.argv));
        return;
      }

      const controller = new AbortController();
      const onSignal = (): void => {
        if (!controller.signal.aborted) complain(`launch: interrupted: stopping the ssh commands`);
        controller.abort();
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      let outcomes: Outcome[];
      try {
        outcomes = await runUnits(units, {
          parallel: o.parallel,
          startTimeoutMs: o.startTimeout * 1000,
          foreground: o.wait === true,
          signal: controller.signal,
          ...(o.wait === true ? { onLine: (u: Unit, line: string) => void process.stderr.write(`[${u.worker}] ${shown(line)}\n`) } : {}),
        });
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
      process.exitCode = report(outcomes, o.wait === true, o.json === true, controller.signal.aborted);
    });
}

/** The hub each worker is given: a --hub after --, else dquery's --hub or DAGWORK_HUB; one of them must be given. */
function hubFor(program: Command, ctx: Context, dworkerArgs: readonly string[]): string {
  if (dworkerArgs.some((a) => a === '--hub' || a.startsWith('--hub='))) return '';
  const given = program.getOptionValueSource('hub') === 'cli' || (process.env.DAGWORK_HUB ?? '') !== '';
  if (!given) throw new UsageError('launch: give the hub the workers should reach: --hub tcp://HOST:PORT (or DAGWORK_HUB, or --hub after --)');
  return ctx.endpoint();
}

/** Says what happened (failures on stderr, a summary or JSON on stdout) and returns the exit status. */
function report(outcomes: readonly Outcome[], wait: boolean, json: boolean, interrupted: boolean): number {
  const failed = outcomes.filter((r) => !r.ok);
  const failedHosts = [...new Set(failed.map((r) => r.host))];
  const hosts = new Set(outcomes.map((r) => r.host)).size;
  const notAllDone = wait && outcomes.some((r) => r.code === DWORKER_NOT_ALL_DONE);
  const status = interrupted ? EXIT.interrupted : failed.length > 0 ? EXIT.error : notAllDone ? EXIT.notAllDone : EXIT.ok;
  if (json) {
    console.log(JSON.stringify({ wait, interrupted, workers: outcomes, ok: outcomes.length - failed.length, failed: failed.length, failedHosts, exitStatus: status }));
    return status;
  }
  for (const r of failed) complain(`launch: ${r.worker} on ${r.host} (line ${r.line}): ${r.reason}`);
  if (wait) {
    for (const r of outcomes) {
      if (r.code === 0) console.log(`${r.worker}: exit 0`);
      else if (r.code === DWORKER_NOT_ALL_DONE) console.log(`${r.worker}: exit 3 (tasks failed, blocked or cancelled)`);
      else console.log(`${r.worker}: ${r.signal !== null ? `killed by ${r.signal}` : `exit ${r.code ?? '?'}`}`);
    }
    console.log(`${plural(outcomes.length, 'worker')} on ${plural(hosts, 'host')}: ${outcomes.length - failed.length} ended with 0 or 3, ${failed.length} failed${failedHosts.length > 0 ? ` (${failedHosts.join(', ')})` : ''}`);
  } else {
    console.log(
      `started ${outcomes.length - failed.length} of ${plural(outcomes.length, 'worker')} on ${plural(hosts, 'host')}` +
        (failedHosts.length > 0 ? `; failed on ${plural(failedHosts.length, 'host')}: ${failedHosts.join(', ')}` : ''),
    );
  }
  return status;
}
