/** How dquery shows status and task records: readable tables, and stable JSON for scripts. */
import { TASK_STATES, type FileRef, type GraphStatus, type Param, type StateCounts, type TaskRecord, type TaskSummary } from '../../proto/src/types.js';

const text = (b: Uint8Array): string => Buffer.from(b).toString('utf8');

// C0 controls, DEL and C1 controls (U+009B is a CSI on its own in some terminals).
const CONTROLS = /[\u0000-\u001f\u007f-\u009f]/g;
const CONTROLS_BUT_LINES = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;

/**
 * `s` made safe to print to a terminal: every control character is shown as \xHH, so text that
 * came from workers (payloads, results, failure reasons) cannot move the cursor, retitle the
 * window or clear the screen. With `lines`, newlines and tabs are kept (multi-line results).
 * For human output only: `--json` and steal's script output keep the text as it is.
 */
export function shown(s: string, options: { lines?: boolean } = {}): string {
  return s.replace(options.lines === true ? CONTROLS_BUT_LINES : CONTROLS, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

function table(rows: string[][]): string {
  // A reduce, not Math.max(...): a table may have more rows than a call takes arguments.
  const widths = (rows[0] ?? []).map((_, i) => rows.reduce((width, r) => Math.max(width, (r[i] ?? '').length), 0));
  return rows.map((r) => r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0))).join('  ').trimEnd()).join('\n');
}

/** Params as `name=value ...`, a value with a space or a quote in JSON's quotes. */
export function paramsText(params: readonly Param[]): string {
  return params.map((p) => `${p.name}=${/^[^\s"'=]*$/.test(p.value) && p.value !== '' ? shown(p.value) : shown(JSON.stringify(p.value))}`).join(' ');
}

/**
 * Listed tasks as a table: name, state, attempts, worker, (with `params`, the parameters,) the
 * first line of the last error.
 */
export function formatTaskList(tasks: readonly TaskSummary[], header: boolean, params = false): string {
  const error = (e: string): string => {
    const first = shown(e.split('\n')[0] ?? '');
    return first.length > 100 ? `${first.slice(0, 100)}...` : first;
  };
  // An after-ended task (or a blocked one) says how many of its dependencies failed; lookup names them.
  const state = (t: TaskSummary): string => (t.failedDeps > 0 ? `${t.state} (${plural(t.failedDeps, 'dep')} failed)` : t.state);
  const rows = tasks.map((t) => [shown(t.name), state(t), String(t.attempts), shown(t.worker), ...(params ? [paramsText(t.params)] : []), error(t.lastError)]);
  if (header) rows.unshift(['name', 'state', 'attempts', 'worker', ...(params ? ['params'] : []), 'last error']);
  const columns = params ? 5 : 4;
  const widths = Array.from({ length: columns }, (_, i) => rows.reduce((width, r) => Math.max(width, (r[i] ?? '').length), 0));
  return rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join('  ').trimEnd()).join('\n');
}

/** A listed task for `list --json`: its fields, params (an object) only when asked for. */
export function summaryJson(t: TaskSummary, params: boolean): object {
  const { params: list, result: _result, outputs: _outputs, ...rest } = t;
  return params ? { ...rest, params: Object.fromEntries(list.map((p) => [p.name, p.value])) } : rest;
}

const fileLine = (f: FileRef): string => `${shown(f.name)}  ${f.size} bytes${f.executable ? ', executable' : ''}  sha256:${f.sha256}`;

function ago(now: number, then: number): string {
  if (then <= 0) return 'not since the hub started';
  return `${duration(now - then)} ago`;
}

/** A span of time for people: "42s", "7m", "3h 5m", "2d 4h". */
export function duration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 2 * 86_400) return `${Math.floor(s / 3600)}h ${Math.round((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86_400)}d ${Math.round((s % 86_400) / 3600)}h`;
}

/** "1 task", "2 tasks". */
export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}


/**
 * Nothing can come to a graph in this state unless someone creates tasks: nothing is ready or
 * running (tasks still waiting then wait on names that do not exist, directly or not). The rule the
 * hub applies to steals, over the whole graph.
 */
export function isFinished(counts: StateCounts): boolean {
  return counts.ready + counts.running + counts.verifying === 0;
}

/** Tasks that could still run: ready, running, and waiting on tasks that exist. */
function remaining(status: GraphStatus): number {
  return status.counts.ready + status.counts.running + status.counts.verifying + Math.max(0, status.counts.waiting - status.waitingOnMissing);
}

/** Where the status came from: the hub's endpoint, its store's id, when it started. */
export interface StatusSource {
  endpoint: string;
  storeId: string;
  startedMs: number;
  /** Files the hub holds, and their bytes. */
  files?: { count: number; bytes: number };
}

/** A byte count for people: "812 bytes", "3.4 KiB", "2.1 MiB", "1.5 GiB". */
export function byteCount(n: number): string {
  if (n < 1024) return `${n} bytes`;
  const [value, unit] = n < 2 ** 20 ? [n / 1024, 'KiB'] : n < 2 ** 30 ? [n / 2 ** 20, 'MiB'] : [n / 2 ** 30, 'GiB'];
  return `${value.toFixed(1)} ${unit}`;
}

export function formatStatus(status: GraphStatus, source?: StatusSource): string {
  const { counts, total } = status;
  const percent = total === 0 ? 0 : (100 * counts.done) / total;
  const lines: string[] = [];
  if (source !== undefined) {
    const started = source.startedMs > 0 ? `, up ${duration(status.now - source.startedMs)} (since ${new Date(source.startedMs).toISOString()})` : '';
    lines.push(`hub ${source.endpoint}, store ${source.storeId === '' ? '(id not given)' : source.storeId}${started}`);
    if (source.files !== undefined && source.files.count > 0) lines.push(`files: ${plural(source.files.count, 'file')} held, ${byteCount(source.files.bytes)}`);
  }
  const notDone = [`${counts.failed} failed`, `${counts.blocked} blocked`, ...(counts.cancelled > 0 ? [`${counts.cancelled} cancelled`] : [])];
  lines.push(`${plural(total, 'task')}, ${counts.done} done (${percent.toFixed(1)}%), ${notDone.join(', ')}`);
  // The hub's rate is over the last minute, or since its first completion when that is sooner.
  if (status.donePerSecond > 0) {
    const left = remaining(status);
    const eta = left > 0 && !isFinished(counts) ? `; ${plural(left, 'task')} to go, about ${duration((left / status.donePerSecond) * 1000)} at this rate` : '';
    lines.push(`${formatRate(status.donePerSecond)} done/s over the last minute (or since the first completion, if sooner)${eta}`);
  }
  if (status.waitingOnMissing > 0) {
    const examples = status.missingExamples.slice(0, 5).map((n) => shown(n));
    const more = status.missingNames - examples.length;
    lines.push(
      `${plural(status.waitingOnMissing, 'task waits', 'tasks wait')} on ${plural(status.missingNames, "name that doesn't exist", "names that don't exist")} ` +
        `(e.g. ${examples.join(', ')}${more > 0 ? ` and ${more} more` : ''}): a typo, or tasks still to be created`,
    );
  }
  // Per pool, its rate over the last minute and the time its tasks still to run take at that rate.
  const eta = (c: StateCounts, rate: number): string => {
    const left = c.waiting + c.ready + c.running + c.verifying;
    return left === 0 ? '-' : rate > 0 ? duration((left / rate) * 1000) : '?';
  };
  // The verifying column only while some task verifies (pools with a result verifier).
  const states = counts.verifying > 0 ? TASK_STATES : TASK_STATES.filter((s) => s !== 'verifying');
  const cells = (c: StateCounts): string[] => states.map((s) => String(c[s]));
  lines.push(
    '',
    table([
      ['pool', ...states, 'done/s', 'left'],
      ...status.pools.map((p) => [shown(p.pool), ...cells(p.counts), formatRate(p.donePerSecond), eta(p.counts, p.donePerSecond)]),
      ['total', ...cells(counts), formatRate(status.donePerSecond), eta(counts, status.donePerSecond)],
    ]),
  );
  if (status.poolsTotal > status.pools.length) lines.push(`(${status.pools.length} of ${status.poolsTotal} pools listed; the total counts them all)`);
  if (status.workers.length > 0) {
    lines.push(
      '',
      table([
        ['worker', 'running', 'done', 'failed', 'last seen'],
        ...status.workers.map((w) => [
          shown(w.worker),
          String(w.running),
          String(w.done),
          String(w.failed),
          `${w.exited ? 'exited, ' : ''}${ago(status.now, w.lastSeen)}`,
        ]),
      ]),
    );
    if (status.workersTotal > status.workers.length) {
      lines.push(`(${status.workers.length} of ${status.workersTotal} workers listed: those holding tasks, then the most recently seen)`);
    }
  }
  return lines.join('\n');
}

/** A rate with enough digits to be read: "0.05", "1.2", "820". */
function formatRate(r: number): string {
  return r >= 100 ? r.toFixed(0) : r >= 1 ? r.toFixed(1) : r.toPrecision(2).replace(/\.?0+$/, '');
}

/** How a finished run ended, one line: "finished: all 41 tasks done", or what was not done. */
export function finishedLine(status: GraphStatus): string {
  const { counts } = status;
  if (counts.done === status.total) return `finished: all ${plural(status.total, 'task')} done`;
  const parts = [
    `${counts.done} done`,
    ...(counts.failed > 0 ? [`${counts.failed} failed`] : []),
    ...(counts.blocked > 0 ? [`${counts.blocked} blocked`] : []),
    ...(counts.cancelled > 0 ? [`${counts.cancelled} cancelled`] : []),
    ...(counts.waiting > 0 ? [`${counts.waiting} still waiting (on names that don't exist)`] : []),
  ];
  return `finished, not all done: ${parts.join(', ')} (of ${plural(status.total, 'task')})`;
}

interface Found {
  task: TaskRecord;
  dependents: string[];
  missingDeps: string[];
  /** Dependencies failed, cancelled or blocked now (absent from an older hub's reply: empty). */
  failedDeps: string[];
}

export function lookupJson({ task, dependents, missingDeps, failedDeps }: Found): object {
  return {
    ...task,
    spec: { ...task.spec, payload: text(task.spec.payload) },
    result: text(task.result),
    dependents,
    missingDeps,
    failedDeps,
  };
}

export function formatLookup({ task, dependents, missingDeps, failedDeps }: Found): string {
  const { spec } = task;
  const iso = (ms: number): string => new Date(ms).toISOString();
  const many = { lines: true };
  const missing = new Set(missingDeps);
  const failed = new Set(failedDeps);
  const deps = spec.deps.map((d) => (missing.has(d) ? `${shown(d)} (does not exist)` : failed.has(d) ? `${shown(d)} (did not end done)` : shown(d))).join(', ');
  const rows: [string, string][] = [
    ['name', shown(spec.name)],
    ['state', `${task.state} (attempt ${task.attempts} of ${spec.maxAttempts})`],
    ['pool', `${shown(spec.pool)}, priority ${spec.priority}, lease ${spec.leaseMs / 1000}s`],
    ['deps', `${deps || '-'}${spec.afterEnded ? '  (runs once every one has ended, done or not)' : ''}`],
    ['dependents', shown(dependents.join(', ')) || '-'],
    ['payload', spec.barrier ? '- (a barrier: done by the hub once every dependency is)' : shown(text(spec.payload), many) || '-'],
  ];
  if (spec.params.length > 0) rows.push(['params', paramsText(spec.params)]);
  for (const f of spec.inputs) rows.push(['input', fileLine(f)]);
  for (const f of spec.paramFiles) rows.push(['param file', `${shown(f.name)} (holds param ${f.param})`]);
  const kept = new Map(task.outputs.map((f) => [f.name, f]));
  for (const name of spec.outputs) {
    const f = kept.get(name);
    rows.push(['output', f === undefined ? `${shown(name)}  (not yet uploaded)` : fileLine(f)]);
  }
  if (missingDeps.length > 0) {
    rows.splice(4, 0, ['missing', `${plural(missingDeps.length, 'dependency does', 'dependencies do')} not exist: it waits until ${missingDeps.length === 1 ? 'a task of that name is' : 'tasks of those names are'} created`]);
  }
  if (task.worker !== '') rows.push(['worker', shown(task.worker)]);
  if (task.state === 'running') rows.push(['lease until', iso(task.leaseDeadline)]);
  if (task.notBefore > 0) rows.push(['not before', iso(task.notBefore)]);
  if (task.result.length > 0) rows.push(['result', shown(text(task.result), many)]);
  if (task.lastError !== '') rows.push(['last error', shown(task.lastError, many)]);
  const lines = rows.map(([k, v]) => `${`${k}:`.padEnd(12)} ${v}`);
  lines.push('log:');
  for (const c of task.log) lines.push(`  ${iso(c.at)}  ${c.state.padEnd(8)} ${shown([c.worker, c.note].filter((s) => s !== '').join('  '))}`.trimEnd());
  return lines.join('\n');
}

/** A run time: "320 ms", "4.2s", then as duration(). */
export function runTime(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  return duration(ms);
}

/** `dquery workers`: a line per worker with what it did and what it holds. */
export function formatWorkers(status: GraphStatus): string {
  if (status.workers.length === 0) return 'no workers seen';
  const rows = [['worker', 'done', 'failed', 'busy', 'mean run', 'max run', 'last seen', 'running now']];
  for (const w of status.workers) {
    const now = w.running === 0 ? '-' : `${w.running}: ${w.tasks.map((t) => shown(t)).join(', ')}${w.running > w.tasks.length ? ', ...' : ''}`;
    rows.push([
      shown(w.worker),
      String(w.done),
      String(w.failed),
      w.runs === 0 ? '-' : runTime(w.busyMs),
      w.runs === 0 ? '-' : runTime(w.busyMs / w.runs),
      w.runs === 0 ? '-' : runTime(w.maxRunMs),
      `${w.exited ? 'exited, ' : ''}${ago(status.now, w.lastSeen)}`,
      now,
    ]);
  }
  const lines = [table(rows)];
  if (status.workersTotal > status.workers.length) lines.push(`(${status.workers.length} of ${status.workersTotal} workers listed: those holding tasks, then the most recently seen)`);
  return lines.join('\n');
}
