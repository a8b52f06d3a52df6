/**
 * Property-based tests of the graph core: random sequences of every operation and of clock
 * advances, checked after each step against the invariants the hub promises, against what the
 * state before the step allows, and against a graph restored from the records it marked dirty
 * (and those records against what a clean stop's snapshot would hold: Graph.records).
 */
import fc from 'fast-check';
import { describe, it } from 'vitest';
import { DagworkError } from '../proto/src/errors.js';
import { Graph } from '../hub/src/graph/graph.js';
import type { PoolSettings, TaskRecord, TaskSpecInput } from '../proto/src/types.js';

const NAMES = ['a', 'b', 'c', 'd', 'e', 'f'];
const WORKERS = ['w1', 'w2', 'w3'];
const T0 = 1_700_000_000_000;

type Op =
  | { op: 'create'; names: string[]; conflicting: boolean }
  | { op: 'steal'; worker: string; n: number; pools: readonly string[] }
  | { op: 'complete'; worker: string; names: string[] }
  | { op: 'fail'; worker: string; name: string; permanent: boolean }
  | { op: 'heartbeat'; worker: string; names: string[] }
  | { op: 'release'; worker: string; names: string[] }
  | { op: 'exit'; worker: string }
  | { op: 'retry'; names: string[] | undefined }
  | { op: 'cancel'; names: string[] }
  | { op: 'advance'; ms: number }
  | { op: 'poolSet'; pool: string; maxRunning: number | undefined; paused: boolean | undefined }
  | { op: 'poolDelete'; pool: string; force: boolean }
  | { op: 'rerun'; names: string[] }
  | { op: 'replace'; name: string; deps: string[]; rerun: boolean }
  | { op: 'delete'; names: string[]; descendants: boolean };

const name = fc.constantFrom(...NAMES);
const worker = fc.constantFrom(...WORKERS);
const names = fc.uniqueArray(name, { maxLength: 3 });
/** One definition per name for a whole run, so that most creates are new or identical. */
const spec = (n: string): fc.Arbitrary<TaskSpecInput> =>
  fc.record({
  name: fc.constant(n),
  deps: fc.uniqueArray(name, { maxLength: 2 }),
  priority: fc.integer({ min: 0, max: 2 }),
  pool: fc.constantFrom('default', 'gpu'),
  maxAttempts: fc.integer({ min: 1, max: 3 }),
  leaseMs: fc.constantFrom(100, 500, 2000),
  // One task in five a barrier: done by the graph itself, never handed out.
  barrier: fc.oneof({ arbitrary: fc.constant(false), weight: 4 }, { arbitrary: fc.constant(true), weight: 1 }),
  // One in four runs once its deps ended, done or not (a barrier cannot: see below).
  afterEnded: fc.oneof({ arbitrary: fc.constant(false), weight: 3 }, { arbitrary: fc.constant(true), weight: 1 }),
}).map((s) => (s.barrier ? { ...s, afterEnded: false } : s));
const specs = fc.tuple(...NAMES.map(spec));
const op: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.record({ op: fc.constant('create' as const), names: fc.uniqueArray(name, { minLength: 1, maxLength: 3 }), conflicting: fc.boolean() }), weight: 3 },
  { arbitrary: fc.record({ op: fc.constant('steal' as const), worker, n: fc.integer({ min: 1, max: 3 }), pools: fc.constantFrom([], ['default'], ['gpu']) }), weight: 3 },
  { arbitrary: fc.record({ op: fc.constant('complete' as const), worker, names }), weight: 3 },
  fc.record({ op: fc.constant('fail' as const), worker, name, permanent: fc.boolean() }),
  fc.record({ op: fc.constant('heartbeat' as const), worker, names }),
  fc.record({ op: fc.constant('release' as const), worker, names }),
  fc.record({ op: fc.constant('exit' as const), worker }),
  fc.record({ op: fc.constant('retry' as const), names: fc.option(names, { nil: undefined }) }),
  fc.record({ op: fc.constant('cancel' as const), names }),
  { arbitrary: fc.record({ op: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 2500 }) }), weight: 2 },
  fc.record({
    op: fc.constant('poolSet' as const),
    pool: fc.constantFrom('default', 'gpu'),
    maxRunning: fc.option(fc.integer({ min: 0, max: 2 }), { nil: undefined }),
    paused: fc.option(fc.boolean(), { nil: undefined }),
  }),
  { arbitrary: fc.record({ op: fc.constant('poolDelete' as const), pool: fc.constantFrom('default', 'gpu'), force: fc.boolean() }), weight: 1 },
  // Rerun with descendants (without, done dependents keep results of the old run: no invariant
  // on "done" could hold); replace with new deps (a cycle is refused) and priority.
  fc.record({ op: fc.constant('rerun' as const), names }),
  fc.record({ op: fc.constant('replace' as const), name, deps: fc.uniqueArray(name, { maxLength: 2 }), rerun: fc.boolean() }),
  // Delete: refused while a task left behind depends on a named one; with descendants, the cone.
  { arbitrary: fc.record({ op: fc.constant('delete' as const), names: fc.uniqueArray(name, { minLength: 1, maxLength: 2 }), descendants: fc.boolean() }), weight: 1 },
);

function snapshot(graph: Graph, now: number): Map<string, TaskRecord> {
  const out = new Map<string, TaskRecord>();
  for (const n of NAMES) {
    try {
      // The record's own fields only: the graph's links and queue marks are not part of it.
      const { spec, state, attempts, worker, holder, leaseDeadline, notBefore, result, lastError, log, seq, outputs } = graph.lookup(n, now).task;
      out.set(n, structuredClone({ spec, state, attempts, worker, holder, leaseDeadline, notBefore, result, lastError, log, seq, outputs }));
    } catch (err) {
      if (!(err instanceof DagworkError && err.code === 'UNKNOWN_TASK')) throw err;
    }
  }
  return out;
}

function fail(message: string): never {
  throw new Error(message);
}

/**
 * The promises that hold after every step, whatever happened. A task with a dependency once
 * deleted with its pool is left out of the checks of its state against its deps': it was blocked
 * by the deletion, or ran before it, and a task of that name may have been created again since.
 */
function checkInvariants(graph: Graph, tasks: Map<string, TaskRecord>, now: number, deletedEver: ReadonlySet<string>): void {
  const tally: Record<string, number> = { waiting: 0, ready: 0, running: 0, done: 0, failed: 0, blocked: 0, cancelled: 0 };
  for (const t of tasks.values()) {
    tally[t.state] = (tally[t.state] ?? 0) + 1;
    const deps = t.spec.deps.map((d) => tasks.get(d));
    const allDone = deps.every((d) => d?.state === 'done');
    const anyBad = deps.some((d) => d?.state === 'failed' || d?.state === 'blocked' || d?.state === 'cancelled');
    const exempt = t.spec.deps.some((d) => deletedEver.has(d));
    const where = `${t.spec.name} (${t.state}, deps ${t.spec.deps.map((d) => `${d}:${tasks.get(d)?.state ?? 'missing'}`).join(' ')})`;
    if (t.spec.afterEnded && !exempt) {
      // Ready once every dep ended, never blocked. Running or done it may outlive a retry of a dep.
      const allEnded = deps.every((d) => d?.state === 'done' || d?.state === 'failed' || d?.state === 'blocked' || d?.state === 'cancelled');
      if (t.state === 'ready' && !allEnded) fail(`${where} (after ended) ready before its deps ended`);
      if (t.state === 'waiting' && allEnded) fail(`${where} (after ended) waiting for nothing`);
      if (t.state === 'blocked') fail(`${where} (after ended) is blocked`);
      if (t.state === 'running' && (t.worker === '' || t.leaseDeadline <= now)) fail(`${where} running without a live lease`);
      continue;
    }
    if (exempt) {
      // only the checks below the dependency ones
    } else if ((t.state === 'ready' || t.state === 'running') && !allDone) fail(`${where} runnable before its deps are done`);
    if (!exempt && t.state === 'done' && !allDone) fail(`${where} done before its deps are done`);
    if (t.spec.barrier && (t.state === 'ready' || t.state === 'running' || t.state === 'failed')) fail(`${where} is a barrier, yet ${t.state}`);
    if (!exempt && t.state === 'waiting' && (allDone || anyBad)) fail(`${where} waiting for nothing, or for a failed ancestor`);
    if (!exempt && t.state === 'blocked' && !anyBad) fail(`${where} blocked without a failed or blocked dep`);
    if (t.state === 'running' && (t.worker === '' || t.leaseDeadline <= now)) fail(`${where} running without a live lease`);
    if (t.attempts > t.spec.maxAttempts || t.attempts < 0) fail(`${where} has ${t.attempts} attempts of ${t.spec.maxAttempts}`);
  }
  const status = graph.status(now);
  for (const [state, count] of Object.entries(tally)) {
    if (status.counts[state as keyof typeof status.counts] !== count) fail(`status counts ${state} ${status.counts[state as keyof typeof status.counts]}, tasks say ${count}`);
  }
  if (status.total !== tasks.size) fail(`status total ${status.total}, ${tasks.size} tasks exist`);
}

function run(definitions: TaskSpecInput[], ops: Op[]): void {
  const definition = (n: string): TaskSpecInput => definitions.find((d) => d.name === n) as TaskSpecInput;
  const graph = new Graph({ backoffBaseMs: 200 });
  const stored = new Map<string, TaskRecord>(); // what a store would hold: the dirty records
  const completions = new Map<string, number>();
  // The reference model of who may still complete a task: set by a steal, kept when the lease
  // expires, dropped when the worker gives the task up or it is otherwise settled.
  const holders = new Map<string, string>();
  // The reference model of pool settings, and what a store holds of them.
  const settings = new Map<string, PoolSettings>();
  const storedPools = new Map<string, PoolSettings>();
  const deletedEver = new Set<string>();
  /** A pool whose settings hold it back in `tasks`: paused, or as many running as it may have. */
  const held = (pool: string, tasks: Map<string, TaskRecord>): boolean => {
    const s = settings.get(pool);
    if (s === undefined) return false;
    let running = 0;
    for (const t of tasks.values()) if (t.spec.pool === pool && t.state === 'running') running++;
    return s.paused || (s.maxRunning > 0 && running >= s.maxRunning);
  };
  let now = T0;
  for (const step of ops) {
    const before = snapshot(graph, now);
    const existed = new Set(before.keys());
    try {
      switch (step.op) {
        case 'create':
          // A conflicting batch redefines its last task; the whole batch must then be refused.
          graph.create(
            step.names.map((n, i) => (step.conflicting && i === step.names.length - 1 ? { ...definition(n), priority: 99 } : definition(n))),
            now,
          );
          break;
        case 'steal': {
          const { tasks, finished } = graph.steal(step.worker, step.n, step.pools, now);
          const after = snapshot(graph, now);
          for (const t of tasks) {
            const s = settings.get(t.pool);
            if (s?.paused === true) fail(`stole ${t.name} of paused pool ${t.pool}`);
            const running = [...after.values()].filter((r) => r.spec.pool === t.pool && r.state === 'running').length;
            if (s !== undefined && s.maxRunning > 0 && running > s.maxRunning) fail(`stole ${t.name}: ${running} of pool ${t.pool} running, over its limit ${s.maxRunning}`);
            holders.set(t.name, step.worker);
            if (before.get(t.name)?.state !== 'ready') fail(`stole ${t.name}, which was ${before.get(t.name)?.state}: leased twice?`);
            if (t.attempt !== (before.get(t.name)?.attempts ?? 0) + 1) fail(`stole ${t.name} with attempt ${t.attempt}`);
          }
          // Highest priority first: nothing better is left behind in the asked pools.
          const lowest = Math.min(...tasks.map((t) => t.priority));
          for (const t of after.values()) {
            const asked = (step.pools.length === 0 || step.pools.includes(t.spec.pool)) && !held(t.spec.pool, after);
            if (asked && t.state === 'ready' && t.notBefore === 0 && t.spec.priority > lowest) fail(`left ${t.spec.name} (priority ${t.spec.priority}) for a lower one`);
            if (asked && t.state === 'ready' && t.notBefore === 0 && tasks.length < step.n) fail(`left ready ${t.spec.name} behind`);
          }
          // Finished: nothing can come to these pools unless tasks are created. A waiting task can
          // still become ready only while some task anywhere is ready or running.
          const busy = [...after.values()].some((t) => t.state === 'ready' || t.state === 'running');
          const asked = (t: TaskRecord): boolean => step.pools.length === 0 || step.pools.includes(t.spec.pool);
          const mayCome = [...after.values()].some((t) => asked(t) && (t.state === 'ready' || t.state === 'running' || (t.state === 'waiting' && busy)));
          if (finished !== (tasks.length === 0 && !mayCome)) fail(`finished is ${finished} while work ${mayCome ? 'may still come' : 'cannot come'}`);
          break;
        }
        case 'complete':
          for (const r of graph.complete(step.worker, step.names.map((n) => ({ name: n })), now)) {
            const prior = before.get(r.name);
            // Its own lease, or its own lease that expired while nobody else took the task: after a
            // release, an exit, its own fail or a cancel the holder is gone.
            const mine = prior?.worker === step.worker;
            const expiredMine = mine && holders.get(r.name) === step.worker && (prior?.state === 'ready' || prior?.state === 'failed');
            const allowed = prior !== undefined && mine && (prior.state === 'running' || expiredMine);
            if (prior?.state === 'cancelled' && r.outcome !== 'TASK_CANCELLED') fail(`complete of cancelled ${r.name}: ${r.outcome}`);
            if ((r.outcome === 'ACCEPTED') !== allowed) fail(`complete ${r.name} by ${step.worker} from ${prior?.state}/${prior?.worker}: ${r.outcome}`);
            if (r.outcome === 'ACCEPTED') {
              holders.delete(r.name);
              completions.set(r.name, (completions.get(r.name) ?? 0) + 1);
              if ((completions.get(r.name) ?? 0) > 1) fail(`${r.name} completed twice`);
              before.set(r.name, { ...(prior as TaskRecord), state: 'done' }); // a repeat in the same request
            }
          }
          break;
        case 'fail': {
          const prior = before.get(step.name);
          const { result } = graph.fail(step.worker, step.name, 'boom', step.permanent, now);
          const allowed = prior?.state === 'running' && prior.worker === step.worker;
          if ((result.outcome === 'ACCEPTED') !== allowed) fail(`fail ${step.name} by ${step.worker} from ${prior?.state}: ${result.outcome}`);
          if (allowed) holders.delete(step.name);
          break;
        }
        case 'heartbeat':
          for (const r of graph.heartbeat(step.worker, step.names, now)) {
            const prior = before.get(r.name);
            if (prior?.state === 'running' && prior.worker === step.worker) fail(`heartbeat lost a live lease on ${r.name}`);
          }
          break;
        case 'release':
          for (const r of graph.release(step.worker, step.names, now)) if (r.outcome === 'ACCEPTED') holders.delete(r.name);
          break;
        case 'exit':
          graph.workerExit(step.worker, now);
          for (const [n, t] of before) if (t.state === 'running' && t.worker === step.worker) holders.delete(n);
          if ([...snapshot(graph, now).values()].some((t) => t.state === 'running' && t.worker === step.worker)) fail(`${step.worker} kept a lease after exit`);
          break;
        case 'retry': {
          graph.retry(step.names, now);
          const after = snapshot(graph, now);
          for (const [n, t] of before) {
            const asked = step.names === undefined ? t.state === 'failed' : step.names.includes(n) && (t.state === 'failed' || t.state === 'cancelled');
            if (asked) holders.delete(n);
            const stayed = after.get(n)?.state === t.state;
            if ((t.state === 'failed' || t.state === 'cancelled') && asked === stayed) fail(`retry ${step.names?.join(',') ?? '(all failed)'} ${asked ? 'left' : 'moved'} ${t.state} ${n}`);
          }
          break;
        }
        case 'cancel':
          for (const r of graph.cancel(step.names, 'stop', now).results) {
            const prior = before.get(r.name);
            const expected = prior === undefined ? 'NOT_FOUND' : prior.state === 'done' ? 'ALREADY_DONE' : prior.state === 'cancelled' ? 'TASK_CANCELLED' : 'ACCEPTED';
            if (r.outcome !== expected) fail(`cancel ${r.name} from ${prior?.state}: ${r.outcome}`);
            if (r.outcome === 'ACCEPTED') holders.delete(r.name);
          }
          for (const n of step.names) if (before.has(n) && before.get(n)?.state !== 'done' && snapshot(graph, now).get(n)?.state !== 'cancelled') fail(`${n} is not cancelled`);
          break;
        case 'advance':
          now += step.ms;
          graph.advance(now);
          break;
        case 'rerun': {
          const r = graph.rerun({ names: step.names, descendants: true, prefix: '', pool: '' }, now);
          for (const x of r.results) {
            const prior = before.get(x.name)?.state;
            if (prior === 'done' && x.outcome !== 'ACCEPTED') fail(`rerun of done ${x.name}: ${x.outcome}`);
            if (prior === undefined && x.outcome !== 'NOT_FOUND') fail(`rerun of unknown ${x.name}: ${x.outcome}`);
          }
          break;
        }
        case 'replace': {
          const prior = before.get(step.name);
          const r = graph.replace([{ ...definition(step.name), deps: step.deps, priority: 5 }], step.rerun, false, now);
          const outcome = r.results[0]?.outcome;
          // The same definition again (an earlier replace gave it) is left alone: ACCEPTED.
          const same = prior !== undefined && prior.spec.priority === 5 && prior.spec.deps.length === step.deps.length && step.deps.every((d) => prior.spec.deps.includes(d));
          const expected =
            prior === undefined ? 'NOT_FOUND' : same || step.rerun || (prior.state !== 'done' && prior.state !== 'running') ? 'ACCEPTED' : prior.state === 'done' ? 'ALREADY_DONE' : 'TASK_RUNNING';
          if (outcome !== expected) fail(`replace of ${step.name} (${prior?.state}, rerun ${step.rerun}): ${outcome}`);
          break;
        }
        case 'poolSet': {
          const prior = settings.get(step.pool) ?? { maxRunning: 0, paused: false, jobVerifier: '', resultVerifier: '' };
          const next = { ...prior, maxRunning: step.maxRunning ?? prior.maxRunning, paused: step.paused ?? prior.paused };
          const info = graph.poolSet(step, now);
          if (info.maxRunning !== next.maxRunning || info.paused !== next.paused) fail(`pool set ${JSON.stringify(step)}: ${JSON.stringify(info)}`);
          if (next.maxRunning === 0 && !next.paused) settings.delete(step.pool);
          else settings.set(step.pool, next);
          break;
        }
        case 'delete': {
          // What should go: the named tasks (with descendants, their downstream cone), less, to a
          // fixed point, every one that a task staying depends on.
          const dependents = (n: string): string[] => [...before.values()].filter((t) => t.spec.deps.includes(n)).map((t) => t.spec.name);
          const doomed = new Set(step.names.filter((n) => before.has(n)));
          if (step.descendants) for (const n of doomed) for (const d of dependents(n)) doomed.add(d);
          for (let changed = true; changed; ) {
            changed = false;
            for (const n of doomed) {
              if (dependents(n).every((d) => doomed.has(d))) continue;
              doomed.delete(n);
              changed = true;
            }
          }
          const result = graph.deleteTasks(step.names, step.descendants, now);
          if (result.deleted !== doomed.size) fail(`delete ${JSON.stringify(step)} removed ${result.deleted}, not ${doomed.size}`);
          for (const r of result.results) {
            const expected = !before.has(r.name) ? 'NOT_FOUND' : doomed.has(r.name) ? 'ACCEPTED' : 'HAS_DEPENDENTS';
            if (r.outcome !== expected) fail(`delete of ${r.name} (${JSON.stringify(step)}): ${r.outcome}, not ${expected}`);
          }
          const after = snapshot(graph, now);
          for (const n of before.keys()) if (after.has(n) === doomed.has(n)) fail(`delete ${JSON.stringify(step)}: ${n} ${doomed.has(n) ? 'outlived it' : 'was removed'}`);
          for (const n of doomed) {
            existed.delete(n);
            deletedEver.add(n);
            holders.delete(n);
            completions.delete(n);
          }
          break;
        }
        case 'poolDelete': {
          const ofPool = [...before.values()].filter((t) => t.spec.pool === step.pool).map((t) => t.spec.name);
          const outside = [...before.values()].some((t) => t.spec.pool !== step.pool && t.spec.deps.some((d) => ofPool.includes(d)));
          const known = ofPool.length > 0 || settings.has(step.pool);
          const result = graph.poolDelete(step.pool, step.force, now);
          if (!known || (outside && !step.force)) fail(`pool delete ${step.pool} (force ${step.force}) was not refused`);
          if (result.deleted !== ofPool.length) fail(`pool delete ${step.pool} removed ${result.deleted} of ${ofPool.length}`);
          const after = snapshot(graph, now);
          for (const n of ofPool) {
            if (after.has(n)) fail(`${n} outlived the delete of its pool`);
            existed.delete(n);
            deletedEver.add(n);
            holders.delete(n);
            completions.delete(n);
          }
          settings.delete(step.pool);
          break;
        }
      }
    } catch (err) {
      if (!(err instanceof DagworkError)) throw err;
      // A refused request changes nothing.
      const after = snapshot(graph, now);
      if (JSON.stringify([...after]) !== JSON.stringify([...before])) fail(`refused ${step.op} (${err.code}) but changed the graph`);
    }
    for (const r of graph.takeDirty()) stored.set(r.spec.name, structuredClone(r));
    for (const n of graph.takeDeleted()) stored.delete(n);
    for (const [pool, s] of graph.takeDirtyPools()) {
      if (s === undefined) storedPools.delete(pool);
      else storedPools.set(pool, s);
    }
    graph.takeNewSpecs();
    // What a clean stop's snapshot holds (Graph.records) is what the store holds, in creation
    // order, but for leases renewed since they were written.
    const all = [...graph.records()];
    if (all.length !== stored.size) fail(`records() gives ${all.length} tasks, the store holds ${stored.size}`);
    for (let i = 0; i < all.length; i++) {
      const r = all[i] as TaskRecord;
      const s = stored.get(r.spec.name);
      if (i > 0 && r.seq <= (all[i - 1] as TaskRecord).seq) fail(`records() gives ${r.spec.name} out of creation order`);
      if (s === undefined) fail(`records() gives ${r.spec.name}, which the store does not hold`);
      else if (JSON.stringify({ ...r, leaseDeadline: 0 }) !== JSON.stringify({ ...s, leaseDeadline: 0 }) || r.leaseDeadline < s.leaseDeadline) {
        fail(`records() gives ${r.spec.name} otherwise than the store holds it after ${step.op}`);
      }
    }
    const tasks = snapshot(graph, now);
    // A task rerun or replaced starts afresh: nobody holds it, and it may be completed again.
    for (const [n, t] of tasks) {
      const fresh = t.log.slice(before.get(n)?.log.length ?? t.log.length).some((c) => c.note.startsWith('rerun') || c.note.startsWith('replaced'));
      if (!fresh) continue;
      holders.delete(n);
      completions.delete(n);
    }
    for (const n of existed) if (!tasks.has(n)) fail(`task ${n} was lost`);
    checkInvariants(graph, tasks, now, deletedEver);
    // What the store holds is the graph: a restart from it sees the same tasks, but for the
    // leases, which a restart renews to their full length (renewals are not stored).
    const restoredGraph = Graph.restore([...stored.values()].map((r) => structuredClone(r)), now, {}, undefined, [...storedPools]);
    if (JSON.stringify(restoredGraph.poolList('', now)) !== JSON.stringify({ ...graph.poolList('', now), pools: graph.poolList('', now).pools.map((p) => ({ ...p, donePerSecond: 0 })) })) {
      fail(`pools restored from the store differ after ${step.op}`);
    }
    const restored = snapshot(restoredGraph, now);
    for (const [n, t] of tasks) {
      const r = restored.get(n);
      if (t.state === 'running' && r !== undefined) {
        if (r.leaseDeadline !== now + t.spec.leaseMs || t.leaseDeadline > r.leaseDeadline) fail(`restored lease of ${n} ends at ${r.leaseDeadline}, live at ${t.leaseDeadline}`);
        r.leaseDeadline = t.leaseDeadline;
      }
    }
    if (JSON.stringify([...restored]) !== JSON.stringify([...tasks])) fail(`a graph restored from the store differs after ${step.op}`);
  }
}

describe('graph properties', () => {
  it('holds its invariants under random sequences of every operation and clock advances', () => {
    fc.assert(
      fc.property(specs, fc.array(op, { minLength: 5, maxLength: 80, size: 'max' }), (definitions, ops) => run(definitions, ops)),
      { numRuns: 300 },
    );
  });
});
