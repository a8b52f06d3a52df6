#!/usr/bin/env node
/** dhub: the dagwork hub daemon. */
import { readFileSync, statSync } from 'node:fs';
import { Command, Option } from 'commander';
import { bindArg, countArg, positiveArg, timerMsArg } from '../../proto/src/args.js';
import { defaultLimits } from '../../proto/src/spec.js';
import { readAuthorizedKeys } from './auth.js';
import { readKeyFile } from '../../proto/src/keys.js';
import { DagworkError } from '../../proto/src/errors.js';
import { createLogger, LOG_LEVELS, type LogLevel } from './log.js';
import { defaultGraphOptions } from './graph/options.js';
import { defaultHubOptions, Hub, isLocal, roleEndpoints, type HubOptions } from './server.js';
import { httpBindProblem, isLoopbackHost, parseHttpAddress, readTokenFile } from './http/access.js';
import { defaultStoreOptions, Store, type TaskStore } from './store/store.js';
import { checkStoreUrl, PostgresStore, redactUrl } from './store/postgres.js';
import { StandbyResponder } from './standby.js';

const defaults = defaultHubOptions();
const graphDefaults = defaultGraphOptions();
const wireDefaults = defaultLimits();
/** How often a standby hub tries to take the leader lock (ms). */
const STANDBY_POLL_MS = 500;
/** A byte count where 0 means "no limit of its own". */
const byteLimitArg = (value: string): number => (value === '0' ? 0 : positiveArg(value));

const program = new Command('dhub')
  .version(packageVersion(), '--version', 'print the version and exit')
  .description(
    'The dagwork hub: holds a DAG of tasks, hands ready tasks to workers that steal them, and keeps every acknowledged change in a store (LevelDB in --db, or PostgreSQL with --store) so that a crash loses nothing.',
  )
  .option('--bind <endpoint>', 'ZeroMQ endpoint to listen on: tcp://HOST:PORT (tcp://HOST:* picks a free port)', bindArg, defaults.bind)
  .option('--db <dir>', "store directory (created if missing); with --store, the hub's local directory (verifiers' temporary files, and files unless --files)", defaults.db)
  .addOption(
    new Option(
      '--store <url>',
      'keep the store in PostgreSQL instead of LevelDB: postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE (or postgresql://), a database of its own; several hubs on one database: one active, the others standby',
    ).env('DAGWORK_STORE'),
  )
  .option('--sync', 'LevelDB store: fsync every group commit: survives power loss, not only a crash of the hub (PostgreSQL: its synchronous_commit decides)', false)
  .addOption(new Option('--log-level <level>', 'how much to log to stderr').choices(LOG_LEVELS).default('info'))
  .option('--max-message-bytes <n>', 'largest request accepted', positiveArg, defaults.maxMessageBytes)
  .option('--max-payload-bytes <n>', 'largest task payload', positiveArg, graphDefaults.maxPayloadBytes)
  .option('--max-result-bytes <n>', 'largest task result', positiveArg, graphDefaults.maxResultBytes)
  .option('--max-wait-ms <n>', 'longest long poll a steal may ask for', positiveArg, defaults.maxWaitMs)
  .option('--max-parked <n>', 'most steals waiting in a long poll at once (past it: answered at once, with retry_after_ms)', positiveArg, defaults.maxParked)
  .option('--max-batch <n>', 'most tasks one request may name (create, complete, ...)', positiveArg, graphDefaults.maxBatch)
  .option('--max-steal <n>', 'most tasks one steal may ask for', positiveArg, graphDefaults.maxSteal)
  .option('--max-tasks <n>', 'most tasks the graph may hold', positiveArg, graphDefaults.maxTasks)
  .option('--files <dir>', "where the hub keeps tasks' input and output files, by content (default: DB/files)")
  .option('--max-file-bytes <n>', 'largest file the hub keeps', positiveArg, wireDefaults.maxFileBytes)
  .option('--max-files-bytes <n>', 'most bytes of files the hub keeps in all, with what uploads in progress received (0: as much as the disk holds)', byteLimitArg, wireDefaults.maxFilesBytes)
  .option('--max-chunk-bytes <n>', 'most bytes of one file_put or file_get chunk (at most --max-message-bytes less 1 KiB)', countArg, wireDefaults.maxChunkBytes)
  .option('--curve-secret <file>', "the hub's CURVE key pair (dquery keygen): encrypt every connection, admit only authorized keys")
  .option('--authorized-keys <file>', 'with --curve-secret: client public keys and their roles, "KEY ROLE" a line (worker, submit, admin)')
  .option(
    '--snapshot-log-bytes <n>',
    "LevelDB store: write a snapshot of every task while serving once the log since the last one began holds N bytes (or twice that snapshot's size, up to 1 GiB, if more): a start after a crash reads it and the log kept since, not LevelDB; 0: none while serving, and a clean stop's is read once by the start after it and not kept",
    byteLimitArg,
    defaultStoreOptions().checkpointBytes,
  )
  .option(
    '--drop-record <key>',
    'set the store record KEY aside (kept under dropped:KEY) before starting: the way past a record dhub cannot read, which it names at start; repeatable',
    (key: string, keys: string[]) => [...keys, key],
    [] as string[],
  )
  .option('--verifier-jobs <n>', "pools' job and result verifiers (dquery pool set) running at once; the rest wait their turn", countArg, defaults.verifierJobs)
  .option('--verifier-timeout-ms <n>', 'a verifier running longer is killed with its process group, and counts as a rejection (at most 2147483647)', timerMsArg, defaults.verifierTimeoutMs)
  .option('--http <host:port>', 'serve the live dashboard (pages, /events, /metrics) on HOST:PORT; an address other hosts reach needs --http-token')
  .option('--http-token <file>', 'a file holding the token the dashboard asks for (at least 16 characters; openssl rand -hex 32 > FILE)')
  .option('--http-admin-token <file>', "a file holding the token that shows the dashboard's retry and cancel buttons (without it there are none)")
  .option('--retry-backoff-ms <n>', `wait before a failed task is handed out again; doubles each failure, up to ${graphDefaults.backoffMaxMs / 1000} s`, positiveArg, graphDefaults.backoffBaseMs)
  .addHelpText(
    'after',
    `
Examples:
  dhub                                   listen on ${defaults.bind}, store in ${defaults.db}
  dhub --bind tcp://0.0.0.0:6125 --db /scratch/run1
                                         serve a whole cluster (no encryption: trusted networks only)
  dhub --db /scratch/run1 --files /bulk/run1-files --max-files-bytes 500000000000
                                         keep task files on another disk, at most 500 GB of them
  dhub --http 127.0.0.1:8080             the live dashboard at http://127.0.0.1:8080/
  dhub --http 0.0.0.0:8080 --http-token dash.token --http-admin-token admin.token
                                         the dashboard for other hosts: open it once as
                                         http://HOST:8080/?token=TOKEN (the admin token shows
                                         the retry and cancel buttons)

With CURVE, one endpoint per role: workers connect to --bind's port, submitters (create) to the
next one, admins (retry too) to the one after:
  dquery keygen hub && dquery keygen alice
  echo "$(grep public-key alice.pub | cut -d' ' -f3) submit alice" > authorized-keys
  dhub --bind tcp://0.0.0.0:6125 --curve-secret hub.key --authorized-keys authorized-keys

Stop it with Ctrl-C or SIGTERM: it finishes the write in flight, writes a snapshot of the tasks
that the next start reads (a LevelDB store; faster than its records), closes the store and exits 0.
A second Ctrl-C or SIGTERM ends it at once, losing nothing acknowledged.
Started in the background, run it directly (dhub ... &, then kill $!), not through npx, whose
own process is what $! names. Exit status: 0 stopped, 1 could not start or went down, 2 bad usage.
A second dhub on the same --db is refused while the first runs.

The store on PostgreSQL (a database of its own; the hub makes its tables):
  dhub --store postgres://dagwork:PASSWORD@db1:5432/dagwork --db /var/lib/dhub --files /shared/dhub-files
Several hubs may run on one such database (each its own --db, all the same --files on a shared
filesystem if tasks have files): one is active, the others are standby: they bind their endpoint,
answer every request with the error STANDBY, and take over within a few seconds when the active
hub exits or loses the database (a hub that loses its database session exits 1 at once).

A store record dhub cannot read stops it at start, naming the key (spec:NAME or state:NAME for task
NAME; t:NAME in a store of format 5 or older, converted at start); to start without it, move it
aside (it is kept in the store under dropped:KEY, with the task's other record, and the task leaves
the graph):
  dhub --db /scratch/run1 --drop-record state:render-17`,
  )
  .action(async (opts: Record<string, unknown>) => {
    const log = createLogger(opts.logLevel as LogLevel);
    const bind = String(opts.bind);
    let hub: Hub;
    /** Before the hub serves: what a signal closes (a standby's endpoints and its store). */
    let stopping: (() => Promise<void>) | undefined;
    const early = (signal: string): void => {
      log.info(`${signal}: stopping`);
      const close = stopping ?? (async () => undefined);
      close().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    };
    /** Whether this hub holds the store (PostgreSQL: the leader lock); a standby does not. */
    let leading = false;
    /** The store's session is gone: another hub may be active now. Stop answering at once. */
    const fenced = (err: Error): void => {
      process.stderr.write(
        leading
          ? `dhub: lost the session with the store (${err.message}): another hub may take over, so this one stops at once (fenced)\n`
          : `dhub: standby: lost the session with the store (${err.message}); exiting\n`,
      );
      process.exit(1);
    };
    try {
      if ((opts.curveSecret === undefined) !== (opts.authorizedKeys === undefined)) {
        throw new DagworkError('INVALID_ARGUMENT', '--curve-secret and --authorized-keys go together');
      }
      let curve: HubOptions['curve'];
      if (opts.curveSecret !== undefined) {
        const pair = readKeyFile(String(opts.curveSecret));
        if (pair.secretKey === undefined) throw new DagworkError('INVALID_ARGUMENT', `${String(opts.curveSecret)} holds no secret-key: give the key pair file, not the .pub`);
        curve = { publicKey: pair.publicKey, secretKey: pair.secretKey, authorizedKeys: readAuthorizedKeys(String(opts.authorizedKeys)) };
        if ((statSync(String(opts.curveSecret)).mode & 0o077) !== 0) {
          log.warn(`${String(opts.curveSecret)} can be read by other users: whoever reads it can pose as this hub (chmod 600 it)`);
        }
        if (curve.authorizedKeys.size === 0) log.warn(`${String(opts.authorizedKeys)} authorizes no key: every client will be refused`);
      } else if (!isLocal(bind)) {
        log.warn(`binding ${bind} without --curve-secret: any host that reaches it can read and change the task graph (no encryption, no authentication)`);
      }
      let http: HubOptions['http'] = defaults.http;
      if (opts.http === undefined) {
        // Bad usage (exit 2), as a bad option value is.
        if (opts.httpToken !== undefined || opts.httpAdminToken !== undefined) program.error('dhub: --http-token and --http-admin-token go with --http HOST:PORT');
      } else {
        const listen = ((): ReturnType<typeof parseHttpAddress> => {
          try {
            return parseHttpAddress(String(opts.http));
          } catch (err) {
            return program.error(`dhub: --http ${String(opts.http)}: ${(err as Error).message}`);
          }
        })();
        // Refused here, before anything is bound or opened.
        const problem = httpBindProblem(listen.host, opts.httpToken !== undefined);
        if (problem !== undefined) program.error(`dhub: ${problem}`);
        const token = (flag: string, file: unknown): string | undefined => {
          if (file === undefined) return undefined;
          const read = readTokenFile(String(file), flag);
          if (read.othersMayRead) log.warn(`${String(file)} can be read by other users: whoever reads it can use the dashboard (chmod 600 it)`);
          return read.token;
        };
        const tokens = { read: token('--http-token', opts.httpToken), admin: token('--http-admin-token', opts.httpAdminToken) };
        if (tokens.read !== undefined && tokens.read === tokens.admin) throw new DagworkError('INVALID_ARGUMENT', '--http-token and --http-admin-token hold the same token: give the admin one its own');
        if (!isLoopbackHost(listen.host)) {
          log.warn(`serving the dashboard on ${String(opts.http)} over plain HTTP: its token and every page cross the network unencrypted (trusted networks only, or put it behind a TLS proxy)`);
        }
        http = { ...defaults.http, listen, tokens };
      }
      const storeUrl = opts.store === undefined ? undefined : String(opts.store);
      if (storeUrl !== undefined) {
        try {
          checkStoreUrl(storeUrl);
        } catch (err) {
          program.error(`dhub: ${(err as Error).message}`);
        }
        if (opts.sync === true) program.error("dhub: --sync applies to the LevelDB store; with --store, PostgreSQL's synchronous_commit decides when a commit is durable");
        if ((opts.dropRecord as string[]).length > 0) program.error('dhub: --drop-record applies to the LevelDB store, not to --store');
        if (program.getOptionValueSource('snapshotLogBytes') !== 'default') program.error('dhub: --snapshot-log-bytes applies to the LevelDB store, not to --store');
      }
      const files: HubOptions['files'] = {
        maxFileBytes: opts.maxFileBytes as number,
        maxFilesBytes: opts.maxFilesBytes as number,
      };
      if (opts.files !== undefined) files.dir = String(opts.files);
      // Unless given, the chunk size is derived from --max-message-bytes (see Hub.start).
      if (program.getOptionValueSource('maxChunkBytes') !== 'default') files.maxChunkBytes = opts.maxChunkBytes as number;
      let openStore: HubOptions['openStore'] = (location, options) =>
        Store.open(location, { ...options, dropRecords: opts.dropRecord as string[], checkpointBytes: opts.snapshotLogBytes as number });
      let tookOver: { store: PostgresStore; since: number } | undefined;
      if (storeUrl !== undefined) {
        // A standby may wait for long: a signal meanwhile closes what it holds and exits 0.
        process.once('SIGINT', early);
        process.once('SIGTERM', early);
        const store = await PostgresStore.connect(storeUrl, { log, onLost: (err) => fenced(err) });
        stopping = async () => store.close();
        if (!(await store.tryLead())) {
          const endpoints = curve === undefined ? [bind] : Object.values(roleEndpoints(bind));
          const standby = await StandbyResponder.bind(endpoints, {
            curve,
            maxMessageBytes: opts.maxMessageBytes as number,
            message: `this hub is a standby: another hub is active on its store ${store.location}; ask that one`,
            log,
          });
          stopping = async () => {
            await standby.close();
            await store.close();
          };
          log.info(`standby: another hub is active on ${store.location}; answering STANDBY on ${standby.endpoints.join(', ')}, trying to take over every ${STANDBY_POLL_MS} ms`);
          while (!(await store.tryLead())) await new Promise((resolve) => setTimeout(resolve, STANDBY_POLL_MS));
          await standby.close();
          stopping = async () => store.close();
          tookOver = { store, since: Date.now() };
        }
        leading = true;
        openStore = async (): Promise<TaskStore> => store;
      }
      hub = await Hub.start({
        bind,
        db: String(opts.db),
        sync: opts.sync === true,
        maxMessageBytes: opts.maxMessageBytes as number,
        maxWaitMs: opts.maxWaitMs as number,
        maxParked: opts.maxParked as number,
        graph: {
          maxPayloadBytes: opts.maxPayloadBytes as number,
          maxResultBytes: opts.maxResultBytes as number,
          backoffBaseMs: opts.retryBackoffMs as number,
          maxBatch: opts.maxBatch as number,
          maxSteal: opts.maxSteal as number,
          maxTasks: opts.maxTasks as number,
        },
        files,
        log,
        curve,
        verifierJobs: opts.verifierJobs as number,
        verifierTimeoutMs: opts.verifierTimeoutMs as number,
        http,
        openStore,
      });
      stopping = undefined;
      if (tookOver !== undefined) {
        log.info(`active: took over ${tookOver.store.location} (leader epoch ${tookOver.store.leaderEpoch}), recovered ${hub.status().total} tasks in ${Date.now() - tookOver.since} ms`);
      }
    } catch (err) {
      process.stderr.write(`dhub: ${err instanceof DagworkError ? err.message : (err as Error).stack}\n`);
      process.exit(1);
    }
    const shutdown = (signal: string): void => {
      // A second signal, either one, ends the process at once (its default action).
      process.removeListener('SIGINT', onSigint);
      process.removeListener('SIGTERM', onSigterm);
      log.info(`${signal}: stopping (a second signal ends it at once)`);
      hub.stop().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    };
    const onSigint = (): void => shutdown('SIGINT');
    const onSigterm = (): void => shutdown('SIGTERM');
    // Before "listening on": whoever saw that line may stop the hub at once.
    process.removeListener('SIGINT', early);
    process.removeListener('SIGTERM', early);
    process.once('SIGINT', onSigint);
    process.once('SIGTERM', onSigterm);
    for (const { role, endpoint } of hub.endpoints) {
      const storeName = opts.store === undefined ? String(opts.db) : redactUrl(String(opts.store));
      const how = opts.curveSecret === undefined ? `store ${storeName}${opts.sync === true ? ', fsync on' : ''}` : `CURVE, role ${role}`;
      log.info(`listening on ${endpoint} (${how})`);
    }
    if (hub.dashboardUrl !== undefined) log.info(`dashboard on ${hub.dashboardUrl}/`);
    hub.done.catch((err: unknown) => {
      process.stderr.write(`dhub: ${(err as Error).message}\n`);
      process.exit(1);
    });
  });

// Usage errors (a bad option or value) exit 2, as in dquery and dworker; --help and --version 0.
program.exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2));
await program.parseAsync();

/** The version in the package.json this file was installed with (dist/hub/src/main.js -> ../../../). */
function packageVersion(): string {
  const text = readFileSync(new URL('../../../package.json', import.meta.url), 'utf8');
  return (JSON.parse(text) as { version: string }).version;
}
