/**
 * The graph as a picture (GraphViewRequest in the .proto): tasks and their dependency edges, or
 * groups of tasks with their counts per state and the edges between groups. Pure: it reads the
 * graph through a few accessors and changes nothing.
 */
import { DagworkError } from '../../../proto/src/errors.js';
import { VIEW_DEFAULT_DEPTH, VIEW_DEFAULT_NODES, VIEW_MAX_DEPTH, VIEW_MAX_EDGES, VIEW_MAX_NODES, VIEW_MAX_REPLY_BYTES } from '../../../proto/src/graph-view.js';
import { emptyCounts, type Collapse, type GraphEdge, type GraphNode, type GraphView, type GraphViewQuery, type TaskState } from '../../../proto/src/types.js';

/** What a view reads of the graph; `T` is the graph's own task. */
export interface ViewSource<T> {
  /** Every task, in creation order. */
  readonly order: readonly T[];
  get(name: string): T | undefined;
  name(task: T): string;
  pool(task: T): string;
  state(task: T): TaskState;
  /** Its creation order. */
  seq(task: T): number;
  /** The names its spec depends on (some may not exist). */
  deps(task: T): readonly string[];
  /** The tasks that depend on it. */
  dependents(task: T): readonly T[];
}

/**
 * The view `query` asks for. Throws INVALID_ARGUMENT (depth or max_nodes past their limits),
 * UNKNOWN_TASK (`around` names no task) or TOO_LARGE (more nodes than max_nodes, more than
 * VIEW_MAX_EDGES edges, or a reply of about VIEW_MAX_REPLY_BYTES; the message says which and how
 * to narrow the view).
 * Cost: O(tasks) for a whole graph; with `around`, the walk stops once it has found more tasks
 * than the view could show (max_nodes uncollapsed, VIEW_MAX_NODES collapsed), though it may step
 * over tasks of other pools on its way.
 */
export function graphView<T>(source: ViewSource<T>, query: GraphViewQuery): GraphView {
  const maxNodes = query.maxNodes === 0 ? VIEW_DEFAULT_NODES : query.maxNodes;
  if (!Number.isSafeInteger(maxNodes) || maxNodes < 0 || maxNodes > VIEW_MAX_NODES) {
    throw new DagworkError('INVALID_ARGUMENT', `max_nodes ${query.maxNodes} is over the limit of ${VIEW_MAX_NODES}`);
  }
  const depth = query.depth === 0 ? VIEW_DEFAULT_DEPTH : query.depth;
  if (!Number.isSafeInteger(depth) || depth < 0 || depth > VIEW_MAX_DEPTH) {
    throw new DagworkError('INVALID_ARGUMENT', `depth ${query.depth} is over the limit of ${VIEW_MAX_DEPTH}`);
  }
  const inPool = query.pool === '' ? () => true : (task: T) => source.pool(task) === query.pool;
  const tasks =
    query.around === ''
      ? source.order.filter(inPool)
      : around(source, query.around, depth, inPool, query.collapse === 'none' ? maxNodes : VIEW_MAX_NODES, query);
  // Uncollapsed, a node per task: refused before any node is made.
  if (query.collapse === 'none' && tasks.length > maxNodes) throw tooLarge(tasks.length, maxNodes, query);
  const keyOf = groupKey(source, query.collapse);
  // Each task's node; the groups in the creation order of their first task.
  const nodeOf = new Map<string, number>();
  const member = new Map<T, number>();
  for (const task of tasks) {
    const key = keyOf(task);
    let index = nodeOf.get(key);
    if (index === undefined) nodeOf.set(key, (index = nodeOf.size));
    member.set(task, index);
  }
  if (nodeOf.size > maxNodes) throw tooLarge(nodeOf.size, maxNodes, query);

  const nodes: GraphNode[] = [...nodeOf.keys()].map((id) => ({
    id,
    counts: emptyCounts(),
    state: undefined,
    pool: query.collapse === 'pool' ? id : '',
    tasks: 0,
  }));
  for (const [task, index] of member) {
    const node = nodes[index] as GraphNode;
    const state = source.state(task);
    node.counts[state]++;
    node.tasks++;
    if (query.collapse === 'none') {
      node.state = state;
      node.pool = source.pool(task);
    }
  }

  // The reply's size, about: nodes and edges have a few bytes of fields and framing besides their names.
  const idBytes = nodes.map((node) => Buffer.byteLength(node.id, 'utf8'));
  let replyBytes = 0;
  for (const [i, node] of nodes.entries()) replyBytes += (idBytes[i] as number) + Buffer.byteLength(node.pool, 'utf8') + NODE_BYTES;

  // Edges between the nodes of the view, counted; a group's edges to itself are left out. Walked
  // from each dependency to its dependents (links, not names to look up), keyed by from * n + to
  // so that a numeric sort orders them by their nodes, from then to. Refused as soon as there
  // are too many of them, or the reply grows too big.
  const n = nodes.length;
  const counted = new Map<number, number>();
  for (const [task, from] of member) {
    for (const dependent of source.dependents(task)) {
      const to = member.get(dependent);
      if (to === undefined || to === from) continue;
      const key = from * n + to;
      const count = counted.get(key);
      if (count === undefined) {
        replyBytes += (idBytes[from] as number) + (idBytes[to] as number) + EDGE_BYTES;
        if (counted.size === VIEW_MAX_EDGES || replyBytes > VIEW_MAX_REPLY_BYTES) throw tooBig(n, counted.size, query);
      }
      counted.set(key, (count ?? 0) + 1);
    }
  }
  const edges: GraphEdge[] = [...counted.keys()]
    .sort((a, b) => a - b)
    .map((key) => ({ from: (nodes[Math.floor(key / n)] as GraphNode).id, to: (nodes[key % n] as GraphNode).id, count: counted.get(key) as number }));
  return { nodes, edges, tasks: tasks.length };
}

/** The key of the node a task belongs to. */
function groupKey<T>(source: ViewSource<T>, collapse: Collapse): (task: T) => string {
  switch (collapse) {
    case 'none':
      return (task) => source.name(task);
    case 'pool':
      return (task) => source.pool(task);
    case 'prefix':
      return (task) => namePrefix(source.name(task));
  }
}

/** The name up to its last '/', or the whole name. */
export function namePrefix(name: string): string {
  const slash = name.lastIndexOf('/');
  return slash < 0 ? name : name.slice(0, slash);
}

/**
 * The task named `name`, its ancestors and its descendants up to `depth` steps, those that pass
 * `keep`, in creation order. Throws UNKNOWN_TASK, or TOO_LARGE once more than `limit` are kept.
 */
function around<T>(source: ViewSource<T>, name: string, depth: number, keep: (task: T) => boolean, limit: number, query: GraphViewQuery): T[] {
  const start = source.get(name);
  if (start === undefined) throw new DagworkError('UNKNOWN_TASK', `no task named "${name}"`, { task: name });
  const found = new Set<T>([start]);
  let kept = keep(start) ? 1 : 0;
  // Upstream, then downstream. One set of tasks seen serves both: acyclic, no task is both.
  for (const next of [(task: T) => depsOf(source, task), (task: T) => source.dependents(task)]) {
    let frontier: T[] = [start];
    for (let step = 0; step < depth && frontier.length > 0; step++) {
      const reached: T[] = [];
      for (const task of frontier) {
        for (const other of next(task)) {
          if (found.has(other)) continue;
          found.add(other);
          reached.push(other);
          if (keep(other) && ++kept > limit) {
            throw new DagworkError(
              'TOO_LARGE',
              `more than ${limit} tasks lie within ${depth} step${depth === 1 ? '' : 's'} of "${name}"${query.pool === '' ? '' : ` in pool "${query.pool}"`}; ` +
                `narrow the view: a smaller depth${query.collapse === 'none' ? ', collapse (prefix or pool)' : ''}${query.pool === '' ? ', a pool' : ''}`,
            );
          }
        }
      }
      frontier = reached;
    }
  }
  return [...found].filter(keep).sort((a, b) => source.seq(a) - source.seq(b));
}

function* depsOf<T>(source: ViewSource<T>, task: T): Iterable<T> {
  for (const name of source.deps(task)) {
    const dep = source.get(name);
    if (dep !== undefined) yield dep;
  }
}

/** Bytes of a node's reply besides its id and pool, and of an edge's besides its two ids, about. */
const NODE_BYTES = 24;
const EDGE_BYTES = 12;

function tooBig(nodes: number, edges: number, query: GraphViewQuery): DagworkError {
  const what = edges === VIEW_MAX_EDGES ? `more than ${VIEW_MAX_EDGES} edges` : `a reply over ${VIEW_MAX_REPLY_BYTES >> 20} MiB (${nodes} nodes, ${edges} edges so far)`;
  return new DagworkError('TOO_LARGE', `the view would have ${what}; narrow it with ${ways(query).join(', ')}`);
}

function ways(query: GraphViewQuery): string[] {
  return [
    query.collapse === 'none' ? 'collapse (prefix or pool)' : '',
    query.around === '' ? 'around a task' : 'a smaller depth',
    query.pool === '' ? 'a pool' : '',
  ].filter((w) => w !== '');
}

function tooLarge(nodes: number, maxNodes: number, query: GraphViewQuery): DagworkError {
  return new DagworkError('TOO_LARGE', `the view would have ${nodes} nodes; the limit is ${maxNodes} (max_nodes): narrow it with ${ways(query).join(', ')}`);
}
