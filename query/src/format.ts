/** How dquery shows status and task records: readable tables, and stable JSON for scripts. */
import { TASK_STATES, type GraphStatus, type StateCounts, type TaskRecord } from '../../proto/src/types.js';

const text = (b: Uint8Array): string => Buffer.from(b).toString('utf8');

function table(rows: string[][]): string {
  const widths = (rows[0] ?? []).map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
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
    table([['pool', ...TASK_STATES], ...status.pools.map((p) => [p.pool, ...countCells(p.counts)]), ['total', ...countCells(counts)]]),
  ];
  if (status.workers.length > 0) {
    lines.push(
      '',
      table([
        ['worker', 'running', 'done', 'failed', 'last seen'],
        ...status.workers.map((w) => [w.worker, String(w.running), String(w.done), String(w.failed), ago(status.now, w.lastSeen)]),
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
  const rows: [string, string][] = [
    ['name', spec.name],
    ['state', `${task.state} (attempt ${task.attempts} of ${spec.maxAttempts})`],
    ['pool', `${spec.pool}, priority ${spec.priority}, lease ${spec.leaseMs / 1000}s`],
    ['deps', spec.deps.join(', ') || '-'],
    ['dependents', dependents.join(', ') || '-'],
    ['payload', text(spec.payload) || '-'],
  ];
  if (task.worker !== '') rows.push(['worker', task.worker]);
  if (task.state === 'running') rows.push(['lease until', iso(task.leaseDeadline)]);
  if (task.notBefore > 0) rows.push(['not before', iso(task.notBefore)]);
  if (task.result.length > 0) rows.push(['result', text(task.result)]);
  if (task.lastError !== '') rows.push(['last error', task.lastError]);
  const lines = rows.map(([k, v]) => `${`${k}:`.padEnd(12)} ${v}`);
  lines.push('log:');
  for (const c of task.log) lines.push(`  ${iso(c.at)}  ${c.state.padEnd(8)} ${[c.worker, c.note].filter((s) => s !== '').join('  ')}`.trimEnd());
  return lines.join('\n');
}
