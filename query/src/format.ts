/** How dquery shows status and task records: readable tables, and stable JSON for scripts. */
import { TASK_STATES, type GraphStatus, type StateCounts, type TaskRecord } from '../../proto/src/types.js';

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

function ago(now: number, then: number): string {
  if (then <= 0) return 'not since the hub started';
  const s = Math.max(0, Math.round((now - then) / 1000));
  return s < 120 ? `${s}s ago` : s < 7200 ? `${Math.round(s / 60)}m ago` : `${Math.round(s / 3600)}h ago`;
}

const countCells = (c: StateCounts): string[] => TASK_STATES.map((s) => String(c[s]));

export function formatStatus(status: GraphStatus): string {
  const { counts, total } = status;
  const percent = total === 0 ? 0 : (100 * counts.done) / total;
  const lines = [
    `${total} tasks, ${counts.done} done (${percent.toFixed(1)}%), ${counts.failed} failed, ${counts.blocked} blocked; ` +
      `${status.donePerSecond.toFixed(1)} done/s over the last minute`,
    '',
    table([['pool', ...TASK_STATES], ...status.pools.map((p) => [shown(p.pool), ...countCells(p.counts)]), ['total', ...countCells(counts)]]),
  ];
  if (status.workers.length > 0) {
    lines.push(
      '',
      table([
        ['worker', 'running', 'done', 'failed', 'last seen'],
        ...status.workers.map((w) => [shown(w.worker), String(w.running), String(w.done), String(w.failed), ago(status.now, w.lastSeen)]),
      ]),
    );
  }
  return lines.join('\n');
}

export function lookupJson({ task, dependents }: { task: TaskRecord; dependents: string[] }): object {
  return {
    ...task,
    spec: { ...task.spec, payload: text(task.spec.payload) },
    result: text(task.result),
    dependents,
  };
}

export function formatLookup({ task, dependents }: { task: TaskRecord; dependents: string[] }): string {
  const { spec } = task;
  const iso = (ms: number): string => new Date(ms).toISOString();
  const many = { lines: true };
  const rows: [string, string][] = [
    ['name', shown(spec.name)],
    ['state', `${task.state} (attempt ${task.attempts} of ${spec.maxAttempts})`],
    ['pool', `${shown(spec.pool)}, priority ${spec.priority}, lease ${spec.leaseMs / 1000}s`],
    ['deps', shown(spec.deps.join(', ')) || '-'],
    ['dependents', shown(dependents.join(', ')) || '-'],
    ['payload', shown(text(spec.payload), many) || '-'],
  ];
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
